/**
 * The training graph's conv kernels on WebAssembly SIMD (ops/conv.ts `ConvGradKernels`): the
 * products where the mask pays, on the sparse inference kernels' run layout (wasm/ops/conv-sparse.ts).
 * - Forward, and the input gradient of a 3×3 stride-1 "same" conv (the same conv of dY with the
 *   filters flipped), skip the pruned weights: Ŵ is transcoded each step into the kernels' sparse
 *   row form (levels = its distinct values, a handful once quantized) and run by bindSparseConv.
 * - The weight gradient is computed only where the mask keeps a weight (as/train.ts
 *   convWeightGradF32): at sparsity p it costs (1 − p) of the dense product.
 * One module instance per training graph (each data-parallel shard has its own), on the calling
 * thread: the shards are the parallelism.
 * @module
 */
import { type CompressedTensor, type Node, sizeOf, type Tensor } from "../../format/mod.ts";
import type { NodeSpec } from "../backend.ts";
import type { ConvGeometry, ConvGradKernels } from "../ops/conv.ts";
import type { Attrs } from "../ops/types.ts";
import { WasmKernels } from "../wasm/module.ts";
import { ThreadTeam } from "../wasm/threads.ts";
import { bindSparseConv, convLayout, freeLayout } from "../wasm/ops/conv-sparse.ts";
import { sparseFormFits } from "../wasm/ops/sparse-form.ts";
import { CONV_DENSE_WASM } from "../wasm/ops/conv-dense.ts";
import type { WasmOpImpl } from "../wasm/backend.ts";

/**
 * Whether the dense wasm kernels (wasm/ops/conv-dense.ts) beat the JS path (ops/conv.ts convPath:
 * Winograd or im2col + GEMM) on a conv: bench/train-conv-bench.ts --batch 64 --reps 5 (AMD EPYC,
 * Bun, shared machine), ResNet-20's convs, dense ÷ JS. 3×3 stride 1 with ≥ 8 channels in and out
 * (wasm Winograd against JS Winograd): forward 0.56–0.76, input gradient (the flipped conv) 0.54–0.81.
 * 1×1 stride 1 unpadded (the strided convs' input gradient, col(dX) = Wᵀ·dY): 0.81–1.05, mostly
 * ~0.9. Not claimed: the stem (1 input channel, 1.4–1.8), 3×3 stride 2 (0.94–1.14), 1×1 stride 2 (1.1–1.3).
 */
export function densePays(g: ConvGeometry): boolean {
  if (g.group !== 1 || g.inSpatial.length !== 2 || g.dilations.some((d) => d !== 1) || g.strides.some((s) => s !== 1)) return false;
  if (g.kernel.every((k) => k === 1)) return g.pads.every((q) => q === 0);
  return g.kernel.every((k) => k === 3) && g.inChannels >= 8 && g.outChannels >= 8;
}

/**
 * Fraction of zeros from which the sparse forward beats what it replaces: bench/train-conv-bench.ts
 * --batch 64 --reps 5 (AMD EPYC, Bun, shared machine), ResNet-20's convs.
 * Forward and input gradient, where densePays, sparse ÷ dense wasm: 3×3 stride 1 @28² 1.02 at 40%
 * zeros and 0.87–0.90 at 55%, @14² 1.11–1.16 at 40% and 0.82–0.90 at 55%, @7² 0.94–1.03 at 55% and
 * 0.81–0.87 at 65%; 1×1 stride 1 (a strided conv's dX) 0.99–1.19 at 65%, 0.86–1.09 at 75%.
 * Elsewhere, sparse ÷ JS (an older run of the same bench at --batch 32): 3×3 @28² with one input
 * channel 0.78 at 20%, stride 2 1.03–1.45 at 60% (1×1 stride 2 1.2–1.8 up to 60%), 14² 0.93 at 50%, 7² 0.90 at 60%.
 */
