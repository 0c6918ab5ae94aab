/**
 * Data-driven check of the wasm sparse-quantized kernels (conv-sparse.ts) against the reference
 * backend on the same compressed weight: each case is a one-node `.opq` model (Conv, Gemm or
 * MatMul) with a seeded compressed weight, run by a session on `wasm` and on `cpu-reference`.
 * Shared by the Bun and Deno tests; run as a script it prints the worst errors as JSON (the tests
 * start it with OPQ_WASM_RELAXED=0 to check the plain-SIMD build).
 *
 * The wasm session loads the case either as the in-memory model (its weight's indices and codes,
 * transcoded in JS) or from the case encoded as a `.opq` file (its rANS stream transcoded in
 * wasm, as/rans.ts: the path a user's file takes).
 *
 *   bun runtime/wasm/ops/sparse-check.ts [threads]
 * @module
 */
import { type AttrValue, type CompressedTensor, encodeOpq, mulberry32, type OpqModel, type Tensor } from "../../../format/mod.ts";
import { createSession } from "../../session.ts";

/** One case: a Conv (x [N, C, H, W]) or a Gemm/MatMul (a [rows.., K]). */
export interface SparseCase {
  name: string;
  op: "Conv" | "Gemm" | "MatMul";
  /** Conv: [N, C, H, W]; Gemm/MatMul: A's dims. */
  x: number[];
  /** Conv: [M, C/group, KH, KW]; Gemm: B's dims (transB decides); MatMul: [K, M]. */
  w: number[];
  attrs?: Record<string, AttrValue>;
  /** Fraction of weights kept. */
  density: number;
  bits: number;
  /** An APoT-like level table instead of a uniform step. */
  table?: boolean;
  bias?: boolean;
  /** Rows (output channels) with no kept weight. */
  emptyRows?: number[];
  /** A u8 code-form path the case must bind under forms "coded" (ending in "-coded"); else the sparse path (wasm-sparse-direct, wasm-sparse-gemv). */
  path?: string;
}

/**
 * Which weight forms a check offers: "sparse" sets OPQ_WASM_FORMS=sparse (only the sparse-row
 * kernels take compressed layers), "coded" OPQ_WASM_FORMS=coded (the u8 code form takes every
 * layer it can), "auto" lets the cheapest claim win (sparse rows or u8 codes).
 */
export type FormChoice = "auto" | "sparse" | "coded";

/** Every form choice, in the order the tests run them. */
export const FORM_CHOICES: readonly FormChoice[] = ["auto", "sparse", "coded"];

/** Where the wasm session loads a case from: the OpqModel object, or its encoded `.opq` bytes. */
export type CaseSource = "model" | "file";
/** Both sources, in the order the tests run them. */
export const CASE_SOURCES: readonly CaseSource[] = ["model", "file"];

/** The compressed weight forms of the wasm backend. */
export const COMPRESSED_FORMS = ["sparse-levels-u16", "codes-u8-dense"] as const;

/**
 * The path and weight form case `c` must bind under `forms` (path undefined: any path, the form
 * one of COMPRESSED_FORMS).
 */
export function expectedBinding(c: SparseCase, forms: FormChoice): { path?: string; weightForm?: string } {
  const sparse = { path: c.op === "Conv" ? "wasm-sparse-direct" : "wasm-sparse-gemv", weightForm: "sparse-levels-u16" };
  if (forms === "sparse") return sparse;
  const coded = c.path?.endsWith("coded");
  if (forms === "coded") return coded ? { path: c.path, weightForm: "codes-u8-dense" } : c.op === "Conv" ? {} : sparse;
  // auto: the cheaper form by the cost model, either of them for a Conv.
  return c.op === "Conv" ? {} : sparse;
}

/** True if result `r` of case `c` bound as expectedBinding says. */
export function boundAsExpected(c: SparseCase, r: CaseResult, forms: FormChoice): boolean {
  const want = expectedBinding(c, forms);
  if (r.backend !== "wasm" || !(COMPRESSED_FORMS as readonly string[]).includes(r.weightForm)) return false;
  return (want.path === undefined || r.path === want.path) && (want.weightForm === undefined || r.weightForm === want.weightForm);
}

const ints = (value: number[]): AttrValue => ({ type: "ints", value });
const int = (value: number): AttrValue => ({ type: "int", value });

