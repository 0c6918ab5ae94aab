/**
 * Conv and ConvTranspose: shape helpers against the ONNX equations, the references against worked
 * examples from the ONNX operator docs and against each other (ConvTranspose is Conv's adjoint),
 * and every fast path against the reference on seeded random shapes.
 * @module
 */
import { afterAll, describe, expect, test } from "bun:test";
import type { Tensor } from "../../format/mod.ts";
import {
  conv, conv2dFast, convGeometry, isWinogradShape, convOutputShape, convPath, convReference, convTranspose,
  convTransposeOutputShape, convTransposeReference, CONV_OPS, type ConvPath, type PreparedConv, prepareConv, resolvePads,
  windowOutputSize,
} from "./conv.ts";
import { ensureCpuWorkers, stopCpuWorkers } from "../cpu/worker-pool.ts";
import { setGemmBackend } from "../cpu/sgemm.ts";
import { simdGemmAvailable } from "../cpu/sgemm-simd.ts";
import { attrs, FLOAT32_KERNEL_TOLERANCE, randomTensor, relativeDiff, seededRandom, tensor, TEST_CONTEXT } from "../cpu/test-support.ts";

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const ones = (n: number) => new Array<number>(n).fill(1);
const run = (k: typeof conv, inputs: (Tensor | undefined)[], a: ReturnType<typeof attrs>) => k(inputs, a, TEST_CONTEXT)[0]!;

describe("window shape helpers", () => {
  test("resolvePads: SAME_UPPER puts the odd unit at the end, SAME_LOWER at the beginning", () => {
    // in 5, k 2, s 1 → out 5, total pad 1
    expect(resolvePads([5], [2], [1], [1], "SAME_UPPER")).toEqual([0, 1]);
    expect(resolvePads([5], [2], [1], [1], "SAME_LOWER")).toEqual([1, 0]);
    // in 7, k 3, s 2 → out 4, total = 3·2 + 3 - 7 = 2
    expect(resolvePads([7], [3], [2], [1], "SAME_UPPER")).toEqual([1, 1]);
    expect(resolvePads([4, 4], [3, 3], [1, 1], [1, 1], "VALID")).toEqual([0, 0, 0, 0]);
    expect(resolvePads([4, 4], [3, 3], [1, 1], [1, 1], "NOTSET", [1, 2, 3, 4])).toEqual([1, 2, 3, 4]);
  });
  test("windowOutputSize: floor, ceil, and the dropped last ceil window", () => {
    expect(windowOutputSize(5, 3, 2, 1, 1, 1)).toBe(3);
    expect(windowOutputSize(4, 3, 2, 1, 0, 0, true)).toBe(2);
    expect(windowOutputSize(4, 3, 2, 1, 0, 0, false)).toBe(1);
    // in 5, k 2, s 2, pad end 1, ceil → ceil(4/2)+1 = 3, the third window would start at 4 < 5: kept
    expect(windowOutputSize(5, 2, 2, 1, 0, 1, true)).toBe(3);
    // in 4, k 2, s 2, pad end 1: ceil(3/2)+1 = 3, but window 3 starts at 4 ≥ 4 → dropped
    expect(windowOutputSize(4, 2, 2, 1, 0, 1, true)).toBe(2);
    expect(windowOutputSize(10, 3, 1, 4, 0, 0)).toBe(2);
  });
  test("convOutputShape infers the kernel from W and honours group and auto_pad", () => {
    expect(convOutputShape([1, 6, 9, 9], [4, 3, 3, 3], attrs("Conv", { group: 2, strides: [2, 2], auto_pad: "SAME_UPPER" }))).toEqual([1, 4, 5, 5]);
    expect(convOutputShape([2, 3, 10], [5, 3, 4], attrs("Conv", { dilations: [2] }))).toEqual([2, 5, 4]);
    expect(() => convGeometry([1, 6, 9, 9], [4, 2, 3, 3], attrs("Conv", { group: 2 }))).toThrow();
    expect(() => convGeometry([1, 3, 9, 9], [4, 3, 3, 3], attrs("Conv", { kernel_shape: [2, 2] }))).toThrow();
  });
  test("convTransposeOutputShape: pads, output_padding, output_shape, SAME", () => {
    expect(convTransposeOutputShape([1, 1, 3, 3], [1, 2, 3, 3], attrs("ConvTranspose", {}))).toEqual([1, 2, 5, 5]);
    expect(convTransposeOutputShape([1, 1, 3, 3], [1, 2, 3, 3], attrs("ConvTranspose", { strides: [3, 2], output_padding: [1, 1] }))).toEqual([1, 2, 10, 8]);
    expect(convTransposeOutputShape([1, 1, 3, 3], [1, 2, 3, 3], attrs("ConvTranspose", { strides: [3, 2], output_shape: [10, 8] }))).toEqual([1, 2, 10, 8]);
    expect(convTransposeOutputShape([1, 1, 3, 3], [1, 2, 3, 3], attrs("ConvTranspose", { strides: [2, 2], auto_pad: "SAME_UPPER" }))).toEqual([1, 2, 6, 6]);
    expect(convTransposeOutputShape([1, 1, 3, 3], [1, 2, 3, 3], attrs("ConvTranspose", { strides: [3, 2], pads: [1, 2, 1, 2] }))).toEqual([1, 2, 7, 3]);
  });
});

