/**
 * Cache-blocked float32 GEMM, `C = alpha·op(A)·op(B) + (accumulate ? C : 0)`. `sgemm` dispatches
 * to the WebAssembly SIMD kernel of cpu/sgemm-simd.ts when the host has WASM SIMD (Bun, Deno and
 * Node all do) and the product is not tiny, else to `sgemmScalar`, the plain-JS kernel below, which
 * stays as the reference the SIMD one is tested against and the fallback.
 *
 * `sgemmScalar` — GotoBLAS layout: B is packed in KC×NC blocks of NR-wide column panels, A in MC×KC
 * blocks of MR-high row panels, and a register-blocked MR×NR micro-kernel keeps its accumulators in
 * locals. Packing zero-pads the edge panels, so the micro-kernel never branches on size inside its
 * k loop; transposes cost nothing because packing reads either layout. Packed panels are float64
 * (one conversion per element at packing, none in the k loop). Fewer than MR rows (a classifier on
 * one image) skip packing (`smallM`). Scratch buffers are reused across calls (the runtime runs one
 * kernel at a time per thread), so hot loops never allocate. One thread reaches the scalar FP peak,
 * ~6–7 GFLOP/s in Bun and ~4 in Deno on the CI box's AMD EPYC core. The SIMD kernel (same blocking,
 * float32, 4×8 f32x4 tiles) reaches ~17–23 GFLOP/s in both on conv-sized products: 3× the scalar
 * kernel in Bun, 4–5× in Deno (`bun bench/kernels-bench.ts --filter GEMM`).
 * @module
 */
import { sgemmSimd, simdGemmAvailable } from "./sgemm-simd.ts";

/** Rows of C per micro-kernel call (register block height). */
export const GEMM_MR = 4;
/** Columns of C per micro-kernel call (register block width). */
export const GEMM_NR = 4;
/** Depth of a packed block: one NR panel of B (KC·NR doubles = 8 KiB) stays in L1. */
const KC = 256;
/** Rows of A per packed block: MC·KC doubles (256 KiB) for L2. */
const MC = 128;
/** Columns of B per packed block: KC·NC doubles (4 MiB) for L3. */
const NC = 2048;

/**
 * Scratch for a partial (edge) tile, so the micro-kernel never allocates. Float32 like every C the
 * kernel writes: one element type keeps its call sites monomorphic.
 */
const EDGE_TILE = new Float32Array(GEMM_MR * GEMM_NR);
// Packed panels are float64: every packed value is read MR or NR times, and converting once at
// packing time beats a float32→float64 conversion per load (~20% faster in JavaScriptCore).
let packedA = new Float64Array(MC * KC);
let packedB = new Float64Array(KC * NC);

/** A strided float32 matrix operand: element (i, j) is `data[offset + i·rowStride + j·colStride]`. */
export interface MatrixView {
  data: Float32Array;
  offset: number;
  rowStride: number;
  colStride: number;
}

/** A row-major view of `data` starting at `offset`, `ld` elements per row, optionally transposed. */
export function matrixView(data: Float32Array, offset: number, ld: number, transposed = false): MatrixView {
  return transposed ? intView(data, offset, 1, ld) : intView(data, offset, ld, 1);
}

/**
 * A view whose numbers are int32-tagged. JavaScriptCore passes an integral value computed as a
 * double (a quotient, Math.ceil, an int64 attribute) as a double; a kernel compiled for int32
 * indices then exits at entry on every call and is eventually recompiled ~4× slower. Every hot
 * function here therefore `| 0`s its integer arguments on entry.
 */
function intView(data: Float32Array, offset: number, rowStride: number, colStride: number): MatrixView {
  return { data, offset: offset | 0, rowStride: rowStride | 0, colStride: colStride | 0 };
}

/** Which GEMM implementation `sgemm` uses: WASM SIMD, plain JS, or chosen per call ("auto"). */
export type GemmBackend = "simd" | "scalar" | "auto";
let backendSetting: GemmBackend = "auto";
/** The implementation the last `sgemm` call ran ("none" before the first call). */
let lastBackend: "simd" | "scalar" | "none" = "none";

/**
 * Below this many multiply-adds (m·n·k) "auto" stays on the JS kernel: a SIMD call has a fixed
 * cost (packing into wasm memory, copying C out, the wasm call) that a handful of MACs does not
 * repay. Measured in Bun and Deno: 4×4×4 is 1.2–1.6× slower on SIMD, 4×8×8 (256) already break-
 * even or faster, 16³ 1.9–2× faster; the threshold sits just above the break-even.
 */
export const SIMD_MIN_MACS = 512;