export function sparsePays(g: ConvGeometry, zeros: number): boolean {
  const pixels = g.outSpatial.reduce((a, b) => a * b, 1);
  if (densePays(g)) {
    if (g.kernel.every((k) => k === 1)) return zeros >= 0.7;
    return zeros >= (pixels >= 784 ? 0.45 : pixels >= 196 ? 0.5 : 0.6);
  }
  if (g.strides.some((s) => s !== 1)) return zeros >= (g.kernel.every((k) => k === 1) ? 0.75 : 0.65);
  return zeros >= (pixels >= 784 ? 0.15 : pixels >= 196 ? 0.45 : 0.6);
}

/**
 * Whether the weight gradient at every weight (as/train.ts convWeightGradDenseF32, the pruned
 * positions zeroed after) beats the masked one (kept weights only) at this fraction of pruned
 * weights: bench/train-conv-bench.ts --batch 64 --reps 3 (AMD EPYC, Bun, shared machine),
 * ResNet-20's convs, masked ÷ dense: 3×3 1.15–1.28 with none pruned, 0.87–0.94 at 30% (stride 2
 * @28² 1.39 at 30%, 0.80 at 50%); 1×1 stride 2 1.07–1.28 at 30%, 0.79–1.05 at 50%. Both beat the JS
 * im2col + GEMM on every conv there (dense ÷ JS 0.36–0.39 @28², 0.53–0.57 @14², 0.82 @7², 0.67–0.97 strided),
 * so the JS path no longer computes a 2-D weight gradient.
 */
export function denseGradPays(g: ConvGeometry, pruned: number): boolean {
  return pruned < (g.kernel.every((k) => k === 1) ? 0.4 : 0.2);
}

/** Kept weights of one mask per layout: row starts and tap offsets, in wasm memory. */
interface KeptRows { key: string; rowPtr: number; taps: number; flat: Int32Array; nnz: number }

/** Which kernels a set of training conv kernels uses: where they pay (`auto`), or always the sparse or the dense ones (tests, the bench). */
export type WasmConvMode = "auto" | "sparse" | "dense";

/** Training conv kernels whose mode may be switched between calls (the bench compares them on one memory). */
export interface WasmConvKernels extends ConvGradKernels { mode: WasmConvMode }

/**
 * The conv kernels on a fresh wasm instance; undefined where the engine lacks WASM SIMD. In
 * `auto` mode each product is claimed where sparsePays / densePays say so.
 */
