/**
 * Reductions over axes (ReduceSum, ReduceMean, ReduceMax, ... , ArgMax, ArgMin) and the
 * normalizing ops built on them (Softmax, LogSoftmax, Hardmax). Accumulation is in float64.
 * Axes moved from an attribute to an input at opset 13 for ReduceSum, at 18 for the others
 * (newer than ONNX 1.12's suite, so only unit-tested); Softmax changed from "flatten to 2-D at axis" to "along one axis" at opset 13.
 * @module
 */
import { sizeOf, type Tensor } from "../../format/mod.ts";
import { broadcastOffsets, fromNumbers, intList, makeTensor, normAxis, numbers, stridesOf, variants } from "./elementwise.ts";
import { KernelError, type Kernel, type OpVersion } from "./types.ts";

/** Output dims of a reduction over `axes` (sorted, normalized). */
export function reducedDims(dims: readonly number[], axes: readonly number[], keepDims: boolean): number[] {
  const set = new Set(axes);
  const out: number[] = [];
  dims.forEach((d, i) => {
    if (!set.has(i)) out.push(d);
    else if (keepDims) out.push(1);
  });
  return out;
}

interface Reducer {
  init: number;
  step: (acc: number, x: number) => number;
  finish?: (acc: number, count: number) => number;
}

/** Reduce `x` over `axes` (normalized, unique). Returns float64 values in output order. */
export function reduceValues(x: Tensor, axes: readonly number[], r: Reducer): Float64Array {
  const dims = x.dims;
  const v = numbers(x);
  const set = new Set(axes);
  const outDims = dims.map((d, i) => (set.has(i) ? 1 : d));
  const n = sizeOf(outDims);
  const out = new Float64Array(n).fill(r.init);
  const rank = dims.length;
  // Map each input element to its output slot with an incremental counter.
  const outStrides = new Array<number>(rank);
  let acc = 1;
  for (let i = rank - 1; i >= 0; i--) { outStrides[i] = set.has(i) ? 0 : acc; acc *= outDims[i]!; }
  const idx = new Array<number>(rank).fill(0);
  let o = 0;
  for (let i = 0; i < v.length; i++) {
    out[o] = r.step(out[o]!, v[i]!);
    for (let k = rank - 1; k >= 0; k--) {
      idx[k]!++;
      o += outStrides[k]!;
      if (idx[k]! < dims[k]!) break;
      o -= outStrides[k]! * idx[k]!;
      idx[k] = 0;
    }
  }
  const count = v.length / Math.max(n, 1);
  if (r.finish) for (let i = 0; i < n; i++) out[i] = r.finish(out[i]!, count);
  return out;
}

const REDUCERS: Record<string, Reducer> = {
  ReduceSum: { init: 0, step: (a, x) => a + x },
  ReduceMean: { init: 0, step: (a, x) => a + x, finish: (a, c) => a / c },
  ReduceMax: { init: -Infinity, step: (a, x) => (x > a || Number.isNaN(x) ? x : a) },
  ReduceMin: { init: Infinity, step: (a, x) => (x < a || Number.isNaN(x) ? x : a) },
  ReduceProd: { init: 1, step: (a, x) => a * x },
  ReduceL1: { init: 0, step: (a, x) => a + Math.abs(x) },
  ReduceL2: { init: 0, step: (a, x) => a + x * x, finish: (a) => Math.sqrt(a) },
  ReduceLogSum: { init: 0, step: (a, x) => a + x, finish: (a) => Math.log(a) },
  ReduceSumSquare: { init: 0, step: (a, x) => a + x * x },
};

