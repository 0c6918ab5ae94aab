/**
 * Conv and ConvTranspose (ONNX opsets 1 and 11; the two versions differ only in documentation).
 * The shape logic (`resolvePads`, `windowOutputSize`, `convGeometry`, `convTransposeGeometry`) is
 * exported so pooling and a later backward pass use the same equations. `convReference` /
 * `convTransposeReference` are N-d plain loops and the definition. `conv` / `convTranspose` are
 * the registered kernels; float32 1-D/2-D Conv goes through the path `convPath` picks:
 *   direct        one input channel per group (depthwise), cpu/direct-conv.ts
 *   im2col-sparse weights with enough zeros (SPARSE_MIN_ZEROS), k-blocked CSR × im2col, cpu/sparse.ts
 *   winograd      3×3 stride 1, enough channels and output tiles (WINOGRAD_MIN), F(2×2, 3×3), cpu/winograd.ts
 *   gemm-1x1      1×1 stride 1 unpadded: X is already the GEMM operand
 *   im2col-gemm   everything else: im2col + the blocked GEMM of cpu/sgemm.ts
 * (dense GEMMs split across worker threads when `ctx.threads > 1` and a pool was started).
 * Float64, 3-D and other cases run the reference. `prepareConv` (the op table's load-time hook)
 * computes the weights' zero fraction and, for the path the planned shapes take, the CSR or
 * Winograd-transformed weights once, instead of on every call.
 * @module
 */
import type { Tensor } from "../../format/mod.ts";
import { sizeOf } from "../../format/mod.ts";
import { Attrs, type Backward, f32Of, freshAlloc, type GradOp, KernelError, type Kernel, type KernelContext, type OpVersion, type Prepare, withGrad, f32Tensor } from "./types.ts";
import { stridesOf } from "./elementwise.ts";
import { matrixView, sgemm, simdGemmInUse } from "../cpu/sgemm.ts";
import { col2imAdd, im2col, type Window2d } from "../cpu/im2col.ts";
import { convPlaneDirect } from "../cpu/direct-conv.ts";
import { type CsrMatrix, csrFromDense, JS_ENGINE, spmmAdd, SPARSE_MIN_ZEROS, zeroFraction } from "../cpu/sparse.ts";
import { cpuWorkers, MIN_PARALLEL_MACS } from "../cpu/worker-pool.ts";
import { WINOGRAD_LARGE_TILES, WINOGRAD_MIN, WINOGRAD_MIN_OUT_CHANNELS, winogradConv3x3, winogradWeights } from "../cpu/winograd.ts";

/** ONNX `auto_pad` values ("" is read as NOTSET, as onnxruntime does). */
export type AutoPad = "NOTSET" | "SAME_UPPER" | "SAME_LOWER" | "VALID";

/** Parse and validate an `auto_pad` attribute. */
export function readAutoPad(attrs: Attrs): AutoPad {
  const v = attrs.string("auto_pad", "NOTSET");
  if (v === "") return "NOTSET";
  if (v === "NOTSET" || v === "SAME_UPPER" || v === "SAME_LOWER" || v === "VALID") return v;
  throw new KernelError(`${attrs.opType}: unknown auto_pad '${v}'`);
}

/**
 * Largest extent a sliding-window op accepts for any one number of its geometry (an input or
 * output length, a padded length, a kernel, stride, dilation or pad): int32, what the kernels
 * index with (see intGeometry). Every length is checked against it in exact integer arithmetic
 * before use, so attribute values such as pads 1e15, strides 0 or −1 and dilations 2^32 are
 * refused with a KernelError instead of wrapping through `| 0` into negative sizes.
 */
export const MAX_EXTENT = 2 ** 31 - 1;
/** Largest number of elements a window op's output may have (what one Float32Array can hold, and then some care). */
export const MAX_WINDOW_OUTPUT_ELEMENTS = 2 ** 31 - 1;

/** A geometry integer: a safe integer in [min, MAX_EXTENT], else a KernelError naming it. */
export function geometryInt(v: number, what: string, min: number): number {
  if (!Number.isSafeInteger(v) || v < min || v > MAX_EXTENT) {
    throw new KernelError(`${what} is ${v}: must be an integer in [${min}, ${MAX_EXTENT}]`);
  }
  return v;
}

/** Extent of a dilated kernel: `(k - 1)·d + 1` (kernel ≥ 1 and dilation ≥ 1, result at most MAX_EXTENT). */
export function dilatedKernel(kernel: number, dilation: number): number {
  geometryInt(kernel, "kernel size", 1);
  geometryInt(dilation, "dilation", 1);
  // Exact in doubles: both factors are below 2^31, so the product is below 2^62 only when checked first.
  if (kernel - 1 > (MAX_EXTENT - 1) / dilation) throw new KernelError(`dilated kernel (${kernel} - 1)·${dilation} + 1 exceeds ${MAX_EXTENT}`);
  return (kernel - 1) * dilation + 1;
}

/** Product of dims, refused above `max` (checked per factor, so it never loses exactness). */
export function checkedElements(dims: readonly number[], max: number, what: string): number {
  let n = 1;
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0) throw new KernelError(`${what}: dimension ${d} is not a non-negative integer`);
    if (d !== 0 && n > max / d) throw new KernelError(`${what}: [${dims}] has more than ${max} elements`);
    n *= d;
  }
  return n;
}

/**
 * Padding of a sliding window over `inSpatial`, as ONNX lays it out: `[begin_0 .. begin_{k-1},
 * end_0 .. end_{k-1}]`. NOTSET uses `pads` (zeros if absent); VALID pads nothing; SAME_* pads so
 * that `out = ceil(in / stride)`, the odd unit going to the end (UPPER) or the beginning (LOWER).
 */
