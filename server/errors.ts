/**
 * The server's one error class, and the ONE table that maps every error code the server can
 * answer with (its own and the runtime's OpqRuntimeError codes) to an HTTP status. Every error
 * response is `{ error: { code, message } }`, built by `errorBody` below.
 * @module
 */
import { FormatError, type FormatErrorCode } from "../format/mod.ts";
import { OpqRuntimeError, RUNTIME_ERROR_CODES, type RuntimeErrorCode } from "../runtime/mod.ts";

/** Every way a request to the server can fail on the server's side. Codes are append-only. */
export const SERVER_ERROR_CODES = {
  /** The request body is not valid JSON / msgpack / float32, or does not match the schema. */
  BAD_REQUEST: "BAD_REQUEST",
  /** A query parameter or header is malformed (`?topk=x`, `X-Shape: a,b`). */
  BAD_PARAMETER: "BAD_PARAMETER",
  /** The Content-Type is not one the infer route reads. */
  UNSUPPORTED_MEDIA_TYPE: "UNSUPPORTED_MEDIA_TYPE",
  /** The Accept header asks for a format the server cannot write. */
  NOT_ACCEPTABLE: "NOT_ACCEPTABLE",
  /** An input value is NaN or ±Infinity. */
  INPUT_NOT_FINITE: "INPUT_NOT_FINITE",
  // The server checks feeds before the runtime does and answers with the runtime's own codes,
  // so a client sees one code for one problem whichever layer caught it.
  /** A model input was not sent. */
  INPUT_MISSING: RUNTIME_ERROR_CODES.INPUT_MISSING,
  /** An input's rank or a static dimension differs from the model's, or data and shape disagree. */
  INPUT_SHAPE: RUNTIME_ERROR_CODES.INPUT_SHAPE,
  /** An input's declared dtype differs from the model's. */
  INPUT_DTYPE: RUNTIME_ERROR_CODES.INPUT_DTYPE,
  /** An input the model does not have. */
  INPUT_INVALID: RUNTIME_ERROR_CODES.INPUT_INVALID,
  /** No model of that name is loaded. */
  MODEL_NOT_FOUND: "MODEL_NOT_FOUND",
  /** No such route. */
  NOT_FOUND: "NOT_FOUND",
  /** The route exists but not for this method. */
  METHOD_NOT_ALLOWED: "METHOD_NOT_ALLOWED",
  /** The body is larger than the server accepts (counted while reading, chunked bodies too). */
  PAYLOAD_TOO_LARGE: "PAYLOAD_TOO_LARGE",
  /** The model's queue is full: retry after the `Retry-After` seconds. */
  OVERLOADED: "OVERLOADED",
  /** The server is shutting down and takes no new work. */
  SHUTTING_DOWN: "SHUTTING_DOWN",
  /** The request did not finish within the server's request timeout. */
  TIMEOUT: "TIMEOUT",
  /** A bug: anything not raised as a typed error. */
  INTERNAL: "INTERNAL",
  /** A model file in the models folder cannot be loaded (raised at start, never per request). */
  MODEL_LOAD_FAILED: "MODEL_LOAD_FAILED",
  /** The request body did not arrive within the body timeout (a slow or stalled upload). */
  BODY_TIMEOUT: "BODY_TIMEOUT",
} as const;

/** A server error code. */
export type ServerErrorCode = (typeof SERVER_ERROR_CODES)[keyof typeof SERVER_ERROR_CODES];

/** Any code an error response can carry. */
export type ErrorCode = ServerErrorCode | RuntimeErrorCode | FormatErrorCode;

/**
 * HTTP status of every code. The only place codes meet statuses: route code throws typed errors,
 * the app's error handler looks the status up here.
 */
export const ERROR_STATUS: Readonly<Record<ErrorCode, number>> = {
  BAD_REQUEST: 400,
  BAD_PARAMETER: 400,
  UNSUPPORTED_MEDIA_TYPE: 415,
  NOT_ACCEPTABLE: 406,
  INPUT_NOT_FINITE: 400,
  MODEL_NOT_FOUND: 404,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  PAYLOAD_TOO_LARGE: 413,
  OVERLOADED: 503,
  SHUTTING_DOWN: 503,
  TIMEOUT: 504,
  INTERNAL: 500,
  MODEL_LOAD_FAILED: 500,
  BODY_TIMEOUT: 408,
  // The runtime's codes: a caller's bad feed is a 400, a model that cannot run is the server's fault.
  [RUNTIME_ERROR_CODES.INPUT_MISSING]: 400,
  [RUNTIME_ERROR_CODES.INPUT_SHAPE]: 400,
  [RUNTIME_ERROR_CODES.INPUT_DTYPE]: 400,
  [RUNTIME_ERROR_CODES.INPUT_INVALID]: 400,
  [RUNTIME_ERROR_CODES.UNSUPPORTED_OPS]: 500,
  [RUNTIME_ERROR_CODES.INVALID_MODEL]: 500,
  [RUNTIME_ERROR_CODES.KERNEL_FAILED]: 500,
  [RUNTIME_ERROR_CODES.DISPOSED]: 503,
  [RUNTIME_ERROR_CODES.BACKEND_UNAVAILABLE]: 500,
  // A request whose computation would pass the model's memory or loop budget: too large a request.
  [RUNTIME_ERROR_CODES.LIMIT_EXCEEDED]: 413,
  // Format errors only occur at load (refusing to start); listed so every code has a status.
  BAD_MAGIC: 500,
  UNSUPPORTED_VERSION: 500,
  TRUNCATED: 500,
  CHECKSUM: 500,
  CORRUPT: 500,
  UNKNOWN_CODEC: 500,
  TOO_LARGE: 500,
  UNSUPPORTED: 500,
  INVALID_ARGUMENT: 500,
  OUTPUT_IS_INPUT: 500,
  WRITE_FAILED: 500,
};

/** Raised by the server for every failure it answers with a typed error response. */
export class ServerError extends Error {
  override name = "ServerError";
  constructor(
    readonly code: ServerErrorCode,
    message: string,
    /** Extra response headers (e.g. Retry-After for OVERLOADED). */
    readonly headers: Record<string, string> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The JSON body of every error response. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string };
}

/** Code, status, message and extra headers of any thrown value, via ERROR_STATUS. */
export function describeError(err: unknown): { status: number; body: ErrorBody; headers: Record<string, string> } {
  let code: ErrorCode = SERVER_ERROR_CODES.INTERNAL;
  let message = "internal error";
  let headers: Record<string, string> = {};
  if (err instanceof ServerError) {
    code = err.code;
    message = err.message;
    headers = err.headers;
  } else if (err instanceof OpqRuntimeError || err instanceof FormatError) {
    code = err.code;
    message = err.message;
  } else if (err instanceof Error) {
    // Unknown errors keep their message (this is a local inference server, not a public API).
    message = err.message;
  }
  return { status: ERROR_STATUS[code] ?? 500, body: { error: { code, message } }, headers };
}
