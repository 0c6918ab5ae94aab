/**
 * The in-memory model every package shares: a tensor, a graph of ONNX nodes, and the
 * compressed weights a `.opq` file carries. ONNX files are read into this shape
 * (onnx-reader.ts), `.opq` files are decoded into it (container.ts), and the runtime plans it.
 * @module
 */

/** Element types, named as onnxruntime-web names them. Numbering follows onnx.proto TensorProto.DataType. */
export type DType =
  | "float32" | "uint8" | "int8" | "uint16" | "int16" | "int32" | "int64"
  | "string" | "bool" | "float16" | "float64" | "uint32" | "uint64";

/** TensorProto.DataType enum values (onnx.proto, `enum DataType`), by our dtype name. */
export const ONNX_DTYPE: Readonly<Record<DType, number>> = {
  float32: 1, uint8: 2, int8: 3, uint16: 4, int16: 5, int32: 6, int64: 7,
  string: 8, bool: 9, float16: 10, float64: 11, uint32: 12, uint64: 13,
} as const;

/** Storage of each dtype. float16 is kept as raw Uint16 bits; bool as Uint8 (0/1). */
export type TensorData =
  | Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array
  | Int32Array | Uint32Array | BigInt64Array | BigUint64Array | string[];

/** A dense tensor. `data.length` equals the product of `dims` (1 for a scalar, dims = []). */
export interface Tensor {
  dtype: DType;
  dims: number[];
  data: TensorData;
}

/** A dimension of a graph input/output: a size, a symbolic name (dim_param), or unknown. */
export type Dim = number | string | null;

/** Name, element type and (possibly symbolic) shape of a graph input or output. */
export interface ValueInfo {
  name: string;
  dtype: DType;
  shape: Dim[] | null;
}

/** An ONNX attribute value, tagged by AttributeProto.AttributeType. Integers are JS numbers. */
export type AttrValue =
  | { type: "float"; value: number }
  | { type: "int"; value: number }
  | { type: "string"; value: string }
  | { type: "tensor"; value: Tensor }
  | { type: "graph"; value: Graph }
  | { type: "floats"; value: number[] }
  | { type: "ints"; value: number[] }
  | { type: "strings"; value: string[] };

/** One ONNX node. An empty string in `inputs` is an omitted optional input. */
export interface Node {
  opType: string;
  /** "" is the default ONNX domain (ai.onnx). */
  domain: string;
  name: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, AttrValue>;
}

/** A computation graph in topological order (as ONNX requires). */
export interface Graph {
  name: string;
  nodes: Node[];
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  /** Constant tensors kept exactly (ONNX initializers not replaced by a compressed weight). */
  initializers: Record<string, Tensor>;
  /** Intermediate value infos the producer recorded, if any. */
  valueInfo?: ValueInfo[];
}

/** An operator set the model imports. */
export interface OpsetImport {
  domain: string;
  version: number;
}

/** A whole model: the graph plus the metadata ONNX keeps around it. */
export interface Model {
  irVersion: number;
  opsetImports: OpsetImport[];
  producerName: string;
  graph: Graph;
}

/**
 * How integer codes map to weight values; one codebook per compressed tensor.
 * - `uniform`: value = step · code (OPQ Eq. 10: one Δ shared by all channels of a layer).
 * - `table`: value = values[code] (APoT levels already scaled by α, or any explicit codebook).
 * Kinds are append-only: new kinds get new names and new ids in the file, old ones stay readable.
 */
export type Codebook =
  | { kind: "uniform"; step: number }
  | { kind: "table"; values: Float32Array };

/**
 * A weight stored sparse and quantized. The dense tensor is all zeros except at
 * `indices[k]`, where it holds `codebookValue(codebook, codes[k])`.
 */
export interface CompressedTensor {
  /** The graph initializer this tensor stands for. */
  name: string;
  dims: number[];
  codebook: Codebook;
  /** Strictly increasing flat (row-major) positions of the non-zero weights. */
  indices: Uint32Array;
  /** One integer code per index: signed for `uniform`, a table index for `table`. */
  codes: Int32Array;
  /**
   * The number of non-zero weights (`indices.length`), known without decoding the streams: set by
   * `decodeOpq(…, { lazyWeights: true })`, whose `indices` decode on first read. Use nnzOf().
   */
  readonly nnz?: number;
}

/** Non-zero weights of a compressed tensor, without decoding a lazy one. */
export function nnzOf(c: CompressedTensor): number {
  return c.nnz ?? c.indices.length;
}

/**
 * A `.opq` model: a graph whose large weights are compressed. Each compressed tensor's name is
 * an initializer name the graph uses but `graph.initializers` does not contain.
 */
export interface OpqModel {
  model: Model;
  compressed: CompressedTensor[];
  /** Free-form metadata kept in the header (method, target sparsity, bits, FP32 size, ...). */
  metadata: Record<string, unknown>;
}

/** The float a code decodes to. Every encoder and decoder must use this, so round trips are bit-exact. */
export function codebookValue(codebook: Codebook, code: number): number {
  return codebook.kind === "uniform" ? Math.fround(Math.fround(codebook.step) * code) : codebook.values[code]!;
}

/** Number of elements of a shape (1 for a scalar). */
export function sizeOf(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/** The dense float32 weights a compressed tensor stands for. */
export function dequantize(t: CompressedTensor): Float32Array {
  const out = new Float32Array(sizeOf(t.dims));
  const { indices, codes, codebook } = t;
  if (codebook.kind === "uniform") {
    const step = Math.fround(codebook.step);
    for (let k = 0; k < indices.length; k++) out[indices[k]!] = step * codes[k]!;
  } else {
    for (let k = 0; k < indices.length; k++) out[indices[k]!] = codebook.values[codes[k]!]!;
  }
  return out;
}

/** Bytes per element of each fixed-size dtype (strings have none). */
export const DTYPE_BYTES: Readonly<Record<Exclude<DType, "string">, number>> = {
  float32: 4, uint8: 1, int8: 1, uint16: 2, int16: 2, int32: 4, int64: 8,
  bool: 1, float16: 2, float64: 8, uint32: 4, uint64: 8,
} as const;

/** Allocate zeroed storage of `n` elements for a dtype. */
export function allocData(dtype: DType, n: number): TensorData {
  switch (dtype) {
    case "float32": return new Float32Array(n);
    case "float64": return new Float64Array(n);
    case "int8": return new Int8Array(n);
    case "uint8": case "bool": return new Uint8Array(n);
    case "int16": return new Int16Array(n);
    case "uint16": case "float16": return new Uint16Array(n);
    case "int32": return new Int32Array(n);
    case "uint32": return new Uint32Array(n);
    case "int64": return new BigInt64Array(n);
    case "uint64": return new BigUint64Array(n);
    case "string": return new Array<string>(n).fill("");
  }
}
