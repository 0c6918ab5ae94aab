/**
 * MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool. Window shape logic is Conv's
 * (`resolvePads`, `windowOutputSize` from conv.ts) plus ceil_mode; `poolGeometry` is exported for
 * the planner and a backward pass. `maxPoolReference` / `averagePoolReference` are N-d plain loops
 * and the definition. The registered kernels run 2-D inputs through a loop with per-axis window
 * bounds computed once per call (which also fills MaxPool's Indices, only when the node declares
 * them: `ctx.outputCount`), 2×2/3×3 MaxPool without Indices through an unrolled loop, and other
 * ranks through the reference.
 * Opset history: MaxPool 8 added storage_order and Indices, 10 ceil_mode and dilations, 12 int8/uint8;
 * AveragePool 7 added count_include_pad, 10 ceil_mode, 19 dilations.
 * @module
 */
import type { Tensor } from "../../format/mod.ts";
import { sizeOf } from "../../format/mod.ts";
import { Attrs, type Backward, f32Of, freshAlloc, type GradOp, KernelError, type Kernel, type OpVersion, withGrad, f32Tensor } from "./types.ts";
import { checkedElements, MAX_WINDOW_OUTPUT_ELEMENTS, readAutoPad, resolvePads, spatialAttr, unravel, windowOutputSize } from "./conv.ts";

type PoolArray = Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array;

/** Resolved pooling window over X `[N, C, D1..Dk]`. */
export interface PoolGeometry {
  batch: number;
  channels: number;
  inSpatial: number[];
  outSpatial: number[];
  kernel: number[];
  strides: number[];
  dilations: number[];
  /** `[begin_0 .., end_0 ..]` */
  pads: number[];
}

/** What an opset version of a pooling op accepts beyond kernel_shape/strides/pads/auto_pad. */
export interface PoolFeatures {
  ceilMode: boolean;
  dilations: boolean;
}

/**
 * Pooling geometry. `kernel_shape` is required. Attributes the opset version does not define must
 * keep their defaults (a non-default value is an error, not silently ignored).
 */
export function poolGeometry(xDims: readonly number[], attrs: Attrs, features: PoolFeatures = { ceilMode: true, dilations: true }): PoolGeometry {
  const k = xDims.length - 2;
  if (k < 1) throw new KernelError(`${attrs.opType}: X [${xDims}] must be [N, C, spatial...]`);
  const kernel = attrs.ints("kernel_shape");
  if (kernel.length !== k) throw new KernelError(`${attrs.opType}: kernel_shape [${kernel}] does not fit X [${xDims}]`);
  const strides = spatialAttr(attrs, "strides", k, 1);
  const dilations = spatialAttr(attrs, "dilations", k, 1);
  const ceilMode = attrs.int("ceil_mode", 0) !== 0;
  if (ceilMode && !features.ceilMode) throw new KernelError(`${attrs.opType}: ceil_mode needs a newer opset`);
  if (!features.dilations && dilations.some((d) => d !== 1)) throw new KernelError(`${attrs.opType}: dilations need a newer opset`);
  const inSpatial = xDims.slice(2);
  const autoPad = readAutoPad(attrs);
  const pads = resolvePads(inSpatial, kernel, strides, dilations, autoPad, attrs.has("pads") ? attrs.ints("pads") : undefined);
  const outSpatial = inSpatial.map((n, d) =>
    autoPad === "SAME_UPPER" || autoPad === "SAME_LOWER"
      ? Math.ceil(n / strides[d]!)
      : windowOutputSize(n, kernel[d]!, strides[d]!, dilations[d]!, pads[d]!, pads[d + k]!, ceilMode)
  );
  checkedElements([xDims[0]!, xDims[1]!, ...outSpatial], MAX_WINDOW_OUTPUT_ELEMENTS, `${attrs.opType} output`);
  // int32-tagged numbers keep the JIT's index arithmetic in integers (see conv.ts intGeometry).
  const ints = (v: number[]) => v.map((x) => x | 0);
  return {
    batch: xDims[0]! | 0, channels: xDims[1]! | 0, inSpatial: ints(inSpatial), outSpatial: ints(outSpatial),
    kernel: ints(kernel), strides: ints(strides), dilations: ints(dilations), pads: ints(pads),
  };
}