export function resolvePads(
  inSpatial: readonly number[], kernel: readonly number[], strides: readonly number[],
  dilations: readonly number[], autoPad: AutoPad, pads?: readonly number[],
): number[] {
  const k = inSpatial.length;
  for (let d = 0; d < k; d++) {
    geometryInt(inSpatial[d]!, `input length of axis ${d}`, 0);
    geometryInt(strides[d]!, `stride of axis ${d}`, 1);
    dilatedKernel(kernel[d]!, dilations[d]!);
  }
  if (autoPad === "NOTSET") {
    const p = pads ?? new Array<number>(2 * k).fill(0);
    if (p.length !== 2 * k) throw new KernelError(`pads has ${p.length} values, expected ${2 * k}`);
    p.forEach((v, i) => geometryInt(v, `pad ${i}`, 0));
    return [...p];
  }
  const out = new Array<number>(2 * k).fill(0);
  if (autoPad === "VALID") return out;
  for (let d = 0; d < k; d++) {
    const o = Math.ceil(inSpatial[d]! / strides[d]!);
    const total = Math.max(0, (o - 1) * strides[d]! + dilatedKernel(kernel[d]!, dilations[d]!) - inSpatial[d]!);
    const small = Math.floor(total / 2);
    out[d] = autoPad === "SAME_UPPER" ? small : total - small;
    out[d + k] = total - out[d]!;
  }
  return out;
}

/**
 * Output length of a sliding window: `floor((in + padBegin + padEnd - dilatedKernel) / stride) + 1`,
 * or `ceil(..)` with `ceilMode` (pooling), where a last window starting beyond the input and its
 * begin padding is dropped (the rule of the ONNX reference and PyTorch).
 */
export function windowOutputSize(
  inSize: number, kernel: number, stride: number, dilation: number,
  padBegin: number, padEnd: number, ceilMode = false,
): number {
  geometryInt(inSize, "input length", 0);
  geometryInt(stride, "stride", 1);
  geometryInt(padBegin, "begin pad", 0);
  geometryInt(padEnd, "end pad", 0);
  // Every term is below 2^31, so the sum is exact; the padded length must itself be an extent.
  const padded = geometryInt(inSize + padBegin + padEnd, "padded input length", 0);
  const span = padded - dilatedKernel(kernel, dilation);
  if (span < 0) return 0;
  if (!ceilMode) return Math.floor(span / stride) + 1;
  let out = Math.ceil(span / stride) + 1;
  if ((out - 1) * stride >= inSize + padBegin) out--;
  return out;
}

/** Everything a convolution's loops need, resolved from the input shapes and attributes. */
export interface ConvGeometry {
  batch: number;
  inChannels: number;
  outChannels: number;
  group: number;
  inSpatial: number[];
  outSpatial: number[];
  kernel: number[];
  strides: number[];
  dilations: number[];
  /** `[begin_0 .., end_0 ..]`; for ConvTranspose may be negative (output extended, see output_shape). */
  pads: number[];
}

/** A per-spatial-axis ints attribute (strides, dilations, ...): `k` values, `fallback` each when absent. */
export function spatialAttr(attrs: Attrs, name: string, k: number, fallback: number): number[] {
  const v = attrs.ints(name, new Array<number>(k).fill(fallback));
  if (v.length !== k) throw new KernelError(`${attrs.opType}: ${name} has ${v.length} values, expected ${k}`);
  return v;
}

/** Kernel shape: the attribute if present (checked against W), else W's trailing dims. */
function kernelShape(attrs: Attrs, wDims: readonly number[]): number[] {
  const fromW = wDims.slice(2);
  if (!attrs.has("kernel_shape")) return fromW;
  const ks = attrs.ints("kernel_shape");
  if (ks.length !== fromW.length || ks.some((v, i) => v !== fromW[i])) {
    throw new KernelError(`${attrs.opType}: kernel_shape [${ks}] does not match W [${wDims}]`);
  }
  return ks;
}

/** Geometry of Conv for X `[N, C, D1..Dk]` and W `[M, C/group, k1..kk]`. */
export function convGeometry(xDims: readonly number[], wDims: readonly number[], attrs: Attrs): ConvGeometry {
  const k = xDims.length - 2;
  if (k < 1 || wDims.length !== xDims.length) {
    throw new KernelError(`${attrs.opType}: X [${xDims}] and W [${wDims}] must both be [N, C, spatial...]`);
  }
  const group = attrs.int("group", 1);
  const [batch, inChannels] = xDims as [number, number];
  const outChannels = wDims[0]!;
  if (group < 1 || inChannels % group !== 0 || outChannels % group !== 0 || wDims[1]! * group !== inChannels) {
    throw new KernelError(`${attrs.opType}: X [${xDims}], W [${wDims}] and group ${group} disagree`);
  }
  const kernel = kernelShape(attrs, wDims);
  const strides = spatialAttr(attrs, "strides", k, 1);
  const dilations = spatialAttr(attrs, "dilations", k, 1);
  const inSpatial = xDims.slice(2);
  const pads = resolvePads(inSpatial, kernel, strides, dilations, readAutoPad(attrs), attrs.has("pads") ? attrs.ints("pads") : undefined);
  const outSpatial = inSpatial.map((n, d) => windowOutputSize(n, kernel[d]!, strides[d]!, dilations[d]!, pads[d]!, pads[d + k]!));
  checkedElements([batch, outChannels, ...outSpatial], MAX_WINDOW_OUTPUT_ELEMENTS, `${attrs.opType} output`);
  return intGeometry({ batch, inChannels, outChannels, group, inSpatial, outSpatial, kernel, strides, dilations, pads });
}

