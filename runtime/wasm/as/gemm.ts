// Dense float32 GEMM kernels: convolution as GEMM (weights packed at bind, pixels packed on the
// fly, im2col folded into the packing) and Gemm/MatMul rows × packed weight columns, both on the
// 4×8 register tile of tile.ts, with the fused epilogue: bias, residual (same shape as the
// output, added before the clamp), then clamp to [lo, hi].
import { tile4x8 } from "./tile";

import { GEMM_MR, GEMM_NR } from "./tile";

/** Rows and columns of the register tile, for the binders' packing: MR · 256 + NR. */
export function gemmTile(): i32 {
  return GEMM_MR * 256 + GEMM_NR;
}

// Words (i32) of a conv geometry block, written by the binder (runtime/wasm/ops/conv.ts CONV_GEO).
const CG = 0, IN_H = 1, IN_W = 2, KH = 3, KW = 4, SH = 5, SW = 6, DH = 7, DW = 8, PT = 9, PL = 10;
const OUT_H = 11, OUT_W = 12, MG = 13, MG_PAD = 14, GROUPS = 15, BATCH = 16, NC = 17, MC = 18, KC = 19;
const N_PC = 20, N_MC = 21, SLICES = 22, SLOT_BYTES = 23, POINTWISE = 24, NEXT = 25;

// @ts-ignore: decorator
@inline function geo(g: usize, word: i32): i32 {
  return load<i32>(g + (<usize>word << 2));
}

/** Address of pixel j of a packed row: panel j / NR, lane j % NR. */
// @ts-ignore: decorator
@inline function pixelAt(rowDst: usize, j: i32, panelBytes: usize): usize {
  return rowDst + (<usize>(j >> 3)) * panelBytes + (<usize>(j & 7) << 2);
}

/**
 * Pack rows [k0, k0 + kb) of the im2col matrix of one image and group, pixels [j0, j0 + jn),
 * into NR-wide panels (panel p: kb × NR floats, row-major) at `dst`, zero-padded to whole panels.
 * Row k is (channel c, tap ky, kx); a pixel's value is X[c, oy·sh − pt + ky·dh, ox·sw − pl + kx·dw]
 * or 0 outside the input.
 */
function packIm2col(dst: usize, x: usize, g: usize, k0: i32, kb: i32, j0: i32, jn: i32): void {
  const inH = geo(g, IN_H), inW = geo(g, IN_W), kh = geo(g, KH), kw = geo(g, KW);
  const sh = geo(g, SH), sw = geo(g, SW), dh = geo(g, DH), dw = geo(g, DW);
  const pt = geo(g, PT), pl = geo(g, PL), outW = geo(g, OUT_W);
  const plane = <usize>(inH * inW) << 2;
  const panelBytes = <usize>kb << 5;
  const jnPad = (jn + GEMM_NR - 1) & ~(GEMM_NR - 1);
  const pointwise = geo(g, POINTWISE) != 0;
  for (let kk = 0; kk < kb; kk++) {
    const k = k0 + kk;
    const rowDst = dst + (<usize>kk << 5);
    if (pointwise) {
      // 1×1, stride 1, no padding: row k is input plane k, pixels contiguous.
      const src = x + <usize>k * plane + (<usize>j0 << 2);
      let j = 0;
      for (; j + 8 <= jn; j += 8) {
        const d = rowDst + (<usize>(j >> 3)) * panelBytes;
        v128.store(d, v128.load(src + (<usize>j << 2)));
        v128.store(d, v128.load(src + (<usize>j << 2), 16), 16);
      }
      for (; j < jnPad; j++) {
        store<f32>(rowDst + (<usize>(j >> 3)) * panelBytes + (<usize>(j & 7) << 2), j < jn ? load<f32>(src + (<usize>j << 2)) : 0);
      }
      continue;
    }
    const c = k / (kh * kw), t = k - c * kh * kw, ky = t / kw, kx = t - ky * kw;
    const src = x + <usize>c * plane;
    let oy = j0 / outW, ox = j0 - oy * outW;
    let iy = oy * sh - pt + ky * dh;
    const ixOff = kx * dw - pl;
    let j = 0;
    while (j < jn) {
      // One output row segment: pixels j .. j + run of output row oy.
      const run = min(outW - ox, jn - j);
      const ix0 = ox * sw + ixOff;
      // Taps q of the segment inside the row: ix0 + q·sw in [0, inW).
      let qa = 0, qb = 0;
      if (iy >= 0 && iy < inH) {
        qa = ix0 >= 0 ? 0 : min(run, (sw - 1 - ix0) / sw);
        qb = inW > ix0 ? min(run, (inW - ix0 + sw - 1) / sw) : 0;
        qb = max(qa, qb);
      }
      const srcRow = src + (<usize>(iy * inW) << 2);
      let q = 0;
      for (; q < qa; q++) store<f32>(pixelAt(rowDst, j + q, panelBytes), 0);
      while (q < qb) {
        const jj = j + q, ix = ix0 + q * sw;
        if ((jj & 3) == 0 && q + 4 <= qb && (sw == 1 || (sw == 2 && ix + 7 < inW))) {
          // 4 pixels of one panel row at once (16-byte aligned in the panel).
          const sp = srcRow + (<usize>ix << 2);
          const v = sw == 1 ? v128.load(sp) : f32x4.shuffle(v128.load(sp), v128.load(sp, 16), 0, 2, 4, 6);
          v128.store(pixelAt(rowDst, jj, panelBytes), v);
          q += 4;
        } else {
          store<f32>(pixelAt(rowDst, jj, panelBytes), load<f32>(srcRow + (<usize>ix << 2)));
          q++;
        }
      }
      for (; q < run; q++) store<f32>(pixelAt(rowDst, j + q, panelBytes), 0);
      j += run;
      ox = 0; oy++; iy += sh;
    }
    for (; j < jnPad; j++) store<f32>(pixelAt(rowDst, j, panelBytes), 0);
  }
}

