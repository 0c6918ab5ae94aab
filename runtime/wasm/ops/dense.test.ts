import { afterAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import type { CompressedTensor, Tensor } from "../../../format/mod.ts";
import { randomTensor, relativeDiff, seededRandom } from "../../cpu/test-support.ts";
import type { DenseBound } from "./dense-common.ts";
import { WASM_OPS } from "./index.ts";
import { createSession } from "../../session.ts";
import { CLAIMED_CASES, DENSE_TOLERANCE, REFUSED_CASES } from "./dense-cases.ts";
import { attrValues, nodeSpec, referenceOutput, runBound, testBackend } from "./test-support.ts";
import { seededInput } from "../../../cli/commands/bench.ts";

const SHARED = process.env.OPQ_SHARED ?? new URL("../../../../shared", import.meta.url).pathname;
/** One case per Conv/Gemm kernel whose fused epilogue is checked. */
const EPILOGUE_CASES = ["1x1 pointwise batch 3", "3x3 pad 1 5->6", "winograd 3x3 no pad batch 3", "depthwise 3x3 s2 pad 1 batch 3", "depthwise 3x3 s1 pad 1 batch 2 @7x7", "depthwise 5x5", "Gemm alpha/beta", "MatMul"];
/** Logits of a whole model against the reference backend, relative to max |logit|. */
const MODEL_TOLERANCE = 1e-4;

const backends: { close(): void }[] = [];
afterAll(() => { for (const b of backends) b.close(); });

for (const build of ["relaxed", "simd"] as const) {
  for (const threads of [1, 2]) {
    describe(`dense wasm kernels, ${build} build, ${threads} thread(s)`, async () => {
      const env = await testBackend(build, threads);
      if (!env) {
        // The relaxed build needs an engine with relaxed SIMD; Bun has it, so this must not happen here.
        test("build is available", () => { expect(env).toBeDefined(); });
        return;
      }
      backends.push({ close: () => env.backend.dispose() });
      for (const c of CLAIMED_CASES) {
        test(c.name, async () => {
          const spec = nodeSpec(c.op, c.inputs, attrValues(c.attrs, c.floats), c.opset, c.outputs);
          const bound = env.backend.bind(spec);
          expect(bound?.backend).toBe("wasm");
          if (c.path) expect(bound!.path).toBe(c.path);
          const xs = c.inputs.map((i) => i?.tensor);
          const splits = env.backend.env.team.splits;
          const got = await runBound(bound!, xs, env.rc);
          env.heap.clear();
          const want = referenceOutput(spec, xs);
          expect(got.dims).toEqual(want.dims);
          expect(relativeDiff(got, want)).toBeLessThanOrEqual(DENSE_TOLERANCE);
          // Cases named "split" are large enough that a 2-thread team must divide them.
          if (threads === 2 && c.name.includes("split")) expect(env.backend.env.team.splits).toBeGreaterThan(splits);
          bound!.dispose?.();
        });
      }
      // The fused epilogue (residual, then clamp) on one case of each Conv/Gemm kernel.
      for (const c of CLAIMED_CASES.filter((c) => EPILOGUE_CASES.some((n) => c.name.startsWith(n)))) {
        test(`epilogue (residual + clamp): ${c.name}`, async () => {
          const spec = nodeSpec(c.op, c.inputs, attrValues(c.attrs, c.floats), c.opset, c.outputs);
          const claims = WASM_OPS.map((impl) => ({ impl, claim: impl.claim(spec, env.backend.env) })).filter((x) => x.claim?.path === c.path);
          expect(claims.length).toBe(1);
          const { impl, claim } = claims[0]!;
          const bound = impl.bind(spec, env.backend.env, claim!) as DenseBound;
          const xs = c.inputs.map((i) => i?.tensor);
          const want = referenceOutput(spec, xs);
          const residual = randomTensor(seededRandom(5), want.dims);
          const k = env.backend.env.kernels;
          const addr = (t: Tensor) => {
            const a = k.addressOf(t.data as Float32Array);
            if (a >= 0) return a;
            const v = env.heap.take(t.data.length);
            v.set(t.data as Float32Array);
            return v.byteOffset;
          };
          const out = bound.run(xs, env.rc, addr, { residual, lo: -0.4, hi: 0.6 })[0]!;
          const got: Tensor = { ...out, data: (out.data as Float32Array).slice() };
          env.heap.clear();
          const wd = want.data as Float32Array, rd = residual.data as Float32Array;
          const fused: Tensor = { ...want, data: wd.map((v, i) => Math.min(Math.max(v + rd[i]!, -0.4), 0.6)) };
          expect(relativeDiff(got, fused)).toBeLessThanOrEqual(DENSE_TOLERANCE);
          bound.dispose?.();
        });
      }
      test("wasm build in use", () => {
        expect(env.backend.env.kernels.exports.buildFeatures()).toBe(build === "relaxed" ? 1 : 0);
      });
    });
  }
}

describe("dense wasm claims", async () => {
  const env = (await testBackend("simd", 1))!;
  backends.push({ close: () => env.backend.dispose() });
  for (const c of REFUSED_CASES) {
    test(`refuses ${c.name}`, () => {
      const spec = nodeSpec(c.op, c.inputs, attrValues(c.attrs, c.floats), c.opset, c.outputs);
      expect(env.backend.bind(spec)).toBeUndefined();
    });
  }

  /** A compressed copy of a dense weight (uniform codebook: value = step · code). */
  function compress(t: Tensor, step: number): { c: CompressedTensor; dense: Tensor } {
    const d = t.data as Float32Array, idx: number[] = [], codes: number[] = [];
    const dense = new Float32Array(d.length);
    for (let i = 0; i < d.length; i++) {
      const code = Math.round(d[i]! / step);
      if (code === 0 || i % 3 === 0) continue;
      idx.push(i); codes.push(code); dense[i] = Math.fround(Math.fround(step) * code);
    }
    return { c: { name: "w", dims: t.dims, codebook: { kind: "uniform", step }, indices: Uint32Array.from(idx), codes: Int32Array.from(codes) }, dense: { dtype: "float32", dims: t.dims, data: dense } };
  }

  for (const c of CLAIMED_CASES.filter((c) => c.name.startsWith("3x3 pad 1") || c.name.startsWith("depthwise 3x3 s2 pad") || c.name.startsWith("Gemm transB"))) {
    test(`compressed weight, never densified: ${c.name}`, async () => {
      const { c: comp, dense } = compress(c.inputs[1]!.tensor, 0.125);
      const spec = nodeSpec(c.op, c.inputs, attrValues(c.attrs, c.floats), c.opset);
      const bound = env.backend.bind({
        ...spec,
        constants: spec.constants.map((t, i) => (i === 1 ? undefined : t)),
        compressed: spec.constants.map((_, i) => (i === 1 ? comp : undefined)),
        dense: (i) => { if (i === 1) throw new Error("dense copy requested"); return spec.constants[i]; },
      });
      expect(bound?.backend).toBe("wasm");
      const xs = c.inputs.map((i, k) => (k === 1 ? dense : i?.tensor));
      const got = await runBound(bound!, xs.map((t, k) => (k === 1 ? undefined : t)), env.rc);
      env.heap.clear();
      const want = referenceOutput({ ...spec, constants: spec.constants.map((t, i) => (i === 1 ? dense : t)) }, xs);
      expect(relativeDiff(got, want)).toBeLessThanOrEqual(DENSE_TOLERANCE);
      bound!.dispose?.();
    });
  }
});

describe("the four shared models end to end (wasm, 2 threads) vs cpu-reference", () => {
  for (const name of ["lenet5-fmnist", "resnet20-fmnist", "mobilenet_v2-224", "resnet18-224"]) {
    test(name, async () => {
      const path = join(SHARED, "models", `${name}.onnx`);
      const ours = await createSession(path, { threads: 2 });
      const ref = await createSession(path, { backend: "cpu-reference" });
      try {
        const input = ours.inputs[0]!;
        const x = seededInput(input.shape!.map((d, i) => (i === 0 ? 2 : (d as number))), 11);
        const a = (await ours.run({ [input.name]: x }))[ours.outputNames[0]!]!;
        const b = (await ref.run({ [input.name]: x }))[ref.outputNames[0]!]!;
        const ad = a.data as Float32Array, bd = b.data as Float32Array;
        let diff = 0, scale = 0;
        for (let i = 0; i < bd.length; i++) { diff = Math.max(diff, Math.abs(ad[i]! - bd[i]!)); scale = Math.max(scale, Math.abs(bd[i]!)); }
        expect(a.dims).toEqual(b.dims);
        expect(diff / scale).toBeLessThanOrEqual(MODEL_TOLERANCE);
        // Every Conv, pool and Gemm of these models runs on wasm.
        const heavy = ours.info.layers.filter((l) => ["Conv", "Gemm", "MatMul", "MaxPool", "AveragePool", "GlobalAveragePool"].includes(l.opType));
        expect(heavy.length).toBeGreaterThan(0);
        expect(heavy.filter((l) => l.backend !== "wasm")).toEqual([]);
      } finally {
        ours.dispose(); ref.dispose();
      }
    }, 60_000);
  }
});
