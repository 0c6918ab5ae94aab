/**
 * Sparse × dense products for pruned weights: `Y[M×P] += W[M×K]·B[K×P]` with W in a k-blocked
 * CSR, so the work is nnz·P instead of M·K·P. B is walked in PANEL-wide column panels packed to
 * float64; within a panel the non-zeros of one K block read a ≤16 KiB slice of it (L1), and each
 * non-zero costs one index, one value and PANEL contiguous loads for PANEL multiply-adds held in
 * registers. The crossovers with the dense paths (SPARSE_MIN_ZEROS) are measured by
 * bench/kernels-bench.ts (its "pruned" rows time the chosen path against the runner-up).
 * @module
 */

/**
 * The JavaScript engine, for SPARSE_MIN_ZEROS: JavaScriptCore (Bun) runs the CSR loop below ~2–3×
 * faster than V8 (Deno) does (3×3 64→64 @56, dense weights: 37 vs 95–143 ms), while the WASM GEMM
 * it competes with runs at about the same speed in both, so the crossovers differ by engine.
 */
export const JS_ENGINE: "jsc" | "v8" = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined" ? "jsc" : "v8";

/**
 * Fraction of zero weights from which `convPath` (ops/conv.ts) picks this CSR path, by JS engine,
 * by the GEMM backend the dense paths run on, and by the dense path it replaces: `gemm` (im2col +
 * GEMM, or the 1×1 GEMM), `winograd` (F(2×2, 3×3) over ≥ WINOGRAD_LARGE_TILES tiles) and
 * `winogradSmall` (fewer tiles: 7×7 outputs, where a quarter of F(2×2)'s 8×8 outputs are padding,
 * so Winograd gains less). The CSR kernel is scalar JS either way; only the dense side changes with
 * the backend.
 *
 * Measured (2 shared cores; paths interleaved, min of ≥ 5 runs) on every Conv geometry of
 * resnet18-224, mobilenet_v2-224, resnet20-fmnist and lenet5-fmnist with random weights pruned to
 * 0–95%, each dense path with its load-time prepared form (Winograd U, as a session has it), then
 * checked on every Conv of those models compressed to .opq at sparsity 0.5 and 0.74 (chosen path
 * fastest or within 3% on all 150 layers, Bun). CSR time ÷ the dense path's time:
 *
 * jsc.simd (Bun, WASM SIMD GEMM ~3× the JS kernel):
 * - gemm 0.75: at 70% zeros 1.00–1.19 (3×3 stride 2, 7×7/2 stem, 1×1/2 and every MobileNetV2 1×1:
 *   e.g. 3×3/2 64→128 @56 1.13, 1×1 96→576 @14 1.07, 7×7/2 3→64 1.13), at 80% 0.71–0.97; the
 *   crossover sits at ~73–75%.
 * - winograd 0.85: at 80% 1.11–1.46 (3×3 64@56 1.25, 128@28 1.46, 256@14 1.37, 32@14 1.11),
 *   at 90% 0.64–1.07 (16@28 still 1.07); crossover ~85–87%.
 * - winogradSmall 0.8: 3×3 @7×7 at 70% 1.17–1.32 (64→64, 512→512; 16→16 1.15 at 65%), at 80%
 *   0.91–0.93.
 * jsc.scalar (Bun, JS GEMM: no WASM SIMD, or setGemmBackend("scalar")):
 * - gemm 0.2: CSR is already 0.92–1.06 at 0% (both at the scalar FP peak), 0.83–0.93 at 20%
 *   (3×3/2, 1×1/2, 7×7/2, lenet 5×5), so 0.2 keeps only a small margin for the packing overhead.
 * - winograd 0.6: at 50% 1.10–1.18 (3×3 64@56, 128@28, 256@14), at 60% 0.91–0.97.
 * - winogradSmall 0.45: 3×3 @7×7 (16, 64, 512 channels) at 35–40% 1.02–1.06, at 50% 0.83–0.92.
 * v8.simd (Deno), resnet18/resnet20 geometries:
 * - gemm 0.9: at 85% 1.00–1.20 (3×3/2, 1×1/2, 7×7/2 stem), at 90% 0.73–1.11 (most < 0.9).
 * - winograd 0.95: at 90% 1.17–1.89 (3×3 64@56, 128@28, 256@14, 16@28, 32@14), at 95% 0.62–1.10.
 * - winogradSmall 0.9: 3×3 @7×7 (64, 512 channels) at 85% 1.14–1.19, at 90% 0.86–0.89.
 * v8.scalar (Deno, JS GEMM), three geometries:
 * - gemm 0.3: 3×3/2 64→128 @56 at 20% 1.07, at 40% 0.76.
 * - winograd 0.65: 3×3 128@28 at 60% 1.09, at 70% 0.87.
 * - winogradSmall 0.55: 3×3 512@7 at 40% 1.29, at 60% 0.89.
 */
export const SPARSE_MIN_ZEROS = {
  jsc: {
    simd: { gemm: 0.75, winograd: 0.85, winogradSmall: 0.8 },
    scalar: { gemm: 0.2, winograd: 0.6, winogradSmall: 0.45 },
  },
  v8: {
    simd: { gemm: 0.9, winograd: 0.95, winogradSmall: 0.9 },
    scalar: { gemm: 0.3, winograd: 0.65, winogradSmall: 0.55 },
  },
} as const;
/** Columns of B per packed panel: the micro-kernel keeps this many accumulators in locals. */
const PANEL = 8;
/** Rows of B (columns of W) per block: BLOCK_K·PANEL doubles = 16 KiB of the panel in L1. */
const BLOCK_K = 256;