/** Output dims of a pooling op: `[N, C, out_1 .. out_k]`. */
export function poolOutputShape(xDims: readonly number[], attrs: Attrs): number[] {
  const g = poolGeometry(xDims, attrs);
  return [g.batch, g.channels, ...g.outSpatial];
}

function poolData(t: Tensor | undefined, op: string, floatOnly: boolean): PoolArray {
  if (!t) throw new KernelError(`${op}: X is required`);
  const d = t.data;
  if (d instanceof Float32Array || d instanceof Float64Array) return d;
  if (!floatOnly && (d instanceof Int8Array || d instanceof Uint8Array || d instanceof Int16Array ||
    d instanceof Uint16Array || d instanceof Int32Array || d instanceof Uint32Array) && t.dtype !== "float16") return d;
  throw new KernelError(`${op}: unsupported dtype ${t.dtype}`);
}

function like(d: PoolArray, n: number): PoolArray {
  return new (d.constructor as new (n: number) => PoolArray)(n);
}

/**
 * Visit every window of every (n, c) plane: `visit(plane, outFlat, taps)` where `taps` lists the
 * in-bounds input offsets (within the plane) of the window and `padded` counts window positions
 * inside input + pads (the count_include_pad divisor). Shared by both N-d references.
 */
function forEachWindow(g: PoolGeometry, visit: (plane: number, outFlat: number, taps: number[], padded: number) => void): void {
  const k = g.inSpatial.length;
  const outSize = sizeOf(g.outSpatial), kSize = sizeOf(g.kernel);
  const inStrides = new Array<number>(k);
  for (let d = k - 1, acc = 1; d >= 0; d--) { inStrides[d] = acc; acc *= g.inSpatial[d]!; }
  const o = new Array<number>(k), q = new Array<number>(k), taps: number[] = [];
  for (let plane = 0; plane < g.batch * g.channels; plane++) {
    for (let op = 0; op < outSize; op++) {
      unravel(op, g.outSpatial, o);
      taps.length = 0;
      let padded = 0;
      for (let kp = 0; kp < kSize; kp++) {
        unravel(kp, g.kernel, q);
        let off = 0, inside = true, inPadded = true;
        for (let d = 0; d < k; d++) {
          const i = o[d]! * g.strides[d]! - g.pads[d]! + q[d]! * g.dilations[d]!;
          if (i < -g.pads[d]! || i >= g.inSpatial[d]! + g.pads[d + k]!) inPadded = false;
          if (i < 0 || i >= g.inSpatial[d]!) inside = false;
          off += i * inStrides[d]!;
        }
        if (inPadded) padded++;
        if (inside) taps.push(off);
      }
      visit(plane, op, taps, padded);
    }
  }
}

/**
 * MaxPool, the definition (N-d): the max over the window's in-bounds elements (padding never wins).
 * The optional second output holds each max's flat index into X, row-major within the plane, or
 * column-major with storage_order 1 (the first maximal element wins ties).
 */
export function maxPoolReferenceWith(features: PoolFeatures): Kernel {
  return (inputs, attrs) => {
    const xd = poolData(inputs[0], "MaxPool", false), x = inputs[0]!;
    const g = poolGeometry(x.dims, attrs, features);
    const columnMajor = attrs.int("storage_order", 0) === 1;
    const inSize = sizeOf(g.inSpatial), outSize = sizeOf(g.outSpatial);
    const y = like(xd, g.batch * g.channels * outSize);
    const indices = new BigInt64Array(y.length);
    const k = g.inSpatial.length, coord = new Array<number>(k);
    forEachWindow(g, (plane, op, taps) => {
      let best = -Infinity, at = -1;
      for (const t of taps) {
        const v = xd[plane * inSize + t]!;
        if (v > best || at < 0) { best = v; at = t; }
      }
      y[plane * outSize + op] = at < 0 ? 0 : best;
      let idx = at;
      if (columnMajor && at >= 0) {
        unravel(at, g.inSpatial, coord);
        idx = 0;
        for (let d = k - 1; d >= 0; d--) idx = idx * g.inSpatial[d]! + coord[d]!;
      }
      indices[plane * outSize + op] = BigInt(plane * inSize + Math.max(idx, 0));
    });
    const dims = [g.batch, g.channels, ...g.outSpatial];
    return [{ dtype: x.dtype, dims, data: y }, { dtype: "int64", dims, data: indices }];
  };
}

