/**
 * The session's WebAssembly kernels and their one memory. `loadKernels()` compiles the kernel
 * module once per process (the relaxed-SIMD build where the engine validates it, else the plain
 * SIMD build) and instantiates it on a new shared `WebAssembly.Memory`; weights, activations and
 * scratch of a session all live in that memory, so worker threads (wasm/threads.ts) instantiate
 * the same module on it and every kernel works on pointers, with no copy in or out.
 *
 * Memory is managed here, in JS: `alloc`/`free` run a first-fit free list over the linear memory
 * (64-byte aligned blocks, neighbours coalesced on free), growing the memory when no block fits.
 * Address 0..RESERVED stays unused so a pointer is never 0.
 * @module
 */
import { KERNELS_RELAXED, KERNELS_SIMD } from "./kernels-binary.ts";

/**
 * The module's exports. Pointers are byte offsets (i32); `begin, end` is the slice of the work a
 * call does, so the thread team can split a kernel by giving each thread its own range.
 */
export interface KernelExports {
  memory: WebAssembly.Memory;
  /** 1 in the relaxed-SIMD build, 0 in the plain one. */
  buildFeatures(): number;
  clampF32(begin: number, end: number, x: number, y: number, lo: number, hi: number): void;
  addF32(begin: number, end: number, x: number, y: number, z: number): void;
  axpyF32(begin: number, end: number, a: number, x: number, y: number): void;
  /** as/sparse.ts: sparse-quantized conv rows on the level-grouped row form, with the fused epilogue. */
  sparseConvF32(
    begin: number, end: number, rowPtr: number, stream: number, levels: number, table: number, cs: number,
    x: number, xImg: number, M: number, Mg: number, gStride: number, L8: number, t: number,
    Ho: number, Wq: number, Wo: number, y: number, bias: number, res: number, lo: number, hi: number,
  ): void;
  /** sparseConvF32 over [0, total) in units claimed from the i32 counter at `next`: `chunk` items × one of `parts` pixel ranges. */
  sparseConvDynF32(
    begin: number, end: number, next: number, chunk: number, total: number, parts: number, rowPtr: number, stream: number, levels: number, table: number, cs: number,
    x: number, xImg: number, M: number, Mg: number, gStride: number, L8: number, t: number,
    Ho: number, Wq: number, Wo: number, y: number, bias: number, res: number, lo: number, hi: number,
  ): void;
  /** as/sparse.ts: zero-padded, phase-split copy of a conv input. */
  phaseSplitF32(
    begin: number, end: number, x: number, C: number, H: number, W: number, sy: number, sx: number, pt: number, pl: number,
    Hq: number, Wq: number, phases: number, nPlanes: number, out: number,
  ): void;
  /** as/sparse.ts: sparse-quantized GEMV rows (Gemm/MatMul with a compressed weight). */
  sparseGemvF32(begin: number, end: number, rowPtr: number, stream: number, levels: number, x: number, K: number, M: number, y: number, bias: number, lo: number, hi: number): void;
  /** MR · 256 + NR of the GEMM register tile (as/gemm.ts). */
  gemmTile(): number;
  convGemmF32(begin: number, end: number, geo: number, aPack: number, x: number, y: number, bias: number, residual: number, lo: number, hi: number, scratch: number, codes: number): void;
  gemmPackedF32(begin: number, end: number, slices: number, m: number, n: number, k: number, a: number, lda: number, aks: number, bPack: number, y: number, colBias: number, residual: number, lo: number, hi: number, strips: number): void;
  winogradF32(begin: number, end: number, geo: number, uPack: number, x: number, y: number, bias: number, residual: number, lo: number, hi: number, scratch: number, codes: number): void;
  dwConvF32(begin: number, end: number, geo: number, w: number, x: number, y: number, bias: number, residual: number, lo: number, hi: number, codes: number, wbuf: number): void;
  /** as/train.ts: a [N, M, Ho, Wo] gradient into zero-padded runs of L8 (and its per-channel sums, the bias gradient). */
  padRunsF32(begin: number, end: number, src: number, Ho: number, Wo: number, Wq: number, L8: number, dst: number, M: number, sums: number): void;
  /** as/train.ts: a conv's weight gradient at its kept weights (masked product over the run layout). */
  convWeightGradF32(begin: number, end: number, rowPtr: number, taps: number, x: number, xImg: number, gStride: number, Mg: number, M: number, N: number, dyq: number, L8: number, out: number): void;
  /** as/train.ts: the same at every weight, blocked 2 rows × 4 taps (dense Ŵ). */
  convWeightGradDenseF32(begin: number, end: number, taps: number, cols: number, x: number, xImg: number, gStride: number, Mg: number, M: number, N: number, dyq: number, L8: number, out: number): void;
  /** dwConvF32 over planes [0, total), `chunk` at a time claimed from the i32 counter at `next`. */
  dwConvDynF32(begin: number, end: number, next: number, chunk: number, total: number, geo: number, w: number, x: number, y: number, bias: number, residual: number, lo: number, hi: number, codes: number, wbuf: number): void;
  /** as/sparse.ts: the sum over column blocks of a blocked sparse conv, with bias, residual and clamp. */
  blockSumF32(begin: number, end: number, s: number, B: number, M: number, plane: number, y: number, bias: number, res: number, lo: number, hi: number): void;
  /** as/rans.ts: a compressed weight's rANS pair stream → kept columns, level ids, row starts, (row, level) counts (or, `codes` ≠ 0, u8 level ids + 1 at each flat index); the kept count or < 0 if corrupt. */
  ransSparseRows(
    words: number, nWords: number, tabA: number, sA: number, dA: number, tabB: number, sB: number, dB: number, n: number,
    rows: number, cols: number, zig: number, idOf: number, idLo: number, idLen: number, nL: number,
    outCol: number, outLvl: number, rowStart: number, count: number, codes: number,
  ): number;
  /** as/rans.ts: the sparse row form (rowPtr, stream) of what ransSparseRows collected; the u16 units written. */
  sparseRowsPlace(rows: number, nL: number, rowStart: number, count: number, outCol: number, outLvl: number, rowPtr: number, stream: number, place: number): number;
  pool2dF32(begin: number, end: number, geo: number, x: number, y: number, mode: number): void;
  globalAvgPoolF32(begin: number, end: number, x: number, y: number, size: number): void;
}

