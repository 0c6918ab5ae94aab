/**
 * The inverse of onnx-reader.ts: Model → ModelProto bytes that onnxruntime loads. Numeric tensors
 * go out as raw_data (little-endian, referenced until the one output allocation), strings as
 * string_data. `toDenseModel` turns a compressed `.opq` model back into a plain float model.
 * @module
 */
import { check, FormatError } from "./errors.ts";
import { type AttrValue, type CompressedTensor, dequantize, type Graph, type Model, type Node, ONNX_DTYPE, type OpqModel, sizeOf, type Tensor, type ValueInfo } from "./graph.ts";
import {
  ATTRIBUTE_PROTO, ATTRIBUTE_TYPE, GRAPH_PROTO, MODEL_PROTO, NODE_PROTO, OPERATOR_SET_ID_PROTO, TENSOR_PROTO,
  TENSOR_SHAPE_PROTO, TYPE_PROTO, TYPE_PROTO_TENSOR, VALUE_INFO_PROTO,
} from "./onnx-reader.ts";
import { ProtoWriter } from "./protobuf.ts";

/** The storage each dtype must use (as allocData makes it), or raw_data would be misread. */
const TYPED_ARRAY_FOR: Readonly<Record<Exclude<Tensor["dtype"], "string">, { name: string; prototype: unknown }>> = {
  float32: Float32Array, float64: Float64Array, int8: Int8Array, uint8: Uint8Array, bool: Uint8Array,
  int16: Int16Array, uint16: Uint16Array, float16: Uint16Array, int32: Int32Array, uint32: Uint32Array,
  int64: BigInt64Array, uint64: BigUint64Array,
};

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Serialize a Model as an ONNX ModelProto. Throws FormatError INVALID_ARGUMENT for inconsistent tensors. */
export function writeOnnx(model: Model): Uint8Array {
  check(LITTLE_ENDIAN, "UNSUPPORTED", "writing ONNX raw_data on a big-endian host");
  const w = new ProtoWriter();
  w.int64(MODEL_PROTO.IR_VERSION, model.irVersion);
  if (model.producerName) w.string(MODEL_PROTO.PRODUCER_NAME, model.producerName);
  w.fork(MODEL_PROTO.GRAPH);
  writeGraph(w, model.graph, model.irVersion < 4);
  w.join();
  for (const o of model.opsetImports) {
    w.fork(MODEL_PROTO.OPSET_IMPORT).string(OPERATOR_SET_ID_PROTO.DOMAIN, o.domain).int64(OPERATOR_SET_ID_PROTO.VERSION, o.version).join();
  }
  return w.finish();
}

/** Write a bare TensorProto (the format of a conformance case's input_K.pb). */
export function writeTensorProto(tensor: Tensor, name = ""): Uint8Array {
  const w = new ProtoWriter();
  writeTensor(w, tensor, name);
  return w.finish();
}

/**
 * `initializersAsInputs`: IR < 4 requires every initializer to be listed as a graph input too,
 * which the reader undoes, so the round trip stays exact.
 */
function writeGraph(w: ProtoWriter, g: Graph, initializersAsInputs: boolean): void {
  for (const n of g.nodes) { w.fork(GRAPH_PROTO.NODE); writeNode(w, n); w.join(); }
  if (g.name) w.string(GRAPH_PROTO.NAME, g.name);
  for (const [name, t] of Object.entries(g.initializers)) { w.fork(GRAPH_PROTO.INITIALIZER); writeTensor(w, t, name); w.join(); }
  const inputs = initializersAsInputs
    ? [...g.inputs, ...Object.entries(g.initializers).map(([name, t]): ValueInfo => ({ name, dtype: t.dtype, shape: t.dims }))]
    : g.inputs;
  for (const v of inputs) { w.fork(GRAPH_PROTO.INPUT); writeValueInfo(w, v); w.join(); }
  for (const v of g.outputs) { w.fork(GRAPH_PROTO.OUTPUT); writeValueInfo(w, v); w.join(); }
  for (const v of g.valueInfo ?? []) { w.fork(GRAPH_PROTO.VALUE_INFO); writeValueInfo(w, v); w.join(); }
}

function writeNode(w: ProtoWriter, n: Node): void {
  for (const s of n.inputs) w.string(NODE_PROTO.INPUT, s);
  for (const s of n.outputs) w.string(NODE_PROTO.OUTPUT, s);
  if (n.name) w.string(NODE_PROTO.NAME, n.name);
  w.string(NODE_PROTO.OP_TYPE, n.opType);
  for (const [name, a] of Object.entries(n.attrs)) { w.fork(NODE_PROTO.ATTRIBUTE); writeAttribute(w, name, a); w.join(); }
  if (n.domain) w.string(NODE_PROTO.DOMAIN, n.domain);
}