/** The cases: odd sizes, pads, strides 1/2, dilations, groups incl. depthwise, 1×1/3×3/7×7, bits 2–8, empty rows, tables. */
export const SPARSE_CASES: readonly SparseCase[] = [
  { name: "1x1 s1 odd 7x5 (reads in place)", op: "Conv", x: [1, 6, 7, 5], w: [5, 6, 1, 1], density: 0.5, bits: 2, bias: true },
  { name: "1x1 s1 run a multiple of 8 (sums straight to y)", op: "Conv", x: [2, 8, 4, 4], w: [9, 8, 1, 1], density: 0.4, bits: 8 },
  { name: "1x1 s2 (downsample)", op: "Conv", x: [1, 16, 9, 11], w: [12, 16, 1, 1], attrs: { strides: ints([2, 2]) }, density: 0.3, bits: 3, bias: true },
  { name: "3x3 s1 p1 odd 13x11", op: "Conv", x: [1, 5, 13, 11], w: [7, 5, 3, 3], attrs: { pads: ints([1, 1, 1, 1]) }, density: 0.6, bits: 3, bias: true, emptyRows: [0, 4] },
  { name: "3x3 s2 p1 15x9", op: "Conv", x: [2, 4, 15, 9], w: [6, 4, 3, 3], attrs: { pads: ints([1, 1, 1, 1]), strides: ints([2, 2]) }, density: 0.45, bits: 4 },
  { name: "7x7 s2 p3 stem", op: "Conv", x: [1, 3, 30, 26], w: [8, 3, 7, 7], attrs: { pads: ints([3, 3, 3, 3]), strides: ints([2, 2]) }, density: 0.3, bits: 5, bias: true },
  { name: "3x3 dilation 2 pad 2", op: "Conv", x: [1, 4, 12, 10], w: [5, 4, 3, 3], attrs: { pads: ints([2, 2, 2, 2]), dilations: ints([2, 2]) }, density: 0.5, bits: 6 },
  { name: "3x3 s2 dilation 2 (one phase per axis)", op: "Conv", x: [1, 3, 17, 13], w: [4, 3, 3, 3], attrs: { pads: ints([2, 2, 2, 2]), strides: ints([2, 2]), dilations: ints([2, 2]) }, density: 0.7, bits: 3 },
  { name: "5x3 valid (in place, garbage columns)", op: "Conv", x: [1, 3, 11, 9], w: [4, 3, 5, 3], density: 0.5, bits: 7, bias: true },
  { name: "asymmetric pads, strides (1, 2)", op: "Conv", x: [1, 3, 10, 13], w: [4, 3, 3, 3], attrs: { pads: ints([0, 2, 1, 0]), strides: ints([1, 2]) }, density: 0.6, bits: 4 },
  { name: "SAME_UPPER s2", op: "Conv", x: [1, 3, 10, 11], w: [4, 3, 3, 3], attrs: { auto_pad: { type: "string", value: "SAME_UPPER" }, strides: ints([2, 2]) }, density: 0.6, bits: 5 },
  { name: "grouped g=2", op: "Conv", x: [1, 6, 9, 9], w: [8, 3, 3, 3], attrs: { group: int(2), pads: ints([1, 1, 1, 1]) }, density: 0.5, bits: 4, bias: true },
  // Depthwise 3×3 goes to the u8 code form (cheaper than sparse rows of ≤ 9 weights); 5×5 dilated stays sparse.
  { name: "depthwise 3x3 s1", op: "Conv", x: [2, 10, 11, 7], w: [10, 1, 3, 3], attrs: { group: int(10), pads: ints([1, 1, 1, 1]) }, density: 0.4, bits: 3, bias: true, emptyRows: [3], path: "wasm-depthwise-3x3-coded" },
  { name: "depthwise 3x3 s2, multiplier 2", op: "Conv", x: [1, 6, 13, 13], w: [12, 1, 3, 3], attrs: { group: int(6), pads: ints([1, 1, 1, 1]), strides: ints([2, 2]) }, density: 0.5, bits: 8, path: "wasm-depthwise-3x3-coded" },
  { name: "depthwise 3x3 s1 p2 2 bits, odd rows", op: "Conv", x: [1, 5, 9, 13], w: [5, 1, 3, 3], attrs: { group: int(5), pads: ints([2, 2, 2, 2]) }, density: 0.6, bits: 2, bias: true, path: "wasm-depthwise-3x3-coded" },
  { name: "depthwise 3x3 s2 valid 4 bits", op: "Conv", x: [1, 4, 12, 11], w: [4, 1, 3, 3], attrs: { group: int(4), strides: ints([2, 2]) }, density: 0.7, bits: 4, path: "wasm-depthwise-3x3-coded" },
  { name: "depthwise 3x3 s1 5 bits, 4 outputs a row", op: "Conv", x: [2, 3, 6, 4], w: [3, 1, 3, 3], attrs: { group: int(3), pads: ints([1, 1, 1, 1]) }, density: 0.5, bits: 5, bias: true, path: "wasm-depthwise-3x3-coded" },
  { name: "depthwise 3x3 s2 p1 6 bits @15x22", op: "Conv", x: [1, 7, 15, 22], w: [7, 1, 3, 3], attrs: { group: int(7), pads: ints([1, 1, 1, 1]), strides: ints([2, 2]) }, density: 0.5, bits: 6, emptyRows: [2], path: "wasm-depthwise-3x3-coded" },
  { name: "depthwise 3x3 s1 7 bits @14x14", op: "Conv", x: [1, 6, 14, 14], w: [6, 1, 3, 3], attrs: { group: int(6), pads: ints([1, 1, 1, 1]) }, density: 0.8, bits: 7, bias: true, path: "wasm-depthwise-3x3-coded" },
  { name: "APoT table 3x3", op: "Conv", x: [1, 8, 9, 9], w: [6, 8, 3, 3], attrs: { pads: ints([1, 1, 1, 1]) }, density: 0.5, bits: 4, table: true, bias: true },
  { name: "all rows empty", op: "Conv", x: [1, 4, 6, 6], w: [3, 4, 3, 3], attrs: { pads: ints([1, 1, 1, 1]) }, density: 0.5, bits: 3, bias: true, emptyRows: [0, 1, 2] },
  { name: "large enough to split across threads", op: "Conv", x: [1, 32, 28, 28], w: [48, 32, 3, 3], attrs: { pads: ints([1, 1, 1, 1]) }, density: 0.3, bits: 3, bias: true },
  // Dense enough for Winograd on the u8 code form: odd output sizes (border tiles), rows not a
  // multiple of 4 and more than one 32-row chunk, batch 2, empty rows, bits 2/8, an APoT table.
  { name: "coded Winograd 3x3 p1 odd 19x17, 41 rows, batch 2", op: "Conv", x: [2, 12, 19, 17], w: [41, 12, 3, 3], attrs: { pads: ints([1, 1, 1, 1]) }, density: 0.9, bits: 3, bias: true, emptyRows: [5, 33], path: "wasm-winograd-coded" },
  { name: "coded Winograd 3x3 valid 2 bits", op: "Conv", x: [1, 16, 24, 22], w: [16, 16, 3, 3], density: 0.95, bits: 2, path: "wasm-winograd-coded" },
  { name: "coded Winograd asymmetric pads 8 bits", op: "Conv", x: [1, 9, 20, 20], w: [20, 9, 3, 3], attrs: { pads: ints([0, 1, 2, 1]) }, density: 0.9, bits: 8, bias: true, path: "wasm-winograd-coded" },
  { name: "coded Winograd APoT table", op: "Conv", x: [1, 16, 20, 20], w: [24, 16, 3, 3], attrs: { pads: ints([1, 1, 1, 1]) }, density: 0.9, bits: 4, table: true, path: "wasm-winograd-coded" },
  { name: "coded depthwise 3x3 s1 odd 23x9, batch 2", op: "Conv", x: [2, 24, 23, 9], w: [24, 1, 3, 3], attrs: { group: int(24), pads: ints([1, 1, 1, 1]) }, density: 0.9, bits: 3, bias: true, emptyRows: [7], path: "wasm-depthwise-3x3-coded" },
  { name: "coded depthwise 3x3 s2 64 @64 (planes split over the threads)", op: "Conv", x: [1, 64, 64, 64], w: [64, 1, 3, 3], attrs: { group: int(64), pads: ints([1, 1, 1, 1]), strides: ints([2, 2]) }, density: 0.7, bits: 3, bias: true, emptyRows: [5], path: "wasm-depthwise-3x3-coded" },
  { name: "coded depthwise 3x3 s2 multiplier 2, 8 bits", op: "Conv", x: [1, 16, 29, 30], w: [32, 1, 3, 3], attrs: { group: int(16), pads: ints([1, 1, 1, 1]), strides: ints([2, 2]) }, density: 0.9, bits: 8, path: "wasm-depthwise-3x3-coded" },
  { name: "sparse depthwise 5x5 dilation 2, table", op: "Conv", x: [1, 16, 30, 30], w: [16, 1, 5, 5], attrs: { group: int(16), pads: ints([4, 4, 4, 4]), dilations: ints([2, 2]) }, density: 0.9, bits: 4, table: true, emptyRows: [2] },
  { name: "coded depthwise 3x3 s3 (generic loop), table", op: "Conv", x: [1, 64, 12, 13], w: [64, 1, 3, 3], attrs: { group: int(64), strides: ints([3, 3]) }, density: 0.8, bits: 4, table: true, path: "wasm-depthwise-coded" },
  { name: "coded GEMM 1x1 s1, 37 rows, batch 2", op: "Conv", x: [2, 24, 9, 11], w: [37, 24, 1, 1], density: 0.85, bits: 3, bias: true, emptyRows: [36], path: "wasm-gemm-1x1-coded" },
  { name: "coded im2col GEMM 3x3 s2 grouped g=2, 5 bits", op: "Conv", x: [1, 8, 17, 15], w: [12, 4, 3, 3], attrs: { group: int(2), pads: ints([1, 1, 1, 1]), strides: ints([2, 2]) }, density: 0.85, bits: 5, path: "wasm-im2col-gemm-coded" },
  { name: "coded im2col GEMM, K 4608: row chunks of 12", op: "Conv", x: [1, 512, 16, 16], w: [32, 512, 3, 3], attrs: { pads: ints([1, 1, 1, 1]), strides: ints([2, 2]) }, density: 0.95, bits: 3, bias: true, path: "wasm-im2col-gemm-coded" },
  // Column-blocked (conv-sparse.ts columnBlocks): a pixel tile reads more input than L1 holds.
  { name: "column-blocked 3x3 p1 512 ch @7x7 (4 blocks)", op: "Conv", x: [1, 512, 7, 7], w: [6, 512, 3, 3], attrs: { pads: ints([1, 1, 1, 1]) }, density: 0.2, bits: 3, bias: true, emptyRows: [2] },
  { name: "column-blocked 1x1 1024 ch @5x5 batch 2 (8 blocks)", op: "Conv", x: [2, 1024, 5, 5], w: [5, 1024, 1, 1], density: 0.3, bits: 5, bias: true },
  { name: "column-blocked 3x3 s2 p1 256 ch @14x14 (8 blocks, phase planes)", op: "Conv", x: [1, 256, 14, 14], w: [4, 256, 3, 3], attrs: { pads: ints([1, 1, 1, 1]), strides: ints([2, 2]) }, density: 0.25, bits: 4, table: true },
  { name: "Gemm transB=1 bias batch 3", op: "Gemm", x: [3, 37], w: [11, 37], attrs: { transB: int(1) }, density: 0.4, bits: 3, bias: true, emptyRows: [2] },
  { name: "Gemm transB=0", op: "Gemm", x: [1, 20], w: [20, 9], density: 0.5, bits: 6 },
  { name: "Gemm APoT table", op: "Gemm", x: [2, 33], w: [7, 33], attrs: { transB: int(1) }, density: 0.3, bits: 5, table: true, bias: true },
  { name: "MatMul 3-D A", op: "MatMul", x: [2, 3, 15], w: [15, 10], density: 0.6, bits: 2 },
];

