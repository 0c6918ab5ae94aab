/**
 * Float32 Gemm and MatMul against a constant weight on wasm (as/gemm.ts gemmPackedF32): the
 * weight B is packed once at bind into 8-wide column panels (alpha folded in; transB is just
 * another packing order; a compressed weight decodes straight into the panels), A is read in
 * place (transA by strides), and a constant C that broadcasts along rows ([n], [1, n], [1], [])
 * becomes the column bias beta·C of the epilogue. The column panels are split across the team,
 * so a batch-1 classifier GEMV uses both cores. Other C shapes, a run-time B or C, and other
 * dtypes stay with the reference.
 * @module
 */
import type { Tensor } from "../../../format/mod.ts";
import { sizeOf } from "../../../format/mod.ts";
import type { NodeSpec } from "../../backend.ts";
import type { WasmOpImpl } from "../backend.ts";
import { allFloat32, CALL_NS, type DenseBound, epilogueArgs, constantDims, DENSE_GFLOPS, forEachBlock, isF32Constant, scratchBlock, staticDim } from "./dense-common.ts";

/** Below this many multiply-adds a call stays on one thread (a split costs ~20 µs ≈ 100k MACs). */
const PARALLEL_MIN_MACS = 1 << 17;

/** The problem a Gemm/MatMul node poses: B's [k, n] as stored and how to read it. */
interface Problem {
  k: number;
  n: number;
  transB: boolean;
  transA: boolean;
  alpha: number;
  /** beta·C as a column bias of n values, or undefined without C. */
  bias?: Float32Array;
}

/** Gemm's or MatMul's problem, or undefined if this implementation does not take the node. */
function problemOf(spec: NodeSpec): Problem | undefined {
  if (!allFloat32(spec) || !isF32Constant(spec, 1)) return undefined;
  const bDims = constantDims(spec, 1)!;
  if (bDims.length !== 2) return undefined;
  const a = spec.inputShapes[0];
  if (spec.node.opType === "MatMul") {
    if (!a || a.length < 2) return undefined;
    return { k: bDims[0]!, n: bDims[1]!, transB: false, transA: false, alpha: 1 };
  }
  if (!a || a.length !== 2) return undefined;
  const transA = spec.attrs.int("transA", 0) !== 0, transB = spec.attrs.int("transB", 0) !== 0;
  const [k, n] = transB ? [bDims[1]!, bDims[0]!] : [bDims[0]!, bDims[1]!];
  const alpha = spec.attrs.float("alpha", 1), beta = spec.attrs.float("beta", 1);
  const p: Problem = { k, n, transA, transB, alpha };
  if (!spec.node.inputs[2]) return spec.opset < 11 ? undefined : p;
  const c = spec.constants[2];
  if (!c || c.dtype !== "float32") return undefined;
  const cd = c.data as Float32Array;
  const rowVector = c.dims.length <= 1 || (c.dims.length === 2 && c.dims[0] === 1);
  const cols = c.dims.length === 0 ? 1 : c.dims[c.dims.length - 1]!;
  if (!rowVector || (cols !== n && cols !== 1)) return undefined;
  p.bias = new Float32Array(n);
  for (let j = 0; j < n; j++) p.bias[j] = beta * cd[cols === 1 ? 0 : j]!;
  return p;
}

