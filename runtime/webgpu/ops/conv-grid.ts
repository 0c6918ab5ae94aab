/**
 * The fast Conv: weights as a code grid in a uniform buffer, each thread a register tile of
 * OCT output channels × PX output columns of one row.
 *
 * Why this shape (measured on Mesa 22.3 lavapipe, 2 cores, scratch micro-benchmarks): a storage
 * buffer load costs ~16 ns per invocation and scalar (a vec4 load costs four), a uniform-buffer
 * vec4 load ~7.6 ns, an FMA ~0.1 ns. So the kernel minimises loads per multiply-add: per input
 * channel it loads the unit's weights as a few uniform vec4 words (KH·KW·OCT codes), and per
 * kernel row (PX−1)·sw + (KW−1)·dw + 1 input values, each reused for OCT·KW multiply-adds.
 * ResNet-20 `.opq` (0.74, 3) at batch 64 on lavapipe: 258–317 → 19–28 ms per image against the
 * CSR-row and 4×4-tile kernels before it (separate processes back to back; README, WebGPU).
 *
 * Weight form ("grid"): for each block of OCT output channels, for each unit of CU input channels
 * (CU > 1 only for 1×1 kernels), the fields of (cu, ky, kx, o) in that order, packed
 * ⌊32/bits⌋ per u32 word, each unit padded to whole vec4s. A compressed weight keeps its codes:
 * field = code − min (uniform, value = Δ·(field + min), OPQ Eq. 10) or the table index (APoT;
 * the table, with a 0 appended for pruned positions, leads each uniform chunk); a pruned position
 * holds the zero code. No float32 copy of a compressed weight exists on the GPU, and at the
 * sparsities the shared models use this grid is smaller than CSR with u16 columns (3-bit codes,
 * held as 4-bit fields: ~4.4 bits per position with padding, against 0.26 × (16 + 4) ≈ 5.2 at
 * 74 % sparsity). Dense float32 weights use the same layout with 32-bit fields. Blocks are grouped
 * into chunks of at most 64 KiB (the uniform binding limit), one dispatch per chunk, each bound
 * as a window of the context's uniform arena (GpuContext.uniformSlice).
 *
 * Epilogue: bias, an optional residual (same shape as the output) and the clamp [lo, hi], so a
 * Conv → Add → Relu chain is one dispatch (NodeSpec.epilogue).
 * @module
 */
import type { CompressedTensor } from "../../../format/mod.ts";
import type { Tensor } from "../../../format/mod.ts";
import { convGeometry } from "../../ops/conv.ts";
import type { Attrs } from "../../ops/types.ts";
import { KernelError } from "../../ops/types.ts";
import type { GpuBound, StepIO } from "../backend.ts";
import { F32_MAX, type GpuContext, Params, UNIFORM_WINDOW, WGSL_MAIN, WGSL_PRELUDE } from "../context.ts";

/** Uniform binding limit WebGPU guarantees (vec4s) and the offset alignment it guarantees. */
const UNIFORM_VEC4 = UNIFORM_WINDOW / 16;
const ALIGN_VEC4 = 256 / 16;
/** Table entries a chunk carries (4 vec4): APoT levels plus the appended zero. */
const TABLE_SLOTS = 16;
/** Output columns per thread at most (8 + 2 loads per 3-wide row serve 8·3·OCT multiply-adds; 4 and 14 measured no faster). */
const MAX_PX = 8;
/**
 * Output channels per thread at most. ResNet-20 `.opq` batch 64 (scratch runs, loaded machine):
 * 16 channels ~30 ms per image, 8 ~72, 32 and 64 no faster than 16 (and longer to compile).
 */
const MAX_OCT = 16;

/** How a grid weight decodes. */
type GridKind = "f32" | "uniform" | "table";

/** The packed grid and what the kernel needs to walk it. */
export interface GridWeights {
  kind: GridKind;
  words: Uint32Array;
  bits: number;
  /** Fields per u32 word. */
  fpw: number;
  OCT: number;
  CU: number;
  unitVec4: number;
  blockVec4: number;
  tableVec4: number;
  /** Chunks: first block, block count, vec4 offset into the buffer. */
  chunks: { first: number; count: number; at: number }[];
  /** Blocks of OCT channels per group (a last partial block is padded). */
  blocksPerGroup: number;
  step: number;
  cmin: number;
  form: string;
}

