/**
 * The float32 GEMM of cpu/sgemm.ts on WebAssembly SIMD (f32x4), same signature and semantics.
 * JS packs A and B (as float32, alpha folded into B) straight into the wasm memory in the GotoBLAS
 * layout of sgemm.ts — MR-high column-interleaved panels of A, NR-wide row-major panels of B, both
 * zero-padded — and one wasm export, `macro`, runs an MR×NR register-tiled micro-kernel over a
 * whole packed block. C is accumulated in a padded scratch in wasm memory (so edge tiles need no
 * special case) and copied out once per column block. Sums are float32 (separate mul and add: no
 * relaxed-SIMD FMA, which JavaScriptCore lacks), where the JS kernel sums in float64.
 *
 * The module is emitted by our own code (cpu/wasm-emit.ts) and instantiated lazily, once per
 * isolate: every worker of the pool that imports this file gets its own instance and memory.
 * @module
 */
import type { MatrixView } from "./sgemm.ts";
import { CodeBuilder, emitModule, type FuncDef, OP, SIMD_OP, VALTYPE } from "./wasm-emit.ts";

/**
 * Rows of C per micro-kernel tile: MR·NR/4 = 8 f32x4 accumulators, + 2 for B and 1 for A, 11 of
 * the 16 SIMD registers. 5×8 and 6×8 tiles (13 and 15 registers), and unrolling the k loop by 2,
 * measured no faster in Bun or Deno (~20–24 GFLOP/s on one AMD EPYC core either way).
 */
export const SIMD_MR = 4;
/** Columns of C per micro-kernel tile: two f32x4 vectors of a packed B row. */
export const SIMD_NR = 8;
/** Depth of a packed block: one kc×NR panel of B (8 KiB) stays in L1. */
const KC = 256;
/** Rows of A per packed block (a multiple of MR): MC·KC floats (128 KiB) for L2. */
const MC = 32 * SIMD_MR;
/** Columns of B per packed block: KC·NC floats (2 MiB). */
const NC = 2048;
/** Rows of C held in the wasm scratch at once (a multiple of MR); more rows repack B per chunk. */
const M_CHUNK = 128 * SIMD_MR;
const PAGE = 65536;
/** Byte offsets of the packed A block, the packed B block and the C scratch in wasm memory. */
const A_PTR = 0;
const B_PTR = A_PTR + MC * KC * 4;
const C_PTR = B_PTR + KC * NC * 4;

/**
 * The macro-kernel: `macro(mc, nc, kc, aPtr, bPtr, cPtr, ldc, acc)` with mc a multiple of MR, nc of
 * NR, kc ≥ 1, `ldc` in bytes. For every NR-wide panel of B (outer, so it stays in L1) and MR-high
 * panel of A, C tile (+)= A panel · B panel. All loops are do-while: the caller never passes 0.
 */
