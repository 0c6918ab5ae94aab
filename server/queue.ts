/**
 * A bounded work queue per model: at most `concurrency` runs at once, at most `maxQueue` requests
 * waiting. Past that the server sheds load (OVERLOADED → 503 with Retry-After) instead of letting
 * memory and latency grow without bound.
 *
 * Micro-batching: when a slot frees, the requests waiting at the head with the same input
 * signature (names, dtypes, every dimension after the batch dimension) are concatenated along
 * dimension 0, up to `maxBatch` images, run once, and the outputs split back. It only happens
 * under load (an idle model waits only `batchWindowMs` for company), only for models whose inputs
 * and outputs all have a dynamic batch dimension, and the rows equal unbatched runs up to float
 * rounding (a batched GEMM may sum in another order; a test checks 1e-5 and equal top-1). On
 * ResNet-20 a batch of 16 costs about half as much per image as 16 single runs.
 *
 * Deadlines: a request whose deadline passes while it waits leaves the queue (TIMEOUT); one whose
 * deadline passes while it runs is answered TIMEOUT at once, and the run's AbortSignal fires: a
 * runner that can cancel (worker-runner.ts) stops and frees the slot then; one that cannot keeps
 * its slot until the kernel really returns, so the concurrency bound is never a fiction.
 * @module
 */
import type { Tensor, ValueInfo } from "../format/mod.ts";
import { ServerError, SERVER_ERROR_CODES as E } from "./errors.ts";

/** Limits of one queue. */
export interface QueueLimits {
  /** Runs at once (default 1: a CPU session already uses the cores it is given). */
  concurrency: number;
  /** Requests that may wait for a slot; one more is refused with OVERLOADED. */
  maxQueue: number;
  /** Most images one run may batch from waiting requests (1 = no micro-batching). */
  maxBatch?: number;
  /**
   * With micro-batching, how long (ms) an idle model waits for more requests before it runs
   * (default 1). Kernels run on the event loop, so without a window a run would start on the
   * first request and block the others from even being read.
   */
  batchWindowMs?: number;
}

/** What the queue runs (a runtime Session satisfies it). */
export interface BatchRunner {
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  /** `signal` fires at the run's deadline: a runner that can cancel (a worker) rejects at once and frees the slot. */
  run(feeds: Record<string, Tensor>, signal?: AbortSignal): Promise<Record<string, Tensor>>;
}

/** Timing of one request: how long it waited, how long its run took, how many images that run held. */
export interface JobTiming {
  queueMs: number;
  runMs: number;
  batch: number;
}

interface Pending {
  feeds: Record<string, Tensor>;
  images: number;
  /** Requests with equal keys can share a run; null never shares. */
  key: string | null;
  queuedAt: number;
  deadline: number;
  settled: boolean;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** The running batch's cancel, once dispatched: fired before the 504 so the slot is free when the client hears back. */
  abort?: AbortController;
  resolve(value: { value: Record<string, Tensor>; timing: JobTiming }): void;
  reject(err: unknown): void;
}

const isDynamic = (d: unknown) => typeof d !== "number" || d < 0;

/** True if every input and output of the model has a dynamic first (batch) dimension. */
export function canBatch(runner: Pick<BatchRunner, "inputs" | "outputs">): boolean {
  const ok = (v: ValueInfo) => v.shape !== null && v.shape.length > 0 && isDynamic(v.shape[0]);
  return runner.inputs.length > 0 && runner.inputs.every(ok) && runner.outputs.every(ok);
}

/** The signature requests must share to be batched: names, dtypes and non-batch dimensions. */
export function batchKey(feeds: Record<string, Tensor>): { key: string; images: number } | null {
  const names = Object.keys(feeds).sort();
  let images = -1;
  const parts: string[] = [];
  for (const name of names) {
    const t = feeds[name]!;
    if (t.dims.length === 0 || !(t.data instanceof Float32Array)) return null;
    if (images >= 0 && t.dims[0] !== images) return null;
    images = t.dims[0]!;
    parts.push(`${name}:${t.dtype}:${t.dims.slice(1).join("x")}`);
  }
  return images > 0 ? { key: parts.join("|"), images } : null;
}

