// The register tile every dense GEMM kernel runs (not exported from the module). 4×8: 8 f32x4
// accumulators, 2 B vectors, the A vector and 1 broadcast lane, 12 of the 16 SIMD registers the
// engines give wasm on x86 (JavaScriptCore's fused multiply-add takes one more as scratch).
// tile4x8 is deliberately a function of its own, not @inline (3 call sites, too big for binaryen
// to inline). Inlined into the big kernels of gemm.ts and winograd.ts the same shuffle loop ran
// no faster than the old one (FP32 ResNet-50, Bun: mixed per layer, whole model ≈ 1.0×), as a
// call it took the model from 376 to 300 CPU-ms (1.25×, old and new in one process); the likely
// cause is JavaScriptCore's register allocation in the big function (spills, seen in its Air
// dump of an 8×8 tile; not checked in convGemmF32 itself). The call is cheap next to a K-step loop.
import { madd } from "./simd";

/** Rows of a register tile (output channels for conv, rows of A for Gemm). */
export const GEMM_MR: i32 = 4;
/** Columns of a register tile (pixels for conv, output features for Gemm): two f32x4. */
export const GEMM_NR: i32 = 8;

/** The first `n` (0..4) lanes at p, the rest 0. */
// @ts-ignore: decorator
@inline export function loadN(p: usize, n: i32): v128 {
  if (n >= 4) return v128.load(p);
  let v = f32x4.splat(0);
  if (n > 0) v = f32x4.replace_lane(v, 0, load<f32>(p));
  if (n > 1) v = f32x4.replace_lane(v, 1, load<f32>(p, 4));
  if (n > 2) v = f32x4.replace_lane(v, 2, load<f32>(p, 8));
  return v;
}