describe("convReference on the ONNX doc examples", () => {
  const x = tensor([1, 1, 5, 5], range(25));
  const w = tensor([1, 1, 3, 3], ones(9));
  test("with and without padding, strided", () => {
    expect(Array.from(run(convReference, [x, w], attrs("Conv", { pads: [1, 1, 1, 1] })).data as Float32Array)).toEqual([
      12, 21, 27, 33, 24, 33, 54, 63, 72, 51, 63, 99, 108, 117, 81, 93, 144, 153, 162, 111, 72, 111, 117, 123, 84,
    ]);
    expect(Array.from(run(convReference, [x, w], attrs("Conv", {})).data as Float32Array)).toEqual([54, 63, 72, 99, 108, 117, 144, 153, 162]);
    const strided = run(convReference, [x, w], attrs("Conv", { pads: [1, 1, 1, 1], strides: [2, 2] }));
    expect(strided.dims).toEqual([1, 1, 3, 3]);
    expect(Array.from(strided.data as Float32Array)).toEqual([12, 27, 24, 63, 108, 81, 72, 117, 84]);
  });
  test("1-D with bias and dilation, 3-D box filter", () => {
    const y = run(convReference, [tensor([1, 1, 6], [1, 2, 3, 4, 5, 6]), tensor([1, 1, 2], [1, -1]), tensor([1], [10])], attrs("Conv", { dilations: [2] }));
    expect(Array.from(y.data as Float32Array)).toEqual([8, 8, 8, 8]); // x[i] - x[i+2] + 10
    const y3 = run(convReference, [tensor([1, 1, 3, 3, 3], range(27)), tensor([1, 1, 2, 2, 2], ones(8))], attrs("Conv", {}));
    expect(y3.dims).toEqual([1, 1, 2, 2, 2]);
    expect((y3.data as Float32Array)[0]).toBe(0 + 1 + 3 + 4 + 9 + 10 + 12 + 13);
  });
  test("groups keep channels apart", () => {
    // two groups, each output channel sums its own input channel only
    const xg = tensor([1, 2, 2, 2], [1, 1, 1, 1, 5, 5, 5, 5]);
    const y = run(convReference, [xg, tensor([2, 1, 2, 2], ones(8))], attrs("Conv", { group: 2 }));
    expect(Array.from(y.data as Float32Array)).toEqual([4, 20]);
  });
  test("float64 stays float64", () => {
    const y = convReference([{ dtype: "float64", dims: [1, 1, 2, 2], data: new Float64Array([1, 2, 3, 4]) }, { dtype: "float64", dims: [1, 1, 1, 1], data: new Float64Array([0.5]) }], attrs("Conv", {}), TEST_CONTEXT)[0]!;
    expect(y.data).toBeInstanceOf(Float64Array);
    expect(Array.from(y.data as Float64Array)).toEqual([0.5, 1, 1.5, 2]);
  });
});

