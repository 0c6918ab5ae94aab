/**
 * `opq bench` over the 224x224 models: our runtime vs onnxruntime-web (WASM, same threads) on
 * the FP32 ONNX model and on a `.opq` compressed at (sparsity 0.74, 3 bits), whose peer is the
 * original FP32 ONNX (what a user would otherwise ship). Each runtime runs in its own child
 * process (see cli/commands/bench.ts). Prints a ratio table on stderr, `--json` everything.
 * Usage: bun bench/runtime-bench.ts [--models a.onnx,b.onnx] [--threads T] [--iterations N] [--json]
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
  options: { models: { type: "string" }, threads: { type: "string" }, iterations: { type: "string" }, warmup: { type: "string" }, json: { type: "boolean" } },
});
const models = (values.models ?? "resnet18-224.onnx,mobilenet_v2-224.onnx").split(",");
const options = { threads: Number(values.threads ?? 1), iterations: Number(values.iterations ?? 10), warmup: Number(values.warmup ?? 1) };
const tmp = mkdtempSync(join(tmpdir(), "opq-runtime-bench-"));
const results: (BenchResult & { setting: string; bytes: number })[] = [];
try {
  for (const file of models) {
    const fp32 = sharedPath("models", file);
    const fp32Bytes = new Uint8Array(readFileSync(fp32));
    say(`\n== ${file} FP32`);
    const r = await benchPair(fp32, options);
    say(formatBench(r));
    results.push({ ...r, setting: "fp32", bytes: fp32Bytes.length });
    const opqBytes = encodeOpq(compressModel(readOnnx(fp32Bytes), { method: "opq", ...COMPRESSED }).opq);
    const opqPath = join(tmp, file.replace(/\.onnx$/, `.${COMPRESSED.sparsity}-${COMPRESSED.bits}b.opq`));
    writeFileSync(opqPath, opqBytes);
    say(`\n== ${file} opq ${COMPRESSED.sparsity}/${COMPRESSED.bits}b (${fmtBytes(opqBytes.length)}) vs ort on the FP32 ONNX`);
    const c = await benchPair(opqPath, { ...options, onnx: fp32 });
    say(formatBench(c));
    results.push({ ...c, setting: `opq ${COMPRESSED.sparsity}/${COMPRESSED.bits}b`, bytes: opqBytes.length });
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
say("\nratios ours/ort (< 1: ours faster or smaller)");
say(formatTable(
  ["model", "setting", "file", "load", "warm load", "first", "b1 p50", "b1 p90", "b8 p50", "b8 p90", "peak RSS"],
  results.map((r) => [r.peer.path.split("/").pop()!, r.setting, fmtBytes(r.bytes), r.ratios.loadMs!, r.ratios.warmLoadMs!, r.ratios.firstRunMs!,
    r.ratios.b1p50!, r.ratios.b1p90!, r.ratios.b8p50!, r.ratios.b8p90!, r.ratios.peakRssBytes!]),
));
if (values.json) printJson({ bench: "runtime", options, results: results.map((r) => ({ ...r, opq: { ...r.opq, layers: undefined }, layers: r.opq.layers })) });
