/**
 * Per-layer time of the wasm sparse-quantized kernels (runtime/wasm/ops/conv-sparse.ts) against
 * onnxruntime-web on the same layer with its dense FP32 weight (runs alternating) and the
 * reference backend's path, for every Conv/Gemm/MatMul of a `.opq` whose
 * weight is compressed, and the model totals against onnxruntime-web on the FP32 ONNX, all in
 * one run and one process (p50 of the iterations; whole-model runs of ours and ort alternate). Each layer runs as a one-node session, its
 * input a seeded tensor of the planned shape.
 *
 * Usage: bun bench/sparse-kernels-bench.ts model.opq [--onnx fp32.onnx] [--threads T] [--batch 1] [--iterations 15] [--totals] [--no-reference] [--cpu] [--json]
 * (--totals: the whole-model comparison only; --cpu: CPU time instead of wall clock, 1 thread)
 * @module
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { decodeOpq, type Dim, type OpqModel, sizeOf, toDenseModel, writeOnnx } from "../format/mod.ts";
import { createSession } from "../runtime/mod.ts";
import { planModel } from "../runtime/planner.ts";
import { createOrtSession } from "../cli/ort.ts";
import { seededInput } from "../cli/commands/bench.ts";
import { formatTable, printJson, say } from "../cli/common.ts";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    onnx: { type: "string" }, threads: { type: "string" }, batch: { type: "string" },
    iterations: { type: "string" }, json: { type: "boolean" }, "no-reference": { type: "boolean" }, totals: { type: "boolean" }, cpu: { type: "boolean" },
  },
});
const file = positionals[0];
if (!file) throw new Error("usage: bun bench/sparse-kernels-bench.ts model.opq [--onnx fp32.onnx] [--threads T] [--batch 1]");
// One thread count per run: onnxruntime-web fixes its thread count per process.
const threadList = [Number(values.threads ?? 1)];
const batch = Number(values.batch ?? 1);
const iterations = Number(values.iterations ?? 15);
const withReference = !values["no-reference"];
/**
 * --cpu: time by the process's CPU time instead of the wall clock (1 thread only: both runtimes
 * then compute on this thread). On a shared, oversubscribed machine the wall clock mostly
 * measures the scheduler; CPU time what the work costs.
 */
const useCpu = values.cpu === true;
if (useCpu && Number(values.threads ?? 1) !== 1) throw new Error("--cpu needs --threads 1");
const clock = useCpu ? () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; } : () => performance.now();

const opq: OpqModel = decodeOpq(new Uint8Array(readFileSync(file)));
const plan = planModel(opq.model, { compressed: opq.compressed, deferPrepare: true });
const byName = new Map(opq.compressed.map((c) => [c.name, c]));

/**
 * Fastest of `n` timed calls after one warm-up: on a shared machine a layer's p50 mostly
 * measures when the scheduler ran us, the minimum what the kernel costs.
 */
async function fastest(fn: () => Promise<unknown>, n: number): Promise<number> {
  await fn();
  let best = Infinity;
  for (let i = 0; i < n; i++) { const t = clock(); await fn(); best = Math.min(best, clock() - t); }
  return best;
}

const concrete = (dims: readonly Dim[]) => dims.map((d) => (typeof d === "number" ? d : batch));

interface Row { layer: string; op: string; threads: number; path: string; weightForm: string; residentBytes: number; fp32Bytes: number; /** fastest run */ ms: number; ortMs: number; refMs?: number }
const rows: Row[] = [];
const totals: Record<number, { ours: number; ort?: number; oursMin: number; ortMin?: number }> = {};

