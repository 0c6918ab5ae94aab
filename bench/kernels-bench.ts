/**
 * Kernel benchmark: our CPU kernels against onnxruntime-web (WASM SIMD, 1 thread) in the same
 * run, on ResNet-18 and MobileNetV2 layer shapes, pruned ResNet layers (our sparse path) and the
 * classifier GEMMs. Each case is a one-node ONNX model (weights as initializers, as in a real
 * model) so onnxruntime-web does its usual weight prepacking. Ours and ort run interleaved so both
 * see the same load; prints min/median ms, GFLOP/s and the ratio of mins (below 1: we are faster).
 * GFLOP/s is dense-equivalent (2·M·K·P over our time), so pruned and Winograd layers can exceed the
 * scalar peak. A benchmark, never a test: nothing is asserted.
 *
 * GEMM rows (Gemm/MatMul, plus conv-shaped MatMuls) also time our JS kernel (`sgemmScalar`, forced
 * with setGemmBackend) against the WASM SIMD one that "auto" picks, interleaved, and print the ratio.
 *
 * With `--threads N` (N > 1) each Conv also runs on the worker pool, timed interleaved with our
 * single-threaded run, to show whether splitting pays on this machine.
 *
 *   bun bench/kernels-bench.ts [--quick] [--json] [--filter <substring>] [--threads N]
 * @module
 */
import { parseArgs } from "node:util";
import { type Model, type Node, type Tensor, writeOnnx } from "../format/mod.ts";
import { createOrtSession } from "../cli/ort.ts";
import { conv2dFast, convGeometry, convPath, CONV_OPS, type ConvPath, isWinogradShape, type PreparedConv } from "../runtime/ops/conv.ts";
import { csrFromDense } from "../runtime/cpu/sparse.ts";
import { winogradWeights } from "../runtime/cpu/winograd.ts";
import { GEMM_OPS } from "../runtime/ops/gemm.ts";
import { POOL_OPS } from "../runtime/ops/pool.ts";
import { Attrs, type Kernel } from "../runtime/ops/types.ts";
import { randomTensor, relativeDiff, seededRandom } from "../runtime/cpu/test-support.ts";
import { gemmBackend, type GemmBackend, setGemmBackend } from "../runtime/cpu/sgemm.ts";
import { ensureCpuWorkers, stopCpuWorkers } from "../runtime/cpu/worker-pool.ts";

const { values: opts } = parseArgs({
  options: { quick: { type: "boolean" }, json: { type: "boolean" }, filter: { type: "string" }, threads: { type: "string" } },
});
/** Time budget per measurement (ms) and minimum repetitions. */
const BUDGET_MS = opts.quick ? 150 : 600;
const MIN_REPS = opts.quick ? 2 : 5;

interface Case {
  name: string;
  op: "Conv" | "Gemm" | "MatMul" | "MaxPool" | "AveragePool" | "GlobalAveragePool";
  x: number[];
  w: number[];
  attrs: Record<string, number | number[]>;
  bias?: boolean;
  /** Fraction of weights set to exactly zero (magnitude pruning stand-in). */
  zeros?: number;
  /** Also time this forced conv path (e.g. dense GEMM on pruned weights, for the sparse crossover). */
  alsoPath?: ConvPath;
  flops: number;
}