/** Concatenate feeds along dimension 0 (all share one batchKey). */
export function concatFeeds(list: readonly Record<string, Tensor>[]): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const name of Object.keys(list[0]!)) {
    const parts = list.map((f) => f[name]!);
    const total = parts.reduce((s, t) => s + t.data.length, 0);
    const data = new Float32Array(total);
    let offset = 0;
    for (const t of parts) {
      data.set(t.data as Float32Array, offset);
      offset += t.data.length;
    }
    out[name] = { dtype: parts[0]!.dtype, dims: [parts.reduce((s, t) => s + t.dims[0]!, 0), ...parts[0]!.dims.slice(1)], data };
  }
  return out;
}

/** Split a batched run's outputs back into per-request outputs of `sizes` rows; null if they do not split. */
export function splitOutputs(outputs: Record<string, Tensor>, sizes: readonly number[]): Record<string, Tensor>[] | null {
  const total = sizes.reduce((a, b) => a + b, 0);
  const result: Record<string, Tensor>[] = sizes.map(() => ({}));
  for (const [name, t] of Object.entries(outputs)) {
    if (t.dims[0] !== total || !(t.data instanceof Float32Array)) return null;
    const row = t.data.length / total;
    let start = 0;
    sizes.forEach((n, i) => {
      result[i]![name] = { dtype: t.dtype, dims: [n, ...t.dims.slice(1)], data: (t.data as Float32Array).slice(start * row, (start + n) * row) };
      start += n;
    });
  }
  return result;
}

/** A FIFO of infer requests for one runner under QueueLimits. */
export class WorkQueue {
  private active = 0;
  private readonly waiting: Pending[] = [];
  /** Exponential moving average of run time, for Retry-After. */
  private avgRunMs = 0;
  private readonly batching: boolean;

  constructor(private readonly runner: BatchRunner, readonly limits: QueueLimits) {
    this.batching = (limits.maxBatch ?? 1) > 1 && canBatch(runner);
  }

  /** Runs finished or failed so far (a micro-batched run counts once). */
  runs = 0;
  /** Images those runs held. */
  images = 0;

  /** Runs in progress. */
  get running(): number { return this.active; }
  /** Requests waiting for a slot. */
  get depth(): number { return this.waiting.length; }

  /**
   * Run `feeds` when a slot is free. Rejects with OVERLOADED if the queue is full, TIMEOUT if
   * `deadline` (a performance.now() time) passes first, or with the runner's error.
   */
  infer(feeds: Record<string, Tensor>, deadline = Infinity): Promise<{ value: Record<string, Tensor>; timing: JobTiming }> {
    if (this.active >= this.limits.concurrency && this.waiting.length >= this.limits.maxQueue) {
      const perRun = Math.max(this.avgRunMs, 1);
      const seconds = Math.max(1, Math.ceil(((this.waiting.length + 1) * perRun) / this.limits.concurrency / 1000));
      return Promise.reject(new ServerError(E.OVERLOADED, `model queue is full (${this.active} running, ${this.waiting.length} waiting); retry after ${seconds} s`, { "Retry-After": String(seconds) }));
    }
    return new Promise((resolve, reject) => {
      const sig = this.batching ? batchKey(feeds) : null;
      const p: Pending = {
        feeds, images: sig?.images ?? 1, key: sig?.key ?? null, queuedAt: performance.now(), deadline, settled: false, timer: undefined,
        resolve: (v) => { if (!p.settled) { p.settled = true; clearTimeout(p.timer); resolve(v); } },
        reject: (e) => { if (!p.settled) { p.settled = true; clearTimeout(p.timer); reject(e); } },
      };
      if (Number.isFinite(deadline)) {
        p.timer = setTimeout(() => {
          const i = this.waiting.indexOf(p);
          if (i >= 0) {
            this.waiting.splice(i, 1);
            p.reject(new ServerError(E.TIMEOUT, "request timed out waiting in the model's queue"));
          } else {
            const err = new ServerError(E.TIMEOUT, `request timed out after running ${(performance.now() - p.queuedAt).toFixed(0)} ms`);
            // Cancel the run first (a worker runner rejects at once and frees the slot), then answer:
            // a client that retries on the 504 must not find the slot still taken (503).
            if (p.abort && !p.abort.signal.aborted && this.#alone(p)) p.abort.abort(err);
            p.reject(err);
          }
        }, Math.max(0, deadline - performance.now()));
      }
      this.waiting.push(p);
      this.schedule();
    });
  }

  /** True if every other request sharing `p`'s run is settled or past its deadline (cancelling it costs nobody a result). */
  #alone(p: Pending): boolean {
    return this.#batches.get(p.abort!)?.every((q) => q === p || q.settled || q.deadline <= performance.now()) ?? true;
  }
  #batches = new Map<AbortController, Pending[]>();

