/**
 * Forward + backward of the ops a CNN trains through (LeNet-5, ResNet-20, MobileNet-style):
 * Conv, Gemm, MatMul, Relu, Clip, Add, MaxPool, AveragePool, GlobalAveragePool, Flatten,
 * Reshape, Identity. One table keyed by ONNX op type, like ops/registry.ts. Each op runs its
 * forward on float32 and returns its outputs with a `backward` closure holding what the gradient
 * needs (pooling argmaxes, the inputs); Conv recomputes its im2col columns in backward instead of
 * keeping them (a batch of 256 would hold ~100 MB of columns per layer). Attribute and shape
 * logic is the inference kernels' (convGeometry, poolGeometry, gemmShape), so training and
 * inference read a node identically.
 * @module
 */
import type { Tensor } from "../../format/mod.ts";
import { sizeOf } from "../../format/mod.ts";
import { col2imAdd, im2col, type Window2d } from "../cpu/im2col.ts";
import { type MatrixView, matrixView, sgemm } from "../cpu/sgemm.ts";
import { conv2dFast, convGeometry, convPath, isWinogradShape } from "../ops/conv.ts";
import { broadcastShape, broadcastOffsets, intList, numbers } from "../ops/elementwise.ts";
import { gemmShape } from "../ops/gemm.ts";
import { poolGeometry } from "../ops/pool.ts";
import { type Attrs, KernelError } from "../ops/types.ts";

/**
 * Gradients of an op's inputs from the gradients of its outputs (`undefined`: the output does
 * not reach the loss). Computes only the inputs flagged in `needs`; never mutates `dOutputs`.
 */
export type Backward = (dOutputs: readonly (Float32Array | undefined)[], needs: readonly boolean[]) => (Float32Array | undefined)[];

/** An op's forward result: its outputs and the closure that differentiates them. */
export interface GradResult {
  outputs: Tensor[];
  backward: Backward;
}

/**
 * Buffers for an op's outputs and gradients: zero-filled float32 arrays of the given length. The
 * training graph hands each node the same buffers every step (train/graph-grad.ts), so a step
 * allocates nothing once the first has run; an op must not keep a buffer past the next step.
 */
export type Alloc = (length: number, zeroed?: boolean) => Float32Array;

/** Fresh zeroed arrays (ops called outside a training graph). `zeroed: false` lets a reused buffer skip the fill (the op writes every element). */
export const freshAlloc: Alloc = (length) => new Float32Array(length);

/** A differentiable op: float32 inputs in node order (`undefined` for an omitted one), attributes, where its buffers come from. */
export type GradOp = (inputs: readonly (Tensor | undefined)[], attrs: Attrs, alloc?: Alloc) => GradResult;

const f32 = (t: Tensor | undefined, what: string): Float32Array => {
  if (!t || !(t.data instanceof Float32Array)) throw new KernelError(`${what} must be a float32 tensor`);
  return t.data;
};
const tensor = (dims: number[], data: Float32Array): Tensor => ({ dtype: "float32", dims, data });
const transposeView = (v: MatrixView): MatrixView => ({ data: v.data, offset: v.offset, rowStride: v.colStride, colStride: v.rowStride });
/** View of `op(X)` (rows × cols) where X is stored row-major as rows × cols, or as cols × rows when `trans`. */
const opView = (data: Float32Array, rows: number, cols: number, trans: boolean): MatrixView =>
  trans ? matrixView(data, 0, rows, true) : matrixView(data, 0, cols, false);

/** Sum `d` (shaped `outDims`) down to `dims` it was broadcast from: the adjoint of broadcasting. */
export function reduceToShape(d: Float32Array, outDims: readonly number[], dims: readonly number[]): Float32Array {
  if (sizeOf(dims) === d.length) return d;
  const off = broadcastOffsets(dims, outDims);
  const r = new Float32Array(sizeOf(dims));
  for (let i = 0; i < d.length; i++) r[off[i]!] += d[i]!;
  return r;
}

/**
 * Conv, 2-D, any group/stride/dilation/padding. Per image and group: `Y_g = W_g·col(X_g) + B`;
 * backward `dW_g += dY_g·col(X_g)ᵀ`, `dX_g = col2im(W_gᵀ·dY_g)`, `dB = Σ dY` (the usual GEMM
 * adjoints; col2imAdd is im2col's adjoint).
 */
