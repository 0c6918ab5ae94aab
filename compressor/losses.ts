/**
 * Training losses over a batch of logits: softmax cross-entropy against the labels, optionally
 * mixed with knowledge distillation from a teacher's logits (Hinton, Vinyals, Dean 2015):
 *
 *   L = (1 − λ)·CE(z, y) + λ·T²·(1/N) Σ_n KL(softmax(t_n/T) ‖ softmax(z_n/T))
 *   ∂L/∂z_n = (1 − λ)·(softmax(z_n) − onehot(y_n))/N + λ·T·(softmax(z_n/T) − softmax(t_n/T))/N
 *
 * The T² factor keeps the soft term's gradient on the scale of the hard one as T grows.
 * @module
 */
import { COMPRESS_ERROR_CODES as E, ensure } from "./errors.ts";

/** Distillation settings: temperature T > 0 and the weight λ ∈ [0, 1] of the soft term. */
export interface DistillOptions {
  temperature: number;
  weight: number;
}

/** Defaults of `--distill`: T = 4, λ = 0.5 (equal weight to labels and teacher). */
export const DISTILL_DEFAULTS: Readonly<DistillOptions> = { temperature: 4, weight: 0.5 };

/** Loss, its gradient and the top-1 hits of one batch. */
export interface BatchLoss {
  /** Mean loss over the batch (the mixed loss under distillation). */
  loss: number;
  /** ∂loss/∂logits, same layout as the logits ([batch, classes]). */
  dLogits: Float32Array;
  /** Rows whose largest logit is the label (ties: lowest index). */
  correct: number;
}

/** softmax(row/T) of `classes` values at `o`, into `out` at 0; returns log Σ exp((z − max)/T) and the max. */
function softmaxRow(z: Float32Array, o: number, classes: number, t: number, out: Float64Array): { lse: number; max: number } {
  let max = -Infinity;
  for (let c = 0; c < classes; c++) if (z[o + c]! > max) max = z[o + c]!;
  let sum = 0;
  for (let c = 0; c < classes; c++) { const e = Math.exp((z[o + c]! - max) / t); out[c] = e; sum += e; }
  for (let c = 0; c < classes; c++) out[c]! /= sum;
  return { lse: Math.log(sum), max };
}

/**
 * Cross-entropy of `logits` ([labels.length, classes]) against integer labels, mixed with the
 * distillation term when `teacher` logits (same layout) and options are given.
 */
export function classificationLoss(
  logits: Float32Array, labels: ArrayLike<number>, classes: number, teacher?: Float32Array, kd?: DistillOptions,
): BatchLoss {
  const n = labels.length;
  ensure(n > 0 && logits.length === n * classes, E.INVALID_OPTION, `logits have ${logits.length} values, expected ${n}·${classes}`);
  if (teacher) {
    ensure(teacher.length === logits.length, E.INVALID_OPTION, `teacher logits have ${teacher.length} values, the student's ${logits.length}`);
    ensure(kd && kd.temperature > 0 && kd.weight >= 0 && kd.weight <= 1, E.INVALID_OPTION, "distillation needs a temperature > 0 and a weight in [0, 1]");
  }
  const lambda = teacher ? kd!.weight : 0, t = teacher ? kd!.temperature : 1;
  const d = new Float32Array(logits.length);
  const p = new Float64Array(classes), ps = new Float64Array(classes), pt = new Float64Array(classes);
  let loss = 0, correct = 0;
  for (let i = 0; i < n; i++) {
    const o = i * classes, y = labels[i]!;
    ensure(y >= 0 && y < classes && Number.isInteger(y), E.INVALID_OPTION, `label ${y} of row ${i} is not a class in [0, ${classes})`);
    const { lse, max } = softmaxRow(logits, o, classes, 1, p);
    let arg = 0;
    for (let c = 1; c < classes; c++) if (logits[o + c]! > logits[o + arg]!) arg = c;
    if (arg === y) correct++;
    loss += (1 - lambda) * (lse - (logits[o + y]! - max));
    for (let c = 0; c < classes; c++) d[o + c] = (1 - lambda) * (p[c]! - (c === y ? 1 : 0)) / n;
    if (!teacher || lambda === 0) continue;
    const s = softmaxRow(logits, o, classes, t, ps), q = softmaxRow(teacher, o, classes, t, pt);
    // KL(pt ‖ ps) = Σ pt·(log pt − log ps), log p_c = (z_c − max)/T − lse.
    let kl = 0;
    for (let c = 0; c < classes; c++) {
      if (pt[c]! > 0) kl += pt[c]! * (((teacher[o + c]! - q.max) / t - q.lse) - ((logits[o + c]! - s.max) / t - s.lse));
      d[o + c] += lambda * t * (ps[c]! - pt[c]!) / n;
    }
    loss += lambda * t * t * kl;
  }
  return { loss: loss / n, dLogits: d, correct };
}
