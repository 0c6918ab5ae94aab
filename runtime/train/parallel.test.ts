/** Data-parallel training graph: two threads give one thread's logits and gradients (LeNet-5), read the caller's current weights, and refuse oversized batches. */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { mulberry32, readOnnx, type Tensor } from "../../format/mod.ts";
import { sharedPath } from "../../cli/shared.ts";
import { OpqRuntimeError } from "../errors.ts";
import { createTrainableGraph } from "./graph-grad.ts";
import { createParallelTrainableGraph } from "./parallel.ts";

describe("createParallelTrainableGraph", () => {
  test("LeNet-5 on 2 threads = 1 thread: logits, every parameter's gradient; weights changed between steps are seen", async () => {
    const model = readOnnx(new Uint8Array(readFileSync(sharedPath("models", "lenet5-fmnist.onnx"))));
    const rnd = mulberry32(3), n = 7;
    const x: Tensor = { dtype: "float32", dims: [n, 1, 28, 28], data: Float32Array.from({ length: n * 784 }, () => rnd() * 2 - 1) };
    const one = createTrainableGraph(model);
    const two = await createParallelTrainableGraph(model, 2, 16, [1, 28, 28]);
    try {
      expect(two.threads).toBe(2);
      for (let step = 0; step < 2; step++) {
        const a = one.forward(x), b = two.forward(x);
        expect(two.outputDims).toEqual([n, 10]);
        for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThan(1e-5);
        const d = Float32Array.from(a, () => rnd() - 0.5);
        const ga = one.backward(d), gb = two.backward(d);
        for (const p of one.params) {
          const u = ga.get(p)!, v = gb.get(p)!;
          let worst = 0, scale = 0;
          for (let i = 0; i < u.length; i++) { worst = Math.max(worst, Math.abs(u[i]! - v[i]!)); scale = Math.max(scale, Math.abs(u[i]!)); }
          expect(worst).toBeLessThanOrEqual(1e-5 * Math.max(1, scale));
        }
        (model.graph.initializers["f3.bias"]!.data as Float32Array)[0]! += 1; // the next step must see it on both threads
      }
      expect(() => two.forward({ dtype: "float32", dims: [17, 1, 28, 28], data: new Float32Array(17 * 784) })).toThrow(OpqRuntimeError);
    } finally {
      two.dispose();
    }
  }, 30_000);
});
