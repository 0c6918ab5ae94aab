/**
 * `opq compress` – an FP32 ONNX model in, a `.opq` out: OPQ one-shot pruning-quantization (default)
 * or FPGM filter removal + APoT. Prints a per-layer table (or with --json one object holding the
 * whole report) and can write a self-contained HTML report.
 * @module
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { mulberry32 as seededRandom } from "../../format/mod.ts";
import { basename, dirname, extname, join, resolve } from "node:path";
import { COMPRESS_DEFAULTS } from "../../compressor/mod.ts";
import { chooseOutput, type Command, commandLine, EnvironmentError, VERSION, fmtBytes, fmtNum, formatTable, numberOption, type ParsedArgs, printJson, progress, say, stringOption, UsageError, wantsJson } from "../common.ts";
import { bundledFile, DEFAULT_MODEL } from "../shared.ts";
import { type FashionMnist, FMNIST_SIDE, loadFashionMnist, normalizePixels } from "../fashion-mnist.ts";
import type { CalibrateOptions, CalibrationResult, CompressReport, CompressResult, ModelRunner } from "../../compressor/mod.ts";
import type { Model, OpqModel, Preprocess, Tensor } from "../../format/mod.ts";

/** The bundled models trained on Fashion-MNIST: compressed without --labels, they carry its class names. */
const FMNIST_MODELS = ["models/resnet20-fmnist.onnx", "models/lenet5-fmnist.onnx"];

/**
 * Class names to store in the file (`metadata.labels`, which the server answers with): `--labels
 * fashion-mnist`, or a file holding a JSON array or one name per line; by default Fashion-MNIST's
 * for the bundled models (and for every finetuned model: finetune trains on Fashion-MNIST).
 * Checked against the model's class count when its output declares one.
 */
export async function labelsFor(args: ParsedArgs, input: string, model: Model, fashionMnist = false): Promise<string[] | undefined> {
  const { FMNIST_CLASSES } = await import("../../server/samples.ts");
  const raw = stringOption(args, "labels");
  let labels: string[] | undefined;
  if (raw === "fashion-mnist") labels = [...FMNIST_CLASSES];
  else if (raw !== undefined) {
    let text: string;
    try {
      text = readFileSync(raw, "utf8");
    } catch (e) {
      throw new EnvironmentError("NOT_FOUND", `--labels: cannot read ${raw}: ${(e as Error).message}`);
    }
    const trimmed = text.trim();
    const parsed: unknown = trimmed.startsWith("[") ? JSON.parse(trimmed) : trimmed.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
    if (!Array.isArray(parsed) || !parsed.every((l) => typeof l === "string")) throw new UsageError(`--labels: ${raw} must hold a JSON array of strings or one name per line`);
    labels = parsed;
  } else if (fashionMnist || FMNIST_MODELS.some((m) => resolve(bundledFile(m)) === resolve(input))) labels = [...FMNIST_CLASSES];
  const classes = model.graph.outputs[0]?.shape?.at(-1);
  if (labels && typeof classes === "number" && classes > 0 && labels.length !== classes) {
    throw new UsageError(`--labels: ${labels.length} names for a model with ${classes} classes`);
  }
  return labels;
}

/** How far below its target the stored sparsity may fall before compress warns (one point of sparsity). */
const SHORTFALL_WARNING = 0.01;

/** A warning when the stored sparsity falls short of the target (the per-layer cap binds everywhere). */
export function shortfallWarnings(report: CompressReport): string[] {
  if (report.method !== "opq" || report.sparsity >= report.targetSparsity - SHORTFALL_WARNING) return [];
  const cap = report.options.maxLayerSparsity as number;
  return [
    `asked for sparsity ${pct(report.targetSparsity)} but stored ${pct(report.sparsity)}: the per-layer cap ${pct(cap)} binds in ${report.opq!.capped.length} of ${report.layers.length} layers; ` +
    `raise --max-layer-sparsity (1 = no cap) to reach the target`,
  ];
}

