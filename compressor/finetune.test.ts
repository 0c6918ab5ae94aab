/** Masks and steps of a compressed model, Eq. 10 with a fixed Δ, and requantize through a .opq round trip. */
import { describe, expect, test } from "bun:test";
import { decodeOpq, dequantize, encodeOpq, type Model, type OpqModel } from "../format/mod.ts";
import { layerConstraints, maskWeights, quantizeFixed, requantize } from "./finetune.ts";

/** A 2×4 weight stored at 5 positions with Δ = 0.1, plus a bias initializer. */
function tiny(): OpqModel {
  const model: Model = {
    irVersion: 8, opsetImports: [{ domain: "", version: 13 }], producerName: "test",
    graph: {
      name: "g",
      nodes: [{ opType: "Gemm", domain: "", name: "fc", inputs: ["x", "w", "b"], outputs: ["y"], attrs: { transB: { type: "int", value: 1 } } }],
      inputs: [{ name: "x", dtype: "float32", shape: ["n", 4] }],
      outputs: [{ name: "y", dtype: "float32", shape: ["n", 2] }],
      initializers: { b: { dtype: "float32", dims: [2], data: Float32Array.of(0.5, -0.5) } },
    },
  };
  const compressed = [{ name: "w", dims: [2, 4], codebook: { kind: "uniform" as const, step: 0.1 }, indices: Uint32Array.of(0, 2, 3, 5, 7), codes: Int32Array.of(3, -1, 2, 5, -4) }];
  return { model, compressed, metadata: { method: "opq" } };
}

describe("finetune constraints", () => {
  test("layerConstraints: mask from the stored indices, Δ as float32", () => {
    const c = layerConstraints(tiny()).get("w")!;
    expect(Array.from(c.mask)).toEqual([1, 0, 1, 1, 0, 1, 0, 1]);
    expect(c.step).toBe(Math.fround(0.1));
  });
  test("table codebooks are refused", () => {
    const opq = tiny();
    opq.compressed[0]!.codebook = { kind: "table", values: Float32Array.of(0, 1) };
    expect(() => layerConstraints(opq)).toThrow(/uniform/);
  });
  test("maskWeights and quantizeFixed (Eq. 10 with fixed Δ) agree with the codebook decode", () => {
    const { mask, step } = layerConstraints(tiny()).get("w")!;
    const w = Float32Array.of(0.31, 9, -0.149, 0.26, 9, 0.04, 9, -0.44);
    expect(Array.from(maskWeights(w, mask))).toEqual(Array.from(Float32Array.of(0.31, 0, -0.149, 0.26, 0, 0.04, 0, -0.44)));
    const q = quantizeFixed(w, mask, step);
    const d = Math.fround(0.1);
    expect(Array.from(q)).toEqual([3, 0, -1, 3, 0, 0, 0, -4].map((c) => Math.fround(d * c)));
    // In place is allowed.
    const inPlace = Float32Array.from(w);
    quantizeFixed(inPlace, mask, step, inPlace);
    expect(Array.from(inPlace)).toEqual(Array.from(q));
  });
  test("requantize: new codes at the mask, zeros dropped, Δ and biases kept/written, .opq round trip bit-exact", () => {
    const opq = tiny();
    const w = Float32Array.of(0.31, 9, -0.149, 0.26, 9, 0.04, 9, -0.44); // pruned positions ignored
    const out = requantize(opq, new Map([["w", w], ["b", Float32Array.of(0.25, 1.5)]]));
    const t = out.compressed[0]!;
    expect(Array.from(t.indices)).toEqual([0, 2, 3, 7]); // position 5 rounds to 0 and is dropped
    expect(Array.from(t.codes)).toEqual([3, -1, 3, -4]);
    expect(t.codebook).toEqual({ kind: "uniform", step: 0.1 });
    expect(Array.from(out.model.graph.initializers.b!.data as Float32Array)).toEqual([0.25, 1.5]);
    // The input is untouched.
    expect(Array.from(opq.compressed[0]!.codes)).toEqual([3, -1, 2, 5, -4]);
    expect(Array.from(opq.model.graph.initializers.b!.data as Float32Array)).toEqual([0.5, -0.5]);
    const back = decodeOpq(encodeOpq(out));
    const mask = layerConstraints(opq).get("w")!.mask;
    expect(Array.from(dequantize(back.compressed[0]!))).toEqual(Array.from(quantizeFixed(w, mask, 0.1)));
    expect(Array.from(back.model.graph.initializers.b!.data as Float32Array)).toEqual([0.25, 1.5]);
  });
  test("requantize refuses a master tensor of the wrong size or an unknown initializer", () => {
    expect(() => requantize(tiny(), new Map([["w", new Float32Array(3)]]))).toThrow(/dims/);
    expect(() => requantize(tiny(), new Map([["nope", new Float32Array(3)]]))).toThrow(/nope/);
  });
});
