/**
 * Training under Deno: LeNet-5's forward equals the session's, and a few SGD steps on one batch
 * lower its loss. The gradient checks are the bun suites beside this file.
 * @module
 */
import { readFileSync } from "node:fs";
import { mulberry32, readOnnx } from "../../format/mod.ts";
import { sharedPath } from "../../cli/shared.ts";
import { createSession, createTrainableGraph } from "../mod.ts";
import { softmaxCrossEntropy } from "./loss.ts";

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

Deno.test("train: 2-thread data-parallel graph = 1 thread; the compressor's loop trains with it; ai.opq ApotQuantize runs in a session", async () => {
  const { createParallelTrainableGraph } = await import("../mod.ts");
  const { trainLoop } = await import("../../compressor/mod.ts");
  const model = readOnnx(new Uint8Array(readFileSync(sharedPath("models", "lenet5-fmnist.onnx"))));
  const rnd = mulberry32(5), n = 6;
  const input = { dtype: "float32" as const, dims: [n, 1, 28, 28], data: Float32Array.from({ length: n * 784 }, () => rnd() * 2 - 0.5) };
  const one = createTrainableGraph(model), two = await createParallelTrainableGraph(model, 2, 8, [1, 28, 28]);
  try {
    assert(two.threads === 2, `threads ${two.threads}`);
    const a = one.forward(input), b = two.forward(input);
    for (let i = 0; i < a.length; i++) assert(Math.abs(a[i]! - b[i]!) < 1e-5, `logit ${i}: ${a[i]} vs ${b[i]}`);
    const master = new Map(two.params.map((p) => [p, model.graph.initializers[p]!.data as Float32Array]));
    const labels = Uint8Array.from({ length: n }, (_, i) => i % 10);
    const { history } = trainLoop(two, master, { count: n, gather: () => ({ data: input.data, dims: input.dims, labels }) },
      { steps: 4, batch: n, lr: 0.01, momentum: 0.9, weightDecay: 0, schedule: { kind: "constant" }, seed: 1 });
    assert(history[3]!.loss < history[0]!.loss, `loss did not fall: ${history.map((h) => h.loss)}`);
  } finally {
    two.dispose();
  }
  const q = {
    irVersion: 8, opsetImports: [{ domain: "", version: 13 }, { domain: "ai.opq", version: 1 }], producerName: "t",
    graph: {
      name: "g", inputs: [{ name: "x", dtype: "float32" as const, shape: [4] }], outputs: [{ name: "y", dtype: "float32" as const, shape: [4] }],
      nodes: [{ opType: "ApotQuantize", domain: "ai.opq", name: "q", inputs: ["x", "a"], outputs: ["y"], attrs: { levels: { type: "floats" as const, value: [0, 0.25, 0.5, 1] } } }],
      initializers: { a: { dtype: "float32" as const, dims: [], data: Float32Array.of(2) } },
    },
  };
  const y = (await (await createSession(q)).run({ x: { dtype: "float32", dims: [4], data: Float32Array.of(-1, 0.3, 0.8, 5) } })).y!.data;
  assert(Array.from(y as Float32Array).join() === "0,0.5,1,2", `ApotQuantize gave ${Array.from(y as Float32Array)}`);
});

Deno.test("train: the WASM conv kernels (sparse and dense forward and dX, masked and dense dW) give the JS grads' numbers under Deno too", async () => {
  const { resolveOp } = await import("../ops/registry.ts");
  const { Attrs } = await import("../ops/types.ts");
  const { createWasmConvKernels } = await import("./wasm-conv.ts");
  for (const mode of ["sparse", "dense"] as const) {
    const kernels = createWasmConvKernels(mode);
    assert(kernels, "no WASM SIMD kernels under Deno");
    const rnd = mulberry32(9);
    const attrs = new Attrs({ pads: { type: "ints", value: [1, 1, 1, 1] } }, "Conv");
    const keep = Uint8Array.from({ length: 9 * 8 * 9 }, () => (rnd() < 0.7 ? 0 : 1));
    const w = { dtype: "float32" as const, dims: [9, 8, 3, 3], data: Float32Array.from(keep, (k) => (k ? rnd() - 0.5 : 0)) };
    const x = { dtype: "float32" as const, dims: [2, 8, 9, 7], data: Float32Array.from({ length: 2 * 8 * 63 }, () => rnd() - 0.5) };
    const grad = resolveOp("Conv", 11)!.grad!;
    const ref = grad([x, w], attrs), ours = grad([x, w], attrs, undefined, { conv: kernels, keep: [undefined, keep] });
    const dy = Float32Array.from({ length: 2 * 9 * 63 }, () => rnd() - 0.5);
    const [dx0, dw0] = ref.backward([dy], [true, true]), [dx1, dw1] = ours.backward([dy], [true, true]);
    const close = (a: Float32Array, b: Float32Array, m?: Uint8Array) => a.every((v, i) => (m && !m[i]) || Math.abs(v - b[i]!) < 1e-5);
    assert(close(ref.outputs[0]!.data as Float32Array, ours.outputs[0]!.data as Float32Array), `${mode}: forward differs`);
    assert(close(dx0!, dx1!), `${mode}: dX differs`);
    assert(close(dw0!, dw1!, keep) && dw1!.every((v, i) => keep[i] || v === 0), `${mode}: dW differs at kept weights, or is not 0 at pruned ones`);
  }
});
