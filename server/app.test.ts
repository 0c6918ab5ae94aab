/**
 * Every route and every error of the server, through `app.request()` (no socket), on a real
 * `.opq` compressed from the bundled ResNet-20 and run by the real runtime.
 * @module
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decode as decodeMsgpack } from "@msgpack/msgpack";
import { RUNTIME_ERROR_CODES, type Tensor } from "../runtime/mod.ts";
import { createApp, type OpqApp } from "./app.ts";
import { ERROR_STATUS, SERVER_ERROR_CODES } from "./errors.ts";
import { type LayerSummary, loadModelDir, ModelRegistry, type ServedModel } from "./registry.ts";
import { sampleInput } from "./samples.ts";
import { FIXTURE_MODEL, type Fixture, floatBytes, Gate, gatedModel, loadFixtureRegistry, makeFixture, msgpackBody } from "./test-fixtures.ts";

let fixture: Fixture;
let registry: ModelRegistry;
let model: ServedModel;
let opq: OpqApp;

const INFER = `/v1/models/${FIXTURE_MODEL}/infer`;

beforeAll(async () => {
  fixture = await makeFixture();
  registry = await loadFixtureRegistry();
  model = registry.get(FIXTURE_MODEL)!;
  opq = createApp({ registry, samples: fixture.samples, limits: { maxBodyBytes: 64 * 1024 } });
}, 60_000); // compressing the fixture and starting its model worker: slow on a loaded machine

/** The first `n` bundled samples as one batch. */
function batch(n: number): { shape: number[]; data: Float32Array } {
  const items = fixture.samples.samples.slice(0, n).map((s) => sampleInput(fixture.samples, s).data);
  const data = new Float32Array(items.reduce((a, x) => a + x.length, 0));
  items.forEach((x, i) => data.set(x, i * x.length));
  return { shape: [n, 1, 28, 28], data };
}

/** What the runtime itself answers in-process for the same batch. */
async function direct(input: { shape: number[]; data: Float32Array }): Promise<Tensor> {
  const out = await model.runner.run({ input: { dtype: "float32", dims: input.shape, data: input.data } });
  return out.logits!;
}

const argmax = (row: ArrayLike<number>) => Array.from(row).reduce((best, v, i, a) => (v > a[best]! ? i : best), 0);

function postJson(body: unknown, query = "", headers: Record<string, string> = {}) {
  return opq.app.request(INFER + query, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
}

async function expectError(res: Response, status: number, code: string, mention?: string | RegExp) {
  expect(res.status).toBe(status);
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(body.error.code).toBe(code);
  expect(body.error.message.length).toBeGreaterThan(0);
  if (mention) expect(body.error.message).toMatch(mention);
  return body;
}

describe("fixture", () => {
  test("the served model is a real .opq file loaded by the runtime", () => {
    expect(fixture.path.endsWith(".opq")).toBe(true);
    expect(model.summary.format).toBe("opq");
    expect(model.summary.bytes).toBe(fixture.bytes.byteLength);
  });
});

describe("health, metrics, page, samples", () => {
  test("GET /healthz", async () => {
    const res = await opq.app.request("/healthz");
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: "ok", models: 1 });
  });

  test("GET / is a self-contained page with the try-it panel", async () => {
    const res = await opq.app.request("/");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/html");
    const html = await res.text();
    expect(html).toContain('id="prediction"');
    expect(html).toContain("/v1/samples");
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href="(?!data:)/); // inline favicon only
  });

  test("GET /v1/samples serves the bundled images", async () => {
    const res = await opq.app.request("/v1/samples");
    expect(res.status).toBe(200);
    const body = (await res.json()) as { classes: string[]; samples: { label: number; pixels: number[] }[] };
    expect(body.classes).toHaveLength(10);
    expect(body.samples.length).toBeGreaterThanOrEqual(10);
    for (const s of body.samples) expect(s.pixels).toHaveLength(784);
  });

  test("GET /v1/samples without a bundle is a 404", async () => {
    const bare = createApp({ registry });
    await expectError(await bare.app.request("/v1/samples"), 404, "NOT_FOUND");
  });
});

