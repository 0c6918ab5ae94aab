/**
 * A dependency-free ONNX reader: ModelProto bytes → the Model of graph.ts. Field numbers mirror
 * onnx/onnx.proto (IR version 10, https://github.com/onnx/onnx/blob/main/onnx/onnx.proto); each
 * table names the message it comes from. Weights in raw_data are copied once into aligned typed
 * arrays (raw_data sits at arbitrary offsets in the file), never decoded element by element.
 * @module
 */
import { check, FormatError } from "./errors.ts";
import { type AttrValue, type Dim, type DType, DTYPE_BYTES, type Graph, type Model, type Node, ONNX_DTYPE, type OpsetImport, type Tensor, type TensorData, type ValueInfo, allocData, sizeOf } from "./graph.ts";
import { concatBytes, ProtoReader, WIRE } from "./protobuf.ts";

/** onnx.proto `message ModelProto`. */
export const MODEL_PROTO = {
  IR_VERSION: 1, PRODUCER_NAME: 2, PRODUCER_VERSION: 3, DOMAIN: 4, MODEL_VERSION: 5, DOC_STRING: 6,
  GRAPH: 7, OPSET_IMPORT: 8, METADATA_PROPS: 14, TRAINING_INFO: 20, FUNCTIONS: 25,
} as const;
/** onnx.proto `message OperatorSetIdProto`. */
export const OPERATOR_SET_ID_PROTO = { DOMAIN: 1, VERSION: 2 } as const;
/** onnx.proto `message GraphProto`. */
export const GRAPH_PROTO = {
  NODE: 1, NAME: 2, INITIALIZER: 5, DOC_STRING: 10, INPUT: 11, OUTPUT: 12, VALUE_INFO: 13,
  QUANTIZATION_ANNOTATION: 14, SPARSE_INITIALIZER: 15,
} as const;
/** onnx.proto `message NodeProto`. */
export const NODE_PROTO = { INPUT: 1, OUTPUT: 2, NAME: 3, OP_TYPE: 4, ATTRIBUTE: 5, DOC_STRING: 6, DOMAIN: 7 } as const;
/** onnx.proto `message AttributeProto`. */
export const ATTRIBUTE_PROTO = {
  NAME: 1, F: 2, I: 3, S: 4, T: 5, G: 6, FLOATS: 7, INTS: 8, STRINGS: 9, TENSORS: 10, GRAPHS: 11,
  DOC_STRING: 13, TP: 14, TYPE_PROTOS: 15, TYPE: 20, REF_ATTR_NAME: 21, SPARSE_TENSOR: 22, SPARSE_TENSORS: 23,
} as const;
/** onnx.proto `enum AttributeProto.AttributeType`. */
export const ATTRIBUTE_TYPE = {
  UNDEFINED: 0, FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, GRAPH: 5, FLOATS: 6, INTS: 7, STRINGS: 8,
  TENSORS: 9, GRAPHS: 10, SPARSE_TENSOR: 11, SPARSE_TENSORS: 12, TYPE_PROTO: 13, TYPE_PROTOS: 14,
} as const;
/** onnx.proto `message ValueInfoProto`. */
export const VALUE_INFO_PROTO = { NAME: 1, TYPE: 2, DOC_STRING: 3 } as const;
/** onnx.proto `message TypeProto` (the oneof `value` and `denotation`). */
export const TYPE_PROTO = { TENSOR_TYPE: 1, SEQUENCE_TYPE: 4, MAP_TYPE: 5, DENOTATION: 6, SPARSE_TENSOR_TYPE: 8, OPTIONAL_TYPE: 9 } as const;
/** onnx.proto `message TypeProto.Tensor`. */
export const TYPE_PROTO_TENSOR = { ELEM_TYPE: 1, SHAPE: 2 } as const;
/** onnx.proto `message TensorShapeProto` and its `Dimension`. */
export const TENSOR_SHAPE_PROTO = { DIM: 1, DIM_VALUE: 1, DIM_PARAM: 2, DENOTATION: 3 } as const;
/** onnx.proto `message TensorProto`. */
export const TENSOR_PROTO = {
  DIMS: 1, DATA_TYPE: 2, SEGMENT: 3, FLOAT_DATA: 4, INT32_DATA: 5, STRING_DATA: 6, INT64_DATA: 7,
  NAME: 8, RAW_DATA: 9, DOUBLE_DATA: 10, UINT64_DATA: 11, DOC_STRING: 12, EXTERNAL_DATA: 13, DATA_LOCATION: 14,
} as const;
/** onnx.proto `enum TensorProto.DataLocation`. */
export const DATA_LOCATION = { DEFAULT: 0, EXTERNAL: 1 } as const;

