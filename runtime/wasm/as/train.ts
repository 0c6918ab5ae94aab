// Training kernels on the sparse conv kernels' run layout (as/sparse.ts): the input is the
// zero-padded, phase-split copy (phaseSplitF32), an output pixel (oy, ox) has run index
// p = oy·Wq + ox, and kept weight j reads the input at taps[j] + p (byte offset from its image
// and group base). Runs are L8 floats: Ho·Wq rounded up to 8.
import { madd } from "./simd";

/** Horizontal sum of a float32 vector. */
// @ts-ignore: decorator
@inline function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}

/**
 * dst[item·L8 + p] = src[item·Ho·Wo + oy·Wo + ox] for p = oy·Wq + ox with ox < Wo, else 0, for the
 * rows item = n·M + m in [begin, end): a [N, M, Ho, Wo] gradient laid out as runs, the garbage
 * columns (ox ≥ Wo) and the tail [Ho·Wq, L8) zero so they add nothing to a dot over the run.
 * With `sums` ≠ 0 also sums[m] += Σ of the row (the bias gradient, m = item mod M).
 */
export function padRunsF32(begin: i32, end: i32, src: usize, Ho: i32, Wo: i32, Wq: i32, L8: i32, dst: usize, M: i32, sums: usize): void {
  const plane = <usize>Ho * <usize>Wo;
  for (let item = begin; item < end; item++) {
    const s = src + ((<usize>item * plane) << 2), d = dst + ((<usize>item * <usize>L8) << 2);
    if (sums) {
      let a = f32x4.splat(0), t: f32 = 0;
      let i: usize = 0;
      for (; i + 4 <= plane; i += 4) a = f32x4.add(a, v128.load(s + (i << 2)));
      for (; i < plane; i++) t += load<f32>(s + (i << 2));
      const o = sums + (<usize>(item % M) << 2);
      store<f32>(o, load<f32>(o) + hsum(a) + t);
    }
    if (Wq == Wo) {
      memory.copy(d, s, plane << 2);
      memory.fill(d + (plane << 2), 0, (<usize>L8 - plane) << 2);
      continue;
    }
    memory.fill(d, 0, <usize>L8 << 2);
    for (let oy = 0; oy < Ho; oy++) memory.copy(d + ((<usize>oy * <usize>Wq) << 2), s + ((<usize>oy * <usize>Wo) << 2), <usize>Wo << 2);
  }
}

/**
 * The weight gradient of a conv at its kept weights only (a masked product: the pruned ones get
 * none), rows m in [begin, end):
 *   out[j] += Σ_n Σ_{p < L8} dyq[(n·M + m)·L8 + p] · x_n,g(m)[taps[j] + p]   for j in [rowPtr[m], rowPtr[m + 1])
 * — dL/dW[m, c, ky, kx] = Σ_n Σ_{oy, ox} dY[n, m, oy, ox] · X[n, c, oy·s + ky·d − pad, …], with dyq
 * from padRunsF32 (zero where a run has no output pixel) and x the phase-split input (`xImg`
 * bytes an image, `gStride` bytes a group of `Mg` rows). Eight kept weights share each dY load (the rest of a row one by one).
 */
export function convWeightGradF32(
  begin: i32, end: i32, rowPtr: usize, taps: usize, x: usize, xImg: i32, gStride: i32, Mg: i32, M: i32, N: i32,
  dyq: usize, L8: i32, out: usize,
): void {
  const runBytes = <usize>L8 << 2;
  const z = f32x4.splat(0);
  // Image by image, so one image's input planes stay in cache across the rows.
  for (let n = 0; n < N; n++) {
    for (let m = begin; m < end; m++) {
      const j0 = load<i32>(rowPtr + (<usize>m << 2)), j1 = load<i32>(rowPtr + (<usize>(m + 1) << 2));
      if (j0 == j1) continue;
      const gOff = <usize>(m / Mg) * <usize>gStride;
      const d = dyq + (<usize>n * <usize>M + <usize>m) * runBytes;
      const base = x + <usize>n * <usize>xImg + gOff;
      let j = j0;
      for (; j + 8 <= j1; j += 8) {
        const t = taps + (<usize>j << 2);
        const s0 = base + <usize>load<i32>(t), s1 = base + <usize>load<i32>(t, 4);
        const s2 = base + <usize>load<i32>(t, 8), s3 = base + <usize>load<i32>(t, 12);
        const s4 = base + <usize>load<i32>(t, 16), s5 = base + <usize>load<i32>(t, 20);
        const s6 = base + <usize>load<i32>(t, 24), s7 = base + <usize>load<i32>(t, 28);
        let a0 = z, a1 = z, a2 = z, a3 = z, a4 = z, a5 = z, a6 = z, a7 = z;
        for (let p: usize = 0; p < runBytes; p += 16) {
          const dv = v128.load(d + p);
          a0 = madd(dv, v128.load(s0 + p), a0);
          a1 = madd(dv, v128.load(s1 + p), a1);
          a2 = madd(dv, v128.load(s2 + p), a2);
          a3 = madd(dv, v128.load(s3 + p), a3);
          a4 = madd(dv, v128.load(s4 + p), a4);
          a5 = madd(dv, v128.load(s5 + p), a5);
          a6 = madd(dv, v128.load(s6 + p), a6);
          a7 = madd(dv, v128.load(s7 + p), a7);
        }
        const o = out + (<usize>j << 2);
        store<f32>(o, load<f32>(o) + hsum(a0));
        store<f32>(o, load<f32>(o, 4) + hsum(a1), 4);
        store<f32>(o, load<f32>(o, 8) + hsum(a2), 8);
        store<f32>(o, load<f32>(o, 12) + hsum(a3), 12);
        store<f32>(o, load<f32>(o, 16) + hsum(a4), 16);
        store<f32>(o, load<f32>(o, 20) + hsum(a5), 20);
        store<f32>(o, load<f32>(o, 24) + hsum(a6), 24);
        store<f32>(o, load<f32>(o, 28) + hsum(a7), 28);
      }
      for (; j < j1; j++) {
        const s = base + <usize>load<i32>(taps + (<usize>j << 2));
        let a = z;
        for (let p: usize = 0; p < runBytes; p += 16) a = madd(v128.load(d + p), v128.load(s + p), a);
        const o = out + (<usize>j << 2);
        store<f32>(o, load<f32>(o) + hsum(a));
      }
    }
  }
}

