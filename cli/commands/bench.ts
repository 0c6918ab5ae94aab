/**
 * `opq bench` – load time, first-run time, p50/p90 latency at batch 1 and 8 and peak RSS of our
 * runtime on a model, next to onnxruntime-web (WASM, same thread count) on the FP32 ONNX model,
 * measured in the same run, with ratios ours/ort. Each runtime is measured in its own child
 * process (this file run as a script with `--child`): RSS is per process, so that is the only
 * honest way to keep one runtime's heap and WASM memory out of the other's figure.
 * Peak RSS is the kernel's high-water mark (VmHWM in /proc/self/status) where there is one,
 * else the maximum of `process.memoryUsage().rss` sampled every 2 ms and after every run.
 * @module
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { mulberry32, type Tensor } from "../../format/mod.ts";
import { backendOption, type Command, fmtBytes, formatTable, numberOption, percentile, printJson, say, stringOption, UsageError, wantsJson } from "../common.ts";
import type { BackendChoice } from "../../runtime/session.ts";
import { DEFAULT_MODEL } from "../shared.ts";
import { isOpqFile, onnxBytesFor, openRunner, type RuntimeName } from "./eval.ts";

/** Latency percentiles of one batch size, in milliseconds. */
export interface Latency {
  batch: number;
  p50: number;
  p90: number;
  mean: number;
}

/** What one runtime measured in its own process. */
export interface RuntimeMeasurement {
  runtime: RuntimeName;
  model: string;
  threads: number;
  /** Cold load in a fresh process: runtime initialisation (ort: WASM instantiation) plus model. */
  loadMs: number;
  /** A second load in the same process, after the first session is disposed (peak RSS excludes it). */
  warmLoadMs: number;
  firstRunMs: number;
  latency: Latency[];
  /** RSS after importing the runtime, before reading the model. */
  baseRssBytes: number;
  peakRssBytes: number;
  rssMethod: "VmHWM" | "sampled";
  /** Our session's backend choice ("auto" unless --backend); absent for ort. */
  backend?: string;
  /** GPU work of the webgpu backend per batch-1 run, and its GPU memory (webgpu only). */
  gpu?: GpuRunFigures;
  /** Our session's layer report (which kernel path each layer took); absent for ort. */
  layers?: unknown[];
  info?: Record<string, unknown>;
}

/** What the webgpu backend did per batch-1 run (counter differences over the timed runs / runs). */
export interface GpuRunFigures {
  dispatchesPerRun: number;
  submitsPerRun: number;
  uploadBytesPerRun: number;
  downloadBytesPerRun: number;
  /** Pipeline cache over the whole process life: hits and misses (misses = pipelines built). */
  pipelineHits: number;
  pipelineMisses: number;
  /** GPU buffers held after the runs, and their high-water mark. */
  gpuBytes: number;
  peakGpuBytes: number;
  /** Nodes on the GPU and on the CPU (fallbacks). */
  gpuNodes: number;
  cpuNodes: number;
  adapter: string;
}

type GpuCounters = { dispatches: number; submits: number; uploadBytes: number; downloadBytes: number; pipelineHits: number; pipelineMisses: number; gpuBytes: number; peakGpuBytes: number };

/** Batch sizes measured. */
const BATCHES = [1, 8] as const;

/** Deterministic float32 inputs in [-1, 1) (mulberry32), so both runtimes see identical data. */
export function seededInput(dims: number[], seed: number): Tensor {
  const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
  const rand = mulberry32(seed);
  for (let i = 0; i < data.length; i++) data[i] = rand() * 2 - 1;
  return { dtype: "float32", dims, data };
}

