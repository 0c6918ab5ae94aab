/**
 * Gemm (Y = α·A'·B' + β·C) and MatMul by a constant 2-D B on the GPU: one thread per output
 * (m, n). B dense is read through strides (so transB needs no copy); B compressed is held as the
 * rows of B' (one per output column n, weights.ts), which the thread walks, decoding each code.
 * β·C is folded at bind into the weight buffer and read with broadcast strides.
 * @module
 */
import { KernelError } from "../../ops/types.ts";
import type { Tensor } from "../../../format/mod.ts";
import type { NodeSpec } from "../../backend.ts";
import type { GpuOpImpl, StepIO } from "../backend.ts";
import type { GpuContext } from "../context.ts";
import { F32_MAX, Params, WGSL_MAIN, WGSL_PRELUDE } from "../context.ts";
import { layoutParams, packCompressed, packDense, weightWgsl } from "../weights.ts";
import { compressedElsewhere, notF32 } from "./common.ts";

const W_AT = 24;

function gemmShader(kind: "dense" | "sparse-uniform" | "sparse-table"): string {
  const accumulate = kind === "dense"
    ? `for (var k = 0u; k < K; k++) { acc += a[m * sa_m + k * sa_k] * wDense(k * pu(6u) + n * pu(7u)); }`
    : `let L = wLayout(); let end = wRowEnd(n);
  for (var j = wRowBegin(n); j < end; j++) { acc += a[m * sa_m + wCol(L, j) * sa_k] * wVal(L, j); }`;
  return `${WGSL_PRELUDE}
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
${weightWgsl(W_AT, kind)}
${WGSL_MAIN}
  let N = pu(2u); let K = pu(3u); let sa_m = pu(4u); let sa_k = pu(5u);
  let n = i % N; let m = i / N;
  var acc = 0.0;
  ${accumulate}
  acc = acc * pf(11u);
  if (pu(8u) == 1u) { acc += wExtra(pu(12u), m * pu(9u) + n * pu(10u)); }
  y[i] = clamp(acc, pf(19u), pf(20u));
}`;
}

interface GemmPlan {
  K: number;
  N: number;
  transA: boolean;
  alpha: number;
  /** β·C and its dims, if C is given. */
  c?: { data: Float32Array; dims: number[] };
}

/** Bind a product by constant B (input 1) with the plan's shape; the caller maps run inputs to (M, A strides, output dims). */
function bindProduct(spec: NodeSpec, ctx: GpuContext, plan: GemmPlan, transB: boolean, outDims: (a: Tensor) => { M: number; dims: number[] }) {
  // A fused Relu/Clip after the product is the kernel's clamp (a residual is not taken: see gemm's bind).
  const lo = Math.max(-F32_MAX, spec.epilogue?.lo ?? -F32_MAX), hi = Math.min(F32_MAX, spec.epilogue?.hi ?? F32_MAX);
  const bc = spec.compressed[1], bd = spec.constants[1];
  const { K, N } = plan;
  const extra = plan.c ? [plan.c.data] : [];
  // Rows of B' (n) with columns k: transB stores B as [N, K], else [K, N].
  const packed = bc
    ? (transB
      ? packCompressed(bc, N, K, (f) => Math.floor(f / K), (f) => f % K, extra)
      : packCompressed(bc, N, K, (f) => f % N, (f) => Math.floor(f / N), extra))
    : packDense(bd!.data as Float32Array, extra);
  const wbuf = ctx.constantBuffer(packed.words, `${spec.name}:w`);
  const pipe = ctx.pipeline(`gemm:${packed.layout.kind}`, () => gemmShader(packed.layout.kind));
  const p = new Params();
  return {
    path: bc ? "webgpu-gemm-sparse-q" : "webgpu-gemm-direct",
    weightForm: packed.form,
    residentBytes: packed.words.byteLength,
    run([a]: readonly (Tensor | undefined)[], io: StepIO) {
      const { M, dims } = outDims(a!);
      const ab = io.input(0, a);
      const y = io.output(0, dims);
      p.u.fill(0);
      p.u[0] = M * N; p.u[1] = M; p.u[2] = N; p.u[3] = K;
      p.u[4] = plan.transA ? 1 : K; p.u[5] = plan.transA ? M : 1;
      p.u[6] = transB ? 1 : N; p.u[7] = transB ? K : 1;
      if (plan.c) {
        const cd = plan.c.dims;
        const cm = cd.length === 2 && cd[0] !== 1 ? cd[1]! : 0;
        const cn = (cd.length >= 1 && cd[cd.length - 1] !== 1) ? 1 : 0;
        if (cd.length === 2 && cd[0] !== 1 && cd[0] !== M) throw new KernelError(`Gemm: C [${cd}] does not broadcast to [${M}, ${N}]`);
        p.u[8] = 1; p.u[9] = cm; p.u[10] = cn; p.u[12] = packed.layout.extra[0]!;
      }
      p.f[11] = plan.alpha;
      p.f[19] = lo; p.f[20] = hi;
      layoutParams(packed.layout, p.u, p.f, p.s, W_AT);
      io.dispatch(0, pipe, p, [ab, wbuf, y.gpu.buffer], M * N);
      return [y];
    },
    dispose: () => ctx.destroyBuffer(wbuf),
  };
}