/** The plain table: node name, weights, kept %, bits, bytes in the file, RMS error of the layer's weights. */
function plainRows(report: CompressReport): (string | number)[][] {
  return report.layers.map((l) => {
    const sse = l.realPruningError !== undefined ? l.realPruningError + (l.realQuantMse ?? 0) * l.params * (1 - (l.maskSparsity ?? l.sparsity)) : (l.mse ?? NaN) * l.params;
    return [l.node || l.name, l.params, pct(1 - l.sparsity), fmtNum(Math.round(10 * l.bits) / 10), Math.round(((l.fileBits ?? 0) * l.params) / 8), sci(Math.sqrt(sse / l.params))];
  });
}

/**
 * The one place the compressor meets the runtime: calibration runs each cut of the network with
 * a runtime session on `threads` threads (public API only), each batch whole (not image by image:
 * FP32 ResNet-18 at 2 threads, 64 images, 8.7–9.1 CPU s whole against 9.6–9.7 s split).
 */
export const calibrationRunner = (threads = 1): ModelRunner => async (model: Model) => {
  const { createSession } = await import("../../runtime/mod.ts");
  return createSession(model, { threads, splitBatch: false });
};

/** Threads for calibration: every core the host reports (2 here), at most 8. */
export function calibrationThreads(): number {
  return Math.max(1, Math.min(8, availableParallelism()));
}

/**
 * `n` calibration images drawn without replacement by a seeded shuffle of the Fashion-MNIST
 * training set (never the test set), preprocessed as in training.
 */
export function fashionMnistCalibration(n: number, seed: number, source?: string | FashionMnist): { input: Tensor; description: string } {
  const train = typeof source === "object" ? source : loadFashionMnist({ dir: source, split: "train" });
  if (n > train.count) throw new UsageError(`--calibrate ${n}: the training set has only ${train.count} images`);
  const rnd = seededRandom(seed);
  const order = Uint32Array.from({ length: train.count }, (_, i) => i);
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(rnd() * (train.count - i));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const px = FMNIST_SIDE * FMNIST_SIDE, data = new Float32Array(n * px);
  for (let i = 0; i < n; i++) normalizePixels(train.pixels.subarray(order[i]! * px, (order[i]! + 1) * px), data, i * px);
  return { input: { dtype: "float32", dims: [n, 1, FMNIST_SIDE, FMNIST_SIDE], data }, description: `Fashion-MNIST training set, ${n} images (seed ${seed})` };
}

/**
 * `n` seeded standard-normal images of the model's input shape (batch axis = n): enough to time
 * calibration on a model without data (the 224×224 models with random weights), never to judge it.
 */
export function randomCalibration(model: Model, n: number, seed: number): { input: Tensor; description: string } {
  const g = model.graph, v = g.inputs.find((i) => !Object.hasOwn(g.initializers, i.name));
  const dims = v?.shape?.slice(1);
  if (!v || !dims || !dims.every((d) => typeof d === "number" && d > 0)) throw new UsageError(`--data random needs a model input of known shape, got ${v ? JSON.stringify(v.shape) : "none"}`);
  const per = (dims as number[]).reduce((a, b) => a * b, 1), rnd = seededRandom(seed), data = new Float32Array(n * per);
  for (let i = 0; i < data.length; i++) data[i] = Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd());
  return { input: { dtype: "float32", dims: [n, ...(dims as number[])], data }, description: `${n} random normal images (seed ${seed}; for timing only)` };
}

/** Fashion-MNIST's class names, stored in the metadata beside its preprocessing. */
export const FMNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/**
 * The preprocessing to apply to a folder of images for `model`: `--preprocess JSON` if given;
 * else for a 1-channel input Fashion-MNIST's, for a 3-channel one ImageNet's (resize the short
 * side to 256/224 of the input, center crop to it, RGB, the torchvision mean/std).
 */
export async function preprocessFor(model: Model, json: string | undefined): Promise<Preprocess> {
  const { defaultPreprocess, parsePreprocess } = await import("../../format/mod.ts");
  if (json !== undefined) {
    let v: unknown;
    try { v = JSON.parse(json); } catch (e) { throw new UsageError(`--preprocess must be JSON: ${(e as Error).message}`); }
    return parsePreprocess(v);
  }
  return defaultPreprocess(model.graph.inputs.find((i) => !Object.hasOwn(model.graph.initializers, i.name))?.shape);
}

/**
 * Calibration images from `--data`: "random" (timing only), a `.npy` array (the model input as
 * is), a folder of Fashion-MNIST IDX files, a folder of class subfolders of PNG/JPEG images, or
 * by default the shared Fashion-MNIST training set. Checked against the model's input shape.
 */