describe("convTransposeReference", () => {
  test("the ONNX doc example", () => {
    const y = run(convTransposeReference, [tensor([1, 1, 3, 3], range(9)), tensor([1, 2, 3, 3], ones(18))], attrs("ConvTranspose", {}));
    const plane = [0, 1, 3, 3, 2, 3, 8, 15, 12, 7, 9, 21, 36, 27, 15, 9, 20, 33, 24, 13, 6, 13, 21, 15, 8];
    expect(y.dims).toEqual([1, 2, 5, 5]);
    expect(Array.from(y.data as Float32Array)).toEqual([...plane, ...plane]);
  });
  // <Conv(x), y> = <x, ConvTranspose(y)>: the transpose is the adjoint, for any geometry.
  const cases = [
    { x: [1, 4, 7, 6], m: 6, k: [3, 3], group: 2, strides: [2, 1], dilations: [1, 2], pads: [1, 0, 0, 2] },
    { x: [2, 3, 8], m: 2, k: [3], group: 1, strides: [3], dilations: [1], pads: [2, 1] },
    { x: [1, 2, 4, 5, 3], m: 2, k: [2, 3, 2], group: 2, strides: [1, 2, 1], dilations: [1, 1, 2], pads: [0, 1, 1, 1, 0, 0] },
  ];
  for (const [i, c] of cases.entries()) {
    test(`is the adjoint of convReference (case ${i})`, () => {
      const rand = seededRandom(100 + i);
      const k = c.k.length;
      const x = randomTensor(rand, c.x), w = randomTensor(rand, [c.m, c.x[1]! / c.group, ...c.k]);
      const fwd = { group: c.group, strides: c.strides, dilations: c.dilations, pads: c.pads };
      const y = run(convReference, [x, w], attrs("Conv", fwd));
      const r = randomTensor(rand, y.dims);
      // output_padding makes ConvTranspose's output exactly x's spatial size
      const outputPadding = c.k.map((kk, d) => c.x[d + 2]! - (c.strides[d]! * (y.dims[d + 2]! - 1) + (kk - 1) * c.dilations[d]! + 1 - c.pads[d]! - c.pads[d + k]!));
      const back = run(convTransposeReference, [r, w], attrs("ConvTranspose", { ...fwd, output_padding: outputPadding }));
      expect(back.dims).toEqual(x.dims);
      let lhs = 0, rhs = 0;
      for (let j = 0; j < y.data.length; j++) lhs += (y.data as Float32Array)[j]! * (r.data as Float32Array)[j]!;
      for (let j = 0; j < x.data.length; j++) rhs += (x.data as Float32Array)[j]! * (back.data as Float32Array)[j]!;
      expect(Math.abs(lhs - rhs)).toBeLessThan(1e-4 * Math.max(1, Math.abs(lhs)));
    });
  }
});

/** Random 2-D conv geometries covering groups, depthwise, strides, dilations, asymmetric pads, auto_pad, 1×1. */
function randomConvCase(rand: () => number) {
  const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)]!;
  const kind = pick(["dense", "group", "depthwise", "pointwise"]);
  const group = kind === "group" ? pick([2, 3]) : 1;
  const cin = kind === "depthwise" ? pick([3, 8]) : group * pick([1, 2, 5]);
  const mult = kind === "depthwise" ? pick([1, 2]) : 1;
  const m = kind === "depthwise" ? cin * mult : group * pick([1, 3, 6]);
  const kh = kind === "pointwise" ? 1 : pick([1, 2, 3, 5]), kw = kind === "pointwise" ? 1 : pick([1, 3]);
  const a: Record<string, number | number[] | string> = { group: kind === "depthwise" ? cin : group };
  if (kind !== "pointwise") {
    a.strides = [pick([1, 2, 3]), pick([1, 2])];
    a.dilations = [pick([1, 2]), pick([1, 2])];
    const pad = pick(["explicit", "SAME_UPPER", "SAME_LOWER", "VALID"]);
    if (pad === "explicit") a.pads = [pick([0, 1, 2]), pick([0, 1]), pick([0, 1, 2]), pick([0, 2])];
    else a.auto_pad = pad;
  }
  const x = [pick([1, 2]), cin, 5 + Math.floor(rand() * 10), 5 + Math.floor(rand() * 10)];
  const w = [m, x[1]! / (a.group as number), kh, kw];
  return { x, w, a, bias: rand() < 0.7 };
}

