/**
 * The contract every op kernel follows. A kernel is a plain function of its input tensors and
 * attributes; the planner resolves one per node at load. Reference kernels are the definition;
 * faster kernels are tested against them. A backward pass (finetuning, later) reuses the same
 * attribute parsing and shape logic, so keep shape math in exported helpers, not inside loops.
 * @module
 */
import type { ConvGradKernels } from "./conv.ts";
import type { AttrValue, Dim, Tensor } from "../../format/mod.ts";
import type { RunBudget } from "../budget.ts";

/** Typed access to a node's attributes with ONNX defaults. */
export class Attrs {
  constructor(readonly raw: Record<string, AttrValue>, readonly opType = "") {}
  has(name: string): boolean { return name in this.raw; }
  int(name: string, fallback?: number): number { return this.get(name, "int", fallback); }
  float(name: string, fallback?: number): number { return this.get(name, "float", fallback); }
  string(name: string, fallback?: string): string { return this.get(name, "string", fallback); }
  ints(name: string, fallback?: number[]): number[] { return this.get(name, "ints", fallback); }
  floats(name: string, fallback?: number[]): number[] { return this.get(name, "floats", fallback); }
  tensor(name: string, fallback?: Tensor): Tensor { return this.get(name, "tensor", fallback); }
  private get<T>(name: string, type: AttrValue["type"], fallback: T | undefined): T {
    const a = this.raw[name];
    if (a === undefined) {
      if (fallback === undefined) throw new KernelError(`${this.opType}: missing required attribute '${name}'`);
      return fallback;
    }
    if (a.type !== type) throw new KernelError(`${this.opType}: attribute '${name}' is ${a.type}, expected ${type}`);
    return a.value as T;
  }
}

/** Thrown by a kernel for inputs the op cannot take (bad shapes, bad attributes). The runtime wraps it in its typed error. */
export class KernelError extends Error {
  override name = "KernelError";
}

/** What a kernel may know beyond its inputs. */
export interface KernelContext {
  /** The opset version the model imports for the node's domain. */
  opset: number;
  /** Number of worker threads the session may use (1 = this thread only). */
  threads: number;
  /** How many outputs the node declares (Split without sizes divides into this many parts). */
  outputCount?: number;
  /**
   * Runs one of the node's graph attributes (If branches, Loop/Scan bodies) on its formal inputs,
   * in order, and returns its outputs in order; values the body reads from enclosing graphs are
   * bound by the runtime. Present only for nodes that have graph attributes.
   */
  runGraph?: (attr: string, feeds: readonly Tensor[]) => Tensor[];
  /** What the variant's `prepare` built for this node at load (see OpVersion.prepare); absent if it has none. */
  prepared?: PreparedState;
  /**
   * A float32 buffer of `length` elements for an output, possibly recycled from an intermediate
   * the session has released (contents unspecified: zero it if the kernel accumulates). Absent
   * when the caller runs the kernel directly; kernels then allocate as usual.
   */
  alloc?: (length: number) => Float32Array;
  /** Told which internal path a kernel that chooses one at run time took (session profiling checks it against the bound path). */
  reportPath?: (path: string) => void;
  /** The run's budgets (memory, Loop/Scan steps), set by a session; loops count their steps against it. */
  budget?: RunBudget;
}

/** Whatever a kernel's `prepare` derives from its constant inputs (packed or transformed weights); opaque to the runtime. */
export type PreparedState = unknown;

/** What `prepare` may know at load beyond the constant inputs. */
export interface PrepareContext {
  opset: number;
  threads: number;
  /** Inferred shape of each input, where the planner knows it (symbolic dims such as a dynamic batch stay names). */
  inputShapes: readonly (readonly Dim[] | undefined)[];
}

/**
 * Load-time work of a kernel: called once by the planner for a node with at least one constant
 * input (its weights), with those inputs in node order (`undefined` for inputs computed at run
 * time). The result reaches every call of the kernel as `ctx.prepared`. The kernel must return
 * the same outputs with or without it, and must use it only for the constant tensors it was built
 * from (check identity: a subgraph or a test may call the kernel with other tensors).
 */
export type Prepare = (constInputs: readonly (Tensor | undefined)[], attrs: Attrs, ctx: PrepareContext) => PreparedState;

/**
 * A kernel: inputs in node order (`undefined` for an omitted optional input), attributes,
 * context; returns the outputs in node order. Must not mutate its inputs.
 */
export type Kernel = (inputs: readonly (Tensor | undefined)[], attrs: Attrs, ctx: KernelContext) => Tensor[];

/** One entry of the op table: the kernel valid from `since` (opset version) on. */
export interface OpVersion {
  since: number;
  kernel: Kernel;
  /** Optional: packs or transforms constant inputs once at load, so the kernel does not on every call. */
  prepare?: Prepare;
  /** Optional: forward with a backward closure, for training (runtime/train): the op is differentiable. */
  grad?: GradOp;
}

/** The versions with `grad` set on each: an op's backward, declared beside its kernels. */
export function withGrad(versions: OpVersion[], grad: GradOp): OpVersion[] {
  return versions.map((v) => ({ ...v, grad }));
}

/**
 * Gradients of an op's inputs from the gradients of its outputs (`undefined`: the output does
 * not reach the loss). Computes only the inputs flagged in `needs`; never mutates `dOutputs`.
 */
export type Backward = (dOutputs: readonly (Float32Array | undefined)[], needs: readonly boolean[]) => (Float32Array | undefined)[];

/** An op's forward result: its outputs and the closure that differentiates them. */
export interface GradResult {
  outputs: Tensor[];
  backward: Backward;
}

/**
 * Buffers for an op's outputs and gradients: zero-filled float32 arrays of the given length. The
 * training graph hands each node the same buffers every step (train/graph-grad.ts), so a step
 * allocates nothing once the first has run; an op must not keep a buffer past the next step.
 */
export type Alloc = (length: number, zeroed?: boolean) => Float32Array;

/** Fresh zeroed arrays (ops called outside a training graph). `zeroed: false` lets a reused buffer skip the fill (the op writes every element). */
export const freshAlloc: Alloc = (length) => new Float32Array(length);

/**
 * A differentiable op: float32 inputs in node order (`undefined` for an omitted one), attributes,
 * where its buffers come from. Training reads a node as inference does (the same geometry and
 * shape rules); Conv recomputes its im2col columns in backward instead of keeping them (a batch
 * of 256 would hold ~100 MB of columns per layer).
 */
export type GradOp = (inputs: readonly (Tensor | undefined)[], attrs: Attrs, alloc?: Alloc, ctx?: GradContext) => GradResult;

/** What a training graph lends a differentiable op beyond its inputs. */
export interface GradContext {
  /**
   * Per input: 1 where its gradient is used, 0 where the caller discards it (a pruned weight
   * under a fixed mask); undefined: everywhere. An op may leave the discarded positions 0.
   */
  keep?: readonly (Uint8Array | undefined)[];
  /** Faster conv products, where the graph has them (train/wasm-conv.ts). */
  conv?: ConvGradKernels;
}

/** A float32 tensor of `dims` over `data`. */
export const f32Tensor = (dims: number[], data: Float32Array): Tensor => ({ dtype: "float32", dims, data });

/** The float32 data of a differentiable op's input, or a KernelError naming it. */
export function f32Of(t: Tensor | undefined, what: string): Float32Array {
  if (!t || !(t.data instanceof Float32Array)) throw new KernelError(`${what} must be a float32 tensor`);
  return t.data;
}
