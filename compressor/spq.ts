/**
 * SPQ and PPQ (the second seed paper; ALGORITHMS.md §4–5): geometric-median filter pruning
 * integrated with APoT quantization of weights *and* activations, trained.
 *
 * - The trained network is the FP32 model with an ai.opq ApotQuantize after every ReLU
 *   (`insertActivationQuantizers`), each with its own learned α.
 * - Filters are pruned per channel space (compressor/channel-groups.ts): residual-tied convs lose
 *   the same channels together, chosen by FPGM over their concatenated filters. During training a
 *   pruned channel is a mask (filter and bias zeroed in what the graph reads), so removing it
 *   physically afterwards (`finishApot`) gives the very function that was trained.
 * - Weights: APoT (`bits`, sign + magnitude levels of apot.ts) scaled by a learned α per layer,
 *   Ŵ = α·q(clamp(W/α, −1, 1)); the first and last layers 8-bit uniform with step max|W|/127.
 *   Straight-through: ∂L/∂W = ∂L/∂Ŵ·[|W/α| ≤ 1]; ∂L/∂α = Σ ∂L/∂Ŵ·(sign(t)·[|t| > 1] + (q − t)·[|t| ≤ 1]),
 *   the step on α scaled by 1/√(N·Q_P) (`alphaGradScale`).
 * - SPQ: quantized from the first step; the GM-closest filters are selected from the
 *   full-precision weights at the first step and again at every epoch end but the last, and
 *   masked in the forward (soft: they keep their gradients and may return), as the paper's
 *   Algorithm 1 on a pre-trained model. The file keeps the selection the last epoch trained
 *   under: a selection made after the last step removed channels the network had never learned
 *   without (ResNet-20 at 30%, one epoch selected only at its end: 10.02% top-1).
 * - PPQ: a full-precision phase pruning in `stages` hard steps (r/S more channels each, their
 *   gradients zeroed), then quantization-aware training (APoT weights and activations).
 * - A calibrated start (`apotStart`, then calibrate-model.ts; `opq train --calibrate N`): the
 *   whole selection removed at once (SPQ: quantized too; PPQ: in full precision) and every layer
 *   re-solved on the masked network's inputs to the unpruned FP32 network's output; training
 *   then holds that selection. Without it the network the first step sees is at chance level:
 *   ResNet-20 at 30% of every space falls to 10.1% top-1 when masked, 90.5% calibrated.
 * @module
 */
import type { CompressedTensor, Graph, Model, Node, OpqModel, Tensor } from "../format/mod.ts";
import { APOT_MAGNITUDES, fitApotAlpha, nearestLevel, quantizeApot, quantizeUniformMax, signedLevels } from "./apot.ts";
import { type ChannelSpace, channelSpaces, countMacs, removeChannels, selectSpaceChannels } from "./channel-groups.ts";
import { findWeights } from "./compress.ts";
import { COMPRESS_ERROR_CODES as E, ensure } from "./errors.ts";
import type { StepContext, TrainMethod } from "./train.ts";

/** The trained methods. */
export const TRAINED_METHODS = ["spq", "ppq"] as const;
/** A trained method. */
export type TrainedMethod = (typeof TRAINED_METHODS)[number];

/**
 * Unsigned 4-bit APoT activation levels (ALGORITHMS.md §4): sums of {0, 2⁻¹, 2⁻³, 2⁻⁵} and
 * {0, 2⁻², 2⁻⁴, 2⁻⁶}, divided by their largest sum 3/4.
 */
export const APOT_ACTIVATION_LEVELS_4: readonly number[] = (() => {
  const a = [0, 2 ** -1, 2 ** -3, 2 ** -5], b = [0, 2 ** -2, 2 ** -4, 2 ** -6];
  return [...new Set(a.flatMap((x) => b.map((y) => (x + y) / 0.75)))].sort((x, y) => x - y);
})();

/** Options of SPQ/PPQ. */
export interface ApotTrainOptions {
  method: TrainedMethod;
  /** Fraction r of the channels of every prunable space removed (the seed uses 0.3). */
  filterRate: number;
  /** APoT bits of the middle layers' weights (3 or 4). */
  bits: 3 | 4;
  /** PPQ: hard pruning stages S in the full-precision phase. */
  stages: number;
  /** PPQ: fraction of the steps spent in the full-precision pruning phase. */
  pruneFraction: number;
}