const convCase = (name: string, x: number[], w: number[], a: Record<string, number | number[]>, extra: Partial<Case> = {}): Case => {
  const g = convGeometry(x, w, toAttrs("Conv", a));
  const flops = 2 * g.batch * g.outChannels * g.outSpatial[0]! * g.outSpatial[1]! * w[1]! * w[2]! * w[3]!;
  return { name, op: "Conv", x, w, attrs: a, bias: true, flops, ...extra };
};
const pad1 = { pads: [1, 1, 1, 1] };
const CASES: Case[] = [
  convCase("resnet18 conv1 7x7/2 3→64 @224", [1, 3, 224, 224], [64, 3, 7, 7], { strides: [2, 2], pads: [3, 3, 3, 3] }),
  convCase("resnet18 3x3 64→64 @56", [1, 64, 56, 56], [64, 64, 3, 3], pad1, { alsoPath: "im2col-gemm" }),
  convCase("resnet18 3x3/2 64→128 @56", [1, 64, 56, 56], [128, 64, 3, 3], { strides: [2, 2], ...pad1 }),
  convCase("resnet18 3x3 128→128 @28", [1, 128, 28, 28], [128, 128, 3, 3], pad1, { alsoPath: "im2col-gemm" }),
  convCase("resnet18 3x3 256→256 @14", [1, 256, 14, 14], [256, 256, 3, 3], pad1, { alsoPath: "im2col-gemm" }),
  convCase("resnet18 3x3 512→512 @7", [1, 512, 7, 7], [512, 512, 3, 3], pad1, { alsoPath: "im2col-gemm" }),
  convCase("resnet20 3x3 16→16 @28", [1, 16, 28, 28], [16, 16, 3, 3], pad1, { alsoPath: "im2col-gemm" }),
  convCase("resnet18 1x1/2 64→128 @56", [1, 64, 56, 56], [128, 64, 1, 1], { strides: [2, 2] }),
  convCase("mbv2 dw 3x3 96 /2 @112", [1, 96, 112, 112], [96, 1, 3, 3], { group: 96, strides: [2, 2], ...pad1 }),
  convCase("mbv2 dw 3x3 144 @56", [1, 144, 56, 56], [144, 1, 3, 3], { group: 144, ...pad1 }),
  convCase("mbv2 dw 3x3 384 @14", [1, 384, 14, 14], [384, 1, 3, 3], { group: 384, ...pad1 }),
  convCase("mbv2 dw 3x3 960 @7", [1, 960, 7, 7], [960, 1, 3, 3], { group: 960, ...pad1 }),
  convCase("mbv2 pw 1x1 144→24 @56", [1, 144, 56, 56], [24, 144, 1, 1], {}),
  convCase("mbv2 pw 1x1 32→192 @28", [1, 32, 28, 28], [192, 32, 1, 1], {}),
  convCase("pruned 40% 3x3 64→64 @56", [1, 64, 56, 56], [64, 64, 3, 3], pad1, { zeros: 0.4, alsoPath: "im2col-sparse" }),
  convCase("pruned 70% 3x3 64→64 @56", [1, 64, 56, 56], [64, 64, 3, 3], pad1, { zeros: 0.7, alsoPath: "im2col-sparse" }),
  convCase("pruned 80% 3x3 64→64 @56", [1, 64, 56, 56], [64, 64, 3, 3], pad1, { zeros: 0.8, alsoPath: "im2col-sparse" }),
  convCase("pruned 70% 3x3/2 64→128 @56", [1, 64, 56, 56], [128, 64, 3, 3], { strides: [2, 2], ...pad1 }, { zeros: 0.7, alsoPath: "im2col-sparse" }),
  convCase("pruned 80% 3x3/2 64→128 @56", [1, 64, 56, 56], [128, 64, 3, 3], { strides: [2, 2], ...pad1 }, { zeros: 0.8, alsoPath: "im2col-gemm" }),
  convCase("pruned 90% 3x3 256→256 @14", [1, 256, 14, 14], [256, 256, 3, 3], pad1, { zeros: 0.9, alsoPath: "winograd" }),
  convCase("pruned 75% 3x3 512→512 @7", [1, 512, 7, 7], [512, 512, 3, 3], pad1, { zeros: 0.75, alsoPath: "im2col-sparse" }),
  convCase("pruned 90% 3x3 512→512 @7", [1, 512, 7, 7], [512, 512, 3, 3], pad1, { zeros: 0.9, alsoPath: "winograd" }),
  convCase("pruned 70% pw 1x1 96→576 @14", [1, 96, 14, 14], [576, 96, 1, 1], {}, { zeros: 0.7, alsoPath: "im2col-sparse" }),
  convCase("pruned 85% pw 1x1 96→576 @14", [1, 96, 14, 14], [576, 96, 1, 1], {}, { zeros: 0.85, alsoPath: "gemm-1x1" }),
  { name: "fc Gemm 1x512 · 512x1000ᵀ", op: "Gemm", x: [1, 512], w: [1000, 512], attrs: { transB: 1 }, bias: true, flops: 2 * 512 * 1000 },
  { name: "MatMul 256x256x256", op: "MatMul", x: [256, 256], w: [256, 256], attrs: {}, flops: 2 * 256 ** 3 },
  // The im2col GEMMs of two ResNet-18 3×3 convs (weights·columns), as plain MatMuls.
  { name: "GEMM 64x576·576x3136 (3x3 64@56)", op: "MatMul", x: [64, 576], w: [576, 3136], attrs: {}, flops: 2 * 64 * 576 * 3136 },
  { name: "GEMM 256x2304·2304x196 (3x3 256@14)", op: "MatMul", x: [256, 2304], w: [2304, 196], attrs: {}, flops: 2 * 256 * 2304 * 196 },
  { name: "resnet18 MaxPool 3x3/2 64 @112", op: "MaxPool", x: [1, 64, 112, 112], w: [], attrs: { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }, flops: 9 * 64 * 56 * 56 },
  { name: "AveragePool 2x2/2 128 @28", op: "AveragePool", x: [1, 128, 28, 28], w: [], attrs: { kernel_shape: [2, 2], strides: [2, 2] }, flops: 4 * 128 * 14 * 14 },
  { name: "GlobalAveragePool 512 @7", op: "GlobalAveragePool", x: [1, 512, 7, 7], w: [], attrs: {}, flops: 512 * 49 },
];

