/**
 * The `.opq` container: encodeOpq / decodeOpq. SPEC.md says the same in prose and tables.
 *
 * Byte layout, format version 1. All integers little-endian; every section starts 4-byte aligned;
 * every padding byte is zero and checked.
 *
 *  1. Preamble, 16 bytes:
 *       0  magic            "OPQ\0" (4F 50 51 00)
 *       4  u32 version      OPQ_FORMAT_VERSION (1); any other → UNSUPPORTED_VERSION
 *       8  u32 headerLength H, bytes of msgpack that follow
 *      12  u32 headerCrc    CRC-32 of those H bytes
 *  2. Header at 16: msgpack map { sections: [[kind, codec, length, rawLength, crc32], …] },
 *     then zero padding to a multiple of 4.
 *  3. Sections, in table order: section i starts at align4(end of section i−1) (the first at
 *     align4(16 + H)), holds `length` stored bytes whose CRC-32 is `crc32`; the file ends at
 *     align4(end of the last section). Kinds (SECTION_KIND, append-only; unknown kinds are
 *     skipped after their checksum): 0 GRAPH, 1 KEPT, 2 WEIGHTS, each exactly once.
 *     Codecs (CODEC_TRAITS, append-only): 0 raw, 1 deflate (RFC 1951, `rawLength` = inflated
 *     size), 2 rans (WEIGHTS only), 3 deflate with the preset dictionary GRAPH_DICTIONARY_V1
 *     (GRAPH only). For WEIGHTS the codec names how every tensor's streams are coded; the
 *     section itself is never inflated as a whole (rawLength = length).
 *  4. GRAPH content: msgpack [model, tensors, metadata] (metadata: the OpqModel's free-form map,
 *     here rather than in the header so it is deflated with the names it repeats):
 *       model   = [irVersion, [[domain, version], …], producerName, graph]
 *       graph   = [name, nodes, inputs, outputs, [[name, tensor], …] initializers, valueInfo | nil]
 *       node    = [opType, domain, name, inputs, outputs, [[name, attrType, value], …]];
 *                 an output named `${name}_output_${k}` (k its position; the PyTorch exporter's
 *                 naming) is nil when name ≠ ""
 *                 attrType as onnx.proto AttributeType: 1 float, 2 int, 3 string, 4 tensor,
 *                 5 graph, 6 floats, 7 ints, 8 strings. Floats are msgpack numbers; a −0 (which
 *                 msgpack would make 0) goes as float64 LE bin (8 bytes; for floats, all of them)
 *       value   = [name, onnx dtype, shape: [int | string | nil, …] | nil]
 *       tensor  = [onnx dtype, dims] — its bytes are the next 8-aligned slice of KEPT content,
 *                 tensors taken in the order they appear here (depth-first); strings:
 *                 [8, dims, [string, …]] with nothing in KEPT
 *       tensors = [[name, dims, codebookKind, param, nnz, regionLength], …] (compressed
 *                 weights; param = step (a float as above) for kind 0 uniform, the table
 *                 length for kind 1 table; CODEBOOK_TRAITS, append-only)
 *  5. KEPT content: the kept tensors' raw little-endian bytes, each 8-aligned, zero padded;
 *     must be consumed exactly.
 *  6. WEIGHTS: one region per compressed tensor, in `tensors` order, each 4-aligned:
 *       f32 table values (kind table), then if nnz > 0 the gap and code-symbol streams
 *       (gaps g_k = i_k − i_{k−1} − 1, i_{−1} = −1; symbols zigzag(code) for uniform, the
 *       code itself for table):
 *       rans:    [gap model][symbol model] bit-packed, padded to an even byte count, then
 *                the pairs (g_k, s_k) in two interleaved rANS states sharing one stream of
 *                u16 words — codecs/rans.ts
 *       deflate: u32 gapsRaw, u32 gapsPacked, u32 symsRaw, u32 symsPacked, then the two
 *                deflated LEB128 varint streams
 *     Regions must tile the section exactly.
 *
 * Limits: every count is bounded by bytes a checksummed header declared (msgpack lengths by
 * the bytes decoded, inflated sizes by 1032 × the deflated size, kept tensors by KEPT content,
 * nnz by the bits of its stream), and compressed tensors by DecodeOptions.maxElements dense
 * elements in all.
 * @module
 */
import { Decoder, encode as msgpackEncode } from "@msgpack/msgpack";
import { check, FormatError, FORMAT_ERROR_CODES as E } from "./errors.ts";
import {
  type AttrValue, type Codebook, type CompressedTensor, type Dim, type DType, DTYPE_BYTES, type Graph, type Model,
  type Node, ONNX_DTYPE, type OpqModel, type Tensor, type TensorData, type ValueInfo, sizeOf,
} from "./graph.ts";
import { crc32 } from "./codecs/crc32.ts";
import { deflateBytes, inflateBytes } from "./codecs/deflate.ts";
import { GRAPH_DICTIONARY_V1 } from "./codecs/graph-dictionary.ts";
import { gapsToIndicesInPlace, indicesToGaps, readVarints, unzigzag, writeVarints, zigzag } from "./codecs/gaps.ts";
import { decodePairStream, decodeTable, encodePairStream, maxValueOf, type RansModel, readPairStreamHeader } from "./codecs/rans.ts";

/** "OPQ\0". */
export const OPQ_MAGIC: Uint8Array = new Uint8Array([0x4f, 0x50, 0x51, 0x00]);

/**
 * True if the bytes claim to be a `.opq` ("OPQ" prefix). Only three bytes are looked at, so a
 * file damaged in the fourth still goes to decodeOpq, which says what is wrong (BAD_MAGIC),
 * rather than to an ONNX parser.
 */
