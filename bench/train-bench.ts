/**
 * `bun run bench:train`: images/s of one training step (forward, cross-entropy, backward, SGD with
 * momentum and weight decay) of ResNet-20 at batch 256 in our autograd, and PyTorch's on the same
 * graph (bench/train-bench.py, python3-torch if installed: the bench installs nothing and says so
 * when it is missing) at the same thread count, in the same run, with the ratio; peak RSS of both.
 * `--profile` adds our time per op type, forward and backward (of the calling thread's shard).
 * `--threads T`: ours splits the batch over T threads (data-parallel, runtime/train/parallel.ts),
 * PyTorch gets torch.set_num_threads(T).
 * Usage: bun bench/train-bench.ts [--model resnet20-fmnist.onnx] [--batch 256] [--steps 3] [--threads 1] [--sparse 0.74 [--stage 1|2]] [--profile] [--js-kernels] [--no-peer] [--json]
 * `--sparse P` trains the OPQ-compressed model at sparsity P as finetune does (masked weights; the
 * masks go to the graph, so Conv's weight gradient is computed at kept weights only).
 * `--stage 2`: train the quantized Ŵ (OPQ finetune's second stage) instead of the pruned-only one.
 * `--js-kernels`: without the WASM training conv kernels (train/wasm-conv.ts), to compare.
 * @module
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { mulberry32, readOnnx, type Tensor } from "../format/mod.ts";
import { compressModel, layerConstraints, opqFinetuneMethod, trainLoop, type TrainMethod } from "../compressor/mod.ts";
import { createParallelTrainableGraph, type GradOp } from "../runtime/mod.ts";
import { OPS } from "../runtime/ops/registry.ts";
import { formatTable, printJson, say } from "../cli/common.ts";
import { sharedPath } from "../cli/shared.ts";

const { values } = parseArgs({
  options: {
    model: { type: "string" }, batch: { type: "string" }, steps: { type: "string" },     sparse: { type: "string" }, threads: { type: "string" }, profile: { type: "boolean" }, "js-kernels": { type: "boolean" }, stage: { type: "string" }, json: { type: "boolean" }, "no-peer": { type: "boolean" },
  },
});
const file = values.model ?? "resnet20-fmnist.onnx";
const batch = Number(values.batch ?? 256), steps = Number(values.steps ?? 3), threads = Number(values.threads ?? 1);
const model = readOnnx(new Uint8Array(readFileSync(sharedPath("models", file))));
const inputInfo = model.graph.inputs.find((i) => !Object.hasOwn(model.graph.initializers, i.name))!;
const inputDims = [batch, ...inputInfo.shape!.slice(1).map(Number)];

// Per-op timing: wrap each differentiable op's forward and its backward closure.
const profile = new Map<string, { fwd: number; bwd: number; calls: number }>();
if (values.profile) {
  const wrap = (name: string, op: GradOp): GradOp => (inputs, attrs, alloc, ctx) => {
    const p = profile.get(name) ?? profile.set(name, { fwd: 0, bwd: 0, calls: 0 }).get(name)!;
    const t0 = performance.now();
    const r = op(inputs, attrs, alloc, ctx);
    p.fwd += performance.now() - t0;
    p.calls++;
    return { outputs: r.outputs, backward: (d, n) => { const t1 = performance.now(); const g = r.backward(d, n); p.bwd += performance.now() - t1; return g; } };
  };
  for (const [name, versions] of Object.entries(OPS)) for (const v of versions) if (v.grad) v.grad = wrap(name, v.grad);
}

const inits = { ...model.graph.initializers };
const constraints = values.sparse ? layerConstraints(compressModel(model, { sparsity: Number(values.sparse), bits: 3 }).opq) : new Map();
const keep = new Map([...constraints].map(([name, c]) => [name, c.mask]));
const graph = await createParallelTrainableGraph({ ...model, graph: { ...model.graph, initializers: inits } }, threads, batch, inputDims.slice(1), { keep, wasm: !values["js-kernels"] });
const master = new Map<string, Float32Array>();
let method: TrainMethod = {};
const hats = new Map<string, Float32Array>();
for (const name of graph.params) {
  const w = Float32Array.from(inits[name]!.data as Float32Array);
  master.set(name, w);
  const hat = constraints.has(name) ? new Float32Array(w.length) : w;
  if (constraints.has(name)) hats.set(name, hat);
  inits[name] = { ...inits[name]!, data: hat };
}
// Stage 1 (pruned only: Ŵ = M∘W) for every step, or with --stage 2 stage 2 (Ŵ = M∘Q(W): a few levels a layer).
if (values.sparse) method = opqFinetuneMethod(constraints, hats, values.stage === "2" ? 0 : steps + 1);
const rnd = mulberry32(1);
const data = Float32Array.from({ length: batch * inputDims.slice(1).reduce((a, b) => a * b, 1) }, () => rnd() * 2 - 1);
const labels = Uint8Array.from({ length: batch }, () => Math.floor(rnd() * 10));
const source = { count: batch, gather: () => ({ data, dims: inputDims, labels }) };
const opts = { batch, lr: 0.001, momentum: 0.9, weightDecay: 1e-4, schedule: { kind: "constant" } as const, seed: 1 };
/** Peak resident set of this process in bytes (getrusage maxrss, KiB on Linux), or the current RSS where unavailable. */
const peakRss = () => { try { return process.resourceUsage().maxRSS * 1024; } catch { return process.memoryUsage().rss; } };
trainLoop(graph, master, source, { ...opts, steps: 1 }, method); // warm-up (JIT, wasm instantiation)
profile.clear();
const t0 = performance.now(), cpu0 = process.cpuUsage();
trainLoop(graph, master, source, { ...opts, steps }, method);
const seconds = (performance.now() - t0) / 1000, cpu1 = process.cpuUsage(cpu0);
// CPU seconds of the whole process (all threads): on a machine shared with other jobs the wall
// clock counts their time too, so images per CPU-second is the steadier efficiency figure.
const cpuSeconds = (cpu1.user + cpu1.system) / 1e6;
graph.dispose();
const ours = { imagesPerSecond: batch * steps / seconds, imagesPerCpuSecond: batch * steps / cpuSeconds, seconds, cpuSeconds, threads, peakRssMB: peakRss() / 2 ** 20 };
say(`ours: ${file} batch ${batch}, ${steps} steps${values.sparse ? ` (OPQ masks at ${values.sparse})` : ""}, ${threads} thread(s): ${ours.imagesPerSecond.toFixed(1)} images/s (${ours.imagesPerCpuSecond.toFixed(1)} per CPU-second), RSS ${ours.peakRssMB.toFixed(0)} MB`);
if (values.profile) {
  const rows = [...profile].sort((a, b) => (b[1].fwd + b[1].bwd) - (a[1].fwd + a[1].bwd));
  say(formatTable(["op", "calls/step", "forward ms/step", "backward ms/step"], rows.map(([k, p]) => [k, p.calls / steps, (p.fwd / steps).toFixed(0), (p.bwd / steps).toFixed(0)])));
}