/** Store the first `n` (0..4) lanes of v at p. */
// @ts-ignore: decorator
@inline export function storeN(p: usize, v: v128, n: i32): void {
  if (n >= 4) { v128.store(p, v); return; }
  if (n > 0) store<f32>(p, f32x4.extract_lane(v, 0));
  if (n > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
  if (n > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
}

/** Epilogue of one output row (two vectors): + residual, clamp, store `cols` lanes (`last`), else just store. */
// @ts-ignore: decorator
@inline export function finishRow(c: usize, r: usize, v0: v128, v1: v128, vlo: v128, vhi: v128, cols: i32, last: bool): void {
  if (last) {
    if (r != 0) {
      if (cols >= 8) { v0 = f32x4.add(v0, v128.load(r)); v1 = f32x4.add(v1, v128.load(r, 16)); }
      else { v0 = f32x4.add(v0, loadN(r, cols)); v1 = f32x4.add(v1, loadN(r + 16, cols - 4)); }
    }
    v0 = f32x4.min(f32x4.max(v0, vlo), vhi);
    v1 = f32x4.min(f32x4.max(v1, vlo), vhi);
  }
  if (cols >= 8) { v128.store(c, v0); v128.store(c, v1, 16); }
  else { storeN(c, v0, cols); storeN(c + 16, v1, cols - 4); }
}

/**
 * One 4×8 tile of C from a packed A panel (k-major, 4 values per k: `ap`) and a packed B panel
 * (k-major, 8 values per k: `bp`) over `kb ≥ 1` steps. `first`: start from the bias, else from C;
 * `last`: apply the rest of the epilogue (residual, clamp). `rows`/`cols` ≤ 4/8 limit what is
 * written of C and read of C and the residual (the packed panels are zero-padded). Bias: per row
 * (`rowBias`, conv: 4 floats read, so a last partial tile reads up to 12 bytes past the bias,
 * inside its 64-byte allocation block) or per column (`colBias`, Gemm: padded to whole panels);
 * 0 = none. `r` is the residual tile (0 = none), rows `ldc` bytes apart like C.
 */
export function tile4x8(
  ap: usize, bp: usize, kb: i32, c: usize, ldc: usize, rows: i32, cols: i32,
  first: bool, last: bool, rowBias: usize, colBias: usize, r: usize, lo: f32, hi: f32,
): void {
  let c00 = f32x4.splat(0), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  if (first) {
    // The bias is the accumulators' start, so the epilogue has no bias add.
    if (colBias != 0) {
      c00 = v128.load(colBias); c01 = v128.load(colBias, 16);
      c10 = c00; c11 = c01; c20 = c00; c21 = c01; c30 = c00; c31 = c01;
    }
    if (rowBias != 0) {
      const rb = v128.load(rowBias);
      let v = i32x4.shuffle(rb, rb, 0, 0, 0, 0);
      c00 = f32x4.add(c00, v); c01 = f32x4.add(c01, v);
      v = i32x4.shuffle(rb, rb, 1, 1, 1, 1);
      c10 = f32x4.add(c10, v); c11 = f32x4.add(c11, v);
      v = i32x4.shuffle(rb, rb, 2, 2, 2, 2);
      c20 = f32x4.add(c20, v); c21 = f32x4.add(c21, v);
      v = i32x4.shuffle(rb, rb, 3, 3, 3, 3);
      c30 = f32x4.add(c30, v); c31 = f32x4.add(c31, v);
    }
  } else if (rows >= 4 && cols >= 8) {
    c00 = v128.load(c); c01 = v128.load(c, 16);
    c10 = v128.load(c + ldc); c11 = v128.load(c + ldc, 16);
    c20 = v128.load(c + 2 * ldc); c21 = v128.load(c + 2 * ldc, 16);
    c30 = v128.load(c + 3 * ldc); c31 = v128.load(c + 3 * ldc, 16);
  } else {
    c00 = loadN(c, cols); c01 = loadN(c + 16, cols - 4);
    if (rows > 1) { c10 = loadN(c + ldc, cols); c11 = loadN(c + ldc + 16, cols - 4); }
    if (rows > 2) { c20 = loadN(c + 2 * ldc, cols); c21 = loadN(c + 2 * ldc + 16, cols - 4); }
    if (rows > 3) { c30 = loadN(c + 3 * ldc, cols); c31 = loadN(c + 3 * ldc + 16, cols - 4); }
  }
  let pa = ap, pb = bp;
  const pe = bp + (<usize>kb << 5);
  if (cols <= 4) {
    // A last panel of ≤ 4 pixels (7×7 planes: 49 = 6·8 + 1): its upper vector only, half the work.
    do {
      const b0 = v128.load(pb), va = v128.load(pa);
      c00 = madd(i32x4.shuffle(va, va, 0, 0, 0, 0), b0, c00);
      c10 = madd(i32x4.shuffle(va, va, 1, 1, 1, 1), b0, c10);
      c20 = madd(i32x4.shuffle(va, va, 2, 2, 2, 2), b0, c20);
      c30 = madd(i32x4.shuffle(va, va, 3, 3, 3, 3), b0, c30);
      pa += 16; pb += 32;
    } while (pb < pe);
  } else do {
    // The 4 A values of step k in one load, each broadcast by a lane shuffle (pshufd). Four
    // load32_splat at offsets 0/4/8/12 cost more: JavaScriptCore lowers a splat load at a
    // non-zero offset to a scalar load + GPR→vector move + shuffle (2 µops and a domain crossing).
    const b0 = v128.load(pb), b1 = v128.load(pb, 16), va = v128.load(pa);
    let a = i32x4.shuffle(va, va, 0, 0, 0, 0);
    c00 = madd(a, b0, c00); c01 = madd(a, b1, c01);
    a = i32x4.shuffle(va, va, 1, 1, 1, 1);
    c10 = madd(a, b0, c10); c11 = madd(a, b1, c11);
    a = i32x4.shuffle(va, va, 2, 2, 2, 2);
    c20 = madd(a, b0, c20); c21 = madd(a, b1, c21);
    a = i32x4.shuffle(va, va, 3, 3, 3, 3);
    c30 = madd(a, b0, c30); c31 = madd(a, b1, c31);
    pa += 16; pb += 32;
  } while (pb < pe);
  const vlo = f32x4.splat(lo), vhi = f32x4.splat(hi);
  finishRow(c, r, c00, c01, vlo, vhi, cols, last);
  if (rows > 1) finishRow(c + ldc, r != 0 ? r + ldc : 0, c10, c11, vlo, vhi, cols, last);
  if (rows > 2) finishRow(c + 2 * ldc, r != 0 ? r + 2 * ldc : 0, c20, c21, vlo, vhi, cols, last);
  if (rows > 3) finishRow(c + 3 * ldc, r != 0 ? r + 3 * ldc : 0, c30, c31, vlo, vhi, cols, last);
}

/** C tile (4 × 8, rows `ldc` bytes apart) = packed A panel · packed B panel over kb steps, no epilogue. */
// @ts-ignore: decorator
@inline export function convTile(ap: usize, bp: usize, kb: i32, c: usize, ldc: usize, rows: i32, cols: i32): void {
  tile4x8(ap, bp, kb, c, ldc, rows, cols, true, false, 0, 0, 0, 0, 0);
}

/** 8 outputs at o: + residual at q (0 = none), clamp to [vlo, vhi], store. */
// @ts-ignore: decorator
@inline export function storeTileRow(o: usize, q: usize, v0: v128, v1: v128, vlo: v128, vhi: v128): void {
  if (q != 0) { v0 = f32x4.add(v0, v128.load(q)); v1 = f32x4.add(v1, v128.load(q, 16)); }
  v128.store(o, f32x4.min(f32x4.max(v0, vlo), vhi));
  v128.store(o, f32x4.min(f32x4.max(v1, vlo), vhi), 16);
}