/** Peak RSS: VmHWM from /proc when readable, else undefined. */
function vmHwm(): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Measure one runtime on one model in this process. Called in the child process. */
export async function measureRuntime(runtime: RuntimeName, model: string, threads: number, iterations: number, warmup: number, backend?: BackendChoice): Promise<RuntimeMeasurement> {
  let sampled = process.memoryUsage().rss;
  const sample = () => { sampled = Math.max(sampled, process.memoryUsage().rss); };
  // Import the runtime before the baseline so the baseline holds its code, not the model.
  if (runtime === "ort") await import("onnxruntime-web");
  else await import("../../runtime/mod.ts");
  const baseRssBytes = process.memoryUsage().rss;
  const timer = setInterval(sample, 2);
  try {
    const start = performance.now();
    const runner = await openRunner(model, runtime, { threads, backend });
    const loadMs = performance.now() - start;
    const webgpu = (runner as { info?: { backends?: Record<string, Record<string, unknown>> } }).info?.backends?.webgpu;
    const counters = webgpu?.stats as GpuCounters | undefined;
    let gpu: GpuRunFigures | undefined;
    sample();
    const input = runner.inputs[0]!;
    const shape = input.shape ?? [];
    const dimsFor = (batch: number) =>
      shape.map((d, i) => {
        if (i === 0) return batch;
        if (typeof d !== "number") throw new Error(`input ${input.name} has a non-static dimension ${i} (${d}); cannot pick a shape`);
        return d;
      });
    const timeRun = async (x: Tensor) => {
      const t = performance.now();
      await runner.run({ [input.name]: x });
      const ms = performance.now() - t;
      sample();
      return ms;
    };
    const firstRunMs = await timeRun(seededInput(dimsFor(1), 1));
    const latency: Latency[] = [];
    for (const batch of BATCHES) {
      const x = seededInput(dimsFor(batch), 1000 + batch);
      for (let i = 0; i < warmup; i++) await timeRun(x);
      const times: number[] = [];
      const before = counters ? { ...counters } : undefined;
      for (let i = 0; i < iterations; i++) times.push(await timeRun(x));
      if (counters && before && batch === 1) {
        const per = (k: keyof GpuCounters) => (counters[k] - before[k]) / iterations;
        const a = webgpu!.adapter as { description?: string; vendor?: string; isFallbackAdapter?: boolean };
        gpu = {
          dispatchesPerRun: per("dispatches"), submitsPerRun: per("submits"), uploadBytesPerRun: per("uploadBytes"), downloadBytesPerRun: per("downloadBytes"),
          pipelineHits: counters.pipelineHits, pipelineMisses: counters.pipelineMisses, gpuBytes: counters.gpuBytes, peakGpuBytes: counters.peakGpuBytes,
          gpuNodes: Number(webgpu!.gpuNodes), cpuNodes: Number(webgpu!.cpuNodes), adapter: `${a.description || a.vendor}${a.isFallbackAdapter ? " (software fallback)" : ""}`,
        };
      }
      times.sort((a, b) => a - b);
      latency.push({ batch, p50: percentile(times, 0.5), p90: percentile(times, 0.9), mean: times.reduce((a, b) => a + b, 0) / times.length });
    }
    const session = runner as { info?: { layers?: unknown[] } & Record<string, unknown> };
    const info = session.info ? { ...session.info, layers: undefined, metadata: undefined } : undefined;
    const hwm = vmHwm();
    const peakRssBytes = hwm ?? sampled;
    await runner.dispose();
    // A second load in the same process: what loading costs once the runtime itself is initialised.
    const again = performance.now();
    await (await openRunner(model, runtime, { threads, backend })).dispose();
    const warmLoadMs = performance.now() - again;
    return {
      runtime, model, threads, loadMs, warmLoadMs, firstRunMs, latency, baseRssBytes,
      peakRssBytes, rssMethod: hwm !== undefined ? "VmHWM" : "sampled",
      ...(runtime === "opq" ? { backend: backend ?? "auto" } : {}), ...(gpu ? { gpu } : {}),
      layers: session.info?.layers, info,
    };
  } finally {
    clearInterval(timer);
  }
}

declare const Deno: { execPath(): string } | undefined;

/** Run measureRuntime in a fresh process of the same JS runtime (bun or deno) and parse its JSON. */
function measureInChild(runtime: RuntimeName, model: string, threads: number, iterations: number, warmup: number, backend: BackendChoice = "auto"): Promise<RuntimeMeasurement> {
  const self = fileURLToPath(import.meta.url);
  const args = ["--child", runtime, model, String(threads), String(iterations), String(warmup), backend];
  const [cmd, ...pre] = typeof Deno !== "undefined" ? [Deno.execPath(), "run", "-A", "--no-check"] : [process.execPath];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd!, [...pre, self, ...args], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout!.on("data", (b: Buffer) => { out += b.toString(); });
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) return reject(new Error(`bench child (${runtime} on ${model}) exited with code ${code}`));
      try { resolve(JSON.parse(out) as RuntimeMeasurement); } catch (e) { reject(new Error(`bench child (${runtime}) printed no JSON: ${out.slice(0, 200)}`, { cause: e })); }
    });
  });
}

