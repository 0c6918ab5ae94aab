/**
 * Conv, Gemm and MatMul whose weight is a compressed `.opq` tensor, computed on the weight's
 * sparse kernel form (ops/sparse-form.ts, kernels in as/sparse.ts): the weight is transcoded once
 * at bind and never dequantized.
 *
 * Conv (2-D, any kernel, stride, dilation, pads, groups incl. depthwise) runs without im2col:
 * the input is copied once per call into zero-padded phase planes (stride s: s² planes of the
 * space-to-depth split, only the phases some kernel tap uses; none at all for an unpadded
 * stride-1 conv, which reads the input in place), and for kept weight k of a row the output
 * pixels read one contiguous run at `table[k] + p` (table: k → byte offset of its tap,
 * computed per input shape). Work is split over output rows (n·M + m) across the thread team.
 * @module
 */
import { type CompressedTensor, nnzOf, type Tensor } from "../../../format/mod.ts";
import type { NodeSpec } from "../../backend.ts";
import { convGeometry, type ConvGeometry } from "../../ops/conv.ts";
import type { WasmBound, WasmEnv, WasmOpImpl } from "../backend.ts";
import { envVar, type WasmKernels } from "../module.ts";
import { sparseFormFits, type SparseRows, transcodeSparse } from "./sparse-form.ts";

/**
 * The cost model of sparseConvF32 (one image, one thread), a least-squares fit (relative error,
 * non-negative terms) to the CPU time of every compressed Conv of MobileNetV2-224 and
 * ResNet-18-224 at (0.74, 3) measured by bench/form-profile.ts on this machine (AMD EPYC, Bun,
 * relaxed SIMD; 70 layers, rms error 7%): a fixed call cost, kept-weight × run-pixel products,
 * a cost per row and per row pass (a 32-, 16- or 8-pixel tile: header, level splats, stores), a
 * depthwise row pass extra (no input tile shared between rows), and the phase split of a strided
 * input (its scalar gather). The unstrided padding copy, the scratch and the epilogue pass fit
 * inside the per-product and per-row terms. The model this replaced (8 products/ns, 6 ns a row
 * tile, 300 ns a depthwise row tile, 8 bytes/ns of copies) overpriced MobileNetV2's depthwise
 * layers 3–7× and its large 1×1 layers 1.3–1.8×, so they went to the slower u8 code form.
 */
export const SPARSE_CONV_RATE = {
  callNs: 4000, productsPerNs: 9.4, rowNs: 173, rowPassNs: 14, depthwiseRowPassNs: 31, stridedSplitBytesPerNs: 7.7,
} as const;

/**
 * Row chunks per thread of a split conv: enough that a preempted thread's share is taken over by
 * the others, few enough that each chunk still reuses its input tiles over many rows.
 */
const CHUNKS_PER_THREAD = 4;
/**
 * Input bytes below which the phase split stays on the calling thread: ~33 µs of copying at the
 * strided split's 7.7 bytes/ns (SPARSE_CONV_RATE), against a worker round trip of 1–3 µs with the
 * team polling (bench/team-bench.ts; it was ~20 µs sleeping, when this was 1 MiB) and more when
 * the workers' cores are busy. MobileNetV2's padded depthwise inputs of 188–602 KiB now split.
 */
const PHASE_SPLIT_PARALLEL_BYTES = 1 << 18;
/** Below this many estimated ns a call is not split across threads (set when a worker round trip cost ~20 µs; it is 1–3 µs with the team polling, bench/team-bench.ts, and was not re-tuned). */
const PARALLEL_MIN_NS = 60_000;