/**
 * Every number int32-tagged (`| 0`): attribute ints and Math.floor/ceil results may arrive as
 * doubles, which makes JavaScriptCore recompile the kernels' index arithmetic for doubles,
 * several times slower (measured on ResNet-18; see cpu/sgemm.ts).
 */
function intGeometry<G extends ConvGeometry>(g: G): G {
  const ints = (v: number[]) => v.map((x) => x | 0);
  return {
    ...g, batch: g.batch | 0, inChannels: g.inChannels | 0, outChannels: g.outChannels | 0, group: g.group | 0,
    inSpatial: ints(g.inSpatial), outSpatial: ints(g.outSpatial), kernel: ints(g.kernel), strides: ints(g.strides),
    dilations: ints(g.dilations), pads: ints(g.pads),
  };
}

/** Output dims of Conv: `[N, M, out_1 .. out_k]`. */
export function convOutputShape(xDims: readonly number[], wDims: readonly number[], attrs: Attrs): number[] {
  const g = convGeometry(xDims, wDims, attrs);
  return [g.batch, g.outChannels, ...g.outSpatial];
}

/**
 * Geometry of ConvTranspose for X `[N, C, D1..Dk]` and W `[C, M/group, k1..kk]`. `pads` are those
 * of the equivalent forward Conv from output to input. Follows the ONNX spec: with `output_shape`
 * the pads are derived from it (odd unit at the end for SAME_UPPER, else at the beginning); with
 * SAME_* and no output_shape the output is `in·stride`; otherwise
 * `out = stride·(in - 1) + output_padding + dilatedKernel - padBegin - padEnd`.
 */
export function convTransposeGeometry(xDims: readonly number[], wDims: readonly number[], attrs: Attrs): ConvGeometry & { outputPadding: number[] } {
  const k = xDims.length - 2;
  if (k < 1 || wDims.length !== xDims.length) {
    throw new KernelError(`${attrs.opType}: X [${xDims}] and W [${wDims}] must both be [N, C, spatial...]`);
  }
  const group = attrs.int("group", 1);
  const [batch, inChannels] = xDims as [number, number];
  if (group < 1 || wDims[0] !== inChannels || inChannels % group !== 0) {
    throw new KernelError(`${attrs.opType}: X [${xDims}], W [${wDims}] and group ${group} disagree`);
  }
  const outChannels = wDims[1]! * group;
  const kernel = kernelShape(attrs, wDims);
  const strides = spatialAttr(attrs, "strides", k, 1);
  const dilations = spatialAttr(attrs, "dilations", k, 1);
  const outputPadding = spatialAttr(attrs, "output_padding", k, 0);
  const inSpatial = xDims.slice(2);
  const autoPad = readAutoPad(attrs);
  inSpatial.forEach((n, d) => { geometryInt(n, `input length of axis ${d}`, 0); geometryInt(strides[d]!, `stride of axis ${d}`, 1); geometryInt(outputPadding[d]!, `output_padding of axis ${d}`, 0); });
  const full = inSpatial.map((n, d) => geometryInt(strides[d]! * Math.max(n - 1, 0) + outputPadding[d]! + dilatedKernel(kernel[d]!, dilations[d]!), `full output length of axis ${d}`, 0));
  let pads: number[];
  let outSpatial: number[];
  const explicitShape = attrs.has("output_shape") ? attrs.ints("output_shape").slice(-k) : undefined;
  if (explicitShape || autoPad === "SAME_UPPER" || autoPad === "SAME_LOWER") {
    outSpatial = explicitShape ?? inSpatial.map((n, d) => n * strides[d]!);
    pads = new Array<number>(2 * k);
    for (let d = 0; d < k; d++) {
      const total = full[d]! - outSpatial[d]!;
      const small = Math.floor(total / 2);
      pads[d] = autoPad === "SAME_UPPER" ? small : total - small;
      pads[d + k] = total - pads[d]!;
    }
  } else {
    pads = autoPad === "VALID" ? new Array<number>(2 * k).fill(0) : resolvePads(inSpatial, kernel, strides, dilations, "NOTSET", attrs.has("pads") ? attrs.ints("pads") : undefined);
    outSpatial = full.map((n, d) => n - pads[d]! - pads[d + k]!);
  }
  if (outSpatial.some((n) => n < 0)) throw new KernelError(`${attrs.opType}: negative output shape [${outSpatial}]`);
  outSpatial.forEach((n, d) => geometryInt(n, `output length of axis ${d}`, 0));
  pads.forEach((v, i) => { if (!Number.isSafeInteger(v) || Math.abs(v) > MAX_EXTENT) throw new KernelError(`${attrs.opType}: pad ${i} is ${v}`); });
  checkedElements([batch, outChannels, ...outSpatial], MAX_WINDOW_OUTPUT_ELEMENTS, `${attrs.opType} output`);
  return intGeometry({ batch, inChannels, outChannels, group, inSpatial, outSpatial, kernel, strides, dilations, pads, outputPadding });
}

/** Output dims of ConvTranspose: `[N, M, out_1 .. out_k]`. */
export function convTransposeOutputShape(xDims: readonly number[], wDims: readonly number[], attrs: Attrs): number[] {
  const g = convTransposeGeometry(xDims, wDims, attrs);
  return [g.batch, g.outChannels, ...g.outSpatial];
}

type FloatArray = Float32Array | Float64Array;

/** A zeroed array of the same float type as `like`. */
function floatLike(like: Tensor, n: number): FloatArray {
  if (like.data instanceof Float32Array) return new Float32Array(n);
  if (like.data instanceof Float64Array) return new Float64Array(n);
  throw new KernelError(`unsupported dtype ${like.dtype} (float32 and float64 only)`);
}

/** Unravel a flat row-major index into `out`. */
export function unravel(flat: number, dims: readonly number[], out: number[]): void {
  for (let i = dims.length - 1; i >= 0; i--) { out[i] = flat % dims[i]!; flat = Math.floor(flat / dims[i]!); }
}

