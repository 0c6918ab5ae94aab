/** Tests of the OPQ math on synthetic Laplace layers: fits, β, the cap, the Δ_i budget, exact round trips. */
import { describe, expect, test } from "bun:test";
import { codebookValue, dequantize } from "../format/mod.ts";
import { CompressError } from "./errors.ts";
import { laplaceFit, laplacePrunedFraction, sortedMagnitudes } from "./laplace.ts";
import { opqCompress, solveSteps, solveThreshold, type WeightLayer } from "./opq.ts";
import { mulberry32 } from "../format/mod.ts";

const rng = mulberry32;

/** n Laplace(0, τ) samples. */
function laplace(n: number, tau: number, seed: number): Float32Array {
  const r = rng(seed), out = new Float32Array(n);
  for (let i = 0; i < n; i++) { const u = r() - 0.5; out[i] = -tau * Math.sign(u) * Math.log(1 - 2 * Math.abs(u)); }
  return out;
}

function layer(name: string, dims: number[], tau: number, seed: number): WeightLayer {
  return { name, dims, data: laplace(dims.reduce((a, b) => a * b, 1), tau, seed), channelAxis: 0 };
}

const LAYERS = [layer("a", [16, 8, 3, 3], 0.2, 1), layer("b", [32, 16, 3, 3], 0.05, 2), layer("c", [64, 32, 3, 3], 0.02, 3), layer("fc", [10, 64], 0.1, 4)];

describe("laplace fits", () => {
  test("MLE and LM recover τ of Laplace samples", () => {
    const fit = laplaceFit(sortedMagnitudes(laplace(50_000, 0.037, 9)));
    expect(Math.abs(fit.tauMle / 0.037 - 1)).toBeLessThan(0.02);
    expect(Math.abs(fit.tauLm / 0.037 - 1)).toBeLessThan(0.02);
    expect(fit.cdfRmse).toBeLessThan(0.01);
  });
  test("LM differs from MLE when the data are not Laplace and fits the CDF better", () => {
    const r = rng(5), w = new Float32Array(20_000).map(() => r() - 0.5); // uniform magnitudes
    const sorted = sortedMagnitudes(w), fit = laplaceFit(sorted);
    const rmse = (tau: number) => Math.sqrt(Array.from({ length: 1000 }, (_, k) => {
      const i = Math.floor(((k + 0.5) * sorted.length) / 1000);
      return (laplacePrunedFraction(sorted[i]!, tau) - (i + 0.5) / sorted.length) ** 2;
    }).reduce((a, b) => a + b) / 1000);
    expect(Math.abs(fit.tauLm - fit.tauMle)).toBeGreaterThan(0.01);
    expect(rmse(fit.tauLm)).toBeLessThan(rmse(fit.tauMle));
  });
});

describe("shared threshold (Eq. 6)", () => {
  test("one layer: β = −τ ln(1 − p*)", () => {
    expect(solveThreshold([{ count: 1000, tau: 0.1 }], 700)).toBeCloseTo(-0.1 * Math.log(0.3), 9);
  });
  test("several layers: g(β) = 0", () => {
    const ls = [{ count: 100, tau: 0.3 }, { count: 10_000, tau: 0.01 }, { count: 5000, tau: 0.05 }];
    const beta = solveThreshold(ls, 0.74 * 15_100);
    const g = ls.reduce((a, l) => a + l.count * (1 - Math.exp(-beta / l.tau)), 0);
    expect(Math.abs(g / (0.74 * 15_100) - 1)).toBeLessThan(1e-9);
  });
});