/** A seeded compressed weight for a case. */
export function caseWeight(c: SparseCase, seed = 1): CompressedTensor {
  const rand = mulberry32(seed);
  const size = c.w.reduce((a, b) => a * b, 1);
  const half = (1 << (c.bits - 1)) - 1;
  const levels = c.table ? 2 * half + 1 : 0;
  // Output row of flat index i (Gemm transB=0 and MatMul store [K, M]: the row is the column).
  const rowsLast = c.op === "MatMul" || (c.op === "Gemm" && !(c.attrs?.transB && (c.attrs.transB as { value: number }).value === 1));
  const rowOf = (i: number) => (rowsLast ? i % c.w[1]! : Math.floor(i / (size / c.w[0]!)));
  const indices: number[] = [], codes: number[] = [];
  for (let i = 0; i < size; i++) {
    if (rand() >= c.density || c.emptyRows?.includes(rowOf(i))) continue;
    indices.push(i);
    // Uniform: a non-zero code in [-half, half] (bits 2: ±1); table: an index into the table.
    const code = c.table ? Math.floor(rand() * levels) : (Math.floor(rand() * half) + 1) * (rand() < 0.5 ? -1 : 1);
    codes.push(code);
  }
  // APoT-style levels: ± sums of powers of two, times a scale, one of them zero.
  const values = new Float32Array(levels);
  for (let j = 0; j < levels; j++) { const s = j - half; values[j] = Math.sign(s) * (2 ** -Math.abs(s) + (Math.abs(s) > 2 ? 2 ** -(Math.abs(s) + 2) : 0)) * 0.3; }
  return {
    name: "w", dims: c.w.slice(),
    codebook: c.table ? { kind: "table", values } : { kind: "uniform", step: 0.037 },
    indices: Uint32Array.from(indices), codes: Int32Array.from(codes),
  };
}

