/**
 * Additive powers-of-two weight quantization (Li, Dong, Wang, ICLR 2020), post-training: the
 * signed APoT levels scaled by one clipping value α per layer, α chosen to minimise the MSE.
 * @module
 */
import type { CompressedTensor } from "../format/mod.ts";
import { COMPRESS_ERROR_CODES as E, ensure } from "./errors.ts";

/**
 * Non-negative APoT weight magnitudes by bit width (sign + (b−1)-bit magnitude), largest 1:
 * 4-bit: sums of {0, 1/2, 1/4, 1/16} and {0, 1/8}, divided by 5/8; 3-bit: {0, 1/4, 1/2, 1}.
 */
export const APOT_MAGNITUDES: Readonly<Record<3 | 4, readonly number[]>> = {
  3: [0, 0.25, 0.5, 1],
  4: [0, 0.0625, 0.125, 0.1875, 0.25, 0.375, 0.5, 0.625].map((v) => v / 0.625),
} as const;

/** At most this many weights (evenly strided) enter the α search; the final quantization uses all. */
export const ALPHA_SEARCH_SAMPLES = 1 << 14;

/** The 2·m − 1 signed levels of a magnitude set, ascending; index m − 1 is 0. */
export function signedLevels(magnitudes: readonly number[]): number[] {
  const pos = magnitudes.slice(1);
  return [...pos.map((v) => -v).reverse(), 0, ...pos];
}

/** Index of the level nearest to x in an ascending array (ties go to the smaller magnitude). */
export function nearestLevel(levels: ArrayLike<number>, x: number): number {
  let lo = 0, hi = levels.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (levels[mid]! <= x) lo = mid; else hi = mid;
  }
  const dl = Math.abs(x - levels[lo]!), dh = Math.abs(levels[hi]! - x);
  return dl < dh || (dl === dh && Math.abs(levels[lo]!) <= Math.abs(levels[hi]!)) ? lo : hi;
}

/** Σ (w − α·q(w/α))² of APoT quantization with clipping to [−α, α]. */
export function apotSse(w: ArrayLike<number>, levels: readonly number[], alpha: number): number {
  let sse = 0;
  for (let i = 0; i < w.length; i++) {
    const x = Math.max(-1, Math.min(1, w[i]! / alpha));
    sse += (w[i]! - alpha * levels[nearestLevel(levels, x)]!) ** 2;
  }
  return sse;
}

/**
 * The α minimising the APoT quantization MSE of `w`: weights are normalised by their standard
 * deviation σ (as the reference implementation does, but without subtracting the mean, so that 0
 * stays a level and pruned weights stay free), a grid over α/σ ∈ (0, max|w|/σ] is searched on a
 * strided sample and refined by golden section around the best grid point.
 */
export function fitApotAlpha(w: Float32Array, levels: readonly number[]): { alpha: number; sigma: number; mean: number } {
  let sum = 0, sq = 0, max = 0;
  for (let i = 0; i < w.length; i++) { sum += w[i]!; sq += w[i]! * w[i]!; max = Math.max(max, Math.abs(w[i]!)); }
  const mean = w.length ? sum / w.length : 0;
  const sigma = w.length ? Math.sqrt(Math.max(0, sq / w.length - mean * mean)) : 0;
  if (max === 0) return { alpha: 1, sigma, mean };
  const stride = Math.max(1, Math.floor(w.length / ALPHA_SEARCH_SAMPLES));
  const sample = stride === 1 ? w : w.filter((_, i) => i % stride === 0);
  const f = (a: number) => apotSse(sample, levels, a);
  const unit = sigma > 0 ? sigma : max, top = max / unit, steps = 48;
  let best = top, bestCost = f(max);
  for (let k = 1; k < steps; k++) {
    const c = f((top * k * unit) / steps);
    if (c < bestCost) { bestCost = c; best = (top * k) / steps; }
  }
  // Golden section on [best − h, best + h] in units of σ.
  let lo = Math.max(1e-6, best - top / steps), hi = Math.min(top, best + top / steps);
  const g = (Math.sqrt(5) - 1) / 2;
  for (let it = 0; it < 24; it++) {
    const a = hi - g * (hi - lo), b = lo + g * (hi - lo);
    if (f(a * unit) <= f(b * unit)) hi = b; else lo = a;
  }
  const refined = ((lo + hi) / 2) * unit;
  const alpha = f(refined) <= bestCost ? refined : best * unit;
  return { alpha, sigma, mean };
}

/**
 * APoT-quantize a tensor with a `table` codebook of the α-scaled signed levels; code = table index,
 * and weights snapping to level 0 are dropped. α: the MSE fit on `w` unless given. Returns the
 * tensor and Σ (w − ŵ)².
 */
export function quantizeApot(name: string, dims: number[], w: Float32Array, bits: 3 | 4, alphaGiven?: number): { tensor: CompressedTensor; alpha: number; sse: number } {
  ensure(bits === 3 || bits === 4, E.INVALID_OPTION, `APoT bits must be 3 or 4, got ${bits}`);
  const levels = signedLevels(APOT_MAGNITUDES[bits]);
  const alpha = alphaGiven ?? fitApotAlpha(w, levels).alpha;
  const values = new Float32Array(levels.map((v) => alpha * v));
  const zero = levels.indexOf(0);
  const indices: number[] = [], codes: number[] = [];
  let sse = 0;
  for (let i = 0; i < w.length; i++) {
    const code = nearestLevel(levels, Math.max(-1, Math.min(1, w[i]! / alpha)));
    sse += (w[i]! - values[code]!) ** 2;
    if (code !== zero) { indices.push(i); codes.push(code); }
  }
  const tensor: CompressedTensor = { name, dims: [...dims], codebook: { kind: "table", values }, indices: Uint32Array.from(indices), codes: Int32Array.from(codes) };
  return { tensor, alpha, sse };
}

/**
 * Symmetric 8-bit (or `bits`-bit) uniform quantization with step max|w|/(2^{b−1} − 1), used for the
 * first and last layers. Zero codes are dropped. Returns the tensor and Σ (w − ŵ)².
 */
export function quantizeUniformMax(name: string, dims: number[], w: Float32Array, bits = 8): { tensor: CompressedTensor; step: number; sse: number } {
  let max = 0;
  for (let i = 0; i < w.length; i++) max = Math.max(max, Math.abs(w[i]!));
  const step = Math.fround(max > 0 ? max / (2 ** (bits - 1) - 1) : 1);
  const indices: number[] = [], codes: number[] = [];
  let sse = 0;
  for (let i = 0; i < w.length; i++) {
    const code = Math.sign(w[i]!) * Math.round(Math.abs(w[i]!) / step);
    sse += (w[i]! - Math.fround(step * code)) ** 2;
    if (code !== 0) { indices.push(i); codes.push(code); }
  }
  return { tensor: { name, dims: [...dims], codebook: { kind: "uniform", step }, indices: Uint32Array.from(indices), codes: Int32Array.from(codes) }, step, sse };
}
