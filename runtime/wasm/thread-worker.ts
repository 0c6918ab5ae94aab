/**
 * The worker side of wasm/threads.ts: instantiates the kernel module on the session's shared
 * memory, then blocks in Atomics.wait for jobs (a kernel index and its float64 arguments) and runs
 * them. Reports READY = 1 once instantiated, -1 if it could not.
 * @module
 */
import { KERNELS_RELAXED, KERNELS_SIMD } from "./kernels-binary.ts";
import { kernelNames, TEAM_CTL, TEAM_MAX_ARGS, TEAM_STOP } from "./threads.ts";

interface Setup {
  control: SharedArrayBuffer;
  memory: WebAssembly.Memory;
  relaxed: boolean;
  /** Polls of the job word before sleeping (threads.ts TEAM_SPIN). */
  spin: number;
}

let started = false;

function serve(data: Setup): void {
  if (started || !data?.control) return;
  started = true;
  const ctl = new Int32Array(data.control, 0, TEAM_CTL.WORDS);
  const args = new Float64Array(data.control, TEAM_CTL.WORDS * 4, TEAM_MAX_ARGS);
  let fns: ((...a: number[]) => void)[];
  try {
    const bytes = Uint8Array.from(atob(data.relaxed ? KERNELS_RELAXED : KERNELS_SIMD), (c) => c.charCodeAt(0));
    const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory: data.memory } });
    const ex = instance.exports as Record<string, (...a: number[]) => void>;
    fns = kernelNames(ex).map((n) => ex[n]!);
  } catch {
    Atomics.store(ctl, TEAM_CTL.READY, -1);
    Atomics.notify(ctl, TEAM_CTL.READY);
    return;
  }
  Atomics.store(ctl, TEAM_CTL.READY, 1);
  Atomics.notify(ctl, TEAM_CTL.READY);
  const a: number[] = [];
  const spin = data.spin ?? 0;
  for (;;) {
    const seen = ctl[TEAM_CTL.SEEN]!;
    for (let i = 0; i < spin && Atomics.load(ctl, TEAM_CTL.SEQ) === seen; i++);
    Atomics.wait(ctl, TEAM_CTL.SEQ, seen);
    ctl[TEAM_CTL.SEEN] = Atomics.load(ctl, TEAM_CTL.SEQ);
    const fn = ctl[TEAM_CTL.FN]!;
    if (fn === TEAM_STOP) return;
    try {
      a.length = ctl[TEAM_CTL.NARGS]!;
      for (let i = 0; i < a.length; i++) a[i] = args[i]!;
      fns[fn]!(...a);
      ctl[TEAM_CTL.ERROR] = 0;
    } catch {
      ctl[TEAM_CTL.ERROR] = 1;
    }
    Atomics.store(ctl, TEAM_CTL.DONE, ctl[TEAM_CTL.SEEN]!);
    Atomics.notify(ctl, TEAM_CTL.DONE);
  }
}

// Web workers deliver to the global "message" event, node:worker_threads ones to parentPort.
(globalThis as { addEventListener?: (type: string, fn: (e: Event) => void) => void })
  .addEventListener?.("message", (e: Event) => serve((e as MessageEvent<Setup>).data));
const NODE_WORKER_THREADS = "node:worker_threads";
try {
  const wt = await import(NODE_WORKER_THREADS);
  wt.parentPort?.on("message", (data: Setup) => serve(data));
} catch {
  // not a Node-compatible runtime
}
