/**
 * Planner checks: buffer lifetimes on a hand-made graph, and shape inference checked against
 * the shapes kernels actually produce, on every runnable ONNX conformance case and on the
 * reference CNNs (whose batch dim is symbolic). A wrong inferred shape would make constant
 * folding of Shape wrong, so every inferred dim is checked, not sampled.
 * @module
 */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { sharedPath } from "../cli/shared.ts";
import { type Dim, type Model, type Node, readOnnx, readTensorProtoNamed, type Tensor } from "../format/mod.ts";
import { OpqRuntimeError } from "./errors.ts";
import { planModel, resolveKernels } from "./planner.ts";
import { OPS } from "./ops/registry.ts";
import type { Kernel, OpVersion, Prepare } from "./ops/types.ts";
import { runPlan } from "./session.ts";

const node = (opType: string, inputs: string[], outputs: string[]): Node => ({ opType, domain: "", name: "", inputs, outputs, attrs: {} });

test("each intermediate is released right after its last reader; outputs never are", () => {
  // a = Relu(x); b = Neg(a); c = Abs(a); y = Add(b, c); z = Exp(y)  — outputs y, z
  const m: Model = {
    irVersion: 8, opsetImports: [{ domain: "", version: 13 }], producerName: "",
    graph: {
      name: "g",
      nodes: [node("Relu", ["x"], ["a"]), node("Neg", ["a"], ["b"]), node("Abs", ["a"], ["c"]), node("Add", ["b", "c"], ["y"]), node("Exp", ["y"], ["z"])],
      inputs: [{ name: "x", dtype: "float32", shape: [2] }],
      outputs: [{ name: "y", dtype: "float32", shape: null }, { name: "z", dtype: "float32", shape: null }],
      initializers: {},
    },
  };
  const plan = planModel(m);
  expect(plan.steps.map((s) => s.release)).toEqual([[], [], ["a"], ["b", "c"], []]);
  // float32[2] = 8 bytes each; at most a, b, c (before Abs releases a) or b, c, y are alive: 24
  expect(plan.peakIntermediateBytes).toBe(24);
  expect(plan.shapes.get("z")).toEqual([2]);
  const live: number[] = [];
  const out = runPlan(plan, { x: { dtype: "float32", dims: [2], data: Float32Array.of(-1, 2) } }, () => live.push(0));
  expect(live.length).toBe(5);
  expect(Array.from(out.z!.data as Float32Array)).toEqual([1, Math.exp(0)].map(Math.fround));
});

