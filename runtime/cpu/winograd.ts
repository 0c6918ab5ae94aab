/**
 * Winograd F(2×2, 3×3) convolution (Lavin & Gray, "Fast Algorithms for Convolutional Neural
 * Networks", 2016, Eq. 7–8): each 2×2 output tile is `Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A`, so the 36
 * multiply-adds per tile and channel of a direct 3×3 convolution become 16, done as 16 GEMMs
 * `M_ξ[M×T] = U_ξ[M×C] · V_ξ[C×T]` (ξ = the 4×4 transform positions, T = tiles). For stride-1,
 * dilation-1 3×3 layers (most of ResNet) this is ~2× fewer multiply-adds than im2col + GEMM; the
 * transforms are additions only. Float32 storage, float64 arithmetic; the error stays within the
 * kernel tolerance because F(2×2, 3×3) uses only ±1 and ½ coefficients.
 * @module
 */
import { matrixView, sgemm } from "./sgemm.ts";
import { intWindow, type Window2d } from "./im2col.ts";
import { cpuWorkers, MIN_PARALLEL_MACS } from "./worker-pool.ts";

/**
 * When `convPath` (ops/conv.ts) takes Winograd for a 3×3 stride-1 layer, by the GEMM backend: at
 * least `channels` input channels per group (the 16 GEMMs' K; the transforms cost per channel and
 * tile whatever K is) and `tiles` 2×2 output tiles, and WINOGRAD_MIN_OUT_CHANNELS outputs per group.
 * Measured in Bun (unless noted) with the weights transformed at load (prepareConv), Winograd
 * time ÷ im2col-gemm time, interleaved:
 *
 * simd: 3×3 64→64 @56 0.71, 128@28 0.58, 256@14 0.62, 16→16 @28 0.74; 7×7 outputs (16 tiles):
 * 512→512 0.77, 64→64 0.85, 16→16 0.90; 5×5 (9 tiles): 64→64 1.08, 256→256 1.18; 4×4 64→64 1.06.
 * 8 input channels lose or tie (8→16 @16×16 1.36, 8→64 @56 1.32, 8→32 @56 0.95), 12 win (12→32 @28
 * 0.83), 16 win (16→24 @12×10 0.88).
 * Deno (V8) with SIMD agrees: 3×3 64@56 0.66, 16@28 0.80, 7×7 outputs 512→512 0.79, 64→64 0.87.
 * scalar: 7×7 outputs 0.63–0.80 (16, 64, 512 channels), 5×5 64→64 0.89, 8→16 @16×16 0.87,
 * 8→32 @56 0.85 (the older "7×7 slower" was measured with the weight transform on every call).
 */
export const WINOGRAD_MIN = {
  simd: { channels: 12, tiles: 16 },
  scalar: { channels: 8, tiles: 9 },
} as const;
/** Output channels per group below which Winograd is not considered (unchanged, scalar-era). */
export const WINOGRAD_MIN_OUT_CHANNELS = 8;
/**
 * From this many tiles Winograd counts as "large" for the sparse crossover (`winograd` vs
 * `winogradSmall` in cpu/sparse.ts SPARSE_MIN_ZEROS): the model layers below it are all 7×7
 * outputs (16 tiles).
 */
export const WINOGRAD_LARGE_TILES = 32;

/** Transformed weights of one group: 16 matrices U_ξ of `mg × cg`, ξ-major. */
export function winogradWeights(w: Float32Array, wOff: number, mg: number, cg: number): Float32Array {
  wOff |= 0; mg |= 0; cg |= 0;
  const u = new Float32Array(16 * mg * cg);
  const stride = mg * cg;
  for (let m = 0; m < mg; m++) {
    for (let c = 0; c < cg; c++) {
      const g = wOff + (m * cg + c) * 9;
      // G g: 4×3, rows [g0, (g0+g1+g2)/2, (g0-g1+g2)/2, g2] over the kernel's rows.
      const t = TMP43;
      for (let j = 0; j < 3; j++) {
        const g0 = w[g + j]!, g1 = w[g + 3 + j]!, g2 = w[g + 6 + j]!;
        t[j] = g0; t[3 + j] = 0.5 * (g0 + g1 + g2); t[6 + j] = 0.5 * (g0 - g1 + g2); t[9 + j] = g2;
      }
      // (G g) Gᵀ: the same combination over columns.
      for (let i = 0; i < 4; i++) {
        const a = t[i * 3]!, b = t[i * 3 + 1]!, d = t[i * 3 + 2]!;
        const o = (i * 4) * stride + m * cg + c;
        u[o] = a;
        u[o + stride] = 0.5 * (a + b + d);
        u[o + 2 * stride] = 0.5 * (a - b + d);
        u[o + 3 * stride] = d;
      }
    }
  }
  return u;
}

const TMP43 = new Float64Array(12);
const PATCH = new Float64Array(16);

let vScratch = new Float32Array(0);
let mScratch = new Float32Array(0);

/**
 * One group of a stride-1, dilation-1 3×3 convolution: `y[yOff ..]` (mg planes of outH×outW) =
 * bias + conv(x[xOff ..] (g.channels planes), weights `u` from winogradWeights). `y` is overwritten.
 * With `threads > 1` and a started worker pool, the 16 GEMMs (~80% of the time) are split across
 * threads; the transforms stay on the calling thread.
 */