/** Block alignment of `alloc` (a cache line; SIMD loads need 16). */
export const WASM_ALIGN = 64;
const PAGE = 65536;
/** Bytes at the bottom of memory never handed out (pointer 0 means "none"). */
const RESERVED = 1024;
/** A grow adds at least 1/GROW_FRACTION of the memory (#reserveUpTo). */
const GROW_FRACTION = 8;
/** Largest memory a session may grow to: 65536 pages (4 GiB), the module's declared maximum. */
const MAX_PAGES = 65536;

/** A tiny module using one relaxed-SIMD instruction (f32x4.relaxed_madd), to detect support. */
const RELAXED_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 61, 1, 59, 0,
  253, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  253, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  253, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  253, 133, 2, 11,
]);

const fromBase64 = (s: string): Uint8Array<ArrayBuffer> => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

let compiled: { module: WebAssembly.Module; relaxed: boolean } | undefined | null;
/** Modules compiled by WasmKernels.createBuild, by build. */
const builds: { simd?: WebAssembly.Module; relaxed?: WebAssembly.Module } = {};

/** Which build this engine runs, and whether it can run any (SIMD and shared memory needed). */
export function kernelSupport(): { ok: boolean; relaxed: boolean; reason?: string } {
  if (compiled === undefined) {
    try {
      // Shared memory needs SharedArrayBuffer (a browser page must be cross-origin isolated).
      new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
      const relaxed = WebAssembly.validate(RELAXED_PROBE) && envVar("OPQ_WASM_RELAXED") !== "0";
      compiled = { module: new WebAssembly.Module(fromBase64(relaxed ? KERNELS_RELAXED : KERNELS_SIMD)), relaxed };
    } catch (e) {
      compiled = null;
      unsupportedReason = (e as Error)?.message ?? String(e);
    }
  }
  return compiled ? { ok: true, relaxed: compiled.relaxed } : { ok: false, relaxed: false, reason: unsupportedReason };
}
let unsupportedReason = "";