export function createWasmConvKernels(initialMode: WasmConvMode = "auto"): WasmConvKernels | undefined {
  const k = WasmKernels.create(1 << 24);
  if (!k) return undefined;
  const env = { kernels: k, team: ThreadTeam.single(k) };
  const ex = k.exports;
  const keptByMask = new WeakMap<Uint8Array, KeptRows>(), everyWeight = new Map<string, KeptRows>();
  /** Float32 views of wasm blocks reused across calls by slot (grown on demand). */
  const blocks: { ptr: number; bytes: number }[] = [];
  const block = (slot: number, bytes: number): number => {
    const b = blocks[slot];
    if (b && b.bytes >= bytes) return b.ptr;
    if (b) k.free(b.ptr);
    const size = Math.max(bytes, Math.ceil((b?.bytes ?? 0) * 1.25), 1 << 16);
    blocks[slot] = { ptr: k.alloc(size), bytes: size };
    return blocks[slot]!.ptr;
  };
  const zeros = (w: Float32Array) => { let z = 0; for (let i = 0; i < w.length; i++) if (w[i] === 0) z++; return z / Math.max(1, w.length); };
  const keptShare = new WeakMap<Uint8Array, number>();
  const keptFraction = (m: Uint8Array) => {
    let f = keptShare.get(m);
    if (f === undefined) { let n = 0; for (let i = 0; i < m.length; i++) n += m[i]! ? 1 : 0; keptShare.set(m, f = n / Math.max(1, m.length)); }
    return f;
  };

  /** The address of `a` in the kernels' memory, copying it into block `slot` if it lives elsewhere. */
  const addr = (a: Float32Array, slot: number): number => {
    const p = k.addressOf(a);
    if (p >= 0) return p;
    const q = block(slot, a.length * 4);
    k.f32(q, a.length).set(a);
    return q;
  };
  /** Run `bound` on x into a buffer of `alloc` (written in place when that buffer is in wasm memory). */
  const runInto = (
    run: (rcAlloc: (n: number) => Float32Array, address: (t: Tensor) => number) => Tensor,
    n: number, alloc: (n: number) => Float32Array,
  ): Float32Array => {
    const y = alloc(n);
    const resident = k.addressOf(y) >= 0;
    const out = run((m) => (resident ? y : k.f32(block(0, m * 4), m)), (t) => addr(t.data as Float32Array, 1));
    if (!resident) y.set(out.data as Float32Array);
    return y;
  };

  const sparse = (x: Float32Array, w: Float32Array, b: Float32Array | undefined, g: ConvGeometry, attrs: Attrs, alloc: (n: number) => Float32Array) => {
    const M = g.outChannels, cols = (g.inChannels / g.group) * g.kernel[0]! * g.kernel[1]!;
    const ct = compressedOf(w, [M, g.inChannels / g.group, g.kernel[0]!, g.kernel[1]!]);
    if (!sparseFormFits(ct, cols)) return undefined;
    const xDims = [g.batch, g.inChannels, ...g.inSpatial], yDims = [g.batch, M, ...g.outSpatial];
    const bound = bindSparseConv(convSpec(attrs, xDims, { compressed: ct }, b, yDims), env);
    try {
      const xt = { dtype: "float32" as const, dims: xDims, data: x };
      return runInto((rcAlloc, address) => bound.runFused(xt, undefined, -Infinity, Infinity, rcAlloc, address), sizeOf(yDims), alloc);
    } finally {
      bound.dispose?.();
    }
  };

  // Dense: the inference runtime's dense conv implementations (wasm/ops/conv-dense.ts: im2col +
  // GEMM, Winograd F(2×2, 3×3), depthwise), the cheapest claim, bound on this step's Ŵ (packing
  // costs O(weights), a small share of the O(weights · pixels · batch) product).
  const dense = (x: Float32Array, w: Float32Array, b: Float32Array | undefined, g: ConvGeometry, attrs: Attrs, alloc: (n: number) => Float32Array) => {
    const M = g.outChannels;
    const xDims = [g.batch, g.inChannels, ...g.inSpatial], yDims = [g.batch, M, ...g.outSpatial];
    const wt: Tensor = { dtype: "float32", dims: [M, g.inChannels / g.group, g.kernel[0]!, g.kernel[1]!], data: w };
    const spec = convSpec(attrs, xDims, { dense: wt }, b, yDims);
    let best: { impl: WasmOpImpl; claim: { path: string; weightForm: string; cost: number } } | undefined;
    for (const impl of CONV_DENSE_WASM) {
      const c = impl.claim(spec, env);
      if (c && (!best || c.cost < best.claim.cost)) best = { impl, claim: c };
    }
    if (!best) return undefined;
    const bound = best.impl.bind(spec, env, best.claim);
    try {
      const xt: Tensor = { dtype: "float32", dims: xDims, data: x };
      return runInto((rcAlloc, address) => bound.run([xt, wt, spec.constants[2]], { alloc: rcAlloc }, address)[0]!, sizeOf(yDims), alloc);
    } finally {
      bound.dispose?.();
    }
  };

  const kernels: WasmConvKernels = {
    mode: initialMode,
    buffer(n) {
      const p = k.alloc(Math.max(4, n * 4));
      return k.f32(p, n).fill(0);
    },

    conv(x, w, b, g, attrs, alloc) {
      if (g.inSpatial.length !== 2) return undefined;
      const mode = kernels.mode;
      if (mode === "sparse" || (mode === "auto" && sparsePays(g, zeros(w)))) {
        const y = sparse(x, w, b, g, attrs, alloc);
        if (y || mode === "sparse") return y;
      }
      return mode === "dense" || densePays(g) ? dense(x, w, b, g, attrs, alloc) : undefined;
    },

    weightGrad(x, dy, g, keep, dw, db) {
      if (g.inSpatial.length !== 2) return false;
      const pruned = keep ? 1 - keptFraction(keep) : 0, mode = kernels.mode;
      // Every weight (then the pruned ones zeroed) or the kept ones only.
      const every = mode === "dense" || (mode === "auto" && denseGradPays(g, pruned));
      const [KH, KW] = g.kernel as [number, number];
      const M = g.outChannels, C = g.inChannels, N = g.batch;
      const [H, W] = g.inSpatial as [number, number];
      const [Ho, Wo] = g.outSpatial as [number, number];
      const l = convLayout(k, g, KH, KW);
      try {
        // The phase-split input (a plain zero-slacked copy for an unpadded stride-1 conv).
        const xBytes = N * l.xImgBytes + l.slack * 4;
        const xp = block(2, xBytes);
        if (l.direct) {
          k.f32(xp, x.length).set(x);
        } else {
          const src = addr(x, 1);
          const [pt, pl] = g.pads as [number, number];
          const [sy, sx] = g.strides as [number, number];
          ex.phaseSplitF32(0, N * C, src, C, H, W, sy, sx, pt, pl, l.Hq, l.Wq, l.phases, l.nPlanes, xp);
        }
        // The slack past the last image is read by the last runs; zero it so 0·garbage stays 0.
        k.f32(xp + N * l.xImgBytes, l.slack).fill(0);
        const dySrc = addr(dy, 3);
        const dyq = block(4, N * M * l.L8 * 4);
        const sums = db ? block(6, M * 4) : 0;
        if (db) k.f32(sums, M).fill(0);
        ex.padRunsF32(0, N * M, dySrc, Ho, Wo, l.Wq, l.L8, dyq, M, sums);
        if (db) db.set(k.f32(sums, M));
        const cols = (C / g.group) * KH * KW;
        if (every) {
          const out = block(5, M * cols * 4);
          const acc = k.f32(out, M * cols);
          acc.fill(0);
          ex.convWeightGradDenseF32(0, M, l.table, cols, xp, l.xImgBytes, l.gStrideBytes, M / g.group, M, N, dyq, l.L8, out);
          if (keep) for (let i = 0; i < dw.length; i++) dw[i] = keep[i] ? acc[i]! : 0;
          else dw.set(acc);
          return true;
        }
        const rows = keptRows(k, keptByMask, everyWeight, keep, M, cols, l);
        const out = block(5, rows.nnz * 4);
        const acc = k.f32(out, rows.nnz);
        acc.fill(0);
        ex.convWeightGradF32(0, M, rows.rowPtr, rows.taps, xp, l.xImgBytes, l.gStrideBytes, M / g.group, M, N, dyq, l.L8, out);
        dw.fill(0);
        for (let j = 0; j < rows.nnz; j++) dw[rows.flat[j]!] = acc[j]!;
      } finally {
        freeLayout(k, l);
      }
      return true;
    },
  };
  return kernels;
}