export function isOpqBytes(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] === OPQ_MAGIC[0] && bytes[1] === OPQ_MAGIC[1] && bytes[2] === OPQ_MAGIC[2];
}
/** The format version this build writes and reads. */
export const OPQ_FORMAT_VERSION = 1;
/** Bytes before the header. */
export const PREAMBLE_BYTES = 16;
/** Hard cap on the dense elements of all compressed tensors of one file (4 GiB as float32). */
export const MAX_DENSE_ELEMENTS = 2 ** 30;
/**
 * Default cap on dense elements per byte of the file: the densest real file measured holds 64
 * (ResNet-20 at sparsity 0.999, 1 bit: 270,608 elements in 4,252 B; LeNet-5 there: 39; the
 * default (0.5, 3): ~4), so 1024 leaves 16× headroom while a file whose dims were edited
 * (checksums recomputed) can no longer ask for gigabytes from a few kilobytes.
 */
export const DENSE_ELEMENTS_PER_FILE_BYTE = 1024;
/** The default cap never goes below this many elements (64 MiB as float32), for small files. */
export const MIN_DENSE_ELEMENTS = 2 ** 24;

/** The default dense-element cap of a file of `fileBytes` bytes. */
export function defaultMaxElements(fileBytes: number): number {
  return Math.min(MAX_DENSE_ELEMENTS, Math.max(MIN_DENSE_ELEMENTS, DENSE_ELEMENTS_PER_FILE_BYTE * fileBytes));
}
/** Subgraph nesting a file may use. */
const MAX_GRAPH_DEPTH = 32;
/** Sections a header may list. */
const MAX_SECTIONS = 64;

/** Section kinds (append-only ids; removed ones stay reserved). */
export const SECTION_KIND = { GRAPH: 0, KEPT: 1, WEIGHTS: 2 } as const;

/** Codec ids (append-only). */
export const CODEC = { RAW: 0, DEFLATE: 1, RANS: 2, DEFLATE_GRAPH_DICT_V1: 3 } as const;

/** What each codec id is and which section kinds it may code. Indexed by id; append-only. */
export const CODEC_TRAITS: readonly { id: number; name: string; sections: readonly number[] }[] = [
  { id: CODEC.RAW, name: "raw", sections: [SECTION_KIND.GRAPH, SECTION_KIND.KEPT] },
  { id: CODEC.DEFLATE, name: "deflate", sections: [SECTION_KIND.GRAPH, SECTION_KIND.KEPT, SECTION_KIND.WEIGHTS] },
  { id: CODEC.RANS, name: "rans", sections: [SECTION_KIND.WEIGHTS] },
  { id: CODEC.DEFLATE_GRAPH_DICT_V1, name: "deflate+graph-dict-v1", sections: [SECTION_KIND.GRAPH] },
];

/**
 * Codebook kinds by id (append-only): how a code becomes the non-negative symbol the entropy
 * coders see, and which symbols are valid. `uniform` codes are signed (value = step · code,
 * OPQ Eq. 10) so they are zigzagged; `table` codes index a stored f32 table.
 */
export const CODEBOOK_TRAITS = [
  { id: 0, kind: "uniform", toSymbol: zigzag, fromSymbol: unzigzag },
  { id: 1, kind: "table", toSymbol: (c: number) => c, fromSymbol: (s: number) => s },
] as const;

/** Weight codecs a caller may choose. */
export type WeightCodec = "rans" | "deflate";

/** Options of encodeOpq. */
export interface EncodeOptions {
  /** How gaps and codes of compressed tensors are entropy-coded (default "rans"). */
  codec?: WeightCodec;
}

/** Options of decodeOpq. */
export interface DecodeOptions {
  /**
   * Cap on the dense elements of all compressed tensors. Default proportionate to the file:
   * DENSE_ELEMENTS_PER_FILE_BYTE per byte (at least MIN_DENSE_ELEMENTS, at most
   * MAX_DENSE_ELEMENTS); a caller that trusts the file may raise it.
   */
  maxElements?: number;
  /**
   * Decode each compressed tensor's streams only when its `indices` or `codes` are first read
   * (and again after `releaseDecoded`), so a reader that transcodes tensors one by one never
   * holds all of them decoded at once. A corrupt stream then throws its FormatError at that read.
   */
  lazyWeights?: boolean;
}

/** Forgetters of lazily decoded tensors (DecodeOptions.lazyWeights). */
const RELEASE = new WeakMap<CompressedTensor, () => void>();

/**
 * Drop the decoded `indices` and `codes` of a tensor from `decodeOpq(…, { lazyWeights: true })`
 * (they are decoded again if read again). No effect on other tensors.
 */
export function releaseDecoded(t: CompressedTensor): void {
  RELEASE.get(t)?.();
}

/** A section as the header lists it, with where it sits. */
export interface SectionInfo {
  kind: number;
  codec: number;
  offset: number;
  length: number;
  rawLength: number;
  crc32: number;
}

/** Per compressed tensor: where its bytes went (for inspectOpq). */
export interface TensorRegionInfo {
  name: string;
  /** Where the region starts inside the WEIGHTS section. */
  offset: number;
  regionBytes: number;
  codebookBytes: number;
  /** Bytes of the coder's tables (rans) or stream framing (deflate). */
  tableBytes: number;
  /** Bytes of the coded gap and symbol streams after the tables. */
  streamBytes: number;
}

