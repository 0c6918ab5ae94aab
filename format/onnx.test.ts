/**
 * The ONNX reader and writer: the protobuf primitives, every TensorProto encoding, exact round
 * trips over the shared models and the conformance suite, onnxruntime-web parity of re-written
 * models, and 200 hostile mutations of a real model that must end in a Model or a FormatError.
 * @module
 */
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-web";
import { PROJECT_ROOT, sharedPath } from "../cli/shared.ts";
import { decodeOpq, encodeOpq } from "./container.ts";
import { FORMAT_ERROR_CODES, FormatError } from "./errors.ts";
import type { Graph, Model, OpqModel, Tensor } from "./graph.ts";
import { MAX_GRAPH_DEPTH, readOnnx, readTensorProto, readTensorProtoNamed } from "./onnx-reader.ts";
import { toDenseModel, writeOnnx, writeTensorProto } from "./onnx-writer.ts";
import { ProtoReader, ProtoWriter } from "./protobuf.ts";
import { mulberry32 } from "./prng.ts";

const model = (name: string) => new Uint8Array(readFileSync(sharedPath("models", name)));

/** Run `fn` and return the FormatError code it throws (failing on any other outcome). */
function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof FormatError) return e.code;
    throw e;
  }
  throw new Error("expected a FormatError, but nothing was thrown");
}

/** A TensorProto built field by field, to exercise encodings the writer itself never emits. */
function tensorProto(build: (w: ProtoWriter) => void): Uint8Array {
  const w = new ProtoWriter();
  build(w);
  return w.finish();
}

/** A deterministic PRNG, so a failing mutation can be replayed. */
const rng = mulberry32;

describe("protobuf wire format", () => {
  test("varints round-trip, negative int64 takes 10 bytes, 2^63 saturates to INT64_MAX", () => {
    const values = [0, 1, 127, 128, 300, 2 ** 31, 2 ** 32 + 5, 2 ** 53 - 1, -1, -(2 ** 31), -(2 ** 53) + 1];
    const w = new ProtoWriter();
    for (const v of values) w.int64(1, v);
    const r = new ProtoReader(w.finish());
    for (const v of values) {
      expect(r.key()).toEqual([1, 0]);
      expect(r.int64()).toBe(v);
    }
    expect(r.done()).toBe(true);
    expect([...new ProtoWriter().int64(1, -1).finish()]).toEqual([8, ...Array(9).fill(0xff), 1]);
    // INT64_MAX read into a number becomes 2^63; written back it must not wrap to INT64_MIN.
    expect([...new ProtoWriter().int64(1, 2 ** 63).finish()]).toEqual([8, ...Array(8).fill(0xff), 0x7f]);
    const big = new ProtoReader(new Uint8Array([...Array(8).fill(0xff), 0x7f]));
    expect(big.int64Big()).toBe(9223372036854775807n);
  });

  test("nested lengths are measured before the one allocation", () => {
    const inner = "x".repeat(200); // a 2-byte length prefix inside a 2-byte length prefix
    const bytes = new ProtoWriter().fork(3).string(1, inner).float(2, 0.5).join().finish();
    const r = new ProtoReader(bytes);
    expect(r.key()).toEqual([3, 2]);
    const sub = r.message();
    expect(r.done()).toBe(true);
    expect(sub.key()).toEqual([1, 2]);
    expect(sub.string()).toBe(inner);
    expect(sub.key()).toEqual([2, 5]);
    expect(sub.float()).toBe(0.5);
  });

  test("lengths past the end, overlong varints and group wire types are typed errors", () => {
    expect(codeOf(() => new ProtoReader(new Uint8Array([0x0a, 0x05, 1, 2])).message())).toBe("TRUNCATED");
    expect(codeOf(() => new ProtoReader(new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])).bytesField())).toBe("TRUNCATED");
    expect(codeOf(() => new ProtoReader(new Uint8Array(11).fill(0x80)).varint())).toBe("CORRUPT");
    expect(codeOf(() => new ProtoReader(new Uint8Array([0x80, 0x80])).varint())).toBe("TRUNCATED");
    expect(codeOf(() => new ProtoReader(new Uint8Array([0x0b])).skip(3))).toBe("CORRUPT");
    expect(codeOf(() => new ProtoReader(new Uint8Array([0x00])).key())).toBe("CORRUPT");
  });
});

