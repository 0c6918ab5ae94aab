/**
 * A finetuning plan: the allocation of a one-shot compression without the weights, so that an
 * external trainer (PyTorch DDP, python/opq_torch) can finetune under exactly the masks M_i and
 * steps Δ_i (or APoT tables) OPQ chose, and `compressWithPlan` can encode the result with them.
 *
 * A plan is a safetensors file (format/safetensors.ts). `__metadata__` holds strings:
 * `format` = "opq-plan", `plan_version` = "1", `opq_version`, `model_sha256` (of the planned
 * ONNX file), `source`, `options` (JSON of the compress options) and `layers` (a JSON array, one
 * entry per compressed initializer: `name`, `node`, `op_type`, `dims`, `bits`, `codebook`
 * ("uniform" | "table"), `kept`). Per layer, the tensors are
 *  - `<name>.mask`: U8 [ceil(n/8)], the row-major keep mask bit-packed LSB first (element i is
 *    bit i mod 8 of byte ⌊i/8⌋; numpy: `unpackbits(bitorder="little")`), pad bits zero;
 *  - `<name>.step`: F32 [] the step Δ_i (uniform), or `<name>.table`: F32 [K] the levels (table).
 * Ŵ = M ∘ Q(W): uniform Q(w) = Δ·round(w/Δ) (Eq. 10, fixed Δ); table Q(w) = the nearest level.
 * @module
 */
import { type Codebook, codebookValue, type CompressedTensor, FORMAT_ERROR_CODES as F, FormatError, type Model, type OpqModel, readSafetensors, safeTensorFloat32, type SafeTensorInput, sizeOf, type Tensor, writeSafetensors } from "../format/mod.ts";
import { compressModel, type CompressOptions, findWeights } from "./compress.ts";
import { COMPRESS_ERROR_CODES as E, CompressError, ensure } from "./errors.ts";

/** Value of the `format` metadata key of every plan. */
export const PLAN_FORMAT = "opq-plan";
/** The plan layout version this build writes and reads. */
export const PLAN_VERSION = "1";

/** One compressed initializer's fixed allocation. */
export interface PlanLayer {
  /** The ONNX initializer name. */
  name: string;
  /** The ONNX node reading it (its name, which carries the PyTorch module path). */
  node: string;
  opType: string;
  dims: number[];
  /** 1 where a weight is kept, 0 where it is pruned (unpacked, one byte per weight). */
  mask: Uint8Array;
  /** Number of kept weights (ones in `mask`). */
  kept: number;
  /** Bits of the one-shot codes: ⌈log2(2·max|code| + 1)⌉ uniform, ⌈log2 K⌉ table. */
  bits: number;
  codebook: Codebook;
}

/** A whole plan. */
export interface Plan {
  layers: PlanLayer[];
  /** The compress options it was made with (method, sparsity, bits, …). */
  options: Record<string, unknown>;
  modelSha256: string;
  opqVersion: string;
  source: string;
}

/** Where a plan comes from: the file's hash and name, and the opq version. */
export interface PlanProvenance {
  modelSha256: string;
  opqVersion: string;
  source?: string;
}

function bitsOf(t: CompressedTensor): number {
  if (t.codebook.kind === "table") return Math.max(1, Math.ceil(Math.log2(t.codebook.values.length)));
  let m = 0;
  for (const c of t.codes) m = Math.max(m, Math.abs(c));
  return Math.max(1, Math.ceil(Math.log2(2 * m + 1)));
}

/**
 * The plan of a model: one-shot compression (compressModel) reduced to its masks and codebooks.
 * gm-apot is only plannable with `filterRate: 0` (FPGM removes filters, so the finetuned model
 * would need a different architecture); throws CompressError INVALID_OPTION otherwise.
 */
