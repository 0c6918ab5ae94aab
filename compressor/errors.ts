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
