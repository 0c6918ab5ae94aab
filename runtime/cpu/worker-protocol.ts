/**
 * The shared-memory protocol between cpu/worker-pool.ts and cpu/gemm-worker.ts. A control buffer
 * holds CTL.WORDS int32 words followed by F64.WORDS float64 job parameters (so a job needs no
 * message, only a store and an Atomics.notify).
 * @module
 */

/** Int32 control words. The main thread bumps SEQ; the worker copies it to SEEN, then to DONE when finished. */
export const CTL = { SEQ: 0, SEEN: 1, DONE: 2, CMD: 3, READY: 4, ERROR: 5, WORDS: 8 } as const;

/** Commands in CTL.CMD. */
export const CMD = { GEMM: 1, RELOAD: 2, STOP: 3 } as const;

/** Float64 job parameters (float64 holds every offset exactly and alpha without rounding). */
export const F64 = {
  M: 0, N: 1, K: 2, ALPHA: 3, A_OFF: 4, A_RS: 5, A_CS: 6, B_OFF: 7, B_RS: 8, B_CS: 9, C_OFF: 10, LDC: 11, ACC: 12, WORDS: 13,
} as const;

/** Bytes of one worker's control buffer. */
export const CONTROL_BYTES = CTL.WORDS * 4 + F64.WORDS * 8;
