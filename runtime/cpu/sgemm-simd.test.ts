/**
 * The WASM SIMD GEMM against the JS reference (`sgemmScalar`) on seeded shapes: every edge of the
 * MR×NR tile, blocks deeper than KC, wider than NC and taller than the C scratch, transposed
 * operands, alpha ≠ 1, accumulation into a strided C; plus the `sgemm` dispatch.
 * @module
 */
import { describe, expect, test } from "bun:test";
import { mulberry32 } from "../../format/mod.ts";
import { gemmBackend, type MatrixView, matrixView, setGemmBackend, sgemm, sgemmScalar, SIMD_MIN_MACS } from "./sgemm.ts";
import { SIMD_MR, SIMD_NR, sgemmSimd, simdGemmAvailable } from "./sgemm-simd.ts";

/** Unit roundoff of float32. */
const U32 = 2 ** -24;

interface Case {
  m: number; n: number; k: number; alpha: number;
  transA: boolean; transB: boolean; accumulate: boolean;
  cOffset: number; ldc: number;
}

/** Operands of a case: A and B stored (optionally) transposed, C pre-filled with values and sentinels. */
function operands(c: Case, rand: () => number) {
  const fill = (len: number) => Float32Array.from({ length: len }, () => rand() * 2 - 1);
  const a = fill(c.m * c.k), b = fill(c.k * c.n);
  const cInit = fill(c.cOffset + c.m * c.ldc + 3); // slack past the last row must stay untouched
  const av = matrixView(a, 0, c.transA ? c.m : c.k, c.transA);
  const bv = matrixView(b, 0, c.transB ? c.k : c.n, c.transB);
  return { av, bv, cInit };
}

const at = (v: MatrixView, i: number, j: number) => v.data[v.offset + i * v.rowStride + j * v.colStride]!;

/**
 * Run both kernels on one case and check every element of C. The SIMD kernel sums in float32 (one
 * rounding per product, per add, and alpha folded into B), the reference in float64; by the
 * standard bound for recursive summation (Higham, Accuracy and Stability, §3.1), each float32 dot
 * product of length k is within γ(k+2) ≈ (k+2)·u of the exact one, relative to Σ|alpha·a·b| (+|C|
 * when accumulating). The reference's own error (a float32 rounding per KC block) and the final
 * roundings add a few u more, hence (k + 8)·u·(Σ|alpha·a||b| + |C₀|) per element. Elements outside
 * the m×n window (before cOffset, the ldc padding, past the end) must be bit-identical.
 */
function check(c: Case, rand: () => number): void {
  const { av, bv, cInit } = operands(c, rand);
  const ref = cInit.slice(), got = cInit.slice();
  sgemmScalar(c.m, c.n, c.k, c.alpha, av, bv, ref, c.cOffset, c.ldc, c.accumulate);
  sgemmSimd(c.m, c.n, c.k, c.alpha, av, bv, got, c.cOffset, c.ldc, c.accumulate);
  const inWindow = new Uint8Array(got.length);
  let worst = 0;
  for (let i = 0; i < c.m; i++) {
    for (let j = 0; j < c.n; j++) {
      const idx = c.cOffset + i * c.ldc + j;
      inWindow[idx] = 1;
      let mag = c.accumulate ? Math.abs(cInit[idx]!) : 0;
      for (let p = 0; p < c.k; p++) mag += Math.abs(c.alpha * at(av, i, p) * at(bv, p, j));
      const excess = Math.abs(got[idx]! - ref[idx]!) - (c.k + 8) * U32 * mag;
      worst = Math.max(worst, excess);
      if (!(excess <= 0)) throw new Error(`${JSON.stringify(c)}: C[${i},${j}] ${got[idx]} vs ${ref[idx]} (bound ${(c.k + 8) * U32 * mag})`);
    }
  }
  expect(worst).toBeLessThanOrEqual(0);
  for (let idx = 0; idx < got.length; idx++) if (!inWindow[idx]) expect(got[idx]).toBe(cInit[idx]!);
}