/** The kept positions of `keep` (all positions without one) as row starts and tap offsets for layout `l`; cached per mask and layout. */
function keptRows(
  k: WasmKernels, masked: WeakMap<Uint8Array, KeptRows>, unmasked: Map<string, KeptRows>,
  keep: Uint8Array | undefined, M: number, cols: number, l: ReturnType<typeof convLayout>,
): KeptRows {
  const key = `${M}x${cols}:${l.Hq}x${l.Wq}:${l.xImgBytes}`;
  const hit = keep ? masked.get(keep) : unmasked.get(key);
  if (hit && hit.key === key) return hit;
  if (hit) { k.free(hit.rowPtr); k.free(hit.taps); }
  let nnz = 0;
  if (keep) for (let i = 0; i < M * cols; i++) nnz += keep[i] ? 1 : 0;
  else nnz = M * cols;
  const flat = new Int32Array(nnz);
  const rowPtr = k.alloc((M + 1) * 4), taps = k.alloc(Math.max(1, nnz) * 4);
  const rp = k.i32(rowPtr, M + 1), tp = k.i32(taps, Math.max(1, nnz)), table = k.i32(l.table, cols);
  let j = 0;
  for (let m = 0; m < M; m++) {
    rp[m] = j;
    for (let c = 0; c < cols; c++) {
      if (keep && !keep[m * cols + c]) continue;
      flat[j] = m * cols + c;
      tp[j++] = table[c]!;
    }
  }
  rp[M] = j;
  const rows = { key, rowPtr, taps, flat, nnz };
  if (keep) masked.set(keep, rows);
  else unmasked.set(key, rows);
  return rows;
}