test("prepare runs once at load for nodes with constant inputs; its state reaches every call of the kernel", () => {
  // y = Scale(x, w) · w constant; z = Scale(y, y) · no constant input; q = Scale(x, bad) · prepare throws
  const seen: unknown[] = [];
  const prepared: { consts: (Tensor | undefined)[]; shapes: unknown }[] = [];
  const scale: Kernel = (inputs, _attrs, ctx) => {
    seen.push(ctx.prepared);
    const [a, b] = inputs as Tensor[];
    const bd = b!.data as Float32Array;
    return [{ dtype: "float32", dims: a!.dims, data: (a!.data as Float32Array).map((v, i) => v * bd[i % bd.length]!) }];
  };
  const prepare: Prepare = (consts, _attrs, ctx) => {
    if (consts[1]?.dims[0] === 3) throw new Error("cannot prepare this one");
    prepared.push({ consts: [...consts], shapes: ctx.inputShapes });
    return { factor: (consts[1]!.data as Float32Array)[0] };
  };
  const ops: Record<string, OpVersion[]> = { ...OPS, Scale: [{ since: 1, kernel: scale, prepare }] };
  const w: Tensor = { dtype: "float32", dims: [1], data: Float32Array.of(3) };
  const bad: Tensor = { dtype: "float32", dims: [3], data: Float32Array.of(1, 2, 3) };
  const m: Model = {
    irVersion: 8, opsetImports: [{ domain: "", version: 13 }], producerName: "",
    graph: {
      name: "g",
      nodes: [node("Scale", ["x", "w"], ["y"]), node("Scale", ["y", "y"], ["z"]), node("Scale", ["x", "bad"], ["q"])],
      inputs: [{ name: "x", dtype: "float32", shape: ["n"] }],
      outputs: [{ name: "z", dtype: "float32", shape: null }, { name: "q", dtype: "float32", shape: null }],
      initializers: { w, bad },
    },
  };
  const plan = planModel(m, { ops });
  expect(prepared).toEqual([{ consts: [undefined, w], shapes: [["n"], [1]] }]);
  expect(plan.steps.map((s) => s.ctx.prepared)).toEqual([{ factor: 3 }, undefined, undefined]);
  for (let i = 0; i < 2; i++) {
    const out = runPlan(plan, { x: { dtype: "float32", dims: [3], data: Float32Array.of(1, 2, 3) } });
    expect(Array.from(out.z!.data as Float32Array)).toEqual([9, 36, 81]);
    expect(Array.from(out.q!.data as Float32Array)).toEqual([1, 4, 9]);
  }
  expect(prepared.length).toBe(1); // at load only, never per run
  expect(seen).toEqual([{ factor: 3 }, undefined, undefined, { factor: 3 }, undefined, undefined]);
  // the real Conv entry prepares at load too
  const resnet = readOnnx(new Uint8Array(readFileSync(sharedPath("models", "resnet20-fmnist.onnx"))));
  const convs = planModel(resnet).steps.filter((s) => s.node.opType === "Conv");
  expect(convs.length).toBeGreaterThan(0);
  for (const c of convs) expect((c.ctx.prepared as { weight?: Tensor }).weight).toBe(resnet.graph.initializers[c.node.inputs[1]!]!);
});

/** Check every inferred shape of a run against the tensors produced; returns mismatches. */
function checkShapes(model: Model, feeds: Record<string, Tensor>): string[] {
  const plan = planModel(model);
  const bad: string[] = [];
  const symbols = new Map<string, number>();
  const agree = (name: string, want: readonly Dim[], got: readonly number[]) => {
    if (want.length !== got.length) { bad.push(`${name}: inferred [${want}] vs actual [${got}]`); return; }
    want.forEach((d, i) => {
      if (typeof d === "number" && d !== got[i]) bad.push(`${name}: inferred [${want}] vs actual [${got}]`);
      if (typeof d === "string") {
        if (symbols.has(d) && symbols.get(d) !== got[i]) bad.push(`${name}: symbol ${d} is ${symbols.get(d)} and ${got[i]}`);
        symbols.set(d, got[i]!);
      }
    });
  };
  for (const v of plan.inputs) if (v.shape) agree(v.name, v.shape, feeds[v.name]!.dims);
  runPlan(plan, feeds, (step, outs) => {
    step.node.outputs.forEach((o, k) => {
      const inferred = plan.shapes.get(o);
      if (inferred && outs[k]) agree(`${step.node.opType} '${o}'`, inferred, outs[k]!.dims);
      const dt = plan.dtypes.get(o);
      if (dt && outs[k] && dt !== outs[k]!.dtype) bad.push(`${step.node.opType} '${o}': inferred ${dt} vs actual ${outs[k]!.dtype}`);
    });
  });
  return bad;
}

