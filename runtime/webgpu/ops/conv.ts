/**
 * Conv on the GPU (1-D and 2-D: a 1-D conv runs as 2-D with height 1), any group count
 * (depthwise included), strides, pads (explicit or auto_pad), dilations. A 2-D conv with ≥ 4
 * output channels per group (or one group) goes to the grid kernel (conv-grid.ts), which also
 * takes fused epilogues; the kernels here are for the rest (depthwise, 1-D, weights whose block
 * exceeds 64 KiB), unfused. Each thread computes 4
 * neighbouring output columns of one row (a tap's weight is loaded once for the four). Weights:
 *   dense, ≥ 4 channels per group  TILED_SHADER: 4 channels × 4 columns per thread from a filter
 *              repacked at bind so one vec4 load is a tap of 4 channels (1×1 convs included:
 *              with KH = KW = 1 the loop is a register-tiled matmul);
 *   dense, fewer (depthwise)  W[m, c, ky, kx] read directly;
 *   compressed  the row of output channel m walked nonzero by nonzero (weights.ts), each code
 *              decoded once in the shader for the 4 columns.
 * On lavapipe (2 shared cores) the 4×4 tiling made ResNet-20 batch 2 ~4× faster than one output
 * per thread (4.5 s → 0.9–1.3 s, scratch measurement under load; loads, not arithmetic, bound it).
 * Epilogue parameters from the start: bias (in the weight buffer), clamp lo/hi.
 * @module
 */
import { convGeometry } from "../../ops/conv.ts";
import { KernelError } from "../../ops/types.ts";
import type { GpuOpImpl } from "../backend.ts";
import { F32_MAX, Params, WGSL_MAIN, WGSL_PRELUDE } from "../context.ts";
import { layoutParams, packCompressed, packDense, weightWgsl } from "../weights.ts";
import { compressedElsewhere, notF32 } from "./common.ts";
import { bindGridConv, packGrid } from "./conv-grid.ts";

/** Parameter words: geometry 1..20, tiling 21..23, weight layout from 24 (10 words). */
const W_AT = 24;
/** Output pixels per thread along x (a nonzero decoded or a filter tap loaded once serves them all). */
const PX = 4;

/** Geometry prologue: thread `i` → image n, output row oy, first output column ox0 = 4·oxb. */
const GEOMETRY = /* wgsl */ `
  let C = pu(1u); let H = pu(2u); let W = pu(3u); let M = pu(4u); let OH = pu(5u); let OW = pu(6u);
  let KH = pu(7u); let KW = pu(8u); let sh = pu(9u); let sw = pu(10u); let dh = pu(13u); let dw = pu(14u);
  let ICg = pu(15u); let OCg = pu(16u); let OWB = pu(23u);
  let oxb = i % OWB; var t = i / OWB; let oy = t % OH; t = t / OH;
  let iy0 = i32(oy * sh) - pi(11u);
  let ix0 = i32(oxb * ${PX}u * sw) - pi(12u);
  let lo = pf(19u); let hi = pf(20u);`;

/** x at (plane row xr, column ix), 0 outside. */
const X_AT = /* wgsl */ `
fn xAt(xr: u32, ix: i32, W: u32) -> f32 {
  if (ix < 0 || ix >= i32(W)) { return 0.0; }
  return x[xr + u32(ix)];
}`;

/**
 * One thread per (n, m, oy, 4 columns): the generic form (any group size; depthwise). Dense taps
 * are read from W[m, c, ky, kx]; compressed ones by walking row m's nonzeros, each decoded once
 * for the four columns.
 */
