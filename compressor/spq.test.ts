/** SPQ/PPQ pieces without a runtime: activation levels, quantizer insertion, the APoT weight quantizer's straight-through gradients, PPQ's staged hard masks. */
import { describe, expect, test } from "bun:test";
import { type Model, mulberry32 } from "../format/mod.ts";
import { APOT_MAGNITUDES, signedLevels } from "./apot.ts";
import { alphaGradScale, APOT_ACTIVATION_LEVELS_4, apotStart, apotTrainMethod, insertActivationQuantizers, planApot, weightAlphaKey } from "./spq.ts";

/** x → Conv a (4 filters) → Relu → Conv b (3 filters) → Relu → Flatten → Gemm fc. */
function tiny(): Model {
  const rnd = mulberry32(2);
  const f = (dims: number[]) => ({ dtype: "float32" as const, dims, data: Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => rnd() - 0.5) });
  const n = (opType: string, inputs: string[], out: string, attrs = {}) => ({ opType, domain: "", name: out, inputs, outputs: [out], attrs });
  return {
    irVersion: 8, opsetImports: [{ domain: "", version: 13 }], producerName: "t",
    graph: {
      name: "g",
      nodes: [n("Conv", ["x", "wa", "ba"], "a"), n("Relu", ["a"], "ra"), n("Conv", ["ra", "wb", "bb"], "b"), n("Relu", ["b"], "rb"), n("Flatten", ["rb"], "fl"), n("Gemm", ["fl", "wf"], "y", { transB: { type: "int", value: 1 } })],
      inputs: [{ name: "x", dtype: "float32", shape: [1, 2, 3, 3] }],
      outputs: [{ name: "y", dtype: "float32", shape: [1, 5] }],
      initializers: { wa: f([4, 2, 1, 1]), ba: f([4]), wb: f([3, 4, 1, 1]), bb: f([3]), wf: f([5, 27]) },
    },
  };
}

