/**
 * `opq compress` – an FP32 ONNX model in, a `.opq` out: OPQ one-shot pruning-quantization (default)
 * or FPGM filter removal + APoT. Prints a per-layer table (or with --json one object holding the
 * whole report) and can write a self-contained HTML report.
 * @module
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mulberry32 as seededRandom } from "../../format/mod.ts";
import { basename, dirname, extname, join, resolve } from "node:path";
import { type Command, fmtBytes, fmtNum, formatTable, numberOption, type ParsedArgs, printJson, progress, say, stringOption, UsageError, wantsJson } from "../common.ts";
import { DEFAULT_MODEL } from "../shared.ts";
import { type FashionMnist, FMNIST_SIDE, loadFashionMnist, normalizePixels } from "../fashion-mnist.ts";
import type { CalibrationResult, CompressResult, ModelRunner } from "../../compressor/mod.ts";
import type { Model, Preprocess, Tensor } from "../../format/mod.ts";

/**
 * The one place the compressor meets the runtime: calibration runs each cut of the network with
 * a runtime session (public API only).
 */
export const calibrationRunner: ModelRunner = async (model: Model) => {
  const { createSession } = await import("../../runtime/mod.ts");
  return createSession(model);
};

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
  const { parsePreprocess, FASHION_MNIST_PREPROCESS } = await import("../../format/mod.ts");
  if (json !== undefined) {
    let v: unknown;
    try { v = JSON.parse(json); } catch (e) { throw new UsageError(`--preprocess must be JSON: ${(e as Error).message}`); }
    return parsePreprocess(v);
  }
  const shape = model.graph.inputs.find((i) => !Object.hasOwn(model.graph.initializers, i.name))?.shape;
  const [c, h, w] = [shape?.[1], shape?.[2], shape?.[3]].map((d) => (typeof d === "number" ? d : undefined));
  if (c === 1) return { ...FASHION_MNIST_PREPROCESS, ...(h && w ? { resize: Math.min(h, w), crop: [h, w] as [number, number] } : {}) };
  return { channels: "rgb", mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], ...(h && w ? { resize: Math.round((Math.min(h, w) * 256) / 224), crop: [h, w] as [number, number] } : {}) };
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
 * compressor/calibrate-model.ts), with a progress bar; returns what calibration did.
 */