test("inferred shapes and dtypes match the kernels' on every runnable conformance case", () => {
  const root = sharedPath("onnx-backend-tests");
  let checked = 0, inferredAny = 0;
  const problems: string[] = [];
  for (const suite of ["node", "pytorch-converted", "pytorch-operator", "simple"]) {
    for (const name of readdirSync(join(root, suite))) {
      const dir = join(root, suite, name);
      let model: Model;
      try {
        model = readOnnx(new Uint8Array(readFileSync(join(dir, "model.onnx"))));
        resolveKernels(model);
      } catch (e) {
        if (e instanceof OpqRuntimeError || (e as Error).name === "FormatError") continue;
        throw e;
      }
      const set = join(dir, "test_data_set_0");
      const files = readdirSync(set).filter((f) => f.startsWith("input_")).sort((a, b) => Number(a.slice(6, -3)) - Number(b.slice(6, -3)));
      const plan = planModel(model);
      const feeds: Record<string, Tensor> = {};
      files.forEach((f, k) => {
        const t = readTensorProtoNamed(new Uint8Array(readFileSync(join(set, f))));
        feeds[(plan.inputs.find((v) => v.name === t.name) ?? plan.inputs[k])!.name] = t.tensor;
      });
      try {
        const bad = checkShapes(model, feeds);
        problems.push(...bad.map((b) => `${suite}/${name}: ${b}`));
      } catch {
        continue; // a run failure is the conformance suite's business
      }
      checked++;
      if (plan.steps.some((s) => s.node.outputs.some((o) => plan.shapes.has(o)))) inferredAny++;
    }
  }
  expect(problems).toEqual([]);
  expect(checked).toBeGreaterThan(500);
  expect(inferredAny).toBeGreaterThan(300);
});

test("reference CNNs: every layer's shape is inferred with a symbolic batch, and matches a run", () => {
  for (const file of ["lenet5-fmnist.onnx", "resnet20-fmnist.onnx"]) {
    const model = readOnnx(new Uint8Array(readFileSync(sharedPath("models", file))));
    const plan = planModel(model);
    for (const s of plan.steps) for (const o of s.node.outputs) expect(plan.shapes.has(o)).toBe(true);
    expect(plan.shapes.get(plan.outputs[0]!.name)).toEqual(["batch", 10]);
    const x: Tensor = { dtype: "float32", dims: [3, 1, 28, 28], data: new Float32Array(3 * 784).fill(0.5) };
    expect(checkShapes(model, { [plan.inputs[0]!.name]: x })).toEqual([]);
  }
});

test("compressed weights are kept as stored and mark the layers that read them", () => {
  const m: Model = {
    irVersion: 8, opsetImports: [{ domain: "", version: 13 }], producerName: "",
    graph: {
      name: "g",
      nodes: [node("MatMul", ["x", "W"], ["y"]), node("Relu", ["y"], ["z"])],
      inputs: [{ name: "x", dtype: "float32", shape: [1, 2] }],
      outputs: [{ name: "z", dtype: "float32", shape: null }],
      initializers: { W: { dtype: "float32", dims: [2, 2], data: Float32Array.of(1, 0, 0, 1) } },
    },
  };
  const W = { name: "W", dims: [2, 2], codebook: { kind: "uniform" as const, step: 1 }, indices: Uint32Array.of(0, 3), codes: Int32Array.of(1, 1) };
  const plan = planModel(m, { compressed: [W] });
  expect(plan.compressed.get("W")).toBe(W);
  expect(plan.steps.map((s) => s.path)).toEqual(["blocked-gemm", "dense-fp32"]);
});

test("a constant ConstantOfShape is folded when small and left to run time when huge", () => {
  const shapeOf = (dims: number[]): Tensor => ({ dtype: "int64", dims: [dims.length], data: BigInt64Array.from(dims.map(BigInt)) });
  const m = (dims: number[]): Model => ({
    irVersion: 8, opsetImports: [{ domain: "", version: 13 }], producerName: "",
    graph: {
      name: "g",
      nodes: [node("ConstantOfShape", ["s"], ["c"]), node("Add", ["x", "c"], ["y"])],
      inputs: [{ name: "x", dtype: "float32", shape: null }],
      outputs: [{ name: "y", dtype: "float32", shape: null }],
      initializers: { s: shapeOf(dims) },
    },
  });
  expect(planModel(m([2, 3])).foldedNodes).toBe(1);
  const huge = planModel(m([1 << 15, 1 << 15]));
  expect(huge.foldedNodes).toBe(0);
  expect(huge.steps.map((s) => s.node.opType)).toEqual(["ConstantOfShape", "Add"]);
});