/** A reduction kernel; axes come from an input (ReduceSum from opset 13) or the `axes` attribute. */
function reduceKernel(op: string, axesFromInput: boolean): Kernel {
  return (inputs, attrs) => {
    const x = inputs[0]!;
    const rank = x.dims.length;
    const keep = attrs.int("keepdims", 1) === 1;
    let axes: number[] = axesFromInput ? (inputs[1] ? intList(inputs[1]) : []) : attrs.ints("axes", []);
    if (axes.length === 0) {
      if (axesFromInput && attrs.int("noop_with_empty_axes", 0) === 1) return [x];
      axes = x.dims.map((_, i) => i);
    }
    axes = [...new Set(axes.map((a) => normAxis(a, rank, op)))];
    const dims = reducedDims(x.dims, axes, keep);
    let vals: Float64Array;
    if (op === "ReduceLogSumExp") {
      const mx = reduceValues(x, axes, REDUCERS.ReduceMax!);
      const v = numbers(x);
      // log Σ exp(x - max) + max, computed with the max broadcast back over the reduced axes
      const shifted = new Float64Array(v.length);
      const set = new Set(axes);
      const st: number[] = [];
      let acc = 1;
      for (let i = rank - 1; i >= 0; i--) { st[i] = set.has(i) ? 0 : acc; acc *= set.has(i) ? 1 : x.dims[i]!; }
      const idx = new Array<number>(rank).fill(0);
      let o = 0;
      for (let i = 0; i < v.length; i++) {
        shifted[i] = Math.exp(v[i]! - mx[o]!);
        for (let k = rank - 1; k >= 0; k--) {
          idx[k]!++; o += st[k]!;
          if (idx[k]! < x.dims[k]!) break;
          o -= st[k]! * idx[k]!; idx[k] = 0;
        }
      }
      const sums = reduceValues(makeTensor("float64", x.dims, shifted), axes, REDUCERS.ReduceSum!);
      vals = sums.map((s, i) => Math.log(s) + mx[i]!);
    } else {
      vals = reduceValues(x, axes, REDUCERS[op]!);
    }
    return [makeTensor(x.dtype, dims, fromNumbers(x.dtype, vals))];
  };
}

/** ArgMax/ArgMin along one axis; ties pick the first (or last with select_last_index). */
function argKernel(max: boolean): Kernel {
  return (inputs, attrs) => {
    const x = inputs[0]!;
    const a = normAxis(attrs.int("axis", 0), x.dims.length, max ? "ArgMax" : "ArgMin");
    const keep = attrs.int("keepdims", 1) === 1, last = attrs.int("select_last_index", 0) === 1;
    const v = numbers(x);
    const d = x.dims[a]!, inner = sizeOf(x.dims.slice(a + 1)), outer = sizeOf(x.dims.slice(0, a));
    const out = new BigInt64Array(outer * inner);
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < inner; i++) {
        let best = 0, bv = v[o * d * inner + i]!;
        for (let j = 1; j < d; j++) {
          const y = v[(o * d + j) * inner + i]!;
          const better = max ? y > bv || (last && y === bv) : y < bv || (last && y === bv);
          if (better) { best = j; bv = y; }
        }
        out[o * inner + i] = BigInt(best);
      }
    }
    return [makeTensor("int64", reducedDims(x.dims, [a], keep), out)];
  };
}

type RowFn = (row: Float64Array) => void;

/** Apply `f` to each row along `axis` (opset ≥ 13) or to each row of the 2-D coercion at `axis` (before). */
function rowwise(op: string, f: RowFn, since: number): Kernel {
  const coerce2d = since < 13;
  return (inputs, attrs) => {
    const x = inputs[0]!;
    const rank = x.dims.length;
    const v = numbers(x);
    const out = new Float64Array(v.length);
    if (coerce2d) {
      const a = attrs.int("axis", 1);
      const aa = a < 0 ? a + rank : a;
      if (aa < 0 || aa > rank) throw new KernelError(`${op}: axis ${a} out of range for rank ${rank}`);
      const cols = sizeOf(x.dims.slice(aa));
      const row = new Float64Array(cols);
      for (let r = 0; r * cols < v.length; r++) {
        for (let c = 0; c < cols; c++) row[c] = v[r * cols + c]!;
        f(row);
        out.set(row, r * cols);
      }
    } else {
      const a = normAxis(attrs.int("axis", -1), rank, op);
      const d = x.dims[a]!, inner = sizeOf(x.dims.slice(a + 1)), outer = sizeOf(x.dims.slice(0, a));
      const row = new Float64Array(d);
      for (let o = 0; o < outer; o++) {
        for (let i = 0; i < inner; i++) {
          for (let j = 0; j < d; j++) row[j] = v[(o * d + j) * inner + i]!;
          f(row);
          for (let j = 0; j < d; j++) out[(o * d + j) * inner + i] = row[j]!;
        }
      }
    }
    return [makeTensor(x.dtype, x.dims.slice(), fromNumbers(x.dtype, out))];
  };
}