/** An environment variable where the host has them and lets us read it (Bun, Node; Deno with --allow-env), else undefined. */
export function envVar(name: string): string | undefined {
  try {
    return (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env[name];
  } catch {
    return undefined;
  }
}

/** The compiled kernel module (for worker threads instantiating it on the same memory). */
export function kernelModule(): WebAssembly.Module | undefined {
  kernelSupport();
  return compiled?.module;
}

/** One session's kernel instance and memory. */
export class WasmKernels {
  readonly exports: KernelExports;
  readonly memory: WebAssembly.Memory;
  readonly relaxed: boolean;
  /** Free blocks [offset, size], sorted by offset. */
  #free: [number, number][] = [];
  /** Sizes of live blocks by offset. */
  #live = new Map<number, number>();
  /** End of the memory handed out so far (the free list covers [RESERVED, #top) minus live blocks). */
  #top = RESERVED;
  #peak = 0;
  #used = 0;

  private constructor(instance: WebAssembly.Instance, memory: WebAssembly.Memory, relaxed: boolean) {
    this.exports = instance.exports as unknown as KernelExports;
    this.memory = memory;
    this.relaxed = relaxed;
  }

  /** Instantiate the kernels on a new memory of `initialBytes` (grown on demand). Undefined where unsupported. */
  static create(initialBytes = 1 << 20): WasmKernels | undefined {
    const support = kernelSupport();
    if (!support.ok) return undefined;
    return WasmKernels.#on(compiled!.module, support.relaxed, initialBytes);
  }

  /**
   * The same on a chosen build (tests run both): "simd" always where SIMD is supported,
   * "relaxed" only where the engine validates relaxed SIMD (else undefined).
   */
  static createBuild(build: "simd" | "relaxed", initialBytes = 1 << 20): WasmKernels | undefined {
    if (!kernelSupport().ok || (build === "relaxed" && !WebAssembly.validate(RELAXED_PROBE))) return undefined;
    const module = (builds[build] ??= new WebAssembly.Module(fromBase64(build === "relaxed" ? KERNELS_RELAXED : KERNELS_SIMD)));
    return WasmKernels.#on(module, build === "relaxed", initialBytes);
  }

  static #on(module: WebAssembly.Module, relaxed: boolean, initialBytes: number): WasmKernels {
    const pages = Math.min(MAX_PAGES, Math.max(1, Math.ceil(initialBytes / PAGE)));
    const memory = new WebAssembly.Memory({ initial: pages, maximum: MAX_PAGES, shared: true });
    const instance = new WebAssembly.Instance(module, { env: { memory } });
    return new WasmKernels(instance, memory, relaxed);
  }

  /** Bytes currently allocated, and the most ever allocated at once. */
  get usedBytes(): number { return this.#used; }
  get peakBytes(): number { return this.#peak; }
  /** Size of the linear memory. */
  get memoryBytes(): number { return this.memory.buffer.byteLength; }

  /** Allocate `bytes` (rounded up to WASM_ALIGN); returns the block's address. Throws RangeError past 4 GiB. */
  alloc(bytes: number): number {
    const size = Math.max(WASM_ALIGN, Math.ceil(bytes / WASM_ALIGN) * WASM_ALIGN);
    const free = this.#free;
    let ptr = -1;
    for (let i = 0; i < free.length; i++) {
      const [off, len] = free[i]!;
      if (len < size) continue;
      ptr = off;
      if (len === size) free.splice(i, 1);
      else free[i] = [off + size, len - size];
      break;
    }
    if (ptr < 0) {
      // Extend from the top, absorbing a free block that ends there.
      const lastFree = free[free.length - 1];
      let start = this.#top;
      if (lastFree && lastFree[0] + lastFree[1] === this.#top) { start = lastFree[0]; free.pop(); }
      this.#reserveUpTo(start + size);
      this.#top = start + size;
      ptr = start;
    }
    this.#live.set(ptr, size);
    this.#used += size;
    this.#peak = Math.max(this.#peak, this.#used);
    return ptr;
  }

  /** Release a block from `alloc`. */
  free(ptr: number): void {
    const size = this.#live.get(ptr);
    if (size === undefined) throw new Error(`wasm free of unknown block ${ptr}`);
    this.#live.delete(ptr);
    this.#used -= size;
    const free = this.#free;
    let i = 0;
    while (i < free.length && free[i]![0] < ptr) i++;
    free.splice(i, 0, [ptr, size]);
    // Coalesce with the next, then the previous neighbour.
    if (i + 1 < free.length && free[i]![0] + free[i]![1] === free[i + 1]![0]) { free[i]![1] += free[i + 1]![1]; free.splice(i + 1, 1); }
    if (i > 0 && free[i - 1]![0] + free[i - 1]![1] === free[i]![0]) { free[i - 1]![1] += free[i]![1]; free.splice(i, 1); }
  }

  /** A float32 view of `length` elements at `ptr`. Valid for the session's life (shared memory never detaches). */
  f32(ptr: number, length: number): Float32Array { return new Float32Array(this.memory.buffer, ptr, length); }
  u8(ptr: number, length: number): Uint8Array { return new Uint8Array(this.memory.buffer, ptr, length); }
  u16(ptr: number, length: number): Uint16Array { return new Uint16Array(this.memory.buffer, ptr, length); }
  i32(ptr: number, length: number): Int32Array { return new Int32Array(this.memory.buffer, ptr, length); }

  /** The address of a view into this memory, or -1 if the view is elsewhere. */
  addressOf(view: ArrayBufferView): number {
    const buf = view.buffer;
    if (!(typeof SharedArrayBuffer !== "undefined" && buf instanceof SharedArrayBuffer)) return -1;
    // Views made before a grow hold an older SharedArrayBuffer object over the same memory.
    if (buf !== (this.memory.buffer as ArrayBufferLike) && !this.#buffers.has(buf)) return -1;
    return view.byteOffset;
  }
  #buffers = new WeakSet<ArrayBufferLike>();

  #reserveUpTo(end: number): void {
    const have = this.memory.buffer.byteLength;
    if (end <= have) return;
    const pages = Math.ceil((end - have) / PAGE);
    if (have / PAGE + pages > MAX_PAGES) throw new RangeError(`wasm memory would exceed ${MAX_PAGES * PAGE} bytes`);
    this.#buffers.add(this.memory.buffer);
    // Grow by at least an eighth of the memory: a session's load allocates each layer's weight at
    // the top, and a grow per block (~110 for ResNet-50) cost ~35 ms of its cold start. Pages
    // grown but never written take no resident memory.
    this.memory.grow(Math.min(MAX_PAGES - have / PAGE, Math.max(pages, Math.ceil(have / PAGE / GROW_FRACTION))));
  }
}
