/**
 * The memory plan: no two values alive at the same step share bytes, alias groups share a slot,
 * the arena is smaller than the sum of the values, and runs on a planned arena give the same
 * logits as the reference backend (which uses no arena) at several batch sizes in a row.
 * @module
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { sharedPath } from "../cli/shared.ts";
import { encodeOpq, readOnnx, type Tensor } from "../format/mod.ts";
import { compressModel } from "../compressor/mod.ts";
import { planMemory } from "./memory-plan.ts";
import { planModel } from "./planner.ts";
import { createSession } from "./mod.ts";

const load = (name: string) => readOnnx(new Uint8Array(readFileSync(sharedPath("models", name))));

describe("memory plan", () => {
  for (const [name, batch] of [["resnet20-fmnist.onnx", 3], ["mobilenet_v2-224.onnx", 1]] as const) {
    test(`${name}: live values never overlap; the arena reuses memory`, () => {
      const plan = planModel(load(name));
      const x = plan.inputs[0]!;
      const dims = x.shape!.map((d) => (typeof d === "number" ? d : batch));
      const mp = planMemory(plan, new Map([[x.name, dims]]));
      // Lifetimes as the session sees them.
      const life = new Map<string, [number, number]>();
      plan.steps.forEach((s, i) => {
        for (const o of s.node.outputs) if (mp.slots.has(o)) life.set(o, [i, plan.outputs.some((g) => g.name === o) ? plan.steps.length : i]);
        for (const r of s.release) if (life.has(r)) life.get(r)![1] = i;
      });
      const vals = [...life];
      expect(vals.length).toBeGreaterThan(10);
      for (let a = 0; a < vals.length; a++) {
        for (let b = a + 1; b < vals.length; b++) {
          const [na, [fa, la]] = vals[a]!, [nb, [fb, lb]] = vals[b]!;
          const sa = mp.slots.get(na)!, sb = mp.slots.get(nb)!;
          if (sa === sb) continue; // one alias group
          const timeOverlap = fa <= lb && fb <= la;
          const spaceOverlap = sa.offset < sb.offset + sb.bytes && sb.offset < sa.offset + sa.bytes;
          if (timeOverlap && spaceOverlap) throw new Error(`${na} and ${nb} overlap in time and space`);
        }
      }
      expect(mp.arenaBytes).toBeLessThan(mp.totalBytes / 2);
    });
  }

  test("resnet20: planned-arena runs at batch 1, 5, 1 equal the reference", async () => {
    const bytes = new Uint8Array(readFileSync(sharedPath("models", "resnet20-fmnist.onnx")));
    const ours = await createSession(bytes), ref = await createSession(bytes, { backend: "cpu-reference" });
    for (const n of [1, 5, 1]) {
      const x: Tensor = { dtype: "float32", dims: [n, 1, 28, 28], data: Float32Array.from({ length: n * 784 }, (_, i) => Math.cos(i * 0.1)) };
      const a = Object.values(await ours.run({ input: x }))[0]!.data as Float32Array;
      const b = Object.values(await ref.run({ input: x }))[0]!.data as Float32Array;
      let d = 0, m = 0;
      for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i]! - b[i]!)); m = Math.max(m, Math.abs(b[i]!)); }
      expect(d / m).toBeLessThan(1e-4);
    }
  });

  test("resnet20: a batch of 5 in chunks of 1, 2, 3, 5, the automatic chunk and a bad chunk (NaN, 0: one image) equals the whole-batch reference", async () => {
    const bytes = new Uint8Array(readFileSync(sharedPath("models", "resnet20-fmnist.onnx")));
    const ref = await createSession(bytes, { backend: "cpu-reference", splitBatch: false });
    const n = 5;
    const x: Tensor = { dtype: "float32", dims: [n, 1, 28, 28], data: Float32Array.from({ length: n * 784 }, (_, i) => Math.sin(i * 0.37)) };
    const b = Object.values(await ref.run({ input: x }))[0]!.data as Float32Array;
    for (const splitBatch of [1, 2, 3, 5, true, Number.NaN, 0]) {
      const ours = await createSession(bytes, { splitBatch });
      expect(ours.info.batchSplit).toBe(true);
      // Twice: the second run reuses the memory plans of the full and the last chunk.
      for (let r = 0; r < 2; r++) {
        const out = Object.values(await ours.run({ input: x }))[0]!;
        expect(out.dims).toEqual([n, 10]);
        const a = out.data as Float32Array;
        let d = 0, m = 0;
        for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i]! - b[i]!)); m = Math.max(m, Math.abs(b[i]!)); }
        expect(d / m).toBeLessThan(1e-4);
      }
      await ours.dispose();
    }
  });

  test("resnet20 .opq at 2 threads: a batch of 6 in chunks of 1, 2 (an image per thread), 3 and the automatic chunk equals one image at a time on 1 thread", async () => {
    const onnx = readOnnx(new Uint8Array(readFileSync(sharedPath("models", "resnet20-fmnist.onnx"))));
    const bytes = encodeOpq(compressModel(onnx, { method: "opq", sparsity: 0.74, bits: 3 }).opq);
    const n = 6;
    const x: Tensor = { dtype: "float32", dims: [n, 1, 28, 28], data: Float32Array.from({ length: n * 784 }, (_, i) => Math.sin(i * 0.21)) };
    const one = await createSession(bytes, { threads: 1, splitBatch: 1 });
    const b = Object.values(await one.run({ input: x }))[0]!.data as Float32Array;
    for (const splitBatch of [undefined, 1, 2, 3]) {
      const ours = await createSession(bytes, { threads: 2, ...(splitBatch ? { splitBatch } : {}) });
      const a = Object.values(await ours.run({ input: x }))[0]!.data as Float32Array;
      let d = 0, m = 0;
      for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i]! - b[i]!)); m = Math.max(m, Math.abs(b[i]!)); }
      expect(d / m).toBeLessThan(1e-4);
      await ours.dispose();
    }
    await one.dispose();
  });
});