/** Largest of `options` dividing `n`, or 0. */
const largestDivisor = (n: number, options: readonly number[]) => options.find((d) => n % d === 0) ?? 0;

/**
 * Pack a Conv weight [M, ICg, KH, KW] as a grid (from its compressed form or dense float32), or
 * say why it does not fit (fewer than 4 channels per group, codes over 16 bits, a block over 64 KiB).
 */
export function packGrid(dims: readonly number[], group: number, src: { compressed: CompressedTensor } | { dense: Float32Array }): GridWeights | string {
  const [M, ICg, KH, KW] = [dims[0]!, dims[1]!, dims[2]!, dims[3]!];
  const OCg = M / group;
  // One group: channels padded up to a multiple of 4 (the pad is computed, never written).
  const OCgP = group === 1 ? Math.ceil(OCg / 4) * 4 : OCg;
  let kind: GridKind = "f32", bits = 32, cmin = 0, step = 0, table: Float32Array | undefined;
  if ("compressed" in src) {
    const c = src.compressed;
    if (c.codebook.kind === "table") {
      kind = "table";
      table = c.codebook.values;
      if (table.length + 1 > TABLE_SLOTS) return `codebook of ${table.length} levels (grid holds ${TABLE_SLOTS - 1})`;
      bits = 2 ** Math.ceil(Math.log2(Math.max(1, Math.ceil(Math.log2(table.length + 1)))));
    } else {
      kind = "uniform";
      step = c.codebook.step;
      let hi = 0;
      for (let k = 0; k < c.codes.length; k++) { const v = c.codes[k]!; if (v < cmin) cmin = v; if (v > hi) hi = v; }
      bits = Math.max(1, Math.ceil(Math.log2(hi - cmin + 1)));
      if (bits > 16) return `codes span ${bits} bits`;
      // Powers of two only: layers of one model then share pipelines (a 3-bit grid held as 4-bit
      // is 25 % larger; each extra pipeline costs ~0.3 s of LLVM compile on lavapipe).
      bits = 2 ** Math.ceil(Math.log2(bits));
    }
  }
  const fpw = Math.floor(32 / bits);
  const taps = KH * KW;
  // Several input channels per unit only for 1×1 kernels (a 3×3 unit already fills vec4s).
  const CU = taps === 1 ? largestDivisor(ICg, [8, 4, 2, 1]) : 1;
  const tableVec4 = kind === "table" ? TABLE_SLOTS / 4 : 0;
  let OCT = 0, unitVec4 = 0, blockVec4 = 0;
  for (const oct of [16, 8, 4].filter((o) => o <= MAX_OCT && OCgP % o === 0)) {
    unitVec4 = Math.ceil(Math.ceil(CU * taps * oct / fpw) / 4);
    blockVec4 = (ICg / CU) * unitVec4;
    if (blockVec4 + tableVec4 <= UNIFORM_VEC4) { OCT = oct; break; }
  }
  if (!OCT) return OCgP % 4 ? `${OCg} output channels per group (grid needs a multiple of 4)` : "one block of weights exceeds 64 KiB";
  const blocks = group * OCgP / OCT, perChunk = Math.floor((UNIFORM_VEC4 - tableVec4) / blockVec4);
  const chunks: GridWeights["chunks"] = [];
  let at = 0;
  for (let first = 0; first < blocks; first += perChunk) {
    const count = Math.min(perChunk, blocks - first);
    chunks.push({ first, count, at });
    at += Math.ceil((tableVec4 + count * blockVec4) / ALIGN_VEC4) * ALIGN_VEC4;
  }
  const last = chunks[chunks.length - 1]!;
  // Each chunk is bound as a 64 KiB window of the context's uniform arena (which pads the end once).
  const words = new Uint32Array((last.at + tableVec4 + last.count * blockVec4) * 4);
  const mask = bits === 32 ? 0xffffffff : 2 ** bits - 1;
  const fieldAt = (m: number, c: number, tap: number): [number, number] => {
    const g = Math.floor(m / OCg), mj = m % OCg, b = g * (OCgP / OCT) + Math.floor(mj / OCT), o = mj % OCT;
    const ch = chunks[Math.floor(b / perChunk)]!;
    const f = ((c % CU) * taps + tap) * OCT + o;
    const word = (ch.at + tableVec4 + (b - ch.first) * blockVec4 + Math.floor(c / CU) * unitVec4) * 4 + Math.floor(f / fpw);
    return [word, (f % fpw) * bits];
  };
  const put = (m: number, c: number, tap: number, field: number) => {
    const [w, sh] = fieldAt(m, c, tap);
    words[w] = bits === 32 ? field : ((words[w]! & ~(mask << sh)) | (field << sh)) >>> 0;
  };
  if ("dense" in src) {
    const bitsOf = new Uint32Array(src.dense.buffer, src.dense.byteOffset, src.dense.length);
    for (let m = 0; m < M; m++) for (let c = 0; c < ICg; c++) for (let t = 0; t < taps; t++) put(m, c, t, bitsOf[(m * ICg + c) * taps + t]!);
  } else {
    const zero = kind === "table" ? table!.length : -cmin;
    if (zero !== 0) for (let m = 0; m < M; m++) for (let c = 0; c < ICg; c++) for (let t = 0; t < taps; t++) put(m, c, t, zero);
    const { indices, codes } = src.compressed, row = ICg * taps;
    for (let k = 0; k < indices.length; k++) {
      const f = indices[k]!, m = Math.floor(f / row), r = f % row;
      put(m, Math.floor(r / taps), r % taps, kind === "table" ? codes[k]! : codes[k]! - cmin);
    }
    if (table) {
      const fw = new Float32Array(words.buffer);
      for (const ch of chunks) fw.set(table, ch.at * 4); // the appended zero is already 0
    }
  }
  const form = kind === "f32" ? `grid-f32-oc${OCT}` : `grid-q${bits}-${kind}-oc${OCT}`;
  return { kind, words, bits, fpw, OCT, CU, unitVec4, blockVec4, tableVec4, chunks, blocksPerGroup: OCgP / OCT, step, cmin, form };
}

