// 2-D pooling over NCHW planes, SIMD over 4 output pixels of a row where their windows lie inside
// the row (stride 1: one load per tap; stride 2: two loads and an even-lane shuffle); the border
// pixels run a scalar loop. MaxPool 3×3 stride 2 (ResNet's stem) has its own loop, all vectors
// (maxPlane3x3s2: 2.35–2.8× the general loop on 64 ch @112², in-process A/B, CPU time, Bun and
// Deno). Dilation 1 only (the binder refuses others).
// Windows follow ONNX: pads [top, left, bottom, right]; ceil_mode shows only in OUT_H/OUT_W; the
// count_include_pad divisor counts window positions inside input + pads (not the ceil overhang).

// Words (i32) of a pool geometry block (runtime/wasm/ops/pool.ts POOL_GEO).
const IN_H = 0, IN_W = 1, KH = 2, KW = 3, SH = 4, SW = 5, PT = 6, PL = 7, PB = 8, PR = 9;
const OUT_H = 10, OUT_W = 11, INCLUDE_PAD = 12;

// @ts-ignore: decorator
@inline function geo(g: usize, word: i32): i32 {
  return load<i32>(g + (<usize>word << 2));
}

/** 4 taps `s` apart from p (s = 1: one load; 2: even lanes of two loads; else lane by lane). */
// @ts-ignore: decorator
@inline function taps(p: usize, s: i32): v128 {
  if (s == 1) return v128.load(p);
  if (s == 2) return f32x4.shuffle(v128.load(p), v128.load(p, 16), 0, 2, 4, 6);
  const st = <usize>s << 2;
  let v = f32x4.splat(load<f32>(p));
  v = f32x4.replace_lane(v, 1, load<f32>(p + st));
  v = f32x4.replace_lane(v, 2, load<f32>(p + 2 * st));
  return f32x4.replace_lane(v, 3, load<f32>(p + 3 * st));
}

/** Window positions along one axis inside the input + pads (the count_include_pad factor). */
// @ts-ignore: decorator
@inline function paddedCount(start: i32, k: i32, size: i32, padBegin: i32, padEnd: i32): i32 {
  return max(0, min(start + k, size + padEnd) - max(start, -padBegin));
}

/**
 * Planes [begin, end) of `x` pooled into `y`. mode 0: max (an all-padding window gives 0, as
 * the reference), 1: average.
 */
export function pool2dF32(begin: i32, end: i32, g: usize, x: usize, y: usize, mode: i32): void {
  const inH = geo(g, IN_H), inW = geo(g, IN_W), kh = geo(g, KH), kw = geo(g, KW), sh = geo(g, SH), sw = geo(g, SW);
  const pt = geo(g, PT), pl = geo(g, PL), pb = geo(g, PB), pr = geo(g, PR), outH = geo(g, OUT_H), outW = geo(g, OUT_W);
  const includePad = geo(g, INCLUDE_PAD) != 0;
  const inPlane = <usize>(inH * inW) << 2, outPlane = <usize>(outH * outW) << 2;
  // Interior columns [ox0, ox1): groups of 4 outputs whose windows and vector loads lie inside the row.
  const ox0 = min(outW, (pl + sw - 1) / sw);
  let ox1 = ox0;
  while (ox1 + 4 <= outW && groupFits(ox1, sw, kw, pl, inW)) ox1 += 4;
  const neg = f32x4.splat(-Infinity);
  // MaxPool 3×3 stride 2 (ResNet's stem) where every window holds an input tap: its own loop.
  // Its loads reach ≤ 2 floats before a row and ≤ 8 past one (checked against the memory's size).
  const max3s2 = mode == 0 && kh == 3 && kw == 3 && sh == 2 && sw == 2 && pt <= 2 && pl <= 2 && outW >= 4 &&
    (outH - 1) * 2 - pt < inH && (outW - 1) * 2 - pl < inW &&
    x + <usize>end * inPlane + 64 <= (<usize>memory.size() << 16);
  for (let plane = begin; plane < end; plane++) {
    const src = x + <usize>plane * inPlane;
    const dst = y + <usize>plane * outPlane;
    if (max3s2) { maxPlane3x3s2(src, dst, inH, inW, outH, outW, pt, pl); continue; }
    for (let oy = 0; oy < outH; oy++) {
      const ys = oy * sh - pt;
      const q0 = max(0, ys), q1 = min(inH, ys + kh);
      const rowsIn = max(0, q1 - q0);
      const rowsPad = paddedCount(ys, kh, inH, pt, pb);
      const drow = dst + (<usize>(oy * outW) << 2);
      let ox = 0;
      for (; ox < outW; ox++) {
        if (ox == ox0 && ox1 > ox0 && rowsIn > 0) {
          // Interior groups: every column tap inside, so the count is rowsIn·kw (rowsPad·kw with pads).
          const inv: f32 = <f32>1 / <f32>((includePad ? rowsPad : rowsIn) * kw);
          const vinv = f32x4.splat(inv);
          for (; ox < ox1; ox += 4) {
            const xs = ox * sw - pl;
            let acc = mode == 0 ? neg : f32x4.splat(0);
            for (let q = q0; q < q1; q++) {
              const p = src + (<usize>(q * inW + xs) << 2);
              for (let kx = 0; kx < kw; kx++) {
                const t = taps(p + (<usize>kx << 2), sw);
                acc = mode == 0 ? f32x4.max(acc, t) : f32x4.add(acc, t);
              }
            }
            v128.store(drow + (<usize>ox << 2), mode == 0 ? acc : f32x4.mul(acc, vinv));
          }
          if (ox >= outW) break;
        }
        const xs = ox * sw - pl;
        const c0 = max(0, xs), c1 = min(inW, xs + kw);
        let v: f32 = 0;
        if (mode == 0) {
          let best: f32 = -Infinity;
          let any = false;
          for (let q = q0; q < q1; q++) {
            for (let c = c0; c < c1; c++) { best = max(best, load<f32>(src + (<usize>(q * inW + c) << 2))); any = true; }
          }
          v = any ? best : 0;
        } else {
          let sum: f32 = 0;
          for (let q = q0; q < q1; q++) {
            for (let c = c0; c < c1; c++) sum += load<f32>(src + (<usize>(q * inW + c) << 2));
          }
          const count = includePad ? rowsPad * paddedCount(xs, kw, inW, pl, pr) : rowsIn * max(0, c1 - c0);
          v = count == 0 ? 0 : sum / <f32>count;
        }
        store<f32>(drow + (<usize>ox << 2), v);
      }
    }
  }
}