export async function calibrateResult(result: CompressResult, input: Tensor, quiet: boolean): Promise<CalibrationResult> {
  const { calibrateModel } = await import("../../compressor/mod.ts");
  const bar = progress("calib ", result.opq.compressed.length, quiet);
  let last = 0;
  const cal = await calibrateModel(result.float, result.opq, input, calibrationRunner, { masks: result.masks }, (done) => { bar.tick(done - last); last = done; });
  bar.done();
  result.opq = cal.opq;
  return cal;
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

/** The command. */
export const command: Command = {
  name: "compress",
  summary: "compress an FP32 ONNX model to .opq (OPQ one-shot pruning-quantization, or FPGM + APoT)",
  usage: [
    "compress [in.onnx] [-o out.opq] [--method opq] [--sparsity P] [--bits B] [--max-layer-sparsity C] [--report r.html] [--json]",
    "compress [in.onnx] --method gm-apot [--filter-rate R] [--bits 3|4] [-o out.opq] [--report r.html] [--json]",
    "compress [in.onnx] … --calibrate N [--data D] [--preprocess JSON] [--seed S]: after one-shot compression, re-solve the kept weights layer by layer on N images (masks and steps held; 512 is a good N)",
    "  --data: a folder of class subfolders of PNG/JPEG images, an .npy array (the model input as is), a Fashion-MNIST IDX folder (default: the shared training set), or random (timing only)",
    '  --preprocess \'{"resize":256,"crop":[224,224],"channels":"rgb","mean":[0.485,0.456,0.406],"std":[0.229,0.224,0.225]}\' for image folders; stored in the .opq with the class names',
    "(no model: the bundled models/resnet20-fmnist.onnx → out/resnet20-fmnist.opq)",
    "defaults: --sparsity 0.5 --bits 3 --max-layer-sparsity 0.9; the paper's 0.74/3 collapses one-shot: add --calibrate 512 (ResNet-20: 11.9% → 91.0%) or use `opq finetune`",
  ].join("\n"),
  options: {
    output: { type: "string", short: "o" },
    method: { type: "string" },
    sparsity: { type: "string" },
    bits: { type: "string" },
    "max-layer-sparsity": { type: "string" },
    "filter-rate": { type: "string" },
    report: { type: "string" },
    calibrate: { type: "string" },
    data: { type: "string" },
    seed: { type: "string" },
    preprocess: { type: "string" },
  },
  async run(args) {
    if (args.positionals.length > 1) throw new UsageError(`one input model only, got ${args.positionals.length}`);
    const input = args.positionals[0] ?? DEFAULT_MODEL;
    const output = stringOption(args, "output") ?? defaultOutput(input);
    const htmlPath = stringOption(args, "report");
    if (resolve(output) === resolve(input)) throw new UsageError(`the output would overwrite the input ${input}`);
    const opts = compressOptions(args);
    const json = wantsJson(args);
    const calibrate = args.values.calibrate !== undefined ? numberOption(args, "calibrate", 0, 1, 1e6) : undefined;
    if (calibrate !== undefined && !Number.isInteger(calibrate)) throw new UsageError(`--calibrate must be a whole number of images, got ${calibrate}`);
    for (const k of ["data", "seed", "preprocess"]) if (calibrate === undefined && args.values[k] !== undefined) throw new UsageError(`--${k} applies to --calibrate only`);
    const seed = numberOption(args, "seed", 1, 0, 2 ** 32 - 1);
    const { readOnnx } = await import("../../format/mod.ts");
    const { compressModel, encodeCompressed, renderReportHtml } = await import("../../compressor/mod.ts");

    const bytes = new Uint8Array(readFileSync(input));
    const model = readOnnx(bytes);
    let bar: ReturnType<typeof progress> | undefined, phase = "", last = 0;
    const result = compressModel(model, { ...opts, source: basename(input), fp32Bytes: bytes.length }, (p, done, total) => {
      if (p !== phase) { bar?.done(); bar = progress(p.padEnd(6), total, json); phase = p; last = 0; }
      bar!.tick(done - last);
      last = done;
    });
    bar?.done();
    if (calibrate !== undefined) {
      const { encodeOpq } = await import("../../format/mod.ts");
      const uncalibratedBytes = encodeOpq(result.opq).length;
      const data = await calibrationData(model, calibrate, seed, stringOption(args, "data"), stringOption(args, "preprocess"));
      const cal = await calibrateResult(result, data.input, json);
      const { CLASSES_KEY, PREPROCESS_KEY } = await import("../../format/mod.ts");
      // What eval and the server must apply to new images: exactly what calibration used.
      if (data.preprocess) result.opq.metadata = { ...result.opq.metadata, [PREPROCESS_KEY]: data.preprocess, ...(data.classes ? { [CLASSES_KEY]: data.classes } : {}) };
      result.report.calibration = { images: cal.images, data: data.description, seconds: cal.seconds, uncalibratedBytes, target: "float", layers: cal.layers, skipped: cal.skipped };
    }
    const enc = progress("encode", 1, json);
    const out = encodeCompressed(result);
    enc.done();
    mkdirSync(dirname(resolve(output)), { recursive: true });
    writeFileSync(output, out);
    const { report } = result;
    if (htmlPath) {
      mkdirSync(dirname(resolve(htmlPath)), { recursive: true });
      writeFileSync(htmlPath, renderReportHtml(report));
    }
    if (json) {
      printJson({ input, output, ...(htmlPath ? { html: htmlPath } : {}), ...report });
      return;
    }
    const f = report.file!;
    if (report.method === "opq") {
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
    if (htmlPath) say(`report: ${htmlPath}`);
    say(`accuracy is not measured here: check it with \`opq eval ${output}\` (one-shot compression loses accuracy at high sparsity; \`--calibrate 512\` or \`opq finetune\` recovers it)`);
  },
};
