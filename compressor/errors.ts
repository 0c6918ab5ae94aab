/**
 * The compressor's one error class. Callers branch on `err.code`, never on the message;
 * format errors raised while reading a model pass through as FormatError.
 * @module
 */

/** Every way compressing a model can fail. Codes are append-only. */
export const COMPRESS_ERROR_CODES = {
  /** An option is out of range or of the wrong type (sparsity, bits, rates, method). */
  INVALID_OPTION: "INVALID_OPTION",
  /** The model is structurally broken: dangling names, weight data not matching its dims, NaN/Inf weights. */
  INVALID_MODEL: "INVALID_MODEL",
  /** The model has no Conv/Gemm/MatMul float32 weight initializer to compress. */
  NO_WEIGHTS: "NO_WEIGHTS",
  /** A numerical solver failed to converge or produced a non-finite value. */
  NUMERIC: "NUMERIC",
  /** A model does not match the plan it is encoded with: missing, extra or reshaped weights. */
  PLAN_MISMATCH: "PLAN_MISMATCH",
  /** Calibration cannot run on this graph (control flow, a cut through a non-batch value, a layer no image reaches). */
  CALIBRATION: "CALIBRATION",
  /** Calibration or evaluation data is unreadable: a corrupt image or array, an empty folder, inconsistent sizes. */
  DATA_INVALID: "DATA_INVALID",
  /** The data's shape does not match the model's input (the message names both). */
  DATA_SHAPE: "DATA_SHAPE",
  /** A training checkpoint is unreadable or belongs to a different run. */
  CHECKPOINT: "CHECKPOINT",
} as const;

/** A compressor error code. */
export type CompressErrorCode = (typeof COMPRESS_ERROR_CODES)[keyof typeof COMPRESS_ERROR_CODES];

/** Raised for bad options, malformed models and numerical failures in the compressor. */
export class CompressError extends Error {
  override name = "CompressError";
  constructor(readonly code: CompressErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Throw a CompressError unless `cond` holds. */
export function ensure(cond: unknown, code: CompressErrorCode, message: string | (() => string)): asserts cond {
  if (!cond) throw new CompressError(code, typeof message === "string" ? message : message());
}
