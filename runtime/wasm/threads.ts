/**
 * A session's thread team: `threads - 1` workers, each running the same kernel module on the
 * session's one shared memory (wasm/module.ts), so splitting a kernel costs no copy. Every
 * parallel kernel takes `(begin, end, ...args)`: `team.run(name, total, grain, args)` gives each
 * thread a contiguous range of [0, total) in multiples of `grain`, runs the first range on the
 * calling thread and waits for the rest (polling a while, then Atomics.wait: TEAM_SPIN).
 * The team belongs to one session: a second session never shrinks or shares it.
 * @module
 */
import { envVar, type KernelExports, type WasmKernels } from "./module.ts";

/** Int32 control words of one worker; the job's arguments follow as float64. */
export const TEAM_CTL = { SEQ: 0, SEEN: 1, DONE: 2, FN: 3, NARGS: 4, READY: 5, ERROR: 6, WORDS: 8 } as const;
/** Most arguments a parallel kernel takes (begin and end included). */
export const TEAM_MAX_ARGS = 28;
/** FN value that stops a worker. */
export const TEAM_STOP = -1;
/** How long a thread waits for a worker before the team declares itself broken (ms). */
const WAIT_MS = 10_000;
/**
 * Polls of the control word before a thread sleeps in Atomics.wait: a worker waiting for its next
 * job (~50 µs; a kernel's next split usually follows within microseconds), the calling thread
 * waiting for the workers' shares (~0.5 ms). A futex sleep and wake costs ~10 µs on each side:
 * bench/team-bench.ts measured a round trip of 20–27 µs sleeping and 1–4 µs spinning on this
 * machine (AMD EPYC, Bun). OPQ_TEAM_SPIN=0 turns spinning off (a machine with more threads than cores).
 */
export const TEAM_SPIN = { worker: 20_000, caller: 200_000 } as const;

/** A kernel export name that takes (begin, end, ...numbers). */
export type KernelName = Exclude<keyof KernelExports, "memory">;

interface Slot {
  worker: Worker;
  ctl: Int32Array;
  args: Float64Array;
}

/** Names of the module's exports, in a fixed order both sides agree on (an index per name). */
export function kernelNames(exports: object): string[] {
  return Object.keys(exports).filter((k) => typeof (exports as Record<string, unknown>)[k] === "function").sort();
}

/**
 * How to start a worker that does not keep the process alive: node:worker_threads' Worker,
 * unref'd, where the runtime has it (Bun, Deno, Node: a web Worker blocked in Atomics.wait keeps
 * Deno from exiting), else the web Worker (browsers). Throws where neither exists.
 */
async function workerFactory(): Promise<(url: URL) => Worker> {
  const NODE_WORKER_THREADS = "node:worker_threads"; // a variable, so browser bundlers leave it be
  try {
    const wt = await import(NODE_WORKER_THREADS);
    if (typeof wt.Worker === "function") {
      return (url) => {
        const w = new wt.Worker(url);
        w.unref();
        return w as unknown as Worker;
      };
    }
  } catch {
    // not a Node-compatible runtime
  }
  if (typeof Worker === "undefined") throw new Error("no Worker in this runtime");
  return (url) => new Worker(url, { type: "module" });
}

/** Workers of one session. */
export class ThreadTeam {
  #broken = false;
  #index: Map<string, number>;
  #splits = 0;

  readonly #spin = envVar("OPQ_TEAM_SPIN") === "0" ? 0 : TEAM_SPIN.caller;

  private constructor(readonly kernels: WasmKernels, private readonly slots: Slot[]) {
    this.#index = new Map(kernelNames(kernels.exports).map((n, i) => [n, i]));
  }

