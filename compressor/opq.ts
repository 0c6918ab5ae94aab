/**
 * OPQ one-shot pruning-quantization (Hu et al., AAAI 2021, §3.2–3.3) as pure functions over
 * float32 weight layers: Laplace fits, one shared pruning threshold β, a per-layer sparsity cap,
 * and one uniform step Δ_i per layer shared by all its channels.
 * @module
 */
import type { CompressedTensor } from "../format/mod.ts";
import { COMPRESS_ERROR_CODES as E, ensure } from "./errors.ts";
import { countAbove, laplaceFit, type LaplaceFit, laplacePrunedFraction, laplacePruningError, sortedMagnitudes } from "./laplace.ts";

/** One weight tensor to compress. Channel j of Eq. 7 is index j along `channelAxis` (the output channel). */
export interface WeightLayer {
  /** The graph initializer name. */
  name: string;
  dims: number[];
  data: Float32Array;
  channelAxis: number;
}

/** OPQ knobs. */
export interface OpqOptions {
  /** Target global pruning rate p* in [0, 1). */
  sparsity: number;
  /** Nominal bits B: log2 of the model-wide average number of bins (Eq. 9). */
  bits: number;
  /** No layer may end up sparser than this (in (0, 1]); see `solveCappedThreshold`. */
  maxLayerSparsity: number;
}

/** Everything OPQ decided and measured for one layer. */
export interface OpqLayer extends LaplaceFit {
  name: string;
  params: number;
  /** Laplace-predicted sparsity 1 − exp(−β/τ) at the final global β (before any cap). */
  predictedSparsity: number;
  /** Empirical sparsity the paper's analytic β (Eq. 6 over all layers, no cap) gives this layer. */
  analyticSparsity: number;
  /** True when the cap replaced β by a top-k magnitude threshold in this layer. */
  capped: boolean;
  /** Fraction of weights the pruning mask removes. */
  maskSparsity: number;
  /** Fraction of weights not stored (mask plus weights whose code rounds to 0). */
  sparsity: number;
  /** Unpruned weights N̄_i. */
  kept: number;
  /** S_i = Σ_j N̄_ij α_ij (Eq. 13). */
  s: number;
  /** Δ_i as solved (double); the codebook stores Math.fround of it. */
  step: number;
  /** Average bins K_i of Eq. 8 (K_ij = round(2α_ij/Δ_i), weighted by N̄_ij). */
  avgBins: number;
  /** Laplace-predicted Σ W² over pruned weights (Eq. 2) and the real one. */
  predictedPruningError: number;
  realPruningError: number;
  /** Δ_i²/12 (Eq. 12) and the real mean squared quantization error over unpruned weights (Eq. 11). */
  predictedQuantMse: number;
  realQuantMse: number;
}

/** The outcome of OPQ over a list of layers. */
export interface OpqResult {
  tensors: CompressedTensor[];
  layers: OpqLayer[];
  /** Pruning masks M_i (1 = kept), one per layer; a kept weight may still round to code 0. */
  masks: Uint8Array[];
  /** β solving Eq. 6 over all layers (the paper's threshold). */
  betaAnalytic: number;
  /** β after re-solving for the uncapped layers. */
  beta: number;
  /** Laplace-predicted global sparsity of the final thresholds (capped layers count at the cap). */
  predictedSparsity: number;
  /** Achieved global pruning-mask sparsity and stored sparsity (zero codes dropped too). */
  maskSparsity: number;
  sparsity: number;
  /** (1/N̄) Σ_i 2S_i/Δ_i, which Eq. 9 sets to 2^B, and its rounded counterpart Σ N̄_ij K_ij / N̄. */
  budgetBins: number;
  roundedBins: number;
  /** Totals over all compressed weights: (1/N)·Σ pruning errors (paper Fig. 3a) and Σ_i quant MSEs (Eq. 11/12). */
  predictedPruningError: number;
  realPruningError: number;
  predictedQuantError: number;
  realQuantError: number;
}

/**
 * Solve Eq. 6, g(β) = Σ_i N_i(1 − e^{−β/τ_i}) − target = 0, for β ≥ 0 by Newton–Raphson from
 * β = 0, safeguarded by bisection. g is increasing and concave, so Newton from the left never
 * overshoots; the bracket guards against round-off. `target` is a count of weights to prune.
 */