export async function calibrationData(model: Model, n: number, seed: number, data: string | undefined, preprocessJson: string | undefined): Promise<{ input: Tensor; description: string; preprocess?: Preprocess; classes?: string[] }> {
  const { checkInputShape, loadImageFolder, parseNpy } = await import("../../compressor/mod.ts");
  const input = model.graph.inputs.find((i) => !Object.hasOwn(model.graph.initializers, i.name))!;
  let out: { input: Tensor; description: string; preprocess?: Preprocess; classes?: string[] };
  if (data === "random") out = randomCalibration(model, n, seed);
  else if (data !== undefined && data.toLowerCase().endsWith(".npy")) {
    const t = parseNpy(new Uint8Array(readFileSync(data)), data);
    const count = Math.min(n, t.dims[0] ?? 0), per = t.data.length / Math.max(1, t.dims[0] ?? 1);
    out = { input: { ...t, dims: [count, ...t.dims.slice(1)], data: (t.data as Float32Array).slice(0, count * per) }, description: `${data}, first ${count} arrays` };
  } else if (data === undefined || existsSync(join(data, "train-images-idx3-ubyte.gz"))) {
    const { FASHION_MNIST_PREPROCESS } = await import("../../format/mod.ts");
    out = { ...fashionMnistCalibration(n, seed, data), preprocess: FASHION_MNIST_PREPROCESS, classes: FMNIST_CLASSES };
  } else {
    const p = await preprocessFor(model, preprocessJson);
    const set = loadImageFolder(data, p, { limit: n });
    // Sorted folder names are the output order of a model trained on the same folder layout
    // (torchvision's ImageFolder sorts them too); stored only when they cover every output.
    const outs = model.graph.outputs[0]?.shape?.at(-1);
    const classes = outs === set.classes.length ? set.classes : undefined;
    out = { input: set.input, description: `${data}, ${set.input.dims[0]} images of ${set.classes.length} classes`, preprocess: p, classes };
  }
  checkInputShape(input, out.input.dims);
  return out;
}

/**
 * Calibrate a compressModel result in place (OPQ's pruning masks and steps held; see
 * compressor/calibrate-model.ts) on `threads` threads, the products on the runtime's WASM GEMM;
 * one progress line per layer on stderr unless `quiet`. Returns what calibration did.
 */
export async function calibrateResult(result: Pick<CompressResult, "float" | "opq" | "masks">, input: Tensor, quiet: boolean, threads = calibrationThreads(), options: CalibrateOptions = {}): Promise<CalibrationResult> {
  const { calibrateModel } = await import("../../compressor/mod.ts");
  const { createMatrixKernels } = await import("../../runtime/mod.ts");
  const kernels = await createMatrixKernels(threads);
  const start = performance.now();
  try {
    const cal = await calibrateModel(result.float, result.opq, input, calibrationRunner(threads), { ...options, masks: result.masks, gemm: kernels?.gemm }, (done, total, name, layer) => {
      if (quiet || !layer) return;
      const p = layer.phases;
      say(`calib ${String(done).padStart(String(total).length)}/${total} ${name} ${layer.rows}×${layer.inputs}, ${layer.samples} rows: ${fmtNum(layer.seconds)} s (collect ${fmtNum(p.collect)}, solve ${fmtNum(p.solve)}, forward ${fmtNum(p.forward)})${layer.rateWeight > 0 ? `, rate μ ${fmtNum(layer.rateWeight)}` : ""}, total ${fmtNum((performance.now() - start) / 1000)} s`);
    });
    result.opq = cal.opq;
    return cal;
  } finally {
    kernels?.dispose();
  }
}

/** Default output: out/<input name>.opq under the working directory (inputs may sit in read-only folders). */
export function defaultOutput(input: string): string {
  return join("out", basename(input, extname(input)) + ".opq");
}

