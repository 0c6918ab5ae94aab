/**
 * Elementwise ops: unary math and activations, binary arithmetic with numpy (multidirectional)
 * broadcasting, variadic Max/Min/Sum/Mean, comparisons and logic, Where. Also the small tensor
 * helpers the other reference families share (numeric views of any dtype, float16 bits,
 * broadcasting strides). Values are computed in float64 and stored once into the output dtype,
 * which for float32 add/sub/mul/div/sqrt is exactly the correctly rounded float32 result.
 * @module
 */
import { allocData, type DType, sizeOf, type Tensor, type TensorData } from "../../format/mod.ts";
import { type Alloc, type Attrs, type Backward, f32Of, freshAlloc, type GradOp, type GradResult, KernelError, type Kernel, type OpVersion, withGrad, f32Tensor } from "./types.ts";

// ---------------------------------------------------------------------------------------------
// Shared tensor helpers

/** A numeric storage whose elements read and write as JS numbers. */
export type NumberArray =
  | Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array;

/** Build a tensor. */
export function makeTensor(dtype: DType, dims: number[], data: TensorData): Tensor {
  return { dtype, dims, data };
}

/** True for float32, float64 and float16. */
export function isFloat(dtype: DType): boolean {
  return dtype === "float32" || dtype === "float64" || dtype === "float16";
}

const F32 = new Float32Array(1);

/** Decode IEEE half-precision bits to a number. */
export function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** Encode a number as IEEE half-precision bits, rounding to nearest even. */
export function numberToHalf(v: number): number {
  if (Number.isNaN(v)) return 0x7e00;
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  if (a === Infinity) return sign | 0x7c00;
  if (a < 2 ** -24 * 0.5) return sign; // rounds to zero (exact half rounds to even = 0)
  if (a < 2 ** -14) {
    // subnormal: units of 2^-24, round half to even
    const q = a / 2 ** -24;
    let r = Math.round(q);
    if (q - Math.floor(q) === 0.5 && r % 2 === 1) r -= 1;
    return sign | r;
  }
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e -= 1;
  if (2 ** (e + 1) <= a) e += 1;
  const m = a / 2 ** e - 1; // [0, 1)
  const q = m * 1024;
  let r = Math.floor(q);
  const rem = q - r;
  if (rem > 0.5 || (rem === 0.5 && r % 2 === 1)) r += 1;
  if (r === 1024) { r = 0; e += 1; }
  if (e > 15) return sign | 0x7c00;
  return sign | ((e + 15) << 10) | r;
}

/** Round a number to float32. */
export function toF32(v: number): number {
  F32[0] = v;
  return F32[0]!;
}

/** The elements of a numeric tensor as numbers (float16 decoded, 64-bit integers via Number). */
export function numbers(t: Tensor): NumberArray {
  const d = t.data;
  if (t.dtype === "float16") {
    const out = new Float32Array(d.length);
    const h = d as Uint16Array;
    for (let i = 0; i < h.length; i++) out[i] = halfToNumber(h[i]!);
    return out;
  }
  if (d instanceof BigInt64Array || d instanceof BigUint64Array) {
    const out = new Float64Array(d.length);
    for (let i = 0; i < d.length; i++) out[i] = Number(d[i]!);
    return out;
  }
  if (Array.isArray(d)) throw new KernelError(`expected a numeric tensor, got ${t.dtype}`);
  return d as NumberArray;
}

/** Integer values of an int32/int64 (or any numeric) tensor, as plain numbers. */
export function intList(t: Tensor): number[] {
  return Array.from(numbers(t), (v) => Math.trunc(v));
}

/** Storage of `dtype` holding `values` (rounded/truncated/wrapped as a typed-array store does). */
export function fromNumbers(dtype: DType, values: ArrayLike<number>): TensorData {
  const n = values.length;
  const out = allocData(dtype, n);
  if (dtype === "float16") {
    const h = out as Uint16Array;
    for (let i = 0; i < n; i++) h[i] = numberToHalf(values[i]!);
  } else if (dtype === "int64" || dtype === "uint64") {
    const b = out as BigInt64Array | BigUint64Array;
    for (let i = 0; i < n; i++) {
      const v = values[i]!;
      b[i] = Number.isFinite(v) ? BigInt(Math.trunc(v)) : 0n;
    }
  } else if (dtype === "bool") {
    const u = out as Uint8Array;
    for (let i = 0; i < n; i++) u[i] = values[i] ? 1 : 0;
  } else if (dtype === "string") {
    throw new KernelError("cannot store numbers in a string tensor");
  } else {
    (out as NumberArray).set(values as ArrayLike<number>);
  }
  return out;
}

