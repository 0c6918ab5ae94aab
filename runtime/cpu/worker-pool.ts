/**
 * Optional multi-threading for the float32 GEMM behind `KernelContext.threads`. Kernels are
 * synchronous, so the pool is too: operands live in one shared arena (a SharedArrayBuffer), the
 * main thread writes a job into each worker's control words and wakes it with Atomics.notify, runs
 * its own share of the rows, then blocks in Atomics.wait until the workers are done (Bun and Deno
 * allow Atomics.wait on the main thread; a round trip costs ~20 µs, so only GEMMs of more than
 * MIN_PARALLEL_MACS multiply-adds are split). Workers start asynchronously: call
 * `ensureCpuWorkers(threads)` when a session loads; until it resolves kernels run single-threaded.
 * @module
 */
import { GEMM_MR, type MatrixView, sgemm } from "./sgemm.ts";
import { CMD, CONTROL_BYTES, CTL, F64 } from "./worker-protocol.ts";

/**
 * The Worker constructor as it was when this module loaded. onnxruntime-web's Emscripten build
 * replaces `globalThis.Worker` with node:worker_threads' Worker when it initialises under a
 * Node-like runtime; capturing the original avoids that one where possible, and gemm-worker.ts
 * listens on both message channels for the case where this module loaded after the swap.
 */
const WEB_WORKER: typeof Worker | undefined = typeof Worker === "undefined" ? undefined : Worker;

let messageId = 0;
/** Ids let a worker ignore the second copy of a message some runtimes deliver twice. */
function nextMessageId(): number {
  return ++messageId;
}

/** Below this many multiply-adds a GEMM stays on one thread (wake-up and wait cost ~20 µs). */
export const MIN_PARALLEL_MACS = 2_000_000;
/** How long the main thread waits for a worker before declaring the pool broken (ms). */
const WAIT_MS = 10_000;

interface WorkerSlot {
  worker: Worker;
  control: SharedArrayBuffer;
  ctl: Int32Array;
  params: Float64Array;
}

/** Offsets (in floats) of the three operands reserved in the arena. */
export interface ArenaLayout {
  arena: Float32Array;
  aOff: number;
  bOff: number;
  cOff: number;
}

/** A fixed set of GEMM workers sharing one growable arena with the main thread. */
export class CpuWorkerPool {
  private arenaBuffer: SharedArrayBuffer;
  private arena: Float32Array;
  private broken = false;
  private splitCount = 0;

  private constructor(private readonly slots: WorkerSlot[], arenaFloats: number) {
    this.arenaBuffer = new SharedArrayBuffer(arenaFloats * 4);
    this.arena = new Float32Array(this.arenaBuffer);
  }

  /** Total threads working on a split GEMM (the workers plus the calling thread). */
  get threads(): number { return this.slots.length + 1; }

  /** How many GEMMs this pool has split so far (lets tests and benches see the threaded path ran). */
  get splits(): number { return this.splitCount; }

  /** False once a worker failed or timed out; kernels then run single-threaded. */
  get usable(): boolean { return !this.broken; }

  /** Start `threads - 1` workers and wait until each has its arena. */
  static async start(threads: number, arenaFloats = 1 << 20): Promise<CpuWorkerPool> {
    const slots: WorkerSlot[] = [];
    for (let i = 0; i < threads - 1; i++) {
      const control = new SharedArrayBuffer(CONTROL_BYTES);
      // A URL object, not a string: node:worker_threads' Worker (if that is what globalThis.Worker
      // became) takes only paths or URL objects; web Workers take both.
      const worker = new WEB_WORKER!(new URL("./gemm-worker.ts", import.meta.url), { type: "module" });
      (worker as unknown as { unref?: () => void }).unref?.();
      slots.push({ worker, control, ctl: new Int32Array(control, 0, CTL.WORDS), params: new Float64Array(control, CTL.WORDS * 4, F64.WORDS) });
    }
    const pool = new CpuWorkerPool(slots, arenaFloats);
    for (const s of slots) s.worker.postMessage({ id: nextMessageId(), control: s.control, arena: pool.arenaBuffer });
    const deadline = performance.now() + WAIT_MS;
    while (slots.some((s) => Atomics.load(s.ctl, CTL.READY) < 1)) {
      if (performance.now() > deadline) { pool.stop(); throw new Error("cpu workers did not start"); }
      await new Promise((r) => setTimeout(r, 1));
    }
    return pool;
  }

  /**
   * Reserve `aLen + bLen + cLen` floats of the arena (growing it, which re-sends it to every
   * worker) and return where each operand goes. Undefined if the pool is broken.
   */
  reserve(aLen: number, bLen: number, cLen: number): ArenaLayout | undefined {
    if (this.broken) return undefined;
    // Keep each operand 16-float aligned (64-byte lines).
    const align = (n: number) => Math.ceil(n / 16) * 16;
    const total = align(aLen) + align(bLen) + align(cLen);
    if (total > this.arena.length) {
      const grown = Math.max(total, Math.ceil(this.arena.length * 1.5));
      this.arenaBuffer = new SharedArrayBuffer(grown * 4);
      this.arena = new Float32Array(this.arenaBuffer);
      for (const s of this.slots) {
        const ready = Atomics.load(s.ctl, CTL.READY);
        s.worker.postMessage({ id: nextMessageId(), control: s.control, arena: this.arenaBuffer });
        this.command(s, CMD.RELOAD);
        if (!this.await(s) || !this.awaitWord(s, CTL.READY, ready)) return undefined;
      }
    }
    return { arena: this.arena, aOff: 0, bOff: align(aLen), cOff: align(aLen) + align(bLen) };
  }

