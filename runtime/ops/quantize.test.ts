/** ai.opq ApotQuantize: the kernel's values, its straight-through backward against finite differences, and a .opq round trip through a session. */
import { describe, expect, test } from "bun:test";
import { decodeOpq, encodeOpq, type Model, mulberry32 } from "../../format/mod.ts";
import { createSession } from "../session.ts";
import { OpqRuntimeError } from "../errors.ts";
import { createTrainableGraph } from "../train/graph-grad.ts";
import { Attrs } from "./types.ts";
import { apotQuantizeGrad, OPQ_DOMAIN_OPS } from "./quantize.ts";

/** 4-bit APoT activation levels (ALGORITHMS.md §4). */
const LEVELS = [0, 1 / 48, 1 / 24, 1 / 16, 1 / 12, 1 / 8, 1 / 6, 3 / 16, 1 / 4, 1 / 3, 3 / 8, 1 / 2, 2 / 3, 11 / 16, 3 / 4, 1];
const attrs = (levels = LEVELS) => new Attrs({ levels: { type: "floats", value: levels } }, "ApotQuantize");
const t = (dims: number[], v: ArrayLike<number>) => ({ dtype: "float32" as const, dims, data: Float32Array.from(v) });

function model(alpha: number): Model {
  return {
    irVersion: 8, opsetImports: [{ domain: "", version: 13 }, { domain: "ai.opq", version: 1 }], producerName: "test",
    graph: {
      name: "g",
      nodes: [
        { opType: "Relu", domain: "", name: "r", inputs: ["x"], outputs: ["a"], attrs: {} },
        { opType: "ApotQuantize", domain: "ai.opq", name: "q", inputs: ["a", "alpha"], outputs: ["y"], attrs: { levels: { type: "floats", value: LEVELS } } },
      ],
      inputs: [{ name: "x", dtype: "float32", shape: ["n", 4] }],
      outputs: [{ name: "y", dtype: "float32", shape: ["n", 4] }],
      initializers: { alpha: t([], [alpha]) },
    },
  };
}