/** An int64 tensor of the given values (shapes, indices). */
export function int64Tensor(values: number[], dims: number[] = [values.length]): Tensor {
  return makeTensor("int64", dims, BigInt64Array.from(values, (v) => BigInt(v)));
}

/** Row-major strides of a shape. */
export function stridesOf(dims: readonly number[]): number[] {
  const s = new Array<number>(dims.length);
  let acc = 1;
  for (let i = dims.length - 1; i >= 0; i--) { s[i] = acc; acc *= dims[i]!; }
  return s;
}

/** Normalize a possibly negative axis against a rank; throws on out-of-range. */
export function normAxis(axis: number, rank: number, op = ""): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new KernelError(`${op}: axis ${axis} out of range for rank ${rank}`);
  return a;
}

/** The numpy broadcast of several shapes; throws KernelError if they are incompatible. */
export function broadcastShape(shapes: readonly (readonly number[])[], op = ""): number[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const o = rank - s.length + i;
      const d = s[i]!;
      if (d === out[o]) continue;
      if (out[o] === 1) out[o] = d;
      else if (d !== 1) {
        throw new KernelError(`${op}: shapes ${shapes.map((x) => `[${x.join(",")}]`).join(" and ")} do not broadcast`);
      }
    }
  }
  return out;
}

/** For each element of `outDims`, the flat offset of the element of `dims` it reads (broadcast). */
export function broadcastOffsets(dims: readonly number[], outDims: readonly number[]): Int32Array {
  const rank = outDims.length;
  const inStrides = stridesOf(dims);
  const s = new Array<number>(rank).fill(0);
  for (let i = 0; i < dims.length; i++) s[rank - dims.length + i] = dims[i] === 1 ? 0 : inStrides[i]!;
  return stridedOffsets(outDims, s);
}

/**
 * For each element of `outDims` in row-major order, the flat source offset Σ idx[k]·strides[k]:
 * one odometer walk shared by broadcasting (stride 0 on expanded axes) and Transpose (permuted strides).
 */
export function stridedOffsets(outDims: readonly number[], strides: readonly number[]): Int32Array {
  const n = sizeOf(outDims);
  const off = new Int32Array(n);
  const rank = outDims.length;
  const idx = new Array<number>(rank).fill(0);
  let cur = 0;
  for (let i = 0; i < n; i++) {
    off[i] = cur;
    for (let k = rank - 1; k >= 0; k--) {
      idx[k]!++;
      cur += strides[k]!;
      if (idx[k]! < outDims[k]!) break;
      cur -= strides[k]! * idx[k]!;
      idx[k] = 0;
    }
  }
  return off;
}

const sameDims = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * Table entries for an op whose semantics changed at the given opsets: one kernel per version,
 * each built knowing its own `since` (so the table, not a runtime check, says where they differ).
 */
export function variants(make: (since: number) => Kernel, ...sinces: number[]): OpVersion[] {
  return sinces.map((since) => ({ since, kernel: make(since) }));
}

// ---------------------------------------------------------------------------------------------
// Unary

type UnaryFn = (x: number) => number;

/** A kernel applying `f` to every element; output keeps the input dtype unless `outDtype` is given. */
export function unaryKernel(f: UnaryFn, outDtype?: DType): Kernel {
  return unaryAttrKernel(() => f, outDtype);
}

/** Like unaryKernel, with the element function built from the node's attributes. */
export function unaryAttrKernel(make: (attrs: Attrs) => UnaryFn, outDtype?: DType): Kernel {
  return (inputs, attrs) => {
    const x = inputs[0]!;
    const fn = make(attrs);
    const dtype = outDtype ?? x.dtype;
    if (x.dtype === "float32" && dtype === "float32") {
      const src = x.data as Float32Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = fn(src[i]!);
      return [makeTensor(dtype, x.dims.slice(), out)];
    }
    const src = numbers(x);
    const vals = new Float64Array(src.length);
    for (let i = 0; i < src.length; i++) vals[i] = fn(src[i]!);
    return [makeTensor(dtype, x.dims.slice(), fromNumbers(dtype, vals))];
  };
}

const SQRT_PI = Math.sqrt(Math.PI);

