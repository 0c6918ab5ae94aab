/**
 * `opq eval` – top-1 / top-5 accuracy of a `.opq` or ONNX model on the Fashion-MNIST test set,
 * run by our runtime or by onnxruntime-web. For a `.opq` under `--runtime ort` the oracle runs
 * the dense ONNX export (`toDenseModel(decodeOpq(bytes))` → `writeOnnx`), so the two runtimes
 * see the very same weights. The runtime and the format writers are imported only when needed.
 * @module
 */
import { closeSync, openSync, readFileSync, readSync } from "node:fs";
import { basename } from "node:path";
import { decodeOpq, isOpqBytes, toDenseModel, writeOnnx } from "../../format/mod.ts";
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

/** Run a classifier over `set` in batches of `batch`, counting top-1 and top-5 hits. */
export async function evaluate(
  runner: InferenceRunner,
  set: FashionMnist,
  options: { batch?: number; onBatch?: (n: number) => void } = {},
): Promise<EvalResult> {
  const batch = options.batch ?? 64;
  const input = runner.inputs[0]!.name;
  const output = runner.outputs[0]!.name;
  const predictions = new Uint8Array(set.count);
  let top1 = 0, top5 = 0;
  const start = performance.now();
  for (let s = 0; s < set.count; s += batch) {
    const x = fashionMnistBatch(set, s, batch);
    const logits = (await runner.run({ [input]: { dtype: "float32", ...x } }))[output]!;
    const n = x.dims[0]!;
    const classes = logits.dims[logits.dims.length - 1]!;
    if (logits.dims[0] !== n || logits.data.length !== n * classes) {
      throw new Error(`output ${output} has dims [${logits.dims}], expected [${n}, classes]`);
    }
    const data = logits.data as Float32Array;
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
  return { images, top1: top1 / images, top5: top5 / images, ms: performance.now() - start, predictions };
}

/** The `opq eval` subcommand. */
export const command: Command = {
  name: "eval",
  summary: "top-1/top-5 accuracy on the Fashion-MNIST test set (10k images)",
  usage: "eval [model.(opq|onnx)] [--data DIR] [--limit N] [--batch B] [--runtime opq|ort] [--backend auto|webgpu|wasm|cpu-reference] [--threads T]",
  options: {
    data: { type: "string" },
    limit: { type: "string" },
    batch: { type: "string" },
    runtime: { type: "string" },
    backend: { type: "string" },
    threads: { type: "string" },
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
    const set = loadFashionMnist({ dir: stringOption(args, "data"), limit: Number.isFinite(limit) ? Math.floor(limit) : undefined });
    const backend = backendOption(args);
    const runner = await openRunner(model, runtime, { threads, backend });
    try {
      const bar = progress(`eval ${basename(model)} (${runtime}${runtime === "opq" ? `, ${backend}` : ""})`, set.count, json);
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
