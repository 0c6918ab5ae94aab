/**
 * `opq bench-http`'s pieces: nearest-rank percentiles, and a short bounded load run against a
 * real server socket (counts requests and errors; no timing is asserted).
 * @module
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { percentile } from "../cli/common.ts";
import { requestInit, runLoad, serverRss, serverSnapshot, summarise } from "../cli/commands/bench-http.ts";
import { createApp } from "./app.ts";
import { listen, type RunningServer } from "./listen.ts";
import { sampleInput } from "./samples.ts";
import { FIXTURE_MODEL, type Fixture, loadFixtureRegistry, makeFixture } from "./test-fixtures.ts";

let fixture: Fixture;
let server: RunningServer;

beforeAll(async () => {
  fixture = await makeFixture();
  server = await listen(createApp({ registry: await loadFixtureRegistry() }), { port: 0 });
}, 60_000); // compressing the fixture and starting its model worker: slow on a loaded machine

afterAll(async () => {
  await server?.close({ timeoutMs: 5000 });
});

test("nearest-rank percentiles", () => {
  const v = Array.from({ length: 100 }, (_, i) => i + 1);
  expect(percentile(v, 0.5)).toBe(50);
  expect(percentile(v, 0.95)).toBe(95);
  expect(percentile(v, 0.99)).toBe(99);
  expect(percentile([7], 0.99)).toBe(7);
  expect(summarise([3, 1, 2])).toMatchObject({ p50: 2, max: 3, mean: 2 });
});

test("a bounded load run: every request answered, none failed; wrong model counted as errors", async () => {
  const x = sampleInput(fixture.samples, fixture.samples.samples[0]!);
  for (const format of ["binary", "json", "msgpack"] as const) {
    const init = await requestInit(format, "input", x.shape, x.data);
    const load = await runLoad(`${server.url}/v1/models/${FIXTURE_MODEL}/infer`, () => init, { concurrency: 2, seconds: 0.3, batch: 1 });
    expect(load.requests).toBeGreaterThan(0);
    expect(load.errors).toBe(0);
    expect(load.ok).toBe(load.requests);
  }
  const bad = await runLoad(`${server.url}/v1/models/nope/infer`, () => ({ method: "POST", body: "{}" }), { concurrency: 1, seconds: 0.1, batch: 1 });
  expect(bad.ok).toBe(0);
  expect(bad.errorsBy["404 MODEL_NOT_FOUND"]).toBe(bad.requests);
  expect(await serverRss(server.url)).toBeGreaterThan(1 << 20);
  const snap = await serverSnapshot(server.url, FIXTURE_MODEL);
  expect(snap.runs).toBeGreaterThan(0);
  expect(snap.images!).toBeGreaterThanOrEqual(snap.runs!);
});
