/**
 * The server on a real socket under Deno (Deno.serve via listen.ts): health, the model listing,
 * one inference over TCP whose logits equal the in-process run of the same runtime, and a
 * graceful shutdown that finishes the request in flight.
 * @module
 */
import { createApp } from "./app.ts";
import { listen } from "./listen.ts";
import { sampleInput } from "./samples.ts";
import { ModelRegistry } from "./registry.ts";
import { FIXTURE_MODEL, floatBytes, Gate, gatedModel, loadFixtureRegistry, makeFixture } from "./test-fixtures.ts";

function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new Error(message);
}

Deno.test("Deno.serve: healthz, models and one inference over TCP", async () => {
  const fixture = await makeFixture();
  const registry = await loadFixtureRegistry();
  const server = await listen(createApp({ registry, samples: fixture.samples }), { port: 0, hostname: "127.0.0.1" });
  try {
    assert(server.runtime === "deno", `listen picked ${server.runtime}, expected deno`);
    const health = await fetch(`${server.url}/healthz`);
    assert(health.status === 200, `healthz answered ${health.status}`);
    await health.body?.cancel();

    const listing = (await (await fetch(`${server.url}/v1/models`)).json()) as { models: { name: string; format: string }[] };
    assert(listing.models.length === 1 && listing.models[0]!.name === FIXTURE_MODEL, `models: ${JSON.stringify(listing)}`);
    assert(listing.models[0]!.format === "opq", `served format ${listing.models[0]!.format}, expected opq`);

    const x = sampleInput(fixture.samples, fixture.samples.samples[0]!);
    const res = await fetch(`${server.url}/v1/models/${FIXTURE_MODEL}/infer`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ inputs: { input: { shape: x.shape, data: Array.from(x.data) } } }),
    });
    assert(res.status === 200, `infer answered ${res.status}: ${await res.clone().text()}`);
    const body = (await res.json()) as { outputs: { logits: { shape: number[]; data: number[] } }; topk: { index: number }[][] };
    const direct = await registry.get(FIXTURE_MODEL)!.runner.run({ input: { dtype: "float32", dims: x.shape, data: x.data } });
    const expected = Array.from(direct.logits!.data as Float32Array);
    assert(JSON.stringify(body.outputs.logits.shape) === "[1,10]", `shape ${body.outputs.logits.shape}`);
    assert(body.outputs.logits.data.every((v, i) => v === expected[i]), "logits over HTTP differ from the in-process run");
    assert(body.topk[0]![0]!.index === expected.indexOf(Math.max(...expected)), "top-1 over HTTP differs from the in-process argmax");
  } finally {
    const { drained } = await server.close({ timeoutMs: 5000 });
    assert(drained, "server did not drain");
    await registry.dispose();
  }
});

Deno.test("Deno.serve: graceful shutdown finishes the request in flight", async () => {
  const fixture = await makeFixture();
  const registry = await loadFixtureRegistry();
  const gate = new Gate();
  const app = createApp({ registry: new ModelRegistry([gatedModel(registry.get(FIXTURE_MODEL)!, gate, { concurrency: 1, maxQueue: 4 })]) });
  const server = await listen(app, { port: 0 });
  const x = sampleInput(fixture.samples, fixture.samples.samples[1]!);
  const inFlight = fetch(`${server.url}/v1/models/${FIXTURE_MODEL}/infer`, {
    method: "POST",
    headers: { "content-type": "application/octet-stream", "x-shape": "1,1,28,28" },
    body: floatBytes(x.data),
  });
  await gate.reached(1);
  const closing = server.close({ timeoutMs: 10_000 });
  assert(app.state.draining, "close() did not start draining");
  gate.open();
  const res = await inFlight;
  assert(res.status === 200, `in-flight request answered ${res.status}`);
  const body = (await res.json()) as { outputs: { logits: { shape: number[] } } };
  assert(JSON.stringify(body.outputs.logits.shape) === "[1,10]", "in-flight request lost its output");
  const { drained } = await closing;
  assert(drained && app.state.inFlight === 0, "server did not drain");
  await registry.dispose();
});