/** MaxPool reference with every feature of the latest opset. */
export const maxPoolReference: Kernel = maxPoolReferenceWith({ ceilMode: true, dilations: true });

/**
 * AveragePool, the definition (N-d): the window's in-bounds sum divided by the number of
 * in-bounds elements, or with count_include_pad by the positions inside input + pads.
 */
export function averagePoolReferenceWith(features: PoolFeatures & { countIncludePad: boolean }): Kernel {
  return (inputs, attrs) => {
    const xd = poolData(inputs[0], "AveragePool", true), x = inputs[0]!;
    const g = poolGeometry(x.dims, attrs, features);
    const includePad = attrs.int("count_include_pad", 0) !== 0;
    if (includePad && !features.countIncludePad) throw new KernelError("AveragePool: count_include_pad needs opset 7");
    const inSize = sizeOf(g.inSpatial), outSize = sizeOf(g.outSpatial);
    const y = like(xd, g.batch * g.channels * outSize);
    forEachWindow(g, (plane, op, taps, padded) => {
      let sum = 0;
      for (const t of taps) sum += xd[plane * inSize + t]!;
      const count = includePad ? padded : taps.length;
      y[plane * outSize + op] = count === 0 ? 0 : sum / count;
    });
    return [{ dtype: x.dtype, dims: [g.batch, g.channels, ...g.outSpatial], data: y }];
  };
}

/** AveragePool reference with every feature of the latest opset. */
export const averagePoolReference: Kernel = averagePoolReferenceWith({ ceilMode: true, dilations: true, countIncludePad: true });

/** Per output index along one axis: first and one-past-last in-bounds tap, and the padded tap count. */
interface AxisWindows {
  first: Int32Array;
  end: Int32Array;
  padded: Int32Array;
}

/** Window bounds along axis `d` of a pooling geometry (taps are indices q of the kernel). */
function axisWindows(g: PoolGeometry, d: number): AxisWindows {
  const k = g.inSpatial.length, n = g.outSpatial[d]!, s = g.strides[d]!, dil = g.dilations[d]!, kk = g.kernel[d]!;
  const size = g.inSpatial[d]!, pb = g.pads[d]!, pe = g.pads[d + k]!;
  const first = new Int32Array(n), end = new Int32Array(n), padded = new Int32Array(n);
  for (let o = 0; o < n; o++) {
    const start = o * s - pb;
    let f = kk, e = 0, p = 0;
    for (let q = 0; q < kk; q++) {
      const i = start + q * dil;
      if (i >= 0 && i < size) { if (f === kk) f = q; e = q + 1; }
      if (i >= -pb && i < size + pe) p++;
    }
    first[o] = f === kk ? 0 : f; end[o] = f === kk ? 0 : e; padded[o] = p;
  }
  return { first, end, padded };
}

/** Little-endian hosts (every target) let int64 indices below 2^31 be written as two int32 words. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * 2-D pooling with window bounds per axis hoisted out of the pixel loop. For "max" it also fills
 * `indices` (flat X index of each max, as in the reference) when given.
 */
