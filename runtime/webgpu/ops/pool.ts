/**
 * MaxPool, AveragePool (1-D and 2-D) and the global pools on the GPU, one thread per output
 * element. Window geometry is the op table's (poolGeometry: pads, auto_pad, ceil_mode,
 * dilations); as there, MaxPool takes the max over in-bounds taps (0 for an all-padding window)
 * and AveragePool divides by the in-bounds taps, or with count_include_pad by the taps inside
 * input + pads.
 * @module
 */
import { poolGeometry } from "../../ops/pool.ts";
import { KernelError } from "../../ops/types.ts";
import type { GpuOpImpl } from "../backend.ts";
import { Params, WGSL_MAIN, WGSL_PRELUDE } from "../context.ts";
import { compressedElsewhere, notF32, sizeOf } from "./common.ts";

/** Opset from which an attribute with a non-default value is defined (older opsets: left to the reference, which rejects it). */
const SINCE: Record<string, Record<string, number>> = {
  MaxPool: { ceil_mode: 10, dilations: 10, storage_order: 8 },
  AveragePool: { ceil_mode: 10, dilations: 19, count_include_pad: 7 },
};

function windowShader(max: boolean): string {
  return `${WGSL_PRELUDE}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
${WGSL_MAIN}
  let H = pu(1u); let W = pu(2u); let OH = pu(3u); let OW = pu(4u); let KH = pu(5u); let KW = pu(6u);
  let sh = pu(7u); let sw = pu(8u); let ph = pi(9u); let pw = pi(10u); let dh = pu(11u); let dw = pu(12u);
  let peh = pi(13u); let pew = pi(14u); let includePad = pu(15u) == 1u;
  let ox = i % OW; let oy = (i / OW) % OH; let plane = i / (OW * OH);
  let iy0 = i32(oy * sh) - ph; let ix0 = i32(ox * sw) - pw;
  var acc = 0.0; var taps = 0u; var padded = 0u;
  for (var ky = 0u; ky < KH; ky++) {
    let iy = iy0 + i32(ky * dh);
    for (var kx = 0u; kx < KW; kx++) {
      let ix = ix0 + i32(kx * dw);
      if (iy >= -ph && iy < i32(H) + peh && ix >= -pw && ix < i32(W) + pew) { padded++; }
      if (iy < 0 || iy >= i32(H) || ix < 0 || ix >= i32(W)) { continue; }
      let v = x[(plane * H + u32(iy)) * W + u32(ix)];
      ${max ? "if (taps == 0u || v > acc) { acc = v; }" : "acc += v;"}
      taps++;
    }
  }
  ${max ? "y[i] = acc;" : "let cnt = select(taps, padded, includePad); y[i] = select(acc / f32(cnt), 0.0, cnt == 0u);"}
}`;
}

const windowPool: GpuOpImpl = {
  opTypes: ["MaxPool", "AveragePool"],
  bind(spec, ctx) {
    const op = spec.node.opType, max = op === "MaxPool";
    const why = notF32(spec) ?? compressedElsewhere(spec);
    if (why) return why;
    if (spec.node.outputs.filter((o) => o).length > 1) return `${op} with an Indices output`;
    for (const [attr, since] of Object.entries(SINCE[op]!)) {
      if (spec.opset < since && spec.attrs.has(attr)) return `${op} attribute ${attr} before opset ${since}`;
    }
    const rank = spec.inputShapes[0]?.length;
    if (rank !== undefined && rank !== 3 && rank !== 4) return `${op} of rank ${rank} (1-D and 2-D only)`;
    const includePad = !max && spec.attrs.int("count_include_pad", 0) !== 0;
    const pipe = ctx.pipeline(`pool:${max ? "max" : "avg"}`, () => windowShader(max));
    const p = new Params();
    return {
      path: `webgpu-${max ? "maxpool" : "avgpool"}`, weightForm: "none", residentBytes: 0,
      run([x], io) {
        const r = x!.dims.length;
        if (r !== 3 && r !== 4) throw new KernelError(`${op}: X [${x!.dims}] must be 3-D or 4-D here`);
        const g = poolGeometry(x!.dims, spec.attrs);
        const two = r === 4;
        const pick = (v: number[], d1: number) => (two ? v : [d1, v[0]!]);
        const [H, W] = pick(g.inSpatial, 1), [OH, OW] = pick(g.outSpatial, 1), [KH, KW] = pick(g.kernel, 1);
        const [sh, sw] = pick(g.strides, 1), [dh, dw] = pick(g.dilations, 1);
        const k = g.inSpatial.length;
        const [ph, pw] = two ? [g.pads[0]!, g.pads[1]!] : [0, g.pads[0]!];
        const [peh, pew] = two ? [g.pads[2]!, g.pads[3]!] : [0, g.pads[k]!];
        const dims = [g.batch, g.channels, ...g.outSpatial];
        const n = sizeOf(dims);
        const xb = io.input(0, x);
        const y = io.output(0, dims);
        p.u[0] = n; p.u[1] = H!; p.u[2] = W!; p.u[3] = OH!; p.u[4] = OW!; p.u[5] = KH!; p.u[6] = KW!;
        p.u[7] = sh!; p.u[8] = sw!; p.s[9] = ph; p.s[10] = pw; p.u[11] = dh!; p.u[12] = dw!;
        p.s[13] = peh; p.s[14] = pew; p.u[15] = includePad ? 1 : 0;
        io.dispatch(0, pipe, p, [xb, y.gpu.buffer], n);
        return [y];
      },
    };
  },
};

const globalPool: GpuOpImpl = {
  opTypes: ["GlobalAveragePool", "GlobalMaxPool"],
  bind(spec, ctx) {
    const max = spec.node.opType === "GlobalMaxPool";
    const why = notF32(spec) ?? compressedElsewhere(spec);
    if (why) return why;
    const pipe = ctx.pipeline(`globalpool:${max ? "max" : "avg"}`, () => `${WGSL_PRELUDE}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
${WGSL_MAIN}
  let S = pu(1u); let base = i * S;
  var acc = ${max ? "x[base]" : "0.0"};
  for (var k = ${max ? "1u" : "0u"}; k < S; k++) { ${max ? "acc = max(acc, x[base + k]);" : "acc += x[base + k];"} }
  y[i] = ${max ? "acc" : "acc / f32(S)"};
}`);
    const p = new Params();
    return {
      path: `webgpu-global${max ? "max" : "avg"}pool`, weightForm: "none", residentBytes: 0,
      run([x], io) {
        if (x!.dims.length < 3) throw new KernelError(`${spec.node.opType}: X [${x!.dims}] must be [N, C, spatial...]`);
        const S = sizeOf(x!.dims.slice(2));
        if (S === 0) throw new KernelError(`${spec.node.opType}: empty spatial dims`);
        const dims = [x!.dims[0]!, x!.dims[1]!, ...x!.dims.slice(2).map(() => 1)];
        const xb = io.input(0, x);
        const y = io.output(0, dims);
        p.u[0] = dims[0]! * dims[1]!; p.u[1] = S;
        io.dispatch(0, pipe, p, [xb, y.gpu.buffer], p.u[0]!);
        return [y];
      },
    };
  },
};

/** Pooling implementations. */
export const POOL_GPU: readonly GpuOpImpl[] = [windowPool, globalPool];