/** Everything decodeOpq learned, for inspectOpq. */
export interface OpqParts {
  model: OpqModel;
  version: number;
  headerBytes: number;
  sections: SectionInfo[];
  weightCodec: number;
  regions: TensorRegionInfo[];
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const align4 = (n: number): number => (n + 3) & ~3;
const align8 = (n: number): number => (n + 7) & ~7;

const DTYPE_BY_ID: Record<number, DType> = Object.fromEntries(Object.entries(ONNX_DTYPE).map(([k, v]) => [v, k as DType]));
/** AttributeProto.AttributeType ids of the attribute kinds graph.ts models. */
const ATTR_TYPE_ID = { float: 1, int: 2, string: 3, tensor: 4, graph: 5, floats: 6, ints: 7, strings: 8 } as const;
const ATTR_TYPE_BY_ID: Record<number, AttrValue["type"]> = Object.fromEntries(Object.entries(ATTR_TYPE_ID).map(([k, v]) => [v, k as AttrValue["type"]]));
/** The typed-array class each fixed-size dtype is stored in (graph.ts allocData). */
const DTYPE_ARRAY: Record<Exclude<DType, "string">, { new (b: ArrayBuffer): TensorData; name: string }> = {
  float32: Float32Array, uint8: Uint8Array, int8: Int8Array, uint16: Uint16Array, int16: Int16Array, int32: Int32Array,
  int64: BigInt64Array, bool: Uint8Array, float16: Uint16Array, float64: Float64Array, uint32: Uint32Array, uint64: BigUint64Array,
};

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
/**
 * A float on the wire: a msgpack number (float64, or int when integral, both exact), except −0,
 * which msgpack would turn into 0: that one goes as its 8 float64 LE bytes. Plain numbers also
 * let deflate match a step against the same value in the metadata.
 */
function floatWire(v: number): number | Uint8Array {
  return Object.is(v, -0) ? bytesOf(new Float64Array([v])) : v;
}
/** Floats on the wire: an array of numbers, or float64 LE bytes if any is −0. */
function floatsWire(v: number[]): number[] | Uint8Array {
  return v.some((x) => Object.is(x, -0)) ? bytesOf(new Float64Array(v)) : v;
}

// ---------------------------------------------------------------------------------------------
// Encoding

/** msgpack-encode, turning the library's errors (e.g. metadata nested too deep) into INVALID_ARGUMENT. */
function msgpackEncodeChecked(value: unknown, what: string): Uint8Array {
  try {
    return msgpackEncode(value);
  } catch (cause) {
    throw new FormatError(E.INVALID_ARGUMENT, `${what}: cannot be encoded (${(cause as Error).message})`, { cause });
  }
}

const isStr = (v: unknown): v is string => typeof v === "string";
const isInt = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v);

/** Collects kept-tensor bytes in visiting order (§5). */
class KeptWriter {
  parts: Uint8Array[] = [];
  length = 0;
  add(data: Uint8Array): void {
    const pad = align8(this.length) - this.length;
    if (pad) this.parts.push(new Uint8Array(pad));
    this.parts.push(data);
    this.length += pad + data.length;
  }
  finish(): Uint8Array {
    const out = new Uint8Array(this.length);
    let p = 0;
    for (const part of this.parts) { out.set(part, p); p += part.length; }
    return out;
  }
}

function tensorToWire(t: Tensor, kept: KeptWriter, what: string): unknown[] {
  const id = ONNX_DTYPE[t.dtype];
  check(id !== undefined, E.INVALID_ARGUMENT, `${what}: unknown dtype ${t.dtype}`);
  check(Array.isArray(t.dims) && t.dims.every((d) => Number.isSafeInteger(d) && d >= 0), E.INVALID_ARGUMENT, `${what}: bad dims`);
  const n = sizeOf(t.dims);
  if (t.dtype === "string") {
    check(Array.isArray(t.data) && t.data.length === n && t.data.every((s) => typeof s === "string"), E.INVALID_ARGUMENT, `${what}: string data does not match dims`);
    return [id, t.dims, t.data];
  }
  const cls = DTYPE_ARRAY[t.dtype];
  check(t.data instanceof (cls as unknown as typeof Uint8Array) && (t.data as Uint8Array).length === n, E.INVALID_ARGUMENT, `${what}: ${t.dtype} data must be a ${cls.name} of ${n} elements`);
  kept.add(bytesOf(t.data as Uint8Array));
  return [id, t.dims];
}

function attrToWire(a: AttrValue, kept: KeptWriter, depth: number, what: string): unknown {
  switch (a.type) {
    case "float": check(typeof a.value === "number", E.INVALID_ARGUMENT, `${what}: float must be a number`); return floatWire(a.value);
    case "floats": check(Array.isArray(a.value) && a.value.every((x) => typeof x === "number"), E.INVALID_ARGUMENT, `${what}: floats must be numbers`); return floatsWire(a.value);
    case "int": check(isInt(a.value), E.INVALID_ARGUMENT, `${what}: int attribute must be an integer`); return a.value;
    case "ints": check(Array.isArray(a.value) && a.value.every(isInt), E.INVALID_ARGUMENT, `${what}: ints must be integers`); return a.value;
    case "string": check(isStr(a.value), E.INVALID_ARGUMENT, `${what}: string attribute must be a string`); return a.value;
    case "strings": check(Array.isArray(a.value) && a.value.every(isStr), E.INVALID_ARGUMENT, `${what}: strings must be strings`); return a.value;
    case "tensor": return tensorToWire(a.value, kept, what);
    case "graph": return graphToWire(a.value, kept, depth + 1);
  }
  throw new FormatError(E.INVALID_ARGUMENT, `${what}: unknown attribute type`);
}

/**
 * The name the PyTorch exporter gives output k of a node named `name`. On the wire such an output
 * is nil (§5): it is rebuilt exactly, and it would otherwise repeat every node's name.
 */
function defaultOutputName(name: string, k: number): string {
  return `${name}_output_${k}`;
}

function valueInfoToWire(v: ValueInfo): unknown[] {
  check(isStr(v.name) && ONNX_DTYPE[v.dtype] !== undefined && (v.shape === null || (Array.isArray(v.shape) && v.shape.every((d) => d === null || isStr(d) || isInt(d)))),
    E.INVALID_ARGUMENT, () => `value info ${v.name}: bad name, dtype or shape`);
  return [v.name, ONNX_DTYPE[v.dtype], v.shape];
}

function graphToWire(g: Graph, kept: KeptWriter, depth: number): unknown[] {
  check(depth <= MAX_GRAPH_DEPTH, E.INVALID_ARGUMENT, "subgraphs nested too deep");
  const inits = Object.entries(g.initializers).map(([name, t]) => [name, tensorToWire(t, kept, `initializer ${name}`)]);
  check(isStr(g.name), E.INVALID_ARGUMENT, "graph name must be a string");
  const nodes = g.nodes.map((n: Node) => {
    check(isStr(n.opType) && isStr(n.domain) && isStr(n.name) && n.inputs.every(isStr) && n.outputs.every(isStr), E.INVALID_ARGUMENT,
      () => `node ${n.name}: op type, domain, name, inputs and outputs must be strings`);
    const attrs = Object.entries(n.attrs).map(([k, a]) => [k, ATTR_TYPE_ID[a.type], attrToWire(a, kept, depth, `${n.name}.${k}`)]);
    const outputs = n.outputs.map((o, k) => (n.name !== "" && o === defaultOutputName(n.name, k) ? null : o));
    return [n.opType, n.domain, n.name, n.inputs, outputs, attrs];
  });
  return [g.name, nodes, g.inputs.map(valueInfoToWire), g.outputs.map(valueInfoToWire), inits, g.valueInfo ? g.valueInfo.map(valueInfoToWire) : null];
}

