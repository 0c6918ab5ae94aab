/**
 * The models a server holds. The app only sees the `ModelRegistry` (list, get): tests may fill it
 * with any `ModelRunner`, the CLI fills it from a folder of `.opq` files through the runtime's
 * `createSession`. A folder with one broken file refuses to load as a whole, naming every broken
 * file, because a server that silently serves fewer models than it was given is worse than none.
 * @module
 */
import { readdir, readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { decodeOpq, type Graph, sizeRatio, type OpqModel, sizeOf, type Tensor, type ValueInfo } from "../format/mod.ts";
import { createSession } from "../runtime/mod.ts";
import type { BackendChoice } from "../runtime/session.ts";
import { ServerError, SERVER_ERROR_CODES as E } from "./errors.ts";
import { type QueueLimits, WorkQueue } from "./queue.ts";
import type { RequestCaps } from "./schema.ts";
import { WorkerRunner, workersAvailable } from "./worker-runner.ts";

/** What the server needs of a loaded model (the runtime's Session satisfies it). */
export interface ModelRunner {
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  /** `signal` fires at the request deadline; a runner that can cancel rejects at once (see queue.ts). */
  run(feeds: Record<string, Tensor>, signal?: AbortSignal): Promise<Record<string, Tensor>>;
  dispose(): void | Promise<void>;
}

/** What the runtime's Session reports about the file it loaded. */
export interface SessionInfo {
  format: string;
  bytes: number;
  metadata: Record<string, unknown>;
  layers: { name: string; opType: string; path?: string }[];
  loadMs: number;
  /** The session's run budgets (runtime SessionInfo.limits), from which the request caps are sized. */
  limits?: { memoryBudget: number; perSampleBytes: number };
}

/**
 * One layer as `GET /v1/models/:name` lists it. For a `.opq` these are the compressed weights,
 * read from the decoded tensors themselves (the file keeps no per-layer copy); for anything else,
 * the planned layers with the numbers null.
 */
export interface LayerSummary {
  /** The weight's initializer name (a compressed tensor), else the planned layer's name. */
  name: string;
  /** Op type of the first node reading the weight ("" if none does). */
  opType: string;
  /** Elements of the dense weight. */
  params: number | null;
  /** Stored non-zeros. */
  nnz: number | null;
  /** 1 − nnz / params. */
  sparsity: number | null;
  /** ⌈log2(distinct codes)⌉: bits a fixed-width code needs to tell the layer's stored codes apart (0 for one or none). */
  bits: number | null;
  /** Quantization step Δ of a uniform codebook, else null. */
  step: number | null;
  /** Entries of a table codebook, else null. */
  tableSize: number | null;
}

/** One model as `GET /v1/models` lists it. */
export interface ModelSummary {
  name: string;
  format: string;
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  /** Size of the served file. */
  bytes: number;
  /** Size of the FP32 weights it was compressed from (the file size when unknown). */
  fp32Bytes: number;
  /** fp32Bytes / bytes. */
  ratio: number;
  sparsity: number | null;
  bits: number | null;
  method: string | null;
  params: number | null;
  loadMs: number;
  /** Top-1 measured on a test set and stored in the file (`opq compress --eval`, `opq finetune`), else null. */
  accuracy: { dataset: string; images: number; top1: number } | null;
}

/** A model ready to serve: its description, its runner and its work queue. */
export interface ServedModel {
  summary: ModelSummary;
  layers: LayerSummary[];
  /** Class names, when the file's metadata carries them (`metadata.labels`). */
  labels: string[] | null;
  runner: ModelRunner;
  queue: WorkQueue;
  /** Per-request caps: images along dimension 0 and elements of all inputs (413 past them). */
  caps: RequestCaps;
}

/** Batch cap when the model's memory budget allows more (ResNet-20: ~4.6 s of CPU at 1024). */
export const MAX_DEFAULT_BATCH = 1024;
/** Element cap of a model whose per-sample input size is not static. */
export const DEFAULT_MAX_ELEMENTS = 1 << 24;

/**
 * A model's default request caps: as many images as its session memory budget holds at the
 * planned per-sample peak (at most MAX_DEFAULT_BATCH), and that many samples' elements.
 */
export function defaultCaps(runner: Pick<ModelRunner, "inputs">, info: Pick<SessionInfo, "limits">, override: Partial<RequestCaps> = {}): RequestCaps {
  const l = info.limits;
  const fits = l && l.perSampleBytes > 0 ? Math.floor(l.memoryBudget / l.perSampleBytes) : MAX_DEFAULT_BATCH;
  const maxBatch = override.maxBatch ?? Math.max(1, Math.min(MAX_DEFAULT_BATCH, fits));
  let perSample = 0;
  for (const v of runner.inputs) {
    const rest = v.shape?.slice(1);
    if (!rest || !rest.every((d) => typeof d === "number" && d >= 0)) { perSample = NaN; break; }
    perSample += (rest as number[]).reduce((a, b) => a * b, 1);
  }
  const maxElements = override.maxElements ?? (Number.isFinite(perSample) && perSample > 0 ? maxBatch * perSample : DEFAULT_MAX_ELEMENTS);
  return { maxBatch, maxElements };
}

/** Default queue limits per model. */
export const DEFAULT_QUEUE_LIMITS: QueueLimits = { concurrency: 1, maxQueue: 64, maxBatch: 16 };

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);
const str = (v: unknown): string | null => (typeof v === "string" ? v : null);