function pool2d(
  xd: PoolArray, g: PoolGeometry, mode: "max" | "avg" | "avg-pad",
  indices: BigInt64Array | undefined, columnMajor: boolean,
): PoolArray {
  const [inH, inW] = g.inSpatial as [number, number];
  const [outH, outW] = g.outSpatial as [number, number];
  const [sh, sw] = g.strides as [number, number];
  const [dh, dw] = g.dilations as [number, number];
  const [pt, pl] = g.pads as [number, number];
  const rows = axisWindows(g, 0), cols = axisWindows(g, 1);
  const y = like(xd, g.batch * g.channels * outH * outW);
  const idx32 = indices ? new Int32Array(indices.buffer, indices.byteOffset, indices.length * 2) : undefined;
  for (let plane = 0, yi = 0; plane < g.batch * g.channels; plane++) {
    const xBase = plane * inH * inW;
    for (let oy = 0; oy < outH; oy++) {
      const q0 = rows.first[oy]!, q1 = rows.end[oy]!, rowStart = xBase + (oy * sh - pt) * inW;
      for (let ox = 0; ox < outW; ox++, yi++) {
        const r0 = cols.first[ox]!, r1 = cols.end[ox]!, colStart = ox * sw - pl;
        if (mode === "max") {
          let best = -Infinity, at = -1;
          for (let q = q0; q < q1; q++) {
            const r = rowStart + q * dh * inW + colStart;
            for (let c = r0; c < r1; c++) {
              const v = xd[r + c * dw]!;
              if (v > best || at < 0) { best = v; at = r + c * dw; }
            }
          }
          y[yi] = at < 0 ? 0 : best;
          if (idx32) {
            let flat = Math.max(at, xBase);
            if (columnMajor) { const rel = flat - xBase; flat = xBase + (rel % inW) * inH + Math.floor(rel / inW); }
            idx32[2 * yi] = flat; idx32[2 * yi + 1] = 0;
          }
        } else {
          let sum = 0;
          for (let q = q0; q < q1; q++) {
            const r = rowStart + q * dh * inW + colStart;
            for (let c = r0; c < r1; c++) sum += xd[r + c * dw]!;
          }
          const count = mode === "avg" ? (q1 - q0) * (r1 - r0) : rows.padded[oy]! * cols.padded[ox]!;
          y[yi] = count === 0 ? 0 : sum / count;
        }
      }
    }
  }
  return y;
}

/**
 * Max pooling for 2×2 and 3×3 windows (dilation 1) without Indices: interior windows are
 * unrolled with ternary maxima (no data-dependent branches), border windows go through the
 * per-axis bounds. The ResNet stem pool and VGG's 2×2/2 pools take this path.
 */
function maxPool2dSmall(xd: PoolArray, g: PoolGeometry, out?: PoolArray): PoolArray {
  const [inH, inW] = g.inSpatial as [number, number];
  const [outH, outW] = g.outSpatial as [number, number];
  const [sh, sw] = g.strides as [number, number];
  const [pt, pl] = g.pads as [number, number];
  const k = g.kernel[0]!;
  const rows = axisWindows(g, 0), cols = axisWindows(g, 1);
  // Every output is written below, so a recycled buffer (ctx.alloc) needs no zeroing.
  const y = out ?? like(xd, g.batch * g.channels * outH * outW);
  // Interior outputs: the whole window lies inside the input.
  const oy0 = Math.min(outH, Math.ceil(pt / sh)), oy1 = Math.max(oy0, Math.min(outH, Math.floor((inH - k + pt) / sh) + 1));
  const ox0 = Math.min(outW, Math.ceil(pl / sw)), ox1 = Math.max(ox0, Math.min(outW, Math.floor((inW - k + pl) / sw) + 1));
  for (let plane = 0; plane < g.batch * g.channels; plane++) {
    const xBase = plane * inH * inW, yBase = plane * outH * outW;
    for (let oy = 0; oy < outH; oy++) {
      const rowStart = xBase + (oy * sh - pt) * inW, yRow = yBase + oy * outW;
      const interiorRow = oy >= oy0 && oy < oy1;
      for (let ox = 0; ox < outW; ox++) {
        if (interiorRow && ox === ox0 && ox1 > ox0) {
          let s = rowStart + ox0 * sw - pl;
          if (k === 3) {
            for (let o = ox0; o < ox1; o++, s += sw) {
              const r1 = s + inW, r2 = r1 + inW;
              let m = xd[s]!, v = xd[s + 1]!; m = v > m ? v : m; v = xd[s + 2]!; m = v > m ? v : m;
              v = xd[r1]!; m = v > m ? v : m; v = xd[r1 + 1]!; m = v > m ? v : m; v = xd[r1 + 2]!; m = v > m ? v : m;
              v = xd[r2]!; m = v > m ? v : m; v = xd[r2 + 1]!; m = v > m ? v : m; v = xd[r2 + 2]!; m = v > m ? v : m;
              y[yRow + o] = m;
            }
          } else {
            for (let o = ox0; o < ox1; o++, s += sw) {
              const r1 = s + inW;
              let m = xd[s]!, v = xd[s + 1]!; m = v > m ? v : m;
              v = xd[r1]!; m = v > m ? v : m; v = xd[r1 + 1]!; m = v > m ? v : m;
              y[yRow + o] = m;
            }
          }
          ox = ox1 - 1;
          continue;
        }
        const q0 = rows.first[oy]!, q1 = rows.end[oy]!, r0 = cols.first[ox]!, r1 = cols.end[ox]!;
        let best = -Infinity, any = false;
        for (let q = q0; q < q1; q++) {
          const r = rowStart + q * inW + ox * sw - pl;
          for (let c = r0; c < r1; c++) { const v = xd[r + c]!; if (!any || v > best) { best = v; any = true; } }
        }
        y[yRow + ox] = any ? best : 0;
      }
    }
  }
  return y;
}

