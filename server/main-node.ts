/**
 * A dependency-light entry for Node (which cannot run the TypeScript CLI directly): bundle it
 * with `bun build server/main-node.ts --target=node --outfile out/opq-server.mjs`, then
 * `node out/opq-server.mjs --models DIR [--port N] [--host H]`. Prints one JSON line
 * `{ "url": ... }` on stdout once listening; SIGINT/SIGTERM shut down gracefully.
 * @module
 */
import { parseArgs } from "node:util";
import { createApp } from "./app.ts";
import { serveUntilSignal } from "./listen.ts";
import { loadModelDir } from "./registry.ts";
import { loadSampleBundle } from "./samples.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { models: { type: "string" }, port: { type: "string" }, host: { type: "string" }, samples: { type: "string" } },
  strict: true,
});
if (!values.models) {
  console.error("usage: node opq-server.mjs --models DIR [--port N] [--host H] [--samples FILE]");
  process.exit(2);
}
try {
  const registry = await loadModelDir(values.models);
  const samples = values.samples ? await loadSampleBundle(values.samples) : null;
  const opq = createApp({ registry, samples });
  await serveUntilSignal(opq, registry, { port: Number(values.port ?? 8080), hostname: values.host ?? "127.0.0.1" });
} catch (e) {
  console.error(`opq server: ${(e as Error).message}`);
  process.exit(1);
}