describe("conv fast paths match convReference", () => {
  const rand = seededRandom(7);
  for (let i = 0; i < 40; i++) {
    const c = randomConvCase(rand);
    const x = randomTensor(rand, c.x), w = randomTensor(rand, c.w), b = c.bias ? randomTensor(rand, [c.w[0]!]) : undefined;
    const at = attrs("Conv", c.a);
    test(`case ${i}: X [${c.x}] W [${c.w}] ${JSON.stringify(c.a)}`, () => {
      const ref = run(convReference, [x, w, b], at);
      const got = run(conv, [x, w, b], at);
      expect(relativeDiff(got, ref)).toBeLessThanOrEqual(FLOAT32_KERNEL_TOLERANCE);
      // every applicable path, not just the one conv picks
      const g = convGeometry(x.dims, w.dims, at);
      const paths: ConvPath[] = ["im2col-gemm", "im2col-sparse"];
      if (g.inChannels === g.group) paths.push("direct");
      if (isWinogradShape(g)) paths.push("winograd");
      for (const p of paths) expect(relativeDiff(conv2dFast(x, w, b, g, p), ref)).toBeLessThanOrEqual(FLOAT32_KERNEL_TOLERANCE);
    });
  }
  test("path selection: depthwise → direct, pruned → sparse, 1×1 → gemm-1x1, else im2col-gemm", () => {
    const rand2 = seededRandom(3);
    const g = (x: number[], w: number[], a = {}) => convGeometry(x, w, attrs("Conv", a));
    expect(convPath(g([1, 8, 9, 9], [8, 1, 3, 3], { group: 8 }), randomTensor(rand2, [72]).data as Float32Array)).toBe("direct");
    expect(convPath(g([1, 8, 9, 9], [16, 8, 3, 3]), randomTensor(rand2, [16 * 72], 0.9).data as Float32Array)).toBe("im2col-sparse");
    expect(convPath(g([1, 8, 9, 9], [16, 8, 1, 1]), randomTensor(rand2, [128]).data as Float32Array)).toBe("gemm-1x1");
    expect(convPath(g([1, 8, 9, 9], [16, 8, 3, 3]), randomTensor(rand2, [16 * 72]).data as Float32Array)).toBe("im2col-gemm");
    expect(convPath(g([1, 16, 16, 16], [16, 16, 3, 3], { pads: [1, 1, 1, 1] }), randomTensor(rand2, [16 * 144]).data as Float32Array)).toBe("winograd");
    expect(convPath(g([1, 8, 16, 16], [16, 8, 3, 3], { pads: [1, 1, 1, 1], strides: [2, 2] }), randomTensor(rand2, [16 * 72]).data as Float32Array)).toBe("im2col-gemm");
    // pruned (SPARSE_MIN_ZEROS.jsc, bun test): with the SIMD GEMM, CSR takes over from im2col at 75%
    // zeros, from Winograd at 85% (80% over 7×7 outputs); with the JS GEMM at 20%, 60% (45%).
    const wino = g([1, 16, 16, 16], [16, 16, 3, 3], { pads: [1, 1, 1, 1] }), strided = g([1, 16, 16, 16], [16, 16, 3, 3], { strides: [2, 2] });
    const wino7 = g([1, 16, 7, 7], [16, 16, 3, 3], { pads: [1, 1, 1, 1] });
    const pruned = (zeros: number) => { const w = new Float32Array(16 * 144).fill(0.5); w.fill(0, 0, Math.round(zeros * w.length)); return w; };
    const simd = simdGemmAvailable();
    expect(convPath(wino, pruned(simd ? 0.8 : 0.55))).toBe("winograd");
    expect(convPath(wino, pruned(simd ? 0.9 : 0.65))).toBe("im2col-sparse");
    expect(convPath(wino7, pruned(simd ? 0.75 : 0.4))).toBe("winograd");
    expect(convPath(wino7, pruned(simd ? 0.85 : 0.5))).toBe("im2col-sparse");
    expect(convPath(strided, pruned(simd ? 0.7 : 0.15))).toBe("im2col-gemm");
    expect(convPath(strided, pruned(simd ? 0.8 : 0.25))).toBe("im2col-sparse");
    // the JS GEMM's thresholds when the scalar backend is forced
    const previous = setGemmBackend("scalar");
    try {
      expect(convPath(wino, pruned(0.55))).toBe("winograd");
      expect(convPath(wino, pruned(0.65))).toBe("im2col-sparse");
      expect(convPath(strided, pruned(0.15))).toBe("im2col-gemm");
      expect(convPath(strided, pruned(0.25))).toBe("im2col-sparse");
      expect(convPath(g([1, 8, 16, 16], [16, 8, 3, 3], { pads: [1, 1, 1, 1] }), pruned(0).subarray(0, 16 * 72))).toBe("winograd");
    } finally {
      setGemmBackend(previous);
    }
    expect(convPath(g([1, 8, 9], [16, 8, 3]), randomTensor(rand2, [16 * 24]).data as Float32Array)).toBeUndefined();
  });
  test("pruned weights (85% zeros) through the registered kernel: several K blocks, a partial panel", () => {
    const x = randomTensor(rand, [1, 40, 11, 13]), w = randomTensor(rand, [24, 40, 3, 3], 0.85), b = randomTensor(rand, [24]);
    expect(convPath(convGeometry(x.dims, w.dims, attrs("Conv", {})), w.data as Float32Array)).toBe("im2col-sparse");
    const at = attrs("Conv", { pads: [1, 1, 1, 1] });
    expect(relativeDiff(run(conv, [x, w, b], at), run(convReference, [x, w, b], at))).toBeLessThanOrEqual(FLOAT32_KERNEL_TOLERANCE);
  });
  test("MobileNet depthwise 3×3 (stride 1 sliding window, stride 2, padded-copy and border paths) and a channel multiplier", () => {
    for (const [strides, group, m, size] of [[[1, 1], 8, 8, 13], [[2, 2], 8, 8, 13], [[1, 1], 4, 8, 13], [[2, 2], 8, 8, 40], [[1, 1], 8, 16, 40]] as const) {
      const x = randomTensor(rand, [2, 8, size, size - 2]), w = randomTensor(rand, [m, 8 / group, 3, 3]), b = randomTensor(rand, [m]);
      const at = attrs("Conv", { group, strides: [...strides], pads: [1, 1, 1, 1] });
      expect(relativeDiff(run(conv, [x, w, b], at), run(convReference, [x, w, b], at))).toBeLessThanOrEqual(FLOAT32_KERNEL_TOLERANCE);
    }
  });
  test("Winograd F(2×2, 3×3): odd output sizes, asymmetric pads, groups, batch", () => {
    for (const [xd, wd, a] of [
      [[1, 16, 13, 11], [24, 16, 3, 3], { pads: [1, 1, 1, 1] }],
      [[2, 12, 9, 10], [18, 6, 3, 3], { group: 2, pads: [0, 2, 1, 0] }],
      [[1, 70, 8, 8], [9, 70, 3, 3], { auto_pad: "SAME_LOWER" }],
    ] as const) {
      const x = randomTensor(rand, [...xd]), w = randomTensor(rand, [...wd]), b = randomTensor(rand, [wd[0]]);
      const at = attrs("Conv", a as Record<string, number[] | number | string>);
      const ref = run(convReference, [x, w, b], at);
      expect(relativeDiff(conv2dFast(x, w, b, convGeometry(x.dims, w.dims, at), "winograd"), ref)).toBeLessThanOrEqual(FLOAT32_KERNEL_TOLERANCE);
    }
    const g = convGeometry([1, 8, 9, 9], [8, 8, 3, 3], attrs("Conv", { strides: [2, 2] }));
    expect(() => conv2dFast(randomTensor(rand, [1, 8, 9, 9]), randomTensor(rand, [8, 8, 3, 3]), undefined, g, "winograd")).toThrow();
  });
  test("1-D convolutions run as 2-D with a unit height (dense, grouped, depthwise, pruned)", () => {
    const cases: [number[], number[], Record<string, number | number[] | string>, number][] = [
      [[2, 6, 17], [8, 6, 3], { pads: [1, 2], strides: [2], dilations: [2] }, 0],
      [[1, 6, 20], [6, 2, 5], { group: 3, auto_pad: "SAME_UPPER" }, 0],
      [[1, 8, 15], [8, 1, 3], { group: 8, pads: [1, 1] }, 0],
      [[1, 16, 30], [12, 16, 3], { auto_pad: "VALID" }, 0.8],
      [[1, 16, 12], [12, 16, 1], {}, 0],
    ];
    for (const [xd, wd, a, zeros] of cases) {
      const x = randomTensor(rand, xd), w = randomTensor(rand, wd, zeros), b = randomTensor(rand, [wd[0]!]);
      const at = attrs("Conv", a);
      const ref = run(convReference, [x, w, b], at);
      const got = run(conv, [x, w, b], at);
      expect(got.dims).toEqual(ref.dims);
      expect(relativeDiff(got, ref)).toBeLessThanOrEqual(FLOAT32_KERNEL_TOLERANCE);
    }
  });
  test("GEMM edge tiles and multiple k blocks (K = 64·3·3 > 256)", () => {
    const x = randomTensor(rand, [1, 64, 7, 9]), w = randomTensor(rand, [13, 64, 3, 3]);
    const at = attrs("Conv", { pads: [1, 1, 1, 1] });
    expect(relativeDiff(run(conv, [x, w], at), run(convReference, [x, w], at))).toBeLessThanOrEqual(FLOAT32_KERNEL_TOLERANCE);
  });
});