describe("TensorProto", () => {
  test("every data field, packed and unpacked, decodes to the dtype's storage", () => {
    const cases: [Uint8Array, Tensor][] = [
      [tensorProto((w) => w.int64s(1, [2]).int64(2, 1).floats(4, [1.5, -2], true)), { dtype: "float32", dims: [2], data: new Float32Array([1.5, -2]) }],
      [tensorProto((w) => w.int64s(1, [2, 1]).int64(2, 1).floats(4, [3, 4])), { dtype: "float32", dims: [2, 1], data: new Float32Array([3, 4]) }],
      [tensorProto((w) => w.int64s(1, [2]).int64(2, 3).int64s(5, [-3, 5])), { dtype: "int8", dims: [2], data: new Int8Array([-3, 5]) }],
      [tensorProto((w) => w.int64s(1, [1]).int64(2, 10).int64s(5, [0x3c00], true)), { dtype: "float16", dims: [1], data: new Uint16Array([0x3c00]) }],
      [tensorProto((w) => w.int64s(1, [3]).int64(2, 9).int64s(5, [1, 0, 1])), { dtype: "bool", dims: [3], data: new Uint8Array([1, 0, 1]) }],
      [tensorProto((w) => w.int64s(1, [2]).int64(2, 7).int64s(7, [-1, 2 ** 40], true)), { dtype: "int64", dims: [2], data: new BigInt64Array([-1n, 2n ** 40n]) }],
      [tensorProto((w) => w.int64s(1, [1]).int64(2, 13).int64s(11, [-1])), { dtype: "uint64", dims: [1], data: new BigUint64Array([2n ** 64n - 1n]) }],
      [tensorProto((w) => w.int64s(1, [1]).int64(2, 12).int64s(11, [4000000000])), { dtype: "uint32", dims: [1], data: new Uint32Array([4000000000]) }],
      [tensorProto((w) => w.int64(2, 11).double(10, Math.PI)), { dtype: "float64", dims: [], data: new Float64Array([Math.PI]) }],
      [tensorProto((w) => w.int64s(1, [2]).int64(2, 8).string(6, "a").string(6, "ü")), { dtype: "string", dims: [2], data: ["a", "ü"] }],
      [tensorProto((w) => w.int64s(1, [0, 3]).int64(2, 1)), { dtype: "float32", dims: [0, 3], data: new Float32Array(0) }],
    ];
    for (const [bytes, want] of cases) {
      const got = readTensorProto(bytes);
      expect(got).toEqual(want);
      expect(readTensorProto(writeTensorProto(got))).toEqual(want); // and the raw_data form reads back the same
    }
  });

  test("raw_data at an odd offset is copied into an aligned array", () => {
    const raw = new Uint8Array(new Float32Array([1, -2, 3.25]).buffer);
    const bytes = tensorProto((w) => w.string(8, "w").int64s(1, [3]).int64(2, 1).bytes(9, raw));
    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    const { name, tensor } = readTensorProtoNamed(shifted.subarray(1));
    expect(name).toBe("w");
    expect(tensor.data).toEqual(new Float32Array([1, -2, 3.25]));
  });

  test("data that disagrees with dims, external data and unknown dtypes are refused", () => {
    const raw8 = new Uint8Array(8);
    expect(codeOf(() => readTensorProto(tensorProto((w) => w.int64s(1, [3]).int64(2, 1).bytes(9, raw8))))).toBe("CORRUPT");
    expect(codeOf(() => readTensorProto(tensorProto((w) => w.int64s(1, [2 ** 31, 2 ** 31]).int64(2, 1).bytes(9, raw8))))).toBe("CORRUPT");
    expect(codeOf(() => readTensorProto(tensorProto((w) => w.int64s(1, [-2, -4]).int64(2, 1).bytes(9, raw8))))).toBe("CORRUPT");
    expect(codeOf(() => readTensorProto(tensorProto((w) => w.int64s(1, [1e9]).int64(2, 6).int64s(5, [1, 2]))))).toBe("CORRUPT");
    expect(codeOf(() => readTensorProto(tensorProto((w) => w.int64s(1, [3]).int64(2, 8).string(6, "x"))))).toBe("CORRUPT");
    expect(codeOf(() => readTensorProto(tensorProto((w) => w.int64s(1, [1]).int64(2, 16).bytes(9, raw8.subarray(0, 2)))))).toBe("UNSUPPORTED");
    expect(codeOf(() => readTensorProto(tensorProto((w) => w.int64s(1, [1]).bytes(9, raw8.subarray(0, 4)))))).toBe("CORRUPT");
    const external = tensorProto((w) => w.int64s(1, [2]).int64(2, 1).fork(13).string(1, "location").string(2, "w.bin").join().int64(14, 1));
    expect(() => readTensorProto(external)).toThrow(/re-saved with weights inline/);
    expect(codeOf(() => readTensorProto(external))).toBe("UNSUPPORTED");
  });

  test("conformance input/output .pb files read, and write back identically", () => {
    const abs = join(sharedPath("onnx-backend-tests"), "node", "test_abs", "test_data_set_0");
    const x = readTensorProtoNamed(new Uint8Array(readFileSync(join(abs, "input_0.pb"))));
    const y = readTensorProto(new Uint8Array(readFileSync(join(abs, "output_0.pb"))));
    expect(x.name).toBe("x");
    expect(x.tensor.dims).toEqual([3, 4, 5]);
    expect(y.data).toEqual((x.tensor.data as Float32Array).map(Math.abs));
    // Every .pb in the suite holding a tensor round-trips; the rest are sequences/optionals.
    const dtypes = new Set<string>();
    let tensors = 0, others = 0;
    for (const { dir } of conformanceCases()) {
      const ds = join(dir, "test_data_set_0");
      if (!existsSync(ds)) continue;
      for (const f of readdirSync(ds)) {
        const bytes = new Uint8Array(readFileSync(join(ds, f)));
        let t: { name: string; tensor: Tensor };
        try {
          t = readTensorProtoNamed(bytes);
        } catch (e) {
          expect(e).toBeInstanceOf(FormatError);
          others++;
          continue;
        }
        tensors++;
        dtypes.add(t.tensor.dtype);
        expect(bitwise(readTensorProtoNamed(writeTensorProto(t.tensor, t.name)))).toEqual(bitwise(t));
      }
    }
    expect(tensors).toBeGreaterThan(3000);
    expect(others).toBeLessThan(100);
    expect([...dtypes].sort()).toEqual(["bool", "float16", "float32", "float64", "int16", "int32", "int64", "int8", "string", "uint16", "uint32", "uint64", "uint8"]);
  });
});

