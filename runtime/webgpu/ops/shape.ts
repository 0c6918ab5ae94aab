/**
 * Shape ops on the GPU. Reshape, Flatten, Squeeze, Unsqueeze and Identity move no data: the
 * output is the input's buffer under new dims (a host input stays a host view). Transpose: one
 * thread per output element walking permuted strides. Concat: one copy dispatch per input into
 * its slice of the output.
 * @module
 */
import type { Tensor } from "../../../format/mod.ts";
import type { NodeSpec } from "../../backend.ts";
import { flattenDims, reshapeDims, squeezeDims, transposePerm, unsqueezeDims } from "../../ops/shape.ts";
import { KernelError } from "../../ops/types.ts";
import type { GpuOpImpl } from "../backend.ts";
import { isGpuTensor, Params, WGSL_MAIN, WGSL_PRELUDE } from "../context.ts";
import { compressedElsewhere, MAX_RANK, notF32, sizeOf, stridesOf } from "./common.ts";

/** Integer values of constant input `slot` (undefined if absent or not constant). */
function constInts(spec: NodeSpec, slot: number): number[] | undefined {
  if (!spec.node.inputs[slot]) return undefined;
  const c = spec.constants[slot];
  if (!c || (c.dtype !== "int64" && c.dtype !== "int32")) return undefined;
  return Array.from(c.data as ArrayLike<number | bigint>, Number);
}

/** How each view op computes its output dims from the input dims (or why it cannot bind). */
function viewDims(spec: NodeSpec): ((dims: readonly number[]) => number[]) | string {
  const op = spec.node.opType;
  switch (op) {
    case "Identity":
      return (d) => d.slice();
    case "Flatten": {
      const axis = spec.attrs.int("axis", 1);
      return (d) => flattenDims(d, axis);
    }
    case "Reshape": {
      const shape = spec.opset < 5 ? spec.attrs.ints("shape") : constInts(spec, 1);
      if (!shape) return "Reshape shape is not a constant";
      const allowZero = spec.attrs.int("allowzero", 0) !== 0;
      return (d) => reshapeDims(d, shape, allowZero);
    }
    case "Squeeze": {
      const axes = spec.opset < 13 ? (spec.attrs.has("axes") ? spec.attrs.ints("axes") : undefined) : constInts(spec, 1);
      if (spec.opset >= 13 && spec.node.inputs[1] && !axes) return "Squeeze axes are not a constant";
      return (d) => squeezeDims(d, axes);
    }
    case "Unsqueeze": {
      const axes = spec.opset < 13 ? spec.attrs.ints("axes") : constInts(spec, 1);
      if (!axes) return "Unsqueeze axes are not a constant";
      return (d) => unsqueezeDims(d, axes);
    }
  }
  return `no view op ${op}`;
}

const view: GpuOpImpl = {
  opTypes: ["Identity", "Flatten", "Reshape", "Squeeze", "Unsqueeze"],
  bind(spec, ctx) {
    const why = notF32(spec, [0]) ?? compressedElsewhere(spec);
    if (why) return why;
    const dimsOf = viewDims(spec);
    if (typeof dimsOf === "string") return dimsOf;
    return {
      path: "webgpu-view", weightForm: "none", residentBytes: 0, alias: true,
      run([x]) {
        const dims = dimsOf(x!.dims);
        if (isGpuTensor(x)) return [ctx.tensor(dims, x.gpu.buffer)];
        return [{ dtype: x!.dtype, dims, data: x!.data } as Tensor];
      },
    };
  },
};

const transpose: GpuOpImpl = {
  opTypes: ["Transpose"],
  bind(spec, ctx) {
    const why = notF32(spec) ?? compressedElsewhere(spec);
    if (why) return why;
    const pipe = ctx.pipeline("transpose", () => `${WGSL_PRELUDE}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
${WGSL_MAIN}
  var rest = i; var src = 0u;
  let rank = pu(1u);
  for (var k = 0u; k < rank; k++) {
    let d = rank - 1u - k;
    src += (rest % pu(2u + d)) * pu(8u + d); rest = rest / pu(2u + d);
  }
  y[i] = x[src];
}`);
    const p = new Params();
    return {
      path: "webgpu-transpose", weightForm: "none", residentBytes: 0,
      run([x], io) {
        const r = x!.dims.length;
        if (r > MAX_RANK) throw new KernelError(`Transpose: rank ${r} above ${MAX_RANK}`);
        const perm = transposePerm(spec.attrs, r);
        if (perm.length !== r || new Set(perm).size !== r || perm.some((a) => a < 0 || a >= r)) throw new KernelError(`Transpose: perm [${perm}] is not a permutation of rank ${r}`);
        const inStrides = stridesOf(x!.dims);
        const dims = perm.map((a) => x!.dims[a]!);
        const n = sizeOf(dims);
        const xb = io.input(0, x);
        const y = io.output(0, dims);
        p.u.fill(0);
        p.u[0] = n; p.u[1] = r;
        perm.forEach((a, d) => { p.u[2 + d] = dims[d]!; p.u[8 + d] = inStrides[a]!; });
        io.dispatch(0, pipe, p, [xb, y.gpu.buffer], n);
        return [y];
      },
    };
  },
};

const concat: GpuOpImpl = {
  opTypes: ["Concat"],
  bind(spec, ctx) {
    const why = notF32(spec) ?? compressedElsewhere(spec);
    if (why) return why;
    const count = spec.node.inputs.length;
    if (count === 0) return "Concat of no inputs";
    const axisAttr = spec.attrs.int("axis");
    const pipe = ctx.pipeline("concat-copy", () => `${WGSL_PRELUDE}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
${WGSL_MAIN}
  let chunk = pu(1u);
  y[(i / chunk) * pu(2u) + pu(3u) + i % chunk] = x[i];
}`);
    const ps = Array.from({ length: count }, () => new Params());
    return {
      path: "webgpu-concat", weightForm: "none", residentBytes: 0, dispatches: count,
      run(xs, io) {
        const first = xs[0]!, r = first.dims.length;
        const axis = axisAttr < 0 ? axisAttr + r : axisAttr;
        if (axis < 0 || axis >= r) throw new KernelError(`Concat: axis ${axisAttr} out of range for rank ${r}`);
        for (const t of xs) {
          if (!t || t.dims.length !== r || t.dims.some((d, k) => k !== axis && d !== first.dims[k])) throw new KernelError(`Concat: inputs [${xs.map((t) => t ? `[${t.dims}]` : "-")}] differ off axis ${axis}`);
        }
        const dims = first.dims.slice();
        dims[axis] = xs.reduce((s, t) => s + t!.dims[axis]!, 0);
        const inner = sizeOf(dims.slice(axis + 1)), outer = sizeOf(dims.slice(0, axis));
        const y = io.output(0, dims);
        let offset = 0;
        xs.forEach((t, k) => {
          const chunk = t!.dims[axis]! * inner;
          const p = ps[k]!;
          p.u[0] = outer * chunk; p.u[1] = Math.max(1, chunk); p.u[2] = dims[axis]! * inner; p.u[3] = offset;
          if (chunk > 0) io.dispatch(k, pipe, p, [io.input(k, t), y.gpu.buffer], outer * chunk);
          offset += chunk;
        });
        return [y];
      },
    };
  },
};

/** Shape implementations. */
export const SHAPE_GPU: readonly GpuOpImpl[] = [view, transpose, concat];