function macroKernel(mr: number): FuncDef {
  const [mc, nc, kc, aPtr, bPtr, cPtr, ldc, acc] = [0, 1, 2, 3, 4, 5, 6, 7];
  const [aStride, bStride, bPanel, cCol, jr, aPanel, cTile, ir, pa, pb, pEnd, t] = [8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19];
  const I32_LOCALS = 12;
  const [b0, b1, av] = [20, 21, 22];
  const c = (i: number, h: number) => 23 + 2 * i + h; // accumulator of row i, half h
  const code = new CodeBuilder();
  const { f32x4Add, f32x4Mul, v128Load, v128Load32Splat, v128Store } = SIMD_OP;
  code.get(kc).i32(mr * 4).op(OP.i32Mul).set(aStride);
  code.get(kc).i32(SIMD_NR * 4).op(OP.i32Mul).set(bStride);
  code.get(bPtr).set(bPanel).get(cPtr).set(cCol).i32(0).set(jr);
  code.begin(OP.loop); // over B panels (jr)
  code.get(aPtr).set(aPanel).get(cCol).set(cTile).i32(0).set(ir);
  code.begin(OP.loop); // over A panels (ir)
  for (let i = 0; i < mr; i++) for (let h = 0; h < 2; h++) code.v128Zero().set(c(i, h));
  code.get(aPanel).tee(pa).get(aStride).op(OP.i32Add).set(pEnd).get(bPanel).set(pb);
  code.begin(OP.loop); // over k: one row of the B panel, one column of the A panel
  code.get(pb).simdMem(v128Load, 4, 0).set(b0).get(pb).simdMem(v128Load, 4, 16).set(b1);
  for (let i = 0; i < mr; i++) {
    code.get(pa).simdMem(v128Load32Splat, 2, 4 * i).set(av);
    for (let h = 0; h < 2; h++) code.get(c(i, h)).get(av).get(h === 0 ? b0 : b1).simd(f32x4Mul).simd(f32x4Add).set(c(i, h));
  }
  code.get(pb).i32(SIMD_NR * 4).op(OP.i32Add).set(pb);
  code.get(pa).i32(mr * 4).op(OP.i32Add).tee(pa).get(pEnd).op(OP.i32Ne).brIf(0);
  code.end();
  // Store the tile: rows ldc bytes apart, each two vectors.
  code.get(cTile).set(t).get(acc).begin(OP.if);
  for (let i = 0; i < mr; i++) {
    for (let h = 0; h < 2; h++) {
      code.get(t).get(t).simdMem(v128Load, 4, 16 * h).get(c(i, h)).simd(f32x4Add).simdMem(v128Store, 4, 16 * h);
    }
    if (i < mr - 1) code.get(t).get(ldc).op(OP.i32Add).set(t);
  }
  code.op(OP.else);
  for (let i = 0; i < mr; i++) {
    for (let h = 0; h < 2; h++) code.get(t).get(c(i, h)).simdMem(v128Store, 4, 16 * h);
    if (i < mr - 1) code.get(t).get(ldc).op(OP.i32Add).set(t);
  }
  code.end();
  code.get(aPanel).get(aStride).op(OP.i32Add).set(aPanel);
  code.get(cTile).get(ldc).i32(mr).op(OP.i32Mul).op(OP.i32Add).set(cTile);
  code.get(ir).i32(mr).op(OP.i32Add).tee(ir).get(mc).op(OP.i32Ne).brIf(0);
  code.end();
  code.get(bPanel).get(bStride).op(OP.i32Add).set(bPanel);
  code.get(cCol).i32(SIMD_NR * 4).op(OP.i32Add).set(cCol);
  code.get(jr).i32(SIMD_NR).op(OP.i32Add).tee(jr).get(nc).op(OP.i32Ne).brIf(0);
  code.end();
  return {
    params: new Array(8).fill(VALTYPE.i32),
    results: [],
    locals: [...new Array(I32_LOCALS).fill(VALTYPE.i32), ...new Array(3 + 2 * mr).fill(VALTYPE.v128)],
    body: code.bytes,
    exportName: "macro",
  };
}

/** The module's bytes: the macro-kernel and an exported memory (grown on demand). */
export function sgemmModuleBytes(): Uint8Array<ArrayBuffer> {
  return emitModule([macroKernel(SIMD_MR)], { export: "memory", initialPages: 1 });
}

type Macro = (mc: number, nc: number, kc: number, aPtr: number, bPtr: number, cPtr: number, ldc: number, acc: number) => void;
interface Instance {
  macro: Macro;
  memory: WebAssembly.Memory;
  /** A view of the whole memory, re-created whenever the memory grows (growth detaches it). */
  f32: Float32Array;
}
/** This isolate's instance: undefined until first use, null if the host lacks WASM SIMD. */
let instance: Instance | null | undefined;

function load(): Instance | null {
  if (instance !== undefined) return instance;
  instance = null;
  try {
    if (typeof WebAssembly === "undefined") return null;
    const bytes = sgemmModuleBytes();
    if (!WebAssembly.validate(bytes)) return null; // no SIMD: the module does not even validate
    const exports = new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports;
    const memory = exports.memory as WebAssembly.Memory;
    instance = { macro: exports.macro as Macro, memory, f32: new Float32Array(memory.buffer) };
  } catch {
    instance = null;
  }
  return instance;
}

/** Whether this host runs WebAssembly SIMD (validates and instantiates our module; cached). */
export function simdGemmAvailable(): boolean {
  return load() !== null;
}

