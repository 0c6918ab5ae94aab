/**
 * Direct 2-D convolution for one input channel per group (depthwise, MobileNet-style): each output
 * plane reads one input plane, so im2col + GEMM would only add a copy. A plane whose border
 * windows reach into the padding is first copied into a zero-padded plane, so every pixel runs the
 * unchecked interior loop; 3×3 kernels keep their nine weights in locals and, at stride 1, slide
 * a 3×3 register window (3 loads per output instead of 9).
 * @module
 */
import { rangeEnd, rangeStart, type Window2d } from "./im2col.ts";

/** The zero-padded copy of one input plane, reused across calls. */
let paddedScratch = new Float32Array(0);
/**
 * The window over the padded copy, reused too: this runs once per output plane (7k planes per
 * MobileNetV2 image), and a fresh window object and range tuples per plane were measured as ~30 MB
 * of garbage per batch-8 run, which the collector let pile up into hundreds of MB of RSS.
 */
const PADDED_WINDOW: Window2d = {
  channels: 1, inH: 0, inW: 0, kH: 0, kW: 0, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1, padTop: 0, padLeft: 0, outH: 0, outW: 0,
};

/**
 * One output plane: `y[yOff ..] (outH×outW) = bias + Σ w[wOff ..](kH×kW) ⋆ x[xOff ..](inH×inW)`.
 * `g.channels` is ignored (always one plane).
 */