describe("unified steps (Eq. 9, 15)", () => {
  const r = opqCompress(LAYERS, { sparsity: 0.74, bits: 3, maxLayerSparsity: 1 });
  test("budget (1/N̄) Σ N̄_ij 2α_ij/Δ_i = 2^B to 1e-6", () => {
    expect(Math.abs(r.budgetBins / 8 - 1)).toBeLessThan(1e-6);
    // Recomputed here from the weights, the mask |w| > β and the solved Δ_i.
    let bins = 0, kept = 0;
    LAYERS.forEach((l, i) => {
      const per = l.dims.slice(1).reduce((a, b) => a * b, 1);
      for (let j = 0; j < l.dims[0]!; j++) {
        let a = 0, n = 0;
        for (let k = j * per; k < (j + 1) * per; k++) if (Math.abs(l.data[k]!) > r.beta) { n++; a = Math.max(a, Math.abs(l.data[k]!)); }
        bins += (n * 2 * a) / r.layers[i]!.step;
        kept += n;
      }
    });
    expect(Math.abs(bins / kept / 2 ** 3 - 1)).toBeLessThan(1e-6);
  });
  test("Δ_i minimise Σ Δ_i² on the budget surface", () => {
    const s = [1, 5, 2.5, 0.3], nBar = 40, d = solveSteps(s, nBar, 4);
    const obj = (x: number[]) => x.reduce((a, v) => a + v * v, 0);
    // Move along the constraint: scale Δ_0 and fix the budget with Δ_1.
    for (const f of [0.9, 1.1]) {
      const d0 = d[0]! * f, rest = 2 ** 4 * nBar - (2 * s[0]!) / d0 - (2 * s[2]!) / d[2]! - (2 * s[3]!) / d[3]!;
      expect(obj([d0, (2 * s[1]!) / rest, d[2]!, d[3]!])).toBeGreaterThan(obj(d));
    }
  });
  test("dequantize is bit-identical to Q(x) and codebookValue; zero codes are dropped", () => {
    for (const [i, t] of r.tensors.entries()) {
      const l = LAYERS[i]!, deq = dequantize(t), step = (t.codebook as { step: number }).step;
      expect(step).toBe(Math.fround(r.layers[i]!.step));
      for (let k = 1; k < t.indices.length; k++) expect(t.indices[k]!).toBeGreaterThan(t.indices[k - 1]!);
      let nz = 0;
      for (let k = 0; k < t.indices.length; k++) {
        const x = l.data[t.indices[k]!]!;
        expect(t.codes[k]).not.toBe(0);
        expect(deq[t.indices[k]!]).toBe(codebookValue(t.codebook, t.codes[k]!));
        expect(t.codes[k]).toBe(Math.sign(x) * Math.round(Math.abs(x) / step));
      }
      for (let k = 0; k < deq.length; k++) if (deq[k] !== 0) nz++;
      expect(nz).toBe(t.indices.length);
    }
  });
  test("predicted errors track the real ones on Laplace data", () => {
    expect(Math.abs(r.predictedPruningError / r.realPruningError - 1)).toBeLessThan(0.05);
    expect(Math.abs(r.maskSparsity - 0.74)).toBeLessThan(0.01);
    const fine = opqCompress(LAYERS, { sparsity: 0.5, bits: 6, maxLayerSparsity: 1 });
    for (const l of fine.layers) expect(Math.abs(l.realQuantMse / l.predictedQuantMse - 1)).toBeLessThan(0.1);
  });
});

describe("per-layer sparsity cap", () => {
  const ls = [layer("big", [64, 64, 3, 3], 0.001, 7), layer("wide", [32, 16, 3, 3], 0.2, 8), layer("mid", [64, 16, 3, 3], 0.05, 9)];
  const free = opqCompress(ls, { sparsity: 0.8, bits: 3, maxLayerSparsity: 1 });
  const capped = opqCompress(ls, { sparsity: 0.8, bits: 3, maxLayerSparsity: 0.9 });
  test("the analytic β over-prunes the narrow layer; the cap keeps exactly its top 10%", () => {
    expect(free.layers[0]!.maskSparsity).toBeGreaterThan(0.99);
    const big = capped.layers[0]!;
    expect(big.capped).toBe(true);
    expect(big.analyticSparsity).toBeGreaterThan(0.99);
    expect(big.kept).toBe(36864 - Math.floor(0.9 * 36864));
    expect(capped.layers.slice(1).every((l) => !l.capped && l.maskSparsity <= 0.9)).toBe(true);
  });
  test("β is re-solved so the predicted global sparsity stays at p*", () => {
    expect(capped.beta).toBeGreaterThan(capped.betaAnalytic);
    expect(Math.abs(capped.predictedSparsity - 0.8)).toBeLessThan(1e-6);
    expect(Math.abs(capped.maskSparsity - 0.8)).toBeLessThan(0.02);
  });
});

describe("bad input", () => {
  test("options out of range are INVALID_OPTION", () => {
    for (const o of [{ sparsity: 1, bits: 3, maxLayerSparsity: 0.9 }, { sparsity: 0.5, bits: 0, maxLayerSparsity: 0.9 }, { sparsity: 0.5, bits: 3, maxLayerSparsity: 0 }]) {
      expect(() => opqCompress(LAYERS, o)).toThrow(CompressError);
      try { opqCompress(LAYERS, o); } catch (e) { expect((e as CompressError).code).toBe("INVALID_OPTION"); }
    }
  });
  test("non-finite weights are INVALID_MODEL", () => {
    const bad = layer("nan", [4, 4], 0.1, 3);
    bad.data[5] = NaN;
    try { opqCompress([bad], { sparsity: 0.5, bits: 3, maxLayerSparsity: 0.9 }); throw new Error("no throw"); } catch (e) {
      expect((e as CompressError).code).toBe("INVALID_MODEL");
    }
  });
});
