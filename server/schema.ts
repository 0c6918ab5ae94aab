/**
 * What an infer request may carry, and how each wire format becomes float32 feeds:
 * - JSON (`application/json`): `{ "inputs": { name: { "shape": [...], "data": [...] } } }`,
 *   `data` flat or nested numbers; the envelope is validated with zod, the numbers by one loop
 *   (a zod check per element would cost more than the inference on 10k-element batches).
 * - msgpack (`application/msgpack`): the same object; `data` may also be a bin of
 *   little-endian float32 bytes.
 * - raw float32 (`application/octet-stream`): little-endian floats, shape in `X-Shape: 1,1,28,28`,
 *   input name in `X-Input-Name` (optional when the model has one input).
 * Feeds are then checked against the model's declared inputs, so a bad request is a 400 naming
 * the input and the problem before any kernel runs.
 * @module
 */
import { z } from "zod";
import { decode as decodeMsgpack } from "@msgpack/msgpack";
import type { Tensor, ValueInfo } from "../format/mod.ts";
import { ServerError, SERVER_ERROR_CODES as E } from "./errors.ts";
import { parseInferJson } from "./json-feeds.ts";

/** Media types the infer route reads and writes. */
export const MEDIA = {
  json: "application/json",
  msgpack: "application/msgpack",
  binary: "application/octet-stream",
} as const;

/** Request headers of the raw float32 form. */
export const BINARY_HEADERS = { shape: "x-shape", inputName: "x-input-name" } as const;

/** Largest rank and element count one input may declare (the byte limit bounds the real size). */
const MAX_RANK = 8;
const MAX_ELEMENTS = 1 << 28;

const tensorSchema = z.object({
  shape: z.array(z.number().int().nonnegative()).max(MAX_RANK),
  data: z.union([z.array(z.unknown()), z.instanceof(Uint8Array), z.instanceof(Float32Array)]),
  dtype: z.string().optional(),
}).strict();

/** The envelope of a JSON or msgpack infer body. */
export const INFER_BODY_SCHEMA = z.object({
  inputs: z.record(z.string(), tensorSchema),
}).strict();

/** The parsed envelope. */
export type InferBody = z.infer<typeof INFER_BODY_SCHEMA>;

/** A float32 feed with the dtype the client declared (checked against the model later). */
export interface Feed {
  dtype: string;
  dims: number[];
  data: Float32Array;
}

/** Which wire format a Content-Type names, or undefined if the server does not read it. */
export function requestFormat(contentType: string | undefined): keyof typeof MEDIA | undefined {
  const type = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  if (type === MEDIA.json) return "json";
  if (type === MEDIA.msgpack || type === "application/x-msgpack") return "msgpack";
  if (type === MEDIA.binary) return "binary";
  return undefined;
}

/** Which format to answer in from an Accept header: JSON unless msgpack is preferred. */
export function responseFormat(accept: string | undefined): "json" | "msgpack" {
  if (!accept) return "json";
  const ranked = accept.split(",").map((part) => {
    const [type, ...params] = part.trim().toLowerCase().split(";");
    const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    return { type: type!.trim(), q: q ? Number(q.slice(2)) : 1 };
  }).filter((r) => r.q > 0).sort((a, b) => b.q - a.q);
  for (const { type } of ranked) {
    if (type === MEDIA.msgpack || type === "application/x-msgpack") return "msgpack";
    if (type === MEDIA.json || type === "application/*" || type === "*/*") return "json";
  }
  throw new ServerError(E.NOT_ACCEPTABLE, `cannot answer in ${JSON.stringify(accept)}; use ${MEDIA.json} or ${MEDIA.msgpack}`);
}

/** Parse `?topk=`: an integer ≥ 1 (capped later at the class count), or the fallback. */
export function parseTopK(raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const k = Number(raw);
  if (raw.trim() === "" || !Number.isInteger(k) || k < 0 || k > 1000) {
    throw new ServerError(E.BAD_PARAMETER, `topk must be an integer in [0, 1000], got ${JSON.stringify(raw)}`);
  }
  return k;
}

/** Parse an `X-Shape` header such as `1,1,28,28`. */
export function parseShapeHeader(raw: string | undefined): number[] {
  if (raw === undefined || raw.trim() === "") {
    throw new ServerError(E.BAD_PARAMETER, `a ${MEDIA.binary} body needs an X-Shape header such as "X-Shape: 1,1,28,28"`);
  }
  const dims = raw.split(/[,x×\s]+/).filter((s) => s !== "").map(Number);
  if (dims.length === 0 || dims.length > MAX_RANK || dims.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new ServerError(E.BAD_PARAMETER, `X-Shape must be up to ${MAX_RANK} non-negative integers separated by commas, got ${JSON.stringify(raw)}`);
  }
  return dims;
}

