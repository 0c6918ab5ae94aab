/**
 * Calibration sweep (issue 10): for each model and each (sparsity, bits) in the grid, top-1 and
 * file size of the one-shot `.opq` and of the same file after `--calibrate` (N training images,
 * masks and steps held), both measured in the same run by our runtime on the first `--limit`
 * Fashion-MNIST test images. Prints a table with the calibrated/one-shot ratios on stderr,
 * writes a size–accuracy plot page (`--html`, default out/calibration-sweep.html) and with
 * `--json` one object on stdout.
 * Usage: bun bench/calibration-sweep.ts [--models lenet5-fmnist.onnx,resnet20-fmnist.onnx]
 *   [--sparsity 0.5,0.6,0.7,0.8,0.9] [--bits 2,3,4] [--calibrate 512] [--limit 2000] [--html F] [--json]
 *   [--max-rows R] [--rows-per-input P] [--damp D]  (calibration knobs, default CALIBRATE_DEFAULTS)
 * @module
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import { compressModel, renderSweepHtml, type SizeAccuracyPoint } from "../compressor/mod.ts";
import { encodeOpq, type OpqModel, readOnnx } from "../format/mod.ts";
import { createSession } from "../runtime/mod.ts";
import { formatTable, printJson, say } from "../cli/common.ts";
import { sharedPath } from "../cli/shared.ts";
import { loadFashionMnist } from "../cli/fashion-mnist.ts";
import { evaluate } from "../cli/commands/eval.ts";
import { calibrateResult, fashionMnistCalibration } from "../cli/commands/compress.ts";

const { values } = parseArgs({
  options: {
    models: { type: "string" }, sparsity: { type: "string" }, bits: { type: "string" }, calibrate: { type: "string" },
    limit: { type: "string" }, html: { type: "string" }, json: { type: "boolean" },
    "max-rows": { type: "string" }, "rows-per-input": { type: "string" }, damp: { type: "string" },
  },
});
const list = (v: string | undefined, d: string) => (v ?? d).split(",").map((x) => x.trim()).filter(Boolean);
const MODELS = list(values.models, "lenet5-fmnist.onnx,resnet20-fmnist.onnx");
const SPARSITY = list(values.sparsity, "0.5,0.6,0.7,0.8,0.9").map(Number);
const BITS = list(values.bits, "2,3,4").map(Number);
const N = Number(values.calibrate ?? 512);
const test = loadFashionMnist({ limit: Number(values.limit ?? 2000) });
const train = loadFashionMnist({ split: "train" });
const calib = fashionMnistCalibration(N, 1, train).input;
const knobs = {
  ...(values["max-rows"] !== undefined ? { maxRows: Number(values["max-rows"]) } : {}),
  ...(values["rows-per-input"] !== undefined ? { minRowsPerInput: Number(values["rows-per-input"]) } : {}),
  ...(values.damp !== undefined ? { damp: Number(values.damp) } : {}),
};
if (Object.keys(knobs).length) say(`calibration knobs: ${JSON.stringify(knobs)}`);

const top1 = async (m: OpqModel | Uint8Array) => {
  const s = await createSession(m);
  try { return (await evaluate(s, test, { batch: 100 })).top1; } finally { s.dispose(); }
};

const rows: { model: string; sparsity: number; bits: number; bytes: number; top1: number; calBytes: number; calTop1: number; calSeconds: number }[] = [];
const plots: { model: string; points: SizeAccuracyPoint[] }[] = [];
for (const file of MODELS) {
  const bytes = new Uint8Array(readFileSync(sharedPath("models", file)));
  const model = readOnnx(bytes);
  const points: SizeAccuracyPoint[] = [{ series: "FP32", label: "fp32", bytes: bytes.length, top1: await top1(bytes) }];
  for (const sparsity of SPARSITY) {
    for (const bits of BITS) {
      const r = compressModel(model, { sparsity, bits });
      const oneShot = encodeOpq(r.opq);
      const a = await top1(oneShot);
      const cal = await calibrateResult(r, calib, true, undefined, knobs);
      const calibrated = encodeOpq(r.opq);
      const b = await top1(calibrated);
      rows.push({ model: file, sparsity, bits, bytes: oneShot.length, top1: a, calBytes: calibrated.length, calTop1: b, calSeconds: cal.seconds });
      points.push({ series: "one-shot", label: `${sparsity}/${bits}`, bytes: oneShot.length, top1: a }, { series: `calibrated (${N})`, label: `${sparsity}/${bits}`, bytes: calibrated.length, top1: b });
      say(`${file} (${sparsity}, ${bits}): one-shot ${(100 * a).toFixed(2)}% ${oneShot.length} B → calibrated ${(100 * b).toFixed(2)}% ${calibrated.length} B in ${cal.seconds.toFixed(1)} s`);
    }
  }
  plots.push({ model: file, points });
}
const pct = (v: number) => `${(100 * v).toFixed(2)}%`;
say(formatTable(
  ["model", "sparsity", "bits", "one-shot B", "top-1", "calibrated B", "top-1", "size ratio", "Δ top-1 (pt)", "calib s"],
  rows.map((r) => [r.model, r.sparsity, r.bits, r.bytes, pct(r.top1), r.calBytes, pct(r.calTop1), r.calBytes / r.bytes, +(100 * (r.calTop1 - r.top1)).toFixed(2), +r.calSeconds.toFixed(1)]),
));
say(`top-1 on the first ${test.count} test images; calibration on ${N} training images`);
const html = values.html ?? "out/calibration-sweep.html";
mkdirSync(dirname(html), { recursive: true });
writeFileSync(html, renderSweepHtml(`Calibration sweep: one-shot OPQ vs. calibrated (${N} images), top-1 on ${test.count} test images`, plots));
say(`plot: ${html}`);
if (values.json) printJson({ bench: "calibration-sweep", images: test.count, calibration: N, rows });
