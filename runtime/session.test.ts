/**
 * Session behaviour on hand-made graphs: running, feed validation (each error code names the
 * input and the expected vs got), refusing unsupported ops at load in one error, opset variant
 * choice, .opq sources (dequantized at load) and real models from ../shared.
 * @module
 */
import { describe, expect, test } from "bun:test";
import { sharedPath } from "../cli/shared.ts";
import { type AttrValue, encodeOpq, type Graph, type Model, type Node, type OpqModel, type Tensor, type ValueInfo } from "../format/mod.ts";
import { createSession, OpqRuntimeError, RUNTIME_ERROR_CODES } from "./mod.ts";
import { stopCpuWorkers } from "./cpu/worker-pool.ts";
import { KernelError, type OpVersion } from "./ops/types.ts";

const f32 = (dims: number[], values: number[]): Tensor => ({ dtype: "float32", dims, data: Float32Array.from(values) });
const i64 = (values: number[]): Tensor => ({ dtype: "int64", dims: [values.length], data: BigInt64Array.from(values.map(BigInt)) });
const node = (opType: string, inputs: string[], outputs: string[], attrs: Record<string, AttrValue> = {}, name = ""): Node =>
  ({ opType, domain: "", name, inputs, outputs, attrs });
const model = (g: Partial<Graph> & { nodes: Node[] }, opset = 13): Model => ({
  irVersion: 8,
  opsetImports: [{ domain: "", version: opset }],
  producerName: "test",
  graph: { name: "g", inputs: [], outputs: [], initializers: {}, ...g },
});

/** Error thrown by `fn` (sync or async), or a failure if none is. */
async function caught(fn: () => unknown): Promise<OpqRuntimeError> {
  try {
    await fn();
  } catch (e) {
    expect(e).toBeInstanceOf(OpqRuntimeError);
    return e as OpqRuntimeError;
  }
  throw new Error("expected an OpqRuntimeError, nothing was thrown");
}

// y = Relu(x) + b, x: [batch, 3]
const X: ValueInfo = { name: "x", dtype: "float32", shape: ["batch", 3] };
const reluAdd = model({
  nodes: [node("Relu", ["x"], ["r"]), node("Add", ["r", "b"], ["y"])],
  inputs: [X],
  outputs: [{ name: "y", dtype: "float32", shape: null }],
  initializers: { b: f32([3], [10, 20, 30]) },
});

describe("run", () => {
  test("computes a small graph and infers the output shape", async () => {
    const s = await createSession(reluAdd);
    expect(s.inputs).toEqual([X]);
    expect(s.outputs[0]!.shape).toEqual(["batch", 3]);
    const { y } = await s.run({ x: f32([2, 3], [-1, 2, -3, 4, -5, 6]) });
    expect(y!.dims).toEqual([2, 3]);
    expect(Array.from(y!.data as Float32Array)).toEqual([10, 22, 30, 14, 20, 36]);
    expect(s.info.format).toBe("onnx");
    expect(s.info.layers.map((l) => l.opType)).toEqual(["Relu", "Add"]);
    expect(s.info.layers.every((l) => l.path.length > 0)).toBe(true);
  });

  test("folds constant subgraphs (Shape of a static shape, Gather, Reshape target) at load", async () => {
    // x: [2, 6] → Reshape to [Shape(c)[0], -1] where c is a constant [3, 4] → [3, 4]
    const m = model({
      nodes: [
        node("Shape", ["c"], ["cs"]),
        node("Gather", ["cs", "zero"], ["d0"], { axis: { type: "int", value: 0 } }),
        node("Unsqueeze", ["d0", "zero1"], ["d0v"]),
        node("Concat", ["d0v", "minus1"], ["target"], { axis: { type: "int", value: 0 } }),
        node("Reshape", ["x", "target"], ["y"]),
      ],
      inputs: [{ name: "x", dtype: "float32", shape: [2, 6] }],
      outputs: [{ name: "y", dtype: "float32", shape: null }],
      initializers: {
        c: f32([3, 4], new Array(12).fill(0)),
        zero: { dtype: "int64", dims: [], data: BigInt64Array.of(0n) },
        zero1: i64([0]),
        minus1: i64([-1]),
      },
    });
    const s = await createSession(m);
    expect(s.info.layers.map((l) => l.opType)).toEqual(["Reshape"]);
    expect(s.outputs[0]!.shape).toEqual([3, 4]);
    const { y } = await s.run({ x: f32([2, 6], Array.from({ length: 12 }, (_, i) => i)) });
    expect(y!.dims).toEqual([3, 4]);
    expect((y!.data as Float32Array)[11]).toBe(11);
  });

  test("an output that is a folded constant is returned as a copy", async () => {
    const m = model({
      nodes: [node("Identity", ["c"], ["y"]), node("Relu", ["x"], ["z"])],
      inputs: [{ name: "x", dtype: "float32", shape: [1] }],
      outputs: [{ name: "y", dtype: "float32", shape: null }, { name: "z", dtype: "float32", shape: null }],
      initializers: { c: f32([2], [1, 2]) },
    });
    const s = await createSession(m);
    const first = await s.run({ x: f32([1], [1]) });
    (first.y!.data as Float32Array)[0] = 99;
    const second = await s.run({ x: f32([1], [1]) });
    expect(Array.from(second.y!.data as Float32Array)).toEqual([1, 2]);
  });

  test("dispose makes later runs fail with DISPOSED", async () => {
    const s = await createSession(reluAdd);
    s.dispose();
    const e = await caught(() => s.run({ x: f32([1, 3], [1, 2, 3]) }));
    expect(e.code).toBe(RUNTIME_ERROR_CODES.DISPOSED);
  });
});

