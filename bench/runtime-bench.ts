/**
 * `opq bench` over the 224x224 models: our runtime vs onnxruntime-web (WASM, same threads) on
 * the FP32 ONNX model and on a `.opq` compressed at (sparsity 0.74, 3 bits), whose peer is the
 * original FP32 ONNX (what a user would otherwise ship). Each runtime runs in its own child
 * process (see cli/commands/bench.ts). Prints a ratio table on stderr, `--json` everything.
 * With several thread counts (`--threads 1,2`) it also prints how much faster our runtime gets
 * from the added threads, and ort's, from the same runs. Cold start = load + first run.
 * With --rounds R each pair runs R times, ours and ort alternating, and every figure is the median
 * over the rounds (cli/commands/bench.ts benchPair): on a machine whose speed drifts, a slow minute
 * then lands on both runtimes.
 * Usage: bun bench/runtime-bench.ts [--models a.onnx,b.onnx] [--threads 1,2] [--iterations N] [--rounds R] [--json]
 * (default models: resnet18-224, mobilenet_v2-224 and resnet50-224, the last written by bench/models.ts from a seed)
 * @module
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { compressModel } from "../compressor/mod.ts";
import { encodeOpq, readOnnx } from "../format/mod.ts";
import { fmtBytes, formatTable, printJson, say } from "../cli/common.ts";
import { sharedPath } from "../cli/shared.ts";
import { type BenchResult, benchPair, formatBench } from "../cli/commands/bench.ts";

/** The compressed setting benchmarked: OPQ at this sparsity and bit width. */
const COMPRESSED = { sparsity: 0.74, bits: 3 } as const;

const { values } = parseArgs({
  options: { models: { type: "string" }, threads: { type: "string" }, iterations: { type: "string" }, warmup: { type: "string" }, rounds: { type: "string" }, json: { type: "boolean" } },
});
const models = (values.models ?? "resnet18-224.onnx,mobilenet_v2-224.onnx,resnet50-224.onnx").split(",");
const threadCounts = (values.threads ?? "1").split(",").map(Number);
const base = { iterations: Number(values.iterations ?? 10), warmup: Number(values.warmup ?? 1), rounds: Number(values.rounds ?? 1) };
const tmp = mkdtempSync(join(tmpdir(), "opq-runtime-bench-"));
const results: (BenchResult & { setting: string; bytes: number })[] = [];
try {
  for (const file of models) {
    const fp32 = sharedPath("models", file);
    const fp32Bytes = new Uint8Array(readFileSync(fp32));
    const opqBytes = encodeOpq(compressModel(readOnnx(fp32Bytes), { method: "opq", ...COMPRESSED }).opq);
    const opqPath = join(tmp, file.replace(/\.onnx$/, `.${COMPRESSED.sparsity}-${COMPRESSED.bits}b.opq`));
    writeFileSync(opqPath, opqBytes);
    for (const threads of threadCounts) {
      const options = { ...base, threads };
      say(`\n== ${file} FP32, ${threads} thread(s)`);
      const r = await benchPair(fp32, options);
      say(formatBench(r));
      results.push({ ...r, setting: "fp32", bytes: fp32Bytes.length });
      say(`\n== ${file} opq ${COMPRESSED.sparsity}/${COMPRESSED.bits}b (${fmtBytes(opqBytes.length)}) vs ort on the FP32 ONNX, ${threads} thread(s)`);
      const c = await benchPair(opqPath, { ...options, onnx: fp32 });
      say(formatBench(c));
      results.push({ ...c, setting: `opq ${COMPRESSED.sparsity}/${COMPRESSED.bits}b`, bytes: opqBytes.length });
    }
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
say("\nratios ours/ort, same run, same threads (< 1: ours faster or smaller); cold = load + first run; RSS+ = peak RSS above each runtime's baseline");
const cold = (m: BenchResult["opq"]) => m.loadMs + m.firstRunMs;
const resident = (r: BenchResult) => {
  const i = r.opq.info as { residentWeightBytes?: number; fp32WeightBytes?: number } | undefined;
  return i?.residentWeightBytes !== undefined && i.fp32WeightBytes ? i.residentWeightBytes / i.fp32WeightBytes : NaN;
};
say(formatTable(
  ["model", "setting", "threads", "file", "cold", "b1 p50", "b8 p50", "b1 p50 ms (ours/ort)", "RSS+", "resident ÷ FP32"],
  results.map((r) => [r.peer.path.split("/").pop()!, r.setting, r.threads, fmtBytes(r.bytes), cold(r.opq) / cold(r.ort),
    r.ratios.b1p50!, r.ratios.b8p50!, `${r.opq.latency[0]!.p50.toFixed(1)} / ${r.ort.latency[0]!.p50.toFixed(1)}`, r.ratios.modelRssBytes!, resident(r)]),
));
if (threadCounts.length > 1) {
  const [lo, hi] = [Math.min(...threadCounts), Math.max(...threadCounts)];
  say(`\nspeed-up from ${lo} to ${hi} threads (p50 at ${lo} ÷ p50 at ${hi}), ours and ort`);
  const rows: (string | number)[][] = [];
  for (const r of results.filter((x) => x.threads === hi)) {
    const one = results.find((x) => x.threads === lo && x.setting === r.setting && x.peer.path === r.peer.path);
    if (!one) continue;
    rows.push([r.peer.path.split("/").pop()!, r.setting, one.opq.latency[0]!.p50 / r.opq.latency[0]!.p50, one.opq.latency[1]!.p50 / r.opq.latency[1]!.p50,
      one.ort.latency[0]!.p50 / r.ort.latency[0]!.p50, one.ort.latency[1]!.p50 / r.ort.latency[1]!.p50]);
  }
  say(formatTable(["model", "setting", "ours b1", "ours b8", "ort b1", "ort b8"], rows));
}
if (values.json) printJson({ bench: "runtime", options: { ...base, threads: threadCounts }, results: results.map((r) => ({ ...r, opq: { ...r.opq, layers: undefined }, layers: r.opq.layers })) });
