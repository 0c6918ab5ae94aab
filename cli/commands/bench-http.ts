/**
 * `opq bench-http` – a load generator for `opq serve`: C clients send infer requests for S
 * seconds (one bundled Fashion-MNIST sample per request unless --batch) and it prints throughput,
 * p50/p95/p99 latency, errors by status and code, the server's mean micro-batch, and its RSS
 * before and after (sampled from /metrics each second; medians of the first and last samples). `--in-process FILE` first measures the same model run in this process for the same
 * time, so the HTTP/in-process throughput ratio comes from one run. `--accuracy` instead sends
 * the 10k Fashion-MNIST test images (from ../shared) and reports top-1 over HTTP.
 * @module
 */
import { readFileSync } from "node:fs";
import { type Command, EnvironmentError, fmtBytes, formatTable, numberOption, percentile, printJson, progress, say, stringOption, UsageError, wantsJson } from "../common.ts";
import { fashionMnistBatch, loadFashionMnist } from "../fashion-mnist.ts";
import { DEFAULT_SAMPLES } from "./serve.ts";

/** Wire formats the generator can send. */
const FORMATS = ["binary", "json", "msgpack"] as const;
type WireFormat = (typeof FORMATS)[number];

/** Hard cap on requests of one run, whatever the duration (bounded in count and in time). */
const MAX_REQUESTS = 1_000_000;

/** Latency summary in milliseconds. */
export interface LatencySummary {
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
}

/** The result of a load run. */
export interface LoadResult {
  requests: number;
  ok: number;
  errors: number;
  /** Error counts by "status code" (e.g. "503 OVERLOADED", "fetch failed"). */
  errorsBy: Record<string, number>;
  seconds: number;
  /** Successful requests per second. */
  throughput: number;
  /** Images per second (throughput · batch). */
  imagesPerSecond: number;
  latencyMs: LatencySummary;
}

/** Summarise latencies (ms). */
export function summarise(latencies: number[]): LatencySummary {
  const s = [...latencies].sort((a, b) => a - b);
  return { p50: percentile(s, 0.5), p95: percentile(s, 0.95), p99: percentile(s, 0.99), max: s[s.length - 1] ?? NaN, mean: s.reduce((a, b) => a + b, 0) / (s.length || 1) };
}

/** Build one request's init for a batch in a wire format. */
export async function requestInit(format: WireFormat, input: string, dims: number[], data: Float32Array): Promise<RequestInit> {
  if (format === "binary") {
    return { method: "POST", headers: { "content-type": "application/octet-stream", "x-shape": dims.join(","), "x-input-name": input }, body: new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength) };
  }
  if (format === "msgpack") {
    const { encode } = await import("@msgpack/msgpack");
    return { method: "POST", headers: { "content-type": "application/msgpack" }, body: encode({ inputs: { [input]: { shape: dims, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) } } }) as Uint8Array<ArrayBuffer> };
  }
  return { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ inputs: { [input]: { shape: dims, data: Array.from(data) } } }) };
}

/** What bench-http reads from the server's /metrics: RSS, and runs and images of one model. */
export interface ServerSnapshot {
  rss: number | null;
  runs: number | null;
  images: number | null;
}

/** Scrape the server's /metrics (nulls for what it does not report). */
export async function serverSnapshot(url: string, model = ""): Promise<ServerSnapshot> {
  const read = (text: string, name: string) => {
    const m = new RegExp(`^${name} (\\d+(?:\\.\\d+)?(?:e\\+?\\d+)?)$`, "m").exec(text);
    return m ? Number(m[1]) : null;
  };
  try {
    const text = await (await fetch(`${url}/metrics`)).text();
    const label = `\\{model="${model.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}"\\}`;
    return { rss: read(text, "process_resident_memory_bytes"), runs: read(text, `opq_inference_runs_total${label}`), images: read(text, `opq_inference_images_total${label}`) };
  } catch {
    return { rss: null, runs: null, images: null };
  }
}

/** The server's RSS from its /metrics, if it reports one. */
export async function serverRss(url: string): Promise<number | null> {
  return (await serverSnapshot(url)).rss;
}

