/**
 * The dense wasm kernels (runtime/wasm/ops: conv GEMM, depthwise, Gemm/GEMV, pools) against the
 * op table's JS kernels (the reference backend, runtime/ops) on ResNet-18 and MobileNetV2 layer
 * shapes, batch 1, in the same run: ms per call, GFLOP/s (2 flops per multiply-add; pools: taps),
 * and wasm ÷ JS. The wasm side runs on 1 thread and on 2 (its own team); the JS side on 1.
 * The throughput constants of runtime/wasm/ops/dense-common.ts (DENSE_GFLOPS) come from here.
 *
 *   bun bench/wasm-kernels-bench.ts [--build relaxed|simd] [--reps N] [--only name-substring]
 * @module
 */
import type { Tensor } from "../format/mod.ts";
import { randomTensor, seededRandom } from "../runtime/cpu/test-support.ts";
import { attrValues, type CaseInput, nodeSpec, referenceOutput, testBackend } from "../runtime/wasm/ops/test-support.ts";
import { WASM_OPS } from "../runtime/wasm/ops/index.ts";

interface Case {
  name: string;
  op: string;
  inputs: CaseInput[];
  attrs: Record<string, number | number[] | string>;
  /** Flops (or taps) of one call. */
  work: number;
}

const rand = seededRandom(1);
const t = (dims: number[], constant = false): CaseInput => ({ tensor: randomTensor(rand, dims), constant });

function conv(name: string, c: number, m: number, hw: number, k: number, s: number, group = 1): Case {
  const pad = (k - 1) >> 1;
  const out = Math.floor((hw + 2 * pad - k) / s) + 1;
  return {
    name, op: "Conv", inputs: [t([1, c, hw, hw]), t([m, c / group, k, k], true), t([m], true)],
    attrs: { kernel_shape: [k, k], strides: [s, s], pads: [pad, pad, pad, pad], group },
    work: 2 * m * (c / group) * k * k * out * out,
  };
}

const CASES: Case[] = [
  conv("r18 conv1 7x7/2 3->64 @224", 3, 64, 224, 7, 2),
  conv("r18 3x3 64->64 @56", 64, 64, 56, 3, 1),
  conv("r18 3x3/2 64->128 @56", 64, 128, 56, 3, 2),
  conv("r18 3x3 128->128 @28", 128, 128, 28, 3, 1),
  conv("r18 3x3 256->256 @14", 256, 256, 14, 3, 1),
  conv("r18 3x3 512->512 @7", 512, 512, 7, 3, 1),
  conv("r18 1x1/2 128->256 @28", 128, 256, 28, 1, 2),
  conv("small 3x3 64->64 @14", 64, 64, 14, 3, 1),
  conv("small 3x3/2 64->64 @28", 64, 64, 28, 3, 2),
  conv("small 7x7/2 3->64 @56", 3, 64, 56, 7, 2),
  conv("mv2 1x1 16->96 @112", 16, 96, 112, 1, 1),
  conv("mv2 1x1 144->24 @56", 144, 24, 56, 1, 1),
  conv("mv2 1x1 24->144 @56", 24, 144, 56, 1, 1),
  conv("mv2 1x1 192->64 @14", 192, 64, 14, 1, 1),
  conv("mv2 1x1 320->1280 @7", 320, 1280, 7, 1, 1),
  conv("mv2 dw 3x3 96 @112/2", 96, 96, 112, 3, 2, 96),
  conv("mv2 dw 3x3 144 @56", 144, 144, 56, 3, 1, 144),
  conv("mv2 dw 3x3 960 @7", 960, 960, 7, 3, 1, 960),
  conv("dw 5x5 64 @28 (generic)", 64, 64, 28, 5, 1, 64),
  { name: "gemm 512->1000 b1 (transB)", op: "Gemm", inputs: [t([1, 512]), t([1000, 512], true), t([1000], true)], attrs: { transB: 1 }, work: 2 * 512 * 1000 },
  { name: "gemm 1280->1000 b1 (transB)", op: "Gemm", inputs: [t([1, 1280]), t([1000, 1280], true), t([1000], true)], attrs: { transB: 1 }, work: 2 * 1280 * 1000 },
  { name: "maxpool 3x3/2 64 @112", op: "MaxPool", inputs: [t([1, 64, 112, 112])], attrs: { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }, work: 64 * 56 * 56 * 9 },
  { name: "avgpool 3x3/1 64 @56", op: "AveragePool", inputs: [t([1, 64, 56, 56])], attrs: { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }, work: 64 * 56 * 56 * 9 },
  { name: "global avgpool 1280 @7", op: "GlobalAveragePool", inputs: [t([1, 1280, 7, 7])], attrs: {}, work: 1280 * 49 },
];

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