for (const threads of threadList) {
  for (const step of values.totals ? [] : plan.steps) {
    const w = step.node.inputs[1] ? byName.get(step.node.inputs[1]!) : undefined;
    if (!w || !["Conv", "Gemm", "MatMul"].includes(step.node.opType)) continue;
    const xs = plan.shapes.get(step.node.inputs[0]!);
    const ys = plan.shapes.get(step.node.outputs[0]!);
    if (!xs || !ys) continue;
    const init = Object.fromEntries(step.node.inputs.slice(2).filter((n) => n && plan.constants.has(n)).map((n) => [n, plan.constants.get(n)!]));
    const one: OpqModel = {
      model: {
        ...opq.model,
        graph: {
          name: step.name, nodes: [step.node], initializers: init,
          inputs: [{ name: step.node.inputs[0]!, dtype: "float32", shape: xs.map((d) => (typeof d === "number" ? d : "N")) }],
          outputs: [{ name: step.node.outputs[0]!, dtype: "float32", shape: null }],
        },
      },
      compressed: [w],
      metadata: {},
    };
    const x = seededInput(concrete(xs), 7);
    const feeds = { [step.node.inputs[0]!]: x };
    const ours = await createSession(one, { backend: "wasm", threads });
    const l = ours.info.layers[0]!;
    // The same layer on onnxruntime-web with the dense FP32 weight, runs alternating with ours.
    const ortOne = await createOrtSession(writeOnnx(toDenseModel(one)), { threads });
    let ms = Infinity, ortMs = Infinity;
    await ours.run(feeds);
    await ortOne.run(feeds);
    for (let i = 0; i < iterations; i++) {
      let t = clock();
      await ours.run(feeds);
      ms = Math.min(ms, clock() - t);
      t = clock();
      await ortOne.run(feeds);
      ortMs = Math.min(ortMs, clock() - t);
    }
    ours.dispose();
    await (ortOne as { dispose?: () => unknown }).dispose?.();
    let refMs: number | undefined;
    if (withReference) {
      const ref = await createSession(one, { backend: "cpu-reference", threads });
      refMs = await fastest(() => ref.run(feeds), Math.max(3, Math.floor(iterations / 3)));
      ref.dispose();
    }
    rows.push({ layer: step.name, op: step.node.opType, threads, path: l.path, weightForm: l.weightForm, residentBytes: l.residentBytes, fp32Bytes: sizeOf(w.dims) * 4, ms, ortMs, refMs });
  }
  // Whole model: ours on the .opq, ort on the FP32 ONNX, iterations alternating between the two
  // so both see the same machine load (the machine is shared).
  const full = await createSession(new Uint8Array(readFileSync(file)), { backend: "wasm", threads });
  const inp = full.inputs[0]!;
  const x = seededInput(concrete(inp.shape ?? []), 1);
  const ort = values.onnx ? await createOrtSession(new Uint8Array(readFileSync(values.onnx)), { threads }) : undefined;
  const timesOurs: number[] = [], timesOrt: number[] = [];
  await full.run({ [inp.name]: x });
  await ort?.run({ [inp.name]: x });
  for (let i = 0; i < iterations; i++) {
    let t = clock();
    await full.run({ [inp.name]: x });
    timesOurs.push(clock() - t);
    if (ort) { t = clock(); await ort.run({ [inp.name]: x }); timesOrt.push(clock() - t); }
  }
  const med = (v: number[]) => v.sort((a, b) => a - b)[Math.floor((v.length - 1) / 2)]!;
  totals[threads] = { ours: med(timesOurs), ort: ort ? med(timesOrt) : undefined, oursMin: timesOurs[0]!, ortMin: ort ? timesOrt[0] : undefined };
  full.dispose();
  await (ort as { dispose?: () => unknown } | undefined)?.dispose?.();
}

if (values.json) {
  printJson({ file, batch, rows, totals });
} else {
  const f = (v: number | undefined, d = 3) => (v === undefined ? "-" : v.toFixed(d));
  say(formatTable(
    ["layer", "op", "thr", "path", "KiB held", "÷ fp32", "ms (min)", "ort ms (min)", "÷ ort", "ref ms (min)", "÷ ref"],
    rows.map((r) => [r.layer, r.op, String(r.threads), r.path, (r.residentBytes / 1024).toFixed(0), f(r.residentBytes / r.fp32Bytes), f(r.ms), f(r.ortMs), f(r.ms / r.ortMs), f(r.refMs), f(r.refMs && r.ms / r.refMs)]),
  ));
  for (const [t, v] of Object.entries(totals)) {
    const mine = rows.filter((r) => r.threads === Number(t));
    const layerSum = mine.reduce((s, r) => s + r.ms, 0), ortSum = mine.reduce((s, r) => s + r.ortMs, 0);
    if (mine.length) say(`threads ${t}, batch ${batch}: compressed layers Σ ours ${layerSum.toFixed(2)} ms, ort (dense FP32, same layers) ${ortSum.toFixed(2)} ms: ${(layerSum / ortSum).toFixed(3)}×`);
    say(`threads ${t}, batch ${batch}: sparse layers Σ ${layerSum.toFixed(2)} ms (fastest runs); model p50 ${v.ours.toFixed(2)} ms (fastest ${v.oursMin.toFixed(2)})` +
      (v.ort ? `; ort FP32 p50 ${v.ort.toFixed(2)} ms (fastest ${v.ortMin!.toFixed(2)}); ours ÷ ort p50 ${(v.ours / v.ort).toFixed(3)}, fastest ${(v.oursMin / v.ortMin!).toFixed(3)}` : ""));
  }
}
process.exit(0);
