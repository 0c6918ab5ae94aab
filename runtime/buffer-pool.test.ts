/**
 * The session's buffer pool: best-fit reuse, which released values may be recycled (never a
 * constant's buffer, a feed's, or one a live view still reads), and whole runs with the pool
 * against runs without it, on hand-made graphs and a reference CNN.
 * @module
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { sharedPath } from "../cli/shared.ts";
import { type Model, type Node, readOnnx, type Tensor } from "../format/mod.ts";
import { BufferPool, recycle } from "./buffer-pool.ts";
import { randomTensor, seededRandom } from "./cpu/test-support.ts";
import { planModel } from "./planner.ts";
import { createSession, runPlan } from "./session.ts";

const f32 = (dims: number[], values: number[]): Tensor => ({ dtype: "float32", dims, data: Float32Array.from(values) });
const node = (opType: string, inputs: string[], outputs: string[]): Node => ({ opType, domain: "", name: "", inputs, outputs, attrs: {} });

describe("BufferPool", () => {
  test("best fit: the smallest free block that holds the request, as a view; a new array when none does", () => {
    const pool = new BufferPool();
    const small = new Float32Array(10), large = new Float32Array(100);
    pool.give(large);
    pool.give(small);
    const a = pool.take(8);
    expect(a.length).toBe(8);
    expect(a.buffer).toBe(small.buffer);
    expect(pool.isView(a)).toBe(true);
    const b = pool.take(50);
    expect(b.buffer).toBe(large.buffer);
    const c = pool.take(20);
    expect(c.buffer).not.toBe(small.buffer);
    expect(c.buffer).not.toBe(large.buffer);
    expect(Array.from(c)).toEqual(new Array(20).fill(0));
    // a view goes back as its whole block
    pool.give(b);
    expect(pool.freeFloats).toBe(100);
    expect(pool.take(100).buffer).toBe(large.buffer);
  });

  test("a run keeps the blocks it took again and drops the others", () => {
    const pool = new BufferPool();
    pool.give(new Float32Array(10));
    pool.give(new Float32Array(1000));
    pool.beginRun();
    pool.give(pool.take(8));
    pool.endRun();
    expect(pool.freeFloats).toBe(10);
  });

  test("accepts its own views and whole-buffer arrays, not other views", () => {
    const pool = new BufferPool();
    const whole = new Float32Array(16);
    expect(pool.accepts(whole)).toBe(true);
    expect(pool.accepts(whole.subarray(0, 8))).toBe(false);
    expect(pool.accepts(whole.subarray(4))).toBe(false);
    pool.give(whole);
    expect(pool.accepts(pool.take(8))).toBe(true);
  });
});

describe("recycle", () => {
  test("gives back a released buffer only when no live value or constant shares it", () => {
    const pool = new BufferPool();
    const shared = new Float32Array(4), constant = new Float32Array(4), free = new Float32Array(4), int: Tensor = { dtype: "int32", dims: [4], data: new Int32Array(4) };
    const live = new Map<string, Tensor>([["view", { dtype: "float32", dims: [2, 2], data: shared }]]);
    recycle([
      { dtype: "float32", dims: [4], data: shared },
      { dtype: "float32", dims: [4], data: constant },
      { dtype: "float32", dims: [4], data: free },
      { dtype: "float32", dims: [4], data: free }, // the same buffer released twice in one step
      int,
    ], live, new Set([constant.buffer]), pool);
    expect(pool.freeFloats).toBe(4);
    expect(pool.take(4)).toBe(free);
  });
});

describe("runs with the session's pool", () => {
  test("views (Reshape, Identity) of released values, a feed passed through and a constant output keep their data", async () => {
    // a = Relu(x); v = Reshape(a) (a view); i = Identity(x); n = Neg(v); m = Neg(n); y = Add(m, i); c = Identity(k)
    const shape: Tensor = { dtype: "int64", dims: [2], data: BigInt64Array.of(2n, 3n) };
    const m: Model = {
      irVersion: 8, opsetImports: [{ domain: "", version: 13 }], producerName: "",
      graph: {
        name: "g",
        nodes: [
          node("Relu", ["x"], ["a"]), node("Reshape", ["a", "shape"], ["v"]), node("Identity", ["x"], ["i"]),
          node("Neg", ["v"], ["n"]), node("Neg", ["n"], ["m"]), node("Reshape", ["i", "shape"], ["i2"]),
          node("Add", ["m", "i2"], ["y"]), node("Identity", ["k"], ["c"]),
        ],
        inputs: [{ name: "x", dtype: "float32", shape: [6] }],
        outputs: [{ name: "y", dtype: "float32", shape: null }, { name: "a", dtype: "float32", shape: null }, { name: "c", dtype: "float32", shape: null }],
        initializers: { shape, k: f32([2], [7, 8]) },
      },
    };
    const s = await createSession(m);
    const x = f32([6], [-1, 2, -3, 4, -5, 6]);
    const first = await s.run({ x });
    const want = [-1, 4, -3, 8, -5, 12]; // Relu(x) + x
    expect(Array.from(first.y!.data as Float32Array)).toEqual(want);
    expect(Array.from(first.a!.data as Float32Array)).toEqual([0, 2, 0, 4, 0, 6]);
    for (let i = 0; i < 3; i++) {
      const again = await s.run({ x: f32([6], [1, 1, 1, 1, 1, 1]) });
      expect(Array.from(again.y!.data as Float32Array)).toEqual([2, 2, 2, 2, 2, 2]);
    }
    // results of earlier runs and the caller's feed are never reused
    expect(Array.from(first.y!.data as Float32Array)).toEqual(want);
    expect(Array.from(first.a!.data as Float32Array)).toEqual([0, 2, 0, 4, 0, 6]);
    expect(Array.from(x.data as Float32Array)).toEqual([-1, 2, -3, 4, -5, 6]);
    expect(Array.from(first.c!.data as Float32Array)).toEqual([7, 8]);
  });

  test("mobilenet_v2-224: runs with a pool equal runs without one, across batch sizes, and the pool is reused", () => {
    const model = readOnnx(new Uint8Array(readFileSync(sharedPath("models", "mobilenet_v2-224.onnx"))));
    const plan = planModel(model);
    const rand = seededRandom(5);
    const pool = new BufferPool();
    const outputs: Tensor[] = [];
    for (const batch of [2, 1, 2]) {
      const x = randomTensor(rand, [batch, 3, 224, 224]);
      const want = runPlan(plan, { input: x }).logits!;
      const got = runPlan(plan, { input: x }, undefined, undefined, pool).logits!;
      expect(got.dims).toEqual(want.dims);
      expect(Array.from(got.data as Float32Array)).toEqual(Array.from(want.data as Float32Array));
      // the output is the caller's own compact array
      expect((got.data as Float32Array).byteLength).toBe((got.data as Float32Array).buffer.byteLength);
      outputs.push(got, want);
    }
    // a second run at the same size reuses the blocks of the first: the pool does not grow
    const held = pool.freeFloats;
    expect(held).toBeGreaterThan(0);
    runPlan(plan, { input: randomTensor(rand, [2, 3, 224, 224]) }, undefined, undefined, pool);
    expect(pool.freeFloats).toBe(held);
    // earlier results are untouched by later runs
    for (let i = 0; i < outputs.length; i += 2) expect(Array.from(outputs[i]!.data as Float32Array)).toEqual(Array.from(outputs[i + 1]!.data as Float32Array));
  });
});