/** erf to double accuracy: Taylor series near 0, continued fraction for erfc in the tails. */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const a = Math.abs(x);
  if (a < 2.5) {
    let term = x, sum = x;
    const x2 = x * x;
    for (let n = 1; n < 100; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / SQRT_PI) * sum;
  }
  if (a > 6) return Math.sign(x);
  // erfc(a) = exp(-a²)/√π · 1/(a + 1/2/(a + 1/(a + 3/2/(a + ...)))) (Lentz, evaluated backwards)
  let f = a;
  for (let k = 60; k >= 1; k--) f = a + (k / 2) / f;
  const erfc = Math.exp(-a * a) / SQRT_PI / f;
  return Math.sign(x) * (1 - erfc);
}

/** Round half to even (numpy.round). */
function roundEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

const SELU_ALPHA = 1.67326319217681884765625;
const SELU_GAMMA = 1.05070102214813232421875;

const u = (f: UnaryFn): OpVersion[] => [{ since: 1, kernel: unaryKernel(f) }];
const ua = (since: number, f: (a: Attrs) => UnaryFn): OpVersion => ({ since, kernel: unaryAttrKernel(f) });

/** Clip: bounds are attributes before opset 11, optional inputs from 11 on. */
const clipKernel = (since: number): Kernel => (inputs, attrs, ctx) => {
  const x = inputs[0]!;
  let lo = -Infinity, hi = Infinity;
  if (since < 11) {
    lo = attrs.float("min", -3.4028234663852886e38);
    hi = attrs.float("max", 3.4028234663852886e38);
  } else {
    if (inputs[1]) lo = numbers(inputs[1])[0]!;
    if (inputs[2]) hi = numbers(inputs[2])[0]!;
  }
  if (x.dtype === "float32") {
    // The hot path of ReLU6 networks: a dedicated loop (a shared loop calling a closure is megamorphic).
    const src = x.data as Float32Array, out = ctx.alloc ? ctx.alloc(src.length) : new Float32Array(src.length);
    for (let i = 0; i < src.length; i++) { const v = src[i]!; out[i] = v < lo ? lo : v > hi ? hi : v; }
    return [makeTensor("float32", x.dims.slice(), out)];
  }
  return unaryKernel((v) => (v < lo ? lo : v > hi ? hi : v))([x], attrs, ctx);
};

/** Relu with a dedicated float32 loop (the most frequent activation). */
const reluKernel: Kernel = (inputs, attrs, ctx) => {
  const x = inputs[0]!;
  if (x.dtype !== "float32") return unaryKernel((v) => (v > 0 ? v : 0))(inputs, attrs, ctx);
  const src = x.data as Float32Array, out = ctx.alloc ? ctx.alloc(src.length) : new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) { const v = src[i]!; out[i] = v > 0 ? v : 0; }
  return [makeTensor("float32", x.dims.slice(), out)];
};

/** Sum `d` (shaped `outDims`) down to `dims` it was broadcast from: the adjoint of broadcasting. */
export function reduceToShape(d: Float32Array, outDims: readonly number[], dims: readonly number[]): Float32Array {
  if (sizeOf(dims) === d.length) return d;
  const off = broadcastOffsets(dims, outDims);
  const r = new Float32Array(sizeOf(dims));
  for (let i = 0; i < d.length; i++) r[off[i]!] += d[i]!;
  return r;
}


/** An elementwise clamp to [lo, hi]; the gradient passes where lo < x < hi (0 at the kinks, as PyTorch). */
function clampGrad(x: Tensor, lo: number, hi: number, alloc: Alloc): GradResult {
  const xd = f32Of(x, "X");
  const y = alloc(xd.length, false);
  // Relu without branches: activations are about half negative, and a data-dependent branch
  // mispredicts that often (JSC, 3.2 M floats: 21 ms with the ternary, 4 ms forward and 7 ms
  // backward so). The one difference, −∞ → NaN, is a run that has diverged already.
  const relu = lo === 0 && hi === Infinity;
  if (relu) for (let i = 0; i < y.length; i++) { const v = xd[i]!; y[i] = (v + Math.abs(v)) * 0.5; }
  else for (let i = 0; i < y.length; i++) { const v = xd[i]!; y[i] = v < lo ? lo : v > hi ? hi : v; }
  const backward: Backward = ([dy], needs) => {
    if (!dy || !needs[0]) return [];
    const dx = alloc(dy.length, false);
    if (relu) for (let i = 0; i < dx.length; i++) dx[i] = dy[i]! * +(xd[i]! > 0);
    else for (let i = 0; i < dx.length; i++) { const v = xd[i]!; dx[i] = v > lo && v < hi ? dy[i]! : 0; }
    return [dx];
  };
  return { outputs: [f32Tensor([...x.dims], y)], backward };
}