/**
 * Force the GEMM implementation (tests and benchmarks); returns the previous setting. "simd" on a
 * host without WASM SIMD falls back to the JS kernel, as "auto" does. Fewer than GEMM_MR rows
 * always take the JS `smallM` path, whatever the setting.
 */
export function setGemmBackend(backend: GemmBackend): GemmBackend {
  const previous = backendSetting;
  backendSetting = backend;
  return previous;
}

/** Whether `sgemm` runs products on the WASM SIMD kernel: the host has it and "scalar" is not forced. */
export function simdGemmInUse(): boolean {
  return backendSetting !== "scalar" && simdGemmAvailable();
}

/**
 * The implementation the most recent `sgemm` call in this thread ran (or "none"), so tests can
 * check which path a shape took; `setGemmBackend` reports the setting.
 */
export function gemmBackend(): "simd" | "scalar" | "none" {
  return lastBackend;
}

/**
 * `C[m×n] = alpha·A[m×k]·B[k×n] + (accumulate ? C : 0)`. A and B are strided views (so either may be
 * transposed), C is row-major with leading dimension `ldc` starting at `cOffset`. Runs the WASM SIMD
 * kernel (cpu/sgemm-simd.ts) when the host has it and the product is worth packing, else
 * `sgemmScalar`; `setGemmBackend` overrides the choice.
 */
export function sgemm(
  m: number, n: number, k: number, alpha: number,
  a: MatrixView, b: MatrixView,
  c: Float32Array, cOffset: number, ldc: number, accumulate: boolean,
): void {
  if (backendSetting !== "scalar" && m >= GEMM_MR && simdGemmAvailable() &&
      (backendSetting === "simd" || m * n * k >= SIMD_MIN_MACS)) {
    lastBackend = "simd";
    sgemmSimd(m, n, k, alpha, a, b, c, cOffset, ldc, accumulate);
  } else {
    lastBackend = "scalar";
    sgemmScalar(m, n, k, alpha, a, b, c, cOffset, ldc, accumulate);
  }
}

/**
 * The plain-JS GEMM, same contract as `sgemm`, float64 accumulation: the reference the SIMD
 * kernel is tested against, and the fallback where WebAssembly SIMD is missing.
 */
export function sgemmScalar(
  m: number, n: number, k: number, alpha: number,
  a: MatrixView, b: MatrixView,
  c: Float32Array, cOffset: number, ldc: number, accumulate: boolean,
): void {
  m |= 0; n |= 0; k |= 0; cOffset |= 0; ldc |= 0;
  a = intView(a.data, a.offset, a.rowStride, a.colStride);
  b = intView(b.data, b.offset, b.rowStride, b.colStride);
  if (m === 0 || n === 0) return;
  if (k === 0 || alpha === 0) {
    if (!accumulate) for (let i = 0; i < m; i++) c.fill(0, cOffset + i * ldc, cOffset + i * ldc + n);
    return;
  }
  if (m < GEMM_MR) {
    smallM(m, n, k, alpha, a, b, c, cOffset, ldc, accumulate);
    return;
  }
  for (let jc = 0; jc < n; jc += NC) {
    const nc = Math.min(NC, n - jc);
    for (let pc = 0; pc < k; pc += KC) {
      const kc = Math.min(KC, k - pc);
      // The first k block writes C (unless accumulating); later blocks add to it.
      const acc = accumulate || pc > 0;
      packPanelsB(b, pc, kc, jc, nc, alpha);
      for (let ic = 0; ic < m; ic += MC) {
        const mc = Math.min(MC, m - ic);
        packPanelsA(a, ic, mc, pc, kc);
        macroKernel(mc, nc, kc, c, cOffset + ic * ldc + jc, ldc, acc);
      }
    }
  }
}

let rowScratch = new Float64Array(256);

/**
 * Fewer rows than one register tile (a classifier on one image): packing B would cost as much as
 * the product, so read B in place. Column-contiguous B (transB) → dot products; row-contiguous B
 * → axpy of B's rows into a float64 row, skipping zero entries of A (post-ReLU activations).
 */