function toAttrs(op: string, a: Record<string, number | number[]>): Attrs {
  const raw: Node["attrs"] = {};
  for (const [k, v] of Object.entries(a)) raw[k] = Array.isArray(v) ? { type: "ints", value: v } : { type: "int", value: v };
  return new Attrs(raw, op);
}

/** A one-node ONNX model: X is the graph input, W (and B) initializers. */
function oneNodeModel(c: Case, w: Tensor, b: Tensor | undefined, yDims: number[]): Uint8Array {
  const weightless = c.w.length === 0;
  const initializers: Record<string, Tensor> = weightless ? {} : { W: w };
  if (b) initializers.B = b;
  const model: Model = {
    irVersion: 8,
    producerName: "opq kernels-bench",
    opsetImports: [{ domain: "", version: 13 }],
    graph: {
      name: c.op,
      nodes: [{ opType: c.op, domain: "", name: "n0", inputs: weightless ? ["X"] : b ? ["X", "W", "B"] : ["X", "W"], outputs: ["Y"], attrs: toAttrs(c.op, c.attrs).raw }],
      inputs: [{ name: "X", dtype: "float32", shape: c.x }],
      outputs: [{ name: "Y", dtype: "float32", shape: yDims }],
      initializers,
    },
  };
  return writeOnnx(model);
}

/**
 * Time two functions interleaved (a, b, a, b, ...) after one warm-up each, until the budget and
 * MIN_REPS are met, so both see the same machine load (the CI box is shared). Returns
 * [min, median] ms of each; ratios are taken between mins (the least-disturbed runs).
 */
async function timePair(a: () => unknown, b: () => unknown): Promise<[number, number][]> {
  await a();
  await b();
  const sa: number[] = [], sb: number[] = [];
  const start = performance.now();
  while (sa.length < MIN_REPS || performance.now() - start < BUDGET_MS) {
    let t = performance.now();
    await a();
    sa.push(performance.now() - t);
    t = performance.now();
    await b();
    sb.push(performance.now() - t);
    if (sa.length >= 200) break;
  }
  return [sa, sb].map((s) => { s.sort((x, y) => x - y); return [s[0]!, s[Math.floor(s.length / 2)]!] as [number, number]; });
}

const baseCtx = { opset: 13, threads: 1, outputCount: 1 };
const threads = Number(opts.threads ?? 1);
const pool = threads > 1 ? await ensureCpuWorkers(threads) : undefined;
if (threads > 1 && !pool) throw new Error(`could not start ${threads} cpu worker threads`);
const rows: Record<string, unknown>[] = [];
const rand = seededRandom(2024);
const log = (s: string) => { if (!opts.json) console.log(s); };
log(`kernels-bench (${opts.quick ? "quick" : "full"}): ours vs onnxruntime-web wasm, 1 thread, ms (min/median of interleaved runs); ratio = ours min / ort min`);
const fmt = (min: number, median: number) => `${min.toFixed(2).padStart(7)}/${median.toFixed(1).padEnd(7)}`;
log(`${"case".padEnd(40)} ${"path".padEnd(14)} ${"ours min/med".padStart(15)} ${"ort min/med".padStart(15)} ${"ratio".padStart(6)} ${"GF/s".padStart(6)} ${"maxdiff".padStart(8)}`);

