/**
 * Gemm and MatMul. `gemmReference` / `matmulReference` are plain loops accumulating in float64 and
 * the definition; `gemm` / `matmul` (registered) run float32 through the blocked GEMM of
 * cpu/sgemm.ts. Shape logic (`gemmShape`, `matmulShape`, `broadcastShapes`) is exported for the
 * planner and a later backward pass.
 * @module
 */
import type { Tensor } from "../../format/mod.ts";
import { sizeOf } from "../../format/mod.ts";
import { type Attrs, type Backward, f32Of, type GradOp, type GradResult, KernelError, type Kernel, type OpVersion, withGrad, f32Tensor } from "./types.ts";
import { type MatrixView, matrixView, sgemm } from "../cpu/sgemm.ts";
import { broadcastOffsets, reduceToShape } from "./elementwise.ts";

type NumArray = Float32Array | Float64Array | Int32Array | Uint32Array;

function numericData(t: Tensor, op: string): NumArray {
  const d = t.data;
  if (d instanceof Float32Array || d instanceof Float64Array || d instanceof Int32Array || d instanceof Uint32Array) return d;
  throw new KernelError(`${op}: unsupported dtype ${t.dtype}`);
}

function like(d: NumArray, n: number): NumArray {
  return new (d.constructor as new (n: number) => NumArray)(n);
}

/** numpy broadcasting of two shapes (right-aligned; 1 stretches). */
export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length), out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1, y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new KernelError(`shapes [${a}] and [${b}] do not broadcast`);
    out[i] = x === 1 ? y : x;
  }
  return out;
}

/** Resolved Gemm problem: `Y[m×n] = alpha·op(A)[m×k]·op(B)[k×n] + beta·C`. */
export interface GemmShape {
  m: number; n: number; k: number;
  transA: boolean; transB: boolean;
  alpha: number; beta: number;
}

/** Gemm's sizes and attributes from A's and B's dims. */
export function gemmShape(aDims: readonly number[], bDims: readonly number[], attrs: Attrs): GemmShape {
  if (aDims.length !== 2 || bDims.length !== 2) throw new KernelError(`Gemm: A [${aDims}] and B [${bDims}] must be 2-D`);
  const transA = attrs.int("transA", 0) !== 0, transB = attrs.int("transB", 0) !== 0;
  const [m, k] = transA ? [aDims[1]!, aDims[0]!] : [aDims[0]!, aDims[1]!];
  const [kb, n] = transB ? [bDims[1]!, bDims[0]!] : [bDims[0]!, bDims[1]!];
  if (k !== kb) throw new KernelError(`Gemm: inner dimensions differ (A [${aDims}], B [${bDims}], transA ${+transA}, transB ${+transB})`);
  return { m, n, k, transA, transB, alpha: attrs.float("alpha", 1), beta: attrs.float("beta", 1) };
}

/** Index of C's element for output (i, j) under unidirectional broadcasting to [m, n]. */
function cIndexer(c: Tensor, m: number, n: number): (i: number, j: number) => number {
  const d = c.dims;
  const rows = d.length === 2 ? d[0]! : 1, cols = d.length >= 1 ? d[d.length - 1]! : 1;
  if (d.length > 2 || (rows !== 1 && rows !== m) || (cols !== 1 && cols !== n)) {
    throw new KernelError(`Gemm: C [${d}] does not broadcast to [${m}, ${n}]`);
  }
  const rs = rows === 1 ? 0 : cols, cs = cols === 1 ? 0 : 1;
  return (i, j) => i * rs + j * cs;
}

function gemmInputs(inputs: readonly (Tensor | undefined)[], requireC: boolean): [Tensor, Tensor, Tensor | undefined] {
  const [a, b, c] = inputs;
  if (!a || !b) throw new KernelError("Gemm: A and B are required");
  if (requireC && !c) throw new KernelError("Gemm: C is required before opset 11");
  if (a.dtype !== b.dtype || (c && c.dtype !== a.dtype)) throw new KernelError("Gemm: A, B and C must share one dtype");
  return [a, b, c];
}

/** Gemm, the definition: `Y[i,j] = alpha·Σ_p op(A)[i,p]·op(B)[p,j] + beta·C[i,j]` (C broadcast, optional). */
export const gemmReference: Kernel = (inputs, attrs) => {
  const [a, b, c] = gemmInputs(inputs, false);
  const s = gemmShape(a.dims, b.dims, attrs);
  const ad = numericData(a, "Gemm"), bd = numericData(b, "Gemm");
  const y = like(ad, s.m * s.n);
  const cd = c ? numericData(c, "Gemm") : undefined, ci = c ? cIndexer(c, s.m, s.n) : undefined;
  for (let i = 0; i < s.m; i++) {
    for (let j = 0; j < s.n; j++) {
      let acc = 0;
      for (let p = 0; p < s.k; p++) {
        const av = s.transA ? ad[p * s.m + i]! : ad[i * s.k + p]!;
        const bv = s.transB ? bd[j * s.k + p]! : bd[p * s.n + j]!;
        acc += av * bv;
      }
      y[i * s.n + j] = s.alpha * acc + (cd ? s.beta * cd[ci!(i, j)]! : 0);
    }
  }
  return [{ dtype: a.dtype, dims: [s.m, s.n], data: y }];
};

