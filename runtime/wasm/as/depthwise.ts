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

/** One border pixel of the 3×3 loop: the taps of rows r0..r2 (flags: inside) at columns ix .. ix + 2. */
// @ts-ignore: decorator
@inline function pixel3x3(row0: usize, row1: usize, row2: usize, r0: bool, r1: bool, r2: bool, ix: i32, inW: i32, wm: usize, b: f32): f32 {
  let acc = b;
  for (let kx = 0; kx < 3; kx++) {
    const i = ix + kx;
    if (i < 0 || i >= inW) continue;
    const o = <usize>i << 2, wo = <usize>kx << 2;
    if (r0) acc += load<f32>(row0 + o) * load<f32>(wm + wo);
    if (r1) acc += load<f32>(row1 + o) * load<f32>(wm + wo, 12);
    if (r2) acc += load<f32>(row2 + o) * load<f32>(wm + wo, 24);
  }
  return acc;
}

/**
 * Planes [begin, end) of batch × M output planes: plane (n, m) reads input plane (n, m / MULT)
 * and weights `w + m·kh·kw` (dense, row-major). `bias` (0 = none) per output channel;
 * `residual` (0 = none) has the output's layout. With `codes` ≠ 0 the weight is in code form (one
 * u8 level id per weight, same order; `w` = the f32 level values, id 0 = 0) and each plane's
 * kh·kw weights are decoded into `wbuf + begin·kh·kw·4` (one slot per call: ranges of the
 * threads are disjoint, so their `begin`s differ; wbuf holds a slot per plane).
 */
export function dwConvF32(begin: i32, end: i32, g: usize, w: usize, x: usize, y: usize, bias: usize, residual: usize, lo: f32, hi: f32, codes: usize, wbuf: usize): void {
  dwPlanes(begin, end, g, w, x, y, bias, residual, lo, hi, codes, wbuf);
}

/**
 * dwConvF32 over planes [0, total) claimed `chunk` at a time from the i32 counter at `next`
 * (zeroed by the caller), for the thread team (`begin`/`end` only say that this thread takes
 * part): a preempted thread takes fewer chunks instead of holding the others up. Chunk starts
 * differ, so the code form's decode slots (by range start) stay apart.
 */
export function dwConvDynF32(begin: i32, end: i32, next: usize, chunk: i32, total: i32, g: usize, w: usize, x: usize, y: usize, bias: usize, residual: usize, lo: f32, hi: f32, codes: usize, wbuf: usize): void {
  if (end <= begin) return;
  for (;;) {
    const b = atomic.add<i32>(next, 1) * chunk;
    if (b >= total) break;
    dwPlanes(b, min(total, b + chunk), g, w, x, y, bias, residual, lo, hi, codes, wbuf);
  }
}