const reluGrad: GradOp = ([x], _attrs, alloc = freshAlloc) => clampGrad(x!, 0, Infinity, alloc);

/** Clip: bounds are attributes before opset 11 and optional inputs from 11 on; a node carries one or the other. */
const clipGrad: GradOp = ([x, lo, hi], attrs, alloc = freshAlloc) =>
  clampGrad(x!, lo ? numbers(lo)[0]! : attrs.float("min", -Infinity), hi ? numbers(hi)[0]! : attrs.float("max", Infinity), alloc);

const addGrad: GradOp = ([a, b], _attrs, alloc = freshAlloc) => {
  const ad = f32Of(a, "Add A"), bd = f32Of(b, "Add B");
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
  return { outputs: [f32Tensor(dims, y)], backward };
};

const UNARY_OPS: Record<string, OpVersion[]> = {
  Abs: u(Math.abs),
  Neg: u((x) => -x),
  Exp: u(Math.exp),
  Log: u(Math.log),
  Sqrt: u(Math.sqrt),
  Reciprocal: u((x) => 1 / x),
  Floor: u(Math.floor),
  Ceil: u(Math.ceil),
  Round: [{ since: 11, kernel: unaryKernel(roundEven) }],
  Sign: [{ since: 9, kernel: unaryKernel(Math.sign) }],
  Erf: [{ since: 9, kernel: unaryKernel(erf) }],
  Sin: [{ since: 7, kernel: unaryKernel(Math.sin) }],
  Cos: [{ since: 7, kernel: unaryKernel(Math.cos) }],
  Tan: [{ since: 7, kernel: unaryKernel(Math.tan) }],
  Asin: [{ since: 7, kernel: unaryKernel(Math.asin) }],
  Acos: [{ since: 7, kernel: unaryKernel(Math.acos) }],
  Atan: [{ since: 7, kernel: unaryKernel(Math.atan) }],
  Sinh: [{ since: 9, kernel: unaryKernel(Math.sinh) }],
  Cosh: [{ since: 9, kernel: unaryKernel(Math.cosh) }],
  Asinh: [{ since: 9, kernel: unaryKernel(Math.asinh) }],
  Acosh: [{ since: 9, kernel: unaryKernel(Math.acosh) }],
  Atanh: [{ since: 9, kernel: unaryKernel(Math.atanh) }],
  Tanh: u(Math.tanh),
  Sigmoid: u((x) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)))),
  Relu: withGrad([{ since: 1, kernel: reluKernel }], reluGrad),
  Softplus: u((x) => (x > 30 ? x : Math.log1p(Math.exp(x)))),
  Softsign: u((x) => x / (1 + Math.abs(x))),
  LeakyRelu: [ua(1, (a) => { const al = a.float("alpha", 0.01); return (x) => (x >= 0 ? x : al * x); })],
  Elu: [ua(1, (a) => { const al = a.float("alpha", 1); return (x) => (x >= 0 ? x : al * (Math.exp(x) - 1)); })],
  Celu: [ua(12, (a) => { const al = a.float("alpha", 1); return (x) => Math.max(0, x) + Math.min(0, al * (Math.exp(x / al) - 1)); })],
  Selu: [ua(1, (a) => {
    const al = a.float("alpha", SELU_ALPHA), g = a.float("gamma", SELU_GAMMA);
    return (x) => (x > 0 ? g * x : g * al * (Math.exp(x) - 1));
  })],
  ThresholdedRelu: [ua(10, (a) => { const al = a.float("alpha", 1); return (x) => (x > al ? x : 0); })],
  HardSigmoid: [ua(1, (a) => {
    const al = a.float("alpha", 0.2), be = a.float("beta", 0.5);
    return (x) => Math.max(0, Math.min(1, al * x + be));
  })],
  HardSwish: [{ since: 14, kernel: unaryKernel((x) => x * Math.max(0, Math.min(1, x / 6 + 0.5))) }],
  Shrink: [ua(9, (a) => {
    const bias = a.float("bias", 0), lambd = a.float("lambd", 0.5);
    return (x) => (x < -lambd ? x + bias : x > lambd ? x - bias : 0);
  })],
  Clip: withGrad(variants(clipKernel, 1, 11), clipGrad),
  Not: [{ since: 1, kernel: unaryKernel((x) => (x ? 0 : 1)) }],
  IsNaN: [{ since: 9, kernel: unaryKernel((x) => (Number.isNaN(x) ? 1 : 0), "bool") }],
  IsInf: [{
    since: 10,
    kernel: (inputs, attrs, ctx) => {
      const neg = attrs.int("detect_negative", 1) !== 0, pos = attrs.int("detect_positive", 1) !== 0;
      const f = (x: number) => ((x === Infinity && pos) || (x === -Infinity && neg) ? 1 : 0);
      return unaryKernel(f, "bool")(inputs, attrs, ctx);
    },
  }],
};