const gemm: GpuOpImpl = {
  opTypes: ["Gemm"],
  bind(spec, ctx) {
    const why = notF32(spec, [0]) ?? compressedElsewhere(spec, [1]);
    if (why) return why;
    if (spec.epilogue?.residual !== undefined) return "Gemm with a fused residual add";
    const bc = spec.compressed[1], bd = spec.constants[1];
    if (!bc && !bd) return "Gemm B is not a constant";
    if (bd && !(bd.data instanceof Float32Array)) return "Gemm B is not float32";
    const bDims = bc ? bc.dims : bd!.dims;
    if (bDims.length !== 2) return `Gemm B of rank ${bDims.length}`;
    const transA = spec.attrs.int("transA", 0) !== 0, transB = spec.attrs.int("transB", 0) !== 0;
    const [K, N] = transB ? [bDims[1]!, bDims[0]!] : [bDims[0]!, bDims[1]!];
    const beta = spec.attrs.float("beta", 1);
    let c: GemmPlan["c"];
    if (spec.node.inputs[2]) {
      const ct = spec.constants[2];
      if (!ct || !(ct.data instanceof Float32Array)) return "Gemm C is not a constant float32";
      if (ct.dims.length > 2 || (ct.dims.length >= 1 && ct.dims[ct.dims.length - 1] !== 1 && ct.dims[ct.dims.length - 1] !== N)) return `Gemm C [${ct.dims}] does not broadcast`;
      c = { data: ct.data.map((v) => v * beta), dims: ct.dims.slice() };
    }
    const plan: GemmPlan = { K, N, transA, alpha: spec.attrs.float("alpha", 1), c };
    return bindProduct(spec, ctx, plan, transB, (a) => {
      if (a.dims.length !== 2) throw new KernelError(`Gemm: A [${a.dims}] must be 2-D`);
      const [M, Ka] = transA ? [a.dims[1]!, a.dims[0]!] : [a.dims[0]!, a.dims[1]!];
      if (Ka !== K) throw new KernelError(`Gemm: A [${a.dims}] and B [${bDims}] disagree on K`);
      return { M, dims: [M, N] };
    });
  },
};

const matmul: GpuOpImpl = {
  opTypes: ["MatMul"],
  bind(spec, ctx) {
    const why = notF32(spec, [0]) ?? compressedElsewhere(spec, [1]);
    if (why) return why;
    const bc = spec.compressed[1], bd = spec.constants[1];
    if (!bc && !bd) return "MatMul B is not a constant";
    if (bd && !(bd.data instanceof Float32Array)) return "MatMul B is not float32";
    const bDims = bc ? bc.dims : bd!.dims;
    if (bDims.length !== 2) return `MatMul B of rank ${bDims.length} (2-D only)`;
    const [K, N] = [bDims[0]!, bDims[1]!];
    return bindProduct(spec, ctx, { K, N, transA: false, alpha: 1 }, false, (a) => {
      if (a.dims.length < 1 || a.dims[a.dims.length - 1] !== K) throw new KernelError(`MatMul: A [${a.dims}] and B [${bDims}] disagree on K`);
      const lead = a.dims.slice(0, -1);
      return { M: lead.reduce((x, d) => x * d, 1), dims: [...lead, N] };
    });
  },
};

/** The matrix product implementations. */
export const GEMM_GPU: readonly GpuOpImpl[] = [gemm, matmul];
