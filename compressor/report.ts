/**
 * The compression report: per layer and in total, what was decided, what the paper's analysis
 * predicted and what really happened, plus what the file costs once encoded. Plain JSON data;
 * the CLI renders it as a table, `renderReportHtml` as a page.
 * @module
 */
import { type OpqByteBreakdown, type OpqInspection, sizeRatio } from "../format/mod.ts";
import type { PrunedConv, SkippedConv } from "./fpgm.ts";
import type { OpqResult } from "./opq.ts";
import type { CalibrationLayer } from "./calibrate-model.ts";

/** What `--calibrate` did: per layer the output error before and after, and the time spent. */
export interface CalibrationSummary {
  /** Calibration images and where they came from. */
  images: number;
  data: string;
  seconds: number;
  /** Size of the same model encoded without calibration, for the size check. */
  uncalibratedBytes?: number;
  target: string;
  layers: CalibrationLayer[];
  skipped: { name: string; reason: string }[];
}

/** One compressed weight tensor. OPQ-only and gm-apot-only fields are absent for the other method. */
export interface LayerReport {
  name: string;
  node: string;
  opType: string;
  dims: number[];
  /** Weights in the input model. */
  params: number;
  /** Fraction of `params` not stored. */
  sparsity: number;
  /** OPQ: log2 of the layer's average bins K_i (Eq. 8); gm-apot: the bit width. */
  bits: number;
  /** The uniform step Δ_i (OPQ, 8-bit edge layers) or null for an APoT table. */
  step: number | null;
  tauLm?: number;
  tauMle?: number;
  predictedSparsity?: number;
  analyticSparsity?: number;
  maskSparsity?: number;
  capped?: boolean;
  avgBins?: number;
  predictedPruningError?: number;
  realPruningError?: number;
  predictedQuantMse?: number;
  realQuantMse?: number;
  scheme?: "apot" | "uniform";
  alpha?: number;
  filters?: number;
  removedFilters?: number;
  mse?: number;
  /** Bits per input weight this tensor really takes in the .opq file (when known). */
  fileBits?: number;
  /** The input weights' histogram: HISTOGRAM_BINS equal bins over [−max|w|, max|w|]. */
  histogram?: WeightHistogram;
  /** The magnitude below which this layer's weights were pruned: β, or the layer's own threshold where the cap binds. */
  threshold?: number;
}

/** Counts of a layer's weights in equal bins over [lo, hi]. */
export interface WeightHistogram {
  lo: number;
  hi: number;
  counts: number[];
}

/** Bins of a layer's weight histogram (enough to see the Laplace shape, few enough for --json). */
export const HISTOGRAM_BINS = 48;

/** The histogram of `data` over its symmetric range [−max|w|, max|w|]. */
export function weightHistogram(data: Float32Array, bins = HISTOGRAM_BINS): WeightHistogram {
  let m = 0;
  for (let i = 0; i < data.length; i++) m = Math.max(m, Math.abs(data[i]!));
  const counts = new Array<number>(bins).fill(0);
  if (m === 0) return { lo: 0, hi: 0, counts };
  for (let i = 0; i < data.length; i++) counts[Math.min(bins - 1, Math.floor(((data[i]! + m) / (2 * m)) * bins))]!++;
  return { lo: -m, hi: m, counts };
}

/** How the report was made: the command line and opq's version (set by the CLI). */
export interface RunInfo {
  command: string;
  version: string;
}

/** Top-1 measured on a test set, when a run measured it (finetune; compress --eval). */
export interface AccuracyInfo {
  dataset: string;
  images: number;
  top1: number;
  /** The one-shot model's top-1 before finetuning. */
  top1Before?: number;
}

/** What the encoded file costs. */
export interface FileStats {
  bytes: number;
  /** fp32Bytes / bytes. */
  ratio: number;
  /** The paper's rate 32/((1 − p)·B), which ignores index and codebook storage. */
  nominalRate: number;
  /** Zero-order entropy bound of the file's content (format entropyBound) and bytes / bound. */
  entropyBoundBytes: number;
  overBound: number;
  /** Bits per compressed weight over the whole file. */
  bitsPerWeight: number;
  /** Where the bytes went (format's inspectOpq), as `opq inspect` prints it. */
  breakdown?: OpqByteBreakdown;
}

/** The whole report; `--json` prints it as is. */
export interface CompressReport {
  method: string;
  source: string;
  options: Record<string, unknown>;
  /** Float parameters of the input model, and how many of them are compressed weights. */
  params: number;
  weights: number;
  fp32Bytes: number;
  /** Target (OPQ p*, gm-apot filter rate) and achieved fraction of compressed weights not stored. */
  targetSparsity: number;
  sparsity: number;
  /** Nominal bits (OPQ B, gm-apot middle-layer width). */
  bits: number;
  layers: LayerReport[];
  /** Initializers read by Conv/Gemm/MatMul that were kept exact, and why. */
  skipped: { name: string; reason: string }[];
  opq?: {
    betaAnalytic: number;
    beta: number;
    predictedSparsity: number;
    maskSparsity: number;
    /** (1/N̄) Σ 2S_i/Δ_i (Eq. 9, = 2^B up to round-off), its relative error, and the rounded-bins average. */
    budgetBins: number;
    budgetError: number;
    roundedBins: number;
    capped: string[];
    predictedPruningError: number;
    realPruningError: number;
    predictedQuantError: number;
    realQuantError: number;
  };
  gmApot?: { pruned: PrunedConv[]; skippedConvs: SkippedConv[] };
  file?: FileStats;
  /** Present when the weights were calibrated after one-shot compression. */
  calibration?: CalibrationSummary;
  seconds: number;
  run?: RunInfo;
  accuracy?: AccuracyInfo;
  /** Per-step training loss, when a finetune run made the model. */
  losses?: number[];
}

