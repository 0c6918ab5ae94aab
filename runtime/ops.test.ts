/**
 * The op table and the shared helpers of the reference families: one table without clashes,
 * variant choice by opset, numpy broadcasting, float16 rounding, erf accuracy, and a few
 * kernels whose edge cases the conformance suite does not reach.
 * @module
 */
import { describe, expect, test } from "bun:test";
import type { Tensor } from "../format/mod.ts";
import {
  broadcastBinary, broadcastOffsets, broadcastShape, ELEMENTWISE_OPS, erf, halfToNumber, numberToHalf, unaryKernel,
} from "./ops/elementwise.ts";
import { OP_CONFLICTS, OPS, resolveOp } from "./ops/registry.ts";
import { float32ToString, reshapeDims, SHAPE_OPS, sliceRange } from "./ops/shape.ts";
import { REDUCE_OPS } from "./ops/reduce.ts";
import { Attrs, KernelError, type KernelContext } from "./ops/types.ts";

const CTX: KernelContext = { opset: 13, threads: 1 };
const f32 = (dims: number[], v: number[]): Tensor => ({ dtype: "float32", dims, data: Float32Array.from(v) });
const run = (table: typeof OPS, op: string, inputs: (Tensor | undefined)[], attrs: Attrs["raw"] = {}, ctx: KernelContext = CTX) =>
  resolveOp(op, ctx.opset, table)!.kernel(inputs, new Attrs(attrs, op), ctx);

describe("registry", () => {
  test("no op type is defined by two families", () => {
    expect(OP_CONFLICTS).toEqual([]);
  });

  test("the CNN ops of the reference models all resolve at opset 13", () => {
    for (const op of ["Conv", "Gemm", "Relu", "Clip", "Add", "MaxPool", "GlobalAveragePool", "Flatten", "Identity", "Constant", "BatchNormalization", "Softmax"]) {
      expect(resolveOp(op, 13)).toBeDefined();
    }
  });

  test("variant choice: newest `since` not newer than the opset; none before the first", () => {
    const addOld = resolveOp("Add", 6)!, addNew = resolveOp("Add", 14)!;
    expect(addOld).toBe(OPS.Add![0]!);
    expect(addNew).toBe(OPS.Add![1]!);
    expect(resolveOp("HardSwish", 13)).toBeUndefined();
    expect(resolveOp("NoSuchOp", 17)).toBeUndefined();
    expect(resolveOp("__proto__", 17)).toBeUndefined();
  });
});

