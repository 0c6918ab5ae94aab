/**
 * Conv whose weight is a compressed `.opq` tensor dense enough that a dense kernel beats the
 * sparse one (conv-sparse.ts) by estimated cost — Winograd F(2×2, 3×3) for 3×3 stride 1, the
 * depthwise loop, the im2col/1×1 GEMM — on the u8 code form: the weight stays resident as one
 * level id per weight (0 = pruned) plus the level values (≤ 255), and each kernel decodes only
 * what a work unit needs into its scratch slot (a row chunk of U = G g Gᵀ or of the GEMM's A,
 * at most 256 KiB; one depthwise kernel), so no float copy of the layer exists.
 * @module
 */
import type { NodeSpec } from "../../backend.ts";
import type { WasmOpImpl } from "../backend.ts";
import { convGemmClaim, convGemmRunner, depthwiseClaim, depthwiseRunner, winogradNs, winogradRunner, winogradShape } from "./conv-dense.ts";
import { encodedWeights as encodedWeightsOf } from "../../../format/mod.ts";
import { codeSpanWithin, encodedCodesU8, levelTable } from "./sparse-form.ts";

/** Most levels the u8 form holds (id 0 is the zero). */
const MAX_CODED_LEVELS = 255;
/**
 * ns per (output channel × input channel) block decoded per tile chunk (decodeU: 9 code loads,
 * the 4×3 and 4×4 transforms, 16 stores); estimated, not yet measured on its own.
 */
const DECODE_NS_PER_BLOCK = 10;
/** Tiles a unit covers at most (WINO_V_BYTES / C, capped at 128 in conv-dense.ts): the decode repeats per tile chunk. */
const TILES_PER_UNIT = 128;

/** True if the compressed weight's distinct levels fit the u8 form. */
function fitsCoded(spec: NodeSpec): boolean {
  return codeSpanWithin(spec.compressed[1]!, MAX_CODED_LEVELS);
}

/** The u8 code form of a compressed weight in wasm memory: levels (f32, id 0 = 0) then codes (one id per weight, 8 bytes of padding). */
function toCodeForm(spec: NodeSpec, k: Parameters<WasmOpImpl["bind"]>[1]["kernels"]): { base: number; codes: number; bytes: number } {
  const w = spec.compressed[1]!;
  const n = w.dims.reduce((a, b) => a * b, 1);
  // Codes padded by 8 bytes: the Winograd kernel tests a 3×3 block for zeros with one 8-byte load.
  const codeBytes = Math.ceil((n + 8) / 16) * 16;
  // A file's rANS stream: decoded inside wasm straight into the codes (levels after them, then
  // moved before: the level count is known only from the stream's model, here).
  const stream = encodedWeightsOf(w);
  if (stream) {
    const levelsCap = Math.ceil(((MAX_CODED_LEVELS + 1) * 4) / 16) * 16;
    const base = k.alloc(levelsCap + codeBytes);
    try {
      const got = encodedCodesU8(k, w, base + levelsCap, MAX_CODED_LEVELS);
      if (got) {
        k.u8(base + levelsCap + n, codeBytes - n).fill(0);
        const lv = k.f32(base, MAX_CODED_LEVELS + 1).fill(0);
        lv.set(got.values, 1);
        return { base, codes: base + levelsCap, bytes: levelsCap + codeBytes };
      }
    } catch (e) {
      k.free(base);
      throw e;
    }
    k.free(base);
  }
  const table = levelTable(w);
  if (!table || table.values.length > MAX_CODED_LEVELS) throw new RangeError(`${spec.name}: more levels than the u8 form holds (${MAX_CODED_LEVELS})`);
  const { idOf, lo, values } = table;
  const levelsBytes = Math.ceil(((values.length + 1) * 4) / 16) * 16;
  const base = k.alloc(levelsBytes + codeBytes);
  const lv = k.f32(base, values.length + 1);
  lv[0] = 0;
  lv.set(values, 1);
  const codes = base + levelsBytes;
  const cv = k.u8(codes, codeBytes);
  // Built in a local array and copied in once (element writes to shared memory are slower on some engines).
  const local = new Uint8Array(codeBytes);
  const idx = w.indices, stored = w.codes;
  for (let i = 0; i < idx.length; i++) local[idx[i]!] = idOf[stored[i]! - lo]! + 1; // level −1 (a zero code) → id 0
  cv.set(local);
  return { base, codes, bytes: levelsBytes + codeBytes };
}