function maxPoolWith(features: PoolFeatures): Kernel {
  const reference = maxPoolReferenceWith(features);
  return (inputs, attrs, ctx) => {
    const x = inputs[0];
    const xd = poolData(x, "MaxPool", false);
    const fast = x!.dims.length === 4 && LITTLE_ENDIAN && x!.data.length < 2 ** 31;
    if (!fast) return reference(inputs, attrs, ctx);
    const g = poolGeometry(x!.dims, attrs, features);
    const dims = [g.batch, g.channels, ...g.outSpatial];
    // Indices only when the node declares them (an unknown count means: fill them, one store per output).
    const wantIndices = ctx.outputCount === undefined || ctx.outputCount > 1;
    const indices = wantIndices ? new BigInt64Array(sizeOf(dims)) : undefined;
    const small = g.kernel[0] === g.kernel[1] && (g.kernel[0] === 2 || g.kernel[0] === 3) && g.dilations.every((d) => d === 1);
    const buffer = !indices && small && xd instanceof Float32Array && ctx.alloc ? ctx.alloc(sizeOf(dims)) : undefined;
    const y = !indices && small ? maxPool2dSmall(xd, g, buffer) : pool2d(xd, g, "max", indices, attrs.int("storage_order", 0) === 1);
    const out: Tensor[] = [{ dtype: x!.dtype, dims, data: y }];
    if (indices) out.push({ dtype: "int64", dims, data: indices });
    return out;
  };
}

function averagePoolWith(features: PoolFeatures & { countIncludePad: boolean }): Kernel {
  const reference = averagePoolReferenceWith(features);
  return (inputs, attrs, ctx) => {
    const x = inputs[0];
    if (!x || x.dims.length !== 4 || !(x.data instanceof Float32Array || x.data instanceof Float64Array)) return reference(inputs, attrs, ctx);
    const g = poolGeometry(x.dims, attrs, features);
    const includePad = attrs.int("count_include_pad", 0) !== 0;
    if (includePad && !features.countIncludePad) throw new KernelError("AveragePool: count_include_pad needs opset 7");
    return [{ dtype: x.dtype, dims: [g.batch, g.channels, ...g.outSpatial], data: pool2d(x.data, g, includePad ? "avg-pad" : "avg", undefined, false) }];
  };
}

/** Global pooling: reduce every (n, c) plane to one value. */
function globalPool(op: string, reduce: "max" | "avg"): Kernel {
  return (inputs) => {
    const xd = poolData(inputs[0], op, reduce === "avg"), x = inputs[0]!;
    if (x.dims.length < 3) throw new KernelError(`${op}: X [${x.dims}] must be [N, C, spatial...]`);
    const planes = (x.dims[0]! * x.dims[1]!) | 0, size = sizeOf(x.dims.slice(2)) | 0;
    const y = like(xd, planes);
    for (let p = 0; p < planes; p++) {
      const base = p * size;
      if (reduce === "max") {
        let best = -Infinity;
        for (let i = 0; i < size; i++) { const v = xd[base + i]!; if (v > best) best = v; }
        y[p] = size === 0 ? 0 : best;
      } else {
        let sum = 0;
        for (let i = 0; i < size; i++) sum += xd[base + i]!;
        y[p] = size === 0 ? 0 : sum / size;
      }
    }
    return [{ dtype: x.dtype, dims: [x.dims[0]!, x.dims[1]!, ...x.dims.slice(2).map(() => 1)], data: y }];
  };
}

