/**
 * Normalisation ops: BatchNormalization (inference only), InstanceNormalization, LRN.
 * BatchNormalization folds its four parameter vectors into one scale and shift per channel
 * (`batchNormAffine`, exported: the same folding merges BN into a preceding Conv), then runs one
 * multiply-add per element. Before opset 9 `spatial=0` gives per-element parameters `[C, D1..]`;
 * that layout is accepted too. Training mode (opset 14+ `training_mode=1`, or extra outputs) is
 * not supported: the runtime is for inference.
 * @module
 */
import type { Tensor } from "../../format/mod.ts";
import { sizeOf } from "../../format/mod.ts";
import { type Attrs, KernelError, type Kernel, type OpVersion } from "./types.ts";

type FloatArray = Float32Array | Float64Array;

function floatData(t: Tensor | undefined, op: string, what: string): FloatArray {
  if (!t) throw new KernelError(`${op}: ${what} is required`);
  if (t.data instanceof Float32Array || t.data instanceof Float64Array) return t.data;
  throw new KernelError(`${op}: unsupported dtype ${t.dtype} for ${what}`);
}

function like(d: FloatArray, n: number): FloatArray {
  return d instanceof Float32Array ? new Float32Array(n) : new Float64Array(n);
}

/**
 * Per-parameter scale and shift of inference BatchNormalization:
 * `a = scale / sqrt(var + epsilon)`, `b = bias - mean·a`, so `y = a·x + b`.
 */
export function batchNormAffine(
  scale: ArrayLike<number>, bias: ArrayLike<number>, mean: ArrayLike<number>, variance: ArrayLike<number>, epsilon: number,
): { a: Float64Array; b: Float64Array } {
  const n = scale.length;
  if (bias.length !== n || mean.length !== n || variance.length !== n) {
    throw new KernelError("BatchNormalization: scale, B, mean and var must have the same size");
  }
  const a = new Float64Array(n), b = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    a[i] = scale[i]! / Math.sqrt(variance[i]! + epsilon);
    b[i] = bias[i]! - mean[i]! * a[i]!;
  }
  return { a, b };
}

/** BatchNormalization in inference mode: `Y = scale·(X - mean)/sqrt(var + epsilon) + B`, per channel. */
export const batchNormalization: Kernel = (inputs, attrs) => {
  if (attrs.int("training_mode", 0) !== 0) throw new KernelError("BatchNormalization: training_mode is not supported (inference runtime)");
  const [x, scale, bias, mean, variance] = inputs;
  const xd = floatData(x, "BatchNormalization", "X");
  const { a, b } = batchNormAffine(
    floatData(scale, "BatchNormalization", "scale"), floatData(bias, "BatchNormalization", "B"),
    floatData(mean, "BatchNormalization", "mean"), floatData(variance, "BatchNormalization", "var"),
    attrs.float("epsilon", 1e-5),
  );
  const dims = x!.dims;
  // `| 0`: dims may arrive double-tagged, which would make the JIT compile the loops for doubles.
  const batch = (dims[0] ?? 1) | 0, channels = (dims[1] ?? 1) | 0, inner = sizeOf(dims.slice(2)) | 0;
  const y = like(xd, xd.length);
  if (a.length === channels) {
    for (let n = 0, i = 0; n < batch; n++) {
      for (let c = 0; c < channels; c++) {
        const ac = a[c]!, bc = b[c]!, end = i + inner;
        for (; i < end; i++) y[i] = ac * xd[i]! + bc;
      }
    }
  } else if (a.length === channels * inner) {
    // spatial = 0 (opset < 9): one parameter per (c, spatial position).
    const per = a.length;
    for (let n = 0; n < batch; n++) for (let j = 0; j < per; j++) y[n * per + j] = a[j]! * xd[n * per + j]! + b[j]!;
  } else {
    throw new KernelError(`BatchNormalization: parameters of size ${a.length} do not fit X [${dims}]`);
  }
  return [{ dtype: x!.dtype, dims: [...dims], data: y }];
};

/** InstanceNormalization: each (n, c) plane normalised by its own mean and variance, then `scale[c]·ŷ + B[c]`. */
export const instanceNormalization: Kernel = (inputs, attrs) => {
  const [x, scale, bias] = inputs;
  const xd = floatData(x, "InstanceNormalization", "X");
  const sd = floatData(scale, "InstanceNormalization", "scale"), bd = floatData(bias, "InstanceNormalization", "B");
  const eps = attrs.float("epsilon", 1e-5);
  const dims = x!.dims;
  if (dims.length < 3) throw new KernelError(`InstanceNormalization: X [${dims}] must be [N, C, spatial...]`);
  const batch = dims[0]! | 0, channels = dims[1]! | 0, inner = sizeOf(dims.slice(2)) | 0;
  if (sd.length !== channels || bd.length !== channels) throw new KernelError("InstanceNormalization: scale and B must have C elements");
  const y = like(xd, xd.length);
  for (let n = 0; n < batch; n++) {
    for (let c = 0; c < channels; c++) {
      const base = (n * channels + c) * inner;
      let sum = 0;
      for (let i = 0; i < inner; i++) sum += xd[base + i]!;
      const mean = sum / inner;
      let sq = 0;
      for (let i = 0; i < inner; i++) { const d = xd[base + i]! - mean; sq += d * d; }
      const a = sd[c]! / Math.sqrt(sq / inner + eps), b = bd[c]! - mean * a;
      for (let i = 0; i < inner; i++) y[base + i] = a * xd[base + i]! + b;
    }
  }
  return [{ dtype: x!.dtype, dims: [...dims], data: y }];
};

/**
 * LRN across channels: `Y = X / (bias + alpha/size · Σ X²)^beta`, the sum over channels
 * `[c - floor((size-1)/2), c + ceil((size-1)/2)]` clipped to the tensor.
 */
export const lrn: Kernel = (inputs, attrs: Attrs) => {
  const x = inputs[0];
  const xd = floatData(x, "LRN", "X");
  const size = attrs.int("size");
  const alpha = attrs.float("alpha", 1e-4), beta = attrs.float("beta", 0.75), bias = attrs.float("bias", 1);
  const dims = x!.dims;
  const batch = dims[0]!, channels = dims[1]!, inner = sizeOf(dims.slice(2));
  const lo = Math.floor((size - 1) / 2), hi = Math.ceil((size - 1) / 2);
  const y = like(xd, xd.length);
  for (let n = 0; n < batch; n++) {
    for (let c = 0; c < channels; c++) {
      const c0 = Math.max(0, c - lo), c1 = Math.min(channels - 1, c + hi);
      for (let i = 0; i < inner; i++) {
        let sq = 0;
        for (let cc = c0; cc <= c1; cc++) { const v = xd[(n * channels + cc) * inner + i]!; sq += v * v; }
        const at = (n * channels + c) * inner + i;
        y[at] = xd[at]! / Math.pow(bias + (alpha / size) * sq, beta);
      }
    }
  }
  return [{ dtype: x!.dtype, dims: [...dims], data: y }];
};

/** Normalisation ops by ONNX op type. BatchNormalization's versions differ only in training outputs, which are not supported. */
export const NORM_OPS: Record<string, OpVersion[]> = {
  BatchNormalization: [{ since: 1, kernel: batchNormalization }],
  InstanceNormalization: [{ since: 1, kernel: instanceNormalization }],
  LRN: [{ since: 1, kernel: lrn }],
};