/**
 * Wall ms (lower quartile of `reps` calls after 2 warm-ups) and process CPU ms per call (mean):
 * on a shared machine the CPU time of a one-thread call is its compute time, preemption excluded.
 */
async function time(fn: () => unknown, reps: number): Promise<{ wall: number; cpu: number }> {
  for (let i = 0; i < 2; i++) await fn();
  const ts: number[] = [];
  const c0 = process.cpuUsage();
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    ts.push(performance.now() - t0);
  }
  const c = process.cpuUsage(c0);
  ts.sort((a, b) => a - b);
  return { wall: ts[ts.length >> 2]!, cpu: (c.user + c.system) / 1000 / reps };
}

const build = option("build", "relaxed") as "relaxed" | "simd";
const reps = Number(option("reps", "15"));
const only = option("only", "");
const one = await testBackend(build, 1), two = await testBackend(build, 2);
if (!one || !two) throw new Error(`this engine cannot run the ${build} build`);
console.log(`wasm dense kernels (${build} build) vs the op table's JS kernels, batch 1, ${reps} calls each`);
console.log("every wasm implementation that claims the node is timed; 'est' is its claimed cost (ns → ms), '*' marks the one the backend binds");
console.log("1-thread columns are CPU ms per call (preemption excluded); the 2-thread column is wall time (lower quartile) against the 1-thread wall time");
const rows: string[][] = [["case", "path", "est ms", "js cpu ms", "wasm 1t cpu ms", "GFLOP/s 1t", "1t ÷ js", "1t wall ms", "2t wall ms", "2t ÷ 1t"]];
type Env = NonNullable<typeof one>;
/** A copy of each run-time input in the backend's wasm memory, as the session keeps values. */
const inWasm = (h: Env, c: Case) => c.inputs.map((i) => {
  if (i.constant) return i.tensor;
  const v = h.heap.take(i.tensor.data.length);
  v.set(i.tensor.data as Float32Array);
  return { ...i.tensor, data: v };
});
for (const c of CASES) {
  if (only && !c.name.includes(only)) continue;
  const spec = nodeSpec(c.op, c.inputs, attrValues(c.attrs));
  const xs = c.inputs.map((i) => i.tensor);
  const js = await time(() => referenceOutput(spec, xs), reps);
  const chosen = one.backend.bind(spec);
  const claims = WASM_OPS.filter((impl) => impl.opTypes.includes(c.op)).map((impl) => ({ impl, claim: impl.claim(spec, one.backend.env) })).filter((x) => x.claim);
  if (!claims.length) rows.push([c.name, "not claimed", "", js.cpu.toFixed(3), "", "", "", "", "", ""]);
  for (const { impl, claim } of claims) {
    const timed: { wall: number; cpu: number }[] = [];
    for (const h of [one, two]) {
      const bound = impl.bind(spec, h.backend.env, claim!);
      const x = inWasm(h, c);
      const addr = (t: Tensor) => h.backend.env.kernels.addressOf(t.data as Float32Array);
      timed.push(await time(() => { const o = bound.run(x, h.rc, addr); h.heap.release(o, []); }, reps));
      bound.dispose?.();
      h.heap.clear();
    }
    const [w1, w2] = timed as [{ wall: number; cpu: number }, { wall: number; cpu: number }];
    const mark = chosen?.path === claim!.path ? "*" : " ";
    rows.push([c.name, `${mark}${claim!.path}`, (claim!.cost / 1e6).toFixed(3), js.cpu.toFixed(3), w1.cpu.toFixed(3), (c.work / w1.cpu / 1e6).toFixed(2),
      (w1.cpu / js.cpu).toFixed(2), w1.wall.toFixed(3), w2.wall.toFixed(3), (w2.wall / w1.wall).toFixed(2)]);
  }
  chosen?.dispose?.();
}
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
for (const r of rows) console.log(r.map((v, i) => (i === 0 || i === 1 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join("  "));
one.backend.dispose(); two.backend.dispose();
