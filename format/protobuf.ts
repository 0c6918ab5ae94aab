/**
 * The protobuf wire format (https://protobuf.dev/programming-guides/encoding/), only as much as
 * ONNX needs: a bounds-checked reader over a byte slice and a writer that measures first and
 * allocates once. Every length is checked against the bytes that remain before anything is
 * sliced or allocated, so hostile input ends in a FormatError, never a crash or a huge buffer.
 * @module
 */
import { FormatError } from "./errors.ts";

/** Wire types (encoding.md "Message Structure"). Groups (3, 4) are deprecated and rejected. */
export const WIRE = { VARINT: 0, I64: 1, LEN: 2, I32: 5 } as const;

const TWO_32 = 4294967296;
const UTF8_DECODER = new TextDecoder("utf-8");
const UTF8_ENCODER = new TextEncoder();

/** Reads fields from `bytes[pos, end)`; a nested message is a new reader over its slice. */
export class ProtoReader {
  /** Low and high 32 bits of the last varint read by `varint64`. */
  lo = 0;
  hi = 0;
  constructor(readonly bytes: Uint8Array, public pos = 0, readonly end = bytes.length) {}

  /** True when every byte of this message has been read. */
  done(): boolean {
    return this.pos >= this.end;
  }

  /** The next field key as [field number, wire type]. */
  key(): [field: number, wire: number] {
    const k = this.varint();
    const field = Math.floor(k / 8);
    const wire = k & 7;
    if (field === 0 || field > 0x1fffffff) throw new FormatError("CORRUPT", `bad protobuf field number ${field} at byte ${this.pos}`);
    return [field, wire];
  }

  /** A varint as its two 32-bit halves in `lo`/`hi` (at most 10 bytes). */
  varint64(): void {
    const { bytes, end } = this;
    let lo = 0, hi = 0, shift = 0, p = this.pos;
    for (let i = 0; ; i++) {
      if (p >= end) throw new FormatError("TRUNCATED", `varint runs past the end of its message at byte ${p}`);
      if (i === 10) throw new FormatError("CORRUPT", `varint longer than 10 bytes at byte ${this.pos}`);
      const b = bytes[p++]!;
      if (i < 4) lo |= (b & 0x7f) << shift;
      else if (i === 4) { lo |= (b & 0x0f) << 28; hi = (b & 0x70) >> 4; }
      else hi |= (b & 0x7f) << (shift - 32);
      shift += 7;
      if (b < 0x80) break;
    }
    this.pos = p;
    this.lo = lo >>> 0;
    this.hi = hi >>> 0;
  }

  /** An unsigned varint as a number (exact below 2^53). The fast path covers 1-byte values. */
  varint(): number {
    const p = this.pos;
    if (p < this.end && this.bytes[p]! < 0x80) { this.pos = p + 1; return this.bytes[p]!; }
    this.varint64();
    return this.hi * TWO_32 + this.lo;
  }

  /** A two's-complement int64 varint as a number (exact within ±2^53). */
  int64(): number {
    this.varint64();
    return (this.hi | 0) * TWO_32 + this.lo;
  }

  /** An int64 varint as a bigint, exact. */
  int64Big(): bigint {
    this.varint64();
    return (BigInt(this.hi | 0) << 32n) | BigInt(this.lo);
  }

  /** A uint64 varint as a bigint, exact. */
  uint64Big(): bigint {
    this.varint64();
    return (BigInt(this.hi) << 32n) | BigInt(this.lo);
  }

  /** Advance past `n` bytes, checking they exist; returns the start offset. */
  private take(n: number): number {
    const p = this.pos;
    if (n > this.end - p) throw new FormatError("TRUNCATED", `field needs ${n} bytes at byte ${p} but only ${this.end - p} remain`);
    this.pos = p + n;
    return p;
  }

  /** A little-endian float32 (wire type I32). */
  float(): number {
    const p = this.take(4);
    return new DataView(this.bytes.buffer, this.bytes.byteOffset + p, 4).getFloat32(0, true);
  }

  /** A little-endian float64 (wire type I64). */
  double(): number {
    const p = this.take(8);
    return new DataView(this.bytes.buffer, this.bytes.byteOffset + p, 8).getFloat64(0, true);
  }

