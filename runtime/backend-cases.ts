/**
 * One data-driven suite of op cases every backend runs (reference, wasm, webgpu): an op, its
 * attributes and inputs (seeded random, some constant, some compressed as a `.opq` weight), and a
 * named tolerance. The expected output is the reference backend's (the op table's kernels); a
 * backend passes a case when max |got − expected| ≤ atol + rtol · max |expected|.
 * Test support: used by backend-cases.test.ts (Bun) and webgpu/webgpu.deno.test.ts (Deno).
 * @module
 */
import { type AttrValue, type CompressedTensor, mulberry32, type OpqModel, type Tensor } from "../format/mod.ts";
import { createSession, type SessionOptions } from "./session.ts";

/** A tolerance with its name (what justifies it). */
export interface Tolerance {
  name: string;
  atol: number;
  rtol: number;
}

/**
 * The tolerances. Exact ops move or select values. Elementwise arithmetic rounds once, as the
 * reference does (its float64 intermediates rounded to float32 can differ by an ulp).
 * Transcendentals (exp, tanh) differ by a few ulps between WGSL and JS Math. Reductions (Conv,
 * Gemm, pools, Softmax) sum in a different order than the reference: ~K·ε relative to the
 * largest output for K ≤ 600 terms here.
 */
export const TOLERANCES = {
  exact: { name: "exact", atol: 0, rtol: 0 },
  elementwise: { name: "elementwise (1 ulp)", atol: 1e-7, rtol: 2.4e-7 },
  transcendental: { name: "transcendental (few ulp)", atol: 1e-6, rtol: 2e-6 },
  reduction: { name: "reduction order", atol: 1e-6, rtol: 2e-5 },
} as const satisfies Record<string, Tolerance>;

/** An input of a case: a run-time feed, a dense constant, or a compressed weight. */
export interface CaseInput {
  dims: number[];
  /** "feed" (default), "const" (initializer) or a compressed weight ("uniform": step·code; "table": APoT-like levels). */
  kind?: "feed" | "const" | "uniform" | "table";
  /** Explicit values (else seeded random in [−2, 2), or int64 for `int64` inputs). */
  values?: number[];
  int64?: boolean;
  /** Fraction of zeros for compressed weights (default 0.5). */
  sparsity?: number;
  /** Keep random values away from zero (divisors). */
  nonzero?: boolean;
}

/** One op case. */
export interface OpCase {
  name: string;
  op: string;
  attrs?: Record<string, AttrValue>;
  inputs: (CaseInput | null)[];
  tolerance: Tolerance;
  opset?: number;
}

const ints = (v: number[]): AttrValue => ({ type: "ints", value: v });
const int = (v: number): AttrValue => ({ type: "int", value: v });
const float = (v: number): AttrValue => ({ type: "float", value: v });
const str = (v: string): AttrValue => ({ type: "string", value: v });
const T = TOLERANCES;
const feed = (...dims: number[]): CaseInput => ({ dims });
const constant = (...dims: number[]): CaseInput => ({ dims, kind: "const" });

