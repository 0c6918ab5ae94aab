/**
 * Per-layer time of the wasm sparse-quantized kernels (runtime/wasm/ops/conv-sparse.ts) against
 * the reference backend's path on the same layer, for every Conv/Gemm/MatMul of a `.opq` whose
 * weight is compressed, and the model totals against onnxruntime-web on the FP32 ONNX, all in
 * one run and one process (p50 of the iterations). Each layer runs as a one-node session, its
 * input a seeded tensor of the planned shape.
 *
 * Usage: bun bench/sparse-kernels-bench.ts model.opq [--onnx fp32.onnx] [--threads 1,2] [--batch 1] [--iterations 15] [--json]
 * @module
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { decodeOpq, type Dim, type OpqModel, sizeOf } from "../format/mod.ts";
import { createSession, planModel } from "../runtime/mod.ts";
import { createOrtSession } from "../cli/ort.ts";
import { seededInput } from "../cli/commands/bench.ts";
import { formatTable, printJson, say } from "../cli/common.ts";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    onnx: { type: "string" }, threads: { type: "string" }, batch: { type: "string" },
    iterations: { type: "string" }, json: { type: "boolean" }, reference: { type: "boolean" },
  },
});
const file = positionals[0];
if (!file) throw new Error("usage: bun bench/sparse-kernels-bench.ts model.opq [--onnx fp32.onnx] [--threads 1,2] [--batch 1]");
const threadList = (values.threads ?? "1,2").split(",").map(Number);
const batch = Number(values.batch ?? 1);
const iterations = Number(values.iterations ?? 15);
const withReference = values.reference !== false;

const opq: OpqModel = decodeOpq(new Uint8Array(readFileSync(file)));
const plan = planModel(opq.model, { compressed: opq.compressed, deferPrepare: true });
const byName = new Map(opq.compressed.map((c) => [c.name, c]));

/** p50 of `n` timed calls after one warm-up. */
async function p50(fn: () => Promise<unknown>, n: number): Promise<number> {
  await fn();
  const ts: number[] = [];
  for (let i = 0; i < n; i++) { const t = performance.now(); await fn(); ts.push(performance.now() - t); }
  ts.sort((a, b) => a - b);
  return ts[Math.floor((ts.length - 1) / 2)]!;
}

const concrete = (dims: readonly Dim[]) => dims.map((d) => (typeof d === "number" ? d : batch));

interface Row { layer: string; op: string; threads: number; path: string; weightForm: string; residentBytes: number; fp32Bytes: number; ms: number; refMs?: number }
const rows: Row[] = [];
const totals: Record<number, { ours: number; ort?: number }> = {};

for (const threads of threadList) {
  for (const step of plan.steps) {
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
    const ms = await p50(() => ours.run(feeds), iterations);
    ours.dispose();
    let refMs: number | undefined;
    if (withReference) {
      const ref = await createSession(one, { backend: "cpu-reference", threads });
      refMs = await p50(() => ref.run(feeds), Math.max(3, Math.floor(iterations / 3)));
      ref.dispose();
    }
    rows.push({ layer: step.name, op: step.node.opType, threads, path: l.path, weightForm: l.weightForm, residentBytes: l.residentBytes, fp32Bytes: sizeOf(w.dims) * 4, ms, refMs });
  }
  // Whole model: ours on the .opq, ort on the FP32 ONNX.
  const full = await createSession(new Uint8Array(readFileSync(file)), { backend: "wasm", threads });
  const inp = full.inputs[0]!;
  const x = seededInput(concrete(inp.shape ?? []), 1);
  totals[threads] = { ours: await p50(() => full.run({ [inp.name]: x }), iterations) };
  full.dispose();
  if (values.onnx) {
    const ort = await createOrtSession(new Uint8Array(readFileSync(values.onnx)), { threads });
    totals[threads]!.ort = await p50(() => ort.run({ [inp.name]: x }), iterations);
    await (ort as { dispose?: () => unknown }).dispose?.();
  }
}

if (values.json) {
  printJson({ file, batch, rows, totals });
} else {
  const f = (v: number | undefined, d = 3) => (v === undefined ? "-" : v.toFixed(d));
  say(formatTable(
    ["layer", "op", "thr", "path", "KiB held", "÷ fp32", "ms", "ref ms", "÷ ref"],
    rows.map((r) => [r.layer, r.op, String(r.threads), r.path, (r.residentBytes / 1024).toFixed(0), f(r.residentBytes / r.fp32Bytes), f(r.ms), f(r.refMs), f(r.refMs && r.ms / r.refMs)]),
  ));
  for (const [t, v] of Object.entries(totals)) {
    const layerSum = rows.filter((r) => r.threads === Number(t)).reduce((s, r) => s + r.ms, 0);
    say(`threads ${t}, batch ${batch}: sparse layers Σ ${layerSum.toFixed(2)} ms; model ${v.ours.toFixed(2)} ms` + (v.ort ? `; ort FP32 ${v.ort.toFixed(2)} ms; ours ÷ ort ${(v.ours / v.ort).toFixed(3)}` : ""));
  }
}
process.exit(0);