/** A named tensor with numeric data as bytes, so NaNs compare by their bits (toEqual finds NaN ≠ NaN in typed arrays). */
function bitwise({ name, tensor }: { name: string; tensor: Tensor }): unknown {
  const d = tensor.data;
  return { name, dtype: tensor.dtype, dims: tensor.dims, data: Array.isArray(d) ? d : new Uint8Array(d.buffer, d.byteOffset, d.byteLength) };
}

/** Every conformance case folder. */
function conformanceCases(): { name: string; dir: string }[] {
  const root = sharedPath("onnx-backend-tests");
  return readdirSync(root).flatMap((group) => readdirSync(join(root, group)).map((name) => ({ name, dir: join(root, group, name) })));
}

describe("readOnnx", () => {
  test("lenet5: metadata, inputs, outputs, ops and every parameter", () => {
    const m = readOnnx(model("lenet5-fmnist.onnx"));
    expect(m.irVersion).toBe(7);
    expect(m.opsetImports).toEqual([{ domain: "", version: 13 }]);
    expect(m.producerName).toBe("pytorch");
    expect(m.graph.inputs).toEqual([{ name: "input", dtype: "float32", shape: ["batch", 1, 28, 28] }]);
    expect(m.graph.outputs).toEqual([{ name: "logits", dtype: "float32", shape: ["batch", 10] }]);
    expect(new Set(m.graph.nodes.map((n) => n.opType))).toEqual(new Set(["Conv", "Relu", "MaxPool", "Flatten", "Gemm"]));
    const params = Object.values(m.graph.initializers).reduce((s, t) => s + t.data.length, 0);
    expect(params).toBe(61706); // models/README.md
    const w = m.graph.initializers["c1.weight"]!;
    expect(w.dims).toEqual([6, 1, 5, 5]);
    expect(w.data).toBeInstanceOf(Float32Array);
    expect((w.data as Float32Array).every(Number.isFinite)).toBe(true);
    const conv = m.graph.nodes.find((n) => n.opType === "Conv")!;
    expect(conv.attrs.kernel_shape).toEqual({ type: "ints", value: [5, 5] });
  });

  test("not a model → BAD_MAGIC; no graph → CORRUPT; model-local functions → UNSUPPORTED", () => {
    expect(codeOf(() => readOnnx(new Uint8Array(0)))).toBe("BAD_MAGIC");
    expect(codeOf(() => readOnnx(new TextEncoder().encode("OPQ1 not onnx")))).toBe("BAD_MAGIC");
    expect(codeOf(() => readOnnx(new ProtoWriter().int64(1, 7).finish()))).toBe("CORRUPT");
    expect(readOnnx(new ProtoWriter().int64(1, 7).fork(7).join().finish()).graph.nodes).toEqual([]);
    expect(codeOf(() => readOnnx(new ProtoWriter().int64(1, 7).fork(7).join().fork(25).string(1, "f").join().finish()))).toBe("UNSUPPORTED");
  });

  test("attributes without a type field get it from the field that is set", () => {
    const w = new ProtoWriter().int64(1, 3).fork(7).fork(1).string(4, "Foo");
    const attr = (build: (w: ProtoWriter) => void) => { w.fork(5); build(w); w.join(); };
    attr((w) => w.string(1, "f").float(2, 0.25));
    attr((w) => w.string(1, "i").int64(3, -7));
    attr((w) => w.string(1, "s").string(4, "hi"));
    attr((w) => w.string(1, "floats").floats(7, [1, 2]));
    attr((w) => w.string(1, "ints").int64s(8, [3, 4], true));
    attr((w) => w.string(1, "strings").string(9, "a").string(9, "b"));
    attr((w) => { w.string(1, "t").fork(5).int64s(1, [1]).int64(2, 6).int64s(5, [9]).join(); });
    attr((w) => { w.string(1, "g").fork(6).string(2, "body").join(); });
    const m = readOnnx(w.join().join().finish());
    expect(m.graph.nodes[0]!.attrs).toEqual({
      f: { type: "float", value: 0.25 },
      i: { type: "int", value: -7 },
      s: { type: "string", value: "hi" },
      floats: { type: "floats", value: [1, 2] },
      ints: { type: "ints", value: [3, 4] },
      strings: { type: "strings", value: ["a", "b"] },
      t: { type: "tensor", value: { dtype: "int32", dims: [1], data: new Int32Array([9]) } },
      g: { type: "graph", value: { name: "body", nodes: [], inputs: [], outputs: [], initializers: {} } },
    });
    const untyped = new ProtoWriter().int64(1, 3).fork(7).fork(1).fork(5).string(1, "x").join().join().join().finish();
    expect(codeOf(() => readOnnx(untyped))).toBe("CORRUPT");
  });

  test("initializers listed as graph inputs (IR < 4) are not real inputs, and the writer restores them", () => {
    const m = tinyModel(3);
    const bytes = writeOnnx(m);
    // In the file, IR 3 lists the initializer as an input too ...
    const r = new ProtoReader(bytes);
    let graph: ProtoReader | undefined;
    while (!r.done()) { const [f, w] = r.key(); if (f === 7) graph = r.message(); else r.skip(w); }
    const inputs: string[] = [];
    while (!graph!.done()) {
      const [f, w] = graph!.key();
      if (f === 11) { const v = graph!.message(); v.key(); inputs.push(v.string()); } else graph!.skip(w);
    }
    expect(inputs).toEqual(["x", "w"]);
    // ... and reading it back lists only the real one.
    expect(readOnnx(bytes)).toEqual(m);
    expect(readOnnx(writeOnnx({ ...m, irVersion: 8 })).graph.inputs.map((v) => v.name)).toEqual(["x"]);
  });

  test(`subgraphs nest at most ${MAX_GRAPH_DEPTH} deep`, () => {
    const nest = (depth: number): Graph => ({
      name: `g${depth}`, inputs: [], outputs: [], initializers: {},
      nodes: depth === 0 ? [] : [{ opType: "If", domain: "", name: "", inputs: ["c"], outputs: ["y"], attrs: { then_branch: { type: "graph", value: nest(depth - 1) } } }],
    });
    const at = (depth: number): Model => ({ irVersion: 8, opsetImports: [{ domain: "", version: 13 }], producerName: "", graph: nest(depth) });
    expect(readOnnx(writeOnnx(at(MAX_GRAPH_DEPTH)))).toEqual(at(MAX_GRAPH_DEPTH));
    expect(codeOf(() => readOnnx(writeOnnx(at(MAX_GRAPH_DEPTH + 1))))).toBe("TOO_LARGE");
    expect(codeOf(() => readOnnx(writeOnnx(at(5000))))).toBe("TOO_LARGE");
  });

  test("a name such as __proto__ stays an own property", () => {
    const m = tinyModel(8);
    m.graph.initializers = JSON.parse('{"__proto__": null}');
    Object.defineProperty(m.graph.initializers, "__proto__", { value: { dtype: "float32", dims: [1], data: new Float32Array([2]) }, enumerable: true });
    const back = readOnnx(writeOnnx(m));
    expect(Object.keys(back.graph.initializers)).toEqual(["__proto__"]);
    expect(Object.getPrototypeOf(back.graph.initializers)).toBe(Object.prototype);
  });
});

