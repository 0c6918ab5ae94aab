/** Tests of FPGM scores and physical filter removal: shapes, kept values, skips, and exactness under onnxruntime-web. */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as ort from "onnxruntime-web";
import { type Graph, type Model, readOnnx, type Tensor, writeOnnx } from "../format/mod.ts";
import { fpgmScores, fpgmSelect, pruneFilters } from "./fpgm.ts";

const BUNDLED = join(import.meta.dir, "..", "models", "resnet20-fmnist.onnx");

describe("FPGM scores", () => {
  test("the filter nearest the others has the smallest score", () => {
    // Filters at 0, 1, 2, 10 on a line: Σ distances 13, 11, 11, 27 → 1 and 2 tie, index breaks it.
    const s = fpgmScores(new Float32Array([0, 1, 2, 10]), 4);
    expect(Array.from(s)).toEqual([13, 11, 11, 27]);
    expect(fpgmSelect(s, 0.5)).toEqual([1, 2]);
    expect(fpgmSelect(s, 0.99)).toHaveLength(3); // at least one filter stays
  });
});

/** A toy graph: conv1 → BN → Relu → conv2 (→ out), and conv1 also feeds an Add when `tied`. */
function toy(tied: boolean): Graph {
  const t = (dims: number[], f: (i: number) => number): Tensor => ({ dtype: "float32", dims, data: Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => f(i)) });
  return {
    name: "toy", inputs: [{ name: "x", dtype: "float32", shape: [1, 2, 4, 4] }], outputs: [{ name: "y", dtype: "float32", shape: null }],
    initializers: {
      w1: t([4, 2, 1, 1], (i) => [1, 2, 1.1, 2.1, 5, -3, 1.05, 2.05][i]!), b1: t([4], (i) => i),
      s: t([4], () => 1), bb: t([4], (i) => i / 10), m: t([4], () => 0), v: t([4], () => 1),
      w2: t([3, 4, 1, 1], (i) => i),
    },
    nodes: [
      { opType: "Conv", domain: "", name: "c1", inputs: ["x", "w1", "b1"], outputs: ["h"], attrs: {} },
      { opType: "BatchNormalization", domain: "", name: "bn", inputs: ["h", "s", "bb", "m", "v"], outputs: ["hb"], attrs: {} },
      { opType: "Relu", domain: "", name: "r", inputs: ["hb"], outputs: ["a"], attrs: {} },
      { opType: "Conv", domain: "", name: "c2", inputs: ["a", "w2"], outputs: [tied ? "z" : "y"], attrs: {} },
      ...(tied ? [{ opType: "Add", domain: "", name: "add", inputs: ["z", "a"], outputs: ["y"], attrs: {} }] : []),
    ],
  };
}

