/**
 * The Hono app: every route, one metrics middleware, one error handler. Runtime-neutral (no
 * socket): tests drive it with `app.request()`, listen.ts puts it on Bun.serve, Deno.serve or
 * @hono/node-server.
 * @module
 */
import { Hono } from "hono";
import { cors } from "hono/cors";
import { type AppEnv, DEFAULT_LIMITS, type RouteContext, type ServerLimits, ServerState } from "./context.ts";
import { describeError, ServerError, SERVER_ERROR_CODES as E } from "./errors.ts";
import { Metrics } from "./metrics.ts";
import type { ModelRegistry } from "./registry.ts";
import { inferRoutes } from "./routes/infer.ts";
import { modelRoutes } from "./routes/models.ts";
import { systemRoutes } from "./routes/system.ts";
import { openApiRoutes } from "./openapi.ts";
import { assetRoutes } from "./routes/assets.ts";
import type { SampleBundle } from "./samples.ts";

/** What an app serves and under which limits. */
export interface AppOptions {
  registry: ModelRegistry;
  /** Sample images for the page's try-it panel (`GET /v1/samples`); none if omitted. */
  samples?: SampleBundle | null;
  limits?: Partial<ServerLimits>;
  /**
   * Cross-origin requests: the origins allowed to call the API from a browser (`"*"` for any),
   * answered with CORS headers and preflights; off (same-origin only) when omitted.
   */
  cors?: string | string[];
}

/** The app and the handles a listener needs for metrics and graceful shutdown. */
export interface OpqApp {
  app: Hono<AppEnv>;
  state: ServerState;
  metrics: Metrics;
  limits: ServerLimits;
  registry: ModelRegistry;
}

/** Build the app. */
export function createApp(options: AppOptions): OpqApp {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const ctx: RouteContext = {
    registry: options.registry,
    samples: options.samples ?? null,
    limits,
    metrics: new Metrics(),
    state: new ServerState(),
  };
  const app = new Hono<AppEnv>();

  app.use(async (c, next) => {
    const start = performance.now();
    ctx.state.enter();
    ctx.metrics.inFlight++;
    try {
      await next();
      // Shutting down: no client should reuse this connection.
      if (ctx.state.draining) c.res.headers.set("Connection", "close");
    } finally {
      ctx.metrics.inFlight--;
      ctx.state.leave();
      ctx.metrics.recordRequest(c.get("route") ?? "other", c.get("model") ?? "", c.res.status, (performance.now() - start) / 1000);
    }
  });

  if (options.cors !== undefined) app.use(cors({ origin: options.cors, allowHeaders: ["Content-Type", "Accept", "X-Shape", "X-Input-Name"], exposeHeaders: ["Retry-After"], maxAge: 600 }));
  openApiRoutes(app);
  assetRoutes(app);
  systemRoutes(app, ctx);
  modelRoutes(app, ctx);
  inferRoutes(app, ctx);

  app.notFound((c) => {
    const { status, body } = describeError(new ServerError(E.NOT_FOUND, `no route for ${c.req.method} ${new URL(c.req.url).pathname}`));
    return c.json(body, status as 404);
  });
  app.onError((err, c) => {
    const { status, body, headers } = describeError(err);
    if (status >= 500 && body.error.code === E.INTERNAL) console.error("opq serve: internal error:", err);
    for (const [k, v] of Object.entries(headers)) c.header(k, v);
    return c.json(body, status as 500);
  });

  return { app, state: ctx.state, metrics: ctx.metrics, limits, registry: options.registry };
}
