// Winograd F(2×2, 3×3) convolution (Lavin & Gray 2016, Eq. 7–8), stride 1, dilation 1, one group:
// each 2×2 output tile is Aᵀ [ U ⊙ V ] A with U = G g Gᵀ (packed at bind) and V = Bᵀ d B over
// the tile's 4×4 input patch d, so the 16 transform positions ξ become 16 GEMMs
// M_ξ[M × T] = U_ξ[M × C] · V_ξ[C × T] on the 4×8 tile of gemm.ts. The transforms run on 4
// tiles side by side (one per lane); tiles at the borders go lane by lane.
import { convTile, storeTileRow } from "./tile";

// Words (i32) of a Winograd geometry block (runtime/wasm/ops/conv-dense.ts WINO_GEO).
const C = 0, IN_H = 1, IN_W = 2, PT = 3, PL = 4, OUT_H = 5, OUT_W = 6, M = 7, M_PAD = 8, BATCH = 9;
const NT = 10, N_TC = 11, N_MC = 12, MC = 13, SLOT_BYTES = 15, NEXT = 16;

// @ts-ignore: decorator
@inline function geo(g: usize, word: i32): i32 {
  return load<i32>(g + (<usize>word << 2));
}

/** Input value at (iy, ix) of a plane, 0 outside. */
// @ts-ignore: decorator
@inline function at(src: usize, iy: i32, ix: i32, inH: i32, inW: i32): f32 {
  return iy >= 0 && iy < inH && ix >= 0 && ix < inW ? load<f32>(src + (<usize>(iy * inW + ix) << 2)) : 0;
}

/**
 * V = Bᵀ d B for the 4×4 patch rows r0..r3 (each a vector of 4 tiles' values at one column
 * offset j: rows[r][j]), stored as 16 vectors (ξ = 4i + j) at `v + ξ·xiStride`.
 * Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]].
 */
// @ts-ignore: decorator
@inline function inputTransform(
  v: usize, xiStride: usize,
  d00: v128, d01: v128, d02: v128, d03: v128, d10: v128, d11: v128, d12: v128, d13: v128,
  d20: v128, d21: v128, d22: v128, d23: v128, d30: v128, d31: v128, d32: v128, d33: v128,
): void {
  // Columns first (d B), row by row.
  const t00 = f32x4.sub(d00, d02), t01 = f32x4.add(d01, d02), t02 = f32x4.sub(d02, d01), t03 = f32x4.sub(d01, d03);
  const t10 = f32x4.sub(d10, d12), t11 = f32x4.add(d11, d12), t12 = f32x4.sub(d12, d11), t13 = f32x4.sub(d11, d13);
  const t20 = f32x4.sub(d20, d22), t21 = f32x4.add(d21, d22), t22 = f32x4.sub(d22, d21), t23 = f32x4.sub(d21, d23);
  const t30 = f32x4.sub(d30, d32), t31 = f32x4.add(d31, d32), t32 = f32x4.sub(d32, d31), t33 = f32x4.sub(d31, d33);
  // Then rows (Bᵀ t).
  v128.store(v, f32x4.sub(t00, t20)); v128.store(v + xiStride, f32x4.sub(t01, t21));
  v128.store(v + 2 * xiStride, f32x4.sub(t02, t22)); v128.store(v + 3 * xiStride, f32x4.sub(t03, t23));
  v128.store(v + 4 * xiStride, f32x4.add(t10, t20)); v128.store(v + 5 * xiStride, f32x4.add(t11, t21));
  v128.store(v + 6 * xiStride, f32x4.add(t12, t22)); v128.store(v + 7 * xiStride, f32x4.add(t13, t23));
  v128.store(v + 8 * xiStride, f32x4.sub(t20, t10)); v128.store(v + 9 * xiStride, f32x4.sub(t21, t11));
  v128.store(v + 10 * xiStride, f32x4.sub(t22, t12)); v128.store(v + 11 * xiStride, f32x4.sub(t23, t13));
  v128.store(v + 12 * xiStride, f32x4.sub(t10, t30)); v128.store(v + 13 * xiStride, f32x4.sub(t11, t31));
  v128.store(v + 14 * xiStride, f32x4.sub(t12, t32)); v128.store(v + 15 * xiStride, f32x4.sub(t13, t33));
}

