/**
 * Calibration time (issue 10: `--calibrate 512` adds ≤ 60 s to ResNet-20 and ≤ 5 min to
 * resnet18-224 on this 2-core machine): for each model, one-shot compression and then calibration
 * of its result, both timed in the same run (wall and this process's CPU time), with the load
 * average before and after, since other jobs share the cores. Fashion-MNIST models calibrate on
 * training images; the 224×224 models (random weights) on seeded random images, timing only.
 * `--phases` prints where each layer's time went.
 * Usage: bun bench/calibration-time.ts [--models resnet20-fmnist.onnx,resnet18-224.onnx]
 *   [--sparsity 0.74] [--bits 3] [--calibrate 512] [--threads 2] [--phases] [--json]
 * @module
 */
import { loadavg } from "node:os";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { compressModel } from "../compressor/mod.ts";
import { readOnnx } from "../format/mod.ts";
import { formatTable, printJson, say } from "../cli/common.ts";
import { sharedPath } from "../cli/shared.ts";
import { calibrateResult, calibrationThreads, fashionMnistCalibration, randomCalibration } from "../cli/commands/compress.ts";

const { values } = parseArgs({
  options: {
    models: { type: "string" }, sparsity: { type: "string" }, bits: { type: "string" }, calibrate: { type: "string" },
    threads: { type: "string" }, phases: { type: "boolean" }, json: { type: "boolean" },
  },
});
const MODELS = (values.models ?? "resnet20-fmnist.onnx,resnet18-224.onnx").split(",").filter(Boolean);
const N = Number(values.calibrate ?? 512), threads = Number(values.threads ?? calibrationThreads());
const sparsity = Number(values.sparsity ?? 0.74), bits = Number(values.bits ?? 3);
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
const load = () => loadavg().map((v) => v.toFixed(2)).join(" ");

const rows: { model: string; compressS: number; compressCpu: number; calibrateS: number; calibrateCpu: number; loadBefore: string; loadAfter: string }[] = [];
for (const file of MODELS) {
  const model = readOnnx(new Uint8Array(readFileSync(sharedPath("models", file))));
  const input = file.includes("fmnist") ? fashionMnistCalibration(N, 1).input : randomCalibration(model, N, 1).input;
  const loadBefore = load();
  let t = performance.now(), c = cpu();
  const r = compressModel(model, { sparsity, bits });
  const compressS = (performance.now() - t) / 1000, compressCpu = cpu() - c;
  t = performance.now(); c = cpu();
  const cal = await calibrateResult(r, input, !values.phases, threads);
  const calibrateS = (performance.now() - t) / 1000, calibrateCpu = cpu() - c;
  rows.push({ model: file, compressS, compressCpu, calibrateS, calibrateCpu, loadBefore, loadAfter: load() });
  say(`${file}: compress ${compressS.toFixed(1)} s, calibrate ${N} images ${calibrateS.toFixed(1)} s wall (${cal.layers.length} layers, ${threads} threads)`);
}
say(formatTable(
  ["model", "compress s", "CPU s", `--calibrate ${N} s`, "CPU s", "calibrate ÷ compress", "load avg before", "after"],
  rows.map((r) => [r.model, +r.compressS.toFixed(1), +r.compressCpu.toFixed(1), +r.calibrateS.toFixed(1), +r.calibrateCpu.toFixed(1), +(r.calibrateS / r.compressS).toFixed(1), r.loadBefore, r.loadAfter]),
));
say(`(${sparsity}, ${bits}), ${threads} threads; CPU = this process, all its threads`);
if (values.json) printJson({ bench: "calibration-time", images: N, threads, sparsity, bits, rows });
