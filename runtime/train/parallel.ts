/**
 * Data-parallel training on several threads: the batch is split into shards, the calling thread
 * runs the first through its own TrainableGraph and each worker (train-worker.ts) one more through
 * a copy of the graph; the logits are concatenated for the loss and the parameter gradients of
 * the shards summed. Without batch statistics (no BatchNormalization in training graphs) this is
 * the same gradient as one thread's, up to float32 summation order.
 *
 * Per step the parameters the caller's model currently holds are copied into shared memory (the
 * workers' initializers are views of it), each worker's shard and gradient of its logits go
 * through shared memory, and the calling thread waits with Atomics.wait: forward and backward stay
 * synchronous, as the training loop expects. Only starting the workers is asynchronous.
 * @module
 */
import type { Model, Tensor } from "../../format/mod.ts";
import { sizeOf } from "../../format/mod.ts";
import { OpqRuntimeError, RUNTIME_ERROR_CODES as E } from "../errors.ts";
import { createTrainableGraph, type TrainableGraph, type TrainGraphOptions } from "./graph-grad.ts";

/** Control words of one worker (Int32 indices). */
export const TCTL = { SEQ: 0, DONE: 1, CMD: 2, STATUS: 3, ROWS: 4, READY: 5, ERROR_LENGTH: 6, WORDS: 8 } as const;
/** Bytes of a worker's error message kept in shared memory (the calling thread is blocked, so it cannot receive a message). */
export const ERROR_BYTES = 1024;
/** Commands. */
export const TCMD = { FORWARD: 1, BACKWARD: 2, STOP: 3 } as const;
/** How long a step may take on a worker before the run fails (a hung worker must not hang the run). */
const STEP_TIMEOUT_MS = 30 * 60_000;
const START_TIMEOUT_MS = 60_000;

/** The Worker constructor as this module found it (see cpu/worker-pool.ts for why it is captured). */
const WEB_WORKER: typeof Worker | undefined = typeof Worker === "undefined" ? undefined : Worker;

interface Slot {
  worker: Worker;
  ctl: Int32Array;
  /** Shared: input shard, logits, dLogits, gradients (params laid out as in `offsets`). */
  input: Float32Array;
  logits: Float32Array;
  dLogits: Float32Array;
  grads: Float32Array;
  rows: number;
  error: string;
}

/** A TrainableGraph over `threads` threads; `dispose` stops the workers. */
export interface ParallelTrainableGraph extends TrainableGraph {
  readonly threads: number;
  /** Stops the workers; forward and backward then run on the calling thread alone. */
  dispose(): void;
}

/**
 * Prepare `model` for training on `threads` threads (1: the plain TrainableGraph) for batches of
 * at most `maxBatch` images of `sampleDims` each (dims of one image, without the batch axis).
 * Each forward reads the current data of the model's parameter initializers, as TrainableGraph does.
 */
