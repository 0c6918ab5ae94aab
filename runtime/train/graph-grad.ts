/**
 * Reverse-mode differentiation of an ONNX graph: `forward` runs the nodes in order through
 * the `grad` of its op (declared beside the op's kernels) and keeps a tape of their backward closures; `backward` walks the tape in reverse,
 * summing the gradients of values read more than once, and returns the gradients of the
 * trainable initializers. Only values that depend on a parameter get gradients (the image's
 * does not), which skips the first Conv's dX.
 * @module
 */
import type { Model, Node, Tensor } from "../../format/mod.ts";
import { sizeOf } from "../../format/mod.ts";
import { OpqRuntimeError, RUNTIME_ERROR_CODES as E } from "../errors.ts";
import { Attrs, KernelError } from "../ops/types.ts";
import type { Alloc, Backward, GradContext, GradOp } from "../ops/types.ts";
import { createWasmConvKernels } from "./wasm-conv.ts";
import { OPQ_DOMAIN, OPQ_DOMAIN_OPS } from "../ops/quantize.ts";
import { resolveOp } from "../ops/registry.ts";
import { opsetFor } from "../planner.ts";

/** A model prepared for training: forward with a tape, backward to the parameters. */
export interface TrainableGraph {
  /** Float32 initializers read as Conv/Gemm/MatMul weights or biases, or as an ApotQuantize α: what `backward` differentiates. */
  params: string[];
  /** The graph input fed to `forward` and the output it returns. */
  inputName: string;
  outputName: string;
  /**
   * Run the graph on one input batch and keep the tape for `backward`. Reads the current
   * contents of `model.graph.initializers[name].data`, so a caller may overwrite weights in
   * place between steps. Returns the output's data (dims in `outputDims`).
   */
  forward(input: Tensor): Float32Array;
  /** Dims of the last forward's output. */
  readonly outputDims: number[];
  /** Gradients of every parameter (by initializer name) for `dOutput`, the gradient of the last forward's output. */
  backward(dOutput: Float32Array): Map<string, Float32Array>;
}

/** Which inputs of each op are trainable parameters (when they are float32 initializers). */
const PARAM_SLOTS: Readonly<Record<string, readonly number[]>> = { Conv: [1, 2], Gemm: [0, 1, 2], MatMul: [0, 1], ApotQuantize: [1] };

/** A new `a + b` (neither operand is modified). */
function sum(a: Float32Array, b: Float32Array, alloc: Alloc): Float32Array {
  const out = alloc(a.length, false);
  for (let i = 0; i < out.length; i++) out[i] = a[i]! + b[i]!;
  return out;
}

const isDefaultDomain = (n: Node) => n.domain === "" || n.domain === "ai.onnx";
/** The differentiable op of a node: the `grad` of its op's version at the model's opset (the ai.opq table for opq's own ops). */
const gradOpOf = (n: Node, model: Model): GradOp | undefined =>
  isDefaultDomain(n) ? resolveOp(n.opType, opsetFor(model, "") ?? 1)?.grad
  : n.domain === OPQ_DOMAIN ? resolveOp(n.opType, opsetFor(model, OPQ_DOMAIN) ?? 1, OPQ_DOMAIN_OPS)?.grad : undefined;

/**
 * Ask Bun's collector to run (asynchronously) once a step, at each forward, and to collect fully
 * every FULL_COLLECTION_EVERY steps. A step's garbage is mostly small objects (typed-array views
 * of the kernels' shared memory, transcoding temporaries) that JavaScriptCore does not count
 * toward its next collection: without the hint a 3-epoch ResNet-20 finetune on 2 threads grew to
 * 3.5 GB RSS in 100 steps and kept growing. The asynchronous hint alone still let a finetune grow
 * ~0.4 MB a step (what survives into the old generation); a full collection every 32 steps costs
 * 16–36 ms (ResNet-20, batch 256, 2 threads: ~0.05% of those steps) and brings RSS back each time
 * (772 → 759 → 739 MB). runtime/train/wasm-conv.test.ts measures a flat step loop. Elsewhere
 * (Deno) nothing happens.
 */
function collectHint(): void {
  const bun = (globalThis as { Bun?: { gc(force: boolean): void } }).Bun;
  bun?.gc(++hints % FULL_COLLECTION_EVERY === 0);
}
let hints = 0;
/** Steps between full collections (see collectHint). */
const FULL_COLLECTION_EVERY = 32;