/**
 * U_ξ = (G g Gᵀ)_ξ (Lavin & Gray Eq. 7) of rows [m0, m1) of a code-form weight, into `u`: 16
 * blocks `xiBytes` apart (≥ rows · C · 4), each (m1 − m0 rounded up to 4)/4 panels of C × 4 (k-major), rows past
 * m1 zero. `codes`: one u8 level id per weight, [M][C][3][3]; `levels`: f32 per id (id 0 = 0).
 * G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]].
 */
function decodeU(codes: usize, levels: usize, c: i32, m0: i32, m1: i32, u: usize, xiBytes: usize): void {
  const rows = m1 - m0, rowsPad = (rows + 3) & ~3;
  for (let rr = 0; rr < rowsPad; rr++) {
    const lane = ((<usize>(rr >> 2) * <usize>c) << 4) + (<usize>(rr & 3) << 2);
    if (rr >= rows) {
      for (let ch = 0; ch < c; ch++) for (let xi = 0; xi < 16; xi++) store<f32>(u + <usize>xi * xiBytes + lane + (<usize>ch << 4), 0);
      continue;
    }
    let cp = codes + <usize>(m0 + rr) * <usize>c * 9;
    for (let ch = 0; ch < c; ch++, cp += 9) {
      const o = u + lane + (<usize>ch << 4);
      // Skip the transform of an all-zero 3×3 block (common in a pruned layer).
      if (load<u64>(cp) == 0 && load<u8>(cp, 8) == 0) {
        for (let xi = 0; xi < 16; xi++) store<f32>(o + <usize>xi * xiBytes, 0);
        continue;
      }
      const l = levels;
      const g00 = load<f32>(l + (<usize>load<u8>(cp) << 2)), g01 = load<f32>(l + (<usize>load<u8>(cp, 1) << 2)), g02 = load<f32>(l + (<usize>load<u8>(cp, 2) << 2));
      const g10 = load<f32>(l + (<usize>load<u8>(cp, 3) << 2)), g11 = load<f32>(l + (<usize>load<u8>(cp, 4) << 2)), g12 = load<f32>(l + (<usize>load<u8>(cp, 5) << 2));
      const g20 = load<f32>(l + (<usize>load<u8>(cp, 6) << 2)), g21 = load<f32>(l + (<usize>load<u8>(cp, 7) << 2)), g22 = load<f32>(l + (<usize>load<u8>(cp, 8) << 2));
      // t = G g (4×3, over the kernel's rows), then each row of t times Gᵀ.
      uRow(o, xiBytes, g00, g01, g02);
      uRow(o + 4 * xiBytes, xiBytes, <f32>0.5 * (g00 + g10 + g20), <f32>0.5 * (g01 + g11 + g21), <f32>0.5 * (g02 + g12 + g22));
      uRow(o + 8 * xiBytes, xiBytes, <f32>0.5 * (g00 - g10 + g20), <f32>0.5 * (g01 - g11 + g21), <f32>0.5 * (g02 - g12 + g22));
      uRow(o + 12 * xiBytes, xiBytes, g20, g21, g22);
    }
  }
}

/** One row (a0, a1, a2) of t = G g times Gᵀ: the 4 values of ξ = 4i + 0..3, `xiBytes` apart. */
// @ts-ignore: decorator
@inline function uRow(o: usize, xiBytes: usize, a0: f32, a1: f32, a2: f32): void {
  store<f32>(o, a0);
  store<f32>(o + xiBytes, <f32>0.5 * (a0 + a1 + a2));
  store<f32>(o + 2 * xiBytes, <f32>0.5 * (a0 - a1 + a2));
  store<f32>(o + 3 * xiBytes, a2);
}

/**
 * Winograd convolution, stride 1, dilation 1, one group. Work units (image, tile chunk of NT
 * tiles, row chunk of MC outputs) are claimed one at a time from the counter in word NEXT (zeroed
 * by the binder) by the slices [begin, end) this call runs, slice s using scratch slot s: V (16 × C × NT floats, 8-tile panels per ξ) then M (16 × MC × NT).
 * `uPack`: 16 matrices U_ξ, each M_PAD/4 panels of C × 4 (k-major). With `codes` ≠ 0 the weight
 * is in code form instead (decodeU: u8 level ids and the `uPack` level values) and each unit
 * decodes its row chunk's U into its slot after M (16 × MC × C floats), so no whole-layer float
 * weight exists.
 */
