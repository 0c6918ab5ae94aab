/**
 * What the dense wasm implementations share: reading a constant weight (dense initializer or
 * `.opq` compressed tensor, the latter without making a dense copy), the per-memory scratch block,
 * and the throughput constants their cost estimates come from.
 * @module
 */
import { codebookValue, sizeOf } from "../../../format/mod.ts";
import type { Tensor } from "../../../format/mod.ts";
import type { NodeSpec, RunContext } from "../../backend.ts";
import type { AddressOf, WasmBound } from "../backend.ts";
import type { WasmKernels } from "../module.ts";

/**
 * Throughput of each dense kernel on one thread, in GFLOP/s (2 flops per multiply-add; pools:
 * taps), relaxed-SIMD build, Bun, from the CPU time per call that bench/wasm-kernels-bench.ts
 * measured on this machine (Intel Xeon with AVX-512, 2 cores, shared with other jobs: CPU time
 * leaves preemption out) on ResNet-18 and MobileNetV2 layer shapes. A claim's cost is
 * flops / throughput = ns, plus CALL_NS per call.
 */
export const DENSE_GFLOPS = {
  /**
   * Conv through im2col/1×1 + the 4×8 GEMM tile, ≥ 32 outputs per group: the aggregate over 79
   * layers of ResNet-18, ResNet-50 and MobileNetV2 (FP32, Bun, 1 thread, min of 25 runs, this
   * machine, the shuffle-broadcast tile): 1×1 23.6 (per layer 16–27), im2col 21.2 (14–24).
   */
  convGemm: 23,
  /** The same with fewer than 32 outputs per group: MobileNetV2's 3 such 1×1 layers, 21.1 (17–24). */
  convGemmThin: 21,
  /**
   * ns per output value of the GEMM conv on top of its flops (the tile's epilogue and the store):
   * a relative least-squares fit of flops/23 + outputs·t to the same 79 layers gives t = 0.56 and
   * cuts the rms error from 13.5% to 11.8%; without it the K = 16 expand layer of MobileNetV2 is
   * priced 1.7 ms against 2.5 measured, and the planner chose its coded dense form over the sparse
   * one that ran 0.81× the time.
   */
  convGemmOutputNs: 0.56,
  /** Gemm/MatMul against packed weights at batch 1 (memory-bound GEMV): 512→1000 2.8, 1280→1000 3.9. */
  gemmRows: 3,
  /** Depthwise, any other kernel (the scalar loop): 1.2 (5×5 dilated). */
  depthwiseGeneric: 1.2,
  /**
   * The 16 GEMMs of Winograd F(2×2, 3×3), counted as 2·16·M·C·tiles flops, and the transforms in
   * ns per (input channel + output channel) × tile: a least-squares fit to the 26 Winograd layers
   * of ResNet-18 and ResNet-50 (64→64 @56 to 512→512 @7, the same run as convGemm), rms error 6%.
   * The layers hardly separate the two terms (any transform cost 0.4–4 ns fits within 6.5%).
   */
  winogradGemm: 21,
  winogradTransformNs: 2,
  /** Pools, taps per ns: max 3×3/2 @112 0.8, avg 3×3/1 @56 1.0. */
  pool: 0.9,
} as const;

/**
 * The fused epilogue of a Conv/Gemm kernel: `y = clamp(conv(x) + bias + residual, lo, hi)`, the
 * residual having the output's shape (a following Add), lo/hi a following Relu/Clip.
 */
export interface Epilogue {
  residual?: Tensor;
  lo?: number;
  hi?: number;
}

/** What the dense Conv/Gemm binders return: `run` also takes the epilogue the binder may fuse. */
export interface DenseBound extends WasmBound {
  run(inputs: readonly (Tensor | undefined)[], rc: RunContext, addr: AddressOf, epilogue?: Epilogue): Tensor[];
}

/** The epilogue's kernel arguments [residual pointer (0 = none), lo, hi] for an output of `length` floats. */
export function epilogueArgs(e: Epilogue | undefined, length: number, addr: AddressOf): [number, number, number] {
  if (!e) return [0, -Infinity, Infinity];
  if (e.residual && e.residual.data.length !== length) throw new Error(`fused residual has ${e.residual.data.length} values, the output ${length}`);
  return [e.residual ? addr(e.residual) : 0, e.lo ?? -Infinity, e.hi ?? Infinity];
}

