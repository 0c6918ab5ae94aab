/**
 * Epilogue fusion on the real models: which chains are found, and that applying them (with a
 * fused kernel made of the reference Conv/Gemm, the residual add and the clamp) gives the same
 * logits as the unfused plan, so the release schedule the fusion rewrites frees nothing early.
 * @module
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { sharedPath } from "../cli/shared.ts";
import { readOnnx, type Tensor } from "../format/mod.ts";
import { applyFusions, findFusions } from "./fusion.ts";
import { type Plan, planModel } from "./planner.ts";
import { runPlan } from "./session.ts";
import { BufferPool } from "./buffer-pool.ts";

const load = (name: string) => readOnnx(new Uint8Array(readFileSync(sharedPath("models", name))));

function fuseAll(plan: Plan): number {
  const cands = findFusions(plan);
  for (const c of cands) {
    const head = plan.steps[c.head]!;
    const conv = head.kernel, { residual, lo, hi } = c.epilogue;
    head.kernel = (ins, attrs, ctx) => {
      const [y] = conv(residual === undefined ? ins : ins.slice(0, residual), attrs, ctx);
      const d = Float32Array.from(y!.data as Float32Array);
      const r = residual === undefined ? undefined : (ins[residual]!.data as Float32Array);
      for (let i = 0; i < d.length; i++) d[i] = Math.min(Math.max(d[i]! + (r ? r[i]! : 0), lo), hi);
      return [{ ...y!, data: d }];
    };
  }
  applyFusions(plan, cands);
  return cands.length;
}

describe("fusion", () => {
  for (const [name, dims, expected] of [
    ["resnet20-fmnist.onnx", [2, 1, 28, 28], { convRelu: 10, convAddRelu: 9 }],
    ["mobilenet_v2-224.onnx", [1, 3, 224, 224], undefined],
  ] as const) {
    test(`${name}: chains found, and fused logits equal unfused`, () => {
      const model = load(name);
      const plain = planModel(model);
      const cands = findFusions(plain);
      expect(cands.length).toBeGreaterThan(0);
      for (const c of cands) {
        const ops = c.absorbed.map((k) => plain.steps[k]!.node.opType);
        expect(["Conv", "Gemm"]).toContain(plain.steps[c.head]!.node.opType);
        expect(ops.every((o) => o === "Add" || o === "Relu" || o === "Clip")).toBe(true);
        expect(c.epilogue.fused).toEqual(c.absorbed.map((k) => plain.steps[k]!.name));
      }
      if (expected) {
        const kinds = cands.map((c) => c.absorbed.map((k) => plain.steps[k]!.node.opType).join("+"));
        expect(kinds.filter((k) => k === "Relu").length).toBe(expected.convRelu);
        expect(kinds.filter((k) => k === "Add+Relu").length).toBe(expected.convAddRelu);
      }
      const x: Tensor = { dtype: "float32", dims: [...dims], data: Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i * 0.37)) };
      const feeds = { [plain.inputs[0]!.name]: x };
      const want = Object.values(runPlan(plain, feeds))[0]!.data as Float32Array;
      const fused = planModel(model);
      const stepsBefore = fused.steps.length;
      const n = fuseAll(fused);
      expect(fused.steps.length).toBe(stepsBefore - cands.reduce((a, c) => a + c.absorbed.length, 0));
      expect(n).toBe(cands.length);
      // With a pool, so a value released too early would be overwritten by a later step.
      const got = Object.values(runPlan(fused, feeds, undefined, undefined, new BufferPool()))[0]!.data as Float32Array;
      let diff = 0;
      for (let i = 0; i < want.length; i++) diff = Math.max(diff, Math.abs(want[i]! - got[i]!));
      expect(diff).toBeLessThan(1e-4);
    });
  }
});