export async function createParallelTrainableGraph(model: Model, threads: number, maxBatch: number, sampleDims: readonly number[], options: TrainGraphOptions = {}): Promise<ParallelTrainableGraph> {
  const local = createTrainableGraph(model, options);
  if (threads <= 1 || !WEB_WORKER || maxBatch < 2) return Object.assign(local, { threads: 1, dispose() {} });
  const inits = model.graph.initializers;
  const offsets = new Map<string, number>();
  let total = 0;
  for (const p of local.params) { offsets.set(p, total); total += inits[p]!.data.length; }
  const paramBuffer = new SharedArrayBuffer(4 * total);
  const paramView = new Float32Array(paramBuffer);
  const sample = sizeOf(sampleDims);
  const workers = Math.min(threads, maxBatch) - 1;
  const shardMax = Math.ceil(maxBatch / (workers + 1));
  // Each worker gets a copy of the graph whose parameters are views of the shared buffer.
  const shell: Model = { ...model, graph: { ...model.graph, initializers: Object.fromEntries(Object.entries(inits).filter(([k]) => !offsets.has(k))) } };
  const slots: Slot[] = [];
  let classes = 0; // learned from the first forward
  const logitsMax = shardMax * 4096; // room for up to 4096 outputs per image
  for (let i = 0; i < workers; i++) {
    const ctlBuf = new SharedArrayBuffer(4 * TCTL.WORDS + ERROR_BYTES);
    const io = new SharedArrayBuffer(4 * (shardMax * sample + 2 * logitsMax + total));
    const worker = new WEB_WORKER(new URL("./train-worker.ts", import.meta.url), { type: "module" });
    (worker as unknown as { unref?: () => void }).unref?.();
    const slot: Slot = {
      worker, ctl: new Int32Array(ctlBuf), rows: 0, error: "",
      input: new Float32Array(io, 0, shardMax * sample),
      logits: new Float32Array(io, 4 * shardMax * sample, logitsMax),
      dLogits: new Float32Array(io, 4 * (shardMax * sample + logitsMax), logitsMax),
      grads: new Float32Array(io, 4 * (shardMax * sample + 2 * logitsMax), total),
    };
    worker.onmessage = (e: MessageEvent) => { if (e.data?.error) slot.error = String(e.data.error); };
    worker.onerror = (e: ErrorEvent) => { slot.error = e.message || "worker error"; e.preventDefault?.(); };
    worker.postMessage({ options: { wasm: options.wasm, keep: options.keep && [...options.keep] }, model: shell, params: [...offsets].map(([name, off]) => [name, off, inits[name]!.dims, inits[name]!.data.length]), paramBuffer, ctl: ctlBuf, io, shardMax, sample, sampleDims: [...sampleDims], logitsMax, total });
    slots.push(slot);
  }
  const started = performance.now();
  while (slots.some((s) => Atomics.load(s.ctl, TCTL.READY) === 0)) {
    const bad = slots.find((s) => s.error);
    if (bad || performance.now() - started > START_TIMEOUT_MS) {
      for (const s of slots) s.worker.terminate();
      throw new OpqRuntimeError(E.KERNEL_FAILED, `training worker did not start: ${bad?.error ?? "timeout"}`);
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  const command = (s: Slot, cmd: number, rows: number) => {
    s.ctl[TCTL.CMD] = cmd;
    s.ctl[TCTL.ROWS] = rows;
    Atomics.store(s.ctl, TCTL.STATUS, 0);
    Atomics.add(s.ctl, TCTL.SEQ, 1);
    Atomics.notify(s.ctl, TCTL.SEQ);
  };
  const wait = (s: Slot) => {
    const seq = Atomics.load(s.ctl, TCTL.SEQ), t0 = performance.now();
    while (Atomics.load(s.ctl, TCTL.DONE) !== seq) {
      if (performance.now() - t0 > STEP_TIMEOUT_MS) throw new OpqRuntimeError(E.KERNEL_FAILED, "a training worker timed out");
      Atomics.wait(s.ctl, TCTL.DONE, Atomics.load(s.ctl, TCTL.DONE), 100);
    }
    if (Atomics.load(s.ctl, TCTL.STATUS) !== 0) {
      const text = new Uint8Array(s.ctl.buffer, 4 * TCTL.WORDS, Math.min(ERROR_BYTES, s.ctl[TCTL.ERROR_LENGTH]!)).slice();
      throw new OpqRuntimeError(E.KERNEL_FAILED, `a training worker failed: ${new TextDecoder().decode(text) || s.error || "unknown error"}`);
    }
  };
  let outputDims: number[] = [];
  let localRows = 0;
  let disposed = false;
  return {
    params: local.params, inputName: local.inputName, outputName: local.outputName, threads: workers + 1,
    get outputDims() { return outputDims; },
    forward(input: Tensor) {
      const n = input.dims[0]!, x = input.data as Float32Array;
      if (n > maxBatch || x.length !== n * sample) throw new OpqRuntimeError(E.INPUT_INVALID, `batch [${input.dims}] does not fit ${maxBatch} images of [${sampleDims}]`);
      for (const [name, off] of offsets) paramView.set(inits[name]!.data as Float32Array, off);
      // Once disposed, everything runs on this thread.
      const per = disposed ? n : Math.ceil(n / (workers + 1));
      localRows = Math.min(per, n);
      let row = localRows;
      for (const s of slots) {
        s.rows = Math.max(0, Math.min(per, n - row));
        if (s.rows) { s.input.set(x.subarray(row * sample, (row + s.rows) * sample)); command(s, TCMD.FORWARD, s.rows); }
        row += s.rows;
      }
      const mine = local.forward({ dtype: "float32", dims: [localRows, ...input.dims.slice(1)], data: x.subarray(0, localRows * sample) });
      classes = mine.length / localRows;
      const out = new Float32Array(n * classes);
      out.set(mine);
      row = localRows;
      for (const s of slots) {
        if (!s.rows) continue;
        wait(s);
        out.set(s.logits.subarray(0, s.rows * classes), row * classes);
        row += s.rows;
      }
      outputDims = [n, ...local.outputDims.slice(1)];
      return out;
    },
    backward(dOutput: Float32Array) {
      let row = localRows;
      for (const s of slots) {
        if (!s.rows) continue;
        s.dLogits.set(dOutput.subarray(row * classes, (row + s.rows) * classes));
        command(s, TCMD.BACKWARD, s.rows);
        row += s.rows;
      }
      const grads = local.backward(dOutput.subarray(0, localRows * classes));
      for (const s of slots) {
        if (!s.rows) continue;
        wait(s);
        for (const [name, off] of offsets) {
          const g = grads.get(name)!, w = s.grads;
          for (let i = 0; i < g.length; i++) g[i] += w[off + i]!;
        }
      }
      return grads;
    },
    dispose() {
      if (disposed) return;
      disposed = true;
      for (const s of slots) { command(s, TCMD.STOP, 0); s.worker.terminate(); }
    },
  };
}
