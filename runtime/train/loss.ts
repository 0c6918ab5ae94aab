/**
 * Softmax cross-entropy over a batch of logits, the classification loss of OPQ's finetuning
 * (ALGORITHMS.md §3): `L = −(1/N) Σ_n log softmax(z_n)[y_n]`, `∂L/∂z_n = (softmax(z_n) − onehot(y_n)) / N`.
 * @module
 */

/** Loss, its gradient and the top-1 hits of one batch. */
export interface CrossEntropy {
  /** Mean negative log-likelihood over the batch. */
  loss: number;
  /** ∂loss/∂logits, same layout as the logits ([batch, classes]). */
  dLogits: Float32Array;
  /** Number of rows whose largest logit is the label (ties: lowest index). */
  correct: number;
}

/** Softmax cross-entropy of `logits` ([labels.length, classes], row-major) against integer labels. */
export function softmaxCrossEntropy(logits: Float32Array, labels: ArrayLike<number>, classes: number): CrossEntropy {
  const n = labels.length;
  if (logits.length !== n * classes) throw new RangeError(`logits have ${logits.length} values, expected ${n}·${classes}`);
  const d = new Float32Array(logits.length);
  let loss = 0, correct = 0;
  for (let i = 0; i < n; i++) {
    const o = i * classes, y = labels[i]!;
    if (!(y >= 0 && y < classes)) throw new RangeError(`label ${y} of row ${i} is not a class in [0, ${classes})`);
    let max = -Infinity, arg = 0;
    for (let c = 0; c < classes; c++) if (logits[o + c]! > max) { max = logits[o + c]!; arg = c; }
    if (arg === y) correct++;
    // Shift by the max so exp never overflows (log-sum-exp).
    let sum = 0;
    for (let c = 0; c < classes; c++) sum += Math.exp(logits[o + c]! - max);
    loss += Math.log(sum) - (logits[o + y]! - max);
    for (let c = 0; c < classes; c++) d[o + c] = (Math.exp(logits[o + c]! - max) / sum - (c === y ? 1 : 0)) / n;
  }
  return { loss: loss / n, dLogits: d, correct };
}
