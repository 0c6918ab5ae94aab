/**
 * The compute kernels under Deno (V8): every fast path against its reference on one seeded case
 * each, and a 2-thread GEMM through the worker pool. The full suites run under bun beside this file.
 * @module
 */
import { conv2dFast, convGeometry, convReference, convTranspose, convTransposeReference, type ConvPath } from "./conv.ts";
import { gemm, gemmReference, matmul, matmulReference } from "./gemm.ts";
import { averagePool, averagePoolReference, maxPool, maxPoolReference } from "./pool.ts";
import { ensureCpuWorkers, stopCpuWorkers } from "../cpu/worker-pool.ts";
import { attrs, FLOAT32_KERNEL_TOLERANCE, randomTensor, relativeDiff, seededRandom, TEST_CONTEXT } from "../cpu/test-support.ts";

function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new Error(message);
}

Deno.test("kernels: conv paths, conv transpose, gemm, matmul and pools match their references", () => {
  const rand = seededRandom(77);
  const x = randomTensor(rand, [1, 16, 12, 11]), w = randomTensor(rand, [16, 16, 3, 3]), b = randomTensor(rand, [16]);
  const at = attrs("Conv", { pads: [1, 1, 1, 1] });
  const ref = convReference([x, w, b], at, TEST_CONTEXT)[0]!;
  const g = convGeometry(x.dims, w.dims, at);
  for (const path of ["im2col-gemm", "im2col-sparse", "winograd", "gemm-1x1"] as ConvPath[]) {
    const d = relativeDiff(conv2dFast(x, w, b, g, path), ref);
    assert(d <= FLOAT32_KERNEL_TOLERANCE, `${path}: ${d}`);
  }
  const dw = randomTensor(rand, [16, 1, 3, 3]), dwAt = attrs("Conv", { group: 16, pads: [1, 1, 1, 1] });
  const dwD = relativeDiff(conv2dFast(x, dw, undefined, convGeometry(x.dims, dw.dims, dwAt), "direct"), convReference([x, dw], dwAt, TEST_CONTEXT)[0]!);
  assert(dwD <= FLOAT32_KERNEL_TOLERANCE, `direct: ${dwD}`);
  const tAt = attrs("ConvTranspose", { strides: [2, 2], pads: [1, 0, 0, 1] });
  const tD = relativeDiff(convTranspose([x, w, b], tAt, TEST_CONTEXT)[0]!, convTransposeReference([x, w, b], tAt, TEST_CONTEXT)[0]!);
  assert(tD <= FLOAT32_KERNEL_TOLERANCE, `convTranspose: ${tD}`);
  const a = randomTensor(rand, [37, 70]), bm = randomTensor(rand, [70, 29]), c = randomTensor(rand, [29]);
  const gAt = attrs("Gemm", { alpha: 0.5 }, ["alpha"]);
  assert(relativeDiff(gemm([a, bm, c], gAt, TEST_CONTEXT)[0]!, gemmReference([a, bm, c], gAt, TEST_CONTEXT)[0]!) <= FLOAT32_KERNEL_TOLERANCE, "gemm");
  assert(relativeDiff(matmul([a, bm], attrs("MatMul", {}), TEST_CONTEXT)[0]!, matmulReference([a, bm], attrs("MatMul", {}), TEST_CONTEXT)[0]!) <= FLOAT32_KERNEL_TOLERANCE, "matmul");
  const pAt = attrs("MaxPool", { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] });
  assert(relativeDiff(maxPool([x], pAt, TEST_CONTEXT)[0]!, maxPoolReference([x], pAt, TEST_CONTEXT)[0]!) === 0, "maxPool");
  const aAt = attrs("AveragePool", { kernel_shape: [3, 3], ceil_mode: 1, strides: [2, 2], count_include_pad: 1, pads: [1, 1, 1, 1] });
  assert(relativeDiff(averagePool([x], aAt, TEST_CONTEXT)[0]!, averagePoolReference([x], aAt, TEST_CONTEXT)[0]!) <= 1e-6, "averagePool");
});

Deno.test("kernels: a 2-thread GEMM on the worker pool gives the single-thread result", async () => {
  const pool = await ensureCpuWorkers(2);
  try {
    assert(pool, "worker pool did not start");
    const rand = seededRandom(78);
    const x = randomTensor(rand, [1, 64, 30, 30]), w = randomTensor(rand, [64, 64, 3, 3]);
    const at = attrs("Conv", { strides: [2, 2], pads: [1, 1, 1, 1] });
    const g = convGeometry(x.dims, w.dims, at);
    const before = pool.splits;
    const two = conv2dFast(x, w, undefined, g, "im2col-gemm", 2);
    assert(pool.splits === before + 1, "the GEMM was not split");
    assert(relativeDiff(two, conv2dFast(x, w, undefined, g, "im2col-gemm", 1)) === 0, "threaded result differs");
  } finally {
    stopCpuWorkers();
  }
});
