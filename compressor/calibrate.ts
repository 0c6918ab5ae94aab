/**
 * Post-training error compensation of one compressed layer with its mask and grid held fixed:
 * the OBS/OBC/GPTQ family (Hassibi & Stork 1993; Frantar & Alistarh, "Optimal Brain
 * Compression", NeurIPS 2022; Frantar et al., "GPTQ", ICLR 2023) plus bias correction (Nagel et
 * al., "Data-Free Quantization", ICCV 2019). Pure functions: weights, mask, grid and the layer's
 * collected inputs in, new codes out. Which inputs a layer sees is calibrate-model.ts's business.
 *
 * Notation: a layer computes y = W x + b with W ∈ ℝ^{R×K} (R output channels, K inputs per
 * output; for Conv a row is one filter of a group, x one im2col patch of that group), and X the
 * K×n matrix of the n calibration inputs. The layer-wise objective (OBC Eq. 1, GPTQ Eq. 1) is
 *   min_Ŵ ‖W X − Ŵ X‖²_F  subject to  Ŵ_rc = 0 where the mask is 0, Ŵ_rc ∈ grid elsewhere,
 * which splits into R independent quadratics Δ_r H Δ_rᵀ with the shared Hessian H = 2 X Xᵀ (the
 * factor 2 cancels everywhere below, so H = X Xᵀ here).
 * @module
 */
import { COMPRESS_ERROR_CODES as E, ensure } from "./errors.ts";

/**
 * Geometry of a 2-D convolution's im2col: the input [N, C, h, w] is cut into patches of
 * (C/group)·kh·kw values per output position and group, column index (c·kh + ky)·kw + kx, the
 * same flattening as the weight [M, C/group, kh, kw]. 1-D convolutions use h = kh = 1.
 */
export interface ConvGeometry {
  channels: number;
  group: number;
  h: number;
  w: number;
  kh: number;
  kw: number;
  strideH: number;
  strideW: number;
  dilationH: number;
  dilationW: number;
  padTop: number;
  padLeft: number;
  outH: number;
  outW: number;
}

/** Accumulates H = Σ x xᵀ (lower triangle, float64) and Σ x for each group of one layer. */
export interface HessianAccumulator {
  /** Inputs per output (K). */
  size: number;
  groups: number;
  /** K×K per group, row-major; only j ≤ i is filled until `finishHessian`. */
  h: Float64Array[];
  /** Σ x per group (for the mean input μ = sum / rows). */
  sum: Float64Array[];
  /** Input vectors accumulated (per group: every group sees the same positions). */
  rows: number;
  /** Input vectors offered before sampling. */
  offered: number;
}

/** Rows gathered before one rank-B update of H (the inner loop of `flushBlock` runs over them). */
const BLOCK_ROWS = 64;

/** A new, empty accumulator for `groups` groups of `size` inputs. */
export function createHessian(size: number, groups = 1): HessianAccumulator {
  ensure(Number.isSafeInteger(size) && size > 0 && Number.isSafeInteger(groups) && groups > 0, E.INVALID_OPTION, `Hessian of size ${size} × ${groups} groups`);
  return {
    size, groups, rows: 0, offered: 0,
    h: Array.from({ length: groups }, () => new Float64Array(size * size)),
    sum: Array.from({ length: groups }, () => new Float64Array(size)),
  };
}

/**
 * H += Σ_b x_b x_bᵀ for a block of rows stored column-wise (`block[i·B + b]` = x_b[i]): a
 * symmetric rank-B update of the lower triangle, B = `count`, in 4×4 register tiles (16 sums per
 * 8 loads; about 3× the plain dot-product loop under Bun).
 */
