/** Plans: what makePlan records, the safetensors round trip, hostile plans, and compressWithPlan's matching, refusals and counts. */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { dequantize, FormatError, type Model, readOnnx, readSafetensors, writeSafetensors } from "../format/mod.ts";
import { CompressError, compressWithPlan, decodePlan, encodePlan, makePlan, type Plan } from "./mod.ts";

const LENET = readOnnx(new Uint8Array(readFileSync(join(process.env.OPQ_SHARED ?? join(import.meta.dir, "..", "..", "shared"), "models", "lenet5-fmnist.onnx"))));
const PROV = { modelSha256: "ab".repeat(32), opqVersion: "0.0.0-test", source: "lenet5-fmnist.onnx" };
const OPTS = { sparsity: 0.74, bits: 3 };
const { plan: PLAN, result: ONE_SHOT } = makePlan(LENET, OPTS, PROV);
const BYTES = encodePlan(PLAN);

function err(f: () => unknown): FormatError | CompressError {
  try {
    f();
  } catch (e) {
    if (e instanceof FormatError || e instanceof CompressError) return e;
    throw e;
  }
  throw new Error("no error");
}

/** Rewrite a plan file's container: `edit` gets the tensors and metadata and may change them. */
function rewrite(bytes: Uint8Array, edit: (t: Map<string, { dtype: "U8" | "F32"; shape: number[]; data: Uint8Array }>, md: Record<string, string>) => void): Uint8Array {
  const f = readSafetensors(bytes);
  const t = f.tensors as Map<string, { dtype: "U8" | "F32"; shape: number[]; data: Uint8Array }>;
  edit(t, f.metadata);
  return writeSafetensors(t, f.metadata);
}

function withWeights(model: Model, edit: (name: string, w: Float32Array) => void): Model {
  const initializers = { ...model.graph.initializers };
  for (const [k, t] of Object.entries(initializers)) {
    if (!k.endsWith(".weight")) continue;
    const data = Float32Array.from(t.data as Float32Array);
    edit(k, data);
    initializers[k] = { ...t, data };
  }
  return { ...model, graph: { ...model.graph, initializers } };
}