function requireInputs(inputs: readonly (Tensor | undefined)[], op: string): [Tensor, Tensor, Tensor | undefined] {
  const [x, w, b] = inputs;
  if (!x || !w) throw new KernelError(`${op}: X and W are required`);
  if (x.dtype !== w.dtype || (b && b.dtype !== x.dtype)) throw new KernelError(`${op}: X, W and B must share one dtype`);
  return [x, w, b];
}

/**
 * Conv, the definition: N-d, any group/stride/dilation/padding, plain loops accumulating in
 * float64. `Y[n, m, o] = B[m] + Σ_{c, q} X[n, g·C/group + c, o·s - padBegin + q·d] · W[m, c, q]`.
 */
export const convReference: Kernel = (inputs, attrs) => {
  const [x, w, b] = requireInputs(inputs, "Conv");
  const g = convGeometry(x.dims, w.dims, attrs);
  const k = g.inSpatial.length;
  const xd = x.data as FloatArray, wd = w.data as FloatArray, bd = b?.data as FloatArray | undefined;
  const cg = g.inChannels / g.group, mg = g.outChannels / g.group;
  const inSize = sizeOf(g.inSpatial), outSize = sizeOf(g.outSpatial), kSize = sizeOf(g.kernel);
  const inStrides = stridesOf(g.inSpatial);
  const y = floatLike(x, g.batch * g.outChannels * outSize);
  const o = new Array<number>(k), q = new Array<number>(k);
  for (let n = 0; n < g.batch; n++) {
    for (let m = 0; m < g.outChannels; m++) {
      const grp = Math.floor(m / mg);
      for (let op = 0; op < outSize; op++) {
        unravel(op, g.outSpatial, o);
        let acc = bd ? bd[m]! : 0;
        for (let c = 0; c < cg; c++) {
          const xBase = (n * g.inChannels + grp * cg + c) * inSize;
          const wBase = (m * cg + c) * kSize;
          for (let kp = 0; kp < kSize; kp++) {
            unravel(kp, g.kernel, q);
            let xi = xBase, inside = true;
            for (let d = 0; d < k; d++) {
              const i = o[d]! * g.strides[d]! - g.pads[d]! + q[d]! * g.dilations[d]!;
              if (i < 0 || i >= g.inSpatial[d]!) { inside = false; break; }
              xi += i * inStrides[d]!;
            }
            if (inside) acc += xd[xi]! * wd[wBase + kp]!;
          }
        }
        y[(n * g.outChannels + m) * outSize + op] = acc;
      }
    }
  }
  return [{ dtype: x.dtype, dims: [g.batch, g.outChannels, ...g.outSpatial], data: y }];
};

/** 2-D geometry for the cpu/ loops, one group's channels. */
function window2d(g: ConvGeometry, channels: number): Window2d {
  return {
    channels, inH: g.inSpatial[0]!, inW: g.inSpatial[1]!, kH: g.kernel[0]!, kW: g.kernel[1]!,
    strideH: g.strides[0]!, strideW: g.strides[1]!, dilationH: g.dilations[0]!, dilationW: g.dilations[1]!,
    padTop: g.pads[0]!, padLeft: g.pads[1]!, outH: g.outSpatial[0]!, outW: g.outSpatial[1]!,
  };
}

/** Reused im2col buffer (kernels run one at a time per thread). */
let colScratch = new Float32Array(0);
function scratch(n: number): Float32Array {
  if (colScratch.length < n) colScratch = new Float32Array(n);
  return colScratch;
}

/** Which fast path `conv` takes for a float32 2-D convolution. */
export type ConvPath = "direct" | "gemm-1x1" | "im2col-gemm" | "im2col-sparse" | "winograd";

/**
 * The fast path for these shapes and weights (`undefined`: the reference). `zeros` is the weights'
 * zero fraction when already known (a prepared Conv); else it is counted here. A fixed function of
 * the geometry and the zero fraction, with thresholds per GEMM backend (WASM SIMD or scalar JS,
 * ~3× apart) and, for the sparse crossover, per JS engine (Bun's JSC or Deno's V8, whose speed at
 * the scalar CSR loop differs ~2–3×). The thresholds and the measurements behind them are in
 * cpu/winograd.ts (WINOGRAD_MIN) and cpu/sparse.ts (SPARSE_MIN_ZEROS). Exported for tests and the
 * benchmark.
 */
export function convPath(g: ConvGeometry, w: Float32Array, zeros?: number): ConvPath | undefined {
  if (g.inSpatial.length !== 2) return undefined;
  const cg = g.inChannels / g.group;
  if (cg === 1 && g.outChannels / g.group <= 4) return "direct";
  const kk = g.kernel[0]! * g.kernel[1]!;
  const backend = simdGemmInUse() ? "simd" : "scalar";
  const tiles = Math.ceil(g.outSpatial[0]! / 2) * Math.ceil(g.outSpatial[1]! / 2);
  const wmin = WINOGRAD_MIN[backend];
  const winograd = isWinogradShape(g) && cg >= wmin.channels && g.outChannels / g.group >= WINOGRAD_MIN_OUT_CHANNELS && tiles >= wmin.tiles;
  const sparse = SPARSE_MIN_ZEROS[JS_ENGINE][backend];
  const minZeros = !winograd ? sparse.gemm : tiles >= WINOGRAD_LARGE_TILES ? sparse.winograd : sparse.winogradSmall;
  // Zero fraction over the whole weight: cheap next to the convolution (1/P of its work).
  if (cg * kk >= 16 && (zeros ?? zeroFraction(w)) >= minZeros) return "im2col-sparse";
  if (winograd) return "winograd";
  return isPointwise(g) ? "gemm-1x1" : "im2col-gemm";
}

