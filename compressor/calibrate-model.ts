/**
 * Calibration of a whole compressed model: every compressed Conv/Gemm/MatMul layer, in graph
 * order, is re-solved (calibrate.ts) on the inputs the already-compensated network gives it
 * (sequential, as OBC and GPTQ do), fitted to the FP32 network's output, its bias re-solved with
 * it, with rate-aware rounding so its bits stay those of the one-shot layer. Masks and grids (Δ_i
 * or the APoT table) stay exactly as one-shot compression chose them.
 *
 * The compressor does not run networks: the caller injects a `ModelRunner` (the CLI passes the
 * runtime's `createSession`). The graph is cut before every compressed layer into segments; each
 * segment is run once over all calibration images, from the values live at its cut (the
 * "frontier") to those live at the next, so the whole calibration costs one forward pass of the
 * network (two with the default FP32 target: the FP32 network runs beside the compensated one)
 * plus the per-layer solves. Memory: the frontier values of all N images, once per network.
 * @module
 */
import { type CompressedTensor, dequantize, type Graph, type Model, mulberry32, type Node, type OpqModel, sizeOf, streamBits, type Tensor, type ValueInfo } from "../format/mod.ts";
import {
  addConvInputs, addDenseInputs, COMPENSATE_DEFAULTS, type ConvGeometry, createHessian, createTarget, finishHessian, type FloatSide, type Gemm, type Grid,
  gridNeighbours, gridRounder, gridSpacing, type HessianAccumulator, keepProbability, type PreparedCompensation, prepareCompensation,
} from "./calibrate.ts";
import { COMPRESS_ERROR_CODES as E, ensure } from "./errors.ts";