/** GlobalAveragePool: the mean of each (n, c) plane, spatial dims kept as 1. */
export const globalAveragePool: Kernel = globalPool("GlobalAveragePool", "avg");
/** GlobalMaxPool: the max of each (n, c) plane, spatial dims kept as 1. */
export const globalMaxPool: Kernel = globalPool("GlobalMaxPool", "max");
/** MaxPool as registered for the latest opset. */
export const maxPool: Kernel = maxPoolWith({ ceilMode: true, dilations: true });
/** AveragePool as registered for the latest opset. */
export const averagePool: Kernel = averagePoolWith({ ceilMode: true, dilations: true, countIncludePad: true });

/** Pooling ops by ONNX op type, versioned where an attribute appeared. */

/** Geometry of a 2-D pooling node, or an error naming the op. */
function trainPool2d(x: Tensor, attrs: Attrs) {
  const g = poolGeometry(x.dims, attrs);
  if (g.inSpatial.length !== 2) throw new KernelError(`${attrs.opType}: training supports 2-D pooling only, X is [${x.dims}]`);
  return g;
}

/** MaxPool (2-D): remembers each output's argmax; backward routes dY there (ties: first in the window). */
const maxPoolGrad: GradOp = ([x], attrs, alloc = freshAlloc) => {
  const xd = f32Of(x, "MaxPool X");
  const g = trainPool2d(x!, attrs);
  const [inH, inW] = g.inSpatial as [number, number], [outH, outW] = g.outSpatial as [number, number];
  const [kH, kW] = g.kernel as [number, number], [sH, sW] = g.strides as [number, number], [dH, dW] = g.dilations as [number, number];
  const planes = g.batch * g.channels, planeIn = inH * inW, planeOut = outH * outW;
  const y = alloc(planes * planeOut), arg = new Int32Array(y.length).fill(-1);
  for (let c = 0; c < planes; c++) {
    for (let oy = 0; oy < outH; oy++) {
      for (let ox = 0; ox < outW; ox++) {
        let best = -Infinity, at = -1;
        for (let i = 0; i < kH; i++) {
          const iy = oy * sH - g.pads[0]! + i * dH;
          if (iy < 0 || iy >= inH) continue;
          for (let j = 0; j < kW; j++) {
            const ix = ox * sW - g.pads[1]! + j * dW;
            if (ix < 0 || ix >= inW) continue;
            const idx = c * planeIn + iy * inW + ix;
            if (xd[idx]! > best || at < 0) { best = xd[idx]!; at = idx; }
          }
        }
        const o = c * planeOut + oy * outW + ox;
        y[o] = best;
        arg[o] = at;
      }
    }
  }
  const backward: Backward = ([dy], needs) => {
    if (!dy || !needs[0]) return [];
    const dx = alloc(xd.length);
    for (let o = 0; o < dy.length; o++) if (arg[o]! >= 0) dx[arg[o]!] += dy[o]!;
    return [dx];
  };
  return { outputs: [f32Tensor([g.batch, g.channels, outH, outW], y)], backward };
};

/**
 * AveragePool (2-D, no dilation): each output is the mean of its window clipped to the input;
 * with count_include_pad the divisor counts the padding too (not the ceil_mode overhang, as
 * onnxruntime). Backward spreads dY / divisor over the same window.
 */
