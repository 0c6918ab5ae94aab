/**
 * safetensors (huggingface/safetensors): the tensor file PyTorch users read everywhere without
 * executing code. opq writes its finetuning plans in it (compressor/plan.ts). Layout:
 *
 *  1. u64 little-endian N: the byte length of the header;
 *  2. N bytes of UTF-8 JSON: `{ name: { dtype, shape, data_offsets: [begin, end] }, …,
 *     "__metadata__": { string: string } }`, padded with spaces (we pad to a multiple of 8);
 *  3. the data buffer: each tensor's row-major little-endian bytes at [begin, end) relative to
 *     the buffer's start. Tensors tile the buffer exactly: no overlap, no hole, nothing after.
 *
 * The reader trusts nothing: every length is checked against the bytes present before anything
 * is allocated from it, so a hostile header cannot make it allocate more than the file's size.
 * @module
 */
import { check, FORMAT_ERROR_CODES as E, FormatError } from "./errors.ts";

/** Bytes per element of each dtype we read and write, by safetensors name. */
export const SAFETENSORS_DTYPES = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1 } as const;
/** A safetensors dtype name. */
export type SafetensorsDType = keyof typeof SAFETENSORS_DTYPES;

/** One tensor: dtype, shape and its raw little-endian bytes (a private copy). */
export interface SafeTensor {
  dtype: SafetensorsDType;
  shape: number[];
  data: Uint8Array;
}

/** A whole file: tensors in file order and the string-to-string metadata. */
export interface SafetensorsFile {
  tensors: Map<string, SafeTensor>;
  metadata: Record<string, string>;
}

/** Headers beyond this are refused before parsing (the reference implementation's limit). */
export const SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024;

const METADATA_KEY = "__metadata__";

function ownRecord(): Record<string, string> {
  return Object.create(null) as Record<string, string>;
}

/**
 * Parse a safetensors file. Throws FormatError: TRUNCATED (under 8 bytes, a header longer than
 * the file), TOO_LARGE (a header over SAFETENSORS_MAX_HEADER), CORRUPT (bad UTF-8 or JSON, a bad
 * entry, a shape that does not match its byte range, out-of-range, overlapping or non-tiling
 * offsets), UNSUPPORTED (an unknown dtype).
 */