/** Pipeline key fields: everything the generated WGSL is specialised on. */
interface ShaderKey {
  KH: number;
  KW: number;
  sw: number;
  dw: number;
  PX: number;
  g: GridWeights;
}

/** WGSL of the grid conv for one key (loops over taps, channels in a unit and the tile unrolled). */
export function gridShader({ KH, KW, sw, dw, PX, g }: ShaderKey): string {
  const { OCT, CU, fpw, bits, kind, unitVec4, tableVec4 } = g;
  const NX = (PX - 1) * sw + (KW - 1) * dw + 1;
  const mask = bits === 32 ? "0xffffffffu" : `${2 ** bits - 1}u`;
  const field = (f: number) => {
    const word = Math.floor(f / fpw), v = `wq${Math.floor(word / 4)}[${word % 4}]`, sh = (f % fpw) * bits;
    return bits === 32 ? v : `((${v} >> ${sh}u) & ${mask})`;
  };
  const decode = (f: number) =>
    kind === "f32" ? `bitcast<f32>(${field(f)})` : kind === "uniform" ? `step * f32(i32(${field(f)}) + cmin)` : `tab[${field(f)}]`;
  const L: string[] = [];
  for (let o = 0; o < OCT; o++) L.push(`  ${Array.from({ length: PX }, (_, p) => `var a${o}_${p} = 0.0;`).join(" ")}`);
  L.push(`  for (var c0 = 0u; c0 < ICg; c0 += ${CU}u) {`);
  L.push(`    let q = wbase + (c0 / ${CU}u) * ${unitVec4}u;`);
  for (let v = 0; v < unitVec4; v++) L.push(`    let wq${v} = U[q + ${v}u];`);
  for (let cu = 0; cu < CU; cu++) {
    L.push(`    { let xc = (n * C + gi * ICg + c0 + ${cu}u) * H;`);
    for (let ky = 0; ky < KH; ky++) {
      L.push(`      { let iy = iy0 + ${ky} * i32(dh);`);
      L.push(`        if (iy >= 0 && iy < i32(H)) { let xr = (xc + u32(iy)) * W;`);
      for (let j = 0; j < NX; j++) L.push(`          let x${j} = xAt(xr, ix0 + ${j}, W);`);
      for (let kx = 0; kx < KW; kx++) {
        for (let o = 0; o < OCT; o++) {
          L.push(`          { let w = ${decode(((cu * KH + ky) * KW + kx) * OCT + o)};`);
          L.push(`            ${Array.from({ length: PX }, (_, p) => `a${o}_${p} = fma(x${p * sw + kx * dw}, w, a${o}_${p});`).join(" ")} }`);
        }
      }
      L.push(`        } }`);
    }
    L.push(`    }`);
  }
  L.push(`  }`);
  // Epilogue unrolled too (a dynamic index into the accumulators would keep them in memory).
  const epilogue: string[] = [];
  for (let o = 0; o < OCT; o++) {
    epilogue.push(`  { let b = select(0.0, e[min(m0 + ${o}u, arrayLength(&e) - 1u)], hasBias); let out = out0 + ${o}u * OH * OW;`);
    for (let p = 0; p < PX; p++) {
      epilogue.push(`    if (${p}u < pEnd && m0 + ${o}u < M) { var v = a${o}_${p} + b; if (hasRes) { v += r[out + ${p}u]; } y[out + ${p}u] = clamp(v, lo, hi); }`);
    }
    epilogue.push(`  }`);
  }
  const tableLoad = kind === "table"
    ? `  var tab: array<f32, ${TABLE_SLOTS}>;\n` + Array.from({ length: tableVec4 }, (_, v) => `  { let tv = bitcast<vec4<f32>>(U[${v}u]); tab[${4 * v}] = tv.x; tab[${4 * v + 1}] = tv.y; tab[${4 * v + 2}] = tv.z; tab[${4 * v + 3}] = tv.w; }`).join("\n")
    : "";
  return `${WGSL_PRELUDE}
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<uniform> U: array<vec4<u32>, ${UNIFORM_VEC4}>;
@group(0) @binding(3) var<storage, read> e: array<f32>;
@group(0) @binding(4) var<storage, read> r: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
fn xAt(xr: u32, ix: i32, W: u32) -> f32 {
  return select(0.0, x[xr + u32(clamp(ix, 0, i32(W) - 1))], ix >= 0 && ix < i32(W));
}
${WGSL_MAIN}
  let C = pu(1u); let H = pu(2u); let W = pu(3u); let M = pu(4u); let OH = pu(5u); let OW = pu(6u);
  let sh = pu(7u); let dh = pu(10u); let ICg = pu(11u); let OCg = pu(12u); let OWB = pu(13u); let NB = pu(14u);
  let step = pf(22u); let cmin = pi(23u);
  let oxb = i % OWB; var t = i / OWB; let oy = t % OH; t = t / OH; let bl = t % NB; let n = t / NB;
  let gb = pu(15u) + bl; let BPG = pu(16u);
  let gi = gb / BPG; let m0 = gi * OCg + (gb % BPG) * ${OCT}u;
  let wbase = ${tableVec4}u + bl * pu(17u);
  let iy0 = i32(oy * sh) - pi(8u);
  let ix0 = i32(oxb * ${PX}u * ${sw}u) - pi(9u);
${tableLoad}
${L.join("\n")}
  let lo = pf(19u); let hi = pf(20u); let hasBias = pu(18u) == 1u; let hasRes = pu(21u) == 1u;
  let out0 = ((n * M + m0) * OH + oy) * OW + oxb * ${PX}u;
  let pEnd = min(${PX}u, OW - oxb * ${PX}u);
${epilogue.join("\n")}
}`;
}

