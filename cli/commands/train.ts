/**
 * `opq train --method spq|ppq|opq` – compression trained on the Fashion-MNIST training images.
 * spq/ppq: GM filter pruning of every channel space (residual-tied convs together), APoT weights
 * with learned α (8-bit first and last layers) and APoT activation quantizers after every ReLU
 * (ai.opq ApotQuantize, α learned), trained by the compressor's loop (compressor/spq.ts), the
 * pruned channels removed physically and written as `.opq`; top-1 of the FP32 model and of the
 * written file (run by the runtime: the accuracy the server gives), MACs before and after.
 * opq: the same as `opq finetune` (Algorithm 1).
 * @module
 */
import { mkdirSync, readFileSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import type { Model, OpqModel, Tensor } from "../../format/mod.ts";
import type { ApotTrainOptions, StepStats } from "../../compressor/mod.ts";
import { type Command, numberOption, printJson, progress, say, stringOption, UsageError, wantsJson } from "../common.ts";
import { DEFAULT_MODEL } from "../shared.ts";
import { type FashionMnist, loadFashionMnist } from "../fashion-mnist.ts";
import { calibrateResult, defaultOutput, fashionMnistCalibration } from "./compress.ts";
import { top1On } from "./eval.ts";
import { command as finetuneCommand, finetuneOptions, gatherBatch, intOption, resolveSchedule, stepsFor, teacherLogits, trainData } from "./finetune.ts";

/**
 * Defaults of spq/ppq: 30% of the channels, 4-bit weights and activations, lr 0.01 (PPQ's QAT
 * rate), one epoch, a start calibrated on 512 training images (ResNet-20 at 30%: 10.1% top-1
 * masked, 90.5% calibrated, before any step; compressor/spq.ts `apotStart`).
 */
export const TRAIN_DEFAULTS = { method: "spq", filterRate: 0.3, bits: 4, lr: 0.01, epochs: 1, stages: 3, pruneFraction: 0.5, calibrate: 512 } as const;

/** `opq finetune` options that `train --method spq|ppq` refuses (they would be ignored). */
const FINETUNE_ONLY = ["sparsity", "max-layer-sparsity", "stage1-fraction", "report", "labels"] as const;

/** Images used to calibrate the initial activation α's (MSE-optimal on the FP32 activations). */
const CALIBRATION_IMAGES = 256;

/** Initial α of every ReLU output: the APoT fit on one batch of FP32 activations. */
async function calibrateAlphas(model: Model, set: FashionMnist, relus: string[]): Promise<Map<string, number>> {
  const { createSession } = await import("../../runtime/mod.ts");
  const { fitActivationAlpha, epochOrder } = await import("../../compressor/mod.ts");
  const probe: Model = { ...model, graph: { ...model.graph, outputs: [...model.graph.outputs, ...relus.map((name) => ({ name, dtype: "float32" as const, shape: null }))] } };
  const session = await createSession(probe);
  try {
    const n = Math.min(CALIBRATION_IMAGES, set.count);
    const b = gatherBatch(set, epochOrder(set.count, 12345, 0), 0, n);
    const feed = model.graph.inputs.find((i) => !Object.hasOwn(model.graph.initializers, i.name))!.name;
    const out = await session.run({ [feed]: { dtype: "float32", dims: b.dims, data: b.data } as Tensor });
    return new Map(relus.map((r) => {
      const d = out[r]!.data as Float32Array, stride = Math.max(1, Math.floor(d.length / (1 << 16)));
      return [r, fitActivationAlpha(stride === 1 ? d : d.filter((_, i) => i % stride === 0))];
    }));
  } finally {
    session.dispose();
  }
}

/** SPQ/PPQ on `model`: returns the finished OpqModel, the per-step figures and what the plan did. */
export async function trainApot(model: Model, set: FashionMnist, o: ReturnType<typeof finetuneOptions> & { apot: ApotTrainOptions; calibrate?: number }, onStep?: (s: StepStats) => void) {
  const { createParallelTrainableGraph } = await import("../../runtime/mod.ts");
  const c = await import("../../compressor/mod.ts");
  const threads = o.threads ?? 1, batch = Math.min(o.batch, set.count), sampleDims = [1, 28, 28];
  const relus = model.graph.nodes.filter((n) => n.opType === "Relu" && !model.graph.outputs.some((g) => g.name === n.outputs[0])).map((n) => n.outputs[0]!);
  const alphas = await calibrateAlphas(model, set, relus);
  const q = c.insertActivationQuantizers(model, alphas);
  const plan = c.planApot(q.model.graph);
  const inits: Record<string, Tensor> = { ...q.model.graph.initializers };
  // --calibrate N: the full selection masked at once (SPQ: and quantized; PPQ: in full precision, for its
  // FP32 phase), every layer calibrated to the unpruned FP32 network; training starts there, the selection held.
  let fixed: number[][] | undefined;
  const start = new Map<string, Float32Array>(), startAlphas = new Map<string, Float32Array>();
  if (o.calibrate) {
    fixed = plan.spaces.map((s) => c.selectSpaceChannels(s, (n) => inits[n]!.data as Float32Array, o.apot.filterRate));
    const st = o.apot.method === "spq" ? c.apotStart(q.model, plan, fixed, o.apot.bits) : c.apotStart(model, plan, fixed, 16);
    await calibrateResult(st, fashionMnistCalibration(o.calibrate, o.seed, set).input, false, threads, { rate: false });
    const { dequantize } = await import("../../format/mod.ts");
    for (const t of st.opq.compressed) {
      start.set(t.name, dequantize(t));
      // The table is α × levels, the last level 1.
      if (t.codebook.kind === "table") startAlphas.set(c.weightAlphaKey(t.name), Float32Array.of(t.codebook.values[t.codebook.values.length - 1]!));
    }
    for (const b of plan.biases) start.set(b, st.opq.model.graph.initializers[b]!.data as Float32Array);
  }
  const gq = await createParallelTrainableGraph({ ...q.model, graph: { ...q.model.graph, initializers: inits } }, threads, batch, sampleDims);
  let gfp = o.apot.method === "ppq" ? await createParallelTrainableGraph({ ...model, graph: { ...model.graph, initializers: inits } }, threads, batch, sampleDims) : gq;
  const master = new Map<string, Float32Array>(), hats = new Map<string, Float32Array>();
  const masked = new Set([...plan.weights.map((w) => w.name), ...plan.biases]);
  for (const name of gq.params) {
    const t = q.model.graph.initializers[name]!, w = Float32Array.from(start.get(name) ?? t.data as Float32Array);
    master.set(name, w);
    const hat = masked.has(name) ? new Float32Array(w.length) : w;
    if (masked.has(name)) hats.set(name, hat);
    inits[name] = { ...t, data: hat };
  }
  for (const [k, v] of startAlphas) master.set(k, v);
  const method = c.apotTrainMethod(plan, o.apot, master, hats, o.steps, fixed);
  let used = gq;
  const graph = {
    forward: (x: Tensor) => {
      used = method.quantizing() ? gq : gfp;
      // PPQ never goes back to full precision: drop the FP graph (workers, buffers) before the quantized one allocates its own (a 24-step 2-thread run: peak RSS 1.50 → 1.19 GB).
      if (used === gq && gfp !== gq) { gfp.dispose(); gfp = gq; }
      return used.forward(x);
    },
    backward: (d: Float32Array) => used.backward(d),
  };
  const distill = o.distill ? { teacher: await teacherLogits(model, set, threads), options: o.distill } : undefined;
  const history: StepStats[] = [];
  const dispose = () => { gq.dispose(); if (gfp !== gq) gfp.dispose(); };
  let resumedFrom: number;
  try {
    ({ resumedFrom } = c.trainLoop(graph, master, trainData(set), {
    ...o, runId: `${o.apot.method} ${model.graph.name} ${JSON.stringify(o.apot)} ${JSON.stringify(o.distill ?? null)}`,
    distill,
  }, method, (s) => { history.push(s); onStep?.(s); }));
  } catch (e) {
    dispose();
    throw e;
  }
  method.finish(master);
  const done = c.finishApot(q.model, plan, master, method.selection(), o.apot.bits);
  /** The training graph's forward with the final weights, as the next step would see them (tests compare it with the written file). */
  const trainedForward = (x: Tensor) => {
    method.prepare!(master, { step: o.steps, epoch: Math.floor(o.steps / c.stepsPerEpoch(set.count, o.batch)), steps: o.steps, stepsPerEpoch: c.stepsPerEpoch(set.count, o.batch), lr: 0 });
    return gq.forward(x);
  };
  // The training graphs stay alive for trainedForward; their workers are stopped here (trainedForward then runs on one thread).
  dispose();
  return { ...done, history, resumedFrom, plan, selection: method.selection(), quantizedActivations: q.quantized.length, trainedForward };
}

/** The `opq train` subcommand. */
export const command: Command = {
  name: "train",
  summary: "trained compression on Fashion-MNIST: SPQ/PPQ (GM filter pruning + APoT weights and activations) or OPQ finetuning, written as .opq",
  usage: [
    "train [in.onnx] --method spq|ppq [-o out.opq] [--filter-rate R] [--bits 3|4] [--stages S] [--prune-fraction F] [--epochs E | --steps N] [--batch N] [--lr L] [--schedule constant|cosine|step] [--checkpoint FILE] [--distill [--temperature T] [--distill-weight W]] [--threads T] [--calibrate N] [--limit N] [--eval-limit N] [--seed S] [--data DIR] [--json]",
    "train [in.onnx] --method opq …: the same as `opq finetune` (its options)",
    `defaults: --method ${TRAIN_DEFAULTS.method} --filter-rate ${TRAIN_DEFAULTS.filterRate} --bits ${TRAIN_DEFAULTS.bits} --epochs ${TRAIN_DEFAULTS.epochs} --lr ${TRAIN_DEFAULTS.lr} --schedule cosine --batch 256 --calibrate ${TRAIN_DEFAULTS.calibrate}; PPQ: full precision for the first --prune-fraction ${TRAIN_DEFAULTS.pruneFraction} of the steps, then APoT quantization-aware training`,
    "activations: a 4-bit APoT quantizer (learned α) after every ReLU, executed by the runtime; first and last layers' weights 8-bit uniform",
    "ResNet-20 at 30% of every channel space, 4-bit weights and activations, measured (10k test images, FP32 93.12%): --method ppq --epochs 1.5 --lr 0.005: 92.13%; --method spq --epochs 3 --distill --lr 0.005: 92.13% (47.3% fewer MACs)",
    "--calibrate N: remove the whole selection at once (spq: quantized too; ppq: in full precision) and calibrate every layer on N training images to the FP32 network (the layers reading removed channels compensate them), then train from there with the selection held; --calibrate 0: start from the masked network as it is (SPQ re-selects at epoch ends; PPQ prunes in --stages hard steps, default 3)",
  ].join("\n"),
  options: {
    ...finetuneCommand.options,
    method: { type: "string" },
    "filter-rate": { type: "string" },
    stages: { type: "string" },
    "prune-fraction": { type: "string" },
  },
  help: {
    ...finetuneCommand.help,
    ...Object.fromEntries(FINETUNE_ONLY.map((k) => [k, `--method opq only: ${finetuneCommand.help?.[k] ?? ""}`])),
    lr: `learning rate (default ${TRAIN_DEFAULTS.lr}; --method opq: finetune's default)`,
    epochs: `passes over the training images (default ${TRAIN_DEFAULTS.epochs}; instead of --steps)`,
    steps: `SGD steps (default: --epochs ${TRAIN_DEFAULTS.epochs}'s worth)`,
    schedule: "learning-rate schedule: constant, cosine (default) or step",
    method: "spq (prune and quantize while training), ppq (prune, retrain, then quantize) or opq (= opq finetune)",
    "filter-rate": "fraction of filters FPGM removes (residual-tied groups together)",
    bits: "APoT bits of weights and activations: 3 or 4",
    "prune-fraction": "ppq: fraction of the steps spent pruning in full precision",
    calibrate: `calibrate the start on N training images (spq/ppq: default ${TRAIN_DEFAULTS.calibrate}, 0 = off; the whole selection removed at once, every layer re-solved to the FP32 network; opq: as opq finetune)`,
    stages: "ppq with --calibrate 0: hard pruning stages",
  },
  async run(args) {
    const method = stringOption(args, "method") ?? TRAIN_DEFAULTS.method;
    if (method === "opq") {
      for (const k of ["filter-rate", "stages", "prune-fraction"]) if (args.values[k] !== undefined) throw new UsageError(`--${k} does not apply to --method opq`);
      return finetuneCommand.run(args);
    }
    if (method !== "spq" && method !== "ppq") throw new UsageError(`--method must be spq, ppq or opq, got ${JSON.stringify(method)}`);
    for (const k of FINETUNE_ONLY) if (args.values[k] !== undefined) throw new UsageError(`--${k} does not apply to --method ${method} (it is an option of --method opq, i.e. opq finetune)`);
    if (method === "spq") for (const k of ["stages", "prune-fraction"]) if (args.values[k] !== undefined) throw new UsageError(`--${k} applies to --method ppq only`);
    if (args.positionals.length > 1) throw new UsageError(`one input model only, got ${args.positionals.length}`);
    const input = args.positionals[0] ?? DEFAULT_MODEL;
    const output = stringOption(args, "output") ?? defaultOutput(input);
    if (resolve(output) === resolve(input)) throw new UsageError(`the output would overwrite the input ${input}`);
    const bits = numberOption(args, "bits", TRAIN_DEFAULTS.bits, 3, 4);
    if (bits !== 3 && bits !== 4) throw new UsageError(`--bits must be 3 or 4, got ${bits}`);
    const apot: ApotTrainOptions = {
      method, bits, filterRate: numberOption(args, "filter-rate", TRAIN_DEFAULTS.filterRate, 0, 0.95),
      stages: numberOption(args, "stages", TRAIN_DEFAULTS.stages, 1, 100), pruneFraction: numberOption(args, "prune-fraction", TRAIN_DEFAULTS.pruneFraction, 0, 1),
    };
    if (!Number.isInteger(apot.stages)) throw new UsageError(`--stages must be an integer, got ${apot.stages}`);
    const given = (k: string) => args.values[k] !== undefined;
    const calibrate = intOption(args, "calibrate", TRAIN_DEFAULTS.calibrate, 0, 60000);
    if (method === "ppq" && given("stages") && calibrate > 0) throw new UsageError("--stages applies to PPQ without a calibrated start (--calibrate 0): a calibrated start removes the whole selection at once");
    const o = { ...finetuneOptions(args, "cosine"), lr: numberOption(args, "lr", TRAIN_DEFAULTS.lr, 0, 10), apot, calibrate };
    const limit = numberOption(args, "limit", Infinity, 1), evalLimit = numberOption(args, "eval-limit", Infinity, 1);
    const dir = stringOption(args, "data");
    const json = wantsJson(args);
    const train = loadFashionMnist({ dir, split: "train", limit: Number.isFinite(limit) ? Math.floor(limit) : undefined });
    if (!given("steps")) o.steps = stepsFor(o.epochs ?? TRAIN_DEFAULTS.epochs, train.count, o.batch);
    if (!given("calibrate")) o.calibrate = Math.min(calibrate, train.count); // the default on a --limit'ed set
    const { stepsPerEpoch } = await import("../../compressor/mod.ts");
    o.schedule = resolveSchedule(o.schedule, o.steps, stepsPerEpoch(train.count, o.batch));
    const test = loadFashionMnist({ dir, split: "t10k", limit: Number.isFinite(evalLimit) ? Math.floor(evalLimit) : undefined });

    const { readOnnx, encodeOpq, writeFileAtomic } = await import("../../format/mod.ts");
    const { createSession } = await import("../../runtime/mod.ts");
    const bytes = new Uint8Array(readFileSync(input));
    const model = readOnnx(bytes);
    const top1 = (m: Model | Uint8Array, label: string) => top1On(m, test, label, json);
    const fp32 = await top1(model, "eval FP32");
    // Progress goes to stderr with --json too (stdout carries only the JSON object), as finetune's.
    say(`FP32 ${basename(input)}: test top-1 ${(100 * fp32).toFixed(2)}% on ${test.count} images`);
    const tty = !json && (process.stderr as { isTTY?: boolean }).isTTY === true;
    const t0 = performance.now();
    let seen = 0, hits = 0, epoch = -1;
    const r = await trainApot(model, train, o, (s) => {
      if (s.epoch !== epoch) { epoch = s.epoch; seen = 0; hits = 0; }
      seen += s.images;
      hits += s.correct;
      const line = `${method} epoch ${s.epoch + 1} step ${s.step + 1}/${o.steps} lr ${s.lr.toExponential(2)} loss ${s.loss.toFixed(4)} running acc ${(100 * hits / seen).toFixed(1)}% ${((performance.now() - t0) / 1000).toFixed(0)}s`;
      if (tty) process.stderr.write(`\r${line}`);
      else if ((s.step + 1) % 10 === 0 || s.step + 1 === o.steps) say(line);
    });
    if (tty) process.stderr.write("\n");
    const seconds = (performance.now() - t0) / 1000;
    const opq: OpqModel = r.opq;
    const imagesSeen = r.history.reduce((a, s) => a + s.images, 0);
    opq.metadata = {
      method, source: basename(input), fp32Bytes: bytes.length, filterRate: apot.filterRate, bits, activationBits: 4,
      train: { steps: o.steps, batch: o.batch, lr: o.lr, schedule: o.schedule.kind, seed: o.seed, images: imagesSeen, distill: o.distill ?? null, calibrate: o.calibrate || null, stages: method === "ppq" && !o.calibrate ? apot.stages : null },
      macs: r.macs ?? null,
    };
    const out = encodeOpq(opq);
    mkdirSync(dirname(resolve(output)), { recursive: true });
    writeFileAtomic(output, out, { inputs: [input] });
    const after = await top1(out, "eval trained");
    const result = {
      input, output, method, bytes: out.length, fp32Bytes: bytes.length, options: o, resumedFrom: r.resumedFrom, trainImages: train.count, imagesSeen, seconds,
      testImages: test.count, fp32: { top1: fp32 }, trained: { top1: after }, drop: fp32 - after,
      macs: r.macs ? { ...r.macs, reduction: 1 - r.macs.after / r.macs.before } : null,
      spaces: r.plan.spaces.map((s, i) => ({ channels: s.channels, removed: r.selection[i]!.length, producers: s.producers.map((p) => p.node) })),
      blockedSpaces: r.plan.blocked.map((s) => ({ producers: s.producers.map((p) => p.node), reason: s.blocked })),
      quantizedActivations: r.quantizedActivations, layers: r.layers, losses: r.history.map((s) => s.loss),
    };
    if (json) {
      printJson(result);
      return;
    }
    say(`${o.calibrate ? `calibrated on ${o.calibrate} images, then ` : ""}trained ${imagesSeen} images in ${seconds.toFixed(0)} s: test top-1 FP32 ${(100 * fp32).toFixed(2)}% → ${method} ${(100 * after).toFixed(2)}% (drop ${(100 * (fp32 - after)).toFixed(2)} pt) on ${test.count} images`);
    if (result.macs) say(`MACs per image (physical graph): ${result.macs.before.toLocaleString("en")} → ${result.macs.after.toLocaleString("en")} (${(100 * result.macs.reduction).toFixed(1)}% fewer)`);
    say(`channel spaces pruned: ${r.plan.spaces.length} (${(100 * apot.filterRate).toFixed(0)}% of each), not prunable: ${r.plan.blocked.length}${r.plan.blocked.map((s) => `\n  ${s.producers.map((p) => p.node).join(", ") || s.values[0]}: ${s.blocked}`).join("")}`);
    say(`${r.quantizedActivations} activation quantizers (4-bit APoT); weights ${bits}-bit APoT, first and last layers 8-bit`);
    say(`${basename(input)} → ${output} ${out.length} B (${(bytes.length / out.length).toFixed(1)}× smaller than FP32)`);
  },
};
