/**
 * `opq serve` – the inference server over every `.opq` in a folder (see server/). Without
 * `--models` it serves `out/` under the working directory, the folder `opq compress` writes to;
 * if the bundled example `out/resnet20-fmnist.opq` is not there yet it is made first by running
 * `opq compress` with no arguments (≈1 s), so `bun run serve` works on a fresh clone. A folder with a broken `.opq` refuses to
 * start (exit 1) naming every broken file. SIGINT/SIGTERM shut down gracefully.
 * @module
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { backendOption, type Command, numberOption, parseCommandArgs, printJson, say, stringOption, wantsJson } from "../common.ts";
import { bundledFile } from "../shared.ts";

/** Where `opq compress` with no arguments writes (relative to the working directory), and so what `opq serve` serves by default. */
export const DEFAULT_MODELS_DIR = "out";
/** The bundled example model `opq serve` makes if it is missing. */
export const DEFAULT_OPQ: string = join(DEFAULT_MODELS_DIR, "resnet20-fmnist.opq");
/** The bundled Fashion-MNIST samples of the page's try-it panel. */
export const DEFAULT_SAMPLES: string = bundledFile("models/fmnist-samples.json");

/** Make the default model by running `opq compress` with no arguments (its report goes to stderr). */
async function ensureDefaultModel(): Promise<void> {
  if (existsSync(DEFAULT_OPQ)) return;
  say(`opq serve: ${DEFAULT_OPQ} is missing; making it with \`opq compress\` (no arguments) first`);
  const { command } = await import("./compress.ts");
  await command.run(parseCommandArgs(command, []));
  if (!existsSync(DEFAULT_OPQ)) throw new Error(`opq compress did not write ${DEFAULT_OPQ}`);
}