/** Check a compressed tensor is encodable and return its gap and symbol streams. */
function tensorStreams(t: CompressedTensor, kindId: number): { gaps: Uint32Array; syms: Uint32Array } {
  const what = `compressed tensor ${t.name}`;
  check(typeof t.name === "string", E.INVALID_ARGUMENT, "compressed tensor without a name");
  check(Array.isArray(t.dims) && t.dims.every((d) => Number.isSafeInteger(d) && d >= 0), E.INVALID_ARGUMENT, `${what}: bad dims`);
  const size = sizeOf(t.dims);
  check(size <= 2 ** 32, E.INVALID_ARGUMENT, `${what}: more than 2^32 elements`);
  check(t.indices instanceof Uint32Array && t.codes instanceof Int32Array && t.indices.length === t.codes.length, E.INVALID_ARGUMENT, `${what}: indices and codes must be a Uint32Array and an Int32Array of one length`);
  const gaps = indicesToGaps(t.indices);
  check(t.indices.length === 0 || t.indices[t.indices.length - 1]! < size, E.INVALID_ARGUMENT, `${what}: index outside the tensor`);
  const traits = CODEBOOK_TRAITS[kindId]!;
  const syms = new Uint32Array(t.codes.length);
  const tableLen = t.codebook.kind === "table" ? t.codebook.values.length : 0;
  for (let k = 0; k < syms.length; k++) {
    const c = t.codes[k]!;
    check(kindId !== 1 || (c >= 0 && c < tableLen), E.INVALID_ARGUMENT, () => `${what}: code ${c} outside its table`);
    syms[k] = traits.toSymbol(c);
  }
  return { gaps, syms };
}

/** The region bytes after the codebook table: the tensor's gap and symbol streams (§6). */
function encodeStreams(gaps: Uint32Array, syms: Uint32Array, codec: number): Uint8Array {
  if (gaps.length === 0) return new Uint8Array(0);
  if (codec === CODEC.RANS) return encodePairStream(gaps, syms).bytes;
  const g = writeVarints(gaps), s = writeVarints(syms);
  const gz = deflateBytes(g), sz = deflateBytes(s);
  const out = new Uint8Array(16 + gz.length + sz.length);
  new Uint32Array(out.buffer, 0, 4).set([g.length, gz.length, s.length, sz.length]);
  out.set(gz, 16);
  out.set(sz, 16 + gz.length);
  return out;
}

/** The smallest of raw, deflate and (for GRAPH) deflate with the graph dictionary. */
function packSection(kind: number, content: Uint8Array): { kind: number; codec: number; bytes: Uint8Array; rawLength: number } {
  let best = { kind, codec: CODEC.RAW as number, bytes: content, rawLength: content.length };
  const z = deflateBytes(content);
  if (z.length < best.bytes.length) best = { ...best, codec: CODEC.DEFLATE, bytes: z };
  if (kind === SECTION_KIND.GRAPH) {
    const zd = deflateBytes(content, 9, GRAPH_DICTIONARY_V1);
    if (zd.length < best.bytes.length) best = { ...best, codec: CODEC.DEFLATE_GRAPH_DICT_V1, bytes: zd };
  }
  return best;
}

/**
 * Serialize an OpqModel to `.opq` bytes (layout at the top of this file). Throws FormatError
 * INVALID_ARGUMENT if the model breaks an invariant of graph.ts (unsorted indices, a code
 * outside its table, data that does not match its dtype or dims, ...).
 */