/** The cases. */
export const OP_CASES: readonly OpCase[] = [
  { name: "conv 3x3 pad 1", op: "Conv", attrs: { pads: ints([1, 1, 1, 1]) }, inputs: [feed(2, 3, 9, 9), constant(4, 3, 3, 3), constant(4)], tolerance: T.reduction },
  { name: "conv stride 2 asymmetric pads", op: "Conv", attrs: { strides: ints([2, 2]), pads: ints([0, 1, 2, 1]) }, inputs: [feed(1, 3, 10, 11), constant(5, 3, 3, 3)], tolerance: T.reduction },
  { name: "conv dilation 2", op: "Conv", attrs: { dilations: ints([2, 2]), pads: ints([2, 2, 2, 2]) }, inputs: [feed(1, 2, 8, 8), constant(3, 2, 3, 3), constant(3)], tolerance: T.reduction },
  { name: "conv groups 2", op: "Conv", attrs: { group: int(2), pads: ints([1, 1, 1, 1]) }, inputs: [feed(1, 4, 6, 6), constant(6, 2, 3, 3), constant(6)], tolerance: T.reduction },
  { name: "conv depthwise stride 2", op: "Conv", attrs: { group: int(8), strides: ints([2, 2]), pads: ints([1, 1, 1, 1]) }, inputs: [feed(2, 8, 9, 9), constant(8, 1, 3, 3), constant(8)], tolerance: T.reduction },
  { name: "conv 1x1", op: "Conv", inputs: [feed(2, 16, 5, 5), constant(8, 16, 1, 1), constant(8)], tolerance: T.reduction },
  { name: "conv auto_pad SAME_UPPER", op: "Conv", attrs: { auto_pad: str("SAME_UPPER"), strides: ints([2, 2]) }, inputs: [feed(1, 2, 7, 7), constant(3, 2, 3, 3)], tolerance: T.reduction },
  { name: "conv 1-D", op: "Conv", attrs: { pads: ints([1, 1]) }, inputs: [feed(2, 3, 12), constant(4, 3, 3), constant(4)], tolerance: T.reduction },
  { name: "conv 5x5 compressed uniform", op: "Conv", attrs: { pads: ints([2, 2, 2, 2]) }, inputs: [feed(2, 6, 8, 8), { dims: [7, 6, 5, 5], kind: "uniform" }, constant(7)], tolerance: T.reduction },
  { name: "conv 3x3 compressed uniform 74% zeros", op: "Conv", attrs: { pads: ints([1, 1, 1, 1]), strides: ints([2, 2]) }, inputs: [feed(1, 16, 9, 9), { dims: [16, 16, 3, 3], kind: "uniform", sparsity: 0.74 }], tolerance: T.reduction },
  { name: "conv compressed, filter rows over two workgroup chunks", op: "Conv", attrs: { pads: ints([1, 1, 1, 1]) }, inputs: [feed(1, 160, 6, 6), { dims: [8, 160, 3, 3], kind: "uniform" }, constant(8)], tolerance: T.reduction },
  { name: "conv compressed groups 2 stride 2", op: "Conv", attrs: { group: int(2), strides: ints([2, 2]), pads: ints([1, 1, 1, 1]) }, inputs: [feed(2, 8, 9, 9), { dims: [10, 4, 3, 3], kind: "table" }, constant(10)], tolerance: T.reduction },
  { name: "conv depthwise compressed table", op: "Conv", attrs: { group: int(6), pads: ints([1, 1, 1, 1]) }, inputs: [feed(1, 6, 7, 7), { dims: [6, 1, 3, 3], kind: "table" }, constant(6)], tolerance: T.reduction },
  { name: "conv 1x1 compressed table", op: "Conv", inputs: [feed(2, 12, 4, 4), { dims: [10, 12, 1, 1], kind: "table" }], tolerance: T.reduction },
  // Shapes the webgpu grid kernel (≥ 4 output channels per group) takes: groups, dilation, a weight over two 64 KiB windows, table codebooks.
  { name: "conv groups 2 dilation 2, 4 channels per group", op: "Conv", attrs: { group: int(2), dilations: ints([2, 2]), pads: ints([2, 2, 2, 2]) }, inputs: [feed(1, 4, 8, 8), constant(8, 2, 3, 3), constant(8)], tolerance: T.reduction },
  { name: "conv 3x3 dense over two 64 KiB weight windows", op: "Conv", attrs: { pads: ints([1, 1, 1, 1]) }, inputs: [feed(1, 64, 5, 5), constant(32, 64, 3, 3), constant(32)], tolerance: T.reduction },
  { name: "conv 3x3 compressed table stride 2 asymmetric pads", op: "Conv", attrs: { strides: ints([2, 2]), pads: ints([0, 1, 2, 1]) }, inputs: [feed(2, 5, 10, 11), { dims: [8, 5, 3, 3], kind: "table" }, constant(8)], tolerance: T.reduction },
  { name: "conv 1x1 compressed table, 8 channels", op: "Conv", inputs: [feed(2, 12, 4, 4), { dims: [8, 12, 1, 1], kind: "table" }], tolerance: T.reduction },
  { name: "gemm transB bias", op: "Gemm", attrs: { transB: int(1) }, inputs: [feed(3, 20), constant(7, 20), constant(7)], tolerance: T.reduction },
  { name: "gemm transA alpha beta C[M,N]", op: "Gemm", attrs: { transA: int(1), alpha: float(0.5), beta: float(2) }, inputs: [feed(6, 4), constant(6, 5), constant(4, 5)], tolerance: T.reduction },
  { name: "gemm C[M,1]", op: "Gemm", inputs: [feed(3, 4), constant(4, 2), constant(3, 1)], tolerance: T.reduction },
  { name: "gemm compressed transB uniform", op: "Gemm", attrs: { transB: int(1) }, inputs: [feed(2, 64), { dims: [10, 64], kind: "uniform" }, constant(10)], tolerance: T.reduction },
  { name: "gemm compressed B[K,N] table", op: "Gemm", inputs: [feed(4, 30), { dims: [30, 9], kind: "table" }, constant(9)], tolerance: T.reduction },
  { name: "matmul 3-D by 2-D", op: "MatMul", inputs: [feed(2, 3, 8), constant(8, 5)], tolerance: T.reduction },
  { name: "matmul compressed", op: "MatMul", inputs: [feed(5, 16), { dims: [16, 6], kind: "uniform" }], tolerance: T.reduction },
  { name: "batchnorm", op: "BatchNormalization", attrs: { epsilon: float(1e-3) }, inputs: [feed(2, 4, 3, 3), constant(4), constant(4), constant(4), { dims: [4], kind: "const", values: [0.5, 1, 2, 0.1] }], tolerance: T.elementwise },
  { name: "relu", op: "Relu", inputs: [feed(2, 3, 4, 5)], tolerance: T.exact },
  { name: "leakyrelu", op: "LeakyRelu", attrs: { alpha: float(0.1) }, inputs: [feed(3, 7)], tolerance: T.elementwise },
  { name: "clip inputs (relu6)", op: "Clip", inputs: [{ dims: [4, 6], values: Array.from({ length: 24 }, (_, i) => i * 0.5 - 3) }, { dims: [], kind: "const", values: [0] }, { dims: [], kind: "const", values: [6] }], tolerance: T.exact },
  { name: "clip opset 6 attributes", op: "Clip", opset: 6, attrs: { min: float(-0.5), max: float(0.75) }, inputs: [feed(5, 5)], tolerance: T.exact },
  { name: "sigmoid wide range", op: "Sigmoid", inputs: [{ dims: [40], values: Array.from({ length: 40 }, (_, i) => (i - 20) * 1.7) }], tolerance: T.transcendental },
  { name: "hardswish", op: "HardSwish", opset: 14, inputs: [{ dims: [2, 20], values: Array.from({ length: 40 }, (_, i) => (i - 20) * 0.4) }], tolerance: T.elementwise },
  { name: "hardsigmoid", op: "HardSigmoid", attrs: { alpha: float(0.3), beta: float(0.4) }, inputs: [feed(3, 9)], tolerance: T.elementwise },
  { name: "tanh wide range", op: "Tanh", inputs: [{ dims: [40], values: Array.from({ length: 40 }, (_, i) => (i - 20) * 0.9) }], tolerance: T.transcendental },
  { name: "add same shape", op: "Add", inputs: [feed(2, 3, 4), feed(2, 3, 4)], tolerance: T.elementwise },
  { name: "add broadcast channel", op: "Add", inputs: [feed(2, 3, 4, 5), constant(3, 1, 1)], tolerance: T.elementwise },
  { name: "sub broadcast both", op: "Sub", inputs: [feed(3, 1, 5), feed(4, 1)], tolerance: T.elementwise },
  { name: "mul scalar", op: "Mul", inputs: [feed(2, 6), constant()], tolerance: T.elementwise },
  { name: "div broadcast row", op: "Div", inputs: [feed(4, 5), { dims: [5], kind: "const", nonzero: true }], tolerance: T.elementwise },
  { name: "maxpool 3x3 s2 p1", op: "MaxPool", attrs: { kernel_shape: ints([3, 3]), strides: ints([2, 2]), pads: ints([1, 1, 1, 1]) }, inputs: [feed(2, 3, 9, 9)], tolerance: T.exact },
  { name: "maxpool ceil_mode dilations", op: "MaxPool", attrs: { kernel_shape: ints([2, 2]), strides: ints([2, 2]), ceil_mode: int(1), dilations: ints([2, 1]) }, inputs: [feed(1, 2, 7, 8)], tolerance: T.exact },
  { name: "maxpool 1-D", op: "MaxPool", attrs: { kernel_shape: ints([3]), strides: ints([2]) }, inputs: [feed(2, 3, 11)], tolerance: T.exact },
  { name: "averagepool pads excluded", op: "AveragePool", attrs: { kernel_shape: ints([3, 3]), pads: ints([1, 1, 1, 1]) }, inputs: [feed(1, 3, 6, 6)], tolerance: T.elementwise },
  { name: "averagepool count_include_pad ceil", op: "AveragePool", attrs: { kernel_shape: ints([3, 3]), strides: ints([2, 2]), pads: ints([1, 1, 1, 1]), count_include_pad: int(1), ceil_mode: int(1) }, inputs: [feed(1, 2, 8, 8)], tolerance: T.elementwise },
  { name: "globalaveragepool", op: "GlobalAveragePool", inputs: [feed(2, 5, 7, 7)], tolerance: T.reduction },
  { name: "concat axis 1", op: "Concat", attrs: { axis: int(1) }, inputs: [feed(2, 3, 4), feed(2, 1, 4), constant(2, 2, 4)], tolerance: T.exact },
  { name: "concat axis -1", op: "Concat", attrs: { axis: int(-1) }, inputs: [feed(3, 2), feed(3, 5)], tolerance: T.exact },
  { name: "reshape 0 and -1", op: "Reshape", inputs: [feed(2, 3, 4), { dims: [2], kind: "const", int64: true, values: [0, -1] }], tolerance: T.exact },
  { name: "flatten axis 2", op: "Flatten", attrs: { axis: int(2) }, inputs: [feed(2, 3, 4, 5)], tolerance: T.exact },
  { name: "transpose", op: "Transpose", attrs: { perm: ints([0, 2, 3, 1]) }, inputs: [feed(2, 3, 4, 5)], tolerance: T.exact },
  { name: "squeeze", op: "Squeeze", inputs: [feed(2, 1, 3, 1), { dims: [2], kind: "const", int64: true, values: [1, 3] }], tolerance: T.exact },
  { name: "unsqueeze", op: "Unsqueeze", inputs: [feed(2, 3), { dims: [2], kind: "const", int64: true, values: [0, 3] }], tolerance: T.exact },
  { name: "softmax last axis", op: "Softmax", inputs: [feed(3, 4, 10)], tolerance: T.reduction },
  { name: "softmax middle axis", op: "Softmax", attrs: { axis: int(1) }, inputs: [feed(2, 5, 3)], tolerance: T.reduction },
  { name: "softmax opset 11 flattens from axis", op: "Softmax", opset: 11, attrs: { axis: int(1) }, inputs: [feed(2, 3, 4)], tolerance: T.reduction },
];