describe("control flow", () => {
  test("If runs the chosen branch, which reads values of the enclosing graph", async () => {
    // a = Relu(x); y = If(c) { then: Neg(a) } else { Identity(x) } — `a` must stay alive until If runs
    const branch = (n: Node, out: string): Graph => ({ name: out, nodes: [n], inputs: [], outputs: [{ name: out, dtype: "float32", shape: null }], initializers: {} });
    const m = model({
      nodes: [
        node("Relu", ["x"], ["a"]),
        node("If", ["c"], ["y"], {
          then_branch: { type: "graph", value: branch(node("Neg", ["a"], ["t"]), "t") },
          else_branch: { type: "graph", value: branch(node("Identity", ["x"], ["e"]), "e") },
        }),
      ],
      inputs: [X, { name: "c", dtype: "bool", shape: [] }],
      outputs: [{ name: "y", dtype: "float32", shape: null }],
    });
    const s = await createSession(m);
    const x = f32([1, 3], [-1, 2, -3]);
    const yes = await s.run({ x, c: { dtype: "bool", dims: [], data: Uint8Array.of(1) } });
    expect(Array.from(yes.y!.data as Float32Array)).toEqual([-0, -2, -0]);
    const no = await s.run({ x, c: { dtype: "bool", dims: [], data: Uint8Array.of(0) } });
    expect(Array.from(no.y!.data as Float32Array)).toEqual([-1, 2, -3]);
  });

  test("an unsupported op inside a branch is reported at load with the others", async () => {
    const inner: Graph = { name: "b", nodes: [node("NoSuchOp", ["x"], ["t"], {}, "deep")], inputs: [], outputs: [{ name: "t", dtype: "float32", shape: null }], initializers: {} };
    const m = model({
      nodes: [node("If", ["c"], ["y"], { then_branch: { type: "graph", value: inner }, else_branch: { type: "graph", value: inner } }), node("AlsoMissing", ["y"], ["z"])],
      inputs: [X, { name: "c", dtype: "bool", shape: [] }],
      outputs: [{ name: "z", dtype: "float32", shape: null }],
    });
    const e = await caught(() => createSession(m));
    expect(e.code).toBe(RUNTIME_ERROR_CODES.UNSUPPORTED_OPS);
    expect(e.details!.ops).toEqual(["NoSuchOp", "AlsoMissing"]);
  });
});