export function encodeOpq(m: OpqModel, options: EncodeOptions = {}): Uint8Array {
  check(LITTLE_ENDIAN, E.UNSUPPORTED, ".opq needs a little-endian host");
  const codecName = options.codec ?? "rans";
  check(codecName === "rans" || codecName === "deflate", E.INVALID_ARGUMENT, `unknown codec ${codecName}`);
  const codec = codecName === "rans" ? CODEC.RANS : CODEC.DEFLATE;
  const kept = new KeptWriter();
  const mo = m.model;
  check(isInt(mo.irVersion) && isStr(mo.producerName) && mo.opsetImports.every((o) => isStr(o.domain) && isInt(o.version)), E.INVALID_ARGUMENT, "bad irVersion, producerName or opset imports");
  check(typeof m.metadata === "object" && m.metadata !== null && !Array.isArray(m.metadata), E.INVALID_ARGUMENT, "metadata must be a plain object");
  const modelWire = [mo.irVersion, mo.opsetImports.map((o) => [o.domain, o.version]), mo.producerName, graphToWire(mo.graph, kept, 0)];

  const names = new Set<string>();
  const descriptors: unknown[] = [];
  const regions: Uint8Array[] = [];
  for (const t of m.compressed) {
    check(!names.has(t.name) && !Object.hasOwn(mo.graph.initializers, t.name), E.INVALID_ARGUMENT, `compressed tensor ${t.name} is defined twice`);
    names.add(t.name);
    const kindId = CODEBOOK_TRAITS.findIndex((c) => c.kind === t.codebook?.kind);
    check(kindId >= 0, E.INVALID_ARGUMENT, `unknown codebook kind of ${t.name}`);
    check(t.codebook.kind === "uniform" ? typeof t.codebook.step === "number" : t.codebook.values instanceof Float32Array,
      E.INVALID_ARGUMENT, `bad codebook of ${t.name}`);
    const { gaps, syms } = tensorStreams(t, kindId);
    const table = t.codebook.kind === "table" ? bytesOf(t.codebook.values) : new Uint8Array(0);
    const streams = encodeStreams(gaps, syms, codec);
    const region = new Uint8Array(table.length + streams.length);
    region.set(table);
    region.set(streams, table.length);
    regions.push(region);
    const param = t.codebook.kind === "uniform" ? floatWire(t.codebook.step) : t.codebook.values.length;
    descriptors.push([t.name, t.dims, kindId, param, t.indices.length, region.length]);
  }
  let weightsLength = 0;
  for (const r of regions) weightsLength = align4(weightsLength) + r.length;
  const weights = new Uint8Array(weightsLength);
  for (let i = 0, p = 0; i < regions.length; i++) { p = align4(p); weights.set(regions[i]!, p); p += regions[i]!.length; }

  const sections = [
    packSection(SECTION_KIND.GRAPH, msgpackEncodeChecked([modelWire, descriptors, m.metadata], "graph or metadata")),
    packSection(SECTION_KIND.KEPT, kept.finish()),
    { kind: SECTION_KIND.WEIGHTS, codec, bytes: weights, rawLength: weights.length },
  ];
  const header = msgpackEncode({ sections: sections.map((s) => [s.kind, s.codec, s.bytes.length, s.rawLength, crc32(s.bytes)]) });

  // Measure, allocate once, write.
  let total = align4(PREAMBLE_BYTES + header.length);
  const offsets = sections.map((s) => { const o = total; total = align4(o + s.bytes.length); return o; });
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  out.set(OPQ_MAGIC, 0);
  dv.setUint32(4, OPQ_FORMAT_VERSION, true);
  dv.setUint32(8, header.length, true);
  dv.setUint32(12, crc32(header), true);
  out.set(header, PREAMBLE_BYTES);
  sections.forEach((s, i) => out.set(s.bytes, offsets[i]!));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoding: every check throws a FormatError; nothing is allocated before its size is bounded.

const corrupt = (what: string): FormatError => new FormatError(E.CORRUPT, what);

function msgpackDecode(bytes: Uint8Array, what: string): unknown {
  const n = bytes.length;
  const decoder = new Decoder({ maxStrLength: n, maxBinLength: n, maxArrayLength: n, maxMapLength: n, maxExtLength: n });
  try {
    return decoder.decode(bytes);
  } catch (cause) {
    throw new FormatError(E.CORRUPT, `${what}: bad msgpack (${(cause as Error).message})`, { cause });
  }
}

function arr(v: unknown, what: string, len?: number): unknown[] {
  if (!Array.isArray(v) || (len !== undefined && v.length !== len)) throw corrupt(`${what}: expected an array${len !== undefined ? ` of ${len}` : ""}`);
  return v;
}
function str(v: unknown, what: string): string {
  if (typeof v !== "string") throw corrupt(`${what}: expected a string`);
  return v;
}
function int(v: unknown, what: string, min = -Infinity, max = Infinity): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) throw corrupt(`${what}: expected an integer in [${min}, ${max}]`);
  return v;
}
function bin(v: unknown, what: string, len?: number): Uint8Array {
  if (!(v instanceof Uint8Array) || (len !== undefined && v.length !== len)) throw corrupt(`${what}: expected ${len ?? "some"} bytes`);
  return v;
}
/** Inverse of floatsWire: numbers, or float64 LE bytes. */
function floatsOf(v: unknown, what: string): number[] {
  if (Array.isArray(v)) return v.map((x) => floatOf(x, what));
  const b = bin(v, what);
  if (b.length % 8) throw corrupt(`${what}: float64 bytes not a multiple of 8`);
  return Array.from(new Float64Array(b.slice().buffer));
}
/** Inverse of floatWire. */
function floatOf(v: unknown, what: string): number {
  if (typeof v === "number") return v;
  return floatsOf(bin(v, what, 8), what)[0]!;
}
function dtypeOf(v: unknown, what: string): DType {
  const d = DTYPE_BY_ID[int(v, what, 0, 255)];
  if (!d) throw new FormatError(E.UNSUPPORTED, `${what}: unknown dtype id ${v}`);
  return d;
}
function dimsOf(v: unknown, what: string): { dims: number[]; size: number } {
  const dims = arr(v, what).map((d) => int(d, what, 0));
  let size = 1;
  for (const d of dims) { size *= d; if (size > 2 ** 53) throw new FormatError(E.TOO_LARGE, `${what}: too many elements`); }
  return { dims, size };
}
/**
 * A Record built from wire pairs; repeated keys are CORRUPT. Keys are defined, not assigned, so
 * a tensor named "__proto__" (legal in ONNX) is an own property and never touches the prototype.
 */
