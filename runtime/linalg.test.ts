/** The WASM GEMM of calibration against the float64 reference, every transposition and ragged sizes. */
import { expect, test } from "bun:test";
import { createMatrixKernels } from "./linalg.ts";
import { mulberry32 } from "../format/mod.ts";

/** Naive float64 op(A)·op(B). */
function reference(tA: boolean, tB: boolean, m: number, n: number, k: number, a: Float32Array, lda: number, b: Float32Array, ldb: number, c: Float32Array): void {
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let p = 0; p < k; p++) s += (tA ? a[p * lda + i]! : a[i * lda + p]!) * (tB ? b[j * ldb + p]! : b[p * ldb + j]!);
    c[i * n + j] = s;
  }
}

test("createMatrixKernels: gemm matches a naive product (transA/transB, strides, 1 and 2 threads)", async () => {
  const rnd = mulberry32(7);
  for (const threads of [1, 2]) {
    const mk = (await createMatrixKernels(threads))!;
    expect(mk).toBeDefined();
    try {
      for (const [m, n, k] of [[1, 1, 1], [5, 13, 7], [67, 130, 300]] as const) {
        for (const tA of [false, true]) for (const tB of [false, true]) {
          // Stored with padded rows, so the strides matter.
          const lda = (tA ? m : k) + 3, ldb = (tB ? k : n) + 2;
          const a = Float32Array.from({ length: (tA ? k : m) * lda }, () => rnd() - 0.5);
          const b = Float32Array.from({ length: (tB ? n : k) * ldb }, () => rnd() - 0.5);
          const want = new Float32Array(m * n), got = new Float32Array(m * n).fill(NaN);
          reference(tA, tB, m, n, k, a, lda, b, ldb, want);
          mk.gemm(tA, tB, m, n, k, a, lda, b, ldb, got);
          for (let i = 0; i < m * n; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThan(1e-5 * k);
        }
      }
    } finally {
      mk.dispose();
    }
  }
});
