// Depthwise convolution (group = input channels, each output channel reads one input plane),
// NCHW. 3×3 with stride 1 or 2 and dilation 1 (MobileNet's layers) runs a vector loop per plane:
// the 9 weights in registers, three (stride 1) or two (stride 2) output rows at a time (the input
// rows they share loaded once), 4 outputs of each per step, the row ends as vectors with their
// out-of-row lanes masked (no scalar border pixels); stride 2 de-interleaves with lane shuffles.
// Any other kernel, stride or dilation, and rows under 4 outputs, run the scalar loop. Fused epilogue: bias, residual,
// clamp [lo, hi]. In-process A/B against the previous loop (one output row, scalar/partial
// borders; CPU time, 1 thread, MobileNetV2-224's shapes, medians of 20–30): Bun stride 1
// 1.47–1.92× faster (960 ch @7² most), stride 2 0.99–1.07×; Deno 1.31–1.86× and 1.14–1.49×.
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

/** Lane mask: all ones where input column c0 + step·q (q = 0..3) lies in [0, inW), else 0. */
// @ts-ignore: decorator
@inline function colMask(c0: i32, step: i32, inW: i32): v128 {
  const c = i32x4.add(i32x4.splat(c0), step == 1 ? i32x4(0, 1, 2, 3) : i32x4(0, 2, 4, 6));
  return v128.and(i32x4.ge_s(c, i32x4.splat(0)), i32x4.lt_s(c, i32x4.splat(inW)));
}

/** `v` masked by `m` when `masked` (a compile-time constant where inlined). */
// @ts-ignore: decorator
@inline function mk(v: v128, masked: bool, m: v128): v128 {
  return masked ? v128.and(v, m) : v;
}

/** The epilogue of 4 outputs: residual (0 = none) added to acc (bias included), clamped to [lo, hi], stored at d. */
// @ts-ignore: decorator
@inline function put(d: usize, res: usize, acc: v128, vlo: v128, vhi: v128): void {
  if (res != 0) acc = f32x4.add(acc, v128.load(res));
  v128.store(d, f32x4.min(f32x4.max(acc, vlo), vhi));
}

/**
 * 4 outputs of up to three output rows (B if `two`, C if `three`), stride 1: row A reads input
 * rows p0..p2, B p1..p3, C p2..p4 (each pointer at the group's first tap column; a row's flag says
 * it lies inside the plane, else its taps are padding). Each input row's 3 shifted vectors are
 * loaded once and feed every output row that reads it (5 rows of loads for 3 output rows: 1.11–1.18×
 * two rows a step on Bun, 1.10–1.18× on Deno). `masked`: tap vector kx keeps only the lanes of m[kx].
 */
// @ts-ignore: decorator
@inline function group1x3(p0: usize, p1: usize, p2: usize, p3: usize, p4: usize, r0: bool, r1: bool, r2: bool, r3: bool, r4: bool, two: bool, three: bool,
  masked: bool, m0: v128, m1: v128, m2: v128,
  w0: v128, w1: v128, w2: v128, w3: v128, w4: v128, w5: v128, w6: v128, w7: v128, w8: v128, vb: v128,
  dA: usize, outRow: usize, resA: usize, vlo: v128, vhi: v128): void {
  let a = vb, b = vb, c = vb;
  if (r0) {
    a = madd(w0, mk(v128.load(p0), masked, m0), a); a = madd(w1, mk(v128.load(p0, 4), masked, m1), a); a = madd(w2, mk(v128.load(p0, 8), masked, m2), a);
  }
  if (r1) {
    const t0 = mk(v128.load(p1), masked, m0), t1 = mk(v128.load(p1, 4), masked, m1), t2 = mk(v128.load(p1, 8), masked, m2);
    a = madd(w3, t0, a); a = madd(w4, t1, a); a = madd(w5, t2, a);
    b = madd(w0, t0, b); b = madd(w1, t1, b); b = madd(w2, t2, b);
  }
  if (r2) {
    const t0 = mk(v128.load(p2), masked, m0), t1 = mk(v128.load(p2, 4), masked, m1), t2 = mk(v128.load(p2, 8), masked, m2);
    a = madd(w6, t0, a); a = madd(w7, t1, a); a = madd(w8, t2, a);
    b = madd(w3, t0, b); b = madd(w4, t1, b); b = madd(w5, t2, b);
    c = madd(w0, t0, c); c = madd(w1, t1, c); c = madd(w2, t2, c);
  }
  if (two && r3) {
    const t0 = mk(v128.load(p3), masked, m0), t1 = mk(v128.load(p3, 4), masked, m1), t2 = mk(v128.load(p3, 8), masked, m2);
    b = madd(w6, t0, b); b = madd(w7, t1, b); b = madd(w8, t2, b);
    c = madd(w3, t0, c); c = madd(w4, t1, c); c = madd(w5, t2, c);
  }
  if (three && r4) {
    c = madd(w6, mk(v128.load(p4), masked, m0), c); c = madd(w7, mk(v128.load(p4, 4), masked, m1), c); c = madd(w8, mk(v128.load(p4, 8), masked, m2), c);
  }
  put(dA, resA, a, vlo, vhi);
  if (two) put(dA + outRow, resA != 0 ? resA + outRow : 0, b, vlo, vhi);
  if (three) put(dA + 2 * outRow, resA != 0 ? resA + 2 * outRow : 0, c, vlo, vhi);
}