const gemm: WasmOpImpl = {
  opTypes: ["Gemm", "MatMul"],
  claim(spec) {
    const p = problemOf(spec);
    if (!p) return undefined;
    const a = spec.inputShapes[0]!;
    // Rows at batch 1: Gemm's m (1 for a classifier), MatMul's leading dims with a dynamic batch as 1.
    const m = spec.node.opType === "Gemm" ? staticDim(a[p.transA ? 1 : 0]) ?? 1 : a.slice(0, -1).reduce<number>((r, d) => r * (staticDim(d) ?? 1), 1);
    return { path: m <= 8 ? "wasm-gemv" : "wasm-gemm", weightForm: "dense-f32-panels-8", cost: CALL_NS + (2 * m * p.k * p.n) / DENSE_GFLOPS.gemmRows };
  },
  bind(spec, env): DenseBound {
    const k = env.kernels, team = env.team;
    const p = problemOf(spec)!;
    const panels = Math.ceil(p.n / 8);
    const bFloats = panels * p.k * 8;
    const bPack = k.alloc(bFloats * 4);
    const b = k.f32(bPack, bFloats);
    b.fill(0);
    // Stored B is [k, n] (or [n, k] with transB); panel jp holds columns 8jp.. as k rows of 8.
    const stored1 = constantDims(spec, 1)![1]!;
    forEachBlock(spec, 1, stored1, (r, v) => {
      if (p.transB) {
        // Row r of the stored [n, k] is column j = r: k values 8 apart in its panel.
        const base = (r >> 3) * p.k * 8 + (r & 7);
        for (let q = 0; q < p.k; q++) b[base + q * 8] = p.alpha * v[q]!;
      } else {
        // Row r of the stored [k, n] is depth q = r across all panels.
        for (let j = 0; j < p.n; j++) b[((j >> 3) * p.k + r) * 8 + (j & 7)] = p.alpha * v[j]!;
      }
    });
    let bias = 0;
    if (p.bias) {
      bias = k.alloc(panels * 8 * 4);
      const bv = k.f32(bias, panels * 8);
      bv.fill(0);
      bv.set(p.bias);
    }
    return {
      residentBytes: bFloats * 4 + (bias ? panels * 32 : 0),
      run([a], rc, addr, epilogue) {
        const ad = a!.dims;
        let m: number, outDims: number[], lda: number, aks: number;
        if (spec.node.opType === "MatMul") {
          if (ad.length < 2 || ad[ad.length - 1] !== p.k) throw new Error(`MatMul: A [${ad}] does not match B [${p.k}, ${p.n}]`);
          m = sizeOf(ad.slice(0, -1));
          outDims = [...ad.slice(0, -1), p.n];
          lda = p.k * 4; aks = 4;
        } else {
          const [r, c] = ad as [number, number];
          if (ad.length !== 2 || (p.transA ? r : c) !== p.k) throw new Error(`Gemm: A [${ad}] does not match K = ${p.k}`);
          m = p.transA ? c : r;
          outDims = [m, p.n];
          // A[i, q] at i·lda + q·aks: row-major [m, k], or [k, m] with transA.
          [lda, aks] = p.transA ? [4, m * 4] : [p.k * 4, 4];
        }
        const y = rc.alloc(m * p.n);
        if (m === 0 || p.n === 0) return [{ dtype: "float32", dims: outDims, data: y } as Tensor];
        if (p.k === 0) {
          // An empty product: the output is the epilogue of zeros.
          const r = epilogue?.residual?.data as Float32Array | undefined;
          const lo = epilogue?.lo ?? -Infinity, hi = epilogue?.hi ?? Infinity;
          for (let i = 0; i < m * p.n; i++) y[i] = Math.min(Math.max((p.bias?.[i % p.n] ?? 0) + (r?.[i] ?? 0), lo), hi);
          return [{ dtype: "float32", dims: outDims, data: y } as Tensor];
        }
        const slices = m * p.k * p.n >= PARALLEL_MIN_MACS ? Math.min(team.threads, panels) : 1;
        const strips = scratchBlock(k, slices * p.k * 16);
        const args = [slices, m, p.n, p.k, addr(a!), lda, aks, bPack, y.byteOffset, bias, ...epilogueArgs(epilogue, y.length, addr), strips];
        if (slices > 1) team.run("gemmPackedF32", slices, 1, args);
        else (k.exports.gemmPackedF32 as (...x: number[]) => void)(0, 1, ...args);
        return [{ dtype: "float32", dims: outDims, data: y } as Tensor];
      },
      dispose() { k.free(bPack); if (bias) k.free(bias); },
    };
  },
};

/** The Gemm/MatMul implementations. */
export const GEMM_WASM: readonly WasmOpImpl[] = [gemm];
