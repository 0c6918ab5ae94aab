/**
 * What every route shares: the registry, limits, metrics and shutdown state, and the Hono env
 * type (routes label each request with a route and model name for the metrics).
 * @module
 */
import type { Hono } from "hono";
import type { Metrics } from "./metrics.ts";
import type { ModelRegistry } from "./registry.ts";
import type { SampleBundle } from "./samples.ts";

/** Per-request variables routes set for the metrics middleware. */
export type AppEnv = { Variables: { route: string; model: string } };

/** The app's Hono type. */
export type OpqHono = Hono<AppEnv>;

/** Request limits. */
export interface ServerLimits {
  /** Largest request body in bytes (counted while reading). */
  maxBodyBytes: number;
  /** Whole-request budget in ms: body read, queue wait and run. */
  requestTimeoutMs: number;
  /**
   * Infer requests the server holds at once, bodies being read included; one more is refused
   * with OVERLOADED. Bounds memory (maxInFlight · maxBodyBytes) before any model queue is reached.
   */
  maxInFlight: number;
  /**
   * Infer bodies being read at once; one more is refused with OVERLOADED. Separate from
   * maxInFlight, so clients that trickle bodies in cannot take the slots of complete requests.
   */
  maxReading: number;
  /** Time (ms) a request body may take to arrive; past it BODY_TIMEOUT (408). */
  bodyTimeoutMs: number;
}

/**
 * Default limits: 16 MiB bodies (each model also caps its own, from its batch and element caps),
 * 30 s per request, 256 validated infers held, 1024 bodies being read, 10 s to send a body.
 */
export const DEFAULT_LIMITS: ServerLimits = { maxBodyBytes: 16 << 20, requestTimeoutMs: 30_000, maxInFlight: 256, maxReading: 1024, bodyTimeoutMs: 10_000 };

/** Whether the server still takes work, and how many requests are in progress. */
export class ServerState {
  /** Set once shutdown begins: new inference is refused with SHUTTING_DOWN. */
  draining = false;
  /** Requests being handled. */
  inFlight = 0;
  /** Validated infer requests being handled (queued or running). */
  inferring = 0;
  /** Infer requests whose bodies are being read. */
  reading = 0;
  /** When the app was created (performance.now()). */
  readonly startedAt: number = performance.now();
  private idle: (() => void)[] = [];

  /** Note a request's start. */
  enter(): void { this.inFlight++; }

  /** Note a request's end, waking drain() when none is left. */
  leave(): void {
    this.inFlight--;
    if (this.inFlight === 0) for (const wake of this.idle.splice(0)) wake();
  }

  /** Begin shutdown and resolve once every in-flight request has finished (or `timeoutMs` passed). */
  drain(timeoutMs = 30_000): Promise<boolean> {
    this.draining = true;
    if (this.inFlight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.idle.push(() => { clearTimeout(timer); resolve(true); });
    });
  }
}

/** Everything a route needs. */
export interface RouteContext {
  registry: ModelRegistry;
  samples: SampleBundle | null;
  limits: ServerLimits;
  metrics: Metrics;
  state: ServerState;
}
