/**
 * Backends: who computes each node. The op table (ops/) defines every op once — attributes,
 * shapes, the reference kernel; a backend offers faster implementations for the nodes it can run.
 * At load the session asks its backends in preference order to `bind` each planned step (the
 * way onnxruntime's execution providers claim nodes); the first that claims it computes it, and
 * the reference backend takes everything left. What `bind` returns is what runs: its `path`,
 * `weightForm` and `residentBytes` are what the session reports, and `run` is the only code the
 * step executes.
 *
 * A backend sees a compressed `.opq` weight as stored (`NodeSpec.compressed`) and may keep it in
 * a kernel form of its own; asking for `dense(slot)` instead makes (and counts) a float32 copy.
 * @module
 */
import type { CompressedTensor, Dim, DType, Node, Tensor } from "../format/mod.ts";
import type { Attrs, KernelContext } from "./ops/types.ts";
import type { RunBudget } from "./budget.ts";

/** Names of the backends the runtime has. */
export type BackendName = "cpu-reference" | "wasm" | "webgpu";

/** What a backend sees of one node when asked to bind it. */
export interface NodeSpec {
  node: Node;
  /** Display name of the step (node name, or `<opType>_<index>`). */
  name: string;
  attrs: Attrs;
  opset: number;
  /** Inferred shapes and types of the node's inputs and outputs (undefined where unknown; symbolic dims stay names). */
  inputShapes: readonly (readonly Dim[] | undefined)[];
  outputShapes: readonly (readonly Dim[] | undefined)[];
  inputDtypes: readonly (DType | undefined)[];
  outputDtypes: readonly (DType | undefined)[];
  /** Each input that is a constant, dense (initializer or folded); undefined for run-time values and compressed weights. */
  constants: readonly (Tensor | undefined)[];
  /** Each input that is a compressed `.opq` weight, as stored; undefined otherwise. */
  compressed: readonly (CompressedTensor | undefined)[];
  /** The dense float32 form of constant input `slot` (dequantizes a compressed weight: the backend then holds a dense copy). */
  dense(slot: number): Tensor | undefined;
  /** Threads the session may use. */
  threads: number;
  /**
   * Set when the binder offers a Conv/Gemm with the nodes after it folded in (runtime/fusion.ts):
   * the output is `clamp(op(x) + residual, lo, hi)`. A backend that does not apply it must not
   * claim the spec (the nodes are then bound one by one).
   */
  epilogue?: Epilogue;
}

/** What a fused node computes after its op: an optional residual add, then a clamp. */
export interface Epilogue {
  /** Index into `node.inputs` of the value added to the output (same shape), if any. */
  residual?: number;
  /** Clamp bounds (−Infinity / Infinity when there is none). */
  lo: number;
  hi: number;
  /** Names of the absorbed nodes, in order. */
  fused: string[];
}

/** What a bound step needs at run time beyond its inputs. */
export interface RunContext {
  /** A float32 buffer of `length` elements for an output (contents unspecified), owned by the session's memory. */
  alloc(length: number): Float32Array;
  /** For profiling: a kernel that picks its path at run time says which one it took. */
  reportPath?: (path: string) => void;
  /** The run's budgets (memory, Loop/Scan steps); op-table kernels that loop count their steps against it. */
  budget?: RunBudget;
}

/** A node bound to one implementation: the thing that runs, and what is reported about it. */
export interface BoundKernel {
  backend: BackendName;
  /** How it computes, e.g. "sparse-q-direct", "winograd-f2x2", "reference". */
  path: string;
  /** The form its weights are held in, e.g. "dense-f32", "csr-u16-i8"; "none" without weights. */
  weightForm: string;
  /** Bytes this step holds for its weights (kernel form, padded and aligned as held). */
  residentBytes: number;
  /** Compute the node's outputs (in node order) from its inputs (undefined for omitted optional inputs). */
  run(inputs: readonly (Tensor | undefined)[], rc: RunContext): Tensor[] | Promise<Tensor[]>;
  /** Release what bind allocated (weights in wasm or GPU memory). */
  dispose?(): void;
}

/** A bound step as `Backend.finish` sees it: the node's values and who runs it. */
export interface BoundStep {
  inputs: readonly string[];
  outputs: readonly string[];
  kernel: BoundKernel;
}

/** A set of implementations that claim nodes. */
export interface Backend {
  readonly name: BackendName;
  /** Bind `spec` if this backend runs it (undefined: let the next backend try). */
  bind(spec: NodeSpec): BoundKernel | undefined;
  /** True if `bind` understands fused specs (NodeSpec.epilogue); others are never offered one. */
  readonly fuses?: boolean;
  /**
   * Called once after every step is bound (e.g. plan transfers, size scratch), with the steps in
   * run order (fused nodes bind before the rest, so the order of `bind` calls is not the run order).
   */
  finish?(steps: readonly BoundStep[]): void;
  /** What the session reports about the backend (adapter, features, threads). */
  describe(): Record<string, unknown>;
  /** Release everything the backend holds. */
  dispose(): void;
}

/**
 * A float32 value held in a device's memory (the webgpu backend's outputs): `data` is an empty
 * Float32Array, `gpu` reads the values back. Only the backend that made it reads it in place;
 * every other consumer gets `toHost(t)` first (the session does this before a CPU step and for
 * the graph outputs).
 */
export interface DeviceTensor extends Tensor {
  gpu: DeviceValue;
}

/** The device side of a DeviceTensor. */
export interface DeviceValue {
  /** The values, copied to the host. */
  read(): Promise<Float32Array>;
}

/** True if `t` lives in device memory (its `data` is empty). */
export function isDeviceTensor(t: Tensor | undefined): t is DeviceTensor {
  return t !== undefined && typeof (t as Partial<DeviceTensor>).gpu?.read === "function";
}

/** Host copies of the device tensors among `ts` (others unchanged); reads issued together share one transfer batch. */
export function toHost(ts: readonly (Tensor | undefined)[]): Promise<(Tensor | undefined)[]> | undefined {
  if (!ts.some(isDeviceTensor)) return undefined;
  return Promise.all(ts.map(async (t) => (isDeviceTensor(t) ? { dtype: t.dtype, dims: t.dims.slice(), data: await t.gpu.read() } : t)));
}

/** Bytes of a dense tensor's data. */
export function tensorBytes(t: Tensor | undefined): number {
  if (!t || t.dtype === "string") return 0;
  return (t.data as ArrayBufferView).byteLength;
}

/**
 * The fallback that runs every node: the op table's kernel (ops/), with the load-time `prepare`
 * state the planner made. Its weights are dense (a compressed weight is dequantized for it).
 * `path` is the kernel's own label: the op table kernels choose their fast path inside.
 */
export function bindReference(spec: NodeSpec, kernel: (ins: readonly (Tensor | undefined)[], attrs: Attrs, ctx: KernelContext) => Tensor[], ctx: KernelContext, path: string): BoundKernel {
  let resident = 0;
  for (let i = 0; i < spec.node.inputs.length; i++) {
    if (spec.constants[i] || spec.compressed[i]) resident += tensorBytes(spec.dense(i));
  }
  const attrs = spec.attrs;
  const dequantized = spec.compressed.some((c) => c !== undefined);
  return {
    backend: "cpu-reference",
    path,
    weightForm: dequantized ? "dequantized-f32" : resident > 0 ? "dense-f32" : "none",
    residentBytes: resident,
    run: (inputs, rc) => kernel(inputs, attrs, { ...ctx, alloc: rc.alloc, reportPath: rc.reportPath, budget: rc.budget }),
  };
}