export function winogradConv3x3(
  x: Float32Array, xOff: number, u: Float32Array, bias: Float32Array | undefined, biasOff: number,
  mg: number, g: Window2d, y: Float32Array, yOff: number, threads: number,
): void {
  xOff |= 0; biasOff |= 0; mg |= 0; yOff |= 0;
  const { channels: cg, inH, inW, padTop, padLeft, outH, outW } = intWindow(g);
  const tilesH = (outH + 1) >> 1, tilesW = (outW + 1) >> 1, tiles = tilesH * tilesW;
  const vStride = cg * tiles, mStride = mg * tiles;
  const pool = threads > 1 && 16 * mg * vStride >= MIN_PARALLEL_MACS ? cpuWorkers(threads) : undefined;
  const lay = pool?.reserve(16 * mg * cg, 16 * vStride, 16 * mStride);
  let v: Float32Array, mm: Float32Array;
  if (lay) {
    lay.arena.set(u.subarray(0, 16 * mg * cg), lay.aOff);
    v = lay.arena.subarray(lay.bOff, lay.bOff + 16 * vStride);
    mm = lay.arena.subarray(lay.cOff, lay.cOff + 16 * mStride);
  } else {
    if (vScratch.length < 16 * vStride) vScratch = new Float32Array(16 * vStride);
    if (mScratch.length < 16 * mStride) mScratch = new Float32Array(16 * mStride);
    v = vScratch; mm = mScratch;
  }
  const d = PATCH;
  // Input transform V = Bᵀ d B per tile and channel, Bᵀ = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]].
  for (let c = 0; c < cg; c++) {
    const plane = xOff + c * inH * inW;
    for (let th = 0, t = 0; th < tilesH; th++) {
      const y0 = th * 2 - padTop;
      for (let tw = 0; tw < tilesW; tw++, t++) {
        const x0 = tw * 2 - padLeft;
        if (y0 >= 0 && y0 + 4 <= inH && x0 >= 0 && x0 + 4 <= inW) {
          let s = plane + y0 * inW + x0;
          for (let i = 0; i < 16; i += 4, s += inW) { d[i] = x[s]!; d[i + 1] = x[s + 1]!; d[i + 2] = x[s + 2]!; d[i + 3] = x[s + 3]!; }
        } else {
          for (let i = 0; i < 4; i++) {
            const iy = y0 + i;
            for (let j = 0; j < 4; j++) {
              const ix = x0 + j;
              d[i * 4 + j] = iy >= 0 && iy < inH && ix >= 0 && ix < inW ? x[plane + iy * inW + ix]! : 0;
            }
          }
        }
        const o = c * tiles + t;
        for (let j = 0; j < 4; j++) {
          // columns: Bᵀ over rows of d
          const r0 = d[j]! - d[8 + j]!, r1 = d[4 + j]! + d[8 + j]!, r2 = d[8 + j]! - d[4 + j]!, r3 = d[4 + j]! - d[12 + j]!;
          d[j] = r0; d[4 + j] = r1; d[8 + j] = r2; d[12 + j] = r3;
        }
        for (let i = 0; i < 4; i++) {
          const a = d[i * 4]!, b = d[i * 4 + 1]!, e = d[i * 4 + 2]!, f = d[i * 4 + 3]!;
          const base = o + (i * 4) * vStride;
          v[base] = a - e;
          v[base + vStride] = b + e;
          v[base + 2 * vStride] = e - b;
          v[base + 3 * vStride] = b - f;
        }
      }
    }
  }
  let split = pool !== undefined && lay !== undefined;
  for (let xi = 0; xi < 16 && split; xi++) {
    split = pool!.sgemm(mg, tiles, cg, 1, { offset: lay!.aOff + xi * mg * cg, rowStride: cg, colStride: 1 },
      { offset: lay!.bOff + xi * vStride, rowStride: tiles, colStride: 1 }, lay!.cOff + xi * mStride, tiles, false);
  }
  if (!split) {
    // Single thread (or a pool that failed mid-way: redo every GEMM, they are independent).
    for (let xi = 0; xi < 16; xi++) {
      sgemm(mg, tiles, cg, 1, matrixView(u, xi * mg * cg, cg), matrixView(v, xi * vStride, tiles), mm, xi * mStride, tiles, false);
    }
  }
  // Output transform Y = Aᵀ M A, Aᵀ = [[1,1,1,0],[0,1,-1,-1]].
  const planeOut = outH * outW;
  for (let m = 0; m < mg; m++) {
    const bv = bias ? bias[biasOff + m]! : 0;
    const yPlane = yOff + m * planeOut;
    for (let th = 0, t = 0; th < tilesH; th++) {
      const oy = th * 2;
      for (let tw = 0; tw < tilesW; tw++, t++) {
        const base = m * tiles + t;
        let s00 = 0, s01 = 0, s10 = 0, s11 = 0;
        for (let i = 0; i < 4; i++) {
          const r = base + i * 4 * mStride;
          const a = mm[r]!, b = mm[r + mStride]!, e = mm[r + 2 * mStride]!, f = mm[r + 3 * mStride]!;
          const c0 = a + b + e, c1 = b - e - f;
          if (i === 0) { s00 += c0; s01 += c1; }
          else if (i === 1) { s00 += c0; s01 += c1; s10 += c0; s11 += c1; }
          else if (i === 2) { s00 += c0; s01 += c1; s10 -= c0; s11 -= c1; }
          else { s10 -= c0; s11 -= c1; }
        }
        const ox = tw * 2, at = yPlane + oy * outW + ox;
        y[at] = s00 + bv;
        const right = ox + 1 < outW, down = oy + 1 < outH;
        if (right) y[at + 1] = s01 + bv;
        if (down) y[at + outW] = s10 + bv;
        if (right && down) y[at + outW + 1] = s11 + bv;
      }
    }
  }
}
