/**
 * SPQ/PPQ: channel spaces of ResNet-20 (residual-tied convs pruned together), masked = removed
 * (the physical graph computes the trained function), gradients of a removed-filter graph against
 * finite differences, and `opq train` on LeNet-5 whose written file gives the training graph's logits.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeOpq, type Model, mulberry32, readOnnx, type Tensor } from "../format/mod.ts";
import { channelSpaces, classificationLoss, countMacs, removeChannels, selectSpaceChannels } from "../compressor/mod.ts";
import { createSession, createTrainableGraph } from "../runtime/mod.ts";
import { sharedPath } from "./shared.ts";
import { fashionMnistBatch, loadFashionMnist } from "./fashion-mnist.ts";
import { finetuneOptions } from "./commands/finetune.ts";
import { trainApot } from "./commands/train.ts";

const ROOT = join(import.meta.dir, "..");
const TMP = mkdtempSync(join(tmpdir(), "opq-train-"));
const load = (file: string): Model => readOnnx(new Uint8Array(readFileSync(sharedPath("models", file))));
const images = (n: number): Tensor => ({ dtype: "float32", ...fashionMnistBatch(loadFashionMnist({ limit: n }), 0, n) });

/** Largest |logit| difference between a session on the written file and the training graph's forward, on 16 test images. */
async function servedVsTrained(bytes: Uint8Array, trainedForward: (x: Tensor) => Float32Array): Promise<number> {
  const x = images(16);
  const served = (await (await createSession(bytes)).run({ input: x })).logits!.data as Float32Array;
  const trained = trainedForward(x);
  let worst = 0;
  for (let i = 0; i < served.length; i++) worst = Math.max(worst, Math.abs(served[i]! - trained[i]!));
  return worst;
}

/** ResNet-20 with 30% of every channel space zeroed (filters and biases): the masked model, and the same channels removed. */
function prunedResnet() {
  const model = load("resnet20-fmnist.onnx");
  const spaces = channelSpaces(model.graph);
  const inits = { ...model.graph.initializers };
  const cuts = spaces.map((space) => {
    const removed = selectSpaceChannels(space, (n) => inits[n]!.data as Float32Array, 0.3);
    for (const p of space.producers) for (const name of p.bias ? [p.weight, p.bias] : [p.weight]) {
      const d = Float32Array.from(inits[name]!.data as Float32Array), per = d.length / space.channels;
      for (const j of removed) d.fill(0, j * per, (j + 1) * per);
      inits[name] = { ...inits[name]!, data: d };
    }
    return { space, removed };
  });
  const masked: Model = { ...model, graph: { ...model.graph, initializers: inits } };
  const removed: Model = { ...model, graph: removeChannels(masked.graph, cuts) };
  return { model, spaces, masked, removed, cuts };
}

describe("channel spaces", () => {
  test("ResNet-20: 12 prunable spaces; each residual stream ties 4 convs (stem or 1×1 shortcut + the blocks' second convs)", () => {
    const spaces = channelSpaces(load("resnet20-fmnist.onnx").graph);
    expect(spaces.filter((s) => s.blocked)).toEqual([]);
    expect(spaces.map((s) => s.producers.length).sort()).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 1, 4, 4, 4]);
    expect(spaces.filter((s) => s.producers.length === 4).map((s) => s.channels)).toEqual([16, 32, 64]);
    // The last stream is read by the classifier through GlobalAveragePool → Flatten.
    expect(spaces.find((s) => s.channels === 64 && s.producers.length === 4)!.consumers.some((c) => c.weight === "fc.weight" || /Gemm|fc/.test(c.node))).toBe(true);
  });

  test("a space read by an op that mixes channels, or reaching a graph output, is blocked with a reason", () => {
    const m = load("lenet5-fmnist.onnx");
    const g = { ...m.graph, outputs: [...m.graph.outputs, { name: m.graph.nodes[0]!.outputs[0]!, dtype: "float32" as const, shape: null }] };
    const s = channelSpaces(g);
    expect(s.some((x) => /graph output/.test(x.blocked))).toBe(true);
  });

  test("masked (zero filters and biases) = physically removed, 30% of every space: same logits, ≥ 40% fewer MACs", async () => {
    const { model, masked, removed } = prunedResnet();
    const x = images(8);
    const a = (await (await createSession(masked)).run({ input: x })).logits!.data as Float32Array;
    const b = (await (await createSession(removed)).run({ input: x })).logits!.data as Float32Array;
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    expect(worst).toBeLessThan(1e-4);
    const before = countMacs(model.graph, [1, 1, 28, 28])!, after = countMacs(removed.graph, [1, 1, 28, 28])!;
    expect(before).toBe(31_021_952);
    expect(1 - after / before).toBeGreaterThan(0.4);
  }, 30_000);

  test("removed-filter ResNet-20: backward = directional finite differences of the loss, every third parameter", () => {
    const { removed } = prunedResnet();
    const g = createTrainableGraph(removed);
    const set = loadFashionMnist({ limit: 2 });
    const input: Tensor = { dtype: "float32", ...fashionMnistBatch(set, 0, 2) }, labels = set.labels.subarray(0, 2).map((y) => (y + 1) % 10);
    const grads = g.backward(classificationLoss(g.forward(input), labels, 10).dLogits);
    const lossAt = () => classificationLoss(g.forward(input), labels, 10).loss;
    const rnd = mulberry32(5);
    // Same tolerance argument as runtime/train/graph-grad.test.ts (float32 logits, ReLU kinks).
    for (const name of g.params.filter((_, i) => i % 3 === 0)) {
      const w = removed.graph.initializers[name]!.data as Float32Array, saved = Float32Array.from(w);
      const d = Float32Array.from(w, () => rnd() * 2 - 1), norm = Math.hypot(...d);
      d.forEach((v, i) => { d[i] = v / norm; });
      const gd = grads.get(name)!.reduce((s, v, i) => s + v * d[i]!, 0), h = 1e-3;
      w.set(saved.map((v, i) => v + h * d[i]!)); const up = lossAt();
      w.set(saved.map((v, i) => v - h * d[i]!)); const down = lossAt();
      w.set(saved);
      expect(Math.abs((up - down) / (2 * h) - gd)).toBeLessThan(1e-3 + 0.02 * Math.abs(gd));
    }
  }, 30_000);
});