/** Numerically stable softmax of a row, in place. */
export function softmaxRow(row: Float64Array): void {
  let mx = -Infinity;
  for (const v of row) if (v > mx) mx = v;
  let s = 0;
  for (let i = 0; i < row.length; i++) { row[i] = Math.exp(row[i]! - mx); s += row[i]!; }
  for (let i = 0; i < row.length; i++) row[i]! /= s;
}

/** log-softmax of a row, in place. */
export function logSoftmaxRow(row: Float64Array): void {
  let mx = -Infinity;
  for (const v of row) if (v > mx) mx = v;
  let s = 0;
  for (let i = 0; i < row.length; i++) s += Math.exp(row[i]! - mx);
  const lse = Math.log(s) + mx;
  for (let i = 0; i < row.length; i++) row[i]! -= lse;
}

function hardmaxRow(row: Float64Array): void {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  row.fill(0);
  if (row.length) row[best] = 1;
}

// ---------------------------------------------------------------------------------------------
// Losses (opset 12/13): NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss

/**
 * NLL over log-probabilities `x` [N, C, d1..dk] and class indices `target` [N, d1..dk]:
 * loss = −x[n, t, d]·w[t], 0 where t = ignore_index; reduced by "none", "sum" or "mean"
 * (the weighted mean: Σ loss / Σ w[t] over the non-ignored elements).
 */
export function nllLoss(x: Tensor, target: Tensor, weight: Tensor | undefined, reduction: string, ignoreIndex: number | undefined): Tensor {
  const xv = numbers(x), tv = numbers(target), wv = weight ? numbers(weight) : undefined;
  const n = x.dims[0]!, c = x.dims[1]!, inner = sizeOf(x.dims.slice(2));
  const loss = new Float64Array(n * inner);
  let wsum = 0;
  for (let b = 0; b < n; b++) {
    for (let d = 0; d < inner; d++) {
      const t = Math.trunc(tv[b * inner + d]!);
      if (t === ignoreIndex) continue;
      if (t < 0 || t >= c) throw new KernelError(`NegativeLogLikelihoodLoss: target ${t} outside [0, ${c})`);
      const w = wv ? wv[t]! : 1;
      loss[b * inner + d] = -xv[(b * c + t) * inner + d]! * w;
      wsum += w;
    }
  }
  if (reduction === "none") return makeTensor(x.dtype, target.dims.slice(), fromNumbers(x.dtype, loss));
  let sum = 0;
  for (const v of loss) sum += v;
  if (reduction === "sum") return makeTensor(x.dtype, [], fromNumbers(x.dtype, [sum]));
  if (reduction !== "mean") throw new KernelError(`unknown reduction '${reduction}'`);
  return makeTensor(x.dtype, [], fromNumbers(x.dtype, [sum / wsum]));
}

const optIgnore = (a: { has(n: string): boolean; int(n: string): number }) => (a.has("ignore_index") ? a.int("ignore_index") : undefined);

const nllKernel: Kernel = (inputs, attrs) =>
  [nllLoss(inputs[0]!, inputs[1]!, inputs[2], attrs.string("reduction", "mean"), optIgnore(attrs))];

const sceKernel: Kernel = (inputs, attrs) => {
  const scores = inputs[0]!;
  // log-softmax over the class axis (1), in float64
  const v = numbers(scores);
  const n = scores.dims[0]!, c = scores.dims[1]!, inner = sizeOf(scores.dims.slice(2));
  const logp = new Float64Array(v.length);
  const row = new Float64Array(c);
  for (let b = 0; b < n; b++) {
    for (let d = 0; d < inner; d++) {
      for (let k = 0; k < c; k++) row[k] = v[(b * c + k) * inner + d]!;
      logSoftmaxRow(row);
      for (let k = 0; k < c; k++) logp[(b * c + k) * inner + d] = row[k]!;
    }
  }
  const logProb = makeTensor(scores.dtype, scores.dims.slice(), fromNumbers(scores.dtype, logp));
  const lossInput = makeTensor("float64", scores.dims.slice(), logp);
  const loss = nllLoss(lossInput, inputs[1]!, inputs[2], attrs.string("reduction", "mean"), optIgnore(attrs));
  return [makeTensor(scores.dtype, loss.dims, fromNumbers(scores.dtype, loss.data as Float64Array)), logProb];
};