describe("feed validation", () => {
  test("missing input → INPUT_MISSING naming it", async () => {
    const s = await createSession(reluAdd);
    const e = await caught(() => s.run({}));
    expect(e.code).toBe(RUNTIME_ERROR_CODES.INPUT_MISSING);
    expect(e.message).toContain("'x'");
    expect(e.details).toEqual({ missing: ["x"] });
  });

  test("wrong rank or static dim → INPUT_SHAPE with expected and got; symbolic dims are free", async () => {
    const s = await createSession(reluAdd);
    let e = await caught(() => s.run({ x: f32([3], [1, 2, 3]) }));
    expect(e.code).toBe(RUNTIME_ERROR_CODES.INPUT_SHAPE);
    expect(e.message).toContain("expected shape [batch, 3], got [3]");
    e = await caught(() => s.run({ x: f32([1, 4], [1, 2, 3, 4]) }));
    expect(e.code).toBe(RUNTIME_ERROR_CODES.INPUT_SHAPE);
    expect(e.details).toMatchObject({ input: "x", expected: ["batch", 3], got: [1, 4] });
    const ok = await s.run({ x: f32([5, 3], new Array(15).fill(1)) });
    expect(ok.y!.dims).toEqual([5, 3]);
  });

  test("one symbolic dim shared by two inputs must agree", async () => {
    const m = model({
      nodes: [node("Add", ["a", "b"], ["y"])],
      inputs: [{ name: "a", dtype: "float32", shape: ["n", 2] }, { name: "b", dtype: "float32", shape: ["n", 2] }],
      outputs: [{ name: "y", dtype: "float32", shape: null }],
    });
    const s = await createSession(m);
    const e = await caught(() => s.run({ a: f32([1, 2], [1, 2]), b: f32([2, 2], [1, 2, 3, 4]) }));
    expect(e.code).toBe(RUNTIME_ERROR_CODES.INPUT_SHAPE);
    expect(e.message).toContain("'n' is 1 in input 'a'");
  });

  test("wrong dtype → INPUT_DTYPE", async () => {
    const s = await createSession(reluAdd);
    const e = await caught(() => s.run({ x: { dtype: "float64", dims: [1, 3], data: Float64Array.of(1, 2, 3) } }));
    expect(e.code).toBe(RUNTIME_ERROR_CODES.INPUT_DTYPE);
    expect(e.message).toBe("input 'x': expected dtype float32, got float64");
  });

  test("data not matching dims, wrong storage, or an unknown name → INPUT_INVALID", async () => {
    const s = await createSession(reluAdd);
    let e = await caught(() => s.run({ x: f32([1, 3], [1, 2]) }));
    expect(e.code).toBe(RUNTIME_ERROR_CODES.INPUT_INVALID);
    expect(e.message).toContain("need 3 elements, got 2");
    e = await caught(() => s.run({ x: { dtype: "float32", dims: [1, 3], data: Float64Array.of(1, 2, 3) } }));
    expect(e.code).toBe(RUNTIME_ERROR_CODES.INPUT_INVALID);
    e = await caught(() => s.run({ x: f32([1, 3], [1, 2, 3]), extra: f32([1], [1]) }));
    expect(e.code).toBe(RUNTIME_ERROR_CODES.INPUT_INVALID);
    expect(e.message).toContain("'extra'");
  });

  test("a kernel refusing its inputs → KERNEL_FAILED naming the node", async () => {
    const m = model({
      nodes: [node("Reshape", ["x", "shape"], ["y"], {}, "bad_reshape")],
      inputs: [{ name: "x", dtype: "float32", shape: null }],
      outputs: [{ name: "y", dtype: "float32", shape: null }],
      initializers: { shape: i64([5]) },
    });
    const s = await createSession(m);
    const e = await caught(() => s.run({ x: f32([2], [1, 2]) }));
    expect(e.code).toBe(RUNTIME_ERROR_CODES.KERNEL_FAILED);
    expect(e.message).toContain("'bad_reshape'");
    expect(e.cause).toBeInstanceOf(KernelError);
  });
});