export function winogradF32(
  begin: i32, end: i32, g: usize, uPack: usize, x: usize, y: usize,
  bias: usize, residual: usize, lo: f32, hi: f32, scratch: usize, codes: usize,
): void {
  const c = geo(g, C), inH = geo(g, IN_H), inW = geo(g, IN_W), pt = geo(g, PT), pl = geo(g, PL);
  const outH = geo(g, OUT_H), outW = geo(g, OUT_W), m = geo(g, M), mPad = geo(g, M_PAD), batch = geo(g, BATCH);
  const nt = geo(g, NT), nTc = geo(g, N_TC), nMc = geo(g, N_MC), mc = geo(g, MC);
  const slotBytes = <usize>geo(g, SLOT_BYTES);
  const tilesW = (outW + 1) >> 1, tilesH = (outH + 1) >> 1, tiles = tilesH * tilesW;
  const inPlane = <usize>(inH * inW) << 2, outPlane = <usize>(outH * outW) << 2;
  const units = batch * nTc * nMc;
  const vlo = f32x4.splat(lo), vhi = f32x4.splat(hi);
  for (let s = begin; s < end; s++) {
    const vBase = scratch + <usize>s * slotBytes;
    // Bytes between V_ξ blocks, one cache line more than they need: 16 streams a power of two apart
    // would share L1 sets (the transforms touch all 16 at once).
    const vXi = (<usize>c * <usize>nt << 2) + 64;
    const mBase = vBase + 16 * vXi;
    // Code form: the decoded U of the row chunk `haveU`, after the 16 M blocks.
    const uBase = mBase + 16 * ((<usize>mc * <usize>nt << 2) + 64);
    // One cache line more than a block needs, as vXi (16 blocks a power of two apart share L1 sets).
    const uXiBytes = (<usize>mc * <usize>c << 2) + 64;
    let have = -1, haveU = -1;
    for (;;) {
      // Units are claimed one at a time from the shared counter, so a preempted thread takes fewer.
      const u = atomic.add<i32>(g + (<usize>NEXT << 2), 1);
      if (u >= units) break;
      const mi = u % nMc, rest = u / nMc, tc = rest % nTc, n = rest / nTc;
      const t0 = tc * nt, tn = min(nt, tiles - t0);
      const tnPad = (tn + 7) & ~7;
      const xImg = x + <usize>(n * c) * inPlane;
      // Input transform of the chunk's tiles, all channels (kept while the row chunks of the tiles follow).
      if (have != rest) {
        have = rest;
        for (let ch = 0; ch < c; ch++) {
          const src = xImg + <usize>ch * inPlane;
          let t = 0;
          while (t < tnPad) {
            const tt = t0 + t, ty = tt / tilesW, tx = tt - ty * tilesW;
            const iy = 2 * ty - pt, ix = 2 * tx - pl;
            // V_ξ panel (t / 8) row ch, lane t % 8.
            const vp = vBase + (((<usize>(t >> 3) * <usize>c + <usize>ch) << 3) + <usize>(t & 7) << 2);
            if ((t & 3) == 0 && t + 4 <= tn && tx + 4 <= tilesW && ix >= 0 && ix + 12 <= inW && iy >= 0 && iy + 4 <= inH) {
              // 4 tiles side by side, whole patches inside: stride-2 lanes of 3 loads per row.
              const r0 = src + (<usize>(iy * inW + ix) << 2);
              const r1 = r0 + (<usize>inW << 2), r2 = r1 + (<usize>inW << 2), r3 = r2 + (<usize>inW << 2);
              let a = v128.load(r0), b = v128.load(r0, 16), q = v128.load(r0, 32);
              const d00 = f32x4.shuffle(a, b, 0, 2, 4, 6), d01 = f32x4.shuffle(a, b, 1, 3, 5, 7);
              const d02 = f32x4.shuffle(d00, q, 1, 2, 3, 4), d03 = f32x4.shuffle(d01, q, 1, 2, 3, 5);
              a = v128.load(r1); b = v128.load(r1, 16); q = v128.load(r1, 32);
              const d10 = f32x4.shuffle(a, b, 0, 2, 4, 6), d11 = f32x4.shuffle(a, b, 1, 3, 5, 7);
              const d12 = f32x4.shuffle(d10, q, 1, 2, 3, 4), d13 = f32x4.shuffle(d11, q, 1, 2, 3, 5);
              a = v128.load(r2); b = v128.load(r2, 16); q = v128.load(r2, 32);
              const d20 = f32x4.shuffle(a, b, 0, 2, 4, 6), d21 = f32x4.shuffle(a, b, 1, 3, 5, 7);
              const d22 = f32x4.shuffle(d20, q, 1, 2, 3, 4), d23 = f32x4.shuffle(d21, q, 1, 2, 3, 5);
              a = v128.load(r3); b = v128.load(r3, 16); q = v128.load(r3, 32);
              const d30 = f32x4.shuffle(a, b, 0, 2, 4, 6), d31 = f32x4.shuffle(a, b, 1, 3, 5, 7);
              const d32 = f32x4.shuffle(d30, q, 1, 2, 3, 4), d33 = f32x4.shuffle(d31, q, 1, 2, 3, 5);
              inputTransform(vp, vXi, d00, d01, d02, d03, d10, d11, d12, d13, d20, d21, d22, d23, d30, d31, d32, d33);
              t += 4;
            } else {
              // One tile (lane 0 of the vectors; only that lane is stored), or a padding tile of zeros.
              let d00 = f32x4.splat(0), d01 = d00, d02 = d00, d03 = d00, d10 = d00, d11 = d00, d12 = d00, d13 = d00;
              let d20 = d00, d21 = d00, d22 = d00, d23 = d00, d30 = d00, d31 = d00, d32 = d00, d33 = d00;
              if (t < tn) {
                d00 = f32x4.splat(at(src, iy, ix, inH, inW)); d01 = f32x4.splat(at(src, iy, ix + 1, inH, inW));
                d02 = f32x4.splat(at(src, iy, ix + 2, inH, inW)); d03 = f32x4.splat(at(src, iy, ix + 3, inH, inW));
                d10 = f32x4.splat(at(src, iy + 1, ix, inH, inW)); d11 = f32x4.splat(at(src, iy + 1, ix + 1, inH, inW));
                d12 = f32x4.splat(at(src, iy + 1, ix + 2, inH, inW)); d13 = f32x4.splat(at(src, iy + 1, ix + 3, inH, inW));
                d20 = f32x4.splat(at(src, iy + 2, ix, inH, inW)); d21 = f32x4.splat(at(src, iy + 2, ix + 1, inH, inW));
                d22 = f32x4.splat(at(src, iy + 2, ix + 2, inH, inW)); d23 = f32x4.splat(at(src, iy + 2, ix + 3, inH, inW));
                d30 = f32x4.splat(at(src, iy + 3, ix, inH, inW)); d31 = f32x4.splat(at(src, iy + 3, ix + 1, inH, inW));
                d32 = f32x4.splat(at(src, iy + 3, ix + 2, inH, inW)); d33 = f32x4.splat(at(src, iy + 3, ix + 3, inH, inW));
              }
              storeLane0(vp, vXi, d00, d01, d02, d03, d10, d11, d12, d13, d20, d21, d22, d23, d30, d31, d32, d33);
              t++;
            }
          }
        }
      }
      // 16 GEMMs over the unit's rows: M_ξ[r, t] rows ntPad·4 bytes apart.
      const m0 = mi * mc, m1 = min(m, m0 + mc);
      const ldm = <usize>tnPad << 2;
      const mXi = <usize>mc * ldm + 64; // + one line, as vXi
      if (codes != 0 && haveU != mi) { haveU = mi; decodeU(codes, uPack, c, m0, m1, uBase, uXiBytes); }
      for (let xi = 0; xi < 16; xi++) {
        // Code form: U rows from m0 in the slot; else the packed U of all rows.
        const uXi = codes != 0 ? uBase + <usize>xi * uXiBytes - ((<usize>m0 * <usize>c) << 2) : uPack + ((<usize>xi * <usize>mPad * <usize>c) << 2);
        const vb = vBase + <usize>xi * vXi;
        const mb = mBase + <usize>xi * mXi;
        for (let jr = 0; jr < tnPad; jr += 8) {
          const bp = vb + (<usize>(jr * c) << 2);
          for (let ir = m0; ir < m1; ir += 4) {
            convTile(uXi + ((<usize>ir * <usize>c) << 2), bp, c, mb + <usize>(ir - m0) * ldm + (<usize>jr << 2), ldm, min(4, m1 - ir), 8);
          }
        }
      }
      // Output transform Y = Aᵀ M A (Aᵀ = [[1,1,1,0],[0,1,−1,−1]]), + bias, + residual, clamp.
      for (let r = m0; r < m1; r++) {
        const mr = mBase + <usize>(r - m0) * ldm;
        const b: f32 = bias != 0 ? load<f32>(bias + (<usize>r << 2)) : 0;
        const vb = f32x4.splat(b);
        const yPlane = y + <usize>(n * m + r) * outPlane;
        const rPlane = residual != 0 ? residual + <usize>(n * m + r) * outPlane : 0;
        let t = 0;
        while (t < tn) {
          const tt = t0 + t, ty = tt / tilesW, tx = tt - ty * tilesW;
          const p = mr + (<usize>t << 2);
          const m00 = v128.load(p), m01 = v128.load(p + mXi), m02 = v128.load(p + 2 * mXi), m03 = v128.load(p + 3 * mXi);
          const m10 = v128.load(p + 4 * mXi), m11 = v128.load(p + 5 * mXi), m12 = v128.load(p + 6 * mXi), m13 = v128.load(p + 7 * mXi);
          const m20 = v128.load(p + 8 * mXi), m21 = v128.load(p + 9 * mXi), m22 = v128.load(p + 10 * mXi), m23 = v128.load(p + 11 * mXi);
          const m30 = v128.load(p + 12 * mXi), m31 = v128.load(p + 13 * mXi), m32 = v128.load(p + 14 * mXi), m33 = v128.load(p + 15 * mXi);
          // Rows: s0 = m0 + m1 + m2, s1 = m1 − m2 − m3 (per column j).
          const s00 = f32x4.add(f32x4.add(m00, m10), m20), s01 = f32x4.add(f32x4.add(m01, m11), m21);
          const s02 = f32x4.add(f32x4.add(m02, m12), m22), s03 = f32x4.add(f32x4.add(m03, m13), m23);
          const s10 = f32x4.sub(f32x4.sub(m10, m20), m30), s11 = f32x4.sub(f32x4.sub(m11, m21), m31);
          const s12 = f32x4.sub(f32x4.sub(m12, m22), m32), s13 = f32x4.sub(f32x4.sub(m13, m23), m33);
          // Columns: y_a0 = s_a0 + s_a1 + s_a2, y_a1 = s_a1 − s_a2 − s_a3; lanes are tiles t..t+3.
          const y00 = f32x4.add(f32x4.add(f32x4.add(s00, s01), s02), vb), y01 = f32x4.add(f32x4.sub(f32x4.sub(s01, s02), s03), vb);
          const y10 = f32x4.add(f32x4.add(f32x4.add(s10, s11), s12), vb), y11 = f32x4.add(f32x4.sub(f32x4.sub(s11, s12), s13), vb);
          const oy = 2 * ty, ox = 2 * tx;
          if (t + 4 <= tn && tx + 4 <= tilesW && ox + 8 <= outW && oy + 2 <= outH) {
            // 8 consecutive pixels per output row: interleave the b = 0 and b = 1 outputs of 4 tiles.
            const o0 = yPlane + (<usize>(oy * outW + ox) << 2), o1 = o0 + (<usize>outW << 2);
            const q0 = rPlane != 0 ? rPlane + (<usize>(oy * outW + ox) << 2) : 0, q1 = q0 != 0 ? q0 + (<usize>outW << 2) : 0;
            storeTileRow(o0, q0, f32x4.shuffle(y00, y01, 0, 4, 1, 5), f32x4.shuffle(y00, y01, 2, 6, 3, 7), vlo, vhi);
            storeTileRow(o1, q1, f32x4.shuffle(y10, y11, 0, 4, 1, 5), f32x4.shuffle(y10, y11, 2, 6, 3, 7), vlo, vhi);
            t += 4;
          } else {
            // Lane 0 only: one tile, its in-bounds outputs.
            scalarOut(yPlane, rPlane, oy, ox, outH, outW, f32x4.extract_lane(y00, 0), f32x4.extract_lane(y01, 0), f32x4.extract_lane(y10, 0), f32x4.extract_lane(y11, 0), lo, hi);
            t++;
          }
        }
      }
    }
  }
}