/** Ratios ours/ort of each figure (> 1: ours is slower or bigger). */
function ratios(ours: RuntimeMeasurement, ort: RuntimeMeasurement): Record<string, number> {
  const r: Record<string, number> = {
    loadMs: ours.loadMs / ort.loadMs,
    warmLoadMs: ours.warmLoadMs / ort.warmLoadMs,
    firstRunMs: ours.firstRunMs / ort.firstRunMs,
    peakRssBytes: ours.peakRssBytes / ort.peakRssBytes,
    modelRssBytes: (ours.peakRssBytes - ours.baseRssBytes) / (ort.peakRssBytes - ort.baseRssBytes),
  };
  for (const l of ours.latency) {
    const p = ort.latency.find((x) => x.batch === l.batch)!;
    r[`b${l.batch}p50`] = l.p50 / p.p50;
    r[`b${l.batch}p90`] = l.p90 / p.p90;
  }
  return r;
}

/** The median of each figure over measurements of one runtime (the first's layer report and GPU figures). */
function medianOf(ms: RuntimeMeasurement[]): RuntimeMeasurement {
  const med = (f: (m: RuntimeMeasurement) => number) => {
    const v = ms.map(f).sort((a, b) => a - b), h = v.length >> 1;
    return v.length % 2 ? v[h]! : (v[h - 1]! + v[h]!) / 2;
  };
  if (ms.length === 1) return ms[0]!;
  return {
    ...ms[0]!,
    loadMs: med((m) => m.loadMs), warmLoadMs: med((m) => m.warmLoadMs), firstRunMs: med((m) => m.firstRunMs),
    baseRssBytes: med((m) => m.baseRssBytes), peakRssBytes: med((m) => m.peakRssBytes),
    latency: ms[0]!.latency.map((l, i) => ({ batch: l.batch, p50: med((m) => m.latency[i]!.p50), p90: med((m) => m.latency[i]!.p90), mean: med((m) => m.latency[i]!.mean) })),
  };
}

/** Options of benchPair. */
export interface BenchOptions {
  /** The FP32 ONNX model onnxruntime-web runs; default: the model itself, or a `.opq`'s dense export. */
  onnx?: string;
  threads?: number;
  iterations?: number;
  warmup?: number;
  /** Our backend (default auto); with "webgpu" the CPU backend (wasm) is measured too, in the same run. */
  backend?: BackendChoice;
  /**
   * Child-process rounds per runtime (default 1), ours and ort alternating (ours, ort, ours, …):
   * each figure is then the median over the rounds, so a slow minute of a shared machine lands
   * on both runtimes instead of one.
   */
  rounds?: number;
}

/** Result of benchPair: both measurements and ratios ours/ort. */
export interface BenchResult {
  model: string;
  peer: { path: string; source: string };
  threads: number;
  iterations: number;
  warmup: number;
  /** Child-process rounds per runtime; figures are medians over them. */
  rounds: number;
  opq: RuntimeMeasurement;
  /** Our CPU backend, when `opq` ran on webgpu. */
  cpu?: RuntimeMeasurement;
  ort: RuntimeMeasurement;
  ratios: Record<string, number>;
}

/** Measure our runtime on `model` and onnxruntime-web on its FP32 peer, one child process each. */
export async function benchPair(model: string, options: BenchOptions = {}): Promise<BenchResult> {
  const { threads = 1, iterations = 20, warmup = 2, rounds = 1 } = options;
  let peer = options.onnx ?? model;
  const source = options.onnx ? "--onnx" : isOpqFile(model) ? "dense export of the .opq" : "the same ONNX file";
  let tmp: string | undefined;
  if (!options.onnx && isOpqFile(model)) {
    tmp = mkdtempSync(join(tmpdir(), "opq-bench-"));
    peer = join(tmp, basename(model).replace(/\.opq$/i, ".dense.onnx"));
    writeFileSync(peer, await onnxBytesFor(model));
  }
  try {
    const runs: { ours: RuntimeMeasurement[]; cpu: RuntimeMeasurement[]; ort: RuntimeMeasurement[] } = { ours: [], cpu: [], ort: [] };
    for (let i = 0; i < rounds; i++) {
      runs.ours.push(await measureInChild("opq", model, threads, iterations, warmup, options.backend));
      if (options.backend === "webgpu") runs.cpu.push(await measureInChild("opq", model, threads, iterations, warmup, "wasm"));
      runs.ort.push(await measureInChild("ort", peer, threads, iterations, warmup));
    }
    const ours = medianOf(runs.ours), ort = medianOf(runs.ort), cpu = runs.cpu.length ? medianOf(runs.cpu) : undefined;
    return { model, peer: { path: options.onnx ?? model, source }, threads, iterations, warmup, rounds, opq: ours, ...(cpu ? { cpu } : {}), ort, ratios: ratios(ours, ort) };
  } finally {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  }
}