/** CLI options → CompressOptions; bad or inapplicable values are UsageErrors. */
export function compressOptions(args: ParsedArgs): { method: "opq" | "gm-apot"; sparsity?: number; bits?: number; maxLayerSparsity?: number; filterRate?: number } {
  const method = stringOption(args, "method", "opq")!;
  if (method !== "opq" && method !== "gm-apot") throw new UsageError(`--method must be opq or gm-apot, got ${JSON.stringify(method)}`);
  const given = (k: string) => args.values[k] !== undefined;
  const wrong = method === "opq" ? ["filter-rate"] : ["sparsity", "max-layer-sparsity"];
  for (const k of wrong) if (given(k)) throw new UsageError(`--${k} does not apply to --method ${method}`);
  const bits = given("bits") ? numberOption(args, "bits", 0, 1, 16) : undefined;
  if (method === "gm-apot" && bits !== undefined && bits !== 3 && bits !== 4) throw new UsageError(`--bits must be 3 or 4 with --method gm-apot, got ${bits}`);
  return {
    method, bits,
    sparsity: given("sparsity") ? numberOption(args, "sparsity", 0, 0, 0.999) : undefined,
    maxLayerSparsity: given("max-layer-sparsity") ? numberOption(args, "max-layer-sparsity", 0, 0.01, 1) : undefined,
    filterRate: given("filter-rate") ? numberOption(args, "filter-rate", 0, 0, 0.99) : undefined,
  };
}

const pct = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? "" : (100 * v).toFixed(1) + "%");
const sci = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? "" : v.toExponential(2));

/**
 * The warning for post-training gm-apot settings that lose most of the accuracy without training:
 * any filter removal (FPGM removes filters the network was trained to use) or 3-bit APoT weights.
 * Measured on ResNet-20, 10k test images, FP32 93.12% (filter rate / bits → top-1): 0/4 92.15%,
 * 0/3 89.44%, 0.1/4 83.62%, 0.1/3 75.24%, 0.3/4 (the defaults) 13.76%. 4-bit APoT alone is not warned.
 */
export function gmApotWarning(o: { method: string; filterRate?: number; bits?: number }): string | undefined {
  if (o.method !== "gm-apot") return undefined;
  const rate = o.filterRate ?? COMPRESS_DEFAULTS.filterRate, bits = o.bits ?? COMPRESS_DEFAULTS.apotBits;
  if (rate <= 0 && bits >= 4) return undefined;
  return `post-training gm-apot${rate > 0 ? ` removes ${Math.round(100 * rate)}% of the filters` : ""}${rate > 0 && bits < 4 ? " and" : ""}${bits < 4 ? ` quantizes to ${bits}-bit APoT` : ""} without retraining, which usually collapses accuracy ` +
    "(ResNet-20 at the defaults: 13.3% top-1, FP32 93.12%); train it instead with `opq train --method spq` or `--method ppq` " +
    "(GM pruning + APoT weights and activations, trained), or check this file with `opq eval`";
}

/** The options that choose an allocation (what `compressOptions` reads), shared with `opq plan`. */
export const ALLOCATION_OPTIONS = {
  output: { type: "string", short: "o" },
  method: { type: "string" },
  sparsity: { type: "string" },
  bits: { type: "string" },
  "max-layer-sparsity": { type: "string" },
  "filter-rate": { type: "string" },
} as const satisfies Command["options"];

