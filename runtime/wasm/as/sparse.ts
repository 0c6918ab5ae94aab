// Sparse-quantized × dense kernels on the level-grouped row form that ops/sparse-form.ts
// transcodes a compressed `.opq` weight into (no dense weight exists):
//
//   rowPtr  u32 per row: where the row starts in `stream`, in u16 units
//   stream  per row: nLev, then nLev × (levelId, count), then the row's column indices (u16),
//           level by level (all u16)
//   levels  f32 per level id: the weight value Δ·code (uniform) or the table value (APoT)
//
// A row's dot product is Σ_level v_level · Σ_{k ∈ S_level} x[k]: the value is splatted once per
// level, and each kept weight costs one load and one multiply-add per vector of output pixels.
//
// Conv runs without im2col: over a zero-padded, phase-split copy of the input (phaseSplitF32),
// an output pixel (oy, ox) of row-major run index p = oy·Wq + ox reads input element
// table[k] + p for kept weight k, so each kept weight is one contiguous vector run over a tile of
// output pixels. Columns ox ≥ Wo of the run are garbage and dropped by the epilogue.
import { madd } from "./simd";

/** Output pixels per main tile (8 vectors of accumulators: fits the 16 SIMD registers of x86-64 with the loads). */
const TILE: i32 = 32;

/**
 * Store accumulator `a` at dst + o; with `fuse` (the run is the output plane itself) first add the
 * bias `vb`, the residual at r + o (r = 0: none) and clamp to [vlo, vhi], so no epilogue pass
 * re-reads the plane (on MobileNetV2's 112² and 56² layers that pass moved as many bytes as the tile stores).
 */
// @ts-ignore: decorator
@inline function put(dst: usize, r: usize, o: usize, a: v128, fuse: bool, vb: v128, vlo: v128, vhi: v128): void {
  if (fuse) {
    a = f32x4.add(a, vb);
    if (r) a = f32x4.add(a, v128.load(r + o));
    a = f32x4.min(f32x4.max(a, vlo), vhi);
  }
  v128.store(dst + o, a);
}

/**
 * Byte offset of the column whose u16 index is at `ip`: `idx · cs` when the tap table is linear
 * (`lin`: an unpadded 1×1 conv, column k = input plane k), else table[idx]. The call sites pass
 * `lin` as a literal, so each tile loop is compiled without the branch (in-process A/B on 1×1
 * layers of MobileNetV2/ResNet-50 shapes: the table load cost 5–15%).
 */
// @ts-ignore: decorator
@inline function colAt(ip: usize, table: usize, cs: usize, lin: bool): usize {
  return lin ? <usize>load<u16>(ip) * cs : <usize>load<i32>(table + (<usize>load<u16>(ip) << 2));
}

/**
 * One row over 4·nv output pixels (nv = 8, 6, 4, 2 or 1 vectors, a literal at every call site so each
 * width compiles to its own loop with nv accumulators): dst[0 .. 4·nv) = Σ_l v_l Σ_k src[col(k) ..],
 * stored by `put`.
 */