/** Op type of the first node reading each value, subgraphs included. */
function readerOps(g: Graph, out = new Map<string, string>()): Map<string, string> {
  for (const n of g.nodes) {
    for (const i of n.inputs) if (!out.has(i)) out.set(i, n.opType);
    for (const a of Object.values(n.attrs)) if (a.type === "graph") readerOps(a.value, out);
  }
  return out;
}

/** The per-layer summary of a decoded `.opq`: one row per compressed tensor, in file order. */
export function describeLayers(opq: OpqModel): LayerSummary[] {
  const ops = readerOps(opq.model.graph);
  return opq.compressed.map((t) => {
    const params = sizeOf(t.dims), nnz = t.indices.length, distinct = new Set(t.codes).size;
    return {
      name: t.name,
      opType: ops.get(t.name) ?? "",
      params,
      nnz,
      sparsity: params > 0 ? 1 - nnz / params : 0,
      bits: distinct > 1 ? Math.ceil(Math.log2(distinct)) : 0,
      step: t.codebook.kind === "uniform" ? t.codebook.step : null,
      tableSize: t.codebook.kind === "table" ? t.codebook.values.length : null,
    };
  });
}

/**
 * Describe a runner and the file it came from. `layers` is the per-layer summary of a decoded
 * `.opq` (describeLayers); without it, the session's planned layers with null numbers.
 */
export function describeModel(name: string, runner: ModelRunner, info: SessionInfo, layers?: LayerSummary[]): { summary: ModelSummary; layers: LayerSummary[] } {
  const m = info.metadata;
  const fp32Bytes = num(m.fp32Bytes) ?? info.bytes;
  layers ??= info.layers.map((l) => ({ name: l.name, opType: l.opType, params: null, nnz: null, sparsity: null, bits: null, step: null, tableSize: null }));
  return {
    summary: {
      name,
      format: info.format,
      inputs: runner.inputs,
      outputs: runner.outputs,
      bytes: info.bytes,
      fp32Bytes,
      ratio: sizeRatio(fp32Bytes, info.bytes),
      sparsity: num(m.sparsity),
      bits: num(m.bits),
      method: str(m.method),
      params: num(m.params),
      loadMs: info.loadMs,
      accuracy: accuracyOf(m.accuracy),
    },
    layers,
  };
}

/** A stored accuracy record, if well-formed. */
function accuracyOf(v: unknown): ModelSummary["accuracy"] {
  const a = v as { dataset?: unknown; images?: unknown; top1?: unknown } | null;
  return a && typeof a === "object" && typeof a.dataset === "string" && num(a.images) !== null && num(a.top1) !== null
    ? { dataset: a.dataset, images: num(a.images)!, top1: num(a.top1)! }
    : null;
}

/** Wrap a runner as a served model with its own queue (`layers` as in describeModel). */
export function serveModel(name: string, runner: ModelRunner, info: SessionInfo, limits: QueueLimits = DEFAULT_QUEUE_LIMITS, layers?: LayerSummary[], caps?: Partial<RequestCaps>): ServedModel {
  const labels = Array.isArray(info.metadata.labels) && info.metadata.labels.every((l) => typeof l === "string")
    ? (info.metadata.labels as string[])
    : null;
  return { ...describeModel(name, runner, info, layers), labels, runner, queue: new WorkQueue(runner, limits), caps: defaultCaps(runner, info, caps) };
}