interface ReportBase {
  method: string;
  source: string;
  fp32Bytes: number;
  params: number;
  skipped: { name: string; reason: string }[];
  options: { sparsity: number; bits: number; filterRate: number; maxLayerSparsity: number } & Record<string, unknown>;
}

/** Report of an OPQ run. */
export function buildOpqReport(a: ReportBase & { slots: { name: string; node: string; opType: string; dims: number[] }[]; result: OpqResult }): CompressReport {
  const r = a.result, bits = a.options.bits;
  const layers: LayerReport[] = r.layers.map((l, i) => ({
    name: l.name, node: a.slots[i]!.node, opType: a.slots[i]!.opType, dims: a.slots[i]!.dims, params: l.params,
    sparsity: l.sparsity, bits: l.avgBins > 0 ? Math.log2(l.avgBins) : 0, step: l.step,
    tauLm: l.tauLm, tauMle: l.tauMle, predictedSparsity: l.predictedSparsity, analyticSparsity: l.analyticSparsity,
    maskSparsity: l.maskSparsity, capped: l.capped, avgBins: l.avgBins,
    predictedPruningError: l.predictedPruningError, realPruningError: l.realPruningError,
    predictedQuantMse: l.predictedQuantMse, realQuantMse: l.realQuantMse,
  }));
  return {
    method: a.method, source: a.source, options: a.options, params: a.params, weights: layers.reduce((s, l) => s + l.params, 0),
    fp32Bytes: a.fp32Bytes, targetSparsity: a.options.sparsity, sparsity: r.sparsity, bits, layers, skipped: a.skipped,
    opq: {
      betaAnalytic: r.betaAnalytic, beta: r.beta, predictedSparsity: r.predictedSparsity, maskSparsity: r.maskSparsity,
      budgetBins: r.budgetBins, budgetError: Math.abs(r.budgetBins / 2 ** bits - 1), roundedBins: r.roundedBins,
      capped: r.layers.filter((l) => l.capped).map((l) => l.name),
      predictedPruningError: r.predictedPruningError, realPruningError: r.realPruningError,
      predictedQuantError: r.predictedQuantError, realQuantError: r.realQuantError,
    },
    seconds: 0,
  };
}

/** What compress.ts measured for one gm-apot layer. */
export interface GmApotLayer {
  slot: { name: string; node: string; opType: string; dims: number[] };
  originalParams: number;
  params: number;
  stored: number;
  bits: number;
  scheme: "apot" | "uniform";
  scale: number;
  mse: number;
  filters: number;
  removedFilters: number;
}

/** Report of a gm-apot run. Layer sparsity counts removed filters (and input channels) and zero codes. */
export function buildGmApotReport(a: ReportBase & { layers: GmApotLayer[]; pruned: PrunedConv[]; skippedConvs: SkippedConv[] }): CompressReport {
  const layers: LayerReport[] = a.layers.map((l) => ({
    name: l.slot.name, node: l.slot.node, opType: l.slot.opType, dims: l.slot.dims, params: l.originalParams,
    sparsity: 1 - l.stored / l.originalParams, bits: l.bits, step: l.scheme === "uniform" ? l.scale : null,
    scheme: l.scheme, alpha: l.scheme === "apot" ? l.scale : undefined, filters: l.filters, removedFilters: l.removedFilters, mse: l.mse,
  }));
  const weights = layers.reduce((s, l) => s + l.params, 0);
  const stored = a.layers.reduce((s, l) => s + l.stored, 0);
  return {
    method: a.method, source: a.source, options: a.options, params: a.params, weights, fp32Bytes: a.fp32Bytes,
    targetSparsity: a.options.filterRate, sparsity: weights ? 1 - stored / weights : 0, bits: a.options.bits, layers, skipped: a.skipped,
    gmApot: { pruned: a.pruned, skippedConvs: a.skippedConvs }, seconds: 0,
  };
}

/**
 * Add what the encoded file costs, from the format's inspection of the bytes: size, ratio to FP32,
 * the paper's nominal rate 32/((1 − p)·B) (gm-apot: 32·N / Σ_l N_l·b_l over the weights left after
 * filter removal), the zero-order entropy bound and each layer's real bits per input weight.
 */
export function addFileStats(report: CompressReport, inspection: OpqInspection): CompressReport {
  const bytes = inspection.fileBytes;
  const nominalRate = report.method === "opq"
    ? 32 / ((1 - report.sparsity) * report.bits)
    : (32 * report.weights) / report.layers.reduce((s, l) => s + l.params * (1 - (l.removedFilters ?? 0) / (l.filters ?? 1)) * l.bits, 0);
  report.file = {
    bytes, ratio: sizeRatio(report.fp32Bytes, bytes), nominalRate, bitsPerWeight: (8 * bytes) / report.weights,
    entropyBoundBytes: inspection.entropy.totalBytes, overBound: bytes / inspection.entropy.totalBytes,
    breakdown: inspection.breakdown,
  };
  const rows = new Map(inspection.layers.map((r) => [r.name, r]));
  for (const l of report.layers) {
    const r = rows.get(l.name);
    if (r) l.fileBits = (8 * (r.indicesBytes + r.codesBytes + r.codebookBytes)) / l.params;
  }
  return report;
}