// @ts-ignore: decorator
@inline function rowTile(nv: i32, rp: usize, levels: usize, table: usize, cs: usize, lin: bool, src: usize, dst: usize, r: usize, fuse: bool, vb: v128, vlo: v128, vhi: v128): void {
  const nLev = <usize>load<u16>(rp);
  let hp = rp + 2;
  let ip = hp + (nLev << 2);
  const z = f32x4.splat(0);
  let a0 = z, a1 = z, a2 = z, a3 = z, a4 = z, a5 = z, a6 = z, a7 = z;
  for (let l: usize = 0; l < nLev; l++) {
    const v = v128.load32_splat(levels + (<usize>load<u16>(hp) << 2));
    const ie = ip + (<usize>load<u16>(hp, 2) << 1);
    hp += 4;
    // Two kept weights of the level at a time: their runs are added, then one multiply-add
    // (in-process A/B on 1×1 layers of MobileNetV2/ResNet-50 shapes: 5–10% faster than a multiply-add per weight).
    for (; ip + 2 < ie; ip += 4) {
      const s = src + colAt(ip, table, cs, lin), u = src + colAt(ip + 2, table, cs, lin);
      a0 = madd(v, f32x4.add(v128.load(s), v128.load(u)), a0);
      if (nv > 1) a1 = madd(v, f32x4.add(v128.load(s, 16), v128.load(u, 16)), a1);
      if (nv > 2) { a2 = madd(v, f32x4.add(v128.load(s, 32), v128.load(u, 32)), a2); a3 = madd(v, f32x4.add(v128.load(s, 48), v128.load(u, 48)), a3); }
      if (nv > 4) { a4 = madd(v, f32x4.add(v128.load(s, 64), v128.load(u, 64)), a4); a5 = madd(v, f32x4.add(v128.load(s, 80), v128.load(u, 80)), a5); }
      if (nv > 6) { a6 = madd(v, f32x4.add(v128.load(s, 96), v128.load(u, 96)), a6); a7 = madd(v, f32x4.add(v128.load(s, 112), v128.load(u, 112)), a7); }
    }
    if (ip < ie) {
      const s = src + colAt(ip, table, cs, lin);
      a0 = madd(v, v128.load(s), a0);
      if (nv > 1) a1 = madd(v, v128.load(s, 16), a1);
      if (nv > 2) { a2 = madd(v, v128.load(s, 32), a2); a3 = madd(v, v128.load(s, 48), a3); }
      if (nv > 4) { a4 = madd(v, v128.load(s, 64), a4); a5 = madd(v, v128.load(s, 80), a5); }
      if (nv > 6) { a6 = madd(v, v128.load(s, 96), a6); a7 = madd(v, v128.load(s, 112), a7); }
      ip += 2;
    }
  }
  put(dst, r, 0, a0, fuse, vb, vlo, vhi);
  if (nv > 1) put(dst, r, 16, a1, fuse, vb, vlo, vhi);
  if (nv > 2) { put(dst, r, 32, a2, fuse, vb, vlo, vhi); put(dst, r, 48, a3, fuse, vb, vlo, vhi); }
  if (nv > 4) { put(dst, r, 64, a4, fuse, vb, vlo, vhi); put(dst, r, 80, a5, fuse, vb, vlo, vhi); }
  if (nv > 6) { put(dst, r, 96, a6, fuse, vb, vlo, vhi); put(dst, r, 112, a7, fuse, vb, vlo, vhi); }
}

/**
 * Sparse conv rows `item = n·M + m` for items in [begin, end). Raw sums go to the scratch
 * t[item·L8 + p] for p in [0, L8) (L8 = the run Ho·Wq rounded up to 8, or to 4; the input must be
 * readable up to table[k] + L8 floats past each image and group base); then the epilogue writes
 * y[item·Ho·Wo + oy·Wo + ox] = clamp(t[item·L8 + oy·Wq + ox] + bias[m] + res[same as y], lo, hi).
 * `x` advances `xImg` bytes per image and `gStride` bytes per group of `Mg` rows; `table[k]` is
 * the byte offset of column k from the group base; `cs` ≠ 0 says the table is linear, table[k] = k·cs
 * (a 1×1 kernel), and the kernel computes the offset instead of loading it. bias, res: 0 for none.
 * When the run is the output plane (t = y, Wq = Wo, L8 = Ho·Wo) the tile stores apply the epilogue.
 */
export function sparseConvF32(
  begin: i32, end: i32, rowPtr: usize, stream: usize, levels: usize, table: usize, cs: usize,
  x: usize, xImg: i32, M: i32, Mg: i32, gStride: i32, L8: i32, t: usize,
  Ho: i32, Wq: i32, Wo: i32, y: usize, bias: usize, res: usize, lo: f32, hi: f32,
): void {
  convRows(begin, end, 0, L8, rowPtr, stream, levels, table, cs, x, xImg, M, Mg, gStride, L8, t, Ho, Wq, Wo, y, bias, res, lo, hi);
}

