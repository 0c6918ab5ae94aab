/**
 * `GET /v1/models` and `GET /v1/models/:name`: what is loaded, how big it is against FP32, how
 * sparse and how many bits, and (per model) a per-layer summary.
 * @module
 */
import type { OpqHono, RouteContext } from "../context.ts";
import { ServerError, SERVER_ERROR_CODES as E } from "../errors.ts";
import type { ServedModel } from "../registry.ts";

/** The model named in the path, or MODEL_NOT_FOUND. */
export function findModel(ctx: RouteContext, name: string): ServedModel {
  const model = ctx.registry.get(name);
  if (!model) {
    const known = ctx.registry.list().map((m) => JSON.stringify(m.summary.name)).join(", ");
    throw new ServerError(E.MODEL_NOT_FOUND, `no model named ${JSON.stringify(name)}; loaded: ${known || "none"}`);
  }
  return model;
}

/** Register the model listing routes. */
export function modelRoutes(app: OpqHono, ctx: RouteContext): void {
  app.get("/v1/models", (c) => {
    c.set("route", "models");
    return c.json({ models: ctx.registry.list().map((m) => m.summary) });
  });
  app.get("/v1/models/:name", (c) => {
    c.set("route", "model");
    const model = findModel(ctx, c.req.param("name"));
    c.set("model", model.summary.name);
    return c.json({ ...model.summary, labels: model.labels, layers: model.layers });
  });
}