  /** Threads working on a split kernel (the workers and the calling thread). */
  get threads(): number { return this.#broken ? 1 : this.slots.length + 1; }
  /** How many kernel calls were split so far (tests check the threaded path ran). */
  get splits(): number { return this.#splits; }

  /** A team of the calling thread alone (no workers, nothing to await): for callers that are threads themselves, e.g. training shards. */
  static single(kernels: WasmKernels): ThreadTeam {
    return new ThreadTeam(kernels, []);
  }

  /** Start `threads - 1` workers on the kernels' memory; resolves once each has instantiated the module. */
  static async start(kernels: WasmKernels, threads: number): Promise<ThreadTeam> {
    const slots: Slot[] = [];
    const team = new ThreadTeam(kernels, slots);
    if (threads <= 1) return team;
    const spawnWorker = await workerFactory();
    for (let i = 0; i < threads - 1; i++) {
      const control = new SharedArrayBuffer(TEAM_CTL.WORDS * 4 + TEAM_MAX_ARGS * 8);
      const worker = spawnWorker(new URL("./thread-worker.ts", import.meta.url));
      slots.push({ worker, ctl: new Int32Array(control, 0, TEAM_CTL.WORDS), args: new Float64Array(control, TEAM_CTL.WORDS * 4, TEAM_MAX_ARGS) });
      worker.postMessage({ control, memory: kernels.memory, relaxed: kernels.relaxed, spin: team.#spin ? TEAM_SPIN.worker : 0 });
    }
    const deadline = performance.now() + WAIT_MS;
    while (slots.some((s) => Atomics.load(s.ctl, TEAM_CTL.READY) === 0)) {
      if (performance.now() > deadline || slots.some((s) => Atomics.load(s.ctl, TEAM_CTL.READY) < 0)) {
        team.stop();
        throw new Error("wasm worker threads did not start");
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    return team;
  }

  /**
   * Run kernel `name(begin, end, ...args)` over [0, total), split into at most `threads` ranges
   * that are multiples of `grain` (the last may be shorter). Runs on this thread alone when the
   * team has no workers, is broken, or `total ≤ grain`.
   */
  run(name: KernelName, total: number, grain: number, args: readonly number[]): void {
    const fn = this.kernels.exports[name] as unknown as (...a: number[]) => void;
    const parts = Math.min(this.threads, Math.ceil(total / Math.max(1, grain)));
    if (parts <= 1) { fn(0, total, ...args); return; }
    const share = Math.ceil(total / parts / grain) * grain;
    const fnIndex = this.#index.get(name)!;
    const started: Slot[] = [];
    let begin = share;
    for (const s of this.slots) {
      if (begin >= total) break;
      const end = Math.min(total, begin + share);
      s.args[0] = begin; s.args[1] = end;
      for (let i = 0; i < args.length; i++) s.args[2 + i] = args[i]!;
      s.ctl[TEAM_CTL.FN] = fnIndex;
      s.ctl[TEAM_CTL.NARGS] = args.length + 2;
      Atomics.add(s.ctl, TEAM_CTL.SEQ, 1);
      Atomics.notify(s.ctl, TEAM_CTL.SEQ);
      started.push(s);
      begin = end;
    }
    fn(0, Math.min(share, total), ...args);
    let ok = true;
    for (const s of started) ok = this.#await(s) && ok;
    if (!ok) {
      // A worker failed or hung: finish its ranges here so the result is still complete.
      this.#broken = true;
      throw new Error(`wasm worker failed in ${name}`);
    }
    this.#splits++;
  }

  /** Stop every worker. */
  stop(): void {
    for (const s of this.slots) {
      s.ctl[TEAM_CTL.FN] = TEAM_STOP;
      Atomics.add(s.ctl, TEAM_CTL.SEQ, 1);
      Atomics.notify(s.ctl, TEAM_CTL.SEQ);
      s.worker.terminate();
    }
    this.slots.length = 0;
  }

  #await(s: Slot): boolean {
    const seq = Atomics.load(s.ctl, TEAM_CTL.SEQ);
    for (let i = 0; i < this.#spin; i++) if (Atomics.load(s.ctl, TEAM_CTL.DONE) === seq) return s.ctl[TEAM_CTL.ERROR] === 0;
    const deadline = performance.now() + WAIT_MS;
    for (;;) {
      const done = Atomics.load(s.ctl, TEAM_CTL.DONE);
      if (done === seq) return s.ctl[TEAM_CTL.ERROR] === 0;
      if (performance.now() > deadline) return false;
      Atomics.wait(s.ctl, TEAM_CTL.DONE, done, 50);
    }
  }
}