/** 3×3, stride 1, dilation 1: the shapes Winograd F(2×2, 3×3) applies to. */
export function isWinogradShape(g: ConvGeometry): boolean {
  return g.inSpatial.length === 2 && g.kernel[0] === 3 && g.kernel[1] === 3 &&
    g.strides.every((s) => s === 1) && g.dilations.every((d) => d === 1);
}

/** A 1×1 convolution with unit strides and no padding: a plain GEMM on X. */
function isPointwise(g: ConvGeometry): boolean {
  return g.kernel.every((k) => k === 1) && g.strides.every((s) => s === 1) && g.pads.every((p) => p === 0);
}

/**
 * What `prepareConv` derives from a float32 Conv weight at load. Each form is per group and
 * independent of the input's size, so it serves any input the weight is used with.
 */
export interface PreparedConv {
  /** The weight the state was built from: the kernel uses the state only for this very tensor. */
  weight: Tensor;
  /** Fraction of exact zeros in the weight (picks the sparse path without rescanning it). */
  zeros: number;
  /** k-blocked CSR per group, when the planned shapes take the im2col-sparse path. */
  csr?: CsrMatrix[];
  /** Winograd U = G g Gᵀ per group, when the planned shapes take the winograd path. */
  winograd?: Float32Array[];
}

/**
 * Conv's load-time hook: for a constant float32 2-D weight, its zero fraction, plus the sparse or
 * Winograd form of the path the planned input shape takes (only that one: each form costs memory
 * beside the dense weight). A symbolic batch counts as 1; the path does not depend on it.
 */
export const prepareConv: Prepare = (constInputs, attrs, ctx): PreparedConv | undefined => {
  const w = constInputs[1];
  if (!w || w.dtype !== "float32" || w.dims.length !== 4) return undefined;
  const wd = w.data as Float32Array;
  const state: PreparedConv = { weight: w, zeros: zeroFraction(wd) };
  const x = ctx.inputShapes[0];
  if (!x || x.length !== 4 || !x.every((d, i) => typeof d === "number" || i === 0)) return state;
  const g = convGeometry(x.map((d) => (typeof d === "number" ? d : 1)), w.dims, attrs);
  const path = convPath(g, wd, state.zeros);
  const mg = g.outChannels / g.group, cg = g.inChannels / g.group, kRows = cg * g.kernel[0]! * g.kernel[1]!;
  const groups = Array.from({ length: g.group }, (_, grp) => grp);
  if (path === "im2col-sparse") state.csr = groups.map((grp) => csrFromDense(wd, mg, kRows, grp * mg * kRows));
  if (path === "winograd") state.winograd = groups.map((grp) => winogradWeights(wd, grp * mg * kRows, mg, cg));
  return state;
};

/** Extras of conv2dFast: prepared weight forms, and where the output buffer comes from. */
export interface Conv2dExtras {
  prepared?: PreparedConv;
  alloc?: KernelContext["alloc"];
}

/**
 * Float32 2-D Conv through the path `convPath` picks (or a forced one, for tests and benches).
 * With `threads > 1` and a started worker pool (cpu/worker-pool.ts), large dense GEMMs are split
 * across threads. A `prepared` state built from another weight is ignored.
 */
export function conv2dFast(x: Tensor, w: Tensor, b: Tensor | undefined, g: ConvGeometry, path: ConvPath, threads = 1, extras: Conv2dExtras = {}): Tensor {
  const xd = x.data as Float32Array, wd = w.data as Float32Array, bd = b?.data as Float32Array | undefined;
  const cg = g.inChannels / g.group, mg = g.outChannels / g.group;
  const win = window2d(g, cg);
  const inPlane = win.inH * win.inW, p = win.outH * win.outW, kRows = cg * win.kH * win.kW;
  const prepared = extras.prepared?.weight === w ? extras.prepared : undefined;
  const size = g.batch * g.outChannels * p;
  const y = extras.alloc ? extras.alloc(size) : new Float32Array(size);
  if (path === "direct") {
    if (cg !== 1) throw new KernelError("Conv: the direct path needs one input channel per group");
    for (let n = 0; n < g.batch; n++) {
      for (let m = 0; m < g.outChannels; m++) {
        const c = Math.floor(m / mg);
        convPlaneDirect(xd, (n * g.inChannels + c) * inPlane, wd, m * win.kH * win.kW, bd ? bd[m]! : 0, win, y, (n * g.outChannels + m) * p);
      }
    }
    return { dtype: "float32", dims: [g.batch, g.outChannels, win.outH, win.outW], data: y };
  }
  if (path === "winograd") {
    if (!isWinogradShape(g)) throw new KernelError("Conv: the winograd path needs a 3×3 kernel with stride 1 and dilation 1");
    for (let grp = 0; grp < g.group; grp++) {
      const u = prepared?.winograd?.[grp] ?? winogradWeights(wd, grp * mg * kRows, mg, cg);
      for (let n = 0; n < g.batch; n++) {
        winogradConv3x3(xd, (n * g.inChannels + grp * cg) * inPlane, u, bd, grp * mg, mg, win, y, (n * g.outChannels + grp * mg) * p, threads);
      }
    }
    return { dtype: "float32", dims: [g.batch, g.outChannels, win.outH, win.outW], data: y };
  }
  if (bd) {
    for (let n = 0; n < g.batch; n++) {
      for (let m = 0; m < g.outChannels; m++) y.fill(bd[m]!, (n * g.outChannels + m) * p, (n * g.outChannels + m + 1) * p);
    }
  } else if (extras.alloc && path === "im2col-sparse") {
    y.fill(0); // the sparse product accumulates into y; a recycled buffer is not zeroed
  }
  if ((path === "gemm-1x1" || path === "im2col-gemm") && threads > 1 && mg * p * kRows >= MIN_PARALLEL_MACS) {
    if (conv2dThreaded(xd, wd, bd, g, win, path, threads, y)) return { dtype: "float32", dims: [g.batch, g.outChannels, win.outH, win.outW], data: y };
  }
  // A stride-1 unpadded 1×1 convolution's im2col is X itself.
  const noUnfold = isPointwise(g);
  const col = noUnfold ? xd : scratch(kRows * p);
  const csr = path !== "im2col-sparse" ? [] : prepared?.csr ??
    Array.from({ length: g.group }, (_, grp) => csrFromDense(wd, mg, kRows, grp * mg * kRows));
  for (let n = 0; n < g.batch; n++) {
    for (let grp = 0; grp < g.group; grp++) {
      const xOff = (n * g.inChannels + grp * cg) * inPlane;
      const yOff = (n * g.outChannels + grp * mg) * p;
      let colOff = xOff;
      if (!noUnfold) { im2col(xd, xOff, win, col); colOff = 0; }
      if (path === "im2col-sparse") {
        spmmAdd(csr[grp]!, col, colOff, p, p, y, yOff, p);
      } else {
        sgemm(mg, p, kRows, 1, matrixView(wd, grp * mg * kRows, kRows), matrixView(col, colOff, p), y, yOff, p, bd !== undefined);
      }
    }
  }
  return { dtype: "float32", dims: [g.batch, g.outChannels, win.outH, win.outW], data: y };
}