/**
 * sparseConvF32 over items [0, total) for the thread team, in work units claimed one at a time
 * from the i32 counter at `next` (zeroed by the caller): unit u is rows chunk ⌊u / parts⌋
 * (`chunk` items) over pixel part u mod `parts` of the run's 32-pixel tiles. `parts` > 1 only for
 * a fused run (the tile stores apply the epilogue): the threads then share a chunk's weight rows
 * and split its input, instead of each reading the whole input. `begin`/`end` only say that this
 * thread takes part. A thread the scheduler preempts takes fewer units instead of holding the
 * others up (a static split waits for the slowest thread's half).
 */
export function sparseConvDynF32(
  begin: i32, end: i32, next: usize, chunk: i32, total: i32, parts: i32, rowPtr: usize, stream: usize, levels: usize, table: usize, cs: usize,
  x: usize, xImg: i32, M: i32, Mg: i32, gStride: i32, L8: i32, t: usize,
  Ho: i32, Wq: i32, Wo: i32, y: usize, bias: usize, res: usize, lo: f32, hi: f32,
): void {
  if (end <= begin) return;
  const tiles = (L8 + TILE - 1) / TILE;
  for (;;) {
    const c = atomic.add<i32>(next, 1);
    const rc = c / parts, part = c - rc * parts;
    const b = rc * chunk;
    if (b >= total) break;
    const pb = (part * tiles / parts) * TILE, pe = min(L8, ((part + 1) * tiles / parts) * TILE);
    if (pb < pe) convRows(b, min(total, b + chunk), pb, pe, rowPtr, stream, levels, table, cs, x, xImg, M, Mg, gStride, L8, t, Ho, Wq, Wo, y, bias, res, lo, hi);
  }
}

/** Rows [m0, m1) of image base xb over the `w`-pixel tile at run index p (w a literal: 32, 24, 16, 8 or 4). */
// @ts-ignore: decorator
@inline function rowsPass(
  w: i32, p: i32, m0: i32, m1: i32, rowPtr: usize, stream: usize, levels: usize, table: usize, cs: usize,
  xb: usize, Mg: i32, gStride: i32, L8: i32, tb: usize, y: usize, bias: usize, res: usize, fuse: bool, vlo: v128, vhi: v128,
): void {
  let g = m0 / Mg, gi = m0 - g * Mg;
  for (let m = m0; m < m1; m++) {
    const src = xb + <usize>g * <usize>gStride + (<usize>p << 2);
    const rp = stream + (<usize>load<u32>(rowPtr + (<usize>m << 2)) << 1), dst = tb + ((<usize>m * <usize>L8 + <usize>p) << 2);
    const vb = f32x4.splat(fuse && bias ? load<f32>(bias + (<usize>m << 2)) : <f32>0), r = fuse && res ? res + (dst - y) : 0;
    // Literal widths: each call compiles to its own loop (a computed nv does not fold).
    if (w == 32) { if (cs) rowTile(8, rp, levels, table, cs, true, src, dst, r, fuse, vb, vlo, vhi); else rowTile(8, rp, levels, table, 0, false, src, dst, r, fuse, vb, vlo, vhi); }
    else if (w == 24) { if (cs) rowTile(6, rp, levels, table, cs, true, src, dst, r, fuse, vb, vlo, vhi); else rowTile(6, rp, levels, table, 0, false, src, dst, r, fuse, vb, vlo, vhi); }
    else if (w == 16) { if (cs) rowTile(4, rp, levels, table, cs, true, src, dst, r, fuse, vb, vlo, vhi); else rowTile(4, rp, levels, table, 0, false, src, dst, r, fuse, vb, vlo, vhi); }
    else if (w == 8) { if (cs) rowTile(2, rp, levels, table, cs, true, src, dst, r, fuse, vb, vlo, vhi); else rowTile(2, rp, levels, table, 0, false, src, dst, r, fuse, vb, vlo, vhi); }
    else { if (cs) rowTile(1, rp, levels, table, cs, true, src, dst, r, fuse, vb, vlo, vhi); else rowTile(1, rp, levels, table, 0, false, src, dst, r, fuse, vb, vlo, vhi); }
    if (++gi == Mg) { gi = 0; g++; }
  }
}

