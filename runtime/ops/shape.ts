/**
 * Ops that move, select or retype elements without arithmetic: Reshape, Transpose, Concat,
 * Slice, Gather, Pad, Cast, Expand, ... and the constant producers (Constant, ConstantOfShape,
 * Shape, Size, Range). They work on every dtype, including int64 and strings. Shape math sits
 * in exported helpers so the planner's shape inference and a later backward pass share it.
 * @module
 */
import { allocData, type DType, ONNX_DTYPE, sizeOf, type Tensor, type TensorData } from "../../format/mod.ts";
import {
  broadcastOffsets, broadcastShape, fromNumbers, int64Tensor, intList, isFloat, makeTensor, normAxis, numbers,
  numberToHalf, stridesOf, stridedOffsets, variants,
} from "./elementwise.ts";
import { type Attrs, type GradOp, type GradResult, KernelError, type Kernel, type OpVersion, withGrad } from "./types.ts";

/** Any tensor storage, indexed generically (typed arrays of numbers or bigints, string arrays). */
type AnyArray = { [i: number]: unknown; length: number };

/** A tensor of `dtype` whose element i is `src[offsets[i]]`. */
export function takeElements(src: Tensor, offsets: ArrayLike<number>, dims: number[]): Tensor {
  const n = offsets.length;
  const out = allocData(src.dtype, n) as unknown as AnyArray;
  const s = src.data as unknown as AnyArray;
  for (let i = 0; i < n; i++) out[i] = s[offsets[i]!];
  return makeTensor(src.dtype, dims, out as unknown as TensorData);
}

/** A copy of a tensor with new dims (same element order). */
const withDims = (t: Tensor, dims: number[]): Tensor => makeTensor(t.dtype, dims, t.data);

/** The dtype whose TensorProto.DataType number is `code`. */
export function dtypeOfOnnx(code: number): DType {
  for (const [k, v] of Object.entries(ONNX_DTYPE)) if (v === code) return k as DType;
  throw new KernelError(`unsupported ONNX data type ${code}`);
}

// ---------------------------------------------------------------------------------------------
// Shape helpers (used by kernels and by shape inference)

/** Reshape target dims: 0 copies the input dim (unless allowzero), -1 is inferred. */
export function reshapeDims(inDims: readonly number[], shape: readonly number[], allowZero: boolean): number[] {
  const out = shape.map((d, i) => (d === 0 && !allowZero ? inDims[i]! : d));
  const neg = out.indexOf(-1);
  if (neg >= 0) {
    const known = out.reduce((p, d, i) => (i === neg ? p : p * d), 1);
    out[neg] = known === 0 ? 0 : sizeOf(inDims) / known;
  }
  if (!Number.isInteger(out[neg] ?? 0) || sizeOf(out) !== sizeOf(inDims)) {
    throw new KernelError(`Reshape: cannot reshape [${inDims.join(",")}] to [${shape.join(",")}]`);
  }
  return out;
}

/** Flatten to 2-D around `axis`. */
export function flattenDims(dims: readonly number[], axis: number): number[] {
  const a = axis < 0 ? axis + dims.length : axis;
  if (a < 0 || a > dims.length) throw new KernelError(`Flatten: axis ${axis} out of range for rank ${dims.length}`);
  return [sizeOf(dims.slice(0, a)), sizeOf(dims.slice(a))];
}

/** Dims after Squeeze of `axes` (all size-1 dims when axes is empty). */
export function squeezeDims(dims: readonly number[], axes: readonly number[] | undefined): number[] {
  if (!axes || axes.length === 0) return dims.filter((d) => d !== 1);
  const drop = new Set(axes.map((a) => normAxis(a, dims.length, "Squeeze")));
  for (const a of drop) if (dims[a] !== 1) throw new KernelError(`Squeeze: dim ${a} is ${dims[a]}, not 1`);
  return dims.filter((_, i) => !drop.has(i));
}

/** Dims after Unsqueeze of `axes` (axes refer to the output rank). */
export function unsqueezeDims(dims: readonly number[], axes: readonly number[]): number[] {
  const rank = dims.length + axes.length;
  const ins = new Set(axes.map((a) => normAxis(a, rank, "Unsqueeze")));
  if (ins.size !== axes.length) throw new KernelError("Unsqueeze: repeated axis");
  const out: number[] = [];
  let k = 0;
  for (let i = 0; i < rank; i++) out.push(ins.has(i) ? 1 : dims[k++]!);
  return out;
}

/** Transpose: output dims and, for each output element, its input offset. */
export function transposeOffsets(dims: readonly number[], perm: readonly number[]): { dims: number[]; offsets: Int32Array } {
  const rank = dims.length;
  if (perm.length !== rank) throw new KernelError(`Transpose: perm length ${perm.length} != rank ${rank}`);
  const outDims = perm.map((p) => dims[p]!);
  const inStrides = stridesOf(dims);
  const offsets = stridedOffsets(outDims, perm.map((p) => inStrides[p]!));
  return { dims: outDims, offsets };
}

/** Normalized Slice parameters for one axis (numpy semantics, clamped). */
export function sliceRange(dim: number, start: number, end: number, step: number): { start: number; count: number } {
  if (step === 0) throw new KernelError("Slice: step 0");
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  if (step > 0) {
    start = Math.min(Math.max(start, 0), dim);
    end = Math.min(Math.max(end, 0), dim);
    return { start, count: Math.max(0, Math.ceil((end - start) / step)) };
  }
  start = Math.min(Math.max(start, -1), dim - 1);
  end = Math.min(Math.max(end, -1), dim - 1);
  return { start, count: Math.max(0, Math.ceil((end - start) / step)) };
}