function record<T>(pairs: unknown, what: string, value: (v: unknown, key: string) => T): Record<string, T> {
  const out: Record<string, T> = {};
  for (const p of arr(pairs, what)) {
    const [k, v] = arr(p, what, 2);
    const key = str(k, what);
    if (Object.hasOwn(out, key)) throw corrupt(`${what}: repeated key ${JSON.stringify(key)}`);
    Object.defineProperty(out, key, { value: value(v, key), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** Reads kept tensors from KEPT content in visiting order (§5). */
class KeptReader {
  pos = 0;
  constructor(readonly content: Uint8Array) {}
  take(byteLength: number, what: string): ArrayBuffer {
    const start = align8(this.pos);
    check(start + byteLength <= this.content.length, E.CORRUPT, () => `${what}: kept tensor bytes run past the KEPT section`);
    for (let i = this.pos; i < start; i++) check(this.content[i] === 0, E.CORRUPT, "nonzero padding in KEPT");
    this.pos = start + byteLength;
    return this.content.slice(start, this.pos).buffer;
  }
}

function tensorFromWire(v: unknown, kept: KeptReader, what: string): Tensor {
  const w = arr(v, what);
  const dtype = dtypeOf(w[0], `${what} dtype`);
  const { dims, size } = dimsOf(w[1], `${what} dims`);
  if (dtype === "string") {
    const data = arr(w[2], `${what} strings`, size).map((s) => str(s, what));
    check(w.length === 3, E.CORRUPT, `${what}: bad tensor`);
    return { dtype, dims, data };
  }
  check(w.length === 2, E.CORRUPT, `${what}: bad tensor`);
  const bytes = size * DTYPE_BYTES[dtype];
  check(bytes <= kept.content.length, E.CORRUPT, `${what}: larger than the KEPT section`);
  return { dtype, dims, data: new DTYPE_ARRAY[dtype](kept.take(bytes, what)) };
}

function valueInfoFromWire(v: unknown, what: string): ValueInfo {
  const [name, dt, shape] = arr(v, what, 3);
  return {
    name: str(name, what),
    dtype: dtypeOf(dt, what),
    shape: shape === null ? null : arr(shape, what).map((d): Dim => (d === null ? null : typeof d === "string" ? d : int(d, what))),
  };
}

function attrFromWire(v: unknown, kept: KeptReader, depth: number, what: string): AttrValue {
  const [typeId, value] = arr(v, what, 2);
  const type = ATTR_TYPE_BY_ID[int(typeId, what, 0, 255)];
  switch (type) {
    case "float": return { type, value: floatOf(value, what) };
    case "floats": return { type, value: floatsOf(value, what) };
    case "int": return { type, value: int(value, what) };
    case "string": return { type, value: str(value, what) };
    case "ints": return { type, value: arr(value, what).map((x) => int(x, what)) };
    case "strings": return { type, value: arr(value, what).map((x) => str(x, what)) };
    case "tensor": return { type, value: tensorFromWire(value, kept, what) };
    case "graph": return { type, value: graphFromWire(value, kept, depth + 1) };
  }
  throw new FormatError(E.UNSUPPORTED, `${what}: unknown attribute type ${typeId}`);
}

function graphFromWire(v: unknown, kept: KeptReader, depth: number): Graph {
  check(depth <= MAX_GRAPH_DEPTH, E.CORRUPT, "subgraphs nested too deep");
  const [name, nodes, inputs, outputs, inits, valueInfo] = arr(v, "graph", 6);
  // Initializers first, then node attributes in order: the order the encoder filled KEPT.
  const initializers = record(inits, "initializers", (t, k) => tensorFromWire(t, kept, `initializer ${k}`));
  const g: Graph = {
    name: str(name, "graph name"),
    nodes: arr(nodes, "nodes").map((nv, i): Node => {
      const what = `node ${i}`;
      const [opType, domain, nodeName, ins, outs, attrs] = arr(nv, what, 6);
      const pairs = arr(attrs, `${what} attributes`).map((a) => { const [k, type, value] = arr(a, `${what} attribute`, 3); return [k, [type, value]]; });
      return {
        opType: str(opType, what), domain: str(domain, what), name: str(nodeName, what),
        inputs: arr(ins, what).map((x) => str(x, what)),
        outputs: arr(outs, what).map((x, k) => (x === null && nodeName !== "" ? defaultOutputName(str(nodeName, what), k) : str(x, what))),
        attrs: record(pairs, `${what} attributes`, (av, k) => attrFromWire(av, kept, depth, `${what}.${k}`)),
      };
    }),
    inputs: arr(inputs, "inputs").map((x) => valueInfoFromWire(x, "input")),
    outputs: arr(outputs, "outputs").map((x) => valueInfoFromWire(x, "output")),
    initializers,
  };
  if (valueInfo !== null) g.valueInfo = arr(valueInfo, "valueInfo").map((x) => valueInfoFromWire(x, "valueInfo"));
  return g;
}

function modelFromWire(v: unknown, kept: KeptReader): Model {
  const [ir, opsets, producer, graph] = arr(v, "model", 4);
  return {
    irVersion: int(ir, "irVersion"),
    opsetImports: arr(opsets, "opsets").map((o) => { const [d, ver] = arr(o, "opset", 2); return { domain: str(d, "opset"), version: int(ver, "opset") }; }),
    producerName: str(producer, "producerName"),
    graph: graphFromWire(graph, kept, 0),
  };
}

/**
 * Decode a region's streams (§6) into gaps and symbols. Nothing of size nnz is allocated before
 * nnz is bounded by the stream: rANS by its bits (decodePairStream), deflate by 1032 × its bytes.
 */
function decodeStreams(stream: Uint8Array, codec: number, nnz: number): { gaps: Uint32Array; syms: Uint32Array; tableBytes: number } {
  if (nnz === 0) {
    check(stream.length === 0, E.CORRUPT, "bytes in an empty tensor's region");
    return { gaps: new Uint32Array(0), syms: new Uint32Array(0), tableBytes: 0 };
  }
  if (codec === CODEC.RANS) {
    const r = decodePairStream(stream, nnz);
    return { gaps: r.a, syms: r.b, tableBytes: r.tableBytes };
  }
  check(stream.length >= 16, E.CORRUPT, "deflate region shorter than its lengths");
  const dv = new DataView(stream.buffer, stream.byteOffset, 16);
  const [gRaw, gz, sRaw, sz] = [0, 4, 8, 12].map((o) => dv.getUint32(o, true)) as [number, number, number, number];
  check(16 + gz + sz === stream.length, E.CORRUPT, "deflate region lengths do not add up");
  check(gRaw >= nnz && gRaw <= 5 * nnz && sRaw >= nnz && sRaw <= 5 * nnz, E.CORRUPT, "varint stream lengths do not fit nnz");
  const gapBytes = inflateBytes(stream.subarray(16, 16 + gz), gRaw), symBytes = inflateBytes(stream.subarray(16 + gz), sRaw);
  return { gaps: readVarints(gapBytes, new Uint32Array(nnz)), syms: readVarints(symBytes, new Uint32Array(nnz)), tableBytes: 16 };
}

/** decodeOpq with everything inspectOpq needs (sections, per-tensor region sizes). */
export function decodeOpqParts(bytes: Uint8Array, options: DecodeOptions = {}): OpqParts {
  check(LITTLE_ENDIAN, E.UNSUPPORTED, ".opq needs a little-endian host");
  check(bytes instanceof Uint8Array, E.INVALID_ARGUMENT, "decodeOpq expects a Uint8Array");
  const n = bytes.length;
  for (let i = 0; i < 4; i++) {
    if (i >= n) throw new FormatError(E.TRUNCATED, "file ends inside the magic");
    check(bytes[i] === OPQ_MAGIC[i], E.BAD_MAGIC, "not a .opq file (bad magic)");
  }
  check(n >= PREAMBLE_BYTES, E.TRUNCATED, "file ends inside the preamble");
  const dv = new DataView(bytes.buffer, bytes.byteOffset, n);
  const version = dv.getUint32(4, true);
  check(version === OPQ_FORMAT_VERSION, E.UNSUPPORTED_VERSION, () => `.opq format version ${version}; this build reads ${OPQ_FORMAT_VERSION}`);
  const headerLength = dv.getUint32(8, true);
  check(PREAMBLE_BYTES + headerLength <= n, E.TRUNCATED, "file ends inside the header");
  const headerBytes = bytes.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + headerLength);
  check(crc32(headerBytes) === dv.getUint32(12, true), E.CHECKSUM, "header checksum mismatch");
  const header = msgpackDecode(headerBytes, "header");
  if (typeof header !== "object" || header === null || Array.isArray(header) || header instanceof Uint8Array) throw corrupt("header is not a map");
  const keys = Object.keys(header).sort().join();
  check(keys === "sections", E.CORRUPT, `header keys ${keys}`);
  const { sections: sectionWire } = header as { sections: unknown };

  // Section table: lay out, check the total length first (a truncated file is TRUNCATED), then checksums.
  const wire = arr(sectionWire, "sections");
  check(wire.length <= MAX_SECTIONS, E.CORRUPT, "too many sections");
  let end = align4(PREAMBLE_BYTES + headerLength);
  const sections: SectionInfo[] = wire.map((s, i) => {
    const [kind, codec, length, rawLength, crc] = arr(s, `section ${i}`, 5);
    const info: SectionInfo = {
      kind: int(kind, "section kind", 0, 255), codec: int(codec, "section codec", 0, 255), offset: end,
      length: int(length, "section length", 0, 2 ** 32), rawLength: int(rawLength, "section rawLength", 0, 2 ** 32),
      crc32: int(crc, "section crc", 0, 2 ** 32 - 1),
    };
    end = align4(end + info.length);
    return info;
  });
  check(end <= n, E.TRUNCATED, () => `file is ${n} bytes, its sections need ${end}`);
  check(end === n, E.CORRUPT, () => `${n - end} bytes after the last section`);
  let prevEnd = PREAMBLE_BYTES + headerLength;
  for (const s of sections) {
    for (let i = prevEnd; i < s.offset; i++) check(bytes[i] === 0, E.CORRUPT, "nonzero padding");
    prevEnd = s.offset + s.length;
    check(crc32(bytes.subarray(s.offset, prevEnd)) === s.crc32, E.CHECKSUM, () => `section ${s.kind} checksum mismatch`);
  }
  for (let i = prevEnd; i < n; i++) check(bytes[i] === 0, E.CORRUPT, "nonzero padding");

  const find = (kind: number): SectionInfo => {
    const found = sections.filter((s) => s.kind === kind);
    check(found.length === 1, E.CORRUPT, `need exactly one section of kind ${kind}, found ${found.length}`);
    const s = found[0]!;
    if (!CODEC_TRAITS[s.codec]) throw new FormatError(E.UNKNOWN_CODEC, `unknown codec id ${s.codec}`);
    check(CODEC_TRAITS[s.codec]!.sections.includes(kind), E.CORRUPT, `codec ${CODEC_TRAITS[s.codec]!.name} cannot code section kind ${kind}`);
    return s;
  };
  const content = (s: SectionInfo): Uint8Array => {
    const stored = bytes.subarray(s.offset, s.offset + s.length);
    if (s.codec === CODEC.DEFLATE) return inflateBytes(stored, s.rawLength);
    if (s.codec === CODEC.DEFLATE_GRAPH_DICT_V1) return inflateBytes(stored, s.rawLength, GRAPH_DICTIONARY_V1);
    check(s.rawLength === s.length, E.CORRUPT, "raw section with a different raw length");
    return stored.slice();
  };
  const graphSection = find(SECTION_KIND.GRAPH), keptSection = find(SECTION_KIND.KEPT), weightSection = find(SECTION_KIND.WEIGHTS);

  const kept = new KeptReader(content(keptSection));
  const graphContent = content(graphSection);
  const [modelWire, tensorsWire, metadata] = arr(msgpackDecode(graphContent, "graph section"), "graph section", 3);
  if (typeof metadata !== "object" || metadata === null || Array.isArray(metadata) || metadata instanceof Uint8Array) throw corrupt("metadata is not a map");
  const model = modelFromWire(modelWire, kept);
  check(kept.pos === kept.content.length, E.CORRUPT, "KEPT section has bytes no tensor uses");

  // Compressed tensors.
  const weights = bytes.subarray(weightSection.offset, weightSection.offset + weightSection.length);
  check(weightSection.rawLength === weightSection.length, E.CORRUPT, "weights section with a different raw length");
  const maxElements = options.maxElements ?? defaultMaxElements(n);
  let elements = 0, pos = 0;
  const compressed: CompressedTensor[] = [];
  const regions: TensorRegionInfo[] = [];
  const names = new Set<string>();
  for (const [i, tw] of arr(tensorsWire, "tensors").entries()) {
    const what = `compressed tensor ${i}`;
    const [nameW, dimsW, kindW, param, nnzW, lengthW] = arr(tw, what, 6);
    const name = str(nameW, what);
    check(!names.has(name) && !Object.hasOwn(model.graph.initializers, name), E.CORRUPT, `${what}: name ${name} defined twice`);
    names.add(name);
    const { dims, size } = dimsOf(dimsW, what);
    check(size <= 2 ** 32, E.TOO_LARGE, `${what}: more than 2^32 elements`);
    elements += size;
    check(elements <= maxElements, E.TOO_LARGE, () => `compressed tensors exceed ${maxElements} dense elements${options.maxElements === undefined ? ` (the default for a ${n}-byte file: ${DENSE_ELEMENTS_PER_FILE_BYTE} per byte; raise DecodeOptions.maxElements to accept it)` : ""}`);
    const kindId = int(kindW, what, 0, 255);
    const traits = CODEBOOK_TRAITS[kindId as 0 | 1];
    if (!traits) throw new FormatError(E.UNSUPPORTED, `${what}: unknown codebook kind ${kindId}`);
    const nnz = int(nnzW, `${what} nnz`, 0, size);
    const length = int(lengthW, `${what} region length`, 0);
    const start = align4(pos);
    for (let j = pos; j < Math.min(start, weights.length); j++) check(weights[j] === 0, E.CORRUPT, "nonzero padding in WEIGHTS");
    check(start + length <= weights.length, E.CORRUPT, `${what}: region runs past the WEIGHTS section`);
    const region = weights.subarray(start, start + length);
    pos = start + length;

    let codebook: Codebook, tableBytes = 0;
    if (traits.kind === "uniform") {
      codebook = { kind: "uniform", step: floatOf(param, `${what} step`) };
    } else {
      const len = int(param, `${what} table length`, 0, Math.floor(length / 4));
      codebook = { kind: "table", values: new Float32Array(region.slice(0, 4 * len).buffer) };
      tableBytes = 4 * len;
    }
    const stream = region.subarray(tableBytes);
    const decode = () => {
      const { gaps: indices, syms, tableBytes: coderTableBytes } = decodeStreams(stream, weightSection.codec, nnz);
      gapsToIndicesInPlace(indices, size);
      const codes = new Int32Array(syms.buffer);
      if (traits.kind === "uniform") {
        for (let k = 0; k < nnz; k++) codes[k] = unzigzag(syms[k]!);
      } else {
        const len = (codebook as { values: Float32Array }).values.length;
        for (let k = 0; k < nnz; k++) check(syms[k]! < len, E.CORRUPT, () => `${what}: code ${syms[k]} outside a table of ${len}`);
      }
      return { indices, codes, coderTableBytes };
    };
    if (options.lazyWeights) {
      const t = lazyTensor(name, dims, codebook, nnz, decode);
      if (weightSection.codec === CODEC.RANS && nnz > 0) ENCODED.set(t, { stream, size, zigzag: traits.kind === "uniform" });
      compressed.push(t);
      regions.push({ name, offset: start, regionBytes: length, codebookBytes: tableBytes, tableBytes: NaN, streamBytes: NaN });
      continue;
    }
    const { indices, codes, coderTableBytes } = decode();
    compressed.push({ name, dims, codebook, indices, codes });
    regions.push({ name, offset: start, regionBytes: length, codebookBytes: tableBytes, tableBytes: coderTableBytes, streamBytes: stream.length - coderTableBytes });
  }
  check(pos === weights.length, E.CORRUPT, "WEIGHTS section has bytes no tensor uses");
  return {
    model: { model, compressed, metadata: metadata as Record<string, unknown> },
    version, headerBytes: PREAMBLE_BYTES + headerLength, sections, weightCodec: weightSection.codec, regions,
  };
}

/** The rANS pair stream of each lazily decoded tensor, for encodedWeights. */
const ENCODED = new WeakMap<CompressedTensor, { stream: Uint8Array; size: number; zigzag: boolean; parsed?: EncodedWeights }>();

/** One model of an rANS pair stream, ready for a decoder: its per-slot table (decodeTable), scale bits, direct count. */
export interface EncodedModel {
  table: Uint32Array;
  scaleBits: number;
  direct: number;
  /** Largest value the model can decode. */
  maxValue: number;
}

/**
 * A compressed tensor's weights as stored: the rANS pair stream of (gap, symbol) pairs (SPEC.md
 * §6), for a reader that decodes them its own way (the runtime's wasm transcoder) instead of
 * reading `indices` and `codes`. It must apply decodePairs' checks (every word consumed, both
 * states back at RANS_L, values within 32 bits) and decodeOpq's (indices below `size`, table
 * codes below the table's length) and throw a FormatError CORRUPT where they fail.
 */
export interface EncodedWeights {
  /** Dense elements of the tensor. */
  size: number;
  nnz: number;
  gaps: EncodedModel;
  symbols: EncodedModel;
  /** The coded u16 words (little-endian, even length ≥ 8): two initial states, then renormalization words. */
  words: Uint8Array;
  /** Symbols are zigzag-coded signed codes (uniform codebook); else table indices. */
  zigzag: boolean;
}

/**
 * The stored stream of `t` if it is a tensor of an rANS-coded file decoded with `lazyWeights`
 * (whether or not its `indices` were read), else undefined. The stream's tables are read and
 * checked here: a corrupt table throws its FormatError.
 */
export function encodedWeights(t: CompressedTensor): EncodedWeights | undefined {
  const e = ENCODED.get(t);
  if (!e) return undefined;
  if (!e.parsed) {
    const nnz = t.nnz!;
    const { ma, mb, body } = readPairStreamHeader(e.stream, nnz);
    check(body.length >= 8 && body.length % 2 === 0, E.CORRUPT, "rANS stream: bad length");
    const model = (m: RansModel): EncodedModel => ({ table: decodeTable(m), scaleBits: m.scaleBits, direct: m.direct, maxValue: maxValueOf(m) });
    e.parsed = { size: e.size, nnz, gaps: model(ma), symbols: model(mb), words: body, zigzag: e.zigzag };
  }
  return e.parsed;
}

/** A compressed tensor whose streams are decoded on first read of `indices` or `codes`. */
function lazyTensor(name: string, dims: number[], codebook: Codebook, nnz: number, decode: () => { indices: Uint32Array; codes: Int32Array }): CompressedTensor {
  let decoded: { indices: Uint32Array; codes: Int32Array } | undefined;
  const t: CompressedTensor = {
    name, dims, codebook, nnz,
    get indices() { return (decoded ??= decode()).indices; },
    get codes() { return (decoded ??= decode()).codes; },
  };
  RELEASE.set(t, () => { decoded = undefined; });
  return t;
}

/**
 * Parse and fully validate `.opq` bytes. Any malformed, truncated or hostile input throws a
 * FormatError with a code; a model that decodes has strictly increasing in-range indices and
 * codes valid for their codebook.
 */
export function decodeOpq(bytes: Uint8Array, options: DecodeOptions = {}): OpqModel {
  return decodeOpqParts(bytes, options).model;
}