const conv: GradOp = (inputs, attrs, alloc = freshAlloc) => {
  const [x, w, b] = inputs;
  const xd = f32(x, "Conv X"), wd = f32(w, "Conv W"), bd = b ? f32(b, "Conv B") : undefined;
  const g = convGeometry(x!.dims, w!.dims, attrs);
  if (g.inSpatial.length !== 2) throw new KernelError(`Conv: training supports 2-D convolutions only, X is [${x!.dims}]`);
  const { batch, inChannels, outChannels, group } = g;
  const cg = inChannels / group, mg = outChannels / group;
  const win: Window2d = {
    channels: cg, inH: g.inSpatial[0]!, inW: g.inSpatial[1]!, kH: g.kernel[0]!, kW: g.kernel[1]!,
    strideH: g.strides[0]!, strideW: g.strides[1]!, dilationH: g.dilations[0]!, dilationW: g.dilations[1]!,
    padTop: g.pads[0]!, padLeft: g.pads[1]!, outH: g.outSpatial[0]!, outW: g.outSpatial[1]!,
  };
  const k = cg * win.kH * win.kW, p = win.outH * win.outW, planeIn = win.inH * win.inW;
  const col = alloc(k * p);
  // Forward through the inference kernels' path choice (Winograd for 3×3/1, CSR for pruned
  // weights, im2col + GEMM otherwise): the same numbers a session computes.
  const path = convPath(g, wd);
  const y = path ? conv2dFast(x!, w!, b, g, path, 1, { alloc: (n) => alloc(n, false) }).data as Float32Array : alloc(batch * outChannels * p, false);
  for (let n = 0; n < batch && !path; n++) {
    for (let gi = 0; gi < group; gi++) {
      im2col(xd, (n * inChannels + gi * cg) * planeIn, win, col);
      sgemm(mg, p, k, 1, matrixView(wd, gi * mg * k, k), matrixView(col, 0, p), y, (n * outChannels + gi * mg) * p, p, false);
    }
    if (bd) {
      for (let m = 0; m < outChannels; m++) {
        const o = (n * outChannels + m) * p, bm = bd[m]!;
        for (let i = 0; i < p; i++) y[o + i] += bm;
      }
    }
  }
  // dX of a 3×3, stride-1, pad-1 conv is the same conv of dY with the filters flipped and in/out
  // swapped (the adjoint of a correlation), so it runs on the forward kernels too.
  const transposedDx = group === 1 && isWinogradShape(g) && g.pads.every((q) => q === 1);
  const backward: Backward = ([dy], needs) => {
    if (!dy) return [];
    const dxGemm = needs[0] && !transposedDx ? alloc(xd.length) : undefined;
    let dx = dxGemm;
    const dw = needs[1] ? alloc(wd.length) : undefined;
    const dcol = dxGemm ? alloc(k * p) : undefined;
    if (needs[0] && transposedDx) {
      const wt = alloc(wd.length, false);
      for (let m = 0; m < outChannels; m++) for (let c = 0; c < inChannels; c++) for (let t = 0; t < 9; t++) wt[((c * outChannels + m) * 9) + 8 - t] = wd[(m * inChannels + c) * 9 + t]!;
      const wT: Tensor = tensor([inChannels, outChannels, 3, 3], wt), dyT: Tensor = tensor([batch, outChannels, win.outH, win.outW], dy);
      const gt = convGeometry(dyT.dims, wT.dims, attrs);
      dx = conv2dFast(dyT, wT, undefined, gt, convPath(gt, wt) ?? "im2col-gemm", 1, { alloc: (n) => alloc(n, false) }).data as Float32Array;
    }
    for (let n = 0; n < batch; n++) {
      for (let gi = 0; gi < group; gi++) {
        const yOff = (n * outChannels + gi * mg) * p, xOff = (n * inChannels + gi * cg) * planeIn;
        const dyView = matrixView(dy, yOff, p);
        if (dw) {
          im2col(xd, xOff, win, col);
          sgemm(mg, k, p, 1, dyView, matrixView(col, 0, p, true), dw, gi * mg * k, k, true);
        }
        if (dxGemm) {
          sgemm(k, p, mg, 1, matrixView(wd, gi * mg * k, k, true), dyView, dcol!, 0, p, false);
          col2imAdd(dcol!, win, dxGemm, xOff);
        }
      }
    }
    let db: Float32Array | undefined;
    if (needs[2] && bd) {
      db = new Float32Array(outChannels);
      for (let n = 0; n < batch; n++) {
        for (let m = 0; m < outChannels; m++) {
          const o = (n * outChannels + m) * p;
          let s = 0;
          for (let i = 0; i < p; i++) s += dy[o + i]!;
          db[m] += s;
        }
      }
    }
    return [dx, dw, db];
  };
  return { outputs: [tensor([batch, outChannels, win.outH, win.outW], y)], backward };
};

