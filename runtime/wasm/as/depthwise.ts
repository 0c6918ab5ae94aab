// Depthwise convolution (group = input channels, each output channel reads one input plane),
// NCHW, SIMD over 4 output pixels of a row. 3×3 with stride 1 or 2 and dilation 1 (MobileNet's
// layers) has a dedicated loop with the 9 weights in registers; any other kernel, stride or
// dilation runs the generic loop. Fused epilogue: bias, residual, clamp [lo, hi].
import { madd } from "./simd";

// Words (i32) of a depthwise geometry block (runtime/wasm/ops/depthwise.ts DW_GEO).
const CH = 0, MULT = 1, IN_H = 2, IN_W = 3, KH = 4, KW = 5, SH = 6, SW = 7, DH = 8, DW = 9;
const PT = 10, PL = 11, OUT_H = 12, OUT_W = 13;

// @ts-ignore: decorator
@inline function geo(g: usize, word: i32): i32 {
  return load<i32>(g + (<usize>word << 2));
}

/** One output pixel, scalar, with bounds checks (the borders and the generic kernel). */
// @ts-ignore: decorator
@inline function pixel(src: usize, wm: usize, inH: i32, inW: i32, kh: i32, kw: i32, dh: i32, dw: i32, iy0: i32, ix0: i32, b: f32): f32 {
  let acc = b;
  for (let ky = 0; ky < kh; ky++) {
    const iy = iy0 + ky * dh;
    if (iy < 0 || iy >= inH) continue;
    const row = src + (<usize>(iy * inW) << 2);
    for (let kx = 0; kx < kw; kx++) {
      const ix = ix0 + kx * dw;
      if (ix >= 0 && ix < inW) acc += load<f32>(row + (<usize>ix << 2)) * load<f32>(wm + (<usize>(ky * kw + kx) << 2));
    }
  }
  return acc;
}

/**
 * Planes [begin, end) of batch × M output planes: plane (n, m) reads input plane (n, m / MULT)
 * and weights `w + m·kh·kw` (dense, row-major). `bias` (0 = none) per output channel;
 * `residual` (0 = none) has the output's layout.
 */