/** y = x · w + b, with w [2, 2] and a scalar-ish b; `irVersion` picks the initializer convention. */
function tinyModel(irVersion: number): Model {
  return {
    irVersion,
    opsetImports: [{ domain: "", version: 13 }],
    producerName: "opq-test",
    graph: {
      name: "tiny",
      nodes: [{ opType: "MatMul", domain: "", name: "mm", inputs: ["x", "w"], outputs: ["y"], attrs: {} }],
      inputs: [{ name: "x", dtype: "float32", shape: [null, 2] }],
      outputs: [{ name: "y", dtype: "float32", shape: ["n", 2] }],
      initializers: { w: { dtype: "float32", dims: [2, 2], data: new Float32Array([1, 2, 3, 4]) } },
    },
  };
}

describe("writeOnnx", () => {
  test("read → write → read is exact for every shared model", () => {
    for (const name of ["lenet5-fmnist.onnx", "resnet20-fmnist.onnx", "mobilenet_v2-224.onnx", "resnet18-224.onnx"]) {
      const m = readOnnx(model(name));
      expect(readOnnx(writeOnnx(m))).toEqual(m);
    }
  });

  test("read → write → read is exact for the conformance models; the rest are UNSUPPORTED", () => {
    let same = 0;
    const unsupported: string[] = [];
    for (const { name, dir } of conformanceCases()) {
      let m: Model;
      try {
        m = readOnnx(new Uint8Array(readFileSync(join(dir, "model.onnx"))));
      } catch (e) {
        // bfloat16 tensors, sequence/optional graph inputs, untyped subgraph inputs
        expect((e as FormatError).code).toBe("UNSUPPORTED");
        unsupported.push(name);
        continue;
      }
      expect(readOnnx(writeOnnx(m))).toEqual(m);
      same++;
    }
    expect(same).toBeGreaterThan(1000);
    expect(unsupported.length).toBeLessThan(40);
  });

  test("inconsistent tensors are refused with INVALID_ARGUMENT", () => {
    const m = tinyModel(8);
    m.graph.initializers.w = { dtype: "float32", dims: [3, 2], data: new Float32Array(4) };
    expect(codeOf(() => writeOnnx(m))).toBe("INVALID_ARGUMENT");
    m.graph.initializers.w = { dtype: "float32", dims: [2, 2], data: new Int32Array(4) };
    expect(codeOf(() => writeOnnx(m))).toBe("INVALID_ARGUMENT");
  });

  test("onnxruntime-web runs re-written lenet5 and resnet20 exactly like the originals", async () => {
    ort.env.wasm.numThreads = 1;
    ort.env.logLevel = "error";
    const random = rng(7);
    const x = new ort.Tensor("float32", Float32Array.from({ length: 2 * 28 * 28 }, () => random() * 2 - 1), [2, 1, 28, 28]);
    for (const name of ["lenet5-fmnist.onnx", "resnet20-fmnist.onnx"]) {
      const original = model(name);
      const rewritten = writeOnnx(readOnnx(original));
      const [a, b] = [await ort.InferenceSession.create(original), await ort.InferenceSession.create(rewritten)];
      const [ya, yb] = [(await a.run({ input: x })).logits!, (await b.run({ input: x })).logits!];
      expect(yb.dims).toEqual([2, 10]);
      expect(yb.data).toEqual(ya.data);
      await a.release();
      await b.release();
    }
  });
});

