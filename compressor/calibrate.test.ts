/** The compensation math on small synthetic layers: H from im2col, the inverse Cholesky, GPTQ with a fixed mask and grid. */
import { expect, test } from "bun:test";
import { mulberry32, streamBits } from "../format/mod.ts";
import {
  addConvInputs, addDenseInputs, compensateLayer, jsGemm, createHessian, finishHessian, gridNeighbours, gridRounder, inverseCholeskyUpper, outputError,
  prepareCompensation,
} from "./calibrate.ts";
import { convGeometryOf } from "./calibrate-model.ts";
import type { Node } from "../format/mod.ts";

const rnd = mulberry32(42);
const randn = () => Math.sqrt(-2 * Math.log(rnd() + 1e-12)) * Math.cos(2 * Math.PI * rnd());

/** A well-conditioned random SPD matrix X Xᵀ of n correlated samples. */
function spd(k: number, n = 4 * k): { h: Float64Array; x: Float32Array } {
  const mix = Float64Array.from({ length: k * k }, () => randn());
  const x = new Float32Array(n * k);
  for (let r = 0; r < n; r++) {
    const z = Array.from({ length: k }, randn);
    // x = z + (0.5/√k)·M z: correlated inputs, condition number in the tens.
    for (let i = 0; i < k; i++) { let v = z[i]!; for (let j = 0; j < k; j++) v += (0.5 / Math.sqrt(k)) * mix[i * k + j]! * z[j]!; x[r * k + i] = v; }
  }
  const acc = createHessian(k);
  addDenseInputs(acc, x, n);
  finishHessian(acc);
  return { h: acc.h[0]!, x };
}

test("inverseCholeskyUpper: Uᵀ U H = I, U upper triangular", () => {
  for (const k of [1, 5, 17]) {
    const { h } = spd(k);
    const u = inverseCholeskyUpper(h, k)!;
    for (let i = 0; i < k; i++) for (let j = 0; j < i; j++) expect(u[i * k + j]).toBe(0);
    for (let i = 0; i < k; i++) {
      for (let j = 0; j < k; j++) {
        let v = 0;
        for (let a = 0; a < k; a++) { let hinv = 0; for (let t = 0; t < k; t++) hinv += u[t * k + i]! * u[t * k + a]!; v += hinv * h[a * k + j]!; }
        expect(Math.abs(v - (i === j ? 1 : 0))).toBeLessThan(1e-8);
      }
    }
  }
  expect(inverseCholeskyUpper(Float64Array.from([1, 2, 2, 1]), 2)).toBeNull();
});

test("inverseCholeskyUpper blocked (K ≥ 256, with a GEMM): the same U as the float64 loops", () => {
  const k = 300;
  const { h } = spd(k, 2 * k);
  const exact = inverseCholeskyUpper(h, k)!, blocked = inverseCholeskyUpper(h, k, jsGemm)!;
  let worst = 0, scale = 0;
  for (let i = 0; i < k * k; i++) { worst = Math.max(worst, Math.abs(exact[i]! - blocked[i]!)); scale = Math.max(scale, Math.abs(exact[i]!)); }
  for (let i = 0; i < k; i++) for (let j = 0; j < i; j++) expect(blocked[i * k + j]).toBe(0);
  // float32 products inside: agreement to ~1e-5 of the largest entry.
  expect(worst / scale).toBeLessThan(1e-4);
  expect(worst).toBeGreaterThan(0);
  expect(inverseCholeskyUpper(Float64Array.from({ length: k * k }, (_, i) => (i % (k + 1) === 0 ? -1 : 0)), k, jsGemm)).toBeNull();
});

test("compensateLayer with a GEMM (K ≥ 256): codes of the float64 path, up to float32 ties", () => {
  const k = 260, rows = 6;
  const { h } = spd(k, 2 * k);
  const w = Float64Array.from({ length: rows * k }, () => randn());
  const mask = Uint8Array.from({ length: rows * k }, () => (rnd() < 0.5 ? 0 : 1));
  const round = gridRounder({ kind: "uniform", step: 0.3, maxCode: 3 });
  const target = new Float64Array(rows * k);
  for (let r = 0; r < rows; r++) for (let j = 0; j < k; j++) { let v = 0; for (let i = 0; i < k; i++) v += w[r * k + i]! * h[i * k + j]!; target[r * k + j] = v; }
  const a = compensateLayer(w, mask, rows, k, h, round, 0, { target, blockSize: 64 });
  const b = compensateLayer(w, mask, rows, k, h, round, 0, { target, blockSize: 64, gemm: jsGemm });
  let same = 0;
  for (let i = 0; i < w.length; i++) same += a.codes[i] === b.codes[i] ? 1 : 0;
  expect(same / w.length).toBeGreaterThan(0.99);
  const ea = outputError(w, a.weights, rows, k, h), eb = outputError(w, b.weights, rows, k, h);
  expect(Math.abs(ea - eb) / ea).toBeLessThan(0.01);
});