/**
 * Stride-2 taps of a row from p: kx = 0 the even columns, 1 the odd ones, 2 the even columns
 * from p + 2 (`even(p + 8)`: two more loads, but the same lane pattern as the others, which
 * Bun's engine runs 1.08–1.15× faster than deriving it from the kx = 0 vector with a crossing
 * shuffle; Deno 0.95–0.97×; in-process A/B, MobileNetV2's stride-2 layers).
 */
// @ts-ignore: decorator
@inline function even(p: usize): v128 { return f32x4.shuffle(v128.load(p), v128.load(p, 16), 0, 2, 4, 6); }
// @ts-ignore: decorator
@inline function odd(p: usize): v128 { return f32x4.shuffle(v128.load(p), v128.load(p, 16), 1, 3, 5, 7); }

/** As group1x3 for stride 2 and two output rows: row A reads input rows p0..p2, row B p2..p4 (the shared row p2 loaded once). */
// @ts-ignore: decorator
@inline function group2(p0: usize, p1: usize, p2: usize, p3: usize, p4: usize, r0: bool, r1: bool, r2: bool, r3: bool, r4: bool, two: bool,
  masked: bool, m0: v128, m1: v128, m2: v128,
  w0: v128, w1: v128, w2: v128, w3: v128, w4: v128, w5: v128, w6: v128, w7: v128, w8: v128, vb: v128,
  dA: usize, dB: usize, resA: usize, resB: usize, vlo: v128, vhi: v128): void {
  let a = vb, b = vb;
  if (r0) {
    const e = even(p0);
    a = madd(w0, mk(e, masked, m0), a); a = madd(w1, mk(odd(p0), masked, m1), a); a = madd(w2, mk(even(p0 + 8), masked, m2), a);
  }
  if (r1) {
    const e = even(p1);
    a = madd(w3, mk(e, masked, m0), a); a = madd(w4, mk(odd(p1), masked, m1), a); a = madd(w5, mk(even(p1 + 8), masked, m2), a);
  }
  if (r2) {
    const e = even(p2);
    const t0 = mk(e, masked, m0), t1 = mk(odd(p2), masked, m1), t2 = mk(even(p2 + 8), masked, m2);
    a = madd(w6, t0, a); a = madd(w7, t1, a); a = madd(w8, t2, a);
    if (two) { b = madd(w0, t0, b); b = madd(w1, t1, b); b = madd(w2, t2, b); }
  }
  if (two && r3) {
    const e = even(p3);
    b = madd(w3, mk(e, masked, m0), b); b = madd(w4, mk(odd(p3), masked, m1), b); b = madd(w5, mk(even(p3 + 8), masked, m2), b);
  }
  if (two && r4) {
    const e = even(p4);
    b = madd(w6, mk(e, masked, m0), b); b = madd(w7, mk(odd(p4), masked, m1), b); b = madd(w8, mk(even(p4 + 8), masked, m2), b);
  }
  put(dA, resA, a, vlo, vhi);
  if (two) put(dB, resB, b, vlo, vhi);
}