/** y = x · W + b, W [4, 3] sparse uniform, b [3] from a table codebook. */
function opq(): OpqModel {
  return {
    model: {
      irVersion: 8, opsetImports: [{ domain: "", version: 13 }], producerName: "opq",
      graph: {
        name: "dense",
        nodes: [
          { opType: "MatMul", domain: "", name: "", inputs: ["x", "W"], outputs: ["xw"], attrs: {} },
          { opType: "Add", domain: "", name: "", inputs: ["xw", "b"], outputs: ["y"], attrs: {} },
        ],
        inputs: [{ name: "x", dtype: "float32", shape: [1, 4] }],
        outputs: [{ name: "y", dtype: "float32", shape: [1, 3] }],
        initializers: {},
      },
    },
    compressed: [
      { name: "W", dims: [4, 3], codebook: { kind: "uniform", step: 0.5 }, indices: new Uint32Array([0, 5, 11]), codes: new Int32Array([2, -1, 3]) },
      { name: "b", dims: [3], codebook: { kind: "table", values: new Float32Array([-0.25, 10]) }, indices: new Uint32Array([1, 2]), codes: new Int32Array([1, 0]) },
    ],
    metadata: {},
  };
}

describe("toDenseModel", () => {
  test("dequantizes every compressed tensor into a float32 initializer", () => {
    const dense = toDenseModel(opq());
    expect(dense.graph.initializers.W).toEqual({ dtype: "float32", dims: [4, 3], data: new Float32Array([1, 0, 0, 0, 0, -0.5, 0, 0, 0, 0, 0, 1.5]) });
    expect(dense.graph.initializers.b).toEqual({ dtype: "float32", dims: [3], data: new Float32Array([0, 10, -0.25]) });
    expect(readOnnx(writeOnnx(dense))).toEqual(dense);
  });

  test("the dense ONNX runs in onnxruntime-web with the dequantized weights", async () => {
    ort.env.wasm.numThreads = 1;
    const session = await ort.InferenceSession.create(writeOnnx(toDenseModel(opq())));
    const { y } = await session.run({ x: new ort.Tensor("float32", new Float32Array([1, 2, 3, 4]), [1, 4]) });
    // column 0: 1·1; column 1: 0 + 10; column 2: 2·(-0.5) + 4·1.5 - 0.25
    expect([...(y!.data as Float32Array)]).toEqual([1, 10, 4.75]);
    await session.release();
  });

  test("inconsistent compressed tensors are refused", () => {
    const bad = (edit: (m: OpqModel) => void) => { const m = opq(); edit(m); return codeOf(() => toDenseModel(m)); };
    expect(bad((m) => { m.compressed[0]!.indices = new Uint32Array([0, 5, 12]); })).toBe("INVALID_ARGUMENT");
    expect(bad((m) => { m.compressed[0]!.indices = new Uint32Array([5, 5, 6]); })).toBe("INVALID_ARGUMENT");
    expect(bad((m) => { m.compressed[1]!.codes = new Int32Array([1, 2]); })).toBe("INVALID_ARGUMENT");
    expect(bad((m) => { m.compressed[1]!.codes = new Int32Array([1]); })).toBe("INVALID_ARGUMENT");
    expect(bad((m) => { m.model.graph.initializers.W = { dtype: "float32", dims: [1], data: new Float32Array(1) }; })).toBe("INVALID_ARGUMENT");
  });
});

