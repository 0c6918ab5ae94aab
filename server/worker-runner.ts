/**
 * Inference off the event loop: a WorkerRunner holds one model's session in its own Worker
 * (model-worker.ts), so `/healthz`, other models and body reading stay responsive while a large
 * batch computes (the runtime's `session.run` is async but computes on the calling thread). A
 * run whose AbortSignal fires (the request deadline) is really cancelled: the worker is
 * terminated, the run rejects with TIMEOUT at once, and a fresh worker reloads the model for the
 * next run. Needs a global Worker (Bun, Deno); `workersAvailable()` says whether there is one.
 * @module
 */
import type { Tensor, ValueInfo } from "../format/mod.ts";
import { OpqRuntimeError, type RuntimeErrorCode, type SessionOptions } from "../runtime/mod.ts";
import { ServerError, SERVER_ERROR_CODES as E } from "./errors.ts";
import type { FromWorker, ToWorker } from "./model-worker.ts";
import type { ModelRunner, SessionInfo } from "./registry.ts";

interface WorkerLike {
  postMessage(message: ToWorker): void;
  terminate(): void;
  onmessage: ((e: MessageEvent<FromWorker>) => void) | null;
  onerror: ((e: ErrorEvent) => void) | null;
}
type WorkerCtor = new (url: URL, options: { type: "module" }) => WorkerLike;

// A URL object, not its string: onnxruntime-web, once loaded, replaces globalThis.Worker with
// node:worker_threads' Worker, which takes paths or URL objects only (web Workers take both).
const WORKER_URL = new URL("./model-worker.ts", import.meta.url);

/** True if this runtime has a global Worker (Bun and Deno do; Node does not). */
export function workersAvailable(): boolean {
  const g = globalThis as { Worker?: unknown; Bun?: unknown; Deno?: unknown };
  return typeof g.Worker === "function" && (g.Bun !== undefined || g.Deno !== undefined);
}

/** An error message from the worker as the typed error the server maps to a status. */
function revive(msg: Extract<FromWorker, { type: "error" }>): Error {
  if (msg.code) return new OpqRuntimeError(msg.code as RuntimeErrorCode, msg.message, msg.details);
  return new Error(msg.message);
}

interface Loaded {
  worker: WorkerLike;
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  info: SessionInfo & { limits?: { memoryBudget: number; perSampleBytes: number } };
}

const NODE_WORKER_THREADS = "node:worker_threads"; // a variable, so bundlers leave it be

/**
 * A model worker. Through node:worker_threads where the runtime has it (Bun, Deno): its API is
 * the same whoever loaded first, while globalThis.Worker is replaced by node:worker_threads'
 * Worker once onnxruntime-web initialises in the process (and that one has no `onmessage`).
 * model-worker.ts answers on the matching channel (parentPort). Else the web Worker.
 */
async function newWorker(): Promise<WorkerLike> {
  const wt = await import(NODE_WORKER_THREADS).catch(() => undefined) as { Worker?: new (url: URL) => NodeWorker } | undefined;
  if (!wt?.Worker) return new (globalThis as unknown as { Worker: WorkerCtor }).Worker(WORKER_URL, { type: "module" });
  const w = new wt.Worker(WORKER_URL);
  const like: WorkerLike = {
    onmessage: null, onerror: null,
    postMessage: (m) => w.postMessage(m),
    terminate: () => { void w.terminate(); },
  };
  w.on("message", (data: unknown) => like.onmessage?.({ data } as MessageEvent<FromWorker>));
  w.on("error", (err: unknown) => like.onerror?.({ message: (err as Error)?.message ?? String(err) } as ErrorEvent));
  return like;
}

/** The part of node:worker_threads' Worker used here. */
interface NodeWorker {
  postMessage(m: unknown): void;
  terminate(): unknown;
  on(event: "message" | "error", fn: (v: unknown) => void): void;
}

async function spawn(path: string, options: SessionOptions): Promise<Loaded> {
  const worker = await newWorker();
  return new Promise((resolve, reject) => {
    worker.onerror = (e) => { worker.terminate(); reject(new Error(`model worker failed to start: ${e.message}`)); };
    worker.onmessage = (e) => {
      const msg = e.data;
      if (msg.type === "loaded") resolve({ worker, inputs: msg.inputs, outputs: msg.outputs, info: msg.info });
      else if (msg.type === "error") { worker.terminate(); reject(revive(msg)); }
    };
    worker.postMessage({ type: "load", path, options });
  });
}

/** A ModelRunner whose session lives in a Worker; one run at a time (the queue's concurrency). */
export class WorkerRunner implements ModelRunner {
  #current: Promise<Loaded>;
  #nextId = 1;
  #disposed = false;
  /** Workers terminated to cancel a run (a restart reloads the model). */
  restarts = 0;

  private constructor(readonly path: string, readonly options: SessionOptions, first: Loaded) {
    this.#current = Promise.resolve(first);
    this.inputs = first.inputs;
    this.outputs = first.outputs;
    this.info = first.info;
  }

  readonly inputs: ValueInfo[];
  readonly outputs: ValueInfo[];
  /** The session info the worker reported at load. */
  readonly info: Loaded["info"];

  /** Load `path` in a new worker. Rejects with the runtime's typed error if it cannot be loaded. */
  static async create(path: string, options: SessionOptions = {}): Promise<WorkerRunner> {
    return new WorkerRunner(path, options, await spawn(path, options));
  }

  async run(feeds: Record<string, Tensor>, signal?: AbortSignal): Promise<Record<string, Tensor>> {
    if (this.#disposed) throw new OpqRuntimeError("DISPOSED", "run() on a disposed model");
    // Waiting for a (re)loading worker ends at the deadline too: the slot must not outlive it.
    const loaded = await new Promise<Loaded>((resolve, reject) => {
      const onAbort = () => reject(signal!.reason ?? new ServerError(E.TIMEOUT, "run cancelled"));
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#current.then(resolve, reject).finally(() => signal?.removeEventListener("abort", onAbort));
    });
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        cleanup();
        // Really cancel: the computation dies with its worker; the next run gets a fresh one.
        loaded.worker.terminate();
        this.restarts++;
        this.#current = spawn(this.path, this.options);
        this.#current.catch(() => {});
        reject(signal!.reason ?? new ServerError(E.TIMEOUT, "run cancelled"));
      };
      const cleanup = () => { signal?.removeEventListener("abort", onAbort); loaded.worker.onmessage = null; loaded.worker.onerror = null; };
      loaded.worker.onmessage = (e) => {
        const msg = e.data;
        if ((msg.type === "result" || msg.type === "error") && msg.id === id) {
          cleanup();
          if (msg.type === "result") resolve(msg.outputs);
          else reject(revive(msg));
        }
      };
      loaded.worker.onerror = (e) => {
        cleanup();
        this.#current = spawn(this.path, this.options);
        this.#current.catch(() => {});
        reject(new Error(`model worker crashed: ${e.message}`));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      loaded.worker.postMessage({ type: "run", id, feeds });
    });
  }

  async dispose(): Promise<void> {
    this.#disposed = true;
    try {
      (await this.#current).worker.terminate();
    } catch {
      // never loaded
    }
  }
}
