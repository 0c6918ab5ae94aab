/**
 * The per-model queue: bounded waiting, deadlines, and micro-batching (concatenate, run once,
 * split back; only for dynamic batch dimensions; rows equal to unbatched runs). Unit tests use a
 * small pure runner (row sums) so every number is checkable; app.test.ts covers the real model.
 * @module
 */
import { expect, test } from "bun:test";
import type { Tensor, ValueInfo } from "../format/mod.ts";
import { batchKey, type BatchRunner, canBatch, concatFeeds, splitOutputs, WorkQueue } from "./queue.ts";

const info = (name: string, shape: ValueInfo["shape"]): ValueInfo => ({ name, dtype: "float32", shape });
const feed = (rows: number[][]): Record<string, Tensor> => ({
  x: { dtype: "float32", dims: [rows.length, rows[0]!.length], data: Float32Array.from(rows.flat()) },
});

/** y[i] = sum of row i; counts runs and remembers each run's batch size. */
function rowSums(gate?: Promise<void>) {
  const runs: number[] = [];
  const runner: BatchRunner = {
    inputs: [info("x", ["N", 3])],
    outputs: [info("y", ["N", 1])],
    async run(feeds) {
      const x = feeds.x!;
      runs.push(x.dims[0]!);
      if (gate) await gate;
      const n = x.dims[0]!, w = x.dims[1]!;
      const y = new Float32Array(n);
      for (let i = 0; i < n; i++) for (let j = 0; j < w; j++) y[i]! += (x.data as Float32Array)[i * w + j]!;
      return { y: { dtype: "float32", dims: [n, 1], data: y } };
    },
  };
  return { runner, runs };
}

test("canBatch needs a dynamic first dimension on every input and output", () => {
  expect(canBatch({ inputs: [info("x", ["N", 3])], outputs: [info("y", [null, 1])] })).toBe(true);
  expect(canBatch({ inputs: [info("x", [1, 3])], outputs: [info("y", ["N", 1])] })).toBe(false);
  expect(canBatch({ inputs: [info("x", ["N", 3])], outputs: [info("y", [10])] })).toBe(false);
  expect(canBatch({ inputs: [info("x", null)], outputs: [info("y", ["N"])] })).toBe(false);
});

test("batchKey, concatFeeds and splitOutputs round-trip", () => {
  const a = feed([[1, 2, 3]]), b = feed([[4, 5, 6], [7, 8, 9]]);
  expect(batchKey(a)!.key).toBe(batchKey(b)!.key);
  expect(batchKey(b)!.images).toBe(2);
  expect(batchKey(feed([[1, 2]]))!.key).not.toBe(batchKey(a)!.key);
  const c = concatFeeds([a, b]);
  expect(c.x!.dims).toEqual([3, 3]);
  expect(Array.from(c.x!.data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const parts = splitOutputs({ y: { dtype: "float32", dims: [3, 1], data: Float32Array.from([6, 15, 24]) } }, [1, 2])!;
  expect(parts.map((p) => Array.from(p.y!.data as Float32Array))).toEqual([[6], [15, 24]]);
  expect(splitOutputs({ y: { dtype: "float32", dims: [1], data: Float32Array.from([0]) } }, [1, 2])).toBeNull();
});

test("requests arriving within the batch window share a run, up to maxBatch images", async () => {
  const { runner, runs } = rowSums();
  const queue = new WorkQueue(runner, { concurrency: 1, maxQueue: 10, maxBatch: 4 });
  const all = [1, 2, 3, 4, 5, 6].map((k) => queue.infer(feed([[k, k, k]])));
  expect(queue.depth).toBe(6); // nothing runs before the window closes
  const results = await Promise.all(all);
  expect(runs).toEqual([4, 2]);
  expect(results.map((r) => (r.value.y!.data as Float32Array)[0])).toEqual([3, 6, 9, 12, 15, 18]);
  expect(results.map((r) => r.timing.batch)).toEqual([4, 4, 4, 4, 2, 2]);
});

test("while a run holds the slot, later requests queue and then run together", async () => {
  let open!: () => void;
  const { runner, runs } = rowSums(new Promise<void>((r) => (open = r)));
  const queue = new WorkQueue(runner, { concurrency: 1, maxQueue: 10, maxBatch: 8 });
  const first = queue.infer(feed([[1, 0, 0]]));
  await new Promise((r) => setTimeout(r, 20)); // the window closes, the first run starts alone
  const rest = [2, 3, 4].map((k) => queue.infer(feed([[k, 0, 0], [k, k, 0]])));
  expect(queue.running).toBe(1);
  expect(queue.depth).toBe(3);
  open();
  const results = await Promise.all([first, ...rest]);
  expect(runs).toEqual([1, 6]);
  expect(results.map((r) => Array.from(r.value.y!.data as Float32Array))).toEqual([[1], [2, 4], [3, 6], [4, 8]]);
});

test("without maxBatch, or with a static batch dimension, every request runs alone", async () => {
  for (const [limits, inputs] of [[{ concurrency: 1, maxQueue: 10 }, [info("x", ["N", 3])]], [{ concurrency: 1, maxQueue: 10, maxBatch: 8 }, [info("x", [1, 3])]]] as const) {
    let open!: () => void;
    const { runner, runs } = rowSums(new Promise<void>((r) => (open = r)));
    runner.inputs = [...inputs];
    const queue = new WorkQueue(runner, limits);
    const all = [1, 2, 3].map((k) => queue.infer(feed([[k, 0, 0]])));
    open();
    expect((await Promise.all(all)).map((r) => (r.value.y!.data as Float32Array)[0])).toEqual([1, 2, 3]);
    expect(runs).toEqual([1, 1, 1]);
  }
});

test("a full queue refuses with OVERLOADED and Retry-After; a runner error reaches every request of its batch", async () => {
  let open!: () => void;
  const { runner } = rowSums(new Promise<void>((r) => (open = r)));
  const queue = new WorkQueue(runner, { concurrency: 1, maxQueue: 1 });
  const a = queue.infer(feed([[1, 0, 0]]));
  const b = queue.infer(feed([[2, 0, 0]]));
  const err = await queue.infer(feed([[3, 0, 0]])).catch((e) => e);
  expect(err.code).toBe("OVERLOADED");
  expect(err.headers["Retry-After"]).toMatch(/^\d+$/);
  open();
  await Promise.all([a, b]);

  const failing: BatchRunner = { ...runner, run: () => Promise.reject(new Error("kernel exploded")) };
  const q2 = new WorkQueue(failing, { concurrency: 1, maxQueue: 4, maxBatch: 4 });
  const errs = await Promise.all([1, 2].map((k) => q2.infer(feed([[k, 0, 0]])).catch((e: Error) => e.message)));
  expect(errs).toEqual(["kernel exploded", "kernel exploded"]);
  expect(q2.running).toBe(0);
});
