/**
 * `opq eval` – top-1 / top-5 accuracy of a `.opq` or ONNX model on the Fashion-MNIST test set,
 * run by our runtime or by onnxruntime-web. For a `.opq` under `--runtime ort` the oracle runs
 * the dense ONNX export (`toDenseModel(decodeOpq(bytes))` → `writeOnnx`), so the two runtimes
 * see the very same weights. The runtime and the format writers are imported only when needed.
 * @module
 */
import { closeSync, existsSync, openSync, readFileSync, readSync } from "node:fs";
import { basename, join } from "node:path";
import { CLASSES_KEY, decodeOpq, isOpqBytes, type OpqModel, parsePreprocess, PREPROCESS_KEY, type Preprocess, type Tensor, toDenseModel, writeOnnx } from "../../format/mod.ts";
import { backendOption, type Command, numberOption, printJson, progress, say, stringOption, UsageError, wantsJson } from "../common.ts";
import type { BackendChoice } from "../../runtime/session.ts";
import { DEFAULT_MODEL } from "../shared.ts";
import { type FashionMnist, fashionMnistBatch, loadFashionMnist } from "../fashion-mnist.ts";
import { createOrtSession, type InferenceRunner } from "../ort.ts";

/** Which runtime executes the model. */
export type RuntimeName = "opq" | "ort";

/** Accuracy of one model on a labelled image set. */
export interface EvalResult {
  images: number;
  top1: number;
  top5: number;
  ms: number;
  /** The top-1 class of each image (for comparing two runtimes image by image). */
  predictions: Uint8Array;
  /** With `keepLogits`: every image's logits, [images, classes] row-major. */
  logits?: Float32Array;
}

/** True for a `.opq` container, by its magic bytes as the runtime decides (not by its name). */
export function isOpqFile(path: string): boolean {
  const head = new Uint8Array(4);
  const fd = openSync(path, "r");
  try {
    return isOpqBytes(head.subarray(0, readSync(fd, head, 0, 4, 0)));
  } finally {
    closeSync(fd);
  }
}

/** The ONNX bytes onnxruntime-web should run for a model file: the file itself, or a `.opq`'s dense export. */
export async function onnxBytesFor(path: string, bytes = new Uint8Array(readFileSync(path))): Promise<Uint8Array> {
  if (!isOpqBytes(bytes)) return bytes;
  return writeOnnx(toDenseModel(decodeOpq(bytes)));
}

/** Open a model file with the named runtime, as an InferenceRunner. */
export async function openRunner(path: string, runtime: RuntimeName, options: { threads?: number; backend?: BackendChoice } = {}): Promise<InferenceRunner> {
  // A view of the file, not `new Uint8Array(buffer)` (a copy): the bench's peak RSS would count the file twice.
  const file = readFileSync(path);
  const bytes = new Uint8Array(file.buffer, file.byteOffset, file.byteLength);
  if (runtime === "ort") return createOrtSession(await onnxBytesFor(path, bytes), { threads: options.threads });
  const { createSession } = await import("../../runtime/mod.ts");
  return createSession(bytes, options);
}

/** Indices of the `k` largest of `row` (ties: lower index first). */
function topK(row: Float32Array, k: number): number[] {
  const idx = Array.from(row.keys());
  idx.sort((a, b) => row[b]! - row[a]! || a - b);
  return idx.slice(0, k);
}

/** Labelled inputs already preprocessed (an image folder, .npy arrays): input [N, …], one label each. */
export interface LabelledTensors {
  input: Tensor;
  labels: ArrayLike<number>;
}