/** The dense GEMM paths on the worker pool: operands copied into the shared arena. False if no pool is ready. */
function conv2dThreaded(
  xd: Float32Array, wd: Float32Array, bd: Float32Array | undefined, g: ConvGeometry, win: Window2d,
  path: ConvPath, threads: number, y: Float32Array,
): boolean {
  const pool = cpuWorkers(threads);
  const cg = g.inChannels / g.group, mg = g.outChannels / g.group;
  const inPlane = win.inH * win.inW, p = win.outH * win.outW, kRows = cg * win.kH * win.kW;
  const lay = pool?.reserve(mg * kRows, kRows * p, mg * p);
  if (!pool || !lay) return false;
  const { arena, aOff, bOff, cOff } = lay;
  for (let n = 0; n < g.batch; n++) {
    for (let grp = 0; grp < g.group; grp++) {
      const xOff = (n * g.inChannels + grp * cg) * inPlane;
      const yOff = (n * g.outChannels + grp * mg) * p;
      arena.set(wd.subarray(grp * mg * kRows, (grp + 1) * mg * kRows), aOff);
      if (isPointwise(g)) arena.set(xd.subarray(xOff, xOff + kRows * p), bOff);
      else im2col(xd, xOff, win, arena.subarray(bOff, bOff + kRows * p));
      if (bd) for (let m = 0; m < mg; m++) arena.fill(bd[grp * mg + m]!, cOff + m * p, cOff + (m + 1) * p);
      const ok = pool.sgemm(mg, p, kRows, 1, { offset: aOff, rowStride: kRows, colStride: 1 }, { offset: bOff, rowStride: p, colStride: 1 }, cOff, p, bd !== undefined);
      if (!ok) return false;
      y.set(arena.subarray(cOff, cOff + mg * p), yOff);
    }
  }
  return true;
}

/** Conv as registered: the float32 2-D fast paths, else the reference. */
export const conv: Kernel = (inputs, attrs, ctx) => {
  const [x, w, b] = requireInputs(inputs, "Conv");
  if (x.dtype !== "float32") { ctx.reportPath?.("reference-conv"); return convReference(inputs, attrs, ctx); }
  const g = convGeometry(x.dims, w.dims, attrs);
  if (g.inSpatial.length === 1) {
    // 1-D runs as 2-D with a unit height: same data, one more dimension.
    const g2 = liftGeometry(g);
    const path = convPath(g2, w.data as Float32Array)!;
    ctx.reportPath?.(path);
    const y = conv2dFast(lift(x), lift(w), b, g2, path, ctx.threads, { alloc: ctx.alloc });
    return [{ ...y, dims: [g.batch, g.outChannels, g.outSpatial[0]!] }];
  }
  const prepared = (ctx.prepared as PreparedConv | undefined)?.weight === w ? ctx.prepared as PreparedConv : undefined;
  const path = convPath(g, w.data as Float32Array, prepared?.zeros);
  ctx.reportPath?.(path ?? "reference-conv");
  if (!path) return convReference(inputs, attrs, ctx);
  return [conv2dFast(x, w, b, g, path, ctx.threads, { prepared, alloc: ctx.alloc })];
};

/** A 1-D tensor `[N, C, L]` viewed as `[N, C, 1, L]` (no copy). */
function lift(t: Tensor): Tensor {
  return { ...t, dims: [t.dims[0]!, t.dims[1]!, 1, t.dims[2]!] };
}

/** A 1-D geometry as the equivalent 2-D one with a unit height. */
function liftGeometry(g: ConvGeometry): ConvGeometry {
  return {
    ...g, inSpatial: [1, g.inSpatial[0]!], outSpatial: [1, g.outSpatial[0]!], kernel: [1, g.kernel[0]!],
    strides: [1, g.strides[0]!], dilations: [1, g.dilations[0]!], pads: [0, g.pads[0]!, 0, g.pads[1]!],
  };
}

/**
 * ConvTranspose, the definition: every input element scatters `X[n, c, i] · W[c, m, q]` to
 * `Y[n, g·M/group + m, i·s - padBegin + q·d]` (the adjoint of Conv), plus the bias.
 */
