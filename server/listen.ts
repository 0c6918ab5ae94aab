/**
 * Put the app on a socket with whichever runtime is running us: Bun.serve, Deno.serve, or
 * @hono/node-server on Node. `close()` shuts down gracefully: new inference is refused with
 * SHUTTING_DOWN (503), the listener stops accepting, and in-flight requests finish (up to a
 * timeout) before the sockets are closed.
 * @module
 */
import type { OpqApp } from "./app.ts";

/** Where and how to listen. */
export interface ListenOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  hostname?: string;
}

/** A listening server. */
export interface RunningServer {
  runtime: "bun" | "deno" | "node";
  hostname: string;
  port: number;
  /** `http://hostname:port`. */
  url: string;
  /** Graceful shutdown; resolves with whether every in-flight request finished in time. */
  close(options?: { timeoutMs?: number }): Promise<{ drained: boolean }>;
}

type Fetch = (request: Request) => Response | Promise<Response>;

interface BunLike {
  serve(options: { fetch: Fetch; port: number; hostname: string; idleTimeout?: number }): {
    port: number;
    stop(closeActiveConnections?: boolean): Promise<void> | void;
  };
}

interface DenoLike {
  serve(options: { port: number; hostname: string; onListen?: (addr: unknown) => void }, handler: Fetch): {
    addr: { port: number };
    shutdown(): Promise<void>;
    finished: Promise<void>;
  };
}

interface NodeServerLike {
  address(): { port: number } | string | null;
  close(callback?: (err?: Error) => void): void;
  closeAllConnections?(): void;
  once(event: "listening", listener: () => void): void;
}

/** Which runtime this is. */
export function currentRuntime(): RunningServer["runtime"] {
  const g = globalThis as { Bun?: unknown; Deno?: unknown };
  return g.Bun !== undefined ? "bun" : g.Deno !== undefined ? "deno" : "node";
}

/** Listen on `hostname:port` with the current runtime's server. */
export async function listen(opq: OpqApp, options: ListenOptions = {}): Promise<RunningServer> {
  const hostname = options.hostname ?? "127.0.0.1";
  const port = options.port ?? 0;
  const fetch: Fetch = (request) => opq.app.fetch(request);
  const runtime = currentRuntime();
  let port_: number;
  let stop: (force: boolean) => Promise<void>;

  if (runtime === "bun") {
    const Bun = (globalThis as unknown as { Bun: BunLike }).Bun;
    // idleTimeout is in seconds (max 255); above the request timeout so Bun never cuts a slow run.
    const idleTimeout = Math.min(255, Math.ceil(opq.limits.requestTimeoutMs / 1000) + 5);
    const server = Bun.serve({ fetch, port, hostname, idleTimeout });
    port_ = server.port;
    stop = async (force) => { await server.stop(force); };
  } else if (runtime === "deno") {
    const Deno = (globalThis as unknown as { Deno: DenoLike }).Deno;
    const server = Deno.serve({ port, hostname, onListen: () => {} }, fetch);
    port_ = server.addr.port;
    let shut: Promise<void> | undefined;
    stop = (force) => {
      shut ??= server.shutdown();
      return force ? Promise.resolve() : shut;
    };
  } else {
    const { serve } = await import("@hono/node-server");
    const server = serve({ fetch, port, hostname }) as unknown as NodeServerLike;
    await new Promise<void>((resolve) => server.once("listening", resolve));
    const addr = server.address();
    port_ = typeof addr === "object" && addr ? addr.port : port;
    let closed: Promise<void> | undefined;
    stop = (force) => {
      closed ??= new Promise<void>((resolve) => server.close(() => resolve()));
      if (force) server.closeAllConnections?.();
      return force ? Promise.resolve() : closed;
    };
  }

  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  return {
    runtime,
    hostname,
    port: port_,
    url: `http://${host}:${port_}`,
    async close({ timeoutMs = 30_000 } = {}) {
      const drained = opq.state.drain(timeoutMs);
      // Stop accepting; give in-flight requests until they drain, then close what is left.
      const stopped = stop(false).catch(() => {});
      const ok = await drained;
      await Promise.race([stopped, new Promise((r) => setTimeout(r, 200))]);
      await stop(true).catch(() => {});
      return { drained: ok };
    },
  };
}