/** Run a classifier over `set` in batches of `batch`, counting top-1 and top-5 hits. */
export async function evaluate(
  runner: InferenceRunner,
  given: FashionMnist | LabelledTensors,
  options: { batch?: number; onBatch?: (n: number) => void; keepLogits?: boolean } = {},
): Promise<EvalResult> {
  const batch = options.batch ?? 64;
  const input = runner.inputs[0]!.name;
  const output = runner.outputs[0]!.name;
  const set = "input" in given ? { count: given.input.dims[0]!, labels: given.labels } : given;
  const slice = (s: number, n: number) => {
    if (!("input" in given)) return fashionMnistBatch(given, s, n);
    const t = given.input, per = t.data.length / Math.max(1, t.dims[0]!), e = Math.min(set.count, s + n);
    return { dims: [e - s, ...t.dims.slice(1)], data: (t.data as Float32Array).subarray(s * per, e * per) };
  };
  const { checkInputShape } = await import("../../compressor/mod.ts");
  checkInputShape(runner.inputs[0]!, slice(0, 1).dims);
  const predictions = new Uint8Array(set.count);
  let top1 = 0, top5 = 0, kept: Float32Array | undefined;
  const start = performance.now();
  for (let s = 0; s < set.count; s += batch) {
    const x = slice(s, batch);
    const logits = (await runner.run({ [input]: { dtype: "float32", ...x } }))[output]!;
    const n = x.dims[0]!;
    const classes = logits.dims[logits.dims.length - 1]!;
    if (logits.dims[0] !== n || logits.data.length !== n * classes) {
      throw new Error(`output ${output} has dims [${logits.dims}], expected [${n}, classes]`);
    }
    const data = logits.data as Float32Array;
    if (options.keepLogits) (kept ??= new Float32Array(set.count * classes)).set(data, s * classes);
    for (let i = 0; i < n; i++) {
      const best = topK(data.subarray(i * classes, (i + 1) * classes), 5);
      const label = set.labels[s + i]!;
      predictions[s + i] = best[0]!;
      if (best[0] === label) top1++;
      if (best.includes(label)) top5++;
    }
    options.onBatch?.(n);
  }
  const images = set.count;
  return { images, top1: top1 / images, top5: top5 / images, ms: performance.now() - start, predictions, logits: kept };
}

/**
 * The labelled data to evaluate on: Fashion-MNIST IDX (the default), an image folder (classes
 * mapped by name onto the .opq's stored class list when it has one), or .npy inputs + labels.
 */
async function evalData(path: string, _runner: InferenceRunner, data: string | undefined, labels: string | undefined, preprocessJson: string | undefined, limit: number | undefined): Promise<FashionMnist | LabelledTensors> {
  if (data === undefined || existsSync(join(data, "t10k-images-idx3-ubyte.gz"))) {
    if (labels !== undefined) throw new UsageError("--labels goes with an .npy --data");
    return loadFashionMnist({ dir: data, limit });
  }
  const { loadImageFolder, parseNpy } = await import("../../compressor/mod.ts");
  if (data.toLowerCase().endsWith(".npy")) {
    if (labels === undefined) throw new UsageError("an .npy --data needs --labels labels.npy");
    const x = parseNpy(new Uint8Array(readFileSync(data)), data), y = parseNpy(new Uint8Array(readFileSync(labels)), labels);
    if (y.dims.length !== 1 || y.dims[0] !== x.dims[0]) throw new UsageError(`${labels} has shape [${y.dims}], expected [${x.dims[0]}] labels`);
    const n = Math.min(limit ?? Infinity, x.dims[0]!), per = x.data.length / Math.max(1, x.dims[0]!);
    return { input: { ...x, dims: [n, ...x.dims.slice(1)], data: (x.data as Float32Array).subarray(0, n * per) }, labels: (y.data as Float32Array).subarray(0, n) };
  }
  const meta = isOpqFile(path) ? decodeOpq(new Uint8Array(readFileSync(path))).metadata : {};
  let p: Preprocess;
  if (meta[PREPROCESS_KEY] !== undefined) p = parsePreprocess(meta[PREPROCESS_KEY]);
  else {
    const { preprocessFor } = await import("./compress.ts");
    const { readOnnx } = await import("../../format/mod.ts");
    p = await preprocessFor(isOpqFile(path) ? toDenseModel(decodeOpq(new Uint8Array(readFileSync(path)))) : readOnnx(new Uint8Array(readFileSync(path))), preprocessJson);
  }
  const set = loadImageFolder(data, p, { limit });
  const known = Array.isArray(meta[CLASSES_KEY]) ? (meta[CLASSES_KEY] as unknown[]).map(String) : undefined;
  if (!known) return set;
  const map = set.classes.map((c) => known.indexOf(c));
  const missing = set.classes.filter((_, i) => map[i]! < 0);
  if (missing.length) throw new UsageError(`class folder(s) ${missing.join(", ")} are not among the model's classes (${known.join(", ")})`);
  return { input: set.input, labels: Int32Array.from(set.labels, (l) => map[l]!) };
}