function gemmWith(requireC: boolean): Kernel {
  return (inputs, attrs, ctx) => {
    const [a, b, c] = gemmInputs(inputs, requireC);
    ctx.reportPath?.(a.dtype === "float32" ? "blocked-gemm" : "reference");
    if (a.dtype !== "float32") return gemmReference(inputs, attrs, ctx);
    const s = gemmShape(a.dims, b.dims, attrs);
    const y = new Float32Array(s.m * s.n);
    let accumulate = false;
    if (c && s.beta !== 0) {
      const cd = c.data as Float32Array, ci = cIndexer(c, s.m, s.n);
      for (let i = 0; i < s.m; i++) for (let j = 0; j < s.n; j++) y[i * s.n + j] = s.beta * cd[ci(i, j)]!;
      accumulate = true;
    } else if (c) {
      cIndexer(c, s.m, s.n); // still validate C's shape
    }
    sgemm(s.m, s.n, s.k, s.alpha,
      matrixView(a.data as Float32Array, 0, a.dims[1]!, s.transA), matrixView(b.data as Float32Array, 0, b.dims[1]!, s.transB),
      y, 0, s.n, accumulate);
    return [{ dtype: "float32", dims: [s.m, s.n], data: y }];
  };
}

/** Gemm as registered (opset ≥ 11, C optional): float32 through the blocked GEMM, else the reference. */
export const gemm: Kernel = gemmWith(false);

/** Resolved MatMul problem: batched `[..batch, m, k] · [..batch, k, n]` with numpy broadcasting. */
export interface MatmulShape {
  /** Output dims as numpy returns them (1-D operands' unit axes removed). */
  outDims: number[];
  batchDims: number[];
  m: number; n: number; k: number;
  /** Flat batch index of A and of B for each output batch index. */
  aBatch: Int32Array;
  bBatch: Int32Array;
}

/** MatMul's shapes (numpy.matmul rules: a 1-D A gains a leading 1, a 1-D B a trailing 1, both removed after). */
export function matmulShape(aDims: readonly number[], bDims: readonly number[]): MatmulShape {
  if (aDims.length === 0 || bDims.length === 0) throw new KernelError("MatMul: operands must be at least 1-D");
  const a = aDims.length === 1 ? [1, aDims[0]!] : [...aDims];
  const b = bDims.length === 1 ? [bDims[0]!, 1] : [...bDims];
  const m = a[a.length - 2]!, k = a[a.length - 1]!, kb = b[b.length - 2]!, n = b[b.length - 1]!;
  if (k !== kb) throw new KernelError(`MatMul: inner dimensions differ (A [${aDims}], B [${bDims}])`);
  const aBatchDims = a.slice(0, -2), bBatchDims = b.slice(0, -2);
  const batchDims = broadcastShapes(aBatchDims, bBatchDims);
  const total = sizeOf(batchDims);
  const aBatch = new Int32Array(total), bBatch = new Int32Array(total);
  const r = batchDims.length;
  for (let t = 0; t < total; t++) {
    let rem = t, ai = 0, bi = 0, aMul = 1, bMul = 1;
    for (let d = r - 1; d >= 0; d--) {
      const idx = rem % batchDims[d]!;
      rem = Math.floor(rem / batchDims[d]!);
      const da = aBatchDims[d - (r - aBatchDims.length)], db = bBatchDims[d - (r - bBatchDims.length)];
      if (da !== undefined) { ai += (da === 1 ? 0 : idx) * aMul; aMul *= da; }
      if (db !== undefined) { bi += (db === 1 ? 0 : idx) * bMul; bMul *= db; }
    }
    aBatch[t] = ai; bBatch[t] = bi;
  }
  const outDims = [...batchDims];
  if (aDims.length > 1) outDims.push(m);
  if (bDims.length > 1) outDims.push(n);
  return { outDims, batchDims, m, n, k, aBatch, bBatch };
}

function matmulInputs(inputs: readonly (Tensor | undefined)[]): [Tensor, Tensor] {
  const [a, b] = inputs;
  if (!a || !b) throw new KernelError("MatMul: A and B are required");
  if (a.dtype !== b.dtype) throw new KernelError("MatMul: A and B must share one dtype");
  return [a, b];
}