function flushBlock(h: Float64Array, sum: Float64Array, block: Float64Array, k: number, count: number): void {
  const B = BLOCK_ROWS;
  for (let i = 0; i < k; i++) {
    let s = 0;
    for (let b = 0, bi = i * B; b < count; b++) s += block[bi + b]!;
    sum[i]! += s;
  }
  const k4 = k - (k % 4);
  for (let i = 0; i < k4; i += 4) {
    const a0 = i * B, a1 = a0 + B, a2 = a1 + B, a3 = a2 + B;
    for (let j = 0; j <= i; j += 4) {
      const c0 = j * B, c1 = c0 + B, c2 = c1 + B, c3 = c2 + B;
      let s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
      let s20 = 0, s21 = 0, s22 = 0, s23 = 0, s30 = 0, s31 = 0, s32 = 0, s33 = 0;
      for (let b = 0; b < count; b++) {
        const x0 = block[a0 + b]!, x1 = block[a1 + b]!, x2 = block[a2 + b]!, x3 = block[a3 + b]!;
        const y0 = block[c0 + b]!, y1 = block[c1 + b]!, y2 = block[c2 + b]!, y3 = block[c3 + b]!;
        s00 += x0 * y0; s01 += x0 * y1; s02 += x0 * y2; s03 += x0 * y3;
        s10 += x1 * y0; s11 += x1 * y1; s12 += x1 * y2; s13 += x1 * y3;
        s20 += x2 * y0; s21 += x2 * y1; s22 += x2 * y2; s23 += x2 * y3;
        s30 += x3 * y0; s31 += x3 * y1; s32 += x3 * y2; s33 += x3 * y3;
      }
      // Only entries with column ≤ row are kept (the diagonal tile computes a few it discards).
      const r0 = i * k + j, r1 = r0 + k, r2 = r1 + k, r3 = r2 + k;
      h[r0]! += s00; if (j + 1 <= i) h[r0 + 1]! += s01; if (j + 2 <= i) h[r0 + 2]! += s02; if (j + 3 <= i) h[r0 + 3]! += s03;
      h[r1]! += s10; if (j + 1 <= i + 1) h[r1 + 1]! += s11; if (j + 2 <= i + 1) h[r1 + 2]! += s12; if (j + 3 <= i + 1) h[r1 + 3]! += s13;
      h[r2]! += s20; h[r2 + 1]! += s21; if (j + 2 <= i + 2) h[r2 + 2]! += s22; if (j + 3 <= i + 2) h[r2 + 3]! += s23;
      h[r3]! += s30; h[r3 + 1]! += s31; h[r3 + 2]! += s32; h[r3 + 3]! += s33;
    }
  }
  // Rows past the last full tile of 4.
  for (let i = k4; i < k; i++) {
    const bi = i * B, hi = i * k;
    for (let j = 0; j <= i; j++) {
      const bj = j * B;
      let acc = 0;
      for (let b = 0; b < count; b++) acc += block[bi + b]! * block[bj + b]!;
      h[hi + j]! += acc;
    }
  }
}

/**
 * Σ y xᵀ of the FP32 layer's outputs y = W x_fp + c against the compensated network's inputs x̃
 * (the right-hand side of asymmetric calibration, GPTAQ, Li et al. 2025: the layer is fitted to
 * the FP32 network's output, not to its own weights on drifted inputs), per group R_g×K, with
 * Σ y and Σ y² per output row.
 */
export interface TargetAccumulator {
  t: Float64Array[];
  ysum: Float64Array;
  yy: Float64Array;
}

/** The FP32 side of one layer: its rows per group (R_g×K, row-major), constant output term c per row, and its inputs. */
export interface FloatSide {
  x: Float32Array;
  weights: Float64Array[];
  offset: Float64Array;
  target: TargetAccumulator;
}

/** A new target accumulator for `groups` groups of `rows` outputs over `size` inputs. */
export function createTarget(rows: number, size: number, groups = 1): TargetAccumulator {
  return { t: Array.from({ length: groups }, () => new Float64Array(rows * size)), ysum: new Float64Array(rows * groups), yy: new Float64Array(rows * groups) };
}

