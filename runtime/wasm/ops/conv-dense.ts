/**
 * Dense float32 2-D Conv on wasm, three implementations the backend picks between by estimated
 * cost: every group through one GEMM kernel (as/gemm.ts convGemmF32: 1×1 stride-1 unpadded
 * layers copy rows of X, the rest pack im2col rows on the fly into the micro-kernel's pixel
 * panels), 3×3 stride-1 single-group layers through Winograd F(2×2, 3×3) (as/winograd.ts), and
 * depthwise layers (one input channel per group) through as/depthwise.ts. Weights are packed
 * once at bind into wasm memory (a compressed weight is decoded block by block straight into the
 * packed form). `run` takes the fused epilogue (residual, clamp) as its 4th argument; the
 * session's binder does not pass one yet, so Conv → Add → Relu still runs as three steps.
 * 1-D and 3-D Conv, non-constant weights and other dtypes stay with the reference.
 * @module
 */
import type { Tensor } from "../../../format/mod.ts";
import type { NodeSpec, RunContext } from "../../backend.ts";
import { type ConvGeometry, convGeometry } from "../../ops/conv.ts";
import type { AddressOf, WasmOpImpl } from "../backend.ts";
import type { WasmKernels } from "../module.ts";
import { allFloat32, CALL_NS, type DenseBound, type Epilogue, epilogueArgs, constantDims, DENSE_GFLOPS, forEachBlock, isF32Constant, scratchBlock, staticDim, weightToWasm } from "./dense-common.ts";

/** The epilogue of a node the binder fused (runtime/fusion.ts: NodeSpec.epilogue), or none. */
function fusedEpilogue(spec: NodeSpec, inputs: readonly (Tensor | undefined)[]): Epilogue | undefined {
  const f = spec.epilogue;
  return f ? { residual: f.residual === undefined ? undefined : inputs[f.residual], lo: f.lo, hi: f.hi } : undefined;
}

/** Words of the conv geometry block (as/gemm.ts reads them by these indices). */
const CONV_GEO = [
  "cg", "inH", "inW", "kh", "kw", "sh", "sw", "dh", "dw", "pt", "pl", "outH", "outW",
  "mg", "mgPad", "groups", "batch", "nc", "mc", "kc", "nPc", "nMc", "slices", "slotBytes", "pointwise", "next",
] as const;
/** Where the tiled kernels' geometry block keeps its unit count, slot size and unit counter. */
interface GeoWords { length: number; slices: number; slot: number; next: number }
const geoWords = (names: readonly string[]): GeoWords =>
  ({ length: names.length, slices: names.indexOf("slices"), slot: names.indexOf("slotBytes"), next: names.indexOf("next") });
const CONV_WORDS = geoWords(CONV_GEO);

/**
 * The run shared by the tiled conv kernels (convGemmF32, winogradF32) once their geometry block is
 * filled: reset its unit counter, allocate y [dims] and one scratch slot per unit, and run the
 * kernel over its units (split across the team when there are several). `weightAndX`: the
 * kernel's weight pointer and input address, its arguments after the geometry.
 */
function runTiled(
  env: Parameters<WasmOpImpl["bind"]>[1], kernel: "convGemmF32" | "winogradF32", geoPtr: number, words: GeoWords, dims: number[],
  weightAndX: [number, number], bias: number, epilogue: Epilogue | undefined, codes: number, rc: RunContext, addr: AddressOf,
): Tensor[] {
  const k = env.kernels;
  const view = k.i32(geoPtr, words.length);
  const slices = view[words.slices]!, slotBytes = view[words.slot]!;
  view[words.next] = 0; // the kernel's unit counter
  const y = rc.alloc(dims.reduce((a, d) => a * d, 1));
  if (y.length === 0) return [{ dtype: "float32", dims, data: y } as Tensor];
  const scratch = scratchBlock(k, slices * slotBytes);
  const args = [geoPtr, ...weightAndX, y.byteOffset, bias, ...epilogueArgs(epilogue, y.length, addr), scratch, codes];
  if (slices > 1) env.team.run(kernel, slices, 1, args);
  else (k.exports[kernel] as (...a: number[]) => void)(0, 1, ...args);
  return [{ dtype: "float32", dims, data: y } as Tensor];
}
/** Words of the depthwise geometry block (as/depthwise.ts). */
const DW_GEO = ["ch", "mult", "inH", "inW", "kh", "kw", "sh", "sw", "dh", "dw", "pt", "pl", "outH", "outW"] as const;