/** Float32 data in and out, and a bias that is a dense float32 constant (or none). */
function plainConv(spec: NodeSpec): boolean {
  const w = spec.compressed[1];
  if (!w || w.dims.length !== 4 || spec.inputDtypes[0] !== "float32" || spec.outputDtypes[0] !== "float32") return false;
  return !spec.node.inputs[2] || (!spec.compressed[2] && spec.constants[2]?.dtype === "float32");
}

const winogradCoded: WasmOpImpl = {
  opTypes: ["Conv"],
  fuses: true,
  keepsCompressed: true,
  codeForm: true,
  claim(spec) {
    if (!plainConv(spec)) return undefined;
    const w = spec.compressed[1]!;
    const g = winogradShape(spec);
    if (!g || !fitsCoded(spec)) return undefined;
    const [m, c] = w.dims as [number, number];
    const tiles = Math.ceil(g.outSpatial[0]! / 2) * Math.ceil(g.outSpatial[1]! / 2);
    const decode = m * c * Math.ceil(tiles / TILES_PER_UNIT) * DECODE_NS_PER_BLOCK;
    return { path: "wasm-winograd-coded", weightForm: "codes-u8-dense", cost: winogradNs(m, c, g) + decode };
  },
  bind(spec, env) {
    const k = env.kernels;
    const f = toCodeForm(spec, k);
    return winogradRunner(spec, env, { uPack: f.base, codes: f.codes, bytes: f.bytes, free: () => k.free(f.base) });
  },
};

const depthwiseCoded: WasmOpImpl = {
  opTypes: ["Conv"],
  fuses: true,
  keepsCompressed: true,
  codeForm: true,
  claim(spec) {
    if (!plainConv(spec) || !fitsCoded(spec)) return undefined;
    const c = depthwiseClaim(spec);
    return c && { path: `${c.path}-coded`, weightForm: "codes-u8-dense", cost: c.cost };
  },
  bind(spec, env) {
    const k = env.kernels;
    const f = toCodeForm(spec, k);
    return depthwiseRunner(spec, env, { w: f.base, codes: f.codes, bytes: f.bytes, free: () => k.free(f.base) });
  },
};

/** ns per weight decoded into the GEMM's A panels (decodeA: two loads and a store); estimated. */
const DECODE_NS_PER_WEIGHT = 1;
/** As GEMM_CODED_A_BYTES and NC in conv-dense.ts: the decoded A a unit holds, and pixels per unit. */
const CODED_A_BYTES = 1 << 18;
const PIXELS_PER_UNIT = 128;

const convGemmCoded: WasmOpImpl = {
  opTypes: ["Conv"],
  fuses: true,
  keepsCompressed: true,
  codeForm: true,
  claim(spec) {
    if (!plainConv(spec) || !fitsCoded(spec)) return undefined;
    const c = convGemmClaim(spec);
    if (!c) return undefined;
    const [m, cg, kh, kw] = spec.compressed[1]!.dims as [number, number, number, number];
    const group = spec.attrs.int("group", 1), kk = cg * kh * kw;
    const os = spec.outputShapes[0];
    const p = typeof os?.[2] === "number" && typeof os?.[3] === "number" ? os[2] * os[3] : 56 * 56;
    // A row chunk is decoded once per thread when it holds all rows, else once per pixel chunk.
    const oneChunk = (m / group) * kk * 4 <= CODED_A_BYTES;
    const decode = m * kk * (oneChunk ? 1 : Math.ceil(p / PIXELS_PER_UNIT)) * DECODE_NS_PER_WEIGHT;
    return { path: `${c.path}-coded`, weightForm: "codes-u8-dense", cost: c.cost + decode };
  },
  bind(spec, env) {
    const k = env.kernels;
    const f = toCodeForm(spec, k);
    return convGemmRunner(spec, env, { aPack: f.base, codes: f.codes, bytes: f.bytes, free: () => k.free(f.base) });
  },
};

/** The code-form dense implementations of compressed layers. */
export const CODED_WASM: readonly WasmOpImpl[] = [winogradCoded, depthwiseCoded, convGemmCoded];