/** The models of one server, by name. */
export class ModelRegistry {
  private readonly byName = new Map<string, ServedModel>();

  constructor(models: readonly ServedModel[]) {
    for (const m of models) {
      if (this.byName.has(m.summary.name)) throw new ServerError(E.MODEL_LOAD_FAILED, `two models are named ${JSON.stringify(m.summary.name)}`);
      this.byName.set(m.summary.name, m);
    }
  }

  /** Every model, in name order. */
  list(): ServedModel[] {
    return [...this.byName.values()].sort((a, b) => a.summary.name.localeCompare(b.summary.name));
  }

  /** The model of that name, if loaded. */
  get(name: string): ServedModel | undefined {
    return this.byName.get(name);
  }

  /** Dispose every runner (after shutdown). */
  async dispose(): Promise<void> {
    for (const m of this.byName.values()) await m.runner.dispose();
  }
}

/** Options for loading models from files. */
export interface LoadOptions {
  /** Worker threads per session (runtime option). */
  threads?: number;
  /** Queue limits per model. */
  limits?: QueueLimits;
  /** Per-request caps overriding the defaults sized by each model (defaultCaps). */
  caps?: Partial<RequestCaps>;
  /**
   * Run each model's session in its own Worker, off the event loop (default: wherever the
   * runtime has workers, Bun and Deno). False runs on the calling thread, as on Node.
   */
  isolate?: boolean;
  /** Runtime backend of every session (default auto). */
  backend?: BackendChoice;
}

/** The model name of a file: its base name without `.opq`. */
export function modelName(path: string): string {
  return basename(path).replace(/\.opq$/i, "");
}

/**
 * Load one `.opq` file with the runtime. The file is decoded once, here: the session is built
 * from the decoded model and the per-layer summary read from its tensors.
 */
export async function loadModelFile(path: string, options: LoadOptions = {}): Promise<ServedModel> {
  const t0 = performance.now();
  const bytes = new Uint8Array(await readFile(path));
  let opq: OpqModel | undefined;
  try {
    opq = decodeOpq(bytes);
  } catch {
    // Not a valid .opq: createSession reads it as ONNX or throws the runtime's typed error.
  }
  const sessionOptions = { ...(options.threads !== undefined ? { threads: options.threads } : {}), ...(options.backend ? { backend: options.backend } : {}) };
  const session = (options.isolate ?? workersAvailable())
    ? await WorkerRunner.create(path, sessionOptions)
    : await createSession(opq ?? bytes, sessionOptions);
  // Built from a decoded model, the session measures its weights; the file size is what we serve.
  const info = { ...session.info, bytes: bytes.length, loadMs: performance.now() - t0 };
  return serveModel(modelName(path), session, info, options.limits, opq ? describeLayers(opq) : undefined, options.caps);
}

/**
 * Load every `.opq` in `dir` (not recursive). Throws MODEL_LOAD_FAILED naming every file that
 * failed and why, or if the folder holds no `.opq` at all.
 */
export async function loadModelDir(dir: string, options: LoadOptions = {}): Promise<ModelRegistry> {
  let entries: string[];
  try {
    entries = (await readdir(dir)).filter((f) => f.toLowerCase().endsWith(".opq")).sort();
  } catch (e) {
    throw new ServerError(E.MODEL_LOAD_FAILED, `cannot read the models folder ${dir}: ${(e as Error).message}`, {}, { cause: e });
  }
  if (entries.length === 0) throw new ServerError(E.MODEL_LOAD_FAILED, `no .opq files in ${dir}`);
  return loadModelFiles(entries.map((f) => join(dir, f)), options);
}

/** Load the given `.opq` files, all or none. */
export async function loadModelFiles(paths: readonly string[], options: LoadOptions = {}): Promise<ModelRegistry> {
  const loaded: ServedModel[] = [];
  const failures: string[] = [];
  for (const path of paths) {
    try {
      loaded.push(await loadModelFile(path, options));
    } catch (e) {
      const err = e as Error & { code?: unknown };
      failures.push(`  ${path}: ${typeof err.code === "string" ? `[${err.code}] ` : ""}${err.message}`);
    }
  }
  if (failures.length > 0) {
    for (const m of loaded) await m.runner.dispose();
    throw new ServerError(E.MODEL_LOAD_FAILED, `refusing to start: ${failures.length} of ${paths.length} model file(s) cannot be loaded:\n${failures.join("\n")}`);
  }
  return new ModelRegistry(loaded);
}
