/**
 * onnxruntime-web (WASM backend) behind the same small interface as our runtime's Session:
 * `inputs`, `outputs`, `run(feeds)` on opq Tensors, `dispose()`. It is the oracle the parity
 * tests and `opq eval --runtime ort` compare against and the peer `opq bench` measures.
 * The WASM thread count is process-global in onnxruntime-web and fixed once the WASM module is
 * initialised, so a second session asking for a different count is an error, not a silent lie.
 * @module
 */
import * as ort from "onnxruntime-web";
import type { DType, Tensor, TensorData, ValueInfo } from "../format/mod.ts";

/** The slice of a session that eval, bench and the parity tests use (ours and ort's alike). */
export interface InferenceRunner {
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  run(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>>;
  dispose(): void | Promise<void>;
}

/** An onnxruntime-web session wrapped as an InferenceRunner. */
export interface OrtSession extends InferenceRunner {
  /** The wrapped onnxruntime-web session. */
  session: ort.InferenceSession;
  /** WASM threads in use (process-wide). */
  threads: number;
  /** Milliseconds spent in InferenceSession.create (the first session also pays WASM init). */
  loadMs: number;
}

let initialisedThreads: number | undefined;

/** Create an onnxruntime-web WASM session from ONNX bytes, with `threads` WASM threads (default 1). */
export async function createOrtSession(bytes: Uint8Array, options: { threads?: number } = {}): Promise<OrtSession> {
  const threads = options.threads ?? 1;
  if (initialisedThreads !== undefined && initialisedThreads !== threads) {
    throw new Error(`onnxruntime-web already runs with ${initialisedThreads} thread(s) in this process; cannot switch to ${threads}`);
  }
  ort.env.wasm.numThreads = threads;
  // In the compiled `opq` binary the WASM build is embedded (cli/binary/embed.ts), not in node_modules.
  const embedded = (globalThis as { __opqEmbedded?: Record<string, string> }).__opqEmbedded;
  const mjs = embedded?.["onnxruntime-web/ort-wasm-simd-threaded.mjs"], wasm = embedded?.["onnxruntime-web/ort-wasm-simd-threaded.wasm"];
  if (mjs && wasm) ort.env.wasm.wasmPaths = { mjs: `file://${mjs}`, wasm: `file://${wasm}` };
  ort.env.logLevel = "error";
  const start = performance.now();
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
  const loadMs = performance.now() - start;
  initialisedThreads = threads;
  const info = (names: readonly string[], meta: readonly ort.InferenceSession.ValueMetadata[]): ValueInfo[] =>
    names.map((name, i) => {
      const m = meta[i];
      return m && m.isTensor
        ? { name, dtype: m.type as DType, shape: m.shape.map((d) => (typeof d === "number" && d >= 0 ? d : typeof d === "string" ? d : null)) }
        : { name, dtype: "float32", shape: null };
    });
  return {
    session,
    threads,
    loadMs,
    inputs: info(session.inputNames, session.inputMetadata),
    outputs: info(session.outputNames, session.outputMetadata),
    async run(feeds) {
      const ortFeeds: Record<string, ort.Tensor> = {};
      for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = new ort.Tensor(t.dtype as ort.Tensor.Type, t.data as ort.Tensor.DataType, t.dims);
      const results = await session.run(ortFeeds);
      const out: Record<string, Tensor> = {};
      for (const [name, t] of Object.entries(results)) {
        out[name] = { dtype: t.type as DType, dims: [...t.dims], data: t.data as TensorData };
      }
      return out;
    },
    dispose: () => session.release(),
  };
}
