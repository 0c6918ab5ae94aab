/**
 * The routes around inference: `GET /healthz`, `GET /metrics` (Prometheus text), the bundled
 * samples `GET /v1/samples`, and the page `GET /`.
 * @module
 */
import type { OpqHono, RouteContext } from "../context.ts";
import { ServerError, SERVER_ERROR_CODES as E } from "../errors.ts";
import { renderPage } from "../page.ts";
import { samplesResponse } from "../samples.ts";

/** Register the health, metrics, samples and page routes. */
export function systemRoutes(app: OpqHono, ctx: RouteContext): void {
  app.get("/healthz", (c) => {
    c.set("route", "healthz");
    const body = {
      status: ctx.state.draining ? "draining" : "ok",
      models: ctx.registry.list().length,
      inFlight: ctx.state.inFlight,
      uptimeS: Math.round((performance.now() - ctx.state.startedAt) / 1000),
    };
    // A draining server answers 503 so load balancers stop sending it work.
    return c.json(body, ctx.state.draining ? 503 : 200);
  });
  app.get("/metrics", (c) => {
    c.set("route", "metrics");
    const gauges = ctx.registry.list().map((m) => ({
      name: m.summary.name, bytes: m.summary.bytes, fp32Bytes: m.summary.fp32Bytes, queueDepth: m.queue.depth, running: m.queue.running,
      runs: m.queue.runs, images: m.queue.images,
    }));
    return c.text(ctx.metrics.render(gauges), 200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" });
  });
  app.get("/v1/samples", (c) => {
    c.set("route", "samples");
    if (!ctx.samples) throw new ServerError(E.NOT_FOUND, "this server has no sample images bundled");
    return c.json(samplesResponse(ctx.samples));
  });
  const page = renderPage();
  app.get("/", (c) => {
    c.set("route", "page");
    return c.html(page);
  });
}