/**
 * Column blocking of a conv whose pixel tile reads more input than L1 holds (tile-outer, rows
 * inner, every row of a 32-pixel tile reads its kept columns' runs): above BLOCK_MIN_BYTES of
 * input per tile the weight's columns are split into B blocks of input channels, B the smallest
 * power of two (≤ MAX_BLOCKS) that brings a block's tile input to BLOCK_TARGET_BYTES. Set by
 * bench/column-blocks-bench.ts (in-process A/B, CPU time, this machine): 512 ch 3×3 @7×7
 * (106 KiB a tile) B=4 −26%; 2048 ch 1×1 @7×7 (256 KiB) B=8 −27%; 1024 ch 1×1 @14×14 (128 KiB)
 * B=8 −11%, B=16 +14%; 256 ch 3×3 @14×14 (66 KiB) B=4 −5%; 512 ch 1×1 @7×7 (64 KiB) B=2 +11%.
 */
const BLOCK_MIN_BYTES = 96 * 1024, BLOCK_TARGET_BYTES = 32 * 1024, MAX_BLOCKS = 8;

/** Epilogue of a fused conv/gemm: residual added before the clamp [lo, hi]. */
export interface SparseEpilogue {
  lo?: number;
  hi?: number;
}

/** The compressed weight of `slot`, or undefined. */
const compressedAt = (spec: NodeSpec, slot: number) => spec.compressed[slot];

/** A dense float32 constant bias of `m` elements at slot 2 (or none): its data, false if unusable. */
function biasOf(spec: NodeSpec, slot: number, m: number): Float32Array | undefined | false {
  if (!spec.node.inputs[slot]) return undefined;
  if (spec.compressed[slot]) return false;
  const c = spec.constants[slot];
  if (!c || c.dtype !== "float32" || c.data.length !== m) return false;
  return c.data as Float32Array;
}

const knownDims = (d: readonly (number | string)[] | undefined): d is number[] => !!d && d.every((v) => typeof v === "number");

function convOk(spec: NodeSpec): { w: CompressedTensor; bias: Float32Array | undefined; cols: number } | undefined {
  const w = compressedAt(spec, 1);
  const xs = spec.inputShapes[0];
  if (!w || w.dims.length !== 4 || !xs || xs.length !== 4 || typeof xs[1] !== "number") return undefined;
  if (spec.inputDtypes[0] !== "float32" || spec.outputDtypes[0] !== "float32") return undefined;
  const cols = w.dims[1]! * w.dims[2]! * w.dims[3]!;
  if (w.dims[0]! === 0 || !sparseFormFits(w, cols)) return undefined;
  const bias = biasOf(spec, 2, w.dims[0]!);
  if (bias === false) return undefined;
  try {
    const dims = xs.map((d, i) => (typeof d === "number" ? d : i === 0 ? 1 : 8));
    convGeometry(dims, w.dims, spec.attrs);
  } catch {
    return undefined;
  }
  return { w, bias, cols };
}

/**
 * The run length sparseConvF32 walks for `L` output-run pixels (its scratch row stride): L itself
 * when a multiple of 4 (the kernel has a 4-pixel tail pass), else L rounded up to 8.
 */
function kernelRun(L: number): number {
  return L % 4 === 0 ? L : Math.ceil(L / 8) * 8;
}

/** Row passes of a kernel run: 32-pixel tiles, then a 24-pixel tail, or 16-, 8- and 4-pixel ones (as sparseConvF32 walks it). */
function rowPasses(run: number): number {
  const r = run % 32;
  return Math.floor(run / 32) + (r === 24 ? 1 : (r >= 16 ? 1 : 0) + (r % 16 >= 8 ? 1 : 0) + (r % 8 ? 1 : 0));
}

/**
 * Estimated ns of one image on one thread (SPARSE_CONV_RATE): `run` output pixels a row computes
 * (Ho·Wq), `depthwise` rows (one input channel each), `stridedBytes` of input the phase split
 * gathers with a stride (0 for stride 1).
 */
export function sparseConvNs(nnz: number, rows: number, run: number, depthwise = false, stridedBytes = 0): number {
  const r = SPARSE_CONV_RATE;
  const kr = kernelRun(run);
  const passes = rows * rowPasses(kr);
  return r.callNs + (nnz * kr) / r.productsPerNs + rows * r.rowNs + passes * (r.rowPassNs + (depthwise ? r.depthwiseRowPassNs : 0)) + stridedBytes / r.stridedSplitBytesPerNs;
}