/** Defaults: the seed paper's 30% filters at 4-bit weights and activations; PPQ 3 stages over the first half. */
export const APOT_TRAIN_DEFAULTS: Readonly<ApotTrainOptions> = { method: "spq", filterRate: 0.3, bits: 4, stages: 3, pruneFraction: 0.5 };

/** Name of the α initializer of the activation quantizer after value `v`. */
export const activationAlphaName = (v: string) => `${v}.apot_alpha`;
/** Master-weight key of a weight's learned APoT α. */
export const weightAlphaKey = (w: string) => `${w}.apot_alpha`;

/** The α minimising the APoT quantization error of a sample of non-negative activations. */
export function fitActivationAlpha(sample: Float32Array): number {
  return fitApotAlpha(sample, [...APOT_ACTIVATION_LEVELS_4]).alpha;
}

/**
 * The model with an ai.opq ApotQuantize (4-bit APoT levels, α from `alphas` by the ReLU's output
 * name, default 1) after every ReLU whose output is not a graph output; readers of the ReLU read
 * the quantized value. Imports the ai.opq opset 1. Returns the model and the quantized ReLU outputs.
 */
export function insertActivationQuantizers(model: Model, alphas: ReadonlyMap<string, number> = new Map()): { model: Model; quantized: string[] } {
  const g = model.graph, outputs = new Set(g.outputs.map((o) => o.name));
  const initializers: Record<string, Tensor> = { ...g.initializers };
  const nodes: Node[] = [], rename = new Map<string, string>(), quantized: string[] = [];
  const levels = { type: "floats" as const, value: [...APOT_ACTIVATION_LEVELS_4] };
  for (const node of g.nodes) {
    nodes.push({ ...node, inputs: node.inputs.map((v) => rename.get(v) ?? v) });
    const v = node.outputs[0];
    if (node.opType !== "Relu" || !v || outputs.has(v) || !(node.domain === "" || node.domain === "ai.onnx")) continue;
    const q = `${v}.apot`, a = activationAlphaName(v);
    ensure(!Object.hasOwn(initializers, a), E.INVALID_MODEL, `${a} already names an initializer`);
    initializers[a] = { dtype: "float32", dims: [], data: Float32Array.of(alphas.get(v) ?? 1) };
    nodes.push({ opType: "ApotQuantize", domain: "ai.opq", name: `${node.name || v}.apot`, inputs: [v, a], outputs: [q], attrs: { levels } });
    rename.set(v, q);
    quantized.push(v);
  }
  const opsetImports = model.opsetImports.some((o) => o.domain === "ai.opq") ? model.opsetImports : [...model.opsetImports, { domain: "ai.opq", version: 1 }];
  return { model: { ...model, opsetImports, graph: { ...g, nodes, initializers } }, quantized };
}

/** One quantized weight: 8-bit uniform (first/last layer) or APoT with a learned α. */
interface WeightQuant {
  name: string;
  scheme: "uniform" | "apot";
}

/** The pruning and quantization plan of a graph: prunable spaces and the weight quantizers. */
export interface ApotPlan {
  spaces: ChannelSpace[];
  /** Spaces that cannot be pruned, and why. */
  blocked: ChannelSpace[];
  weights: WeightQuant[];
  /** Bias names of producers (masked with their filters). */
  biases: string[];
}

/** Plan SPQ/PPQ on `graph`: channel spaces and which weights are first/last (8-bit) or APoT. */
export function planApot(graph: Graph): ApotPlan {
  const all = channelSpaces(graph);
  const spaces = all.filter((s) => !s.blocked), blocked = all.filter((s) => s.blocked);
  const slots = findWeights(graph).slots;
  ensure(slots.length > 0, E.NO_WEIGHTS, "the model has no float32 Conv/Gemm/MatMul weight initializer");
  const weights = slots.map((s, i) => ({ name: s.name, scheme: i === 0 || i === slots.length - 1 ? "uniform" as const : "apot" as const }));
  const biases = spaces.flatMap((s) => s.producers.flatMap((p) => (p.bias ? [p.bias] : [])));
  return { spaces, blocked, weights, biases };
}

/** 8-bit uniform step of a weight: max|w| / 127 over the positions `keep` marks (all when undefined), as float32. */
function uniformStep(w: Float32Array, keep?: Uint8Array): number {
  let max = 0;
  for (let i = 0; i < w.length; i++) if (!keep || keep[i]) max = Math.max(max, Math.abs(w[i]!));
  return Math.fround(max > 0 ? max / 127 : 1);
}