function writeAttribute(w: ProtoWriter, name: string, a: AttrValue): void {
  w.string(ATTRIBUTE_PROTO.NAME, name);
  switch (a.type) {
    case "float": w.float(ATTRIBUTE_PROTO.F, a.value).int64(ATTRIBUTE_PROTO.TYPE, ATTRIBUTE_TYPE.FLOAT); return;
    case "int": w.int64(ATTRIBUTE_PROTO.I, a.value).int64(ATTRIBUTE_PROTO.TYPE, ATTRIBUTE_TYPE.INT); return;
    case "string": w.string(ATTRIBUTE_PROTO.S, a.value).int64(ATTRIBUTE_PROTO.TYPE, ATTRIBUTE_TYPE.STRING); return;
    case "tensor": w.fork(ATTRIBUTE_PROTO.T); writeTensor(w, a.value, ""); w.join().int64(ATTRIBUTE_PROTO.TYPE, ATTRIBUTE_TYPE.TENSOR); return;
    case "graph": w.fork(ATTRIBUTE_PROTO.G); writeGraph(w, a.value, false); w.join().int64(ATTRIBUTE_PROTO.TYPE, ATTRIBUTE_TYPE.GRAPH); return;
    case "floats": w.floats(ATTRIBUTE_PROTO.FLOATS, a.value).int64(ATTRIBUTE_PROTO.TYPE, ATTRIBUTE_TYPE.FLOATS); return;
    case "ints": w.int64s(ATTRIBUTE_PROTO.INTS, a.value).int64(ATTRIBUTE_PROTO.TYPE, ATTRIBUTE_TYPE.INTS); return;
    case "strings":
      for (const s of a.value) w.string(ATTRIBUTE_PROTO.STRINGS, s);
      w.int64(ATTRIBUTE_PROTO.TYPE, ATTRIBUTE_TYPE.STRINGS);
      return;
  }
  throw new FormatError("INVALID_ARGUMENT", `attribute ${JSON.stringify(name)} has unknown type ${(a as { type: unknown }).type}`);
}

function writeTensor(w: ProtoWriter, t: Tensor, name: string): void {
  const label = JSON.stringify(name);
  for (const d of t.dims) check(Number.isSafeInteger(d) && d >= 0, "INVALID_ARGUMENT", `tensor ${label} has dimension ${d}`);
  check(t.data.length === sizeOf(t.dims), "INVALID_ARGUMENT", () => `tensor ${label} of shape [${t.dims}] has ${t.data.length} elements`);
  const code = ONNX_DTYPE[t.dtype];
  check(code !== undefined, "INVALID_ARGUMENT", `tensor ${label} has unknown dtype ${t.dtype}`);
  w.int64s(TENSOR_PROTO.DIMS, t.dims).int64(TENSOR_PROTO.DATA_TYPE, code);
  if (name) w.string(TENSOR_PROTO.NAME, name);
  if (t.dtype === "string") {
    check(Array.isArray(t.data), "INVALID_ARGUMENT", `string tensor ${label} needs a string[]`);
    for (const s of t.data as string[]) w.string(TENSOR_PROTO.STRING_DATA, s);
    return;
  }
  const data = t.data;
  const want = TYPED_ARRAY_FOR[t.dtype];
  check(!Array.isArray(data) && data instanceof (want as unknown as typeof Uint8Array), "INVALID_ARGUMENT", () => `tensor ${label} of dtype ${t.dtype} needs a ${want.name}`);
  w.bytes(TENSOR_PROTO.RAW_DATA, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
}

function writeValueInfo(w: ProtoWriter, v: ValueInfo): void {
  w.string(VALUE_INFO_PROTO.NAME, v.name);
  w.fork(VALUE_INFO_PROTO.TYPE).fork(TYPE_PROTO.TENSOR_TYPE).int64(TYPE_PROTO_TENSOR.ELEM_TYPE, ONNX_DTYPE[v.dtype]);
  if (v.shape) {
    w.fork(TYPE_PROTO_TENSOR.SHAPE);
    for (const d of v.shape) {
      w.fork(TENSOR_SHAPE_PROTO.DIM);
      if (typeof d === "number") w.int64(TENSOR_SHAPE_PROTO.DIM_VALUE, d);
      else if (typeof d === "string") w.string(TENSOR_SHAPE_PROTO.DIM_PARAM, d);
      w.join();
    }
    w.join();
  }
  w.join().join();
}

/**
 * Check a compressed tensor an in-memory OpqModel carries (decodeOpq checks its own): a name no
 * plain initializer of `initializers` has, non-negative integer dims, one code per index,
 * strictly increasing in-range indices, table codes inside the table. Throws FormatError INVALID_ARGUMENT.
 */
export function checkCompressedTensor(t: CompressedTensor, initializers: Readonly<Record<string, Tensor>>): void {
  const label = JSON.stringify(t.name);
  check(!Object.hasOwn(initializers, t.name), "INVALID_ARGUMENT", `compressed tensor ${label} is also a plain initializer`);
  for (const d of t.dims) check(Number.isSafeInteger(d) && d >= 0, "INVALID_ARGUMENT", `compressed tensor ${label} has dimension ${d}`);
  const n = sizeOf(t.dims);
  check(t.codes.length === t.indices.length, "INVALID_ARGUMENT", `compressed tensor ${label} has ${t.indices.length} indices but ${t.codes.length} codes`);
  let prev = -1;
  for (const i of t.indices) {
    check(i > prev && i < n, "INVALID_ARGUMENT", () => `compressed tensor ${label}: index ${i} is out of range or not increasing`);
    prev = i;
  }
  if (t.codebook.kind === "table") {
    const size = t.codebook.values.length;
    for (const c of t.codes) check(c >= 0 && c < size, "INVALID_ARGUMENT", () => `compressed tensor ${label}: code ${c} outside its ${size}-entry table`);
  }
}

/**
 * The plain float model a `.opq` stands for: every compressed tensor dequantized back into a
 * float32 initializer. Throws INVALID_ARGUMENT if a compressed tensor is inconsistent (an index
 * out of range or not increasing, a code outside its table, a name the graph already defines).
 */
export function toDenseModel(m: OpqModel): Model {
  const initializers: Record<string, Tensor> = { ...m.model.graph.initializers };
  for (const t of m.compressed) {
    checkCompressedTensor(t, initializers);
    Object.defineProperty(initializers, t.name, { value: { dtype: "float32", dims: [...t.dims], data: dequantize(t) }, enumerable: true, writable: true, configurable: true });
  }
  return { ...m.model, graph: { ...m.model.graph, initializers } };
}