/** What bindGridConv needs from the Conv node. */
export interface GridConvSpec {
  name: string;
  wDims: readonly number[];
  attrs: Attrs;
  group: number;
  bias?: Float32Array;
  /** Index of the residual among the node's inputs (fused Add), if any. */
  residual?: number;
  lo: number;
  hi: number;
}

/** Bind a 2-D Conv to the grid kernel, or say why it does not fit. */
export function bindGridConv(s: GridConvSpec, grid: GridWeights, ctx: GpuContext): GpuBound | string {
  const { wDims, attrs, group } = s;
  const M = wDims[0]!;
  const slice = ctx.uniformSlice(grid.words);
  const ebuf = ctx.constantBuffer(s.bias ?? new Float32Array(4), `${s.name}:bias`);
  const params = grid.chunks.map(() => new Params());
  const pipes = new Map<string, { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }>();
  const lo = Math.max(-F32_MAX, s.lo), hi = Math.min(F32_MAX, s.hi);
  return {
    path: "webgpu-conv-grid",
    weightForm: grid.form,
    residentBytes: grid.words.byteLength + (s.bias ? s.bias.byteLength : 0),
    dispatches: grid.chunks.length,
    run(inputs: readonly (Tensor | undefined)[], io: StepIO) {
      const x = inputs[0]!;
      if (x.dims.length !== 4) throw new KernelError(`Conv: X [${x.dims}] and W [${wDims}] ranks differ`);
      const geo = convGeometry(x.dims, wDims, attrs);
      const [H, W] = geo.inSpatial as [number, number];
      const [OH, OW] = geo.outSpatial as [number, number];
      const [sh, sw] = geo.strides as [number, number];
      const [dh, dw] = geo.dilations as [number, number];
      // Columns per thread: as even a split of the row as MAX_PX allows (28 → 4 × 7, 14 → 2 × 7).
      const PX = Math.ceil(OW / Math.ceil(OW / MAX_PX));
      const OWB = Math.ceil(OW / PX);
      const key = `conv-grid:${wDims[2]}x${wDims[3]}:s${sw}:d${dw}:px${PX}:oc${grid.OCT}:cu${grid.CU}:${grid.kind}${grid.bits}`;
      let pipe = pipes.get(key);
      if (!pipe) pipes.set(key, pipe = ctx.pipeline(key, () => gridShader({ KH: wDims[2]!, KW: wDims[3]!, sw, dw, PX, g: grid })));
      const xb = io.input(0, x);
      const rb = s.residual !== undefined ? io.input(s.residual, inputs[s.residual]) : xb;
      if (s.residual !== undefined) {
        const rd = inputs[s.residual]!.dims, od = [geo.batch, M, OH, OW];
        if (rd.length !== 4 || rd.some((d, k) => d !== od[k])) throw new KernelError(`Conv+Add: residual [${rd}] is not the output's shape [${od}]`);
      }
      const y = io.output(0, [geo.batch, M, ...geo.outSpatial]);
      grid.chunks.forEach((ch, k) => {
        const p = params[k]!;
        const n = geo.batch * ch.count * OH * OWB;
        p.u.fill(0);
        p.u[0] = n; p.u[1] = geo.inChannels; p.u[2] = H; p.u[3] = W; p.u[4] = M; p.u[5] = OH; p.u[6] = OW;
        p.u[7] = sh; p.s[8] = geo.pads[0]!; p.s[9] = geo.pads[1]!; p.u[10] = dh;
        p.u[11] = geo.inChannels / group; p.u[12] = M / group; p.u[13] = OWB; p.u[14] = ch.count; p.u[15] = ch.first;
        p.u[16] = grid.blocksPerGroup; p.u[17] = grid.blockVec4; p.u[18] = s.bias ? 1 : 0;
        p.f[19] = lo; p.f[20] = hi; p.u[21] = s.residual !== undefined ? 1 : 0;
        p.f[22] = grid.step; p.s[23] = grid.cmin;
        io.dispatch(k, pipe!, p, [xb, { buffer: slice.buffer(), offset: (slice.at + ch.at) * 16, size: UNIFORM_WINDOW }, ebuf, rb, y.gpu.buffer], n);
      });
      return [y];
    },
    // The grid stays in the arena until the context is disposed.
    dispose: () => ctx.destroyBuffer(ebuf),
  };
}