// @ts-ignore: decorator
@inline function dwPlanes(begin: i32, end: i32, g: usize, w: usize, x: usize, y: usize, bias: usize, residual: usize, lo: f32, hi: f32, codes: usize, wbuf: usize): void {
  const ch = geo(g, CH), mult = geo(g, MULT), inH = geo(g, IN_H), inW = geo(g, IN_W);
  const kh = geo(g, KH), kw = geo(g, KW), sh = geo(g, SH), sw = geo(g, SW), dh = geo(g, DH), dw = geo(g, DW);
  const pt = geo(g, PT), pl = geo(g, PL), outH = geo(g, OUT_H), outW = geo(g, OUT_W);
  const m = ch * mult;
  const inPlane = <usize>(inH * inW) << 2, outPlane = <usize>(outH * outW) << 2;
  // The vector loop: 3×3, stride 1 or 2, dilation 1, rows of ≥ 4 outputs. Every group of 4
  // outputs is vectors; a group whose taps leave the row (the row ends) masks those lanes, and its
  // loads reach at most 4 floats before the row (pads ≤ 4) and 16 floats past it (the last
  // plane's: checked against the memory's size; x is past the reserved first KiB).
  const padR = (outW - 1) * sw + 3 - pl - inW;
  const vec = kh == 3 && kw == 3 && dh == 1 && dw == 1 && sh == sw && (sw == 1 || sw == 2) &&
    outW >= 4 && pl <= 4 && padR <= 4;
  const lastIn = x + <usize>(((end - 1) / m) * ch + ch) * inPlane;
  const inBounds = lastIn + 64 <= (<usize>memory.size() << 16);
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
    if (!(vec && inBounds)) {
      for (let oy = 0; oy < outH; oy++) {
        const drow = dst + (<usize>(oy * outW) << 2);
        const rrow = res != 0 ? res + (<usize>(oy * outW) << 2) : 0;
        for (let ox = 0; ox < outW; ox++) {
          let v = pixel(src, wm, inH, inW, kh, kw, dh, dw, oy * sh - pt, ox * sw - pl, b);
          if (rrow != 0) v += load<f32>(rrow + (<usize>ox << 2));
          store<f32>(drow + (<usize>ox << 2), min(max(v, lo), hi));
        }
      }
      continue;
    }
    if (sw == 1) plane3x3s1(src, dst, res, wm, b, inH, inW, outH, outW, pt, pl, lo, hi);
    else plane3x3s2(src, dst, res, wm, b, inH, inW, outH, outW, pt, pl, lo, hi);
  }
}

/** One plane of the 3×3 stride-1 loop: output rows three at a time, groups of 4 outputs (see group1x3). */
function plane3x3s1(src: usize, dst: usize, res: usize, wm: usize, b: f32, inH: i32, inW: i32, outH: i32, outW: i32, pt: i32, pl: i32, lo: f32, hi: f32): void {
  const vlo = f32x4.splat(lo), vhi = f32x4.splat(hi);
  const vb = f32x4.splat(b);
  const w0 = v128.load32_splat(wm), w1 = v128.load32_splat(wm, 4), w2 = v128.load32_splat(wm, 8);
  const w3 = v128.load32_splat(wm, 12), w4 = v128.load32_splat(wm, 16), w5 = v128.load32_splat(wm, 20);
  const w6 = v128.load32_splat(wm, 24), w7 = v128.load32_splat(wm, 28), w8 = v128.load32_splat(wm, 32);
  const rowBytes = <usize>inW << 2, outRow = <usize>outW << 2;
  // The masks of the first and the last group (the same on every row).
  const l0 = colMask(-pl, 1, inW), l1 = colMask(1 - pl, 1, inW), l2 = colMask(2 - pl, 1, inW);
  const xe = outW - 4 - pl;
  const e0 = colMask(xe, 1, inW), e1 = colMask(xe + 1, 1, inW), e2 = colMask(xe + 2, 1, inW);
  // Output rows three at a time (the last step takes the one or two left).
  for (let oy = 0; oy < outH; oy += 3) {
    const two = oy + 1 < outH, three = oy + 2 < outH;
    const iy = oy - pt;
    const q0 = src + <usize>(iy * inW) * 4;
    const q1 = q0 + rowBytes, q2 = q1 + rowBytes, q3 = q2 + rowBytes, q4 = q3 + rowBytes;
    const r0 = iy >= 0 && iy < inH, r1 = iy + 1 >= 0 && iy + 1 < inH, r2 = iy + 2 >= 0 && iy + 2 < inH;
    const r3 = iy + 3 >= 0 && iy + 3 < inH, r4 = iy + 4 >= 0 && iy + 4 < inH;
    const dA = dst + <usize>oy * outRow, dB = dA + outRow;
    const resA = res != 0 ? res + <usize>oy * outRow : 0, resB = res != 0 ? resA + outRow : 0;
    for (let ox = 0; ; ox += 4) {
      const last = ox + 4 >= outW;
      if (last) ox = outW - 4; // the last group right-aligned (it may overlap the one before)
      const ix = ox - pl;
      const o = <usize>(ix << 2), q = <usize>ox << 2;
      const rA = resA != 0 ? resA + q : 0, rB = resB != 0 ? resB + q : 0;
      if (ix >= 0 && ix + 6 <= inW) {
        group1x3(q0 + o, q1 + o, q2 + o, q3 + o, q4 + o, r0, r1, r2, r3, r4, two, three, false, vb, vb, vb, w0, w1, w2, w3, w4, w5, w6, w7, w8, vb, dA + q, outRow, rA, vlo, vhi);
      } else if (ox == 0) {
        group1x3(q0 + o, q1 + o, q2 + o, q3 + o, q4 + o, r0, r1, r2, r3, r4, two, three, true, l0, l1, l2, w0, w1, w2, w3, w4, w5, w6, w7, w8, vb, dA + q, outRow, rA, vlo, vhi);
      } else if (last) {
        group1x3(q0 + o, q1 + o, q2 + o, q3 + o, q4 + o, r0, r1, r2, r3, r4, two, three, true, e0, e1, e2, w0, w1, w2, w3, w4, w5, w6, w7, w8, vb, dA + q, outRow, rA, vlo, vhi);
      } else {
        const m0 = colMask(ix, 1, inW), m1 = colMask(ix + 1, 1, inW), m2 = colMask(ix + 2, 1, inW);
        group1x3(q0 + o, q1 + o, q2 + o, q3 + o, q4 + o, r0, r1, r2, r3, r4, two, three, true, m0, m1, m2, w0, w1, w2, w3, w4, w5, w6, w7, w8, vb, dA + q, outRow, rA, vlo, vhi);
      }
      if (last) break;
    }
  }
}

