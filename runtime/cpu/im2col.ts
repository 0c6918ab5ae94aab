/**
 * im2col / col2im for 2-D convolution on float32 NCHW data. A convolution becomes one GEMM:
 * `Y[M×P] = W[M×K]·col[K×P]` with K = C·kh·kw rows (c, ki, kj) and P = oh·ow columns (oy, ox).
 * Loops compute the valid output range of each row analytically, so the copy loops carry no
 * bounds checks and padding is written as zero fills.
 * @module
 */

/** 2-D window geometry in the order the loops use it. */
export interface Window2d {
  channels: number;
  inH: number; inW: number;
  kH: number; kW: number;
  strideH: number; strideW: number;
  dilationH: number; dilationW: number;
  padTop: number; padLeft: number;
  outH: number; outW: number;
}

/**
 * The window with every field int32-tagged: values computed as doubles (quotients, int64
 * attributes) otherwise make JavaScriptCore recompile the loops for doubles (see cpu/sgemm.ts).
 */
export function intWindow(g: Window2d): Window2d {
  return {
    channels: g.channels | 0, inH: g.inH | 0, inW: g.inW | 0, kH: g.kH | 0, kW: g.kW | 0,
    strideH: g.strideH | 0, strideW: g.strideW | 0, dilationH: g.dilationH | 0, dilationW: g.dilationW | 0,
    padTop: g.padTop | 0, padLeft: g.padLeft | 0, outH: g.outH | 0, outW: g.outW | 0,
  };
}

/** First output index o with `o·stride + offset ≥ 0`, and one past the last with `o·stride + offset < size`, clamped to [0, out]. */
export function validRange(offset: number, stride: number, size: number, out: number): [number, number] {
  const lo = offset >= 0 ? 0 : Math.ceil(-offset / stride);
  const hi = size - offset <= 0 ? 0 : Math.ceil((size - offset) / stride);
  const a = Math.min(lo, out), b = Math.min(Math.max(hi, a), out);
  return [a, b];
}

/**
 * Unfold `x[xOff ..]` (channels × inH × inW) into `col` (channels·kH·kW rows × outH·outW columns,
 * row-major). `col` must hold at least that many floats.
 */
export function im2col(x: Float32Array, xOff: number, g: Window2d, col: Float32Array): void {
  const { channels, inH, inW, kH, kW, strideH, strideW, dilationH, dilationW, padTop, padLeft, outH, outW } = intWindow(g);
  xOff |= 0;
  const planeIn = inH * inW, p = outH * outW;
  let row = 0;
  for (let c = 0; c < channels; c++) {
    const plane = xOff + c * planeIn;
    for (let ki = 0; ki < kH; ki++) {
      const offY = ki * dilationH - padTop;
      const oy0 = rangeStart(offY, strideH, outH), oy1 = rangeEnd(offY, strideH, inH, outH, oy0);
      for (let kj = 0; kj < kW; kj++, row += p) {
        const offX = kj * dilationW - padLeft;
        const ox0 = rangeStart(offX, strideW, outW), ox1 = rangeEnd(offX, strideW, inW, outW, ox0);
        // Whole padded rows are long: fill() pays off. Row edges are a few elements: plain loops
        // (a native fill call per image row costs more than the copy itself).
        if (oy0 > 0) col.fill(0, row, row + oy0 * outW);
        if (oy1 < outH) col.fill(0, row + oy1 * outW, row + p);
        for (let oy = oy0; oy < oy1; oy++) {
          const dst = row + oy * outW;
          const src = plane + (oy * strideH + offY) * inW + offX;
          for (let ox = 0; ox < ox0; ox++) col[dst + ox] = 0;
          for (let ox = ox1; ox < outW; ox++) col[dst + ox] = 0;
          if (strideW === 1) {
            for (let ox = ox0; ox < ox1; ox++) col[dst + ox] = x[src + ox]!;
          } else {
            for (let ox = ox0, s = src + ox0 * strideW; ox < ox1; ox++, s += strideW) col[dst + ox] = x[s]!;
          }
        }
      }
    }
  }
}

/** First output index o ≥ 0 with `o·stride + offset ≥ 0`, at most `out` (validRange without the tuple, so per-plane callers allocate nothing). */
export function rangeStart(offset: number, stride: number, out: number): number {
  return offset >= 0 ? 0 : Math.min(out, Math.ceil(-offset / stride));
}

/** One past the last output index with `o·stride + offset < size`, within [start, out]. */
export function rangeEnd(offset: number, stride: number, size: number, out: number, start: number): number {
  return size - offset <= 0 ? start : Math.max(start, Math.min(out, Math.ceil((size - offset) / stride)));
}

/**
 * Fold `col` (channels·kH·kW × outH·outW) back onto `y[yOff ..]` (channels × inH × inW) by adding:
 * the adjoint of im2col, which is what ConvTranspose (and a Conv backward pass) needs.
 */
export function col2imAdd(col: Float32Array, g: Window2d, y: Float32Array, yOff: number): void {
  const { channels, inH, inW, kH, kW, strideH, strideW, dilationH, dilationW, padTop, padLeft, outH, outW } = intWindow(g);
  yOff |= 0;
  const planeIn = inH * inW, p = outH * outW;
  let row = 0;
  for (let c = 0; c < channels; c++) {
    const plane = yOff + c * planeIn;
    for (let ki = 0; ki < kH; ki++) {
      const offY = ki * dilationH - padTop;
      const oy0 = rangeStart(offY, strideH, outH), oy1 = rangeEnd(offY, strideH, inH, outH, oy0);
      for (let kj = 0; kj < kW; kj++, row += p) {
        const offX = kj * dilationW - padLeft;
        const ox0 = rangeStart(offX, strideW, outW), ox1 = rangeEnd(offX, strideW, inW, outW, ox0);
        for (let oy = oy0; oy < oy1; oy++) {
          const src = row + oy * outW;
          const dst = plane + (oy * strideH + offY) * inW + offX;
          for (let ox = ox0, d = dst + ox0 * strideW; ox < ox1; ox++, d += strideW) y[d] += col[src + ox]!;
        }
      }
    }
  }
}
