/**
 * Gemm and MatMul. `gemmReference` / `matmulReference` are plain loops accumulating in float64 and
 * the definition; `gemm` / `matmul` (registered) run float32 through the blocked GEMM of
 * cpu/sgemm.ts. Shape logic (`gemmShape`, `matmulShape`, `broadcastShapes`) is exported for the
 * planner and a later backward pass.
 * @module
 */
import type { Tensor } from "../../format/mod.ts";
import { sizeOf } from "../../format/mod.ts";
import { type Attrs, KernelError, type Kernel, type OpVersion } from "./types.ts";
import { matrixView, sgemm } from "../cpu/sgemm.ts";

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
export const GEMM_OPS: Record<string, OpVersion[]> = {
  Gemm: [{ since: 1, kernel: gemmWith(true) }, { since: 11, kernel: gemm }],
  MatMul: [{ since: 1, kernel: matmul }],
};