/** Store lane 0 of each of the 16 V vectors of one tile (a lane-by-lane border tile). */
// @ts-ignore: decorator
@inline function storeLane0(
  v: usize, xiStride: usize,
  d00: v128, d01: v128, d02: v128, d03: v128, d10: v128, d11: v128, d12: v128, d13: v128,
  d20: v128, d21: v128, d22: v128, d23: v128, d30: v128, d31: v128, d32: v128, d33: v128,
): void {
  const t00 = f32x4.sub(d00, d02), t01 = f32x4.add(d01, d02), t02 = f32x4.sub(d02, d01), t03 = f32x4.sub(d01, d03);
  const t10 = f32x4.sub(d10, d12), t11 = f32x4.add(d11, d12), t12 = f32x4.sub(d12, d11), t13 = f32x4.sub(d11, d13);
  const t20 = f32x4.sub(d20, d22), t21 = f32x4.add(d21, d22), t22 = f32x4.sub(d22, d21), t23 = f32x4.sub(d21, d23);
  const t30 = f32x4.sub(d30, d32), t31 = f32x4.add(d31, d32), t32 = f32x4.sub(d32, d31), t33 = f32x4.sub(d31, d33);
  store<f32>(v, f32x4.extract_lane(f32x4.sub(t00, t20), 0)); store<f32>(v + xiStride, f32x4.extract_lane(f32x4.sub(t01, t21), 0));
  store<f32>(v + 2 * xiStride, f32x4.extract_lane(f32x4.sub(t02, t22), 0)); store<f32>(v + 3 * xiStride, f32x4.extract_lane(f32x4.sub(t03, t23), 0));
  store<f32>(v + 4 * xiStride, f32x4.extract_lane(f32x4.add(t10, t20), 0)); store<f32>(v + 5 * xiStride, f32x4.extract_lane(f32x4.add(t11, t21), 0));
  store<f32>(v + 6 * xiStride, f32x4.extract_lane(f32x4.add(t12, t22), 0)); store<f32>(v + 7 * xiStride, f32x4.extract_lane(f32x4.add(t13, t23), 0));
  store<f32>(v + 8 * xiStride, f32x4.extract_lane(f32x4.sub(t20, t10), 0)); store<f32>(v + 9 * xiStride, f32x4.extract_lane(f32x4.sub(t21, t11), 0));
  store<f32>(v + 10 * xiStride, f32x4.extract_lane(f32x4.sub(t22, t12), 0)); store<f32>(v + 11 * xiStride, f32x4.extract_lane(f32x4.sub(t23, t13), 0));
  store<f32>(v + 12 * xiStride, f32x4.extract_lane(f32x4.sub(t10, t30), 0)); store<f32>(v + 13 * xiStride, f32x4.extract_lane(f32x4.sub(t11, t31), 0));
  store<f32>(v + 14 * xiStride, f32x4.extract_lane(f32x4.sub(t12, t32), 0)); store<f32>(v + 15 * xiStride, f32x4.extract_lane(f32x4.sub(t13, t33), 0));
}

/** The in-bounds outputs of one tile at (oy, ox), with residual and clamp. */
// @ts-ignore: decorator
@inline function scalarOut(yPlane: usize, rPlane: usize, oy: i32, ox: i32, outH: i32, outW: i32, y00: f32, y01: f32, y10: f32, y11: f32, lo: f32, hi: f32): void {
  for (let a = 0; a < 2; a++) {
    if (oy + a >= outH) break;
    for (let b = 0; b < 2; b++) {
      if (ox + b >= outW) break;
      const off = <usize>((oy + a) * outW + ox + b) << 2;
      let v = a == 0 ? (b == 0 ? y00 : y01) : (b == 0 ? y10 : y11);
      if (rPlane != 0) v += load<f32>(rPlane + off);
      store<f32>(yPlane + off, min(max(v, lo), hi));
    }
  }
}