/**
 * Items [begin, end) over run pixels [pb, pe) (pb a multiple of 32; pe = L8 or a multiple of 32).
 * A pixel range short of the whole run needs the fused epilogue (`fuse`): the unfused one is a
 * per-row pass over the whole plane.
 */
// @ts-ignore: decorator
@inline function convRows(
  begin: i32, end: i32, pb: i32, pe: i32, rowPtr: usize, stream: usize, levels: usize, table: usize, cs: usize,
  x: usize, xImg: i32, M: i32, Mg: i32, gStride: i32, L8: i32, t: usize,
  Ho: i32, Wq: i32, Wo: i32, y: usize, bias: usize, res: usize, lo: f32, hi: f32,
): void {
  // The run is the output plane (no garbage columns, no rounding, sums written to y): the tile
  // stores apply the epilogue themselves.
  const fuse = t == y && Wq == Wo && L8 == Ho * Wo;
  const vlo = f32x4.splat(lo), vhi = f32x4.splat(hi);
  let item = begin;
  while (item < end) {
    const n = item / M;
    const m0 = item - n * M;
    const m1 = min(M, m0 + (end - item));
    const xb = x + <usize>n * <usize>xImg;
    const tb = t + ((<usize>(n * M) * <usize>L8) << 2);
    let p = pb;
    // Pixel tile outer, rows inner: the input tile (every k's run of 32 floats) stays in L1
    // while all rows of the range use it; the rows' u16 streams come from L2.
    for (; p + TILE <= pe; p += TILE) rowsPass(32, p, m0, m1, rowPtr, stream, levels, table, cs, xb, Mg, gStride, L8, tb, y, bias, res, fuse, vlo, vhi);
    const rem = pe - p;
    if (rem == 24) rowsPass(24, p, m0, m1, rowPtr, stream, levels, table, cs, xb, Mg, gStride, L8, tb, y, bias, res, fuse, vlo, vhi);
    else {
      if (rem >= 16) { rowsPass(16, p, m0, m1, rowPtr, stream, levels, table, cs, xb, Mg, gStride, L8, tb, y, bias, res, fuse, vlo, vhi); p += 16; }
      if (pe - p >= 8) { rowsPass(8, p, m0, m1, rowPtr, stream, levels, table, cs, xb, Mg, gStride, L8, tb, y, bias, res, fuse, vlo, vhi); p += 8; }
      if (p < pe) rowsPass(4, p, m0, m1, rowPtr, stream, levels, table, cs, xb, Mg, gStride, L8, tb, y, bias, res, fuse, vlo, vhi);
    }
    const plane = Ho * Wo;
    for (let m = m0; m < m1 && !fuse; m++) {
      const bv = bias ? load<f32>(bias + (<usize>m << 2)) : <f32>0;
      const o = (<usize>(n * M + m) * <usize>plane) << 2;
      epilogueRows(tb + ((<usize>m * <usize>L8) << 2), y + o, res ? res + o : 0, Ho, Wq, Wo, bv, lo, hi);
    }
    item += m1 - m0;
  }
}

/** y[oy·Wo + ox] = clamp(t[oy·Wq + ox] + b + r[oy·Wo + ox], lo, hi) (r = 0: no residual). In place when Wq = Wo and t = y. */
// @ts-ignore: decorator
@inline function epilogueRows(t: usize, y: usize, r: usize, Ho: i32, Wq: i32, Wo: i32, b: f32, lo: f32, hi: f32): void {
  const vb = f32x4.splat(b), vlo = f32x4.splat(lo), vhi = f32x4.splat(hi);
  for (let oy = 0; oy < Ho; oy++) {
    const ti = t + ((<usize>oy * <usize>Wq) << 2);
    const yi = y + ((<usize>oy * <usize>Wo) << 2);
    const ri = r + ((<usize>oy * <usize>Wo) << 2);
    let ox = 0;
    for (; ox + 4 <= Wo; ox += 4) {
      const o = <usize>ox << 2;
      let v = f32x4.add(v128.load(ti + o), vb);
      if (r) v = f32x4.add(v, v128.load(ri + o));
      v128.store(yi + o, f32x4.min(f32x4.max(v, vlo), vhi));
    }
    for (; ox < Wo; ox++) {
      const o = <usize>ox << 2;
      let v = load<f32>(ti + o) + b;
      if (r) v += load<f32>(ri + o);
      store<f32>(yi + o, min(max(v, lo), hi));
    }
  }
}