/** Per-input-shape layout of a conv: phase planes, tap table, run length (also the training kernels' layout, train/wasm-conv.ts). */
export interface ConvLayout {
  key: string;
  g: ConvGeometry;
  direct: boolean;
  Hq: number;
  Wq: number;
  nPlanes: number;
  /** i32 pairs (a, b) per plane, in wasm memory (0 when direct). */
  phases: number;
  table: number;
  tableBytes: number;
  /** Extra floats past an image the kernel may read. */
  slack: number;
  xImgBytes: number;
  gStrideBytes: number;
  L: number;
  L8: number;
}

/** The layout of `g` with a KH×KW kernel; its tap table and phase list are allocated in `k` (freeLayout releases them). */
export function convLayout(k: WasmKernels, g: ConvGeometry, KH: number, KW: number): ConvLayout {
  const [sy, sx] = g.strides as [number, number];
  const [dy, dx] = g.dilations as [number, number];
  const [H, W] = g.inSpatial as [number, number];
  const [Ho, Wo] = g.outSpatial as [number, number];
  const C = g.inChannels, Cg = C / g.group;
  const direct = sy === 1 && sx === 1 && g.pads.every((p) => p === 0);
  const qy = Math.floor(((KH - 1) * dy) / sy), qx = Math.floor(((KW - 1) * dx) / sx);
  const Hq = direct ? H : Ho + qy, Wq = direct ? W : Wo + qx;
  // Phases some tap uses, numbered in first-use order.
  const planeOf = new Map<number, number>();
  const pairs: number[] = [];
  for (let ky = 0; ky < KH; ky++) {
    for (let kx = 0; kx < KW; kx++) {
      const key = ((ky * dy) % sy) * sx + ((kx * dx) % sx);
      if (!planeOf.has(key)) { planeOf.set(key, planeOf.size); pairs.push((ky * dy) % sy, (kx * dx) % sx); }
    }
  }
  const nPlanes = direct ? 1 : planeOf.size;
  const planeF = C * Hq * Wq;
  const cols = Cg * KH * KW;
  const tableBytes = cols * 4;
  const table = k.alloc(tableBytes);
  const t = k.i32(table, cols);
  for (let c = 0; c < Cg; c++) {
    for (let ky = 0; ky < KH; ky++) {
      for (let kx = 0; kx < KW; kx++) {
        const q = direct ? 0 : planeOf.get(((ky * dy) % sy) * sx + ((kx * dx) % sx))!;
        const off = q * planeF + c * Hq * Wq + Math.floor((ky * dy) / sy) * Wq + Math.floor((kx * dx) / sx);
        t[(c * KH + ky) * KW + kx] = off * 4;
      }
    }
  }
  let phases = 0;
  if (!direct) {
    phases = k.alloc(pairs.length * 4);
    k.i32(phases, pairs.length).set(pairs);
  }
  const L = Ho * Wq, L8 = Math.ceil(L / 8) * 8;
  return {
    key: `${g.batch}x${H}x${W}`, g, direct, Hq, Wq, nPlanes, phases, table, tableBytes,
    slack: 8 + qx + (L8 - L), xImgBytes: nPlanes * planeF * 4, gStrideBytes: Cg * Hq * Wq * 4, L, L8,
  };
}

/** Release a layout's tables. */
export function freeLayout(k: WasmKernels, l: ConvLayout | undefined): void {
  if (!l) return;
  k.free(l.table);
  if (l.phases) k.free(l.phases);
}

/**
 * Column blocks (BLOCK_MIN_BYTES) of a conv of geometry `g` with a KH×KW kernel: from the input
 * bytes a 32-pixel row tile reads per input channel (a run of 32 plus the kernel's reach, in each
 * phase plane a tap uses). 1 for grouped convs and where the tile input fits.
 */