describe("opq export", () => {
  const cli = (...args: string[]) => {
    const p = spawnSync(join(PROJECT_ROOT, "node_modules", ".bin", "bun"), [join(PROJECT_ROOT, "cli", "main.ts"), "export", ...args], { encoding: "utf8" });
    return { status: p.status, stdout: p.stdout, stderr: p.stderr };
  };

  test("writes the dense ONNX of a .opq and prints one JSON object", () => {
    const dir = mkdtempSync(join(tmpdir(), "opq-export-"));
    try {
      const input = join(dir, "tiny.opq");
      const bytes = encodeOpq(opq());
      writeFileSync(input, bytes);
      const run = cli(input, "-o", join(dir, "dense.onnx"), "--json");
      expect(run.status).toBe(0);
      const result = JSON.parse(run.stdout);
      expect(result).toEqual({ output: join(dir, "dense.onnx"), bytes: statSync(join(dir, "dense.onnx")).size, tensors: 2, opqDomainNodes: 0 });
      expect(readOnnx(new Uint8Array(readFileSync(result.output)))).toEqual(toDenseModel(decodeOpq(bytes)));
      // Without -o the ONNX goes beside the input as .dense.onnx (never over an FP32 tiny.onnx).
      expect(cli(input).status).toBe(0);
      expect(readOnnx(new Uint8Array(readFileSync(join(dir, "tiny.dense.onnx")))).graph.initializers.W!.dims).toEqual([4, 3]);
      // Errors: a missing file, an ONNX file passed as .opq, no input at all.
      expect(JSON.parse(cli(join(dir, "nope.opq"), "--json").stdout).error.code).toBe("NOT_FOUND");
      const notOpq = cli(sharedPath("models", "lenet5-fmnist.onnx"), "-o", join(dir, "x.onnx"), "--json");
      expect(notOpq.status).toBe(1);
      expect(JSON.parse(notOpq.stdout).error.code).toBe("BAD_MAGIC");
      expect(cli().status).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("hostile input", () => {
  /** Offsets of the length prefixes of the model's messages and raw_data fields, and of raw_data payloads. */
  function layout(bytes: Uint8Array): { lengths: [number, number][]; payloads: [number, number][] } {
    const lengths: [number, number][] = [];
    const payloads: [number, number][] = [];
    const walk = (r: ProtoReader, nested: Record<number, Record<number, unknown> | "raw">) => {
      while (!r.done()) {
        const [f, w] = r.key();
        const kind = nested[f];
        if (w !== 2 || !kind) { r.skip(w); continue; }
        const at = r.pos;
        const sub = r.message();
        lengths.push([at, sub.pos]);
        if (kind === "raw") payloads.push([sub.pos, sub.end]);
        else walk(sub, kind as Record<number, Record<number, unknown> | "raw">);
      }
    };
    walk(new ProtoReader(bytes), { 7: { 1: { 5: { 5: {} } }, 5: { 9: "raw" }, 11: {}, 12: {} } });
    return { lengths, payloads };
  }

  test("200 mutations of lenet5 each parse to a Model or throw a coded FormatError", () => {
    const base = model("lenet5-fmnist.onnx");
    const { lengths, payloads } = layout(base);
    expect(lengths.length).toBeGreaterThan(30);
    const inPayload = (i: number) => payloads.some(([s, e]) => i >= s && i < e);
    const random = rng(20260123);
    const pick = (n: number) => Math.floor(random() * n);
    const mutants: { kind: string; bytes: Uint8Array }[] = [];
    for (let k = 0; k < 60; k++) mutants.push({ kind: "truncate", bytes: base.slice(0, k < 5 ? k : pick(base.length)) });
    for (let k = 0; k < 100; k++) {
      const b = base.slice();
      const flips = 1 + pick(8);
      for (let j = 0; j < flips; j++) {
        // Most bytes are float payload where any value is valid; aim 3 of 4 flips at structure.
        let i = pick(b.length);
        for (let tries = 0; k % 4 !== 0 && inPayload(i) && tries < 50; tries++) i = pick(b.length);
        b[i] = pick(256);
      }
      mutants.push({ kind: "flip", bytes: b });
    }
    const huge = [[0xff, 0xff, 0xff, 0xff, 0x0f], [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40], Array(9).fill(0xff).concat(1), [0x80, 0x80, 0x80, 0x80, 0x10]];
    for (let k = 0; k < 40; k++) {
      const [s, e] = lengths[pick(lengths.length)]!;
      const v = huge[k % huge.length]!;
      const b = new Uint8Array(base.length - (e - s) + v.length);
      b.set(base.subarray(0, s));
      b.set(v, s);
      b.set(base.subarray(e), s + v.length);
      mutants.push({ kind: "huge length", bytes: b });
    }
    expect(mutants.length).toBe(200);
    const outcomes: Record<string, number> = {};
    const codes = new Set<string>(Object.values(FORMAT_ERROR_CODES));
    for (const { kind, bytes } of mutants) {
      let outcome = "parsed";
      try {
        const m = readOnnx(bytes);
        // What was allocated is justified by the input: at most 8 bytes per input byte (int64 from 1-byte varints).
        let allocated = 0;
        const count = (g: Graph) => {
          for (const t of Object.values(g.initializers)) allocated += Array.isArray(t.data) ? t.data.length : t.data.byteLength;
          for (const n of g.nodes) for (const a of Object.values(n.attrs)) if (a.type === "graph") count(a.value);
        };
        count(m.graph);
        expect(allocated).toBeLessThanOrEqual(8 * bytes.length);
      } catch (e) {
        if (!(e instanceof FormatError)) throw new Error(`${kind} mutant threw ${(e as Error)?.name}: ${(e as Error)?.message}`);
        expect(codes.has(e.code)).toBe(true);
        outcome = e.code;
      }
      const key = `${kind}: ${outcome}`;
      outcomes[key] = (outcomes[key] ?? 0) + 1;
    }
    console.log("mutation outcomes", outcomes);
    const rejected = Object.entries(outcomes).filter(([k]) => !k.endsWith("parsed")).reduce((s, [, v]) => s + v, 0);
    expect(rejected).toBeGreaterThan(100);
    expect(rejected).toBeLessThan(200);
    // A length that claims more than the file holds is always caught as such.
    expect(outcomes["huge length: TRUNCATED"]).toBe(40);
  });

  test("dims whose product dwarfs the data are refused before anything is allocated", () => {
    // An initializer claiming [2^26, 2^26] float32 (2^52 elements, 16 PiB) over 16 bytes of raw_data.
    const forged = (dims: number[]) =>
      new ProtoWriter().int64(1, 8).fork(7).fork(5).int64s(1, dims).int64(2, 1).string(8, "w").bytes(9, new Uint8Array(16)).join().join().finish();
    expect(readOnnx(forged([2, 2])).graph.initializers.w!.dims).toEqual([2, 2]);
    expect(codeOf(() => readOnnx(forged([2 ** 26, 2 ** 26])))).toBe("CORRUPT");
    expect(codeOf(() => readOnnx(forged([2 ** 40, 2 ** 40, 2 ** 40])))).toBe("CORRUPT");
  });
});
