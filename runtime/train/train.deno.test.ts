/**
 * Training under Deno: LeNet-5's forward equals the session's, and a few SGD steps on one batch
 * lower its loss. The gradient checks are the bun suites beside this file.
 * @module
 */
import { readFileSync } from "node:fs";
import { mulberry32, readOnnx } from "../../format/mod.ts";
import { sharedPath } from "../../cli/shared.ts";
import { createSession, createTrainableGraph, softmaxCrossEntropy } from "../mod.ts";

function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new Error(message);
}

Deno.test("train: lenet5 forward matches the session; SGD on one batch lowers the loss", async () => {
  const model = readOnnx(new Uint8Array(readFileSync(sharedPath("models", "lenet5-fmnist.onnx"))));
  const rnd = mulberry32(2);
  const input = { dtype: "float32" as const, dims: [4, 1, 28, 28], data: Float32Array.from({ length: 4 * 784 }, () => rnd() * 2 - 0.5) };
  const labels = [3, 1, 4, 1];
  const graph = createTrainableGraph(model);
  const ref = (await (await createSession(model)).run({ input })).logits!.data as Float32Array;
  const first = graph.forward(input);
  for (let i = 0; i < ref.length; i++) assert(Math.abs(first[i]! - ref[i]!) < 1e-4, `logit ${i}: ${first[i]} vs ${ref[i]}`);
  const losses: number[] = [];
  for (let step = 0; step < 3; step++) {
    const ce = softmaxCrossEntropy(graph.forward(input), labels, 10);
    losses.push(ce.loss);
    for (const [name, g] of graph.backward(ce.dLogits)) {
      const w = model.graph.initializers[name]!.data as Float32Array;
      for (let i = 0; i < w.length; i++) w[i] -= 0.01 * g[i]!;
    }
  }
  assert(losses[2]! < losses[0]!, `loss did not fall: ${losses}`);
});
