/**
 * Reading a request body under a byte limit. Content-Length is only a hint a client may omit
 * (chunked transfer) or lie about, so bytes are counted while the stream is read and the read is
 * cancelled the moment the count passes the limit: a 10 GB chunked upload costs at most `limit`
 * bytes of memory before the 413.
 * @module
 */
import { ServerError, SERVER_ERROR_CODES as E } from "./errors.ts";

/** Read `request`'s body into one Uint8Array, failing with PAYLOAD_TOO_LARGE past `limit` bytes. */
export async function readBodyLimited(request: Request, limit: number, signal?: AbortSignal): Promise<Uint8Array> {
  const tooLarge = (got: string) =>
    new ServerError(E.PAYLOAD_TOO_LARGE, `request body is ${got}; the limit is ${limit} bytes`);
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) throw tooLarge(`${declared} bytes (Content-Length)`);
  const stream = request.body;
  if (!stream) return new Uint8Array(0);
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  const onAbort = () => void reader.cancel().catch(() => {});
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (signal?.aborted) throw signal.reason;
      total += value.byteLength;
      if (total > limit) {
        await reader.cancel().catch(() => {});
        throw tooLarge(`over ${limit} bytes (counted while reading)`);
      }
      chunks.push(value);
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    reader.releaseLock();
  }
  if (signal?.aborted) throw signal.reason;
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(total);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.byteLength;
  }
  return out;
}