/**
 * `Y = alpha·op(A)·op(B) + beta·C`. Backward: `d op(A) = alpha·dY·op(B)ᵀ`, `d op(B) = alpha·op(A)ᵀ·dY`
 * (written transposed when the operand is stored transposed), `dC = beta·dY` summed over C's
 * broadcast axes.
 */
function gemmLike(a: Tensor, b: Tensor, c: Tensor | undefined, s: { m: number; n: number; k: number; transA: boolean; transB: boolean; alpha: number; beta: number }): GradResult {
  const ad = f32(a, "A"), bd = f32(b, "B"), cd = c ? f32(c, "C") : undefined;
  const { m, n, k, transA, transB, alpha, beta } = s;
  const opA = opView(ad, m, k, transA), opB = opView(bd, k, n, transB);
  const y = new Float32Array(m * n);
  if (cd && beta !== 0) {
    const off = broadcastOffsets(c!.dims, [m, n]);
    for (let i = 0; i < y.length; i++) y[i] = beta * cd[off[i]!]!;
  }
  sgemm(m, n, k, alpha, opA, opB, y, 0, n, !!cd && beta !== 0);
  const backward: Backward = ([dy], needs) => {
    if (!dy) return [];
    const dyView = matrixView(dy, 0, n);
    let da: Float32Array | undefined, db: Float32Array | undefined, dc: Float32Array | undefined;
    if (needs[0]) {
      da = new Float32Array(ad.length);
      if (!transA) sgemm(m, k, n, alpha, dyView, transposeView(opB), da, 0, k, false);
      else sgemm(k, m, n, alpha, opB, transposeView(dyView), da, 0, m, false);
    }
    if (needs[1]) {
      db = new Float32Array(bd.length);
      if (!transB) sgemm(k, n, m, alpha, transposeView(opA), dyView, db, 0, n, false);
      else sgemm(n, k, m, alpha, transposeView(dyView), opA, db, 0, k, false);
    }
    if (needs[2] && cd) {
      dc = reduceToShape(dy, [m, n], c!.dims);
      dc = dc === dy ? dy.map((v) => beta * v) : (beta === 1 ? dc : dc.map((v) => beta * v));
    }
    return [da, db, dc];
  };
  return { outputs: [tensor([m, n], y)], backward };
}

const gemm: GradOp = ([a, b, c], attrs) => {
  if (!a || !b) throw new KernelError("Gemm: A and B are required");
  return gemmLike(a, b, c, gemmShape(a.dims, b.dims, attrs));
};

const matMul: GradOp = ([a, b]) => {
  if (!a || !b || a.dims.length !== 2 || b.dims.length !== 2 || a.dims[1] !== b.dims[0]) {
    throw new KernelError(`MatMul: training supports 2-D [m, k]·[k, n] only, got [${a?.dims}]·[${b?.dims}]`);
  }
  return gemmLike(a, b, undefined, { m: a.dims[0]!, n: b.dims[1]!, k: a.dims[1]!, transA: false, transB: false, alpha: 1, beta: 0 });
};

/** An elementwise clamp to [lo, hi]; the gradient passes where lo < x < hi (0 at the kinks, as PyTorch). */
function clamp(x: Tensor, lo: number, hi: number, alloc: Alloc): GradResult {
  const xd = f32(x, "X");
  const y = alloc(xd.length, false);
  for (let i = 0; i < y.length; i++) { const v = xd[i]!; y[i] = v < lo ? lo : v > hi ? hi : v; }
  const backward: Backward = ([dy], needs) => {
    if (!dy || !needs[0]) return [];
    const dx = alloc(dy.length, false);
    for (let i = 0; i < dx.length; i++) { const v = xd[i]!; dx[i] = v > lo && v < hi ? dy[i]! : 0; }
    return [dx];
  };
  return { outputs: [tensor([...x.dims], y)], backward };
}

const relu: GradOp = ([x], _attrs, alloc = freshAlloc) => clamp(x!, 0, Infinity, alloc);

/** Clip: bounds are attributes before opset 11 and optional inputs from 11 on; a node carries one or the other. */
const clip: GradOp = ([x, lo, hi], attrs, alloc = freshAlloc) =>
  clamp(x!, lo ? numbers(lo)[0]! : attrs.float("min", -Infinity), hi ? numbers(hi)[0]! : attrs.float("max", Infinity), alloc);

