/**
 * Fixed-width bit packing. Codes of a layer quantized to B bits live in memory as B-bit fields
 * packed LSB-first into little-endian u32 words (a field may straddle two words), so a 3-bit
 * layer costs exactly 3 bits per code and a WGSL/CPU kernel reads `array<u32>` and unpacks.
 * Also the small bit writer/reader the entropy-coder tables are serialized with.
 * @module
 */
import { check, FORMAT_ERROR_CODES as E } from "../errors.ts";

/** Bits needed to store every value in [0, maxValue] (0 when maxValue is 0). */
export function bitWidth(maxValue: number): number {
  let w = 0;
  while (w < 32 && maxValue >= 2 ** w) w++;
  return w;
}

/** Number of u32 words that hold `count` fields of `width` bits. */
export function packedWords(count: number, width: number): number {
  return Math.ceil((count * width) / 32);
}

/**
 * Pack unsigned values (each < 2^width, width 0..32) into u32 words, field k at bit k·width.
 * Values are masked to `width` bits; check ranges before packing if that matters.
 */
export function packBits(values: ArrayLike<number>, width: number, out?: Uint32Array): Uint32Array {
  check(Number.isInteger(width) && width >= 0 && width <= 32, E.INVALID_ARGUMENT, `bit width ${width} not in 0..32`);
  const words = out ?? new Uint32Array(packedWords(values.length, width));
  check(words.length >= packedWords(values.length, width), E.INVALID_ARGUMENT, "packBits: output too small");
  if (width === 0) return words;
  const mask = width === 32 ? 0xffffffff : (1 << width) - 1;
  let bit = 0;
  for (let k = 0; k < values.length; k++, bit += width) {
    const v = (values[k]! & mask) >>> 0, w = bit >>> 5, s = bit & 31;
    words[w] = words[w]! | (v << s);
    if (s + width > 32) words[w + 1] = words[w + 1]! | (v >>> (32 - s));
  }
  return words;
}

/** Unpack `count` fields of `width` bits (the inverse of packBits). */
export function unpackBits(words: Uint32Array, width: number, count: number, out?: Uint32Array): Uint32Array {
  check(Number.isInteger(width) && width >= 0 && width <= 32, E.INVALID_ARGUMENT, `bit width ${width} not in 0..32`);
  check(words.length >= packedWords(count, width), E.TRUNCATED, "unpackBits: too few words");
  const values = out ?? new Uint32Array(count);
  if (width === 0) return values.fill(0, 0, count);
  const mask = width === 32 ? 0xffffffff : (1 << width) - 1;
  let bit = 0;
  for (let k = 0; k < count; k++, bit += width) {
    const w = bit >>> 5, s = bit & 31;
    let v = words[w]! >>> s;
    if (s + width > 32) v |= words[w + 1]! << (32 - s);
    values[k] = v & mask;
  }
  return values;
}

/** Signed integer codes packed at the narrowest width: field = code − offset. */
export interface PackedCodes {
  /** Bits per code. */
  width: number;
  /** The smallest code; each field stores code − offset. */
  offset: number;
  count: number;
  words: Uint32Array;
}

/** Pack codes at the width their range needs (a 3-bit layer with codes −4..3 packs at 3 bits). */
export function packCodes(codes: Int32Array): PackedCodes {
  let lo = 0, hi = 0;
  if (codes.length > 0) { lo = hi = codes[0]!; }
  for (let k = 1; k < codes.length; k++) { const c = codes[k]!; if (c < lo) lo = c; else if (c > hi) hi = c; }
  const width = bitWidth(hi - lo);
  const shifted = new Uint32Array(codes.length);
  for (let k = 0; k < codes.length; k++) shifted[k] = codes[k]! - lo;
  return { width, offset: lo, count: codes.length, words: packBits(shifted, width) };
}

/** The codes packCodes packed. */
export function unpackCodes(p: PackedCodes): Int32Array {
  const u = unpackBits(p.words, p.width, p.count);
  const out = new Int32Array(u.buffer, u.byteOffset, p.count);
  for (let k = 0; k < p.count; k++) out[k] = u[k]! + p.offset;
  return out;
}

/** Codes packed per group (e.g. per output channel), each group at its own width. */
export interface PackedCodeGroups {
  count: number;
  /** Per group: first code index, bits per code, smallest code, first u32 word. */
  starts: Uint32Array;
  widths: Uint8Array;
  offsets: Int32Array;
  wordStarts: Uint32Array;
  words: Uint32Array;
}

/**
 * Pack codes group by group: group g holds codes[starts[g] .. starts[g+1]) (the last group runs
 * to the end) at the width its own range needs, starting on a word boundary so a kernel can
 * address any group directly. `starts` must begin at 0 and not decrease.
 */