export function columnBlocks(g: ConvGeometry, KH: number, KW: number): number {
  if (g.group !== 1) return 1;
  const [sy, sx] = g.strides as [number, number], [dy, dx] = g.dilations as [number, number];
  const [, W] = g.inSpatial as [number, number], [Ho, Wo] = g.outSpatial as [number, number];
  const direct = sy === 1 && sx === 1 && g.pads.every((p) => p === 0);
  const qy = Math.floor(((KH - 1) * dy) / sy), qx = Math.floor(((KW - 1) * dx) / sx);
  const Wq = direct ? W : Wo + qx, L8 = Math.ceil((Ho * Wq) / 8) * 8;
  const planes = direct ? 1 : Math.min(sy, KH) * Math.min(sx, KW);
  const bytes = g.inChannels * planes * Math.min(L8, 32 + qy * Wq + qx) * 4;
  if (bytes <= BLOCK_MIN_BYTES) return 1;
  let b = 1;
  while (b < MAX_BLOCKS && bytes / b > BLOCK_TARGET_BYTES && g.inChannels % (2 * b) === 0) b *= 2;
  return b;
}

/** Reorder a transcoded form's rows from (m, block) to (block, m): the kernel then runs block b's rows as group b. */
function blockMajor(k: WasmKernels, form: SparseRows, M: number, B: number): void {
  const rp = k.i32(form.rowPtr, M * B), was = rp.slice(), nnz = form.rowNnz.slice();
  for (let m = 0; m < M; m++) {
    for (let b = 0; b < B; b++) { rp[b * M + m] = was[m * B + b]!; form.rowNnz[b * M + m] = nnz[m * B + b]!; }
  }
}

/** A bound sparse conv: weights resident, layout cached for the last input shape. */
export interface SparseConvBound extends WasmBound {
  /** Run with a fused epilogue: residual (output shape) added, then clamp to [lo, hi]. */
  runFused(x: Tensor, residual: Tensor | undefined, lo: number, hi: number, alloc: (n: number) => Float32Array, addr: (t: Tensor) => number): Tensor;
  form: SparseRows;
  /** Column blocks of the form (1: unblocked). */
  blocks: number;
}

/**
 * Transcode and bind a Conv with a compressed weight (epilogue: bias from the node; clamp from
 * `epi`). `blocking`: split the columns into blocks (columnBlocks) for the planned input shape;
 * the form's rows are then (block, output channel), block-major, and `blocks` says how many.
 */