/** True if the 4 outputs from `ox` have all window taps inside the row and the vector loads in bounds. */
// @ts-ignore: decorator
@inline function groupFits(ox: i32, sw: i32, kw: i32, pl: i32, inW: i32): bool {
  const first = ox * sw - pl;
  if (first < 0) return false;
  // Last float read: stride 1 loads 4 floats at (kw − 1) + first; stride 2 loads 8; else 3·sw + 1.
  const lastRead = first + kw - 1 + (sw == 1 ? 3 : sw == 2 ? 7 : 3 * sw);
  return lastRead < inW;
}

/** y[p] = mean of plane p of `size` floats at x, planes [begin, end). */
export function globalAvgPoolF32(begin: i32, end: i32, x: usize, y: usize, size: i32): void {
  const inv: f32 = size > 0 ? <f32>1 / <f32>size : 0;
  for (let p = begin; p < end; p++) {
    const src = x + (<usize>p * <usize>size << 2);
    let acc0 = f32x4.splat(0), acc1 = acc0;
    let i = 0;
    for (; i + 8 <= size; i += 8) {
      acc0 = f32x4.add(acc0, v128.load(src + (<usize>i << 2)));
      acc1 = f32x4.add(acc1, v128.load(src + (<usize>i << 2), 16));
    }
    const a = f32x4.add(acc0, acc1);
    let s: f32 = f32x4.extract_lane(a, 0) + f32x4.extract_lane(a, 1) + f32x4.extract_lane(a, 2) + f32x4.extract_lane(a, 3);
    for (; i < size; i++) s += load<f32>(src + (<usize>i << 2));
    store<f32>(y + (<usize>p << 2), s * inv);
  }
}

/** `v` with the lanes whose columns c0 .. c0 + 3 fall outside [0, inW) set to −∞. */
// @ts-ignore: decorator
@inline function outsideToNeg(v: v128, c0: i32, inW: i32): v128 {
  const c = i32x4.add(i32x4.splat(c0), i32x4(0, 1, 2, 3));
  const ok = v128.and(i32x4.ge_s(c, i32x4.splat(0)), i32x4.lt_s(c, i32x4.splat(inW)));
  return v128.bitselect(v, f32x4.splat(-Infinity), ok);
}

/**
 * Maxima of 4 stride-2 windows 3 wide from the column maxima u (columns ix .. ix + 3), v (+4 ..
 * +7) and t (+8 ..): max of the even columns, the odd ones and the even ones shifted by one.
 */
