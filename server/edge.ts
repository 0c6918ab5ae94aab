/**
 * The server as a plain fetch handler for edge hosts (Deno Deploy, `deno serve`, `bun run`,
 * Workers-style runtimes): models come as bytes, or functions that fetch them, and are loaded on
 * the first request, so the module has no file-system code of its own and no start-up work.
 *
 * ```ts
 * import { createEdgeHandler } from "opq/edge";
 * export default createEdgeHandler({ models: { mnist: () => fetch(MODEL_URL).then((r) => r.arrayBuffer()) } });
 * ```
 * @module
 */
import { decodeOpq, type OpqModel } from "../format/mod.ts";
import { createSession } from "../runtime/mod.ts";
import { createApp, type OpqApp } from "./app.ts";
import type { ServerLimits } from "./context.ts";
import { describeLayers, type LoadOptions, ModelRegistry, type ServedModel, serveModel } from "./registry.ts";
import { decodeSampleBundle, type SampleBundle } from "./samples.ts";

/** A model's bytes, or a function that gets them (called once, on the first request). */
export type ModelSource = Uint8Array | ArrayBuffer | (() => Promise<Uint8Array | ArrayBuffer>);

/** What an edge handler serves. */
export interface EdgeOptions {
  /** Models by the name they are served under. */
  models: Record<string, ModelSource>;
  /** Samples for the page: a bundle, its JSON text, or a function that gets the text. */
  samples?: SampleBundle | string | (() => Promise<string>) | null;
  limits?: Partial<ServerLimits>;
  load?: LoadOptions;
}

/** An object with the `fetch` every edge host calls, plus the app once loaded. */
export interface EdgeHandler {
  fetch(request: Request): Promise<Response>;
  /** Load the models now (the first `fetch` does it otherwise); resolves with the app. */
  ready(): Promise<OpqApp>;
}

/** Load one model from its bytes, as loadModelFile does from a file. */
export async function loadModelBytes(name: string, source: Uint8Array | ArrayBuffer, options: LoadOptions = {}): Promise<ServedModel> {
  const t0 = performance.now();
  const bytes = source instanceof Uint8Array ? source : new Uint8Array(source);
  let opq: OpqModel | undefined;
  try {
    opq = decodeOpq(bytes);
  } catch {
    // Not a valid .opq: createSession reads it as ONNX or throws the runtime's typed error.
  }
  const session = await createSession(opq ?? bytes, options.threads !== undefined ? { threads: options.threads } : undefined);
  const info = { ...session.info, bytes: bytes.length, loadMs: performance.now() - t0 };
  return serveModel(name, session, info, options.limits, opq ? describeLayers(opq) : undefined);
}

async function loadSamples(s: EdgeOptions["samples"]): Promise<SampleBundle | null> {
  if (!s) return null;
  if (typeof s === "function") return decodeSampleBundle(await s());
  return typeof s === "string" ? decodeSampleBundle(s) : s;
}

/** A fetch handler over the given models; they load on the first request (or on `ready()`). */
export function createEdgeHandler(options: EdgeOptions): EdgeHandler {
  let app: Promise<OpqApp> | undefined;
  const ready = () => {
    app ??= (async () => {
      const models: ServedModel[] = [];
      for (const [name, source] of Object.entries(options.models)) {
        models.push(await loadModelBytes(name, typeof source === "function" ? await source() : source, options.load));
      }
      return createApp({ registry: new ModelRegistry(models), samples: await loadSamples(options.samples), limits: options.limits });
    })();
    app.catch(() => { app = undefined; }); // a failed load is retried by the next request
    return app;
  };
  return {
    ready,
    async fetch(request) {
      return (await ready()).app.fetch(request);
    },
  };
}