/**
 * Scale of a weight α's gradient: 1/√(N·Q_P) for N weights and Q_P positive levels (LSQ, Esser et
 * al. 2020 §2.2). ∂L/∂α sums over all N weights, so unscaled it moves α, which rescales the whole
 * layer, N times faster than any one weight: ResNet-20 from the calibrated start at lr 0.005 moved
 * the last conv's α by 30% in three steps and the loss went from 0.28 to 1.36 at step 4.
 */
export function alphaGradScale(n: number, positiveLevels: number): number {
  return 1 / Math.sqrt(Math.max(1, n * positiveLevels));
}

/** What a training method over an ApotPlan exposes beyond TrainMethod. */
export interface ApotMethod extends TrainMethod {
  /** Whether the step being trained quantizes (PPQ's first phase does not): the CLI picks the graph. */
  quantizing(): boolean;
  /** Removed channels per prunable space (the current selection). */
  selection(): number[][];
  /** After the last step: SPQ selects the final channels (a no-op right after an epoch end); PPQ has them. */
  finish(master: ReadonlyMap<string, Float32Array>): void;
}

/**
 * SPQ or PPQ as a training method. `hats` are the arrays the graph reads for every planned weight
 * and producer bias (rewritten from the master before each step); the master must hold those
 * names, and gets one `weightAlphaKey` entry per APoT weight (α initialised to the MSE-optimal
 * value). Activation α's are ordinary graph parameters the loop trains. `fixed` (SPQ or PPQ
 * from a calibrated start, `apotStart`): the removed channels, held for the whole run (no
 * re-selection, no stages; their filters get no update, since the calibrated layers were solved
 * without them).
 */