// @ts-ignore: decorator
@inline function across(u: v128, v: v128, t: v128): v128 {
  const e = f32x4.shuffle(u, v, 0, 2, 4, 6);
  return f32x4.max(f32x4.max(e, f32x4.shuffle(u, v, 1, 3, 5, 7)), f32x4.shuffle(e, t, 1, 2, 3, 4));
}

/**
 * One plane of MaxPool 3×3 stride 2: output rows two at a time (row A reads input rows 0..2 of
 * the pair, row B rows 2..4, the shared row loaded once), the 3 rows' column maxima first, then
 * the stride-2 window across them: ~8 loads and 3 shuffles per 4 outputs instead of 9 strided
 * tap gathers. Padding taps are −∞ (lanes masked at the row ends, rows skipped at the plane's).
 */
function maxPlane3x3s2(src: usize, dst: usize, inH: i32, inW: i32, outH: i32, outW: i32, pt: i32, pl: i32): void {
  const rowBytes = <usize>inW << 2, outRow = <usize>outW << 2;
  const neg = f32x4.splat(-Infinity);
  for (let oy = 0; oy < outH; oy += 2) {
    const two = oy + 1 < outH;
    const iy = oy * 2 - pt;
    const p0 = src + <usize>(iy * inW) * 4;
    const r0 = iy >= 0, r3 = iy + 3 < inH, r4 = iy + 4 < inH;
    const r1 = iy + 1 >= 0 && iy + 1 < inH, r2 = iy + 2 < inH; // row 2 ≥ 0 since pt ≤ 2
    const dA = dst + <usize>oy * outRow, dB = dA + outRow;
    let ox = 0;
    for (;;) {
      if (ox + 4 > outW) {
        if (ox >= outW) break;
        ox = outW - 4; // the last group right-aligned (it may overlap the one before)
      }
      const ix = ox * 2 - pl;
      const masked = ix < 0 || ix + 9 > inW;
      let u = neg, v = neg, t = neg, u2 = neg, v2 = neg, t2 = neg;
      const p = p0 + <usize>(ix << 2);
      if (r0) {
        const pr = p;
        let a = v128.load(pr), b = v128.load(pr, 16), c = v128.load(pr, 32);
        if (masked) { a = outsideToNeg(a, ix, inW); b = outsideToNeg(b, ix + 4, inW); c = outsideToNeg(c, ix + 8, inW); }
        u = f32x4.max(u, a); v = f32x4.max(v, b); t = f32x4.max(t, c);
      }
      if (r1) {
        const pr = p + 1 * rowBytes;
        let a = v128.load(pr), b = v128.load(pr, 16), c = v128.load(pr, 32);
        if (masked) { a = outsideToNeg(a, ix, inW); b = outsideToNeg(b, ix + 4, inW); c = outsideToNeg(c, ix + 8, inW); }
        u = f32x4.max(u, a); v = f32x4.max(v, b); t = f32x4.max(t, c);
      }
      if (r2) {
        const pr = p + 2 * rowBytes;
        let a = v128.load(pr), b = v128.load(pr, 16), c = v128.load(pr, 32);
        if (masked) { a = outsideToNeg(a, ix, inW); b = outsideToNeg(b, ix + 4, inW); c = outsideToNeg(c, ix + 8, inW); }
        u = f32x4.max(u, a); v = f32x4.max(v, b); t = f32x4.max(t, c);
        u2 = f32x4.max(u2, a); v2 = f32x4.max(v2, b); t2 = f32x4.max(t2, c);
      }
      if (r3 && two) {
        const pr = p + 3 * rowBytes;
        let a = v128.load(pr), b = v128.load(pr, 16), c = v128.load(pr, 32);
        if (masked) { a = outsideToNeg(a, ix, inW); b = outsideToNeg(b, ix + 4, inW); c = outsideToNeg(c, ix + 8, inW); }
        u2 = f32x4.max(u2, a); v2 = f32x4.max(v2, b); t2 = f32x4.max(t2, c);
      }
      if (r4 && two) {
        const pr = p + 4 * rowBytes;
        let a = v128.load(pr), b = v128.load(pr, 16), c = v128.load(pr, 32);
        if (masked) { a = outsideToNeg(a, ix, inW); b = outsideToNeg(b, ix + 4, inW); c = outsideToNeg(c, ix + 8, inW); }
        u2 = f32x4.max(u2, a); v2 = f32x4.max(v2, b); t2 = f32x4.max(t2, c);
      }
      const q = <usize>ox << 2;
      v128.store(dA + q, across(u, v, t));
      if (two) v128.store(dB + q, across(u2, v2, t2));
      ox += 4;
    }
  }
}
