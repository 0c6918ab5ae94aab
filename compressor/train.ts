/**
 * The training loop every compression method trains with: mini-batch SGD with momentum and L2
 * weight decay (as torch.optim.SGD: v ← μv + g + λw, w ← w − ηv), a constant, cosine or step
 * learning-rate schedule, optional distillation from a teacher's logits, and a checkpoint
 * every epoch so an interrupted run resumes where it stopped. The compressor does not import
 * the runtime: the differentiable graph (forward with a tape, backward to the weights it
 * reads) is handed in, and a `TrainMethod` decides what the graph sees (Ŵ from the master
 * weights W: masks, quantizers) and how gradients of Ŵ become gradients of W.
 *
 * Determinism: epoch e visits the images in a permutation seeded by (seed, e) only, so a run
 * resumed from the checkpoint of epoch e takes exactly the steps of an uninterrupted run.
 * @module
 */
import { mulberry32, type Tensor } from "../format/mod.ts";
import { loadCheckpoint, saveCheckpoint } from "./checkpoint.ts";
import { COMPRESS_ERROR_CODES as E, ensure } from "./errors.ts";
import { classificationLoss, type DistillOptions } from "./losses.ts";

/** A differentiable network: forward keeps a tape, backward returns ∂L/∂(each weight it reads). */
export interface TrainGraph {
  forward(input: Tensor): Float32Array;
  backward(dOutput: Float32Array): Map<string, Float32Array>;
}

/** Training images: how many, and one batch of them by index. */
export interface TrainData {
  count: number;
  /** Images `order[start .. start + n)`: NCHW data, its dims and the labels (the loop is done with them before the next call, so a source may reuse its arrays). */
  gather(order: Uint32Array, start: number, n: number): { data: Float32Array; dims: number[]; labels: ArrayLike<number> };
}

/** Where the loop is: step (0-based), its epoch, the total and the learning rate in force. */
export interface StepContext {
  step: number;
  epoch: number;
  steps: number;
  stepsPerEpoch: number;
  lr: number;
}

/**
 * What a compression method adds to plain training. All hooks are optional; without any the
 * graph trains on the master weights directly.
 */
export interface TrainMethod {
  /** Before each step: write what the graph reads (Ŵ) from the master weights. */
  prepare?(master: ReadonlyMap<string, Float32Array>, ctx: StepContext): void;
  /** After backward: turn ∂L/∂Ŵ into ∂L/∂W in place (straight-through), add gradients of extra parameters. */
  gradients?(grads: Map<string, Float32Array>, master: ReadonlyMap<string, Float32Array>, ctx: StepContext): void;
  /** 1 where a weight trains, 0 where it stays fixed (no gradient, no decay); undefined: all train. */
  trainable?(name: string): Uint8Array | undefined;
  /** Whether weight decay applies to `name` (default: yes). */
  decays?(name: string): boolean;
  /** After the last step of an epoch (before its checkpoint): e.g. re-select pruned filters. */
  endEpoch?(master: Map<string, Float32Array>, epoch: number): void;
  /** Method state to checkpoint beside the weights, and to restore on resume. */
  saveState?(): Map<string, Float32Array>;
  loadState?(state: ReadonlyMap<string, Float32Array>): void;
}

/** Learning-rate schedules: constant, cosine decay to 0 over the run, or ×gamma at each milestone epoch. */
export type LrSchedule = { kind: "constant" } | { kind: "cosine" } | { kind: "step"; milestones: number[]; gamma: number };

/** Options of the loop. */
export interface TrainOptions {
  /** Total steps (an epoch is ⌊count / batch⌋ steps; the last partial batch of each epoch is skipped). */
  steps: number;
  batch: number;
  lr: number;
  momentum: number;
  weightDecay: number;
  schedule: LrSchedule;
  seed: number;
  /** Checkpoint file, written at the end of every epoch and of the run, read on start to resume. */
  checkpoint?: string;
  /** Part of the checkpoint's fingerprint: a resume with a different model or method is refused. */
  runId?: string;
  /** Stop after this many steps have completed in total (an interruption, for tests and time budgets). */
  stopAt?: number;
  /**
   * Distillation: the teacher's logits for a batch (its input, and the images' indices in `data`,
   * so a teacher can look up logits computed once, e.g. the FP32 model's), and the mix.
   */
  distill?: { teacher: (input: Tensor, images: Uint32Array) => Float32Array; options: DistillOptions };
}

/** One step's figures. */
export interface StepStats {
  step: number;
  epoch: number;
  lr: number;
  loss: number;
  correct: number;
  images: number;
}

/** Learning rate at `step` of `steps` (epoch-based for the step schedule). */
export function learningRate(o: Pick<TrainOptions, "lr" | "schedule">, step: number, steps: number, epoch: number): number {
  const s = o.schedule;
  if (s.kind === "cosine") return 0.5 * o.lr * (1 + Math.cos(Math.PI * step / Math.max(1, steps)));
  if (s.kind === "step") return o.lr * s.gamma ** s.milestones.filter((m) => epoch >= m).length;
  return o.lr;
}

/** The permutation of [0, n) visited in `epoch`: Fisher–Yates from a PRNG seeded by (seed, epoch). */
export function epochOrder(n: number, seed: number, epoch: number): Uint32Array {
  const rnd = mulberry32((seed ^ Math.imul(epoch + 1, 0x9e3779b1)) >>> 0);
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    const t = p[i]!; p[i] = p[j]!; p[j] = t;
  }
  return p;
}

