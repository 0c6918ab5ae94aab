/**
 * Column blocking of the sparse conv kernel (runtime/wasm/ops/conv-sparse.ts columnBlocks), A/B in
 * one process: per layer shape (ResNet-18/50's large-channel layers at their (0.74, 3) densities,
 * seeded weights) the conv bound with and without blocking, calls alternating, CPU time of this
 * thread (1 thread); then, given `.opq` files, whole models with OPQ_SPARSE_BLOCKS=0 against the
 * default, runs alternating. Prints min and median ms and the ratio blocked ÷ unblocked.
 * Usage: bun bench/column-blocks-bench.ts [model.opq ...] [--iterations 15]
 * @module
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { type CompressedTensor, mulberry32, type Tensor } from "../format/mod.ts";
import { createSession } from "../runtime/mod.ts";
import type { NodeSpec } from "../runtime/backend.ts";
import { Attrs } from "../runtime/ops/types.ts";
import { WasmKernels } from "../runtime/wasm/module.ts";
import { ThreadTeam } from "../runtime/wasm/threads.ts";
import { bindSparseConv } from "../runtime/wasm/ops/conv-sparse.ts";
import { seededInput } from "../cli/commands/bench.ts";
import { formatTable, say } from "../cli/common.ts";

const { values, positionals } = parseArgs({ allowPositionals: true, options: { iterations: { type: "string" } } });
const iterations = Number(values.iterations ?? 15);

/** [M, C, K, H (input), stride, density]: ResNet-18 layer3/4 3×3, ResNet-50's 1×1 and 3×3 of layers 3–4. */
const SHAPES: [number, number, number, number, number, number][] = [
  [256, 256, 3, 14, 1, 0.32], [512, 512, 3, 7, 1, 0.16], [512, 512, 3, 7, 1, 0.1],
  [256, 1024, 1, 14, 1, 0.37], [512, 1024, 1, 14, 1, 0.52], [512, 2048, 1, 7, 1, 0.52], [2048, 512, 1, 7, 1, 0.2], [128, 512, 1, 28, 1, 0.75],
];

const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
const stats = (t: number[]) => { const s = [...t].sort((a, b) => a - b); return { min: s[0]!, p50: s[s.length >> 1]! }; };

function weight(M: number, C: number, K: number, density: number): CompressedTensor {
  const r = mulberry32(M * 7 + C), idx: number[] = [], codes: number[] = [];
  for (let i = 0; i < M * C * K * K; i++) if (r() < density) { idx.push(i); codes.push((Math.floor(r() * 3) + 1) * (r() < 0.5 ? -1 : 1)); }
  return { name: "w", dims: [M, C, K, K], codebook: { kind: "uniform", step: 0.03 }, indices: Uint32Array.from(idx), codes: Int32Array.from(codes) };
}

const k = WasmKernels.create()!;
const team = await ThreadTeam.start(k, 1);
const env = { kernels: k, team };
const rows: (string | number)[][] = [];
try {
  for (const [M, C, K, H, stride, density] of SHAPES) {
    const raw = { pads: { type: "ints" as const, value: K === 3 ? [1, 1, 1, 1] : [0, 0, 0, 0] }, strides: { type: "ints" as const, value: [stride, stride] } };
    const w = weight(M, C, K, density);
    const spec: NodeSpec = {
      node: { opType: "Conv", domain: "", name: "c", inputs: ["x", "w"], outputs: ["y"], attrs: raw }, name: "c", attrs: new Attrs(raw, "Conv"), opset: 13,
      inputShapes: [[1, C, H, H], w.dims], outputShapes: [undefined], inputDtypes: ["float32", "float32"], outputDtypes: ["float32"],
      constants: [undefined, undefined], compressed: [undefined, w], dense: () => { throw new Error("dense weight asked for"); }, threads: 1,
    };
    const plain = bindSparseConv(spec, env, {}, false), blocked = bindSparseConv(spec, env, {}, true);
    const n = C * H * H, xp = k.alloc(n * 4), r = mulberry32(3);
    const xv = k.f32(xp, n);
    for (let i = 0; i < n; i++) xv[i] = r() - 0.5;
    const x: Tensor = { dtype: "float32", dims: [1, C, H, H], data: k.f32(xp, n) };
    const yp = k.alloc(M * H * H * 4);
    const call = (b: typeof plain) => { const t = cpuMs(); b.runFused(x, undefined, 0, Infinity, (len) => k.f32(yp, len), (t) => k.addressOf(t.data as Float32Array)); return cpuMs() - t; };
    const ta: number[] = [], tb: number[] = [];
    for (let i = 0; i < iterations + 2; i++) { const a = call(plain), b = call(blocked); if (i >= 2) { ta.push(a); tb.push(b); } }
    const a = stats(ta), b = stats(tb);
    rows.push([`${M}×${C} ${K}×${K} @${H}`, density, blocked.blocks, a.min, b.min, b.min / a.min, a.p50, b.p50, b.p50 / a.p50]);
    plain.dispose?.(); blocked.dispose?.(); k.free(xp); k.free(yp);
  }
} finally {
  team.stop();
}
say(formatTable(["layer", "density", "blocks", "plain min ms", "blocked min ms", "÷ (min)", "plain p50", "blocked p50", "÷ (p50)"], rows));

for (const file of positionals) {
  const bytes = new Uint8Array(readFileSync(file));
  const a = await (async () => { process.env.OPQ_SPARSE_BLOCKS = "0"; try { return await createSession(bytes, { threads: 1 }); } finally { delete process.env.OPQ_SPARSE_BLOCKS; } })();
  const b = await createSession(bytes, { threads: 1 });
  const input = a.inputs[0]!;
  const x = seededInput(input.shape!.map((d, i) => (i === 0 ? 1 : (d as number))), 1);
  const time = async (s: typeof a) => { const t = cpuMs(); await s.run({ [input.name]: x }); return cpuMs() - t; };
  const ta: number[] = [], tb: number[] = [];
  for (let i = 0; i < iterations + 2; i++) { const p = await time(a), q = await time(b); if (i >= 2) { ta.push(p); tb.push(q); } }
  const sa = stats(ta), sb = stats(tb);
  const blockedLayers = b.info.layers.filter((l, i) => l.residentBytes !== a.info.layers[i]!.residentBytes).length;
  say(`${file.split("/").pop()}: batch 1, 1 thread, CPU ms: unblocked min ${sa.min.toFixed(1)} p50 ${sa.p50.toFixed(1)}, blocked (${blockedLayers} layers) min ${sb.min.toFixed(1)} p50 ${sb.p50.toFixed(1)}: ÷ ${(sb.min / sa.min).toFixed(3)} (min), ${(sb.p50 / sa.p50).toFixed(3)} (p50)`);
  a.dispose(); b.dispose();
}