/**
 * The zero-padded, phase-split input of a conv, for items `n·C + c` in [begin, end): plane q of
 * the `nPlanes` phases (a_q, b_q) read from `phases` (i32 pairs) holds, at [c, i, j],
 * x[n, c, sy·i + a_q − pt, sx·j + b_q − pl] (0 outside the input). Planes are [nPlanes][C][Hq][Wq]
 * per image; `out` advances nPlanes·C·Hq·Wq floats per image. Stride 1 is one plane: plain padding.
 */
export function phaseSplitF32(
  begin: i32, end: i32, x: usize, C: i32, H: i32, W: i32, sy: i32, sx: i32, pt: i32, pl: i32,
  Hq: i32, Wq: i32, phases: usize, nPlanes: i32, out: usize,
): void {
  const planeF = <usize>C * <usize>Hq * <usize>Wq;
  for (let item = begin; item < end; item++) {
    const n = item / C, c = item - n * C;
    const xc = x + ((<usize>item * <usize>H * <usize>W) << 2);
    for (let q = 0; q < nPlanes; q++) {
      const a = load<i32>(phases + (<usize>q << 3)), b = load<i32>(phases + (<usize>q << 3), 4);
      const oc = out + ((<usize>n * <usize>nPlanes * planeF + <usize>q * planeF + <usize>c * <usize>Hq * <usize>Wq) << 2);
      // Columns j whose source sx·j + b − pl lies in [0, W).
      let j0 = 0;
      while (j0 < Wq && sx * j0 + b - pl < 0) j0++;
      let j1 = j0;
      while (j1 < Wq && sx * j1 + b - pl < W) j1++;
      // Plain (SIMD) stores rather than memory.fill/copy: the rows are short (MobileNetV2's
      // depthwise planes are 9–114 floats wide, the pads 1 float), and a bulk-memory call per pad
      // and row cost more than the copying (~2.5 ms of a MobileNetV2 .opq run's 3.5 ms of splits).
      const z = f32x4.splat(0);
      for (let i = 0; i < Hq; i++) {
        const row = oc + ((<usize>i * <usize>Wq) << 2);
        const sr = sy * i + a - pt;
        if (sr < 0 || sr >= H || j1 <= j0) {
          let j = 0;
          for (; j + 4 <= Wq; j += 4) v128.store(row + (<usize>j << 2), z);
          for (; j < Wq; j++) store<f32>(row + (<usize>j << 2), 0);
          continue;
        }
        for (let j = 0; j < j0; j++) store<f32>(row + (<usize>j << 2), 0);
        for (let j = j1; j < Wq; j++) store<f32>(row + (<usize>j << 2), 0);
        const srow = xc + ((<usize>sr * <usize>W) << 2);
        if (sx == 1) {
          const dst = row + (<usize>j0 << 2), src = srow + (<usize>(j0 + b - pl) << 2), bytes = <usize>(j1 - j0) << 2;
          let o: usize = 0;
          for (; o + 16 <= bytes; o += 16) v128.store(dst + o, v128.load(src + o));
          for (; o < bytes; o += 4) store<f32>(dst + o, load<f32>(src + o));
        } else {
          let j = j0;
          if (sx == 2) {
            // Four outputs from two vector loads, even lanes kept; only while both loads stay
            // inside the source row (2j + b − pl + 7 < W).
            for (; j + 4 <= j1 && 2 * j + b - pl + 7 < W; j += 4) {
              const sp = srow + (<usize>(2 * j + b - pl) << 2);
              v128.store(row + (<usize>j << 2), i8x16.shuffle(v128.load(sp), v128.load(sp, 16), 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27));
            }
          }
          for (; j < j1; j++) store<f32>(row + (<usize>j << 2), load<f32>(srow + (<usize>(sx * j + b - pl) << 2)));
        }
      }
    }
  }
}