/** MatMul, the definition: for every broadcast batch index, `Y[i,j] = Σ_p A[i,p]·B[p,j]`. */
export const matmulReference: Kernel = (inputs) => {
  const [a, b] = matmulInputs(inputs);
  const s = matmulShape(a.dims, b.dims);
  const ad = numericData(a, "MatMul"), bd = numericData(b, "MatMul");
  const y = like(ad, s.aBatch.length * s.m * s.n);
  for (let t = 0; t < s.aBatch.length; t++) {
    const ao = s.aBatch[t]! * s.m * s.k, bo = s.bBatch[t]! * s.k * s.n, yo = t * s.m * s.n;
    for (let i = 0; i < s.m; i++) {
      for (let j = 0; j < s.n; j++) {
        let acc = 0;
        for (let p = 0; p < s.k; p++) acc += ad[ao + i * s.k + p]! * bd[bo + p * s.n + j]!;
        y[yo + i * s.n + j] = acc;
      }
    }
  }
  return [{ dtype: a.dtype, dims: s.outDims, data: y }];
};

/** MatMul as registered: float32 through the blocked GEMM (one GEMM when B is shared by all batches), else the reference. */
export const matmul: Kernel = (inputs, attrs, ctx) => {
  const [a, b] = matmulInputs(inputs);
  ctx.reportPath?.(a.dtype === "float32" ? "blocked-gemm" : "reference");
  if (a.dtype !== "float32") return matmulReference(inputs, attrs, ctx);
  const s = matmulShape(a.dims, b.dims);
  const ad = a.data as Float32Array, bd = b.data as Float32Array;
  const batches = s.aBatch.length;
  const y = new Float32Array(batches * s.m * s.n);
  const bShared = s.bBatch.every((v) => v === 0);
  const aContiguous = s.aBatch.every((v, t) => v === t);
  if (bShared && aContiguous) {
    // [batch·m, k] · [k, n]: one larger GEMM fills the register tiles better than many small ones.
    sgemm(batches * s.m, s.n, s.k, 1, matrixView(ad, 0, s.k), matrixView(bd, 0, s.n), y, 0, s.n, false);
  } else {
    for (let t = 0; t < batches; t++) {
      sgemm(s.m, s.n, s.k, 1, matrixView(ad, s.aBatch[t]! * s.m * s.k, s.k), matrixView(bd, s.bBatch[t]! * s.k * s.n, s.n), y, t * s.m * s.n, s.n, false);
    }
  }
  return [{ dtype: "float32", dims: s.outDims, data: y }];
};

/** Gemm/MatMul ops by ONNX op type. Gemm's C became optional at opset 11; MatMul's semantics never changed. */
const transposeView = (v: MatrixView): MatrixView => ({ data: v.data, offset: v.offset, rowStride: v.colStride, colStride: v.rowStride });
/** View of `op(X)` (rows × cols) where X is stored row-major as rows × cols, or as cols × rows when `trans`. */
const opView = (data: Float32Array, rows: number, cols: number, trans: boolean): MatrixView =>
  trans ? matrixView(data, 0, rows, true) : matrixView(data, 0, cols, false);

/**
 * `Y = alpha·op(A)·op(B) + beta·C`. Backward: `d op(A) = alpha·dY·op(B)ᵀ`, `d op(B) = alpha·op(A)ᵀ·dY`
 * (written transposed when the operand is stored transposed), `dC = beta·dY` summed over C's
 * broadcast axes.
 */
function gemmLike(a: Tensor, b: Tensor, c: Tensor | undefined, s: { m: number; n: number; k: number; transA: boolean; transB: boolean; alpha: number; beta: number }): GradResult {
  const ad = f32Of(a, "A"), bd = f32Of(b, "B"), cd = c ? f32Of(c, "C") : undefined;
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
  return { outputs: [f32Tensor([m, n], y)], backward };
}

const gemmGrad: GradOp = ([a, b, c], attrs) => {
  if (!a || !b) throw new KernelError("Gemm: A and B are required");
  return gemmLike(a, b, c, gemmShape(a.dims, b.dims, attrs));
};

const matMulGrad: GradOp = ([a, b]) => {
  if (!a || !b || a.dims.length !== 2 || b.dims.length !== 2 || a.dims[1] !== b.dims[0]) {
    throw new KernelError(`MatMul: training supports 2-D [m, k]·[k, n] only, got [${a?.dims}]·[${b?.dims}]`);
  }
  return gemmLike(a, b, undefined, { m: a.dims[0]!, n: b.dims[1]!, k: a.dims[1]!, transA: false, transB: false, alpha: 1, beta: 0 });
};

export const GEMM_OPS: Record<string, OpVersion[]> = {
  Gemm: withGrad([{ since: 1, kernel: gemmWith(true) }, { since: 11, kernel: gemm }], gemmGrad),
  MatMul: withGrad([{ since: 1, kernel: matmul }], matMulGrad),
};