/** Pixels per work unit (16 panels of 8) and K rows per packed block (one 8-wide panel = 8 KiB, L1). */
const NC = 128;
const KC = 256;
/** Work units per thread the split aims for, so uneven units still balance. */
const UNITS_PER_THREAD = 4;

/** The 2-D geometry for static X dims, or undefined if the node's shapes are not known well enough. */
function plannedGeometry(spec: NodeSpec): ConvGeometry | undefined {
  const x = spec.inputShapes[0], w = constantDims(spec, 1);
  if (!x || x.length !== 4 || !w || w.length !== 4) return undefined;
  const dims = x.map((d, i) => staticDim(d) ?? (i === 0 ? 1 : undefined));
  if (dims.some((d) => d === undefined)) return undefined;
  try {
    return convGeometry(dims as number[], w, spec.attrs);
  } catch {
    return undefined;
  }
}

/** Checks shared by both Conv implementations: float32, 2-D, constant 4-D W and B. */
function convSupported(spec: NodeSpec): boolean {
  const x = spec.inputShapes[0], w = constantDims(spec, 1);
  if (!allFloat32(spec) || !x || x.length !== 4 || !w || w.length !== 4 || !isF32Constant(spec, 1)) return false;
  if (spec.node.inputs[2] && !isF32Constant(spec, 2)) return false;
  return true;
}