export function apotTrainMethod(
  plan: ApotPlan, o: ApotTrainOptions, master: Map<string, Float32Array>, hats: ReadonlyMap<string, Float32Array>, totalSteps: number, fixed?: readonly number[][],
): ApotMethod {
  ensure(o.filterRate >= 0 && o.filterRate < 1, E.INVALID_OPTION, `filter rate must be in [0, 1), got ${o.filterRate}`);
  ensure(o.bits === 3 || o.bits === 4, E.INVALID_OPTION, `APoT bits must be 3 or 4, got ${o.bits}`);
  ensure(Number.isInteger(o.stages) && o.stages >= 1, E.INVALID_OPTION, `stages must be a whole number ≥ 1, got ${o.stages}`);
  ensure(!fixed || fixed.length === plan.spaces.length, E.INVALID_OPTION, "a fixed selection (a calibrated start) needs one list per channel space");
  const levels = signedLevels(APOT_MAGNITUDES[o.bits]), qp = (levels.length - 1) / 2;
  for (const w of plan.weights) {
    ensure(master.has(w.name) && hats.has(w.name), E.INVALID_MODEL, `${w.name} is not trained`);
    if (w.scheme === "apot" && !master.has(weightAlphaKey(w.name))) master.set(weightAlphaKey(w.name), Float32Array.of(fitApotAlpha(master.get(w.name)!, levels).alpha));
  }
  const pruneSteps = o.method === "ppq" ? Math.round(o.pruneFraction * totalSteps) : 0;
  let selected: number[][] = plan.spaces.map((_, i) => [...(fixed?.[i] ?? [])]);
  let selectedFrom = fixed ? (o.method === "ppq" ? o.stages : 0) : -1; // PPQ: stage the selection is for; SPQ: ≥ 0 once a selection is made
  let quant = o.method === "spq";
  const rowsOf = new Map<string, { space: number; perRow: number }>(); // producer weight/bias → its space
  plan.spaces.forEach((s, i) => s.producers.forEach((p) => {
    rowsOf.set(p.weight, { space: i, perRow: master.get(p.weight)!.length / s.channels });
    if (p.bias) rowsOf.set(p.bias, { space: i, perRow: 1 });
  }));
  /** 1 where a weight is kept (not in a removed filter), per producer tensor. */
  let keepMasks = new Map<string, Uint8Array>();
  const rebuildMasks = () => {
    keepMasks = new Map();
    for (const [name, { space, perRow }] of rowsOf) {
      const m = new Uint8Array(master.get(name)!.length).fill(1);
      for (const j of selected[space]!) m.fill(0, j * perRow, (j + 1) * perRow);
      keepMasks.set(name, m);
    }
  };
  const select = (rate: number, keepOld: boolean) => {
    selected = plan.spaces.map((s, i) => selectSpaceChannels(s, (n) => master.get(n)!, rate, keepOld ? selected[i] : []));
    rebuildMasks();
  };
  rebuildMasks();
  const stageOf = (step: number) => Math.min(o.stages, Math.floor(step * o.stages / Math.max(1, pruneSteps)) + 1);
  /** t = W/α and its level per position, cached between prepare and gradients of a step. */
  const codes = new Map<string, Int32Array>();
  /** The context of the latest step (endEpoch learns from it whether the epoch was the last). */
  let last: StepContext | undefined;

  return {
    quantizing: () => quant,
    selection: () => selected.map((s) => [...s]),
    prepare(m, ctx: StepContext) {
      last = ctx;
      if (o.method === "spq" && selectedFrom < 0) { select(o.filterRate, false); selectedFrom = ctx.step; }
      if (o.method === "ppq") {
        // The weights moved in the full-precision phase: each APoT α is refitted when quantization starts.
        if (ctx.step === pruneSteps && pruneSteps > 0) for (const w of plan.weights) {
          if (w.scheme !== "apot") continue;
          const src = m.get(w.name)!, keep = keepMasks.get(w.name);
          master.get(weightAlphaKey(w.name))![0] = fitApotAlpha(keep ? src.filter((_, i) => keep[i]) : src, levels).alpha;
        }
        quant = ctx.step >= pruneSteps;
        const stage = quant ? o.stages : stageOf(ctx.step);
        if (!fixed && stage !== selectedFrom) { select(o.filterRate * stage / o.stages, true); selectedFrom = stage; }
      }
      for (const w of plan.weights) {
        const src = m.get(w.name)!, hat = hats.get(w.name)!, keep = keepMasks.get(w.name);
        if (!quant) { for (let i = 0; i < src.length; i++) hat[i] = keep && !keep[i] ? 0 : src[i]!; continue; }
        if (w.scheme === "uniform") {
          const step = uniformStep(src, keep);
          for (let i = 0; i < src.length; i++) hat[i] = keep && !keep[i] ? 0 : Math.fround(step * Math.round(src[i]! / step));
          continue;
        }
        const alpha = m.get(weightAlphaKey(w.name))![0]!;
        const c = codes.get(w.name) ?? codes.set(w.name, new Int32Array(src.length)).get(w.name)!;
        const values = levels.map((l) => Math.fround(alpha * l));
        for (let i = 0; i < src.length; i++) {
          const k = nearestLevel(levels, Math.max(-1, Math.min(1, src[i]! / alpha)));
          c[i] = k;
          hat[i] = keep && !keep[i] ? 0 : values[k]!;
        }
      }
      for (const b of plan.biases) {
        const src = m.get(b)!, hat = hats.get(b)!, keep = keepMasks.get(b)!;
        for (let i = 0; i < src.length; i++) hat[i] = keep[i] ? src[i]! : 0;
      }
    },
    gradients(grads, m) {
      if (!quant) return;
      for (const w of plan.weights) {
        if (w.scheme !== "apot") continue;
        const g = grads.get(w.name), src = m.get(w.name)!, alpha = m.get(weightAlphaKey(w.name))![0]!, c = codes.get(w.name)!;
        if (!g) continue;
        let ga = 0;
        for (let i = 0; i < src.length; i++) {
          const t = src[i]! / alpha;
          if (t > 1 || t < -1) { ga += g[i]! * Math.sign(t); g[i] = 0; } else ga += g[i]! * (levels[c[i]!]! - t);
        }
        grads.set(weightAlphaKey(w.name), Float32Array.of(ga * alphaGradScale(src.length, qp)));
      }
    },
    // PPQ and a calibrated SPQ prune hard: removed filters get no update; SPQ's stay trainable (soft).
    trainable: (name) => (o.method === "ppq" || fixed ? keepMasks.get(name) : undefined),
    decays: (name) => !name.endsWith(".apot_alpha"),
    endEpoch(_m, epoch) {
      // Not after the last epoch: the file keeps the selection that epoch was trained under.
      if (o.method === "spq" && !fixed && last && (epoch + 1) * last.stepsPerEpoch < last.steps) select(o.filterRate, false);
    },
    finish() {
      if (o.method === "spq") { if (selectedFrom < 0) { select(o.filterRate, false); selectedFrom = 0; } }
      else if (selectedFrom !== o.stages) { select(o.filterRate, true); selectedFrom = o.stages; }
    },
    saveState: () => new Map([
      ...selected.map((s, i) => [`selected.${i}`, Float32Array.from(s)] as [string, Float32Array]),
      ["selectedFrom", Float32Array.of(selectedFrom)],
    ]),
    loadState(state) {
      selected = plan.spaces.map((_, i) => Array.from(state.get(`selected.${i}`) ?? []));
      selectedFrom = state.get("selectedFrom")?.[0] ?? -1;
      rebuildMasks();
    },
  };
}