function smallM(
  m: number, n: number, k: number, alpha: number, a: MatrixView, b: MatrixView,
  c: Float32Array, cOffset: number, ldc: number, accumulate: boolean,
): void {
  const ad = a.data, bd = b.data, ars = a.rowStride, acs = a.colStride, brs = b.rowStride, bcs = b.colStride;
  for (let i = 0; i < m; i++) {
    const aRow = a.offset + i * ars, cRow = cOffset + i * ldc;
    if (brs === 1) {
      // Four dot products at a time share each load of A.
      let j = 0;
      for (; j + 4 <= n; j += 4) {
        const b0 = b.offset + j * bcs, b1 = b0 + bcs, b2 = b1 + bcs, b3 = b2 + bcs;
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (let p = 0, ai = aRow; p < k; p++, ai += acs) {
          const av = ad[ai]!;
          s0 += av * bd[b0 + p]!; s1 += av * bd[b1 + p]!; s2 += av * bd[b2 + p]!; s3 += av * bd[b3 + p]!;
        }
        if (accumulate) {
          c[cRow + j] += alpha * s0; c[cRow + j + 1] += alpha * s1; c[cRow + j + 2] += alpha * s2; c[cRow + j + 3] += alpha * s3;
        } else {
          c[cRow + j] = alpha * s0; c[cRow + j + 1] = alpha * s1; c[cRow + j + 2] = alpha * s2; c[cRow + j + 3] = alpha * s3;
        }
      }
      for (; j < n; j++) {
        const bCol = b.offset + j * bcs;
        let s0 = 0;
        for (let p = 0; p < k; p++) s0 += ad[aRow + p * acs]! * bd[bCol + p]!;
        c[cRow + j] = accumulate ? c[cRow + j]! + alpha * s0 : alpha * s0;
      }
    } else {
      if (rowScratch.length < n) rowScratch = new Float64Array(n);
      const acc = rowScratch;
      acc.fill(0, 0, n);
      const n4 = n & ~3;
      for (let p = 0; p < k; p++) {
        const av = ad[aRow + p * acs]!;
        if (av === 0) continue;
        const bRow = b.offset + p * brs;
        if (bcs === 1) {
          let j = 0;
          for (; j < n4; j += 4) {
            acc[j] += av * bd[bRow + j]!; acc[j + 1] += av * bd[bRow + j + 1]!;
            acc[j + 2] += av * bd[bRow + j + 2]!; acc[j + 3] += av * bd[bRow + j + 3]!;
          }
          for (; j < n; j++) acc[j] += av * bd[bRow + j]!;
        } else {
          for (let j = 0; j < n; j++) acc[j] += av * bd[bRow + j * bcs]!;
        }
      }
      for (let j = 0; j < n; j++) c[cRow + j] = accumulate ? c[cRow + j]! + alpha * acc[j]! : alpha * acc[j]!;
    }
  }
}

/** Pack B[pc:pc+kc, jc:jc+nc]·alpha into NR-wide panels, each kc×NR row-major, zero-padded. */
function packPanelsB(b: MatrixView, pc: number, kc: number, jc: number, nc: number, alpha: number): void {
  const panels = Math.ceil(nc / GEMM_NR);
  if (packedB.length < panels * GEMM_NR * kc) packedB = new Float64Array(panels * GEMM_NR * kc);
  const dst = packedB, src = b.data, rs = b.rowStride, cs = b.colStride;
  let o = 0;
  for (let jp = 0; jp < nc; jp += GEMM_NR) {
    const w = Math.min(GEMM_NR, nc - jp);
    let base = b.offset + pc * rs + (jc + jp) * cs;
    if (w === GEMM_NR && cs === 1) {
      if (alpha === 1) {
        for (let p = 0; p < kc; p++, base += rs, o += 4) {
          dst[o] = src[base]!; dst[o + 1] = src[base + 1]!; dst[o + 2] = src[base + 2]!; dst[o + 3] = src[base + 3]!;
        }
      } else {
        for (let p = 0; p < kc; p++, base += rs, o += 4) {
          dst[o] = alpha * src[base]!; dst[o + 1] = alpha * src[base + 1]!;
          dst[o + 2] = alpha * src[base + 2]!; dst[o + 3] = alpha * src[base + 3]!;
        }
      }
    } else {
      for (let p = 0; p < kc; p++, base += rs, o += GEMM_NR) {
        for (let j = 0; j < GEMM_NR; j++) dst[o + j] = j < w ? alpha * src[base + j * cs]! : 0;
      }
    }
  }
}

/** Pack A[ic:ic+mc, pc:pc+kc] into MR-high panels, each kc×MR column-interleaved, zero-padded. */
function packPanelsA(a: MatrixView, ic: number, mc: number, pc: number, kc: number): void {
  const panels = Math.ceil(mc / GEMM_MR);
  if (packedA.length < panels * GEMM_MR * kc) packedA = new Float64Array(panels * GEMM_MR * kc);
  const dst = packedA, src = a.data, rs = a.rowStride, cs = a.colStride;
  let o = 0;
  for (let ip = 0; ip < mc; ip += GEMM_MR) {
    const h = Math.min(GEMM_MR, mc - ip);
    const base = a.offset + (ic + ip) * rs + pc * cs;
    if (h === GEMM_MR) {
      let r0 = base, r1 = base + rs, r2 = base + 2 * rs, r3 = base + 3 * rs;
      for (let p = 0; p < kc; p++, o += 4, r0 += cs, r1 += cs, r2 += cs, r3 += cs) {
        dst[o] = src[r0]!; dst[o + 1] = src[r1]!; dst[o + 2] = src[r2]!; dst[o + 3] = src[r3]!;
      }
    } else {
      for (let p = 0; p < kc; p++, o += GEMM_MR) {
        for (let i = 0; i < GEMM_MR; i++) dst[o + i] = i < h ? src[base + i * rs + p * cs]! : 0;
      }
    }
  }
}

