/**
 * Put the app on a socket with whichever runtime is running us: Bun.serve, Deno (an accept loop
 * of its own over Deno.listen + Deno.serveHttp, see below), or @hono/node-server on Node.
 * `close()` shuts down gracefully: new inference is refused with SHUTTING_DOWN (503), the
 * listener stops accepting, and in-flight requests finish (up to a timeout) before the sockets
 * are closed.
 *
 * Connections are bounded on every runtime: an idle timeout (keep-alive connections with no
 * request), a header timeout (a connection that has not completed a request's headers), and the
 * app's body timeout. On Deno and Node a connection cap too: at the cap the longest-idle
 * connection is closed to make room (or the new one, if all are busy). Deno.serve's own accept
 * loop rejects an uncaught "Too many open files" and the process exits (issue 14: ~1,030 idle
 * connections under a 1024 fd limit), so on Deno we accept ourselves: an accept error is logged
 * and retried with backoff, never fatal. Bun has no connection cap option; it survives fd
 * exhaustion (accepting again once the idle timeout frees descriptors).
 * @module
 */
import type { OpqApp } from "./app.ts";

/** Where and how to listen. */
export interface ListenOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  hostname?: string;
  /** Open connections at most (Deno, Node; default 512, below the usual 1024 fd limit). */
  maxConnections?: number;
  /** Close a keep-alive connection idle this long (ms; default 5000). */
  idleTimeoutMs?: number;
  /** Close a connection that has not sent a complete request head within this (ms; default 10000). */
  headerTimeoutMs?: number;
}

/** Defaults of the connection limits. */
export const DEFAULT_CONNECTION_LIMITS = { maxConnections: 512, idleTimeoutMs: 5_000, headerTimeoutMs: 10_000 } as const;

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

interface DenoConn {
  close(): void;
}
interface DenoRequestEvent {
  request: Request;
  respondWith(r: Response | Promise<Response>): Promise<void>;
}
interface DenoHttpConn extends AsyncIterable<DenoRequestEvent> {
  close(): void;
}
interface DenoLike {
  listen(options: { port: number; hostname: string }): AsyncIterable<DenoConn> & { addr: { port: number }; accept(): Promise<DenoConn>; close(): void };
  serveHttp(conn: DenoConn): DenoHttpConn;
}

interface NodeServerLike {
  address(): { port: number } | string | null;
  close(callback?: (err?: Error) => void): void;
  closeAllConnections?(): void;
  once(event: "listening", listener: () => void): void;
  on(event: "error", listener: (err: Error) => void): void;
  maxConnections: number;
  headersTimeout: number;
  keepAliveTimeout: number;
  requestTimeout: number;
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
  const limits = {
    maxConnections: options.maxConnections ?? DEFAULT_CONNECTION_LIMITS.maxConnections,
    idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_CONNECTION_LIMITS.idleTimeoutMs,
    headerTimeoutMs: options.headerTimeoutMs ?? DEFAULT_CONNECTION_LIMITS.headerTimeoutMs,
  };
  let port_: number;
  let stop: (force: boolean) => Promise<void>;

  if (runtime === "bun") {
    const Bun = (globalThis as unknown as { Bun: BunLike }).Bun;
    // idleTimeout is in seconds (max 255). Bun counts a request whose response is pending as
    // idle too, so it must stay above the request timeout or Bun would cut a long run.
    const idleTimeout = Math.min(255, Math.ceil(Math.max(limits.idleTimeoutMs, opq.limits.requestTimeoutMs + 1000) / 1000));
    const server = Bun.serve({ fetch, port, hostname, idleTimeout });
    port_ = server.port;
    stop = async (force) => { await server.stop(force); };
  } else if (runtime === "deno") {
    const server = denoServe((globalThis as unknown as { Deno: DenoLike }).Deno, fetch, port, hostname, limits, () => opq.state.draining);
    port_ = server.port;
    stop = server.stop;
  } else {
    const { serve } = await import("@hono/node-server");
    const server = serve({ fetch, port, hostname }) as unknown as NodeServerLike;
    server.maxConnections = limits.maxConnections;
    server.headersTimeout = limits.headerTimeoutMs;
    server.keepAliveTimeout = limits.idleTimeoutMs;
    server.requestTimeout = opq.limits.requestTimeoutMs + limits.headerTimeoutMs;
    server.on("error", (e) => console.error("opq serve: server error:", e.message));
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
      // Then idle keep-alive connections get their grace (a request they send now is answered 503).
      await Promise.race([stopped, new Promise((r) => setTimeout(r, Math.min(2000, timeoutMs)))]);
      await stop(true).catch(() => {});
      return { drained: ok };
    },
  };
}

interface DenoConnState {
  conn: DenoConn;
  http?: DenoHttpConn;
  busy: number;
  served: number;
  lastActive: number;
}