describe("helpers", () => {
  test("numpy broadcasting of shapes, and offsets into the smaller operand", () => {
    expect(broadcastShape([[2, 1, 3], [4, 1]])).toEqual([2, 4, 3]);
    expect(broadcastShape([[], [3]])).toEqual([3]);
    expect(() => broadcastShape([[2, 3], [4]])).toThrow(KernelError);
    expect(Array.from(broadcastOffsets([3], [2, 3]))).toEqual([0, 1, 2, 0, 1, 2]);
    expect(Array.from(broadcastOffsets([2, 1], [2, 3]))).toEqual([0, 0, 0, 1, 1, 1]);
  });

  test("float16 encoding rounds to nearest even and round-trips every half", () => {
    for (let h = 0; h < 0x10000; h += 7) {
      const v = halfToNumber(h);
      if (Number.isNaN(v)) continue;
      expect(numberToHalf(v)).toBe(h);
    }
    expect(numberToHalf(1 + 2 ** -11)).toBe(0x3c00); // tie → even mantissa
    expect(numberToHalf(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(numberToHalf(65520)).toBe(0x7c00); // overflows to infinity
    expect(halfToNumber(numberToHalf(2 ** -24))).toBe(2 ** -24);
  });

  test("erf matches tabulated values to 1e-12", () => {
    const table: [number, number][] = [
      [0, 0], [1e-8, 1.1283791670955126e-8], [0.5, 0.5204998778130465], [1, 0.8427007929497149],
      [2, 0.9953222650189527], [3, 0.9999779095030014], [-1.5, -0.9661051464753108],
    ];
    for (const [x, want] of table) expect(Math.abs(erf(x) - want)).toBeLessThan(1e-12);
  });

  test("Reshape target dims: 0 copies, -1 infers, allowzero keeps 0", () => {
    expect(reshapeDims([2, 3, 4], [0, -1], false)).toEqual([2, 12]);
    expect(reshapeDims([0, 3], [0, 3], true)).toEqual([0, 3]);
    expect(() => reshapeDims([2, 3], [4, -1], false)).toThrow(KernelError);
  });

  test("float32 to string: shortest round-trip digits in Python's notation", () => {
    expect(float32ToString(Math.fround(0.9767611026763916))).toBe("0.9767611");
    expect(float32ToString(Math.fround(0.1))).toBe("0.1");
    expect(float32ToString(100)).toBe("100.0");
    expect(float32ToString(Math.fround(1e-5))).toBe("1e-05");
    expect(float32ToString(Math.fround(3e20))).toBe("3e+20");
    expect(float32ToString(-Infinity)).toBe("-INF");
  });

  test("Slice ranges clamp like numpy for both step signs", () => {
    expect(sliceRange(10, 2, 1000, 3)).toEqual({ start: 2, count: 3 });
    expect(sliceRange(10, -1, -1000, -1)).toEqual({ start: 9, count: 10 });
    expect(sliceRange(10, 20, 0, -2)).toEqual({ start: 9, count: 5 });
  });
});

describe("kernels", () => {
  test("Add broadcasts and keeps float32", () => {
    const [y] = run(ELEMENTWISE_OPS, "Add", [f32([2, 1], [1, 2]), f32([3], [10, 20, 30])]);
    expect(y!.dims).toEqual([2, 3]);
    expect(Array.from(y!.data as Float32Array)).toEqual([11, 21, 31, 12, 22, 32]);
  });

  test("the float32 fast paths equal the generic reference loops bit for bit", () => {
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 8 - 4;
    const a = f32([3, 5, 7], Array.from({ length: 105 }, rand)), b = f32([3, 5, 7], Array.from({ length: 105 }, rand));
    const ref: Record<string, (x: number, y: number) => number> = { Add: (x, y) => x + y, Sub: (x, y) => x - y, Mul: (x, y) => x * y, Div: (x, y) => x / y };
    for (const [op, f] of Object.entries(ref)) {
      const [fast] = run(ELEMENTWISE_OPS, op, [a, b]);
      expect(fast!.data).toEqual(broadcastBinary(a, b, f).data);
    }
    const [relu] = run(ELEMENTWISE_OPS, "Relu", [a]);
    expect(relu!.data).toEqual(unaryKernel((x) => (x > 0 ? x : 0))([a], new Attrs({}), CTX)[0]!.data);
    const [clip] = run(ELEMENTWISE_OPS, "Clip", [a, f32([], [-1]), f32([], [2])]);
    expect(clip!.data).toEqual(unaryKernel((x) => Math.min(2, Math.max(-1, x)))([a], new Attrs({}), CTX)[0]!.data);
  });

  test("legacy Add (opset 6) aligns B at `axis` when broadcast=1", () => {
    const x = f32([2, 3, 2], new Array(12).fill(0));
    const b = f32([3], [1, 2, 3]);
    const [y] = run(OPS, "Add", [x, b], { broadcast: { type: "int", value: 1 }, axis: { type: "int", value: 1 } }, { opset: 6, threads: 1 });
    expect(Array.from(y!.data as Float32Array)).toEqual([1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3]);
  });

  test("Clip reads bounds from attributes before opset 11 and from inputs after", () => {
    const x = f32([4], [-2, 0.5, 3, 9]);
    const [old] = run(OPS, "Clip", [x], { min: { type: "float", value: 0 }, max: { type: "float", value: 6 } }, { opset: 6, threads: 1 });
    const [now] = run(OPS, "Clip", [x, f32([], [0]), f32([], [6])]);
    expect(Array.from(old!.data as Float32Array)).toEqual([0, 0.5, 3, 6]);
    expect(Array.from(now!.data as Float32Array)).toEqual([0, 0.5, 3, 6]);
  });

  test("Integer Div truncates toward zero; Mod follows the divisor's sign unless fmod=1", () => {
    const i32 = (v: number[]): Tensor => ({ dtype: "int32", dims: [v.length], data: Int32Array.from(v) });
    const [q] = run(OPS, "Div", [i32([7, -7]), i32([2, 2])]);
    expect(Array.from(q!.data as Int32Array)).toEqual([3, -3]);
    const [m] = run(OPS, "Mod", [i32([7, -7]), i32([3, 3])]);
    expect(Array.from(m!.data as Int32Array)).toEqual([1, 2]);
    const [f] = run(OPS, "Mod", [i32([7, -7]), i32([3, 3])], { fmod: { type: "int", value: 1 } });
    expect(Array.from(f!.data as Int32Array)).toEqual([1, -1]);
  });

  test("Split without sizes divides into as many parts as the node has outputs", () => {
    const x = f32([6], [1, 2, 3, 4, 5, 6]);
    const parts = run(SHAPE_OPS, "Split", [x], {}, { opset: 13, threads: 1, outputCount: 3 });
    expect(parts.map((p) => Array.from(p.data as Float32Array))).toEqual([[1, 2], [3, 4], [5, 6]]);
    expect(() => run(SHAPE_OPS, "Split", [x], {}, { opset: 13, threads: 1, outputCount: 4 })).toThrow(KernelError);
  });

  test("Softmax: opset 13 normalizes along one axis, earlier opsets over the flattened tail", () => {
    const x = f32([2, 2], [0, 0, 0, Math.log(3)]);
    const [y13] = run(REDUCE_OPS, "Softmax", [x], { axis: { type: "int", value: 0 } });
    expect(Array.from(y13!.data as Float32Array)).toEqual([0.5, 0.25, 0.5, 0.75].map(Math.fround));
    const [y11] = run(REDUCE_OPS, "Softmax", [x], { axis: { type: "int", value: 0 } }, { opset: 11, threads: 1 });
    const d = y11!.data as Float32Array;
    expect(d.reduce((s, v) => s + v, 0)).toBeCloseTo(1, 6);
  });

  test("ReduceMean takes axes from the attribute before opset 18 and from an input from 18", () => {
    const x = f32([2, 2], [1, 2, 3, 5]);
    const axis1 = { axes: { type: "ints" as const, value: [1] }, keepdims: { type: "int" as const, value: 0 } };
    const [old] = run(REDUCE_OPS, "ReduceMean", [x], axis1);
    expect(Array.from(old!.data as Float32Array)).toEqual([1.5, 4]);
    const axes: Tensor = { dtype: "int64", dims: [1], data: BigInt64Array.of(0n) };
    const [now] = run(REDUCE_OPS, "ReduceMean", [x, axes], { keepdims: { type: "int", value: 0 } }, { opset: 18, threads: 1 });
    expect(Array.from(now!.data as Float32Array)).toEqual([2, 3.5]);
  });

  test("Gather refuses out-of-range indices", () => {
    const idx: Tensor = { dtype: "int64", dims: [1], data: BigInt64Array.of(5n) };
    expect(() => run(SHAPE_OPS, "Gather", [f32([3], [1, 2, 3]), idx])).toThrow(KernelError);
  });

  test("Dropout at inference is the identity with an all-true mask; training with ratio > 0 is refused", () => {
    const x = f32([3], [1, 2, 3]);
    const [y, mask] = run(SHAPE_OPS, "Dropout", [x], {}, { opset: 13, threads: 1, outputCount: 2 });
    expect(y).toBe(x);
    expect(Array.from(mask!.data as Uint8Array)).toEqual([1, 1, 1]);
    const yes: Tensor = { dtype: "bool", dims: [], data: Uint8Array.of(1) };
    expect(() => run(SHAPE_OPS, "Dropout", [x, f32([], [0.5]), yes])).toThrow(KernelError);
  });
});