// ---------------------------------------------------------------------------------------------
// Normalizations over trailing axes: LayerNormalization (17), MeanVarianceNormalization (9)

/** LayerNormalization: normalize over axes [axis, rank), then scale and shift (broadcast to those axes). */
const layerNorm: Kernel = (inputs, attrs) => {
  const x = inputs[0]!, scale = inputs[1]!, bias = inputs[2];
  const r = x.dims.length;
  const axis = normAxis(attrs.int("axis", -1), r, "LayerNormalization");
  const eps = attrs.float("epsilon", 1e-5);
  const rows = sizeOf(x.dims.slice(0, axis)), cols = sizeOf(x.dims.slice(axis));
  const normDims = x.dims.slice(axis);
  const sv = numbers(scale), bv = bias ? numbers(bias) : undefined;
  // unidirectional broadcast of scale/bias onto the normalized shape
  const so = broadcastOffsets(scale.dims, normDims), bo = bias ? broadcastOffsets(bias.dims, normDims) : undefined;
  const v = numbers(x);
  const y = new Float64Array(v.length), mean = new Float64Array(rows), inv = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    let m = 0;
    for (let j = 0; j < cols; j++) m += v[i * cols + j]!;
    m /= cols;
    let q = 0;
    for (let j = 0; j < cols; j++) { const d = v[i * cols + j]! - m; q += d * d; }
    const is = 1 / Math.sqrt(q / cols + eps);
    mean[i] = m; inv[i] = is;
    for (let j = 0; j < cols; j++) {
      y[i * cols + j] = (v[i * cols + j]! - m) * is * sv[so[j]!]! + (bv ? bv[bo![j]!]! : 0);
    }
  }
  const statDims = x.dims.map((d, i) => (i < axis ? d : 1));
  const statType = attrs.int("stash_type", 1) === 1 ? "float32" : x.dtype;
  return [
    makeTensor(x.dtype, x.dims.slice(), fromNumbers(x.dtype, y)),
    makeTensor(statType, statDims, fromNumbers(statType, mean)),
    makeTensor(statType, statDims.slice(), fromNumbers(statType, inv)),
  ];
};

/** MeanVarianceNormalization: (x − mean) / (sqrt(var) + 1e-9) over `axes` (default N, H, W), as its ONNX function body. */
const meanVarianceNorm: Kernel = (inputs, attrs) => {
  const x = inputs[0]!;
  const axes = attrs.ints("axes", [0, 2, 3]).map((a) => normAxis(a, x.dims.length, "MeanVarianceNormalization"));
  const mean = reduceValues(x, axes, REDUCERS.ReduceMean!);
  const v = numbers(x);
  const sq = makeTensor("float64", x.dims, Float64Array.from(v, (t) => t * t));
  const meanSq = reduceValues(sq, axes, REDUCERS.ReduceMean!);
  const outDims = x.dims.map((d, i) => (axes.includes(i) ? 1 : d));
  const off = broadcastOffsets(outDims, x.dims);
  const y = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const m = mean[off[i]!]!;
    y[i] = (v[i]! - m) / (Math.sqrt(meanSq[off[i]!]! - m * m) + 1e-9);
  }
  return [makeTensor(x.dtype, x.dims.slice(), fromNumbers(x.dtype, y))];
};

// ---------------------------------------------------------------------------------------------
// TopK, Det, Einsum

