/**
 * A server process for socket tests (not part of the server): serves the test fixture's
 * ResNet-20 `.opq` on 127.0.0.1 with the runtime running it (`bun server/test-server.ts` or
 * `deno run -A server/test-server.ts`), limits from the env var OPQ_TEST_LIMITS (JSON: app
 * limits, `listen` options, `queue` limits and request `caps`), prints one line `{"port":N,"pid":N}` once
 * listening, and on SIGTERM shuts down gracefully and exits 0.
 * @module
 */
import { createApp } from "./app.ts";
import { listen } from "./listen.ts";
import { loadModelDir } from "./registry.ts";
import { makeFixture } from "./test-fixtures.ts";

const env = (globalThis as { Deno?: { env: { get(k: string): string | undefined } } }).Deno?.env.get("OPQ_TEST_LIMITS") ?? process.env.OPQ_TEST_LIMITS;
const o = JSON.parse(env ?? "{}") as {
  app?: Record<string, number>; listen?: Record<string, number>; queue?: { concurrency: number; maxQueue: number; maxBatch?: number };
  caps?: { maxBatch?: number; maxElements?: number };
};
const fixture = await makeFixture();
const registry = await loadModelDir(fixture.dir, { ...(o.queue ? { limits: o.queue } : {}), ...(o.caps ? { caps: o.caps } : {}) });
const opq = createApp({ registry, limits: o.app });
const server = await listen(opq, { port: 0, hostname: "127.0.0.1", ...o.listen });
console.log(JSON.stringify({ port: server.port, pid: process.pid, runtime: server.runtime }));
process.once("SIGTERM", async () => {
  await server.close({ timeoutMs: 10_000 });
  await registry.dispose();
  process.exit(0);
});