for (const c of CASES) {
  if (opts.filter && !c.name.includes(opts.filter)) continue;
  const x = randomTensor(rand, c.x), w = randomTensor(rand, c.w, c.zeros ?? 0);
  const b = c.bias ? randomTensor(rand, [c.w[0]!]) : undefined;
  const at = toAttrs(c.op, c.attrs);
  const kernel: Kernel = c.op === "Conv" ? CONV_OPS.Conv![0]!.kernel : (GEMM_OPS[c.op] ?? POOL_OPS[c.op])!.at(-1)!.kernel;
  // Conv weights prepared at "load" as a session does (zero fraction, CSR or Winograd U once), so the
  // timings are a session's, not a per-call weight transform's.
  const prepared = c.op === "Conv" ? CONV_OPS.Conv![0]!.prepare!([undefined, w, b], at, { ...baseCtx, inputShapes: [c.x, c.w, b?.dims] }) : undefined;
  const ctx = { ...baseCtx, prepared };
  const inputs = c.w.length === 0 ? [x] : c.op === "MatMul" ? [x, w] : [x, w, b];
  const ours = kernel(inputs, at, ctx)[0]!;
  const ort = await createOrtSession(oneNodeModel(c, w, c.op === "MatMul" ? undefined : b, ours.dims));
  const ortY = (await ort.run({ X: x })).Y!;
  const diff = relativeDiff(ours, ortY);
  const [[oursMs, oursMedian], [ortMs, ortMedian]] = await timePair(() => kernel(inputs, at, ctx), () => ort.run({ X: x }));
  const g = c.op === "Conv" ? convGeometry(c.x, c.w, at) : undefined;
  kernel(inputs, at, ctx);
  const path = g ? convPath(g, w.data as Float32Array, (prepared as PreparedConv | undefined)?.zeros) ?? "reference" : c.w.length === 0 ? "pool" : `sgemm-${gemmBackend()}`;
  const row: Record<string, unknown> = {
    case: c.name, path, oursMs, ortMs, oursMedianMs: oursMedian, ortMedianMs: ortMedian,
    ratio: oursMs / ortMs, gflops: c.flops / oursMs / 1e6, maxRelDiff: diff,
  };
  log(`${c.name.padEnd(40)} ${path.padEnd(14)} ${fmt(oursMs, oursMedian)} ${fmt(ortMs, ortMedian)} ${(oursMs / ortMs).toFixed(2).padStart(6)} ${(c.flops / oursMs / 1e6).toFixed(2).padStart(6)} ${diff.toExponential(1).padStart(8)}`);
  if (c.alsoPath && g) {
    const alt = c.alsoPath;
    // The alternative with its own load-time form, as if convPath had picked it.
    const wd = w.data as Float32Array, cg = g.inChannels / g.group, mg = g.outChannels / g.group, kRows = cg * g.kernel[0]! * g.kernel[1]!;
    const groups = Array.from({ length: g.group }, (_, grp) => grp);
    const altPrepared: PreparedConv = {
      weight: w, zeros: (prepared as PreparedConv).zeros,
      csr: alt === "im2col-sparse" ? groups.map((grp) => csrFromDense(wd, mg, kRows, grp * mg * kRows)) : undefined,
      winograd: alt === "winograd" && isWinogradShape(g) ? groups.map((grp) => winogradWeights(wd, grp * mg * kRows, mg, cg)) : undefined,
    };
    const [[altMs, altMedian], [chosenMs]] = await timePair(() => conv2dFast(x, w, b, g, alt, 1, { prepared: altPrepared }), () => kernel(inputs, at, ctx));
    row.alt = { path: alt, ms: altMs, medianMs: altMedian, ratioToChosen: altMs / chosenMs };
    log(`${"".padEnd(40)} ${alt.padEnd(14)} ${fmt(altMs, altMedian)} ${"".padStart(15)} ${"".padStart(6)}   (${(altMs / chosenMs).toFixed(2)}x the time of ${path})`);
  }
  if (path === "sgemm-simd") {
    const forced = (backend: GemmBackend) => () => {
      const previous = setGemmBackend(backend);
      try { return kernel(inputs, at, ctx); } finally { setGemmBackend(previous); }
    };
    const [[scalarMs, scalarMedian], [simdMs]] = await timePair(forced("scalar"), forced("simd"));
    row.scalar = { ms: scalarMs, medianMs: scalarMedian, ratioToOrt: scalarMs / ortMs, ratioToSimd: scalarMs / simdMs, gflops: c.flops / scalarMs / 1e6 };
    log(`${"".padEnd(40)} ${"sgemm-scalar".padEnd(14)} ${fmt(scalarMs, scalarMedian)} ${"".padStart(15)} ${(scalarMs / ortMs).toFixed(2).padStart(6)} ${(c.flops / scalarMs / 1e6).toFixed(2).padStart(6)}   (${(scalarMs / simdMs).toFixed(2)}x the time of sgemm-simd)`);
  }
  if (pool && c.op === "Conv") {
    const before = pool.splits;
    const [[mtMs, mtMedian], [stMs]] = await timePair(() => kernel(inputs, at, { ...ctx, threads }), () => kernel(inputs, at, ctx));
    const split = pool.splits > before;
    row.threaded = { threads, ms: mtMs, medianMs: mtMedian, ratioToSingle: mtMs / stMs, split };
    log(`${"".padEnd(40)} ${`${threads} threads`.padEnd(14)} ${fmt(mtMs, mtMedian)} ${"".padStart(15)} ${(mtMs / ortMs).toFixed(2).padStart(6)}   (${(mtMs / stMs).toFixed(2)}x the single-thread time${split ? "" : ", below the split threshold"})`);
  }
  await ort.dispose();
  rows.push(row);
}
if (opts.json) console.log(JSON.stringify({ bench: "kernels", ortThreads: 1, threads, rows }, null, 2));
stopCpuWorkers();