/**
 * Run the micro-kernel over every MR×NR tile of one packed mc×nc block of C. Full tiles write C
 * directly; edge tiles (zero-padded in the packing) are computed into a scratch tile and copied.
 * The two are separate functions on purpose: with the edge copy-out inside the hot kernel,
 * JavaScriptCore was measured to recompile the whole kernel 1.7× slower once edge tiles occurred.
 */
function macroKernel(mc: number, nc: number, kc: number, c: Float32Array, cOff: number, ldc: number, acc: boolean): void {
  mc |= 0; nc |= 0; kc |= 0; cOff |= 0; ldc |= 0;
  const ap = packedA, bp = packedB;
  for (let jr = 0; jr < nc; jr += GEMM_NR) {
    const nr = Math.min(GEMM_NR, nc - jr);
    const bOff = jr * kc;
    for (let ir = 0; ir < mc; ir += GEMM_MR) {
      const mr = Math.min(GEMM_MR, mc - ir);
      if (mr === GEMM_MR && nr === GEMM_NR) {
        microKernel4x4(kc, ap, ir * kc, bp, bOff, c, cOff + ir * ldc + jr, ldc, acc);
      } else {
        const tile = EDGE_TILE;
        tile.fill(0);
        microKernel4x4(kc, ap, ir * kc, bp, bOff, tile, 0, GEMM_NR, false);
        const ci = cOff + ir * ldc + jr;
        for (let i = 0; i < mr; i++) {
          for (let j = 0; j < nr; j++) {
            const v = tile[i * GEMM_NR + j]!;
            c[ci + i * ldc + j] = acc ? c[ci + i * ldc + j]! + v : v;
          }
        }
      }
    }
  }
}

/** 4×4 register block: 16 accumulators, 4+4 loads per 16 multiply-adds, one full tile of C. */
function microKernel4x4(
  kc: number, ap: Float64Array, ai: number, bp: Float64Array, bi: number,
  c: Float32Array, ci: number, ldc: number, acc: boolean,
): void {
  kc |= 0; ai |= 0; bi |= 0; ci |= 0; ldc |= 0;
  let c00 = 0, c01 = 0, c02 = 0, c03 = 0;
  let c10 = 0, c11 = 0, c12 = 0, c13 = 0;
  let c20 = 0, c21 = 0, c22 = 0, c23 = 0;
  let c30 = 0, c31 = 0, c32 = 0, c33 = 0;
  const end = ai + 4 * kc;
  for (; ai < end; ai += 4, bi += 4) {
    const a0 = ap[ai]!, a1 = ap[ai + 1]!, a2 = ap[ai + 2]!, a3 = ap[ai + 3]!;
    const b0 = bp[bi]!, b1 = bp[bi + 1]!, b2 = bp[bi + 2]!, b3 = bp[bi + 3]!;
    c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
    c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
    c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
    c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
  }
  if (acc) {
    c[ci] += c00; c[ci + 1] += c01; c[ci + 2] += c02; c[ci + 3] += c03; ci += ldc;
    c[ci] += c10; c[ci + 1] += c11; c[ci + 2] += c12; c[ci + 3] += c13; ci += ldc;
    c[ci] += c20; c[ci + 1] += c21; c[ci + 2] += c22; c[ci + 3] += c23; ci += ldc;
    c[ci] += c30; c[ci + 1] += c31; c[ci + 2] += c32; c[ci + 3] += c33;
  } else {
    c[ci] = c00; c[ci + 1] = c01; c[ci + 2] = c02; c[ci + 3] = c03; ci += ldc;
    c[ci] = c10; c[ci + 1] = c11; c[ci + 2] = c12; c[ci + 3] = c13; ci += ldc;
    c[ci] = c20; c[ci + 1] = c21; c[ci + 2] = c22; c[ci + 3] = c23; ci += ldc;
    c[ci] = c30; c[ci + 1] = c31; c[ci + 2] = c32; c[ci + 3] = c33;
  }
}