describe("load", () => {
  test("every unsupported op is reported at once", async () => {
    const m = model({
      nodes: [
        node("FooOp", ["x"], ["a"], {}, "foo1"),
        node("Relu", ["a"], ["b"]),
        node("BarOp", ["b"], ["c"], {}, "bar1"),
        { ...node("Baz", ["c"], ["y"], {}, "baz1"), domain: "com.example" },
      ],
      inputs: [X],
      outputs: [{ name: "y", dtype: "float32", shape: null }],
    });
    const e = await caught(() => createSession(m));
    expect(e.code).toBe(RUNTIME_ERROR_CODES.UNSUPPORTED_OPS);
    expect(e.details!.ops).toEqual(["FooOp", "BarOp", "com.example:Baz"]);
    expect(e.message).toContain("node 'foo1'");
    expect(e.message).toContain("node 'bar1'");
  });

  test("the newest variant not newer than the model's opset is chosen", async () => {
    const tag = (v: number): OpVersion["kernel"] => () => [f32([1], [v])];
    const ops: Record<string, OpVersion[]> = { Tag: [{ since: 1, kernel: tag(1) }, { since: 7, kernel: tag(7) }, { since: 13, kernel: tag(13) }] };
    const m = (opset: number) => model({
      nodes: [node("Tag", ["x"], ["y"])],
      inputs: [{ name: "x", dtype: "float32", shape: null }],
      outputs: [{ name: "y", dtype: "float32", shape: null }],
    }, opset);
    for (const [opset, want] of [[6, 1], [7, 7], [12, 7], [17, 13]] as const) {
      const s = await createSession(m(opset), { ops });
      const { y } = await s.run({ x: f32([1], [0]) });
      expect((y!.data as Float32Array)[0]).toBe(want);
    }
    const late: Record<string, OpVersion[]> = { Tag: [{ since: 13, kernel: tag(13) }] };
    const e = await caught(() => createSession(m(11), { ops: late }));
    expect(e.code).toBe(RUNTIME_ERROR_CODES.UNSUPPORTED_OPS);
    expect(e.message).toContain("no kernel for opset 11");
  });

  test("a value read before it is defined → INVALID_MODEL", async () => {
    const m = model({
      nodes: [node("Relu", ["nowhere"], ["y"])],
      inputs: [X],
      outputs: [{ name: "y", dtype: "float32", shape: null }],
    });
    const e = await caught(() => createSession(m));
    expect(e.code).toBe(RUNTIME_ERROR_CODES.INVALID_MODEL);
    expect(e.message).toContain("'nowhere'");
  });

  test("unreadable bytes and missing files → INVALID_MODEL", async () => {
    let e = await caught(() => createSession(new Uint8Array([1, 2, 3, 4, 5])));
    expect(e.code).toBe(RUNTIME_ERROR_CODES.INVALID_MODEL);
    e = await caught(() => createSession("/nonexistent/model.onnx"));
    expect(e.code).toBe(RUNTIME_ERROR_CODES.INVALID_MODEL);
    expect(e.message).toContain("/nonexistent/model.onnx");
  });

  test("an OpqModel source the reference runs is dequantized for it, and runs like its dense model", async () => {
    // y = x · W with W [2, 3] stored sparse: W[0,1] = 2·0.5, W[1,2] = -3·0.5
    const dense = model({
      nodes: [node("MatMul", ["x", "W"], ["y"])],
      inputs: [{ name: "x", dtype: "float32", shape: [1, 2] }],
      outputs: [{ name: "y", dtype: "float32", shape: null }],
    });
    const opq: OpqModel = {
      model: dense,
      compressed: [{ name: "W", dims: [2, 3], codebook: { kind: "uniform", step: 0.5 }, indices: Uint32Array.of(1, 5), codes: Int32Array.of(2, -3) }],
      metadata: { method: "test" },
    };
    const s = await createSession(opq, { backend: "cpu-reference" });
    expect(s.info.format).toBe("opq");
    expect(s.info.metadata).toEqual({ method: "test" });
    expect(s.info.layers[0]!).toMatchObject({ backend: "cpu-reference", weightForm: "dequantized-f32", residentBytes: 24 });
    const { y } = await s.run({ x: f32([1, 2], [3, 4]) });
    expect(Array.from(y!.data as Float32Array)).toEqual([0, 3, -6]);
    // The wasm backend computes on the compressed form instead, with the same result.
    const w = await createSession(opq, { backend: "wasm" });
    expect(w.info.layers[0]!).toMatchObject({ backend: "wasm", path: "wasm-sparse-gemv", weightForm: "sparse-levels-u16" });
    expect(Array.from((await w.run({ x: f32([1, 2], [3, 4]) })).y!.data as Float32Array)).toEqual([0, 3, -6]);
  });
});

