/**
 * The WASM SIMD GEMM under Deno (V8): a few seeded shapes against the JS reference, and the
 * dispatch. The full suite (tile edges, block boundaries, the error bound's derivation) runs under
 * bun in sgemm-simd.test.ts.
 * @module
 */
import { mulberry32 } from "../../format/mod.ts";
import { gemmBackend, matrixView, setGemmBackend, sgemm, sgemmScalar } from "./sgemm.ts";
import { sgemmSimd, simdGemmAvailable } from "./sgemm-simd.ts";

function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new Error(message);
}

Deno.test("sgemm-simd: matches sgemmScalar on seeded shapes, and sgemm dispatches to it", () => {
  assert(simdGemmAvailable(), "Deno (V8) has WebAssembly SIMD");
  const rand = mulberry32(5);
  // m, n, k, transA, transB, alpha, accumulate: tile edges, k > KC, both transposes.
  const cases = [[1, 1, 1, false, false, 1, false], [5, 9, 3, true, false, 2, true], [37, 70, 300, false, true, -0.5, true],
    [64, 196, 64, true, true, 1, false], [130, 21, 513, false, false, 1, true]] as const;
  for (const [m, n, k, ta, tb, alpha, accumulate] of cases) {
    const a = Float32Array.from({ length: m * k }, () => rand() * 2 - 1), b = Float32Array.from({ length: k * n }, () => rand() * 2 - 1);
    const ldc = n + 3, c0 = Float32Array.from({ length: 2 + m * ldc }, () => rand() * 2 - 1);
    const av = matrixView(a, 0, ta ? m : k, ta), bv = matrixView(b, 0, tb ? k : n, tb);
    const ref = c0.slice(), got = c0.slice();
    sgemmScalar(m, n, k, alpha, av, bv, ref, 2, ldc, accumulate);
    sgemmSimd(m, n, k, alpha, av, bv, got, 2, ldc, accumulate);
    // Float32 vs float64 sums: |diff| ≤ (k + 8)·2⁻²⁴·(Σ|alpha·a·b| + |C₀|) (see sgemm-simd.test.ts).
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        const idx = 2 + i * ldc + j;
        let mag = accumulate ? Math.abs(c0[idx]!) : 0;
        for (let p = 0; p < k; p++) mag += Math.abs(alpha * av.data[i * av.rowStride + p * av.colStride]! * bv.data[p * bv.rowStride + j * bv.colStride]!);
        assert(Math.abs(got[idx]! - ref[idx]!) <= (k + 8) * 2 ** -24 * mag, `${m}x${n}x${k} C[${i},${j}]: ${got[idx]} vs ${ref[idx]}`);
      }
    }
    for (let idx = 0; idx < got.length; idx++) {
      const j = (idx - 2) % ldc;
      if (idx < 2 || j >= n || idx >= 2 + m * ldc) assert(got[idx] === c0[idx], `${m}x${n}x${k}: wrote outside C at ${idx}`);
    }
  }
  const previous = setGemmBackend("auto");
  try {
    const a = new Float32Array(32 * 32).fill(0.5), c = new Float32Array(32 * 32);
    sgemm(32, 32, 32, 1, matrixView(a, 0, 32), matrixView(a, 0, 32), c, 0, 32, false);
    assert(gemmBackend() === "simd" && c[0] === 8, `auto ran ${gemmBackend()}, c[0] = ${c[0]}`);
  } finally {
    setGemmBackend(previous);
  }
});
