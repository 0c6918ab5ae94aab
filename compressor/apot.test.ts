/** Tests of APoT levels, the post-training α search and the table/uniform codebooks it writes. */
import { describe, expect, test } from "bun:test";
import { dequantize } from "../format/mod.ts";
import { APOT_MAGNITUDES, apotSse, fitApotAlpha, nearestLevel, quantizeApot, quantizeUniformMax, signedLevels } from "./apot.ts";

function gaussian(n: number, seed: number): Float32Array {
  let s = seed;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 4294967296;
  return new Float32Array(n).map(() => 0.05 * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u()));
}

describe("APoT", () => {
  test("levels are the reference implementation's", () => {
    APOT_MAGNITUDES[4].forEach((v, i) => expect(v).toBeCloseTo([0, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1][i]!, 12));
    expect(signedLevels(APOT_MAGNITUDES[4])).toHaveLength(15);
    expect(signedLevels(APOT_MAGNITUDES[3])).toEqual([-1, -0.5, -0.25, 0, 0.25, 0.5, 1]);
    expect(nearestLevel([-1, -0.5, -0.25, 0, 0.25, 0.5, 1], 0.74)).toBe(5);
    expect(nearestLevel([-1, -0.5, -0.25, 0, 0.25, 0.5, 1], 0.76)).toBe(6);
  });
  test("α is a local minimum of the quantization MSE", () => {
    const w = gaussian(20_000, 3), levels = signedLevels(APOT_MAGNITUDES[4]);
    const { alpha, sigma } = fitApotAlpha(w, levels);
    expect(alpha / sigma).toBeGreaterThan(1);
    const at = apotSse(w, levels, alpha);
    for (const f of [0.9, 0.97, 1.03, 1.1]) expect(at).toBeLessThanOrEqual(apotSse(w, levels, alpha * f) * (1 + 1e-9));
  });
  test("table codebook decodes to α·level; zeros are dropped; error matches the returned SSE", () => {
    const w = gaussian(5000, 4);
    for (const bits of [3, 4] as const) {
      const { tensor, alpha, sse } = quantizeApot("w", [50, 100], w, bits);
      expect(tensor.codebook.kind).toBe("table");
      const values = (tensor.codebook as { values: Float32Array }).values;
      expect(values.length).toBe(2 * APOT_MAGNITUDES[bits].length - 1);
      expect(Math.max(...values)).toBe(Math.fround(alpha));
      const deq = dequantize(tensor);
      let e = 0;
      for (let i = 0; i < w.length; i++) e += (w[i]! - deq[i]!) ** 2;
      expect(Math.abs(e / sse - 1)).toBeLessThan(1e-6);
      expect(tensor.indices.length).toBeLessThan(w.length);
      for (const c of tensor.codes) expect(values[c]).not.toBe(0);
    }
  });
  test("8-bit uniform edge layers: 255 levels, error below step²/12·1.2", () => {
    const w = gaussian(5000, 5);
    const { tensor, step, sse } = quantizeUniformMax("w", [5000], w);
    expect(Math.max(...tensor.codes.map(Math.abs))).toBe(127);
    expect(sse / w.length).toBeLessThan((step * step) / 12 * 1.2);
  });
});
