/**
 * Dense float32 matrix products on the session kernels' WASM SIMD GEMM (wasm/as/gemm.ts
 * `gemmPackedF32`, the 4×8 register tile), split over a thread team: the heavy products the
 * compressor's calibration injects (H = XᵀX, the FP32 targets, the blocked Cholesky and the lazy
 * column updates; see compressor/calibrate.ts `Gemm`). The compressor stays runtime-free: the CLI
 * hands it `gemm` from here.
 * @module
 */
import { WasmKernels } from "./wasm/module.ts";
import { ThreadTeam } from "./wasm/threads.ts";

/** C[m×n] = op(A)·op(B), row-major; `lda`/`ldb` the row strides of A and B as stored. */
export type GemmF32 = (
  transA: boolean, transB: boolean, m: number, n: number, k: number,
  a: Float32Array, lda: number, b: Float32Array, ldb: number, c: Float32Array,
) => void;

/** A GEMM and the workers behind it. */
export interface MatrixKernels {
  gemm: GemmF32;
  threads: number;
  dispose(): void;
}

/** Products smaller than this many multiply-adds stay on one thread (a split costs ~20 µs). */
const PARALLEL_MIN_MACS = 1 << 20;

/** Reusable blocks of the kernels' memory, grown (doubled) on demand. */
function buffers(kernels: WasmKernels) {
  const blocks: { ptr: number; bytes: number }[] = [];
  return {
    get(slot: number, bytes: number): number {
      const b = blocks[slot];
      if (b && b.bytes >= bytes) return b.ptr;
      if (b) kernels.free(b.ptr);
      const size = Math.max(bytes, (b?.bytes ?? 0) * 2, 1 << 16);
      blocks[slot] = { ptr: kernels.alloc(size), bytes: size };
      return blocks[slot]!.ptr;
    },
  };
}

/**
 * The WASM GEMM on `threads` threads (the calling one and `threads − 1` workers); undefined where
 * the engine has no WASM SIMD or shared memory. Each call copies A into the kernels' memory, packs
 * B into the tile's 8-wide column panels and copies C out: O(mk + kn + mn) beside the O(mnk) product.
 */
export async function createMatrixKernels(threads = 1): Promise<MatrixKernels | undefined> {
  const kernels = WasmKernels.create(1 << 24);
  if (!kernels) return undefined;
  const team = await ThreadTeam.start(kernels, Math.max(1, Math.floor(threads)));
  const buf = buffers(kernels);
  const run = kernels.exports.gemmPackedF32 as (...x: number[]) => void;
  const gemm: GemmF32 = (transA, transB, m, n, k, a, lda, b, ldb, c) => {
    if (m === 0 || n === 0) return;
    if (k === 0) { c.fill(0, 0, m * n); return; }
    const panels = Math.ceil(n / 8);
    const slices = m * n * k >= PARALLEL_MIN_MACS ? Math.min(team.threads, panels) : 1;
    const aPtr = buf.get(0, m * k * 4), bPtr = buf.get(1, panels * k * 32), yPtr = buf.get(2, m * n * 4), sPtr = buf.get(3, slices * k * 16);
    // A as stored (k rows of m with transA, else m rows of k), densely; the kernel reads it strided.
    const av = kernels.f32(aPtr, m * k);
    const [rowsA, colsA] = transA ? [k, m] : [m, k];
    for (let r = 0; r < rowsA; r++) av.set(a.subarray(r * lda, r * lda + colsA), r * colsA);
    // B into panels: panel jp holds columns 8jp.. as k rows of 8 (zero-padded).
    const bv = kernels.f32(bPtr, panels * k * 8);
    if (n % 8) for (let q = 0; q < k; q++) for (let j = n; j < panels * 8; j++) bv[((j >> 3) * k + q) * 8 + (j & 7)] = 0;
    if (transB) {
      for (let j = 0; j < n; j++) {
        const base = (j >> 3) * k * 8 + (j & 7), row = j * ldb;
        for (let q = 0; q < k; q++) bv[base + q * 8] = b[row + q]!;
      }
    } else {
      for (let q = 0; q < k; q++) {
        const row = q * ldb;
        for (let j = 0; j < n; j++) bv[((j >> 3) * k + q) * 8 + (j & 7)] = b[row + j]!;
      }
    }
    const [ldaBytes, aks] = transA ? [4, m * 4] : [k * 4, 4];
    const args = [slices, m, n, k, aPtr, ldaBytes, aks, bPtr, yPtr, 0, 0, -Infinity, Infinity, sPtr];
    if (slices > 1) team.run("gemmPackedF32", slices, 1, args);
    else run(0, 1, ...args);
    c.set(kernels.f32(yPtr, m * n));
  };
  return { gemm, threads: team.threads, dispose: () => team.stop() };
}