export function makePlan(model: Model, options: CompressOptions, provenance: PlanProvenance): { plan: Plan; result: ReturnType<typeof compressModel> } {
  if (options.method === "gm-apot") {
    ensure(options.filterRate === 0, E.INVALID_OPTION, "a gm-apot plan needs --filter-rate 0: FPGM removes filters, and the trainer's model must keep the planned shapes");
  }
  const result = compressModel(model, options);
  const nodes = new Map(findWeights(model.graph).slots.map((s) => [s.name, s]));
  const layers = result.opq.compressed.map((t): PlanLayer => {
    const mask = new Uint8Array(sizeOf(t.dims));
    for (const i of t.indices) mask[i] = 1;
    const slot = nodes.get(t.name)!;
    const codebook: Codebook = t.codebook.kind === "uniform" ? { kind: "uniform", step: Math.fround(t.codebook.step) } : { kind: "table", values: Float32Array.from(t.codebook.values) };
    return { name: t.name, node: slot.node, opType: slot.opType, dims: [...t.dims], mask, kept: t.indices.length, bits: bitsOf(t), codebook };
  });
  const plan: Plan = { layers, options: { ...result.report.options, method: result.report.method }, modelSha256: provenance.modelSha256, opqVersion: provenance.opqVersion, source: provenance.source ?? "" };
  return { plan, result };
}

/** Bit-pack a 0/1 mask LSB first. */
export function packMask(mask: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(mask.length / 8));
  for (let i = 0; i < mask.length; i++) if (mask[i]) out[i >> 3] = out[i >> 3]! | (1 << (i & 7));
  return out;
}

/** The plan as safetensors bytes. */
export function encodePlan(plan: Plan): Uint8Array {
  const tensors: [string, SafeTensorInput][] = [];
  for (const l of plan.layers) {
    tensors.push([`${l.name}.mask`, { dtype: "U8", shape: [Math.ceil(l.mask.length / 8)], data: packMask(l.mask) }]);
    if (l.codebook.kind === "uniform") tensors.push([`${l.name}.step`, { dtype: "F32", shape: [], data: Float32Array.of(l.codebook.step) }]);
    else tensors.push([`${l.name}.table`, { dtype: "F32", shape: [l.codebook.values.length], data: Float32Array.from(l.codebook.values) }]);
  }
  const layers = plan.layers.map((l) => ({ name: l.name, node: l.node, op_type: l.opType, dims: l.dims, bits: l.bits, codebook: l.codebook.kind, kept: l.kept }));
  return writeSafetensors(tensors, {
    format: PLAN_FORMAT, plan_version: PLAN_VERSION, opq_version: plan.opqVersion, model_sha256: plan.modelSha256,
    source: plan.source, options: JSON.stringify(plan.options), layers: JSON.stringify(layers),
  });
}

const corrupt = (msg: string) => new FormatError(F.CORRUPT, `plan: ${msg}`);

function parseJson(s: string | undefined, what: string): unknown {
  if (s === undefined) throw corrupt(`no ${what} in the metadata`);
  try {
    return JSON.parse(s);
  } catch {
    throw corrupt(`${what} is not JSON`);
  }
}

/**
 * Read a plan. Throws FormatError: the safetensors reader's codes for a broken container;
 * BAD_MAGIC for a safetensors file that is not a plan; UNSUPPORTED_VERSION; CORRUPT for bad
 * layer metadata, a mask of the wrong length or with set pad bits, a kept count that is not the
 * mask's, a missing, misshapen or non-finite step or table, or a tensor no layer owns.
 */
