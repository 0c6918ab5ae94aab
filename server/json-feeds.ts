/**
 * A JSON reader for infer bodies that costs O(body) memory. `JSON.parse` turns a body of 8M
 * numbers into 8M boxed array slots (~55× the body in the measurement: a refused 16 MB
 * body cost 474 MB); this reader writes the numbers of every `inputs.<name>.data` array (flat or
 * nested) straight into a Float32Array, counting them against the request's element cap and
 * stopping at the first value past it, at the first non-number, and at the first non-finite one.
 * Everything else (the envelope, shapes) is small and read as ordinary JSON values, with the
 * nesting depth capped. Grammar: RFC 8259.
 * @module
 */
import { ServerError, SERVER_ERROR_CODES as E } from "./errors.ts";

/** How long the data reader runs before it lets the event loop in (a 5 MB body takes ~100 ms). */
const YIELD_MS = 8;

/** Nesting any part of an infer body may use (data arrays: up to rank 8, inside 4 envelope levels). */
const MAX_DEPTH = 16;

/** What an infer body's `data` array becomes. */
export class FloatBuilder {
  #data: Float32Array;
  length = 0;
  constructor(readonly max: number, readonly where: string) {
    this.#data = new Float32Array(Math.min(max, 1024));
  }
  push(v: number): void {
    if (this.length >= this.max) {
      throw new ServerError(E.PAYLOAD_TOO_LARGE, `${this.where}: more than ${this.max} values; this server accepts at most ${this.max} elements per request`);
    }
    if (this.length === this.#data.length) {
      const grown = new Float32Array(Math.min(this.max, this.#data.length * 2));
      grown.set(this.#data);
      this.#data = grown;
    }
    this.#data[this.length++] = v;
  }
  /** The values read, trimmed. */
  finish(): Float32Array {
    return this.#data.length === this.length ? this.#data : this.#data.slice(0, this.length);
  }
}

const bad = (msg: string) => new ServerError(E.BAD_REQUEST, `body is not valid JSON: ${msg}`);

/**
 * Parse an infer body. `data` arrays under `inputs.<name>` come back as Float32Array; the
 * elements of all of them together may not pass `maxElements` (PAYLOAD_TOO_LARGE, naming the cap).
 * A long data array lets the event loop in every `yieldMs` (tests pass 0 to yield at every
 * 4096th number).
 */
export function parseInferJson(bytes: Uint8Array, maxElements: number, yieldMs = YIELD_MS): Promise<unknown> {
  // One parse at a time: parsing is CPU-bound, so running several at once (they interleave at
  // their yields) gains nothing and holds all their float arrays alive together (16 refused 16 MB
  // bodies at once: +873 MiB interleaved, under 512 MiB one after the other).
  const run = parseTurn.then(() => parseOne(bytes, maxElements, yieldMs));
  parseTurn = run.catch(() => undefined);
  return run;
}

/** The parse now running (or done): the next one starts after it. */
let parseTurn: Promise<unknown> = Promise.resolve();

async function parseOne(bytes: Uint8Array, maxElements: number, yieldMs: number): Promise<unknown> {
  let pos = 0;
  let budget = maxElements;
  const n = bytes.length;
  const ws = () => { while (pos < n) { const c = bytes[pos]!; if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) pos++; else break; } };
  const expect = (c: number, what: string) => {
    ws();
    if (bytes[pos] !== c) throw bad(`expected ${what} at byte ${pos}`);
    pos++;
  };
  const decoder = new TextDecoder("utf-8", { fatal: true });

  const readString = (): string => {
    // pos is at the opening quote
    const start = ++pos;
    let escaped = false;
    while (pos < n) {
      const c = bytes[pos]!;
      if (c === 0x22) break;
      if (c === 0x5c) { escaped = true; pos += 2; continue; }
      if (c < 0x20) throw bad(`control character in a string at byte ${pos}`);
      pos++;
    }
    if (pos >= n) throw bad("unterminated string");
    const raw = bytes.subarray(start, pos++);
    let text: string;
    try { text = decoder.decode(raw); } catch { throw bad("a string is not UTF-8"); }
    if (!escaped) return text;
    try { return JSON.parse(`"${text}"`) as string; } catch { throw bad("bad escape in a string"); }
  };

  const POW10 = Array.from({ length: 23 }, (_, k) => 10 ** k);
  const digit = (c: number | undefined) => c !== undefined && c >= 0x30 && c <= 0x39;
  /**
   * A number token. Up to 15 significant digits and a decimal exponent within ±22 take Clinger's
   * fast path (mantissa and power of ten exact in doubles, so one rounding: equal to Number());
   * anything longer goes through Number() on the token.
   */
  const readNumber = (): number => {
    const start = pos;
    let neg = false;
    if (bytes[pos] === 0x2d) { neg = true; pos++; }
    if (!digit(bytes[pos])) throw bad(`bad number at byte ${start}`);
    let mant = 0, digits = 0, exp = 0;
    if (bytes[pos] === 0x30) pos++;
    else while (digit(bytes[pos])) { if (digits < 15) { mant = mant * 10 + bytes[pos]! - 0x30; digits += mant > 0 ? 1 : 0; } else exp++; pos++; }
    if (bytes[pos] === 0x2e) {
      pos++;
      if (!digit(bytes[pos])) throw bad(`bad number at byte ${start}`);
      while (digit(bytes[pos])) { if (digits < 15) { mant = mant * 10 + bytes[pos]! - 0x30; digits += mant > 0 ? 1 : 0; exp--; } pos++; }
    }
    let slow = digits >= 15;
    if (bytes[pos] === 0x65 || bytes[pos] === 0x45) {
      pos++;
      let eneg = false;
      if (bytes[pos] === 0x2b || bytes[pos] === 0x2d) { eneg = bytes[pos] === 0x2d; pos++; }
      if (!digit(bytes[pos])) throw bad(`bad number at byte ${start}`);
      let e = 0;
      while (digit(bytes[pos])) { if (e < 100000) e = e * 10 + bytes[pos]! - 0x30; pos++; }
      exp += eneg ? -e : e;
    }
    if (!slow && exp >= -22 && exp <= 22) {
      const v = exp < 0 ? mant / POW10[-exp]! : mant * POW10[exp]!;
      return neg ? -v : v;
    }
    slow = true;
    let text = "";
    for (let i = start; i < pos; i++) text += String.fromCharCode(bytes[i]!);
    return Number(text);
  };

  const literal = (word: string, value: unknown): unknown => {
    for (let i = 0; i < word.length; i++) if (bytes[pos + i] !== word.charCodeAt(i)) throw bad(`unexpected byte at ${pos}`);
    pos += word.length;
    return value;
  };

  /**
   * A data array (numbers, or arrays of them nested at most MAX_DEPTH deep) into `out`, read
   * iteratively; every 4096 numbers, once YIELD_MS have passed, it waits a macrotask so a
   * maximal body does not hold the event loop (health checks, other requests) for its whole parse.
   */
  const readFloats = async (out: FloatBuilder, depth: number): Promise<void> => {
    pos++; // [
    let open = 1, count = 0, slice = performance.now();
    if (depth > MAX_DEPTH) throw bad("arrays nest too deep");
    ws();
    if (bytes[pos] === 0x5d) { pos++; return; }
    for (;;) {
      ws();
      const c = bytes[pos];
      if (c === 0x5b) {
        if (depth + open > MAX_DEPTH) throw bad("arrays nest too deep");
        open++;
        pos++;
        ws();
        if (bytes[pos] !== 0x5d) continue; // a value follows
        pos++;
        open--; // an empty nested array is a complete value
      } else if (c === 0x2d || (c !== undefined && c >= 0x30 && c <= 0x39)) {
        const v = readNumber();
        if (!Number.isFinite(v)) throw new ServerError(E.INPUT_NOT_FINITE, `${out.where}[${out.length}] is ${v}; inputs must be finite numbers`);
        if (--budget < 0) throw new ServerError(E.PAYLOAD_TOO_LARGE, `${out.where}: the request holds more than ${maxElements} values; this model accepts at most ${maxElements} elements per request`);
        out.push(v);
        if ((++count & 4095) === 0 && performance.now() - slice >= yieldMs) {
          await new Promise((r) => setTimeout(r, 0));
          slice = performance.now();
        }
      } else {
        const what = c === 0x6e ? "null" : c === 0x22 ? "string" : c === 0x7b ? "object" : c === 0x74 || c === 0x66 ? "boolean" : "not a value";
        throw new ServerError(E.BAD_REQUEST, `${out.where}[${out.length}] is ${what}, expected a number`);
      }
      // After a value: a comma, or the ends of as many arrays as close here.
      for (;;) {
        ws();
        if (bytes[pos] === 0x2c) { pos++; break; }
        if (bytes[pos] !== 0x5d) throw bad(`expected , or ] at byte ${pos}`);
        pos++;
        if (--open === 0) return;
      }
    }
  };

  /** At `{`: the first key (its `:` read), or undefined for `{}`. */
  const openObject = (): string | undefined => {
    pos++;
    ws();
    if (bytes[pos] === 0x7d) { pos++; return undefined; }
    return readKey();
  };
  const readKey = (): string => {
    ws();
    if (bytes[pos] !== 0x22) throw bad(`expected a key at byte ${pos}`);
    const key = readString();
    expect(0x3a, ":");
    return key;
  };
  /** After a member's value: the next key, or undefined at `}`. */
  const nextKey = (): string | undefined => {
    ws();
    if (bytes[pos] === 0x2c) { pos++; return readKey(); }
    if (bytes[pos] === 0x7d) { pos++; return undefined; }
    throw bad(`expected , or } at byte ${pos}`);
  };
  /** A member as an own data property (a key "__proto__" stays a plain key). */
  const setMember = (obj: Record<string, unknown>, key: string, value: unknown) =>
    Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });

