/**
 * Pooling: geometry (ceil_mode, auto_pad), the N-d references against worked examples, the 2-D
 * kernels against the references on seeded random geometries, Indices and opset gating.
 * @module
 */
import { describe, expect, test } from "bun:test";
import type { Tensor } from "../../format/mod.ts";
import {
  averagePool, averagePoolReference, globalAveragePool, globalMaxPool, maxPool, maxPoolReference, POOL_OPS, poolOutputShape,
} from "./pool.ts";
import { attrs, randomTensor, relativeDiff, seededRandom, tensor, TEST_CONTEXT } from "../cpu/test-support.ts";

const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);
const values = (t: Tensor) => Array.from(t.data as ArrayLike<number>, Number);

describe("pool geometry", () => {
  test("ceil_mode, pads, SAME", () => {
    expect(poolOutputShape([1, 1, 4, 4], attrs("MaxPool", { kernel_shape: [3, 3], strides: [2, 2], ceil_mode: 1 }))).toEqual([1, 1, 2, 2]);
    expect(poolOutputShape([1, 1, 4, 4], attrs("MaxPool", { kernel_shape: [3, 3], strides: [2, 2] }))).toEqual([1, 1, 1, 1]);
    expect(poolOutputShape([1, 3, 7, 5], attrs("AveragePool", { kernel_shape: [2, 3], strides: [2, 2], auto_pad: "SAME_LOWER" }))).toEqual([1, 3, 4, 3]);
    expect(poolOutputShape([2, 1, 9], attrs("MaxPool", { kernel_shape: [2], pads: [1, 1], dilations: [3] }))).toEqual([2, 1, 8]);
  });
});

describe("references on worked examples", () => {
  const x = tensor([1, 1, 4, 4], range(16));
  test("MaxPool 2×2/2 with Indices, row- and column-major", () => {
    const [y, idx] = maxPoolReference([x], attrs("MaxPool", { kernel_shape: [2, 2], strides: [2, 2] }), TEST_CONTEXT);
    expect(values(y!)).toEqual([6, 8, 14, 16]);
    expect(values(idx!)).toEqual([5, 7, 13, 15]);
    const [, idxCol] = maxPoolReference([x], attrs("MaxPool", { kernel_shape: [2, 2], strides: [2, 2], storage_order: 1 }), TEST_CONTEXT);
    expect(values(idxCol!)).toEqual([5, 13, 7, 15]);
  });
  test("AveragePool with pads: count_include_pad changes the divisor", () => {
    const a = { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [3, 3] };
    // top-left window covers 1,2,5,6 inside the image (4 of 9 positions)
    expect(values(averagePoolReference([x], attrs("AveragePool", a), TEST_CONTEXT)[0]!)[0]).toBe(14 / 4);
    expect(values(averagePoolReference([x], attrs("AveragePool", { ...a, count_include_pad: 1 }), TEST_CONTEXT)[0]!)[0]).toBeCloseTo(14 / 9, 6);
  });
  test("ceil_mode keeps a partial last window", () => {
    const y = averagePoolReference([x], attrs("AveragePool", { kernel_shape: [3, 3], strides: [2, 2], ceil_mode: 1 }), TEST_CONTEXT)[0]!;
    expect(y.dims).toEqual([1, 1, 2, 2]);
    expect(values(y)).toEqual([6, 7.5, 12, 13.5]);
  });
  test("global pools keep spatial dims as 1", () => {
    const t = tensor([1, 2, 2, 2], [1, 2, 3, 4, -1, -2, -3, -4]);
    const avg = globalAveragePool([t], attrs("GlobalAveragePool", {}), TEST_CONTEXT)[0]!;
    expect(avg.dims).toEqual([1, 2, 1, 1]);
    expect(values(avg)).toEqual([2.5, -2.5]);
    expect(values(globalMaxPool([t], attrs("GlobalMaxPool", {}), TEST_CONTEXT)[0]!)).toEqual([4, -1]);
  });
  test("MaxPool on uint8 keeps the dtype", () => {
    const u: Tensor = { dtype: "uint8", dims: [1, 1, 2, 2], data: new Uint8Array([3, 250, 7, 1]) };
    const y = maxPool([u], attrs("MaxPool", { kernel_shape: [2, 2] }), TEST_CONTEXT)[0]!;
    expect(y.data).toBeInstanceOf(Uint8Array);
    expect(values(y)).toEqual([250]);
  });
});