  /**
   * `C = alpha·A·B (+ C)` on arena operands, rows split across the threads. A and B are strided
   * views into the arena (`data` is ignored), C is row-major at `cOff` with leading dimension `ldc`.
   * Returns false (nothing computed) if the pool is broken.
   */
  sgemm(m: number, n: number, k: number, alpha: number, a: Omit<MatrixView, "data">, b: Omit<MatrixView, "data">, cOff: number, ldc: number, accumulate: boolean): boolean {
    if (this.broken) return false;
    const arena = this.arena;
    const share = Math.ceil(m / this.threads / GEMM_MR) * GEMM_MR;
    const started: WorkerSlot[] = [];
    let row = 0;
    for (const s of this.slots) {
      const rows = Math.min(share, m - row);
      if (rows <= 0) break;
      const p = s.params;
      p[F64.M] = rows; p[F64.N] = n; p[F64.K] = k; p[F64.ALPHA] = alpha;
      p[F64.A_OFF] = a.offset + row * a.rowStride; p[F64.A_RS] = a.rowStride; p[F64.A_CS] = a.colStride;
      p[F64.B_OFF] = b.offset; p[F64.B_RS] = b.rowStride; p[F64.B_CS] = b.colStride;
      p[F64.C_OFF] = cOff + row * ldc; p[F64.LDC] = ldc; p[F64.ACC] = accumulate ? 1 : 0;
      this.command(s, CMD.GEMM);
      started.push(s);
      row += rows;
    }
    if (row < m) {
      sgemm(m - row, n, k, alpha, { ...a, data: arena, offset: a.offset + row * a.rowStride }, { ...b, data: arena }, arena, cOff + row * ldc, ldc, accumulate);
    }
    let ok = true;
    for (const s of started) ok = this.await(s) && s.ctl[CTL.ERROR] === 0 && ok;
    if (!ok) this.broken = true;
    else this.splitCount++;
    return ok;
  }

  /** Stop every worker. */
  stop(): void {
    for (const s of this.slots) {
      this.command(s, CMD.STOP);
      s.worker.terminate();
    }
    this.broken = true;
  }

  private command(s: WorkerSlot, cmd: number): void {
    s.ctl[CTL.CMD] = cmd;
    Atomics.add(s.ctl, CTL.SEQ, 1);
    Atomics.notify(s.ctl, CTL.SEQ);
  }

  /** Block until the worker has finished the last command. */
  private await(s: WorkerSlot): boolean {
    const seq = Atomics.load(s.ctl, CTL.SEQ);
    const deadline = performance.now() + WAIT_MS;
    for (;;) {
      const done = Atomics.load(s.ctl, CTL.DONE);
      if (done === seq) return true;
      if (performance.now() > deadline) { this.broken = true; return false; }
      Atomics.wait(s.ctl, CTL.DONE, done, 50);
    }
  }

  /** Block until control word `word` differs from `from`. */
  private awaitWord(s: WorkerSlot, word: number, from: number): boolean {
    const deadline = performance.now() + WAIT_MS;
    while (Atomics.load(s.ctl, word) === from) {
      if (performance.now() > deadline) { this.broken = true; return false; }
      Atomics.wait(s.ctl, word, from, 50);
    }
    return true;
  }
}

let shared: CpuWorkerPool | undefined;
let starting: Promise<CpuWorkerPool | undefined> | undefined;

/**
 * Start (once) the process-wide pool for `threads` threads. Resolves to the pool, or undefined
 * for `threads ≤ 1` or where Worker/SharedArrayBuffer are unavailable.
 */
export function ensureCpuWorkers(threads: number): Promise<CpuWorkerPool | undefined> {
  if (threads <= 1 || !WEB_WORKER || typeof SharedArrayBuffer === "undefined") return Promise.resolve(undefined);
  if (shared && shared.threads === threads && shared.usable) return Promise.resolve(shared);
  if (!starting) {
    shared?.stop();
    starting = CpuWorkerPool.start(threads).then(
      (p) => { shared = p; starting = undefined; return p; },
      () => { starting = undefined; return undefined; },
    );
  }
  return starting;
}

/** The ready pool for `threads` threads, if one has been started and is usable. */
export function cpuWorkers(threads: number): CpuWorkerPool | undefined {
  return threads > 1 && shared && shared.usable && shared.threads <= threads ? shared : undefined;
}

/** Stop the process-wide pool (tests and CLIs that want to exit promptly). */
export function stopCpuWorkers(): void {
  shared?.stop();
  shared = undefined;
}