/** Subgraphs (If/Loop/Scan bodies) nest at most this deep; deeper input is refused, not recursed. */
export const MAX_GRAPH_DEPTH = 32;

/** Our dtype for each TensorProto.DataType value we support. */
const DTYPE_BY_ONNX: ReadonlyMap<number, DType> = new Map(Object.entries(ONNX_DTYPE).map(([k, v]) => [v, k as DType]));

/** Typed arrays are viewed in host order; ONNX raw_data is little-endian, as is every host we run on. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const UTF8 = new TextDecoder("utf-8");

/** Define an own property, so a hostile name such as "__proto__" cannot reach the prototype. */
function setOwn<T>(obj: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/** The DType of a TensorProto.DataType value, or UNSUPPORTED / CORRUPT. */
export function dtypeFromOnnx(code: number): DType {
  const d = DTYPE_BY_ONNX.get(code);
  if (d) return d;
  check(code !== 0, "CORRUPT", "tensor has no data_type (UNDEFINED)");
  throw new FormatError("UNSUPPORTED", `ONNX data type ${code} is not supported (bfloat16, complex, float8 and 4-bit types are not)`);
}

/** Read an ONNX ModelProto. Throws FormatError (BAD_MAGIC, TRUNCATED, CORRUPT, UNSUPPORTED, TOO_LARGE). */
export function readOnnx(bytes: Uint8Array): Model {
  checkLooksLikeModel(bytes);
  const r = new ProtoReader(bytes);
  const model: Model = { irVersion: 0, opsetImports: [], producerName: "", graph: emptyGraph() };
  let sawGraph = false;
  while (!r.done()) {
    const [field, wire] = r.key();
    switch (field) {
      case MODEL_PROTO.IR_VERSION: r.expect(wire, WIRE.VARINT, "ModelProto.ir_version"); model.irVersion = r.int64(); break;
      case MODEL_PROTO.PRODUCER_NAME: r.expect(wire, WIRE.LEN, "ModelProto.producer_name"); model.producerName = r.string(); break;
      case MODEL_PROTO.OPSET_IMPORT: r.expect(wire, WIRE.LEN, "ModelProto.opset_import"); model.opsetImports.push(readOpset(r.message())); break;
      case MODEL_PROTO.GRAPH: r.expect(wire, WIRE.LEN, "ModelProto.graph"); model.graph = readGraph(r.message(), 0); sawGraph = true; break;
      // Dropping model-local functions would leave nodes that call them undefined in what we write back.
      case MODEL_PROTO.FUNCTIONS: throw new FormatError("UNSUPPORTED", "model-local functions (ModelProto.functions) are not supported; inline them first");
      default: r.skip(wire);
    }
  }
  check(sawGraph, "CORRUPT", "ONNX model has no graph");
  return model;
}

/** The first key of a ModelProto must be one of its fields with the right wire type. */
function checkLooksLikeModel(bytes: Uint8Array): void {
  let ok = false;
  try {
    const [field, wire] = new ProtoReader(bytes).key();
    const varintFields: number[] = [MODEL_PROTO.IR_VERSION, MODEL_PROTO.MODEL_VERSION];
    ok = Object.values(MODEL_PROTO).includes(field as never) && wire === (varintFields.includes(field) ? WIRE.VARINT : WIRE.LEN);
  } catch { /* an unreadable first key is no model either */ }
  check(ok, "BAD_MAGIC", "not an ONNX model (the bytes do not start like a ModelProto)");
}

function emptyGraph(): Graph {
  return { name: "", nodes: [], inputs: [], outputs: [], initializers: {} };
}

function readOpset(r: ProtoReader): OpsetImport {
  const o: OpsetImport = { domain: "", version: 0 };
  while (!r.done()) {
    const [field, wire] = r.key();
    if (field === OPERATOR_SET_ID_PROTO.DOMAIN && wire === WIRE.LEN) o.domain = r.string();
    else if (field === OPERATOR_SET_ID_PROTO.VERSION && wire === WIRE.VARINT) o.version = r.int64();
    else r.skip(wire);
  }
  return o;
}

function readGraph(r: ProtoReader, depth: number): Graph {
  check(depth <= MAX_GRAPH_DEPTH, "TOO_LARGE", `subgraphs nest deeper than ${MAX_GRAPH_DEPTH}`);
  const g = emptyGraph();
  const valueInfo: ValueInfo[] = [];
  while (!r.done()) {
    const [field, wire] = r.key();
    switch (field) {
      case GRAPH_PROTO.NODE: r.expect(wire, WIRE.LEN, "GraphProto.node"); g.nodes.push(readNode(r.message(), depth)); break;
      case GRAPH_PROTO.NAME: r.expect(wire, WIRE.LEN, "GraphProto.name"); g.name = r.string(); break;
      case GRAPH_PROTO.INITIALIZER: {
        r.expect(wire, WIRE.LEN, "GraphProto.initializer");
        const { name, tensor } = readTensor(r.message());
        check(!Object.hasOwn(g.initializers, name), "CORRUPT", `initializer ${JSON.stringify(name)} appears twice`);
        setOwn(g.initializers, name, tensor);
        break;
      }
      case GRAPH_PROTO.SPARSE_INITIALIZER:
        throw new FormatError("UNSUPPORTED", "sparse initializers are not supported; densify them before reading");
      case GRAPH_PROTO.INPUT: case GRAPH_PROTO.OUTPUT: {
        r.expect(wire, WIRE.LEN, "GraphProto.input/output");
        const v = readValueInfo(r.message());
        check(v.kind === "tensor", "UNSUPPORTED", () => `graph ${field === GRAPH_PROTO.INPUT ? "input" : "output"} ${JSON.stringify(v.name)} is ${v.kind}; only tensors are supported`);
        (field === GRAPH_PROTO.INPUT ? g.inputs : g.outputs).push(v.info!);
        break;
      }
      case GRAPH_PROTO.VALUE_INFO: {
        r.expect(wire, WIRE.LEN, "GraphProto.value_info");
        // Intermediate value infos are hints; non-tensor ones (sequences, maps) have no ValueInfo shape and are dropped.
        const v = readValueInfo(r.message());
        if (v.info) valueInfo.push(v.info);
        break;
      }
      default: r.skip(wire);
    }
  }
  // Exporters before IR 4 listed every initializer as a graph input too; only real inputs remain.
  g.inputs = g.inputs.filter((v) => !Object.hasOwn(g.initializers, v.name));
  if (valueInfo.length) g.valueInfo = valueInfo;
  return g;
}

function readNode(r: ProtoReader, depth: number): Node {
  const n: Node = { opType: "", domain: "", name: "", inputs: [], outputs: [], attrs: {} };
  while (!r.done()) {
    const [field, wire] = r.key();
    switch (field) {
      case NODE_PROTO.INPUT: r.expect(wire, WIRE.LEN, "NodeProto.input"); n.inputs.push(r.string()); break;
      case NODE_PROTO.OUTPUT: r.expect(wire, WIRE.LEN, "NodeProto.output"); n.outputs.push(r.string()); break;
      case NODE_PROTO.NAME: r.expect(wire, WIRE.LEN, "NodeProto.name"); n.name = r.string(); break;
      case NODE_PROTO.OP_TYPE: r.expect(wire, WIRE.LEN, "NodeProto.op_type"); n.opType = r.string(); break;
      case NODE_PROTO.DOMAIN: r.expect(wire, WIRE.LEN, "NodeProto.domain"); n.domain = r.string(); break;
      case NODE_PROTO.ATTRIBUTE: {
        r.expect(wire, WIRE.LEN, "NodeProto.attribute");
        const [name, value] = readAttribute(r.message(), depth);
        setOwn(n.attrs, name, value);
        break;
      }
      default: r.skip(wire);
    }
  }
  return n;
}

/** Attribute types that have no AttrValue form. */
const UNSUPPORTED_ATTRS = new Set<number>([
  ATTRIBUTE_TYPE.TENSORS, ATTRIBUTE_TYPE.GRAPHS, ATTRIBUTE_TYPE.SPARSE_TENSOR, ATTRIBUTE_TYPE.SPARSE_TENSORS,
  ATTRIBUTE_TYPE.TYPE_PROTO, ATTRIBUTE_TYPE.TYPE_PROTOS,
]);

function readAttribute(r: ProtoReader, depth: number): [string, AttrValue] {
  let name = "", type: number = ATTRIBUTE_TYPE.UNDEFINED;
  let f = 0, i = 0, s = "";
  let t: Tensor | undefined, g: Graph | undefined;
  const floats: number[] = [], ints: number[] = [], strings: string[] = [];
  // Which fields were present, in AttributeType order, to infer a missing `type` (pre-IR-3 files).
  const seen = new Set<number>();
  while (!r.done()) {
    const [field, wire] = r.key();
    switch (field) {
      case ATTRIBUTE_PROTO.NAME: r.expect(wire, WIRE.LEN, "AttributeProto.name"); name = r.string(); break;
      case ATTRIBUTE_PROTO.TYPE: r.expect(wire, WIRE.VARINT, "AttributeProto.type"); type = r.int64(); break;
      case ATTRIBUTE_PROTO.F: r.expect(wire, WIRE.I32, "AttributeProto.f"); f = r.float(); seen.add(ATTRIBUTE_TYPE.FLOAT); break;
      case ATTRIBUTE_PROTO.I: r.expect(wire, WIRE.VARINT, "AttributeProto.i"); i = r.int64(); seen.add(ATTRIBUTE_TYPE.INT); break;
      case ATTRIBUTE_PROTO.S: r.expect(wire, WIRE.LEN, "AttributeProto.s"); s = r.string(); seen.add(ATTRIBUTE_TYPE.STRING); break;
      case ATTRIBUTE_PROTO.T: r.expect(wire, WIRE.LEN, "AttributeProto.t"); t = readTensor(r.message()).tensor; seen.add(ATTRIBUTE_TYPE.TENSOR); break;
      case ATTRIBUTE_PROTO.G: r.expect(wire, WIRE.LEN, "AttributeProto.g"); g = readGraph(r.message(), depth + 1); seen.add(ATTRIBUTE_TYPE.GRAPH); break;
      case ATTRIBUTE_PROTO.FLOATS: {
        const parts: Uint8Array[] = [];
        r.repeatedFixed(wire, 4, parts, "AttributeProto.floats");
        for (const p of parts) for (let k = 0; k < p.length; k += 4) floats.push(new DataView(p.buffer, p.byteOffset + k, 4).getFloat32(0, true));
        seen.add(ATTRIBUTE_TYPE.FLOATS);
        break;
      }
      case ATTRIBUTE_PROTO.INTS: r.repeatedVarint(wire, ints, (x) => x.int64(), "AttributeProto.ints"); seen.add(ATTRIBUTE_TYPE.INTS); break;
      case ATTRIBUTE_PROTO.STRINGS: r.expect(wire, WIRE.LEN, "AttributeProto.strings"); strings.push(r.string()); seen.add(ATTRIBUTE_TYPE.STRINGS); break;
      case ATTRIBUTE_PROTO.TENSORS: seen.add(ATTRIBUTE_TYPE.TENSORS); r.skip(wire); break;
      case ATTRIBUTE_PROTO.GRAPHS: seen.add(ATTRIBUTE_TYPE.GRAPHS); r.skip(wire); break;
      case ATTRIBUTE_PROTO.SPARSE_TENSOR: seen.add(ATTRIBUTE_TYPE.SPARSE_TENSOR); r.skip(wire); break;
      case ATTRIBUTE_PROTO.TP: seen.add(ATTRIBUTE_TYPE.TYPE_PROTO); r.skip(wire); break;
      default: r.skip(wire);
    }
  }
  if (type === ATTRIBUTE_TYPE.UNDEFINED) {
    type = Math.min(...seen);
    check(seen.size > 0, "CORRUPT", `attribute ${JSON.stringify(name)} has no type and no value`);
  }
  check(!UNSUPPORTED_ATTRS.has(type), "UNSUPPORTED", `attribute ${JSON.stringify(name)} has type ${type} (tensors, graphs, sparse tensors or type protos), which is not supported`);
  switch (type) {
    case ATTRIBUTE_TYPE.FLOAT: return [name, { type: "float", value: f }];
    case ATTRIBUTE_TYPE.INT: return [name, { type: "int", value: i }];
    case ATTRIBUTE_TYPE.STRING: return [name, { type: "string", value: s }];
    case ATTRIBUTE_TYPE.TENSOR: check(t, "CORRUPT", `tensor attribute ${JSON.stringify(name)} has no tensor`); return [name, { type: "tensor", value: t }];
    case ATTRIBUTE_TYPE.GRAPH: check(g, "CORRUPT", `graph attribute ${JSON.stringify(name)} has no graph`); return [name, { type: "graph", value: g }];
    case ATTRIBUTE_TYPE.FLOATS: return [name, { type: "floats", value: floats }];
    case ATTRIBUTE_TYPE.INTS: return [name, { type: "ints", value: ints }];
    case ATTRIBUTE_TYPE.STRINGS: return [name, { type: "strings", value: strings }];
  }
  throw new FormatError("CORRUPT", `attribute ${JSON.stringify(name)} has unknown type ${type}`);
}

/** What a ValueInfoProto's type turned out to be; `info` is set only for tensors. */
interface ReadValueInfo {
  name: string;
  kind: "tensor" | "sequence" | "map" | "optional" | "sparse tensor" | "untyped";
  info?: ValueInfo;
}

function readValueInfo(r: ProtoReader): ReadValueInfo {
  let name = "";
  let type: ProtoReader | undefined;
  while (!r.done()) {
    const [field, wire] = r.key();
    if (field === VALUE_INFO_PROTO.NAME && wire === WIRE.LEN) name = r.string();
    else if (field === VALUE_INFO_PROTO.TYPE && wire === WIRE.LEN) type = r.message();
    else r.skip(wire);
  }
  if (!type) return { name, kind: "untyped" };
  let kind: ReadValueInfo["kind"] = "untyped";
  let tensor: ProtoReader | undefined;
  while (!type.done()) {
    const [field, wire] = type.key();
    if (field === TYPE_PROTO.TENSOR_TYPE && wire === WIRE.LEN) { tensor = type.message(); kind = "tensor"; }
    else {
      if (field === TYPE_PROTO.SEQUENCE_TYPE) kind = "sequence";
      else if (field === TYPE_PROTO.MAP_TYPE) kind = "map";
      else if (field === TYPE_PROTO.OPTIONAL_TYPE) kind = "optional";
      else if (field === TYPE_PROTO.SPARSE_TENSOR_TYPE) kind = "sparse tensor";
      type.skip(wire);
    }
  }
  if (!tensor) return { name, kind };
  let elemType = 0;
  let shape: Dim[] | null = null;
  while (!tensor.done()) {
    const [field, wire] = tensor.key();
    if (field === TYPE_PROTO_TENSOR.ELEM_TYPE && wire === WIRE.VARINT) elemType = tensor.int64();
    else if (field === TYPE_PROTO_TENSOR.SHAPE && wire === WIRE.LEN) shape = readShape(tensor.message());
    else tensor.skip(wire);
  }
  if (elemType === 0) return { name, kind: "untyped" };
  return { name, kind, info: { name, dtype: dtypeFromOnnx(elemType), shape } };
}

function readShape(r: ProtoReader): Dim[] {
  const dims: Dim[] = [];
  while (!r.done()) {
    const [field, wire] = r.key();
    if (field !== TENSOR_SHAPE_PROTO.DIM) { r.skip(wire); continue; }
    r.expect(wire, WIRE.LEN, "TensorShapeProto.dim");
    const d = r.message();
    let dim: Dim = null;
    while (!d.done()) {
      const [f, w] = d.key();
      if (f === TENSOR_SHAPE_PROTO.DIM_VALUE && w === WIRE.VARINT) dim = d.int64();
      else if (f === TENSOR_SHAPE_PROTO.DIM_PARAM && w === WIRE.LEN) dim = d.string();
      else d.skip(w);
    }
    dims.push(dim);
  }
  return dims;
}

/** A TensorProto's fields before they are checked and turned into a Tensor. */
interface RawTensor {
  name: string;
  dims: number[];
  dataType: number;
  raw?: Uint8Array;
  fixed: Uint8Array[];
  varints: number[];
  bigints: bigint[];
  strings: string[];
  external: boolean;
}

/** Read a TensorProto (an initializer, a Constant value, or a conformance input_K.pb). */
function readTensor(r: ProtoReader): { name: string; tensor: Tensor } {
  const t: RawTensor = { name: "", dims: [], dataType: 0, fixed: [], varints: [], bigints: [], strings: [], external: false };
  while (!r.done()) {
    const [field, wire] = r.key();
    switch (field) {
      case TENSOR_PROTO.DIMS: r.repeatedVarint(wire, t.dims, (x) => x.int64(), "TensorProto.dims"); break;
      case TENSOR_PROTO.DATA_TYPE: r.expect(wire, WIRE.VARINT, "TensorProto.data_type"); t.dataType = r.int64(); break;
      case TENSOR_PROTO.NAME: r.expect(wire, WIRE.LEN, "TensorProto.name"); t.name = r.string(); break;
      case TENSOR_PROTO.RAW_DATA: r.expect(wire, WIRE.LEN, "TensorProto.raw_data"); t.raw = r.bytesField(); break;
      case TENSOR_PROTO.FLOAT_DATA: r.repeatedFixed(wire, 4, t.fixed, "TensorProto.float_data"); break;
      case TENSOR_PROTO.DOUBLE_DATA: r.repeatedFixed(wire, 8, t.fixed, "TensorProto.double_data"); break;
      case TENSOR_PROTO.INT32_DATA: r.repeatedVarint(wire, t.varints, (x) => x.int64(), "TensorProto.int32_data"); break;
      case TENSOR_PROTO.INT64_DATA: r.repeatedVarint(wire, t.bigints, (x) => x.int64Big(), "TensorProto.int64_data"); break;
      case TENSOR_PROTO.UINT64_DATA: r.repeatedVarint(wire, t.bigints, (x) => x.uint64Big(), "TensorProto.uint64_data"); break;
      case TENSOR_PROTO.STRING_DATA: r.expect(wire, WIRE.LEN, "TensorProto.string_data"); t.strings.push(UTF8.decode(r.bytesField())); break;
      case TENSOR_PROTO.EXTERNAL_DATA: t.external = true; r.skip(wire); break;
      case TENSOR_PROTO.DATA_LOCATION: r.expect(wire, WIRE.VARINT, "TensorProto.data_location"); if (r.int64() === DATA_LOCATION.EXTERNAL) t.external = true; break;
      default: r.skip(wire);
    }
  }
  return { name: t.name, tensor: toTensor(t) };
}

/** Check a decoded TensorProto against its dims and build the typed array, copying once. */
function toTensor(t: RawTensor): Tensor {
  const label = JSON.stringify(t.name);
  check(!t.external, "UNSUPPORTED", `tensor ${label} keeps its data in an external file; external-data models must be re-saved with weights inline (onnx.save_model(m, path, save_as_external_data=False))`);
  const dtype = dtypeFromOnnx(t.dataType);
  for (const d of t.dims) check(Number.isSafeInteger(d) && d >= 0, "CORRUPT", `tensor ${label} has dimension ${d}`);
  const dims = t.dims;
  const n = sizeOf(dims);
  const mismatch = (have: number) => `tensor ${label} of shape [${dims}] needs ${n} elements but its data holds ${have}`;
  if (t.raw) {
    check(dtype !== "string", "CORRUPT", `string tensor ${label} uses raw_data`);
    const width = DTYPE_BYTES[dtype as Exclude<DType, "string">];
    check(t.raw.length === n * width, "CORRUPT", () => mismatch(t.raw!.length / width));
    check(LITTLE_ENDIAN || width === 1, "UNSUPPORTED", "multi-byte raw_data on a big-endian host");
    const data = allocData(dtype, n) as Exclude<TensorData, string[]>;
    new Uint8Array(data.buffer).set(t.raw);
    return { dtype, dims, data };
  }
  switch (dtype) {
    case "float32": case "float64": {
      const width = dtype === "float32" ? 4 : 8;
      const total = t.fixed.reduce((s, p) => s + p.length, 0);
      check(total === n * width, "CORRUPT", () => mismatch(total / width));
      if (n === 0) return { dtype, dims, data: allocData(dtype, 0) };
      const buf = concatBytes(t.fixed);
      return { dtype, dims, data: dtype === "float32" ? new Float32Array(buf.buffer, 0, n) : new Float64Array(buf.buffer, 0, n) };
    }
    case "int32": case "int16": case "int8": case "uint16": case "uint8": case "bool": case "float16": {
      // onnx.proto: int32_data holds int32, int16, int8, uint16, uint8, bool and float16 (as its bits).
      check(t.varints.length === n, "CORRUPT", () => mismatch(t.varints.length));
      const data = allocData(dtype, n) as Int32Array;
      for (let k = 0; k < n; k++) data[k] = t.varints[k]!;
      return { dtype, dims, data };
    }
    case "int64": case "uint32": case "uint64": {
      // onnx.proto: int64_data holds int64; uint64_data holds uint32 and uint64.
      check(t.bigints.length === n, "CORRUPT", () => mismatch(t.bigints.length));
      if (dtype === "uint32") return { dtype, dims, data: Uint32Array.from(t.bigints, (v) => Number(BigInt.asUintN(32, v))) };
      return { dtype, dims, data: dtype === "int64" ? BigInt64Array.from(t.bigints) : BigUint64Array.from(t.bigints) };
    }
    case "string":
      check(t.strings.length === n, "CORRUPT", () => mismatch(t.strings.length));
      return { dtype, dims, data: t.strings };
  }
}

/** Read a bare TensorProto, e.g. a conformance case's input_0.pb, with its name ("" if none). */
export function readTensorProtoNamed(bytes: Uint8Array): { name: string; tensor: Tensor } {
  return readTensor(new ProtoReader(bytes));
}

/** Read a bare TensorProto into a Tensor. */
export function readTensorProto(bytes: Uint8Array): Tensor {
  return readTensorProtoNamed(bytes).tensor;
}