export function convPlaneDirect(
  x: Float32Array, xOff: number, w: Float32Array, wOff: number, bias: number,
  g: Window2d, y: Float32Array, yOff: number,
): void {
  xOff |= 0; wOff |= 0; yOff |= 0;
  // Int-tagged locals (see intWindow in im2col.ts), without allocating a window per plane.
  const inH = g.inH | 0, inW = g.inW | 0, kH = g.kH | 0, kW = g.kW | 0, strideH = g.strideH | 0, strideW = g.strideW | 0;
  const dilationH = g.dilationH | 0, dilationW = g.dilationW | 0, padTop = g.padTop | 0, padLeft = g.padLeft | 0;
  const outH = g.outH | 0, outW = g.outW | 0;
  // Interior: output rows/cols whose whole window lies inside the input.
  const spanH = (kH - 1) * dilationH, spanW = (kW - 1) * dilationW;
  const iy0 = rangeStart(-padTop, strideH, outH), iy1 = rangeEnd(-padTop, strideH, inH - spanH, outH, iy0);
  const ix0 = rangeStart(-padLeft, strideW, outW), ix1 = rangeEnd(-padLeft, strideW, inW - spanW, outW, ix0);
  const ph = (outH - 1) * strideH + spanH + 1, pw = (outW - 1) * strideW + spanW + 1;
  const border = outH * outW - (iy1 - iy0) * (ix1 - ix0);
  if (border > 0 && 2 * border * kH * kW > ph * pw) {
    // Many border pixels (small planes): copy the plane into a zero-padded one so every output
    // runs the unchecked interior loop. Measured 15% faster at 14×14 and 7×7, neutral at 56×56,
    // and 1.5× slower for a stride-2 112×112 plane (a big copy for few border pixels): hence the
    // cost test (a bounds-checked tap costs about two copies).
    if (paddedScratch.length < ph * pw) paddedScratch = new Float32Array(ph * pw);
    const padded = paddedScratch;
    for (let r = 0; r < ph; r++) {
      const iy = r - padTop, dst = r * pw;
      if (iy < 0 || iy >= inH) { for (let c = 0; c < pw; c++) padded[dst + c] = 0; continue; }
      const src = xOff + iy * inW;
      for (let c = 0; c < pw; c++) {
        const ix = c - padLeft;
        padded[dst + c] = ix >= 0 && ix < inW ? x[src + ix]! : 0;
      }
    }
    const pg = PADDED_WINDOW;
    pg.inH = ph; pg.inW = pw; pg.kH = kH; pg.kW = kW; pg.strideH = strideH; pg.strideW = strideW;
    pg.dilationH = dilationH; pg.dilationW = dilationW; pg.padTop = 0; pg.padLeft = 0; pg.outH = outH; pg.outW = outW;
    convPlaneDirect(padded, 0, w, wOff, bias, pg, y, yOff);
    return;
  }
  for (let oy = 0; oy < outH; oy++) {
    const yRow = yOff + oy * outW;
    const inside = oy >= iy0 && oy < iy1 && ix1 > ix0;
    if (!inside) {
      for (let ox = 0; ox < outW; ox++) y[yRow + ox] = borderPixel(x, xOff, w, wOff, bias, g, oy, ox);
      continue;
    }
    for (let ox = 0; ox < ix0; ox++) y[yRow + ox] = borderPixel(x, xOff, w, wOff, bias, g, oy, ox);
    for (let ox = ix1; ox < outW; ox++) y[yRow + ox] = borderPixel(x, xOff, w, wOff, bias, g, oy, ox);
    const rowBase = xOff + (oy * strideH - padTop) * inW - padLeft;
    if (kH === 3 && kW === 3) {
      const w0 = w[wOff]!, w1 = w[wOff + 1]!, w2 = w[wOff + 2]!;
      const w3 = w[wOff + 3]!, w4 = w[wOff + 4]!, w5 = w[wOff + 5]!;
      const w6 = w[wOff + 6]!, w7 = w[wOff + 7]!, w8 = w[wOff + 8]!;
      const r1 = dilationH * inW, r2 = 2 * r1, d1 = dilationW, d2 = 2 * dilationW;
      if (strideW === 1 && dilationW === 1) {
        // Sliding window: each step loads one new column (3 values) and reuses the other six.
        let s = rowBase + ix0;
        let p0 = x[s]!, p1 = x[s + 1]!, q0 = x[s + r1]!, q1 = x[s + r1 + 1]!, t0 = x[s + r2]!, t1 = x[s + r2 + 1]!;
        for (let ox = ix0; ox < ix1; ox++, s++) {
          const p2 = x[s + 2]!, q2 = x[s + r1 + 2]!, t2 = x[s + r2 + 2]!;
          y[yRow + ox] = bias + w0 * p0 + w1 * p1 + w2 * p2 + w3 * q0 + w4 * q1 + w5 * q2 + w6 * t0 + w7 * t1 + w8 * t2;
          p0 = p1; p1 = p2; q0 = q1; q1 = q2; t0 = t1; t1 = t2;
        }
        continue;
      }
      for (let ox = ix0, s = rowBase + ix0 * strideW; ox < ix1; ox++, s += strideW) {
        y[yRow + ox] = bias +
          w0 * x[s]! + w1 * x[s + d1]! + w2 * x[s + d2]! +
          w3 * x[s + r1]! + w4 * x[s + r1 + d1]! + w5 * x[s + r1 + d2]! +
          w6 * x[s + r2]! + w7 * x[s + r2 + d1]! + w8 * x[s + r2 + d2]!;
      }
    } else {
      for (let ox = ix0, s = rowBase + ix0 * strideW; ox < ix1; ox++, s += strideW) {
        let acc = bias, wi = wOff;
        for (let ki = 0; ki < kH; ki++) {
          const r = s + ki * dilationH * inW;
          for (let kj = 0; kj < kW; kj++) acc += w[wi++]! * x[r + kj * dilationW]!;
        }
        y[yRow + ox] = acc;
      }
    }
  }
}

/** One output pixel with every tap bounds-checked (the image border). */
function borderPixel(
  x: Float32Array, xOff: number, w: Float32Array, wOff: number, bias: number,
  g: Window2d, oy: number, ox: number,
): number {
  let acc = bias;
  for (let ki = 0; ki < g.kH; ki++) {
    const iy = oy * g.strideH - g.padTop + ki * g.dilationH;
    if (iy < 0 || iy >= g.inH) continue;
    for (let kj = 0; kj < g.kW; kj++) {
      const ix = ox * g.strideW - g.padLeft + kj * g.dilationW;
      if (ix < 0 || ix >= g.inW) continue;
      acc += w[wOff + ki * g.kW + kj]! * x[xOff + iy * g.inW + ix]!;
    }
  }
  return acc;
}