/** Describe an error response as "status CODE". */
async function errorKey(res: Response): Promise<string> {
  try {
    const body = (await res.json()) as { error?: { code?: string } };
    return `${res.status} ${body.error?.code ?? ""}`.trim();
  } catch {
    return String(res.status);
  }
}

/** Run `concurrency` clients against `endpoint` for `seconds`, each sending `make()`'s request. */
export async function runLoad(
  endpoint: string,
  make: () => RequestInit,
  options: { concurrency: number; seconds: number; batch: number },
): Promise<LoadResult> {
  const latencies: number[] = [];
  const errorsBy: Record<string, number> = {};
  let requests = 0, ok = 0, errors = 0;
  const start = performance.now();
  const end = start + options.seconds * 1000;
  const client = async () => {
    while (performance.now() < end && requests < MAX_REQUESTS) {
      requests++;
      const t0 = performance.now();
      try {
        const res = await fetch(endpoint, make());
        if (res.ok) {
          await res.arrayBuffer();
          latencies.push(performance.now() - t0);
          ok++;
        } else {
          errors++;
          const key = await errorKey(res);
          errorsBy[key] = (errorsBy[key] ?? 0) + 1;
        }
      } catch (e) {
        errors++;
        const key = (e as Error).message || "fetch failed";
        errorsBy[key] = (errorsBy[key] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, client));
  const seconds = (performance.now() - start) / 1000;
  return { requests, ok, errors, errorsBy, seconds, throughput: ok / seconds, imagesPerSecond: (ok * options.batch) / seconds, latencyMs: summarise(latencies) };
}

/** Run a model in this process, sequentially, for `seconds`: images per second. */
async function inProcessThroughput(path: string, dims: number[], data: Float32Array, seconds: number, threads: number): Promise<{ imagesPerSecond: number; runs: number }> {
  const { createSession } = await import("../../runtime/mod.ts");
  const session = await createSession(new Uint8Array(readFileSync(path)), { threads });
  try {
    const feeds = { [session.inputs[0]!.name]: { dtype: "float32" as const, dims, data } };
    await session.run(feeds); // warm-up
    let runs = 0;
    const start = performance.now();
    const end = start + seconds * 1000;
    while (performance.now() < end && runs < MAX_REQUESTS) {
      await session.run(feeds);
      runs++;
    }
    return { imagesPerSecond: (runs * dims[0]!) / ((performance.now() - start) / 1000), runs };
  } finally {
    session.dispose();
  }
}

/** Top-1 over HTTP on the Fashion-MNIST test set. */
async function httpAccuracy(endpoint: string, format: WireFormat, input: string, options: { concurrency: number; batch: number; limit: number; quiet: boolean }) {
  const set = loadFashionMnist({ split: "t10k", limit: options.limit });
  const starts: number[] = [];
  for (let s = 0; s < set.count; s += options.batch) starts.push(s);
  let next = 0, correct = 0, seen = 0;
  const bar = progress("accuracy over HTTP", set.count, options.quiet);
  const begin = performance.now();
  const client = async () => {
    while (next < starts.length) {
      const s = starts[next++]!;
      const x = fashionMnistBatch(set, s, options.batch);
      const res = await fetch(`${endpoint}?topk=1`, await requestInit(format, input, x.dims, x.data));
      if (!res.ok) throw new Error(`images ${s}..${s + x.dims[0]! - 1}: ${await errorKey(res)}`);
      const body = (await res.json()) as { topk?: { index: number }[][] };
      if (!body.topk || body.topk.length !== x.dims[0]) throw new Error(`images ${s}..: the response has no top-k for each image`);
      body.topk.forEach((row, i) => { if (row[0]!.index === set.labels[s + i]) correct++; });
      seen += x.dims[0]!;
      bar.tick(x.dims[0]!);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, client));
  bar.done();
  return { images: seen, top1: correct / seen, seconds: (performance.now() - begin) / 1000 };
}

/** The `bench-http` subcommand. */
export const command: Command = {
  name: "bench-http",
  summary: "load-test an `opq serve` server: throughput, p50/p95/p99 latency, errors, RSS; or top-1 over HTTP",
  usage: [
    "bench-http [--url U] [--model NAME] [--concurrency C] [--duration S] [--batch N] [--format binary|json|msgpack] [--in-process FILE.opq] [--warmup S]",
    "bench-http --accuracy [--url U] [--model NAME] [--concurrency C] [--batch N] [--limit N]",
  ].join("\n"),
  options: {
    url: { type: "string" },
    model: { type: "string" },
    concurrency: { type: "string" },
    duration: { type: "string" },
    batch: { type: "string" },
    format: { type: "string" },
    accuracy: { type: "boolean" },
    limit: { type: "string" },
    "in-process": { type: "string" },
    threads: { type: "string" },
    warmup: { type: "string" },
  },
  help: {
    url: "the server (default http://127.0.0.1:8080)",
    model: "model name (default the server's first)",
    concurrency: "clients at once (default 16)",
    duration: "seconds of load (default 20)",
    batch: "images per request (default 1; 100 with --accuracy)",
    format: "binary (default), json or msgpack",
    accuracy: "send the Fashion-MNIST test set and report top-1 instead of load",
    limit: "with --accuracy: the first N test images (default 10,000)",
    "in-process": "also measure this .opq in-process for the HTTP overhead",
    threads: "threads of the in-process run (default 1)",
    warmup: "seconds of unmeasured load first (default 10% of --duration, 1–5 s)",
  },
  async run(args) {
    const json = wantsJson(args);
    const url = stringOption(args, "url", "http://127.0.0.1:8080")!.replace(/\/+$/, "");
    if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) throw new UsageError(`--url must be an http(s) URL such as http://127.0.0.1:8080, got ${JSON.stringify(url)}`);
    const concurrency = numberOption(args, "concurrency", 16, 1, 1024);
    const seconds = numberOption(args, "duration", 20, 0.1, 3600);
    const accuracy = args.values.accuracy === true;
    const batch = numberOption(args, "batch", accuracy ? 100 : 1, 1, 10_000);
    const format = stringOption(args, "format", "binary") as WireFormat;
    if (!FORMATS.includes(format)) throw new UsageError(`--format must be one of ${FORMATS.join(", ")}`);

    let models: { name: string; inputs: { name: string }[] }[];
    try {
      models = ((await (await fetch(`${url}/v1/models`)).json()) as { models: typeof models }).models;
    } catch (e) {
      throw new EnvironmentError("UNREACHABLE", `cannot reach ${url}/v1/models (is \`opq serve\` running?): ${(e as Error).message}`);
    }
    const name = stringOption(args, "model") ?? models[0]?.name;
    const model = models.find((m) => m.name === name);
    if (!model) throw new UsageError(`no model ${JSON.stringify(name)} on ${url}; it serves ${models.map((m) => m.name).join(", ") || "none"}`);
    const input = model.inputs[0]!.name;
    const endpoint = `${url}/v1/models/${encodeURIComponent(model.name)}/infer`;

    if (accuracy) {
      const limit = numberOption(args, "limit", 10_000, 1, 10_000);
      const result = await httpAccuracy(endpoint, format, input, { concurrency, batch, limit, quiet: json });
      if (json) printJson({ url, model: model.name, ...result });
      else say(`top-1 over HTTP: ${(100 * result.top1).toFixed(2)}% of ${result.images} images (${model.name}, batch ${batch}, ${concurrency} clients, ${result.seconds.toFixed(1)} s)`);
      return;
    }

    // Load: the bundled samples, one batch of `batch` images cycled, so the server does real work.
    const { loadSampleBundle, sampleInput } = await import("../../server/mod.ts");
    const bundle = await loadSampleBundle(DEFAULT_SAMPLES);
    const data = new Float32Array(batch * 784);
    for (let i = 0; i < batch; i++) data.set(sampleInput(bundle, bundle.samples[i % bundle.samples.length]!).data, i * 784);
    const dims = [batch, 1, 28, 28];
    const init = await requestInit(format, input, dims, data);

    const inProcessPath = stringOption(args, "in-process");
    const inProcess = inProcessPath
      ? await inProcessThroughput(inProcessPath, dims, data, seconds, numberOption(args, "threads", 1, 1, 64))
      : null;

    // Warm-up at full concurrency (not counted), so "RSS before" is the server's steady state
    // under load (JIT, buffers, connection pools), and growth after it would be a leak.
    const warmup = numberOption(args, "warmup", Math.min(5, Math.max(1, seconds * 0.1)), 0, 600);
    if (warmup > 0) await runLoad(endpoint, () => init, { concurrency, seconds: warmup, batch });
    // RSS is sampled once a second during the run: a JS heap breathes with its GC by ±10-20%,
    // so growth is judged on the median of the first and of the last few samples, not two points.
    const before = await serverSnapshot(url, model.name);
    const rssSamples: number[] = before.rss !== null ? [before.rss] : [];
    const sampler = setInterval(() => void serverSnapshot(url).then((s) => { if (s.rss !== null) rssSamples.push(s.rss); }), 1000);
    const load = await runLoad(endpoint, () => init, { concurrency, seconds, batch }).finally(() => clearInterval(sampler));
    const after = await serverSnapshot(url, model.name);
    if (after.rss !== null) rssSamples.push(after.rss);
    const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
    const edge = Math.max(1, Math.min(5, Math.floor(rssSamples.length / 4)));
    const rssBefore = rssSamples.length ? median(rssSamples.slice(0, edge)) : null;
    const rssAfter = rssSamples.length ? median(rssSamples.slice(-edge)) : null;
    const runs = after.runs !== null && before.runs !== null ? after.runs - before.runs : null;
    const meanBatch = runs && after.images !== null && before.images !== null ? (after.images - before.images) / runs : null;

    const result = {
      url, model: model.name, concurrency, batch, format, ...load,
      inProcessImagesPerSecond: inProcess?.imagesPerSecond ?? null,
      ratioToInProcess: inProcess ? load.imagesPerSecond / inProcess.imagesPerSecond : null,
      serverRssBefore: rssBefore,
      serverRssAfter: rssAfter,
      rssChange: rssBefore && rssAfter ? rssAfter / rssBefore - 1 : null,
      serverRssMin: rssSamples.length ? Math.min(...rssSamples) : null,
      serverRssMax: rssSamples.length ? Math.max(...rssSamples) : null,
      serverRssSamples: rssSamples.length,
      serverRuns: runs,
      serverMeanBatch: meanBatch,
    };
    if (json) {
      printJson(result);
      return;
    }
    const ms = (v: number) => `${v.toFixed(1)} ms`;
    say(`${model.name} @ ${url}: ${concurrency} clients, ${seconds} s, batch ${batch}, ${format}`);
    say(formatTable(["metric", "value"], [
      ["requests", load.requests],
      ["ok", load.ok],
      ["errors", load.errors],
      ["throughput", `${load.throughput.toFixed(1)} req/s (${load.imagesPerSecond.toFixed(1)} images/s)`],
      ...(inProcess ? [["in-process", `${inProcess.imagesPerSecond.toFixed(1)} images/s (HTTP/in-process = ${result.ratioToInProcess!.toFixed(2)})`]] : []),
      ["latency p50 / p95 / p99", `${ms(load.latencyMs.p50)} / ${ms(load.latencyMs.p95)} / ${ms(load.latencyMs.p99)}`],
      ["latency max", ms(load.latencyMs.max)],
      ["server runs (mean batch)", runs !== null && meanBatch !== null ? `${runs} (${meanBatch.toFixed(2)} images/run)` : "n/a"],
      ["server RSS before → after", rssBefore && rssAfter ? `${fmtBytes(rssBefore)} → ${fmtBytes(rssAfter)} (${(100 * result.rssChange!).toFixed(1)}%; medians of ${edge} samples at each end)` : "n/a"],
      ["server RSS min / max", rssSamples.length ? `${fmtBytes(result.serverRssMin!)} / ${fmtBytes(result.serverRssMax!)} (${rssSamples.length} samples)` : "n/a"],
    ] as (string | number)[][]));
    for (const [k, n] of Object.entries(load.errorsBy)) say(`  error ${k}: ${n}`);
  },
};
