/**
 * What a JS inference user expects beside `session.run`: a `tensor()` constructor, feeds given
 * the way onnxruntime-web writes them (`{ type, data, dims }`, or a plain number array for a
 * float32 input), and `classify(session, image)`, which applies the preprocessing the `.opq`
 * stores (what compression and calibration used) and answers with its class labels.
 * @module
 */
import { defaultPreprocess, type DType, parsePreprocess, type Preprocess, PREPROCESS_KEY, preprocessedShape, preprocessImage, sizeOf, type Tensor } from "../format/mod.ts";
import { OpqRuntimeError, RUNTIME_ERROR_CODES } from "./errors.ts";
import type { Session } from "./session.ts";

const ARRAY_OF: Partial<Record<DType, (n: ArrayLike<number>) => Tensor["data"]>> = {
  float32: (a) => Float32Array.from(a), float64: (a) => Float64Array.from(a), int32: (a) => Int32Array.from(a),
  uint8: (a) => Uint8Array.from(a), int8: (a) => Int8Array.from(a), int16: (a) => Int16Array.from(a), uint16: (a) => Uint16Array.from(a),
  bool: (a) => Uint8Array.from(a, (v) => (v ? 1 : 0)), uint32: (a) => Uint32Array.from(a),
  int64: (a) => BigInt64Array.from(a, (v) => BigInt(v)),
};

/**
 * A tensor of `dims` (default: 1-D of the data's length) from a typed array or a plain array of
 * numbers, copied into the dtype's typed array. Throws INPUT_INVALID if the lengths disagree.
 */
export function tensor(dtype: DType, data: Tensor["data"] | readonly number[], dims: readonly number[] = [data.length]): Tensor {
  const make = ARRAY_OF[dtype];
  const values = Array.isArray(data) ? (make ? make(data as unknown as number[]) : undefined) : data as Tensor["data"];
  if (!values) throw new OpqRuntimeError(RUNTIME_ERROR_CODES.INPUT_INVALID, `tensor(): cannot build a ${dtype} tensor from a plain array`);
  if (values.length !== sizeOf(dims)) {
    throw new OpqRuntimeError(RUNTIME_ERROR_CODES.INPUT_INVALID, `tensor(): dims [${dims.join(", ")}] need ${sizeOf(dims)} elements, got ${values.length}`);
  }
  return { dtype, dims: [...dims], data: values };
}

/**
 * A feed as callers write it: our `{ dtype, dims, data }`, onnxruntime-web's `{ type, dims, data }`
 * (its Tensor), or for an input of known dtype a plain number array with `dims` from `shape`.
 * Anything else is returned as is, for validateFeeds to refuse with its typed error.
 */
export function normalizeFeed(x: unknown, dtype: DType, shape: readonly (number | string | null)[] | null): Tensor | unknown {
  if (Array.isArray(x) && x.every((v) => typeof v === "number") && shape && shape.every((d) => typeof d === "number")) {
    return tensor(dtype, x as number[], shape as number[]);
  }
  if (typeof x !== "object" || x === null || "dtype" in x) return x;
  const o = x as { type?: unknown; dims?: unknown; data?: unknown };
  if (typeof o.type === "string" && Array.isArray(o.dims) && o.data !== undefined) {
    const data = Array.isArray(o.data) ? ARRAY_OF[o.type as DType]?.(o.data as number[]) ?? o.data : o.data;
    return { dtype: o.type as DType, dims: [...(o.dims as number[])], data: data as Tensor["data"] };
  }
  return x;
}

/** A decoded image: `channels` interleaved 8-bit values per pixel (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA), row-major. */
export interface ImageData8 {
  width: number;
  height: number;
  channels: number;
  data: Uint8Array | Uint8ClampedArray;
}

/** One class of a classification, best first. */
export interface ClassScore {
  index: number;
  /** The class name stored in the model (`metadata.labels`), else undefined. */
  label?: string;
  /** Softmax probability. */
  probability: number;
}

/**
 * Classify one image: preprocess it as the model's metadata says (`metadata.preprocess`; a
 * 1-channel model without one gets Fashion-MNIST's, which the bundled models were trained with),
 * run the session, and return the `k` most probable classes with the stored labels.
 * A browser's `ImageData` (RGBA) can be passed as is, with `channels: 4`.
 */
export async function classify(session: Session, image: ImageData8, k = 5): Promise<ClassScore[]> {
  const input = session.inputs[0];
  if (!input || input.dtype !== "float32") throw new OpqRuntimeError(RUNTIME_ERROR_CODES.INPUT_INVALID, "classify(): the model needs one float32 image input");
  const meta = session.info.metadata;
  const shape = input.shape ?? [];
  let p: Preprocess;
  try {
    p = meta[PREPROCESS_KEY] !== undefined ? parsePreprocess(meta[PREPROCESS_KEY]) : defaultPreprocess(shape);
  } catch (e) {
    throw new OpqRuntimeError(RUNTIME_ERROR_CODES.INVALID_MODEL, `classify(): the model's stored preprocessing is unusable: ${(e as Error).message}`, undefined, { cause: e });
  }
  const { width, height, channels, data } = image;
  if (!(Number.isSafeInteger(width) && width > 0 && Number.isSafeInteger(height) && height > 0 && [1, 2, 3, 4].includes(channels) && data?.length === width * height * channels)) {
    throw new OpqRuntimeError(RUNTIME_ERROR_CODES.INPUT_INVALID, `classify(): an image needs width × height × channels (1–4) bytes, got ${width}×${height}×${channels} and ${data?.length} bytes`);
  }
  const dims = [1, ...preprocessedShape(p, width, height)];
  const want = shape.slice(1);
  if (want.length !== 3 || want.some((d, i) => typeof d === "number" && d !== dims[i + 1])) {
    throw new OpqRuntimeError(RUNTIME_ERROR_CODES.INPUT_SHAPE, `classify(): the preprocessed image is [${dims.join(", ")}] but the model takes [${shape.join(", ")}]; resize the image or store a preprocessing that crops to it`);
  }
  const x = new Float32Array(sizeOf(dims));
  preprocessImage(data instanceof Uint8Array ? data : new Uint8Array(data.buffer, data.byteOffset, data.length), width, height, channels, p, x);
  const out = (await session.run({ [input.name]: { dtype: "float32", dims, data: x } }))[session.outputNames[0]!]!;
  const logits = out.data as Float32Array;
  const labels = Array.isArray(meta.labels) ? (meta.labels as unknown[]).map(String) : undefined;
  const max = logits.reduce((m, v) => Math.max(m, v), -Infinity);
  const exp = Array.from(logits, (v) => Math.exp(v - max));
  const sum = exp.reduce((a, b) => a + b, 0);
  return exp.map((e, index) => ({ index, label: labels?.[index], probability: e / sum }))
    .sort((a, b) => b.probability - a.probability || a.index - b.index)
    .slice(0, Math.max(1, Math.floor(k)));
}
