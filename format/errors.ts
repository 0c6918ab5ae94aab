/**
 * The format package's one error class. Callers branch on `err.code`, never on the message.
 * @module
 */

/** Every way reading or writing a `.opq` or ONNX file can fail. Codes are append-only. */
export const FORMAT_ERROR_CODES = {
  /** Not a .opq file (bad magic) or not an ONNX ModelProto. */
  BAD_MAGIC: "BAD_MAGIC",
  /** A .opq of a format version this build cannot read. */
  UNSUPPORTED_VERSION: "UNSUPPORTED_VERSION",
  /** The bytes end before a declared length. */
  TRUNCATED: "TRUNCATED",
  /** A section's checksum does not match its bytes. */
  CHECKSUM: "CHECKSUM",
  /** A declared size, count or offset is out of bounds or inconsistent. */
  CORRUPT: "CORRUPT",
  /** A codec id this build does not know. */
  UNKNOWN_CODEC: "UNKNOWN_CODEC",
  /** A size that would need more memory than the input justifies. */
  TOO_LARGE: "TOO_LARGE",
  /** Valid input using a feature we do not support (external data, an unknown dtype, ...). */
  UNSUPPORTED: "UNSUPPORTED",
  /** The caller passed something that cannot be encoded. */
  INVALID_ARGUMENT: "INVALID_ARGUMENT",
  /** An output path that resolves to one of the command's inputs (same path through symlinks, or a hardlink). */
  OUTPUT_IS_INPUT: "OUTPUT_IS_INPUT",
  /** Writing a file failed (full disk, quota, permissions); the previous file is unchanged. */
  WRITE_FAILED: "WRITE_FAILED",
} as const;

/** A format error code. */
export type FormatErrorCode = (typeof FORMAT_ERROR_CODES)[keyof typeof FORMAT_ERROR_CODES];

/** Raised for any malformed, hostile or unsupported input to the format package. */
export class FormatError extends Error {
  override name = "FormatError";
  constructor(readonly code: FormatErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Throw a FormatError unless `cond` holds. */
export function check(cond: unknown, code: FormatErrorCode, message: string | (() => string)): asserts cond {
  if (!cond) throw new FormatError(code, typeof message === "string" ? message : message());
}