/** The memory view, grown to hold `bytes` first. */
function memoryFor(inst: Instance, bytes: number): Float32Array {
  const have = inst.memory.buffer.byteLength;
  if (have < bytes) inst.memory.grow(Math.ceil((bytes - have) / PAGE));
  if (inst.f32.buffer !== inst.memory.buffer) inst.f32 = new Float32Array(inst.memory.buffer);
  return inst.f32;
}

/**
 * `C[m×n] = alpha·A[m×k]·B[k×n] + (accumulate ? C : 0)` on WASM SIMD, exactly the contract of
 * `sgemm` in cpu/sgemm.ts (strided A and B, row-major C at `cOffset` with leading dimension `ldc`).
 * Throws if the host lacks WASM SIMD (check `simdGemmAvailable()` first).
 */
export function sgemmSimd(
  m: number, n: number, k: number, alpha: number,
  a: MatrixView, b: MatrixView,
  c: Float32Array, cOffset: number, ldc: number, accumulate: boolean,
): void {
  m |= 0; n |= 0; k |= 0; cOffset |= 0; ldc |= 0;
  if (m === 0 || n === 0) return;
  if (k === 0 || alpha === 0) {
    if (!accumulate) for (let i = 0; i < m; i++) c.fill(0, cOffset + i * ldc, cOffset + i * ldc + n);
    return;
  }
  const inst = load();
  if (!inst) throw new Error("sgemmSimd: this host has no WebAssembly SIMD");
  const aOff = a.offset | 0, ars = a.rowStride | 0, acs = a.colStride | 0;
  const bOff = b.offset | 0, brs = b.rowStride | 0, bcs = b.colStride | 0;
  for (let ib = 0; ib < m; ib += M_CHUNK) {
    const mb = Math.min(M_CHUNK, m - ib), mbPad = Math.ceil(mb / SIMD_MR) * SIMD_MR;
    for (let jc = 0; jc < n; jc += NC) {
      const nc = Math.min(NC, n - jc), ncPad = Math.ceil(nc / SIMD_NR) * SIMD_NR;
      const mem = memoryFor(inst, C_PTR + mbPad * ncPad * 4);
      const cBase = cOffset + ib * ldc + jc, cs = C_PTR >> 2;
      if (accumulate) copyRows(c, cBase, ldc, mem, cs, ncPad, mb, nc);
      for (let pc = 0; pc < k; pc += KC) {
        const kc = Math.min(KC, k - pc);
        packB(mem, b.data, bOff + pc * brs + jc * bcs, brs, bcs, kc, nc, alpha);
        for (let ic = 0; ic < mb; ic += MC) {
          const mc = Math.min(MC, mb - ic), mcPad = Math.ceil(mc / SIMD_MR) * SIMD_MR;
          packA(mem, a.data, aOff + (ib + ic) * ars + pc * acs, ars, acs, mc, kc);
          inst.macro(mcPad, ncPad, kc, A_PTR, B_PTR, C_PTR + ic * ncPad * 4, ncPad * 4, accumulate || pc > 0 ? 1 : 0);
        }
      }
      copyRows(mem, cs, ncPad, c, cBase, ldc, mb, nc);
    }
  }
}

/**
 * Copy a rows×cols block between row-major arrays: one `set` (a memcpy) when both are contiguous,
 * else a plain loop. Not a `set` per row: each needs a subarray of the wasm memory's buffer, and
 * JavaScriptCore let those views pile up — ResNet-18's peak RSS grew by ~130 MiB over 30 runs.
 */
function copyRows(src: Float32Array, s: number, lds: number, dst: Float32Array, d: number, ldd: number, rows: number, cols: number): void {
  if (lds === cols && ldd === cols) {
    dst.set(src.subarray(s, s + rows * cols), d);
  } else {
    for (let i = 0; i < rows; i++, s += lds, d += ldd) for (let j = 0; j < cols; j++) dst[d + j] = src[s + j]!;
  }
}

/**
 * Pack alpha·B[kc×nc] (element (p, j) at `src[base + p·rs + j·cs]`) into NR-wide panels, each
 * kc×NR row-major, zero-padded on the right. Full panels are unrolled (multiplying by alpha = 1
 * costs nothing measurable, so there is no separate alpha = 1 path).
 */