/** Fixed cost of one kernel call from JS (argument marshalling, the team's split), ns. */
export const CALL_NS = 2000;

/** True if every present input and the first output are float32. */
export function allFloat32(spec: NodeSpec): boolean {
  return spec.inputDtypes.every((d, i) => d === "float32" || !spec.node.inputs[i]) && spec.outputDtypes[0] === "float32";
}

/** Dims of constant input `slot` (dense or compressed), or undefined if it is not a constant. */
export function constantDims(spec: NodeSpec, slot: number): readonly number[] | undefined {
  return spec.compressed[slot]?.dims ?? spec.constants[slot]?.dims;
}

/** True if constant input `slot` is float32 (a compressed weight always is). */
function constantIsF32(spec: NodeSpec, slot: number): boolean {
  if (spec.compressed[slot]) return true;
  const c = spec.constants[slot];
  return c !== undefined && c.dtype === "float32";
}

/** True if input `slot` is a float32 constant (dense or compressed). */
export function isF32Constant(spec: NodeSpec, slot: number): boolean {
  return constantDims(spec, slot) !== undefined && constantIsF32(spec, slot);
}

/**
 * Call `visit(block, values)` for the consecutive blocks of `size` elements of constant input
 * `slot` (e.g. one output channel's K weights): each block of a dense constant as a view; for a
 * compressed one only the blocks holding a stored non-zero, decoded from the codes into a reused
 * buffer (no dense copy of the tensor is made). Returns false if the slot holds no float32
 * constant. Callers pre-zero their destination (skipped blocks are all zeros).
 */
export function forEachBlock(spec: NodeSpec, slot: number, size: number, visit: (block: number, values: Float32Array) => void): boolean {
  const c = spec.compressed[slot];
  if (c) {
    const { indices, codes, codebook } = c;
    const buf = new Float32Array(size);
    let i = 0;
    while (i < indices.length) {
      const block = Math.floor(indices[i]! / size), start = block * size;
      buf.fill(0);
      for (; i < indices.length && indices[i]! < start + size; i++) buf[indices[i]! - start] = codebookValue(codebook, codes[i]!);
      visit(block, buf);
    }
    return true;
  }
  const t = spec.constants[slot];
  if (!t || t.dtype !== "float32") return false;
  const d = t.data as Float32Array;
  for (let b = 0; b * size < d.length; b++) visit(b, d.subarray(b * size, (b + 1) * size));
  return true;
}

/** Copy constant input `slot` (dense or compressed) into a new zeroed wasm block; returns [ptr, floats]. */
export function weightToWasm(k: WasmKernels, spec: NodeSpec, slot: number, minFloats = 0): [number, number] {
  const n = sizeOf(constantDims(spec, slot) ?? []);
  const floats = Math.max(n, minFloats);
  const ptr = k.alloc(floats * 4);
  const view = k.f32(ptr, floats);
  view.fill(0);
  const size = Math.max(1, Math.min(n, 4096));
  forEachBlock(spec, slot, size, (b, v) => view.set(v, b * size));
  return [ptr, floats];
}

/** One scratch block per kernel memory, shared by every node of the session (runs are serialized). */
const SCRATCH = new WeakMap<WasmKernels, { ptr: number; bytes: number }>();

/** A scratch block of at least `bytes` in `k`'s memory, valid until the next call (grows, never shrinks). */
export function scratchBlock(k: WasmKernels, bytes: number): number {
  const s = SCRATCH.get(k);
  if (s && s.bytes >= bytes) return s.ptr;
  if (s) k.free(s.ptr);
  const size = Math.max(bytes, (s?.bytes ?? 0) * 2);
  const ptr = k.alloc(size);
  SCRATCH.set(k, { ptr, bytes: size });
  return ptr;
}

/** A static dim, or undefined for a symbolic/unknown one. */
export const staticDim = (d: unknown): number | undefined => (typeof d === "number" ? d : undefined);