const averagePoolGrad: GradOp = ([x], attrs, alloc = freshAlloc) => {
  const xd = f32Of(x, "AveragePool X");
  const g = trainPool2d(x!, attrs);
  if (g.dilations.some((d) => d !== 1)) throw new KernelError("AveragePool: training supports dilation 1 only");
  const includePad = attrs.int("count_include_pad", 0) !== 0;
  const [inH, inW] = g.inSpatial as [number, number], [outH, outW] = g.outSpatial as [number, number];
  const planes = g.batch * g.channels, planeIn = inH * inW, planeOut = outH * outW;
  // Per output row/column: the clipped window [lo, hi) and its length for the divisor.
  const windows = (out: number, stride: number, kernel: number, pad: number, padEnd: number, size: number) =>
    Array.from({ length: out }, (_, o) => {
      const start = o * stride - pad, end = Math.min(start + kernel, size + padEnd);
      const lo = Math.max(start, 0), hi = Math.min(end, size);
      return { lo, hi, count: includePad ? end - start : hi - lo };
    });
  const rows = windows(outH, g.strides[0]!, g.kernel[0]!, g.pads[0]!, g.pads[2]!, inH);
  const cols = windows(outW, g.strides[1]!, g.kernel[1]!, g.pads[1]!, g.pads[3]!, inW);
  const y = alloc(planes * planeOut);
  for (let c = 0; c < planes; c++) {
    for (let oy = 0; oy < outH; oy++) {
      const r = rows[oy]!;
      for (let ox = 0; ox < outW; ox++) {
        const q = cols[ox]!;
        let s = 0;
        for (let iy = r.lo; iy < r.hi; iy++) for (let ix = q.lo; ix < q.hi; ix++) s += xd[c * planeIn + iy * inW + ix]!;
        y[c * planeOut + oy * outW + ox] = s / (r.count * q.count);
      }
    }
  }
  const backward: Backward = ([dy], needs) => {
    if (!dy || !needs[0]) return [];
    const dx = alloc(xd.length);
    for (let c = 0; c < planes; c++) {
      for (let oy = 0; oy < outH; oy++) {
        const r = rows[oy]!;
        for (let ox = 0; ox < outW; ox++) {
          const q = cols[ox]!;
          const v = dy[c * planeOut + oy * outW + ox]! / (r.count * q.count);
          for (let iy = r.lo; iy < r.hi; iy++) for (let ix = q.lo; ix < q.hi; ix++) dx[c * planeIn + iy * inW + ix] += v;
        }
      }
    }
    return [dx];
  };
  return { outputs: [f32Tensor([g.batch, g.channels, outH, outW], y)], backward };
};

const globalAveragePoolGrad: GradOp = ([x], _attrs, alloc = freshAlloc) => {
  const xd = f32Of(x, "GlobalAveragePool X");
  const [batch, channels] = x!.dims as [number, number];
  const plane = sizeOf(x!.dims.slice(2)), planes = batch * channels;
  const y = alloc(planes);
  for (let c = 0; c < planes; c++) {
    let s = 0;
    for (let i = 0; i < plane; i++) s += xd[c * plane + i]!;
    y[c] = s / plane;
  }
  const backward: Backward = ([dy], needs) => {
    if (!dy || !needs[0]) return [];
    const dx = alloc(xd.length);
    for (let c = 0; c < planes; c++) dx.fill(dy[c]! / plane, c * plane, (c + 1) * plane);
    return [dx];
  };
  return { outputs: [f32Tensor([batch, channels, ...x!.dims.slice(2).map(() => 1)], y)], backward };
};

export const POOL_OPS: Record<string, OpVersion[]> = {
  MaxPool: withGrad([
    { since: 1, kernel: maxPoolWith({ ceilMode: false, dilations: false }) },
    { since: 10, kernel: maxPool },
  ], maxPoolGrad),
  AveragePool: withGrad([
    { since: 1, kernel: averagePoolWith({ ceilMode: false, dilations: false, countIncludePad: false }) },
    { since: 7, kernel: averagePoolWith({ ceilMode: false, dilations: false, countIncludePad: true }) },
    { since: 10, kernel: averagePoolWith({ ceilMode: true, dilations: false, countIncludePad: true }) },
    { since: 19, kernel: averagePool },
  ], averagePoolGrad),
  GlobalAveragePool: withGrad([{ since: 1, kernel: globalAveragePool }], globalAveragePoolGrad),
  GlobalMaxPool: [{ since: 1, kernel: globalMaxPool }],
};