/** The command. */
export const command: Command = {
  name: "compress",
  summary: "compress an FP32 ONNX model to .opq (OPQ one-shot pruning-quantization, or FPGM + APoT)",
  usage: [
    "compress [in.onnx] [-o out.opq] [--method opq] [--sparsity P] [--bits B] [--max-layer-sparsity C] [--report r.html] [--eval] [--labels L] [--verbose] [--force] [--json]",
    "compress finetuned.onnx --plan plan.safetensors [-o out.opq] [--json]   (encode with `opq plan`'s masks and steps)",
    "compress [in.onnx] --method gm-apot [--filter-rate R] [--bits 3|4] [-o out.opq] [--report r.html] [--json]",
    "compress [in.onnx] … --calibrate N [--data D] [--preprocess JSON] [--seed S]: after one-shot compression, re-solve the kept weights layer by layer on N images (masks and steps held; 512 is a good N)",
    "  --data: a folder of class subfolders of PNG/JPEG images, an .npy array (the model input as is), a Fashion-MNIST IDX folder (default: the shared training set), or random (timing only)",
    '  --preprocess \'{"resize":256,"crop":[224,224],"channels":"rgb","mean":[0.485,0.456,0.406],"std":[0.229,0.224,0.225]}\' for image folders; stored in the .opq with the class names',
    "(no model: the bundled models/resnet20-fmnist.onnx → out/resnet20-fmnist.opq)",
    "defaults: --sparsity 0.5 --bits 3 --max-layer-sparsity 0.9; the paper's 0.74/3 collapses one-shot: add --calibrate 512 (ResNet-20: 11.9% → 91.6%) or use `opq finetune`",
  ].join("\n"),
  options: {
    ...ALLOCATION_OPTIONS,
    report: { type: "string" },
    plan: { type: "string" },
    calibrate: { type: "string" },
    data: { type: "string" },
    seed: { type: "string" },
    preprocess: { type: "string" },
    verbose: { type: "boolean", short: "v" },
    force: { type: "boolean" },
    labels: { type: "string" },
    eval: { type: "boolean" },
    "eval-limit": { type: "string" },
  },
  help: {
    output: "the .opq to write (default out/<input name>.opq; an existing file needs --force)",
    method: "opq (default): one-shot pruning + quantization; gm-apot: FPGM filter removal + APoT levels",
    sparsity: "fraction of weights to prune, 0–0.999 (default 0.5)",
    bits: "quantization bits, 1–16 (default 3; gm-apot: 3 or 4)",
    "max-layer-sparsity": "cap on any one layer's sparsity, 0.01–1 (default 0.9; 1 = no cap, the paper's allocation)",
    "filter-rate": "gm-apot only: fraction of filters FPGM removes per conv, 0–0.99 (default 0.3)",
    report: "also write a self-contained HTML report to this file",
    verbose: "add the paper's columns (τ, β, predicted and real errors) to the table",
    force: "overwrite the output if it exists",
    labels: "class names to store: fashion-mnist, or a file (JSON array or one per line); default Fashion-MNIST's for the bundled models, else none",
    eval: "measure the compressed model's top-1 on the Fashion-MNIST test images and store it in the file and the report",
    "eval-limit": "with --eval: the first N test images (default all 10,000)",
    data: "with --eval: the Fashion-MNIST folder; with --calibrate: the calibration images (see above)",
    plan: "encode with the masks and steps of `opq plan` (no new allocation)",
    calibrate: "re-solve the kept weights on N images after one-shot compression (masks and steps held)",
    seed: "with --calibrate: seed of the image draw (default 1)",
    preprocess: "with --calibrate on an image folder: the preprocessing as JSON (stored in the .opq)",
  },
  async run(args) {
    if (args.positionals.length > 1) throw new UsageError(`one input model only, got ${args.positionals.length}`);
    const input = args.positionals[0] ?? DEFAULT_MODEL;
    const planPath = stringOption(args, "plan");
    const htmlPath = stringOption(args, "report");
    if (planPath !== undefined) return (await import("./plan.ts")).compressWithPlanCommand(args, input, chooseOutput(args, defaultOutput(input), [input]), planPath);
    const opts = compressOptions(args);
    const json = wantsJson(args);
    const calibrate = args.values.calibrate !== undefined ? numberOption(args, "calibrate", 0, 1, 1e6) : undefined;
    if (calibrate !== undefined && !Number.isInteger(calibrate)) throw new UsageError(`--calibrate must be a whole number of images, got ${calibrate}`);
    for (const k of ["seed", "preprocess"]) if (calibrate === undefined && args.values[k] !== undefined) throw new UsageError(`--${k} applies to --calibrate only`);
    if (calibrate === undefined && args.values.eval !== true && args.values.data !== undefined) throw new UsageError("--data applies to --calibrate and --eval only");
    const seed = numberOption(args, "seed", 1, 0, 2 ** 32 - 1);
    // After the options: a bad argument is a usage error whether or not the output exists.
    const output = chooseOutput(args, defaultOutput(input), [input]);
    const { assertNotInput, readOnnx, writeFileAtomic } = await import("../../format/mod.ts");
    // Through symlinks and hardlinks too, and before the work: a refusal costs nothing.
    assertNotInput(output, [input]);
    if (htmlPath) assertNotInput(htmlPath, [input, output]);
    const { compressModel, encodeCompressed, renderReportHtml } = await import("../../compressor/mod.ts");

    const warning = gmApotWarning(opts);
    if (warning) say(`warning: ${warning}`);
    const bytes = new Uint8Array(readFileSync(input));
    const model = readOnnx(bytes);
    const labels = await labelsFor(args, input, model);
    const evalLimit = args.values["eval-limit"] !== undefined ? Math.floor(numberOption(args, "eval-limit", 10_000, 1, 10_000)) : undefined;
    let bar: ReturnType<typeof progress> | undefined, phase = "", last = 0;
    const result = compressModel(model, { ...opts, source: basename(input), fp32Bytes: bytes.length }, (p, done, total) => {
      if (p !== phase) { bar?.done(); bar = progress(p.padEnd(6), total, json); phase = p; last = 0; }
      bar!.tick(done - last);
      last = done;
    });
    bar?.done();
    let oneShot: OpqModel | undefined;
    if (calibrate !== undefined) {
      oneShot = result.opq;
      const data = await calibrationData(model, calibrate, seed, stringOption(args, "data"), stringOption(args, "preprocess"));
      const cal = await calibrateResult(result, data.input, json);
      const { CLASSES_KEY, PREPROCESS_KEY } = await import("../../format/mod.ts");
      // What eval and the server must apply to new images: exactly what calibration used.
      if (data.preprocess) result.opq.metadata = { ...result.opq.metadata, [PREPROCESS_KEY]: data.preprocess, ...(data.classes && !labels ? { [CLASSES_KEY]: data.classes } : {}) };
      result.report.calibration = { images: cal.images, data: data.description, seconds: cal.seconds, target: "float", layers: cal.layers, skipped: cal.skipped };
    }
    if (labels) result.opq.metadata = { ...result.opq.metadata, labels };
    result.report.run = { command: commandLine(), version: VERSION };
    if (args.values.eval === true) {
      // Measured on the compressed model itself and stored in the file, so the server and the page can show it.
      const { measureTop1 } = await import("./eval.ts");
      result.report.accuracy = await measureTop1(result.opq, { limit: evalLimit, dir: calibrate === undefined ? stringOption(args, "data") : undefined, quiet: json });
      result.opq.metadata = { ...result.opq.metadata, accuracy: result.report.accuracy };
    }
    if (oneShot && result.report.calibration) {
      // The one-shot file as it would be written, with the same metadata but the calibration record.
      const { encodeOpq } = await import("../../format/mod.ts");
      const { calibration: _, ...metadata } = result.opq.metadata as Record<string, unknown>;
      result.report.calibration.uncalibratedBytes = encodeOpq({ ...oneShot, metadata }).length;
    }
    const enc = progress("encode", 1, json);
    const out = encodeCompressed(result);
    enc.done();
    mkdirSync(dirname(resolve(output)), { recursive: true });
    writeFileAtomic(output, out, { inputs: [input] });
    const { report } = result;
    const warnings = shortfallWarnings(report);
    if (htmlPath) {
      mkdirSync(dirname(resolve(htmlPath)), { recursive: true });
      writeFileAtomic(htmlPath, renderReportHtml(report), { inputs: [input, output] });
    }
    if (json) {
      printJson({ input, output, ...(htmlPath ? { html: htmlPath } : {}), ...(warnings.length || warning ? { warnings: [...(warning ? [warning] : []), ...warnings] } : {}), ...report });
      return;
    }
    const f = report.file!;
    const verbose = args.values.verbose === true;
    if (!verbose) {
      say(formatTable(["layer", "weights", "kept", "bits", "bytes", "error (rms)"], plainRows(report)));
      say(`\nsparsity: target ${pct(report.targetSparsity)}, stored ${pct(report.sparsity)}${report.method === "opq" && report.opq!.capped.length ? `; ${report.opq!.capped.length} layer(s) capped at ${pct(report.options.maxLayerSparsity as number)}` : ""} (--verbose: the paper's τ, β and error columns)`);
    } else if (report.method === "opq") {
      say(formatTable(
        ["layer", "params", "τ LM", "τ MLE", "pred", "β-only", "achieved", "cap", "Δ", "bins", "bits/w", "prune err pred", "real", "quant mse pred", "real"],
        report.layers.map((l) => [l.name, l.params, sci(l.tauLm), sci(l.tauMle), pct(l.predictedSparsity), pct(l.analyticSparsity), pct(l.sparsity), l.capped ? "yes" : "", sci(l.step ?? undefined), l.avgBins ?? 0, l.fileBits ?? 0, sci(l.predictedPruningError), sci(l.realPruningError), sci(l.predictedQuantMse), sci(l.realQuantMse)]),
      ));
      const o = report.opq!;
      say(`\nβ ${sci(o.betaAnalytic)} (Eq. 6) → ${sci(o.beta)} after capping ${o.capped.length} layer(s) at ${pct(report.options.maxLayerSparsity as number)}${o.capped.length ? ": " + o.capped.join(", ") : ""}`);
      say(`sparsity: target ${pct(report.targetSparsity)}, Laplace-predicted ${pct(o.predictedSparsity)}, mask ${pct(o.maskSparsity)}, stored ${pct(report.sparsity)}`);
      say(`bins: (1/N̄)Σ2S_i/Δ_i = ${fmtNum(o.budgetBins)} = 2^${report.bits} (rel. error ${sci(o.budgetError)}), rounded K average ${fmtNum(o.roundedBins)}`);
      say(`errors: pruning predicted ${sci(o.predictedPruningError)} real ${sci(o.realPruningError)}; quantization Σ Δ²/12 ${sci(o.predictedQuantError)} real ${sci(o.realQuantError)}`);
    } else {
      say(formatTable(
        ["layer", "params", "filters", "removed", "scheme", "bits", "α / Δ", "stored sparsity", "mse", "bits/w"],
        report.layers.map((l) => [l.name, l.params, l.filters ?? 0, l.removedFilters ?? 0, l.scheme ?? "", l.bits, sci(l.alpha ?? l.step ?? undefined), pct(l.sparsity), sci(l.mse), l.fileBits ?? 0]),
      ));
      const g = report.gmApot!;
      say(`\nFPGM removed filters in ${g.pruned.length} conv(s); skipped ${g.skippedConvs.length}:`);
      for (const s of g.skippedConvs) say(`  ${s.node}: ${s.reason}`);
    }
    say(`\n${basename(input)} ${fmtBytes(report.fp32Bytes)} → ${output} ${fmtBytes(f.bytes)}: ${fmtNum(f.ratio)}× smaller than FP32 ` +
      `(nominal rate ${fmtNum(f.nominalRate)}×; entropy bound ${fmtBytes(Math.round(f.entropyBoundBytes))}, file/bound ${fmtNum(f.overBound)}; ${fmtNum(f.bitsPerWeight)} bits/weight) in ${fmtNum(report.seconds)} s`);
    const c = report.calibration;
    if (c) {
      say(`\ncalibration on ${c.data}: ${fmtNum(c.seconds)} s; relative layer output error against the FP32 network, one-shot → calibrated:`);
      say(formatTable(
        ["layer", "op", "R×K", "samples", "error one-shot", "calibrated", "stored", "→", "bias", "s", "collect", "solve", "forward"],
        c.layers.map((l) => [l.name, l.opType, `${l.rows}×${l.inputs}${l.groups > 1 ? `/${l.groups}` : ""}`, l.samples, sci(l.errorBefore), sci(l.errorAfter), l.storedBefore, l.storedAfter, l.bias, l.seconds.toFixed(2), l.phases.collect.toFixed(2), l.phases.solve.toFixed(2), l.phases.forward.toFixed(2)]),
      ));
      for (const s of c.skipped) say(`  not calibrated: ${s.name} (${s.reason})`);
      if (c.uncalibratedBytes) say(`file: ${fmtBytes(f.bytes)} calibrated vs ${fmtBytes(c.uncalibratedBytes)} one-shot (${((100 * f.bytes) / c.uncalibratedBytes - 100).toFixed(2)}%)`);
    }
    for (const w of warnings) say(`warning: ${w}`);
    if (htmlPath) say(`report: ${htmlPath}`);
    const acc = report.accuracy;
    if (acc) say(`top-1 ${(100 * acc.top1).toFixed(2)}% on ${acc.images} ${acc.dataset} test images (stored in the file)`);
    else say(`accuracy is not measured here: check it with \`opq eval ${output}\` (one-shot compression loses accuracy at high sparsity; \`opq finetune\` recovers it)`);
  },
};
