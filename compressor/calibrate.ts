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

/**
 * C[m×n] = op(A)·op(B) for row-major float32 matrices, `lda`/`ldb` the row strides of A and B as
 * stored (A is k×m with `transA`, B is n×k with `transB`). The heavy products of calibration (H,
 * the FP32 targets, the blocked factorizations, the lazy column updates) go through it: the CLI
 * injects the runtime's WASM SIMD GEMM (runtime/linalg.ts), `jsGemm` is the plain reference.
 */
export type Gemm = (
  transA: boolean, transB: boolean, m: number, n: number, k: number,
  a: Float32Array, lda: number, b: Float32Array, ldb: number, c: Float32Array,
) => void;

/** The reference `Gemm`: float64 sums, exact up to the final rounding to float32. */
export const jsGemm: Gemm = (transA, transB, m, n, k, a, lda, b, ldb, c) => {
  const row = new Float64Array(n);
  for (let i = 0; i < m; i++) {
    row.fill(0);
    for (let p = 0; p < k; p++) {
      const av = transA ? a[p * lda + i]! : a[i * lda + p]!;
      if (av === 0) continue;
      if (transB) for (let j = 0; j < n; j++) row[j]! += av * b[j * ldb + p]!;
      else for (let j = 0, o = p * ldb; j < n; j++) row[j]! += av * b[o + j]!;
    }
    for (let j = 0; j < n; j++) c[i * n + j] = row[j]!;
  }
};

/**
 * Products below this many multiply-adds run in `jsGemm` whatever is injected: the copies into
 * the WASM memory would not pay, and small layers (LeNet-5, ResNet-20's first convs) keep float64
 * sums (rounded to float32 once per product).
 */
const SMALL_GEMM_MACS = 1 << 16;
const routed = (gemm: Gemm): Gemm => (tA, tB, m, n, k, a, lda, b, ldb, c) => (m * n * k < SMALL_GEMM_MACS ? jsGemm : gemm)(tA, tB, m, n, k, a, lda, b, ldb, c);

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
  /** The products' GEMM. */
  gemm: Gemm;
}

/**
 * Rows gathered before one rank-B update of H: the GEMM's inner dimension. The WASM GEMM ran
 * 5.8 GMAC/s on 2304×512 products with an inner dimension of 256 and of 1024 alike (kernel-only
 * timing, load average 7); 512 sits between. Each block's float32 sums are added into the float64 H.
 */
const BLOCK_ROWS = 512;
/** Columns of H per GEMM of the lower-triangle update (H's blocks above the diagonal are skipped). */
const H_COLUMNS = 256;

/** A new, empty accumulator for `groups` groups of `size` inputs; `gemm` does its products. */
export function createHessian(size: number, groups = 1, gemm: Gemm = jsGemm): HessianAccumulator {
  ensure(Number.isSafeInteger(size) && size > 0 && Number.isSafeInteger(groups) && groups > 0, E.INVALID_OPTION, `Hessian of size ${size} × ${groups} groups`);
  return {
    size, groups, rows: 0, offered: 0, gemm: routed(gemm),
    h: Array.from({ length: groups }, () => new Float64Array(size * size)),
    sum: Array.from({ length: groups }, () => new Float64Array(size)),
  };
}

/**
 * H += Σ_b x_b x_bᵀ for a block of rows stored column-wise (`block[i·B + b]` = x_b[i], B =
 * BLOCK_ROWS, `count` ≤ B filled): the block is S = Xᵀ (K×count), so H += S Sᵀ, computed for
 * column strips [j0, j0 + w) and rows ≥ j0 only (the lower triangle and its diagonal blocks).
 */
