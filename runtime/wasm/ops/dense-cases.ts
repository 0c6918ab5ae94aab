/**
 * The data-driven cases of the dense wasm kernel tests (dense.test.ts under Bun,
 * dense.deno.test.ts under Deno): each a single node with seeded random inputs that a wasm
 * implementation must claim and compute like the op table's kernel, plus nodes it must refuse
 * (so the reference takes them).
 * @module
 */
import type { Tensor } from "../../../format/mod.ts";
import { randomTensor, seededRandom } from "../../cpu/test-support.ts";
import type { CaseInput } from "./test-support.ts";

/**
 * Max |wasm − reference| relative to max(1, max |reference|): float32 sums in another order
 * (and fused multiply-adds in the relaxed build) against the reference's float64 or float32 sums.
 */
export const DENSE_TOLERANCE = 1e-5;

/** One node to run on wasm and on the reference. */
export interface DenseCase {
  name: string;
  op: string;
  inputs: (CaseInput | undefined)[];
  attrs: Record<string, number | number[] | string>;
  floats?: string[];
  opset?: number;
  outputs?: number;
  /** The path the wasm backend must report (checks the intended kernel ran). */
  path?: string;
}

const rand = seededRandom(20261201);
const value = (dims: number[]): CaseInput => ({ tensor: randomTensor(rand, dims) });
const weight = (dims: number[], zeros = 0): CaseInput => ({ tensor: randomTensor(rand, dims, zeros), constant: true });

/** Conv cases: odd sizes, pads (asymmetric, SAME), strides, groups, dilations, batch 1 and 3, K past one 256-row block. */
function convCase(name: string, x: number[], w: number[], attrs: DenseCase["attrs"], path: string, bias = true): DenseCase {
  return { name, op: "Conv", inputs: [value(x), weight(w), bias ? weight([w[0]!]) : undefined], attrs, path };
}

