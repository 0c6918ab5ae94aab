/**
 * Elementwise WGSL kernels: activations (Relu, LeakyRelu, Clip, Sigmoid, HardSigmoid, HardSwish,
 * Tanh) as one thread per element, and Add/Sub/Mul/Div with numpy broadcasting (each thread
 * unravels its output index and walks the inputs' broadcast strides; same-shape inputs skip that).
 * @module
 */
import type { Tensor } from "../../../format/mod.ts";
import type { NodeSpec } from "../../backend.ts";
import { KernelError } from "../../ops/types.ts";
import type { GpuOpImpl } from "../backend.ts";
import { F32_MAX, Params, WGSL_MAIN, WGSL_PRELUDE } from "../context.ts";
import { compressedElsewhere, MAX_RANK, notF32, sizeOf } from "./common.ts";

/** WGSL of each activation, of `v` with parameters a = pf(1), b = pf(2). */
const UNARY: Record<string, string> = {
  Relu: "max(v, 0.0)",
  LeakyRelu: "select(v * a, v, v >= 0.0)",
  Clip: "min(max(v, a), b)",
  // Split by sign so exp never overflows (WGSL may assume no infinities).
  Sigmoid: "select(exp(v) / (1.0 + exp(v)), 1.0 / (1.0 + exp(-v)), v >= 0.0)",
  HardSigmoid: "clamp(a * v + b, 0.0, 1.0)",
  HardSwish: "v * clamp(v / 6.0 + 0.5, 0.0, 1.0)",
  // tanh through exp(-2|v|) in (0, 1]: no overflow, and exact sign symmetry.
  Tanh: "sign(v) * (1.0 - exp(-2.0 * abs(v))) / (1.0 + exp(-2.0 * abs(v)))",
};

/** The activation's parameters (a, b), or a reason it cannot bind. */
function unaryParams(spec: NodeSpec): [number, number] | string {
  const op = spec.node.opType;
  if (op === "LeakyRelu") return [spec.attrs.float("alpha", 0.01), 0];
  if (op === "HardSigmoid") return [spec.attrs.float("alpha", 0.2), spec.attrs.float("beta", 0.5)];
  if (op !== "Clip") return [0, 0];
  if (spec.opset < 11) return [spec.attrs.float("min", -F32_MAX), spec.attrs.float("max", F32_MAX)];
  const bound = (k: number, fallback: number): number | string => {
    if (!spec.node.inputs[k]) return fallback;
    const c = spec.constants[k];
    return c && c.data.length === 1 && c.dtype === "float32" ? Math.max(-F32_MAX, Math.min(F32_MAX, Number(c.data[0]))) : `Clip bound ${k} is not a constant float32 scalar`;
  };
  const lo = bound(1, -F32_MAX), hi = bound(2, F32_MAX);
  if (typeof lo === "string") return lo;
  if (typeof hi === "string") return hi;
  return [lo, hi];
}

const unary: GpuOpImpl = {
  opTypes: Object.keys(UNARY),
  bind(spec, ctx) {
    const why = notF32(spec, [0]) ?? compressedElsewhere(spec);
    if (why) return why;
    const ab = unaryParams(spec);
    if (typeof ab === "string") return ab;
    const op = spec.node.opType;
    const pipe = ctx.pipeline(`unary:${op}`, () => `${WGSL_PRELUDE}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
${WGSL_MAIN}
  let v = x[i]; let a = pf(1u); let b = pf(2u);
  y[i] = ${UNARY[op]};
}`);
    const p = new Params();
    return {
      path: `webgpu-${op.toLowerCase()}`, weightForm: "none", residentBytes: 0,
      run([x], io) {
        const n = x!.dims.length ? sizeOf(x!.dims) : 1;
        const xb = io.input(0, x);
        const y = io.output(0, x!.dims.slice());
        p.u[0] = n; p.f[1] = ab[0]; p.f[2] = ab[1];
        io.dispatch(0, pipe, p, [xb, y.gpu.buffer], n);
        return [y];
      },
    };
  },
};

