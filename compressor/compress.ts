/**
 * compressModel: a Model in, an OpqModel and its report out. Finds the compressible weights
 * (Conv input 1, Gemm input 1, MatMul's initializer input), runs OPQ or GM+APoT on them and keeps
 * everything else (biases, BatchNorm parameters, shapes) exact.
 * @module
 */
import { encodeOpq, type EncodeOptions, type Graph, inspectOpq, type Model, type Node, type OpqModel, sizeOf, type Tensor } from "../format/mod.ts";
import { quantizeApot, quantizeUniformMax } from "./apot.ts";
import { COMPRESS_ERROR_CODES as E, CompressError, ensure } from "./errors.ts";
import { pruneFilters } from "./fpgm.ts";
import { opqCompress, type WeightLayer } from "./opq.ts";
import { addFileStats, buildGmApotReport, buildOpqReport, type CompressReport, type GmApotLayer, weightHistogram } from "./report.ts";

/** Compression methods. */
export const METHODS = ["opq", "gm-apot"] as const;
/** A compression method. */
export type Method = (typeof METHODS)[number];

/**
 * Defaults. p* = 0.74 and B = 3 are the OPQ paper's ResNet-50 operating point. The cap of 0.9
 * keeps at least 1 weight in 10 in every layer: a layer is a serial bottleneck, and at 99.8%
 * (what the analytic β gives one ResNet-20 layer at 0.74) a 3×3×64 filter keeps about one weight.
 * Measured on ResNet-20 at (0.6, 3), 10k test images: 72.1% top-1 with the cap, 61.8% without
 * (0.95: 68.0% on 2k); at (0.74, 3) it costs size (23.2× instead of 25.6× smaller).
 */
export const COMPRESS_DEFAULTS = {
  method: "opq" as Method,
  // The paper's operating point (0.74, 3) assumes finetuning (Algorithm 1, `opq finetune`):
  // one-shot at 0.74 leaves ResNet-20 near chance (11.9% top-1 on Fashion-MNIST), while 0.5
  // keeps 89.3% at 15.5× smaller. One-shot compression defaults to what works without training.
  sparsity: 0.5,
  bits: 3,
  apotBits: 4 as 3 | 4,
  maxLayerSparsity: 0.9,
  filterRate: 0.3,
} as const;

/** Options of compressModel; every field has a default (COMPRESS_DEFAULTS). */
export interface CompressOptions {
  method?: Method;
  /** OPQ target global pruning rate p*. */
  sparsity?: number;
  /** OPQ: nominal bits B (Eq. 9). gm-apot: APoT bits of the middle layers, 3 or 4. */
  bits?: number;
  /** OPQ per-layer sparsity cap. */
  maxLayerSparsity?: number;
  /** gm-apot: FPGM filter rate r. */
  filterRate?: number;
  /** File name recorded in the metadata. */
  source?: string;
  /** Size of the FP32 input; defaults to 4 bytes per float parameter. */
  fp32Bytes?: number;
}

/** What compressModel returns. */
export interface CompressResult {
  opq: OpqModel;
  report: CompressReport;
  /** The FP32 model the weights were quantized from (for gm-apot: after filter removal); calibration's reference. */
  float: Model;
  /** OPQ's pruning masks by tensor name (gm-apot: none; its mask is the stored positions). */
  masks: Map<string, Uint8Array>;
}

/** Progress of a compression phase. */
export type ProgressFn = (phase: string, done: number, total: number) => void;

/** A compressible weight: the node using it and the axis of its output channels. */
export interface WeightSlot {
  name: string;
  node: string;
  opType: string;
  dims: number[];
  channelAxis: number;
}

function intAttr(node: Node, name: string, fallback: number): number {
  const a = node.attrs[name];
  return a && a.type === "int" ? a.value : fallback;
}

/** Every value name a graph (and its subgraphs) reads, with the nodes and slots reading it. */
function collectUses(graph: Graph, uses = new Map<string, { node: Node; slot: number }[]>()): Map<string, { node: Node; slot: number }[]> {
  for (const node of graph.nodes) {
    node.inputs.forEach((name, slot) => { if (name) (uses.get(name) ?? uses.set(name, []).get(name)!).push({ node, slot }); });
    for (const a of Object.values(node.attrs)) if (a.type === "graph") collectUses(a.value, uses);
  }
  return uses;
}

/**
 * The weights to compress, in graph order: float32 initializers of rank ≥ 2 read only as Conv
 * input 1, Gemm input 1 or a MatMul operand (channel axis: Conv 0; Gemm 0 if transB else 1;
 * MatMul B last, A rank − 2). An initializer read anywhere else stays exact; `skipped` says why.
 */