/** T_g += Y Xᵀ for one block: y_b = W_g x_fp,b + c (rows of group g), X the compensated block. */
function flushTarget(f: FloatSide, group: number, xf: Float64Array, x: Float64Array, k: number, count: number): void {
  const B = BLOCK_ROWS, w = f.weights[group]!, rows = w.length / k, t = f.target.t[group]!;
  const y = new Float64Array(B);
  for (let r = 0; r < rows; r++) {
    const c0 = f.offset[group * rows + r]!;
    y.fill(c0, 0, count);
    for (let c = 0; c < k; c++) {
      const wc = w[r * k + c]!;
      if (wc === 0) continue;
      for (let b = 0, o = c * B; b < count; b++) y[b]! += wc * xf[o + b]!;
    }
    let ys = 0, yq = 0;
    for (let b = 0; b < count; b++) { ys += y[b]!; yq += y[b]! * y[b]!; }
    f.target.ysum[group * rows + r]! += ys;
    f.target.yy[group * rows + r]! += yq;
    for (let j = 0; j < k; j++) {
      let s = 0;
      for (let b = 0, o = j * B; b < count; b++) s += y[b]! * x[o + b]!;
      t[r * k + j]! += s;
    }
  }
}

/** Write one im2col patch of image `base` at output (oy, ox) for group `gr` into column `fill` of `block`. */
function gatherPatch(block: Float64Array, fill: number, x: Float32Array, base: number, gr: number, g: ConvGeometry, oy: number, ox: number): void {
  const cg = g.channels / g.group, plane = g.h * g.w;
  const y0 = oy * g.strideH - g.padTop, x0 = ox * g.strideW - g.padLeft;
  let col = 0;
  for (let c = 0; c < cg; c++) {
    const cb = base + (gr * cg + c) * plane;
    for (let ky = 0; ky < g.kh; ky++) {
      const iy = y0 + ky * g.dilationH;
      const inRow = iy >= 0 && iy < g.h;
      for (let kx = 0; kx < g.kw; kx++, col++) {
        const ix = x0 + kx * g.dilationW;
        block[col * BLOCK_ROWS + fill] = inRow && ix >= 0 && ix < g.w ? x[cb + iy * g.w + ix]! : 0;
      }
    }
  }
}

/**
 * Add the im2col patches of a batch of Conv inputs `x` [n, C, h, w] to `acc` (and, with `float`,
 * the FP32 layer's outputs on the matching FP32 inputs to its target). `keep()` decides per
 * output position (shared by all groups) whether it enters H: calibrating on a random subset of
 * positions bounds the cost of large feature maps (see `keepProbability`).
 */
export function addConvInputs(acc: HessianAccumulator, x: Float32Array, images: number, g: ConvGeometry, keep: () => boolean, float?: FloatSide): void {
  const cg = g.channels / g.group, k = cg * g.kh * g.kw;
  ensure(k === acc.size && g.group === acc.groups, E.INVALID_OPTION, `conv geometry gives ${g.group} groups of ${k} inputs, the accumulator has ${acc.groups} of ${acc.size}`);
  ensure(x.length === images * g.channels * g.h * g.w && (!float || float.x.length === x.length), E.INVALID_OPTION, `conv input has ${x.length} values, expected ${images}·${g.channels}·${g.h}·${g.w}`);
  const blocks = Array.from({ length: g.group }, () => new Float64Array(k * BLOCK_ROWS));
  const fblocks = float ? Array.from({ length: g.group }, () => new Float64Array(k * BLOCK_ROWS)) : [];
  let fill = 0;
  const flush = () => {
    for (let gr = 0; gr < g.group; gr++) {
      flushBlock(acc.h[gr]!, acc.sum[gr]!, blocks[gr]!, k, fill);
      if (float) flushTarget(float, gr, fblocks[gr]!, blocks[gr]!, k, fill);
    }
    fill = 0;
  };
  const plane = g.h * g.w;
  for (let n = 0; n < images; n++) {
    const base = n * g.channels * plane;
    for (let oy = 0; oy < g.outH; oy++) {
      for (let ox = 0; ox < g.outW; ox++) {
        acc.offered++;
        if (!keep()) continue;
        for (let gr = 0; gr < g.group; gr++) {
          gatherPatch(blocks[gr]!, fill, x, base, gr, g, oy, ox);
          if (float) gatherPatch(fblocks[gr]!, fill, float.x, base, gr, g, oy, ox);
        }
        fill++;
        acc.rows++;
        if (fill === BLOCK_ROWS) flush();
      }
    }
  }
  if (fill > 0) flush();
}