export function bindSparseConv(spec: NodeSpec, env: WasmEnv, epi: SparseEpilogue = {}, blocking = false): SparseConvBound {
  const ok = convOk(spec);
  if (!ok) throw new RangeError(`${spec.name}: not a conv the sparse kernel runs`);
  const { w, bias } = ok;
  const k = env.kernels;
  const [M, Cg, KH, KW] = w.dims as [number, number, number, number];
  const xs = spec.inputShapes[0]!;
  const planned = xs.slice(1);
  const B = blocking && planned.every((v) => typeof v === "number") ? columnBlocks(convGeometry([1, ...(planned as number[])], w.dims, spec.attrs), KH, KW) : 1;
  // Rows (m, b) of Cg/B channels each are the flat weight read as an (M·B) × (Cg/B·KH·KW) matrix.
  const form = transcodeSparse(k, w, M * B, (Cg / B) * KH * KW);
  if (B > 1) blockMajor(k, form, M, B);
  let biasPtr = 0;
  if (bias) { biasPtr = k.alloc(M * 4); k.f32(biasPtr, M).set(bias); }
  // The row counter of a split call (sparseConvDynF32).
  const counter = k.alloc(4);
  let layout: (ConvLayout & { dims: number[] }) | undefined;
  const attrs = spec.attrs;
  const lo = epi.lo ?? -Infinity, hi = epi.hi ?? Infinity;

  const runFused: SparseConvBound["runFused"] = (x, residual, lo, hi, alloc, addr) => {
    // The layout (and its geometry) is kept for the last input dims: convGeometry re-parses the
    // attributes and checks every size, ~17 µs a call (0.8 ms of a MobileNetV2 run, 48 calls).
    const d = x.dims;
    if (!layout || layout.dims.length !== d.length || layout.dims.some((v, i) => v !== d[i])) {
      const g = convGeometry(d, w.dims, attrs);
      freeLayout(k, layout);
      // Blocked: laid out as a conv of B groups (a tap table over one block's channels, its group stride).
      layout = { ...convLayout(k, B > 1 ? { ...g, group: B } : g, KH, KW), dims: d.slice() };
      layout.g = g;
    }
    const l = layout, g = l.g;
    const N = g.batch, C = g.inChannels;
    const [H, W] = g.inSpatial as [number, number];
    const [Ho, Wo] = g.outSpatial as [number, number];
    const y = alloc(N * M * Ho * Wo);
    if (N * M * Ho * Wo === 0) return { dtype: "float32", dims: [N, M, Ho, Wo], data: y };
    const temps: number[] = [];
    try {
      let xp: number;
      const xAddr = addr(x);
      if (l.direct && xAddr + N * l.xImgBytes + l.slack * 4 <= k.memoryBytes) {
        xp = xAddr;
      } else if (l.direct) {
        xp = k.alloc(N * l.xImgBytes + l.slack * 4);
        temps.push(xp);
        k.f32(xp, N * C * H * W).set(x.data as Float32Array);
      } else {
        xp = k.alloc(N * l.xImgBytes + l.slack * 4);
        temps.push(xp);
        const [pt, pl] = g.pads as [number, number];
        const [sy, sx] = g.strides as [number, number];
        const args = [xAddr, C, H, W, sy, sx, pt, pl, l.Hq, l.Wq, l.phases, l.nPlanes, xp];
        // A copy pass: split only when large enough to pay for a round trip to the workers.
        if (N * C * H * W * 4 >= PHASE_SPLIT_PARALLEL_BYTES) env.team.run("phaseSplitF32", N * C, Math.max(1, Math.ceil(4096 / Math.max(1, H * W))), args);
        else (k.exports.phaseSplitF32 as (...a: number[]) => void)(0, N * C, ...args);
      }
      // Blocked: the B·M rows' sums go to a [N, B·M, Ho, Wo] block, then blockSumF32 applies the epilogue.
      const rows = M * B;
      let out = y.byteOffset;
      if (B > 1) {
        out = k.alloc(N * rows * Ho * Wo * 4);
        temps.push(out);
      }
      // The run's stride (kernelRun: a 14×14 plane keeps its 196), so that raw sums go straight
      // to the output when the run has no garbage columns and no rounding.
      const L8 = kernelRun(l.L);
      let t = out;
      if (!(l.Wq === Wo && L8 === l.L)) {
        t = k.alloc(N * rows * L8 * 4);
        temps.push(t);
      }
      const resPtr = residual ? addr(residual) : 0;
      // A 1×1 kernel's tap table is linear (column k is input plane k): the kernel computes it.
      const cs = KH * KW === 1 ? l.Hq * l.Wq * 4 : 0;
      const args = B > 1
        ? [form.rowPtr, form.stream, form.levels, l.table, cs, xp, l.xImgBytes, rows, M, l.gStrideBytes, L8, t, Ho, l.Wq, Wo, out, 0, 0, -Infinity, Infinity]
        : [form.rowPtr, form.stream, form.levels, l.table, cs, xp, l.xImgBytes, M, M / g.group, l.gStrideBytes, L8, t, Ho, l.Wq, Wo, out, biasPtr, resPtr, lo, hi];
      const ns = N * sparseConvNs(form.nnz, rows, l.L, Cg === 1);
      const threads = env.team.threads;
      const split = ns >= PARALLEL_MIN_NS && threads > 1;
      if (split) {
        // Work claimed in units from a counter (CHUNKS_PER_THREAD per thread), not split in halves.
        // A run that is the output plane (the tile stores apply the epilogue) splits each row
        // chunk's pixels across the threads: they read the chunk's weight rows together and each
        // only its part of the input (else each thread streams the whole input for its rows).
        // With an image per thread or more, a unit is one image's rows: each thread works on its own.
        const parts = t === out && N < threads ? threads : 1;
        const total = N * rows, chunk = N >= threads ? rows : Math.max(1, Math.ceil((total * parts) / (threads * CHUNKS_PER_THREAD)));
        k.i32(counter, 1)[0] = 0;
        env.team.run("sparseConvDynF32", threads, 1, [counter, chunk, total, parts, ...args]);
      } else (k.exports.sparseConvF32 as (...a: number[]) => void)(0, N * rows, ...args);
      if (B > 1) {
        const sum = [out, B, M, Ho * Wo, y.byteOffset, biasPtr, resPtr, lo, hi];
        if (split) env.team.run("blockSumF32", N * M, Math.max(1, Math.ceil(4096 / (Ho * Wo))), sum);
        else k.exports.blockSumF32(0, N * M, ...(sum as [number, number, number, number, number, number, number, number, number]));
      }
    } finally {
      for (const p of temps) k.free(p);
    }
    return { dtype: "float32", dims: [N, M, Ho, Wo], data: y };
  };

  return {
    form,
    blocks: B,
    // The tap table (4 bytes a column) is made at the first run; it is counted from the start.
    residentBytes: form.bytes + (biasPtr ? M * 4 : 0) + (Cg / B) * KH * KW * 4,
    run(inputs, rc, addr) {
      // A fused node (runtime/fusion.ts) carries its residual as an extra input and its clamp in the spec.
      const f = spec.epilogue;
      if (f) return [runFused(inputs[0]!, f.residual === undefined ? undefined : inputs[f.residual], f.lo, f.hi, rc.alloc, addr)];
      return [runFused(inputs[0]!, undefined, lo, hi, rc.alloc, addr)];
    },
    runFused,
    dispose() {
      k.free(form.levels);
      if (biasPtr) k.free(biasPtr);
      k.free(counter);
      freeLayout(k, layout);
      layout = undefined;
    },
  };
}

