/**
 * Compression benchmark: OPQ on the shared reference models at the operating points of the report
 * — ResNet-20 at (p*, B) = (0.74, 3) and (0.5, 4), ResNet-18-224 at (0.74, 3) — printing compress
 * time, the Eq. 9 budget check, capped layers, achieved sparsity and file size against FP32 and
 * against the entropy bound. `--json` prints the rows as one JSON array on stdout.
 * Usage: bun bench/compress-bench.ts [--json]
 * @module
 */
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { sharedPath } from "../cli/shared.ts";
import { compressModel, encodeCompressed } from "../compressor/mod.ts";
import { readOnnx } from "../format/mod.ts";

/** The measured operating points. */
const CASES = [
  { model: "resnet20-fmnist.onnx", sparsity: 0.74, bits: 3 },
  { model: "resnet20-fmnist.onnx", sparsity: 0.5, bits: 4 },
  { model: "resnet18-224.onnx", sparsity: 0.74, bits: 3 },
] as const;

const rows = [];
for (const c of CASES) {
  const file = sharedPath("models", c.model);
  const bytes = new Uint8Array(readFileSync(file));
  let t = performance.now();
  const model = readOnnx(bytes);
  const readMs = performance.now() - t;
  t = performance.now();
  const result = compressModel(model, { sparsity: c.sparsity, bits: c.bits, source: basename(file), fp32Bytes: bytes.length });
  const compressMs = performance.now() - t;
  t = performance.now();
  const out = encodeCompressed(result);
  const encodeMs = performance.now() - t;
  const r = result.report, f = r.file!;
  rows.push({
    model: c.model, sparsity: c.sparsity, bits: c.bits, readMs: Math.round(readMs), compressMs: Math.round(compressMs), encodeAndInspectMs: Math.round(encodeMs),
    budgetBins: r.opq!.budgetBins, budgetError: r.opq!.budgetError, capped: r.opq!.capped,
    predictedSparsity: r.opq!.predictedSparsity, achievedSparsity: r.sparsity,
    fp32Bytes: bytes.length, opqBytes: out.length, ratio: f.ratio, nominalRate: f.nominalRate, entropyBoundBytes: Math.round(f.entropyBoundBytes), overBound: f.overBound,
  });
}
if (process.argv.includes("--json")) console.log(JSON.stringify(rows, null, 2));
else for (const r of rows) {
  console.log(`${r.model} p*=${r.sparsity} B=${r.bits}: compress ${r.compressMs} ms (read ${r.readMs} ms, encode+inspect ${r.encodeAndInspectMs} ms)`);
  console.log(`  Eq. 9: ${r.budgetBins.toFixed(9)} bins vs 2^${r.bits} (rel. error ${r.budgetError.toExponential(1)}); capped ${r.capped.length}: ${r.capped.join(", ") || "none"}`);
  console.log(`  sparsity predicted ${(100 * r.predictedSparsity).toFixed(2)}% achieved ${(100 * r.achievedSparsity).toFixed(2)}%`);
  console.log(`  ${r.fp32Bytes} B FP32 → ${r.opqBytes} B .opq: ${r.ratio.toFixed(2)}× (nominal ${r.nominalRate.toFixed(2)}×); entropy bound ${r.entropyBoundBytes} B, file/bound ${r.overBound.toFixed(3)}`);
}
