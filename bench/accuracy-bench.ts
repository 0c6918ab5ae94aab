/**
 * Accuracy of our runtime next to onnxruntime-web on the Fashion-MNIST test set, for each
 * Fashion-MNIST model at FP32 and compressed to `.opq` at (sparsity 0.5, 4 bits) and (0.74, 3).
 * For a `.opq` the oracle runs its dense ONNX export, so both runtimes see the same weights;
 * FP32 rows also show the models/README.md figure. Prints a table on stderr, `--json` a JSON
 * object on stdout. `--settings` replaces the compressed settings measured: a comma-separated list
 * of sparsity/bits[/cap] (cap = --max-layer-sparsity; e.g. `0.6/3/0.9,0.6/3/1` measures what the
 * per-layer cap buys), `--models` the files (comma-separated names in the shared models folder).
 * Usage: bun bench/accuracy-bench.ts [--limit N] [--batch B] [--settings S] [--models M] [--json]
 * @module
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { compressModel } from "../compressor/mod.ts";
import { decodeOpq, encodeOpq, readOnnx, toDenseModel, writeOnnx } from "../format/mod.ts";
import { createSession } from "../runtime/mod.ts";
import { formatTable, printJson, say } from "../cli/common.ts";
import { sharedPath } from "../cli/shared.ts";
import { loadFashionMnist } from "../cli/fashion-mnist.ts";
import { createOrtSession, type InferenceRunner } from "../cli/ort.ts";
import { evaluate } from "../cli/commands/eval.ts";

/** FP32 top-1 on the 10k test set, from ../shared/models/README.md. */
const README_TOP1: Record<string, number> = { "lenet5-fmnist.onnx": 0.8997, "resnet20-fmnist.onnx": 0.9312 };
/** A compression setting: sparsity, bits and optionally the per-layer cap; null is the FP32 model itself. */
type Setting = [number, number, number?] | null;
/** Settings measured by default. */
const DEFAULT_SETTINGS: Setting[] = [null, [0.5, 4], [0.74, 3]];

const { values } = parseArgs({
  options: { limit: { type: "string" }, batch: { type: "string" }, settings: { type: "string" }, models: { type: "string" }, json: { type: "boolean" } },
});
/** Parse `--settings`: "p/b[/cap],…"; anything malformed stops the bench with a message. */
function parseSettings(text: string): Setting[] {
  return text.split(",").map((item) => {
    const parts = item.split("/").map(Number);
    if (parts.length < 2 || parts.length > 3 || parts.some((x) => !Number.isFinite(x))) throw new Error(`--settings: "${item}" is not sparsity/bits[/cap]`);
    return parts as [number, number, number?];
  });
}
const SETTINGS = values.settings ? parseSettings(values.settings) : DEFAULT_SETTINGS;
const MODELS = values.models ? values.models.split(",") : Object.keys(README_TOP1);
const set = loadFashionMnist({ limit: values.limit ? Number(values.limit) : undefined });
const batch = Number(values.batch ?? 100);

const rows: Record<string, unknown>[] = [];
for (const file of MODELS) {
  const fp32Bytes = new Uint8Array(readFileSync(sharedPath("models", file)));
  for (const setting of SETTINGS) {
    let oursBytes: Uint8Array = fp32Bytes, ortBytes: Uint8Array = fp32Bytes, compressMs = 0;
    if (setting) {
      const t = performance.now();
      oursBytes = encodeOpq(compressModel(readOnnx(fp32Bytes), { method: "opq", sparsity: setting[0], bits: setting[1], maxLayerSparsity: setting[2] }).opq);
      compressMs = performance.now() - t;
      ortBytes = writeOnnx(toDenseModel(decodeOpq(oursBytes)));
    }
    const run = async (open: () => Promise<InferenceRunner>) => {
      const runner = await open();
      try { return await evaluate(runner, set, { batch }); } finally { await runner.dispose(); }
    };
    const ours = await run(() => createSession(oursBytes));
    const ort = await run(() => createOrtSession(ortBytes));
    let same = 0;
    for (let i = 0; i < set.count; i++) if (ours.predictions[i] === ort.predictions[i]) same++;
    const row = {
      model: file, setting: setting ? `opq ${setting[0]}/${setting[1]}b${setting[2] === undefined ? "" : ` cap ${setting[2]}`}` : "fp32", bytes: oursBytes.length, compressMs: Math.round(compressMs),
      images: set.count, oursTop1: ours.top1, ortTop1: ort.top1, readmeTop1: setting ? null : README_TOP1[file],
      oursTop5: ours.top5, ortTop5: ort.top5, agreement: same / set.count, oursMs: Math.round(ours.ms), ortMs: Math.round(ort.ms),
    };
    rows.push(row);
    say(`${file} ${row.setting}: ours ${(100 * ours.top1).toFixed(2)}% ort ${(100 * ort.top1).toFixed(2)}% agreement ${(100 * row.agreement).toFixed(2)}%`);
  }
}
const pct = (v: unknown) => (typeof v === "number" ? `${(100 * v).toFixed(2)}%` : "–");
say(formatTable(
  ["model", "setting", "bytes", "images", "top-1 ours", "top-1 ort", "README", "top-5 ours", "agree", "ms ours", "ms ort", "ours/ort"],
  rows.map((r) => [r.model, r.setting, r.bytes, r.images, pct(r.oursTop1), pct(r.ortTop1), pct(r.readmeTop1), pct(r.oursTop5), pct(r.agreement),
    r.oursMs, r.ortMs, (r.oursMs as number) / (r.ortMs as number)] as (string | number)[]),
));
if (values.json) printJson({ bench: "accuracy", rows });
