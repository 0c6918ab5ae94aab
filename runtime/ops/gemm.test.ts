/**
 * Gemm and MatMul: references against hand-worked products, the registered (blocked) kernels
 * against the references on seeded random shapes, including edge tiles and several k blocks.
 * @module
 */
import { describe, expect, test } from "bun:test";
import { broadcastShapes, gemm, gemmReference, GEMM_OPS, matmul, matmulReference, matmulShape } from "./gemm.ts";
import { attrs, FLOAT32_KERNEL_TOLERANCE, randomTensor, relativeDiff, seededRandom, tensor, TEST_CONTEXT } from "../cpu/test-support.ts";
import { matrixView, sgemm } from "../cpu/sgemm.ts";

describe("gemmReference", () => {
  test("transposes, alpha, beta and a row-broadcast C", () => {
    // A = [[1,2],[3,4]], B = [[5,6],[7,8]]; Aᵀ·B = [[26,30],[38,44]]
    const a = tensor([2, 2], [1, 2, 3, 4]), b = tensor([2, 2], [5, 6, 7, 8]), c = tensor([2], [1, -1]);
    const y = gemmReference([a, b, c], attrs("Gemm", { transA: 1, alpha: 2, beta: 3 }, ["alpha", "beta"]), TEST_CONTEXT)[0]!;
    expect(y.dims).toEqual([2, 2]);
    expect(Array.from(y.data as Float32Array)).toEqual([55, 57, 79, 85]);
    const yt = gemmReference([a, b], attrs("Gemm", { transB: 1 }), TEST_CONTEXT)[0]!;
    expect(Array.from(yt.data as Float32Array)).toEqual([17, 23, 39, 53]);
  });
  test("C must broadcast; C is required before opset 11", () => {
    const a = tensor([2, 3], [1, 2, 3, 4, 5, 6]), b = tensor([3, 2], [1, 0, 0, 1, 1, 1]);
    expect(() => gemm([a, b, tensor([3], [1, 2, 3])], attrs("Gemm", {}), TEST_CONTEXT)).toThrow();
    expect(() => GEMM_OPS.Gemm![0]!.kernel([a, b], attrs("Gemm", {}), TEST_CONTEXT)).toThrow();
    expect(Array.from(gemm([a, b, tensor([2, 1], [10, 20])], attrs("Gemm", {}), TEST_CONTEXT)[0]!.data as Float32Array)).toEqual([14, 15, 30, 31]);
  });
});

describe("gemm matches gemmReference", () => {
  const rand = seededRandom(21);
  const shapes = [[1, 1, 1], [3, 5, 7], [17, 9, 300], [64, 33, 5], [5, 70, 513], [130, 6, 40], [2, 37, 50], [1, 1000, 512]];
  for (const [i, [m, n, k]] of shapes.entries()) {
    const transA = i % 2, transB = (i >> 1) % 2;
    const cDims = [[m!, n!], [n!], [m!, 1], [1], [], [1, n!], [n!], [1, n!]][i]!;
    test(`${m}×${n}×${k} transA ${transA} transB ${transB} C [${cDims}]`, () => {
      const a = randomTensor(rand, transA ? [k!, m!] : [m!, k!]), b = randomTensor(rand, transB ? [n!, k!] : [k!, n!]);
      const c = randomTensor(rand, cDims);
      const at = attrs("Gemm", { transA, transB, alpha: 0.5 + i, beta: i === 3 ? 0 : 1.5 }, ["alpha", "beta"]);
      const ref = gemmReference([a, b, c], at, TEST_CONTEXT)[0]!;
      expect(relativeDiff(gemm([a, b, c], at, TEST_CONTEXT)[0]!, ref)).toBeLessThanOrEqual(FLOAT32_KERNEL_TOLERANCE);
    });
  }
});

describe("MatMul", () => {
  test("matmulShape follows numpy: 1-D operands and batch broadcasting", () => {
    expect(matmulShape([3], [3]).outDims).toEqual([]);
    expect(matmulShape([2, 3], [3]).outDims).toEqual([2]);
    expect(matmulShape([3], [4, 3, 5]).outDims).toEqual([4, 5]);
    expect(matmulShape([2, 1, 4, 3], [5, 3, 6]).outDims).toEqual([2, 5, 4, 6]);
    expect(() => matmulShape([2, 3], [4, 5])).toThrow();
    expect(() => broadcastShapes([2, 3], [4, 3])).toThrow();
  });
  test("matmulReference: vector·vector and a batch of 2×2", () => {
    expect(Array.from(matmulReference([tensor([3], [1, 2, 3]), tensor([3], [4, 5, 6])], attrs("MatMul", {}), TEST_CONTEXT)[0]!.data as Float32Array)).toEqual([32]);
    const y = matmulReference([tensor([2, 2, 2], [1, 0, 0, 1, 2, 0, 0, 2]), tensor([2, 2], [1, 2, 3, 4])], attrs("MatMul", {}), TEST_CONTEXT)[0]!;
    expect(Array.from(y.data as Float32Array)).toEqual([1, 2, 3, 4, 2, 4, 6, 8]);
  });
  const rand = seededRandom(5);
  const cases: [number[], number[]][] = [
    [[7], [7, 5]], [[4, 9], [9]], [[3, 6, 10], [10, 7]], [[2, 1, 5, 4], [3, 4, 6]], [[5, 300], [300, 9]], [[2, 3, 4], [2, 4, 5]], [[1, 8], [3, 8, 2]],
  ];
  for (const [a, b] of cases) {
    test(`matmul matches matmulReference: [${a}]·[${b}]`, () => {
      const ta = randomTensor(rand, a), tb = randomTensor(rand, b);
      const ref = matmulReference([ta, tb], attrs("MatMul", {}), TEST_CONTEXT)[0]!;
      expect(relativeDiff(matmul([ta, tb], attrs("MatMul", {}), TEST_CONTEXT)[0]!, ref)).toBeLessThanOrEqual(FLOAT32_KERNEL_TOLERANCE);
    });
  }
});

test("sgemm accumulates into a strided C and leaves the rest alone", () => {
  const rand = seededRandom(9);
  const a = randomTensor(rand, [6, 300]).data as Float32Array, b = randomTensor(rand, [300, 5]).data as Float32Array;
  const c = new Float32Array(6 * 8).fill(1);
  sgemm(6, 5, 300, 2, matrixView(a, 0, 300), matrixView(b, 0, 5), c, 1, 8, true);
  for (let i = 0; i < 6; i++) {
    for (let j = 0; j < 8; j++) {
      let want = 1;
      if (j >= 1 && j < 6) for (let p = 0; p < 300; p++) want += 2 * a[i * 300 + p]! * b[p * 5 + j - 1]!;
      expect(Math.abs(c[i * 8 + j]! - want)).toBeLessThan(1e-4);
    }
  }
});
