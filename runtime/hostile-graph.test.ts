/**
 * Graphs built to hang or blow up (issue 14), each refused with a typed error: a ResNet-20
 * `.opq` whose Conv pads are 1e15 (and strides 0 / −1, dilations 2^32); a 160 KB ONNX broadcasting
 * [1, 20000] + [20000, 1] constants; a Pad of a 1×1 constant by 30000; a `.opq` whose dims were
 * edited (checksums recomputed); a small Conv padded to 1.2·10^9 multiply-adds; Loops with a trip count of 2^62, no trip count and a true
 * condition, and a state that doubles. Memory is checked as RSS growth (not time).
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { compressModel } from "../compressor/mod.ts";
import { PROJECT_ROOT } from "../cli/shared.ts";
import { type AttrValue, decodeOpq, encodeOpq, FormatError, type Graph, type Model, type Node, type OpqModel, readOnnx, type Tensor, writeOnnx } from "../format/mod.ts";
import { createSession, OpqRuntimeError } from "./mod.ts";
import { convGeometry, windowOutputSize } from "./ops/conv.ts";
import { poolGeometry } from "./ops/pool.ts";
import { Attrs, KernelError } from "./ops/types.ts";

const node = (opType: string, inputs: string[], outputs: string[], attrs: Record<string, AttrValue> = {}): Node =>
  ({ opType, domain: "", name: "", inputs, outputs, attrs });
const model = (g: Partial<Graph> & { nodes: Node[] }, opset = 13): Model => ({
  irVersion: 8, opsetImports: [{ domain: "", version: opset }], producerName: "hostile",
  graph: { name: "g", inputs: [], outputs: [], initializers: {}, ...g },
});
const f32 = (dims: number[], fill = 1): Tensor => ({ dtype: "float32", dims, data: new Float32Array(dims.reduce((a, b) => a * b, 1)).fill(fill) });
const i64 = (values: number[], dims = [values.length]): Tensor => ({ dtype: "int64", dims, data: BigInt64Array.from(values.map(BigInt)) });
const bool = (v: boolean): Tensor => ({ dtype: "bool", dims: [], data: Uint8Array.of(v ? 1 : 0) });
const ints = (value: number[]): AttrValue => ({ type: "ints", value });
const MiB = 2 ** 20;

async function failure(fn: () => Promise<unknown>): Promise<OpqRuntimeError> {
  try {
    await fn();
  } catch (e) {
    if (!(e instanceof OpqRuntimeError)) throw e;
    return e;
  }
  throw new Error("expected an OpqRuntimeError");
}
const rssMiB = () => process.memoryUsage().rss / MiB;

describe("window geometry in exact integers", () => {
  const kernelError = (f: () => unknown) => expect(f).toThrow(KernelError);
  test("absurd pads, strides and dilations are KernelErrors, not wrapped numbers", () => {
    expect(windowOutputSize(32, 3, 1, 1, 1, 1)).toBe(32);
    kernelError(() => windowOutputSize(32, 3, 1, 1, 1e15, 1e15));
    kernelError(() => windowOutputSize(32, 3, 0, 1, 1, 1));
    kernelError(() => windowOutputSize(32, 3, -1, 1, 1, 1));
    kernelError(() => windowOutputSize(32, 3, 1, 2 ** 32, 1, 1));
    kernelError(() => windowOutputSize(32, 3, 1, 2 ** 30, 1, 1)); // (3 - 1)·2^30 + 1 > 2^31 - 1
    kernelError(() => windowOutputSize(32, 3, 1, 1, -5, 0));
    kernelError(() => windowOutputSize(2 ** 31, 3, 1, 1, 2 ** 30, 2 ** 30));
    const conv = (a: Record<string, AttrValue>) => () => convGeometry([1, 16, 32, 32], [16, 16, 3, 3], new Attrs(a, "Conv"));
    kernelError(conv({ pads: ints([1e15, 1e15, 1e15, 1e15]) }));
    kernelError(conv({ strides: ints([0, 0]) }));
    kernelError(conv({ strides: ints([-1, -1]) }));
    kernelError(conv({ dilations: ints([2 ** 32, 2 ** 32]) }));
    // Each length fits int32 but the output does not fit a typed array: refused, not allocated.
    kernelError(conv({ pads: ints([2 ** 20, 2 ** 20, 2 ** 20, 2 ** 20]) }));
    kernelError(() => poolGeometry([1, 16, 32, 32], new Attrs({ kernel_shape: ints([2, 2]), strides: ints([0, 0]) }, "MaxPool")));
    kernelError(() => poolGeometry([1, 16, 32, 32], new Attrs({ kernel_shape: ints([2, 2]), pads: ints([1e15, 0, 0, 0]) }, "MaxPool")));
  });
});

describe("a ResNet-20 .opq with hostile Conv attributes", () => {
  const onnx = readOnnx(new Uint8Array(readFileSync(join(PROJECT_ROOT, "models", "resnet20-fmnist.onnx"))));
  const { opq } = compressModel(onnx, { source: "resnet20-fmnist.onnx" });
  const good = encodeOpq(opq);
  const x: Tensor = { dtype: "float32", dims: [1, 1, 28, 28], data: new Float32Array(784).fill(0.5) };
  const withConvAttr = (name: string, value: number[]): Uint8Array => {
    const m: OpqModel = decodeOpq(good);
    const conv = m.model.graph.nodes.find((n) => n.opType === "Conv" && n.attrs.pads)!;
    conv.attrs[name] = ints(value);
    return encodeOpq(m); // checksums recomputed: the file is valid, the graph hostile
  };
  for (const [name, value] of [["pads", [1e15, 1e15, 1e15, 1e15]], ["strides", [0, 0]], ["strides", [-1, -1]], ["dilations", [2 ** 32, 2 ** 32]]] as const) {
    test(`${name} ${value[0]}: run() fails with KERNEL_FAILED naming the bad number, no hang`, async () => {
      const session = await createSession(withConvAttr(name, [...value]));
      const e = await failure(() => session.run({ [session.inputs[0]!.name]: x }));
      expect(e.code).toBe("KERNEL_FAILED");
      expect(e.message).toMatch(/pad|stride|dilat/);
    }, 20_000);
  }
});

describe("load-time folding and run-time allocations under the memory budget", () => {
  test("a 160 KB ONNX broadcasting [1, 20000] + [20000, 1] is not folded, and its run is refused before allocating", async () => {
    const m = model({
      nodes: [node("Add", ["a", "b"], ["big"]), node("ReduceSum", ["big"], ["s"], { keepdims: { type: "int", value: 0 } }), node("Add", ["s", "x"], ["y"])],
      inputs: [{ name: "x", dtype: "float32", shape: [] }],
      outputs: [{ name: "y", dtype: "float32", shape: null }],
      initializers: { a: f32([1, 20000]), b: f32([20000, 1]) },
    });
    const bytes = writeOnnx(m);
    expect(bytes.length).toBeLessThan(200_000);
    const rss0 = rssMiB();
    const session = await createSession(bytes);
    const e = await failure(() => session.run({ x: { dtype: "float32", dims: [], data: Float32Array.of(1) } }));
    expect(e.code).toBe("LIMIT_EXCEEDED");
    expect(e.details).toMatchObject({ plannedBytes: 20000 * 20000 * 4 });
    expect(rssMiB() - rss0).toBeLessThan(500); // 1.6 GB were never allocated
    // A caller who means it raises the budget (not run here: it would allocate 1.6 GB).
    expect((await createSession(bytes, { memoryBudget: 2 ** 31 })).info.limits!.memoryBudget).toBe(2 ** 31);
  });

  test("a Pad of a 1×1 constant by 30000 is refused the same way", async () => {
    const m = model({
      nodes: [node("Pad", ["c", "p"], ["big"]), node("Add", ["big", "x"], ["y"])],
      inputs: [{ name: "x", dtype: "float32", shape: [1, 1] }],
      outputs: [{ name: "y", dtype: "float32", shape: null }],
      initializers: { c: f32([1, 1]), p: i64([30000, 30000, 30000, 30000]) },
    });
    const rss0 = rssMiB();
    const session = await createSession(writeOnnx(m));
    const e = await failure(() => session.run({ x: f32([1, 1]) }));
    expect(e.code).toBe("LIMIT_EXCEEDED");
    expect(rssMiB() - rss0).toBeLessThan(500);
  });

  test("a tiny graph whose own shapes plan 1 GiB per sample gets the floor budget, not 4 GiB, and is refused before allocating", async () => {
    // Fuzz mutant 1530 of seed 1: a Pad of the input by 2^28 (a static shape the planner infers,
    // so the per-sample peak, times 64, asked for a 4 GiB default budget; filling 1 GiB took 5 s).
    const m = model({
      nodes: [node("Pad", ["x", "p"], ["big"]), node("MatMul", ["big", "w"], ["y"])],
      inputs: [{ name: "x", dtype: "float32", shape: [1, 4] }],
      outputs: [{ name: "y", dtype: "float32", shape: null }],
      initializers: { p: i64([0, 1, 0, 2 ** 28]), w: f32([6, 6]) },
    });
    const bytes = writeOnnx(m);
    expect(bytes.length).toBeLessThan(1000);
    const session = await createSession(bytes);
    expect(session.info.limits.perSampleBytes).toBeGreaterThan(2 ** 30);
    expect(session.info.limits.memoryBudget).toBe(256 * MiB);
    const rss0 = rssMiB();
    const e = await failure(() => session.run({ x: f32([1, 4]) }));
    expect(e.code).toBe("LIMIT_EXCEEDED");
    expect(e.details).toMatchObject({ opType: "Pad", plannedBytes: 4 * (2 ** 28 + 5), budget: 256 * MiB });
    expect(rssMiB() - rss0).toBeLessThan(500);
  });

  test("a 300-byte Conv whose pads ask for 1.2·10^9 multiply-adds is refused by the compute budget", async () => {
    const m = model({
      nodes: [node("Conv", ["x", "w"], ["y"], { pads: ints([2000, 2000, 2000, 2000]) })],
      inputs: [{ name: "x", dtype: "float32", shape: [1, 8, 8, 8] }],
      outputs: [{ name: "y", dtype: "float32", shape: null }],
      initializers: { w: f32([1, 8, 3, 3]) },
    });
    const session = await createSession(m);
    expect(session.info.limits!.maxMacsPerSample).toBe(2 ** 28); // 288 bytes of weights: the floor
    const e = await failure(() => session.run({ x: f32([1, 8, 8, 8]) }));
    expect(e.code).toBe("LIMIT_EXCEEDED");
    expect(e.details).toMatchObject({ limit: "compute", macs: 4006 * 4006 * 72 });
  });

  test("a .opq whose tensor dims were edited (checksums recomputed) is TOO_LARGE for its size", () => {
    const onnx = readOnnx(new Uint8Array(readFileSync(join(PROJECT_ROOT, "models", "resnet20-fmnist.onnx"))));
    const { opq } = compressModel(onnx, { sparsity: 0.74, bits: 3 });
    opq.compressed[0]!.dims = [16, 16, 1400, 1400]; // 501M elements, indices still in range
    const bytes = encodeOpq(opq);
    expect(bytes.length).toBeLessThan(60_000);
    let code = "ok";
    try { decodeOpq(bytes); } catch (e) { code = (e as FormatError).code; }
    expect(code).toBe("TOO_LARGE");
  });

  test("dims edited within the file's element limit do not raise the compute budget (no weight is dequantized at load); the run fails typed", async () => {
    const onnx = readOnnx(new Uint8Array(readFileSync(join(PROJECT_ROOT, "models", "resnet20-fmnist.onnx"))));
    const { opq } = compressModel(onnx, { sparsity: 0.74, bits: 3 });
    const base = await createSession(encodeOpq(opq));
    const x: Tensor = { dtype: "float32", dims: [1, 1, 28, 28], data: new Float32Array(784) };
    for (const [k, dims] of [[0, [4096, 1, 3, 3]], [opq.compressed.length - 1, [10, 64 * 400]]] as const) {
      const m = structuredClone(opq);
      m.compressed[k]!.dims = [...dims]; // indices stay in range: the file is valid, the graph hostile
      const s = await createSession(encodeOpq(m));
      // The compute budget counts the kept weights (the header's count), not the dims: the good file's.
      // (The memory budget follows the planned shapes, which the dims do change.)
      expect(s.info.limits.maxMacsPerSample).toBe(base.info.limits.maxMacsPerSample);
      let code = "ok";
      try { await s.run({ input: x }); } catch (e) { code = (e as OpqRuntimeError).code; }
      expect(code).toBe("KERNEL_FAILED");
      s.dispose();
    }
    base.dispose();
  });
});

describe("Loop step and memory budgets", () => {
  // body(i, cond, x) -> (cond, x'): x' = Identity(x), or Concat(x, x) to double it.
  const loopModel = (body: Node[], trip: Tensor | undefined, cond: Tensor | undefined, opset = 13): Model => model({
    nodes: [node("Loop", [trip ? "M" : "", cond ? "C" : "", "x"], ["y"], {
      body: {
        type: "graph", value: {
          name: "body", nodes: [node("Identity", ["c_in"], ["c_out"]), ...body],
          inputs: [{ name: "i", dtype: "int64", shape: [] }, { name: "c_in", dtype: "bool", shape: [] }, { name: "x_in", dtype: "float32", shape: null }],
          outputs: [{ name: "c_out", dtype: "bool", shape: [] }, { name: "x_out", dtype: "float32", shape: null }], initializers: {},
        },
      },
    })],
    inputs: [{ name: "x", dtype: "float32", shape: null }],
    outputs: [{ name: "y", dtype: "float32", shape: null }],
    initializers: { ...(trip ? { M: trip } : {}), ...(cond ? { C: cond } : {}) },
  }, opset);
  const identity = [node("Identity", ["x_in"], ["x_out"])];
  const x = f32([1]);

  test("a trip count of 2^62 stops at the step budget", async () => {
    const session = await createSession(loopModel(identity, i64([2 ** 62], []), bool(true)), { maxLoopSteps: 5000 });
    const e = await failure(() => session.run({ x }));
    expect(e.code).toBe("LIMIT_EXCEEDED");
    expect(e.message).toContain("5000 loop steps");
  });

  test("no trip count and a condition that stays true stops at the default step budget", async () => {
    const session = await createSession(loopModel(identity, undefined, bool(true)));
    expect(session.info.limits!.maxLoopSteps).toBe(2 ** 14);
    const e = await failure(() => session.run({ x }));
    expect(e.code).toBe("LIMIT_EXCEEDED");
  }, 60_000);

  test("a state that doubles each iteration stops at the memory budget", async () => {
    const rss0 = rssMiB();
    const session = await createSession(loopModel([node("Concat", ["x_in", "x_in"], ["x_out"], { axis: { type: "int", value: 0 } })], i64([64], []), bool(true)), { memoryBudget: 16 * MiB });
    const e = await failure(() => session.run({ x }));
    expect(e.code).toBe("LIMIT_EXCEEDED");
    expect(rssMiB() - rss0).toBeLessThan(200);
  });

  test("a Pad by 30000 of a value whose shape only the run knows (a Loop's output) is refused before allocating", async () => {
    const m = loopModel(identity, i64([1], []), bool(true));
    m.graph.nodes.push(node("Pad", ["y", "pads"], ["big"]));
    m.graph.initializers.pads = i64([30000, 1, 0, 30000]);
    m.graph.outputs = [{ name: "big", dtype: "float32", shape: null }];
    const rss0 = rssMiB();
    const session = await createSession(m);
    const e = await failure(() => session.run({ x: f32([1, 4]) }));
    expect(e.code).toBe("LIMIT_EXCEEDED");
    expect(e.details).toMatchObject({ plannedBytes: 30001 * 30005 * 4 });
    expect(rssMiB() - rss0).toBeLessThan(500);
  });

  test("a loop within its budgets still runs", async () => {
    const session = await createSession(loopModel([node("Concat", ["x_in", "x_in"], ["x_out"], { axis: { type: "int", value: 0 } })], i64([10], []), bool(true)));
    const { y } = await session.run({ x });
    expect(y!.dims).toEqual([1024]);
  });
});
