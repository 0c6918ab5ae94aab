/**
 * Conv on the GPU (1-D and 2-D: a 1-D conv runs as 2-D with height 1), any group count
 * (depthwise included), strides, pads (explicit or auto_pad), dilations. One thread per output
 * element (n, m, oy, ox), in that order so neighbouring threads share a filter and read
 * neighbouring pixels. Weights:
 *   dense      W[m, c, ky, kx] read directly (f32), every tap bounds-checked;
 *   compressed the row of output channel m walked nonzero by nonzero (weights.ts): each column
 *              is the (c, ky, kx) of the tap, each code is decoded in the shader.
 * Epilogue parameters from the start: bias (in the weight buffer), clamp lo/hi.
 * @module
 */
import { convGeometry } from "../../ops/conv.ts";
import { KernelError } from "../../ops/types.ts";
import type { GpuOpImpl } from "../backend.ts";
import { F32_MAX, Params, WGSL_MAIN, WGSL_PRELUDE } from "../context.ts";
import { layoutParams, packCompressed, packDense, weightWgsl } from "../weights.ts";
import { compressedElsewhere, notF32 } from "./common.ts";

/** Parameter words: geometry 1..20, weight layout from 24 (10 words). */
const W_AT = 24;

function convShader(kind: "dense" | "sparse-uniform" | "sparse-table"): string {
  const accumulate = kind === "dense"
    ? /* wgsl */ `
  for (var c = 0u; c < ICg; c++) {
    let xc = (n * C + g * ICg + c) * H;
    let wc = (m * ICg + c) * KH * KW;
    for (var ky = 0u; ky < KH; ky++) {
      let iy = iy0 + i32(ky * dh);
      if (iy < 0 || iy >= i32(H)) { continue; }
      let xr = (xc + u32(iy)) * W;
      for (var kx = 0u; kx < KW; kx++) {
        let ix = ix0 + i32(kx * dw);
        if (ix < 0 || ix >= i32(W)) { continue; }
        acc += x[xr + u32(ix)] * wDense(wc + ky * KW + kx);
      }
    }
  }`
    : /* wgsl */ `
  let taps = KH * KW;
  let end = wRowEnd(m);
  for (var j = wRowBegin(m); j < end; j++) {
    let col = wCol(j);
    let c = col / taps; let r = col % taps;
    let iy = iy0 + i32((r / KW) * dh);
    let ix = ix0 + i32((r % KW) * dw);
    if (iy < 0 || iy >= i32(H) || ix < 0 || ix >= i32(W)) { continue; }
    acc += x[((n * C + g * ICg + c) * H + u32(iy)) * W + u32(ix)] * wVal(j);
  }`;
  return `${WGSL_PRELUDE}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
${weightWgsl(W_AT, kind)}
${WGSL_MAIN}
  let C = pu(1u); let H = pu(2u); let W = pu(3u); let M = pu(4u); let OH = pu(5u); let OW = pu(6u);
  let KH = pu(7u); let KW = pu(8u); let sh = pu(9u); let sw = pu(10u); let dh = pu(13u); let dw = pu(14u);
  let ICg = pu(15u); let OCg = pu(16u);
  let ox = i % OW; var t = i / OW; let oy = t % OH; t = t / OH; let m = t % M; let n = t / M;
  let g = m / OCg;
  let iy0 = i32(oy * sh) - pi(11u);
  let ix0 = i32(ox * sw) - pi(12u);
  var acc = 0.0;
  ${accumulate}
  if (pu(17u) == 1u) { acc += wExtra(pu(18u), m); }
  y[i] = clamp(acc, pf(19u), pf(20u));
}`;
}

