/**
 * The single-file server binary: `bun run build:server` (bun build --compile of this file and the GEMM worker)
 * embeds the bundled ResNet-20 `.opq` and the page's samples, so the binary serves them with no
 * file beside it. `opq-server [--port N] [--host H] [--models DIR]` (a folder of `.opq` replaces the
 * embedded model). Prints one JSON line `{ "url": ... }` once listening; SIGINT/SIGTERM stop it
 * gracefully. `--threads N` runs the GEMMs on N worker threads: the worker script is compiled in as
 * a second entry point (`bun run build:server`).
 * @module
 */
import { parseArgs } from "node:util";
import modelFile from "../../models/resnet20-fmnist.opq" with { type: "file" };
import samplesFile from "../../models/fmnist-samples.json" with { type: "file" };
import { createApp } from "../app.ts";
import { loadModelBytes } from "../edge.ts";
import { serveUntilSignal } from "../listen.ts";
import { loadModelDir, ModelRegistry } from "../registry.ts";
import { decodeSampleBundle } from "../samples.ts";

declare const Bun: { file(path: string): { arrayBuffer(): Promise<ArrayBuffer>; text(): Promise<string> } };

const USAGE = "usage: opq-server [--port N] [--host H] [--threads N] [--models DIR]   (default: the embedded resnet20-fmnist.opq on 127.0.0.1:8080)";
let values: { port?: string; host?: string; models?: string; threads?: string; help?: boolean };
try {
  ({ values } = parseArgs({ args: process.argv.slice(2), options: { port: { type: "string" }, host: { type: "string" }, models: { type: "string" }, threads: { type: "string" }, help: { type: "boolean", short: "h" } }, strict: true }));
} catch (e) {
  console.error(`opq-server: ${(e as Error).message}\n${USAGE}`);
  process.exit(2);
}
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const port = Number(values.port ?? 8080);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`opq-server: --port must be an integer in [0, 65535]\n${USAGE}`);
  process.exit(2);
}
const threads = Number(values.threads ?? 1);
if (!Number.isInteger(threads) || threads < 1 || threads > 64) {
  console.error(`opq-server: --threads must be an integer in [1, 64]\n${USAGE}`);
  process.exit(2);
}
try {
  const registry = values.models
    ? await loadModelDir(values.models, { threads })
    : new ModelRegistry([await loadModelBytes("resnet20-fmnist", await Bun.file(modelFile).arrayBuffer(), { threads })]);
  const samples = decodeSampleBundle(await Bun.file(samplesFile).text());
  const opq = createApp({ registry, samples });
  await serveUntilSignal(opq, registry, { port, hostname: values.host ?? "127.0.0.1" });
} catch (e) {
  const err = e as Error & { code?: unknown };
  console.error(`opq-server: error [${typeof err.code === "string" ? err.code : "INTERNAL"}]: ${err.message}`);
  process.exit(typeof err.code === "string" && ["ENOENT", "NOT_FOUND", "EADDRINUSE"].includes(err.code) ? 2 : 1);
}