export function solveThreshold(layers: readonly { count: number; tau: number }[], target: number): number {
  const total = layers.reduce((a, l) => a + l.count, 0);
  if (target <= 0) return 0;
  if (target >= total) return Infinity;
  const g = (b: number) => layers.reduce((a, l) => a + l.count * laplacePrunedFraction(b, l.tau), 0) - target;
  const dg = (b: number) => layers.reduce((a, l) => a + (l.tau > 0 ? (l.count / l.tau) * Math.exp(-b / l.tau) : 0), 0);
  let lo = 0, hi = Math.max(...layers.map((l) => l.tau), Number.MIN_VALUE);
  while (g(hi) < 0) hi *= 2;
  let b = 0;
  for (let it = 0; it < 200; it++) {
    const v = g(b);
    if (Math.abs(v) <= 1e-9 * target) return b;
    if (v < 0) lo = b; else hi = b;
    const d = dg(b);
    let next = d > 0 ? b - v / d : NaN;
    if (!(next > lo && next < hi)) next = (lo + hi) / 2;
    if (Math.abs(next - b) <= 1e-15 * Math.max(1, b)) return next;
    b = next;
  }
  ensure(Number.isFinite(b), E.NUMERIC, "pruning threshold did not converge");
  return b;
}

/**
 * The cap's interaction with p*: solve β for all layers (Eq. 6); every layer whose empirical
 * sparsity at β exceeds `cap` is capped (keeps its top (1 − cap) by magnitude), and β is re-solved
 * for the remaining layers against what is left of the global budget p*·N − Σ_capped ⌊cap·N_i⌋.
 * A larger β can push more layers over the cap, so this repeats until no new layer is capped (at
 * most L rounds). The Laplace-predicted global sparsity thus stays at p* whenever p* ≤ cap.
 */
export function solveCappedThreshold(
  layers: readonly { count: number; tau: number; sorted: Float32Array }[],
  sparsity: number,
  cap: number,
): { betaAnalytic: number; beta: number; capped: boolean[] } {
  const total = layers.reduce((a, l) => a + l.count, 0);
  const capped = layers.map(() => false);
  const betaAnalytic = solveThreshold(layers, sparsity * total);
  let beta = betaAnalytic;
  for (;;) {
    const over = layers.map((l, i) => !capped[i] && l.count > 0 && (l.count - countAbove(l.sorted, beta)) / l.count > cap);
    if (!over.some(Boolean)) break;
    over.forEach((o, i) => { if (o) capped[i] = true; });
    const free = layers.filter((_, i) => !capped[i]);
    if (free.length === 0) break;
    const cappedPruned = layers.reduce((a, l, i) => a + (capped[i] ? Math.floor(cap * l.count) : 0), 0);
    beta = solveThreshold(free, sparsity * total - cappedPruned);
  }
  return { betaAnalytic, beta, capped };
}

/**
 * Unified steps of Eq. 13–15. Setting ∂/∂Δ_i of Σ Δ_i²/12 + λ((1/N̄) Σ_i 2S_i/Δ_i − 2^B) to zero
 * gives Δ_i/6 = 2λS_i/(N̄Δ_i²), i.e. Δ_i³ = 12λS_i/N̄, so Δ_i = c·S_i^{1/3} with c = (12λ/N̄)^{1/3}.
 * The budget (Eq. 9) then reads (2/(cN̄)) Σ_k S_k^{2/3} = 2^B, so c = Σ_k S_k^{2/3} / (2^{B−1} N̄) and
 *   Δ_i = S_i^{1/3} · Σ_k S_k^{2/3} / (2^{B−1} · N̄).
 * (The printed Eq. 14 drops the S_i^{1/3} factor.) Layers with S_i = 0 get Δ_i = 0 (nothing to store).
 */
export function solveSteps(s: readonly number[], keptTotal: number, bits: number): number[] {
  const sum23 = s.reduce((a, v) => a + Math.cbrt(v) ** 2, 0);
  const c = sum23 / (2 ** (bits - 1) * keptTotal);
  return s.map((v) => Math.cbrt(v) * c);
}

/** (outer, channels, inner) of a row-major shape around `axis`: flat = (o·C + c)·inner + k. */
export function channelLayout(dims: readonly number[], axis: number): { outer: number; channels: number; inner: number } {
  let outer = 1, inner = 1;
  for (let d = 0; d < axis; d++) outer *= dims[d]!;
  for (let d = axis + 1; d < dims.length; d++) inner *= dims[d]!;
  return { outer, channels: dims[axis] ?? 1, inner };
}