// ---------------------------------------------------------------------------------------------
// Binary and variadic with broadcasting

type BinaryFn = (a: number, b: number) => number;

/** Apply `f` over two tensors with numpy broadcasting; output dtype defaults to the first input's. */
export function broadcastBinary(a: Tensor, b: Tensor, f: BinaryFn, outDtype: DType = a.dtype, op = ""): Tensor {
  const dims = sameDims(a.dims, b.dims) ? a.dims.slice() : broadcastShape([a.dims, b.dims], op);
  const n = sizeOf(dims);
  const av = numbers(a), bv = numbers(b);
  const direct = outDtype === "float32" || outDtype === "float64" || outDtype === "int32" || outDtype === "uint8" ||
    outDtype === "int8" || outDtype === "int16" || outDtype === "uint16" || outDtype === "uint32";
  const out: NumberArray | Float64Array = direct ? (allocData(outDtype, n) as NumberArray) : new Float64Array(n);
  if (sameDims(a.dims, dims) && sameDims(b.dims, dims)) {
    for (let i = 0; i < n; i++) out[i] = f(av[i]!, bv[i]!);
  } else if (b.data.length === 1 && sameDims(a.dims, dims)) {
    const y = bv[0]!;
    for (let i = 0; i < n; i++) out[i] = f(av[i]!, y);
  } else if (a.data.length === 1 && sameDims(b.dims, dims)) {
    const x = av[0]!;
    for (let i = 0; i < n; i++) out[i] = f(x, bv[i]!);
  } else {
    const oa = broadcastOffsets(a.dims, dims), ob = broadcastOffsets(b.dims, dims);
    for (let i = 0; i < n; i++) out[i] = f(av[oa[i]!]!, bv[ob[i]!]!);
  }
  return makeTensor(outDtype, dims, direct ? out : fromNumbers(outDtype, out));
}

function binary(fFor: (dtype: DType, attrs: Attrs) => BinaryFn, outDtype?: DType): Kernel {
  return (inputs, attrs) => {
    const a = inputs[0]!, b = inputs[1]!;
    return [broadcastBinary(a, b, fFor(a.dtype, attrs), outDtype ?? a.dtype, attrs.opType)];
  };
}

const isInt = (d: DType) => !isFloat(d);
const b2 = (f: BinaryFn, since = 7, outDtype?: DType): OpVersion[] => [{ since, kernel: binary(() => f, outDtype) }];

/** Integer division truncates toward zero (as onnxruntime's C++ kernels do). */
const divFor = (dtype: DType): BinaryFn => (isInt(dtype) ? (x, y) => (y === 0 ? 0 : Math.trunc(x / y)) : (x, y) => x / y);

/** Mod: fmod=0 takes the divisor's sign (Python %), fmod=1 the dividend's (C fmod). */
const modFor = (_d: DType, attrs: Attrs): BinaryFn => {
  if (attrs.int("fmod", 0) === 1) return (x, y) => x % y;
  return (x, y) => {
    if (y === 0) return 0;
    const r = x % y;
    return r !== 0 && (r < 0) !== (y < 0) ? r + y : r;
  };
};

/** Fold a variadic op pairwise with broadcasting. */
function variadic(f: BinaryFn, finish?: (t: Tensor, count: number) => Tensor): Kernel {
  return (inputs, attrs) => {
    const xs = inputs.filter((t): t is Tensor => t !== undefined);
    if (xs.length === 0) throw new KernelError(`${attrs.opType}: needs at least one input`);
    let acc: Tensor = xs.length === 1 ? makeTensor(xs[0]!.dtype, xs[0]!.dims.slice(), xs[0]!.data.slice() as TensorData) : xs[0]!;
    for (let i = 1; i < xs.length; i++) acc = broadcastBinary(acc, xs[i]!, f, xs[0]!.dtype, attrs.opType);
    return [finish ? finish(acc, xs.length) : acc];
  };
}