  /** A length-delimited field's bytes, as a view (no copy). */
  bytesField(): Uint8Array {
    const n = this.varint();
    const p = this.take(n);
    return this.bytes.subarray(p, p + n);
  }

  /** A length-delimited UTF-8 string (invalid sequences become U+FFFD). */
  string(): string {
    return UTF8_DECODER.decode(this.bytesField());
  }

  /** A reader over a length-delimited nested message. */
  message(): ProtoReader {
    const n = this.varint();
    const p = this.take(n);
    return new ProtoReader(this.bytes, p, p + n);
  }

  /** Skip a field of the given wire type. */
  skip(wire: number): void {
    switch (wire) {
      case WIRE.VARINT: this.varint64(); return;
      case WIRE.I64: this.take(8); return;
      case WIRE.LEN: this.take(this.varint()); return;
      case WIRE.I32: this.take(4); return;
      default: throw new FormatError("CORRUPT", `unsupported protobuf wire type ${wire} at byte ${this.pos}`);
    }
  }

  /** Fail unless a field has the wire type its schema declares. */
  expect(wire: number, want: number, what: string): void {
    if (wire !== want) throw new FormatError("CORRUPT", `${what} has wire type ${wire}, expected ${want}`);
  }

  /**
   * Append a repeated varint field, packed (one LEN record) or not, to `out` via `read`.
   * Each element takes at least one byte, so `out` grows no faster than the input.
   */
  repeatedVarint<T>(wire: number, out: T[], read: (r: ProtoReader) => T, what: string): void {
    if (wire === WIRE.VARINT) { out.push(read(this)); return; }
    this.expect(wire, WIRE.LEN, what);
    const sub = this.message();
    while (!sub.done()) out.push(read(sub));
  }

  /**
   * A repeated fixed-width field: a packed record is kept as one byte view (copied into an
   * aligned typed array later, once), an unpacked element as its own 4- or 8-byte view.
   */
  repeatedFixed(wire: number, width: 4 | 8, out: Uint8Array[], what: string): void {
    if (wire === WIRE.LEN) {
      const b = this.bytesField();
      if (b.length % width !== 0) throw new FormatError("CORRUPT", `${what}: packed length ${b.length} is not a multiple of ${width}`);
      out.push(b);
      return;
    }
    this.expect(wire, width === 4 ? WIRE.I32 : WIRE.I64, what);
    const p = this.take(width);
    out.push(this.bytes.subarray(p, p + width));
  }
}

/** Concatenate byte views into one fresh (hence aligned) buffer. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!.slice();
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) { out.set(p, off); off += p.length; }
  return out;
}

const INT64_MAX_HI = 0x7fffffff;

/** Bytes a varint of these halves takes. */
function varintSize(lo: number, hi: number): number {
  if (hi === 0) return lo < 0x80 ? 1 : lo < 0x4000 ? 2 : lo < 0x200000 ? 3 : lo < 0x10000000 ? 4 : 5;
  let n = 5;
  for (let h = hi >>> 3; h !== 0; h >>>= 7) n++;
  return n;
}

/** Split an integer into two's-complement 64-bit halves, saturating outside int64. */
function splitInt64(v: number): [lo: number, hi: number] {
  if (!Number.isFinite(v)) throw new FormatError("INVALID_ARGUMENT", `cannot encode ${v} as an int64`);
  v = Math.trunc(v);
  // Reading INT64_MAX into a number rounds it up to 2^63; saturate so it does not wrap to INT64_MIN.
  if (v >= 9223372036854775807) return [0xffffffff, INT64_MAX_HI];
  if (v <= -9223372036854775808) return [0, 0x80000000];
  return [v >>> 0, Math.floor(v / TWO_32) >>> 0];
}

/** Op codes of the writer's deferred operations. */
const enum Op { Varint, Bytes, Float, Double }

/**
 * Builds a protobuf message as a list of deferred writes, so large byte fields are referenced,
 * not copied, until `finish` allocates the output once. `fork`/`join` bracket a nested message
 * whose length prefix is filled in when it is closed.
 */
export class ProtoWriter {
  private ops: Op[] = [];
  private a: number[] = [];
  private b: (number | Uint8Array)[] = [];
  private len = 0;
  private open: { op: number; len: number }[] = [];

  private push(op: Op, a: number, b: number | Uint8Array, size: number): void {
    this.ops.push(op); this.a.push(a); this.b.push(b); this.len += size;
  }