/** Per-channel α_ij = max kept |w| and N̄_ij = kept count (Eq. 7). */
export function channelStats(layer: WeightLayer, mask: Uint8Array): { alpha: Float64Array; kept: Float64Array } {
  const { outer, channels, inner } = channelLayout(layer.dims, layer.channelAxis);
  const alpha = new Float64Array(channels), kept = new Float64Array(channels);
  const w = layer.data;
  let idx = 0;
  for (let o = 0; o < outer; o++) {
    for (let c = 0; c < channels; c++) {
      let a = alpha[c]!, k = 0;
      for (let e = 0; e < inner; e++, idx++) {
        if (mask[idx]) { k++; const v = Math.abs(w[idx]!); if (v > a) a = v; }
      }
      alpha[c] = a; kept[c]! += k;
    }
  }
  return { alpha, kept };
}

/** Keep-mask of |w| > β, or for a capped layer exactly its `keep` largest magnitudes (ties by position). */
export function pruneMask(w: Float32Array, sorted: Float32Array, beta: number, keep?: number): Uint8Array {
  const mask = new Uint8Array(w.length);
  if (keep === undefined) {
    for (let i = 0; i < w.length; i++) mask[i] = Math.abs(w[i]!) > beta ? 1 : 0;
    return mask;
  }
  if (keep <= 0) return mask;
  const t = sorted[w.length - keep]!;
  let ties = keep - countAbove(sorted, t);
  for (let i = 0; i < w.length; i++) {
    const a = Math.abs(w[i]!);
    if (a > t) mask[i] = 1;
    else if (a === t && ties > 0) { mask[i] = 1; ties--; }
  }
  return mask;
}

/**
 * Eq. 10 with the stored float32 step: code = sgn(w)·round(|w|/Δ); zero codes are dropped.
 * Returns the compressed tensor and Σ (w − ŵ)² over the kept weights, ŵ decoded exactly as
 * `dequantize` does.
 */
export function quantizeUniform(layer: WeightLayer, mask: Uint8Array, step: number): { tensor: CompressedTensor; sse: number } {
  const w = layer.data, stored = Math.fround(step);
  let n = 0;
  for (let i = 0; i < w.length; i++) n += mask[i]!;
  const indices = new Uint32Array(n), codes = new Int32Array(n);
  let k = 0, sse = 0;
  for (let i = 0; i < w.length; i++) {
    if (!mask[i]) continue;
    const x = w[i]!;
    const q = stored > 0 ? Math.round(Math.abs(x) / stored) : 0;
    const code = x < 0 ? -q : q;
    const deq = Math.fround(stored * code);
    sse += (x - deq) ** 2;
    if (code !== 0) { indices[k] = i; codes[k] = code; k++; }
  }
  const tensor: CompressedTensor = {
    name: layer.name, dims: [...layer.dims], codebook: { kind: "uniform", step: stored > 0 ? stored : 1 },
    indices: indices.slice(0, k), codes: codes.slice(0, k),
  };
  return { tensor, sse };
}

/** Check OPQ options; throws INVALID_OPTION. */
export function validateOpqOptions(o: OpqOptions): void {
  ensure(o.sparsity >= 0 && o.sparsity < 1, E.INVALID_OPTION, `sparsity must be in [0, 1), got ${o.sparsity}`);
  ensure(o.bits >= 1 && o.bits <= 16, E.INVALID_OPTION, `bits must be in [1, 16], got ${o.bits}`);
  ensure(o.maxLayerSparsity > 0 && o.maxLayerSparsity <= 1, E.INVALID_OPTION, `maxLayerSparsity must be in (0, 1], got ${o.maxLayerSparsity}`);
}

/**
 * OPQ over a set of layers: fit τ_i (LM), solve the shared β with the per-layer cap, mask,
 * solve Δ_i (Eq. 15) and quantize (Eq. 10). `onLayer` is called once per layer per pass (3 passes).
 */