/** Max/Min propagate NaN like numpy.maximum/minimum. */
const maxFn: BinaryFn = (x, y) => (Number.isNaN(x) || Number.isNaN(y) ? NaN : x > y ? x : y);
const minFn: BinaryFn = (x, y) => (Number.isNaN(x) || Number.isNaN(y) ? NaN : x < y ? x : y);

/** Max/Min over 64-bit integers compare bigints exactly. */
function bigAwareVariadic(f: BinaryFn, pickBig: (x: bigint, y: bigint) => bigint): Kernel {
  const numeric = variadic(f);
  return (inputs, attrs, ctx) => {
    const xs = inputs.filter((t): t is Tensor => t !== undefined);
    if (xs[0] && (xs[0].dtype === "int64" || xs[0].dtype === "uint64")) {
      let acc = xs[0];
      for (let i = 1; i < xs.length; i++) {
        const b = xs[i]!;
        const dims = broadcastShape([acc.dims, b.dims], attrs.opType);
        const oa = broadcastOffsets(acc.dims, dims), ob = broadcastOffsets(b.dims, dims);
        const out = allocData(acc.dtype, sizeOf(dims)) as BigInt64Array;
        const ad = acc.data as BigInt64Array, bd = b.data as BigInt64Array;
        for (let k = 0; k < out.length; k++) out[k] = pickBig(ad[oa[k]!]!, bd[ob[k]!]!);
        acc = makeTensor(acc.dtype, dims, out);
      }
      return [acc];
    }
    return numeric(inputs, attrs, ctx);
  };
}

/** PRelu: slope broadcasts unidirectionally to X. */
const preluKernel: Kernel = (inputs, attrs) => {
  const x = inputs[0]!, slope = inputs[1]!;
  return [broadcastBinary(x, slope, (v, s) => (v < 0 ? s * v : v), x.dtype, attrs.opType)];
};

/** PRelu before opset 7: a 1-D slope of length C applies per channel (axis 1). */
const legacyPrelu: Kernel = (inputs, attrs, ctx) => {
  const x = inputs[0]!, slope = inputs[1]!;
  if (slope.dims.length === 1 && x.dims.length > 2 && slope.dims[0] === x.dims[1] && slope.dims[0] !== 1) {
    const dims = [slope.dims[0]!, ...new Array<number>(x.dims.length - 2).fill(1)];
    return preluKernel([x, makeTensor(slope.dtype, dims, slope.data)], attrs, ctx);
  }
  return preluKernel(inputs, attrs, ctx);
};

const bitShift: Kernel = (inputs, attrs) => {
  const left = attrs.string("direction") === "LEFT";
  const a = inputs[0]!, b = inputs[1]!;
  if (a.dtype === "uint64") {
    const dims = broadcastShape([a.dims, b.dims], "BitShift");
    const oa = broadcastOffsets(a.dims, dims), ob = broadcastOffsets(b.dims, dims);
    const ad = a.data as BigUint64Array, bd = b.data as BigUint64Array;
    const out = new BigUint64Array(sizeOf(dims));
    for (let i = 0; i < out.length; i++) out[i] = left ? BigInt.asUintN(64, ad[oa[i]!]! << bd[ob[i]!]!) : ad[oa[i]!]! >> bd[ob[i]!]!;
    return [makeTensor("uint64", dims, out)];
  }
  return [broadcastBinary(a, b, left ? (x, y) => x * 2 ** y : (x, y) => Math.floor(x / 2 ** y), a.dtype, "BitShift")];
};

/** Where(cond, X, Y) with three-way broadcasting. */
const whereKernel: Kernel = (inputs) => {
  const [c, x, y] = inputs as Tensor[];
  const dims = broadcastShape([c!.dims, x!.dims, y!.dims], "Where");
  const n = sizeOf(dims);
  const oc = broadcastOffsets(c!.dims, dims), ox = broadcastOffsets(x!.dims, dims), oy = broadcastOffsets(y!.dims, dims);
  const cd = c!.data as Uint8Array, xd = x!.data, yd = y!.data;
  const out = allocData(x!.dtype, n) as unknown as { [i: number]: unknown };
  for (let i = 0; i < n; i++) out[i] = cd[oc[i]!] ? (xd as unknown as unknown[])[ox[i]!] : (yd as unknown as unknown[])[oy[i]!];
  return [makeTensor(x!.dtype, dims, out as unknown as TensorData)];
};