/** Add `count` input vectors of length K (row-major [count, K]) to a one-group accumulator (and the FP32 side's target). */
export function addDenseInputs(acc: HessianAccumulator, x: Float32Array, count: number, keep: () => boolean = () => true, float?: FloatSide): void {
  const k = acc.size;
  ensure(acc.groups === 1 && x.length === count * k && (!float || float.x.length === x.length), E.INVALID_OPTION, `dense input has ${x.length} values, expected ${count}·${k}`);
  const block = new Float64Array(k * BLOCK_ROWS), fblock = new Float64Array(float ? k * BLOCK_ROWS : 0);
  let fill = 0;
  const flush = () => {
    flushBlock(acc.h[0]!, acc.sum[0]!, block, k, fill);
    if (float) flushTarget(float, 0, fblock, block, k, fill);
    fill = 0;
  };
  for (let r = 0; r < count; r++) {
    acc.offered++;
    if (!keep()) continue;
    for (let i = 0, o = r * k; i < k; i++) block[i * BLOCK_ROWS + fill] = x[o + i]!;
    if (float) for (let i = 0, o = r * k; i < k; i++) fblock[i * BLOCK_ROWS + fill] = float.x[o + i]!;
    fill++;
    acc.rows++;
    if (fill === BLOCK_ROWS) flush();
  }
  if (fill > 0) flush();
}

/**
 * The probability with which each of `total` input vectors enters H so that about `maxRows`
 * do. GPTQ needs n ≫ K rows for a well-conditioned H; a cap of 64·K keeps the O(n·K²) cost of
 * accumulating H from swamping the O(K³) solve on large feature maps.
 */
export function keepProbability(total: number, maxRows: number): number {
  return total <= maxRows ? 1 : maxRows / total;
}

/** Fill the upper triangle from the lower one (after the last `add…Inputs`). */
export function finishHessian(acc: HessianAccumulator): void {
  const k = acc.size;
  for (const h of acc.h) for (let i = 0; i < k; i++) for (let j = 0; j < i; j++) h[j * k + i] = h[i * k + j]!;
}

/** The quantization grid of a layer: Δ·code clamped to ±maxCode, or a fixed table of values. */
export type Grid =
  | { kind: "uniform"; step: number; maxCode: number }
  | { kind: "table"; values: Float32Array };

/** Round-to-nearest on a grid: the code and its decoded value, exactly as the codebook decodes it. */
export function gridRounder(grid: Grid): (x: number) => { code: number; value: number } {
  if (grid.kind === "uniform") {
    const d = Math.fround(grid.step), m = grid.maxCode;
    return (x) => {
      const code = d > 0 ? Math.max(-m, Math.min(m, Math.round(x / d))) : 0;
      return { code, value: Math.fround(d * code) };
    };
  }
  // Ascending copy with the original indices, for a binary search.
  const order = Array.from(grid.values.keys()).sort((a, b) => grid.values[a]! - grid.values[b]!);
  const sorted = order.map((i) => grid.values[i]!);
  return (x) => {
    let lo = 0, hi = sorted.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (sorted[mid]! <= x) lo = mid; else hi = mid;
    }
    const k = Math.abs(x - sorted[lo]!) <= Math.abs(sorted[hi]! - x) ? lo : hi;
    return { code: order[k]!, value: sorted[k]! };
  };
}