export function findWeights(graph: Graph): { slots: WeightSlot[]; skipped: { name: string; reason: string }[] } {
  const uses = collectUses(graph);
  const outputs = new Set(graph.outputs.map((o) => o.name));
  const slots: WeightSlot[] = [], skipped: { name: string; reason: string }[] = [];
  const seen = new Set<string>();
  for (const node of graph.nodes) {
    if (node.domain !== "" && node.domain !== "ai.onnx") continue;
    const cands: [number, number][] = []; // [slot, channel axis]
    if (node.opType === "Conv") cands.push([1, 0]);
    else if (node.opType === "Gemm") cands.push([1, intAttr(node, "transB", 0) === 1 ? 0 : 1]);
    else if (node.opType === "MatMul") cands.push([1, -1], [0, -2]);
    for (const [slot, axis] of cands) {
      const name = node.inputs[slot];
      if (!name || seen.has(name) || !Object.hasOwn(graph.initializers, name)) continue;
      seen.add(name);
      const t = graph.initializers[name]!;
      if (t.dtype !== "float32") { skipped.push({ name, reason: `dtype ${t.dtype}` }); continue; }
      ensure(t.data.length === sizeOf(t.dims), E.INVALID_MODEL, `initializer ${name} has ${t.data.length} values for dims [${t.dims}]`);
      if (t.dims.length < 2 || (node.opType === "Conv" && t.dims.length < 3)) { skipped.push({ name, reason: `rank ${t.dims.length}` }); continue; }
      if (t.data.length === 0) { skipped.push({ name, reason: "empty" }); continue; }
      const others = uses.get(name)!.filter((u) => !(u.node.opType === node.opType && u.slot === slot));
      if (others.length || outputs.has(name)) { skipped.push({ name, reason: "also read as a non-weight input or graph output" }); continue; }
      slots.push({ name, node: node.name || node.outputs[0] || node.opType, opType: node.opType, dims: [...t.dims], channelAxis: axis < 0 ? t.dims.length + axis : axis });
    }
  }
  return { slots, skipped };
}

/** Check the parts of a model the compressor relies on; throws INVALID_MODEL. */
function validateModel(model: Model): void {
  const g = model?.graph;
  ensure(g && Array.isArray(g.nodes) && g.initializers && typeof g.initializers === "object", E.INVALID_MODEL, "model has no graph");
  for (const n of g.nodes) ensure(n && typeof n.opType === "string" && Array.isArray(n.inputs) && Array.isArray(n.outputs), E.INVALID_MODEL, "malformed node");
}

function resolveOptions(o: CompressOptions): Required<Omit<CompressOptions, "source" | "fp32Bytes">> {
  const method = o.method ?? COMPRESS_DEFAULTS.method;
  ensure((METHODS as readonly string[]).includes(method), E.INVALID_OPTION, `method must be one of ${METHODS.join(", ")}, got ${method}`);
  const r = {
    method,
    sparsity: o.sparsity ?? COMPRESS_DEFAULTS.sparsity,
    bits: o.bits ?? (method === "opq" ? COMPRESS_DEFAULTS.bits : COMPRESS_DEFAULTS.apotBits),
    maxLayerSparsity: o.maxLayerSparsity ?? COMPRESS_DEFAULTS.maxLayerSparsity,
    filterRate: o.filterRate ?? COMPRESS_DEFAULTS.filterRate,
  };
  for (const [k, v] of Object.entries(r)) if (k !== "method") ensure(typeof v === "number" && Number.isFinite(v), E.INVALID_OPTION, `${k} must be a finite number`);
  if (method === "gm-apot") ensure(r.bits === 3 || r.bits === 4, E.INVALID_OPTION, `gm-apot bits must be 3 or 4, got ${r.bits}`);
  return r;
}

/** Total float parameters (elements of float initializers). */
function floatParams(graph: Graph): number {
  let n = 0;
  for (const t of Object.values(graph.initializers)) if (t.dtype === "float32" || t.dtype === "float16" || t.dtype === "float64") n += t.data.length;
  return n;
}

/** The graph without the compressed initializers (they live in `compressed`); also dropped from graph inputs. */
function withoutWeights(model: Model, graph: Graph, names: Set<string>): Model {
  const initializers: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(graph.initializers)) if (!names.has(k)) Object.defineProperty(initializers, k, { value: v, enumerable: true, writable: true, configurable: true });
  return { ...model, graph: { ...graph, initializers, inputs: graph.inputs.filter((i) => !names.has(i.name)) } };
}

/**
 * Compress a model. OPQ (default): one-shot pruning + unified channel-wise quantization of every
 * Conv/Gemm/MatMul weight. gm-apot: FPGM filter removal, then APoT (first and last layers 8-bit).
 * Throws CompressError (INVALID_OPTION, INVALID_MODEL, NO_WEIGHTS, NUMERIC).
 */