export const convTransposeReference: Kernel = (inputs, attrs) => {
  const [x, w, b] = requireInputs(inputs, "ConvTranspose");
  const g = convTransposeGeometry(x.dims, w.dims, attrs);
  const k = g.inSpatial.length;
  const xd = x.data as FloatArray, wd = w.data as FloatArray, bd = b?.data as FloatArray | undefined;
  const cg = g.inChannels / g.group, mg = g.outChannels / g.group;
  const inSize = sizeOf(g.inSpatial), outSize = sizeOf(g.outSpatial), kSize = sizeOf(g.kernel);
  const outStrides = stridesOf(g.outSpatial);
  const y = floatLike(x, g.batch * g.outChannels * outSize);
  if (bd) for (let n = 0; n < g.batch; n++) for (let m = 0; m < g.outChannels; m++) y.fill(bd[m]!, (n * g.outChannels + m) * outSize, (n * g.outChannels + m + 1) * outSize);
  const i = new Array<number>(k), q = new Array<number>(k);
  for (let n = 0; n < g.batch; n++) {
    for (let c = 0; c < g.inChannels; c++) {
      const grp = Math.floor(c / cg);
      for (let ip = 0; ip < inSize; ip++) {
        const xv = xd[(n * g.inChannels + c) * inSize + ip]!;
        unravel(ip, g.inSpatial, i);
        for (let kp = 0; kp < kSize; kp++) {
          unravel(kp, g.kernel, q);
          let yo = 0, inside = true;
          for (let d = 0; d < k; d++) {
            const o = i[d]! * g.strides[d]! - g.pads[d]! + q[d]! * g.dilations[d]!;
            if (o < 0 || o >= g.outSpatial[d]!) { inside = false; break; }
            yo += o * outStrides[d]!;
          }
          if (!inside) continue;
          for (let m = 0; m < mg; m++) {
            const mo = grp * mg + m;
            y[(n * g.outChannels + mo) * outSize + yo] += xv * wd[(c * mg + m) * kSize + kp]!;
          }
        }
      }
    }
  }
  return [{ dtype: x.dtype, dims: [g.batch, g.outChannels, ...g.outSpatial], data: y }];
};

/**
 * Float32 2-D ConvTranspose as GEMM + col2im: `col[(m,ki,kj) × (iy,ix)] = W_gᵀ · X_g`, then col
 * is folded (added) onto the output, with the output playing the role of a forward Conv's input.
 */
export function convTranspose2dFast(x: Tensor, w: Tensor, b: Tensor | undefined, g: ConvGeometry): Tensor {
  const xd = x.data as Float32Array, wd = w.data as Float32Array, bd = b?.data as Float32Array | undefined;
  const cg = g.inChannels / g.group, mg = g.outChannels / g.group;
  const [inH, inW] = g.inSpatial as [number, number];
  const [outH, outW] = g.outSpatial as [number, number];
  // Forward-conv view: output of ConvTranspose = conv input, ConvTranspose input = conv output.
  const win: Window2d = {
    channels: mg, inH: outH, inW: outW, kH: g.kernel[0]!, kW: g.kernel[1]!,
    strideH: g.strides[0]!, strideW: g.strides[1]!, dilationH: g.dilations[0]!, dilationW: g.dilations[1]!,
    padTop: g.pads[0]!, padLeft: g.pads[1]!, outH: inH, outW: inW,
  };
  const p = inH * inW, outPlane = outH * outW, kRows = mg * win.kH * win.kW;
  const y = new Float32Array(g.batch * g.outChannels * outPlane);
  if (bd) for (let n = 0; n < g.batch; n++) for (let m = 0; m < g.outChannels; m++) y.fill(bd[m]!, (n * g.outChannels + m) * outPlane, (n * g.outChannels + m + 1) * outPlane);
  const col = scratch(kRows * p);
  for (let n = 0; n < g.batch; n++) {
    for (let grp = 0; grp < g.group; grp++) {
      // W_g is [cg × kRows] row-major; its transpose is the GEMM's A.
      sgemm(kRows, p, cg, 1, matrixView(wd, grp * cg * kRows, kRows, true), matrixView(xd, (n * g.inChannels + grp * cg) * p, p), col, 0, p, false);
      col2imAdd(col, win, y, (n * g.outChannels + grp * mg) * outPlane);
    }
  }
  return { dtype: "float32", dims: [g.batch, g.outChannels, outH, outW], data: y };
}

/** ConvTranspose as registered: float32 2-D through GEMM + col2im, else the reference. */
export const convTranspose: Kernel = (inputs, attrs, ctx) => {
  const [x, w, b] = requireInputs(inputs, "ConvTranspose");
  if (x.dtype !== "float32" || (x.dims.length !== 3 && x.dims.length !== 4)) return convTransposeReference(inputs, attrs, ctx);
  const g = convTransposeGeometry(x.dims, w.dims, attrs);
  if (g.inSpatial.length === 1) {
    const y = convTranspose2dFast(lift(x), lift(w), b, liftGeometry(g));
    return [{ ...y, dims: [g.batch, g.outChannels, g.outSpatial[0]!] }];
  }
  return [convTranspose2dFast(x, w, b, g)];
};

/** Conv-family ops by ONNX op type. Conv 1→11 and ConvTranspose 1→11 changed only documentation. */

/** A 1×1, stride-1, unpadded Conv's attributes (the defaults). */
const POINTWISE = new Attrs({}, "Conv");

/**
 * Conv products a training graph may lend its Conv grads (GradContext.conv; train/wasm-conv.ts).
 * Each returns false where it does not apply or pay, and the grad computes that product itself.
 */