/** APoT-like levels of the "table" weights: ±2^-k sums (codes index this table). */
const TABLE_LEVELS = Float32Array.from([-1, -0.75, -0.5, -0.375, -0.25, -0.125, -0.0625, 0.0625, 0.125, 0.25, 0.375, 0.5, 0.75, 1]);

function compressedInput(name: string, inp: CaseInput, rnd: () => number): CompressedTensor {
  const n = inp.dims.reduce((a, b) => a * b, 1), sparsity = inp.sparsity ?? 0.5;
  const indices: number[] = [], codes: number[] = [];
  for (let k = 0; k < n; k++) {
    if (rnd() < sparsity) continue;
    indices.push(k);
    if (inp.kind === "table") codes.push(Math.floor(rnd() * TABLE_LEVELS.length));
    else { let c = 0; while (c === 0) c = Math.floor(rnd() * 15) - 7; codes.push(c); }
  }
  const codebook = inp.kind === "table" ? { kind: "table" as const, values: TABLE_LEVELS } : { kind: "uniform" as const, step: 0.0859375 };
  return { name, dims: inp.dims.slice(), codebook, indices: Uint32Array.from(indices), codes: Int32Array.from(codes) };
}

/** The one-node `.opq` model of a case and its feeds (deterministic: seeded by the case's index). */
export function caseModel(c: OpCase, seed: number): { model: OpqModel; feeds: Record<string, Tensor> } {
  const rnd = mulberry32(seed * 7919 + 17);
  const feeds: Record<string, Tensor> = {}, initializers: Record<string, Tensor> = {}, compressed: CompressedTensor[] = [];
  const inputs = c.inputs.map((inp, k) => {
    if (!inp) return "";
    const name = `in${k}`;
    if (inp.kind === "uniform" || inp.kind === "table") { compressed.push(compressedInput(name, inp, rnd)); return name; }
    const n = inp.dims.reduce((a, b) => a * b, 1);
    const values = inp.values ?? Array.from({ length: n }, () => {
      const v = rnd() * 4 - 2;
      return inp.nonzero ? Math.sign(v || 1) * (0.5 + Math.abs(v)) : v;
    });
    const t: Tensor = inp.int64
      ? { dtype: "int64", dims: inp.dims.slice(), data: BigInt64Array.from(values.map(BigInt)) }
      : { dtype: "float32", dims: inp.dims.slice(), data: Float32Array.from(values) };
    if (inp.kind === "const") initializers[name] = t;
    else feeds[name] = t;
    return name;
  });
  const model: OpqModel = {
    model: {
      irVersion: 8, opsetImports: [{ domain: "", version: c.opset ?? 13 }], producerName: "backend-cases",
      graph: {
        name: c.name, initializers,
        nodes: [{ opType: c.op, domain: "", name: "node", inputs, outputs: ["y"], attrs: c.attrs ?? {} }],
        inputs: Object.entries(feeds).map(([name, t]) => ({ name, dtype: t.dtype, shape: t.dims.slice() })),
        outputs: [{ name: "y", dtype: "float32", shape: null }],
      },
    },
    compressed,
    metadata: {},
  };
  return { model, feeds };
}

