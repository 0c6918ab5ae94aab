/**
 * The wasm sparse-quantized kernels against the reference backend on the data-driven cases of
 * sparse-check.ts (both SIMD builds, 1 and 2 threads), the fused epilogue, the thread split, the
 * weight form's size and that binding never asks for a dense weight; and whole shared models at
 * (0.5, 4) and (0.74, 3): logits within 1e-4 (relative to max |logit|) of cpu-reference on the
 * same `.opq`.
 * @module
 */
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { compressModel } from "../../../compressor/mod.ts";
import { sharedPath } from "../../../cli/shared.ts";
import { dequantize, mulberry32, readOnnx, type Tensor } from "../../../format/mod.ts";
import type { NodeSpec } from "../../backend.ts";
import { Attrs } from "../../ops/types.ts";
import { createSession } from "../../session.ts";
import { WasmKernels } from "../module.ts";
import { ThreadTeam } from "../threads.ts";
import { bindSparseConv } from "./conv-sparse.ts";
import { boundAsExpected, CASE_SOURCES, caseWeight, type CaseResult, checkCase, expectedBinding, FORM_CHOICES, SPARSE_CASES } from "./sparse-check.ts";

const TOL = 1e-5;

describe("sparse kernels vs the reference (current build)", () => {
  for (const [threads, source] of [[1, "model"], [2, "model"], [1, "file"], [2, "file"]] as const) {
    for (const forms of FORM_CHOICES) {
      test(`every case, ${threads} thread(s), forms ${forms}, from the ${source}`, async () => {
        for (const c of SPARSE_CASES) {
          const r = await checkCase(c, threads, forms, source);
          if (!boundAsExpected(c, r, forms)) throw new Error(`${c.name}: bound ${r.backend} ${r.path} ${r.weightForm}, expected ${JSON.stringify(expectedBinding(c, forms))}`);
          if (!(r.relErr <= TOL)) throw new Error(`${c.name}: relative error ${r.relErr}`);
        }
      }, 60_000);
    }
  }

  test("the plain-SIMD build (OPQ_WASM_RELAXED=0) in a child process, 2 threads", () => {
    const script = fileURLToPath(new URL("./sparse-check.ts", import.meta.url));
    const r = spawnSync(process.execPath, [script, "2"], { env: { ...process.env, OPQ_WASM_RELAXED: "0" }, encoding: "utf8" });
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { relaxed: boolean; results: (CaseResult & { ok: boolean })[] };
    expect(out.relaxed).toBe(false);
    expect(out.results.length).toBe(CASE_SOURCES.length * FORM_CHOICES.length * SPARSE_CASES.length);
    for (const x of out.results) if (!(x.relErr <= TOL) || !x.ok) throw new Error(`${x.name}: ${x.backend} ${x.path} relative error ${x.relErr}`);
  }, 60_000);
});

/** A NodeSpec for a Conv over a compressed weight, whose dense() fails the test if called. */
function convSpec(xDims: number[], w: ReturnType<typeof caseWeight>, raw: ConstructorParameters<typeof Attrs>[0], threads: number): NodeSpec {
  const node = { opType: "Conv", domain: "", name: "c", inputs: ["x", "w"], outputs: ["y"], attrs: raw };
  return {
    node, name: "c", attrs: new Attrs(raw, "Conv"), opset: 13, inputShapes: [xDims, w.dims], outputShapes: [undefined],
    inputDtypes: ["float32", "float32"], outputDtypes: ["float32"], constants: [undefined, undefined], compressed: [undefined, w],
    dense: () => { throw new Error("the sparse kernel asked for a dense weight"); }, threads,
  };
}

/** Plain conv on the dequantized weight (float64 sums), no padding tricks: the test's own reference. */
function naiveConv(x: Float32Array, xd: number[], w: Float32Array, wd: number[], pad: number, stride: number): { y: Float64Array; dims: number[] } {
  const [N, C, H, W] = xd as [number, number, number, number], [M, , KH, KW] = wd as [number, number, number, number];
  const Ho = Math.floor((H + 2 * pad - KH) / stride) + 1, Wo = Math.floor((W + 2 * pad - KW) / stride) + 1;
  const y = new Float64Array(N * M * Ho * Wo);
  for (let n = 0; n < N; n++) for (let m = 0; m < M; m++) for (let oy = 0; oy < Ho; oy++) for (let ox = 0; ox < Wo; ox++) {
    let s = 0;
    for (let c = 0; c < C; c++) for (let ky = 0; ky < KH; ky++) for (let kx = 0; kx < KW; kx++) {
      const iy = oy * stride + ky - pad, ix = ox * stride + kx - pad;
      if (iy >= 0 && iy < H && ix >= 0 && ix < W) s += x[((n * C + c) * H + iy) * W + ix]! * w[((m * C + c) * KH + ky) * KW + kx]!;
    }
    y[((n * M + m) * Ho + oy) * Wo + ox] = s;
  }
  return { y, dims: [N, M, Ho, Wo] };
}