/** The two grid points around x (clamped to the grid), for rate-aware rounding. */
export function gridNeighbours(grid: Grid): (x: number) => { code: number; value: number }[] {
  if (grid.kind === "uniform") {
    const d = Math.fround(grid.step), m = grid.maxCode;
    return (x) => {
      if (!(d > 0)) return [];
      const lo = Math.max(-m, Math.min(m, Math.floor(x / d))), hi = Math.max(-m, Math.min(m, lo + 1));
      return [{ code: lo, value: Math.fround(d * lo) }, { code: hi, value: Math.fround(d * hi) }];
    };
  }
  const order = Array.from(grid.values.keys()).sort((a, b) => grid.values[a]! - grid.values[b]!);
  const sorted = order.map((i) => grid.values[i]!);
  return (x) => {
    let lo = 0, hi = sorted.length - 1;
    if (x <= sorted[0]!) hi = 0;
    else if (x >= sorted[hi]!) lo = hi;
    else while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (sorted[mid]! <= x) lo = mid; else hi = mid; }
    return [{ code: order[lo]!, value: sorted[lo]! }, { code: order[hi]!, value: sorted[hi]! }];
  };
}

/** The grid's typical spacing: Δ, or the mean gap of the table. */
export function gridSpacing(grid: Grid): number {
  if (grid.kind === "uniform") return Math.fround(grid.step);
  const v = [...grid.values].sort((a, b) => a - b);
  return v.length > 1 ? (v[v.length - 1]! - v[0]!) / (v.length - 1) : 1;
}

/**
 * Zero-order estimate of a layer's stored bits, the quantity the entropy coder of format/ gets
 * close to (README: 1.03–1.05× this bound): nnz·H(codes) for the codes plus N·H_b(nnz/N) for
 * the positions, taken as a Bernoulli field.
 */
export function estimateBits(codes: ArrayLike<number>, total: number): number {
  const n = codes.length;
  if (n === 0 || total === 0) return 0;
  const counts = new Map<number, number>();
  for (let i = 0; i < n; i++) counts.set(codes[i]!, (counts.get(codes[i]!) ?? 0) + 1);
  let bits = 0;
  for (const c of counts.values()) bits -= c * Math.log2(c / n);
  const rho = n / total;
  if (rho < 1) bits += total * (-rho * Math.log2(rho) - (1 - rho) * Math.log2(1 - rho));
  return bits;
}

/** Options of `compensateLayer`. */
export interface CompensateOptions {
  /** Dampening λ: H + λ·mean(diag H)·I (GPTQ's "percdamp"; 0.01 there). */
  damp?: number;
  /** Columns per lazy batch (GPTQ Step 2, Eq. 4). */
  blockSize?: number;
  /** Visit columns by decreasing H_cc ("act-order", GPTQ's `desc_act`). */
  actOrder?: boolean;
  /**
   * T = Σ y xᵀ (R×K): start from the least-squares fit W* = T (H + λI)⁻¹ of the targets y instead
   * of from `w` (asymmetric calibration: ‖Y − ŴX‖² = ‖(W* − Ŵ)X‖² + const, so GPTQ on W* solves it).
   */
  target?: Float64Array;
  /**
   * The last `free` columns are not quantized and not masked (a bias as a column against a
   * constant input 1); they are visited last, so they absorb what the quantized columns leave.
   */
  free?: number;
}

/** Defaults of `compensateLayer`; damp and act-order set by bench/calibration-sweep.ts on ResNet-20. */
export const COMPENSATE_DEFAULTS = { damp: 0.01, blockSize: 128, actOrder: true } as const;

/**
 * R ← the upper-triangular U with Uᵀ U = H⁻¹ (GPTQ Step 3, "Cholesky reformulation"), in place on
 * a copy of H. With the reversal J, J H J = L Lᵀ gives H⁻¹ = (J L⁻¹ J)ᵀ (J L⁻¹ J), so U is the
 * inverse of the "upper" Cholesky factor R of H = R Rᵀ, which is computed from the bottom-right
 * corner up. Row i of U holds exactly the H⁻¹ entries the OBS update of column i needs once
 * columns < i are fixed (the sequential eliminations of GPTQ Eq. 3 are rows of this factor).
 * Returns null when H is not positive definite.
 */