/** WGSL of each binary op on `a`, `b`. */
const BINARY: Record<string, string> = { Add: "a + b", Sub: "a - b", Mul: "a * b", Div: "a / b" };

/** numpy broadcast of two shapes, or undefined if they do not broadcast. */
export function broadcastDims(a: readonly number[], b: readonly number[]): number[] | undefined {
  const r = Math.max(a.length, b.length), out = new Array<number>(r);
  for (let k = 0; k < r; k++) {
    const da = a[a.length - r + k] ?? 1, db = b[b.length - r + k] ?? 1;
    if (da !== db && da !== 1 && db !== 1) return undefined;
    out[k] = da === 1 ? db : da;
  }
  return out;
}

/** Strides of `dims` read as broadcast into `out` (0 along broadcast axes). */
function broadcastStrides(dims: readonly number[], out: readonly number[]): number[] {
  const r = out.length, s = new Array<number>(r).fill(0);
  let acc = 1;
  for (let k = dims.length - 1; k >= 0; k--) {
    const axis = r - dims.length + k;
    s[axis] = dims[k] === 1 ? 0 : acc;
    acc *= dims[k]!;
  }
  return s;
}

const binary: GpuOpImpl = {
  opTypes: Object.keys(BINARY),
  bind(spec, ctx) {
    const why = notF32(spec) ?? compressedElsewhere(spec);
    if (why) return why;
    const op = spec.node.opType;
    const body = `let a = x0[ia]; let b = x1[ib]; y[i] = ${BINARY[op]};`;
    const bindings = `${WGSL_PRELUDE}
@group(0) @binding(1) var<storage, read> x0: array<f32>;
@group(0) @binding(2) var<storage, read> x1: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;`;
    // Same shapes: index i in both. Otherwise unravel i over the output dims (params 2..7) and
    // sum the broadcast strides of a (8..13) and b (14..19).
    const same = () => ctx.pipeline(`binary:${op}:same`, () => `${bindings}
${WGSL_MAIN}
  let ia = i; let ib = i;
  ${body}
}`);
    const general = () => ctx.pipeline(`binary:${op}:broadcast`, () => `${bindings}
${WGSL_MAIN}
  var rest = i; var ia = 0u; var ib = 0u;
  let rank = pu(1u);
  for (var k = 0u; k < rank; k++) {
    let d = rank - 1u - k;
    let c = rest % pu(2u + d); rest = rest / pu(2u + d);
    ia += c * pu(8u + d); ib += c * pu(14u + d);
  }
  ${body}
}`);
    const p = new Params();
    return {
      path: `webgpu-${op.toLowerCase()}`, weightForm: "none", residentBytes: 0,
      run([a, b], io) {
        const dims = broadcastDims(a!.dims, b!.dims);
        if (!dims) throw new KernelError(`${op}: shapes [${a!.dims}] and [${b!.dims}] do not broadcast`);
        if (dims.length > MAX_RANK) throw new KernelError(`${op}: rank ${dims.length} above ${MAX_RANK}`);
        const n = sizeOf(dims);
        const ab = io.input(0, a), bb = io.input(1, b);
        const y = io.output(0, dims);
        p.u.fill(0);
        p.u[0] = n;
        const sameShape = a!.dims.length === b!.dims.length && a!.dims.every((d, k) => d === b!.dims[k]);
        if (!sameShape) {
          p.u[1] = dims.length;
          const sa = broadcastStrides(a!.dims, dims), sb = broadcastStrides(b!.dims, dims);
          dims.forEach((d, k) => { p.u[2 + k] = d; p.u[8 + k] = sa[k]!; p.u[14 + k] = sb[k]!; });
        }
        io.dispatch(0, sameShape ? same() : general(), p, [ab, bb, y.gpu.buffer], n);
        return [y as Tensor];
      },
    };
  },
};

/** The elementwise implementations. */
export const ELEMENTWISE_GPU: readonly GpuOpImpl[] = [unary, binary];