describe("plan", () => {
  test("records every compressed initializer with its node, mask, step and bits, and the header", () => {
    expect(PLAN.layers.map((l) => [l.name, l.node, l.opType])).toEqual([
      ["c1.weight", "/c1/Conv", "Conv"], ["c2.weight", "/c2/Conv", "Conv"], ["f1.weight", "/f1/Gemm", "Gemm"], ["f2.weight", "/f2/Gemm", "Gemm"], ["f3.weight", "/f3/Gemm", "Gemm"],
    ]);
    for (const [i, l] of PLAN.layers.entries()) {
      const t = ONE_SHOT.opq.compressed[i]!;
      expect(l.kept).toBe(t.indices.length);
      expect(Array.from(l.mask.keys()).filter((k) => l.mask[k])).toEqual(Array.from(t.indices));
      expect(l.codebook).toEqual({ kind: "uniform", step: Math.fround((t.codebook as { step: number }).step) });
      expect(l.bits).toBeGreaterThanOrEqual(2);
    }
    expect(PLAN.options).toMatchObject({ method: "opq", sparsity: 0.74, bits: 3, maxLayerSparsity: 0.9 });
    const md = readSafetensors(BYTES).metadata;
    expect([md.format, md.plan_version, md.model_sha256, md.opq_version]).toEqual(["opq-plan", "1", PROV.modelSha256, "0.0.0-test"]);
    // Bit-packed: the whole plan is about n/8 bytes of masks plus the header.
    expect(BYTES.length).toBeLessThan(PLAN.layers.reduce((a, l) => a + l.mask.length, 0) / 8 + 4096);
  }, 60_000);
  test("round trips through safetensors", () => {
    const back: Plan = decodePlan(BYTES);
    expect(back).toEqual(PLAN);
  }, 60_000);
  test("encoding the planned model with its plan reproduces the one-shot .opq exactly", () => {
    const r = compressWithPlan(LENET, PLAN);
    for (const [i, t] of r.opq.compressed.entries()) {
      expect(Array.from(t.indices)).toEqual(Array.from(ONE_SHOT.opq.compressed[i]!.indices));
      expect(Array.from(t.codes)).toEqual(Array.from(ONE_SHOT.opq.compressed[i]!.codes));
    }
    // The original weights are nonzero almost everywhere the plan prunes: all counted, none kept.
    expect(r.leftMask).toBe(PLAN.layers.reduce((a, l) => a + l.mask.length - l.kept, 0) - countZerosOutside(LENET, PLAN));
    expect(r.fellToZero).toBe(0);
  }, 60_000);
  test("squashed weights (M ∘ Q(W)) come back bit for bit, with nothing outside the mask", () => {
    const sq = withWeights(LENET, (name, w) => {
      const l = PLAN.layers.find((x) => x.name === name)!;
      const d = Math.fround((l.codebook as { step: number }).step);
      for (let i = 0; i < w.length; i++) w[i] = l.mask[i] ? Math.fround(d * Math.round(w[i]! / d)) : 0;
    });
    const r = compressWithPlan(sq, PLAN);
    expect([r.leftMask, r.fellToZero]).toEqual([0, 0]);
    for (const t of r.opq.compressed) expect(Array.from(dequantize(t))).toEqual(Array.from(sq.graph.initializers[t.name]!.data as Float32Array));
  }, 60_000);
  test("matches by node name when the export renamed an initializer", () => {
    const g = LENET.graph;
    const initializers = { ...g.initializers, "onnx::Conv_7": g.initializers["c2.weight"]! };
    delete initializers["c2.weight"];
    const nodes = g.nodes.map((n) => ({ ...n, inputs: n.inputs.map((x) => (x === "c2.weight" ? "onnx::Conv_7" : x)) }));
    const r = compressWithPlan({ ...LENET, graph: { ...g, initializers, nodes } }, PLAN);
    expect(r.layers[1]).toMatchObject({ name: "c2.weight", modelName: "onnx::Conv_7" });
    expect(r.opq.compressed[1]!.name).toBe("onnx::Conv_7");
  }, 60_000);
  test("a model that does not match is PLAN_MISMATCH naming every problem", () => {
    const g = LENET.graph;
    const f1 = g.initializers["f1.weight"]!;
    const initializers = { ...g.initializers, "f1.weight": { ...f1, dims: [400, 120] }, "zz.weight": g.initializers["f3.weight"]! };
    delete initializers["c2.weight"];
    const nodes = g.nodes.map((n) => (n.name === "/c2/Conv" ? { ...n, name: "/other/Conv", inputs: [n.inputs[0]!, "c1.weight", n.inputs[2]!] } : n));
    nodes.push({ ...g.nodes.find((n) => n.name === "/f3/Gemm")!, name: "/zz/Gemm", inputs: ["/Relu_3_output_0", "zz.weight"], outputs: ["zz"] });
    const e = err(() => compressWithPlan({ ...LENET, graph: { ...g, initializers, nodes } }, PLAN));
    expect(e.code).toBe("PLAN_MISMATCH");
    expect(e.message).toContain("plan layer c2.weight (node /c2/Conv) has no matching weight");
    expect(e.message).toContain("f1.weight: dims [400,120] in the model");
    expect(e.message).toContain("weight zz.weight (node /zz/Gemm) is not in the plan");
  }, 60_000);
  test("hostile plans are typed FormatErrors", () => {
    const cases: [string, Uint8Array, string][] = [
      ["truncated (the last tensor runs past the end)", BYTES.subarray(0, BYTES.length - 3), "CORRUPT"],
      ["truncated to the header length", BYTES.subarray(0, 6), "TRUNCATED"],
      ["header larger than the file", (() => { const b = BYTES.slice(); new DataView(b.buffer).setUint32(0, b.length, true); return b; })(), "TRUNCATED"],
      ["mask of the wrong length", rewrite(BYTES, (t) => { const m = t.get("f2.weight.mask")!; t.set("f2.weight.mask", { ...m, shape: [m.shape[0]! - 1], data: m.data.subarray(1) }); }), "CORRUPT"],
      ["mask pad bits set", rewrite(BYTES, (t) => { const m = t.get("c1.weight.mask")!; m.data[m.data.length - 1]! |= 0x80; }), "CORRUPT"],
      ["kept count wrong", rewrite(BYTES, (_, md) => { md.layers = md.layers!.replace('"kept":129', '"kept":130'); }), "CORRUPT"],
      ["dims of another shape", rewrite(BYTES, (_, md) => { md.layers = md.layers!.replace("[6,1,5,5]", "[6,1,5,6]"); }), "CORRUPT"],
      ["a step that is not a scalar", rewrite(BYTES, (t) => { const s = t.get("c1.weight.step")!; t.set("c1.weight.step", { ...s, shape: [1] }); }), "CORRUPT"],
      ["a negative step", rewrite(BYTES, (t) => { t.get("c1.weight.step")!.data.set([0, 0, 128, 191]); }), "CORRUPT"],
      ["layers not JSON", rewrite(BYTES, (_, md) => { md.layers = "[{"; }), "CORRUPT"],
      ["a tensor no layer owns", rewrite(BYTES, (t) => { t.set("x", { dtype: "U8", shape: [1], data: new Uint8Array(1) }); }), "CORRUPT"],
      ["not a plan", rewrite(BYTES, (_, md) => { md.format = "weights"; }), "BAD_MAGIC"],
      ["a newer plan", rewrite(BYTES, (_, md) => { md.plan_version = "2"; }), "UNSUPPORTED_VERSION"],
    ];
    for (const [what, b, c] of cases) expect([what, err(() => decodePlan(b)).code]).toEqual([what, c]);
  }, 60_000);
  test("gm-apot plans only without filter removal; then table codebooks round trip and re-encode", () => {
    expect(err(() => makePlan(LENET, { method: "gm-apot", bits: 4 }, PROV)).code).toBe("INVALID_OPTION");
    const { plan, result } = makePlan(LENET, { method: "gm-apot", bits: 4, filterRate: 0 }, PROV);
    expect(plan.layers.some((l) => l.codebook.kind === "table")).toBe(true);
    expect(decodePlan(encodePlan(plan))).toEqual(plan);
    const r = compressWithPlan(LENET, plan);
    for (const [i, t] of r.opq.compressed.entries()) expect(Array.from(dequantize(t))).toEqual(Array.from(dequantize(result.opq.compressed[i]!)));
  }, 60_000);
});

function countZerosOutside(model: Model, plan: Plan): number {
  let n = 0;
  for (const l of plan.layers) {
    const w = model.graph.initializers[l.name]!.data as Float32Array;
    for (let i = 0; i < w.length; i++) if (!l.mask[i] && w[i] === 0) n++;
  }
  return n;
}