function elementCount(dims: readonly number[], where: string): number {
  let n = 1;
  for (const d of dims) n *= d;
  if (n > MAX_ELEMENTS) throw new ServerError(E.BAD_REQUEST, `${where}: shape [${dims.join(", ")}] has ${n} elements, more than ${MAX_ELEMENTS}`);
  return n;
}

/** Check every value is finite, naming the first that is not. */
function checkFinite(data: Float32Array, where: string): void {
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (v - v !== 0) throw new ServerError(E.INPUT_NOT_FINITE, `${where}[${i}] is ${v}; inputs must be finite numbers`);
  }
}

/** Little-endian float32 bytes as a Float32Array (copied when unaligned or on a big-endian host). */
function floatsFromBytes(bytes: Uint8Array, count: number, where: string): Float32Array {
  if (bytes.byteLength !== count * 4) {
    throw new ServerError(E.INPUT_SHAPE, `${where}: ${bytes.byteLength} bytes of float32 data, but the shape needs ${count} values (${count * 4} bytes)`);
  }
  const out = new Float32Array(count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
  return out;
}

/** Numbers (flat or nested arrays) as a Float32Array of exactly `count` values. */
function floatsFromArray(data: unknown[], count: number, where: string): Float32Array {
  const flat = data.some(Array.isArray) ? (data as unknown[]).flat(MAX_RANK) : data;
  if (flat.length !== count) {
    throw new ServerError(E.INPUT_SHAPE, `${where}: data has ${flat.length} values, but its shape needs ${count}`);
  }
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const v = flat[i];
    if (typeof v !== "number") {
      throw new ServerError(E.BAD_REQUEST, `${where}.data[${i}] is ${v === null ? "null" : typeof v}, expected a number`);
    }
    if (!Number.isFinite(v)) throw new ServerError(E.INPUT_NOT_FINITE, `${where}.data[${i}] is ${v}; inputs must be finite numbers`);
    out[i] = v;
  }
  return out;
}

function zodMessage(error: z.ZodError): string {
  const issue = error.issues[0]!;
  const path = issue.path.length > 0 ? issue.path.map(String).join(".") : "body";
  return `${path}: ${issue.message}`;
}

/** Validate a decoded JSON/msgpack value and turn it into feeds. */
export function feedsFromObject(value: unknown): Record<string, Feed> {
  const parsed = INFER_BODY_SCHEMA.safeParse(value);
  if (!parsed.success) {
    throw new ServerError(E.BAD_REQUEST, `invalid infer body: ${zodMessage(parsed.error)} (expected { "inputs": { name: { "shape": [...], "data": [...] } } })`);
  }
  const feeds: Record<string, Feed> = {};
  for (const [name, t] of Object.entries(parsed.data.inputs)) {
    const where = `inputs.${name}`;
    const count = elementCount(t.shape, where);
    if (t.data instanceof Float32Array && t.data.length !== count) {
      throw new ServerError(E.INPUT_SHAPE, `${where}: data has ${t.data.length} values, but its shape needs ${count}`);
    }
    const data = t.data instanceof Float32Array ? t.data : t.data instanceof Uint8Array ? floatsFromBytes(t.data, count, where) : floatsFromArray(t.data, count, where);
    if (t.data instanceof Uint8Array) checkFinite(data, `${where}.data`);
    feeds[name] = { dtype: t.dtype ?? "float32", dims: t.shape, data };
  }
  return feeds;
}

/** Per-request caps of one model: images along dimension 0, and elements of all inputs together. */
export interface RequestCaps {
  maxBatch: number;
  maxElements: number;
}

/** Check a feed's shape against the caps: 413 naming the limit. */
export function checkCaps(name: string, dims: readonly number[], caps: RequestCaps, total = 0): number {
  const count = dims.reduce((a, b) => a * b, 1);
  if (dims.length > 0 && dims[0]! > caps.maxBatch) {
    throw new ServerError(E.PAYLOAD_TOO_LARGE, `input ${JSON.stringify(name)} has a batch of ${dims[0]}; this model accepts at most ${caps.maxBatch} per request`);
  }
  if (total + count > caps.maxElements) {
    throw new ServerError(E.PAYLOAD_TOO_LARGE, `the request holds ${total + count} elements; this model accepts at most ${caps.maxElements} per request`);
  }
  return total + count;
}