/** The one-node `.opq` model of a case. */
export function caseModel(c: SparseCase, w = caseWeight(c)): OpqModel {
  const inputs = ["x", "w"];
  const initializers: Record<string, Tensor> = {};
  if (c.bias) {
    const m = c.op === "Conv" ? c.w[0]! : c.attrs?.transB ? c.w[0]! : c.w[1]!;
    const rand = mulberry32(9);
    initializers.b = { dtype: "float32", dims: [m], data: Float32Array.from({ length: m }, () => rand() - 0.5) };
    inputs.push("b");
  }
  return {
    model: {
      irVersion: 8, opsetImports: [{ domain: "", version: 13 }], producerName: "sparse-check",
      graph: {
        name: c.name, initializers,
        nodes: [{ opType: c.op, domain: "", name: "n", inputs, outputs: ["y"], attrs: c.attrs ?? {} }],
        inputs: [{ name: "x", dtype: "float32", shape: c.x }],
        outputs: [{ name: "y", dtype: "float32", shape: null }],
      },
    },
    compressed: [w],
    metadata: {},
  };
}

/** Result of one case: the largest |wasm − reference| relative to max(1, max |reference|), and what bound. */
export interface CaseResult {
  name: string;
  relErr: number;
  path: string;
  weightForm: string;
  residentBytes: number;
  backend: string;
}

