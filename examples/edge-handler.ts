/**
 * A Workers-style edge handler: `export default { fetch(request, env) }`, the model fetched once
 * from `env.MODEL_URL` (a URL the host can reach: object storage, a static asset) and served by
 * opq's HTTP API. Web APIs only (fetch, Request, Response): no file system, no Node built-ins in
 * the bundle (`bun build examples/edge-handler.ts --target browser`).
 * @module
 */
import { createEdgeHandler, type EdgeHandler } from "opq/edge";

/** What the host passes as `env` (Workers: vars and bindings). */
interface Env {
  MODEL_URL: string;
  MODEL_NAME?: string;
}

let handler: EdgeHandler | undefined;

export default {
  fetch(request: Request, env: Env): Promise<Response> {
    handler ??= createEdgeHandler({
      models: {
        [env.MODEL_NAME ?? "model"]: async () => {
          const res = await fetch(env.MODEL_URL);
          if (!res.ok) throw new Error(`cannot fetch the model from ${env.MODEL_URL}: HTTP ${res.status}`);
          return res.arrayBuffer();
        },
      },
    });
    return handler.fetch(request);
  },
};