/** The human table of a BenchResult (for stderr). */
export function formatBench(r: BenchResult): string {
  const { opq: ours, ort, ratios: ratio } = r;
  const rows: (string | number)[][] = [
    ["load ms (cold, incl. runtime init)", ours.loadMs, ort.loadMs, ratio.loadMs!],
    ["load ms (warm, 2nd session)", ours.warmLoadMs, ort.warmLoadMs, ratio.warmLoadMs!],
    ["first run ms (batch 1)", ours.firstRunMs, ort.firstRunMs, ratio.firstRunMs!],
  ];
  for (const l of ours.latency) {
    const p = ort.latency.find((x) => x.batch === l.batch)!;
    rows.push([`batch ${l.batch} p50 ms`, l.p50, p.p50, ratio[`b${l.batch}p50`]!]);
    rows.push([`batch ${l.batch} p90 ms`, l.p90, p.p90, ratio[`b${l.batch}p90`]!]);
  }
  rows.push([`peak RSS (${ours.rssMethod})`, fmtBytes(ours.peakRssBytes), fmtBytes(ort.peakRssBytes), ratio.peakRssBytes!]);
  rows.push(["peak RSS above runtime baseline", fmtBytes(ours.peakRssBytes - ours.baseRssBytes), fmtBytes(ort.peakRssBytes - ort.baseRssBytes), ratio.modelRssBytes!]);
  const lines = [formatTable(["", `opq (${ours.backend ?? "auto"})`, "ort", "opq/ort"], rows)];
  if (r.cpu) lines.push(formatGpuBeside(ours, r.cpu));
  if (ours.layers) {
    const paths = new Map<string, number>();
    for (const l of ours.layers as { backend?: string; path?: string }[]) {
      const key = `${l.backend ?? "?"}:${l.path}`;
      paths.set(key, (paths.get(key) ?? 0) + 1);
    }
    lines.push(`layer paths (backend:path ×layers): ${[...paths].map(([p, n]) => `${p} ×${n}`).join(", ")}`);
  }
  const info = ours.info as { residentWeightBytes?: number; fp32WeightBytes?: number; backends?: Record<string, unknown> } | undefined;
  if (info?.residentWeightBytes !== undefined && info.fp32WeightBytes) {
    lines.push(`resident weights: ${fmtBytes(info.residentWeightBytes)} = ${(info.residentWeightBytes / info.fp32WeightBytes).toFixed(3)}× the FP32 weights (${fmtBytes(info.fp32WeightBytes)})`);
  }
  if (info?.backends) lines.push(`backends: ${JSON.stringify(info.backends)}`);
  return lines.join("\n");
}