export const CLAIMED_CASES: DenseCase[] = [
  convCase("1x1 pointwise 13->7 @9x11", [1, 13, 9, 11], [7, 13, 1, 1], {}, "wasm-gemm-1x1"),
  convCase("1x1 pointwise batch 3, 40->37 @6x7", [3, 40, 6, 7], [37, 40, 1, 1], {}, "wasm-gemm-1x1", false),
  convCase("1x1 stride 2 16->9 @13x13", [1, 16, 13, 13], [9, 16, 1, 1], { strides: [2, 2] }, "wasm-im2col-gemm"),
  convCase("3x3 pad 1 5->6 @17x19", [1, 5, 17, 19], [6, 5, 3, 3], { pads: [1, 1, 1, 1] }, "wasm-im2col-gemm"),
  convCase("3x3 stride (1,2) K=360 (two K blocks) 40->10 @8x9", [1, 40, 8, 9], [10, 40, 3, 3], { strides: [1, 2], pads: [1, 1, 1, 1] }, "wasm-im2col-gemm"),
  convCase("3x3 stride 2 asymmetric pads batch 3", [3, 6, 15, 12], [11, 6, 3, 3], { strides: [2, 2], pads: [0, 1, 2, 1] }, "wasm-im2col-gemm"),
  convCase("7x7 stride 2 pad 3 3->16 @35", [1, 3, 35, 35], [16, 3, 7, 7], { strides: [2, 2], pads: [3, 3, 3, 3] }, "wasm-im2col-gemm"),
  convCase("3x3 dilation 2 4->5 @14x13", [1, 4, 14, 13], [5, 4, 3, 3], { dilations: [2, 2], pads: [2, 2, 2, 2] }, "wasm-im2col-gemm"),
  convCase("5x3 stride (2,1) SAME_UPPER", [1, 3, 11, 10], [4, 3, 5, 3], { strides: [2, 1], auto_pad: "SAME_UPPER" }, "wasm-im2col-gemm"),
  convCase("grouped 4 groups 8->12 3x3", [3, 8, 9, 9], [12, 2, 3, 3], { group: 4, pads: [1, 1, 1, 1] }, "wasm-im2col-gemm"),
  convCase("grouped 2 groups 1x1 (pointwise)", [1, 6, 10, 10], [10, 3, 1, 1], { group: 2 }, "wasm-gemm-1x1"),
  convCase("64->96 3x3 s2 @30 (split across threads)", [1, 64, 30, 30], [96, 64, 3, 3], { strides: [2, 2], pads: [1, 1, 1, 1] }, "wasm-im2col-gemm"),
  convCase("winograd 3x3 pad 1 16->13 @17x19", [1, 16, 17, 19], [13, 16, 3, 3], { pads: [1, 1, 1, 1] }, "wasm-winograd-f2x2"),
  convCase("winograd 3x3 no pad batch 3 12->20 @11x30", [3, 12, 11, 30], [20, 12, 3, 3], {}, "wasm-winograd-f2x2"),
  convCase("winograd 3x3 asymmetric pads 9->8 @14x9", [1, 9, 14, 9], [8, 9, 3, 3], { pads: [0, 2, 1, 0] }, "wasm-winograd-f2x2", false),
  convCase("winograd 3x3 64->64 @28 (split)", [1, 64, 28, 28], [64, 64, 3, 3], { pads: [1, 1, 1, 1] }, "wasm-winograd-f2x2"),
  convCase("depthwise 3x3 s1 pad 1 @23x17", [1, 7, 23, 17], [7, 1, 3, 3], { group: 7, pads: [1, 1, 1, 1] }, "wasm-depthwise-3x3"),
  // Rows of ≥ 4 outputs run as vectors, two output rows at a time, the row ends as masked vectors;
  // narrower rows, pads > 4 and other geometries run the scalar loop.
  convCase("depthwise 3x3 s1 pad 1 batch 2 @7x7 (vector row ends)", [2, 6, 7, 7], [6, 1, 3, 3], { group: 6, pads: [1, 1, 1, 1] }, "wasm-depthwise-3x3"),
  convCase("depthwise 3x3 s1 pad 1 @9x5 (narrowest vector row ends)", [1, 3, 9, 5], [3, 1, 3, 3], { group: 3, pads: [1, 1, 1, 1] }, "wasm-depthwise-3x3"),
  convCase("depthwise 3x3 s1 pad 1 @6x4 (scalar row ends)", [1, 3, 6, 4], [3, 1, 3, 3], { group: 3, pads: [1, 1, 1, 1] }, "wasm-depthwise-3x3"),
  convCase("depthwise 3x3 s2 pad 1 @14x9 (vector row start)", [1, 4, 14, 9], [4, 1, 3, 3], { group: 4, strides: [2, 2], pads: [1, 1, 1, 1] }, "wasm-depthwise-3x3"),
  convCase("depthwise 3x3 s2 pad 1 @9x8 (scalar row start)", [1, 2, 9, 8], [2, 1, 3, 3], { group: 2, strides: [2, 2], pads: [1, 1, 1, 1] }, "wasm-depthwise-3x3"),
  convCase("depthwise 3x3 s2 pad 1 batch 3 @29x30", [3, 5, 29, 30], [5, 1, 3, 3], { group: 5, strides: [2, 2], pads: [1, 1, 1, 1] }, "wasm-depthwise-3x3"),
  convCase("depthwise 3x3 s2 asymmetric pads", [1, 4, 16, 31], [4, 1, 3, 3], { group: 4, strides: [2, 2], pads: [0, 0, 1, 1] }, "wasm-depthwise-3x3"),
  convCase("depthwise 3x3 s1 pad 2 odd rows @11x13", [1, 3, 11, 13], [3, 1, 3, 3], { group: 3, pads: [2, 2, 2, 2] }, "wasm-depthwise-3x3"),
  convCase("depthwise 3x3 s1 pad 5 (scalar loop)", [1, 2, 6, 7], [2, 1, 3, 3], { group: 2, pads: [5, 5, 5, 5] }, "wasm-depthwise-3x3"),
  convCase("depthwise 3x3 s1 pad 1 @5x3 (3 outputs a row: scalar)", [1, 2, 5, 3], [2, 1, 3, 3], { group: 2, pads: [1, 1, 1, 1] }, "wasm-depthwise-3x3"),
  convCase("depthwise 3x3 s2 pad 2 odd rows @17x21", [1, 3, 17, 21], [3, 1, 3, 3], { group: 3, strides: [2, 2], pads: [2, 2, 2, 2] }, "wasm-depthwise-3x3"),
  convCase("depthwise 3x3 s2 pad 1 @8x7 (4 outputs a row)", [2, 3, 8, 7], [3, 1, 3, 3], { group: 3, strides: [2, 2], pads: [1, 1, 1, 1] }, "wasm-depthwise-3x3"),
  convCase("depthwise 3x3 s2 no pad @11x12", [1, 4, 11, 12], [4, 1, 3, 3], { group: 4, strides: [2, 2] }, "wasm-depthwise-3x3"),
  convCase("depthwise 3x3 strides (1, 2) (generic)", [1, 3, 9, 14], [3, 1, 3, 3], { group: 3, strides: [1, 2], pads: [1, 1, 1, 1] }, "wasm-depthwise"),
  convCase("depthwise 3x3 s1 no pad, multiplier 2", [1, 3, 12, 40], [6, 1, 3, 3], { group: 3 }, "wasm-depthwise-3x3"),
  convCase("depthwise 3x3 s1 144 @56 (split across threads)", [1, 144, 28, 28], [144, 1, 3, 3], { group: 144, pads: [1, 1, 1, 1] }, "wasm-depthwise-3x3"),
  convCase("depthwise 5x5 dilation 2 (generic)", [1, 3, 13, 14], [3, 1, 5, 5], { group: 3, dilations: [2, 2], pads: [4, 4, 4, 4] }, "wasm-depthwise"),
  convCase("depthwise 3x3 stride 3 (generic)", [3, 2, 11, 11], [2, 1, 3, 3], { group: 2, strides: [3, 3], pads: [1, 1, 1, 1] }, "wasm-depthwise", false),
  { name: "Gemm transB + bias [n], m=1", op: "Gemm", inputs: [value([1, 37]), weight([1003, 37]), weight([1003])], attrs: { transB: 1 }, path: "wasm-gemv" },
  { name: "Gemm alpha/beta, bias [1, n], m=3", op: "Gemm", inputs: [value([3, 20]), weight([20, 13]), weight([1, 13])], attrs: { alpha: 0.5, beta: 2 }, floats: ["alpha", "beta"], path: "wasm-gemv" },
  { name: "Gemm transA, scalar C, m=9", op: "Gemm", inputs: [value([17, 9]), weight([17, 6]), weight([1])], attrs: { transA: 1 }, path: "wasm-gemm" },
  { name: "Gemm no C, m=5 k=300 n=700 (split)", op: "Gemm", inputs: [value([5, 300]), weight([700, 300]), undefined], attrs: { transB: 1 }, path: "wasm-gemv" },
  { name: "MatMul [3, 5, 37] x [37, 11]", op: "MatMul", inputs: [value([3, 5, 37]), weight([37, 11])], attrs: {}, path: "wasm-gemm" },
  { name: "MaxPool 3x3 s2 pad 1 @21x22", op: "MaxPool", inputs: [value([1, 3, 21, 22])], attrs: { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }, path: "wasm-maxpool" },
  { name: "MaxPool 3x3 s2 no pad @9x9 (4 outputs a row)", op: "MaxPool", inputs: [value([2, 3, 9, 9])], attrs: { kernel_shape: [3, 3], strides: [2, 2] }, path: "wasm-maxpool" },
  { name: "MaxPool 3x3 s2 pad 1 ceil @20x17", op: "MaxPool", inputs: [value([1, 3, 20, 17])], attrs: { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], ceil_mode: 1 }, path: "wasm-maxpool" },
  { name: "MaxPool 3x3 s2 pads 2 @13x18", op: "MaxPool", inputs: [value([1, 2, 13, 18])], attrs: { kernel_shape: [3, 3], strides: [2, 2], pads: [2, 2, 2, 2] }, path: "wasm-maxpool" },
  { name: "MaxPool 3x3 s2 asymmetric pads @12x15", op: "MaxPool", inputs: [value([1, 2, 12, 15])], attrs: { kernel_shape: [3, 3], strides: [2, 2], pads: [0, 1, 1, 0] }, path: "wasm-maxpool" },
  { name: "MaxPool 2x2 s2 batch 3 odd", op: "MaxPool", inputs: [value([3, 2, 9, 13])], attrs: { kernel_shape: [2, 2], strides: [2, 2] }, path: "wasm-maxpool" },
  { name: "MaxPool 3x3 s1 ceil, asymmetric pads", op: "MaxPool", inputs: [value([1, 4, 10, 17])], attrs: { kernel_shape: [3, 3], pads: [0, 1, 2, 0], ceil_mode: 1 }, path: "wasm-maxpool" },
  { name: "MaxPool 3x2 stride (2,3) ceil", op: "MaxPool", inputs: [value([1, 2, 19, 20])], attrs: { kernel_shape: [3, 2], strides: [2, 3], ceil_mode: 1 }, path: "wasm-maxpool" },
  { name: "MaxPool 3x3 s2 64 @40 (split)", op: "MaxPool", inputs: [value([1, 64, 40, 40])], attrs: { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }, path: "wasm-maxpool" },
  { name: "AveragePool 3x3 s1 pad 1 exclude pad", op: "AveragePool", inputs: [value([1, 3, 14, 15])], attrs: { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }, path: "wasm-avgpool" },
  { name: "AveragePool 3x3 s2 include pad ceil", op: "AveragePool", inputs: [value([3, 2, 12, 13])], attrs: { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], count_include_pad: 1, ceil_mode: 1 }, path: "wasm-avgpool" },
  { name: "AveragePool 2x2 s2 exclude pad ceil", op: "AveragePool", inputs: [value([1, 5, 11, 9])], attrs: { kernel_shape: [2, 2], strides: [2, 2], ceil_mode: 1 }, path: "wasm-avgpool" },
  { name: "AveragePool 5x5 s1 pad 2 include pad", op: "AveragePool", inputs: [value([1, 2, 9, 30])], attrs: { kernel_shape: [5, 5], pads: [2, 2, 2, 2], count_include_pad: 1 }, path: "wasm-avgpool" },
  { name: "GlobalAveragePool [3, 7, 5, 9]", op: "GlobalAveragePool", inputs: [value([3, 7, 5, 9])], attrs: {}, path: "wasm-global-avgpool" },
  { name: "GlobalAveragePool 1-D [2, 3, 13]", op: "GlobalAveragePool", inputs: [value([2, 3, 13])], attrs: {}, path: "wasm-global-avgpool" },
];