describe("opq train --method spq|ppq", () => {
  for (const method of ["spq", "ppq"] as const) {
    test(`${method} on LeNet-5: the written .opq gives the training graph's logits; channels removed, activations quantized`, async () => {
      const model = load("lenet5-fmnist.onnx");
      const train = loadFashionMnist({ split: "train", limit: 64 });
      const o = { ...finetuneOptions({ values: {}, positionals: [] }), steps: 4, batch: 16, lr: 0.01, apot: { method, filterRate: 0.3, bits: 4 as const, stages: 2, pruneFraction: 0.5 } };
      const r = await trainApot(model, train, o);
      expect(r.history).toHaveLength(4);
      expect(r.quantizedActivations).toBe(4);
      expect(r.selection.map((s) => s.length)).toEqual(r.plan.spaces.map((s) => Math.floor(0.3 * s.channels)));
      expect(r.macs!.after).toBeLessThan(0.8 * r.macs!.before);
      const { encodeOpq } = await import("../format/mod.ts");
      const bytes = encodeOpq(r.opq);
      const back = decodeOpq(bytes);
      expect(back.model.graph.nodes.filter((n) => n.opType === "ApotQuantize" && n.domain === "ai.opq")).toHaveLength(4);
      expect(back.compressed.map((t) => t.codebook.kind)).toEqual(["uniform", "table", "table", "table", "uniform"]);
      expect(await servedVsTrained(bytes, r.trainedForward)).toBeLessThan(1e-3);
    }, 60_000);
  }

  for (const method of ["spq", "ppq"] as const) test(`${method} --calibrate on LeNet-5: the calibrated start has a lower first-step loss; the selection is held, the file gives the training graph's logits`, async () => {
    const model = load("lenet5-fmnist.onnx");
    const train = loadFashionMnist({ split: "train", limit: 64 });
    // PPQ: its first steps in full precision (the FP32 phase), the whole selection removed at once in both runs.
    const o = { ...finetuneOptions({ values: {}, positionals: [] }), steps: 3, batch: 16, lr: 0.01, apot: { method, filterRate: 0.3, bits: 4 as const, stages: 1, pruneFraction: 0.5 } };
    const plain = await trainApot(model, train, o);
    const r = await trainApot(model, train, { ...o, calibrate: 64 });
    expect(r.history[0]!.loss).toBeLessThan(0.8 * plain.history[0]!.loss);
    // Held: the FPGM choice on the FP32 weights, as the plain run made at its first step.
    const spaces = channelSpaces(model.graph);
    expect(r.selection).toEqual(spaces.map((s) => selectSpaceChannels(s, (n) => model.graph.initializers[n]!.data as Float32Array, 0.3)));
    const { encodeOpq } = await import("../format/mod.ts");
    const bytes = encodeOpq(r.opq);
    expect(await servedVsTrained(bytes, r.trainedForward)).toBeLessThan(1e-3);
  }, 60_000);

  test("post-training gm-apot warns (and points at opq train) for filter removal or 3-bit, not for 4-bit APoT alone or OPQ", async () => {
    const { gmApotWarning } = await import("./commands/compress.ts");
    expect(gmApotWarning({ method: "gm-apot" })).toMatch(/removes 30% of the filters.*opq train --method spq/);
    expect(gmApotWarning({ method: "gm-apot", filterRate: 0, bits: 3 })).toMatch(/3-bit APoT/);
    expect(gmApotWarning({ method: "gm-apot", filterRate: 0, bits: 4 })).toBeUndefined();
    expect(gmApotWarning({ method: "opq" })).toBeUndefined();
    const p = Bun.spawnSync([process.execPath, join(ROOT, "cli", "main.ts"), "compress", sharedPath("models", "lenet5-fmnist.onnx"), "--method", "gm-apot", "-o", join(TMP, "g.opq"), "--json"], { cwd: TMP });
    expect(p.exitCode).toBe(0);
    expect(p.stderr.toString()).toMatch(/warning: post-training gm-apot/);
    expect(JSON.parse(p.stdout.toString()).warnings[0]).toMatch(/opq train/);
  }, 30_000);

  test("usage errors", () => {
    for (const args of [["--method", "xyz"], ["--method", "spq", "--sparsity", "0.5"], ["--method", "spq", "--stages", "2"], ["--method", "opq", "--filter-rate", "0.3"], ["--method", "ppq", "--bits", "5"], ["--method", "ppq", "--stages", "2"], ["--method", "spq", "--calibrate", "-1"], ["--method", "ppq", "--report", "r.html"], ["--labels", "fashion-mnist"]]) {
      const p = Bun.spawnSync([process.execPath, join(ROOT, "cli", "main.ts"), "train", ...args, "--json"], { cwd: TMP });
      expect(p.exitCode).toBe(2);
      expect(JSON.parse(p.stdout.toString()).error.code).toBe("USAGE");
    }
  }, 30_000);
});