/** Offsets of a strided box: per axis a start, count and step. */
function boxOffsets(dims: readonly number[], starts: number[], counts: number[], steps: number[]): Int32Array {
  const rank = dims.length;
  const st = stridesOf(dims);
  const n = sizeOf(counts);
  const out = new Int32Array(n);
  if (n === 0) return out;
  const idx = new Array<number>(rank).fill(0);
  let cur = 0;
  for (let k = 0; k < rank; k++) cur += starts[k]! * st[k]!;
  for (let i = 0; i < n; i++) {
    out[i] = cur;
    for (let k = rank - 1; k >= 0; k--) {
      idx[k]!++;
      cur += steps[k]! * st[k]!;
      if (idx[k]! < counts[k]!) break;
      cur -= steps[k]! * st[k]! * idx[k]!;
      idx[k] = 0;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Kernels

const optInts = (t: Tensor | undefined): number[] | undefined => (t ? intList(t) : undefined);

const identity: Kernel = (inputs) => [inputs[0]!];

const constantKernel: Kernel = (_inputs, attrs) => {
  if (attrs.has("value")) return [attrs.tensor("value")];
  if (attrs.has("value_float")) return [makeTensor("float32", [], Float32Array.of(attrs.float("value_float")))];
  if (attrs.has("value_floats")) { const v = attrs.floats("value_floats"); return [makeTensor("float32", [v.length], Float32Array.from(v))]; }
  if (attrs.has("value_int")) return [int64Tensor([attrs.int("value_int")], [])];
  if (attrs.has("value_ints")) return [int64Tensor(attrs.ints("value_ints"))];
  if (attrs.has("value_string")) return [makeTensor("string", [], [attrs.string("value_string")])];
  throw new KernelError("Constant: no value attribute (sparse_value is not supported)");
};

const constantOfShape: Kernel = (inputs, attrs) => {
  const dims = intList(inputs[0]!);
  const v = attrs.has("value") ? attrs.tensor("value") : makeTensor("float32", [1], Float32Array.of(0));
  const n = sizeOf(dims);
  const out = allocData(v.dtype, n) as unknown as AnyArray;
  const x = (v.data as unknown as AnyArray)[0];
  for (let i = 0; i < n; i++) out[i] = x;
  return [makeTensor(v.dtype, dims, out as unknown as TensorData)];
};

const dropoutKernel = (since: number): Kernel => (inputs, attrs, ctx) => {
  const x = inputs[0]!;
  let training = false, ratio = 0.5;
  if (since >= 12) {
    if (inputs[1]) ratio = numbers(inputs[1])[0]!;
    if (inputs[2]) training = numbers(inputs[2])[0] !== 0;
  } else {
    ratio = attrs.float("ratio", 0.5);
    training = since < 7 && attrs.int("is_test", 0) === 0;
  }
  if (training && ratio !== 0) throw new KernelError("Dropout: training mode (random masking) is not supported");
  const out: Tensor[] = [x];
  if ((ctx.outputCount ?? 1) > 1) out.push(makeTensor("bool", x.dims.slice(), new Uint8Array(x.data.length).fill(1)));
  return out;
};

const flattenKernel: Kernel = (inputs, attrs) => [withDims(inputs[0]!, flattenDims(inputs[0]!.dims, attrs.int("axis", 1)))];

const reshapeKernel = (since: number): Kernel => (inputs, attrs, _ctx) => {
  const x = inputs[0]!;
  const shape = since >= 5 ? intList(inputs[1]!) : attrs.ints("shape");
  return [withDims(x, reshapeDims(x.dims, shape, attrs.int("allowzero", 0) === 1))];
};

const transposeKernel: Kernel = (inputs, attrs) => {
  const x = inputs[0]!;
  const perm = attrs.ints("perm", x.dims.map((_, i) => x.dims.length - 1 - i));
  const { dims, offsets } = transposeOffsets(x.dims, perm);
  return [takeElements(x, offsets, dims)];
};

const squeezeKernel = (since: number): Kernel => (inputs, attrs, _ctx) => {
  const axes = since >= 13 ? optInts(inputs[1]) : attrs.ints("axes", []);
  return [withDims(inputs[0]!, squeezeDims(inputs[0]!.dims, axes))];
};

const unsqueezeKernel = (since: number): Kernel => (inputs, attrs, _ctx) => {
  const axes = since >= 13 ? intList(inputs[1]!) : attrs.ints("axes");
  return [withDims(inputs[0]!, unsqueezeDims(inputs[0]!.dims, axes))];
};

/** Concatenate along an axis. */
export function concat(xs: readonly Tensor[], axis: number): Tensor {
  const first = xs[0]!;
  const rank = first.dims.length;
  const a = normAxis(axis, rank, "Concat");
  const dims = first.dims.slice();
  dims[a] = 0;
  for (const x of xs) {
    if (x.dims.length !== rank || x.dims.some((d, i) => i !== a && d !== first.dims[i])) {
      throw new KernelError(`Concat: shapes [${first.dims.join(",")}] and [${x.dims.join(",")}] differ off axis ${a}`);
    }
    dims[a]! += x.dims[a]!;
  }
  const outer = sizeOf(dims.slice(0, a));
  const inner = sizeOf(dims.slice(a + 1));
  const out = allocData(first.dtype, sizeOf(dims));
  let o = 0;
  if (Array.isArray(out)) {
    for (let i = 0; i < outer; i++) {
      for (const x of xs) {
        const len = x.dims[a]! * inner, src = x.data as string[];
        for (let k = 0; k < len; k++) out[o++] = src[i * len + k]!;
      }
    }
  } else {
    // typed arrays: block copies (channel concat in Inception/DenseNet-style models moves whole planes)
    const dst = out as unknown as { set(src: ArrayLike<unknown>, at: number): void };
    for (let i = 0; i < outer; i++) {
      for (const x of xs) {
        const len = x.dims[a]! * inner;
        dst.set((x.data as unknown as { subarray(b: number, e: number): ArrayLike<unknown> }).subarray(i * len, (i + 1) * len), o);
        o += len;
      }
    }
  }
  return makeTensor(first.dtype, dims, out);
}

const concatKernel: Kernel = (inputs, attrs) => {
  const xs = inputs.filter((t): t is Tensor => t !== undefined);
  return [concat(xs, attrs.int("axis"))];
};

const splitKernel = (since: number): Kernel => (inputs, attrs, ctx) => {
  const x = inputs[0]!;
  const a = normAxis(attrs.int("axis", 0), x.dims.length, "Split");
  const parts = ctx.outputCount ?? 1;
  let sizes = since >= 13 ? optInts(inputs[1]) : attrs.ints("split", []);
  if (!sizes || sizes.length === 0) {
    const dim = x.dims[a]!;
    if (dim % parts !== 0) throw new KernelError(`Split: dim ${dim} does not split into ${parts} equal parts`);
    sizes = new Array<number>(parts).fill(dim / parts);
  }
  if (sizes.reduce((p, s) => p + s, 0) !== x.dims[a]) throw new KernelError(`Split: sizes ${sizes} do not sum to ${x.dims[a]}`);
  const outs: Tensor[] = [];
  let start = 0;
  for (const s of sizes) {
    const starts = x.dims.map(() => 0), counts = x.dims.slice(), steps = x.dims.map(() => 1);
    starts[a] = start;
    counts[a] = s;
    outs.push(takeElements(x, boxOffsets(x.dims, starts, counts, steps), counts));
    start += s;
  }
  return outs;
};

const shapeKernel: Kernel = (inputs, attrs) => {
  const dims = inputs[0]!.dims;
  const r = dims.length;
  const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + r : v, 0), r);
  const start = clamp(attrs.int("start", 0)), end = clamp(attrs.int("end", r));
  return [int64Tensor(dims.slice(start, Math.max(start, end)))];
};

const sizeKernel: Kernel = (inputs) => [int64Tensor([inputs[0]!.data.length], [])];

const gatherKernel: Kernel = (inputs, attrs) => {
  const x = inputs[0]!, ind = inputs[1]!;
  const a = normAxis(attrs.int("axis", 0), x.dims.length, "Gather");
  const idx = intList(ind);
  const dimA = x.dims[a]!;
  const outer = sizeOf(x.dims.slice(0, a)), inner = sizeOf(x.dims.slice(a + 1));
  const dims = [...x.dims.slice(0, a), ...ind.dims, ...x.dims.slice(a + 1)];
  const offsets = new Int32Array(sizeOf(dims));
  let o = 0;
  for (let i = 0; i < outer; i++) {
    for (let j of idx) {
      if (j < 0) j += dimA;
      if (j < 0 || j >= dimA) throw new KernelError(`Gather: index out of range [-${dimA}, ${dimA - 1}]`);
      const base = (i * dimA + j) * inner;
      for (let k = 0; k < inner; k++) offsets[o++] = base + k;
    }
  }
  return [takeElements(x, offsets, dims)];
};

const gatherElementsKernel: Kernel = (inputs, attrs) => {
  const x = inputs[0]!, ind = inputs[1]!;
  const rank = x.dims.length;
  const a = normAxis(attrs.int("axis", 0), rank, "GatherElements");
  const idx = intList(ind);
  const xs = stridesOf(x.dims);
  const counter = new Array<number>(rank).fill(0);
  const offsets = new Int32Array(idx.length);
  for (let i = 0; i < idx.length; i++) {
    let j = idx[i]!;
    if (j < 0) j += x.dims[a]!;
    let off = 0;
    for (let k = 0; k < rank; k++) off += (k === a ? j : counter[k]!) * xs[k]!;
    offsets[i] = off;
    for (let k = rank - 1; k >= 0; k--) { if (++counter[k]! < ind.dims[k]!) break; counter[k] = 0; }
  }
  return [takeElements(x, offsets, ind.dims.slice())];
};

const sliceKernel = (since: number): Kernel => (inputs, attrs, _ctx) => {
  const x = inputs[0]!;
  const rank = x.dims.length;
  let starts: number[], ends: number[], axes: number[] | undefined, steps: number[] | undefined;
  if (since >= 10) {
    starts = intList(inputs[1]!); ends = intList(inputs[2]!); axes = optInts(inputs[3]); steps = optInts(inputs[4]);
  } else {
    starts = attrs.ints("starts"); ends = attrs.ints("ends"); axes = attrs.has("axes") ? attrs.ints("axes") : undefined;
  }
  axes ??= starts.map((_, i) => i);
  steps ??= starts.map(() => 1);
  const st = x.dims.map(() => 0), counts = x.dims.slice(), stp = x.dims.map(() => 1);
  axes.forEach((ax, i) => {
    const a = normAxis(ax, rank, "Slice");
    const r = sliceRange(x.dims[a]!, starts[i]!, ends[i]!, steps![i]!);
    st[a] = r.start; counts[a] = r.count; stp[a] = steps![i]!;
  });
  return [takeElements(x, boxOffsets(x.dims, st, counts, stp), counts)];
};

/**
 * The shortest decimal that reads back as the same float32 (numpy's float32 str), in Python's
 * notation: positional for 1e-4 ≤ |v| < 1e16, else d.ddde±XX; "NaN", "INF", "-INF" as ONNX spells them.
 */
export function float32ToString(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "INF" : "-INF";
  if (v === 0) return Object.is(v, -0) ? "-0.0" : "0.0";
  let digits = v.toPrecision(9);
  for (let p = 1; p <= 9; p++) {
    const t = v.toPrecision(p);
    if (Math.fround(Number(t)) === v) { digits = t; break; }
  }
  const n = Number(digits), a = Math.abs(n);
  if (a >= 1e-4 && a < 1e16) {
    const pos = a >= 1e-6 ? String(n) : n.toFixed(20).replace(/0+$/, "");
    return Number.isInteger(n) ? `${pos}.0` : pos;
  }
  const [mant, exp] = n.toExponential().split("e") as [string, string];
  const e = Number(exp);
  return `${mant}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
}

/** Parse a number as Cast from string does (also "NaN", "INF", "+INF", "-INF", any case). */
function parseNumber(s: string): number {
  const t = s.trim().toUpperCase();
  if (t === "NAN") return NaN;
  if (t === "INF" || t === "+INF" || t === "INFINITY") return Infinity;
  if (t === "-INF" || t === "-INFINITY") return -Infinity;
  return Number(t);
}

/** Convert a tensor to another dtype (float→int truncates, like a C cast). */
export function castTensor(x: Tensor, to: DType): Tensor {
  if (x.dtype === to) return x;
  if (to === "string") {
    const v = numbers(x);
    const fmt = x.dtype === "float32" || x.dtype === "float16" ? float32ToString : (n: number) => String(n);
    return makeTensor("string", x.dims.slice(), Array.from(v, fmt));
  }
  if (x.dtype === "string") {
    const parsed = Float64Array.from(x.data as string[], parseNumber);
    return castTensor(makeTensor("float64", x.dims.slice(), parsed), to);
  }
  if ((x.dtype === "int64" || x.dtype === "uint64") && (to === "int64" || to === "uint64")) {
    const out = to === "int64" ? BigInt64Array.from(x.data as BigUint64Array, (v) => BigInt.asIntN(64, v))
      : BigUint64Array.from(x.data as BigInt64Array, (v) => BigInt.asUintN(64, v));
    return makeTensor(to, x.dims.slice(), out);
  }
  const v = numbers(x);
  if (to === "float16") return makeTensor(to, x.dims.slice(), Uint16Array.from(v, numberToHalf));
  if (!isFloat(to) && to !== "bool") {
    const t = new Float64Array(v.length);
    for (let i = 0; i < v.length; i++) t[i] = Number.isFinite(v[i]!) ? Math.trunc(v[i]!) : 0;
    return makeTensor(to, x.dims.slice(), fromNumbers(to, t));
  }
  return makeTensor(to, x.dims.slice(), fromNumbers(to, v));
}

const castKernel: Kernel = (inputs, attrs) => [castTensor(inputs[0]!, dtypeOfOnnx(attrs.int("to")))];
const castLikeKernel: Kernel = (inputs) => [castTensor(inputs[0]!, inputs[1]!.dtype)];

const expandKernel: Kernel = (inputs) => {
  const x = inputs[0]!;
  const dims = broadcastShape([x.dims, intList(inputs[1]!)], "Expand");
  return [takeElements(x, broadcastOffsets(x.dims, dims), dims)];
};

const tileKernel: Kernel = (inputs) => {
  const x = inputs[0]!;
  const reps = intList(inputs[1]!);
  const rank = x.dims.length;
  const dims = x.dims.map((d, i) => d * reps[i]!);
  const xs = stridesOf(x.dims);
  const n = sizeOf(dims);
  const offsets = new Int32Array(n);
  const idx = new Array<number>(rank).fill(0);
  for (let i = 0; i < n; i++) {
    let off = 0;
    for (let k = 0; k < rank; k++) off += (idx[k]! % x.dims[k]!) * xs[k]!;
    offsets[i] = off;
    for (let k = rank - 1; k >= 0; k--) { if (++idx[k]! < dims[k]!) break; idx[k] = 0; }
  }
  return [takeElements(x, offsets, dims)];
};

/** Pad: pads = [x1_begin, x2_begin, ..., x1_end, x2_end, ...]; negative pads crop. */
export function pad(x: Tensor, pads: readonly number[], mode: string, value: number): Tensor {
  const rank = x.dims.length;
  if (pads.length !== 2 * rank) throw new KernelError(`Pad: ${pads.length} pads for rank ${rank}`);
  const dims = x.dims.map((d, i) => d + pads[i]! + pads[i + rank]!);
  const n = sizeOf(dims);
  const xs = stridesOf(x.dims);
  const src = x.data as unknown as AnyArray;
  const out = allocData(x.dtype, n) as unknown as AnyArray;
  const fill: unknown = x.dtype === "int64" || x.dtype === "uint64" ? BigInt(Math.trunc(value))
    : x.dtype === "float16" ? numberToHalf(value) : value;
  const idx = new Array<number>(rank).fill(0);
  for (let i = 0; i < n; i++) {
    let off = 0, inside = true;
    for (let k = 0; k < rank; k++) {
      let j = idx[k]! - pads[k]!;
      const d = x.dims[k]!;
      if (j < 0 || j >= d) {
        if (mode === "constant") { inside = false; break; }
        if (mode === "edge") j = j < 0 ? 0 : d - 1;
        else if (mode === "reflect") {
          if (d === 1) j = 0;
          else {
            const period = 2 * (d - 1);
            j = ((j % period) + period) % period;
            if (j >= d) j = period - j;
          }
        } else throw new KernelError(`Pad: unknown mode '${mode}'`);
      }
      off += j * xs[k]!;
    }
    out[i] = inside ? src[off] : fill;
    for (let k = rank - 1; k >= 0; k--) { if (++idx[k]! < dims[k]!) break; idx[k] = 0; }
  }
  return makeTensor(x.dtype, dims, out as unknown as TensorData);
}

const padKernel = (since: number): Kernel => (inputs, attrs, _ctx) => {
  const x = inputs[0]!;
  const mode = attrs.string("mode", "constant");
  if (since >= 11) {
    let pads = intList(inputs[1]!);
    const value = inputs[2] && inputs[2].data.length ? numbers(inputs[2])[0]! : 0;
    if (inputs[3]) {
      const axes = intList(inputs[3]).map((a) => normAxis(a, x.dims.length, "Pad"));
      const full = new Array<number>(2 * x.dims.length).fill(0);
      axes.forEach((a, i) => { full[a] = pads[i]!; full[a + x.dims.length] = pads[i + axes.length]!; });
      pads = full;
    }
    return [pad(x, pads, mode, value)];
  }
  return [pad(x, attrs.ints(since >= 2 ? "pads" : "paddings"), mode, attrs.float("value", 0))];
};

const rangeKernel: Kernel = (inputs) => {
  const [s, l, d] = inputs.map((t) => numbers(t!)[0]!) as [number, number, number];
  const n = Math.max(Math.ceil((l - s) / d), 0);
  const vals = new Float64Array(n);
  for (let i = 0; i < n; i++) vals[i] = s + i * d;
  const dtype = inputs[0]!.dtype;
  return [makeTensor(dtype, [n], fromNumbers(dtype, dtype === "float32" ? Float32Array.from(vals) : vals))];
};

const depthToSpace: Kernel = (inputs, attrs) => {
  const x = inputs[0]!;
  const b = attrs.int("blocksize");
  const [n, c, h, w] = x.dims as [number, number, number, number];
  const crd = attrs.string("mode", "DCR") === "CRD";
  const tmpDims = crd ? [n, c / (b * b), b, b, h, w] : [n, b, b, c / (b * b), h, w];
  const perm = crd ? [0, 1, 4, 2, 5, 3] : [0, 3, 4, 1, 5, 2];
  const { offsets } = transposeOffsets(tmpDims, perm);
  return [takeElements(x, offsets, [n, c / (b * b), h * b, w * b])];
};

const spaceToDepth: Kernel = (inputs, attrs) => {
  const x = inputs[0]!;
  const b = attrs.int("blocksize");
  const [n, c, h, w] = x.dims as [number, number, number, number];
  const { offsets } = transposeOffsets([n, c, h / b, b, w / b, b], [0, 3, 5, 1, 2, 4]);
  return [takeElements(x, offsets, [n, c * b * b, h / b, w / b])];
};

const triluKernel: Kernel = (inputs, attrs) => {
  const x = inputs[0]!;
  const k = inputs[1] ? intList(inputs[1])[0]! : 0;
  const upper = attrs.int("upper", 1) === 1;
  const r = x.dims.length;
  const rows = x.dims[r - 2]!, cols = x.dims[r - 1]!;
  const src = x.data as unknown as AnyArray;
  const out = allocData(x.dtype, src.length) as unknown as AnyArray;
  for (let i = 0; i < src.length; i++) {
    const col = i % cols, row = Math.floor(i / cols) % rows;
    const keep = upper ? col - row >= k : col - row <= k;
    if (keep) out[i] = src[i];
  }
  return [makeTensor(x.dtype, x.dims.slice(), out as unknown as TensorData)];
};

const eyeLike: Kernel = (inputs, attrs) => {
  const x = inputs[0]!;
  const dtype = attrs.has("dtype") ? dtypeOfOnnx(attrs.int("dtype")) : x.dtype;
  const k = attrs.int("k", 0);
  const [r, c] = x.dims as [number, number];
  const vals = new Float64Array(r * c);
  for (let i = 0; i < r; i++) if (i + k >= 0 && i + k < c) vals[i * c + i + k] = 1;
  return [makeTensor(dtype, [r, c], fromNumbers(dtype, vals))];
};

const cumSum: Kernel = (inputs, attrs) => {
  const x = inputs[0]!;
  const a = normAxis(intList(inputs[1]!)[0]!, x.dims.length, "CumSum");
  const exclusive = attrs.int("exclusive", 0) === 1, reverse = attrs.int("reverse", 0) === 1;
  const v = numbers(x);
  const out = new Float64Array(v.length);
  const d = x.dims[a]!, inner = sizeOf(x.dims.slice(a + 1)), outer = sizeOf(x.dims.slice(0, a));
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      let acc = 0;
      for (let s = 0; s < d; s++) {
        const j = reverse ? d - 1 - s : s;
        const p = (o * d + j) * inner + i;
        if (exclusive) { out[p] = acc; acc += v[p]!; } else { acc += v[p]!; out[p] = acc; }
      }
    }
  }
  return [makeTensor(x.dtype, x.dims.slice(), fromNumbers(x.dtype, x.dtype === "float32" ? Float32Array.from(out) : out))];
};

const nonZero: Kernel = (inputs) => {
  const x = inputs[0]!;
  const v = numbers(x);
  const st = stridesOf(x.dims);
  const hits: number[] = [];
  for (let i = 0; i < v.length; i++) if (v[i]) hits.push(i);
  const r = x.dims.length;
  const out = new Array<number>(r * hits.length);
  hits.forEach((flat, j) => {
    let rem = flat;
    for (let k = 0; k < r; k++) { out[k * hits.length + j] = Math.floor(rem / st[k]!); rem %= st[k]!; }
  });
  return [int64Tensor(out, [r, hits.length])];
};

const oneHot: Kernel = (inputs, attrs) => {
  const ind = numbers(inputs[0]!), depth = Math.trunc(numbers(inputs[1]!)[0]!), values = inputs[2]!;
  const vv = numbers(values);
  const rank = inputs[0]!.dims.length + 1;
  const a = normAxis(attrs.int("axis", -1), rank, "OneHot");
  const dims = [...inputs[0]!.dims.slice(0, a), depth, ...inputs[0]!.dims.slice(a)];
  const outer = sizeOf(inputs[0]!.dims.slice(0, a)), inner = sizeOf(inputs[0]!.dims.slice(a));
  const out = new Float64Array(sizeOf(dims)).fill(vv[0]!);
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      let k = Math.trunc(ind[o * inner + i]!);
      if (k < 0) k += depth;
      if (k >= 0 && k < depth) out[(o * depth + k) * inner + i] = vv[1]!;
    }
  }
  return [makeTensor(values.dtype, dims, fromNumbers(values.dtype, out))];
};

// ---------------------------------------------------------------------------------------------
// Indexed reads and writes: GatherND, ScatterND, ScatterElements, Compress, ReverseSequence, Unique

const gatherND: Kernel = (inputs, attrs) => {
  const x = inputs[0]!, ind = inputs[1]!;
  const b = attrs.int("batch_dims", 0);
  const idx = intList(ind);
  const k = ind.dims[ind.dims.length - 1]!;
  const tuples = idx.length / Math.max(k, 1);
  const perBatch = sizeOf(ind.dims.slice(b, -1));
  const slice = sizeOf(x.dims.slice(b + k));
  const batchStride = sizeOf(x.dims.slice(b));
  const xs = stridesOf(x.dims.slice(b));
  const offsets = new Int32Array(tuples * slice);
  for (let t = 0; t < tuples; t++) {
    let off = Math.floor(t / perBatch) * batchStride;
    for (let j = 0; j < k; j++) {
      let v = idx[t * k + j]!;
      if (v < 0) v += x.dims[b + j]!;
      off += v * xs[j]!;
    }
    for (let q = 0; q < slice; q++) offsets[t * slice + q] = off + q;
  }
  return [takeElements(x, offsets, [...ind.dims.slice(0, -1), ...x.dims.slice(b + k)])];
};

type Combine = (old: number, upd: number) => number;
const COMBINE: Record<string, Combine | undefined> = {
  none: undefined, add: (a, u) => a + u, mul: (a, u) => a * u, max: Math.max, min: Math.min,
};

/** A writable copy of `data` and an element writer honouring `reduction`. */
function scatterTarget(data: Tensor, reduction: string): { out: AnyArray; write: (at: number, src: AnyArray, from: number) => void } {
  const out = (data.data as unknown as { slice(): AnyArray }).slice();
  if (!(reduction in COMBINE)) throw new KernelError(`Scatter: unknown reduction '${reduction}'`);
  const f = COMBINE[reduction];
  const big = data.dtype === "int64" || data.dtype === "uint64";
  const write = (at: number, src: AnyArray, from: number) => {
    if (!f) { out[at] = src[from]; return; }
    if (big) out[at] = BigInt(f(Number(out[at]), Number(src[from])));
    else out[at] = f(out[at] as number, src[from] as number);
  };
  return { out, write };
}

const scatterND: Kernel = (inputs, attrs) => {
  const x = inputs[0]!, ind = inputs[1]!, upd = inputs[2]!;
  const { out, write } = scatterTarget(x, attrs.string("reduction", "none"));
  const idx = intList(ind);
  const k = ind.dims[ind.dims.length - 1]!;
  const slice = sizeOf(x.dims.slice(k));
  const xs = stridesOf(x.dims);
  const src = upd.data as unknown as AnyArray;
  for (let t = 0; t * k < idx.length; t++) {
    let off = 0;
    for (let j = 0; j < k; j++) { let v = idx[t * k + j]!; if (v < 0) v += x.dims[j]!; off += v * xs[j]!; }
    for (let q = 0; q < slice; q++) write(off + q, src, t * slice + q);
  }
  return [makeTensor(x.dtype, x.dims.slice(), out as unknown as TensorData)];
};

const scatterElements: Kernel = (inputs, attrs) => {
  const x = inputs[0]!, ind = inputs[1]!, upd = inputs[2]!;
  const r = x.dims.length;
  const a = normAxis(attrs.int("axis", 0), r, "ScatterElements");
  const { out, write } = scatterTarget(x, attrs.string("reduction", "none"));
  const idx = intList(ind);
  const xs = stridesOf(x.dims);
  const src = upd.data as unknown as AnyArray;
  const pos = new Array<number>(r).fill(0);
  for (let i = 0; i < idx.length; i++) {
    let j = idx[i]!;
    if (j < 0) j += x.dims[a]!;
    if (j < 0 || j >= x.dims[a]!) throw new KernelError(`ScatterElements: index ${idx[i]} out of range`);
    let off = 0;
    for (let k = 0; k < r; k++) off += (k === a ? j : pos[k]!) * xs[k]!;
    write(off, src, i);
    for (let k = r - 1; k >= 0; k--) { if (++pos[k]! < ind.dims[k]!) break; pos[k] = 0; }
  }
  return [makeTensor(x.dtype, x.dims.slice(), out as unknown as TensorData)];
};

const compress: Kernel = (inputs, attrs) => {
  let x = inputs[0]!;
  const cond = numbers(inputs[1]!);
  if (!attrs.has("axis")) x = withDims(x, [x.data.length]);
  const a = normAxis(attrs.has("axis") ? attrs.int("axis") : 0, x.dims.length, "Compress");
  const keep: number[] = [];
  for (let i = 0; i < Math.min(cond.length, x.dims[a]!); i++) if (cond[i]) keep.push(i);
  const outer = sizeOf(x.dims.slice(0, a)), inner = sizeOf(x.dims.slice(a + 1)), d = x.dims[a]!;
  const offsets: number[] = [];
  for (let o = 0; o < outer; o++) for (const k of keep) for (let q = 0; q < inner; q++) offsets.push((o * d + k) * inner + q);
  const dims = x.dims.slice();
  dims[a] = keep.length;
  return [takeElements(x, offsets, dims)];
};

const reverseSequence: Kernel = (inputs, attrs) => {
  const x = inputs[0]!;
  const lens = intList(inputs[1]!);
  const ba = attrs.int("batch_axis", 1), ta = attrs.int("time_axis", 0);
  const xs = stridesOf(x.dims);
  const n = x.data.length;
  const offsets = new Int32Array(n);
  const pos = new Array<number>(x.dims.length).fill(0);
  for (let i = 0; i < n; i++) {
    const t = pos[ta]!, len = lens[pos[ba]!]!;
    const st = t < len ? len - 1 - t : t;
    let off = 0;
    for (let k = 0; k < x.dims.length; k++) off += (k === ta ? st : pos[k]!) * xs[k]!;
    offsets[i] = off;
    for (let k = x.dims.length - 1; k >= 0; k--) { if (++pos[k]! < x.dims[k]!) break; pos[k] = 0; }
  }
  return [takeElements(x, offsets, x.dims.slice())];
};

/** Unique elements (or sub-tensors along `axis`), numpy-style: sorted, or in order of first occurrence. */
const unique: Kernel = (inputs, attrs) => {
  let x = inputs[0]!;
  const hasAxis = attrs.has("axis");
  if (!hasAxis) x = withDims(x, [x.data.length]);
  const a = hasAxis ? normAxis(attrs.int("axis"), x.dims.length, "Unique") : 0;
  const sorted = attrs.int("sorted", 1) === 1;
  const d = x.dims[a]!, outer = sizeOf(x.dims.slice(0, a)), inner = sizeOf(x.dims.slice(a + 1));
  const v = numbers(x);
  const sliceOf = (k: number) => {
    const out: number[] = [];
    for (let o = 0; o < outer; o++) for (let q = 0; q < inner; q++) out.push(v[(o * d + k) * inner + q]!);
    return out;
  };
  const slices = Array.from({ length: d }, (_, k) => sliceOf(k));
  const firstOf = new Map<string, number>();
  const order: number[] = [];
  slices.forEach((sl, k) => { const key = sl.join(","); if (!firstOf.has(key)) { firstOf.set(key, k); order.push(k); } });
  if (sorted) {
    order.sort((p, q) => {
      const A = slices[p]!, B = slices[q]!;
      for (let i = 0; i < A.length; i++) if (A[i] !== B[i]) return A[i]! - B[i]!;
      return 0;
    });
  }
  const rank = new Map(order.map((k, i) => [slices[k]!.join(","), i]));
  const inverse = slices.map((sl) => rank.get(sl.join(","))!);
  const counts = order.map(() => 0);
  for (const r of inverse) counts[r]!++;
  const offsets: number[] = [];
  for (let o = 0; o < outer; o++) for (const k of order) for (let q = 0; q < inner; q++) offsets.push((o * d + k) * inner + q);
  const dims = x.dims.slice();
  dims[a] = order.length;
  return [takeElements(x, offsets, dims), int64Tensor(order), int64Tensor(inverse), int64Tensor(counts)];
};

// ---------------------------------------------------------------------------------------------
// Generators: window functions (opset 17)

/** A generalized cosine window a0 − a1·cos(2πn/N) + a2·cos(4πn/N), N = size (periodic) or size − 1. */
function cosineWindow(a0: number, a1: number, a2: number): Kernel {
  return (inputs, attrs) => {
    const size = intList(inputs[0]!)[0]!;
    const dtype = dtypeOfOnnx(attrs.int("output_datatype", 1));
    const n = attrs.int("periodic", 1) === 1 ? size : size - 1;
    const w = new Float64Array(size);
    for (let i = 0; i < size; i++) w[i] = a0 - a1 * Math.cos((2 * Math.PI * i) / n) + a2 * Math.cos((4 * Math.PI * i) / n);
    return [makeTensor(dtype, [size], fromNumbers(dtype, w))];
  };
}

// ---------------------------------------------------------------------------------------------
// Resize / Upsample: separable 1-D interpolation per axis, following the ONNX reference
// (onnx/backend/test/case/node/resize.py: interpolate_1d_with_x and its neighbour choice).

/** Options of one Resize call. */
export interface ResizeOptions {
  mode: "nearest" | "linear" | "cubic";
  coordMode: string;
  nearestMode: string;
  cubicA: number;
  excludeOutside: boolean;
  extrapolation: number;
  /** [start_1..start_N, end_1..end_N] for tf_crop_and_resize. */
  roi?: number[];
}

function cubicCoeffs(r: number, a: number): number[] {
  const p = r + 1, q = 1 - r, t = 2 - r;
  return [((a * p - 5 * a) * p + 8 * a) * p - 4 * a, ((a + 2) * r - (a + 3)) * r * r + 1, ((a + 2) * q - (a + 3)) * q * q + 1,
    ((a * t - 5 * a) * t + 8 * a) * t - 4 * a];
}

function nearestCoeffs(r: number, mode: string): number[] {
  if (Number.isInteger(r)) return [0, 1];
  switch (mode) {
    case "round_prefer_floor": return r <= 0.5 ? [1, 0] : [0, 1];
    case "round_prefer_ceil": return r < 0.5 ? [1, 0] : [0, 1];
    case "floor": return [1, 0];
    case "ceil": return [0, 1];
  }
  throw new KernelError(`Resize: unknown nearest_mode '${mode}'`);
}

/** Resize `x` along axis `a` from its length to `outLen` with scale factor `scale`. */
function resizeAxis(x: Float64Array, dims: number[], a: number, outLen: number, scale: number, o: ResizeOptions, roiStart: number, roiEnd: number): Float64Array {
  const inLen = dims[a]!, outer = sizeOf(dims.slice(0, a)), inner = sizeOf(dims.slice(a + 1));
  const outWidth = scale * inLen; // the reference's (fractional) output width
  const taps: { idx: number[]; w: number[] } [] = [];
  const extrap: boolean[] = [];
  for (let i = 0; i < outLen; i++) {
    let xo: number;
    switch (o.coordMode) {
      case "align_corners": xo = outWidth === 1 ? 0 : (i * (inLen - 1)) / (outWidth - 1); break;
      case "asymmetric": xo = i / scale; break;
      case "tf_crop_and_resize":
        xo = outWidth === 1 ? ((roiEnd - roiStart) * (inLen - 1)) / 2 : (i * (roiEnd - roiStart) * (inLen - 1)) / (outWidth - 1);
        xo += roiStart * (inLen - 1);
        break;
      case "pytorch_half_pixel": xo = outWidth === 1 ? -0.5 : (i + 0.5) / scale - 0.5; break;
      case "half_pixel": xo = (i + 0.5) / scale - 0.5; break;
      case "tf_half_pixel_for_nn": xo = (i + 0.5) / scale; break;
      default: throw new KernelError(`Resize: unknown coordinate_transformation_mode '${o.coordMode}'`);
    }
    extrap.push(o.coordMode === "tf_crop_and_resize" && (xo < 0 || xo > inLen - 1));
    const fl = Math.floor(xo);
    const ratio = Number.isInteger(xo) ? 1 : xo - fl;
    const base = Math.ceil(xo) - 1; // the left neighbour (one left of x when x is a whole number)
    let w: number[], first: number;
    if (o.mode === "cubic") { w = cubicCoeffs(ratio, o.cubicA); first = base - 1; }
    else { w = o.mode === "linear" ? [1 - ratio, ratio] : nearestCoeffs(ratio, o.nearestMode); first = base; }
    const idx = w.map((_, k) => first + k);
    if (o.excludeOutside) {
      let sum = 0;
      w = w.map((c, k) => (idx[k]! < 0 || idx[k]! >= inLen ? 0 : c));
      for (const c of w) sum += c;
      w = w.map((c) => c / sum);
    }
    taps.push({ idx: idx.map((j) => Math.min(Math.max(j, 0), inLen - 1)), w });
  }
  const out = new Float64Array(outer * outLen * inner);
  for (let p = 0; p < outer; p++) {
    for (let i = 0; i < outLen; i++) {
      const { idx, w } = taps[i]!;
      const dst = (p * outLen + i) * inner;
      if (extrap[i]) { out.fill(o.extrapolation, dst, dst + inner); continue; }
      for (let k = 0; k < idx.length; k++) {
        const c = w[k]!;
        if (c === 0) continue;
        const src = (p * inLen + idx[k]!) * inner;
        for (let q = 0; q < inner; q++) out[dst + q]! += c * x[src + q]!;
      }
    }
  }
  return out;
}

/** Resize to `outDims` with per-axis `scales` (as the reference: scale = out/in when sizes are given). */
export function resize(x: Tensor, outDims: number[], scales: number[], o: ResizeOptions): Tensor {
  let v: Float64Array = Float64Array.from(numbers(x));
  let dims = x.dims.slice();
  const r = dims.length;
  for (let a = 0; a < r; a++) {
    const roiStart = o.roi ? o.roi[a]! : 0, roiEnd = o.roi ? o.roi[a + r]! : 1;
    if (outDims[a] === dims[a] && scales[a] === 1 && o.coordMode !== "tf_crop_and_resize") continue;
    v = resizeAxis(v, dims, a, outDims[a]!, scales[a]!, o, roiStart, roiEnd);
    dims = dims.slice();
    dims[a] = outDims[a]!;
  }
  return makeTensor(x.dtype, dims, fromNumbers(x.dtype, x.dtype === "float32" ? Float32Array.from(v) : v));
}

const resizeKernel = (since: number): Kernel => (inputs, attrs, _ctx) => {
  const x = inputs[0]!;
  let scalesT: Tensor | undefined, sizesT: Tensor | undefined, roiT: Tensor | undefined;
  if (since >= 11) { roiT = inputs[1]; scalesT = inputs[2]; sizesT = inputs[3]; } else scalesT = inputs[1];
  let scales: number[], outDims: number[];
  if (sizesT && sizesT.data.length > 0) {
    outDims = intList(sizesT);
    scales = outDims.map((d, i) => d / x.dims[i]!);
  } else if (scalesT && scalesT.data.length > 0) {
    scales = Array.from(numbers(scalesT));
    outDims = x.dims.map((d, i) => Math.floor(d * scales[i]!));
  } else throw new KernelError("Resize: needs scales or sizes");
  if (scales.length !== x.dims.length) throw new KernelError(`Resize: ${scales.length} scales for rank ${x.dims.length}`);
  const mode = attrs.string("mode", "nearest");
  if (mode !== "nearest" && mode !== "linear" && mode !== "cubic") throw new KernelError(`Resize: unknown mode '${mode}'`);
  const old = since < 11;
  return [resize(x, outDims, scales, {
    mode,
    coordMode: old ? "asymmetric" : attrs.string("coordinate_transformation_mode", "half_pixel"),
    nearestMode: old ? "floor" : attrs.string("nearest_mode", "round_prefer_floor"),
    cubicA: attrs.float("cubic_coeff_a", -0.75),
    excludeOutside: attrs.int("exclude_outside", 0) === 1,
    extrapolation: attrs.float("extrapolation_value", 0),
    roi: roiT && roiT.data.length ? Array.from(numbers(roiT)) : undefined,
  })];
};

/** Upsample (deprecated in opset 10): Resize with asymmetric coordinates and floor rounding. */
const upsampleKernel = (since: number): Kernel => (inputs, attrs, _ctx) => {
  const x = inputs[0]!;
  const scales = since >= 9 ? Array.from(numbers(inputs[1]!)) : attrs.floats("scales");
  const mode = attrs.string("mode", "nearest");
  return [resize(x, x.dims.map((d, i) => Math.floor(d * scales[i]!)), scales, {
    mode: mode === "linear" || mode === "bilinear" ? "linear" : "nearest",
    coordMode: "asymmetric", nearestMode: "floor", cubicA: -0.75, excludeOutside: false, extrapolation: 0,
  })];
};

// ---------------------------------------------------------------------------------------------
// GridSample (opset 16), 2-D: PyTorch's grid_sampler semantics, which the ONNX op mirrors.

/** Reflect a coordinate into [low/2, high/2] (PyTorch reflect_coordinates, with doubled bounds). */
function reflectCoord(v: number, twiceLow: number, twiceHigh: number): number {
  if (twiceLow === twiceHigh) return 0;
  const min = twiceLow / 2, span = (twiceHigh - twiceLow) / 2;
  v = Math.abs(v - min);
  const extra = v % span, flips = Math.floor(v / span);
  return flips % 2 === 0 ? extra + min : span - extra + min;
}

const gridSample: Kernel = (inputs, attrs) => {
  const x = inputs[0]!, grid = inputs[1]!;
  if (x.dims.length !== 4) throw new KernelError("GridSample: only 4-D inputs are supported");
  const [n, c, h, w] = x.dims as [number, number, number, number];
  const [, ho, wo] = grid.dims as [number, number, number];
  const align = attrs.int("align_corners", 0) === 1;
  const mode = attrs.string("mode", "bilinear"), pad = attrs.string("padding_mode", "zeros");
  const xv = numbers(x), gv = numbers(grid);
  const out = new Float64Array(n * c * ho * wo);
  const unnorm = (g: number, size: number) => (align ? ((g + 1) / 2) * (size - 1) : ((g + 1) * size - 1) / 2);
  const padCoord = (v: number, size: number) => {
    if (pad === "border") return Math.min(Math.max(v, 0), size - 1);
    if (pad === "reflection") {
      const r = align ? reflectCoord(v, 0, 2 * (size - 1)) : reflectCoord(v, -1, 2 * size - 1);
      return Math.min(Math.max(r, 0), size - 1);
    }
    return v;
  };
  const read = (base: number, yy: number, xx: number) => {
    if (pad !== "zeros") {
      xx = Math.trunc(padCoord(xx, w)); yy = Math.trunc(padCoord(yy, h));
    } else if (xx < 0 || xx >= w || yy < 0 || yy >= h) return 0;
    return xv[base + yy * w + xx]!;
  };
  const cubic = (t: number): number[] => {
    const a = -0.75;
    const f1 = (d: number) => ((a + 2) * d - (a + 3)) * d * d + 1; // |d| <= 1
    const f2 = (d: number) => ((a * d - 5 * a) * d + 8 * a) * d - 4 * a; // 1 < |d| < 2
    return [f2(t + 1), f1(t), f1(1 - t), f2(2 - t)];
  };
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < ho; i++) {
      for (let j = 0; j < wo; j++) {
        const g = ((b * ho + i) * wo + j) * 2;
        const gx = unnorm(gv[g]!, w), gy = unnorm(gv[g + 1]!, h);
        for (let ch = 0; ch < c; ch++) {
          const base = (b * c + ch) * h * w;
          let v: number;
          if (mode === "bicubic") {
            const x0 = Math.floor(gx), y0 = Math.floor(gy);
            const wx = cubic(gx - x0), wy = cubic(gy - y0);
            v = 0;
            for (let p = 0; p < 4; p++) {
              let row = 0;
              for (let q = 0; q < 4; q++) row += wx[q]! * read(base, y0 - 1 + p, x0 - 1 + q);
              v += wy[p]! * row;
            }
          } else {
            const px = padCoord(gx, w), py = padCoord(gy, h);
            if (mode === "nearest") {
              v = read(base, roundHalfEven(py), roundHalfEven(px));
            } else {
              const x0 = Math.floor(px), y0 = Math.floor(py), fx = px - x0, fy = py - y0;
              v = read(base, y0, x0) * (1 - fx) * (1 - fy) + read(base, y0, x0 + 1) * fx * (1 - fy) +
                read(base, y0 + 1, x0) * (1 - fx) * fy + read(base, y0 + 1, x0 + 1) * fx * fy;
            }
          }
          out[((b * c + ch) * ho + i) * wo + j] = v;
        }
      }
    }
  }
  return [makeTensor(x.dtype, [n, c, ho, wo], fromNumbers(x.dtype, out))];
};

function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// ---------------------------------------------------------------------------------------------
// Text: StringNormalizer (10), TfIdfVectorizer (9)

const stringNormalizer: Kernel = (inputs, attrs) => {
  const x = inputs[0]!;
  if (x.dtype !== "string") throw new KernelError("StringNormalizer: input must be a string tensor");
  const action = attrs.string("case_change_action", "NONE");
  const sensitive = attrs.int("is_case_sensitive", 0) === 1;
  const stop = new Set((attrs.has("stopwords") ? (attrs.raw.stopwords!.value as string[]) : []).map((w) => (sensitive ? w : w.toLowerCase())));
  const kept = (x.data as string[]).filter((w) => !stop.has(sensitive ? w : w.toLowerCase()))
    .map((w) => (action === "LOWER" ? w.toLowerCase() : action === "UPPER" ? w.toUpperCase() : w));
  const out = kept.length ? kept : [""];
  return [makeTensor("string", x.dims.length === 2 ? [1, out.length] : [out.length], out)];
};

/** Counts (TF), weights (IDF) or both (TFIDF) of pooled n-grams, with skips, per input row. */
const tfIdfVectorizer: Kernel = (inputs, attrs) => {
  const x = inputs[0]!;
  const mode = attrs.string("mode");
  const minN = attrs.int("min_gram_length"), maxN = attrs.int("max_gram_length"), maxSkip = attrs.int("max_skip_count");
  const counts = attrs.ints("ngram_counts"), indexes = attrs.ints("ngram_indexes");
  const weights = attrs.floats("weights", []);
  const pool: (string | number)[] = attrs.has("pool_strings") ? (attrs.raw.pool_strings!.value as string[]) : attrs.ints("pool_int64s");
  const key = (items: readonly (string | number)[]) => items.join("\u0000");
  // pool n-grams of length n start at counts[n-1]; the k-th pooled n-gram maps to output column indexes[k]
  const lookup = new Map<string, number>();
  let k = 0;
  for (let n = 1; n <= counts.length; n++) {
    const end = n < counts.length ? counts[n]! : pool.length;
    for (let p = counts[n - 1]!; p < end; p += n, k++) lookup.set(`${n}:${key(pool.slice(p, p + n))}`, indexes[k]!);
  }
  const width = Math.max(...indexes) + 1;
  const rows = x.dims.length === 2 ? x.dims[0]! : 1, cols = x.dims[x.dims.length - 1]!;
  const items: (string | number)[] = x.dtype === "string" ? (x.data as string[]) : Array.from(numbers(x));
  const out = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) {
    const row = items.slice(r * cols, (r + 1) * cols);
    for (let n = minN; n <= maxN; n++) {
      for (let skip = 0; skip <= (n === 1 ? 0 : maxSkip); skip++) {
        const span = (n - 1) * (skip + 1);
        for (let st = 0; st + span < row.length; st++) {
          const gram = Array.from({ length: n }, (_, j) => row[st + j * (skip + 1)]!);
          const col = lookup.get(`${n}:${key(gram)}`);
          if (col !== undefined) out[r * width + col]! += 1;
        }
      }
    }
  }
  for (let i = 0; i < out.length; i++) {
    const w = weights.length ? weights[i % width]! : 1;
    if (mode === "IDF") out[i] = out[i]! > 0 ? w : 0;
    else if (mode === "TFIDF") out[i] = out[i]! * w;
  }
  return [makeTensor("float32", x.dims.length === 2 ? [rows, width] : [width], out)];
};

/** Every data-movement op, by ONNX op type. */

/** An op that only relabels the shape: the data (and its gradient) pass through unchanged. */
const reshapeTo = (x: Tensor, dims: number[]): GradResult => {
  if (sizeOf(dims) !== x.data.length) throw new KernelError(`cannot reshape [${x.dims}] to [${dims}]`);
  return { outputs: [{ dtype: x.dtype, dims, data: x.data }], backward: ([dy], needs) => (dy && needs[0] ? [dy] : []) };
};

const flattenGrad: GradOp = ([x], attrs) => {
  const r = x!.dims.length, axis = attrs.int("axis", 1);
  const a = axis < 0 ? axis + r : axis;
  return reshapeTo(x!, [sizeOf(x!.dims.slice(0, a)), sizeOf(x!.dims.slice(a))]);
};

/** Reshape with a shape input: 0 copies the input dim (unless allowzero), -1 is inferred. */
const reshapeGrad: GradOp = ([x, shape], attrs) => {
  const want = intList(shape!), allowZero = attrs.int("allowzero", 0) !== 0;
  const dims = want.map((d, i) => (d === 0 && !allowZero ? x!.dims[i]! : d));
  const free = dims.indexOf(-1);
  if (free >= 0) dims[free] = x!.data.length / sizeOf(dims.filter((_, i) => i !== free));
  return reshapeTo(x!, dims);
};

const identityGrad: GradOp = ([x]) => reshapeTo(x!, [...x!.dims]);

export const SHAPE_OPS: Record<string, OpVersion[]> = {
  Identity: withGrad([{ since: 1, kernel: identity }], identityGrad),
  Constant: [{ since: 1, kernel: constantKernel }],
  ConstantOfShape: [{ since: 9, kernel: constantOfShape }],
  Dropout: variants(dropoutKernel, 1, 7, 12),
  Flatten: withGrad([{ since: 1, kernel: flattenKernel }], flattenGrad),
  Reshape: withGrad(variants(reshapeKernel, 1, 5), reshapeGrad),
  Transpose: [{ since: 1, kernel: transposeKernel }],
  Squeeze: variants(squeezeKernel, 1, 13),
  Unsqueeze: variants(unsqueezeKernel, 1, 13),
  Concat: [{ since: 4, kernel: concatKernel }],
  Split: variants(splitKernel, 2, 13),
  Shape: [{ since: 1, kernel: shapeKernel }],
  Size: [{ since: 1, kernel: sizeKernel }],
  Gather: [{ since: 1, kernel: gatherKernel }],
  GatherElements: [{ since: 11, kernel: gatherElementsKernel }],
  Slice: variants(sliceKernel, 1, 10),
  Cast: [{ since: 6, kernel: castKernel }],
  CastLike: [{ since: 15, kernel: castLikeKernel }],
  Expand: [{ since: 8, kernel: expandKernel }],
  Tile: [{ since: 6, kernel: tileKernel }],
  Pad: variants(padKernel, 1, 2, 11),
  Range: [{ since: 11, kernel: rangeKernel }],
  DepthToSpace: [{ since: 11, kernel: depthToSpace }],
  SpaceToDepth: [{ since: 1, kernel: spaceToDepth }],
  Trilu: [{ since: 14, kernel: triluKernel }],
  EyeLike: [{ since: 9, kernel: eyeLike }],
  CumSum: [{ since: 11, kernel: cumSum }],
  NonZero: [{ since: 9, kernel: nonZero }],
  OneHot: [{ since: 11, kernel: oneHot }],
  Resize: variants(resizeKernel, 10, 11),
  GridSample: [{ since: 16, kernel: gridSample }],
  StringNormalizer: [{ since: 10, kernel: stringNormalizer }],
  TfIdfVectorizer: [{ since: 9, kernel: tfIdfVectorizer }],
  GatherND: [{ since: 11, kernel: gatherND }],
  ScatterND: [{ since: 11, kernel: scatterND }],
  ScatterElements: [{ since: 11, kernel: scatterElements }],
  Scatter: [{ since: 9, kernel: scatterElements }],
  Compress: [{ since: 9, kernel: compress }],
  ReverseSequence: [{ since: 10, kernel: reverseSequence }],
  Unique: [{ since: 11, kernel: unique }],
  HannWindow: [{ since: 17, kernel: cosineWindow(0.5, 0.5, 0) }],
  HammingWindow: [{ since: 17, kernel: cosineWindow(25 / 46, 21 / 46, 0) }],
  BlackmanWindow: [{ since: 17, kernel: cosineWindow(0.42, 0.5, 0.08) }],
  Upsample: variants(upsampleKernel, 7, 9),
};

/** Attribute helper re-exported for shape inference: the Transpose default permutation. */
export function transposePerm(attrs: Attrs, rank: number): number[] {
  return attrs.ints("perm", Array.from({ length: rank }, (_, i) => rank - 1 - i));
}