function flushBlock(acc: HessianAccumulator, group: number, block: Float32Array, count: number): void {
  const B = BLOCK_ROWS, k = acc.size, h = acc.h[group]!, sum = acc.sum[group]!;
  for (let i = 0; i < k; i++) {
    let s = 0;
    for (let b = 0, bi = i * B; b < count; b++) s += block[bi + b]!;
    sum[i]! += s;
  }
  const out = new Float32Array(k * Math.min(k, H_COLUMNS));
  for (let j0 = 0; j0 < k; j0 += H_COLUMNS) {
    const w = Math.min(H_COLUMNS, k - j0), m = k - j0;
    const strip = block.subarray(j0 * B);
    acc.gemm(false, true, m, w, count, strip, B, strip, B, out);
    for (let i = 0; i < m; i++) subScaled32(h, (j0 + i) * k + j0, out, i * w, -1, Math.min(w, i + 1));
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
  weights: Float32Array[];
  offset: Float64Array;
  target: TargetAccumulator;
}

/** A new target accumulator for `groups` groups of `rows` outputs over `size` inputs. */
export function createTarget(rows: number, size: number, groups = 1): TargetAccumulator {
  return { t: Array.from({ length: groups }, () => new Float64Array(rows * size)), ysum: new Float64Array(rows * groups), yy: new Float64Array(rows * groups) };
}

/** T_g += Y Xᵀ for one block: Y = W_g X_fp + c (rows of group g, two GEMMs), X the compensated block. */
function flushTarget(f: FloatSide, gemm: Gemm, group: number, xf: Float32Array, x: Float32Array, k: number, count: number): void {
  const B = BLOCK_ROWS, w = f.weights[group]!, rows = w.length / k, t = f.target.t[group]!;
  const y = new Float32Array(rows * count), tb = new Float32Array(rows * k);
  gemm(false, false, rows, count, k, w, k, xf, B, y);
  for (let r = 0; r < rows; r++) {
    const c0 = Math.fround(f.offset[group * rows + r]!), o = r * count;
    let ys = 0, yq = 0;
    for (let b = 0; b < count; b++) { const v = (y[o + b]! += c0); ys += v; yq += v * v; }
    f.target.ysum[group * rows + r]! += ys;
    f.target.yy[group * rows + r]! += yq;
  }
  gemm(false, true, rows, k, count, y, count, x, B, tb);
  subScaled32(t, 0, tb, 0, -1, t.length);
}

/** Write one im2col patch of image `base` at output (oy, ox) for group `gr` into column `fill` of `block`. */
function gatherPatch(block: Float32Array, fill: number, x: Float32Array, base: number, gr: number, g: ConvGeometry, oy: number, ox: number): void {
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
  const blocks = Array.from({ length: g.group }, () => new Float32Array(k * BLOCK_ROWS));
  const fblocks = float ? Array.from({ length: g.group }, () => new Float32Array(k * BLOCK_ROWS)) : [];
  let fill = 0;
  const flush = () => {
    for (let gr = 0; gr < g.group; gr++) {
      flushBlock(acc, gr, blocks[gr]!, fill);
      if (float) flushTarget(float, acc.gemm, gr, fblocks[gr]!, blocks[gr]!, k, fill);
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
  const block = new Float32Array(k * BLOCK_ROWS), fblock = new Float32Array(float ? k * BLOCK_ROWS : 0);
  let fill = 0;
  const flush = () => {
    flushBlock(acc, 0, block, fill);
    if (float) flushTarget(float, acc.gemm, 0, fblock, block, k, fill);
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
 * do (Bernoulli sampling from a seeded generator, so a run is reproducible). GPTQ needs n ≫ K
 * rows for a well-conditioned H; the cap (CALIBRATE_DEFAULTS: 8192 but ≥ 2·K) bounds the O(n·K²)
 * cost of accumulating H on large feature maps.
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

/**
 * The two grid points around x (clamped to the grid; they may coincide), for rate-aware rounding:
 * written into `out` as [code, value, code, value] (no allocation per weight); returns how many
 * (2, or 0 on a grid of step 0).
 */
export function gridNeighbours(grid: Grid): (x: number, out: Float64Array) => number {
  if (grid.kind === "uniform") {
    const d = Math.fround(grid.step), m = grid.maxCode;
    return (x, out) => {
      if (!(d > 0)) return 0;
      const lo = Math.max(-m, Math.min(m, Math.floor(x / d))), hi = Math.max(-m, Math.min(m, lo + 1));
      out[0] = lo; out[1] = Math.fround(d * lo); out[2] = hi; out[3] = Math.fround(d * hi);
      return 2;
    };
  }
  const order = Array.from(grid.values.keys()).sort((a, b) => grid.values[a]! - grid.values[b]!);
  const sorted = order.map((i) => grid.values[i]!);
  return (x, out) => {
    let lo = 0, hi = sorted.length - 1;
    if (x <= sorted[0]!) hi = 0;
    else if (x >= sorted[hi]!) lo = hi;
    else while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (sorted[mid]! <= x) lo = mid; else hi = mid; }
    out[0] = order[lo]!; out[1] = sorted[lo]!; out[2] = order[hi]!; out[3] = sorted[hi]!;
    return 2;
  };
}

/** The grid's typical spacing: Δ, or the mean gap of the table. */
export function gridSpacing(grid: Grid): number {
  if (grid.kind === "uniform") return Math.fround(grid.step);
  const v = [...grid.values].sort((a, b) => a - b);
  return v.length > 1 ? (v[v.length - 1]! - v[0]!) / (v.length - 1) : 1;
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
  /** With a target: dampening pulls the fit toward `w` rather than toward 0 (see prepareCompensation). */
  anchor?: boolean;
  /** Products of at least BLOCKED_MIN columns go through this GEMM (float32; see `Gemm`); without it everything is float64 loops. */
  gemm?: Gemm;
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
export function inverseCholeskyUpper(h: Float64Array, k: number, gemm?: Gemm): Float64Array | null {
  if (gemm && k >= BLOCKED_MIN) return inverseCholeskyBlocked(h, k, routed(gemm));
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

/** From this size on, with a GEMM given, the factorizations run blocked (below it: the float64 loops above). */
const BLOCKED_MIN = 256;
/** Panel width of the blocked factorizations (the GEMMs' inner dimension there). */
const PANEL = 128;
/** Column strips of the triangular GEMM updates (blocks above the diagonal skipped). */
const STRIP = 512;

/** The inverse of the lower-triangular nb×nb block of `a` (row stride k) at (i0, i0), by substitution in float64. */
function invertLowerBlock(a: Float64Array, k: number, i0: number, nb: number): Float64Array {
  const d = new Float64Array(nb * nb);
  for (let c = 0; c < nb; c++) {
    d[c * nb + c] = 1 / a[(i0 + c) * k + i0 + c]!;
    for (let r = c + 1; r < nb; r++) {
      let s = 0;
      for (let t = c; t < r; t++) s += a[(i0 + r) * k + i0 + t]! * d[t * nb + c]!;
      d[r * nb + c] = -s / a[(i0 + r) * k + i0 + r]!;
    }
  }
  return d;
}

/**
 * `inverseCholeskyUpper` for large K, the O(K³) work in GEMMs. With the reversal J (J H J =: A),
 * the upper R of H = R Rᵀ is J L J for the lower Cholesky factor L of A = L Lᵀ, so
 * U = R⁻¹ = J L⁻¹ J. L: right-looking blocked Cholesky (diagonal block in float64 loops, the panel
 * L₂₁ = A₂₁ L₁₁⁻ᵀ and the trailing update A₂₂ −= L₂₁ L₂₁ᵀ GEMMs); L⁻¹ by block rows, X_IJ = −L_II⁻¹ Σ_T L_IT X_TJ
 * (the sum a GEMM over the rows already inverted). The GEMMs are float32, as in GPTQ's own code.
 */
function inverseCholeskyBlocked(h: Float64Array, k: number, gemm: Gemm): Float64Array | null {
  const a = new Float64Array(k * k);
  for (let i = 0; i < k; i++) for (let j = 0; j <= i; j++) a[i * k + j] = h[(k - 1 - i) * k + (k - 1 - j)]!;
  const out = new Float32Array(k * STRIP);
  for (let j0 = 0; j0 < k; j0 += PANEL) {
    const j1 = Math.min(k, j0 + PANEL), nb = j1 - j0;
    // The diagonal block L₁₁ (float64), its inverse, then the panel L₂₁ = A₂₁ L₁₁⁻ᵀ as one GEMM.
    for (let j = j0; j < j1; j++) {
      const aj = j * k;
      let d = a[aj + j]!;
      for (let t = j0; t < j; t++) d -= a[aj + t]! * a[aj + t]!;
      if (!(d > 0) || !Number.isFinite(d)) return null;
      const ljj = Math.sqrt(d);
      a[aj + j] = ljj;
      for (let i = j + 1; i < j1; i++) {
        const ai = i * k;
        let s = a[ai + j]!;
        for (let t = j0; t < j; t++) s -= a[ai + t]! * a[aj + t]!;
        a[ai + j] = s / ljj;
      }
    }
    if (j1 === k) break;
    const rest = k - j1, p = new Float32Array(rest * nb), a21 = new Float32Array(rest * nb);
    const inv = Float32Array.from(invertLowerBlock(a, k, j0, nb));
    for (let i = 0; i < rest; i++) for (let c = 0; c < nb; c++) a21[i * nb + c] = a[(j1 + i) * k + j0 + c]!;
    gemm(false, true, rest, nb, nb, a21, nb, inv, nb, p);
    for (let i = 0; i < rest; i++) for (let c = 0; c < nb; c++) a[(j1 + i) * k + j0 + c] = p[i * nb + c]!;
    for (let c0 = 0; c0 < rest; c0 += STRIP) {
      const w = Math.min(STRIP, rest - c0), m = rest - c0, strip = p.subarray(c0 * nb);
      gemm(false, true, m, w, nb, strip, nb, strip, nb, out);
      for (let i = 0; i < m; i++) subScaled32(a, (j1 + c0 + i) * k + j1 + c0, out, i * w, 1, Math.min(w, i + 1));
    }
  }
  // X = L⁻¹ (lower), block row by block row; l32/x32 hold L and the finished rows of X in float32.
  const x = new Float64Array(k * k), l32 = new Float32Array(k * k), x32 = new Float32Array(k * k);
  for (let i = 0; i < k; i++) l32.set(a.subarray(i * k, i * k + i + 1), i * k);
  for (let i0 = 0; i0 < k; i0 += PANEL) {
    const i1 = Math.min(k, i0 + PANEL), nb = i1 - i0;
    const d = invertLowerBlock(a, k, i0, nb);
    for (let r = 0; r < nb; r++) x.set(d.subarray(r * nb, r * nb + r + 1), (i0 + r) * k + i0);
    if (i0 > 0) {
      // S = L[I, 0:i0] X[0:i0, 0:i0], by column strips (X is lower: strip [c0, c1) needs rows ≥ c0).
      const sm = new Float32Array(nb * i0);
      for (let c0 = 0; c0 < i0; c0 += STRIP) {
        const w = Math.min(STRIP, i0 - c0), depth = i0 - c0;
        gemm(false, false, nb, w, depth, l32.subarray(i0 * k + c0), k, x32.subarray(c0 * k + c0), k, out);
        for (let r = 0; r < nb; r++) sm.set(out.subarray(r * w, r * w + w), r * i0 + c0);
      }
      // X[I, 0:i0] = −X_II S.
      const d32 = Float32Array.from(d), xs = new Float32Array(nb * i0);
      gemm(false, false, nb, i0, nb, d32, nb, sm, i0, xs);
      for (let r = 0; r < nb; r++) subScaled32(x, (i0 + r) * k, xs, r * i0, 1, i0);
    }
    for (let r = i0; r < i1; r++) x32.set(x.subarray(r * k, r * k + r + 1), r * k);
  }
  const u = new Float64Array(k * k);
  for (let i = 0; i < k; i++) reversedRow(u, i * k + i, x, (k - 1 - i) * k + (k - 1 - i), k - i);
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
  /** The grid points worth considering for x, as `gridNeighbours` writes them: its two neighbours on the grid (may repeat). */
  neighbours: (x: number, out: Float64Array) => number;
}

/** y[yo + i] = x[xo − i] for i < n (a row of the reversal J X J). */
function reversedRow(y: Float64Array, yo: number, x: Float64Array, xo: number, n: number): void {
  for (let i = 0; i < n; i++) y[yo + i] = x[xo - i]!;
}
/** y[yo + j] = x[xo + idx[j]] for every j (a row of a symmetric permutation). */
function gatherRow(y: Float64Array, yo: number, x: Float64Array, xo: number, idx: Int32Array): void {
  for (let j = 0; j < idx.length; j++) y[yo + j] = x[xo + idx[j]!]!;
}
/**
 * y[yo + i] −= a·x[xo + i] for i < n (x float64; `subScaled32`: float32). The factorizations' and
 * the sweep's hot loops call these: as small monomorphic functions they compile to tight code,
 * where the same loops written inline in `solve` ran 10–20× slower under Bun (a K = 4609 sweep
 * of 512 rows: 6.5–10 s before, 2.5–2.9 s after, load average 5–6).
 */
function subScaled(y: Float64Array, yo: number, x: Float64Array, xo: number, a: number, n: number): void {
  for (let i = 0; i < n; i++) y[yo + i]! -= a * x[xo + i]!;
}
function subScaled32(y: Float64Array, yo: number, x: Float32Array, xo: number, a: number, n: number): void {
  for (let i = 0; i < n; i++) y[yo + i]! -= a * x[xo + i]!;
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
   * 2025 (§3 there) with the zero-order code entropy as the rate. Rows are independent given U,
   * so `rowSubset` (row indices, ascending) sweeps only those rows: the result then holds
   * `rowSubset.length` rows (the rate search prices λ on a subset first).
   */
  solve(round: (x: number) => { code: number; value: number }, zeroCode: number, rate?: RateTerm, rowSubset?: readonly number[]): CompensateResult;
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
  const permIdx = Int32Array.from(perm);
  let mean = 0;
  for (let c = 0; c < kq; c++) mean += diag[c]!;
  mean = mean / kq || 1;
  let u: Float64Array | null = null;
  const hp = new Float64Array(k * k);
  for (let tries = 0; tries < 8 && !u; tries++, damp = damp > 0 ? damp * 10 : 1e-6) {
    for (let i = 0; i < k; i++) {
      const pi = perm[i]! * k;
      gatherRow(hp, i * k, h, pi, permIdx);
      if (hp[i * k + i] === 0) hp[i * k + i] = 1;
      hp[i * k + i]! += damp * mean;
    }
    u = inverseCholeskyUpper(hp, k, options.gemm);
    if (u) break;
  }
  ensure(u, E.NUMERIC, "the calibration Hessian is not positive definite even after dampening");
  // Permuted working copy of the weights and mask; with a target, W* = T H⁻¹ = T Uᵀ U.
  const wp = new Float64Array(rows * k), mp = new Uint8Array(rows * k);
  for (let r = 0; r < rows; r++) for (let i = 0; i < k; i++) { wp[r * k + i] = w[r * k + perm[i]!]!; mp[r * k + i] = i >= kq ? 1 : mask[r * k + perm[i]!]!; }
  const gemm = options.gemm && k >= BLOCKED_MIN ? routed(options.gemm) : undefined;
  const u32 = gemm ? Float32Array.from(u) : undefined;
  // The permuted target; anchored, T + D W with D the dampening added to H's diagonal, so that
  // W* = (T + D W)(H + D)⁻¹ is the ridge fit pulled toward the FP32 weights instead of toward 0
  // (with T = W H, GPTQ's own objective, W* = W exactly, as undampened).
  let tp: Float64Array | undefined;
  if (options.target) {
    const t = options.target;
    ensure(t.length === rows * k, E.INVALID_OPTION, `target has ${t.length} entries for ${rows}×${k}`);
    tp = new Float64Array(rows * k);
    for (let i = 0; i < k; i++) {
      const c = perm[i]!, d = options.anchor ? hp[i * k + i]! - h[c * k + c]! : 0;
      for (let r = 0; r < rows; r++) tp[r * k + i] = t[r * k + c]! + d * w[r * k + c]!;
    }
  }
  if (tp && gemm) {
    // W* = (T_π Uᵀ) U by column strips that skip U's zero lower triangle (half the products'
    // multiply-adds): a_{:,I} = T_{:,i0:} (U_{I,i0:})ᵀ, then W*_{:,J} = a_{:,:j1} U_{:j1,J}.
    const t32 = Float32Array.from(tp), a = new Float32Array(rows * k), out = new Float32Array(rows * Math.min(k, STRIP));
    const place = (dst: Float32Array | Float64Array, c0: number, w: number) => {
      for (let r = 0; r < rows; r++) dst.set(out.subarray(r * w, r * w + w), r * k + c0);
    };
    for (let i0 = 0; i0 < k; i0 += STRIP) {
      const w = Math.min(STRIP, k - i0);
      gemm(false, true, rows, w, k - i0, t32.subarray(i0), k, u32!.subarray(i0 * k + i0), k, out);
      place(a, i0, w);
    }
    for (let j0 = 0; j0 < k; j0 += STRIP) {
      const w = Math.min(STRIP, k - j0);
      gemm(false, false, rows, w, j0 + w, a, k, u32!.subarray(j0), k, out);
      place(wp, j0, w);
    }
  } else if (tp) {
    const t = tp, a = new Float64Array(k);
    for (let r = 0; r < rows; r++) {
      const tr = r * k;
      // a = t_r Uᵀ (a_i = Σ_{j ≥ i} t_j U_ij), then w*_r = a U (w_j = Σ_{i ≤ j} a_i U_ij).
      for (let i = 0; i < k; i++) {
        let sum = 0;
        for (let j = i, ui = i * k; j < k; j++) sum += t[tr + j]! * u[ui + j]!;
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
    solve(round, zeroCode, rate, rowSubset) {
      const uu = u!, n = rowSubset ? rowSubset.length : rows;
      const wp = new Float64Array(n * k), mk = rowSubset ? new Uint8Array(n * k) : mp;
      if (rowSubset) {
        rowSubset.forEach((r, j) => { wp.set(w0p.subarray(r * k, r * k + k), j * k); mk.set(mp.subarray(r * k, r * k + k), j * k); });
      } else wp.set(w0p);
      const qv = new Float32Array(n * k), qc = new Int32Array(n * k).fill(zeroCode), st = new Uint8Array(n * k);
      const err = new Float64Array(n * blockSize), ub = new Float64Array(blockSize * blockSize), cand = new Float64Array(4), lambda = rate?.lambda ?? 0;
      const e32 = gemm ? new Float32Array(n * blockSize) : undefined, d = gemm ? new Float32Array(n * k) : undefined;
      for (let i1 = 0; i1 < k; i1 += blockSize) {
        const i2 = Math.min(k, i1 + blockSize), nb = i2 - i1;
        // The block's diagonal part of U, compact: row a holds U_{i1+a, i1+b} for b ≥ a.
        for (let a = 0; a < nb; a++) ub.set(uu.subarray((i1 + a) * k + i1 + a, (i1 + a) * k + i2), a * nb + a);
        // Row by row (rows do not interact): a row's block stays in L1 and U's block in L2.
        for (let r = 0; r < n; r++) {
          const wr = r * k, er = r * blockSize;
          for (let a = 0; a < nb; a++) {
            const c = i1 + a, x = wp[wr + c]!, ucc = ub[a * nb + a]!;
            let q = 0;
            if (c >= kq) q = x;
            else if (mk[wr + c]) {
              let code = zeroCode;
              if (rate) {
                // Zero stores nothing; each neighbour pays its bits.
                const inv = 1 / ucc;
                let best = (x * inv) ** 2;
                for (let j = 0, cnt = 2 * rate.neighbours(x, cand); j < cnt; j += 2) {
                  const cc = cand[j]!, v = cand[j + 1]!;
                  if (cc === zeroCode || v === 0) continue;
                  const cost = ((x - v) * inv) ** 2 + lambda * rate.bits(cc);
                  if (cost < best) { best = cost; code = cc; q = v; }
                }
              } else {
                const g = round(x);
                code = g.code; q = g.value;
              }
              if (code !== zeroCode && q !== 0) { qc[wr + c] = code; st[wr + c] = 1; }
            }
            qv[wr + c] = q;
            const e = (x - q) / ucc;
            err[er + a] = e;
            if (e !== 0) subScaled(wp, wr + c + 1, ub, a * nb + a + 1, e, nb - a - 1);
          }
        }
        if (i2 < k && gemm) {
          // W_{:,rest} −= E U_{block,rest} (GPTQ Eq. 4) as one GEMM.
          const m = k - i2;
          for (let r = 0; r < n; r++) for (let j = 0; j < nb; j++) e32![r * nb + j] = err[r * blockSize + j]!;
          gemm(false, false, n, m, nb, e32!, nb, u32!.subarray(i1 * k + i2), k, d!);
          for (let r = 0; r < n; r++) subScaled32(wp, r * k + i2, d!, r * m, 1, m);
        } else if (i2 < k) {
          for (let r = 0; r < n; r++) {
            const wr = r * k, er = r * blockSize;
            for (let j = 0; j < nb; j++) {
              const e = err[er + j]!;
              if (e === 0) continue;
              const uj = (i1 + j) * k;
              for (let t = i2; t < k; t++) wp[wr + t]! -= e * uu[uj + t]!;
            }
          }
        }
      }
      // Undo the permutation.
      const weights = new Float32Array(n * k), codes = new Int32Array(n * k), stored = new Uint8Array(n * k);
      for (let r = 0; r < n; r++) {
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