const conv: GpuOpImpl = {
  opTypes: ["Conv"],
  bind(spec, ctx) {
    const why = notF32(spec, [0]) ?? compressedElsewhere(spec, [1]);
    if (why) return why;
    const xs = spec.inputShapes[0];
    const wc = spec.compressed[1], wd = spec.constants[1];
    if (!wc && !wd) return "Conv weight is not a constant";
    const wDims = wc ? wc.dims : wd!.dims;
    if (wDims.length !== 3 && wDims.length !== 4) return `Conv of rank ${wDims.length} (1-D and 2-D only)`;
    if (xs && xs.length !== wDims.length) return "Conv input and weight ranks differ";
    if (!wc && !(wd!.data instanceof Float32Array)) return "Conv weight is not float32";
    if (spec.node.inputs[2] && !spec.constants[2]) return "Conv bias is not a constant";
    const bias = spec.node.inputs[2] ? spec.constants[2]!.data as Float32Array : undefined;
    if (bias && !(bias instanceof Float32Array)) return "Conv bias is not float32";
    // Validate the attributes once against the weight (shapes with a symbolic batch are checked per run).
    if (xs && xs.slice(1).every((d) => typeof d === "number")) convGeometry([1, ...xs.slice(1) as number[]], wDims, spec.attrs);
    const M = wDims[0]!, rowLength = wDims.slice(1).reduce((a, b) => a * b, 1);
    const extra = bias ? [bias] : [];
    const packed = wc
      ? packCompressed(wc, M, rowLength, (f) => Math.floor(f / rowLength), (f) => f % rowLength, extra)
      : packDense(wd!.data as Float32Array, extra);
    const wbuf = ctx.constantBuffer(packed.words, `${spec.name}:w`);
    const pipe = ctx.pipeline(`conv:${packed.layout.kind}`, () => convShader(packed.layout.kind));
    const p = new Params();
    const twoD = wDims.length === 4;
    const w4 = twoD ? wDims : [wDims[0]!, wDims[1]!, 1, wDims[2]!];
    const attrs = spec.attrs;
    return {
      path: wc ? "webgpu-conv-sparse-q" : "webgpu-conv-direct",
      weightForm: packed.form,
      residentBytes: packed.words.byteLength,
      run([x], io) {
        if (x!.dims.length !== wDims.length) throw new KernelError(`Conv: X [${x!.dims}] and W [${wDims}] ranks differ`);
        const geo = convGeometry(x!.dims, wDims, attrs);
        const [H, W] = twoD ? geo.inSpatial : [1, geo.inSpatial[0]!];
        const [OH, OW] = twoD ? geo.outSpatial : [1, geo.outSpatial[0]!];
        const [sh, sw] = twoD ? geo.strides : [1, geo.strides[0]!];
        const [dh, dw] = twoD ? geo.dilations : [1, geo.dilations[0]!];
        const [ph, pw] = twoD ? [geo.pads[0]!, geo.pads[1]!] : [0, geo.pads[0]!];
        const dims = [geo.batch, M, ...geo.outSpatial];
        const n = geo.batch * M * OH! * OW!;
        const xb = io.input(0, x);
        const y = io.output(0, dims);
        p.u.fill(0);
        p.u[0] = n; p.u[1] = geo.inChannels; p.u[2] = H!; p.u[3] = W!; p.u[4] = M; p.u[5] = OH!; p.u[6] = OW!;
        p.u[7] = w4[2]!; p.u[8] = w4[3]!; p.u[9] = sh!; p.u[10] = sw!; p.s[11] = ph; p.s[12] = pw; p.u[13] = dh!; p.u[14] = dw!;
        p.u[15] = geo.inChannels / geo.group; p.u[16] = M / geo.group;
        p.u[17] = bias ? 1 : 0; p.u[18] = packed.layout.extra[0] ?? 0;
        p.f[19] = -F32_MAX; p.f[20] = F32_MAX;
        layoutParams(packed.layout, p.u, p.f, p.s, W_AT);
        io.dispatch(0, pipe, p, [xb, wbuf, y.gpu.buffer], n);
        return [y];
      },
      dispose: () => ctx.destroyBuffer(wbuf),
    };
  },
};

/** The convolution implementations. */
export const CONV_GPU: readonly GpuOpImpl[] = [conv];