export function readSafetensors(bytes: Uint8Array): SafetensorsFile {
  check(bytes.length >= 8, E.TRUNCATED, `safetensors: ${bytes.length} bytes, shorter than the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lo = view.getUint32(0, true), hi = view.getUint32(4, true);
  const n = hi * 2 ** 32 + lo;
  check(n <= bytes.length - 8, E.TRUNCATED, `safetensors: the header declares ${n} bytes, the file has ${bytes.length - 8} after the length`);
  check(n <= SAFETENSORS_MAX_HEADER, E.TOO_LARGE, `safetensors: a ${n}-byte header is over the ${SAFETENSORS_MAX_HEADER}-byte limit`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    throw new FormatError(E.CORRUPT, `safetensors: the header is not UTF-8 JSON (${(e as Error).message})`, { cause: e });
  }
  check(header !== null && typeof header === "object" && !Array.isArray(header), E.CORRUPT, "safetensors: the header is not a JSON object");
  const dataStart = 8 + n, dataLen = bytes.length - dataStart;
  const metadata = ownRecord();
  const entries: { name: string; dtype: SafetensorsDType; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, v] of Object.entries(header as Record<string, unknown>)) {
    if (name === METADATA_KEY) {
      check(v !== null && typeof v === "object" && !Array.isArray(v), E.CORRUPT, "safetensors: __metadata__ is not an object");
      for (const [k, s] of Object.entries(v as Record<string, unknown>)) {
        check(typeof s === "string", E.CORRUPT, `safetensors: metadata ${JSON.stringify(k)} is not a string`);
        metadata[k] = s;
      }
      continue;
    }
    const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    check(t !== null && typeof t === "object", E.CORRUPT, `safetensors: tensor ${JSON.stringify(name)} is not an object`);
    check(typeof t.dtype === "string", E.CORRUPT, `safetensors: tensor ${JSON.stringify(name)} has no dtype`);
    check(Object.hasOwn(SAFETENSORS_DTYPES, t.dtype), E.UNSUPPORTED, `safetensors: tensor ${JSON.stringify(name)} has dtype ${JSON.stringify(t.dtype)}`);
    const shape = t.shape, offs = t.data_offsets;
    check(Array.isArray(shape) && shape.every((d) => Number.isSafeInteger(d) && d >= 0), E.CORRUPT, `safetensors: tensor ${JSON.stringify(name)} has a bad shape`);
    check(Array.isArray(offs) && offs.length === 2 && offs.every((o) => Number.isSafeInteger(o) && o >= 0), E.CORRUPT, `safetensors: tensor ${JSON.stringify(name)} has bad data_offsets`);
    const [begin, end] = offs as [number, number];
    check(begin <= end && end <= dataLen, E.CORRUPT, `safetensors: tensor ${JSON.stringify(name)} at [${begin}, ${end}) is outside the ${dataLen}-byte data buffer`);
    const dtype = t.dtype as SafetensorsDType;
    let count = 1;
    for (const d of shape as number[]) count *= d; // stays exact: the byte check below bounds it by the file size
    check(count * SAFETENSORS_DTYPES[dtype] === end - begin, E.CORRUPT,
      `safetensors: tensor ${JSON.stringify(name)} of shape [${shape}] ${dtype} needs ${count * SAFETENSORS_DTYPES[dtype]} bytes, its offsets give ${end - begin}`);
    entries.push({ name, dtype, shape: [...(shape as number[])], begin, end });
  }
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  for (const e of sorted) {
    check(e.begin >= pos, E.CORRUPT, `safetensors: tensor ${JSON.stringify(e.name)} at [${e.begin}, ${e.end}) overlaps the one before it`);
    check(e.begin === pos, E.CORRUPT, `safetensors: a hole at [${pos}, ${e.begin}) before tensor ${JSON.stringify(e.name)}`);
    pos = e.end;
  }
  check(pos === dataLen, E.CORRUPT, `safetensors: ${dataLen - pos} bytes after the last tensor`);
  const tensors = new Map<string, SafeTensor>();
  for (const e of entries) tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: bytes.slice(dataStart + e.begin, dataStart + e.end) });
  return { tensors, metadata };
}

/** A tensor to write: raw little-endian bytes, or a typed array of the dtype's width. */
export interface SafeTensorInput {
  dtype: SafetensorsDType;
  shape: number[];
  data: Uint8Array | Float32Array | Int32Array | Uint32Array | Float64Array;
}

/**
 * Serialize tensors (in the given order) and string metadata. The header is padded with spaces
 * to a multiple of 8 so that every tensor of an 8-aligned buffer stays aligned. Throws
 * FormatError INVALID_ARGUMENT for a tensor whose bytes do not match its shape and dtype.
 */
export function writeSafetensors(tensors: Iterable<[string, SafeTensorInput]>, metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header[METADATA_KEY] = { ...metadata };
  const parts: Uint8Array[] = [];
  let off = 0;
  for (const [name, t] of tensors) {
    check(name !== METADATA_KEY && !Object.hasOwn(header, name), E.INVALID_ARGUMENT, `safetensors: duplicate or reserved tensor name ${JSON.stringify(name)}`);
    check(Object.hasOwn(SAFETENSORS_DTYPES, t.dtype), E.INVALID_ARGUMENT, `safetensors: unknown dtype ${t.dtype}`);
    const raw = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const count = t.shape.reduce((a, b) => a * b, 1);
    check(raw.length === count * SAFETENSORS_DTYPES[t.dtype], E.INVALID_ARGUMENT, `safetensors: ${name}: ${raw.length} bytes for shape [${t.shape}] ${t.dtype}`);
    // Object.defineProperty: a tensor may be named like an Object.prototype member.
    Object.defineProperty(header, name, { value: { dtype: t.dtype, shape: [...t.shape], data_offsets: [off, off + raw.length] }, enumerable: true });
    parts.push(raw);
    off += raw.length;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) json = Uint8Array.from([...json, ...new Array<number>(padded - json.length).fill(0x20)]);
  const out = new Uint8Array(8 + json.length + off);
  const view = new DataView(out.buffer);
  view.setUint32(0, json.length, true);
  view.setUint32(4, 0, true);
  out.set(json, 8);
  let p = 8 + json.length;
  for (const raw of parts) { out.set(raw, p); p += raw.length; }
  return out;
}

/** A tensor's bytes as float32 values (little-endian, copied: safe at any alignment). */
export function safeTensorFloat32(t: SafeTensor): Float32Array {
  check(t.dtype === "F32", E.CORRUPT, `safetensors: expected F32, got ${t.dtype}`);
  const v = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const out = new Float32Array(t.data.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = v.getFloat32(4 * i, true);
  return out;
}