describe("physical filter removal", () => {
  test("drops filters, bias, BN channels and consumer input channels", () => {
    const r = pruneFilters(toy(false), 0.5);
    expect(r.pruned).toEqual([{ node: "c1", weight: "w1", filters: 4, removed: [0, 3] }]);
    const g = r.graph.initializers;
    expect(g.w1!.dims).toEqual([2, 2, 1, 1]);
    expect(Array.from(g.w1!.data as Float32Array)).toEqual([1.1, 2.1, 5, -3].map(Math.fround));
    expect(Array.from(g.b1!.data as Float32Array)).toEqual([1, 2]);
    expect(Array.from(g.bb!.data as Float32Array)).toEqual([0.1, 0.2].map(Math.fround));
    expect(g.w2!.dims).toEqual([3, 2, 1, 1]);
    expect(Array.from(g.w2!.data as Float32Array)).toEqual([1, 2, 5, 6, 9, 10]);
    expect(r.skipped.map((s) => s.node)).toEqual(["c2"]); // c2's output is the graph output
  });
  test("a residual Add ties the channels: nothing is removed and the reason is given", () => {
    const r = pruneFilters(toy(true), 0.5);
    expect(r.pruned).toEqual([]);
    expect(r.skipped.find((s) => s.node === "c1")!.reason).toContain("Add");
    expect(r.graph.initializers.w1!.dims).toEqual([4, 2, 1, 1]);
  });
  test("a depthwise conv on the way loses the same channels; a bias shared through Identity gets a private copy", () => {
    const t = (dims: number[], f: (i: number) => number): Tensor => ({ dtype: "float32", dims, data: Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => f(i)) });
    const g: Graph = {
      name: "dw", inputs: [{ name: "x", dtype: "float32", shape: [1, 2, 4, 4] }], outputs: [{ name: "y", dtype: "float32", shape: null }],
      initializers: { w1: t([4, 2, 1, 1], (i) => [1, 2, 1.1, 2.1, 5, -3, 1.05, 2.05][i]!), bz: t([4], (i) => i), wd: t([4, 1, 3, 3], (i) => i), w2: t([4, 4, 1, 1], (i) => i) },
      nodes: [
        { opType: "Identity", domain: "", name: "id", inputs: ["bz"], outputs: ["b"], attrs: {} },
        { opType: "Conv", domain: "", name: "c1", inputs: ["x", "w1", "b"], outputs: ["h"], attrs: {} },
        { opType: "Clip", domain: "", name: "clip", inputs: ["h"], outputs: ["a"], attrs: {} },
        { opType: "Conv", domain: "", name: "dw", inputs: ["a", "wd", "b"], outputs: ["d"], attrs: { group: { type: "int", value: 4 } } },
        { opType: "Conv", domain: "", name: "c2", inputs: ["d", "w2", "b"], outputs: ["y"], attrs: {} },
      ],
    };
    const r = pruneFilters(g, 0.5);
    expect(r.pruned.map((p) => [p.node, p.removed])).toEqual([["c1", [0, 3]]]);
    const [, c1, , dw, c2] = r.graph.nodes;
    expect(dw!.attrs.group).toEqual({ type: "int", value: 2 });
    expect(r.graph.initializers.wd!.dims).toEqual([2, 1, 3, 3]);
    expect(Array.from(r.graph.initializers[c1!.inputs[2]!]!.data as Float32Array)).toEqual([1, 2]);
    expect(Array.from(r.graph.initializers[dw!.inputs[2]!]!.data as Float32Array)).toEqual([1, 2]);
    expect(c2!.inputs[2]).toBe("b"); // c2's bias is untouched and still shared
    expect(r.graph.initializers.bz!.dims).toEqual([4]);
    expect(r.graph.initializers.w2!.dims).toEqual([4, 2, 1, 1]);
    expect(g.nodes[3]!.attrs.group).toEqual({ type: "int", value: 4 }); // input graph untouched
  });
  test("ResNet-20: pruned graph computes what zeroing the removed filters and biases computes", async () => {
    const m = readOnnx(new Uint8Array(readFileSync(BUNDLED)));
    const r = pruneFilters(m.graph, 0.3);
    expect(r.pruned).toHaveLength(9); // the first conv of each of the 9 basic blocks
    expect(r.skipped.every((s) => s.reason.includes("Add"))).toBe(true);
    const inits = { ...m.graph.initializers };
    const bias = new Map(m.graph.nodes.map((n) => [n.inputs[1], n.inputs[2]]));
    for (const p of r.pruned) {
      const w = new Float32Array(inits[p.weight]!.data as Float32Array), per = w.length / p.filters;
      const bName = bias.get(p.weight)!, b = new Float32Array(inits[bName]!.data as Float32Array);
      for (const j of p.removed) { w.fill(0, j * per, (j + 1) * per); b[j] = 0; }
      inits[p.weight] = { ...inits[p.weight]!, data: w };
      inits[bName] = { ...inits[bName]!, data: b };
    }
    const x = Float32Array.from({ length: 2 * 784 }, (_, i) => Math.sin(i * 0.37));
    const run = async (model: Model) => {
      const s = await ort.InferenceSession.create(writeOnnx(model));
      const out = await s.run({ [s.inputNames[0]!]: new ort.Tensor("float32", x, [2, 1, 28, 28]) });
      return out[s.outputNames[0]!]!.data as Float32Array;
    };
    ort.env.wasm.numThreads = 1;
    const [a, b] = [await run({ ...m, graph: { ...m.graph, initializers: inits } }), await run({ ...m, graph: r.graph })];
    expect(a.length).toBe(20);
    let maxDiff = 0;
    for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
    expect(maxDiff).toBeLessThan(1e-4);
    const orig = await run(m); // and the removal is not a no-op
    expect(Math.max(...orig.map((v, i) => Math.abs(v - b[i]!)))).toBeGreaterThan(1e-3);
  });
});
