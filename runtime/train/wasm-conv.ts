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
import type { CompressedTensor, Node } from "../../format/mod.ts";
import type { NodeSpec } from "../backend.ts";
import type { ConvGeometry, ConvGradKernels } from "../ops/conv.ts";
import type { Attrs } from "../ops/types.ts";
import { WasmKernels } from "../wasm/module.ts";
import { ThreadTeam } from "../wasm/threads.ts";
import { bindSparseConv, convLayout, freeLayout } from "../wasm/ops/conv-sparse.ts";
import { sparseFormFits } from "../wasm/ops/sparse-form.ts";

/**
 * Fraction of zeros from which a kernel here beats the JS path it replaces, by the conv's output
 * size: bench/train-conv-bench.ts --batch 32 --reps 5 (AMD EPYC, Bun, shared machine), ResNet-20's
 * convs. Forward, sparse ÷ JS (Winograd or im2col + GEMM): 3×3 16→16 @28² 0.78 at 20% zeros,
 * 32→32 @14² 1.04 at 40% and 0.93 at 50%, 64→64 @7² 1.12 at 50% and 0.90 at 60%, stride 2
 * 1.03–1.45 at 60% (1×1 stride 2 1.2–1.8 up to 60%). Weight gradient, masked ÷ dense im2col + GEMM:
 * 0.58–1.0 with no zeros at ≥ 14² outputs, at 7² 1.25 dense, 1.0 at 20%, 0.75 at 40%.
 */
export function sparsePays(g: ConvGeometry, zeros: number, product: "forward" | "weightGrad"): boolean {
  const pixels = g.outSpatial.reduce((a, b) => a * b, 1);
  if (product === "weightGrad") return pixels >= 196 || zeros >= 0.3;
  if (g.strides.some((s) => s !== 1)) return zeros >= (g.kernel.every((k) => k === 1) ? 0.75 : 0.65);
  return zeros >= (pixels >= 784 ? 0.15 : pixels >= 196 ? 0.45 : 0.6);
}

/** Kept weights of one mask per layout: row starts and tap offsets, in wasm memory. */
interface KeptRows { key: string; rowPtr: number; taps: number; flat: Int32Array; nnz: number }

/**
 * The conv kernels on a fresh wasm instance; undefined where the engine lacks WASM SIMD. Each
 * product is claimed where sparsePays says so, or always with `claimAll` (tests, the bench).
 */
export function createWasmConvKernels(claimAll = false): ConvGradKernels | undefined {
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

  return {
    buffer(n) {
      const p = k.alloc(Math.max(4, n * 4));
      return k.f32(p, n).fill(0);
    },

    sparseConv(x, w, b, g, attrs, alloc) {
      if (g.inSpatial.length !== 2 || !(claimAll || sparsePays(g, zeros(w), "forward"))) return undefined;
      const M = g.outChannels, cols = (g.inChannels / g.group) * g.kernel[0]! * g.kernel[1]!;
      const ct = compressedOf(w, [M, g.inChannels / g.group, g.kernel[0]!, g.kernel[1]!]);
      if (!sparseFormFits(ct, cols)) return undefined;
      const xDims = [g.batch, g.inChannels, ...g.inSpatial], yDims = [g.batch, M, ...g.outSpatial];
      const spec = convSpec(attrs, xDims, ct, b, yDims);
      const bound = bindSparseConv(spec, env);
      const y = alloc(yDims.reduce((a, d) => a * d, 1));
      const resident = k.addressOf(y) >= 0;
      try {
        const xt = { dtype: "float32" as const, dims: xDims, data: x };
        const out = bound.runFused(xt, undefined, -Infinity, Infinity, (n) => (resident ? y : k.f32(block(0, n * 4), n)), (t) => addr(t.data as Float32Array, 1));
        if (!resident) y.set(out.data as Float32Array);
      } finally {
        bound.dispose?.();
      }
      return y;
    },

    weightGrad(x, dy, g, keep, dw, db) {
      if (g.inSpatial.length !== 2 || !(claimAll || sparsePays(g, keep ? 1 - keptFraction(keep) : 0, "weightGrad"))) return false;
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
        const rows = keptRows(k, keptByMask, everyWeight, keep, M, (C / g.group) * KH * KW, l);
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

/** The NodeSpec bindSparseConv reads: a Conv over known shapes with a compressed weight and a dense bias. */
function convSpec(attrs: Attrs, xDims: number[], w: CompressedTensor, b: Float32Array | undefined, yDims: number[]): NodeSpec {
  const node: Node = { opType: "Conv", name: "train-conv", domain: "", inputs: b ? ["x", "w", "b"] : ["x", "w"], outputs: ["y"], attrs: {} };
  const bias = b ? { dtype: "float32" as const, dims: [b.length], data: b } : undefined;
  return {
    node, name: node.name, attrs, opset: 11,
    inputShapes: [xDims, w.dims, bias?.dims], outputShapes: [yDims],
    inputDtypes: ["float32", "float32", bias ? "float32" : undefined], outputDtypes: ["float32"],
    constants: [undefined, undefined, bias], compressed: [undefined, w, undefined],
    dense: () => undefined, threads: 1,
  };
}
