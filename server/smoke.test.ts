/**
 * The server on a real socket under Bun (Bun.serve via listen.ts): health, one inference over
 * TCP equal to the in-process run, and a graceful shutdown that finishes the request in flight.
 * @module
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createApp } from "./app.ts";
import { listen, type RunningServer } from "./listen.ts";
import { ModelRegistry, type ServedModel } from "./registry.ts";
import { sampleInput } from "./samples.ts";
import { FIXTURE_MODEL, type Fixture, floatBytes, Gate, gatedModel, loadFixtureRegistry, makeFixture } from "./test-fixtures.ts";

let fixture: Fixture;
let model: ServedModel;
let server: RunningServer;

beforeAll(async () => {
  fixture = await makeFixture();
  const registry = await loadFixtureRegistry();
  model = registry.get(FIXTURE_MODEL)!;
  server = await listen(createApp({ registry, samples: fixture.samples }), { port: 0, hostname: "127.0.0.1" });
}, 60_000); // compressing the fixture and starting its model worker: slow on a loaded machine

afterAll(async () => {
  await server?.close({ timeoutMs: 5000 });
});


test("Bun.serve: healthz and one inference over TCP", async () => {
  expect(server.runtime).toBe("bun");
  expect(server.port).toBeGreaterThan(0);
  const health = await fetch(`${server.url}/healthz`);
  expect(health.status).toBe(200);
  const sample = fixture.samples.samples[0]!;
  const x = sampleInput(fixture.samples, sample);
  const res = await fetch(`${server.url}/v1/models/${FIXTURE_MODEL}/infer?topk=1`, {
    method: "POST",
    headers: { "content-type": "application/octet-stream", "x-shape": x.shape.join(",") },
    body: floatBytes(x.data),
  });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { outputs: { logits: { data: number[] } }; topk: { index: number }[][] };
  const direct = (await model.runner.run({ input: { dtype: "float32", dims: x.shape, data: x.data } })).logits!;
  expect(body.outputs.logits.data).toEqual(Array.from(direct.data as Float32Array));
  const best = Array.from(direct.data as Float32Array).indexOf(Math.max(...(direct.data as Float32Array)));
  expect(body.topk[0]![0]!.index).toBe(best);
});

test("a chunked upload over TCP without Content-Length gets 413 once it passes the limit", async () => {
  const limited = await listen(createApp({ registry: new ModelRegistry([model]), limits: { maxBodyBytes: 32 * 1024 } }), { port: 0 });
  try {
    const { connect } = await import("node:net");
    const socket = connect(limited.port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    let response = "";
    socket.on("data", (b: Buffer) => (response += b.toString("latin1")));
    socket.on("error", () => {}); // the server may close while we still write
    socket.write(`POST /v1/models/${FIXTURE_MODEL}/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nX-Shape: 1000,1,28,28\r\nTransfer-Encoding: chunked\r\n\r\n`);
    const chunk = Buffer.alloc(8 * 1024);
    // Offer up to 2 MB in 8 KiB chunks, stopping as soon as the server has answered.
    for (let i = 0; i < 256 && !response.includes("\r\n\r\n") && !socket.destroyed; i++) {
      socket.write(chunk.length.toString(16) + "\r\n");
      socket.write(chunk);
      socket.write("\r\n");
      await new Promise((r) => setTimeout(r, 2));
    }
    for (let i = 0; i < 200 && !response.includes("PAYLOAD_TOO_LARGE"); i++) await new Promise((r) => setTimeout(r, 10));
    socket.destroy();
    expect(response).toMatch(/^HTTP\/1\.1 413/);
    expect(response).toContain('"code":"PAYLOAD_TOO_LARGE"');
  } finally {
    await limited.close({ timeoutMs: 2000 });
  }
});

test("graceful shutdown finishes the request in flight and refuses new work", async () => {
  const gate = new Gate();
  const app = createApp({ registry: new ModelRegistry([gatedModel(model, gate, { concurrency: 1, maxQueue: 4 })]) });
  const own = await listen(app, { port: 0 });
  const x = sampleInput(fixture.samples, fixture.samples.samples[1]!);
  const url = `${own.url}/v1/models/${FIXTURE_MODEL}/infer`;
  const send = () => fetch(url, { method: "POST", headers: { "content-type": "application/octet-stream", "x-shape": "1,1,28,28" }, body: floatBytes(x.data) });
  const inFlight = send();
  await gate.reached(1);
  const closing = own.close({ timeoutMs: 10_000 });
  expect(app.state.draining).toBe(true);
  // New work: either the listener is already closed (connection refused) or it is told to go away.
  const late = await send().then((r) => r.status, () => "refused");
  expect([503, "refused"]).toContain(late);
  gate.open();
  const res = await inFlight;
  expect(res.status).toBe(200);
  expect(((await res.json()) as { outputs: { logits: { shape: number[] } } }).outputs.logits.shape).toEqual([1, 10]);
  expect(await closing).toEqual({ drained: true });
  expect(app.state.inFlight).toBe(0);
});
