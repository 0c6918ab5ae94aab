/**
 * The worker side of cpu/worker-pool.ts: blocks in Atomics.wait on its control words, runs its rows
 * of a GEMM on the shared arena, signals completion. Leaves the blocking loop (back to the event
 * loop) only to receive a new, larger arena.
 * @module
 */
import { sgemm } from "./sgemm.ts";
import { CTL, CMD, F64 } from "./worker-protocol.ts";

interface Setup {
  id: number;
  control: SharedArrayBuffer;
  arena: SharedArrayBuffer;
}

let ctl: Int32Array | undefined;
let params: Float64Array | undefined;
let arena: Float32Array | undefined;

function serve(): void {
  const c = ctl!, p = params!;
  for (;;) {
    Atomics.wait(c, CTL.SEQ, c[CTL.SEEN]!);
    c[CTL.SEEN] = Atomics.load(c, CTL.SEQ);
    const cmd = c[CTL.CMD]!;
    if (cmd === CMD.STOP) { finish(c); close(); return; }
    if (cmd === CMD.RELOAD) { finish(c); return; } // the new arena arrives as a message
    try {
      const a = arena!;
      sgemm(
        p[F64.M]!, p[F64.N]!, p[F64.K]!, p[F64.ALPHA]!,
        { data: a, offset: p[F64.A_OFF]!, rowStride: p[F64.A_RS]!, colStride: p[F64.A_CS]! },
        { data: a, offset: p[F64.B_OFF]!, rowStride: p[F64.B_RS]!, colStride: p[F64.B_CS]! },
        a, p[F64.C_OFF]!, p[F64.LDC]!, p[F64.ACC]! !== 0,
      );
      c[CTL.ERROR] = 0;
    } catch {
      c[CTL.ERROR] = 1;
    }
    finish(c);
  }
}

function finish(c: Int32Array): void {
  Atomics.store(c, CTL.DONE, c[CTL.SEEN]!);
  Atomics.notify(c, CTL.DONE);
}

/** Messages seen so far: a message may arrive twice (see below); each is handled once, by id. */
let lastId = 0;

function setup(data: Setup): void {
  if (!data || typeof data.id !== "number" || data.id <= lastId) return;
  lastId = data.id;
  ctl = new Int32Array(data.control, 0, CTL.WORDS);
  params = new Float64Array(data.control, CTL.WORDS * 4, F64.WORDS);
  arena = new Float32Array(data.arena);
  Atomics.store(ctl, CTL.READY, ctl[CTL.READY]! + 1);
  Atomics.notify(ctl, CTL.READY);
  serve();
}

// A web Worker delivers to the global "message" event; a node:worker_threads Worker (what
// onnxruntime-web installs as globalThis.Worker) only to parentPort. Bun's web Workers deliver to
// both, hence the de-duplication by id. The specifier is a variable so browser bundlers leave it be.
(globalThis as { addEventListener?: (type: string, fn: (e: Event) => void) => void })
  .addEventListener?.("message", (e: Event) => setup((e as MessageEvent<Setup>).data));
const NODE_WORKER_THREADS = "node:worker_threads";
try {
  const wt = await import(NODE_WORKER_THREADS);
  wt.parentPort?.on("message", (data: Setup) => setup(data));
} catch {
  // not a Node-compatible runtime: the web event above is the only channel
}