/** Output pixels of the planned shape (a symbolic batch counts as 1; unknown spatial as 56²). */
function plannedRun(spec: NodeSpec, KH: number, KW: number): number {
  const os = spec.outputShapes[0];
  const Ho = typeof os?.[2] === "number" ? os[2] : 56, Wo = typeof os?.[3] === "number" ? os[3] : 56;
  const [sx] = spatial(spec, "strides"), [dx] = spatial(spec, "dilations");
  return Ho * (Wo + Math.floor(((KW - 1) * (dx ?? 1)) / (sx ?? 1)));
}
const spatial = (spec: NodeSpec, name: string) => { const v = spec.attrs.ints(name, [1, 1]); return [v[1] ?? 1, v[0] ?? 1]; };

const sparseConv: WasmOpImpl = {
  opTypes: ["Conv"],
  fuses: true,
  keepsCompressed: true,
  claim(spec) {
    const ok = convOk(spec);
    if (!ok) return undefined;
    const [M, , KH, KW] = ok.w.dims as [number, number, number, number];
    const xs = spec.inputShapes[0]!;
    const num = (d: unknown, f: number) => (typeof d === "number" ? d : f);
    const strided = spatial(spec, "strides").some((v) => v > 1);
    const stridedBytes = strided ? 2 * 4 * num(xs[1], 1) * num(xs[2], 56) * num(xs[3], 56) : 0;
    return { path: "wasm-sparse-direct", weightForm: "sparse-levels-u16", cost: sparseConvNs(nnzOf(ok.w), M, plannedRun(spec, KH, KW), ok.w.dims[1] === 1, stridedBytes) };
  },
  bind(spec, env) {
    // OPQ_SPARSE_BLOCKS=0: no column blocking (bench/column-blocks-bench.ts compares both).
    return bindSparseConv(spec, env, {}, envVar("OPQ_SPARSE_BLOCKS") !== "0");
  },
};