/**
 * Convolution as GEMM, Y_g[mg × P] = W_g[mg × K] · col_g[K × P] (+ epilogue), per image and group.
 * The work is a grid of units (image, group, pixel chunk of NC, row chunk of MC); this call runs
 * slices [begin, end) of SLICES, each claiming units from the counter in word NEXT (the binder
 * zeroes it before the call) until none are left, slice s packing its pixels into scratch slot s
 * (`scratch + s · SLOT_BYTES`), so threads never share a slot. `aPack`: per group, mgPad/MR
 * panels of K × MR (k-major), zero-padded rows. K is blocked by KC (one B panel KC × NR in L1).
 */
export function convGemmF32(
  begin: i32, end: i32, g: usize, aPack: usize, x: usize, y: usize,
  bias: usize, residual: usize, lo: f32, hi: f32, scratch: usize, codes: usize,
): void {
  const cg = geo(g, CG), kh = geo(g, KH), kw = geo(g, KW), mg = geo(g, MG), mgPad = geo(g, MG_PAD);
  const groups = geo(g, GROUPS), batch = geo(g, BATCH), nc = geo(g, NC), mc = geo(g, MC), kcMax = geo(g, KC);
  const nPc = geo(g, N_PC), nMc = geo(g, N_MC);
  const slotBytes = <usize>geo(g, SLOT_BYTES);
  const p = geo(g, OUT_H) * geo(g, OUT_W);
  const k = cg * kh * kw;
  const inPlane = <usize>(geo(g, IN_H) * geo(g, IN_W)) << 2;
  const units = batch * groups * nPc * nMc;
  const ldc = <usize>p << 2;
  for (let s = begin; s < end; s++) {
    const slot = scratch + <usize>s * slotBytes;
    // Code form: the decoded A panels of row chunk `haveA` (group · N_MC + mi), after the pixels.
    const aSlot = slot + ((<usize>min(kcMax, k) * <usize>nc) << 2);
    let haveA = -1;
    let packed = -1; // the pixel chunk (u / nMc) the slot holds, when K is one block
    for (;;) {
      // Units are claimed one at a time from the shared counter, so a preempted thread takes fewer.
      const u = atomic.add<i32>(g + (<usize>NEXT << 2), 1);
      if (u >= units) break;
      // Unit order: row chunk fastest, so consecutive units of a slice reuse the packed pixels.
      const mi = u % nMc, rest = u / nMc, pc = rest % nPc, ng = rest / nPc, grp = ng % groups, n = ng / groups;
      const j0 = pc * nc, jn = min(nc, p - j0);
      const m0 = mi * mc, m1 = min(mg, m0 + mc);
      const xImg = x + (<usize>(n * groups * cg + grp * cg)) * inPlane;
      const yG = y + (<usize>(n * groups * mg + grp * mg)) * ldc;
      const rG = residual != 0 ? residual + (<usize>(n * groups * mg + grp * mg)) * ldc : 0;
      // Code form: A rows from m0 in the slot (decoded once per row chunk); else the packed A.
      let aG = aPack + ((<usize>grp * <usize>mgPad * <usize>k) << 2);
      if (codes != 0) {
        const key = grp * nMc + mi;
        if (haveA != key) { haveA = key; decodeA(codes + <usize>(grp * mg + m0) * <usize>k, aPack, k, m1 - m0, aSlot); }
        aG = aSlot - ((<usize>m0 * <usize>k) << 2);
      }
      const bG = bias != 0 ? bias + (<usize>(grp * mg) << 2) : 0;
      const jnPad = (jn + GEMM_NR - 1) & ~(GEMM_NR - 1);
      for (let k0 = 0; k0 < k; k0 += kcMax) {
        const kb = min(kcMax, k - k0);
        // Consecutive units of one pixel chunk (row chunks) reuse the packed pixels when K is one block.
        if (kb < k || packed != rest) packIm2col(slot, xImg, g, k0, kb, j0, jn);
        packed = kb < k ? -1 : rest;
        const first = k0 == 0, last = k0 + kb == k;
        for (let jr = 0; jr < jnPad; jr += GEMM_NR) {
          const bp = slot + (<usize>(jr * kb) << 2);
          const cols = min(GEMM_NR, jn - jr);
          for (let ir = m0; ir < m1; ir += GEMM_MR) {
            const ap = aG + ((<usize>ir * <usize>k + <usize>(k0 * GEMM_MR)) << 2);
            const off = <usize>ir * ldc + (<usize>(j0 + jr) << 2);
            tile4x8(ap, bp, kb, yG + off, ldc, min(GEMM_MR, m1 - ir), cols, first, last,
              bG != 0 ? bG + (<usize>ir << 2) : 0, 0, rG != 0 ? rG + off : 0, lo, hi);
          }
        }
      }
    }
  }
}