/** Steps per epoch for `count` images in batches of `batch` (at least 1). */
export function stepsPerEpoch(count: number, batch: number): number {
  return Math.max(1, Math.floor(count / Math.min(batch, count)));
}

/**
 * Train `master` (the weights W, updated in place) on `data`. Resumes from `o.checkpoint` when
 * it exists (and matches the run's fingerprint). Returns the figures of the steps this call ran
 * and the step it resumed from (0 when it started fresh).
 */
export function trainLoop(
  graph: TrainGraph, master: Map<string, Float32Array>, data: TrainData, o: TrainOptions, method: TrainMethod = {},
  onStep?: (s: StepStats) => void,
): { history: StepStats[]; resumedFrom: number; completed: number } {
  ensure(Number.isInteger(o.steps) && o.steps >= 0, E.INVALID_OPTION, `steps must be a whole number ≥ 0, got ${o.steps}`);
  ensure(Number.isInteger(o.batch) && o.batch >= 1, E.INVALID_OPTION, `batch must be a whole number ≥ 1, got ${o.batch}`);
  ensure(data.count >= 1, E.INVALID_OPTION, "no training images");
  ensure(o.lr >= 0 && o.momentum >= 0 && o.momentum < 1 && o.weightDecay >= 0, E.INVALID_OPTION, "lr ≥ 0, momentum in [0, 1) and weight decay ≥ 0 are required");
  const n = Math.min(o.batch, data.count), perEpoch = stepsPerEpoch(data.count, o.batch);
  const velocity = new Map([...master].map(([k, w]) => [k, new Float32Array(w.length)]));
  const fingerprint = JSON.stringify({ run: o.runId ?? "", steps: o.steps, batch: n, count: data.count, seed: o.seed, lr: o.lr, schedule: o.schedule, weights: [...master].map(([k, w]) => [k, w.length]) });
  let start = 0;
  if (o.checkpoint) {
    const c = loadCheckpoint(o.checkpoint, fingerprint);
    if (c) {
      for (const [k, w] of master) {
        const cw = c.tensors.get(`w:${k}`), cv = c.tensors.get(`v:${k}`);
        ensure(cw && cv && cw.length === w.length && cv.length === w.length, E.CHECKPOINT, `checkpoint ${o.checkpoint} lacks ${k}`);
        w.set(cw);
        velocity.get(k)!.set(cv);
      }
      const state = new Map([...c.tensors].filter(([k]) => k.startsWith("s:")).map(([k, v]) => [k.slice(2), v]));
      method.loadState?.(state);
      start = Math.min(c.step, o.steps);
    }
  }
  const save = (step: number) => {
    if (!o.checkpoint) return;
    const tensors = new Map<string, Float32Array>();
    for (const [k, w] of master) { tensors.set(`w:${k}`, w); tensors.set(`v:${k}`, velocity.get(k)!); }
    for (const [k, v] of method.saveState?.() ?? []) tensors.set(`s:${k}`, v);
    saveCheckpoint(o.checkpoint, { step, fingerprint, tensors });
  };
  const end = Math.min(o.steps, o.stopAt ?? Infinity);
  const history: StepStats[] = [];
  let order: Uint32Array | undefined, orderEpoch = -1;
  for (let step = start; step < end; step++) {
    const epoch = Math.floor(step / perEpoch);
    if (epoch !== orderEpoch) { order = epochOrder(data.count, o.seed, epoch); orderEpoch = epoch; }
    const ctx: StepContext = { step, epoch, steps: o.steps, stepsPerEpoch: perEpoch, lr: learningRate(o, step, o.steps, epoch) };
    method.prepare?.(master, ctx);
    const first = (step % perEpoch) * n;
    const batch = data.gather(order!, first, n);
    const input: Tensor = { dtype: "float32", dims: batch.dims, data: batch.data };
    const logits = graph.forward(input);
    const classes = logits.length / n;
    const teacher = o.distill?.teacher(input, order!.subarray(first, first + n));
    const l = classificationLoss(logits, batch.labels, classes, teacher, o.distill?.options);
    // A diverged run stops here (before its weights are overwritten with NaN and checkpointed).
    ensure(Number.isFinite(l.loss), E.NUMERIC, `the training loss is ${l.loss} at step ${step + 1}: the run diverged; start again with a lower --lr (now ${o.lr})`);
    const grads = graph.backward(l.dLogits);
    method.gradients?.(grads, master, ctx);
    for (const [k, w] of master) {
      const g = grads.get(k);
      if (!g) continue;
      const v = velocity.get(k)!, mask = method.trainable?.(k), wd = method.decays?.(k) === false ? 0 : o.weightDecay;
      const mu = o.momentum, lr = ctx.lr;
      for (let i = 0; i < w.length; i++) {
        if (mask && !mask[i]) continue;
        const vi = mu * v[i]! + g[i]! + wd * w[i]!;
        v[i] = vi;
        w[i] -= lr * vi;
      }
    }
    const s: StepStats = { step, epoch, lr: ctx.lr, loss: l.loss, correct: l.correct, images: n };
    history.push(s);
    onStep?.(s);
    const done = step + 1;
    if (done % perEpoch === 0) method.endEpoch?.(master, epoch);
    if (done % perEpoch === 0 || done === o.steps) save(done);
  }
  return { history, resumedFrom: start, completed: end > start ? end : start };
}
