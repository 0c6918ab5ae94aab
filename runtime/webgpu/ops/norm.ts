/**
 * BatchNormalization (inference form) and Softmax on the GPU. BatchNormalization folds its four
 * constant vectors at bind into a per-channel scale γ/√(σ²+ε) and shift β − μ·scale (float64,
 * then float32), so each thread does one multiply-add. Softmax: one thread per row (the
 * elements along the axis; before opset 13 everything from the axis on, as one row), max-shifted.
 * @module
 */
import { KernelError } from "../../ops/types.ts";
import type { GpuOpImpl } from "../backend.ts";
import { Params, WGSL_MAIN, WGSL_PRELUDE } from "../context.ts";
import { compressedElsewhere, notF32, sizeOf } from "./common.ts";

const batchNorm: GpuOpImpl = {
  opTypes: ["BatchNormalization"],
  bind(spec, ctx) {
    const why = notF32(spec) ?? compressedElsewhere(spec);
    if (why) return why;
    if (spec.node.outputs.filter((o) => o).length > 1) return "BatchNormalization in training mode (extra outputs)";
    if (spec.attrs.int("training_mode", 0) !== 0) return "BatchNormalization in training mode";
    const vecs = [1, 2, 3, 4].map((k) => spec.constants[k]);
    if (vecs.some((v) => !v || !(v.data instanceof Float32Array))) return "BatchNormalization parameters are not constant float32";
    const [gamma, beta, mean, variance] = vecs.map((v) => v!.data as Float32Array);
    const C = gamma!.length;
    if ([beta, mean, variance].some((v) => v!.length !== C)) return "BatchNormalization parameters differ in length";
    const eps = spec.attrs.float("epsilon", 1e-5);
    const folded = new Float32Array(2 * C);
    for (let c = 0; c < C; c++) {
      const s = gamma![c]! / Math.sqrt(variance![c]! + eps);
      folded[c] = s;
      folded[C + c] = beta![c]! - mean![c]! * s;
    }
    const wbuf = ctx.constantBuffer(folded, `${spec.name}:scale-shift`);
    const pipe = ctx.pipeline("batchnorm", () => `${WGSL_PRELUDE}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
${WGSL_MAIN}
  let C = pu(1u); let c = (i / pu(2u)) % C;
  y[i] = x[i] * w[c] + w[C + c];
}`);
    const p = new Params();
    return {
      path: "webgpu-batchnorm", weightForm: "scale-shift-f32", residentBytes: folded.byteLength,
      run([x], io) {
        if (x!.dims.length < 2 || x!.dims[1] !== C) throw new KernelError(`BatchNormalization: X [${x!.dims}] has not ${C} channels`);
        const n = sizeOf(x!.dims);
        const xb = io.input(0, x);
        const y = io.output(0, x!.dims.slice());
        p.u[0] = n; p.u[1] = C; p.u[2] = sizeOf(x!.dims.slice(2));
        io.dispatch(0, pipe, p, [xb, wbuf, y.gpu.buffer], n);
        return [y];
      },
      dispose: () => ctx.destroyBuffer(wbuf),
    };
  },
};

const softmax: GpuOpImpl = {
  opTypes: ["Softmax"],
  bind(spec, ctx) {
    const why = notF32(spec) ?? compressedElsewhere(spec);
    if (why) return why;
    const legacy = spec.opset < 13;
    const axisAttr = spec.attrs.int("axis", legacy ? 1 : -1);
    const pipe = ctx.pipeline("softmax", () => `${WGSL_PRELUDE}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
${WGSL_MAIN}
  let L = pu(1u); let inner = pu(2u);
  let base = (i / inner) * L * inner + i % inner;
  var mx = x[base];
  for (var k = 1u; k < L; k++) { mx = max(mx, x[base + k * inner]); }
  var sum = 0.0;
  for (var k = 0u; k < L; k++) { sum += exp(x[base + k * inner] - mx); }
  for (var k = 0u; k < L; k++) { y[base + k * inner] = exp(x[base + k * inner] - mx) / sum; }
}`);
    const p = new Params();
    return {
      path: "webgpu-softmax", weightForm: "none", residentBytes: 0,
      run([x], io) {
        const r = x!.dims.length;
        const axis = axisAttr < 0 ? axisAttr + r : axisAttr;
        if (axis < 0 || axis >= Math.max(r, 1)) throw new KernelError(`Softmax: axis ${axisAttr} out of range for rank ${r}`);
        const outer = sizeOf(x!.dims.slice(0, axis));
        const L = legacy ? sizeOf(x!.dims.slice(axis)) : (x!.dims[axis] ?? 1);
        const inner = legacy ? 1 : sizeOf(x!.dims.slice(axis + 1));
        const xb = io.input(0, x);
        const y = io.output(0, x!.dims.slice());
        p.u[0] = L === 0 ? 0 : outer * inner; p.u[1] = L; p.u[2] = Math.max(1, inner);
        io.dispatch(0, pipe, p, [xb, y.gpu.buffer], p.u[0]!);
        return [y];
      },
    };
  },
};

/** Normalization implementations. */
export const NORM_GPU: readonly GpuOpImpl[] = [batchNorm, softmax];