describe("convTranspose fast path matches convTransposeReference", () => {
  const rand = seededRandom(11);
  const cases: Record<string, number | number[] | string>[] = [
    {},
    { strides: [2, 2], pads: [1, 1, 1, 1], output_padding: [1, 1] },
    { strides: [3, 2], output_shape: [10, 8] },
    { strides: [2, 2], auto_pad: "SAME_UPPER", dilations: [2, 1] },
    { strides: [2, 1], auto_pad: "SAME_LOWER" },
    { group: 2, strides: [2, 2], pads: [0, 1, 2, 0] },
  ];
  test("1-D", () => {
    const x = randomTensor(rand, [2, 4, 7]), w = randomTensor(rand, [4, 3, 3]), b = randomTensor(rand, [3]);
    const at = attrs("ConvTranspose", { strides: [3], pads: [1, 0], output_padding: [2], dilations: [2] });
    const ref = run(convTransposeReference, [x, w, b], at), got = run(convTranspose, [x, w, b], at);
    expect(got.dims).toEqual(ref.dims);
    expect(relativeDiff(got, ref)).toBeLessThanOrEqual(FLOAT32_KERNEL_TOLERANCE);
  });
  for (const [i, a] of cases.entries()) {
    test(`case ${i}: ${JSON.stringify(a)}`, () => {
      const group = (a.group as number | undefined) ?? 1;
      const x = randomTensor(rand, [2, 2 * group, 3, 4]), w = randomTensor(rand, [2 * group, 3, 3, 3]), b = randomTensor(rand, [3 * group]);
      const at = attrs("ConvTranspose", a);
      const ref = run(convTransposeReference, [x, w, b], at);
      expect(relativeDiff(run(convTranspose, [x, w, b], at), ref)).toBeLessThanOrEqual(FLOAT32_KERNEL_TOLERANCE);
    });
  }
});