  /** The objects on the way to `inputs.<name>.data` (the only values that may be large). */
  const readEnvelope = async (path: readonly string[], depth: number): Promise<unknown> => {
    ws();
    if (bytes[pos] !== 0x7b || path.length > 2 || (path.length > 0 && path[0] !== "inputs")) return readValue(path, depth);
    if (depth > MAX_DEPTH) throw bad("values nest too deep");
    const obj: Record<string, unknown> = {};
    for (let key = openObject(); key !== undefined; key = nextKey()) {
      const sub = [...path, key];
      ws();
      let v: unknown;
      // inputs.<name>.data as an array: straight into floats.
      if (sub.length === 3 && key === "data" && bytes[pos] === 0x5b) {
        const out = new FloatBuilder(maxElements, `inputs.${sub[1]}.data`);
        await readFloats(out, depth + 1);
        v = out.finish();
      } else v = await readEnvelope(sub, depth + 1);
      setMember(obj, key, v);
    }
    return obj;
  };

  const readValue = (path: readonly string[], depth: number): unknown => {
    if (depth > MAX_DEPTH) throw bad("values nest too deep");
    ws();
    const c = bytes[pos];
    if (c === undefined) throw bad("unexpected end of body");
    if (c === 0x7b) {
      const obj: Record<string, unknown> = {};
      for (let key = openObject(); key !== undefined; key = nextKey()) setMember(obj, key, readValue([...path, key], depth + 1));
      return obj;
    }
    if (c === 0x5b) {
      pos++;
      const arr: unknown[] = [];
      ws();
      if (bytes[pos] === 0x5d) { pos++; return arr; }
      for (;;) {
        arr.push(readValue(path, depth + 1));
        if (arr.length > maxElements) throw new ServerError(E.PAYLOAD_TOO_LARGE, `an array of more than ${maxElements} values`);
        ws();
        if (bytes[pos] === 0x2c) { pos++; continue; }
        if (bytes[pos] === 0x5d) { pos++; return arr; }
        throw bad(`expected , or ] at byte ${pos}`);
      }
    }
    if (c === 0x22) return readString();
    if (c === 0x74) return literal("true", true);
    if (c === 0x66) return literal("false", false);
    if (c === 0x6e) return literal("null", null);
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return readNumber();
    throw bad(`unexpected byte at ${pos}`);
  };

  const value = await readEnvelope([], 0);
  ws();
  if (pos !== n) throw bad(`unexpected bytes after the value at byte ${pos}`);
  return value;
}