// ---------------------------------------------------------------------------------------------
// Gemm / MatMul with a compressed weight: sparse GEMV per row of A.

/** ns per kept weight per row of A of sparseGemvF32 (scalar gather), measured by bench/sparse-kernels-bench.ts. */
export const SPARSE_GEMV_NS_PER_NNZ = 0.6;

function gemmOk(spec: NodeSpec): { w: CompressedTensor; rows: number; cols: number; transposed: boolean; bias: Float32Array | undefined } | undefined {
  const op = spec.node.opType;
  const slot = 1;
  const w = compressedAt(spec, slot);
  const as = spec.inputShapes[0];
  if (!w || w.dims.length !== 2 || !as || as.length < 2 || typeof as[as.length - 1] !== "number") return undefined;
  if (spec.inputDtypes[0] !== "float32" || spec.outputDtypes[0] !== "float32") return undefined;
  let transposed: boolean;
  let bias: Float32Array | undefined;
  if (op === "Gemm") {
    if (as.length !== 2 || spec.attrs.int("transA", 0) !== 0 || spec.attrs.float("alpha", 1) !== 1) return undefined;
    transposed = spec.attrs.int("transB", 0) === 0;
    if (spec.node.inputs[2]) {
      if (spec.attrs.float("beta", 1) !== 1) return undefined;
      const M = transposed ? w.dims[1]! : w.dims[0]!;
      const c = spec.constants[2];
      const cs = c?.dims;
      if (!c || spec.compressed[2] || c.dtype !== "float32" || c.data.length !== M || !cs || !(cs.length === 1 || (cs.length === 2 && cs[0] === 1))) return undefined;
      bias = c.data as Float32Array;
    }
  } else {
    transposed = true;
  }
  const [rows, cols] = transposed ? [w.dims[1]!, w.dims[0]!] : [w.dims[0]!, w.dims[1]!];
  if (as[as.length - 1] !== cols || rows === 0 || !sparseFormFits(w, cols)) return undefined;
  return { w, rows, cols, transposed, bias };
}

const sparseGemm: WasmOpImpl = {
  opTypes: ["Gemm", "MatMul"],
  keepsCompressed: true,
  claim(spec) {
    const ok = gemmOk(spec);
    if (!ok || spec.epilogue) return undefined;
    return { path: "wasm-sparse-gemv", weightForm: "sparse-levels-u16", cost: 2000 + nnzOf(ok.w) * SPARSE_GEMV_NS_PER_NNZ };
  },
  bind(spec, env) {
    const { w, rows: M, cols: K, transposed, bias } = gemmOk(spec)!;
    const k = env.kernels;
    const form = transcodeSparse(k, w, M, K, transposed);
    let biasPtr = 0;
    if (bias) { biasPtr = k.alloc(M * 4); k.f32(biasPtr, M).set(bias); }
    return {
      residentBytes: form.bytes + (biasPtr ? M * 4 : 0),
      run([a], rc, addr) {
        const dims = a!.dims;
        if (dims[dims.length - 1] !== K) throw new RangeError(`${spec.name}: A [${dims}] does not have ${K} columns`);
        const N = a!.data.length / K;
        const y = rc.alloc(N * M);
        const args = [form.rowPtr, form.stream, form.levels, addr(a!), K, M, y.byteOffset, biasPtr, -Infinity, Infinity];
        if (N * form.nnz * SPARSE_GEMV_NS_PER_NNZ >= PARALLEL_MIN_NS) env.team.run("sparseGemvF32", N * M, 16, args);
        else (k.exports.sparseGemvF32 as (...a: number[]) => void)(0, N * M, ...args);
        return [{ dtype: "float32", dims: [...dims.slice(0, -1), M], data: y } as Tensor];
      },
      dispose() {
        k.free(form.levels);
        if (biasPtr) k.free(biasPtr);
      },
    };
  },
};

/** The sparse-quantized implementations. */
export const SPARSE_WASM: readonly WasmOpImpl[] = [sparseConv, sparseGemm];