/** Geometry of a run, cached per input dims (a dynamic batch changes it). */
class GeoCache {
  #key = "";
  #ptr = 0;
  #g: ConvGeometry | undefined;
  constructor(private readonly k: WasmKernels, private readonly words: number) {}
  get(x: Tensor, wDims: readonly number[], spec: NodeSpec, fill: (g: ConvGeometry, view: Int32Array) => void): [ConvGeometry, number] {
    const key = x.dims.join(",");
    if (key !== this.#key || !this.#g) {
      const g = convGeometry(x.dims, wDims, spec.attrs);
      if (!this.#ptr) this.#ptr = this.k.alloc(this.words * 4);
      fill(g, this.k.i32(this.#ptr, this.words));
      this.#key = key;
      this.#g = g;
    }
    return [this.#g, this.#ptr];
  }
  dispose(): void { if (this.#ptr) this.k.free(this.#ptr); this.#ptr = 0; }
}

/** Bias of constant input 2 into wasm (0 if absent). */
function biasToWasm(k: WasmKernels, spec: NodeSpec, outChannels: number): number {
  if (!spec.node.inputs[2]) return 0;
  return weightToWasm(k, spec, 2, outChannels)[0];
}

/** Path and estimated ns (one image) of a Conv through the GEMM kernel, or undefined for a depthwise node. */
export function convGemmClaim(spec: NodeSpec): { path: string; cost: number } | undefined {
  const w = constantDims(spec, 1)!;
  const g = plannedGeometry(spec);
  if (g && g.inChannels / g.group === 1) return undefined; // depthwise: the dedicated kernel
  const [m, cg, kh, kw] = w as [number, number, number, number];
  const p = g ? g.outSpatial[0]! * g.outSpatial[1]! : 56 * 56;
  const flops = 2 * m * cg * kh * kw * p;
  const rate = m / (g?.group ?? 1) >= 32 ? DENSE_GFLOPS.convGemm : DENSE_GFLOPS.convGemmThin;
  const pointwise = kh === 1 && kw === 1 && g !== undefined && g.strides.every((s) => s === 1) && g.pads.every((q) => q === 0);
  return { path: pointwise ? "wasm-gemm-1x1" : "wasm-im2col-gemm", cost: CALL_NS + flops / rate + m * p * DENSE_GFLOPS.convGemmOutputNs };
}

const convGemm: WasmOpImpl = {
  opTypes: ["Conv"],
  fuses: true,
  claim(spec) {
    if (!convSupported(spec)) return undefined;
    const c = convGemmClaim(spec);
    return c && { path: c.path, weightForm: "dense-f32-packed-4x", cost: c.cost };
  },
  bind(spec, env): DenseBound {
    const k = env.kernels;
    const wDims = constantDims(spec, 1)!;
    const [m, cg, kh, kw] = wDims as [number, number, number, number];
    const group = spec.attrs.int("group", 1);
    const mg = m / group, kk = cg * kh * kw, mgPad = Math.ceil(mg / 4) * 4;
    // A per group: mgPad/4 panels of K × 4 (k-major); zero rows pad the last panel.
    const aFloats = group * mgPad * kk;
    const aPack = k.alloc(aFloats * 4);
    const a = k.f32(aPack, aFloats);
    a.fill(0);
    forEachBlock(spec, 1, kk, (row, v) => {
      const grp = Math.floor(row / mg), r = row - grp * mg;
      const base = grp * mgPad * kk + (r >> 2) * 4 * kk + (r & 3);
      for (let col = 0; col < kk; col++) a[base + col * 4] = v[col]!;
    });
    return convGemmRunner(spec, env, { aPack, codes: 0, bytes: aFloats * 4, free: () => k.free(aPack) });
  },
};

/** Bytes of decoded A a code-form GEMM unit holds (its row chunk follows K). */
const GEMM_CODED_A_BYTES = 1 << 18;

/**
 * The conv GEMM runner over a weight held packed (`codes` = 0: `aPack` = the 4-row panels) or in
 * code form (`codes`: u8 level ids [M][K], `aPack`: their f32 values), the latter decoded per row
 * chunk into the unit's slot after the pixel panels (as/gemm.ts decodeA).
 */
export function convGemmRunner(spec: NodeSpec, env: Parameters<WasmOpImpl["bind"]>[1], wt: { aPack: number; codes: number; bytes: number; free: () => void }): DenseBound {
  const k = env.kernels, team = env.team;
  const wDims = constantDims(spec, 1)!;
  const [m, cg, kh, kw] = wDims as [number, number, number, number];
  const group = spec.attrs.int("group", 1);
  const mg = m / group, kk = cg * kh * kw, mgPad = Math.ceil(mg / 4) * 4;
  const aPack = wt.aPack, coded = wt.codes !== 0;
  const bias = biasToWasm(k, spec, m);
  const geo = new GeoCache(k, CONV_GEO.length);
  const threads = team.threads;
  return {
    residentBytes: wt.bytes + (bias ? m * 4 : 0),
    run(inputs, rc, addr, epilogue) {
      const x = inputs[0];
      epilogue ??= fusedEpilogue(spec, inputs);
      const [g, geoPtr] = geo.get(x!, wDims, spec, (g, view) => {
        const p = g.outSpatial[0]! * g.outSpatial[1]!;
        const nc = Math.min(NC, Math.ceil(p / 8) * 8);
        const nPc = Math.ceil(p / nc);
        const base = g.batch * g.group * nPc;
        const target = threads > 1 ? UNITS_PER_THREAD * threads : 1;
        let nMc = base >= target ? 1 : Math.min(Math.ceil(mg / 4), Math.ceil(target / base));
        if (coded) nMc = Math.max(nMc, Math.ceil(mg / Math.max(4, Math.floor(GEMM_CODED_A_BYTES / (4 * kk) / 4) * 4)));
        const mc = Math.ceil(Math.ceil(mg / nMc) / 4) * 4;
        nMc = Math.ceil(mg / mc);
        const slices = Math.min(threads, base * nMc);
        // The pixel panels, then (code form) the row chunk's decoded A.
        const slotBytes = Math.min(KC, kk) * nc * 4 + (coded ? mc * kk * 4 : 0);
        const pointwise = kh === 1 && kw === 1 && g.strides.every((s) => s === 1) && g.pads.every((q) => q === 0);
        const vals: Record<(typeof CONV_GEO)[number], number> = {
          cg, inH: g.inSpatial[0]!, inW: g.inSpatial[1]!, kh, kw, sh: g.strides[0]!, sw: g.strides[1]!,
          dh: g.dilations[0]!, dw: g.dilations[1]!, pt: g.pads[0]!, pl: g.pads[1]!, outH: g.outSpatial[0]!, outW: g.outSpatial[1]!,
          mg, mgPad, groups: group, batch: g.batch, nc, mc, kc: KC, nPc, nMc, slices, slotBytes, pointwise: pointwise ? 1 : 0, next: 0,
        };
        CONV_GEO.forEach((name, i) => { view[i] = vals[name]; });
      });
      return runTiled(env, "convGemmF32", geoPtr, CONV_WORDS, [g.batch, m, g.outSpatial[0]!, g.outSpatial[1]!], [aPack, addr(x!)], bias, epilogue, wt.codes, rc, addr);
    },
    dispose() { wt.free(); if (bias) k.free(bias); geo.dispose(); },
  };
}

/** Below this many output pixels a depthwise call stays on one thread (a split costs ~20 µs). */
const DW_PARALLEL_MIN = 1 << 14;

/**
 * ns of the 3×3 depthwise loop (as/depthwise.ts) per plane, per output row of a plane and per
 * output pixel (stride 1, stride 2): a relative least-squares fit to the CPU time of MobileNetV2-224's
 * 17 depthwise layers on the u8 code form at (0.74, 3), bench/form-profile.ts (5 runs, median per
 * layer) on this machine (AMD EPYC, Bun, relaxed SIMD; rms error 5%, at most 13%), scaled by the
 * same runs' ratio of the sparse cost model to the sparse kernels' measured time (0.815), so the
 * two forms' estimates compare as their measured times do. Stride 2 costs ~2× per pixel (its
 * lane shuffles); with the two-row loop the coded form measured 0.40–0.86× the sparse rows on 15
 * of the 17 layers and 1.00× on the other two.
 */
const DEPTHWISE_3X3_NS = { plane: 38, row: 5.1, pixel: 1.33, pixelStride2: 2.9 } as const;

/** Path and estimated ns (one image) of a depthwise Conv, or undefined if the node is not one. */
export function depthwiseClaim(spec: NodeSpec): { path: string; cost: number } | undefined {
  const w = constantDims(spec, 1)!;
  if (w[1] !== 1) return undefined;
  const g = plannedGeometry(spec);
  if (g && g.inChannels !== g.group) return undefined;
  const kh = w[2]!, kw = w[3]!;
  const p = g ? g.outSpatial[0]! * g.outSpatial[1]! : 56 * 56;
  const fast = kh === 3 && kw === 3 && g !== undefined && g.dilations.every((d) => d === 1) &&
    g.strides[0] === g.strides[1] && (g.strides[0] === 1 || g.strides[0] === 2);
  const planes = w[0]!;
  if (fast) {
    const r = DEPTHWISE_3X3_NS, rows = g.outSpatial[0]!;
    return { path: "wasm-depthwise-3x3", cost: CALL_NS + planes * (r.plane + rows * r.row + p * (g.strides[0] === 1 ? r.pixel : r.pixelStride2)) };
  }
  return { path: "wasm-depthwise", cost: CALL_NS + (2 * planes * kh * kw * p) / DENSE_GFLOPS.depthwiseGeneric };
}

const depthwise: WasmOpImpl = {
  opTypes: ["Conv"],
  fuses: true,
  claim(spec) {
    if (!convSupported(spec)) return undefined;
    const c = depthwiseClaim(spec);
    return c && { path: c.path, weightForm: "dense-f32", cost: c.cost };
  },
  bind(spec, env): DenseBound {
    const k = env.kernels;
    const [w, wFloats] = weightToWasm(k, spec, 1);
    return depthwiseRunner(spec, env, { w, codes: 0, bytes: wFloats * 4, free: () => k.free(w) });
  },
};

/**
 * The depthwise runner over a weight held dense (`codes` = 0: `w` = the f32 weights) or in code
 * form (`codes`: u8 level ids in the weight's order, `w`: their f32 values), the latter decoded
 * plane by plane into a per-thread slot of scratch (as/depthwise.ts).
 */
export function depthwiseRunner(spec: NodeSpec, env: Parameters<WasmOpImpl["bind"]>[1], wt: { w: number; codes: number; bytes: number; free: () => void }): DenseBound {
  const k = env.kernels;
  const wDims = constantDims(spec, 1)!;
  const m = wDims[0]!;
  const w = wt.w;
  const bias = biasToWasm(k, spec, m);
  const geo = new GeoCache(k, DW_GEO.length);
  const counter = k.alloc(4);
  return {
    residentBytes: wt.bytes + (bias ? m * 4 : 0),
    run(inputs, rc, addr, epilogue) {
      const x = inputs[0];
      epilogue ??= fusedEpilogue(spec, inputs);
      const [g, geoPtr] = geo.get(x!, wDims, spec, (g, view) => {
        if (g.inChannels !== g.group || g.outChannels % g.inChannels !== 0) throw new Error("depthwise Conv: group must equal the input channels");
        const vals: Record<(typeof DW_GEO)[number], number> = {
          ch: g.inChannels, mult: g.outChannels / g.inChannels, inH: g.inSpatial[0]!, inW: g.inSpatial[1]!,
          kh: g.kernel[0]!, kw: g.kernel[1]!, sh: g.strides[0]!, sw: g.strides[1]!, dh: g.dilations[0]!, dw: g.dilations[1]!,
          pt: g.pads[0]!, pl: g.pads[1]!, outH: g.outSpatial[0]!, outW: g.outSpatial[1]!,
        };
        DW_GEO.forEach((name, i) => { view[i] = vals[name]; });
      });
      const p = g.outSpatial[0]! * g.outSpatial[1]!;
      const planes = g.batch * m;
      const y = rc.alloc(planes * p);
      // Code form: a decode slot per possible range start (kh·kw floats each; only the threads' starts are written).
      const wbuf = wt.codes ? scratchBlock(k, planes * g.kernel[0]! * g.kernel[1]! * 4 + 64) : 0;
      const args = [geoPtr, w, addr(x!), y.byteOffset, bias, ...epilogueArgs(epilogue, y.length, addr), wt.codes, wbuf];
      const threads = env.team.threads;
      if (planes * p >= DW_PARALLEL_MIN && planes > 1 && threads > 1) {
        // Planes claimed in chunks from a counter (as the GEMM's units), so a preempted thread's share moves over.
        k.i32(counter, 1)[0] = 0;
        env.team.run("dwConvDynF32", threads, 1, [counter, Math.ceil(planes / (threads * UNITS_PER_THREAD)), planes, ...args]);
      } else k.exports.dwConvF32(0, planes, ...(args as [number, number, number, number, number, number, number, number, number, number]));
      return [{ dtype: "float32", dims: [g.batch, m, g.outSpatial[0]!, g.outSpatial[1]!], data: y } as Tensor];
    },
    dispose() { wt.free(); if (bias) k.free(bias); geo.dispose(); k.free(counter); },
  };
}

/** Words of the Winograd geometry block (as/winograd.ts). */
const WINO_GEO = ["c", "inH", "inW", "pt", "pl", "outH", "outW", "m", "mPad", "batch", "nt", "nTc", "nMc", "mc", "slices", "slotBytes", "next"] as const;
const WINO_WORDS = geoWords(WINO_GEO);
/** Bytes of transformed input (16 × C × tiles) a unit keeps, so V stays in L2 (the tile count follows C). */
const WINO_V_BYTES = 1 << 19;

const WINO_MIN_CHANNELS = 8;

/** 3×3, stride 1, dilation 1, one group, static geometry known: the shapes F(2×2, 3×3) takes. */
export function winogradShape(spec: NodeSpec): ConvGeometry | undefined {
  const w = constantDims(spec, 1)!;
  // Under 8 input or output channels the transforms outweigh the GEMMs saved (as cpu/winograd.ts measured).
  if (w[2] !== 3 || w[3] !== 3 || spec.attrs.int("group", 1) !== 1 || w[0]! < WINO_MIN_CHANNELS || w[1]! < WINO_MIN_CHANNELS) return undefined;
  const g = plannedGeometry(spec);
  if (!g || !g.strides.every((v) => v === 1) || !g.dilations.every((v) => v === 1)) return undefined;
  return g;
}

/** Estimated ns of one image: 16 GEMMs of m × c × tiles, plus the transforms (per channel and tile in, per output and tile out). */
export function winogradNs(m: number, c: number, g: ConvGeometry): number {
  const tiles = Math.ceil(g.outSpatial[0]! / 2) * Math.ceil(g.outSpatial[1]! / 2);
  return CALL_NS + (2 * 16 * m * c * tiles) / DENSE_GFLOPS.winogradGemm + (c + m) * tiles * DENSE_GFLOPS.winogradTransformNs;
}

const winograd: WasmOpImpl = {
  opTypes: ["Conv"],
  fuses: true,
  claim(spec) {
    if (!convSupported(spec)) return undefined;
    const g = winogradShape(spec);
    if (!g) return undefined;
    const [m, c] = constantDims(spec, 1)! as [number, number];
    return { path: "wasm-winograd-f2x2", weightForm: "winograd-f32-packed-4x", cost: winogradNs(m, c, g) };
  },
  bind(spec, env): DenseBound {
    const k = env.kernels;
    const wDims = constantDims(spec, 1)!;
    const [m, c] = wDims as [number, number];
    const mPad = Math.ceil(m / 4) * 4;
    // U_ξ = (G g Gᵀ)_ξ (Lavin & Gray Eq. 7), G = [[1,0,0],[½,½,½],[½,−½,½],[0,0,1]], per (m, c) 3×3 block.
    const uFloats = 16 * mPad * c;
    const uPack = k.alloc(uFloats * 4);
    const u = k.f32(uPack, uFloats);
    u.fill(0);
    const stride = mPad * c, t43 = new Float64Array(12);
    forEachBlock(spec, 1, 9, (mc, g) => {
      const ch = mc % c, row = (mc - ch) / c;
      const lane = (row >> 2) * 4 * c + ch * 4 + (row & 3);
      // t = G g: 4×3 (rows g0, (g0+g1+g2)/2, (g0−g1+g2)/2, g2 over the kernel's rows), then t Gᵀ over columns.
      for (let j = 0; j < 3; j++) {
        const g0 = g[j]!, g1 = g[3 + j]!, g2 = g[6 + j]!;
        t43[j] = g0; t43[3 + j] = 0.5 * (g0 + g1 + g2); t43[6 + j] = 0.5 * (g0 - g1 + g2); t43[9 + j] = g2;
      }
      for (let i = 0; i < 4; i++) {
        const a0 = t43[3 * i]!, a1 = t43[3 * i + 1]!, a2 = t43[3 * i + 2]!;
        const o = 4 * i * stride + lane;
        u[o] = a0;
        u[o + stride] = 0.5 * (a0 + a1 + a2);
        u[o + 2 * stride] = 0.5 * (a0 - a1 + a2);
        u[o + 3 * stride] = a2;
      }
    });
    return winogradRunner(spec, env, { uPack, codes: 0, bytes: uFloats * 4, free: () => k.free(uPack) });
  },
};

/** Bytes of decoded U (16 × MC × C floats) a code-form Winograd unit holds: the row chunk follows C so U stays in L2 next to V. */
const WINO_CODED_U_BYTES = 1 << 18;

/**
 * The Winograd runner over a weight held either packed (`codes` = 0: `uPack` = the 16 U_ξ) or in
 * code form (`codes`: u8 level ids [M][C][3][3], `uPack`: their f32 values), the latter decoded
 * per unit into the unit's slot (as/winograd.ts decodeU). `bytes`: the weight's resident bytes.
 */
export function winogradRunner(spec: NodeSpec, env: Parameters<WasmOpImpl["bind"]>[1], w: { uPack: number; codes: number; bytes: number; free: () => void }): DenseBound {
  const k = env.kernels, team = env.team;
  const wDims = constantDims(spec, 1)!;
  const [m, c] = wDims as [number, number];
  const uPack = w.uPack, coded = w.codes !== 0, mPad = Math.ceil(m / 4) * 4;
  const bias = biasToWasm(k, spec, m);
  const geo = new GeoCache(k, WINO_GEO.length);
  const threads = team.threads;
  return {
    residentBytes: w.bytes + (bias ? m * 4 : 0),
    run(inputs, rc, addr, epilogue) {
      const x = inputs[0];
      epilogue ??= fusedEpilogue(spec, inputs);
      const [g, geoPtr] = geo.get(x!, wDims, spec, (g, view) => {
        if (!g.strides.every((v) => v === 1) || !g.dilations.every((v) => v === 1) || g.group !== 1) throw new Error("winograd Conv: needs stride 1, dilation 1, one group");
        const tiles = Math.ceil(g.outSpatial[0]! / 2) * Math.ceil(g.outSpatial[1]! / 2);
        const ntMax = Math.max(8, Math.min(128, Math.floor(WINO_V_BYTES / (64 * c) / 8) * 8));
        // Enough tile chunks for UNITS_PER_THREAD per thread where the tiles allow it.
        const nt = Math.min(ntMax, Math.ceil(tiles / (threads > 1 ? UNITS_PER_THREAD * threads : 1) / 8) * 8);
        const nTc = Math.ceil(tiles / nt);
        const base = g.batch * nTc;
        // Row chunks only when there are fewer tile chunks than threads: a row chunk claimed by
        // another thread than its tile chunk's first recomputes the chunk's input transform.
        const target = threads;
        let nMc = base >= target ? 1 : Math.min(Math.ceil(m / 4), Math.ceil(target / base));
        if (coded) nMc = Math.max(nMc, Math.ceil(m / Math.max(8, Math.floor(WINO_CODED_U_BYTES / (64 * c) / 4) * 4)));
        const mc = Math.ceil(Math.ceil(m / nMc) / 4) * 4;
        nMc = Math.ceil(m / mc);
        // V (16 × C × nt) then M (16 × mc × nt), each ξ block one cache line longer (as/winograd.ts),
        // plus one vector the output transform may read past the end.
        // Code form: then the row chunk's decoded U (16 × mc × C, each block a line longer).
        const slotBytes = 16 * ((c + mc) * nt * 4 + 128) + 64 + (coded ? 16 * (mc * c * 4 + 64) : 0);
        const vals: Record<(typeof WINO_GEO)[number], number> = {
          c, inH: g.inSpatial[0]!, inW: g.inSpatial[1]!, pt: g.pads[0]!, pl: g.pads[1]!, outH: g.outSpatial[0]!, outW: g.outSpatial[1]!,
          m, mPad, batch: g.batch, nt, nTc, nMc, mc, slices: Math.min(threads, base * nMc), slotBytes, next: 0,
        };
        WINO_GEO.forEach((name, i) => { view[i] = vals[name]; });
      });
      return runTiled(env, "winogradF32", geoPtr, WINO_WORDS, [g.batch, m, g.outSpatial[0]!, g.outSpatial[1]!], [uPack, addr(x!)], bias, epilogue, w.codes, rc, addr);
    },
    dispose() { w.free(); if (bias) k.free(bias); geo.dispose(); },
  };
}

/** The dense Conv implementations. */
export const CONV_DENSE_WASM: readonly WasmOpImpl[] = [convGemm, depthwise, winograd];
