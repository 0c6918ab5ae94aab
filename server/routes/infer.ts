/**
 * `POST /v1/models/:name/infer`: read the body under the byte limit, decode it (JSON, msgpack
 * or raw float32, see schema.ts), check it against the model's inputs, run it through the
 * model's bounded queue within the request deadline, and answer with the outputs, the top-k
 * classes of a classifier (`?topk=`, default 5, 0 = none) and server-side timing, as JSON or
 * msgpack following Accept. In msgpack, output data is a bin of little-endian float32.
 * @module
 */
import { encode as encodeMsgpack } from "@msgpack/msgpack";
import type { Tensor } from "../../format/mod.ts";
import { readBodyLimited } from "../body.ts";
import type { Context } from "hono";
import type { AppEnv, OpqHono, RouteContext } from "../context.ts";
import type { ServedModel } from "../registry.ts";
import { ServerError, SERVER_ERROR_CODES as E } from "../errors.ts";
import { BINARY_HEADERS, checkCaps, decodeInferBody, MEDIA, parseShapeHeader, parseTopK, requestFormat, responseFormat, validateFeeds } from "../schema.ts";
import { findModel } from "./models.ts";

/** Top-k classes returned when `?topk` is absent. */
export const DEFAULT_TOPK = 5;

/** One class of a top-k list. */
export interface TopKEntry {
  index: number;
  label?: string;
  /** Softmax of the logits. */
  probability: number;
  logit: number;
}

/** A tensor as a response carries it. */
export interface TensorOut {
  dtype: string;
  shape: number[];
  data: number[] | Float32Array;
}

/** The body of a successful infer response. */
export interface InferResponse {
  model: string;
  outputs: Record<string, TensorOut>;
  /** Per batch item, the k most likely classes, for a single [N, C] output; absent otherwise. */
  topk?: TopKEntry[][];
  /** Server-side milliseconds; `batch` is the images in the run that served this request (micro-batching). */
  timing: { readMs: number; queueMs: number; inferMs: number; totalMs: number; batch: number };
}

/** Top-k of each row of an [N, C] logits tensor, with softmax probabilities. */
export function topK(logits: Tensor, k: number, labels: readonly string[] | null): TopKEntry[][] {
  const [n, classes] = logits.dims as [number, number];
  const data = logits.data as Float32Array;
  const rows: TopKEntry[][] = [];
  for (let r = 0; r < n; r++) {
    const row = data.subarray(r * classes, (r + 1) * classes);
    let max = -Infinity;
    for (const v of row) if (v > max) max = v;
    let sum = 0;
    for (const v of row) sum += Math.exp(v - max);
    const order = Array.from({ length: classes }, (_, i) => i).sort((a, b) => row[b]! - row[a]! || a - b).slice(0, k);
    rows.push(order.map((i) => ({
      index: i,
      ...(labels?.[i] !== undefined ? { label: labels[i] } : {}),
      probability: Math.exp(row[i]! - max) / sum,
      logit: row[i]!,
    })));
  }
  return rows;
}

const round = (ms: number) => Math.round(ms * 1000) / 1000;

/** Register the infer route (and a 405 for other methods on it). */
export function inferRoutes(app: OpqHono, ctx: RouteContext): void {
  app.post("/v1/models/:name/infer", async (c) => {
    c.set("route", "infer");
    const model = findModel(ctx, c.req.param("name"));
    c.set("model", model.summary.name);
    if (ctx.state.draining) throw new ServerError(E.SHUTTING_DOWN, "the server is shutting down", { "Retry-After": "1", Connection: "close" });
    return await infer(c, ctx, model);
  });
  app.all("/v1/models/:name/infer", (c) => {
    c.set("route", "infer");
    throw new ServerError(E.METHOD_NOT_ALLOWED, `${c.req.method} is not allowed here; POST an infer request`, { Allow: "POST" });
  });
}