describe("SPQ/PPQ", () => {
  test("4-bit activation levels: 16 APoT values from 0 to 1", () => {
    expect(APOT_ACTIVATION_LEVELS_4).toHaveLength(16);
    expect(APOT_ACTIVATION_LEVELS_4[0]).toBe(0);
    expect(APOT_ACTIVATION_LEVELS_4[15]).toBe(1);
    expect(APOT_ACTIVATION_LEVELS_4).toContain(11 / 16);
  });

  test("a quantizer after every ReLU; readers read it; the ai.opq opset is imported", () => {
    const q = insertActivationQuantizers(tiny(), new Map([["ra", 2.5]]));
    expect(q.quantized).toEqual(["ra", "rb"]);
    expect(q.model.graph.nodes.map((n) => n.opType)).toEqual(["Conv", "Relu", "ApotQuantize", "Conv", "Relu", "ApotQuantize", "Flatten", "Gemm"]);
    expect(q.model.graph.nodes[3]!.inputs[0]).toBe("ra.apot");
    expect(q.model.graph.initializers["ra.apot_alpha"]!.data[0]).toBe(2.5);
    expect(q.model.opsetImports).toContainEqual({ domain: "ai.opq", version: 1 });
  });

  test("APoT weight quantizer: Ŵ = α·q(W/α); ∂L/∂W and ∂L/∂α = finite differences of the straight-through surrogate", () => {
    const m = tiny(), plan = planApot(m.graph);
    expect(plan.weights.map((w) => w.scheme)).toEqual(["uniform", "apot", "uniform"]);
    const master = new Map(Object.entries(m.graph.initializers).map(([k, t]) => [k, Float32Array.from(t.data as Float32Array)]));
    const hats = new Map([...master].map(([k, w]) => [k, new Float32Array(w.length)]));
    const method = apotTrainMethod(plan, { method: "spq", filterRate: 0, bits: 4, stages: 1, pruneFraction: 0 }, master, hats, 10);
    const ctx = { step: 0, epoch: 0, steps: 10, stepsPerEpoch: 10, lr: 0.1 };
    // Push some weights beyond α so both regions are exercised.
    const wb = master.get("wb")!;
    method.prepare!(master, ctx);
    const alpha = master.get(weightAlphaKey("wb"))![0]!;
    wb[0] = 1.7 * alpha; wb[1] = -1.3 * alpha;
    method.prepare!(master, ctx);
    const levels = signedLevels(APOT_MAGNITUDES[4]);
    const hat = hats.get("wb")!;
    for (let i = 0; i < wb.length; i++) expect(levels.map((l) => Math.fround(alpha * l))).toContain(hat[i]!);
    expect([hat[0], hat[1]]).toEqual([Math.fround(alpha), Math.fround(-alpha)]);
    const rnd = mulberry32(8), g = Float32Array.from(wb, () => rnd() - 0.5);
    const grads = new Map([["wb", Float32Array.from(g)]]);
    method.gradients!(grads, master, ctx);
    // Surrogate: ŵ = α·sg(q − t) + w inside [−α, α], α·sign(t) outside, residual frozen at the point.
    const c = Array.from(wb, (w, i) => hat[i]! / alpha - w / alpha);
    const s = (w: ArrayLike<number>, a: number) => {
      let acc = 0;
      for (let i = 0; i < w.length; i++) {
        const t = wb[i]! / alpha;
        acc += g[i]! * (Math.abs(t) > 1 ? a * Math.sign(t) : a * c[i]! + w[i]!);
      }
      return acc;
    };
    const h = 1e-3;
    // α's step is the surrogate's derivative scaled by 1/√(N·Q_P) (LSQ), Q_P = 7 positive 4-bit levels.
    expect(grads.get(weightAlphaKey("wb"))![0]!).toBeCloseTo(alphaGradScale(wb.length, 7) * (s(wb, alpha + h) - s(wb, alpha - h)) / (2 * h), 5);
    for (let i = 0; i < wb.length; i++) {
      const p = Float64Array.from(wb), q = Float64Array.from(wb);
      p[i] += h; q[i] -= h;
      expect(grads.get("wb")![i]!).toBeCloseTo((s(p, alpha) - s(q, alpha)) / (2 * h), 4);
    }
  });

  test("SPQ: selects at the first step, again at each epoch end but the last; the file keeps what the last epoch trained under", () => {
    const m = tiny(), plan = planApot(m.graph);
    const master = new Map(Object.entries(m.graph.initializers).map(([k, t]) => [k, Float32Array.from(t.data as Float32Array)]));
    const hats = new Map([...master].map(([k, w]) => [k, new Float32Array(w.length)]));
    const method = apotTrainMethod(plan, { method: "spq", filterRate: 0.5, bits: 4, stages: 1, pruneFraction: 0 }, master, hats, 4);
    const ctx = (step: number) => ({ step, epoch: Math.floor(step / 2), steps: 4, stepsPerEpoch: 2, lr: 0.1 });
    expect(method.selection().map((s) => s.length)).toEqual([0, 0]);
    method.prepare!(master, ctx(0));
    const first = method.selection();
    expect(first.map((s) => s.length)).toEqual([2, 1]); // ⌊0.5·4⌋, ⌊0.5·3⌋, masked from step 0
    for (const j of first[0]!) expect(hats.get("ba")![j]).toBe(0);
    // Move the filters so GM picks others: epoch 0's end re-selects, the last epoch's end does not.
    const wa = master.get("wa")!, per = wa.length / 4;
    const flip = () => { for (let j = 0; j < 4; j++) for (let i = 0; i < per; i++) wa[j * per + i] = (first[0]!.includes(j) ? 5 : 0.01) * (i + 1 + j); };
    flip();
    method.endEpoch!(master, 0);
    const second = method.selection();
    expect(second[0]).not.toEqual(first[0]);
    method.prepare!(master, ctx(2));
    for (let j = 0; j < 4; j++) for (let i = 0; i < per; i++) wa[j * per + i] = (second[0]!.includes(j) ? 5 : 0.01) * (i + 1 + j);
    method.endEpoch!(master, 1);
    method.finish();
    expect(method.selection()).toEqual(second);
  });

  test("calibrated start: removed filters, their biases and the readers' input channels masked; nothing stored off the masks; the FP32 reference has Identity for each quantizer; the selection is held", () => {
    const q = insertActivationQuantizers(tiny()), plan = planApot(q.model.graph);
    const selection = [[1, 3], [2]];
    const st = apotStart(q.model, plan, selection, 4);
    expect(Array.from(st.masks.get("ba")!)).toEqual([1, 0, 1, 0]);
    expect(Array.from(st.masks.get("wa")!)).toEqual([1, 1, 0, 0, 1, 1, 0, 0]); // [4, 2, 1, 1]: filters 1 and 3
    expect(Array.from(st.masks.get("wb")!)).toEqual([1, 0, 1, 0, 1, 0, 1, 0, 0, 0, 0, 0]); // [3, 4]: input channels 1, 3 and filter 2
    const wf = st.masks.get("wf")!; // [5, 27]: channel 2 of rb is features 18…26 of every row
    for (let r = 0; r < 5; r++) for (let c = 0; c < 27; c++) expect(wf[r * 27 + c]).toBe(c >= 18 ? 0 : 1);
    for (const t of st.opq.compressed) for (const i of t.indices) expect(st.masks.get(t.name)![i]).toBe(1);
    expect(st.opq.compressed.map((t) => t.codebook.kind)).toEqual(["uniform", "table", "uniform"]);
    expect(st.opq.model.graph.initializers.ba!.data[1]).toBe(0);
    expect(st.float.graph.nodes.map((n) => n.opType)).toEqual(["Conv", "Relu", "Identity", "Conv", "Relu", "Identity", "Flatten", "Gemm"]);
    const master = new Map(Object.entries(q.model.graph.initializers).map(([k, t]) => [k, Float32Array.from(t.data as Float32Array)]));
    const hats = new Map([...master].map(([k, w]) => [k, new Float32Array(w.length)]));
    const method = apotTrainMethod(plan, { method: "spq", filterRate: 0.5, bits: 4, stages: 1, pruneFraction: 0 }, master, hats, 4, selection);
    method.prepare!(master, { step: 0, epoch: 0, steps: 4, stepsPerEpoch: 2, lr: 0.1 });
    method.endEpoch!(master, 0);
    expect(method.selection()).toEqual(selection);
    expect(Array.from(method.trainable!("ba")!)).toEqual([1, 0, 1, 0]);
    // PPQ from a calibrated start: the whole selection from its first (full-precision) step, no stages.
    const ppq = apotTrainMethod(plan, { method: "ppq", filterRate: 0.5, bits: 4, stages: 3, pruneFraction: 0.5 }, master, hats, 4, selection);
    ppq.prepare!(master, { step: 0, epoch: 0, steps: 4, stepsPerEpoch: 4, lr: 0.1 });
    expect([ppq.selection(), ppq.quantizing()]).toEqual([selection, false]);
    expect(() => apotTrainMethod(plan, { method: "spq", filterRate: 0.5, bits: 4, stages: 1, pruneFraction: 0 }, master, hats, 4, [[1]])).toThrow(/one list per channel space/);
  });

  test("PPQ: full precision while pruning in hard stages, then quantized; pruned filters and biases are zero and frozen", () => {
    const m = tiny(), plan = planApot(m.graph);
    expect(plan.spaces.map((s) => s.channels)).toEqual([4, 3]);
    const master = new Map(Object.entries(m.graph.initializers).map(([k, t]) => [k, Float32Array.from(t.data as Float32Array)]));
    const hats = new Map([...master].map(([k, w]) => [k, new Float32Array(w.length)]));
    const method = apotTrainMethod(plan, { method: "ppq", filterRate: 0.5, bits: 4, stages: 2, pruneFraction: 0.5 }, master, hats, 8);
    const at = (step: number) => { method.prepare!(master, { step, epoch: 0, steps: 8, stepsPerEpoch: 8, lr: 0.1 }); return method.selection(); };
    const s0 = at(0);
    expect(s0.map((s) => s.length)).toEqual([1, 0]); // stage 1: ⌊0.25·4⌋, ⌊0.25·3⌋
    expect(method.quantizing()).toBe(false);
    expect(Array.from(hats.get("wa")!)).toEqual(Array.from(master.get("wa")!, (v, i) => (Math.floor(i / 2) === s0[0]![0] ? 0 : v)));
    const s2 = at(2);
    expect(s2.map((s) => s.length)).toEqual([2, 1]);
    expect(s2[0]).toContain(s0[0]![0]!); // hard: stage 1's channel stays removed
    expect(method.trainable!("ba")![s2[0]![0]!]).toBe(0);
    at(4);
    expect(method.quantizing()).toBe(true);
    for (const j of s2[1]!) expect(hats.get("bb")![j]).toBe(0);
  });
});