export function inverseCholeskyUpper(h: Float64Array, k: number): Float64Array | null {
  const r = new Float64Array(k * k);
  for (let j = k - 1; j >= 0; j--) {
    const rj = j * k;
    let d = h[rj + j]!;
    for (let t = j + 1; t < k; t++) d -= r[rj + t]! * r[rj + t]!;
    if (!(d > 0) || !Number.isFinite(d)) return null;
    const djj = Math.sqrt(d);
    r[rj + j] = djj;
    for (let i = 0; i < j; i++) {
      const ri = i * k;
      let s = h[ri + j]!;
      for (let t = j + 1; t < k; t++) s -= r[ri + t]! * r[rj + t]!;
      r[ri + j] = s / djj;
    }
  }
  // U = R⁻¹ row by row from the bottom (R U = I): U_i,: = (e_i − Σ_{t>i} R_it U_t,:) / R_ii, each
  // term a contiguous row update.
  const u = new Float64Array(k * k);
  for (let i = k - 1; i >= 0; i--) {
    const ri = i * k, rii = r[ri + i]!;
    u[ri + i] = 1 / rii;
    for (let t = i + 1; t < k; t++) {
      const f = r[ri + t]! / rii;
      if (f === 0) continue;
      const ut = t * k;
      for (let j = t; j < k; j++) u[ri + j]! -= f * u[ut + j]!;
    }
  }
  return u;
}

/** The outcome of compensating one group of rows. */
export interface CompensateResult {
  /** Decoded weights Ŵ, R×K row-major (exactly the values the codebook decodes). */
  weights: Float32Array;
  /** Codes, R×K row-major; 0 (uniform) or the zero entry (table) where not stored. */
  codes: Int32Array;
  /** True where the weight is stored: kept by the mask and not rounded to zero. */
  stored: Uint8Array;
  /** Dampening finally used (raised ×10 until H + λ·mean(diag)·I was positive definite). */
  damp: number;
}

/**
 * GPTQ with a fixed mask (OBQ's greedy quantization, OBC §4, solved column by column as in
 * GPTQ Eq. 2–4) on one group: rows `w` (R×K, row-major, float64), `mask` (1 = kept), inputs'
 * Hessian `h` (K×K symmetric, not modified), grid `round`.
 *
 * For the columns in the order π: at column c with the columns before it fixed, the OBS update
 * that keeps the quadratic minimal after fixing w_rc to q_rc (OBC §4, GPTQ Eq. 2) is
 *   δ_r = −(w_rc − q_rc) / [H_F⁻¹]_cc · (H_F⁻¹)_{c,:},
 * where q_rc = 0 for a pruned weight (OBS's pruning step, Hassibi & Stork Eq. 5) and the rounded
 * value otherwise (OBQ). [H_F⁻¹]_{c,·}/[H_F⁻¹]_cc over the not-yet-fixed columns F is row c of U
 * divided by U_cc (GPTQ Step 3), so the error e_rc = (w_rc − q_rc)/U_cc is pushed to every column
 * after c as w_r,t −= e_rc·U_ct. Within a block of `blockSize` columns the updates are applied at
 * once, outside it lazily as W_{:,rest} −= E·U_{block,rest} (GPTQ Eq. 4). Pruned weights are set
 * to exactly 0 and can never return: the mask decides which q is a grid point and which is 0.
 */
export function compensateLayer(
  w: Float64Array, mask: Uint8Array, rows: number, k: number, h: Float64Array,
  round: (x: number) => { code: number; value: number }, zeroCode: number, options: CompensateOptions = {},
): CompensateResult {
  return prepareCompensation(w, mask, rows, k, h, options).solve(round, zeroCode);
}

/** A code's cost in bits for rate-aware rounding; `lambda` weighs bits against squared error. */
export interface RateTerm {
  lambda: number;
  /** Bits of storing `code` (not called for the zero code, which stores nothing). */
  bits: (code: number) => number;
  /** The grid points worth considering for x: its two neighbours on the grid (may repeat). */
  neighbours: (x: number) => readonly { code: number; value: number }[];
}