/**
 * Opset 1–6 binary ops broadcast only when `broadcast=1`, aligning B with A at `axis`
 * (suffix-aligned when axis is absent, as numpy does); equal shapes need no broadcasting.
 */
function legacyBroadcast(kernel: Kernel): Kernel {
  return (inputs, attrs, ctx) => {
    const a = inputs[0]!, b = inputs[1]!;
    if (attrs.int("broadcast", 0) === 1 && attrs.has("axis")) {
      const axis = normAxis(attrs.int("axis"), a.dims.length, attrs.opType);
      const trailing = a.dims.length - axis - b.dims.length;
      if (trailing < 0) throw new KernelError(`${attrs.opType}: B of rank ${b.dims.length} does not fit A at axis ${axis}`);
      const dims = [...b.dims, ...new Array<number>(trailing).fill(1)];
      return kernel([a, makeTensor(b.dtype, dims, b.data)], attrs, ctx);
    }
    return kernel(inputs, attrs, ctx);
  };
}

type F32Loop = (a: Float32Array, b: Float32Array, out: Float32Array) => void;

/** Dedicated float32 loops for equal shapes (residual adds, gates): a shared loop calling a closure is megamorphic. */
const F32_SAME: Record<string, F32Loop> = {
  Add: (a, b, o) => { for (let i = 0; i < o.length; i++) o[i] = a[i]! + b[i]!; },
  Sub: (a, b, o) => { for (let i = 0; i < o.length; i++) o[i] = a[i]! - b[i]!; },
  Mul: (a, b, o) => { for (let i = 0; i < o.length; i++) o[i] = a[i]! * b[i]!; },
  Div: (a, b, o) => { for (let i = 0; i < o.length; i++) o[i] = a[i]! / b[i]!; },
};

/** A binary op: the legacy broadcast variant from opset 1, numpy broadcasting from 7. */
const arith = (f: (d: DType, a: Attrs) => BinaryFn, fast?: F32Loop): OpVersion[] => {
  const general = binary(f);
  const k: Kernel = fast
    ? (inputs, attrs, ctx) => {
      const a = inputs[0]!, b = inputs[1]!;
      if (a.dtype === "float32" && b.dtype === "float32" && sameDims(a.dims, b.dims)) {
        const out = ctx.alloc ? ctx.alloc(a.data.length) : new Float32Array(a.data.length);
        fast(a.data as Float32Array, b.data as Float32Array, out);
        return [makeTensor("float32", a.dims.slice(), out)];
      }
      return general(inputs, attrs, ctx);
    }
    : general;
  return [{ since: 1, kernel: legacyBroadcast(k) }, { since: 7, kernel: k }];
};

const meanFinish = (t: Tensor, k: number) => {
  const v = numbers(t);
  return makeTensor(t.dtype, t.dims, fromNumbers(t.dtype, Array.from(v, (x) => x / k)));
};

const BINARY_OPS: Record<string, OpVersion[]> = {
  Add: withGrad(arith(() => (x, y) => x + y, F32_SAME.Add), addGrad),
  Sub: arith(() => (x, y) => x - y, F32_SAME.Sub),
  Mul: arith(() => (x, y) => x * y, F32_SAME.Mul),
  Div: arith(divFor, F32_SAME.Div),
  Pow: arith(() => Math.pow),
  Mod: [{ since: 10, kernel: binary(modFor) }],
  PRelu: [{ since: 1, kernel: legacyPrelu }, { since: 7, kernel: preluKernel }],
  BitShift: [{ since: 11, kernel: bitShift }],
  // Before opset 8 these took equal shapes only; numpy broadcasting is a superset.
  Max: [{ since: 1, kernel: bigAwareVariadic(maxFn, (x, y) => (x > y ? x : y)) }],
  Min: [{ since: 1, kernel: bigAwareVariadic(minFn, (x, y) => (x < y ? x : y)) }],
  Sum: [{ since: 1, kernel: variadic((x, y) => x + y) }],
  Mean: [{ since: 1, kernel: variadic((x, y) => x + y, meanFinish) }],
  Equal: b2((x, y) => (x === y ? 1 : 0), 7, "bool"),
  Greater: b2((x, y) => (x > y ? 1 : 0), 7, "bool"),
  Less: b2((x, y) => (x < y ? 1 : 0), 7, "bool"),
  GreaterOrEqual: b2((x, y) => (x >= y ? 1 : 0), 12, "bool"),
  LessOrEqual: b2((x, y) => (x <= y ? 1 : 0), 12, "bool"),
  And: b2((x, y) => (x && y ? 1 : 0), 7, "bool"),
  Or: b2((x, y) => (x || y ? 1 : 0), 7, "bool"),
  Xor: b2((x, y) => (!x !== !y ? 1 : 0), 7, "bool"),
  Where: [{ since: 9, kernel: whereKernel }],
};