test("Hessian: addDenseInputs equals X Xᵀ and Σx", () => {
  const k = 7, n = 150;
  const x = Float32Array.from({ length: n * k }, () => randn());
  const acc = createHessian(k);
  addDenseInputs(acc, x, n);
  finishHessian(acc);
  for (let i = 0; i < k; i++) {
    let s = 0;
    for (let r = 0; r < n; r++) s += x[r * k + i]!;
    expect(acc.sum[0]![i]).toBeCloseTo(s, 9);
    for (let j = 0; j < k; j++) {
      let v = 0;
      for (let r = 0; r < n; r++) v += x[r * k + i]! * x[r * k + j]!;
      // Each block's sums are rounded to float32 once before entering the float64 H.
      expect(Math.abs(acc.h[0]![i * k + j]! - v)).toBeLessThan(1e-6 * (1 + Math.abs(v)));
    }
  }
});

test("Hessian: addConvInputs equals a naive im2col (padding, stride, dilation, groups)", () => {
  const node: Node = {
    opType: "Conv", domain: "", name: "c", inputs: ["x", "w"], outputs: ["y"],
    attrs: { group: { type: "int", value: 2 }, pads: { type: "ints", value: [1, 0, 2, 1] }, strides: { type: "ints", value: [2, 1] }, dilations: { type: "ints", value: [1, 2] } },
  };
  const dims = [2, 4, 5, 6], wDims = [6, 2, 3, 2];
  const g = convGeometryOf(node, dims, wDims);
  const x = Float32Array.from({ length: 2 * 4 * 5 * 6 }, () => randn());
  const acc = createHessian(2 * 3 * 2, 2);
  addConvInputs(acc, x, 2, g, () => true);
  finishHessian(acc);
  expect(acc.rows).toBe(2 * g.outH * g.outW);
  expect([g.outH, g.outW]).toEqual([Math.floor((5 + 3 - 2 - 1) / 2) + 1, Math.floor((6 + 1 - 2 - 1) / 1) + 1]);
  for (let gr = 0; gr < 2; gr++) {
    const rows: number[][] = [];
    for (let n = 0; n < 2; n++) for (let oy = 0; oy < g.outH; oy++) for (let ox = 0; ox < g.outW; ox++) {
      const v: number[] = [];
      for (let c = 0; c < 2; c++) for (let ky = 0; ky < 3; ky++) for (let kx = 0; kx < 2; kx++) {
        const iy = oy * 2 - 1 + ky, ix = ox - 0 + 2 * kx;
        v.push(iy >= 0 && iy < 5 && ix >= 0 && ix < 6 ? x[((n * 4 + gr * 2 + c) * 5 + iy) * 6 + ix]! : 0);
      }
      rows.push(v);
    }
    const k = 12;
    for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) {
      const v = rows.reduce((a, r) => a + r[i]! * r[j]!, 0);
      expect(Math.abs(acc.h[gr]![i * k + j]! - v)).toBeLessThan(1e-6 * (1 + Math.abs(v)));
    }
  }
});

test("compensateLayer: a fine grid and a full mask reproduce W; pruned weights are exactly 0", () => {
  const k = 12, rows = 5;
  const { h } = spd(k);
  const w = Float64Array.from({ length: rows * k }, () => randn());
  const fine = gridRounder({ kind: "uniform", step: 1e-6, maxCode: 1 << 30 });
  const full = compensateLayer(w, new Uint8Array(rows * k).fill(1), rows, k, h, fine, 0, { damp: 0 });
  for (let i = 0; i < w.length; i++) expect(Math.abs(full.weights[i]! - w[i]!)).toBeLessThan(1e-5);
  const mask = Uint8Array.from({ length: rows * k }, (_, i) => (i % 3 === 0 ? 0 : 1));
  const pruned = compensateLayer(w, mask, rows, k, h, fine, 0);
  for (let i = 0; i < w.length; i++) {
    if (!mask[i]) { expect(pruned.weights[i]).toBe(0); expect(pruned.stored[i]).toBe(0); }
  }
  // OBS compensation beats plain masking on the layer output.
  const masked = Float64Array.from(w, (v, i) => (mask[i] ? v : 0));
  expect(outputError(w, pruned.weights, rows, k, h)).toBeLessThan(outputError(w, masked, rows, k, h));
});