  private rawVarint(lo: number, hi: number): void {
    this.push(Op.Varint, lo, hi, varintSize(lo, hi));
  }

  private key(field: number, wire: number): void {
    this.rawVarint(((field << 3) | wire) >>> 0, 0);
  }

  /** An integer varint field (int64/int32/enum; negative values take 10 bytes, as protobuf specifies). */
  int64(field: number, v: number): this {
    this.key(field, WIRE.VARINT);
    const [lo, hi] = splitInt64(v);
    this.rawVarint(lo, hi);
    return this;
  }

  /** A repeated int64 field, unpacked (onnx.proto's default) or packed into one LEN record. */
  int64s(field: number, vs: readonly number[], packed = false): this {
    if (vs.length === 0) return this;
    if (packed) this.fork(field);
    for (const v of vs) {
      if (!packed) this.key(field, WIRE.VARINT);
      const [lo, hi] = splitInt64(v);
      this.rawVarint(lo, hi);
    }
    return packed ? this.join() : this;
  }

  /** A float32 field. */
  float(field: number, v: number): this {
    this.key(field, WIRE.I32);
    this.push(Op.Float, v, 0, 4);
    return this;
  }

  /** A repeated float32 field, unpacked or packed. */
  floats(field: number, vs: readonly number[], packed = false): this {
    if (vs.length === 0) return this;
    if (packed) this.fork(field);
    for (const v of vs) {
      if (!packed) this.key(field, WIRE.I32);
      this.push(Op.Float, v, 0, 4);
    }
    return packed ? this.join() : this;
  }

  /** A float64 field. */
  double(field: number, v: number): this {
    this.key(field, WIRE.I64);
    this.push(Op.Double, v, 0, 8);
    return this;
  }

  /** A bytes field; the view is not copied until `finish`. */
  bytes(field: number, v: Uint8Array): this {
    this.key(field, WIRE.LEN);
    this.rawVarint(v.length >>> 0, Math.floor(v.length / TWO_32));
    this.push(Op.Bytes, 0, v, v.length);
    return this;
  }

  /** A UTF-8 string field. */
  string(field: number, v: string): this {
    return this.bytes(field, UTF8_ENCODER.encode(v));
  }

  /** Open a nested message in `field`; close it with `join`. */
  fork(field: number): this {
    this.key(field, WIRE.LEN);
    this.open.push({ op: this.ops.length, len: this.len });
    this.push(Op.Varint, 0, 0, 0); // length prefix, filled in by join
    return this;
  }

  /** Close the innermost nested message, fixing its length prefix. */
  join(): this {
    const f = this.open.pop();
    if (!f) throw new FormatError("INVALID_ARGUMENT", "ProtoWriter.join without fork");
    const n = this.len - f.len;
    this.a[f.op] = n >>> 0;
    this.b[f.op] = Math.floor(n / TWO_32);
    this.len += varintSize(n >>> 0, Math.floor(n / TWO_32));
    return this;
  }

  /** Allocate the output once and run every deferred write into it. */
  finish(): Uint8Array {
    if (this.open.length) throw new FormatError("INVALID_ARGUMENT", "ProtoWriter.finish with an unclosed message");
    const out = new Uint8Array(this.len);
    const view = new DataView(out.buffer);
    const { ops, a, b } = this;
    let p = 0;
    for (let i = 0; i < ops.length; i++) {
      switch (ops[i]) {
        case Op.Varint: {
          let lo = a[i]!, hi = b[i] as number;
          while (hi !== 0 || lo > 0x7f) {
            out[p++] = (lo & 0x7f) | 0x80;
            lo = ((lo >>> 7) | (hi << 25)) >>> 0;
            hi >>>= 7;
          }
          out[p++] = lo;
          break;
        }
        case Op.Bytes: { const v = b[i] as Uint8Array; out.set(v, p); p += v.length; break; }
        case Op.Float: view.setFloat32(p, a[i]!, true); p += 4; break;
        case Op.Double: view.setFloat64(p, a[i]!, true); p += 8; break;
      }
    }
    if (p !== out.length) throw new FormatError("INVALID_ARGUMENT", `ProtoWriter wrote ${p} bytes, measured ${out.length}`);
    return out;
  }
}