/**
 * Ŵ as a compressed tensor of its non-zeros. Its distinct values are the level table while there
 * are at most MAX_SHARED_LEVELS of them (stage 2's quantized Ŵ: a value splatted once serves all
 * its weights); past that (stage 1's Ŵ = M∘W) every weight is its own level, without a lookup.
 */
function compressedOf(w: Float32Array, dims: number[]): CompressedTensor {
  let nnz = 0;
  for (let i = 0; i < w.length; i++) if (w[i] !== 0) nnz++;
  const indices = new Uint32Array(nnz), codes = new Int32Array(nnz);
  let ids: Map<number, number> | undefined = new Map<number, number>();
  const values: number[] = [];
  let j = 0;
  for (let i = 0; i < w.length; i++) {
    const v = w[i]!;
    if (v === 0) continue;
    indices[j] = i;
    let id = ids?.get(v);
    if (ids && id === undefined) {
      if (ids.size === MAX_SHARED_LEVELS) ids = undefined;
      else { id = values.length; ids.set(v, id); values.push(v); }
    }
    codes[j++] = id ?? -1;
  }
  if (!ids) {
    // Too many distinct values: one level per weight.
    values.length = 0;
    for (let q = 0; q < nnz; q++) { codes[q] = q; values.push(w[indices[q]!]!); }
  }
  return { name: "w", dims, codebook: { kind: "table", values: Float32Array.from(values) }, indices, codes };
}

/** Most distinct values kept as shared levels (see compressedOf). */
const MAX_SHARED_LEVELS = 4096;

/** The NodeSpec the wasm conv binders read: a Conv over known shapes with a constant weight (compressed or dense) and a dense bias. */
function convSpec(attrs: Attrs, xDims: number[], w: { compressed: CompressedTensor } | { dense: Tensor }, b: Float32Array | undefined, yDims: number[]): NodeSpec {
  const node: Node = { opType: "Conv", name: "train-conv", domain: "", inputs: b ? ["x", "w", "b"] : ["x", "w"], outputs: ["y"], attrs: {} };
  const bias = b ? { dtype: "float32" as const, dims: [b.length], data: b } : undefined;
  const wc = "compressed" in w ? w.compressed : undefined, wd = "dense" in w ? w.dense : undefined;
  return {
    node, name: node.name, attrs, opset: 11,
    inputShapes: [xDims, (wc ?? wd)!.dims, bias?.dims], outputShapes: [yDims],
    inputDtypes: ["float32", "float32", bias ? "float32" : undefined], outputDtypes: ["float32"],
    constants: [undefined, wd, bias], compressed: [undefined, wc, undefined],
    dense: () => undefined, threads: 1,
  };
}