/** Top-1 of a compressed (or any) model on the Fashion-MNIST test images, as reports and `.opq` metadata record it. */
export async function measureTop1(model: OpqModel, options: { limit?: number; dir?: string; quiet?: boolean } = {}): Promise<{ dataset: string; images: number; top1: number }> {
  const set = loadFashionMnist({ dir: options.dir, limit: options.limit });
  return { dataset: "Fashion-MNIST", images: set.count, top1: await top1On(model, set, "eval", options.quiet) };
}

/** Top-1 of a model (any createSession source) on a loaded set, with a progress bar labelled `label`. */
export async function top1On(model: Parameters<typeof import("../../runtime/mod.ts").createSession>[0], set: FashionMnist, label: string, quiet = false): Promise<number> {
  const { createSession } = await import("../../runtime/mod.ts");
  const session = await createSession(model);
  try {
    const bar = progress(label, set.count, quiet);
    const r = await evaluate(session, set, { batch: 100, onBatch: (n) => bar.tick(n) });
    bar.done();
    return r.top1;
  } finally {
    session.dispose();
  }
}

/** The `opq eval` subcommand. */
export const command: Command = {
  name: "eval",
  summary: "top-1/top-5 accuracy on the Fashion-MNIST test set (10k images)",
  usage: [
    "eval [model.(opq|onnx)] [--data D] [--labels L.npy] [--preprocess JSON] [--limit N] [--batch B] [--runtime opq|ort] [--backend auto|webgpu|wasm|cpu-reference] [--threads T]",
    "--data: a Fashion-MNIST IDX folder (default: the shared test set), a folder of class subfolders of PNG/JPEG images, or an .npy array with --labels;",
    "images get the .opq's stored preprocessing (what calibration used), else --preprocess, else the model's default (see compress --help)",
  ].join("\n"),
  options: {
    data: { type: "string" },
    limit: { type: "string" },
    batch: { type: "string" },
    runtime: { type: "string" },
    backend: { type: "string" },
    threads: { type: "string" },
    labels: { type: "string" },
    preprocess: { type: "string" },
  },
  help: {
    backend: "the runtime backend: auto (default), webgpu, wasm or cpu-reference",
    labels: "with an .npy --data: the labels (.npy, one per image)",
    preprocess: "with an image-folder --data: the preprocessing as JSON, when the .opq stores none",
    data: "Fashion-MNIST folder (default: $OPQ_SHARED/data/fashion-mnist, ../shared, or Debian's dataset-fashion-mnist)",
    limit: "evaluate on the first N test images (default all 10,000)",
    batch: "images per run (default 64)",
    runtime: "opq (default) or ort (onnxruntime-web, on the dense export of a .opq)",
    threads: "worker threads for the GEMMs (default 1)",
  },
  async run(args) {
    if (args.positionals.length > 1) throw new UsageError(`expected one model, got ${args.positionals.length}`);
    const model = args.positionals[0] ?? DEFAULT_MODEL;
    const runtime = stringOption(args, "runtime", "opq")!;
    if (runtime !== "opq" && runtime !== "ort") throw new UsageError(`--runtime must be opq or ort, got ${JSON.stringify(runtime)}`);
    const limit = numberOption(args, "limit", Infinity, 1);
    const batch = Math.floor(numberOption(args, "batch", 64, 1, 4096));
    const threads = Math.floor(numberOption(args, "threads", 1, 1, 64));
    const json = wantsJson(args);
    const backend = backendOption(args);
    const runner = await openRunner(model, runtime, { threads, backend });
    try {
      const set = await evalData(model, runner, stringOption(args, "data"), stringOption(args, "labels"), stringOption(args, "preprocess"), Number.isFinite(limit) ? Math.floor(limit) : undefined);
      const bar = progress(`eval ${basename(model)} (${runtime}${runtime === "opq" ? `, ${backend}` : ""})`, "input" in set ? set.input.dims[0]! : set.count, json);
      const r = await evaluate(runner, set, { batch, onBatch: (n) => bar.tick(n) });
      bar.done();
      const result = { model, runtime, images: r.images, top1: r.top1, top5: r.top5, ms: Math.round(r.ms) };
      if (json) printJson(result);
      else {
        say(`${basename(model)} on ${runtime === "opq" ? `opq (${backend})` : runtime}: top-1 ${(100 * r.top1).toFixed(2)}%  top-5 ${(100 * r.top5).toFixed(2)}%  ` +
          `(${r.images} images, ${(r.ms / 1000).toFixed(1)} s, ${(r.ms / r.images).toFixed(2)} ms/image)`);
      }
    } finally {
      await runner.dispose();
    }
  },
};
