/**
 * Laplace fits of weight magnitudes (OPQ paper §3.2). |w| of a Laplace(0, τ) weight is
 * exponential: F(x) = 1 − exp(−x/τ). The maximum-likelihood τ is mean|w|; the paper fits F to the
 * empirical CDF with Levenberg–Marquardt. Both are computed and reported.
 * @module
 */

/** At most this many empirical-CDF points enter the Levenberg–Marquardt fit (evenly spaced quantiles). */
export const LM_MAX_POINTS = 4096;

/** A per-layer Laplace scale from both estimators. */
export interface LaplaceFit {
  /** Levenberg–Marquardt fit of 1 − exp(−x/τ) to the empirical CDF of |w|; the τ OPQ uses. */
  tauLm: number;
  /** Maximum-likelihood τ = mean|w|. */
  tauMle: number;
  /** Root-mean-square CDF residual of the LM fit over the points used. */
  cdfRmse: number;
  /** LM iterations taken. */
  iterations: number;
}

/** |w| sorted ascending, as a new array (the layer's weights are left alone). */
export function sortedMagnitudes(w: Float32Array): Float32Array {
  const a = new Float32Array(w.length);
  for (let i = 0; i < w.length; i++) a[i] = Math.abs(w[i]!);
  return a.sort();
}

/** Maximum-likelihood Laplace scale of zero-mean weights: mean |w| (0 for an empty layer). */
export function laplaceMle(w: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < w.length; i++) s += Math.abs(w[i]!);
  return w.length ? s / w.length : 0;
}

/** Number of entries of an ascending array strictly greater than x (binary search). */
export function countAbove(sorted: Float32Array, x: number): number {
  let lo = 0, hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! <= x) lo = mid + 1; else hi = mid;
  }
  return sorted.length - lo;
}

/**
 * Levenberg–Marquardt fit of F(x) = 1 − exp(−x/τ) to the empirical CDF of ascending magnitudes.
 * Big layers are subsampled deterministically to `maxPoints` evenly spaced quantiles; the
 * empirical CDF at sorted[k] is the mid-rank (k + ½)/n. Starts from the MLE τ.
 */
export function laplaceFit(sorted: Float32Array, maxPoints = LM_MAX_POINTS): LaplaceFit {
  const n = sorted.length;
  const tauMle = laplaceMle(sorted);
  if (n === 0 || tauMle === 0) return { tauLm: tauMle, tauMle, cdfRmse: 0, iterations: 0 };
  const m = Math.min(n, maxPoints);
  const xs = new Float64Array(m), fs = new Float64Array(m);
  for (let k = 0; k < m; k++) {
    const idx = Math.min(n - 1, Math.floor(((k + 0.5) * n) / m));
    xs[k] = sorted[idx]!;
    fs[k] = (idx + 0.5) / n;
  }
  const cost = (tau: number): number => {
    let c = 0;
    for (let k = 0; k < m; k++) { const r = 1 - Math.exp(-xs[k]! / tau) - fs[k]!; c += r * r; }
    return c;
  };
  let tau = tauMle, c = cost(tau), mu = 1e-3, it = 0, converged = false;
  for (; it < 100 && !converged; it++) {
    // One parameter: JᵀJ and Jᵀr are scalars, dr/dτ = −(x/τ²)·exp(−x/τ).
    let jtj = 0, jtr = 0;
    for (let k = 0; k < m; k++) {
      const e = Math.exp(-xs[k]! / tau);
      const j = (-xs[k]! / (tau * tau)) * e;
      jtj += j * j;
      jtr += j * (1 - e - fs[k]!);
    }
    if (jtj === 0) break;
    let accepted = false;
    while (mu < 1e12) {
      const next = tau - jtr / (jtj * (1 + mu)); // Marquardt's scaled damping
      const cn = next > 0 ? cost(next) : Infinity;
      if (cn <= c) {
        const rel = Math.abs(next - tau) / tau;
        tau = next; c = cn; mu = Math.max(mu / 10, 1e-12); accepted = true;
        converged = rel < 1e-10;
        break;
      }
      mu *= 10;
    }
    if (!accepted) break;
  }
  return { tauLm: tau, tauMle, cdfRmse: Math.sqrt(c / m), iterations: it };
}

/** Laplace-predicted fraction of a layer with |w| ≤ β: 1 − exp(−β/τ) (paper Eq. 6 summand). */
export function laplacePrunedFraction(beta: number, tau: number): number {
  return tau > 0 ? 1 - Math.exp(-beta / tau) : 1;
}

/**
 * Laplace-predicted sum of squares of the pruned weights of a layer of n weights:
 * 2n∫₀^β x² f(x) dx = n[2τ² − e^{−β/τ}(β² + 2βτ + 2τ²)] (paper Eq. 2 with f Laplace).
 */
export function laplacePruningError(n: number, beta: number, tau: number): number {
  if (!(tau > 0)) return 0;
  return n * (2 * tau * tau - Math.exp(-beta / tau) * (beta * beta + 2 * beta * tau + 2 * tau * tau));
}