function packB(dst: Float32Array, src: Float32Array, base: number, rs: number, cs: number, kc: number, nc: number, alpha: number): void {
  base |= 0; rs |= 0; cs |= 0; kc |= 0; nc |= 0;
  let o = B_PTR >> 2;
  for (let jp = 0; jp < nc; jp += SIMD_NR) {
    const w = Math.min(SIMD_NR, nc - jp);
    let s = base + jp * cs;
    if (w === SIMD_NR && cs === 1) {
      // Row-major B: each panel row is 8 consecutive floats.
      for (let p = 0; p < kc; p++, s += rs, o += 8) {
        dst[o] = alpha * src[s]!; dst[o + 1] = alpha * src[s + 1]!; dst[o + 2] = alpha * src[s + 2]!; dst[o + 3] = alpha * src[s + 3]!;
        dst[o + 4] = alpha * src[s + 4]!; dst[o + 5] = alpha * src[s + 5]!; dst[o + 6] = alpha * src[s + 6]!; dst[o + 7] = alpha * src[s + 7]!;
      }
    } else if (w === SIMD_NR) {
      // Any other layout (transposed B: rs === 1): eight column streams, contiguous writes.
      let s0 = s, s1 = s0 + cs, s2 = s1 + cs, s3 = s2 + cs, s4 = s3 + cs, s5 = s4 + cs, s6 = s5 + cs, s7 = s6 + cs;
      for (let p = 0; p < kc; p++, o += 8, s0 += rs, s1 += rs, s2 += rs, s3 += rs, s4 += rs, s5 += rs, s6 += rs, s7 += rs) {
        dst[o] = alpha * src[s0]!; dst[o + 1] = alpha * src[s1]!; dst[o + 2] = alpha * src[s2]!; dst[o + 3] = alpha * src[s3]!;
        dst[o + 4] = alpha * src[s4]!; dst[o + 5] = alpha * src[s5]!; dst[o + 6] = alpha * src[s6]!; dst[o + 7] = alpha * src[s7]!;
      }
    } else {
      // The right edge panel, column by column, zero-padded.
      for (let j = 0; j < SIMD_NR; j++) {
        if (j < w) for (let p = 0, sj = s + j * cs; p < kc; p++, sj += rs) dst[o + p * SIMD_NR + j] = alpha * src[sj]!;
        else for (let p = 0; p < kc; p++) dst[o + p * SIMD_NR + j] = 0;
      }
      o += kc * SIMD_NR;
    }
  }
}

/**
 * Pack A[mc×kc] (element (i, p) at `src[base + i·rs + p·cs]`) into MR-high panels, each kc×MR
 * column-interleaved, zero-padded at the bottom.
 */
function packA(dst: Float32Array, src: Float32Array, base: number, rs: number, cs: number, mc: number, kc: number): void {
  base |= 0; rs |= 0; cs |= 0; mc |= 0; kc |= 0;
  let o = A_PTR >> 2;
  for (let ip = 0; ip < mc; ip += SIMD_MR) {
    const h = Math.min(SIMD_MR, mc - ip);
    if (h === 4 && SIMD_MR === 4) {
      // Full panel: four row streams, contiguous writes (the k loop is the long one).
      let r0 = base + ip * rs, r1 = r0 + rs, r2 = r1 + rs, r3 = r2 + rs;
      for (let p = 0; p < kc; p++, o += 4, r0 += cs, r1 += cs, r2 += cs, r3 += cs) {
        dst[o] = src[r0]!; dst[o + 1] = src[r1]!; dst[o + 2] = src[r2]!; dst[o + 3] = src[r3]!;
      }
      continue;
    }
    for (let i = 0; i < SIMD_MR; i++) {
      if (i < h) for (let p = 0, s = base + (ip + i) * rs; p < kc; p++, s += cs) dst[o + p * SIMD_MR + i] = src[s]!;
      else for (let p = 0; p < kc; p++) dst[o + p * SIMD_MR + i] = 0;
    }
    o += kc * SIMD_MR;
  }
}