/** How a training graph computes. */
export interface TrainGraphOptions {
  /**
   * Fixed masks of parameters (1 = trains): their gradients are needed only where the mask is 1,
   * so the ops may skip the rest (Conv's weight gradient then costs the kept fraction).
   */
  keep?: ReadonlyMap<string, Uint8Array>;
  /** Use the WASM SIMD conv kernels where they pay (train/wasm-conv.ts); default true where the engine has WASM SIMD. */
  wasm?: boolean;
}

/**
 * Prepare `model` for training on the CPU. Throws OpqRuntimeError UNSUPPORTED_OPS naming every
 * op without a `grad`, INVALID_MODEL for a graph without one float input and one output.
 */
export function createTrainableGraph(model: Model, options: TrainGraphOptions = {}): TrainableGraph {
  const graph = model.graph;
  const inits = graph.initializers;
  const unsupported = [...new Set(graph.nodes.filter((n) => n.opType !== "Constant" && !gradOpOf(n, model)).map((n) => n.domain ? `${n.domain}.${n.opType}` : n.opType))];
  if (unsupported.length) {
    throw new OpqRuntimeError(E.UNSUPPORTED_OPS, `training does not support op(s): ${unsupported.join(", ")}`, { ops: unsupported });
  }
  const feeds = graph.inputs.filter((i) => !Object.hasOwn(inits, i.name));
  if (feeds.length !== 1 || graph.outputs.length !== 1) {
    throw new OpqRuntimeError(E.INVALID_MODEL, `training needs one fed input and one output, the graph has ${feeds.length} and ${graph.outputs.length}`);
  }
  const inputName = feeds[0]!.name, outputName = graph.outputs[0]!.name;

  const params: string[] = [];
  for (const node of graph.nodes) {
    for (const slot of (gradOpOf(node, model) && Object.hasOwn(PARAM_SLOTS, node.opType) ? PARAM_SLOTS[node.opType] : undefined) ?? []) {
      const name = node.inputs[slot];
      if (name && Object.hasOwn(inits, name) && inits[name]!.dtype === "float32" && !params.includes(name)) params.push(name);
    }
  }
  const constants = new Map<string, Tensor>();
  for (const node of graph.nodes) {
    if (node.opType !== "Constant") continue;
    const a = node.attrs.value;
    if (!a || a.type !== "tensor") throw new OpqRuntimeError(E.UNSUPPORTED_OPS, `Constant ${node.name}: only a 'value' tensor is supported`, { ops: ["Constant"] });
    constants.set(node.outputs[0]!, a.value);
  }
  // A value needs a gradient if it depends on a parameter.
  const live = new Set(params);
  const needs = new Map<Node, boolean[]>();
  for (const node of graph.nodes) {
    const n = node.inputs.map((i) => live.has(i));
    needs.set(node, n);
    if (n.some(Boolean)) for (const o of node.outputs) live.add(o);
  }
  const attrs = new Map(graph.nodes.map((n) => [n, new Attrs(n.attrs, n.opType)]));
  const ops = new Map(graph.nodes.map((n) => [n, gradOpOf(n, model)]));
  const conv = options.wasm === false ? undefined : createWasmConvKernels();
  // The step's buffers live in the conv kernels' memory when there are kernels, so they read and
  // write activations and gradients in place instead of copying them in and out.
  const fresh = conv ? (n: number) => conv.buffer(n) : (n: number) => new Float32Array(n);
  const contexts = new Map(graph.nodes.map((n): [Node, GradContext] => [n, { conv, keep: options.keep && n.inputs.map((i) => options.keep!.get(i)) }]));
  // Every node gets the same buffers each step (the k-th buffer it asks for is the k-th of the last
  // step, zeroed): nothing of a step outlives the next step's forward of that node, except the
  // graph's output, whose producer allocates fresh arrays (a caller may keep the logits).
  // Backward buffers come from one free list shared by all nodes, by length: a gradient returns
  // to it once no stored gradient refers to it, an op's scratch right after its backward, the
  // parameters' gradients at the start of the next backward (the caller has used them by then).
  let inBackward = false;
  const free = new Map<number, Float32Array[]>();
  const owned = new WeakSet<Float32Array>();
  let handedOut: Float32Array[] = [];
  let lastParamGrads: Float32Array[] = [];
  const isFree = new WeakSet<Float32Array>();
  const release = (b: Float32Array) => {
    if (isFree.has(b)) return; // released once already (a buffer dropped and swept in the same node)
    isFree.add(b);
    (free.get(b.length) ?? free.set(b.length, []).get(b.length)!).push(b);
  };
  const backAlloc: Alloc = (n, zeroed = true) => {
    const b = free.get(n)?.pop();
    if (b) isFree.delete(b);
    const out = b ? (zeroed ? b.fill(0) : b) : fresh(n);
    owned.add(out);
    handedOut.push(out);
    return out;
  };
  const pools = new Map<Node, { bufs: Float32Array[]; next: number; alloc: Alloc }>();
  for (const node of graph.nodes) {
    if (node.outputs.includes(outputName)) continue;
    const pool = { bufs: [] as Float32Array[], next: 0, alloc: (n: number, zeroed = true) => {
      if (inBackward) return backAlloc(n, zeroed);
      const b = pool.bufs[pool.next];
      if (b && b.length === n) { pool.next++; return zeroed ? b.fill(0) : b; }
      const made = fresh(n);
      pool.bufs[pool.next++] = made;
      return made;
    } };
    pools.set(node, pool);
  }

  let tape: { node: Node; backward: Backward }[] = [];
  let outputDims: number[] = [];
  return {
    params, inputName, outputName,
    get outputDims() { return outputDims; },
    forward(input) {
      collectHint(); // once a step
      const env = new Map<string, Tensor>(constants);
      env.set(inputName, input);
      tape = [];
      const value = (name: string) => {
        if (!name) return undefined;
        const t = env.get(name) ?? inits[name];
        if (!t) throw new OpqRuntimeError(E.INVALID_MODEL, `value ${name} is read before it is computed`);
        return t;
      };
      for (const node of graph.nodes) {
        if (node.opType === "Constant") continue;
        let r;
        try {
          const pool = pools.get(node);
          if (pool) pool.next = 0;
          r = ops.get(node)!(node.inputs.map(value), attrs.get(node)!, pool?.alloc, contexts.get(node));
        } catch (e) {
          if (!(e instanceof KernelError)) throw e;
          throw new OpqRuntimeError(E.KERNEL_FAILED, `${node.opType} ${node.name}: ${e.message}`, { node: node.name, opType: node.opType }, { cause: e });
        }
        node.outputs.forEach((o, i) => { if (o && r.outputs[i]) env.set(o, r.outputs[i]!); });
        if (needs.get(node)!.some(Boolean)) tape.push({ node, backward: r.backward });
      }
      const out = env.get(outputName);
      if (!out || !(out.data instanceof Float32Array)) throw new OpqRuntimeError(E.INVALID_MODEL, `output ${outputName} is not a float32 value`);
      outputDims = out.dims;
      return out.data;
    },
    backward(dOutput) {
      if (dOutput.length !== sizeOf(outputDims)) {
        throw new OpqRuntimeError(E.INPUT_INVALID, `dOutput has ${dOutput.length} values, the output [${outputDims}] has ${sizeOf(outputDims)}`);
      }
      for (const b of lastParamGrads) if (owned.has(b)) release(b);
      lastParamGrads = [];
      const grads = new Map<string, Float32Array>([[outputName, dOutput]]);
      const refs = new Map<Float32Array, number>([[dOutput, 1]]);
      const put = (name: string, d: Float32Array) => {
        const prev = grads.get(name);
        grads.set(name, d);
        refs.set(d, (refs.get(d) ?? 0) + 1);
        if (prev) drop(prev);
      };
      const drop = (b: Float32Array) => {
        const r = (refs.get(b) ?? 0) - 1;
        if (r > 0) { refs.set(b, r); return; }
        refs.delete(b);
        if (owned.has(b)) release(b);
      };
      inBackward = true;
      try {
        for (let t = tape.length - 1; t >= 0; t--) {
          const { node, backward } = tape[t]!;
          const dOut = node.outputs.map((o) => grads.get(o));
          if (dOut.every((d) => d === undefined)) continue;
          const n = needs.get(node)!;
          handedOut = [];
          const dIn = backward(dOut, n);
          node.inputs.forEach((name, i) => {
            const d = dIn[i];
            if (!n[i] || !d) return;
            const prev = grads.get(name);
            // Sum, never add in place: a stored gradient may be another op's dY (pass-through ops).
            put(name, prev ? sum(prev, d, backAlloc) : d);
          });
          // Only now (an op may pass its dY through as an input's gradient) the outputs' gradients go.
          for (const o of node.outputs) {
            const d = grads.get(o);
            if (d && !params.includes(o)) { grads.delete(o); drop(d); }
          }
          for (const b of handedOut) if (!refs.has(b)) release(b);
        }
      } finally {
        inBackward = false;
        handedOut = [];
      }
      tape = [];
      const out = new Map(params.map((p) => [p, grads.get(p) ?? new Float32Array(inits[p]!.data.length)]));
      lastParamGrads = [...out.values()];
      return out;
    },
  };
}