// ---------------------------------------------------------------------------------------------
// Linear quantization (QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear)

const QRANGE: Partial<Record<DType, [number, number]>> = { uint8: [0, 255], int8: [-128, 127] };

/** Per-tensor (scalar scale) or per-axis (1-D scale along `axis`) parameter index of element i. */
function paramIndexer(x: Tensor, scale: Tensor, axisAttr: number): (i: number) => number {
  if (scale.data.length === 1) return () => 0;
  const a = normAxis(axisAttr, x.dims.length, "QuantizeLinear");
  const inner = sizeOf(x.dims.slice(a + 1)), d = x.dims[a]!;
  return (i) => Math.floor(i / inner) % d;
}

const quantizeLinear: Kernel = (inputs, attrs) => {
  const x = inputs[0]!, scale = inputs[1]!, zp = inputs[2];
  const dtype = zp?.dtype ?? "uint8";
  const range = QRANGE[dtype];
  if (!range) throw new KernelError(`QuantizeLinear: output type ${dtype} is not supported`);
  const xv = numbers(x), sv = numbers(scale), zv = zp ? numbers(zp) : undefined;
  const at = paramIndexer(x, scale, attrs.int("axis", 1));
  const out = new Float64Array(xv.length);
  for (let i = 0; i < xv.length; i++) {
    const p = at(i);
    const q = roundEven(toF32(xv[i]! / sv[p]!)) + (zv ? zv[p]! : 0);
    out[i] = Math.min(range[1], Math.max(range[0], q));
  }
  return [makeTensor(dtype, x.dims.slice(), fromNumbers(dtype, out))];
};

const dequantizeLinear: Kernel = (inputs, attrs) => {
  const x = inputs[0]!, scale = inputs[1]!, zp = inputs[2];
  const xv = numbers(x), sv = numbers(scale), zv = zp ? numbers(zp) : undefined;
  const at = paramIndexer(x, scale, attrs.int("axis", 1));
  const out = new Float32Array(xv.length);
  for (let i = 0; i < xv.length; i++) { const p = at(i); out[i] = (xv[i]! - (zv ? zv[p]! : 0)) * sv[p]!; }
  return [makeTensor("float32", x.dims.slice(), out)];
};

/** uint8 quantization with scale and zero point from the data's range (which always includes 0). */
const dynamicQuantizeLinear: Kernel = (inputs) => {
  const x = inputs[0]!;
  const xv = numbers(x);
  let lo = 0, hi = 0;
  for (const v of xv) { if (v < lo) lo = v; if (v > hi) hi = v; }
  const scale = toF32(toF32(hi - lo) / 255);
  const zp = scale === 0 ? 0 : Math.min(255, Math.max(0, roundEven(toF32(-lo / scale))));
  const y = new Uint8Array(xv.length);
  for (let i = 0; i < xv.length; i++) y[i] = scale === 0 ? zp : Math.min(255, Math.max(0, roundEven(toF32(xv[i]! / scale)) + zp));
  return [
    makeTensor("uint8", x.dims.slice(), y),
    makeTensor("float32", [], Float32Array.of(scale)),
    makeTensor("uint8", [], Uint8Array.of(zp)),
  ];
};

const QUANT_OPS: Record<string, OpVersion[]> = {
  QuantizeLinear: [{ since: 10, kernel: quantizeLinear }],
  DequantizeLinear: [{ since: 10, kernel: dequantizeLinear }],
  DynamicQuantizeLinear: [{ since: 11, kernel: dynamicQuantizeLinear }],
};

/** Every elementwise op, by ONNX op type. */
export const ELEMENTWISE_OPS: Record<string, OpVersion[]> = { ...UNARY_OPS, ...BINARY_OPS, ...QUANT_OPS };
