/**
 * `bun run bench:health [--runtimes bun,deno] [--batch N] [--interval-ms M]` – is the server
 * responsive while a maximal batch computes? Starts the fixture server (server/test-server.ts,
 * ResNet-20 `.opq`, default request caps) on each runtime, finds the model's batch cap from its
 * 413, then probes `/healthz` back to back (a pause of M ms between probes) while one maximal
 * request runs, once as a binary body and once as JSON, and prints the probes' latencies beside
 * the same probes on the idle server in the same run (issue 14: < 100 ms while a maximal batch
 * computes). The load average is printed because the machine is shared.
 * @module
 */
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { percentile } from "../cli/common.ts";
import { FIXTURE_MODEL, fixtureImages, inferBinary, startServer } from "../server/test-fixtures.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { runtimes: { type: "string" }, batch: { type: "string" }, "interval-ms": { type: "string" } },
  strict: true,
});
const runtimes = (values.runtimes ?? "bun,deno").split(",") as ("bun" | "deno")[];
const interval = Number(values["interval-ms"] ?? 5);

/** Sequential /healthz probes until `until` settles; latencies in ms. */
async function probe(url: string, until: Promise<unknown>, max = Infinity, slow?: (at: number, ms: number) => void): Promise<number[]> {
  let settled = false;
  void until.finally(() => { settled = true; });
  const out: number[] = [];
  while (!settled && out.length < max) {
    const t0 = performance.now();
    const r = await fetch(`${url}/healthz`);
    await r.body?.cancel();
    if (r.status !== 200) throw new Error(`/healthz answered ${r.status}`);
    out.push(performance.now() - t0);
    if (out.at(-1)! > 50) slow?.(t0, out.at(-1)!);
    await new Promise((r) => setTimeout(r, interval));
  }
  return out;
}

const fmt = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? `p50 ${percentile(s, 0.5).toFixed(1)} / p99 ${percentile(s, 0.99).toFixed(1)} / max ${s.at(-1)!.toFixed(1)} ms (${s.length} probes)` : "no probes";
};
const jsonBody = (n: number) => {
  const x = fixtureImages(n);
  const parts: string[] = [];
  for (let i = 0; i < x.length; i++) parts.push(x[i]!.toFixed(3));
  return `{"inputs":{"input":{"shape":[${n},1,28,28],"data":[${parts.join(",")}]}}}`;
};

console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
for (const runtime of runtimes) {
  // A generous deadline: on a shared machine a maximal batch may take longer than the default 30 s.
  const server = await startServer(runtime, { app: { requestTimeoutMs: 300_000 } });
  try {
    let batch = Number(values.batch ?? 0);
    if (!batch) {
      // An X-Shape past any cap is refused before its body is read: the 413 names the cap.
      const r = await fetch(`${server.url}/v1/models/${FIXTURE_MODEL}/infer`, { method: "POST", headers: { "content-type": "application/octet-stream", "x-shape": "1000000,1,28,28" }, body: new Uint8Array(4) });
      const text = await r.text();
      const m = /at most (\d+) per request/.exec(text);
      if (r.status !== 413 || !m) throw new Error(`could not read the batch cap (status ${r.status}: ${text})`);
      batch = Number(m[1]);
    }
    await (await inferBinary(server.url, 1)).body?.cancel(); // warm
    const idle = await probe(server.url, new Promise(() => {}), 50);
    for (const kind of ["binary", "json"] as const) {
      const t0 = performance.now();
      const run = kind === "binary"
        ? inferBinary(server.url, batch)
        : fetch(`${server.url}/v1/models/${FIXTURE_MODEL}/infer`, { method: "POST", headers: { "content-type": "application/json" }, body: jsonBody(batch) });
      const done = run.then(async (r) => { await r.arrayBuffer(); if (r.status !== 200) throw new Error(`batch answered ${r.status}`); return performance.now() - t0; });
      const slow: string[] = [];
      const busy = await probe(server.url, done, Infinity, (at, ms) => slow.push(`${ms.toFixed(0)} ms at +${((at - t0) / 1000).toFixed(2)} s`));
      const ms = await done;
      console.log(`${runtime} ${kind} batch ${batch} (${(ms / 1000).toFixed(1)} s): /healthz busy ${fmt(busy)}; idle ${fmt(idle)}; busy max ÷ 100 ms = ${(Math.max(...busy) / 100).toFixed(2)}${slow.length ? `; probes over 50 ms: ${slow.join(", ")}` : ""}`);
    }
  } finally {
    server.proc.kill("SIGKILL");
  }
}
console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