function convShader(kind: "dense" | "sparse-uniform" | "sparse-table"): string {
  const tap = (wv: string) => /* wgsl */ `
      let xr = (xc + u32(iy)) * W;
      let v = ${wv};
      acc += vec4<f32>(xAt(xr, ix, W), xAt(xr, ix + i32(sw), W), xAt(xr, ix + 2 * i32(sw), W), xAt(xr, ix + 3 * i32(sw), W)) * v;`;
  const accumulate = kind === "dense"
    ? /* wgsl */ `
  for (var c = 0u; c < ICg; c++) {
    let xc = (n * C + g * ICg + c) * H;
    let wc = (m * ICg + c) * KH * KW;
    for (var ky = 0u; ky < KH; ky++) {
      let iy = iy0 + i32(ky * dh);
      if (iy < 0 || iy >= i32(H)) { continue; }
      for (var kx = 0u; kx < KW; kx++) {
        let ix = ix0 + i32(kx * dw);${tap("wDense(wc + ky * KW + kx)")}
      }
    }
  }`
    : /* wgsl */ `
  let taps = KH * KW;
  let L = wLayout();
  let end = wRowEnd(m);
  for (var j = wRowBegin(m); j < end; j++) {
    let col = wCol(L, j);
    let c = col / taps; let r = col % taps;
    let iy = iy0 + i32((r / KW) * dh);
    if (iy < 0 || iy >= i32(H)) { continue; }
    let ix = ix0 + i32((r % KW) * dw);
    let xc = (n * C + g * ICg + c) * H;${tap("wVal(L, j)")}
  }`;
  return `${WGSL_PRELUDE}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
${weightWgsl(W_AT, kind)}
${X_AT}
${WGSL_MAIN}
${GEOMETRY}
  let m = t % M; let n = t / M;
  let g = m / OCg;
  var acc = vec4<f32>(0.0);
  ${accumulate}
  if (pu(17u) == 1u) { acc += vec4<f32>(wExtra(pu(18u), m)); }
  let out = ((n * M + m) * OH + oy) * OW + oxb * ${PX}u;
  for (var p = 0u; p < ${PX}u; p++) {
    if (oxb * ${PX}u + p < OW) { y[out + p] = clamp(acc[p], lo, hi); }
  }
}`;
}

/**
 * Dense conv with at least 4 output channels per group: one thread per (n, 4 channels, oy, 4
 * columns), 16 accumulators; the filter is repacked at bind as [g, m/4, c, ky, kx, 4] so one
 * vec4 load gives a tap of 4 channels, each x load serves 4 channels (and 1×1 convs need no
 * special case: the same loop with KH = KW = 1 is a register-tiled matmul).
 */
const TILED_SHADER = `${WGSL_PRELUDE}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
${X_AT}
${WGSL_MAIN}
${GEOMETRY}
  let OCB = pu(22u); let G = C / ICg;
  let go = t % (G * OCB); let n = t / (G * OCB);
  let g = go / OCB; let ob = go % OCB;
  var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
  for (var c = 0u; c < ICg; c++) {
    let xc = (n * C + g * ICg + c) * H;
    let wc = (go * ICg + c) * KH * KW;
    for (var ky = 0u; ky < KH; ky++) {
      let iy = iy0 + i32(ky * dh);
      if (iy < 0 || iy >= i32(H)) { continue; }
      let xr = (xc + u32(iy)) * W;
      for (var kx = 0u; kx < KW; kx++) {
        let ix = ix0 + i32(kx * dw);
        let wv = w[wc + ky * KW + kx];
        a0 += xAt(xr, ix, W) * wv;
        a1 += xAt(xr, ix + i32(sw), W) * wv;
        a2 += xAt(xr, ix + 2 * i32(sw), W) * wv;
        a3 += xAt(xr, ix + 3 * i32(sw), W) * wv;
      }
    }
  }
  if (pu(17u) == 1u) {
    let b = w[pu(18u) + go];
    a0 += b; a1 += b; a2 += b; a3 += b;
  }
  let ox0 = oxb * ${PX}u;
  for (var j = 0u; j < 4u; j++) {
    let mj = ob * 4u + j;
    if (mj >= OCg) { break; }
    let out = ((n * M + g * OCg + mj) * OH + oy) * OW + ox0;
    if (ox0 < OW) { y[out] = clamp(a0[j], lo, hi); }
    if (ox0 + 1u < OW) { y[out + 1u] = clamp(a1[j], lo, hi); }
    if (ox0 + 2u < OW) { y[out + 2u] = clamp(a2[j], lo, hi); }
    if (ox0 + 3u < OW) { y[out + 3u] = clamp(a3[j], lo, hi); }
  }
}`;