/** Handle one admitted infer request. */
async function infer(c: Context<AppEnv>, ctx: RouteContext, model: ServedModel): Promise<Response> {
  const started = performance.now();
  const name = model.summary.name;
  const topk = parseTopK(c.req.query("topk"), DEFAULT_TOPK);
  const answerAs = responseFormat(c.req.header("accept"));
  const format = requestFormat(c.req.header("content-type"));
  if (!format) {
    throw new ServerError(E.UNSUPPORTED_MEDIA_TYPE, `Content-Type ${JSON.stringify(c.req.header("content-type") ?? "")} is not one of ${Object.values(MEDIA).join(", ")}`);
  }

  // One deadline for the whole request; the body has its own, shorter one (a trickle is cut).
  const deadline = started + ctx.limits.requestTimeoutMs;
  const bodyMs = Math.min(ctx.limits.bodyTimeoutMs, ctx.limits.requestTimeoutMs);
  const caps = model.caps;
  const headers = { shape: c.req.header(BINARY_HEADERS.shape), inputName: c.req.header(BINARY_HEADERS.inputName) };
  // The body may not be larger than the model's caps allow in its format: a raw body is exactly
  // its X-Shape (checked against the caps before a byte is read), JSON ≤ 32 bytes a number.
  let bodyLimit = ctx.limits.maxBodyBytes;
  if (format === "binary") {
    const dims = parseShapeHeader(headers.shape);
    checkCaps(headers.inputName?.trim() || (model.runner.inputs[0]?.name ?? "input"), dims, caps);
    bodyLimit = Math.min(bodyLimit, 4 * dims.reduce((a, b) => a * b, 1));
  } else {
    bodyLimit = Math.min(bodyLimit, (format === "json" ? 32 : 9) * caps.maxElements + (64 << 10));
  }
  if (ctx.state.reading >= ctx.limits.maxReading) {
    throw new ServerError(E.OVERLOADED, `the server is reading ${ctx.limits.maxReading} request bodies already`, { "Retry-After": "1" });
  }
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(new ServerError(E.BODY_TIMEOUT, `request body not received within ${bodyMs} ms`, { Connection: "close" })), bodyMs);
  let body: Uint8Array;
  ctx.state.reading++;
  try {
    body = await readBodyLimited(c.req.raw, bodyLimit, abort.signal);
  } catch (e) {
    if (e instanceof ServerError && e.code === E.PAYLOAD_TOO_LARGE) {
      throw new ServerError(E.PAYLOAD_TOO_LARGE, `${e.message}; this model accepts at most ${caps.maxBatch} images and ${caps.maxElements} elements per request`, e.headers);
    }
    throw e;
  } finally {
    ctx.state.reading--;
    clearTimeout(timer);
  }
  const read = performance.now();
  const feeds = validateFeeds(await decodeInferBody(format, body, headers, model.runner, caps), model.runner.inputs);
  body = new Uint8Array(0); // the feeds hold what is needed; let the body go
  // A slot only for a complete, valid request: slow or broken uploads never hold one.
  if (ctx.state.inferring >= ctx.limits.maxInFlight) {
    throw new ServerError(E.OVERLOADED, `the server holds ${ctx.limits.maxInFlight} infer requests already`, { "Retry-After": "1" });
  }
  ctx.state.inferring++;
  let ran: Awaited<ReturnType<typeof model.queue.infer>>;
  try {
    ran = await model.queue.infer(feeds, deadline);
  } finally {
    ctx.state.inferring--;
  }
  const { value: outputs, timing } = ran;
  ctx.metrics.recordInference(name, timing.runMs / 1000);

  const outNames = Object.keys(outputs);
  const single = outNames.length === 1 ? outputs[outNames[0]!]! : undefined;
  const isClassifier = single !== undefined && single.dims.length === 2 && single.dims[1]! > 1 && single.data instanceof Float32Array;
  const result: InferResponse = {
    model: name,
    outputs: Object.fromEntries(outNames.map((o) => {
      const t = outputs[o]!;
      const data = answerAs === "msgpack" && t.data instanceof Float32Array ? t.data : Array.from(t.data as ArrayLike<number>, Number);
      return [o, { dtype: t.dtype, shape: t.dims, data }];
    })),
    ...(isClassifier && topk > 0 ? { topk: topK(single!, Math.min(topk, single!.dims[1]!), model.labels) } : {}),
    timing: { readMs: round(read - started), queueMs: round(timing.queueMs), inferMs: round(timing.runMs), totalMs: round(performance.now() - started), batch: timing.batch },
  };
  c.header("Server-Timing", `read;dur=${result.timing.readMs}, queue;dur=${result.timing.queueMs}, infer;dur=${result.timing.inferMs}`);
  if (answerAs === "msgpack") {
    c.header("Content-Type", MEDIA.msgpack);
    return c.body(encodeMsgpack(result) as Uint8Array<ArrayBuffer>);
  }
  return c.json(result);
}