describe("models", () => {
  test("GET /v1/models lists sizes, ratio, sparsity, bits and method", async () => {
    const res = await opq.app.request("/v1/models");
    expect(res.status).toBe(200);
    const { models } = (await res.json()) as { models: Record<string, unknown>[] };
    expect(models).toHaveLength(1);
    const m = models[0]!;
    expect(m.name).toBe(FIXTURE_MODEL);
    expect(m.inputs).toEqual([{ name: "input", dtype: "float32", shape: [expect.anything(), 1, 28, 28] }]);
    expect((m.outputs as { name: string }[])[0]!.name).toBe("logits");
    expect(m.bytes).toBe(model.summary.bytes);
    expect(m.fp32Bytes).toBe(fixture.opq.metadata.fp32Bytes as number);
    expect(m.ratio as number).toBeGreaterThan(4);
    expect(m.sparsity).toBe(fixture.opq.metadata.sparsity as number);
    expect(m.bits).toBe(3);
    expect(m.method).toBe("opq");
  });

  test("GET /v1/models/:name adds the per-layer summary, derived from the decoded tensors", async () => {
    const res = await opq.app.request(`/v1/models/${FIXTURE_MODEL}`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { name: string; layers: LayerSummary[] };
    expect(body.name).toBe(FIXTURE_MODEL);
    // The file keeps no per-layer list in its metadata; every row comes from the compressed tensors.
    expect(fixture.opq.metadata.layers).toBeUndefined();
    const tensors = fixture.opq.compressed;
    expect(body.layers.map((l) => l.name)).toEqual(tensors.map((t) => t.name));
    expect(body.layers.map((l) => l.opType)).toEqual([...Array(tensors.length - 1).fill("Conv"), "Gemm"]);
    let nnz = 0, params = 0;
    body.layers.forEach((l, i) => {
      const t = tensors[i]!;
      const size = t.dims.reduce((a, d) => a * d, 1);
      expect(l).toEqual({
        name: t.name, opType: l.opType, params: size, nnz: t.indices.length, sparsity: 1 - t.indices.length / size,
        bits: Math.ceil(Math.log2(new Set(t.codes).size)), step: (t.codebook as { step: number }).step, tableSize: null,
      });
      expect(l.bits).toBeGreaterThanOrEqual(1);
      nnz += l.nnz!;
      params += l.params!;
    });
    // The rows add up to the model's stored sparsity (metadata keeps the scalar).
    expect(1 - nnz / params).toBeCloseTo(fixture.opq.metadata.sparsity as number, 12);
  });

  test("unknown model is a 404 naming it", async () => {
    await expectError(await opq.app.request("/v1/models/nope"), 404, "MODEL_NOT_FOUND", /nope/);
    await expectError(await opq.app.request("/v1/models/nope/infer", { method: "POST", body: "{}" }), 404, "MODEL_NOT_FOUND");
  });
});

describe("infer", () => {
  test("JSON, one image: outputs, top-k and timing equal the in-process run", async () => {
    const x = batch(1);
    const res = await postJson({ inputs: { input: { shape: x.shape, data: Array.from(x.data) } } }, "?topk=3");
    expect(res.status).toBe(200);
    expect(res.headers.get("server-timing")).toContain("infer;dur=");
    const body = (await res.json()) as { outputs: { logits: { shape: number[]; data: number[] } }; topk: { index: number; probability: number }[][]; timing: Record<string, number> };
    const expected = await direct(x);
    expect(body.outputs.logits.shape).toEqual([1, 10]);
    expect(body.outputs.logits.data).toEqual(Array.from(expected.data as Float32Array));
    expect(body.topk).toHaveLength(1);
    expect(body.topk[0]).toHaveLength(3);
    expect(body.topk[0]![0]!.index).toBe(argmax(expected.data as Float32Array));
    expect(body.topk[0]![0]!.probability).toBeGreaterThan(body.topk[0]![1]!.probability);
    expect(body.timing.inferMs).toBeGreaterThan(0);
    expect(body.timing.totalMs).toBeGreaterThanOrEqual(body.timing.inferMs);
  });

  test("JSON batch of 4 with nested data; topk defaults to 5", async () => {
    const x = batch(4);
    const nested = Array.from({ length: 4 }, (_, i) => [Array.from({ length: 28 }, (_, r) => Array.from(x.data.subarray(i * 784 + r * 28, i * 784 + r * 28 + 28)))]);
    const res = await postJson({ inputs: { input: { shape: x.shape, data: nested } } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { outputs: { logits: { shape: number[]; data: number[] } }; topk: { index: number }[][] };
    const expected = await direct(x);
    expect(body.outputs.logits.shape).toEqual([4, 10]);
    expect(body.outputs.logits.data).toEqual(Array.from(expected.data as Float32Array));
    expect(body.topk).toHaveLength(4);
    for (const row of body.topk) expect(row).toHaveLength(5);
  });

  test("raw float32 with X-Shape, batch of 3; ?topk=0 drops top-k", async () => {
    const x = batch(3);
    const res = await opq.app.request(INFER + "?topk=0", {
      method: "POST",
      headers: { "content-type": "application/octet-stream", "x-shape": "3,1,28,28", "x-input-name": "input" },
      body: floatBytes(x.data),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { outputs: { logits: { data: number[] } }; topk?: unknown };
    expect(body.outputs.logits.data).toEqual(Array.from((await direct(x)).data as Float32Array));
    expect(body.topk).toBeUndefined();
  });

  test("msgpack in (float32 bin) and out (Accept: application/msgpack)", async () => {
    const x = batch(2);
    const res = await opq.app.request(INFER, {
      method: "POST",
      headers: { "content-type": "application/msgpack", accept: "application/msgpack" },
      body: msgpackBody({ inputs: { input: { shape: x.shape, data: floatBytes(x.data) } } }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/msgpack");
    const body = decodeMsgpack(new Uint8Array(await res.arrayBuffer())) as { outputs: { logits: { shape: number[]; data: Uint8Array } }; topk: unknown[] };
    const logits = body.outputs.logits.data;
    const got = new Float32Array(logits.buffer.slice(logits.byteOffset, logits.byteOffset + logits.byteLength));
    expect(body.outputs.logits.shape).toEqual([2, 10]);
    expect(Array.from(got)).toEqual(Array.from((await direct(x)).data as Float32Array));
    expect(body.topk).toHaveLength(2);
  });

  test("msgpack with a number array answers JSON by default", async () => {
    const x = batch(1);
    const res = await opq.app.request(INFER, {
      method: "POST",
      headers: { "content-type": "application/msgpack" },
      body: msgpackBody({ inputs: { input: { shape: x.shape, data: Array.from(x.data) } } }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("application/json");
  });
});

describe("strict input: 400s name the problem", () => {
  const one = () => batch(1);

  test("wrong shape", async () => {
    const x = one();
    await expectError(await postJson({ inputs: { input: { shape: [1, 1, 28, 27], data: Array.from(x.data.subarray(0, 756)) } } }), 400, "INPUT_SHAPE", /input.*\[1, 1, 28, 27\]/);
  });

  test("data length does not match shape", async () => {
    await expectError(await postJson({ inputs: { input: { shape: [1, 1, 28, 28], data: [1, 2, 3] } } }), 400, "INPUT_SHAPE", /3 values.*784/);
  });

  test("wrong rank", async () => {
    await expectError(await postJson({ inputs: { input: { shape: [784], data: Array.from(one().data) } } }), 400, "INPUT_SHAPE");
  });

  test("empty batch", async () => {
    await expectError(await postJson({ inputs: { input: { shape: [0, 1, 28, 28], data: [] } } }), 400, "INPUT_SHAPE", /no elements/);
  });

  test("wrong dtype", async () => {
    await expectError(await postJson({ inputs: { input: { shape: [1, 1, 28, 28], dtype: "int32", data: Array.from(one().data) } } }), 400, "INPUT_DTYPE", /int32.*float32/);
  });

  test("Infinity in JSON (1e999)", async () => {
    const text = JSON.stringify({ inputs: { input: { shape: [1, 1, 28, 28], data: Array.from(one().data) } } }).replace(/"data":\[(-?[\d.e-]+),/, '"data":[1e999,');
    const res = await opq.app.request(INFER, { method: "POST", headers: { "content-type": "application/json" }, body: text });
    await expectError(res, 400, "INPUT_NOT_FINITE", /data\[0\].*Infinity/);
  });

  test("NaN in raw float32", async () => {
    const x = one();
    x.data[100] = NaN;
    const res = await opq.app.request(INFER, { method: "POST", headers: { "content-type": "application/octet-stream", "x-shape": "1,1,28,28" }, body: floatBytes(x.data) });
    await expectError(res, 400, "INPUT_NOT_FINITE", /\[100\] is NaN/);
  });

  test("NaN in a msgpack number array", async () => {
    const data = Array.from(one().data);
    data[5] = NaN;
    const res = await opq.app.request(INFER, { method: "POST", headers: { "content-type": "application/msgpack" }, body: msgpackBody({ inputs: { input: { shape: [1, 1, 28, 28], data } } }) });
    await expectError(res, 400, "INPUT_NOT_FINITE", /data\[5\] is NaN/);
  });

  test("missing input", async () => {
    await expectError(await postJson({ inputs: {} }), 400, "INPUT_MISSING", /"input"/);
  });

  test("unknown input name", async () => {
    const x = one();
    await expectError(await postJson({ inputs: { input: { shape: x.shape, data: Array.from(x.data) }, extra: { shape: [1], data: [0] } } }), 400, "INPUT_INVALID", /"extra"/);
  });

  test("not a number in data", async () => {
    await expectError(await postJson({ inputs: { input: { shape: [1, 1, 1, 2], data: [1, "2"] } } }), 400, "BAD_REQUEST", /data\[1\] is string/);
  });

  test("body not JSON", async () => {
    const res = await opq.app.request(INFER, { method: "POST", headers: { "content-type": "application/json" }, body: "{not json" });
    await expectError(res, 400, "BAD_REQUEST", /JSON/);
  });

  test("body against the schema (zod)", async () => {
    await expectError(await postJson({ input: {} }), 400, "BAD_REQUEST", /inputs/);
    await expectError(await postJson({ inputs: { input: { shape: [1, -1], data: [] } } }), 400, "BAD_REQUEST", /shape/);
  });

  test("raw float32 without X-Shape, or with a bad one", async () => {
    const body = floatBytes(one().data);
    await expectError(await opq.app.request(INFER, { method: "POST", headers: { "content-type": "application/octet-stream" }, body }), 400, "BAD_PARAMETER", /X-Shape/);
    await expectError(await opq.app.request(INFER, { method: "POST", headers: { "content-type": "application/octet-stream", "x-shape": "1,a" }, body }), 400, "BAD_PARAMETER", /X-Shape/);
    await expectError(await opq.app.request(INFER, { method: "POST", headers: { "content-type": "application/octet-stream", "x-shape": "2,1,28,28" }, body }), 400, "INPUT_SHAPE", /3136 bytes/);
  });

  test("bad ?topk", async () => {
    await expectError(await postJson({ inputs: {} }, "?topk=two"), 400, "BAD_PARAMETER", /topk/);
  });

  test("unsupported Content-Type is 415, unsupported Accept is 406", async () => {
    await expectError(await opq.app.request(INFER, { method: "POST", headers: { "content-type": "text/plain" }, body: "x" }), 415, "UNSUPPORTED_MEDIA_TYPE");
    await expectError(await postJson({ inputs: {} }, "", { accept: "text/html" }), 406, "NOT_ACCEPTABLE");
  });

  test("GET on the infer route is 405, an unknown route 404", async () => {
    const res = await opq.app.request(INFER);
    expect(res.headers.get("allow")).toBe("POST");
    await expectError(res, 405, "METHOD_NOT_ALLOWED");
    await expectError(await opq.app.request("/v2/nothing"), 404, "NOT_FOUND");
  });
});

describe("limits", () => {
  test("413 when Content-Length is over the limit", async () => {
    const res = await opq.app.request(INFER, {
      method: "POST",
      headers: { "content-type": "application/octet-stream", "x-shape": "100,1,28,28", "content-length": String(100 * 3136) },
      body: new Uint8Array(100 * 3136),
    });
    await expectError(res, 413, "PAYLOAD_TOO_LARGE", /65536/);
  });

  test("413 for a chunked body without Content-Length, aborted at the limit", async () => {
    const chunk = new Uint8Array(16 * 1024);
    const totalChunks = 1000;
    let pulled = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulled++ >= totalChunks) controller.close();
        else controller.enqueue(chunk);
      },
    });
    const req = (shape: string) => new Request(`http://localhost${INFER}`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream", "x-shape": shape },
      body,
      duplex: "half",
    } as RequestInit);
    // A batch past the model's cap is refused from its X-Shape, before a byte of the body is read.
    await expectError(await opq.app.request(req("5000,1,28,28")), 413, "PAYLOAD_TOO_LARGE", /batch of 5000; this model accepts at most \d+/);
    expect(pulled).toBeLessThan(3);
    // A body longer than its X-Shape: 4 × 16 × 784 B = 49 KiB allowed / 16 KiB chunks, so the
    // reader stops after a handful, not the 16 MB offered.
    const r = req("16,1,28,28");
    expect(r.headers.get("content-length")).toBeNull();
    await expectError(await opq.app.request(r), 413, "PAYLOAD_TOO_LARGE", /counted while reading/);
    expect(pulled).toBeLessThan(20);
  });

  test("503 with Retry-After when the queue is full; queued work still completes", async () => {
    const gate = new Gate();
    const small = new ModelRegistry([gatedModel(model, gate, { concurrency: 1, maxQueue: 1 })]);
    const app = createApp({ registry: small }).app;
    const x = batch(1);
    const send = () => app.request(INFER, { method: "POST", headers: { "content-type": "application/octet-stream", "x-shape": "1,1,28,28" }, body: floatBytes(x.data) });
    const first = send();
    await gate.reached(1);
    const second = send(); // waits in the queue
    await new Promise((r) => setTimeout(r, 10));
    const third = await send();
    expect(third.headers.get("retry-after")).toMatch(/^\d+$/);
    await expectError(third, 503, "OVERLOADED", /queue is full/);
    gate.open();
    expect((await first).status).toBe(200);
    expect((await second).status).toBe(200);
  });

  test("503 with Retry-After when the server holds maxInFlight infer requests", async () => {
    const gate = new Gate();
    const held = createApp({ registry: new ModelRegistry([gatedModel(model, gate, { concurrency: 4, maxQueue: 4 })]), limits: { maxInFlight: 1 } });
    const x = batch(1);
    const send = () => held.app.request(INFER, { method: "POST", headers: { "content-type": "application/octet-stream", "x-shape": "1,1,28,28" }, body: floatBytes(x.data) });
    const first = send();
    await gate.reached(1);
    const second = await send();
    expect(second.headers.get("retry-after")).toBe("1");
    await expectError(second, 503, "OVERLOADED", /holds 1 infer/);
    gate.open();
    expect((await first).status).toBe(200);
    expect(held.state.inferring).toBe(0);
  });

  test("micro-batching under load: queued requests share one run, each answer equal to its own run up to rounding", async () => {
    const gate = new Gate();
    const app = createApp({ registry: new ModelRegistry([gatedModel(model, gate, { concurrency: 1, maxQueue: 16, maxBatch: 8 })]) }).app;
    const inputs = fixture.samples.samples.slice(0, 6).map((s) => sampleInput(fixture.samples, s));
    const send = (i: number) => app.request(INFER, { method: "POST", headers: { "content-type": "application/octet-stream", "x-shape": "1,1,28,28" }, body: floatBytes(inputs[i]!.data) });
    const first = send(0);
    await gate.reached(1);
    const queued = [1, 2, 3, 4, 5].map(send);
    await new Promise((r) => setTimeout(r, 20));
    gate.open();
    const bodies = (await Promise.all([first, ...queued].map(async (r) => (await r).json()))) as { outputs: { logits: { data: number[] } }; timing: { batch: number } }[];
    expect(gate.entered).toBe(2); // one run for the first request, one for the five queued
    expect(bodies.map((b) => b.timing.batch)).toEqual([1, 5, 5, 5, 5, 5]);
    for (let i = 0; i < 6; i++) {
      const alone = Array.from((await direct(inputs[i]!)).data as Float32Array);
      const got = bodies[i]!.outputs.logits.data;
      expect(got).toHaveLength(10);
      // A batched GEMM may sum in another order: equal up to float32 rounding, same ranking.
      got.forEach((v, j) => expect(Math.abs(v - alone[j]!)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(alone[j]!))));
      expect(argmax(got)).toBe(argmax(alone));
    }
  });

  test("504 TIMEOUT when a request outlives the request timeout (running and queued)", async () => {
    const gate = new Gate();
    const slow = new ModelRegistry([gatedModel(model, gate, { concurrency: 1, maxQueue: 4 })]);
    const app = createApp({ registry: slow, limits: { requestTimeoutMs: 50 } }).app;
    const x = batch(1);
    const send = () => app.request(INFER, { method: "POST", headers: { "content-type": "application/octet-stream", "x-shape": "1,1,28,28" }, body: floatBytes(x.data) });
    const running = send();
    await gate.reached(1);
    const queued = send();
    await expectError(await running, 504, "TIMEOUT", /running/);
    await expectError(await queued, 504, "TIMEOUT", /queue/);
    gate.open();
  });

  test("408 BODY_TIMEOUT when the body never finishes arriving", async () => {
    const app = createApp({ registry, limits: { requestTimeoutMs: 50 } }).app;
    let cancelled = false;
    const body = new ReadableStream<Uint8Array>({
      start(controller) { controller.enqueue(new Uint8Array(1024)); }, // then nothing, ever
      cancel() { cancelled = true; },
    });
    const req = new Request(`http://localhost${INFER}`, { method: "POST", headers: { "content-type": "application/octet-stream", "x-shape": "1,1,28,28" }, body, duplex: "half" } as RequestInit);
    await expectError(await app.request(req), 408, "BODY_TIMEOUT", /body not received/);
    expect(cancelled).toBe(true);
  });

  test("while shutting down: infer is 503 SHUTTING_DOWN and /healthz 503", async () => {
    const app = createApp({ registry });
    const drained = await app.state.drain(1000);
    expect(drained).toBe(true);
    const x = batch(1);
    const res = await app.app.request(INFER, { method: "POST", headers: { "content-type": "application/octet-stream", "x-shape": "1,1,28,28" }, body: floatBytes(x.data) });
    await expectError(res, 503, "SHUTTING_DOWN");
    expect((await app.app.request("/healthz")).status).toBe(503);
  });
});

describe("metrics", () => {
  test("Prometheus text counts requests by status and model, latency, in-flight, models, bytes saved", async () => {
    const app = createApp({ registry });
    const x = batch(1);
    for (let i = 0; i < 3; i++) {
      await app.app.request(INFER, { method: "POST", headers: { "content-type": "application/octet-stream", "x-shape": "1,1,28,28" }, body: floatBytes(x.data) });
    }
    await app.app.request("/v1/models/nope/infer", { method: "POST" });
    const res = await app.app.request("/metrics");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/plain");
    const text = await res.text();
    expect(text).toContain(`opq_http_requests_total{route="infer",model="${FIXTURE_MODEL}",status="200"} 3`);
    expect(text).toContain(`opq_http_requests_total{route="infer",model="",status="404"} 1`);
    expect(text).toContain(`opq_http_request_duration_seconds_count{route="infer",model="${FIXTURE_MODEL}"} 3`);
    expect(text).toContain(`opq_inference_duration_seconds_count{model="${FIXTURE_MODEL}"} 3`);
    expect(text).toMatch(/opq_http_request_duration_seconds_bucket\{route="infer",model="resnet20-fmnist",le="\+Inf"\} 3/);
    expect(text).toContain("opq_http_requests_in_flight 1"); // the /metrics request itself
    expect(text).toContain("opq_models_loaded 1");
    expect(text).toContain(`opq_inference_runs_total{model="${FIXTURE_MODEL}"}`);
    expect(text).toMatch(/opq_inference_images_total\{model="resnet20-fmnist"\} [1-9]/);
    const saved = Number(/opq_model_bytes_saved (\d+)/.exec(text)![1]);
    expect(saved).toBe(model.summary.fp32Bytes - model.summary.bytes);
    expect(saved).toBeGreaterThan(0);
    expect(text).toMatch(/process_resident_memory_bytes \d+/);
  });
});

describe("errors and loading", () => {
  test("every server and runtime code has exactly one HTTP status", () => {
    for (const code of [...Object.values(SERVER_ERROR_CODES), ...Object.values(RUNTIME_ERROR_CODES)]) {
      expect(ERROR_STATUS[code]).toBeGreaterThanOrEqual(400);
    }
  });

  test("a folder with a broken .opq refuses to load, naming the file", async () => {
    const dir = mkdtempSync(join(tmpdir(), "opq-broken-"));
    writeFileSync(join(dir, "broken.opq"), new Uint8Array([1, 2, 3, 4, 5]));
    writeFileSync(join(dir, "good.opq"), fixture.bytes);
    const err = await loadModelDir(dir).then(() => null, (e: Error & { code?: string }) => e);
    expect(err?.code).toBe("MODEL_LOAD_FAILED");
    expect(err?.message).toContain("broken.opq");
    expect(err?.message).not.toContain("good.opq");
  });

  test("an empty folder refuses to load", async () => {
    const dir = mkdtempSync(join(tmpdir(), "opq-empty-"));
    const err = await loadModelDir(dir).then(() => null, (e: Error & { code?: string }) => e);
    expect(err?.code).toBe("MODEL_LOAD_FAILED");
    expect(err?.message).toContain("no .opq files");
  });
});