/** Repack W [M, ICg, KH, KW] (and bias) for TILED_SHADER: [g, ⌈OCg/4⌉, ICg·KH·KW, 4] then bias [g, ⌈OCg/4⌉, 4]; zero-padded. */
function packTiled(w: Float32Array, dims: readonly number[], group: number, bias?: Float32Array): { words: Uint32Array; biasAt: number } {
  const [M, ICg] = [dims[0]!, dims[1]!], taps = dims.slice(2).reduce((a, b) => a * b, 1);
  const OCg = M / group, OCB = Math.ceil(OCg / 4), row = ICg * taps;
  const biasAt = group * OCB * row;
  const f = new Float32Array((biasAt + group * OCB) * 4);
  for (let m = 0; m < M; m++) {
    const g = Math.floor(m / OCg), mj = m % OCg, block = g * OCB + Math.floor(mj / 4), lane = mj % 4;
    for (let k = 0; k < row; k++) f[(block * row + k) * 4 + lane] = w[m * row + k]!;
    if (bias) f[(biasAt + block) * 4 + lane] = bias[m]!;
  }
  return { words: new Uint32Array(f.buffer), biasAt };
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
    const group = spec.attrs.int("group", 1);
    // 2-D convs with ≥ 4 output channels per group: the register-tiled grid kernel (conv-grid.ts).
    const grid = wDims.length === 4 ? packGrid(wDims, group, wc ? { compressed: wc } : { dense: wd!.data as Float32Array }) : "not 2-D";
    const ep = spec.epilogue;
    if (typeof grid !== "string") {
      return bindGridConv({ name: spec.name, wDims, attrs: spec.attrs, group, bias, residual: ep?.residual, lo: ep?.lo ?? -Infinity, hi: ep?.hi ?? Infinity }, grid, ctx);
    }
    if (ep) return `fused epilogue needs the grid kernel (${grid})`;
    const extra = bias ? [bias] : [];
    const tiled = !wc && M / group >= 4 ? packTiled(wd!.data as Float32Array, wDims, group, bias) : undefined;
    const packed = wc
      ? packCompressed(wc, M, rowLength, (f) => Math.floor(f / rowLength), (f) => f % rowLength, extra)
      : tiled
      ? { words: tiled.words, layout: { ...packDense(new Float32Array(0)).layout, extra: [tiled.biasAt] }, form: "dense-f32-oc4" }
      : packDense(wd!.data as Float32Array, extra);
    const wbuf = ctx.constantBuffer(packed.words, `${spec.name}:w`);
    const pipe = tiled ? ctx.pipeline("conv:dense-tiled-4x4", () => TILED_SHADER) : ctx.pipeline(`conv:${packed.layout.kind}`, () => convShader(packed.layout.kind));
    const p = new Params();
    const twoD = wDims.length === 4;
    const w4 = twoD ? wDims : [wDims[0]!, wDims[1]!, 1, wDims[2]!];
    const attrs = spec.attrs;
    return {
      path: wc ? "webgpu-conv-sparse-q" : tiled ? "webgpu-conv-tiled" : "webgpu-conv-direct",
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
        const OWB = Math.ceil(OW! / PX), OCB = Math.ceil(M / geo.group / 4);
        const n = geo.batch * (tiled ? geo.group * OCB : M) * OH! * OWB;
        const xb = io.input(0, x);
        const y = io.output(0, dims);
        p.u.fill(0);
        p.u[0] = n; p.u[1] = geo.inChannels; p.u[2] = H!; p.u[3] = W!; p.u[4] = M; p.u[5] = OH!; p.u[6] = OW!;
        p.u[7] = w4[2]!; p.u[8] = w4[3]!; p.u[9] = sh!; p.u[10] = sw!; p.s[11] = ph; p.s[12] = pw; p.u[13] = dh!; p.u[14] = dw!;
        p.u[15] = geo.inChannels / geo.group; p.u[16] = M / geo.group;
        p.u[17] = bias ? 1 : 0; p.u[18] = packed.layout.extra[0] ?? 0;
        p.f[19] = -F32_MAX; p.f[20] = F32_MAX;
        p.u[22] = OCB; p.u[23] = OWB;
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
