/**
 * `GET /openapi.json`: an OpenAPI 3.1 document of the HTTP API. The infer request body is the
 * zod schema the route validates with (schema.ts INFER_BODY_SCHEMA); the responses are zod
 * schemas here that the tests parse real responses with, so the document cannot drift from what
 * the server sends. JSON Schema comes from zod's own `z.toJSONSchema`.
 * @module
 */
import { z } from "zod";
import pkg from "../package.json" with { type: "json" };
import type { OpqHono } from "./context.ts";
import { INFER_BODY_SCHEMA, MEDIA } from "./schema.ts";

const dim = z.union([z.number(), z.string(), z.null()]);
const valueInfo = z.object({ name: z.string(), dtype: z.string(), shape: z.array(dim).nullable() });
const nullableNumber = z.number().nullable();

/** A model as `GET /v1/models` lists it (registry.ts ModelSummary). */
export const MODEL_SUMMARY_SCHEMA = z.object({
  name: z.string(), format: z.string(), inputs: z.array(valueInfo), outputs: z.array(valueInfo),
  bytes: z.number().int(), fp32Bytes: z.number().int(), ratio: z.number().describe("fp32Bytes / bytes: the size ratio every opq tool reports"),
  sparsity: nullableNumber, bits: nullableNumber, method: z.string().nullable(), params: nullableNumber, loadMs: z.number(),
  accuracy: z.object({ dataset: z.string(), images: z.number().int(), top1: z.number() }).nullable().describe("top-1 measured when the file was made, if it was"),
}).describe("a loaded model");

/** `GET /v1/models/:name`: the summary, the class names and the per-layer figures. */
export const MODEL_DETAIL_SCHEMA = MODEL_SUMMARY_SCHEMA.extend({
  labels: z.array(z.string()).nullable().describe("class names by output index, when the file carries them"),
  layers: z.array(z.object({
    name: z.string(), opType: z.string(), params: nullableNumber, nnz: nullableNumber, sparsity: nullableNumber,
    bits: nullableNumber, step: nullableNumber, tableSize: nullableNumber,
  })),
});

/** A successful JSON infer response (routes/infer.ts InferResponse). */
export const INFER_RESPONSE_SCHEMA = z.object({
  model: z.string(),
  outputs: z.record(z.string(), z.object({ dtype: z.string(), shape: z.array(z.number().int()), data: z.array(z.number()) })),
  topk: z.array(z.array(z.object({ index: z.number().int(), label: z.string().optional(), probability: z.number(), logit: z.number() }))).optional()
    .describe("per batch item, the k most likely classes (?topk=, default 5)"),
  timing: z.object({ readMs: z.number(), queueMs: z.number(), inferMs: z.number(), totalMs: z.number(), batch: z.number().int() }),
});

/** Every error body (errors.ts ErrorBody). */
export const ERROR_SCHEMA = z.object({ error: z.object({ code: z.string(), message: z.string() }) });

/** `GET /healthz`. */
export const HEALTH_SCHEMA = z.object({ status: z.enum(["ok", "draining"]), models: z.number().int(), inFlight: z.number().int(), uptimeS: z.number() });

const json = (schema: z.ZodType) => ({ "application/json": { schema: z.toJSONSchema(schema, { unrepresentable: "any", io: "input" }) } });
const errors = { default: { description: "an error with a code (see server/README.md)", content: json(ERROR_SCHEMA) } };
const nameParam = { name: "name", in: "path", required: true, schema: { type: "string" }, description: "model name (the file name without .opq)" };

/** The OpenAPI document for a server of this version. */
export function openApiDocument(version: string): Record<string, unknown> {
  return {
    openapi: "3.1.0",
    info: { title: "opq inference server", version, description: "Compressed CNN inference: JSON, msgpack or raw float32 in; outputs and top-k classes out." },
    paths: {
      "/v1/models": { get: { summary: "list the loaded models", responses: { 200: { description: "the models", content: json(z.object({ models: z.array(MODEL_SUMMARY_SCHEMA) })) }, ...errors } } },
      "/v1/models/{name}": { get: { summary: "one model with its class labels and layers", parameters: [nameParam], responses: { 200: { description: "the model", content: json(MODEL_DETAIL_SCHEMA) }, ...errors } } },
      "/v1/models/{name}/infer": {
        post: {
          summary: "run the model",
          parameters: [
            nameParam,
            { name: "topk", in: "query", required: false, schema: { type: "integer", minimum: 0, maximum: 1000, default: 5 }, description: "classes per item in the answer (0: none)" },
            { name: "X-Shape", in: "header", required: false, schema: { type: "string" }, description: `with ${MEDIA.binary}: the input's shape, e.g. 1,1,28,28` },
            { name: "X-Input-Name", in: "header", required: false, schema: { type: "string" }, description: `with ${MEDIA.binary}: which input (optional for one-input models)` },
          ],
          requestBody: {
            required: true,
            content: {
              ...json(INFER_BODY_SCHEMA),
              [MEDIA.msgpack]: { schema: z.toJSONSchema(INFER_BODY_SCHEMA, { unrepresentable: "any", io: "input" }), description: "the same object; data may be a bin of little-endian float32" },
              [MEDIA.binary]: { schema: { type: "string", format: "binary" }, description: "little-endian float32 values; shape in X-Shape" },
            },
          },
          responses: { 200: { description: "outputs, top-k and timing (msgpack when Accept prefers it)", content: json(INFER_RESPONSE_SCHEMA) }, ...errors },
        },
      },
      "/v1/samples": { get: { summary: "the bundled sample images of the page", responses: { 200: { description: "samples with their labels" }, ...errors } } },
      "/healthz": { get: { summary: "liveness; 503 while draining", responses: { 200: { description: "up", content: json(HEALTH_SCHEMA) }, 503: { description: "draining", content: json(HEALTH_SCHEMA) } } } },
      "/metrics": { get: { summary: "Prometheus metrics", responses: { 200: { description: "text exposition format", content: { "text/plain": { schema: { type: "string" } } } } } } },
      "/openapi.json": { get: { summary: "this document", responses: { 200: { description: "OpenAPI 3.1" } } } },
    },
  };
}

/** Register `GET /openapi.json`. */
export function openApiRoutes(app: OpqHono, version: string = pkg.version): void {
  const doc = openApiDocument(version);
  app.get("/openapi.json", (c) => {
    c.set("route", "openapi");
    return c.json(doc);
  });
}