test("compensateLayer: on a coarse fixed grid it lowers the output error of round-to-nearest, codes stay on the grid", () => {
  const k = 32, rows = 8, step = 0.4, maxCode = 3;
  const { h } = spd(k);
  const w = Float64Array.from({ length: rows * k }, () => randn());
  const mask = Uint8Array.from({ length: rows * k }, () => (rnd() < 0.4 ? 0 : 1));
  const round = gridRounder({ kind: "uniform", step, maxCode });
  const rtn = Float64Array.from(w, (v, i) => (mask[i] ? round(v).value : 0));
  const res = compensateLayer(w, mask, rows, k, h, round, 0);
  for (let i = 0; i < w.length; i++) {
    expect(Math.abs(res.codes[i]!)).toBeLessThanOrEqual(maxCode);
    expect(res.weights[i] === Math.fround(Math.fround(step) * res.codes[i]!)).toBe(true);
    if (!mask[i]) expect(res.weights[i] === 0).toBe(true);
  }
  expect(outputError(w, res.weights, rows, k, h)).toBeLessThan(0.9 * outputError(w, rtn, rows, k, h));
  // A table grid (APoT-like): every value decoded is a table entry or 0.
  const values = Float32Array.from([-1, -0.5, -0.25, 0, 0.25, 0.5, 1]);
  const t = compensateLayer(w, mask, rows, k, h, gridRounder({ kind: "table", values }), 3);
  for (let i = 0; i < w.length; i++) expect(t.stored[i] ? values[t.codes[i]!] : 0).toBe(t.weights[i]!);
});

test("gridNeighbours and streamBits (the rate the rounding prices)", () => {
  const around = (grid: Parameters<typeof gridNeighbours>[0], x: number) => {
    const out = new Float64Array(4), n = gridNeighbours(grid)(x, out);
    return Array.from({ length: n }, (_, j) => [out[2 * j], out[2 * j + 1]]);
  };
  expect(around({ kind: "uniform", step: 0.5, maxCode: 2 }, 0.7)).toEqual([[1, 0.5], [2, 1]]);
  expect(around({ kind: "uniform", step: 0.5, maxCode: 2 }, 9)).toEqual([[2, 1], [2, 1]]);
  expect(around({ kind: "uniform", step: 0, maxCode: 2 }, 0.3)).toEqual([]);
  expect(around({ kind: "table", values: Float32Array.from([0.5, -1, 0]) }, 0.2)).toEqual([[2, 0], [0, 0.5]]);
  // 4 codes, 2 symbols equally often: 4 bits; gaps 0, 1, 1, 1: 2 + 3·log2(4/3) bits.
  expect(streamBits([0, 2, 4, 6], [1, -1, 1, -1])).toBeCloseTo(4 + 2 + 3 * Math.log2(4 / 3), 9);
  expect(streamBits([], [])).toBe(0);
});

test("solve on a row subset gives exactly those rows of the full sweep (with and without the rate term, float64 and GEMM paths)", () => {
  for (const [k, gemm] of [[40, undefined], [260, jsGemm]] as const) {
    const rows = 7;
    const { h } = spd(k, 2 * k);
    const w = Float64Array.from({ length: rows * k }, () => randn());
    const mask = Uint8Array.from({ length: rows * k }, () => (rnd() < 0.4 ? 0 : 1));
    const grid = { kind: "uniform" as const, step: 0.3, maxCode: 3 };
    const prep = prepareCompensation(w, mask, rows, k, h, { blockSize: 16, gemm });
    const rate = { lambda: 5, bits: (c: number) => 2 + Math.abs(c), neighbours: gridNeighbours(grid) };
    for (const r of [undefined, rate]) {
      const full = prep.solve(gridRounder(grid), 0, r), part = prep.solve(gridRounder(grid), 0, r, [1, 4, 6]);
      expect(part.weights.length).toBe(3 * k);
      [1, 4, 6].forEach((row, j) => {
        expect(Array.from(part.codes.subarray(j * k, j * k + k))).toEqual(Array.from(full.codes.subarray(row * k, row * k + k)));
        expect(Array.from(part.weights.subarray(j * k, j * k + k))).toEqual(Array.from(full.weights.subarray(row * k, row * k + k)));
      });
      if (r) expect(Array.from(full.codes).some((c, i) => c !== prep.solve(gridRounder(grid), 0).codes[i])).toBe(true);
    }
  }
});