/**
 * Deno: accept connections ourselves (Deno.listen), serve each with Deno.serveHttp, cap them,
 * time out idle and header-less ones, and survive accept errors such as EMFILE. During shutdown
 * every response carries `Connection: close`, so clients do not reuse a socket we are closing.
 */
function denoServe(
  Deno: DenoLike, fetch: Fetch, port: number, hostname: string,
  limits: { maxConnections: number; idleTimeoutMs: number; headerTimeoutMs: number }, draining: () => boolean,
): { port: number; stop(force: boolean): Promise<void> } {
  const listener = Deno.listen({ port, hostname });
  const conns = new Set<DenoConnState>();
  let accepting = true;
  const drop = (c: DenoConnState) => {
    if (!conns.delete(c)) return;
    try { c.http ? c.http.close() : c.conn.close(); } catch { /* already closed */ }
  };
  const serveConn = async (c: DenoConnState) => {
    try {
      c.http = Deno.serveHttp(c.conn);
      for await (const ev of c.http) {
        c.busy++;
        c.lastActive = performance.now();
        void (async () => {
          try {
            let res = await fetch(ev.request);
            if (draining()) {
              res = new Response(res.body, res);
              res.headers.set("connection", "close");
            }
            await ev.respondWith(res);
          } catch {
            // the client went away
          } finally {
            c.busy--;
            c.served++;
            c.lastActive = performance.now();
          }
        })();
      }
    } catch {
      // connection error: nothing to answer
    } finally {
      drop(c);
    }
  };
  const acceptLoop = async () => {
    let backoff = 10;
    while (accepting) {
      let conn: DenoConn;
      try {
        conn = await listener.accept();
        backoff = 10;
      } catch (e) {
        if (!accepting) break;
        // EMFILE/ENFILE and friends: wait for descriptors to free up (idle timeouts close some).
        console.error(`opq serve: accept failed (${(e as Error).message}); retrying in ${backoff} ms`);
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(1000, backoff * 2);
        continue;
      }
      if (conns.size >= limits.maxConnections) {
        let idlest: DenoConnState | undefined;
        for (const c of conns) if (c.busy === 0 && (!idlest || c.lastActive < idlest.lastActive)) idlest = c;
        if (idlest) drop(idlest);
        else { try { conn.close(); } catch { /* gone */ } continue; }
      }
      const c: DenoConnState = { conn, busy: 0, served: 0, lastActive: performance.now() };
      conns.add(c);
      void serveConn(c);
    }
  };
  void acceptLoop();
  const sweep = setInterval(() => {
    const now = performance.now();
    for (const c of conns) {
      if (c.busy > 0) continue;
      const limit = c.served === 0 ? limits.headerTimeoutMs : limits.idleTimeoutMs;
      if (now - c.lastActive > limit) drop(c);
    }
  }, Math.max(50, Math.min(1000, limits.idleTimeoutMs / 4, limits.headerTimeoutMs / 4)));
  let stopped: Promise<void> | undefined;
  return {
    port: listener.addr.port,
    stop(force) {
      if (accepting) {
        accepting = false;
        try { listener.close(); } catch { /* closed */ }
      }
      if (force) {
        clearInterval(sweep);
        for (const c of [...conns]) drop(c);
        return Promise.resolve();
      }
      // Graceful: idle connections get a grace period to send one more request (answered 503
      // with Connection: close) before they are closed; busy ones finish first.
      stopped ??= (async () => {
        const graceUntil = performance.now() + Math.min(1000, limits.idleTimeoutMs);
        while (conns.size > 0) {
          const now = performance.now();
          for (const c of [...conns]) if (c.busy === 0 && now >= graceUntil) drop(c);
          if (conns.size === 0) break;
          await new Promise((r) => setTimeout(r, 20));
        }
        clearInterval(sweep);
      })();
      return stopped;
    },
  };
}

/**
 * What the single-purpose server entries (main-node.ts, binary/main.ts) do once the app is
 * built: listen, print one JSON line `{ url, runtime, models }` on stdout, and on SIGINT or
 * SIGTERM close gracefully, dispose the models and exit 0.
 */
export async function serveUntilSignal(opq: OpqApp, registry: { list(): { summary: { name: string } }[]; dispose(): Promise<void> }, options: ListenOptions): Promise<void> {
  const server = await listen(opq, options);
  process.stdout.write(JSON.stringify({ url: server.url, runtime: server.runtime, models: registry.list().map((m) => m.summary.name) }) + "\n");
  const stop = async () => {
    await server.close({ timeoutMs: 10_000 });
    await registry.dispose();
    process.exit(0);
  };
  process.once("SIGINT", () => void stop());
  process.once("SIGTERM", () => void stop());
}
