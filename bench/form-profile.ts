/**
 * Per-layer weight-form profile of a `.opq` on the wasm backend: for each compressed Conv/Gemm,
 * the cost every wasm implementation claimed (the cost model's estimate, ns at batch 1) next to the
 * time the layer measured (session profile, CPU time of this thread ÷ calls) when each form is forced
 * in turn (OPQ_WASM_FORMS) — the form the backend picks, the sparse-row form, and the u8 code form —
 * all in one process, rounds alternating between the three.
 * Usage: bun bench/form-profile.ts model.opq|model.onnx [--threads 1] [--batch 1] [--iterations 10] [--rounds 3] [--json]
 * (an .onnx is compressed at (0.74, 3) first)
 * @module
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { compressModel } from "../compressor/mod.ts";
import { encodeOpq, readOnnx } from "../format/mod.ts";
import { createSession } from "../runtime/mod.ts";
import { WASM_OPS } from "../runtime/wasm/ops/index.ts";
import { seededInput } from "../cli/commands/bench.ts";
import { formatTable, printJson, say } from "../cli/common.ts";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { threads: { type: "string" }, batch: { type: "string" }, iterations: { type: "string" }, rounds: { type: "string" }, json: { type: "boolean" } },
});
const file = positionals[0];
if (!file) throw new Error("usage: bun bench/form-profile.ts model.opq|model.onnx [--threads 1] [--batch 1] [--iterations 10]");
const threads = Number(values.threads ?? 1), batch = Number(values.batch ?? 1), iterations = Number(values.iterations ?? 10);
let bytes: Uint8Array = new Uint8Array(readFileSync(file));
if (file.endsWith(".onnx")) bytes = encodeOpq(compressModel(readOnnx(bytes), { method: "opq", sparsity: 0.74, bits: 3 }).opq);

/** Every claim per layer (spec name → "path/form" → cost), recorded by wrapping each implementation's claim. */
const claims = new Map<string, Map<string, number>>();
/** The layer's weight dims, kept weights, output shape, strides and groups (for --json). */
const shapes = new Map<string, unknown>();
for (const impl of WASM_OPS) {
  const claim = impl.claim.bind(impl);
  impl.claim = (spec, env) => {
    const c = claim(spec, env);
    if (!c) return c;
    let m = claims.get(spec.name);
    if (!m) claims.set(spec.name, (m = new Map()));
    m.set(c.path, c.cost);
    const w = spec.compressed[1];
    if (w && !shapes.has(spec.name)) shapes.set(spec.name, { w: w.dims, nnz: w.indices.length, y: spec.outputShapes[0], strides: spec.attrs.ints("strides", [1, 1]), group: spec.attrs.int("group", 1) });
    return c;
  };
}

const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
// At 1 thread all kernel work is on this thread: the session's per-layer profile then reads CPU
// time (on a shared machine the wall clock mostly measures the scheduler).
if (threads === 1) performance.now = cpuMs;
const rounds = Number(values.rounds ?? 3);
interface LayerRow { layer: string; opType: string; path: string; weightForm: string; ms: number }
/** Profile a session whose compressed layers take `mode`'s form (OPQ_WASM_FORMS; undefined: the cheapest claim). */
async function profile(mode: "sparse" | "coded" | undefined): Promise<{ rows: LayerRow[]; totalMs: number }> {
  if (mode) process.env.OPQ_WASM_FORMS = mode;
  else delete process.env.OPQ_WASM_FORMS;
  const s = await createSession(bytes, { backend: "wasm", threads, profile: true });
  const inp = s.inputs[0]!;
  const x = seededInput((inp.shape ?? []).map((d, i) => (i === 0 ? batch : (d as number))), 1);
  await s.run({ [inp.name]: x });
  const before = s.profile()!.map((p) => p.ms);
  // Per layer the fastest of `iterations` runs, and the fastest whole run.
  let totalMs = Infinity;
  const best = before.map(() => Infinity);
  let last = before;
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now();
    await s.run({ [inp.name]: x });
    totalMs = Math.min(totalMs, performance.now() - t0);
    const now = s.profile()!.map((p) => p.ms);
    now.forEach((v, j) => { best[j] = Math.min(best[j]!, v - last[j]!); });
    last = now;
  }
  const rows = s.profile()!.map((p, i) => ({ layer: p.name, opType: s.info.layers[i]!.opType, path: p.path, weightForm: s.info.layers[i]!.weightForm, ms: best[i]! }));
  s.dispose();
  return { rows, totalMs };
}

const modes = [undefined, "sparse", "coded"] as const;
type Run = Awaited<ReturnType<typeof profile>>;
const runs: Run[] = [];
// Rounds alternate the modes (the machine's load drifts); each keeps its per-layer minimum.
for (let r = 0; r < rounds; r++) {
  for (const [i, m] of modes.entries()) {
    const p = await profile(m);
    const prev = runs[i];
    if (!prev) runs[i] = p;
    else runs[i] = { totalMs: Math.min(prev.totalMs, p.totalMs), rows: prev.rows.map((row, j) => ({ ...row, ms: Math.min(row.ms, p.rows[j]!.ms) })) };
  }
}
const [auto, sparse, coded] = runs as [Run, Run, Run];
const out = auto.rows.map((r, i) => {
  const c = claims.get(r.layer);
  const cost = (pred: (p: string) => boolean) => { let best = Infinity; for (const [p, v] of c ?? []) if (pred(p)) best = Math.min(best, v); return best / 1e6; };
  return {
    layer: r.layer, opType: r.opType, shape: shapes.get(r.layer), bound: r.path, autoMs: r.ms,
    sparsePath: sparse.rows[i]!.path, sparseMs: sparse.rows[i]!.ms, sparsePred: cost((p) => p.startsWith("wasm-sparse")),
    codedPath: coded.rows[i]!.path, codedMs: coded.rows[i]!.ms, codedPred: cost((p) => p.endsWith("-coded")),
  };
});
if (values.json) printJson({ file, threads, batch, layers: out, totals: { auto: auto.totalMs, sparse: sparse.totalMs, coded: coded.totalMs } });
else {
  const f = (v: number) => (Number.isFinite(v) ? v.toFixed(3) : "-");
  say(formatTable(["layer", "op", "bound", "ms", "sparse ms", "pred", "coded path", "coded ms", "pred"],
    out.filter((r) => r.autoMs > 0.02 || r.sparseMs > 0.02).map((r) => [r.layer, r.opType, r.bound, f(r.autoMs), f(r.sparseMs), f(r.sparsePred), r.codedPath, f(r.codedMs), f(r.codedPred)])));
  const sum = (k: "autoMs" | "sparseMs" | "codedMs") => out.reduce((s, r) => s + r[k], 0).toFixed(2);
  say(`Σ layers ms: auto ${sum("autoMs")}, sparse ${sum("sparseMs")}, coded ${sum("codedMs")}; fastest run (${threads === 1 ? "CPU" : "wall"} ms): auto ${auto.totalMs.toFixed(2)}, sparse ${sparse.totalMs.toFixed(2)}, coded ${coded.totalMs.toFixed(2)}`);
}
process.exit(0);
