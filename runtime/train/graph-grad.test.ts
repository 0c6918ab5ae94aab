/** createTrainableGraph on the real LeNet-5 and ResNet-20, and the cross-entropy loss. */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { type Model, mulberry32, readOnnx, type Tensor } from "../../format/mod.ts";
import { sharedPath } from "../../cli/shared.ts";
import { fashionMnistBatch, loadFashionMnist } from "../../cli/fashion-mnist.ts";
import { createSession } from "../session.ts";
import { OpqRuntimeError } from "../errors.ts";
import { createTrainableGraph } from "./graph-grad.ts";
import { softmaxCrossEntropy } from "./loss.ts";

const load = (file: string): Model => readOnnx(new Uint8Array(readFileSync(sharedPath("models", file))));

/** A seeded random batch [n, 1, 28, 28]. */
function randomInput(n: number, seed: number): Tensor {
  const rnd = mulberry32(seed);
  return { dtype: "float32", dims: [n, 1, 28, 28], data: Float32Array.from({ length: n * 784 }, () => rnd() * 4 - 1.5) };
}

const IMAGES_AT = 0;

describe("createTrainableGraph", () => {
  test("forward logits equal createSession's (LeNet-5, ResNet-20)", async () => {
    for (const file of ["lenet5-fmnist.onnx", "resnet20-fmnist.onnx"]) {
      const model = load(file);
      const input = randomInput(8, 3);
      const g = createTrainableGraph(model);
      const ours = g.forward(input);
      expect(g.outputDims).toEqual([8, 10]);
      const ref = (await (await createSession(model)).run({ input })).logits!.data as Float32Array;
      // Same im2col + sgemm for the dense paths; the session's Winograd/direct paths sum in
      // another order, so allow float32 rounding of logits of magnitude ~10 after ~20 layers.
      let worst = 0;
      for (let i = 0; i < ours.length; i++) worst = Math.max(worst, Math.abs(ours[i]! - ref[i]!));
      expect(worst).toBeLessThan(1e-4);
    }
  });

  test("LeNet-5: backward = directional finite differences of the cross-entropy, every parameter", () => {
    const model = load("lenet5-fmnist.onnx");
    const g = createTrainableGraph(model);
    expect(g.params).toEqual(["c1.weight", "c1.bias", "c2.weight", "c2.bias", "f1.weight", "f1.bias", "f2.weight", "f2.bias", "f3.weight", "f3.bias"]);
    // Real test images (random inputs give logits of ~50 whose float32 rounding swamps a finite
    // difference), with wrong labels so the trained net's gradients are O(0.1–1), not O(1e-4).
    const set = loadFashionMnist({ limit: IMAGES_AT + 4 });
    const input: Tensor = { dtype: "float32", ...fashionMnistBatch(set, IMAGES_AT, 4) }, labels = set.labels.subarray(IMAGES_AT).map((y) => (y + 1) % 10);
    const lossAt = () => softmaxCrossEntropy(g.forward(input), labels, 10).loss;
    const ce = softmaxCrossEntropy(g.forward(input), labels, 10);
    const grads = g.backward(ce.dLogits);
    const rnd = mulberry32(11);
    // Central differences along a random unit direction d per tensor: (L(θ+hd) − L(θ−hd))/2h vs
    // Σ g·d. Unlike the per-op checks this is not exact: the loss is float64 over float32 logits
    // (rounding ~1e-7 → ~1e-4 after /2h), and a ReLU or max-pool kink crossed within h by one of
    // ~30k units bends the difference by up to ~1% (measured over other image offsets: typically
    // < 1%, rarely 3%; these seeded images stay < 1% apart from one 4e-4 absolute). A wrong
    // gradient (missing term, wrong index, wrong transpose) is off by O(|Σ g·d|) ≈ 0.1–1.
    // Tolerance: 1e-3 + 2% relative.
    for (const name of g.params) {
      const w = model.graph.initializers[name]!.data as Float32Array, saved = Float32Array.from(w);
      const d = Float32Array.from(w, () => rnd() * 2 - 1);
      const norm = Math.hypot(...d);
      d.forEach((v, i) => { d[i] = v / norm; });
      const gd = grads.get(name)!.reduce((s, v, i) => s + v * d[i]!, 0);
      const h = 1e-3;
      w.set(saved.map((v, i) => v + h * d[i]!)); const up = lossAt();
      w.set(saved.map((v, i) => v - h * d[i]!)); const down = lossAt();
      w.set(saved);
      const fd = (up - down) / (2 * h);
      expect(Math.abs(fd - gd)).toBeLessThan(1e-3 + 0.02 * Math.abs(gd));
      expect(Math.abs(gd)).toBeGreaterThan(0);
    }
  });

  test("forward reads the initializers' current data on every call", () => {
    const model = load("lenet5-fmnist.onnx");
    const g = createTrainableGraph(model);
    const input = randomInput(2, 9);
    const a = Float32Array.from(g.forward(input));
    (model.graph.initializers["f3.bias"]!.data as Float32Array)[0]! += 1;
    const b = g.forward(input);
    expect(b[0]! - a[0]!).toBeCloseTo(1, 5);
    expect(b[1]).toBe(a[1]!);
  });

  test("unsupported ops are all named at once", () => {
    const model = load("lenet5-fmnist.onnx");
    const nodes = [...model.graph.nodes, { opType: "Softmax", domain: "", name: "s", inputs: ["logits"], outputs: ["p"], attrs: {} },
      { opType: "LRN", domain: "", name: "l", inputs: ["p"], outputs: ["q"], attrs: {} }];
    try {
      createTrainableGraph({ ...model, graph: { ...model.graph, nodes } });
      throw new Error("no error");
    } catch (e) {
      expect(e).toBeInstanceOf(OpqRuntimeError);
      expect((e as OpqRuntimeError).code).toBe("UNSUPPORTED_OPS");
      expect((e as OpqRuntimeError).details!.ops).toEqual(["Softmax", "LRN"]);
    }
  });
});