describe("bound directly", () => {
  const c = SPARSE_CASES.find((k) => k.name.startsWith("large enough"))!;
  const w = caseWeight(c);
  const raw = { pads: { type: "ints" as const, value: [1, 1, 1, 1] }, strides: { type: "ints" as const, value: [2, 2] } };

  const pointwise = caseWeight({ name: "1×1", op: "Conv", x: [2, 96, 32, 32], w: [64, 96, 1, 1], density: 0.3, bits: 3 });
  const wide = caseWeight({ name: "1×1 wide", op: "Conv", x: [1, 192, 14, 14], w: [128, 192, 1, 1], density: 0.3, bits: 3 });
  const unpadded = { pads: { type: "ints" as const, value: [0, 0, 0, 0] }, strides: { type: "ints" as const, value: [1, 1] } };
  // 3×3 stride 2 (phase planes, separate run scratch); 1×1 on 32² (the run is the output plane:
  // the tile stores apply the epilogue and the threads split the pixels); 1×1 on 7² (a 32- and a 24-pixel pass);
  // 1×1 on 14² (the run rounded to 4, not 8: again the output plane).
  for (const [label, xd, wt, attrs, pad, stride] of [
    ["3×3 stride 2", [2, 32, 27, 27], w, raw, 1, 2], ["1×1 on 32×32", [2, 96, 32, 32], pointwise, unpadded, 0, 1], ["1×1 on 7×7", [8, 96, 7, 7], pointwise, unpadded, 0, 1],
    ["1×1 on 14×14, one image (a run of 196: a 4-pixel tail, the pixels split)", [1, 192, 14, 14], wide, unpadded, 0, 1],
  ] as const) test(`${label}: fused residual + clamp epilogue, split over 2 threads, equals the naive conv; no dense weight asked for`, async () => {
    const k = WasmKernels.create()!;
    const team = await ThreadTeam.start(k, 2);
    try {
      const bound = bindSparseConv(convSpec([...xd], wt, attrs, 2), { kernels: k, team });
      const rand = mulberry32(4);
      const n = xd.reduce((a, b) => a * b, 1);
      const xp = k.alloc(n * 4);
      const x: Tensor = { dtype: "float32", dims: xd, data: k.f32(xp, n).map(() => rand() * 2 - 1) };
      k.f32(xp, n).set(x.data as Float32Array);
      x.data = k.f32(xp, n);
      const ref = naiveConv(x.data as Float32Array, [...xd], dequantize(wt), wt.dims, pad, stride);
      const rp = k.alloc(ref.y.length * 4);
      const res = k.f32(rp, ref.y.length).map(() => rand() - 0.5);
      k.f32(rp, ref.y.length).set(res);
      const splits = team.splits;
      const y = bound.runFused(x, { dtype: "float32", dims: ref.dims, data: k.f32(rp, ref.y.length) }, 0, 0.25,
        (len) => k.f32(k.alloc(len * 4), len), (t) => k.addressOf(t.data as Float32Array));
      expect(team.splits).toBeGreaterThan(splits);
      expect(y.dims).toEqual(ref.dims);
      const yd = y.data as Float32Array;
      let err = 0, scale = 1;
      for (let i = 0; i < yd.length; i++) {
        const want = Math.min(Math.max(ref.y[i]! + res[i]!, 0), 0.25);
        err = Math.max(err, Math.abs(yd[i]! - want));
        scale = Math.max(scale, Math.abs(ref.y[i]!));
      }
      expect(err / scale).toBeLessThan(TOL);
      expect(yd.some((v) => v === 0) && yd.some((v) => v === 0.25) && yd.some((v) => v > 0 && v < 0.25)).toBe(true);
      bound.dispose?.();
    } finally {
      team.stop();
    }
  }, 30_000);

  test("column-blocked (8 blocks of 32 channels, phase planes): fused residual + clamp over 2 threads equals the naive conv", async () => {
    const k = WasmKernels.create()!;
    const team = await ThreadTeam.start(k, 2);
    try {
      const bc = SPARSE_CASES.find((x) => x.name.startsWith("column-blocked 3x3 s2"))!;
      // 16 output channels: enough work to split across the threads.
      const bw = caseWeight({ ...bc, w: [16, 256, 3, 3] }, 7);
      const xd = [2, 256, 14, 14];
      const bound = bindSparseConv(convSpec(xd, bw, raw, 2), { kernels: k, team }, {}, true);
      expect(bound.blocks).toBe(8);
      const plain = bindSparseConv(convSpec(xd, bw, raw, 2), { kernels: k, team }, {}, false);
      expect(plain.blocks).toBe(1);
      const rand = mulberry32(8);
      const n = xd.reduce((a, b) => a * b, 1);
      const xp = k.alloc(n * 4);
      const xv = k.f32(xp, n);
      for (let i = 0; i < n; i++) xv[i] = rand() * 2 - 1;
      const x: Tensor = { dtype: "float32", dims: xd, data: k.f32(xp, n) };
      const ref = naiveConv(x.data as Float32Array, xd, dequantize(bw), bw.dims, 1, 2);
      const rp = k.alloc(ref.y.length * 4);
      const rv = k.f32(rp, ref.y.length);
      for (let i = 0; i < rv.length; i++) rv[i] = rand() - 0.5;
      const res = rv.slice();
      const residual: Tensor = { dtype: "float32", dims: ref.dims, data: k.f32(rp, ref.y.length) };
      for (const b of [bound, plain]) {
        const splits = team.splits;
        const y = b.runFused(x, residual, -0.5, 0.5, (len) => k.f32(k.alloc(len * 4), len), (t) => k.addressOf(t.data as Float32Array));
        expect(team.splits).toBeGreaterThan(splits);
        expect(y.dims).toEqual(ref.dims);
        const yd = y.data as Float32Array;
        let err = 0, scale = 1;
        for (let i = 0; i < yd.length; i++) {
          err = Math.max(err, Math.abs(yd[i]! - Math.min(Math.max(ref.y[i]! + res[i]!, -0.5), 0.5)));
          scale = Math.max(scale, Math.abs(ref.y[i]!));
        }
        expect(err / scale).toBeLessThan(TOL);
        expect(yd.some((v) => v === 0.5) && yd.some((v) => v > -0.5 && v < 0.5)).toBe(true);
      }
      expect(bound.form.rows).toBe(8 * 16);
      bound.dispose?.();
      plain.dispose?.();
    } finally {
      team.stop();
    }
  }, 30_000);

  test("the form takes 2 bytes a kept weight plus small row headers (density 0.5, 3 bits: ≈ 0.25× FP32 + headers and the tap table)", async () => {
    const k = WasmKernels.create()!;
    const team = await ThreadTeam.start(k, 1);
    const bound = bindSparseConv(convSpec([1, 32, 28, 28], w, raw, 1), { kernels: k, team });
    const { nnz, bytes, rows, nLevels } = bound.form;
    expect(nnz).toBe(w.indices.length);
    // Per row: 2 + 4·levels bytes of header; 3 bits: 6 non-zero levels.
    expect(nLevels).toBe(6);
    expect(bytes).toBeLessThanOrEqual(2 * nnz + rows * (2 + 4 * nLevels) + 4 * rows + 4 * nLevels + 48);
    expect(bound.residentBytes / (w.dims.reduce((a, b) => a * b, 1) * 4)).toBeLessThan(0.32);
    bound.dispose?.();
    team.stop();
  }, 30_000);
});

