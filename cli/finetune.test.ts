/** `opq finetune` end to end in a subprocess on LeNet-5 with a tiny budget: JSON shape, the written .opq, masks, usage errors. */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeOpq, readOnnx } from "../format/mod.ts";
import { compressModel } from "../compressor/mod.ts";
import { createSession } from "../runtime/mod.ts";
import { sharedPath } from "./shared.ts";
import { loadFashionMnist } from "./fashion-mnist.ts";
import { evaluate } from "./commands/eval.ts";
import { FINETUNE_DEFAULTS, finetuneOpq, type FinetuneOptions, gatherBatch, teacherLogits, trainData } from "./commands/finetune.ts";

const ROOT = join(import.meta.dir, "..");
const TMP = mkdtempSync(join(tmpdir(), "opq-finetune-"));

function opq(...args: string[]): { code: number; stdout: string; stderr: string } {
  const p = Bun.spawnSync([process.execPath, join(ROOT, "cli", "main.ts"), "finetune", ...args], { cwd: TMP });
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

describe("opq finetune", () => {
  test("LeNet-5, 3 steps of 32: one JSON object, a decodable .opq within the one-shot masks", async () => {
    const lenet = sharedPath("models", "lenet5-fmnist.onnx");
    const r = opq(lenet, "-o", "l.opq", "--steps", "3", "--batch", "32", "--limit", "256", "--eval-limit", "200", "--seed", "3", "--json");
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.output).toBe("l.opq");
    expect([j.sparsity, j.bits, j.imagesSeen, j.trainImages, j.testImages]).toEqual([0.74, 3, 96, 256, 200]);
    expect([j.stage1.steps, j.stage2.steps]).toEqual([2, 1]); // round(0.5 · 3) pruned-only steps
    expect(j.losses).toHaveLength(3);
    for (const l of j.losses) expect(Number.isFinite(l) && l > 0).toBe(true);
    for (const k of ["before", "after"]) expect(j[k].top1).toBeGreaterThanOrEqual(0), expect(j[k].top1).toBeLessThanOrEqual(1);

    const bytes = new Uint8Array(readFileSync(join(TMP, "l.opq")));
    expect(j.bytes).toBe(bytes.length);
    const tuned = decodeOpq(bytes);
    expect(tuned.metadata.finetune).toMatchObject({ steps: 3, batch: 32, images: 96 });
    // Same masks or sparser, same steps Δ_i: compare with the one-shot compression of the same options.
    const oneShot = compressModel(readOnnx(new Uint8Array(readFileSync(lenet))), { sparsity: 0.74, bits: 3 }).opq;
    expect(tuned.compressed.map((t) => t.name)).toEqual(oneShot.compressed.map((t) => t.name));
    let changed = 0;
    for (const [i, t] of tuned.compressed.entries()) {
      const o = oneShot.compressed[i]!;
      expect(t.codebook).toEqual(o.codebook);
      const kept = new Set(o.indices);
      for (const idx of t.indices) expect(kept.has(idx)).toBe(true);
      for (let k = 1; k < t.indices.length; k++) expect(t.indices[k]!).toBeGreaterThan(t.indices[k - 1]!);
      changed += t.codes.some((c, k) => c !== o.codes[o.indices.indexOf(t.indices[k]!)]) ? 1 : 0;
    }
    expect(changed).toBeGreaterThan(0); // training moved some codes
    expect(j.after.nonZeros).toBe(tuned.compressed.reduce((a, t) => a + t.indices.length, 0));
    // The reported accuracy is the written file's.
    const session = await createSession(bytes);
    const r2 = await evaluate(session, loadFashionMnist({ limit: 200 }), { batch: 100 });
    expect(r2.top1).toBe(j.after.top1);
  }, 60_000);

  test("LeNet-5: a run interrupted after its first epoch and resumed from the checkpoint = the uninterrupted run (same seed), with --distill", async () => {
    const lenet = readOnnx(new Uint8Array(readFileSync(sharedPath("models", "lenet5-fmnist.onnx"))));
    const oneShot = compressModel(lenet, { sparsity: 0.74, bits: 3 }).opq;
    const train = loadFashionMnist({ split: "train", limit: 48 });
    const o: FinetuneOptions = { ...FINETUNE_DEFAULTS, schedule: { kind: "cosine" }, steps: 5, batch: 16, lr: 0.01, distill: { temperature: 4, weight: 0.5 } }; // 3 steps an epoch
    const whole = await finetuneOpq(lenet, oneShot, train, o);
    const checkpoint = join(TMP, "lenet.ckpt");
    const cut = await finetuneOpq(lenet, oneShot, train, { ...o, checkpoint, stopAt: 4 });
    expect(cut.history).toHaveLength(4);
    const resumed = await finetuneOpq(lenet, oneShot, train, { ...o, checkpoint });
    expect([resumed.resumedFrom, resumed.history.map((s) => s.step)]).toEqual([3, [3, 4]]);
    expect(resumed.history.map((s) => s.loss)).toEqual(whole.history.slice(3).map((s) => s.loss));
    for (const [i, t] of resumed.opq.compressed.entries()) {
      expect(Array.from(t.codes)).toEqual(Array.from(whole.opq.compressed[i]!.codes));
      expect(Array.from(t.indices)).toEqual(Array.from(whole.opq.compressed[i]!.indices));
    }
    const inits = (r: typeof whole) => r.opq.model.graph.initializers;
    for (const name of Object.keys(inits(whole))) expect(Array.from(inits(resumed)[name]!.data as Float32Array)).toEqual(Array.from(inits(whole)[name]!.data as Float32Array));
  }, 60_000);

  test("--distill's teacher: the FP32 model's logits of exactly the batch's images, whatever the student starts from", async () => {
    const lenet = readOnnx(new Uint8Array(readFileSync(sharedPath("models", "lenet5-fmnist.onnx"))));
    const train = loadFashionMnist({ split: "train", limit: 40 });
    const teacher = await teacherLogits(lenet, train, 1, true);
    const images = Uint32Array.from([37, 0, 12, 12]);
    const session = await createSession(lenet);
    const batch = gatherBatch(train, images, 0, images.length);
    const direct = (await session.run({ [session.inputs[0]!.name]: { dtype: "float32", dims: batch.dims, data: batch.data } }))[session.outputs[0]!.name]!.data as Float32Array;
    session.dispose();
    const looked = teacher({ dtype: "float32", dims: batch.dims, data: batch.data }, images);
    expect(looked.length).toBe(direct.length);
    for (let i = 0; i < direct.length; i++) expect(Math.abs(looked[i]! - direct[i]!)).toBeLessThan(1e-5);
    // finetune --calibrate starts from other weights than the FP32 model's; the teacher stays the FP32 model.
    const oneShot = compressModel(lenet, { sparsity: 0.74, bits: 3 }).opq;
    const o: FinetuneOptions = { ...FINETUNE_DEFAULTS, steps: 2, batch: 16, lr: 0.01, distill: { temperature: 4, weight: 1 } };
    const start = { ...lenet, graph: { ...lenet.graph, initializers: { ...lenet.graph.initializers } } };
    const fc = Object.keys(start.graph.initializers).find((k) => start.graph.initializers[k]!.dims.length === 2)!;
    const t = start.graph.initializers[fc]!;
    start.graph.initializers[fc] = { ...t, data: (t.data as Float32Array).map((v) => 0.5 * v) };
    const fromFp32 = await finetuneOpq(start, oneShot, train, o, undefined, lenet);
    const fromStart = await finetuneOpq(start, oneShot, train, o);
    expect(fromFp32.history[0]!.loss).not.toBe(fromStart.history[0]!.loss); // λ = 1: the loss is the KL to the teacher alone
  }, 60_000);

  test("the training data source writes every batch into one array (a step allocates no batch), with each batch's own images", () => {
    const train = loadFashionMnist({ split: "train", limit: 64 });
    const data = trainData(train), order = Uint32Array.from({ length: 64 }, (_, i) => (i * 37) % 64);
    const a = data.gather(order, 0, 16), first = a.data.slice();
    const b = data.gather(order, 16, 16);
    expect(b.data.buffer).toBe(a.data.buffer);
    expect(Array.from(b.data)).toEqual(Array.from(gatherBatch(train, order, 16, 16).data));
    expect(Array.from(first)).toEqual(Array.from(gatherBatch(train, order, 0, 16).data));
    expect(Array.from(b.labels)).toEqual(Array.from(order.subarray(16, 32), (i) => train.labels[i]!));
    expect(data.gather(order, 0, 32).data.length).toBe(32 * 784); // a larger batch gets a larger array
  });

  test("bad arguments are usage errors (exit 2)", () => {
    for (const args of [["--steps", "3", "--epochs", "1"], ["--batch", "0"], ["--steps", "1.5"], ["--stage1-fraction", "2"], ["--lr", "x"], ["--limit", "0"], ["a.onnx", "b.onnx"], ["--schedule", "linear"], ["--temperature", "2"], ["--distill", "--distill-weight", "2"]]) {
      const r = opq(...args, "--json");
      expect(r.code).toBe(2);
      expect(JSON.parse(r.stdout).error.code).toBe("USAGE");
    }
  }, 30_000);
});