describe("ApotQuantize", () => {
  test("levels × α, clamped to [0, α], nearest level with midpoints rounding up", () => {
    const alpha = 6, x = [-3, 0, 6 / 96 - 1e-6, 6 / 96 + 1e-6, 6 * 0.6, 5.25, 5.25 - 1e-5, 7, 1e9];
    const [y] = OPQ_DOMAIN_OPS.ApotQuantize![0]!.kernel([t([x.length], x), t([], [alpha])], attrs(), { opset: 1, threads: 1 });
    const f = (l: number) => Math.fround(alpha * Math.fround(l));
    expect(Array.from(y!.data as Float32Array)).toEqual([0, 0, 0, f(1 / 48), f(2 / 3), f(1), f(3 / 4), f(1), f(1)]);
  });

  test("the bucket lookup picks the level a search over the midpoints picks, at and beside every midpoint, for random and dense level sets", () => {
    const rnd = mulberry32(5);
    const sets = [LEVELS, [0, 1], [0, 0.001, 0.0011, 0.5, 0.99951, 1], Array.from({ length: 256 }, (_, i) => i / 255)];
    for (const lv of sets) {
      const levels = Float32Array.from(lv), alpha = Math.fround(0.5 + rnd() * 4);
      const mids = Array.from({ length: levels.length - 1 }, (_, i) => (levels[i]! + levels[i + 1]!) / 2);
      const x: number[] = [];
      for (const m of mids) for (const d of [-1e-7, 0, 1e-7]) x.push(Math.fround((m + d) * alpha));
      for (let i = 0; i < 2000; i++) x.push((rnd() * 1.2 - 0.1) * alpha);
      x.push(-0, NaN, Infinity, -Infinity, alpha, -alpha, 1e-45, 3e38);
      const xs = Float32Array.from(x);
      const [y] = OPQ_DOMAIN_OPS.ApotQuantize![0]!.kernel([t([xs.length], xs), t([], [alpha])], attrs(lv), { opset: 1, threads: 1 });
      xs.forEach((v, i) => {
        const q = v / alpha, k = mids.filter((m) => q >= m).length;
        expect((y!.data as Float32Array)[i]).toBe(q <= 0 ? 0 : q >= 1 ? Math.fround(alpha * levels[levels.length - 1]!) : Math.fround(alpha * levels[k]!));
      });
    }
  });

  test("bad α or levels are kernel errors", () => {
    const k = OPQ_DOMAIN_OPS.ApotQuantize![0]!.kernel, x = t([2], [1, 2]);
    for (const a of [0, -1, NaN]) expect(() => k([x, t([], [a])], attrs(), { opset: 1, threads: 1 })).toThrow(/alpha/);
    for (const lv of [[0], [0, 0.5], [0, 0.6, 0.5, 1], [0.1, 1]]) expect(() => k([x, t([], [1])], attrs(lv), { opset: 1, threads: 1 })).toThrow(/levels/);
  });

  test("backward = finite differences of the straight-through surrogate y = α·sg(q − t) + x on [0, α], α above, 0 below", () => {
    const rnd = mulberry32(4), n = 400, alpha = 2.5;
    const x = Float32Array.from({ length: n }, () => 4 * rnd() - 0.8), w = Float64Array.from({ length: n }, () => rnd() - 0.5);
    const r = apotQuantizeGrad([t([n], x), t([], [alpha])], attrs());
    const y = r.outputs[0]!.data as Float32Array;
    const [dx, da] = r.backward([Float32Array.from(w)], [true, true]);
    // The surrogate with the rounding residual c = q − t frozen at the evaluation point.
    const c = Array.from(x, (v, i) => y[i]! / alpha - v / alpha);
    const surrogate = (xs: ArrayLike<number>, a: number) => {
      let s = 0;
      for (let i = 0; i < n; i++) {
        const ti = x[i]! / alpha; // regions are those of the evaluation point
        s += w[i]! * (ti < 0 ? 0 : ti > 1 ? a : a * c[i]! + xs[i]!);
      }
      return s;
    };
    const h = 1e-3;
    expect(da![0]!).toBeCloseTo((surrogate(x, alpha + h) - surrogate(x, alpha - h)) / (2 * h), 3);
    for (let i = 0; i < n; i += 7) {
      const p = Float64Array.from(x), m = Float64Array.from(x);
      p[i] += h; m[i] -= h;
      expect(dx![i]!).toBeCloseTo((surrogate(p, alpha) - surrogate(m, alpha)) / (2 * h), 4);
    }
    // And the surrogate equals the true output at the evaluation point.
    let s = 0;
    for (let i = 0; i < n; i++) s += w[i]! * y[i]!;
    expect(surrogate(x, alpha)).toBeCloseTo(s, 4);
  });

  test("an .opq with ApotQuantize round-trips and the session gives the kernel's values; the training graph trains its α", async () => {
    const m = model(1.5);
    const bytes = encodeOpq({ model: m, compressed: [], metadata: {} });
    const back = decodeOpq(bytes);
    expect(back.model.graph.nodes[1]).toMatchObject({ opType: "ApotQuantize", domain: "ai.opq" });
    const session = await createSession(bytes);
    const x = t([2, 4], [-1, 0.01, 0.4, 0.74, 0.76, 1.2, 1.49, 3]);
    const y = (await session.run({ x })).y!.data as Float32Array;
    const ref = apotQuantizeGrad([t([2, 4], [0, 0.01, 0.4, 0.74, 0.76, 1.2, 1.49, 3]), t([], [1.5])], attrs()).outputs[0]!.data;
    expect(Array.from(y)).toEqual(Array.from(ref as Float32Array));
    session.dispose();
    const g = createTrainableGraph(m);
    expect(g.params).toEqual(["alpha"]);
    g.forward(x);
    const d = g.backward(new Float32Array(8).fill(1)).get("alpha")!;
    expect(d[0]!).toBeCloseTo(y.reduce((a, v, i) => a + (x.data[i]! / 1.5 > 1 ? 1 : x.data[i]! > 0 ? v / 1.5 - x.data[i]! / 1.5 : 0), 0), 5);
  });

  test("a model without the ai.opq opset import, or with an unknown ai.opq op, is refused with UNSUPPORTED_OPS", async () => {
    const noImport = model(1);
    noImport.opsetImports = [{ domain: "", version: 13 }];
    const unknown = model(1);
    unknown.graph.nodes[1] = { ...unknown.graph.nodes[1]!, opType: "Dequantize" };
    for (const m of [noImport, unknown]) {
      const e = await createSession(m).then(() => undefined, (err) => err);
      expect(e).toBeInstanceOf(OpqRuntimeError);
      expect((e as OpqRuntimeError).code).toBe("UNSUPPORTED_OPS");
    }
  });
});