/** A loaded network the caller runs for us (the runtime's Session fits). */
export interface RunnableModel {
  run(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>>;
  dispose(): void;
}

/**
 * Loads a Model for running (e.g. `(m) => createSession(m)` from opq/runtime). Segments come with
 * dense weights: the compensated network's segments on the runtime's compressed kernels were no
 * faster (resnet18-224, 64 images, all 21 segments: forward 38.3 and 42.8 s compressed, 38.5 s
 * dense, whole calibration 138.4 and 133.9 CPU s against 131.6 s; load 5.4–6.6).
 */
export type ModelRunner = (model: Model) => Promise<RunnableModel>;

/** Knobs of `calibrateModel`. */
export interface CalibrateOptions {
  /** Images per forward run (memory vs. overhead). */
  batch?: number;
  /** Dampening λ of H (see COMPENSATE_DEFAULTS). */
  damp?: number;
  /** Visit columns by decreasing H_cc. */
  actOrder?: boolean;
  /** Columns per lazy batch. */
  blockSize?: number;
  /** At most about this many input vectors (im2col rows) per layer enter H… */
  maxRows?: number;
  /** …but at least this many per input K, when the images offer them. */
  minRowsPerInput?: number;
  /**
   * What each layer's output is fitted to: "float" the FP32 network's layer output (asymmetric;
   * the FP32 network runs beside the compensated one), "layer" the FP32 weights on the
   * compensated network's inputs (plain GPTQ).
   */
  target?: "float" | "layer";
  /** Re-solve each layer's bias as a free, unquantized column (bias correction). */
  bias?: boolean;
  /** Seed of the row sampling. */
  seed?: number;
  /** Rate-aware rounding that keeps each layer's estimated bits within its one-shot bits (× 1 + rateSlack). */
  rate?: boolean;
  rateSlack?: number;
  /** Dampening pulls each layer's fit toward its FP32 weights (else toward 0). */
  anchor?: boolean;
  /** The products' GEMM (the CLI injects the runtime's WASM one); default float64 loops. */
  gemm?: Gemm;
  /**
   * Masks to hold, by tensor name (1 = may be non-zero): OPQ's pruning masks M_i. A layer without
   * one holds its stored positions (a weight one-shot rounding sent to 0 then stays 0). A mask
   * given for a layer's bias holds its 0 entries at 0 (SPQ's removed filters: weights and bias
   * zero, so removing them after calibration is exact).
   */
  masks?: ReadonlyMap<string, Uint8Array>;
}

/**
 * Defaults. Rows: 8192 im2col rows per layer, but at least 2·K. On ResNet-20 at (0.74, 3) with
 * 512 training images 8192 rows gave 91.5% top-1 on the first 1000 test images against 91.0% with
 * 32768 and ≥ 64·K rows, at 0.5× the collection time (the 3×3×64 convs offer 25,088 rows). The
 * per-input floor alone (no 8192), on 2000 held-out training images (calibration-sweep's code
 * paths, scored on training images outside the calibration draw): 8·K 92.60%, 16·K with the 8192
 * floor 92.65%, 4·K 91.80%, 2·K 91.60%. So where 2·K binds (only K > 4096: ResNet-18's 3×3×512
 * convs, K = 4608) it may cost up to about a point against 8·K; it was lowered from 8·K for the
 * issue's time target: those three layers collected all 25,088 rows they offer in 46–83 s each,
 * 9,216 in 31–32 s (resnet18-224, 512 images, load 6–7). K ≤ 1024 (all of ResNet-20 and LeNet-5)
 * gets 8192 rows under either floor; 1024 < K ≤ 4096 gets 8192 (was 8·K: ResNet-18's 3×3×128 and
 * 3×3×256 convs, 9,216 and 18,432 rows).
 * target "float" (asymmetric): 91.0% against 50.2% for "layer" (plain GPTQ) on the same images;
 * bias correction as a free column, rate-aware rounding on (file 0.99× the one-shot file's).
 * anchor with damp 0.05 (the ridge pulled toward the FP32 weights): on the 2000 held-out training
 * images ResNet-20 (0.74, 3) 93.85% against 92.65% unanchored at damp 0.01 (93.20% anchored at
 * 0.01); LeNet-5 (0.74, 3) on 10,000 held-out training images 91.46% against 91.44%.
 */
export const CALIBRATE_DEFAULTS = {
  batch: 64, maxRows: 8192, minRowsPerInput: 2, target: "float" as "float" | "layer", bias: true, seed: 1, rate: true, rateSlack: 0, anchor: true,
  ...COMPENSATE_DEFAULTS, damp: 0.05,
} as const;

/** What calibration did to one layer. */
export interface CalibrationLayer {
  name: string;
  node: string;
  opType: string;
  /** Output channels R, inputs per output K, groups. */
  rows: number;
  inputs: number;
  groups: number;
  /** Input vectors (im2col rows) in H, and how many the images offered. */
  samples: number;
  offered: number;
  /**
   * ‖Y − Ŷ‖² / ‖Y‖² on the calibration images, Y the target output (see `target`): one-shot Ŵ,
   * then calibrated Ŵ and bias. Layers of ≥ 256 output rows (one group) sum it over every 4th row.
   */
  errorBefore: number;
  errorAfter: number;
  /** Stored (non-zero) weights before and after. */
  storedBefore: number;
  storedAfter: number;
  /** "corrected", or why the bias was kept. */
  bias: string;
  damp: number;
  /** Estimated bits of the layer's codes and positions: one-shot, calibrated; and the rate weight μ used (0: none needed). */
  bitsBefore: number;
  bitsAfter: number;
  rateWeight: number;
  /** Wall time of this layer: collecting H and the target, solving, and running its segment (both networks). */
  seconds: number;
  phases: { collect: number; solve: number; forward: number };
}

/** The outcome of `calibrateModel`. */
export interface CalibrationResult {
  opq: OpqModel;
  layers: CalibrationLayer[];
  images: number;
  seconds: number;
  /** Layers left as one-shot compression made them, with the reason. */
  skipped: { name: string; reason: string }[];
}

/** Progress: `done` of `total` layers, the last one's name and what was done to it (undefined when it was skipped). */
export type CalibrateProgress = (done: number, total: number, layer: string, result?: CalibrationLayer) => void;

/**
 * Rate search on a row subset: layers of at least this many output rows (one group) price μ on
 * every RATE_SUBSET-th row before one confirming sweep of all rows (see calibrateModel).
 */
const RATE_SUBSET = 4, RATE_SUBSET_MIN_ROWS = 256;

/** Every RATE_SUBSET-th row of a layer, and each tensor position's rank among the positions of those rows (−1: another row). */
interface RowSubset {
  rows: number[];
  rank: Int32Array;
}

function rowSubset(rowCount: number, k: number, flat: (r: number, c: number) => number, total: number): RowSubset {
  const rows = Array.from({ length: Math.ceil(rowCount / RATE_SUBSET) }, (_, j) => j * RATE_SUBSET);
  const rank = new Int32Array(total).fill(-1);
  for (const r of rows) for (let c = 0; c < k; c++) rank[flat(r, c)] = 0;
  for (let f = 0, n = 0; f < total; f++) if (rank[f] === 0) rank[f] = n++;
  return { rows, rank };
}

interface LayerSlot {
  index: number;
  node: Node;
  tensor: CompressedTensor;
  kind: "conv" | "gemm" | "matmul";
}

function intAttr(node: Node, name: string, fallback: number): number {
  const a = node.attrs[name];
  return a && a.type === "int" ? a.value : fallback;
}
function floatAttr(node: Node, name: string, fallback: number): number {
  const a = node.attrs[name];
  return a && a.type === "float" ? a.value : fallback;
}
function intsAttr(node: Node, name: string): number[] | undefined {
  const a = node.attrs[name];
  return a && a.type === "ints" ? a.value : undefined;
}
const hasGraphAttr = (n: Node) => Object.values(n.attrs).some((a) => a.type === "graph");

/** Conv geometry from the node's attributes, its input dims [N, C, h(, w)] and weight dims. */
export function convGeometryOf(node: Node, x: readonly number[], wDims: readonly number[]): ConvGeometry {
  const rank = wDims.length - 2;
  ensure(rank === 1 || rank === 2, E.CALIBRATION, `${node.name}: only 1-D and 2-D convolutions are calibrated, not ${rank}-D`);
  ensure(x.length === rank + 2, E.CALIBRATION, `${node.name}: input of rank ${x.length} for a ${rank}-D convolution`);
  const sp = (v: number[] | undefined, d: number) => (rank === 1 ? [1, v?.[0] ?? d] : [v?.[0] ?? d, v?.[1] ?? d]);
  const [h, w] = rank === 1 ? [1, x[2]!] : [x[2]!, x[3]!];
  const [kh, kw] = rank === 1 ? [1, wDims[2]!] : [wDims[2]!, wDims[3]!];
  const [sh, sw] = sp(intsAttr(node, "strides"), 1);
  const [dh, dw] = sp(intsAttr(node, "dilations"), 1);
  const group = intAttr(node, "group", 1);
  const autoPad = node.attrs.auto_pad?.type === "string" ? node.attrs.auto_pad.value || "NOTSET" : "NOTSET";
  const pads = intsAttr(node, "pads") ?? new Array(2 * rank).fill(0);
  let [pt, pl, pb, pr] = rank === 1 ? [0, pads[0]!, 0, pads[1]!] : [pads[0]!, pads[1]!, pads[2]!, pads[3]!];
  if (autoPad === "VALID") pt = pl = pb = pr = 0;
  else if (autoPad === "SAME_UPPER" || autoPad === "SAME_LOWER") {
    const same = (size: number, k: number, s: number, d: number) => {
      const total = Math.max(0, (Math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size), small = Math.floor(total / 2);
      return autoPad === "SAME_UPPER" ? [small, total - small] : [total - small, small];
    };
    [pt, pb] = rank === 1 ? [0, 0] : same(h, kh, sh!, dh!);
    [pl, pr] = same(w, kw, sw!, dw!);
  }
  const outH = Math.floor((h + pt! + pb! - dh! * (kh - 1) - 1) / sh!) + 1;
  const outW = Math.floor((w + pl! + pr! - dw! * (kw - 1) - 1) / sw!) + 1;
  ensure(x[1] === wDims[1]! * group && wDims[0]! % group === 0 && outH > 0 && outW > 0, E.CALIBRATION, `${node.name}: input [${x}] does not fit weight [${wDims}] with group ${group}`);
  return { channels: x[1]!, group, h, w, kh, kw, strideH: sh!, strideW: sw!, dilationH: dh!, dilationW: dw!, padTop: pt!, padLeft: pl!, outH, outW };
}

/** Compressed layers in graph order, and the compressed tensors calibration must leave alone. */
function findLayers(graph: Graph, compressed: readonly CompressedTensor[]): { layers: LayerSlot[]; skipped: { name: string; reason: string }[] } {
  const byName = new Map(compressed.map((t) => [t.name, t]));
  const layers: LayerSlot[] = [], skipped: { name: string; reason: string }[] = [];
  const seen = new Set<string>();
  graph.nodes.forEach((node, index) => {
    node.inputs.forEach((name, slot) => {
      const t = byName.get(name);
      if (!t || seen.has(name)) return;
      seen.add(name);
      const kind = node.opType === "Conv" ? "conv" : node.opType === "Gemm" ? "gemm" : node.opType === "MatMul" ? "matmul" : undefined;
      if (!kind || slot !== 1) { skipped.push({ name, reason: `read as ${node.opType} input ${slot}` }); return; }
      if (kind === "gemm" && intAttr(node, "transA", 0) !== 0) { skipped.push({ name, reason: "Gemm with transA" }); return; }
      if (kind === "matmul" && t.dims.length !== 2) { skipped.push({ name, reason: `MatMul weight of rank ${t.dims.length}` }); return; }
      if (kind !== "conv" && t.dims.length !== 2) { skipped.push({ name, reason: `rank ${t.dims.length}` }); return; }
      layers.push({ index, node, tensor: t, kind });
    });
  });
  for (const t of compressed) if (!seen.has(t.name)) skipped.push({ name: t.name, reason: "not read by any node" });
  return { layers, skipped };
}

/**
 * A layer's weight as R×K rows per group: Conv [M, C/g, kh, kw] row m = filter m; Gemm transB = 1
 * [N, K] row n; Gemm transB = 0 and MatMul [K, N] column n. `flat(r, c)` is the tensor position.
 */
function rowLayout(s: LayerSlot): { rows: number; k: number; groups: number; flat: (r: number, c: number) => number } {
  const d = s.tensor.dims;
  if (s.kind === "conv") {
    const k = sizeOf(d.slice(1));
    return { rows: d[0]!, k, groups: intAttr(s.node, "group", 1), flat: (r, c) => r * k + c };
  }
  if (s.kind === "gemm" && intAttr(s.node, "transB", 0) === 1) return { rows: d[0]!, k: d[1]!, groups: 1, flat: (r, c) => r * d[1]! + c };
  return { rows: d[1]!, k: d[0]!, groups: 1, flat: (r, c) => c * d[1]! + r };
}

/** The fixed grid of a compressed tensor: Δ with the layer's largest |code|, or its table. */
function gridOf(t: CompressedTensor): { grid: Grid; zeroCode: number } {
  if (t.codebook.kind === "uniform") {
    let m = 0;
    for (const c of t.codes) m = Math.max(m, Math.abs(c));
    return { grid: { kind: "uniform", step: t.codebook.step, maxCode: m }, zeroCode: 0 };
  }
  const values = t.codebook.values;
  const zero = values.indexOf(0);
  // A table without a 0 entry still decodes an unstored weight as 0; mark "no code" with −1.
  return { grid: { kind: "table", values }, zeroCode: zero };
}

/** Values computable from initializers alone (Identity of a bias, Constant, folded shapes). */
function constantValues(graph: Graph): Set<string> {
  const c = new Set(Object.keys(graph.initializers));
  for (const n of graph.nodes) if (!hasGraphAttr(n) && n.inputs.every((i) => i === "" || c.has(i))) for (const o of n.outputs) if (o) c.add(o);
  return c;
}

/** Slice images [s, e) of a batch-major tensor (a view). */
function sliceBatch(t: Tensor, s: number, e: number): Tensor {
  const per = t.data.length / t.dims[0]!;
  return { dtype: t.dtype, dims: [e - s, ...t.dims.slice(1)], data: (t.data as Float32Array).subarray(s * per, e * per) };
}

/** The bias a layer adds, as a constant: its initializer, through Identity nodes; undefined if none can be found. */
function resolveBias(graph: Graph, name: string): Float32Array | undefined {
  for (let hops = 0; hops < 8; hops++) {
    const t = Object.hasOwn(graph.initializers, name) ? graph.initializers[name] : undefined;
    if (t) return t.dtype === "float32" ? (t.data as Float32Array) : undefined;
    const p = graph.nodes.find((n) => n.outputs.includes(name));
    if (!p || p.opType !== "Identity") return undefined;
    name = p.inputs[0]!;
  }
  return undefined;
}

/** Run `model` over all images of the batch-major `feeds` in chunks, concatenating `outputs`. */
async function runChunked(runner: ModelRunner, model: Model, feeds: Map<string, Tensor>, images: number, batch: number, outputs: readonly string[], onChunk?: (outs: Record<string, Tensor>) => void): Promise<Map<string, Tensor>> {
  const session = await runner(model);
  const result = new Map<string, Tensor>();
  try {
    for (let s = 0; s < images; s += batch) {
      const e = Math.min(images, s + batch);
      const f: Record<string, Tensor> = {};
      for (const [k, t] of feeds) f[k] = sliceBatch(t, s, e);
      const outs = await session.run(f);
      onChunk?.(outs);
      for (const name of outputs) {
        const t = outs[name];
        ensure(t && t.dtype === "float32" && t.dims[0] === e - s, E.CALIBRATION, () => `value ${name} is not a float32 tensor with the batch as its first axis (got ${t ? `${t.dtype}[${t.dims}]` : "nothing"}): the graph cannot be cut there`);
        let full = result.get(name);
        if (!full) {
          const per = t.data.length / (e - s);
          full = { dtype: "float32", dims: [images, ...t.dims.slice(1)], data: new Float32Array(images * per) };
          result.set(name, full);
        }
        (full.data as Float32Array).set(t.data as Float32Array, s * (t.data.length / (e - s)));
      }
    }
  } finally {
    session.dispose();
  }
  return result;
}

/**
 * Calibrate a compressed model. `float` is the FP32 model compression started from (for
 * gm-apot: after filter removal) and must hold every compressed tensor's FP32 weights; `opq` is
 * the one-shot result; `input` holds the N calibration images, batch-major, for the graph's one
 * input. Returns a new OpqModel: same masks (a weight may only become 0), same codebooks, new
 * codes, corrected biases. Throws CompressError (CALIBRATION, NUMERIC, INVALID_OPTION).
 *
 * Per layer, with x̃ its input in the compensated network and x its input in the FP32 one, the
 * objective is ‖Y − Ŵ' X̃'‖² with X̃' = [X̃; 1] and Ŵ' = [Ŵ, b̂] (the bias a free last column,
 * which makes the bias correction of Nagel et al. 2019 §4 (quantization bias correction) the exact least-squares bias given
 * the quantized weights). Y = W X + b ("float": asymmetric, GPTAQ) or Y = W X̃ + b ("layer":
 * GPTQ's own objective, OBC Eq. 1).
 */
export async function calibrateModel(
  float: Model, opq: OpqModel, input: Tensor, runner: ModelRunner, options: CalibrateOptions = {}, onProgress?: CalibrateProgress,
): Promise<CalibrationResult> {
  const t0 = performance.now();
  const o = { ...CALIBRATE_DEFAULTS, ...options };
  ensure(Number.isInteger(o.batch) && o.batch > 0, E.INVALID_OPTION, `calibration batch must be a positive integer, got ${o.batch}`);
  ensure(o.damp >= 0 && Number.isFinite(o.damp), E.INVALID_OPTION, `damp must be ≥ 0, got ${o.damp}`);
  ensure(o.target === "float" || o.target === "layer", E.INVALID_OPTION, `target must be float or layer, got ${o.target}`);
  const images = input.dims[0] ?? 0;
  ensure(input.dtype === "float32" && images > 0 && input.data.length === sizeOf(input.dims), E.INVALID_OPTION, `calibration input must be a non-empty float32 batch, got ${input.dtype}[${input.dims}]`);
  const graph = opq.model.graph;
  const feedsInfo = graph.inputs.filter((v) => !Object.hasOwn(graph.initializers, v.name));
  ensure(feedsInfo.length === 1, E.CALIBRATION, `calibration feeds one graph input, the model has ${feedsInfo.length}`);
  for (const n of graph.nodes) ensure(!hasGraphAttr(n), E.CALIBRATION, `${n.opType} node '${n.name}' has a subgraph: calibration cannot cut control flow`);
  ensure(float.graph.nodes.length === graph.nodes.length, E.CALIBRATION, `the FP32 model has ${float.graph.nodes.length} nodes, the compressed one ${graph.nodes.length}`);
  const { layers, skipped } = findLayers(graph, opq.compressed);
  const floatW = new Map<string, Float32Array>();
  for (const s of layers) {
    const t = Object.hasOwn(float.graph.initializers, s.tensor.name) ? float.graph.initializers[s.tensor.name] : undefined;
    ensure(t && t.dtype === "float32" && t.data.length === sizeOf(s.tensor.dims), E.CALIBRATION, `the FP32 model has no float32 weight ${s.tensor.name} of dims [${s.tensor.dims}]`);
    floatW.set(s.tensor.name, t.data as Float32Array);
  }
  const rnd = mulberry32(o.seed);
  const inits: Record<string, Tensor> = { ...graph.initializers };
  const setInit = (name: string, t: Tensor) => Object.defineProperty(inits, name, { value: t, enumerable: true, writable: true, configurable: true });
  const floatInits: Record<string, Tensor> = { ...float.graph.initializers };
  const nodes = graph.nodes.map((n) => ({ ...n, inputs: [...n.inputs] }));
  const newTensors = new Map<string, CompressedTensor>();

  // Segments: [start of graph, layer 0), [layer 0, layer 1), …, [last layer, end).
  const constants = constantValues(graph);
  const lastRead = new Map<string, number>();
  nodes.forEach((n, i) => { for (const v of n.inputs) if (v && !constants.has(v)) lastRead.set(v, i); });
  const graphOut = new Set(graph.outputs.map((v) => v.name));
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => { for (const v of n.outputs) if (v) producer.set(v, i); });
  const cuts = [0, ...layers.map((s) => s.index), nodes.length];
  const feedName = feedsInfo[0]!.name;
  const frontier = new Map<string, Tensor>([[feedName, input]]);
  const floatFrontier = new Map<string, Tensor>(o.target === "float" ? [[feedName, input]] : []);
  const out: CalibrationLayer[] = [];

  const segmentModel = (a: number, b: number, values: Map<string, Tensor>, weights: Record<string, Tensor>, segNodesOf: readonly Node[]) => {
    const chosen = new Set<number>();
    const need: number[] = [];
    for (let i = a; i < b; i++) if (!segNodesOf[i]!.outputs.every((v) => !v || constants.has(v))) need.push(i);
    // Constant ancestors of the chosen nodes (Identity of a bias, Constant): folded at load.
    const stack = [...need];
    while (stack.length) {
      const i = stack.pop()!;
      if (chosen.has(i)) continue;
      chosen.add(i);
      for (const v of segNodesOf[i]!.inputs) {
        const p = producer.get(v);
        if (v && constants.has(v) && p !== undefined && !chosen.has(p)) stack.push(p);
      }
    }
    const segNodes = [...chosen].sort((x, y) => x - y).map((i) => segNodesOf[i]!);
    const produced = new Set(segNodes.flatMap((n) => n.outputs));
    const reads = new Set(segNodes.flatMap((n) => n.inputs).filter((v) => v !== ""));
    const inputs = [...reads].filter((v) => !produced.has(v) && !Object.hasOwn(weights, v));
    const outputs = [...produced].filter((v) => v && !constants.has(v) && ((lastRead.get(v) ?? -1) >= b || graphOut.has(v)));
    const segInits: Record<string, Tensor> = {};
    for (const v of reads) if (Object.hasOwn(weights, v)) Object.defineProperty(segInits, v, { value: weights[v], enumerable: true, writable: true, configurable: true });
    const inInfo = inputs.map((name): ValueInfo => {
      const t = values.get(name);
      ensure(t, E.CALIBRATION, `value ${name} is needed after a cut but was not kept`);
      return { name, dtype: t.dtype, shape: ["batch", ...t.dims.slice(1)] };
    });
    const model: Model = { ...opq.model, graph: { ...graph, nodes: segNodes, initializers: segInits, inputs: inInfo, outputs: outputs.map((name) => ({ name, dtype: "float32", shape: null })), valueInfo: [] } };
    return { model, inputs, outputs };
  };

  /** Run nodes [a, b) over all images, from and into `values`. */
  const advance = async (a: number, b: number, values: Map<string, Tensor>, weights: Record<string, Tensor>, segNodesOf: readonly Node[]) => {
    const seg = segmentModel(a, b, values, weights, segNodesOf);
    if (seg.outputs.length) {
      const feeds = new Map(seg.inputs.map((n) => [n, values.get(n)!] as [string, Tensor]));
      const res = await runChunked(runner, seg.model, feeds, images, o.batch, seg.outputs);
      for (const [k, v] of res) values.set(k, v);
    }
    for (const k of [...values.keys()]) if ((lastRead.get(k) ?? -1) < b && !graphOut.has(k)) values.delete(k);
  };
  const advanceBoth = async (a: number, b: number) => {
    await advance(a, b, frontier, inits, nodes);
    if (o.target === "float") await advance(a, b, floatFrontier, floatInits, float.graph.nodes);
  };

  await advanceBoth(cuts[0]!, cuts[1]!);
  for (let li = 0; li < layers.length; li++) {
    const tl = performance.now();
    const s = layers[li]!, name = s.tensor.name;
    const x = frontier.get(s.node.inputs[0]!);
    if (!x) {
      skipped.push({ name, reason: "its input does not depend on the images" });
      if (li + 1 < layers.length) await advanceBoth(cuts[li + 1]!, cuts[li + 2]!);
      continue;
    }
    const lay = rowLayout(s);
    const groups = lay.groups, rg = lay.rows / groups, k = lay.k;
    const w0 = floatW.get(name)!;
    // The bias in weight units: the layer computes α·(W x) + β·b, so the free column holds (β/α)·b.
    const alpha = s.kind === "gemm" ? floatAttr(s.node, "alpha", 1) : 1;
    const beta = s.kind === "gemm" ? floatAttr(s.node, "beta", 1) : 1;
    const node = nodes[s.index]!;
    const bName = node.inputs[2] ?? "";
    let biasNote = "corrected";
    let b0: Float32Array | undefined;
    if (!o.bias) biasNote = "kept (bias correction off)";
    else if (s.kind === "matmul") biasNote = "none: MatMul has no bias";
    else if (beta === 0 || alpha === 0) biasNote = "kept: Gemm alpha or beta is 0";
    else {
      b0 = bName ? resolveBias({ ...graph, initializers: inits, nodes }, bName) : new Float32Array(lay.rows);
      if (!b0 || b0.length !== lay.rows) { biasNote = `kept: bias ${bName} is not a constant of ${lay.rows} values`; b0 = undefined; }
    }
    // A fixed bias adds the same to y and ŷ, so it is left out of both; a free one is fitted.
    const offset = new Float64Array(lay.rows);
    if (b0) for (let r = 0; r < lay.rows; r++) offset[r] = (beta / alpha) * b0[r]!;
    // FP32 rows per group.
    const wRows = Array.from({ length: groups }, (_, gr) => {
      const w = new Float32Array(rg * k);
      for (let r = 0; r < rg; r++) for (let c = 0; c < k; c++) w[r * k + c] = w0[lay.flat(gr * rg + r, c)]!;
      return w;
    });
    const acc: HessianAccumulator = createHessian(k, groups, o.gemm);
    const xf = o.target === "float" ? floatFrontier.get(s.node.inputs[0]!) : undefined;
    ensure(o.target !== "float" || (xf && xf.data.length === x.data.length), E.CALIBRATION, `${s.node.name}: the FP32 network gives no matching input`);
    const fside: FloatSide | undefined = xf ? { x: xf.data as Float32Array, weights: wRows, offset, target: createTarget(rg, k, groups) } : undefined;
    const xData = x.data as Float32Array;
    if (s.kind === "conv") {
      const g = convGeometryOf(s.node, x.dims, s.tensor.dims);
      const p = keepProbability(images * g.outH * g.outW, Math.max(o.maxRows, o.minRowsPerInput * k));
      addConvInputs(acc, xData, images, g, p >= 1 ? () => true : () => rnd() < p, fside);
    } else {
      ensure(x.dims[x.dims.length - 1] === k, E.CALIBRATION, `${s.node.name}: input [${x.dims}] does not end in ${k}`);
      const count = xData.length / k;
      const p = keepProbability(count, Math.max(o.maxRows, o.minRowsPerInput * k));
      addDenseInputs(acc, xData, count, p >= 1 ? () => true : () => rnd() < p, fside);
    }
    finishHessian(acc);
    const tCollect = performance.now();
    ensure(acc.rows > 0, E.CALIBRATION, `${s.node.name}: no calibration input reached the layer`);
    // One-shot state of the layer, and the mask to hold.
    const deq0 = dequantize(s.tensor);
    let mask0: Uint8Array = new Uint8Array(w0.length);
    for (const i of s.tensor.indices) mask0[i] = 1;
    const given = o.masks?.get(name);
    if (given) {
      ensure(given.length === w0.length, E.INVALID_OPTION, `mask of ${name} has ${given.length} entries for ${w0.length} weights`);
      for (let i = 0; i < given.length; i++) ensure(given[i] || !mask0[i], E.INVALID_OPTION, `mask of ${name} prunes stored weight ${i}`);
      mask0 = given;
    }
    const biasMask = bName ? o.masks?.get(bName) : undefined;
    ensure(!biasMask || biasMask.length === lay.rows, E.INVALID_OPTION, `mask of bias ${bName} has ${biasMask?.length} entries for ${lay.rows} rows`);
    const { grid, zeroCode } = gridOf(s.tensor);
    const round = gridRounder(grid);
    const newDeq = new Float32Array(w0.length), newCodes = new Int32Array(w0.length), newStored = new Uint8Array(w0.length);
    const newBias = new Float32Array(lay.rows);
    const n = acc.rows, ka = b0 ? k + 1 : k;
    let errBefore = 0, errAfter = 0, energy = 0, damp = o.damp;
    const parts: { r0: number; ha: Float64Array; q0: Float64Array; t: Float64Array; yy: number[]; prep: PreparedCompensation }[] = [];
    for (let gr = 0; gr < groups; gr++) {
      const r0 = gr * rg;
      // Augmented system over [x; 1] when the bias is free: H' = [[H, Σx], [Σxᵀ, n]].
      const h = acc.h[gr]!, sum = acc.sum[gr]!;
      const ha = new Float64Array(ka * ka);
      for (let i = 0; i < k; i++) ha.set(h.subarray(i * k, i * k + k), i * ka);
      if (b0) { for (let i = 0; i < k; i++) { ha[i * ka + k] = sum[i]!; ha[k * ka + i] = sum[i]!; } ha[k * ka + k] = n; }
      const w = new Float64Array(rg * ka), m = new Uint8Array(rg * ka), q0 = new Float64Array(rg * ka);
      for (let r = 0; r < rg; r++) {
        for (let c = 0; c < k; c++) {
          const f = lay.flat(r0 + r, c);
          w[r * ka + c] = w0[f]!; m[r * ka + c] = mask0[f]!; q0[r * ka + c] = deq0[f]!;
        }
        if (b0) { w[r * ka + k] = offset[r0 + r]!; m[r * ka + k] = 1; q0[r * ka + k] = offset[r0 + r]!; }
      }
      // Target T = Σ y x̃'ᵀ and the energy Σ y²: from the FP32 side, or W'H' and w'H'w'ᵀ on the same inputs.
      const t = new Float64Array(rg * ka);
      let yy: number[];
      if (fside) {
        const ft = fside.target.t[gr]!;
        for (let r = 0; r < rg; r++) {
          t.set(ft.subarray(r * k, r * k + k), r * ka);
          if (b0) t[r * ka + k] = fside.target.ysum[r0 + r]!;
        }
        yy = Array.from({ length: rg }, (_, r) => fside.target.yy[r0 + r]!);
      } else {
        for (let r = 0; r < rg; r++) for (let i = 0; i < ka; i++) {
          let v = 0;
          for (let j = 0; j < ka; j++) v += w[r * ka + j]! * ha[j * ka + i]!;
          t[r * ka + i] = v;
        }
        yy = Array.from({ length: rg }, (_, r) => { let v = 0; for (let i = 0; i < ka; i++) v += t[r * ka + i]! * w[r * ka + i]!; return v; });
      }
      const prep = prepareCompensation(w, m, rg, ka, ha, { damp: o.damp, actOrder: o.actOrder, blockSize: o.blockSize, target: t, free: b0 ? 1 : 0, gemm: o.gemm, anchor: o.anchor });
      damp = Math.max(damp, prep.damp);
      parts.push({ r0, ha, q0, t, yy, prep });
    }
    // Rate-aware rounding (see PreparedCompensation.solve): the smallest λ whose zero-order bit
    // estimate stays within the one-shot layer's, so the file keeps its size (issue 10: ≤ 2%).
    // The estimate is the format's entropy bound of the layer's gaps and codes as stored (the rANS
    // coder gets within 1.03–1.05× of it); a Bernoulli field over the positions overstates what a
    // dropped weight saves (LeNet-5's fc1 at (0.5, 2): 22.0 kbit of gaps against a 25.5 kbit field),
    // which let calibrated 2-bit files grow.
    const total = w0.length;
    const budget = streamBits(s.tensor.indices, s.tensor.codes);
    const hist = new Map<number, number>();
    for (const c of s.tensor.codes) hist.set(c, (hist.get(c) ?? 0) + 1);
    const nz = Math.max(1, s.tensor.codes.length), rho = Math.min(0.5, nz / total);
    const positionBits = Math.log2((1 - rho) / rho), symbols = Math.max(2, hist.size + 1);
    // Bits per code, tabulated over the grid's codes (called once per kept weight and sweep).
    const [codeLo, codeHi] = grid.kind === "uniform" ? [-grid.maxCode, grid.maxCode] : [0, grid.values.length - 1];
    const codeBits = Float64Array.from({ length: codeHi - codeLo + 1 }, (_, i) => positionBits - Math.log2(((hist.get(i + codeLo) ?? 0) + 0.5) / (nz + 0.5 * symbols)));
    const bitsOf = (code: number) => codeBits[code - codeLo]!;
    const neighbours = gridNeighbours(grid), spacing = gridSpacing(grid);
    // One sweep of every group at rate weight μ (its rows `sub` only, as positions ranked in
    // tensor order, when given), with the stream bits of what it stores.
    const solveAll = (mu: number, sub?: RowSubset) => {
      const results = parts.map((pt) => pt.prep.solve(round, zeroCode, mu > 0 ? { lambda: mu * spacing * spacing * pt.prep.scale, bits: bitsOf, neighbours } : undefined, sub?.rows));
      // The stored positions and codes in tensor order, as the file will hold them.
      const flatStored = new Uint8Array(total), flatCodes = new Int32Array(total);
      results.forEach((res, gi) => {
        const r0 = parts[gi]!.r0, rowsOf = sub?.rows;
        for (let j = 0, n = rowsOf ? rowsOf.length : rg; j < n; j++) for (let c = 0; c < k; c++) {
          const p = j * ka + c;
          if (res.stored[p]) { const f = lay.flat(r0 + (rowsOf ? rowsOf[j]! : j), c); flatStored[f] = 1; flatCodes[f] = res.codes[p]!; }
        }
      });
      const idx: number[] = [], cds: number[] = [];
      for (let f = 0; f < total; f++) if (flatStored[f]) { idx.push(sub ? sub.rank[f]! : f); cds.push(flatCodes[f]!); }
      return { results, bits: streamBits(idx, cds) };
    };
    const fits = (bits: number, limit: number) => bits <= limit * (1 + o.rateSlack);
    // The smallest μ (to 1/32 of its bracket) whose sweep fits `limit`: ×4 steps from 0.05 to a
    // bracket, then 5 bisections; undefined if even μ = 0.05·4⁷ does not fit.
    const searchMu = (limit: number, sub?: RowSubset) => {
      let lo = 0, hi = 0.05, found: ReturnType<typeof solveAll> | undefined;
      for (let tries = 0; tries < 8; tries++, hi *= 4) {
        const r = solveAll(hi, sub);
        if (fits(r.bits, limit)) { found = r; break; }
        lo = hi;
      }
      if (!found) return undefined;
      for (let it = 0; it < 5; it++) {
        const mid = (lo + hi) / 2, r = solveAll(mid, sub);
        if (fits(r.bits, limit)) { hi = mid; found = r; } else lo = mid;
      }
      return { mu: hi, step: hi - lo, result: found };
    };
    // Large layers price μ on every RATE_SUBSET-th row (rows are independent given U; the budget
    // is the one-shot layer's stream over the same rows), then confirm it on all rows, raising μ by
    // its bracket step while the whole layer does not fit.
    const sub = groups === 1 && rg >= RATE_SUBSET_MIN_ROWS ? rowSubset(rg, k, lay.flat, total) : undefined;
    let best: ReturnType<typeof solveAll> | undefined, mu = 0;
    if (!o.rate) best = solveAll(0);
    else if (sub) {
      const subBudget = streamBits(Array.from(s.tensor.indices).filter((f) => sub.rank[f]! >= 0).map((f) => sub.rank[f]!), s.tensor.codes.filter((_, i) => sub.rank[s.tensor.indices[i]!]! >= 0));
      const atZero = fits(solveAll(0, sub).bits, subBudget) ? solveAll(0) : undefined;
      if (atZero && fits(atZero.bits, budget)) best = atZero;
      else {
        const priced = searchMu(subBudget, sub);
        for (let tries = 0; priced && tries < 4 && !best; tries++) {
          const m = priced.mu + tries * priced.step, r = solveAll(m);
          if (fits(r.bits, budget)) { best = r; mu = m; }
        }
      }
    }
    if (o.rate && !best) {
      const zero = solveAll(0);
      const searched = fits(zero.bits, budget) ? undefined : searchMu(budget);
      best = searched?.result ?? zero;
      mu = searched?.mu ?? 0;
    }
    parts.forEach((pt, gi) => {
      const res = best!.results[gi]!, r0 = pt.r0;
      for (let r = 0; r < rg; r++) {
        for (let c = 0; c < k; c++) {
          const f = lay.flat(r0 + r, c), p = r * ka + c;
          newDeq[f] = res.weights[p]!; newCodes[f] = res.codes[p]!; newStored[f] = res.stored[p]!;
        }
        // A held bias entry belongs to a row with no weight (its mask): zero, and rows are independent.
        if (b0) newBias[r0 + r] = biasMask && !biasMask[r0 + r] ? 0 : (res.weights[r * ka + k]! * alpha) / beta;
      }
      // Errors against Y: Σ_r ŵ'H'ŵ'ᵀ − 2 ŵ'·T_r + Σ y² (one-shot Ŵ with the FP32 bias, then
      // calibrated); on the rate search's row subset where it has one (an estimate of the ratio
      // that saves two R·K² products: 2 × 10.9 GMAC on a 512×4608 layer).
      const { ha, t, yy } = pt;
      const errRows = sub ? sub.rows : Array.from({ length: rg }, (_, r) => r);
      let h32: Float32Array | undefined;
      const err = (v: ArrayLike<number>) => {
        if (o.gemm && ka >= 256) {
          // Σ_r v_r H' v_rᵀ by one GEMM (V H'), then row dots.
          const n = errRows.length, v32 = new Float32Array(n * ka), vh = new Float32Array(n * ka);
          errRows.forEach((r, j) => { for (let i = 0; i < ka; i++) v32[j * ka + i] = v[r * ka + i]!; });
          o.gemm(false, false, n, ka, ka, v32, ka, h32 ??= Float32Array.from(ha), ka, vh);
          let e = 0;
          errRows.forEach((r, j) => {
            let quad = 0, lin = 0;
            for (let i = 0; i < ka; i++) { quad += v32[j * ka + i]! * vh[j * ka + i]!; lin += v[r * ka + i]! * t[r * ka + i]!; }
            e += quad - 2 * lin + yy[r]!;
          });
          return e;
        }
        let e = 0;
        for (const r of errRows) {
          let quad = 0, lin = 0;
          for (let i = 0; i < ka; i++) {
            const vi = v[r * ka + i]!;
            if (vi === 0) continue;
            let hv = 0;
            for (let j = 0; j < ka; j++) hv += ha[i * ka + j]! * v[r * ka + j]!;
            quad += vi * hv;
            lin += vi * t[r * ka + i]!;
          }
          e += quad - 2 * lin + yy[r]!;
        }
        return e;
      };
      errBefore += err(pt.q0);
      errAfter += err(res.weights);
      for (const r of errRows) energy += yy[r]!;
    });
    // The new compressed tensor: same dims, same codebook, positions ⊆ the held mask.
    let nnz = 0;
    for (let i = 0; i < newStored.length; i++) nnz += newStored[i]!;
    const indices = new Uint32Array(nnz), codes = new Int32Array(nnz);
    for (let i = 0, j = 0; i < newStored.length; i++) if (newStored[i]) { indices[j] = i; codes[j++] = newCodes[i]!; }
    newTensors.set(name, { ...s.tensor, dims: [...s.tensor.dims], indices, codes });
    setInit(name, { dtype: "float32", dims: [...s.tensor.dims], data: newDeq });
    // Bias: update the layer's own bias initializer, or give the node a new one.
    if (b0) {
      const own = bName !== "" && Object.hasOwn(inits, bName) && nodes.every((nd, i) => i === s.index || !nd.inputs.includes(bName)) && !graphOut.has(bName);
      let target = bName;
      if (!own) {
        target = `${name}::bias`;
        for (let u = 1; Object.hasOwn(inits, target) || producer.has(target); u++) target = `${name}::bias${u}`;
        while (node.inputs.length < 2) node.inputs.push("");
        node.inputs[2] = target;
      }
      setInit(target, { dtype: "float32", dims: own ? [...inits[bName]!.dims] : [lay.rows], data: newBias });
    }
    const rel = (v: number) => (energy > 0 ? Math.max(0, v) / energy : 0);
    const layerOut: CalibrationLayer = {
      name, node: s.node.name || s.node.outputs[0]!, opType: s.node.opType, rows: lay.rows, inputs: k, groups,
      samples: acc.rows, offered: acc.offered, errorBefore: rel(errBefore), errorAfter: rel(errAfter),
      storedBefore: s.tensor.indices.length, storedAfter: nnz, bias: biasNote, damp, seconds: 0, phases: { collect: 0, solve: 0, forward: 0 },
      bitsBefore: budget, bitsAfter: best!.bits, rateWeight: mu,
    };
    const tSolve = performance.now();
    if (li + 1 < layers.length) await advanceBoth(cuts[li + 1]!, cuts[li + 2]!);
    const tEnd = performance.now();
    layerOut.seconds = (tEnd - tl) / 1000;
    layerOut.phases = { collect: (tCollect - tl) / 1000, solve: (tSolve - tCollect) / 1000, forward: (tEnd - tSolve) / 1000 };
    out.push(layerOut);
    onProgress?.(li + 1, layers.length, name, layerOut);
  }
  // The calibrated OpqModel: compressed tensors replaced, new/updated biases kept as initializers.
  const finalInits: Record<string, Tensor> = {};
  const compressedNames = new Set(opq.compressed.map((t) => t.name));
  for (const [k, v] of Object.entries(inits)) if (!compressedNames.has(k)) Object.defineProperty(finalInits, k, { value: v, enumerable: true, writable: true, configurable: true });
  const seconds = (performance.now() - t0) / 1000;
  const result: OpqModel = {
    ...opq,
    model: { ...opq.model, graph: { ...graph, nodes, initializers: finalInits } },
    compressed: opq.compressed.map((t) => newTensors.get(t.name) ?? t),
    metadata: { ...opq.metadata, calibration: { images, seconds, target: o.target, bias: o.bias, damp: o.damp, actOrder: o.actOrder, layers: out.length } },
  };
  return { opq: result, layers: out, images, seconds, skipped };
}