export function packCodeGroups(codes: Int32Array, starts: ArrayLike<number>): PackedCodeGroups {
  const g = starts.length;
  const st = Uint32Array.from(starts), widths = new Uint8Array(g), offsets = new Int32Array(g), wordStarts = new Uint32Array(g);
  check(g === 0 ? codes.length === 0 : st[0] === 0, E.INVALID_ARGUMENT, "groups must start at 0");
  let words = 0;
  const end = (i: number) => (i + 1 < g ? st[i + 1]! : codes.length);
  for (let i = 0; i < g; i++) {
    check(end(i) >= st[i]! && end(i) <= codes.length, E.INVALID_ARGUMENT, "group starts must not decrease");
    let lo = 0, hi = 0;
    if (end(i) > st[i]!) { lo = hi = codes[st[i]!]!; }
    for (let k = st[i]!; k < end(i); k++) { const c = codes[k]!; if (c < lo) lo = c; else if (c > hi) hi = c; }
    widths[i] = bitWidth(hi - lo);
    offsets[i] = lo;
    wordStarts[i] = words;
    words += packedWords(end(i) - st[i]!, widths[i]!);
  }
  const out = new Uint32Array(words);
  for (let i = 0; i < g; i++) {
    const shifted = new Uint32Array(end(i) - st[i]!);
    for (let k = 0; k < shifted.length; k++) shifted[k] = codes[st[i]! + k]! - offsets[i]!;
    packBits(shifted, widths[i]!, out.subarray(wordStarts[i]!));
  }
  return { count: codes.length, starts: st, widths, offsets, wordStarts, words: out };
}

/** The codes packCodeGroups packed. */
export function unpackCodeGroups(p: PackedCodeGroups): Int32Array {
  const out = new Int32Array(p.count), g = p.starts.length;
  for (let i = 0; i < g; i++) {
    const start = p.starts[i]!, n = (i + 1 < g ? p.starts[i + 1]! : p.count) - start;
    const u = unpackBits(p.words.subarray(p.wordStarts[i]!), p.widths[i]!, n);
    for (let k = 0; k < n; k++) out[start + k] = u[k]! + p.offsets[i]!;
  }
  return out;
}

/**
 * Group starts by output channel (the first dim) for a sparse tensor: the position in
 * `indices` of the first non-zero of each channel (for packCodeGroups).
 */
export function channelStarts(indices: Uint32Array, dims: readonly number[]): Uint32Array {
  const channels = dims.length ? dims[0]! : 1;
  let per = 1;
  for (let i = 1; i < dims.length; i++) per *= dims[i]!;
  const starts = new Uint32Array(channels);
  let k = 0;
  for (let c = 0; c < channels; c++) {
    while (k < indices.length && indices[k]! < c * per) k++;
    starts[c] = k;
  }
  return starts;
}

/** Appends bit fields LSB-first to a growable byte buffer. */
export class BitWriter {
  private buf = new Uint8Array(64);
  private acc = 0;
  private nacc = 0;
  private len = 0;

  /** Append the low `n` bits of `v` (n ≤ 24). */
  write(v: number, n: number): void {
    this.acc |= (v & ((1 << n) - 1)) << this.nacc;
    this.nacc += n;
    while (this.nacc >= 8) { this.push(this.acc & 0xff); this.acc >>>= 8; this.nacc -= 8; }
  }

  /** Elias-gamma code of v ≥ 1: ⌊log2 v⌋ zeros, then v's bits MSB-first (2⌊log2 v⌋+1 bits). */
  writeGamma(v: number): void {
    const n = bitWidth(v) - 1;
    for (let i = 0; i < n; i++) this.write(0, 1);
    for (let i = n; i >= 0; i--) this.write((v >>> i) & 1, 1);
  }

  /** Bits written so far. */
  get bits(): number { return this.len * 8 + this.nacc; }

  /** The bytes, the last one zero-padded. */
  finish(): Uint8Array {
    if (this.nacc > 0) { this.push(this.acc & 0xff); this.acc = 0; this.nacc = 0; }
    return this.buf.slice(0, this.len);
  }

  private push(b: number): void {
    if (this.len === this.buf.length) { const g = new Uint8Array(this.len * 2); g.set(this.buf); this.buf = g; }
    this.buf[this.len++] = b;
  }
}

/** Reads what BitWriter wrote; reading past the end throws FormatError TRUNCATED. */
export class BitReader {
  private pos = 0;
  constructor(private readonly bytes: Uint8Array, private readonly end = bytes.length * 8) {}

  /** Read an n-bit field (n ≤ 24). */
  read(n: number): number {
    check(this.pos + n <= this.end, E.TRUNCATED, "bit stream ends early");
    let v = 0;
    for (let i = 0; i < n;) {
      const p = this.pos + i, take = Math.min(8 - (p & 7), n - i);
      v |= ((this.bytes[p >>> 3]! >>> (p & 7)) & ((1 << take) - 1)) << i;
      i += take;
    }
    this.pos += n;
    return v;
  }

  /** Read an Elias-gamma code (values up to 2^24). */
  readGamma(): number {
    let n = 0;
    while (this.read(1) === 0) { n++; check(n <= 24, E.CORRUPT, "gamma code too long"); }
    let v = 1;
    for (let i = 0; i < n; i++) v = (v << 1) | this.read(1);
    return v;
  }

  /** Bytes consumed, counting a partly read byte. */
  get bytesUsed(): number { return Math.ceil(this.pos / 8); }
}