export function decodePlan(bytes: Uint8Array): Plan {
  const { tensors, metadata: md } = readSafetensors(bytes);
  if (md.format !== PLAN_FORMAT) throw new FormatError(F.BAD_MAGIC, `not an opq plan (metadata format ${JSON.stringify(md.format ?? null)})`);
  if (md.plan_version !== PLAN_VERSION) throw new FormatError(F.UNSUPPORTED_VERSION, `plan version ${JSON.stringify(md.plan_version)}, this opq reads ${PLAN_VERSION}`);
  const options = parseJson(md.options, "options");
  if (options === null || typeof options !== "object" || Array.isArray(options)) throw corrupt("options is not an object");
  const raw = parseJson(md.layers, "layers");
  if (!Array.isArray(raw)) throw corrupt("layers is not an array");
  const used = new Set<string>(), names = new Set<string>();
  const layers = raw.map((r: Record<string, unknown>, k): PlanLayer => {
    if (r === null || typeof r !== "object") throw corrupt(`layer ${k} is not an object`);
    const { name, node, op_type: opType, dims, bits, codebook, kept } = r;
    if (typeof name !== "string" || typeof node !== "string" || typeof opType !== "string") throw corrupt(`layer ${k}: name, node and op_type must be strings`);
    if (names.has(name)) throw corrupt(`layer ${name} is listed twice`);
    names.add(name);
    if (!Array.isArray(dims) || dims.length === 0 || !dims.every((d) => Number.isSafeInteger(d) && d > 0)) throw corrupt(`${name}: bad dims`);
    if (!Number.isInteger(bits) || (bits as number) < 1 || (bits as number) > 32) throw corrupt(`${name}: bad bits`);
    const n = sizeOf(dims as number[]);
    const m = tensors.get(`${name}.mask`);
    if (!m) throw corrupt(`${name}: no mask`);
    used.add(`${name}.mask`);
    // The mask's byte length bounds n by the file size before anything of size n is allocated.
    if (m.dtype !== "U8" || m.shape.length !== 1 || m.shape[0] !== Math.ceil(n / 8)) {
      throw corrupt(`${name}: mask of shape [${m.shape}] ${m.dtype}, dims [${dims}] need U8 [${Math.ceil(n / 8)}] (${n} weights bit-packed)`);
    }
    const mask = new Uint8Array(n);
    let ones = 0;
    for (let i = 0; i < n; i++) ones += mask[i] = (m.data[i >> 3]! >> (i & 7)) & 1;
    if (n % 8 && m.data[m.data.length - 1]! >> (n % 8)) throw corrupt(`${name}: mask pad bits are set`);
    if (kept !== ones) throw corrupt(`${name}: kept ${JSON.stringify(kept)} but the mask keeps ${ones}`);
    let cb: Codebook;
    if (codebook === "uniform") {
      const s = tensors.get(`${name}.step`);
      if (!s || s.dtype !== "F32" || s.shape.length !== 0) throw corrupt(`${name}: the step must be an F32 scalar`);
      used.add(`${name}.step`);
      const step = safeTensorFloat32(s)[0]!;
      if (!(Number.isFinite(step) && step > 0)) throw corrupt(`${name}: step ${step} is not a positive finite number`);
      cb = { kind: "uniform", step };
    } else if (codebook === "table") {
      const t = tensors.get(`${name}.table`);
      if (!t || t.dtype !== "F32" || t.shape.length !== 1 || t.shape[0]! < 1 || t.shape[0]! > 65536) throw corrupt(`${name}: the table must be F32 [K], 1 ≤ K ≤ 65536`);
      used.add(`${name}.table`);
      const values = safeTensorFloat32(t);
      if (!values.every(Number.isFinite)) throw corrupt(`${name}: the table has a non-finite level`);
      cb = { kind: "table", values };
    } else throw corrupt(`${name}: codebook ${JSON.stringify(codebook)} is neither uniform nor table`);
    return { name, node, opType, dims: [...(dims as number[])], mask, kept: ones, bits: bits as number, codebook: cb };
  });
  for (const k of tensors.keys()) if (!used.has(k)) throw corrupt(`tensor ${JSON.stringify(k)} belongs to no layer`);
  return { layers, options: options as Record<string, unknown>, modelSha256: md.model_sha256 ?? "", opqVersion: md.opq_version ?? "", source: md.source ?? "" };
}

/** What encoding one layer with its plan found. */
export interface PlanLayerReport {
  /** The plan's initializer name, and the finetuned model's (they differ after a re-export). */
  name: string;
  modelName: string;
  node: string;
  kept: number;
  /** Positions stored in the .opq: kept positions whose code is not 0. */
  stored: number;
  /** Kept positions whose finetuned weight now quantizes to 0 (not stored: the mask gets sparser). */
  fellToZero: number;
  /** Nonzero weights at pruned positions: they left the mask and are dropped. */
  leftMask: number;
  /** The largest |w| among those. */
  leftMaskMax: number;
}

/** The .opq model of a plan and its per-layer report. */
export interface PlanCompressResult {
  opq: OpqModel;
  layers: PlanLayerReport[];
  leftMask: number;
  fellToZero: number;
}

/** Index of the level nearest to w (ties: the smaller magnitude, then the lower index). */
function nearestIndex(values: Float32Array, w: number): number {
  let best = 0;
  for (let k = 1; k < values.length; k++) {
    const d = Math.abs(w - values[k]!), b = Math.abs(w - values[best]!);
    if (d < b || (d === b && Math.abs(values[k]!) < Math.abs(values[best]!))) best = k;
  }
  return best;
}

