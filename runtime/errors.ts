/**
 * The runtime's one error class. Callers (the server, the CLI) branch on `err.code`, never on
 * the message; `details` carries the machine-readable specifics (which ops, which input, ...).
 * @module
 */

/** Every way loading or running a model can fail. Codes are append-only. */
export const RUNTIME_ERROR_CODES = {
  /** The model uses ops (or op versions) this runtime has no kernel for; all are listed at once. */
  UNSUPPORTED_OPS: "UNSUPPORTED_OPS",
  /** The model is not usable: undefined values, bad opset, unreadable bytes, wrong source type. */
  INVALID_MODEL: "INVALID_MODEL",
  /** A graph input was not fed. */
  INPUT_MISSING: "INPUT_MISSING",
  /** A feed's rank or a static dimension differs from the declared shape. */
  INPUT_SHAPE: "INPUT_SHAPE",
  /** A feed's element type differs from the declared one. */
  INPUT_DTYPE: "INPUT_DTYPE",
  /** A feed is malformed (data length does not match dims, unknown input name, NaN where refused). */
  INPUT_INVALID: "INPUT_INVALID",
  /** A kernel refused its inputs or threw while running. */
  KERNEL_FAILED: "KERNEL_FAILED",
  /** `run()` was called on a disposed session. */
  DISPOSED: "DISPOSED",
  /** The backend asked for cannot run here (no WebAssembly SIMD or shared memory, no usable GPU adapter); `details` says why. */
  BACKEND_UNAVAILABLE: "BACKEND_UNAVAILABLE",
  /** A run passed the session's memory budget or its Loop/Scan step budget (SessionOptions.memoryBudget, maxLoopSteps). */
  LIMIT_EXCEEDED: "LIMIT_EXCEEDED",
} as const;

/** A runtime error code. */
export type RuntimeErrorCode = (typeof RUNTIME_ERROR_CODES)[keyof typeof RUNTIME_ERROR_CODES];

/** Raised for every failure to load or run a model. */
export class OpqRuntimeError extends Error {
  override name = "OpqRuntimeError";
  constructor(
    readonly code: RuntimeErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Throw an OpqRuntimeError unless `cond` holds. */
export function ensure(
  cond: unknown,
  code: RuntimeErrorCode,
  message: string | (() => string),
  details?: Record<string, unknown>,
): asserts cond {
  if (!cond) throw new OpqRuntimeError(code, typeof message === "string" ? message : message(), details);
}