/** What one backend computed for a case, beside the reference. */
export interface CaseResult {
  got: Tensor;
  expected: Tensor;
  /** The backend that ran the node (as the session reports it). */
  ranOn: string;
  /** max |got − expected| and the bound it must stay under. */
  maxDiff: number;
  bound: number;
}

/** Run case `index` on `options.backend` and on the reference. */
export async function runCase(index: number, options: SessionOptions): Promise<CaseResult> {
  const c = OP_CASES[index]!;
  const { model, feeds } = caseModel(c, index);
  const ref = await createSession(model, { backend: "cpu-reference" });
  const s = await createSession(model, options);
  try {
    const expected = (await ref.run(feeds)).y!, got = (await s.run(feeds)).y!;
    const e = expected.data as Float32Array, g = got.data as Float32Array;
    let maxDiff = g.length === e.length && got.dims.join() === expected.dims.join() ? 0 : Infinity;
    let maxAbs = 0;
    for (let k = 0; k < e.length; k++) {
      maxAbs = Math.max(maxAbs, Math.abs(e[k]!));
      const d = Math.abs(g[k]! - e[k]!);
      maxDiff = Math.max(maxDiff, Number.isNaN(d) ? Infinity : d);
    }
    return { got, expected, ranOn: s.info.layers[0]!.backend, maxDiff, bound: c.tolerance.atol + c.tolerance.rtol * maxAbs };
  } finally {
    ref.dispose();
    s.dispose();
  }
}
