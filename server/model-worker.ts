/**
 * The worker side of a WorkerRunner (worker-runner.ts): holds one model's session and runs one
 * request at a time, so the server's event loop never computes. Messages in: `load` (a path and
 * session options), `run` (an id and feeds); out: `loaded` (inputs, outputs, session info),
 * `result` (id, outputs) or `error` (id, code, message, details).
 * @module
 */
import type { Tensor } from "../format/mod.ts";
import { createSession, type Session, type SessionOptions } from "../runtime/mod.ts";

/** A message to the worker. */
export type ToWorker =
  | { type: "load"; path: string; options: SessionOptions }
  | { type: "run"; id: number; feeds: Record<string, Tensor> };

/** A message from the worker. */
export type FromWorker =
  | { type: "loaded"; inputs: Session["inputs"]; outputs: Session["outputs"]; info: Session["info"] }
  | { type: "result"; id: number; outputs: Record<string, Tensor> }
  | { type: "error"; id: number | null; code: string | undefined; message: string; details?: Record<string, unknown> };

interface WorkerScope {
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
  postMessage(message: FromWorker): void;
}

// node:worker_threads' parentPort where the runtime has one (worker-runner.ts starts the worker
// that way in Bun and Deno), else the web worker scope.
const NODE_WORKER_THREADS = "node:worker_threads";
const port = (await import(NODE_WORKER_THREADS).catch(() => undefined) as { parentPort?: { postMessage(m: unknown): void; on(e: "message", fn: (d: unknown) => void): void } | null } | undefined)?.parentPort;
const scope: WorkerScope = port
  ? {
    postMessage: (m) => port.postMessage(m),
    set onmessage(fn: WorkerScope["onmessage"]) { if (fn) port.on("message", (data) => fn({ data } as MessageEvent<ToWorker>)); },
    get onmessage() { return null; },
  }
  : globalThis as unknown as WorkerScope;
let session: Session | undefined;

const fail = (id: number | null, e: unknown): FromWorker => {
  const err = e as { code?: unknown; message?: unknown; details?: unknown };
  return {
    type: "error", id, code: typeof err?.code === "string" ? err.code : undefined,
    message: typeof err?.message === "string" ? err.message : String(e),
    details: err?.details && typeof err.details === "object" ? JSON.parse(JSON.stringify(err.details)) : undefined,
  };
};

/**
 * One run on zeros at batch 1 before the worker reports itself loaded, so JIT warm-up and
 * WebAssembly compilation are not paid by the first request (nor by the first one after a
 * cancelled run restarted the worker). Skipped for inputs without a static per-sample shape.
 */
async function warmUp(s: Session): Promise<void> {
  const feeds: Record<string, Tensor> = {};
  for (const v of s.inputs) {
    if (v.dtype !== "float32" || !v.shape) return;
    const dims = v.shape.map((d, i) => (typeof d === "number" && d >= 0 ? d : i === 0 ? 1 : -1));
    if (dims.some((d) => d < 0)) return;
    feeds[v.name] = { dtype: "float32", dims, data: new Float32Array(dims.reduce((a, b) => a * b, 1)) };
  }
  try { await s.run(feeds); } catch { /* a model that fails here fails the same way on requests */ }
}

scope.onmessage = async (e) => {
  const msg = e.data;
  if (msg.type === "load") {
    try {
      session = await createSession(msg.path, msg.options);
      await warmUp(session);
      scope.postMessage({ type: "loaded", inputs: session.inputs, outputs: session.outputs, info: session.info });
    } catch (err) {
      scope.postMessage(fail(null, err));
    }
    return;
  }
  try {
    // Outputs are copied (structured clone), never transferred: the session's pool may share their buffers.
    scope.postMessage({ type: "result", id: msg.id, outputs: await session!.run(msg.feeds) });
  } catch (err) {
    scope.postMessage(fail(msg.id, err));
  }
};