/** What `apotStart` gives calibration: the masked, quantized start, the FP32 reference and the masks to hold. */
export interface ApotStart {
  /** The training model (activation quantizers included) with every planned weight compressed: APoT tables at the fitted α, 8-bit uniform first and last. */
  opq: OpqModel;
  /** The same graph with each ApotQuantize an Identity: the FP32 network calibration fits to. */
  float: Model;
  /** 1 where a weight or bias may be non-zero: removed filters (and their biases) and the consumers' matching input channels are 0. */
  masks: Map<string, Uint8Array>;
}

/**
 * SPQ's calibrated start: `selection` (removed channels per plan space) masked in full at once and
 * every weight quantized as the first training step would (APoT at the MSE-fitted α of its kept
 * weights, 8-bit uniform first and last), as an OpqModel for calibrateModel, which then re-solves
 * each layer on the masked, quantized network's inputs to fit the *unpruned* FP32 network's
 * output (compensating the removed channels in the layers that read them, the channel-pruning
 * reconstruction of He et al. 2017 §3.1 done with calibrate.ts's solver). ResNet-20 at 30% of
 * every space, 4-bit: 10.1% top-1 masked and quantized, 90.5% calibrated on 512 training images,
 * FP32 93.6% (first 1000 test images). `bits` 16: every weight on a 16-bit uniform grid, i.e.
 * full precision for calibration's purposes (PPQ's calibrated pruning before its FP32 phase).
 */
export function apotStart(model: Model, plan: ApotPlan, selection: readonly number[][], bits: 3 | 4 | 16): ApotStart {
  const inits = model.graph.initializers, masks = new Map<string, Uint8Array>();
  const maskOf = (name: string) => masks.get(name) ?? masks.set(name, new Uint8Array(inits[name]!.data.length).fill(1)).get(name)!;
  plan.spaces.forEach((space, i) => {
    const removed = selection[i] ?? [];
    if (!removed.length) return;
    for (const p of space.producers) for (const name of p.bias ? [p.weight, p.bias] : [p.weight]) {
      const m = maskOf(name), per = m.length / space.channels;
      for (const j of removed) m.fill(0, j * per, (j + 1) * per);
    }
    for (const c of space.consumers) {
      const t = inits[c.weight]!, m = maskOf(c.weight), dims = t.dims;
      const inner = dims.slice(c.axis + 1).reduce((a, b) => a * b, 1), outer = dims.slice(0, c.axis).reduce((a, b) => a * b, 1), n = dims[c.axis]!;
      for (const j of removed) for (let o = 0; o < outer; o++) m.fill(0, (o * n + j * c.block) * inner, (o * n + (j + 1) * c.block) * inner);
    }
  });
  // Masked positions read 0, so the quantizers (which drop zero codes) store none of them.
  const masked = (k: string) => { const d = inits[k]!.data as Float32Array, m = masks.get(k); return m ? d.map((x, i) => (m[i] ? x : 0)) : d; };
  const compressed: CompressedTensor[] = plan.weights.map((w) => {
    const dims = inits[w.name]!.dims, d = masked(w.name), keep = masks.get(w.name);
    if (w.scheme === "uniform" || bits === 16) return quantizeUniformMax(w.name, dims, d, bits === 16 ? 16 : 8).tensor;
    // α fitted on the kept weights only (the zeros of removed filters would pull it down).
    const alpha = fitApotAlpha(keep ? d.filter((_, i) => keep[i]) : d, signedLevels(APOT_MAGNITUDES[bits])).alpha;
    return quantizeApot(w.name, dims, d, bits, alpha).tensor;
  });
  const names = new Set(plan.weights.map((w) => w.name));
  const initializers: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(inits)) if (!names.has(k)) initializers[k] = masks.has(k) ? { ...v, data: masked(k) } : v;
  const float: Model = { ...model, graph: { ...model.graph, nodes: model.graph.nodes.map((n) => (n.domain === "ai.opq" && n.opType === "ApotQuantize" ? { ...n, opType: "Identity", domain: "", inputs: [n.inputs[0]!], attrs: {} } : n)) } };
  return { opq: { model: { ...model, graph: { ...model.graph, initializers } }, compressed, metadata: {} }, float, masks };
}