/** Run case `c` on both backends with `threads` threads, the wasm one offering `forms` and loading from `source`. */
export async function checkCase(c: SparseCase, threads = 1, forms: FormChoice = "auto", source: CaseSource = "model"): Promise<CaseResult> {
  const opq = caseModel(c);
  const rand = mulberry32(5);
  const n = c.x.reduce((a, b) => a * b, 1);
  const x: Tensor = { dtype: "float32", dims: c.x.slice(), data: Float32Array.from({ length: n }, () => rand() * 2 - 1) };
  const ref = await createSession(opq, { backend: "cpu-reference" });
  const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process!.env;
  const before = env.OPQ_WASM_FORMS;
  if (forms === "auto") delete env.OPQ_WASM_FORMS;
  else env.OPQ_WASM_FORMS = forms;
  let ours;
  try {
    ours = await createSession(source === "file" ? encodeOpq(opq) : opq, { backend: "wasm", threads });
  } finally {
    if (before === undefined) delete env.OPQ_WASM_FORMS;
    else env.OPQ_WASM_FORMS = before;
  }
  try {
    const a = (await ref.run({ x })).y!, b = (await ours.run({ x })).y!;
    if (a.dims.join() !== b.dims.join()) throw new Error(`${c.name}: dims [${b.dims}] vs reference [${a.dims}]`);
    const ad = a.data as Float32Array, bd = b.data as Float32Array;
    let scale = 1, err = 0;
    for (let i = 0; i < ad.length; i++) scale = Math.max(scale, Math.abs(ad[i]!));
    for (let i = 0; i < ad.length; i++) err = Math.max(err, Math.abs(ad[i]! - bd[i]!));
    if (bd.some((v) => !Number.isFinite(v))) err = Infinity;
    const l = ours.info.layers[0]!;
    return { name: c.name, relErr: err / scale, path: l.path, weightForm: l.weightForm, residentBytes: l.residentBytes, backend: l.backend };
  } finally {
    ref.dispose();
    ours.dispose();
  }
}

if (import.meta.main) {
  const threads = Number((globalThis as { process?: { argv: string[] } }).process?.argv[2] ?? 1);
  const { kernelSupport } = await import("../module.ts");
  const results: (CaseResult & { ok: boolean })[] = [];
  for (const source of CASE_SOURCES) {
    for (const forms of FORM_CHOICES) {
      for (const c of SPARSE_CASES) { const r = await checkCase(c, threads, forms, source); results.push({ ...r, name: `${r.name} (${source})`, ok: boundAsExpected(c, r, forms) }); }
    }
  }
  console.log(JSON.stringify({ relaxed: kernelSupport().relaxed, results }));
}