/** One plane of the 3×3 stride-2 loop: output rows two at a time, groups of 4 outputs (see group2). */
function plane3x3s2(src: usize, dst: usize, res: usize, wm: usize, b: f32, inH: i32, inW: i32, outH: i32, outW: i32, pt: i32, pl: i32, lo: f32, hi: f32): void {
  const vlo = f32x4.splat(lo), vhi = f32x4.splat(hi);
  const vb = f32x4.splat(b);
  const w0 = v128.load32_splat(wm), w1 = v128.load32_splat(wm, 4), w2 = v128.load32_splat(wm, 8);
  const w3 = v128.load32_splat(wm, 12), w4 = v128.load32_splat(wm, 16), w5 = v128.load32_splat(wm, 20);
  const w6 = v128.load32_splat(wm, 24), w7 = v128.load32_splat(wm, 28), w8 = v128.load32_splat(wm, 32);
  const rowBytes = <usize>inW << 2, outRow = <usize>outW << 2;
  // Output rows two at a time (the last one alone when outH is odd).
  for (let oy = 0; oy < outH; oy += 2) {
    const two = oy + 1 < outH;
    const iy = oy * 2 - pt;
    const q0 = src + <usize>(iy * inW) * 4;
    const q1 = q0 + rowBytes, q2 = q1 + rowBytes, q3 = q2 + rowBytes, q4 = q3 + rowBytes;
    const r0 = iy >= 0 && iy < inH, r1 = iy + 1 >= 0 && iy + 1 < inH, r2 = iy + 2 >= 0 && iy + 2 < inH;
    const r3 = iy + 3 >= 0 && iy + 3 < inH, r4 = iy + 4 >= 0 && iy + 4 < inH;
    const dA = dst + <usize>oy * outRow, dB = dA + outRow;
    const resA = res != 0 ? res + <usize>oy * outRow : 0, resB = res != 0 ? resA + outRow : 0;
    let ox = 0;
    for (;;) {
      if (ox + 4 > outW) {
        if (ox >= outW) break;
        ox = outW - 4; // the last group right-aligned (it may overlap the one before)
      }
      const ix = ox * 2 - pl;
      const o = <usize>(ix << 2), q = <usize>ox << 2;
      const rA = resA != 0 ? resA + q : 0, rB = resB != 0 ? resB + q : 0;
      const inside = ix >= 0 && ix + 9 <= inW;
      if (inside) {
        group2(q0 + o, q1 + o, q2 + o, q3 + o, q4 + o, r0, r1, r2, r3, r4, two, false, vb, vb, vb, w0, w1, w2, w3, w4, w5, w6, w7, w8, vb, dA + q, dB + q, rA, rB, vlo, vhi);
      } else {
        const m0 = colMask(ix, 2, inW), m1 = colMask(ix + 1, 2, inW), m2 = colMask(ix + 2, 2, inW);
        group2(q0 + o, q1 + o, q2 + o, q3 + o, q4 + o, r0, r1, r2, r3, r4, two, true, m0, m1, m2, w0, w1, w2, w3, w4, w5, w6, w7, w8, vb, dA + q, dB + q, rA, rB, vlo, vhi);
      }
      ox += 4;
    }
  }
}