/** Per-layer figures of a finished SPQ/PPQ model. */
export interface ApotLayerReport {
  name: string;
  scheme: "uniform" | "apot";
  bits: number;
  dims: number[];
  originalDims: number[];
  /** α (APoT) or step (uniform). */
  scale: number;
  stored: number;
}

/**
 * The trained model as an OpqModel: pruned channels removed physically, APoT weights as `table`
 * codebooks of the learned α × levels, first/last layers 8-bit `uniform`, activation quantizers
 * (with their learned α) in the graph. `model` is the training model (with the quantizers);
 * `master` its trained weights, `selection` the removed channels per plan space. Codes are computed
 * before the removal, exactly as the last training step's forward computed Ŵ.
 */
export function finishApot(model: Model, plan: ApotPlan, master: ReadonlyMap<string, Float32Array>, selection: readonly number[][], bits: 3 | 4):
  { opq: OpqModel; layers: ApotLayerReport[]; macs?: { before: number; after: number } } {
  const levels = signedLevels(APOT_MAGNITUDES[bits]), zero = levels.indexOf(0);
  const inits: Record<string, Tensor> = { ...model.graph.initializers };
  for (const [k, w] of master) if (Object.hasOwn(inits, k)) inits[k] = { ...inits[k]!, data: Float32Array.from(w) };
  // Mask removed filters and biases (zero rows), then quantize to codes held as float32 so that
  // removeChannels slices codes exactly as it slices weights.
  plan.spaces.forEach((s, i) => {
    for (const p of s.producers) for (const name of p.bias ? [p.weight, p.bias] : [p.weight]) {
      const d = inits[name]!.data as Float32Array, per = d.length / s.channels;
      for (const j of selection[i]!) d.fill(0, j * per, (j + 1) * per);
    }
  });
  const scale = new Map<string, number>();
  for (const w of plan.weights) {
    const d = inits[w.name]!.data as Float32Array;
    if (w.scheme === "uniform") {
      const step = uniformStep(d);
      scale.set(w.name, step);
      for (let i = 0; i < d.length; i++) d[i] = Math.round(d[i]! / step);
    } else {
      const alpha = master.get(weightAlphaKey(w.name))![0]!;
      scale.set(w.name, alpha);
      for (let i = 0; i < d.length; i++) d[i] = d[i] === 0 ? zero : nearestLevel(levels, Math.max(-1, Math.min(1, d[i]! / alpha)));
    }
  }
  const coded: Graph = { ...model.graph, initializers: inits };
  const cut = removeChannels(coded, plan.spaces.map((space, i) => ({ space, removed: selection[i]! })));
  const compressed: CompressedTensor[] = [], layers: ApotLayerReport[] = [];
  for (const w of plan.weights) {
    const t = cut.initializers[w.name]!, c = t.data as Float32Array;
    const idx: number[] = [], cs: number[] = [];
    const skip = w.scheme === "uniform" ? 0 : zero;
    for (let i = 0; i < c.length; i++) if (c[i] !== skip) { idx.push(i); cs.push(c[i]!); }
    const s = scale.get(w.name)!;
    compressed.push({
      name: w.name, dims: [...t.dims],
      codebook: w.scheme === "uniform" ? { kind: "uniform", step: s } : { kind: "table", values: new Float32Array(levels.map((l) => s * l)) },
      indices: Uint32Array.from(idx), codes: Int32Array.from(cs),
    });
    layers.push({ name: w.name, scheme: w.scheme, bits: w.scheme === "uniform" ? 8 : bits, dims: [...t.dims], originalDims: [...model.graph.initializers[w.name]!.dims], scale: s, stored: idx.length });
  }
  const names = new Set(plan.weights.map((w) => w.name));
  const initializers: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(cut.initializers)) if (!names.has(k)) initializers[k] = v;
  const graph: Graph = { ...cut, initializers, inputs: cut.inputs.filter((i) => !names.has(i.name)) };
  const feed = model.graph.inputs.find((i) => !Object.hasOwn(model.graph.initializers, i.name));
  const dims = feed?.shape?.map((d, i) => (i === 0 ? 1 : d));
  let macs: { before: number; after: number } | undefined;
  if (dims && dims.every((d) => typeof d === "number")) {
    const before = countMacs(model.graph, dims as number[]), after = countMacs(cut, dims as number[]);
    if (before !== undefined && after !== undefined) macs = { before, after };
  }
  return { opq: { model: { ...model, graph }, compressed, metadata: {} }, layers, ...(macs ? { macs } : {}) };
}
