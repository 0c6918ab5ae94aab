/**
 * Ops of opq's own domain `ai.opq` (format/SPEC.md §"Operators of the ai.opq domain"), with their
 * reference kernel and their backward side by side.
 *
 * `ApotQuantize` (since 1): unsigned activation quantization onto additive-powers-of-two levels
 * (APoT, Li, Dong, Wang, ICLR 2020; ALGORITHMS.md §4), the quantizer SPQ/PPQ put after each ReLU.
 * Inputs X (float32) and α (a float32 scalar, the learned clipping value); attribute `levels`
 * (floats, strictly increasing, first 0, last 1). With t = x/α (float64),
 *   y = α · levels[k],  k = the level nearest to clamp(t, 0, 1) (a midpoint rounds up),
 * computed as `fround(α · fround(levels[k]))`, so training and inference give identical bits.
 * Backward (straight-through for the rounding, the APoT paper's α gradient):
 *   ∂y/∂x = [0 ≤ t ≤ 1],  ∂y/∂α = q − t for 0 ≤ t ≤ 1, 1 for t > 1, 0 for t < 0.
 * @module
 */
import type { Tensor } from "../../format/mod.ts";
import { type Attrs, type Backward, freshAlloc, type GradOp, type Kernel, KernelError, type OpVersion } from "./types.ts";

/** The domain of opq's own operators. */
export const OPQ_DOMAIN = "ai.opq";

/** Validated levels of an ApotQuantize node, as float32 values, with the midpoints between them. */
function levelsOf(attrs: Attrs): { levels: Float32Array; mids: Float64Array } {
  const raw = attrs.floats("levels");
  if (raw.length < 2 || raw.length > 256) throw new KernelError(`ApotQuantize: 'levels' needs 2 to 256 values, got ${raw.length}`);
  const levels = Float32Array.from(raw);
  if (levels[0] !== 0 || levels[levels.length - 1] !== 1) throw new KernelError("ApotQuantize: 'levels' must start at 0 and end at 1");
  for (let i = 1; i < levels.length; i++) if (!(levels[i]! > levels[i - 1]!)) throw new KernelError("ApotQuantize: 'levels' must be strictly increasing");
  const mids = new Float64Array(levels.length - 1);
  for (let i = 0; i < mids.length; i++) mids[i] = (levels[i]! + levels[i + 1]!) / 2;
  return { levels, mids };
}

/** α from input 1: one finite float32 value > 0. */
function alphaOf(t: Tensor | undefined): number {
  if (!t || !(t.data instanceof Float32Array) || t.data.length !== 1) throw new KernelError("ApotQuantize: alpha must be a float32 tensor of one value");
  const a = t.data[0]!;
  if (!(a > 0) || !Number.isFinite(a)) throw new KernelError(`ApotQuantize: alpha must be finite and > 0, got ${a}`);
  return a;
}

/** Buckets of [0, 1) whose first candidate level apotQuantize looks up (then steps past the midpoints ≤ t). */
const BUCKETS = 1024;

/**
 * y = ApotQuantize(x; α, levels) into `out` (may be x). The level is the count of midpoints ≤ t (a
 * midpoint rounds up), found from a table per bucket of [0, 1) (how many midpoints lie below the
 * bucket's start − ½ bucket: a lower bound for any t in it, exact unless a midpoint is near) and a
 * scan past the rest, not a binary search, whose data-dependent branches cost more than the rest
 * of the loop: ResNet-20's 19 quantizers took ~1.1 s of a 128-image SPQ training step (one core of
 * a loaded machine), ~0.17 s now. For the same reason x ≤ 0 (about half of a ReLU's outputs) is
 * clamped to +0 on its bits (sign bit set: 0) rather than by a branch; t = 0 then falls on level 0.
 */
export function apotQuantize(x: Float32Array, alpha: number, levels: Float32Array, mids: Float64Array, out: Float32Array): void {
  const scaled = levels.map((l) => Math.fround(alpha * l)), top = scaled[levels.length - 1]!;
  const n = mids.length;
  // Midpoints then +∞ (the scan stops there); the bucket table.
  const bounds = new Float64Array(n + 1);
  bounds.set(mids);
  bounds[n] = Infinity;
  const first = new Uint16Array(BUCKETS + 1);
  for (let b = 0, k = 0; b <= BUCKETS; b++) {
    while (k < n && mids[k]! < (b - 0.5) / BUCKETS) k++;
    first[b] = k;
  }
  const xi = new Int32Array(x.buffer, x.byteOffset, x.length), oi = new Int32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < x.length; i++) {
    const bits = xi[i]!;
    oi[i] = bits & ~(bits >> 31); // max(x, +0), NaN with the sign bit → 0 as the binary search gave
    const t = out[i]! / alpha;
    if (t >= 1) { out[i] = top; continue; }
    let k = first[(t * BUCKETS) | 0]!; // NaN → bucket 0 → level 0
    while (t >= bounds[k]!) k++;
    out[i] = scaled[k]!;
  }
}

const apotQuantizeKernel: Kernel = (inputs, attrs, ctx) => {
  const x = inputs[0];
  if (!x || !(x.data instanceof Float32Array)) throw new KernelError("ApotQuantize: X must be a float32 tensor");
  const { levels, mids } = levelsOf(attrs);
  const out = ctx.alloc ? ctx.alloc(x.data.length) : new Float32Array(x.data.length);
  apotQuantize(x.data, alphaOf(inputs[1]), levels, mids, out);
  return [{ dtype: "float32", dims: [...x.dims], data: out }];
};

/** Forward and backward of ApotQuantize for the autograd (runtime/train): the same kernel, then the STE gradients. */
export const apotQuantizeGrad: GradOp = (inputs, attrs, alloc = freshAlloc) => {
  const x = inputs[0];
  if (!x || !(x.data instanceof Float32Array)) throw new KernelError("ApotQuantize: X must be a float32 tensor");
  const xd = x.data, alpha = alphaOf(inputs[1]);
  const { levels, mids } = levelsOf(attrs);
  // The training graph's buffers (reused step after step): fresh arrays here, ~40 MB a step per
  // shard for ResNet-20's 19 quantizers at batch 128, were what an SPQ run's RSS grew by.
  const y = alloc(xd.length, false);
  apotQuantize(xd, alpha, levels, mids, y);
  const backward: Backward = ([dy], needs) => {
    if (!dy) return [];
    const dx = needs[0] ? alloc(xd.length) : undefined;
    let da = 0;
    for (let i = 0; i < xd.length; i++) {
      const t = xd[i]! / alpha, g = dy[i]!;
      if (t < 0) continue;
      if (t > 1) { da += g; continue; }
      if (dx) dx[i] = g;
      da += g * (y[i]! / alpha - t);
    }
    return [dx, needs[1] ? Float32Array.of(da) : undefined];
  };
  return { outputs: [{ dtype: "float32", dims: [...x.dims], data: y }], backward };
};

/** The `ai.opq` op table (by op type; versions are the `ai.opq` opset). */
export const OPQ_DOMAIN_OPS: Record<string, OpVersion[]> = {
  ApotQuantize: [{ since: 1, kernel: apotQuantizeKernel, grad: apotQuantizeGrad }],
};