/**
 * The dense weight gradient (every weight) on the same layout, rows m in [begin, end):
 *   out[m·cols + q] += Σ_n Σ_{p < L8} dyq[(n·M + m)·L8 + p] · x_n,g(m)[taps[q] + p]   for q in [0, cols)
 * — convWeightGradF32 with every weight kept, blocked 2 rows × 4 taps: each step loads 2 dY and
 * 4 input vectors for 8 multiply-adds (the masked kernel: 9 loads for 8), so the input planes,
 * which outgrow L1 at 28² (16 channels), are read half as often.
 */
export function convWeightGradDenseF32(
  begin: i32, end: i32, taps: usize, cols: i32, x: usize, xImg: i32, gStride: i32, Mg: i32, M: i32, N: i32,
  dyq: usize, L8: i32, out: usize,
): void {
  const runBytes = <usize>L8 << 2;
  const z = f32x4.splat(0);
  for (let n = 0; n < N; n++) {
    const xn = x + <usize>n * <usize>xImg;
    let m = begin;
    while (m < end) {
      const grp = m / Mg;
      // Two rows of one group at a time; a lone row computes its pair's dot products and drops them.
      const pair = m + 1 < end && (m + 1) / Mg == grp;
      const base = xn + <usize>grp * <usize>gStride;
      const d0 = dyq + (<usize>n * <usize>M + <usize>m) * runBytes, d1 = pair ? d0 + runBytes : d0;
      const o0 = out + ((<usize>m * <usize>cols) << 2), o1 = o0 + (<usize>cols << 2);
      let q = 0;
      for (; q + 4 <= cols; q += 4) {
        const t = taps + (<usize>q << 2);
        const s0 = base + <usize>load<i32>(t), s1 = base + <usize>load<i32>(t, 4);
        const s2 = base + <usize>load<i32>(t, 8), s3 = base + <usize>load<i32>(t, 12);
        let a0 = z, a1 = z, a2 = z, a3 = z, b0 = z, b1 = z, b2 = z, b3 = z;
        for (let p: usize = 0; p < runBytes; p += 16) {
          const y0 = v128.load(d0 + p), y1 = v128.load(d1 + p);
          const x0 = v128.load(s0 + p), x1 = v128.load(s1 + p), x2 = v128.load(s2 + p), x3 = v128.load(s3 + p);
          a0 = madd(y0, x0, a0); b0 = madd(y1, x0, b0);
          a1 = madd(y0, x1, a1); b1 = madd(y1, x1, b1);
          a2 = madd(y0, x2, a2); b2 = madd(y1, x2, b2);
          a3 = madd(y0, x3, a3); b3 = madd(y1, x3, b3);
        }
        const o = o0 + (<usize>q << 2);
        store<f32>(o, load<f32>(o) + hsum(a0));
        store<f32>(o, load<f32>(o, 4) + hsum(a1), 4);
        store<f32>(o, load<f32>(o, 8) + hsum(a2), 8);
        store<f32>(o, load<f32>(o, 12) + hsum(a3), 12);
        if (pair) {
          const r = o1 + (<usize>q << 2);
          store<f32>(r, load<f32>(r) + hsum(b0));
          store<f32>(r, load<f32>(r, 4) + hsum(b1), 4);
          store<f32>(r, load<f32>(r, 8) + hsum(b2), 8);
          store<f32>(r, load<f32>(r, 12) + hsum(b3), 12);
        }
      }
      for (; q < cols; q++) {
        const s = base + <usize>load<i32>(taps + (<usize>q << 2));
        let a = z, b = z;
        for (let p: usize = 0; p < runBytes; p += 16) {
          const xv = v128.load(s + p);
          a = madd(v128.load(d0 + p), xv, a);
          b = madd(v128.load(d1 + p), xv, b);
        }
        const o = o0 + (<usize>q << 2);
        store<f32>(o, load<f32>(o) + hsum(a));
        if (pair) { const r = o1 + (<usize>q << 2); store<f32>(r, load<f32>(r) + hsum(b)); }
      }
      m += pair ? 2 : 1;
    }
  }
}