/** TopK along an axis: values and int64 indices; ties keep the lower index first. */
const topK = (since: number): Kernel => (inputs, attrs, _ctx) => {
  const x = inputs[0]!;
  const k = since >= 10 ? intList(inputs[1]!)[0]! : attrs.int("k");
  const a = normAxis(attrs.int("axis", -1), x.dims.length, "TopK");
  const largest = attrs.int("largest", 1) === 1;
  const v = numbers(x);
  const d = x.dims[a]!, inner = sizeOf(x.dims.slice(a + 1)), outer = sizeOf(x.dims.slice(0, a));
  if (k < 0 || k > d) throw new KernelError(`TopK: k=${k} outside [0, ${d}]`);
  const vals = new Float64Array(outer * k * inner), idx = new BigInt64Array(outer * k * inner);
  const order = Array.from({ length: d }, (_, j) => j);
  for (let o = 0; o < outer; o++) {
    for (let q = 0; q < inner; q++) {
      const at = (j: number) => v[(o * d + j) * inner + q]!;
      order.sort((p, r) => (at(p) === at(r) ? p - r : largest ? at(r) - at(p) : at(p) - at(r)));
      for (let j = 0; j < k; j++) {
        const dst = (o * k + j) * inner + q;
        vals[dst] = at(order[j]!);
        idx[dst] = BigInt(order[j]!);
      }
      order.sort((p, r) => p - r);
    }
  }
  const dims = x.dims.slice();
  dims[a] = k;
  return [makeTensor(x.dtype, dims, fromNumbers(x.dtype, vals)), makeTensor("int64", dims.slice(), idx)];
};

/** Determinant of the trailing square matrices (LU with partial pivoting, float64). */
const det: Kernel = (inputs) => {
  const x = inputs[0]!;
  const r = x.dims.length, n = x.dims[r - 1]!;
  const v = numbers(x);
  const count = v.length / (n * n);
  const out = new Float64Array(count);
  const m = new Float64Array(n * n);
  for (let b = 0; b < count; b++) {
    for (let i = 0; i < n * n; i++) m[i] = v[b * n * n + i]!;
    let dt = 1;
    for (let c = 0; c < n; c++) {
      let p = c;
      for (let i = c + 1; i < n; i++) if (Math.abs(m[i * n + c]!) > Math.abs(m[p * n + c]!)) p = i;
      if (m[p * n + c] === 0) { dt = 0; break; }
      if (p !== c) { for (let j = 0; j < n; j++) { const t = m[c * n + j]!; m[c * n + j] = m[p * n + j]!; m[p * n + j] = t; } dt = -dt; }
      dt *= m[c * n + c]!;
      for (let i = c + 1; i < n; i++) {
        const f = m[i * n + c]! / m[c * n + c]!;
        for (let j = c; j < n; j++) m[i * n + j]! -= f * m[c * n + j]!;
      }
    }
    out[b] = dt;
  }
  return [makeTensor(x.dtype, x.dims.slice(0, -2), fromNumbers(x.dtype, out))];
};

/**
 * Einsum by direct summation over every label (fine for the small contractions models use in
 * heads; a large one would want a GEMM). "..." stands for the same leading broadcast dims in
 * every operand; without "->" the output is the ellipsis then the once-used labels, sorted.
 */