export interface ConvGradKernels {
  /** A zeroed float32 buffer the kernels read and write in place (kept until the process ends: a training graph's step buffers). */
  buffer(n: number): Float32Array;
  /**
   * conv(x, w) + b (dims from `g`, no epilogue, into a buffer of `out`) on the kernel that pays: one
   * that skips the zeros of `w`, or a dense one; undefined where the JS path is faster or none applies.
   */
  conv(x: Float32Array, w: Float32Array, b: Float32Array | undefined, g: ConvGeometry, attrs: Attrs, out: (n: number) => Float32Array): Float32Array | undefined;
  /** `dw` = ∂L/∂W from the input `x` and `dy`, at the positions `keep` marks (everywhere without it; 0 elsewhere); `db` = ∂L/∂B when given. */
  weightGrad(x: Float32Array, dy: Float32Array, g: ConvGeometry, keep: Uint8Array | undefined, dw: Float32Array, db?: Float32Array): boolean;
}

/**
 * Conv, 2-D, any group/stride/dilation/padding. Per image and group: `Y_g = W_g·col(X_g) + B`;
 * backward `dW_g += dY_g·col(X_g)ᵀ`, `dX_g = col2im(W_gᵀ·dY_g)`, `dB = Σ dY` (the usual GEMM
 * adjoints; col2imAdd is im2col's adjoint).
 */
const convGrad: GradOp = (inputs, attrs, alloc = freshAlloc, ctx) => {
  const [x, w, b] = inputs;
  const xd = f32Of(x, "Conv X"), wd = f32Of(w, "Conv W"), bd = b ? f32Of(b, "Conv B") : undefined;
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
  // Forward on the lent kernels where they pay (sparse when Ŵ is sparse enough, else dense), else
  // through the inference kernels' path choice (Winograd for 3×3/1, CSR for pruned weights, im2col + GEMM otherwise).
  const kernels = ctx?.conv;
  const lentY = kernels?.conv(xd, wd, bd, g, attrs, (n) => alloc(n, false));
  const lent = !!lentY;
  const path = lent ? undefined : convPath(g, wd);
  const y = lentY ?? (path ? conv2dFast(x!, w!, b, g, path, 1, { alloc: (n) => alloc(n, false) }).data as Float32Array : alloc(batch * outChannels * p, false));
  for (let n = 0; n < batch && !path && !lent; n++) {
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
    // Masked (only where ctx.keep has a 1) on the lent kernels, else the dense GEMMs below.
    const dbLent = needs[2] && bd ? new Float32Array(outChannels) : undefined;
    // (also the bias gradient, summed as dY is laid out for it)
    const dwDone = !!dw && !!kernels && kernels.weightGrad(xd, dy, g, ctx?.keep?.[1], dw, dbLent);
    if (needs[0] && transposedDx) {
      const wt = alloc(wd.length, false);
      for (let m = 0; m < outChannels; m++) for (let c = 0; c < inChannels; c++) for (let t = 0; t < 9; t++) wt[((c * outChannels + m) * 9) + 8 - t] = wd[(m * inChannels + c) * 9 + t]!;
      const wT: Tensor = f32Tensor([inChannels, outChannels, 3, 3], wt), dyT: Tensor = f32Tensor([batch, outChannels, win.outH, win.outW], dy);
      const gt = convGeometry(dyT.dims, wT.dims, attrs);
      dx = kernels?.conv(dy, wt, undefined, gt, attrs, (n) => alloc(n, false))
        ?? conv2dFast(dyT, wT, undefined, gt, convPath(gt, wt) ?? "im2col-gemm", 1, { alloc: (n) => alloc(n, false) }).data as Float32Array;
    }
    // Other dX (strided, unpadded, dilated): col(dX) = Wᵀ·dY for the whole batch as a 1×1 conv of
    // dY with Wᵀ as [k, M, 1, 1] on the lent kernels (the sparse one skips W's zeros), then col2im.
    let dxDone = false;
    if (dxGemm && kernels && group === 1) {
      const wtT = alloc(wd.length, false);
      for (let m = 0; m < outChannels; m++) for (let q = 0; q < k; q++) wtT[q * outChannels + m] = wd[m * k + q]!;
      const g1 = convGeometry([batch, outChannels, win.outH, win.outW], [k, outChannels, 1, 1], POINTWISE);
      const cols = kernels.conv(dy, wtT, undefined, g1, POINTWISE, (n) => alloc(n, false));
      if (cols) {
        for (let n = 0; n < batch; n++) col2imAdd(cols.subarray(n * k * p, (n + 1) * k * p), win, dxGemm, n * inChannels * planeIn);
        dxDone = true;
      }
    }
    const dcol = dxGemm && !dxDone ? alloc(k * p) : undefined;
    for (let n = 0; n < batch; n++) {
      for (let gi = 0; gi < group; gi++) {
        const yOff = (n * outChannels + gi * mg) * p, xOff = (n * inChannels + gi * cg) * planeIn;
        const dyView = matrixView(dy, yOff, p);
        if (dw && !dwDone) {
          im2col(xd, xOff, win, col);
          sgemm(mg, k, p, 1, dyView, matrixView(col, 0, p, true), dw, gi * mg * k, k, true);
        }
        if (dxGemm && !dxDone) {
          sgemm(k, p, mg, 1, matrixView(wd, gi * mg * k, k, true), dyView, dcol!, 0, p, false);
          col2imAdd(dcol!, win, dxGemm, xOff);
        }
      }
    }
    let db = dwDone ? dbLent : undefined;
    if (needs[2] && bd && !db) {
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
  return { outputs: [f32Tensor([batch, outChannels, win.outH, win.outW], y)], backward };
};

export const CONV_OPS: Record<string, OpVersion[]> = {
  Conv: withGrad([{ since: 1, kernel: conv, prepare: prepareConv }], convGrad),
  ConvTranspose: [{ since: 1, kernel: convTranspose }],
};