const add: GradOp = ([a, b], _attrs, alloc = freshAlloc) => {
  const ad = f32(a, "Add A"), bd = f32(b, "Add B");
  const dims = broadcastShape([a!.dims, b!.dims], "Add");
  const y = alloc(sizeOf(dims), false);
  if (ad.length === y.length && bd.length === y.length) {
    for (let i = 0; i < y.length; i++) y[i] = ad[i]! + bd[i]!;
  } else {
    const oa = broadcastOffsets(a!.dims, dims), ob = broadcastOffsets(b!.dims, dims);
    for (let i = 0; i < y.length; i++) y[i] = ad[oa[i]!]! + bd[ob[i]!]!;
  }
  const backward: Backward = ([dy], needs) =>
    dy ? [needs[0] ? reduceToShape(dy, dims, a!.dims) : undefined, needs[1] ? reduceToShape(dy, dims, b!.dims) : undefined] : [];
  return { outputs: [tensor(dims, y)], backward };
};

/** Geometry of a 2-D pooling node, or an error naming the op. */
function pool2d(x: Tensor, attrs: Attrs) {
  const g = poolGeometry(x.dims, attrs);
  if (g.inSpatial.length !== 2) throw new KernelError(`${attrs.opType}: training supports 2-D pooling only, X is [${x.dims}]`);
  return g;
}

/** MaxPool (2-D): remembers each output's argmax; backward routes dY there (ties: first in the window). */
const maxPool: GradOp = ([x], attrs, alloc = freshAlloc) => {
  const xd = f32(x, "MaxPool X");
  const g = pool2d(x!, attrs);
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
  return { outputs: [tensor([g.batch, g.channels, outH, outW], y)], backward };
};

/**
 * AveragePool (2-D, no dilation): each output is the mean of its window clipped to the input;
 * with count_include_pad the divisor counts the padding too (not the ceil_mode overhang, as
 * onnxruntime). Backward spreads dY / divisor over the same window.
 */
const averagePool: GradOp = ([x], attrs, alloc = freshAlloc) => {
  const xd = f32(x, "AveragePool X");
  const g = pool2d(x!, attrs);
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
  return { outputs: [tensor([g.batch, g.channels, outH, outW], y)], backward };
};

const globalAveragePool: GradOp = ([x], _attrs, alloc = freshAlloc) => {
  const xd = f32(x, "GlobalAveragePool X");
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
  return { outputs: [tensor([batch, channels, ...x!.dims.slice(2).map(() => 1)], y)], backward };
};

/** An op that only relabels the shape: the data (and its gradient) pass through unchanged. */
const reshapeTo = (x: Tensor, dims: number[]): GradResult => {
  if (sizeOf(dims) !== x.data.length) throw new KernelError(`cannot reshape [${x.dims}] to [${dims}]`);
  return { outputs: [{ dtype: x.dtype, dims, data: x.data }], backward: ([dy], needs) => (dy && needs[0] ? [dy] : []) };
};

const flatten: GradOp = ([x], attrs) => {
  const r = x!.dims.length, axis = attrs.int("axis", 1);
  const a = axis < 0 ? axis + r : axis;
  return reshapeTo(x!, [sizeOf(x!.dims.slice(0, a)), sizeOf(x!.dims.slice(a))]);
};

/** Reshape with a shape input: 0 copies the input dim (unless allowzero), -1 is inferred. */
const reshape: GradOp = ([x, shape], attrs) => {
  const want = intList(shape!), allowZero = attrs.int("allowzero", 0) !== 0;
  const dims = want.map((d, i) => (d === 0 && !allowZero ? x!.dims[i]! : d));
  const free = dims.indexOf(-1);
  if (free >= 0) dims[free] = x!.data.length / sizeOf(dims.filter((_, i) => i !== free));
  return reshapeTo(x!, dims);
};

const identity: GradOp = ([x]) => reshapeTo(x!, [...x!.dims]);

/** The differentiable ops, by exact ONNX op type (default domain). */
export const GRAD_OPS: Readonly<Record<string, GradOp>> = {
  Conv: conv,
  Gemm: gemm,
  MatMul: matMul,
  Relu: relu,
  Clip: clip,
  Add: add,
  MaxPool: maxPool,
  AveragePool: averagePool,
  GlobalAveragePool: globalAveragePool,
  Flatten: flatten,
  Reshape: reshape,
  Identity: identity,
};