const einsum: Kernel = (inputs, attrs) => {
  const xs = inputs.filter((t): t is Tensor => t !== undefined);
  const eq = attrs.string("equation").replace(/\s+/g, "");
  const [lhs, rhsGiven] = eq.split("->") as [string, string | undefined];
  const terms = lhs.split(",");
  if (terms.length !== xs.length) throw new KernelError(`Einsum: ${terms.length} operands in equation, ${xs.length} inputs`);
  // "..." becomes upper-case-free placeholder labels 0..e-1 (digits never occur as labels).
  let ell = 0;
  terms.forEach((t, i) => { if (t.includes("...")) ell = Math.max(ell, xs[i]!.dims.length - (t.length - 3)); });
  const ellLabels = Array.from({ length: ell }, (_, i) => String(i));
  const expand = (t: string, rank: number) => {
    if (!t.includes("...")) return t.split("");
    const [pre, post] = t.split("...") as [string, string];
    const n = rank - pre.length - post.length;
    return [...pre.split(""), ...ellLabels.slice(ell - n), ...post.split("")];
  };
  const opLabels = terms.map((t, i) => expand(t, xs[i]!.dims.length));
  const size = new Map<string, number>();
  opLabels.forEach((ls, i) => ls.forEach((l, k) => {
    const d = xs[i]!.dims[k]!;
    const prev = size.get(l);
    if (prev === undefined || prev === 1) size.set(l, d);
    else if (d !== 1 && d !== prev) throw new KernelError(`Einsum: label ${l} has sizes ${prev} and ${d}`);
  }));
  let outLabels: string[];
  if (rhsGiven !== undefined) outLabels = expand(rhsGiven, ell + rhsGiven.replace("...", "").length);
  else {
    const countOf = new Map<string, number>();
    for (const ls of opLabels) for (const l of ls) countOf.set(l, (countOf.get(l) ?? 0) + 1);
    outLabels = [...ellLabels, ...[...countOf].filter(([l, c]) => c === 1 && !ellLabels.includes(l)).map(([l]) => l).sort()];
  }
  const all = [...size.keys()];
  const sumLabels = all.filter((l) => !outLabels.includes(l));
  const loop = [...outLabels, ...sumLabels];
  const dims = loop.map((l) => size.get(l)!);
  const outDims = outLabels.map((l) => size.get(l)!);
  const vals = xs.map(numbers);
  // stride of each loop label in each operand (0 for broadcast or absent labels; summed for repeats = diagonal)
  const strides = xs.map((x, i) => {
    const st = stridesOf(x.dims);
    return loop.map((l) => opLabels[i]!.reduce((s, ol, k) => (ol === l && x.dims[k] !== 1 ? s + st[k]! : s), 0));
  });
  const outN = sizeOf(outDims), inner = sizeOf(dims.slice(outLabels.length));
  const out = new Float64Array(outN);
  const pos = new Array<number>(loop.length).fill(0);
  const offs = new Array<number>(xs.length).fill(0);
  for (let o = 0; o < outN; o++) {
    let acc = 0;
    for (let s = 0; s < inner; s++) {
      let p = 1;
      for (let i = 0; i < xs.length; i++) p *= vals[i]![offs[i]!]!;
      acc += p;
      for (let k = loop.length - 1; k >= 0; k--) {
        pos[k]!++;
        for (let i = 0; i < xs.length; i++) offs[i]! += strides[i]![k]!;
        if (pos[k]! < dims[k]!) break;
        for (let i = 0; i < xs.length; i++) offs[i]! -= strides[i]![k]! * pos[k]!;
        pos[k] = 0;
      }
    }
    out[o] = acc;
  }
  return [makeTensor(xs[0]!.dtype, outDims, fromNumbers(xs[0]!.dtype, out))];
};

/** A reduction's table entries: axes as an attribute from opset 1, as an input from `axesInputSince`. */
const reduceOp = (op: string, axesInputSince?: number): OpVersion[] =>
  variants((since) => reduceKernel(op, axesInputSince !== undefined && since >= axesInputSince), 1, ...(axesInputSince ? [axesInputSince] : []));

/** Every reduction and normalizing op, by ONNX op type. */
export const REDUCE_OPS: Record<string, OpVersion[]> = {
  ReduceSum: reduceOp("ReduceSum", 13),
  ReduceMean: reduceOp("ReduceMean", 18),
  ReduceMax: reduceOp("ReduceMax", 18),
  ReduceMin: reduceOp("ReduceMin", 18),
  ReduceProd: reduceOp("ReduceProd", 18),
  ReduceL1: reduceOp("ReduceL1", 18),
  ReduceL2: reduceOp("ReduceL2", 18),
  ReduceLogSum: reduceOp("ReduceLogSum", 18),
  ReduceLogSumExp: reduceOp("ReduceLogSumExp", 18),
  ReduceSumSquare: reduceOp("ReduceSumSquare", 18),
  ArgMax: [{ since: 1, kernel: argKernel(true) }],
  ArgMin: [{ since: 1, kernel: argKernel(false) }],
  Softmax: variants((v) => rowwise("Softmax", softmaxRow, v), 1, 13),
  LogSoftmax: variants((v) => rowwise("LogSoftmax", logSoftmaxRow, v), 1, 13),
  Hardmax: variants((v) => rowwise("Hardmax", hardmaxRow, v), 1, 13),
  NegativeLogLikelihoodLoss: [{ since: 12, kernel: nllKernel }],
  SoftmaxCrossEntropyLoss: [{ since: 12, kernel: sceKernel }],
  LayerNormalization: [{ since: 17, kernel: layerNorm }],
  TopK: variants(topK, 1, 10),
  Det: [{ since: 11, kernel: det }],
  Einsum: [{ since: 12, kernel: einsum }],
  MeanVarianceNormalization: [{ since: 9, kernel: meanVarianceNorm }],
};