/**
 * Sparse GEMV rows for items `n·M + m` in [begin, end): y[n·M + m] = clamp(Σ_l v_l Σ_{k ∈ S_l}
 * x[n·K + k] + bias[m], lo, hi) on the same row form (column indices are k directly).
 */
export function sparseGemvF32(
  begin: i32, end: i32, rowPtr: usize, stream: usize, levels: usize, x: usize, K: i32, M: i32,
  y: usize, bias: usize, lo: f32, hi: f32,
): void {
  for (let item = begin; item < end; item++) {
    const n = item / M, m = item - n * M;
    const xr = x + ((<usize>n * <usize>K) << 2);
    const rp = stream + (<usize>load<u32>(rowPtr + (<usize>m << 2)) << 1);
    const nLev = <usize>load<u16>(rp);
    let hp = rp + 2;
    let ip = hp + (nLev << 2);
    let acc: f32 = 0;
    for (let l: usize = 0; l < nLev; l++) {
      const v = load<f32>(levels + (<usize>load<u16>(hp) << 2));
      const ie = ip + (<usize>load<u16>(hp, 2) << 1);
      hp += 4;
      // Two partial sums: halves the add chain's latency.
      let s0: f32 = 0, s1: f32 = 0;
      for (; ip + 2 < ie; ip += 4) {
        s0 += load<f32>(xr + (<usize>load<u16>(ip) << 2));
        s1 += load<f32>(xr + (<usize>load<u16>(ip, 2) << 2));
      }
      if (ip < ie) { s0 += load<f32>(xr + (<usize>load<u16>(ip) << 2)); ip += 2; }
      acc += v * (s0 + s1);
    }
    if (bias) acc += load<f32>(bias + (<usize>m << 2));
    store<f32>(y + (<usize>item << 2), min(max(acc, lo), hi));
  }
}

/**
 * The sum of a column-blocked sparse conv (ops/conv-sparse.ts): its weight's columns are split
 * into B blocks of input channels, run as B·M rows (block-major) so each pixel tile's input stays
 * in L1, and for items n·M + m in [begin, end):
 *   y[n, m] = clamp(Σ_b s[n, b·M + m] + bias[m] + res[n, m], lo, hi)
 * over planes of `plane` floats (s: [N, B·M, plane]). bias, res: 0 for none.
 */
export function blockSumF32(begin: i32, end: i32, s: usize, B: i32, M: i32, plane: i32, y: usize, bias: usize, res: usize, lo: f32, hi: f32): void {
  const pb = <usize>plane << 2, stride = <usize>M * pb;
  const vlo = f32x4.splat(lo), vhi = f32x4.splat(hi);
  for (let item = begin; item < end; item++) {
    const n = item / M, m = item - n * M;
    const src = s + <usize>(n * B * M + m) * pb;
    const yo = y + <usize>item * pb, ro = res ? res + <usize>item * pb : 0;
    const b = bias ? load<f32>(bias + (<usize>m << 2)) : <f32>0;
    const vb = f32x4.splat(b);
    let i = 0;
    for (; i + 4 <= plane; i += 4) {
      const o = <usize>i << 2;
      let v = f32x4.add(v128.load(src + o), vb);
      for (let k: usize = 1; k < <usize>B; k++) v = f32x4.add(v, v128.load(src + k * stride + o));
      if (ro) v = f32x4.add(v, v128.load(ro + o));
      v128.store(yo + o, f32x4.min(f32x4.max(v, vlo), vhi));
    }
    for (; i < plane; i++) {
      const o = <usize>i << 2;
      let v = load<f32>(src + o) + b;
      for (let k: usize = 1; k < <usize>B; k++) v += load<f32>(src + k * stride + o);
      if (ro) v += load<f32>(ro + o);
      store<f32>(yo + o, min(max(v, lo), hi));
    }
  }
}