export function opqCompress(layers: readonly WeightLayer[], options: OpqOptions, onLayer?: () => void): OpqResult {
  validateOpqOptions(options);
  ensure(layers.length > 0, E.NO_WEIGHTS, "no weight layers to compress");
  const fits = layers.map((l) => {
    for (let i = 0; i < l.data.length; i++) ensure(Number.isFinite(l.data[i]!), E.INVALID_MODEL, `weight ${l.name} has a non-finite value at ${i}`);
    const sorted = sortedMagnitudes(l.data);
    const fit = laplaceFit(sorted);
    onLayer?.();
    return { sorted, fit, count: l.data.length, tau: fit.tauLm };
  });
  const cap = options.maxLayerSparsity;
  const { betaAnalytic, beta, capped } = solveCappedThreshold(fits, options.sparsity, cap);
  const masks = layers.map((l, i) => {
    const f = fits[i]!;
    const m = pruneMask(l.data, f.sorted, beta, capped[i] ? l.data.length - Math.floor(cap * l.data.length) : undefined);
    onLayer?.();
    return m;
  });
  const stats = layers.map((l, i) => channelStats(l, masks[i]!));
  const s = stats.map(({ alpha, kept }) => alpha.reduce((a, v, j) => a + v * kept[j]!, 0));
  const keptPer = stats.map(({ kept }) => kept.reduce((a, v) => a + v, 0));
  const keptTotal = keptPer.reduce((a, v) => a + v, 0);
  const steps = keptTotal > 0 ? solveSteps(s, keptTotal, options.bits) : s.map(() => 0);
  steps.forEach((d, i) => ensure(Number.isFinite(d), E.NUMERIC, `step of ${layers[i]!.name} is not finite`));

  const total = fits.reduce((a, f) => a + f.count, 0);
  const out: OpqLayer[] = [];
  const tensors: CompressedTensor[] = [];
  let budget = 0, rounded = 0, predPrunedCount = 0;
  layers.forEach((l, i) => {
    const f = fits[i]!, n = f.count, step = steps[i]!;
    const { tensor, sse } = quantizeUniform(l, masks[i]!, step);
    tensors.push(tensor);
    let realPrune = 0;
    for (let k = 0; k < n; k++) if (!masks[i]![k]) realPrune += l.data[k]! ** 2;
    const { alpha, kept } = stats[i]!;
    let bins = 0;
    for (let j = 0; j < alpha.length; j++) bins += kept[j]! * (step > 0 ? Math.round((2 * alpha[j]!) / step) : 0);
    if (step > 0) budget += (2 * s[i]!) / step;
    rounded += bins;
    const pred = laplacePrunedFraction(beta, f.tau);
    predPrunedCount += capped[i] ? Math.floor(cap * n) : pred * n;
    out.push({
      name: l.name, params: n, ...f.fit,
      predictedSparsity: pred,
      analyticSparsity: n ? (n - countAbove(f.sorted, betaAnalytic)) / n : 0,
      capped: capped[i]!,
      maskSparsity: n ? (n - keptPer[i]!) / n : 0,
      sparsity: n ? (n - tensor.indices.length) / n : 0,
      kept: keptPer[i]!, s: s[i]!, step,
      avgBins: keptPer[i]! ? bins / keptPer[i]! : 0,
      predictedPruningError: capped[i] ? NaN : laplacePruningError(n, beta, f.tau),
      realPruningError: realPrune,
      predictedQuantMse: (step * step) / 12,
      realQuantMse: keptPer[i]! ? sse / keptPer[i]! : 0,
    });
    onLayer?.();
  });
  const stored = tensors.reduce((a, t) => a + t.indices.length, 0);
  // A capped layer is pruned at a magnitude quantile, not at β: its Laplace prediction uses its own
  // threshold β_i = −τ·ln(1 − cap), so Eq. 2 is evaluated there.
  out.forEach((l, i) => { if (l.capped) l.predictedPruningError = laplacePruningError(l.params, -fits[i]!.tau * Math.log1p(-cap), fits[i]!.tau); });
  return {
    tensors, layers: out, masks, betaAnalytic, beta,
    predictedSparsity: predPrunedCount / total,
    maskSparsity: (total - keptTotal) / total,
    sparsity: (total - stored) / total,
    budgetBins: keptTotal ? budget / keptTotal : 0,
    roundedBins: keptTotal ? rounded / keptTotal : 0,
    predictedPruningError: out.reduce((a, l) => a + l.predictedPruningError, 0) / total,
    realPruningError: out.reduce((a, l) => a + l.realPruningError, 0) / total,
    predictedQuantError: out.reduce((a, l) => a + l.predictedQuantMse, 0),
    realQuantError: out.reduce((a, l) => a + l.realQuantMse, 0),
  };
}