/**
 * A sparse `rows × cols` matrix in CSR, split into column blocks of BLOCK_K. The entries of block
 * kb, row r are `values/colIndex[blockStart[kb·rows + r] .. blockStart[kb·rows + r + 1])`.
 */
export interface CsrMatrix {
  rows: number;
  cols: number;
  blocks: number;
  blockStart: Int32Array;
  colIndex: Int32Array;
  values: Float32Array;
}

/**
 * Fraction of exact zeros in `w`. (No default parameters here or in other hot loops: JavaScriptCore
 * was measured to de-optimise this loop 10× after a few calls when it had them.)
 */
export function zeroFraction(w: Float32Array): number {
  const n = w.length;
  let zeros = 0;
  for (let i = 0; i < n; i++) if (w[i] === 0) zeros++;
  return n === 0 ? 0 : zeros / n;
}

/** k-blocked CSR of the dense row-major `rows×cols` matrix at `w[off ..]`. */
export function csrFromDense(w: Float32Array, rows: number, cols: number, off: number): CsrMatrix {
  let nnz = 0;
  const end = off + rows * cols;
  for (let i = off; i < end; i++) if (w[i] !== 0) nnz++;
  const blocks = Math.max(1, Math.ceil(cols / BLOCK_K));
  const blockStart = new Int32Array(blocks * rows + 1), colIndex = new Int32Array(nnz), values = new Float32Array(nnz);
  let e = 0;
  for (let kb = 0; kb < blocks; kb++) {
    const c0 = kb * BLOCK_K, c1 = Math.min(cols, c0 + BLOCK_K);
    for (let r = 0; r < rows; r++) {
      blockStart[kb * rows + r] = e;
      const base = off + r * cols;
      for (let c = c0; c < c1; c++) {
        const v = w[base + c]!;
        if (v !== 0) { colIndex[e] = c; values[e++] = v; }
      }
    }
  }
  blockStart[blocks * rows] = e;
  return { rows, cols, blocks, blockStart, colIndex, values };
}

/** The accumulators of a partial last panel. */
const EDGE = new Float64Array(PANEL);
/** One packed panel of B (K × PANEL doubles), reused across calls. */
let panelScratch = new Float64Array(PANEL * 1024);

/**
 * `y[yOff + r·ldy + j] += Σ_k W[r,k]·b[bOff + k·ldb + j]` for r < W.rows, j < p.
 * Callers pre-fill y with the bias (or zeros).
 */
export function spmmAdd(
  w: CsrMatrix, b: Float32Array, bOff: number, ldb: number, p: number,
  y: Float32Array, yOff: number, ldy: number,
): void {
  bOff |= 0; ldb |= 0; p |= 0; yOff |= 0; ldy |= 0;
  const { rows, cols, blocks, blockStart, colIndex, values } = w;
  if (panelScratch.length < cols * PANEL) panelScratch = new Float64Array(cols * PANEL);
  const panel = panelScratch;
  for (let j0 = 0; j0 < p; j0 += PANEL) {
    const width = Math.min(PANEL, p - j0);
    for (let k = 0, o = 0; k < cols; k++, o += PANEL) {
      const src = bOff + k * ldb + j0;
      if (width === PANEL) {
        panel[o] = b[src]!; panel[o + 1] = b[src + 1]!; panel[o + 2] = b[src + 2]!; panel[o + 3] = b[src + 3]!;
        panel[o + 4] = b[src + 4]!; panel[o + 5] = b[src + 5]!; panel[o + 6] = b[src + 6]!; panel[o + 7] = b[src + 7]!;
      } else {
        for (let jj = 0; jj < PANEL; jj++) panel[o + jj] = jj < width ? b[src + jj]! : 0;
      }
    }
    for (let kb = 0, s = 0; kb < blocks; kb++) {
      for (let r = 0; r < rows; r++, s++) {
        const end = blockStart[s + 1]!;
        let e = blockStart[s]!;
        if (e === end) continue;
        let a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
        for (; e < end; e++) {
          const v = values[e]!, o = colIndex[e]! * PANEL;
          a0 += v * panel[o]!; a1 += v * panel[o + 1]!; a2 += v * panel[o + 2]!; a3 += v * panel[o + 3]!;
          a4 += v * panel[o + 4]!; a5 += v * panel[o + 5]!; a6 += v * panel[o + 6]!; a7 += v * panel[o + 7]!;
        }
        const yr = yOff + r * ldy + j0;
        if (width === PANEL) {
          y[yr] += a0; y[yr + 1] += a1; y[yr + 2] += a2; y[yr + 3] += a3;
          y[yr + 4] += a4; y[yr + 5] += a5; y[yr + 6] += a6; y[yr + 7] += a7;
        } else {
          const acc = EDGE;
          acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3; acc[4] = a4; acc[5] = a5; acc[6] = a6; acc[7] = a7;
          for (let jj = 0; jj < width; jj++) y[yr + jj] += acc[jj]!;
        }
      }
    }
  }
}
