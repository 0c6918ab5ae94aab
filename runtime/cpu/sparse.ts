/**
 * Sparse × dense products for pruned weights: `Y[M×P] += W[M×K]·B[K×P]` with W in a k-blocked
 * CSR, so the work is nnz·P instead of M·K·P. B is walked in PANEL-wide column panels packed to
 * float64; within a panel the non-zeros of one K block read a ≤16 KiB slice of it (L1), and each
 * non-zero costs one index, one value and PANEL contiguous loads for PANEL multiply-adds held in
 * registers. The crossover with the dense GEMM (SPARSE_MIN_ZEROS) is measured by
 * bench/kernels-bench.ts.
 * @module
 */

/**
 * Fraction of zero weights from which the CSR path is chosen over the dense blocked GEMM. Measured
 * (Bun, 3×3 64→64 @56, CSR time / dense time): 1.06 at 0% zeros (both run at the scalar FP peak),
 * 0.87 at 20%, 0.70 at 40%; 3×3 256→256 @14: 0.77 at 50%, 0.22 at 90%. 0.3 leaves a margin.
 */
export const SPARSE_MIN_ZEROS = 0.3;
/**
 * The same threshold where Winograd F(2×2, 3×3) is the dense alternative (~0.55× the im2col time):
 * bench 3×3 64→64 @56: CSR ≈ Winograd at 60% zeros, 0.6× its time at 80%.
 */
export const SPARSE_MIN_ZEROS_OVER_WINOGRAD = 0.6;
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