const f64 = (t: Tensor): Tensor => ({ dtype: "float64", dims: t.dims, data: Float64Array.from(t.data as Float32Array) });

/** Nodes no dense wasm implementation may claim (the reference runs them). */
export const REFUSED_CASES: DenseCase[] = [
  { name: "float64 Conv", op: "Conv", inputs: [{ tensor: f64(randomTensor(rand, [1, 2, 5, 5])) }, { tensor: f64(randomTensor(rand, [2, 2, 3, 3])), constant: true }], attrs: {} },
  { name: "3-D Conv", op: "Conv", inputs: [value([1, 2, 4, 4, 4]), weight([2, 2, 3, 3, 3])], attrs: {} },
  { name: "1-D Conv", op: "Conv", inputs: [value([1, 2, 9]), weight([2, 2, 3])], attrs: {} },
  { name: "Conv with a run-time weight", op: "Conv", inputs: [value([1, 2, 5, 5]), value([2, 2, 3, 3])], attrs: {} },
  { name: "MaxPool with Indices", op: "MaxPool", inputs: [value([1, 2, 6, 6])], attrs: { kernel_shape: [2, 2] }, outputs: 2 },
  { name: "MaxPool dilated", op: "MaxPool", inputs: [value([1, 2, 9, 9])], attrs: { kernel_shape: [2, 2], dilations: [2, 2] } },
  { name: "MaxPool ceil_mode at opset 9", op: "MaxPool", inputs: [value([1, 2, 7, 7])], attrs: { kernel_shape: [2, 2], strides: [2, 2], ceil_mode: 1 }, opset: 9 },
  { name: "MaxPool 3-D", op: "MaxPool", inputs: [value([1, 2, 4, 4, 4])], attrs: { kernel_shape: [2, 2, 2] } },
  { name: "Gemm with C [m, n]", op: "Gemm", inputs: [value([2, 3]), weight([3, 4]), weight([2, 4])], attrs: {} },
  { name: "Gemm with a run-time B", op: "Gemm", inputs: [value([2, 3]), value([3, 4])], attrs: {} },
  { name: "Gemm without C at opset 9", op: "Gemm", inputs: [value([2, 3]), weight([3, 4])], attrs: {}, opset: 9 },
  { name: "MatMul with a 1-D A", op: "MatMul", inputs: [value([3]), weight([3, 4])], attrs: {} },
];
