/**
 * Server conventions a client relies on: CORS only when asked for, an OpenAPI document whose
 * schemas are the ones requests are validated with and real responses parse with, and class
 * labels (Fashion-MNIST's for the bundled model) in `/v1/models/:name` and in infer answers.
 * @module
 */
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { decodeOpq } from "../format/mod.ts";
import { PROJECT_ROOT } from "../cli/shared.ts";
import { createApp, FMNIST_CLASSES, loadModelFile, loadSampleBundle, ModelRegistry, sampleInput } from "./mod.ts";
import { ERROR_SCHEMA, HEALTH_SCHEMA, INFER_RESPONSE_SCHEMA, MODEL_DETAIL_SCHEMA, MODEL_SUMMARY_SCHEMA } from "./openapi.ts";
import { INFER_BODY_SCHEMA } from "./schema.ts";

const MODEL = join(PROJECT_ROOT, "models", "resnet20-fmnist.opq");
const registry = new ModelRegistry([await loadModelFile(MODEL)]);
const samples = await loadSampleBundle(join(PROJECT_ROOT, "models", "fmnist-samples.json"));
const plain = createApp({ registry, samples }).app;
const open = createApp({ registry, samples, cors: "*" }).app;
const only = createApp({ registry, samples, cors: ["https://app.example"] }).app;

function inferBody(id = 0): string {
  const x = sampleInput(samples, samples.samples[id]!);
  return JSON.stringify({ inputs: { input: { shape: x.shape, data: Array.from(x.data) } } });
}

describe("CORS", () => {
  test("off by default: no Access-Control headers", async () => {
    const r = await plain.request("/v1/models", { headers: { Origin: "https://elsewhere.example" } });
    expect(r.status).toBe(200);
    expect(r.headers.get("access-control-allow-origin")).toBeNull();
  });
  test("cors: '*' answers any origin, and the preflight allows the binary form's headers", async () => {
    const r = await open.request("/v1/models", { headers: { Origin: "https://elsewhere.example" } });
    expect(r.headers.get("access-control-allow-origin")).toBe("*");
    const pre = await open.request("/v1/models/resnet20-fmnist/infer", {
      method: "OPTIONS", headers: { Origin: "https://elsewhere.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,x-shape" },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("x-shape");
  });
  test("a list of origins answers those only", async () => {
    const ok = await only.request("/healthz", { headers: { Origin: "https://app.example" } });
    expect(ok.headers.get("access-control-allow-origin")).toBe("https://app.example");
    const other = await only.request("/healthz", { headers: { Origin: "https://evil.example" } });
    expect(other.headers.get("access-control-allow-origin")).toBeNull();
  });
});

describe("GET /openapi.json", () => {
  test("an OpenAPI 3.1 document; the infer body schema is the one requests are validated with", async () => {
    const doc = (await (await plain.request("/openapi.json")).json()) as any;
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(["/v1/models", "/v1/models/{name}", "/v1/models/{name}/infer", "/healthz", "/metrics", "/openapi.json"]));
    const body = doc.paths["/v1/models/{name}/infer"].post.requestBody.content["application/json"].schema;
    expect(body).toEqual(JSON.parse(JSON.stringify(z.toJSONSchema(INFER_BODY_SCHEMA, { unrepresentable: "any", io: "input" }))));
    expect(body.required).toEqual(["inputs"]);
  });
  test("real responses parse with the documented schemas", async () => {
    const list = await (await plain.request("/v1/models")).json();
    z.object({ models: z.array(MODEL_SUMMARY_SCHEMA.strict()) }).parse(list);
    MODEL_DETAIL_SCHEMA.strict().parse(await (await plain.request("/v1/models/resnet20-fmnist")).json());
    const infer = await plain.request("/v1/models/resnet20-fmnist/infer?topk=3", { method: "POST", headers: { "content-type": "application/json" }, body: inferBody() });
    expect(infer.status).toBe(200);
    INFER_RESPONSE_SCHEMA.strict().parse(await infer.json());
    ERROR_SCHEMA.parse(await (await plain.request("/v1/models/nope")).json());
    HEALTH_SCHEMA.strict().parse(await (await plain.request("/healthz")).json());
  });
});

describe("class labels", () => {
  test("the bundled .opq carries Fashion-MNIST's class names; /v1/models/:name lists them", async () => {
    expect(decodeOpq(new Uint8Array(await Bun.file(MODEL).arrayBuffer())).metadata.labels).toEqual([...FMNIST_CLASSES]);
    const m = (await (await plain.request("/v1/models/resnet20-fmnist")).json()) as { labels: string[] };
    expect(m.labels).toEqual([...FMNIST_CLASSES]);
  });
  test("infer answers name each top-k class", async () => {
    const id = 3;
    const r = (await (await plain.request("/v1/models/resnet20-fmnist/infer?topk=2", { method: "POST", headers: { "content-type": "application/json" }, body: inferBody(id) })).json()) as { topk: { index: number; label: string }[][] };
    for (const e of r.topk[0]!) expect(e.label).toBe(FMNIST_CLASSES[e.index]!);
    expect(r.topk[0]![0]!.label).toBe(samples.classes[samples.samples[id]!.label]!);
  });
  test("opq compress stores labels: Fashion-MNIST's for the bundled model, --labels FILE otherwise, and checks the count", () => {
    const dir = mkdtempSync(join(tmpdir(), "opq-labels-"));
    const bun = join(PROJECT_ROOT, "node_modules", ".bin", "bun"), main = join(PROJECT_ROOT, "cli", "main.ts");
    const labelsOf = (file: string) => decodeOpq(new Uint8Array(readFileSync(join(dir, file)))).metadata.labels;
    expect(spawnSync(bun, [main, "compress", "-o", "a.opq"], { cwd: dir }).status).toBe(0);
    expect(labelsOf("a.opq")).toEqual([...FMNIST_CLASSES]);
    writeFileSync(join(dir, "ten.txt"), Array.from({ length: 10 }, (_, i) => `class ${i}`).join("\n"));
    expect(spawnSync(bun, [main, "compress", "-o", "b.opq", "--labels", "ten.txt"], { cwd: dir }).status).toBe(0);
    expect(labelsOf("b.opq")).toEqual(Array.from({ length: 10 }, (_, i) => `class ${i}`));
    writeFileSync(join(dir, "three.json"), JSON.stringify(["a", "b", "c"]));
    const bad = spawnSync(bun, [main, "compress", "-o", "c.opq", "--labels", "three.json", "--json"], { cwd: dir, encoding: "utf8" });
    expect(bad.status).toBe(2);
    expect(JSON.parse(bad.stdout).error.message).toContain("3 names for a model with 10 classes");
  }, 30_000);
});