describe.skipIf(!simdGemmAvailable())("sgemmSimd matches sgemmScalar", () => {
  test("this host (Bun) has WebAssembly SIMD", () => {
    expect(simdGemmAvailable()).toBe(true);
  });

  test("every tile edge: m 1..MR+1, n 1..2·NR+1, k 1..3 and 9", () => {
    const rand = mulberry32(11);
    for (let m = 1; m <= SIMD_MR + 1; m++) {
      for (let n = 1; n <= 2 * SIMD_NR + 1; n++) {
        for (const k of [1, 2, 3, 9]) {
          const accumulate = (m + n + k) % 2 === 0;
          check({ m, n, k, alpha: 1, transA: false, transB: false, accumulate, cOffset: 0, ldc: n }, rand);
        }
      }
    }
  });

  test("random shapes: transposes, alpha, accumulate, cOffset, ldc > n, k > KC", () => {
    const rand = mulberry32(12);
    const pick = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
    for (let t = 0; t < 40; t++) {
      const m = pick(1, 140), n = pick(1, 150), k = t % 4 === 0 ? pick(257, 600) : pick(1, 90);
      check({
        m, n, k, alpha: [1, -0.5, 2.25, 0.1][t % 4]!, transA: rand() < 0.5, transB: rand() < 0.5,
        accumulate: rand() < 0.5, cOffset: pick(0, 7), ldc: n + pick(0, 5),
      }, rand);
    }
  });

  test("conv-like and block-boundary shapes: n > NC, m > the C scratch, m > MC, k = 2·KC + 1", () => {
    const rand = mulberry32(13);
    const base = { alpha: 1, transA: false, transB: false, cOffset: 0 };
    check({ ...base, m: 7, n: 2100, k: 20, accumulate: true, ldc: 2101 }, rand);
    check({ ...base, m: 515, n: 11, k: 6, accumulate: false, ldc: 11, transA: true }, rand);
    check({ ...base, m: 130, n: 70, k: 513, accumulate: true, ldc: 70, transB: true }, rand);
    check({ ...base, m: 64, n: 196, k: 288, accumulate: false, ldc: 196 }, rand);
  });

  test("k = 0 or alpha = 0: C is zeroed, or left alone when accumulating", () => {
    const rand = mulberry32(14);
    for (const [k, alpha] of [[0, 1], [5, 0]] as const) {
      for (const accumulate of [false, true]) {
        const { av, bv, cInit } = operands({ m: 5, n: 9, k, alpha, transA: false, transB: false, accumulate, cOffset: 2, ldc: 10 }, rand);
        const ref = cInit.slice(), got = cInit.slice();
        sgemmScalar(5, 9, k, alpha, av, bv, ref, 2, 10, accumulate);
        sgemmSimd(5, 9, k, alpha, av, bv, got, 2, 10, accumulate);
        expect(got).toEqual(ref);
        expect(got[2]).toBe(accumulate ? cInit[2]! : 0);
      }
    }
  });
});

describe.skipIf(!simdGemmAvailable())("sgemm dispatch", () => {
  const rand = mulberry32(21);
  const m = 24, n = 40, k = 33;
  const a = Float32Array.from({ length: m * k }, () => rand() - 0.5), b = Float32Array.from({ length: k * n }, () => rand() - 0.5);
  const run = (f: typeof sgemm, rows = m) => {
    const c = new Float32Array(rows * n);
    f(rows, n, k, 1, matrixView(a, 0, k), matrixView(b, 0, n), c, 0, n, false);
    return c;
  };

  test("setGemmBackend forces the kernel, gemmBackend reports what ran, results are that kernel's", () => {
    const previous = setGemmBackend("simd");
    try {
      expect(run(sgemm)).toEqual(run(sgemmSimd));
      expect(gemmBackend()).toBe("simd");
      expect(setGemmBackend("scalar")).toBe("simd");
      expect(run(sgemm)).toEqual(run(sgemmScalar));
      expect(gemmBackend()).toBe("scalar");
      // The two kernels round differently, so the forced choice is observable in the bits.
      expect(run(sgemmSimd)).not.toEqual(run(sgemmScalar));
    } finally {
      setGemmBackend(previous);
    }
  });

  test("auto: SIMD for products worth packing, JS for tiny ones and for m < GEMM_MR", () => {
    const previous = setGemmBackend("auto");
    try {
      expect(m * n * k).toBeGreaterThanOrEqual(SIMD_MIN_MACS);
      run(sgemm);
      expect(gemmBackend()).toBe("simd");
      run(sgemm, 3);
      expect(gemmBackend()).toBe("scalar");
      const c = new Float32Array(16);
      sgemm(4, 4, 1, 1, matrixView(a, 0, 1), matrixView(b, 0, 4), c, 0, 4, false);
      expect(gemmBackend()).toBe(4 * 4 * 1 >= SIMD_MIN_MACS ? "simd" : "scalar");
    } finally {
      setGemmBackend(previous);
    }
  });
});