/**
 * Encode a (finetuned) model with a plan's masks and codebooks; no new allocation. Each plan
 * layer is matched to a compressible weight of the model by initializer name, else by the name
 * of the node reading it (a PyTorch re-export renames folded initializers but keeps the module
 * path in node names). Throws CompressError PLAN_MISMATCH naming every plan layer without a
 * weight, every weight without a plan layer and every shape or op that differs; INVALID_MODEL
 * for a non-finite weight. `fp32Bytes` (the input's size) and `source` go to the metadata. A nonzero weight at a pruned position is dropped and counted.
 */
export function compressWithPlan(model: Model, plan: Plan, options: { source?: string; fp32Bytes?: number } = {}): PlanCompressResult {
  const { slots } = findWeights(model.graph);
  const byName = new Map(slots.map((s) => [s.name, s])), byNode = new Map(slots.map((s) => [s.node, s]));
  const problems: string[] = [], matched = new Set<string>();
  const pairs = plan.layers.map((l) => {
    const s = byName.get(l.name) ?? byNode.get(l.node);
    if (!s || matched.has(s.name)) { problems.push(`plan layer ${l.name} (node ${l.node}) has no matching weight in the model`); return null; }
    matched.add(s.name);
    if (s.dims.join(",") !== l.dims.join(",")) problems.push(`${l.name}: dims [${s.dims}] in the model (${s.name}), [${l.dims}] in the plan`);
    else if (s.opType !== l.opType) problems.push(`${l.name}: read by ${s.opType} in the model, by ${l.opType} in the plan`);
    return { l, s };
  });
  for (const s of slots) if (!matched.has(s.name)) problems.push(`weight ${s.name} (node ${s.node}) is not in the plan`);
  if (problems.length) throw new CompressError(E.PLAN_MISMATCH, `the model does not match the plan (${problems.length} problem(s)):\n  ${problems.join("\n  ")}`);

  const layers: PlanLayerReport[] = [], compressed: CompressedTensor[] = [];
  for (const { l, s } of pairs as { l: PlanLayer; s: (typeof slots)[number] }[]) {
    const w = model.graph.initializers[s.name]!.data as Float32Array;
    const indices: number[] = [], codes: number[] = [];
    let fellToZero = 0, leftMask = 0, leftMaskMax = 0;
    const d = l.codebook.kind === "uniform" ? Math.fround(l.codebook.step) : 0;
    for (let i = 0; i < w.length; i++) {
      const x = w[i]!;
      ensure(Number.isFinite(x), E.INVALID_MODEL, `${s.name}: weight ${i} is ${x}`);
      if (!l.mask[i]) {
        if (x !== 0) { leftMask++; leftMaskMax = Math.max(leftMaskMax, Math.abs(x)); }
        continue;
      }
      const code = l.codebook.kind === "uniform" ? Math.round(x / d) : nearestIndex(l.codebook.values, x);
      if (codebookValue(l.codebook, code) === 0) { fellToZero++; continue; }
      ensure(Math.abs(code) < 2 ** 31, E.NUMERIC, `${s.name}: weight ${x} gives code ${code} with Δ ${d}`);
      indices.push(i);
      codes.push(code);
    }
    compressed.push({ name: s.name, dims: [...s.dims], codebook: l.codebook, indices: Uint32Array.from(indices), codes: Int32Array.from(codes) });
    layers.push({ name: l.name, modelName: s.name, node: s.node, kept: l.kept, stored: indices.length, fellToZero, leftMask, leftMaskMax });
  }
  const names = new Set(compressed.map((t) => t.name));
  const initializers: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(model.graph.initializers)) if (!names.has(k)) Object.defineProperty(initializers, k, { value: v, enumerable: true, writable: true, configurable: true });
  const graph = { ...model.graph, initializers, inputs: model.graph.inputs.filter((i) => !names.has(i.name)) };
  const stored = layers.reduce((a, l) => a + l.stored, 0), total = compressed.reduce((a, t) => a + sizeOf(t.dims), 0);
  const metadata: Record<string, unknown> = {
    method: String(plan.options.method ?? "opq"), targetSparsity: plan.options.sparsity, sparsity: 1 - stored / total, bits: plan.options.bits,
    fp32Bytes: options.fp32Bytes ?? 4 * total, source: options.source ?? "", plan: { modelSha256: plan.modelSha256, opqVersion: plan.opqVersion, source: plan.source },
  };
  return {
    opq: { model: { ...model, graph }, compressed, metadata }, layers,
    leftMask: layers.reduce((a, l) => a + l.leftMask, 0), fellToZero: layers.reduce((a, l) => a + l.fellToZero, 0),
  };
}