export function compressModel(model: Model, options: CompressOptions = {}, onProgress?: ProgressFn): CompressResult {
  const t0 = performance.now();
  const o = resolveOptions(options);
  validateModel(model);
  const params = floatParams(model.graph);
  const fp32Bytes = options.fp32Bytes ?? 4 * params;
  const source = options.source ?? "";
  let graph = model.graph;
  let pruneInfo: ReturnType<typeof pruneFilters> | undefined;
  if (o.method === "gm-apot") {
    onProgress?.("fpgm", 0, 1);
    pruneInfo = pruneFilters(graph, o.filterRate);
    graph = pruneInfo.graph;
    onProgress?.("fpgm", 1, 1);
  }
  const { slots, skipped } = findWeights(graph);
  if (slots.length === 0) throw new CompressError(E.NO_WEIGHTS, "the model has no float32 Conv/Gemm/MatMul weight initializer");
  const layers: WeightLayer[] = slots.map((s) => ({ name: s.name, dims: s.dims, channelAxis: s.channelAxis, data: graph.initializers[s.name]!.data as Float32Array }));
  const names = new Set(slots.map((s) => s.name));
  const out = withoutWeights(model, graph, names);
  const base = { method: o.method, source, fp32Bytes, params, skipped, options: o };

  let report: CompressReport;
  let tensors;
  const masks = new Map<string, Uint8Array>();
  if (o.method === "opq") {
    let done = 0;
    const r = opqCompress(layers, o, () => onProgress?.("opq", ++done, 3 * layers.length));
    tensors = r.tensors;
    r.masks.forEach((m, i) => masks.set(layers[i]!.name, m));
    report = buildOpqReport({ ...base, slots, result: r });
  } else {
    const orig = new Map(findWeights(model.graph).slots.map((s) => [s.name, sizeOf(s.dims)]));
    const gm: GmApotLayer[] = [];
    tensors = layers.map((l, i) => {
      const edge = i === 0 || i === layers.length - 1;
      const q = edge ? quantizeUniformMax(l.name, l.dims, l.data, 8) : quantizeApot(l.name, l.dims, l.data, o.bits as 3 | 4);
      const pr = pruneInfo!.pruned.find((p) => p.weight === l.name);
      gm.push({
        slot: slots[i]!, originalParams: orig.get(l.name) ?? l.data.length, params: l.data.length, stored: q.tensor.indices.length,
        bits: edge ? 8 : o.bits, scheme: edge ? "uniform" : "apot", scale: "alpha" in q ? q.alpha : q.step, mse: q.sse / l.data.length,
        removedFilters: pr?.removed.length ?? 0, filters: pr?.filters ?? l.dims[l.channelAxis]!,
      });
      onProgress?.("apot", i + 1, layers.length);
      return q.tensor;
    });
    report = buildGmApotReport({ ...base, layers: gm, pruned: pruneInfo!.pruned, skippedConvs: pruneInfo!.skipped });
  }
  report.layers.forEach((l, i) => {
    const data = layers[i]!.data, kept = tensors[i]!.indices;
    l.histogram = weightHistogram(data);
    let t = Infinity;
    for (let k = 0; k < kept.length; k++) t = Math.min(t, Math.abs(data[kept[k]!]!));
    // OPQ's one threshold β, or the layer's own (its smallest kept magnitude) where the cap binds or for gm-apot.
    if (kept.length < data.length) l.threshold = report.opq && !l.capped ? report.opq.beta : Number.isFinite(t) ? t : undefined;
  });
  report.seconds = (performance.now() - t0) / 1000;
  // Scalars only: anything per layer (size, nnz, step, table) is in the compressed tensors
  // themselves, and a copy here would cost float64s that deflate cannot shrink (issue 2).
  const metadata: Record<string, unknown> = {
    method: o.method, targetSparsity: o.method === "opq" ? o.sparsity : o.filterRate, sparsity: report.sparsity, bits: o.bits,
    fp32Bytes, source, params,
  };
  return { opq: { model: out, compressed: tensors, metadata }, report, float: { ...model, graph }, masks };
}

/** Encode a compressModel result to `.opq` bytes and add the file's real costs to its report. */
export function encodeCompressed(result: { opq: OpqModel; report: CompressReport }, options?: EncodeOptions): Uint8Array {
  const bytes = encodeOpq(result.opq, options);
  // The report needs each layer's stored bytes, not the other codec's sizes: skip re-encoding.
  addFileStats(result.report, inspectOpq(bytes, { compare: false }));
  return bytes;
}
