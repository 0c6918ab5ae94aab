/**
 * Raw DEFLATE (RFC 1951) through fflate, wrapped so that hostile input can only produce a
 * FormatError and never an allocation beyond the length a checksummed header declared.
 * @module
 */
import { deflateSync, inflateSync } from "fflate";
import { check, FormatError, FORMAT_ERROR_CODES as E } from "../errors.ts";

/** DEFLATE expands at most ~1032:1 (a 258-byte match per ~2 bits); declared lengths above this are lies. */
export const DEFLATE_MAX_RATIO = 1032;

/** Compress with fflate at the given level (default 9: files are written once, read often). */
export function deflateBytes(data: Uint8Array, level: 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 = 9, dictionary?: Uint8Array): Uint8Array {
  return deflateSync(data, dictionary ? { level, dictionary } : { level });
}

/**
 * Inflate into exactly `rawLength` bytes. The output buffer is allocated once, one byte longer
 * than declared, so a stream that inflates to more (fflate stops at the buffer's end) or less
 * is caught; a rawLength the input cannot justify is TOO_LARGE before anything is allocated.
 */
export function inflateBytes(data: Uint8Array, rawLength: number, dictionary?: Uint8Array): Uint8Array {
  check(Number.isSafeInteger(rawLength) && rawLength >= 0, E.CORRUPT, "bad inflated length");
  check(rawLength <= DEFLATE_MAX_RATIO * data.length + 64, E.TOO_LARGE, () => `${data.length} deflated bytes cannot inflate to ${rawLength}`);
  let out: Uint8Array;
  try {
    out = inflateSync(data, dictionary ? { out: new Uint8Array(rawLength + 1), dictionary } : { out: new Uint8Array(rawLength + 1) });
  } catch (cause) {
    throw new FormatError(E.CORRUPT, `deflate stream: ${(cause as Error).message}`, { cause });
  }
  check(out.length === rawLength, E.CORRUPT, () => `deflate stream inflates to ${out.length} bytes, header says ${rawLength}`);
  return out;
}