export function dwConvF32(begin: i32, end: i32, g: usize, w: usize, x: usize, y: usize, bias: usize, residual: usize, lo: f32, hi: f32): void {
  const ch = geo(g, CH), mult = geo(g, MULT), inH = geo(g, IN_H), inW = geo(g, IN_W);
  const kh = geo(g, KH), kw = geo(g, KW), sh = geo(g, SH), sw = geo(g, SW), dh = geo(g, DH), dw = geo(g, DW);
  const pt = geo(g, PT), pl = geo(g, PL), outH = geo(g, OUT_H), outW = geo(g, OUT_W);
  const m = ch * mult;
  const inPlane = <usize>(inH * inW) << 2, outPlane = <usize>(outH * outW) << 2;
  const vlo = f32x4.splat(lo), vhi = f32x4.splat(hi);
  const fast = kh == 3 && kw == 3 && dh == 1 && dw == 1 && sh == sw && (sh == 1 || sh == 2);
  // Interior columns: every tap of 4 consecutive outputs inside the row, vector loads in bounds.
  // Stride 1 reads ix0 .. ix0 + 5; stride 2 reads ix0 .. ix0 + 11 (see below).
  let ox0 = 0, ox1 = 0;
  if (fast) {
    ox0 = min(outW, (pl + sw - 1) / sw);
    const span = sw == 1 ? 6 : 12;
    // Largest ox with ox·sw − pl + span ≤ inW, plus 1, then whole groups of 4.
    const lastOk = inW - span + pl >= 0 ? (inW - span + pl) / sw : -1;
    ox1 = max(ox0, min(outW, lastOk + 1));
    ox1 = ox0 + ((ox1 - ox0) & ~3);
  }
  for (let plane = begin; plane < end; plane++) {
    const n = plane / m, oc = plane - n * m, c = oc / mult;
    const src = x + (<usize>(n * ch + c)) * inPlane;
    const dst = y + <usize>plane * outPlane;
    const res = residual != 0 ? residual + <usize>plane * outPlane : 0;
    const wm = w + (<usize>(oc * kh * kw) << 2);
    const b: f32 = bias != 0 ? load<f32>(bias + (<usize>oc << 2)) : 0;
    const vb = f32x4.splat(b);
    // The 9 weights of a 3×3 kernel (read only on the fast path: a smaller kernel has fewer).
    const wf = fast ? wm : w;
    const w0 = v128.load32_splat(wf), w1 = v128.load32_splat(wf, 4), w2 = v128.load32_splat(wf, 8);
    const w3 = v128.load32_splat(wf, 12), w4 = v128.load32_splat(wf, 16), w5 = v128.load32_splat(wf, 20);
    const w6 = v128.load32_splat(wf, 24), w7 = v128.load32_splat(wf, 28), w8 = v128.load32_splat(wf, 32);
    for (let oy = 0; oy < outH; oy++) {
      const iy0 = oy * sh - pt;
      const drow = dst + (<usize>(oy * outW) << 2);
      const rrow = res != 0 ? res + (<usize>(oy * outW) << 2) : 0;
      let ox = 0;
      if (fast && ox1 > ox0) {
        for (; ox < ox0; ox++) {
          let v = pixel(src, wm, inH, inW, kh, kw, dh, dw, iy0, ox * sw - pl, b);
          if (rrow != 0) v += load<f32>(rrow + (<usize>ox << 2));
          store<f32>(drow + (<usize>ox << 2), min(max(v, lo), hi));
        }
        const r0 = iy0 >= 0 && iy0 < inH, r1 = iy0 + 1 >= 0 && iy0 + 1 < inH, r2 = iy0 + 2 >= 0 && iy0 + 2 < inH;
        const row0 = src + (<usize>(iy0 * inW) << 2);
        const row1 = row0 + (<usize>inW << 2), row2 = row1 + (<usize>inW << 2);
        for (; ox < ox1; ox += 4) {
          const ix = ox * sw - pl;
          const o = <usize>ix << 2;
          let acc = vb;
          if (sw == 1) {
            if (r0) { acc = madd(w0, v128.load(row0 + o), acc); acc = madd(w1, v128.load(row0 + o, 4), acc); acc = madd(w2, v128.load(row0 + o, 8), acc); }
            if (r1) { acc = madd(w3, v128.load(row1 + o), acc); acc = madd(w4, v128.load(row1 + o, 4), acc); acc = madd(w5, v128.load(row1 + o, 8), acc); }
            if (r2) { acc = madd(w6, v128.load(row2 + o), acc); acc = madd(w7, v128.load(row2 + o, 4), acc); acc = madd(w8, v128.load(row2 + o, 8), acc); }
          } else {
            // Stride 2: taps kx = 0, 1, 2 of 4 outputs are the even lanes of row[ix ..], row[ix+1 ..], row[ix+2 ..].
            if (r0) {
              const a = v128.load(row0 + o), bq = v128.load(row0 + o, 16), cq = v128.load(row0 + o, 32);
              const e = f32x4.shuffle(a, bq, 0, 2, 4, 6);
              acc = madd(w0, e, acc); acc = madd(w1, f32x4.shuffle(a, bq, 1, 3, 5, 7), acc); acc = madd(w2, f32x4.shuffle(e, cq, 1, 2, 3, 4), acc);
            }
            if (r1) {
              const a = v128.load(row1 + o), bq = v128.load(row1 + o, 16), cq = v128.load(row1 + o, 32);
              const e = f32x4.shuffle(a, bq, 0, 2, 4, 6);
              acc = madd(w3, e, acc); acc = madd(w4, f32x4.shuffle(a, bq, 1, 3, 5, 7), acc); acc = madd(w5, f32x4.shuffle(e, cq, 1, 2, 3, 4), acc);
            }
            if (r2) {
              const a = v128.load(row2 + o), bq = v128.load(row2 + o, 16), cq = v128.load(row2 + o, 32);
              const e = f32x4.shuffle(a, bq, 0, 2, 4, 6);
              acc = madd(w6, e, acc); acc = madd(w7, f32x4.shuffle(a, bq, 1, 3, 5, 7), acc); acc = madd(w8, f32x4.shuffle(e, cq, 1, 2, 3, 4), acc);
            }
          }
          if (rrow != 0) acc = f32x4.add(acc, v128.load(rrow + (<usize>ox << 2)));
          v128.store(drow + (<usize>ox << 2), f32x4.min(f32x4.max(acc, vlo), vhi));
        }
      }
      for (; ox < outW; ox++) {
        let v = pixel(src, wm, inH, inW, kh, kw, dh, dw, iy0, ox * sw - pl, b);
        if (rrow != 0) v += load<f32>(rrow + (<usize>ox << 2));
        store<f32>(drow + (<usize>ox << 2), min(max(v, lo), hi));
      }
    }
  }
}