/** The `serve` subcommand. */
export const command: Command = {
  name: "serve",
  summary: "serve every .opq in a folder over HTTP (JSON, msgpack, raw float32), with a page, /metrics and /healthz",
  usage: [
    "serve [--models DIR] [--port N] [--host H] [--threads N] [--backend auto|webgpu|wasm|cpu-reference] [--concurrency N] [--queue N] [--max-batch N] [--max-body BYTES] [--timeout MS] [--max-inflight N] [--samples FILE] [--cors ORIGINS]",
    "      [--max-request-batch N] [--max-elements N] [--max-connections N] [--idle-timeout MS] [--body-timeout MS]",
    "(request caps default to what each model's memory budget holds, at most 1024 images; 413 past them)",
  ].join("\n"),
  options: {
    models: { type: "string" },
    port: { type: "string" },
    host: { type: "string" },
    threads: { type: "string" },
    backend: { type: "string" },
    concurrency: { type: "string" },
    queue: { type: "string" },
    "max-batch": { type: "string" },
    "max-body": { type: "string" },
    timeout: { type: "string" },
    "max-inflight": { type: "string" },
    samples: { type: "string" },
    "max-request-batch": { type: "string" },
    "max-elements": { type: "string" },
    "max-connections": { type: "string" },
    "idle-timeout": { type: "string" },
    "body-timeout": { type: "string" },
    cors: { type: "string" },
  },
  help: {
    backend: "the runtime backend of every model: auto (default), webgpu, wasm or cpu-reference",
    models: "folder of .opq files to serve (default out/, made with `opq compress` if empty)",
    port: "port (default 8080; 0 picks a free one)",
    host: "address to listen on (default 127.0.0.1)",
    threads: "worker threads per model (default 1)",
    concurrency: "runs at a time per model (default 1)",
    queue: "requests waiting per model before 503 (default 64)",
    "max-batch": "requests merged into one run (default 16)",
    "max-body": "largest request body in bytes (default 16 MiB)",
    timeout: "request timeout in ms (default 30000)",
    "max-inflight": "requests in flight before 503 (default 256)",
    samples: "sample images for the page (default models/fmnist-samples.json)",
    cors: "allow browsers on these origins (comma-separated, or *) to call the API (default: same origin only)",
    "max-request-batch": "images one request may carry (default: what the model's memory budget holds, at most 1024)",
    "max-elements": "input elements one request may carry (default: from the model's memory budget)",
    "max-connections": "open connections before the longest-idle is closed",
    "idle-timeout": "ms an idle keep-alive connection is kept open",
    "body-timeout": "ms a request body may take to arrive",
  },
  async run(args) {
    const json = wantsJson(args);
    const port = numberOption(args, "port", 8080, 0, 65535);
    const hostname = stringOption(args, "host", "127.0.0.1")!;
    const threads = numberOption(args, "threads", 1, 1, 64);
    const limits = { concurrency: numberOption(args, "concurrency", 1, 1, 64), maxQueue: numberOption(args, "queue", 64, 0, 100_000), maxBatch: numberOption(args, "max-batch", 16, 1, 4096) };
    const maxBodyBytes = numberOption(args, "max-body", 16 << 20, 1, 2 ** 31);
    const requestTimeoutMs = numberOption(args, "timeout", 30_000, 1, 3_600_000);
    const maxInFlight = numberOption(args, "max-inflight", 256, 1, 100_000);
    const given = (k: string) => args.values[k] !== undefined;
    const caps = {
      ...(given("max-request-batch") ? { maxBatch: numberOption(args, "max-request-batch", 0, 1, 1 << 24) } : {}),
      ...(given("max-elements") ? { maxElements: numberOption(args, "max-elements", 0, 1, 2 ** 31) } : {}),
    };
    const connections = {
      maxConnections: numberOption(args, "max-connections", 512, 1, 1 << 20),
      idleTimeoutMs: numberOption(args, "idle-timeout", 5000, 100, 3_600_000),
    };
    const bodyTimeoutMs = numberOption(args, "body-timeout", 10_000, 100, 3_600_000);
    const dir = stringOption(args, "models");
    if (dir === undefined) await ensureDefaultModel();

    const { createApp, listen, loadModelDir, loadSampleBundle } = await import("../../server/mod.ts");
    const registry = await loadModelDir(dir ?? DEFAULT_MODELS_DIR, { threads, limits, caps, backend: backendOption(args) });
    const samplesPath = stringOption(args, "samples", DEFAULT_SAMPLES)!;
    const samples = existsSync(samplesPath) ? await loadSampleBundle(samplesPath) : null;
    const corsOrigins = stringOption(args, "cors")?.split(",").map((o) => o.trim()).filter(Boolean);
    const opq = createApp({ registry, samples, limits: { maxBodyBytes, requestTimeoutMs, maxInFlight, bodyTimeoutMs }, ...(corsOrigins ? { cors: corsOrigins.length === 1 ? corsOrigins[0]! : corsOrigins } : {}) });
    // Loading decodes whole files and plans graphs; collect that garbage once before serving, so
    // the resident size an operator sees at start is the steady one (Bun only: Deno has no API).
    (globalThis as { Bun?: { gc(force: boolean): void } }).Bun?.gc(true);
    const server = await listen(opq, { port, hostname, ...connections });

    const models = registry.list().map((m) => m.summary);
    if (json) printJson({ url: server.url, runtime: server.runtime, models: models.map((m) => ({ name: m.name, bytes: m.bytes, fp32Bytes: m.fp32Bytes })) });
    else {
      for (const served of registry.list()) {
        const m = served.summary;
        say(`  ${m.name}: ${m.bytes} bytes (${m.ratio.toFixed(1)}x smaller than FP32), loaded in ${m.loadMs.toFixed(0)} ms; at most ${served.caps.maxBatch} images / ${served.caps.maxElements} elements per request`);
      }
      say(`opq serve: ${models.length} model(s) on ${server.url} (${server.runtime}); Ctrl-C stops`);
    }

    await new Promise<void>((resolve) => {
      let stopping = false;
      const stop = async (signal: string) => {
        if (stopping) return;
        stopping = true;
        if (!json) say(`opq serve: ${signal}: finishing ${opq.state.inFlight} request(s) in flight`);
        const { drained } = await server.close({ timeoutMs: requestTimeoutMs });
        await registry.dispose();
        if (!json) say(drained ? "opq serve: stopped" : "opq serve: stopped with requests unfinished after the timeout");
        resolve();
      };
      process.once("SIGINT", () => void stop("SIGINT"));
      process.once("SIGTERM", () => void stop("SIGTERM"));
    });
  },
};