/** Decode a request body of the given format into feeds, under the model's caps (none: the schema's own bounds). */
export async function decodeInferBody(
  format: keyof typeof MEDIA,
  body: Uint8Array,
  headers: { shape?: string; inputName?: string },
  model: { inputs: readonly ValueInfo[] },
  caps: RequestCaps = { maxBatch: MAX_ELEMENTS, maxElements: MAX_ELEMENTS },
): Promise<Record<string, Feed>> {
  if (format === "binary") {
    const dims = parseShapeHeader(headers.shape);
    let name = headers.inputName?.trim();
    if (!name) {
      if (model.inputs.length !== 1) {
        throw new ServerError(E.BAD_PARAMETER, `the model has ${model.inputs.length} inputs (${model.inputs.map((i) => i.name).join(", ")}); name one in X-Input-Name`);
      }
      name = model.inputs[0]!.name;
    }
    checkCaps(name, dims, caps);
    const data = floatsFromBytes(body, elementCount(dims, name), name);
    checkFinite(data, name);
    return { [name]: { dtype: "float32", dims, data } };
  }
  let value: unknown;
  if (format === "json") {
    // Numbers go straight into float32 arrays, counted against the cap as they are read.
    value = await parseInferJson(body, caps.maxElements);
  } else {
    try {
      // The decoder refuses an array or bin past the cap as it meets its header, before building it.
      value = decodeMsgpack(body, { maxArrayLength: caps.maxElements, maxBinLength: 4 * caps.maxElements, maxMapLength: 1024, maxStrLength: 1 << 20, maxExtLength: 0 });
    } catch (e) {
      if (/max.*length|exceeds/i.test((e as Error).message)) {
        throw new ServerError(E.PAYLOAD_TOO_LARGE, `msgpack body holds an array or bin longer than this model's cap of ${caps.maxElements} elements per request`);
      }
      throw new ServerError(E.BAD_REQUEST, `body is not valid msgpack: ${(e as Error).message}`);
    }
  }
  const feeds = feedsFromObject(value);
  let total = 0;
  for (const [name, f] of Object.entries(feeds)) total = checkCaps(name, f.dims, caps, total);
  return feeds;
}

/**
 * Check feeds against the model's declared inputs: every input fed, no unknown names, float32,
 * same rank, equal static dimensions. Codes equal the runtime's, whichever layer catches it.
 */
export function validateFeeds(feeds: Record<string, Feed>, inputs: readonly ValueInfo[]): Record<string, Tensor> {
  const declared = new Map(inputs.map((i) => [i.name, i]));
  for (const name of Object.keys(feeds)) {
    if (!declared.has(name)) {
      throw new ServerError(E.INPUT_INVALID, `unknown input ${JSON.stringify(name)}; the model's inputs are ${inputs.map((i) => JSON.stringify(i.name)).join(", ")}`);
    }
  }
  const out: Record<string, Tensor> = {};
  for (const info of inputs) {
    const feed = feeds[info.name];
    if (!feed) throw new ServerError(E.INPUT_MISSING, `input ${JSON.stringify(info.name)} is missing (shape ${describeShape(info.shape)})`);
    if (feed.dtype !== info.dtype) {
      throw new ServerError(E.INPUT_DTYPE, `input ${JSON.stringify(info.name)} is ${feed.dtype}, the model expects ${info.dtype}`);
    }
    if (feed.dims.some((d) => d === 0)) {
      throw new ServerError(E.INPUT_SHAPE, `input ${JSON.stringify(info.name)} has shape [${feed.dims.join(", ")}] with no elements; send at least one`);
    }
    if (info.shape) {
      const bad = feed.dims.length !== info.shape.length ||
        info.shape.some((d, i) => typeof d === "number" && d >= 0 && d !== feed.dims[i]);
      if (bad) {
        throw new ServerError(E.INPUT_SHAPE, `input ${JSON.stringify(info.name)} has shape [${feed.dims.join(", ")}], the model expects ${describeShape(info.shape)}`);
      }
    }
    out[info.name] = { dtype: "float32", dims: feed.dims, data: feed.data };
  }
  return out;
}

/** `[N, 1, 28, 28]` for a declared shape with symbolic dimensions. */
export function describeShape(shape: ValueInfo["shape"]): string {
  if (!shape) return "(any shape)";
  return `[${shape.map((d) => (typeof d === "number" && d >= 0 ? String(d) : typeof d === "string" ? d : "?")).join(", ")}]`;
}
