/**
 * BatchNormalization, InstanceNormalization and LRN against their formulas written out per element.
 * @module
 */
import { expect, test } from "bun:test";
import { batchNormAffine, batchNormalization, instanceNormalization, lrn } from "./norm.ts";
import { attrs, randomTensor, seededRandom, tensor, TEST_CONTEXT } from "../cpu/test-support.ts";

const rand = seededRandom(41);

test("BatchNormalization is scale·(x - mean)/sqrt(var + eps) + B per channel", () => {
  const x = randomTensor(rand, [2, 3, 4, 5]);
  const scale = tensor([3], [1, 2, -0.5]), b = tensor([3], [0, 1, 2]), mean = tensor([3], [0.1, -0.2, 0.3]), v = tensor([3], [1, 0.5, 2]);
  const y = batchNormalization([x, scale, b, mean, v], attrs("BatchNormalization", { epsilon: 1e-3 }, ["epsilon"]), TEST_CONTEXT)[0]!;
  const xd = x.data as Float32Array, yd = y.data as Float32Array;
  for (let i = 0; i < xd.length; i++) {
    const c = Math.floor(i / 20) % 3;
    const want = (scale.data[c] as number) * (xd[i]! - (mean.data[c] as number)) / Math.sqrt((v.data[c] as number) + 1e-3) + (b.data[c] as number);
    expect(Math.abs(yd[i]! - want)).toBeLessThan(1e-5);
  }
  expect(() => batchNormalization([x, scale, b, mean, v], attrs("BatchNormalization", { training_mode: 1 }), TEST_CONTEXT)).toThrow();
  expect(() => batchNormalization([x, tensor([2], [1, 1]), b, mean, v], attrs("BatchNormalization", {}), TEST_CONTEXT)).toThrow();
});

test("batchNormAffine folds to y = a·x + b", () => {
  const { a, b } = batchNormAffine([2], [1], [3], [3], 1);
  expect(a[0]).toBe(1); // 2 / sqrt(4)
  expect(b[0]).toBe(-2); // 1 - 3·1
});

test("InstanceNormalization normalises each plane", () => {
  const x = randomTensor(rand, [2, 2, 3, 3]);
  const y = instanceNormalization([x, tensor([2], [1, 3]), tensor([2], [0, -1])], attrs("InstanceNormalization", {}), TEST_CONTEXT)[0]!;
  const yd = y.data as Float32Array;
  for (let p = 0; p < 4; p++) {
    const plane = Array.from(yd.subarray(p * 9, p * 9 + 9));
    const mean = plane.reduce((s, v) => s + v, 0) / 9;
    const sd = Math.sqrt(plane.reduce((s, v) => s + (v - mean) ** 2, 0) / 9);
    const c = p % 2;
    expect(mean).toBeCloseTo(c === 0 ? 0 : -1, 5);
    expect(sd).toBeCloseTo(c === 0 ? 1 : 3, 2); // eps 1e-5 shrinks the sd slightly
  }
});

test("LRN sums squares over the channel window", () => {
  const x = tensor([1, 3, 1, 1], [1, 2, 3]);
  const y = lrn([x], attrs("LRN", { size: 3, alpha: 0.3, beta: 0.5, bias: 1 }, ["alpha", "beta", "bias"]), TEST_CONTEXT)[0]!;
  const sq = [1 + 4, 1 + 4 + 9, 4 + 9];
  const want = [1, 2, 3].map((v, c) => v / Math.pow(1 + (0.3 / 3) * sq[c]!, 0.5));
  Array.from(y.data as Float32Array).forEach((v, c) => expect(v).toBeCloseTo(want[c]!, 6));
});