describe("threads: 2 (worker pool)", () => {
  afterAll(() => stopCpuWorkers());
  test("splits the GEMM across a worker and gives the single-thread result bit for bit", async () => {
    const pool = await ensureCpuWorkers(2);
    expect(pool).toBeDefined();
    const rand = seededRandom(13);
    // 48·(17·19)·(32·9) ≈ 4.5M multiply-adds: above MIN_PARALLEL_MACS; 3 groups, bias; dilation 2
    // keeps it on im2col + GEMM (a 3×3 stride-1 layer would take the Winograd path)
    const x = randomTensor(rand, [2, 96, 17, 19]), w = randomTensor(rand, [48 * 3, 32, 3, 3]), b = randomTensor(rand, [144]);
    const at = attrs("Conv", { group: 3, pads: [2, 2, 2, 2], dilations: [2, 2] });
    const before = pool!.splits;
    const one = conv([x, w, b], at, { opset: 13, threads: 1 })[0]!;
    const two = conv([x, w, b], at, { opset: 13, threads: 2 })[0]!;
    expect(pool!.splits).toBe(before + 6); // batch 2 × 3 groups
    expect(relativeDiff(two, one)).toBe(0);
    // 1×1 path, then a second, larger call that grows the shared arena
    const x1 = randomTensor(rand, [1, 64, 40, 40]), w1 = randomTensor(rand, [64, 64, 1, 1]);
    expect(relativeDiff(conv([x1, w1], attrs("Conv", {}), { opset: 13, threads: 2 })[0]!, conv([x1, w1], attrs("Conv", {}), { opset: 13, threads: 1 })[0]!)).toBe(0);
    const x2 = randomTensor(rand, [1, 64, 48, 48]), w2 = randomTensor(rand, [64, 64, 3, 3]), a2 = attrs("Conv", { pads: [2, 2, 2, 2], dilations: [2, 2] });
    expect(relativeDiff(conv([x2, w2], a2, { opset: 13, threads: 2 })[0]!, conv([x2, w2], a2, { opset: 13, threads: 1 })[0]!)).toBe(0);
    expect(pool!.splits).toBe(before + 8);
    // Winograd: its 16 GEMMs go to the pool, the transforms stay here
    const x3 = randomTensor(rand, [1, 64, 30, 30]), w3 = randomTensor(rand, [64, 64, 3, 3]), b3 = randomTensor(rand, [64]), a3 = attrs("Conv", { pads: [1, 1, 1, 1] });
    expect(convPath(convGeometry(x3.dims, w3.dims, a3), w3.data as Float32Array)).toBe("winograd");
    expect(relativeDiff(conv([x3, w3, b3], a3, { opset: 13, threads: 2 })[0]!, conv([x3, w3, b3], a3, { opset: 13, threads: 1 })[0]!)).toBe(0);
    expect(pool!.splits).toBe(before + 8 + 16);
    expect(pool!.usable).toBe(true);
  });
});