/**
 * Rows [0, rows) of a code-form weight (`codes`: one u8 level id per weight, rows of k; `levels`:
 * f32 per id, id 0 = 0) as GEMM_MR-row panels of k × GEMM_MR (k-major) at `dst`, the last
 * panel's missing rows zero.
 */
function decodeA(codes: usize, levels: usize, k: i32, rows: i32, dst: usize): void {
  const rowsPad = (rows + GEMM_MR - 1) & ~(GEMM_MR - 1);
  for (let r = 0; r < rowsPad; r++) {
    const d = dst + ((<usize>(r / GEMM_MR) * <usize>k * GEMM_MR + <usize>(r % GEMM_MR)) << 2);
    if (r >= rows) {
      for (let c = 0; c < k; c++) store<f32>(d + (<usize>(c * GEMM_MR) << 2), 0);
      continue;
    }
    const cp = codes + <usize>r * <usize>k;
    for (let c = 0; c < k; c++) store<f32>(d + (<usize>(c * GEMM_MR) << 2), load<f32>(levels + (<usize>load<u8>(cp + c) << 2)));
  }
}

/**
 * Y[m × n] = A[m × k] · B[k × n] (+ epilogue) with B packed (NR-wide panels of k × NR, zero-padded
 * columns, alpha folded in) and A read in place: element (i, p) at `a + i·lda + p·aks` (bytes), so
 * a transposed A needs no copy. The column panels are cut into `slices` equal slices; this call
 * runs slices [begin, end), slice s gathering 4 rows of A at a time into its strip
 * `strips + s · 16k` (4 × k, k-major), reused across the slice's panels. `colBias` is padded to
 * whole panels (0 = none); `residual` has Y's layout (0 = none).
 */
export function gemmPackedF32(
  begin: i32, end: i32, slices: i32, m: i32, n: i32, k: i32, a: usize, lda: usize, aks: usize,
  bPack: usize, y: usize, colBias: usize, residual: usize, lo: f32, hi: f32, strips: usize,
): void {
  const ldy = <usize>n << 2;
  const panels = (n + GEMM_NR - 1) / GEMM_NR;
  for (let s = begin; s < end; s++) {
    const p0 = <i32>((<i64>s * panels) / slices), p1 = <i32>((<i64>(s + 1) * panels) / slices);
    if (p0 >= p1) continue;
    const strip = strips + <usize>s * (<usize>k << 4);
    for (let i0 = 0; i0 < m; i0 += GEMM_MR) {
      const rows = min(GEMM_MR, m - i0);
      for (let q = 0; q < k; q++) {
        const src = a + <usize>q * aks + <usize>i0 * lda;
        const d = strip + (<usize>q << 4);
        store<f32>(d, load<f32>(src));
        store<f32>(d, rows > 1 ? load<f32>(src + lda) : 0, 4);
        store<f32>(d, rows > 2 ? load<f32>(src + 2 * lda) : 0, 8);
        store<f32>(d, rows > 3 ? load<f32>(src + 3 * lda) : 0, 12);
      }
      for (let jp = p0; jp < p1; jp++) {
        const j = jp * GEMM_NR;
        const off = <usize>i0 * ldy + (<usize>j << 2);
        tile4x8(strip, bPack + (<usize>jp * <usize>k << 5), k, y + off, ldy, rows, min(GEMM_NR, n - j), true, true,
          0, colBias != 0 ? colBias + (<usize>j << 2) : 0, residual != 0 ? residual + off : 0, lo, hi);
      }
    }
  }
}