describe("softmaxCrossEntropy", () => {
  test("loss, gradient and hits against a hand computation", () => {
    const logits = Float32Array.of(1, 2, 3, 0, 0, 5);
    const { loss, dLogits, correct } = softmaxCrossEntropy(logits, [2, 0], 3);
    const p0 = [1, 2, 3].map((v) => Math.exp(v)), s0 = p0.reduce((a, b) => a + b);
    const p1 = [0, 0, 5].map((v) => Math.exp(v)), s1 = p1.reduce((a, b) => a + b);
    expect(loss).toBeCloseTo((-Math.log(p0[2]! / s0) - Math.log(p1[0]! / s1)) / 2, 10);
    expect(correct).toBe(1);
    expect(dLogits[2]).toBeCloseTo((p0[2]! / s0 - 1) / 2, 6);
    expect(dLogits[3]).toBeCloseTo((p1[0]! / s1 - 1) / 2, 6);
    expect(dLogits[5]).toBeCloseTo(p1[2]! / s1 / 2, 6);
    // Huge logits do not overflow.
    expect(Number.isFinite(softmaxCrossEntropy(Float32Array.of(1e30, -1e30), [1], 2).loss)).toBe(true);
  });
  test("bad labels are refused", () => {
    expect(() => softmaxCrossEntropy(Float32Array.of(1, 2), [2], 2)).toThrow(RangeError);
  });
});

describe("training buffers", () => {
  test("steps reuse their buffers and give the same gradients as a fresh graph; a value read twice (Add(x, x)) sums correctly", () => {
    const model = load("resnet20-fmnist.onnx");
    const input = randomInput(2, 21);
    const g = createTrainableGraph(model);
    const first = new Map([...g.backward((g.forward(input), Float32Array.from({ length: 20 }, (_, i) => (i % 3) - 1)))].map(([k, v]) => [k, Float32Array.from(v)]));
    for (let step = 0; step < 2; step++) {
      g.forward(input);
      const again = g.backward(Float32Array.from({ length: 20 }, (_, i) => (i % 3) - 1));
      for (const [k, v] of first) expect(Array.from(again.get(k)!)).toEqual(Array.from(v));
    }
    const twice: Model = {
      irVersion: 8, opsetImports: [{ domain: "", version: 13 }], producerName: "t",
      graph: {
        name: "g", inputs: [{ name: "x", dtype: "float32", shape: [1, 2] }], outputs: [{ name: "z", dtype: "float32", shape: [1, 2] }],
        nodes: [
          { opType: "Gemm", domain: "", name: "a", inputs: ["x", "w"], outputs: ["y"], attrs: {} },
          { opType: "Relu", domain: "", name: "r", inputs: ["y"], outputs: ["ry"], attrs: {} },
          { opType: "Add", domain: "", name: "s", inputs: ["ry", "ry"], outputs: ["z"], attrs: {} },
        ],
        initializers: { w: { dtype: "float32", dims: [2, 2], data: Float32Array.of(1, 2, 3, 4) } },
      },
    };
    const t = createTrainableGraph(twice);
    for (let step = 0; step < 3; step++) {
      t.forward({ dtype: "float32", dims: [1, 2], data: Float32Array.of(1, 1) });
      // z = 2·relu(x·W): ∂z/∂W[k][j] = 2·x[k] for the unit dz = [1, 0] → column 0 gets 2, column 1 0.
      expect(Array.from(t.backward(Float32Array.of(1, 0)).get("w")!)).toEqual([2, 0, 2, 0]);
    }
  });
});