describe("prepared Conv (weights transformed once at load) matches the unprepared kernel and the reference", () => {
  const rand = seededRandom(29);
  /** prepareConv as the planner calls it: the weight (and bias) constant, X's shape inferred. */
  const prepare = (x: Tensor, w: Tensor, b: Tensor | undefined, at: ReturnType<typeof attrs>) =>
    prepareConv([undefined, w, b], at, { opset: 13, threads: 1, inputShapes: [x.dims, w.dims, b?.dims] }) as PreparedConv;
  /** A buffer source that hands out garbage (NaN), as a recycled buffer may hold. */
  const dirtyAlloc = (n: number) => new Float32Array(n).fill(NaN);
  for (let i = 0; i < 24; i++) {
    const c = randomConvCase(rand);
    // a third of the cases pruned, so the prepared CSR is exercised too
    const x = randomTensor(rand, c.x), w = randomTensor(rand, c.w, i % 3 === 0 ? 0.7 : 0), b = c.bias ? randomTensor(rand, [c.w[0]!]) : undefined;
    const at = attrs("Conv", c.a);
    test(`case ${i}: X [${c.x}] W [${c.w}] ${JSON.stringify(c.a)}`, () => {
      const state = prepare(x, w, b, at);
      const ctx = { ...TEST_CONTEXT, prepared: state, alloc: dirtyAlloc };
      const ref = run(convReference, [x, w, b], at);
      const plain = run(conv, [x, w, b], at);
      const prepared = conv([x, w, b], at, ctx)[0]!;
      expect(relativeDiff(prepared, ref)).toBeLessThanOrEqual(FLOAT32_KERNEL_TOLERANCE);
      expect(relativeDiff(prepared, plain)).toBe(0);
    });
  }
  test("each path's prepared form is built and used: sparse CSR, Winograd U, 1×1 and im2col (zero fraction only)", () => {
    const cases: [number[], number[], Record<string, number | number[] | string>, number, ConvPath, keyof PreparedConv | undefined][] = [
      [[2, 16, 12, 10], [24, 16, 3, 3], { pads: [1, 1, 1, 1] }, 0.92, "im2col-sparse", "csr"],
      [[1, 12, 9, 10], [18, 6, 3, 3], { group: 2, strides: [2, 1] }, 0.88, "im2col-sparse", "csr"],
      [[2, 16, 16, 13], [24, 16, 3, 3], { pads: [1, 1, 1, 1] }, 0, "winograd", "winograd"],
      [[1, 32, 18, 18], [32, 16, 3, 3], { group: 2, pads: [1, 0, 1, 2] }, 0, "winograd", "winograd"],
      [[2, 16, 7, 9], [24, 16, 1, 1], {}, 0, "gemm-1x1", undefined],
      [[1, 16, 11, 9], [24, 16, 3, 3], { strides: [2, 2] }, 0, "im2col-gemm", undefined],
    ];
    for (const [xd, wd, a, zeros, path, form] of cases) {
      const x = randomTensor(rand, xd), w = randomTensor(rand, wd, zeros), b = randomTensor(rand, [wd[0]!]);
      const at = attrs("Conv", a);
      expect(convPath(convGeometry(x.dims, w.dims, at), w.data as Float32Array)).toBe(path);
      const state = prepare(x, w, undefined, at);
      expect(state.weight).toBe(w);
      expect(state.zeros).toBeCloseTo(zeroFractionOf(w), 12);
      if (form) expect(state[form]).toHaveLength(a.group as number ?? 1);
      expect(state.csr !== undefined).toBe(form === "csr");
      expect(state.winograd !== undefined).toBe(form === "winograd");
      const ref = run(convReference, [x, w, b], at);
      for (const bias of [b, undefined]) {
        const want = bias ? ref : run(convReference, [x, w], at);
        const got = conv([x, w, bias], at, { ...TEST_CONTEXT, prepared: state, alloc: dirtyAlloc })[0]!;
        expect(relativeDiff(got, want)).toBeLessThanOrEqual(FLOAT32_KERNEL_TOLERANCE);
      }
    }
  });
  test("a state built from another weight is ignored, and a different input size still works", () => {
    const at = attrs("Conv", { pads: [1, 1, 1, 1] });
    const x = randomTensor(rand, [1, 16, 20, 20]), w = randomTensor(rand, [16, 16, 3, 3]), other = randomTensor(rand, [16, 16, 3, 3]);
    const state = prepare(x, w, undefined, at);
    expect(state.winograd).toBeDefined();
    const ctx = { ...TEST_CONTEXT, prepared: state };
    expect(relativeDiff(conv([x, other], at, ctx)[0]!, run(convReference, [x, other], at))).toBeLessThanOrEqual(FLOAT32_KERNEL_TOLERANCE);
    // planned for 20×20 (Winograd); run at 6×6, where the kernel takes im2col-gemm instead
    const small = randomTensor(rand, [2, 16, 6, 6]);
    expect(relativeDiff(conv([small, w], at, ctx)[0]!, run(convReference, [small, w], at))).toBeLessThanOrEqual(FLOAT32_KERNEL_TOLERANCE);
  });
  test("prepareConv leaves what it cannot prepare: float64, 1-D, unknown input shape", () => {
    const at = attrs("Conv", {});
    const w64: Tensor = { dtype: "float64", dims: [4, 2, 3, 3], data: new Float64Array(72) };
    expect(prepareConv([undefined, w64], at, { opset: 13, threads: 1, inputShapes: [[1, 2, 5, 5], w64.dims] })).toBeUndefined();
    const w1 = randomTensor(rand, [4, 2, 3]);
    expect(prepareConv([undefined, w1], at, { opset: 13, threads: 1, inputShapes: [[1, 2, 9], w1.dims] })).toBeUndefined();
    const w = randomTensor(rand, [16, 16, 3, 3], 0.8);
    const state = prepareConv([undefined, w], at, { opset: 13, threads: 1, inputShapes: [undefined, w.dims] }) as PreparedConv;
    expect(state.csr).toBeUndefined();
    expect(state.zeros).toBeGreaterThan(0.6);
  });
});

function zeroFractionOf(t: Tensor): number {
  const d = t.data as Float32Array;
  return d.filter((v) => v === 0).length / d.length;
}

test("CONV_OPS registers the fast kernels", () => {
  expect(CONV_OPS.Conv![0]!.prepare).toBe(prepareConv);
  expect(CONV_OPS.Conv![0]!.kernel).toBe(conv);
  expect(CONV_OPS.ConvTranspose![0]!.kernel).toBe(convTranspose);
});