  private scheduled = false;

  /** Dispatch now, or after the batch window when micro-batching gathers requests. */
  private schedule(): void {
    if (!this.batching) return this.dispatch();
    if (this.scheduled || this.active >= this.limits.concurrency) return;
    this.scheduled = true;
    setTimeout(() => {
      this.scheduled = false;
      this.dispatch();
    }, this.limits.batchWindowMs ?? 1);
  }

  /** Start runs while slots are free. */
  private dispatch(): void {
    while (this.active < this.limits.concurrency && this.waiting.length > 0) {
      const head = this.waiting.shift()!;
      const batch = [head];
      if (head.key !== null) {
        let images = head.images;
        const max = this.limits.maxBatch ?? 1;
        for (let i = 0; i < this.waiting.length && images < max;) {
          const p = this.waiting[i]!;
          if (p.key === head.key && images + p.images <= max) {
            batch.push(p);
            images += p.images;
            this.waiting.splice(i, 1);
          } else i++;
        }
      }
      this.active++;
      void this.runBatch(batch);
    }
  }

  private async runBatch(batch: Pending[]): Promise<void> {
    const started = performance.now();
    this.runs++;
    this.images += batch.reduce((s, p) => s + p.images, 0);
    // Past the last deadline of the batch nobody waits for the result: cancel the run.
    const until = Math.max(...batch.map((p) => p.deadline));
    const abort = new AbortController();
    const cancel = Number.isFinite(until)
      ? setTimeout(() => abort.abort(new ServerError(E.TIMEOUT, `run cancelled at the request deadline after ${(performance.now() - started).toFixed(0)} ms`)), Math.max(0, until - started))
      : undefined;
    const signal = abort.signal;
    for (const p of batch) p.abort = abort;
    this.#batches.set(abort, batch);
    try {
      if (batch.length === 1) {
        const value = await this.runner.run(batch[0]!.feeds, signal);
        this.finish(batch[0]!, value, started, batch[0]!.images);
        return;
      }
      const images = batch.reduce((s, p) => s + p.images, 0);
      const outputs = await this.runner.run(concatFeeds(batch.map((p) => p.feeds)), signal);
      const split = splitOutputs(outputs, batch.map((p) => p.images));
      if (split) {
        batch.forEach((p, i) => this.finish(p, split[i]!, started, images));
      } else {
        // Outputs without a batch dimension after all: run each request on its own.
        for (const p of batch) this.finish(p, await this.runner.run(p.feeds, signal), started, p.images);
      }
    } catch (e) {
      for (const p of batch) p.reject(e);
    } finally {
      clearTimeout(cancel);
      this.#batches.delete(abort);
      const ms = performance.now() - started;
      this.avgRunMs = this.avgRunMs === 0 ? ms : 0.9 * this.avgRunMs + 0.1 * ms;
      this.active--;
      this.schedule();
    }
  }

  private finish(p: Pending, value: Record<string, Tensor>, started: number, batch: number): void {
    p.resolve({ value, timing: { queueMs: started - p.queuedAt, runMs: performance.now() - started, batch } });
  }
}