describe("shared models: wasm logits within 1e-4 of cpu-reference on the same .opq", () => {
  const models = ["lenet5-fmnist.onnx", "resnet20-fmnist.onnx", "mobilenet_v2-224.onnx", "resnet18-224.onnx"];
  for (const file of models) {
    const path = sharedPath("models", file);
    test.skipIf(!existsSync(path))(`${file} at (0.5, 4) and (0.74, 3)`, async () => {
      const model = readOnnx(new Uint8Array(readFileSync(path)));
      for (const [sparsity, bits] of [[0.5, 4], [0.74, 3]] as const) {
        const { opq } = compressModel(model, { method: "opq", sparsity, bits });
        const ref = await createSession(opq, { backend: "cpu-reference" });
        const ours = await createSession(opq, { backend: "wasm", threads: 2 });
        const inp = ours.inputs[0]!;
        const dims = inp.shape!.map((d) => (typeof d === "number" ? d : 2));
        const rand = mulberry32(11);
        const x: Tensor = { dtype: "float32", dims, data: Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => rand() * 2 - 1) };
        const out = ours.outputs[0]!.name;
        const a = (await ref.run({ [inp.name]: x }))[out]!.data as Float32Array;
        const b = (await ours.run({ [inp.name]: x }))[out]!.data as Float32Array;
        let maxAbs = 0, maxDiff = 0;
        for (let i = 0; i < a.length; i++) { maxAbs = Math.max(maxAbs, Math.abs(a[i]!)); maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!)); }
        expect(maxDiff / maxAbs).toBeLessThan(1e-4);
        // Every compressed Conv/Gemm runs on a compressed form (sparse rows, or u8 codes for the
        // Winograd/depthwise kernels); no layer holds a dense float copy of a compressed weight.
        const names = new Set(opq.compressed.map((c) => c.name));
        const step = (l: { name: string }) => opq.model.graph.nodes.find((n) => (n.name || "") === l.name);
        for (const l of ours.info.layers) {
          const node = step(l);
          if (node && node.inputs.some((i) => names.has(i))) expect([`${l.name}: sparse-levels-u16`, `${l.name}: codes-u8-dense`]).toContain(`${l.name}: ${l.weightForm}`);
        }
        // Issue 8's memory target is set at (0.74, 3); at (0.5, 4) half the weights are kept (≈ 0.26×).
        if (sparsity === 0.74) expect(ours.info.residentWeightBytes).toBeLessThan(0.25 * opq.compressed.reduce((s, c) => s + 4 * c.dims.reduce((p, q) => p * q, 1), 0));
        ref.dispose();
        ours.dispose();
      }
    }, 120_000);
  }
});