describe("2-D kernels match the references", () => {
  const rand = seededRandom(31);
  const pick = <T>(xs: T[]) => xs[Math.floor(rand() * xs.length)]!;
  for (let i = 0; i < 24; i++) {
    const kernel = [pick([1, 2, 3]), pick([2, 3, 4])];
    const a: Record<string, number | number[] | string> = { kernel_shape: kernel, strides: [pick([1, 2, 3]), pick([1, 2])] };
    if (rand() < 0.5) a.dilations = [pick([1, 2]), pick([1, 2])];
    const padMode = pick(["pads", "SAME_UPPER", "SAME_LOWER", "ceil", "none"]);
    if (padMode === "pads") a.pads = [pick([0, 1]), pick([0, 1]), pick([0, 1]), pick([0, 1])].map((p, d) => Math.min(p, kernel[d % 2]! - 1));
    else if (padMode === "ceil") a.ceil_mode = 1;
    else if (padMode !== "none") a.auto_pad = padMode;
    const x = randomTensor(rand, [pick([1, 2]), pick([1, 3]), 6 + Math.floor(rand() * 8), 6 + Math.floor(rand() * 8)]);
    test(`case ${i}: X [${x.dims}] ${JSON.stringify(a)}`, () => {
      const ma = attrs("MaxPool", { ...a, storage_order: i % 3 === 0 ? 1 : 0 });
      const [ref, refIdx] = maxPoolReference([x], ma, TEST_CONTEXT);
      const [got, gotIdx] = maxPool([x], ma, TEST_CONTEXT);
      expect(relativeDiff(got!, ref!)).toBe(0);
      expect(values(gotIdx!)).toEqual(values(refIdx!));
      // without Indices, 2×2 and 3×3 windows take the unrolled path
      expect(relativeDiff(maxPool([x], ma, { ...TEST_CONTEXT, outputCount: 1 })[0]!, ref!)).toBe(0);
      for (const include of [0, 1]) {
        const aa = attrs("AveragePool", { ...a, count_include_pad: include });
        expect(relativeDiff(averagePool([x], aa, TEST_CONTEXT)[0]!, averagePoolReference([x], aa, TEST_CONTEXT)[0]!)).toBeLessThanOrEqual(1e-6);
      }
    });
  }
  test("unrolled 2×2 / 3×3 MaxPool (no Indices) matches the reference: stem pool, VGG pool, ceil, SAME", () => {
    const windows: Record<string, number | number[] | string>[] = [
      { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] },
      { kernel_shape: [2, 2], strides: [2, 2] },
      { kernel_shape: [3, 3], strides: [2, 2], ceil_mode: 1 },
      { kernel_shape: [3, 3], strides: [1, 1], auto_pad: "SAME_UPPER" },
      { kernel_shape: [2, 2], strides: [1, 1], pads: [1, 0, 0, 1] },
    ];
    for (const a of windows) {
      const x = randomTensor(rand, [2, 3, 11, 10]);
      const at = attrs("MaxPool", a);
      expect(relativeDiff(maxPool([x], at, { ...TEST_CONTEXT, outputCount: 1 })[0]!, maxPoolReference([x], at, TEST_CONTEXT)[0]!)).toBe(0);
      // into a recycled (dirty) output buffer, as a session's pool hands out
      const dirty = { ...TEST_CONTEXT, outputCount: 1, alloc: (n: number) => new Float32Array(n).fill(NaN) };
      expect(relativeDiff(maxPool([x], at, dirty)[0]!, maxPoolReference([x], at, TEST_CONTEXT)[0]!)).toBe(0);
    }
  });
  test("MaxPool returns Indices only when the node declares them", () => {
    const x = randomTensor(rand, [1, 2, 6, 6]);
    expect(maxPool([x], attrs("MaxPool", { kernel_shape: [2, 2] }), { ...TEST_CONTEXT, outputCount: 1 })).toHaveLength(1);
    expect(maxPool([x], attrs("MaxPool", { kernel_shape: [2, 2] }), { ...TEST_CONTEXT, outputCount: 2 })).toHaveLength(2);
  });
});

test("opset gating: attributes newer than the model's opset are rejected", () => {
  const x = randomTensor(seededRandom(1), [1, 1, 5, 5]);
  const v = (op: string, opset: number) => POOL_OPS[op]!.filter((e) => e.since <= opset).at(-1)!.kernel;
  expect(() => v("MaxPool", 8)([x], attrs("MaxPool", { kernel_shape: [2, 2], ceil_mode: 1 }), TEST_CONTEXT)).toThrow();
  expect(v("MaxPool", 10)([x], attrs("MaxPool", { kernel_shape: [2, 2], ceil_mode: 1, strides: [2, 2] }), TEST_CONTEXT)[0]!.dims).toEqual([1, 1, 3, 3]);
  expect(() => v("AveragePool", 6)([x], attrs("AveragePool", { kernel_shape: [2, 2], count_include_pad: 1 }), TEST_CONTEXT)).toThrow();
  expect(() => v("AveragePool", 11)([x], attrs("AveragePool", { kernel_shape: [2, 2], dilations: [2, 2] }), TEST_CONTEXT)).toThrow();
  expect(v("AveragePool", 19)([x], attrs("AveragePool", { kernel_shape: [2, 2], dilations: [2, 2] }), TEST_CONTEXT)[0]!.dims).toEqual([1, 1, 3, 3]);
});