/** The webgpu measurement beside the CPU backend's (same run), with the GPU work per run. */
function formatGpuBeside(gpu: RuntimeMeasurement, cpu: RuntimeMeasurement): string {
  const rows: (string | number)[][] = [
    ["load ms (cold)", gpu.loadMs, cpu.loadMs, gpu.loadMs / cpu.loadMs],
    ["first run ms (batch 1)", gpu.firstRunMs, cpu.firstRunMs, gpu.firstRunMs / cpu.firstRunMs],
  ];
  for (const l of gpu.latency) {
    const c = cpu.latency.find((x) => x.batch === l.batch)!;
    rows.push([`batch ${l.batch} p50 ms`, l.p50, c.p50, l.p50 / c.p50]);
  }
  const g = gpu.gpu;
  const lines = [`\nwebgpu beside the CPU backend (wasm), same run:`, formatTable(["", "webgpu", "cpu (wasm)", "webgpu/cpu"], rows)];
  if (g) {
    lines.push(formatTable(["GPU work (batch 1)", "value"], [
      ["adapter", g.adapter],
      ["nodes on GPU / CPU fallback", `${g.gpuNodes} / ${g.cpuNodes}`],
      ["dispatches per run", g.dispatchesPerRun],
      ["submits per run", g.submitsPerRun],
      ["bytes uploaded per run", fmtBytes(g.uploadBytesPerRun)],
      ["bytes read back per run", fmtBytes(g.downloadBytesPerRun)],
      ["pipeline cache hits / builds", `${g.pipelineHits} / ${g.pipelineMisses}`],
      ["GPU memory held / peak", `${fmtBytes(g.gpuBytes)} / ${fmtBytes(g.peakGpuBytes)}`],
    ]));
  }
  return lines.join("\n");
}

/** The `opq bench` subcommand. */
export const command: Command = {
  name: "bench",
  summary: "latency, load time and peak RSS of our runtime vs onnxruntime-web (same run, same threads)",
  usage: "bench [model.(opq|onnx)] [--onnx fp32.onnx] [--backend auto|webgpu|wasm|cpu-reference] [--threads T] [--iterations N] [--warmup W] [--rounds R]",
  options: {
    onnx: { type: "string" },
    backend: { type: "string" },
    threads: { type: "string" },
    iterations: { type: "string" },
    warmup: { type: "string" },
    rounds: { type: "string" },
  },
  help: {
    backend: "our runtime backend: auto (default), webgpu (then the CPU backend is measured beside it), wasm or cpu-reference",
    onnx: "the FP32 ONNX to run onnxruntime-web on (default: the model itself, or its dense export for a .opq)",
    threads: "threads for both runtimes (default 1)",
    iterations: "timed runs per batch size (default 20)",
    warmup: "untimed runs first (default 2)",
    rounds: "processes per runtime, ours and ort alternating; each figure is the median over them (default 1)",
  },
  async run(args) {
    if (args.positionals.length > 1) throw new UsageError(`expected one model, got ${args.positionals.length}`);
    const model = args.positionals[0] ?? DEFAULT_MODEL;
    const options: BenchOptions = {
      onnx: stringOption(args, "onnx"),
      threads: Math.floor(numberOption(args, "threads", 1, 1, 64)),
      iterations: Math.floor(numberOption(args, "iterations", 20, 1, 100000)),
      warmup: Math.floor(numberOption(args, "warmup", 2, 0, 1000)),
      rounds: Math.floor(numberOption(args, "rounds", 1, 1, 25)),
      backend: backendOption(args),
    };
    const peerSource = options.onnx ? options.onnx : isOpqFile(model) ? "the dense ONNX export of the .opq" : "the same ONNX file";
    say(`bench: ours on ${model}; onnxruntime-web (wasm) on ${peerSource}; ${options.threads} thread(s), ` +
      `${options.iterations} iterations after ${options.warmup} warm-up, each runtime in its own process` +
      (options.rounds! > 1 ? `, ${options.rounds} rounds alternating (medians)` : ""));
    const r = await benchPair(model, options);
    // Per layer: the bound backend and path, the weight form and the resident bytes (SessionInfo.layers).
    if (wantsJson(args)) printJson(r);
    else say(formatBench(r));
  },
};

/** The measuring child `measureInChild` starts: `--child opq|ort MODEL THREADS ITERATIONS WARMUP [BACKEND]`; returns the exit code. */
export async function runBenchChild(argv: string[]): Promise<number> {
  const [flag, runtime, model, threads, iterations, warmup, backend] = argv;
  if (flag !== "--child" || (runtime !== "opq" && runtime !== "ort") || !model) {
    process.stderr.write("usage: bench.ts --child opq|ort MODEL THREADS ITERATIONS WARMUP (internal; use `opq bench`)\n");
    return 2;
  }
  const m = await measureRuntime(runtime, model, Number(threads), Number(iterations), Number(warmup), (backend ?? "auto") as BackendChoice);
  process.stdout.write(JSON.stringify(m) + "\n");
  return 0;
}

if (import.meta.main) process.exit(await runBenchChild(typeof process !== "undefined" ? process.argv.slice(2) : []));