describe(".opq bytes", () => {
  test("encoded .opq bytes are detected by magic, decoded, dequantized and run", async () => {
    const dense = model({
      nodes: [node("Gemm", ["x", "W", "b"], ["y"], { transB: { type: "int", value: 1 } })],
      inputs: [{ name: "x", dtype: "float32", shape: ["n", 4] }],
      outputs: [{ name: "y", dtype: "float32", shape: null }],
      initializers: { b: f32([2], [0.5, -0.5]) },
    });
    const values = Float32Array.of(-0.25, 0.75);
    const opq: OpqModel = {
      model: dense,
      // W [2, 4]: W[0,0] = 0.75, W[1,3] = -0.25 (table codebook)
      compressed: [{ name: "W", dims: [2, 4], codebook: { kind: "table", values }, indices: Uint32Array.of(0, 7), codes: Int32Array.of(1, 0) }],
      metadata: { bits: 1 },
    };
    const bytes = encodeOpq(opq);
    const s = await createSession(bytes);
    expect(s.info.format).toBe("opq");
    expect(s.info.bytes).toBe(bytes.byteLength);
    expect(s.info.metadata).toMatchObject({ bits: 1 });
    const { y } = await s.run({ x: f32([1, 4], [4, 0, 0, 8]) });
    expect(Array.from(y!.data as Float32Array)).toEqual([0.75 * 4 + 0.5, -0.25 * 8 - 0.5]);
  });

  test("a corrupt .opq is INVALID_MODEL carrying the format error code", async () => {
    const e = await caught(() => createSession(new Uint8Array([0x4f, 0x50, 0x51, 0x00, 9, 9, 9, 9])));
    expect(e.code).toBe(RUNTIME_ERROR_CODES.INVALID_MODEL);
    expect(typeof e.details?.formatCode).toBe("string");
  });
});

describe("threads", () => {
  test("threads: 2 starts the worker pool and gives the single-thread result", async () => {
    const path = sharedPath("models", "lenet5-fmnist.onnx");
    const [one, two] = [await createSession(path), await createSession(path, { threads: 2 })];
    const x = f32([4, 1, 28, 28], Array.from({ length: 4 * 784 }, (_, i) => Math.sin(i)));
    const a = await one.run({ [one.inputs[0]!.name]: x }), b = await two.run({ [two.inputs[0]!.name]: x });
    expect(Array.from(b[two.outputs[0]!.name]!.data as Float32Array)).toEqual(Array.from(a[one.outputs[0]!.name]!.data as Float32Array));
    stopCpuWorkers();
  });
});

describe("reference models (../shared/models)", () => {
  test("lenet5 loads from a path, plans every layer and runs a batch of 2", async () => {
    const s = await createSession(sharedPath("models", "lenet5-fmnist.onnx"));
    expect(s.inputs[0]!.shape).toEqual(["batch", 1, 28, 28]);
    expect(s.outputs[0]!.shape).toEqual(["batch", 10]);
    expect(s.info.layers.some((l) => l.opType === "Conv" && l.path !== "dense-fp32")).toBe(true);
    const x = f32([2, 1, 28, 28], new Array(2 * 784).fill(0.25));
    const out = await s.run({ [s.inputs[0]!.name]: x });
    const logits = out[s.outputs[0]!.name]!;
    expect(logits.dims).toEqual([2, 10]);
    const d = logits.data as Float32Array;
    // identical images give identical rows, and the rows are finite
    for (let i = 0; i < 10; i++) {
      expect(Number.isFinite(d[i]!)).toBe(true);
      expect(d[i]).toBe(d[i + 10]!);
    }
  });
});