// @ts-ignore: decorator
@inline function dwPlanes(begin: i32, end: i32, g: usize, w: usize, x: usize, y: usize, bias: usize, residual: usize, lo: f32, hi: f32, codes: usize, wbuf: usize): void {
  const ch = geo(g, CH), mult = geo(g, MULT), inH = geo(g, IN_H), inW = geo(g, IN_W);
  const kh = geo(g, KH), kw = geo(g, KW), sh = geo(g, SH), sw = geo(g, SW), dh = geo(g, DH), dw = geo(g, DW);
  const pt = geo(g, PT), pl = geo(g, PL), outH = geo(g, OUT_H), outW = geo(g, OUT_W);
  const m = ch * mult;
  const inPlane = <usize>(inH * inW) << 2, outPlane = <usize>(outH * outW) << 2;
  const vlo = f32x4.splat(lo), vhi = f32x4.splat(hi);
  const fast = kh == 3 && kw == 3 && dh == 1 && dw == 1 && sh == sw && (sh == 1 || sh == 2);
  // Interior columns [ox0, oxEnd): groups of 4 outputs whose taps (and vector loads) lie inside the
  // row; stride 1 reads ix .. ix + 5, stride 2 ix .. ix + 8 from the group's first tap ix. The
  // groups run from ox0 in steps of 4, the last one right-aligned at oxEnd − 4 (it may overlap).
  let ox0 = 0, oxEnd = 0;
  if (fast) {
    ox0 = min(outW, (pl + sw - 1) / sw);
    const span = sw == 1 ? 6 : 9;
    const gMax = inW - span + pl >= 0 ? (inW - span + pl) / sw : -1;
    oxEnd = gMax >= ox0 ? min(outW, gMax + 4) : ox0;
    if (oxEnd - ox0 < 4) oxEnd = ox0;
  }
  // Stride 1, pad 1, same width (MobileNetV2's stride-1 layers): the first and last group of 4
  // outputs are vectors too, their out-of-row taps masked to 0, instead of a scalar pixel at each
  // end of every row (~30 ns each: on a 7×7 plane the two scalar pixels cost more than the row's
  // vectors). The last group's load reads 4 bytes past the row, so the planes must be followed by
  // readable memory (checked against the memory's size).
  const edges = fast && sw == 1 && pl == 1 && inW == outW && outW >= 5 && oxEnd > ox0;
  // Stride 2, pad 1: the first group likewise (taps ix = −1 .. 7, lane 0 of the kx = 0 vector masked).
  const edge2 = fast && sw == 2 && pl == 1 && inW >= 9 && outW >= 4 && oxEnd > ox0;
  const memEnd = <usize>memory.size() << 16;
  const maskL = i32x4(0, -1, -1, -1), maskR = i32x4(-1, -1, -1, 0);
  for (let plane = begin; plane < end; plane++) {
    const n = plane / m, oc = plane - n * m, c = oc / mult;
    const src = x + (<usize>(n * ch + c)) * inPlane;
    const dst = y + <usize>plane * outPlane;
    const res = residual != 0 ? residual + <usize>plane * outPlane : 0;
    let wm = w + (<usize>(oc * kh * kw) << 2);
    if (codes != 0) {
      const taps = kh * kw;
      wm = wbuf + (<usize>(begin * taps) << 2);
      const cp = codes + <usize>(oc * taps);
      for (let j = 0; j < taps; j++) store<f32>(wm + (<usize>j << 2), load<f32>(w + (<usize>load<u8>(cp + j) << 2)));
    }
    const b: f32 = bias != 0 ? load<f32>(bias + (<usize>oc << 2)) : 0;
    const vb = f32x4.splat(b);
    // The 9 weights of a 3×3 kernel (read only on the fast path: a smaller kernel has fewer).
    const wf = fast ? wm : codes != 0 ? wbuf : w;
    const w0 = v128.load32_splat(wf), w1 = v128.load32_splat(wf, 4), w2 = v128.load32_splat(wf, 8);
    const w3 = v128.load32_splat(wf, 12), w4 = v128.load32_splat(wf, 16), w5 = v128.load32_splat(wf, 20);
    const w6 = v128.load32_splat(wf, 24), w7 = v128.load32_splat(wf, 28), w8 = v128.load32_splat(wf, 32);
    for (let oy = 0; oy < outH; oy++) {
      const iy0 = oy * sh - pt;
      const drow = dst + (<usize>(oy * outW) << 2);
      const rrow = res != 0 ? res + (<usize>(oy * outW) << 2) : 0;
      let ox = 0;
      if (oxEnd > ox0) {
        const r0 = iy0 >= 0 && iy0 < inH, r1 = iy0 + 1 >= 0 && iy0 + 1 < inH, r2 = iy0 + 2 >= 0 && iy0 + 2 < inH;
        const row0 = src + (<usize>(iy0 * inW) << 2);
        const row1 = row0 + (<usize>inW << 2), row2 = row1 + (<usize>inW << 2);
        const vecEdges = edges && src + inPlane + 4 <= memEnd;
        if (vecEdges) {
          // Outputs 0..3: taps ix = −1 .. 4, lane 0 of the kx = 0 vector masked.
          let acc = vb;
          if (r0) { acc = madd(w0, v128.and(v128.load(row0 - 4), maskL), acc); acc = madd(w1, v128.load(row0), acc); acc = madd(w2, v128.load(row0, 4), acc); }
          if (r1) { acc = madd(w3, v128.and(v128.load(row1 - 4), maskL), acc); acc = madd(w4, v128.load(row1), acc); acc = madd(w5, v128.load(row1, 4), acc); }
          if (r2) { acc = madd(w6, v128.and(v128.load(row2 - 4), maskL), acc); acc = madd(w7, v128.load(row2), acc); acc = madd(w8, v128.load(row2, 4), acc); }
          if (rrow != 0) acc = f32x4.add(acc, v128.load(rrow));
          v128.store(drow, f32x4.min(f32x4.max(acc, vlo), vhi));
          ox = ox0;
        } else if (edge2) {
          let acc = vb;
          if (r0) {
            const a = v128.load(row0 - 4), bq = v128.load(row0, 12);
            const e = f32x4.shuffle(a, bq, 0, 2, 4, 6);
            acc = madd(w0, v128.and(e, maskL), acc); acc = madd(w1, f32x4.shuffle(a, bq, 1, 3, 5, 7), acc);
            acc = madd(w2, f32x4.replace_lane(f32x4.shuffle(e, e, 1, 2, 3, 0), 3, load<f32>(row0, 28)), acc);
          }
          if (r1) {
            const a = v128.load(row1 - 4), bq = v128.load(row1, 12);
            const e = f32x4.shuffle(a, bq, 0, 2, 4, 6);
            acc = madd(w3, v128.and(e, maskL), acc); acc = madd(w4, f32x4.shuffle(a, bq, 1, 3, 5, 7), acc);
            acc = madd(w5, f32x4.replace_lane(f32x4.shuffle(e, e, 1, 2, 3, 0), 3, load<f32>(row1, 28)), acc);
          }
          if (r2) {
            const a = v128.load(row2 - 4), bq = v128.load(row2, 12);
            const e = f32x4.shuffle(a, bq, 0, 2, 4, 6);
            acc = madd(w6, v128.and(e, maskL), acc); acc = madd(w7, f32x4.shuffle(a, bq, 1, 3, 5, 7), acc);
            acc = madd(w8, f32x4.replace_lane(f32x4.shuffle(e, e, 1, 2, 3, 0), 3, load<f32>(row2, 28)), acc);
          }
          if (rrow != 0) acc = f32x4.add(acc, v128.load(rrow));
          v128.store(drow, f32x4.min(f32x4.max(acc, vlo), vhi));
          ox = ox0;
        }
        for (; ox < ox0; ox++) {
          let v = pixel3x3(row0, row1, row2, r0, r1, r2, ox * sw - pl, inW, wm, b);
          if (rrow != 0) v += load<f32>(rrow + (<usize>ox << 2));
          store<f32>(drow + (<usize>ox << 2), min(max(v, lo), hi));
        }
        for (;;) {
          if (ox + 4 > oxEnd) {
            if (ox >= oxEnd) break;
            ox = oxEnd - 4; // the right-aligned last group
          }
          const o = <usize>(ox * sw - pl) << 2;
          let acc = vb;
          if (sw == 1) {
            if (r0) { acc = madd(w0, v128.load(row0 + o), acc); acc = madd(w1, v128.load(row0 + o, 4), acc); acc = madd(w2, v128.load(row0 + o, 8), acc); }
            if (r1) { acc = madd(w3, v128.load(row1 + o), acc); acc = madd(w4, v128.load(row1 + o, 4), acc); acc = madd(w5, v128.load(row1 + o, 8), acc); }
            if (r2) { acc = madd(w6, v128.load(row2 + o), acc); acc = madd(w7, v128.load(row2 + o, 4), acc); acc = madd(w8, v128.load(row2 + o, 8), acc); }
          } else {
            // Stride 2: taps kx = 0, 1, 2 of 4 outputs are row[ix + 2q + kx]: even lanes, odd lanes,
            // and the even lanes shifted by one with row[ix + 8] appended.
            if (r0) {
              const a = v128.load(row0 + o), bq = v128.load(row0 + o, 16);
              const e = f32x4.shuffle(a, bq, 0, 2, 4, 6);
              acc = madd(w0, e, acc); acc = madd(w1, f32x4.shuffle(a, bq, 1, 3, 5, 7), acc);
              acc = madd(w2, f32x4.replace_lane(f32x4.shuffle(e, e, 1, 2, 3, 0), 3, load<f32>(row0 + o, 32)), acc);
            }
            if (r1) {
              const a = v128.load(row1 + o), bq = v128.load(row1 + o, 16);
              const e = f32x4.shuffle(a, bq, 0, 2, 4, 6);
              acc = madd(w3, e, acc); acc = madd(w4, f32x4.shuffle(a, bq, 1, 3, 5, 7), acc);
              acc = madd(w5, f32x4.replace_lane(f32x4.shuffle(e, e, 1, 2, 3, 0), 3, load<f32>(row1 + o, 32)), acc);
            }
            if (r2) {
              const a = v128.load(row2 + o), bq = v128.load(row2 + o, 16);
              const e = f32x4.shuffle(a, bq, 0, 2, 4, 6);
              acc = madd(w6, e, acc); acc = madd(w7, f32x4.shuffle(a, bq, 1, 3, 5, 7), acc);
              acc = madd(w8, f32x4.replace_lane(f32x4.shuffle(e, e, 1, 2, 3, 0), 3, load<f32>(row2 + o, 32)), acc);
            }
          }
          if (rrow != 0) acc = f32x4.add(acc, v128.load(rrow + (<usize>ox << 2)));
          v128.store(drow + (<usize>ox << 2), f32x4.min(f32x4.max(acc, vlo), vhi));
          ox += 4;
        }
        if (vecEdges) {
          // Outputs W−4 .. W−1: taps ix = W−5 .. W, lane 3 of the kx = 2 vector masked.
          const e = <usize>(outW - 5) << 2;
          let acc = vb;
          if (r0) { acc = madd(w0, v128.load(row0 + e), acc); acc = madd(w1, v128.load(row0 + e, 4), acc); acc = madd(w2, v128.and(v128.load(row0 + e, 8), maskR), acc); }
          if (r1) { acc = madd(w3, v128.load(row1 + e), acc); acc = madd(w4, v128.load(row1 + e, 4), acc); acc = madd(w5, v128.and(v128.load(row1 + e, 8), maskR), acc); }
          if (r2) { acc = madd(w6, v128.load(row2 + e), acc); acc = madd(w7, v128.load(row2 + e, 4), acc); acc = madd(w8, v128.and(v128.load(row2 + e, 8), maskR), acc); }
          const q = <usize>(outW - 4) << 2;
          if (rrow != 0) acc = f32x4.add(acc, v128.load(rrow + q));
          v128.store(drow + q, f32x4.min(f32x4.max(acc, vlo), vhi));
          ox = outW;
        }
        for (; ox < outW; ox++) {
          let v = pixel3x3(row0, row1, row2, r0, r1, r2, ox * sw - pl, inW, wm, b);
          if (rrow != 0) v += load<f32>(rrow + (<usize>ox << 2));
          store<f32>(drow + (<usize>ox << 2), min(max(v, lo), hi));
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