/** Everything of `compensateLayer` that does not depend on the rounding: order, U, W*. */
export interface PreparedCompensation {
  damp: number;
  /** mean over quantized columns of 1/U_cc²: the scale of ((w − q)/U_cc)² per unit (w − q)². */
  scale: number;
  /**
   * The column sweep with the given rounding. With `rate`, a kept weight takes the candidate q
   * (its grid neighbours, or 0) minimising ((w − q)/U_cc)² + λ·bits(q): the OBS loss increase of
   * fixing w to q (GPTQ Eq. 2) plus a rate term, the rate-constrained OBS of Conzelmann & Bamler
   * 2025 (§3 there) with the zero-order code entropy as the rate.
   */
  solve(round: (x: number) => { code: number; value: number }, zeroCode: number, rate?: RateTerm): CompensateResult;
}

/** Prepare `compensateLayer` once for several roundings (see there for the arguments). */
export function prepareCompensation(w: Float64Array, mask: Uint8Array, rows: number, k: number, h: Float64Array, options: CompensateOptions = {}): PreparedCompensation {
  ensure(w.length === rows * k && mask.length === rows * k && h.length === k * k, E.INVALID_OPTION, `compensateLayer: ${rows}×${k} weights, ${mask.length} mask, ${h.length} Hessian entries`);
  const blockSize = Math.max(1, options.blockSize ?? COMPENSATE_DEFAULTS.blockSize);
  let damp = options.damp ?? COMPENSATE_DEFAULTS.damp;
  const actOrder = options.actOrder ?? COMPENSATE_DEFAULTS.actOrder;
  // Column order π and the permuted, dampened Hessian. A dead input (H_cc = 0: never non-zero
  // on the calibration data) gets H_cc = 1, so its weight is simply rounded and pushes nothing.
  const free = options.free ?? 0, kq = k - free;
  const diag = Array.from({ length: k }, (_, c) => h[c * k + c]!);
  const perm = Array.from({ length: k }, (_, c) => c);
  if (actOrder) {
    const head = perm.slice(0, kq).sort((a, b) => diag[b]! - diag[a]! || a - b);
    perm.splice(0, kq, ...head);
  }
  let mean = 0;
  for (let c = 0; c < kq; c++) mean += diag[c]!;
  mean = mean / kq || 1;
  let u: Float64Array | null = null;
  const hp = new Float64Array(k * k);
  for (let tries = 0; tries < 8 && !u; tries++, damp = damp > 0 ? damp * 10 : 1e-6) {
    for (let i = 0; i < k; i++) {
      const pi = perm[i]! * k;
      for (let j = 0; j < k; j++) hp[i * k + j] = h[pi + perm[j]!]!;
      if (hp[i * k + i] === 0) hp[i * k + i] = 1;
      hp[i * k + i]! += damp * mean;
    }
    u = inverseCholeskyUpper(hp, k);
    if (u) break;
  }
  ensure(u, E.NUMERIC, "the calibration Hessian is not positive definite even after dampening");
  // Permuted working copy of the weights and mask; with a target, W* = T H⁻¹ = T Uᵀ U.
  const wp = new Float64Array(rows * k), mp = new Uint8Array(rows * k);
  for (let r = 0; r < rows; r++) for (let i = 0; i < k; i++) { wp[r * k + i] = w[r * k + perm[i]!]!; mp[r * k + i] = i >= kq ? 1 : mask[r * k + perm[i]!]!; }
  if (options.target) {
    const t = options.target, a = new Float64Array(k);
    ensure(t.length === rows * k, E.INVALID_OPTION, `target has ${t.length} entries for ${rows}×${k}`);
    for (let r = 0; r < rows; r++) {
      const tr = r * k;
      // a = t_r Uᵀ (a_i = Σ_{j ≥ i} t_j U_ij), then w*_r = a U (w_j = Σ_{i ≤ j} a_i U_ij).
      for (let i = 0; i < k; i++) {
        let sum = 0;
        for (let j = i, ui = i * k; j < k; j++) sum += t[tr + perm[j]!]! * u[ui + j]!;
        a[i] = sum;
      }
      wp.fill(0, tr, tr + k);
      for (let i = 0; i < k; i++) {
        const ai = a[i]!;
        if (ai === 0) continue;
        for (let j = i, ui = i * k; j < k; j++) wp[tr + j]! += ai * u[ui + j]!;
      }
    }
  }
  const w0p = wp;
  let scale = 0;
  for (let c = 0; c < kq; c++) scale += 1 / u[c * k + c]! ** 2;
  scale = kq ? scale / kq : 1;
  return {
    damp,
    scale,
    solve(round, zeroCode, rate) {
      const wp = w0p.slice();
      const qv = new Float32Array(rows * k), qc = new Int32Array(rows * k).fill(zeroCode), st = new Uint8Array(rows * k);
      const err = new Float64Array(rows * blockSize);
      for (let i1 = 0; i1 < k; i1 += blockSize) {
        const i2 = Math.min(k, i1 + blockSize), nb = i2 - i1;
        for (let c = i1; c < i2; c++) {
          const uc = c * k, ucc = u[uc + c]!;
          for (let r = 0; r < rows; r++) {
            const wr = r * k, x = wp[wr + c]!;
            let q = 0;
            if (c >= kq) q = x;
            else if (mp[wr + c]) {
              let g = round(x);
              if (rate) {
                // Zero stores nothing; each neighbour pays its bits.
                const inv = 1 / ucc;
                let best = (x * inv) ** 2, pick: { code: number; value: number } | undefined;
                for (const cand of rate.neighbours(x)) {
                  if (cand.code === zeroCode || cand.value === 0) continue;
                  const cost = ((x - cand.value) * inv) ** 2 + rate.lambda * rate.bits(cand.code);
                  if (cost < best) { best = cost; pick = cand; }
                }
                g = pick ?? { code: zeroCode, value: 0 };
              }
              q = g.value;
              if (g.code !== zeroCode && q !== 0) { qc[wr + c] = g.code; st[wr + c] = 1; }
            }
            qv[wr + c] = q;
            const e = (x - q) / ucc;
            err[r * blockSize + (c - i1)] = e;
            if (e !== 0) for (let t = c + 1; t < i2; t++) wp[wr + t]! -= e * u[uc + t]!;
          }
        }
        if (i2 < k) {
          for (let r = 0; r < rows; r++) {
            const wr = r * k, er = r * blockSize;
            for (let j = 0; j < nb; j++) {
              const e = err[er + j]!;
              if (e === 0) continue;
              const uj = (i1 + j) * k;
              for (let t = i2; t < k; t++) wp[wr + t]! -= e * u[uj + t]!;
            }
          }
        }
      }
      // Undo the permutation.
      const weights = new Float32Array(rows * k), codes = new Int32Array(rows * k), stored = new Uint8Array(rows * k);
      for (let r = 0; r < rows; r++) {
        for (let i = 0; i < k; i++) {
          const s = r * k + perm[i]!, p = r * k + i;
          weights[s] = qv[p]!; codes[s] = qc[p]!; stored[s] = st[p]!;
        }
      }
      return { weights, codes, stored, damp };
    },
  };
}

/**
 * Σ_r (W_r − Ŵ_r) H (W_r − Ŵ_r)ᵀ = ‖(W − Ŵ) X‖²_F (the objective of OBC Eq. 1 before any bias
 * change), with the R rows of `a` and `b` row-major over K.
 */
export function outputError(a: ArrayLike<number>, b: ArrayLike<number>, rows: number, k: number, h: Float64Array): number {
  const d = new Float64Array(k);
  let total = 0;
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < k; i++) d[i] = a[r * k + i]! - b[r * k + i]!;
    for (let i = 0; i < k; i++) {
      if (d[i] === 0) continue;
      let s = 0;
      const hi = i * k;
      for (let j = 0; j < k; j++) s += h[hi + j]! * d[j]!;
      total += d[i]! * s;
    }
  }
  return total;
}
