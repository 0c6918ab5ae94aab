/**
 * `opq finetune` – OPQ one-shot compression followed by the paper's finetuning (Algorithm 1,
 * ALGORITHMS.md §3) on the Fashion-MNIST training images. Masks and steps Δ_i stay as one-shot
 * OPQ chose them; SGD (momentum 0.9, weight decay 1e-4 on the kept weights) updates the FP32
 * weights W, which the network sees as Ŵ = M ∘ W in stage 1 and Ŵ = M ∘ Q(W) in stage 2, with
 * the straight-through estimator ∂Ŵ/∂W = M. The result is requantized (same masks or sparser,
 * same Δ_i) and written as `.opq`; test top-1 is measured before and after by the runtime.
 * @module
 */
import { mkdirSync, readFileSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { assertNotInput, mulberry32, type Model, type OpqModel, type Tensor, writeFileAtomic } from "../../format/mod.ts";
import type { DistillOptions, LrSchedule, StepStats as TrainStepStats, TrainData } from "../../compressor/mod.ts";
import { chooseOutput, type Command, commandLine, numberOption, VERSION, type ParsedArgs, printJson, progress, say, stringOption, UsageError, wantsJson } from "../common.ts";
import { DEFAULT_MODEL } from "../shared.ts";
import { type FashionMnist, FMNIST_SIDE, loadFashionMnist, normalizePixels } from "../fashion-mnist.ts";
import { calibrateResult, defaultOutput, fashionMnistCalibration, labelsFor } from "./compress.ts";

/** Default output: out/<input name>-finetuned.opq, apart from the file `opq compress` (and so `opq serve`) uses. */
export function defaultFinetuneOutput(input: string): string {
  return defaultOutput(input).replace(/\.opq$/, "-finetuned.opq");
}
import { evaluate, top1On } from "./eval.ts";

/**
 * Default budget for the bundled ResNet-20: 40 steps of 256 (10,240 images) at ~2 s a step on one
 * thread of a 2-core machine (bench:train: 115–135 images per CPU-second at (0.74, 3); LeNet-5:
 * 0.7–1 ms an image), plus the two test evaluations. Measured at (0.74, 3): test top-1 11.94% →
 * 87.89% with these defaults, → 91.55% with `--epochs 1`.
 */
export const FINETUNE_DEFAULTS = {
  sparsity: 0.74,
  bits: 3,
  steps: 40,
  batch: 256,
  lr: 0.005,
  momentum: 0.9,
  weightDecay: 1e-4,
  stage1Fraction: 0.5,
  seed: 1,
  // The figures above were measured with a constant rate; `--schedule cosine|step` are offered.
  schedule: "constant",
} as const;

/** The `--schedule` choices. */
export const SCHEDULES = ["constant", "cosine", "step"] as const;

/** Options of the finetuning loop. */
export interface FinetuneOptions {
  steps: number;
  batch: number;
  lr: number;
  momentum: number;
  weightDecay: number;
  /** Steps [0, round(f·steps)) are stage 1 (pruned only), the rest stage 2 (pruned + quantized). */
  stage1Fraction: number;
  seed: number;
  schedule: LrSchedule;
  /** Checkpoint file (every epoch; resumed from when present). */
  checkpoint?: string;
  /** Distill from the FP32 model with these settings. */
  distill?: DistillOptions;
  /** Stop once this many steps are done (an interruption; tests). */
  stopAt?: number;
  /** Threads the batch is split over (data-parallel; 1 = this thread only). */
  threads?: number;
}

/** One SGD step's figures, with its Algorithm 1 stage. */
export interface StepStats extends TrainStepStats {
  stage: 1 | 2;
}

/** Images `order[start .. start + n)` preprocessed into one batch [n, 1, 28, 28] with their labels (into `data` when it has the room). */
export function gatherBatch(set: FashionMnist, order: Uint32Array, start: number, n: number, into?: Float32Array): { data: Float32Array; dims: number[]; labels: Uint8Array } {
  const px = FMNIST_SIDE * FMNIST_SIDE;
  const data = into && into.length >= n * px ? into.subarray(0, n * px) : new Float32Array(n * px), labels = new Uint8Array(n);
  for (let b = 0; b < n; b++) {
    const i = order[start + b]!;
    labels[b] = set.labels[i]!;
    normalizePixels(set.pixels.subarray(i * px, (i + 1) * px), data, b * px);
  }
  return { data, dims: [n, 1, FMNIST_SIDE, FMNIST_SIDE], labels };
}

/**
 * The teacher of `--distill`: `teacher`'s logits for every image of `set`, computed once by an
 * inference session on `threads` threads (the images are not augmented, so an image's teacher
 * logits never change), looked up per batch. A training graph's forward per step cost as much as
 * the student's forward again and held a second graph's activations.
 */
export async function teacherLogits(teacher: Model, set: FashionMnist, threads: number, quiet = false): Promise<(input: Tensor, images: Uint32Array) => Float32Array> {
  const { createSession } = await import("../../runtime/mod.ts");
  const session = await createSession(teacher, { threads });
  let logits: Float32Array;
  try {
    const bar = progress("teacher logits", set.count, quiet);
    const r = await evaluate(session, set, { batch: 256, keepLogits: true, onBatch: (n) => bar.tick(n) });
    bar.done();
    logits = r.logits!;
    if (!quiet) say(`teacher: logits of ${set.count} images in ${(r.ms / 1000).toFixed(1)} s (its top-1 on them ${(100 * r.top1).toFixed(2)}%)`);
  } finally {
    session.dispose();
  }
  const classes = logits.length / set.count;
  return (_input, images) => {
    const out = new Float32Array(images.length * classes);
    images.forEach((i, b) => out.set(logits.subarray(i * classes, (i + 1) * classes), b * classes));
    return out;
  };
}

/**
 * Fashion-MNIST as the training loop's data source. Every batch is written into the same array
 * (the loop is done with a batch before it gathers the next): a fresh 0.8 MB batch per step was
 * what a finetune's RSS grew by, step after step (JavaScriptCore's collection hint at each step
 * did not reclaim the old batches: 1.0 → 2.3 GB over a 6-epoch run).
 */
export const trainData = (set: FashionMnist): TrainData => {
  let buffer: Float32Array | undefined;
  return {
    count: set.count,
    gather: (order, start, n) => {
      const b = gatherBatch(set, order, start, n, buffer);
      buffer = b.data;
      return b;
    },
  };
};

/**
 * Algorithm 1 on `model` (FP32; its float initializers are the starting W) under the masks and
 * steps of `opq`, run by the compressor's training loop; returns the requantized OpqModel and the
 * per-step figures. `model` is not modified.
 */
export async function finetuneOpq(
  model: Model, opq: OpqModel, set: FashionMnist, o: FinetuneOptions, onStep?: (s: StepStats) => void, teacher: Model = model,
): Promise<{ opq: OpqModel; history: StepStats[]; resumedFrom: number }> {
  const { createParallelTrainableGraph } = await import("../../runtime/mod.ts");
  const { layerConstraints, opqFinetuneMethod, requantize, trainLoop } = await import("../../compressor/mod.ts");
  const sampleDims = [1, FMNIST_SIDE, FMNIST_SIDE], threads = o.threads ?? 1, batch = Math.min(o.batch, set.count);
  const constraints = layerConstraints(opq);
  // The training graph reads its weights from its own initializers: Ŵ for compressed tensors
  // (rewritten from W before every step by the method), the master copy itself for biases.
  const inits = { ...model.graph.initializers };
  const master = new Map<string, Float32Array>(), hats = new Map<string, Float32Array>();
  const trainModel: Model = { ...model, graph: { ...model.graph, initializers: inits } };
  // The masks are fixed: Conv's weight gradient is computed at the kept weights only.
  const keep = new Map([...constraints].map(([name, c]) => [name, c.mask]));
  const graph = await createParallelTrainableGraph(trainModel, threads, batch, sampleDims, { keep });
  for (const name of graph.params) {
    const t = model.graph.initializers[name]!;
    const w = Float32Array.from(t.data as Float32Array);
    master.set(name, w);
    const hat = constraints.has(name) ? new Float32Array(w.length) : w;
    if (constraints.has(name)) hats.set(name, hat);
    inits[name] = { ...t, data: hat };
  }
  const missing = [...constraints.keys()].filter((n) => !master.has(n));
  if (missing.length) throw new Error(`compressed tensors the training graph does not train: ${missing.join(", ")}`);
  const distill = o.distill ? { teacher: await teacherLogits(teacher, set, threads), options: o.distill } : undefined;
  const stage1Steps = Math.round(o.stage1Fraction * o.steps);
  const history: StepStats[] = [];
  let resumedFrom: number;
  try {
    ({ resumedFrom } = trainLoop(graph, master, trainData(set), {
    ...o, runId: `opq-finetune ${model.graph.name} ${JSON.stringify(constraints.size)} ${o.stage1Fraction} ${JSON.stringify(o.distill ?? null)}`,
    distill,
  }, opqFinetuneMethod(constraints, hats, stage1Steps), (s) => {
    const t: StepStats = { ...s, stage: s.step < stage1Steps ? 1 : 2 };
    history.push(t);
    onStep?.(t);
  }));
  } finally {
    graph.dispose();
  }
  return { opq: requantize(opq, master), history, resumedFrom };
}

/**
 * Parse and validate the training options (before any data is loaded, so usage errors are quick).
 * With `--epochs E`, `steps` is resolved later by `stepsFor`.
 */
export function finetuneOptions(args: ParsedArgs, defaultSchedule: (typeof SCHEDULES)[number] = FINETUNE_DEFAULTS.schedule): FinetuneOptions & { epochs?: number } {
  const given = (k: string) => args.values[k] !== undefined;
  if (given("epochs") && given("steps")) throw new UsageError("give --epochs or --steps, not both");
  return {
    batch: intOption(args, "batch", FINETUNE_DEFAULTS.batch, 1, 4096),
    steps: intOption(args, "steps", FINETUNE_DEFAULTS.steps, 0, 1e7),
    epochs: given("epochs") ? numberOption(args, "epochs", 1, 0.001, 1000) : undefined,
    seed: intOption(args, "seed", FINETUNE_DEFAULTS.seed, 0, 2 ** 32 - 1),
    lr: numberOption(args, "lr", FINETUNE_DEFAULTS.lr, 0, 10),
    momentum: FINETUNE_DEFAULTS.momentum,
    weightDecay: FINETUNE_DEFAULTS.weightDecay,
    stage1Fraction: numberOption(args, "stage1-fraction", FINETUNE_DEFAULTS.stage1Fraction, 0, 1),
    schedule: scheduleOption(args, defaultSchedule),
    checkpoint: stringOption(args, "checkpoint"),
    distill: distillOption(args),
    threads: intOption(args, "threads", 1, 1, 64),
  };
}

/** `--schedule constant|cosine|step` (step: ×0.1 at half and three quarters of the run). */
export function scheduleOption(args: ParsedArgs, fallback: (typeof SCHEDULES)[number] = FINETUNE_DEFAULTS.schedule): LrSchedule {
  const v = stringOption(args, "schedule") ?? fallback;
  if (!(SCHEDULES as readonly string[]).includes(v)) throw new UsageError(`--schedule must be one of ${SCHEDULES.join(", ")}, got ${v}`);
  if (v === "step") return { kind: "step", milestones: [], gamma: 0.1 }; // milestones resolved once the epochs are known
  return { kind: v as "constant" | "cosine" };
}

/** Milestones of the step schedule for a run of `steps` steps of `perEpoch`: epochs at 1/2 and 3/4. */
export function resolveSchedule(s: LrSchedule, steps: number, perEpoch: number): LrSchedule {
  if (s.kind !== "step" || s.milestones.length) return s;
  const epochs = steps / perEpoch;
  return { ...s, milestones: [Math.floor(epochs / 2), Math.floor(3 * epochs / 4)].filter((m) => m > 0) };
}

/** `--distill [--temperature T] [--distill-weight W]`, or undefined without --distill. */
export function distillOption(args: ParsedArgs): DistillOptions | undefined {
  const given = (k: string) => args.values[k] !== undefined;
  if (!args.values.distill) {
    if (given("temperature") || given("distill-weight")) throw new UsageError("--temperature and --distill-weight need --distill");
    return undefined;
  }
  return {
    temperature: numberOption(args, "temperature", DISTILL.temperature, 0.05, 100),
    weight: numberOption(args, "distill-weight", DISTILL.weight, 0, 1),
  };
}

/** Defaults of `--distill` (compressor DISTILL_DEFAULTS, repeated so usage errors need no import). */
const DISTILL = { temperature: 4, weight: 0.5 } as const;

/** Steps for `epochs` passes over `trainImages` in batches of `batch` (at least 1; an epoch is ⌊images / batch⌋ steps, as the loop's). */
export function stepsFor(epochs: number, trainImages: number, batch: number): number {
  return Math.max(1, Math.round(epochs * Math.max(1, Math.floor(trainImages / Math.min(batch, trainImages)))));
}

/** Whole-number option or UsageError. */
export function intOption(args: ParsedArgs, name: string, fallback: number, min: number, max = Infinity): number {
  const v = numberOption(args, name, fallback, min, max);
  if (v !== Infinity && !Number.isInteger(v)) throw new UsageError(`--${name} must be an integer, got ${v}`);
  return v;
}

/** The `opq finetune` subcommand. */
export const command: Command = {
  name: "finetune",
  summary: "OPQ compression + finetuning (paper Algorithm 1) on Fashion-MNIST, written as .opq",
  usage: [
    "finetune [in.onnx] [-o out.opq] [--sparsity P] [--bits B] [--max-layer-sparsity C] [--epochs E | --steps N] [--batch N] [--lr L] [--stage1-fraction F] [--schedule constant|cosine|step] [--checkpoint FILE] [--distill [--temperature T] [--distill-weight W]] [--threads T] [--limit N] [--eval-limit N] [--seed S] [--data DIR] [--calibrate N] [--json]",
    "--calibrate N: calibrate the one-shot weights on N training images first (see `opq compress --calibrate`), then finetune from them",
    "(no model: the bundled models/resnet20-fmnist.onnx at 0.74/3 → out/resnet20-fmnist-finetuned.opq)",
    `defaults: --sparsity ${FINETUNE_DEFAULTS.sparsity} --bits ${FINETUNE_DEFAULTS.bits} --steps ${FINETUNE_DEFAULTS.steps} --batch ${FINETUNE_DEFAULTS.batch} --lr ${FINETUNE_DEFAULTS.lr} --stage1-fraction ${FINETUNE_DEFAULTS.stage1Fraction} (first half pruned-only, then pruned + quantized) --schedule ${FINETUNE_DEFAULTS.schedule}, all 60k training images (--limit), all 10k test images (--eval-limit); SGD momentum 0.9, weight decay 1e-4`,
    "--checkpoint FILE: saved every epoch and at the end, resumed from if it exists (same options required); --distill: KL to the FP32 model's logits at temperature T (default 4) mixed with the label loss (weight W of the KL, default 0.5)",
    "--threads T: split each batch over T threads (data-parallel, same gradients up to float32 rounding; default 1)",
    "budget: ResNet-20 at 0.74/3 trains ~115–135 images per CPU-second (bench:train, one thread of a 2-core machine: a step of 256 in ~2 s); LeNet-5 0.7–1 ms/image;",
    "ResNet-20 at 0.74/3 measured: test top-1 11.94% → 87.89% with the defaults; --calibrate 512 --epochs 3 --schedule cosine --threads 2: 91.62% → 92.43% (41 min on a shared 2-core machine; FP32 93.12%)",
  ].join("\n"),
  options: {
    output: { type: "string", short: "o" },
    sparsity: { type: "string" },
    bits: { type: "string" },
    "max-layer-sparsity": { type: "string" },
    epochs: { type: "string" },
    steps: { type: "string" },
    batch: { type: "string" },
    lr: { type: "string" },
    "stage1-fraction": { type: "string" },
    limit: { type: "string" },
    "eval-limit": { type: "string" },
    seed: { type: "string" },
    data: { type: "string" },
    schedule: { type: "string" },
    checkpoint: { type: "string" },
    distill: { type: "boolean" },
    temperature: { type: "string" },
    "distill-weight": { type: "string" },
    threads: { type: "string" },
    calibrate: { type: "string" },
    force: { type: "boolean" },
    labels: { type: "string" },
    report: { type: "string" },
  },
  help: {
    output: "the .opq to write (default out/<input name>-finetuned.opq; an existing file needs --force)",
    sparsity: "fraction of weights to prune (default 0.74, the paper's setting)",
    bits: "quantization bits (default 3)",
    "max-layer-sparsity": "cap on any one layer's sparsity (default 0.9; 1 = no cap)",
    epochs: "passes over the training images (instead of --steps)",
    steps: "SGD steps (default 40); 0 writes the one-shot model and evaluates it once",
    batch: "images per step (default 256)",
    lr: "learning rate (default 0.005)",
    "stage1-fraction": "fraction of the steps trained pruned-only before quantization joins (default 0.5)",
    limit: "use only the first N training images (default all 60,000)",
    "eval-limit": "evaluate on the first N test images (default all 10,000)",
    seed: "seed of the shuffling (default 1)",
    data: "Fashion-MNIST folder (default: $OPQ_SHARED/data/fashion-mnist, ../shared, or Debian's dataset-fashion-mnist)",
    force: "overwrite the output if it exists",
    labels: "class names to store (default Fashion-MNIST's, the data finetune trains on): fashion-mnist or a file",
    calibrate: "calibrate the one-shot weights on N training images before finetuning (GPTQ-style, masks and steps kept)",
    schedule: "learning-rate schedule: constant (default), cosine or step",
    checkpoint: "save a checkpoint here every epoch; resume from it if it exists (same options required)",
    distill: "also learn from the FP32 model's softened logits (KL at --temperature, weight --distill-weight)",
    temperature: "with --distill: softmax temperature (default 4)",
    "distill-weight": "with --distill: weight of the KL term against the label loss (default 0.5)",
    threads: "split each batch over this many threads (default 1)",
    report: "also write the HTML report (per-layer figures, histograms, bytes, top-1 before and after, the loss curve)",
  },
  async run(args) {
    if (args.positionals.length > 1) throw new UsageError(`one input model only, got ${args.positionals.length}`);
    const input = args.positionals[0] ?? DEFAULT_MODEL;
    const sparsity = numberOption(args, "sparsity", FINETUNE_DEFAULTS.sparsity, 0, 0.999);
    const bits = numberOption(args, "bits", FINETUNE_DEFAULTS.bits, 1, 16);
    const maxLayerSparsity = args.values["max-layer-sparsity"] !== undefined ? numberOption(args, "max-layer-sparsity", 0, 0.01, 1) : undefined;
    const limit = intOption(args, "limit", Infinity, 1);
    const evalLimit = intOption(args, "eval-limit", Infinity, 1);
    const dir = stringOption(args, "data");
    const json = wantsJson(args);
    const o = finetuneOptions(args);
    const calibrate = args.values.calibrate !== undefined ? intOption(args, "calibrate", 0, 1, 60000) : undefined;
    const output = chooseOutput(args, defaultFinetuneOutput(input), [input]);
    assertNotInput(output, [input]);
    const train = loadFashionMnist({ dir, split: "train", limit: Number.isFinite(limit) ? limit : undefined });
    if (o.epochs !== undefined) o.steps = stepsFor(o.epochs, train.count, o.batch);
    const { stepsPerEpoch } = await import("../../compressor/mod.ts");
    o.schedule = resolveSchedule(o.schedule, o.steps, stepsPerEpoch(train.count, o.batch));
    const test = loadFashionMnist({ dir, split: "t10k", limit: Number.isFinite(evalLimit) ? evalLimit : undefined });

    const { readOnnx, encodeOpq } = await import("../../format/mod.ts");
    const { compressModel } = await import("../../compressor/mod.ts");
    const bytes = new Uint8Array(readFileSync(input));
    const model = readOnnx(bytes);
    const labels = await labelsFor(args, input, model, true);
    const compressed = compressModel(model, { sparsity, bits, maxLayerSparsity, source: basename(input), fp32Bytes: bytes.length });
    if (labels) compressed.opq.metadata = { ...compressed.opq.metadata, labels };
    // --calibrate N: start Algorithm 1 from the calibrated weights (same masks and steps; the
    // stored positions, which finetuning holds, are a subset of OPQ's masks).
    let start = model;
    if (calibrate !== undefined) {
      const { toDenseModel } = await import("../../format/mod.ts");
      await calibrateResult(compressed, fashionMnistCalibration(calibrate, o.seed, train).input, json);
      start = toDenseModel(compressed.opq);
    }
    const oneShot = compressed.opq;
    // The cap the compressor applied (its default when --max-layer-sparsity is not given).
    const appliedCap = compressed.report.options.maxLayerSparsity as number;
    const top1 = (m: OpqModel, label: string) => top1On(m, test, label, json);
    const startLabel = calibrate !== undefined ? `calibrated (${calibrate} images)` : "one-shot";
    const before = await top1(oneShot, `eval ${startLabel}`);
    // Progress goes to stderr with --json too (stdout carries only the JSON object).
    say(`${startLabel} OPQ at (${sparsity}, ${bits}): test top-1 ${(100 * before).toFixed(2)}% on ${test.count} images`);

    const tty = !json && (process.stderr as { isTTY?: boolean }).isTTY === true;
    const t0 = performance.now();
    let seen = 0, hits = 0, stage = 0;
    // No steps: the weights stay the one-shot ones, so the model is the one-shot model (no second evaluation).
    const { opq, history, resumedFrom } = o.steps === 0 ? { opq: oneShot, history: [] as StepStats[], resumedFrom: null } : await finetuneOpq(start, oneShot, train, o, (s) => {
      if (s.stage !== stage) { stage = s.stage; seen = 0; hits = 0; }
      seen += s.images;
      hits += s.correct;
      const line = `finetune stage ${s.stage} step ${s.step + 1}/${o.steps} loss ${s.loss.toFixed(4)} running acc ${(100 * hits / seen).toFixed(1)}% ${((performance.now() - t0) / 1000).toFixed(0)}s`;
      if (tty) process.stderr.write(`\r${line}`);
      else if ((s.step + 1) % 10 === 0 || s.step + 1 === o.steps) say(line);
    }, model);
    if (tty) process.stderr.write("\n");
    const seconds = (performance.now() - t0) / 1000;
    const imagesSeen = history.reduce((a, s) => a + s.images, 0);
    opq.metadata = { ...opq.metadata, finetune: { steps: o.steps, batch: o.batch, lr: o.lr, images: imagesSeen, stage1Steps: Math.round(o.stage1Fraction * o.steps), seed: o.seed, schedule: o.schedule.kind, distill: o.distill ?? null } };
    const after = o.steps === 0 ? before : await top1(opq, "eval finetuned");
    const accuracy = { dataset: "Fashion-MNIST", images: test.count, top1: after, top1Before: before };
    opq.metadata = { ...opq.metadata, accuracy: { dataset: accuracy.dataset, images: accuracy.images, top1: after } };
    const out = encodeOpq(opq);
    const htmlPath = stringOption(args, "report");
    if (htmlPath) {
      const { addFileStats, renderReportHtml } = await import("../../compressor/mod.ts");
      const { inspectOpq } = await import("../../format/mod.ts");
      const report = { ...addFileStats(compressed.report, inspectOpq(out, { compare: false })), run: { command: commandLine(), version: VERSION }, accuracy, losses: history.map((s) => s.loss) };
      mkdirSync(dirname(resolve(htmlPath)), { recursive: true });
      assertNotInput(htmlPath, [input, output]);
      writeFileAtomic(htmlPath, renderReportHtml(report), { inputs: [input, output] });
    }
    mkdirSync(dirname(resolve(output)), { recursive: true });
    writeFileAtomic(output, out, { inputs: [input] });
    const nonZeros = (m: OpqModel) => m.compressed.reduce((a, t) => a + t.indices.length, 0);
    const stageStats = (k: 1 | 2) => {
      const h = history.filter((s) => s.stage === k);
      const images = h.reduce((a, s) => a + s.images, 0);
      return { steps: h.length, images, meanLoss: h.length ? h.reduce((a, s) => a + s.loss, 0) / h.length : null, accuracy: images ? h.reduce((a, s) => a + s.correct, 0) / images : null };
    };
    const result = {
      input, output, bytes: out.length, fp32Bytes: bytes.length, sparsity, bits, maxLayerSparsity: appliedCap,
      options: o, resumedFrom, trainImages: train.count, imagesSeen, seconds, msPerImage: imagesSeen ? 1000 * seconds / imagesSeen : null,
      calibrated: calibrate ?? null, testImages: test.count, before: { top1: before, nonZeros: nonZeros(oneShot) }, after: { top1: after, nonZeros: nonZeros(opq) },
      stage1: stageStats(1), stage2: stageStats(2), losses: history.map((s) => s.loss),
    };
    if (json) {
      printJson(result);
      return;
    }
    say(`finetuned ${imagesSeen} images in ${seconds.toFixed(0)} s (${result.msPerImage?.toFixed(2) ?? "-"} ms/image): ` +
      `test top-1 ${(100 * before).toFixed(2)}% → ${(100 * after).toFixed(2)}% on ${test.count} images`);
    say(`${basename(input)} → ${output} ${out.length} B (${(bytes.length / out.length).toFixed(1)}× smaller than FP32), ` +
      `${result.after.nonZeros} non-zero weights (one-shot: ${result.before.nonZeros})`);
  },
};