// The peer: the same graph in PyTorch.
let peer: { imagesPerSecond: number; imagesPerCpuSecond: number; seconds: number; threads: number; torch: string; peakRssMB: number } | undefined;
let peerNote = "";
const python = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
if (!values["no-peer"]) {
  const tmp = mkdtempSync(join(tmpdir(), "opq-train-bench-"));
  try {
    const spec = {
      input: inputInfo.name, output: model.graph.outputs[0]!.name, inputDims, classes: 10,
      params: Object.fromEntries(graph.params.map((p) => [p, model.graph.initializers[p]!.dims])),
      nodes: model.graph.nodes.map((n) => ({
        op: n.opType, inputs: n.inputs, outputs: n.outputs,
        attrs: Object.fromEntries(Object.entries(n.attrs).map(([k, a]) => [k, "value" in a ? a.value : null])),
      })),
    };
    const specPath = join(tmp, "graph.json");
    writeFileSync(specPath, JSON.stringify(spec, (_k, v) => (ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>) : v)));
    const r = spawnSync(python, [join(import.meta.dirname ?? "bench", "train-bench.py"), specPath, String(batch), String(steps), String(threads)], { encoding: "utf8" });
    if (r.status === 0) peer = JSON.parse(r.stdout.trim().split("\n").pop()!);
    else peerNote = /No module named 'torch'/.test(r.stderr ?? "") ? `PyTorch is not installed for ${python} (apt-get install python3-torch): no peer` : `the PyTorch peer failed: ${(r.stderr || r.error?.message || "").slice(-400)}`;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
if (peer) {
  say(`PyTorch ${peer.torch}: ${peer.imagesPerSecond.toFixed(1)} images/s (${peer.imagesPerCpuSecond.toFixed(1)} per CPU-second), ${peer.threads} thread(s), RSS ${peer.peakRssMB.toFixed(0)} MB`);
  say(`ratio ours/PyTorch: ${(ours.imagesPerSecond / peer.imagesPerSecond).toFixed(3)}× images/s (wall), ${(ours.imagesPerCpuSecond / peer.imagesPerCpuSecond).toFixed(3)}× images per CPU-second (target ≥ 0.5×); peak RSS ${(ours.peakRssMB / peer.peakRssMB).toFixed(2)}×`);
} else if (peerNote) say(peerNote);
if (values.json) printJson({ bench: "train", model: file, batch, steps, sparse: values.sparse ? Number(values.sparse) : null, ours, peer: peer ?? null, peerNote: peerNote || null, ratio: peer ? ours.imagesPerSecond / peer.imagesPerSecond : null, cpuRatio: peer ? ours.imagesPerCpuSecond / peer.imagesPerCpuSecond : null, profile: Object.fromEntries(profile) });
