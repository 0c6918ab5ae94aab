/**
 * Static rANS (range asymmetric numeral systems, Duda 2013; 32-bit state renormalized by 16-bit
 * words, as in ryg_rans' rans_word) over streams of unsigned integers, with small stored
 * frequency tables.
 *
 * Alphabet of a model with `direct` = D: a value v < D is symbol v; a value v ≥ D is an escape
 * into log bucket b = ⌊log2(v − D + 1)⌋ (symbol D + b) followed by b raw bits of v − D + 1 − 2^b,
 * coded inside the same rANS state. So a geometric-like gap distribution with a long tail costs
 * its zero-order entropy near the head and a few raw bits per rare long gap; the encoder picks
 * D and the table precision M = 2^scaleBits that minimize table bits + coded bits.
 *
 * Table (bit-packed LSB-first, SPEC.md §7.1): scaleBits:4, D:8, buckets:6, then if the alphabet
 * A = D + buckets > 1: the index of the largest frequency (⌈log2 A⌉ bits, its frequency is
 * M − the others'), and each other frequency as its bit length n (coded against the previous
 * one, starting from scaleBits: "0" same, "10s" one less (s=1) or more, "11" + 4 bits) plus its
 * min(n−1, 3) bits below the leading one (frequencies are rounded to 4 significant bits; that
 * costs < 0.001 bit/symbol). Or, one flag bit later, a geometric law given by 8 bits.
 *
 * A pair stream codes (gap, code) pairs with two models in two interleaved states sharing one
 * word stream (ryg_rans' interleaving: the decoder's two dependency chains overlap, ~1.6× faster
 * than one state), so a tensor pays one 8-byte flush. The decoder checks both states end at
 * exactly RANS_L and every word was consumed, which catches most desynchronizing corruption;
 * a flip that keeps it in sync (a raw escape bit) decodes to other valid values — integrity is
 * the container's CRC.
 * @module
 */
import { BitReader, BitWriter } from "./bitpack.ts";
import { check, FORMAT_ERROR_CODES as E } from "../errors.ts";

/** Lower bound of the normalized state interval [L, 2^32); renormalization moves 16-bit words. */
export const RANS_L = 1 << 16;
/** Largest table precision: M = 2^12 slots, so both decode tables (16 KiB each) stay in L1. */
export const RANS_MAX_SCALE_BITS = 12;
/** Largest count of direct symbols; with ≤ 33 buckets the alphabet fits a byte. */
export const RANS_MAX_DIRECT = 222;
/** Buckets 0..32 cover every value of 32 bits. */
export const RANS_MAX_BUCKETS = 33;
/** Significant bits kept below a frequency's leading one. */
const MANTISSA_BITS = 3;
/** Bits of a geometric table's parameter q (p = q / 256). */
const GEOMETRIC_Q_BITS = 8;
/** Raw escape bits are pushed through the state at most this many at a time. */
const RAW_CHUNK_BITS = 16;
/** Candidate direct-alphabet sizes the encoder tries (plus "everything direct"). */
const DIRECT_CANDIDATES = [0, 1, 2, 3, 4, 6, 8, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 222];

/** A frequency table: symbol s has probability freqs[s] / 2^scaleBits. */
export interface RansModel {
  scaleBits: number;
  /** Values below this are their own symbol; the rest escape into log buckets. */
  direct: number;
  freqs: Uint32Array;
  cums: Uint32Array;
  /** The symbol whose frequency is implied (M − the others); every other one is representable. */
  top: number;
  /** Set if the table is the geometric law p = geometric/256 (quantized as stored tables are). */
  geometric?: number;
}

/** Bucket of w ≥ 1: ⌊log2 w⌋ (w may be 2^32). */
function bucketOf(w: number): number {
  return w >= 0x100000000 ? 32 : 31 - Math.clz32(w);
}

/** Symbol of value v under a model with `direct` = d, and its raw bit count. */
export function symbolOf(v: number, d: number): { sym: number; bits: number } {
  if (v < d) return { sym: v, bits: 0 };
  const b = bucketOf(v - d + 1);
  return { sym: d + b, bits: b };
}

/** Round a frequency to what the table can store (≤ MANTISSA_BITS bits after the leading one). */
function representable(f: number): number {
  const n = 32 - Math.clz32(f);
  const shift = n - 1 - MANTISSA_BITS;
  if (shift <= 0) return f;
  return Math.round(f / 2 ** shift) * 2 ** shift;
}

/** Bits of a frequency's bit length n coded against the previous one (see writeLength). */
function lengthBits(n: number, prev: number): number {
  const d = n - prev;
  return d === 0 ? 1 : d === 1 || d === -1 ? 3 : 6;
}

/** Bits the explicit table of `freqs` (alphabet A, implied frequency at index top) takes. */
function tableBits(freqs: ArrayLike<number>, top: number, s: number): number {
  const a = freqs.length;
  let bits = 4 + 8 + 6;
  if (a <= 1) return bits;
  bits += 1 + (32 - Math.clz32(a - 1));
  let prev = s;
  for (let i = 0; i < a; i++) {
    if (i === top) continue;
    const n = freqs[i]! === 0 ? 0 : 32 - Math.clz32(freqs[i]!);
    bits += lengthBits(n, prev) + Math.min(Math.max(n - 1, 0), MANTISSA_BITS);
    prev = n;
  }
  return bits;
}

/** Write bit length n given the previous one: "0" same, "1 0 s" ±1 (s = 1 for −1), "1 1 nnnn". */
function writeLength(bw: BitWriter, n: number, prev: number): void {
  const d = n - prev;
  if (d === 0) bw.write(0, 1);
  else if (d === 1 || d === -1) bw.write(0b001 | ((d < 0 ? 1 : 0) << 2), 3);
  else { bw.write(0b11, 2); bw.write(n, 4); }
}

function readLength(br: BitReader, prev: number): number {
  if (br.read(1) === 0) return prev;
  if (br.read(1) === 0) return br.read(1) ? prev - 1 : prev + 1;
  return br.read(4);
}

/** Quantize counts to frequencies summing to 2^s, every present symbol ≥ 1; null if impossible. */
function quantize(counts: Float64Array, a: number, s: number, total: number): { freqs: Uint32Array; top: number } | null {
  const m = 2 ** s;
  let top = 0;
  for (let i = 1; i < a; i++) if (counts[i]! > counts[top]!) top = i;
  const freqs = new Uint32Array(a);
  let sum = 0;
  for (let i = 0; i < a; i++) {
    if (i === top || counts[i] === 0) continue;
    const f = representable(Math.max(1, Math.round((counts[i]! * m) / total)));
    if (f >= m) return null;
    freqs[i] = f;
    sum += f;
  }
  if (sum >= m) return null;
  freqs[top] = m - sum;
  return { freqs, top };
}

/** r^n by repeated squaring: only IEEE multiplications, so every engine computes the same bits. */
function ipow(r: number, n: number): number {
  let result = 1, base = r;
  for (; n > 0; n = Math.floor(n / 2)) { if (n % 2) result *= base; base *= base; }
  return result;
}

/**
 * Symbol probabilities of a geometric law P(v) = p·(1−p)^v, p = q/256, over the alphabet of
 * direct = d with a − d buckets: P(v) for v < d, and for bucket b the mass of its values
 * [d − 1 + 2^b, d − 2 + 2^(b+1)], i.e. r^(d−1+2^b) − r^(d−1+2^(b+1)).
 */
function geometricMasses(q: number, d: number, a: number): Float64Array {
  const p = q / 256, r = 1 - p, masses = new Float64Array(a);
  let pw = p;
  for (let i = 0; i < Math.min(d, a); i++) { masses[i] = pw; pw *= r; }
  for (let i = d; i < a; i++) { const b = i - d; masses[i] = ipow(r, d - 1 + 2 ** b) - ipow(r, d - 1 + 2 ** (b + 1)); }
  return masses;
}

function cumsOf(freqs: Uint32Array): Uint32Array {
  const cums = new Uint32Array(freqs.length);
  for (let i = 1; i < freqs.length; i++) cums[i] = cums[i - 1]! + freqs[i - 1]!;
  return cums;
}

/**
 * The cheapest model for `values` (table bits + Σ −log2 p + raw bits), searching D over
 * DIRECT_CANDIDATES and the precision over 1..12 bits. Values must be < 2^32.
 */
export function chooseModel(values: ArrayLike<number>): RansModel {
  const n = values.length;
  const small = new Float64Array(256);
  const big: number[] = [];
  let max = 0;
  for (let k = 0; k < n; k++) {
    const v = values[k]!;
    if (v < 256) small[v]!++;
    else big.push(v);
    if (v > max) max = v;
  }
  // Geometric parameters to try: around the moment estimate p = 1 / (1 + mean).
  let sum = 0;
  for (let k = 0; k < n; k++) sum += values[k]!;
  const q0 = 256 / (1 + sum / Math.max(n, 1));
  const geometricCandidates = [...new Set([0.6, 0.7, 0.8, 0.9, 1, 1.1, 1.25, 1.4].map((f) => Math.min(255, Math.max(1, Math.round(q0 * f)))))];
  const allDirect = Math.min(RANS_MAX_DIRECT, max + 1);
  const ds = DIRECT_CANDIDATES.filter((d) => d < allDirect).concat(allDirect);
  let best: RansModel | null = null, bestBits = Infinity;
  for (const d of ds) {
    const counts = new Float64Array(d + RANS_MAX_BUCKETS);
    let rawBits = 0;
    for (let v = 0; v < 256; v++) {
      const c = small[v]!;
      if (c === 0) continue;
      const { sym, bits } = symbolOf(v, d);
      counts[sym]! += c;
      rawBits += c * bits;
    }
    for (const v of big) { const { sym, bits } = symbolOf(v, d); counts[sym]!++; rawBits += bits; }
    let a = counts.length;
    while (a > 1 && counts[a - 1] === 0) a--;
    for (let s = 1; s <= RANS_MAX_SCALE_BITS; s++) {
      const q = quantize(counts, a, s, Math.max(n, 1));
      if (!q) continue;
      let bits = tableBits(q.freqs, q.top, s) + rawBits;
      for (let i = 0; i < a; i++) if (counts[i]! > 0) bits += counts[i]! * (s - Math.log2(q.freqs[i]!));
      if (bits < bestBits) { bestBits = bits; best = { scaleBits: s, direct: d, freqs: q.freqs, cums: cumsOf(q.freqs), top: q.top }; }
      // A geometric law (gaps of randomly placed non-zeros) costs 8 bits of table instead of ~5 per symbol.
      if (a < 2) continue;
      for (const gq of geometricCandidates) {
        const g = quantize(geometricMasses(gq, d, a), a, s, 1);
        if (!g) continue;
        let gbits = 4 + 8 + 6 + 1 + GEOMETRIC_Q_BITS + rawBits;
        for (let i = 0; i < a && gbits < bestBits; i++) if (counts[i]! > 0) gbits += g.freqs[i] ? counts[i]! * (s - Math.log2(g.freqs[i]!)) : Infinity;
        if (gbits < bestBits) { bestBits = gbits; best = { scaleBits: s, direct: d, freqs: g.freqs, cums: cumsOf(g.freqs), top: g.top, geometric: gq }; }
      }
    }
  }
  return best!;
}

/** Estimated coded size in bits of `values` under `model` (Σ −log2 p + raw bits), table excluded. */
export function modelCostBits(model: RansModel, values: ArrayLike<number>): number {
  let bits = 0;
  for (let k = 0; k < values.length; k++) {
    const { sym, bits: raw } = symbolOf(values[k]!, model.direct);
    bits += model.scaleBits - Math.log2(model.freqs[sym]!) + raw;
  }
  return bits;
}

/** Serialize a model's table (format in the module comment). */
export function writeModel(bw: BitWriter, m: RansModel): void {
  const a = m.freqs.length;
  bw.write(m.scaleBits, 4);
  bw.write(m.direct, 8);
  bw.write(a - m.direct, 6);
  if (a <= 1) return;
  bw.write(m.geometric ? 1 : 0, 1);
  if (m.geometric) { bw.write(m.geometric, GEOMETRIC_Q_BITS); return; }
  const top = m.top;
  bw.write(top, 32 - Math.clz32(a - 1));
  let prev = m.scaleBits;
  for (let i = 0; i < a; i++) {
    if (i === top) continue;
    const f = m.freqs[i]!, n = f === 0 ? 0 : 32 - Math.clz32(f);
    writeLength(bw, n, prev);
    prev = n;
    const mb = Math.min(Math.max(n - 1, 0), MANTISSA_BITS);
    if (mb > 0) bw.write((f >>> (n - 1 - mb)) & ((1 << mb) - 1), mb);
  }
}

/** Read a model's table, validating every field (CORRUPT / TRUNCATED). */
export function readModel(br: BitReader): RansModel {
  const s = br.read(4), d = br.read(8), nb = br.read(6);
  check(s >= 1 && s <= RANS_MAX_SCALE_BITS, E.CORRUPT, () => `rANS scale ${s} bits out of range`);
  check(d <= RANS_MAX_DIRECT && nb <= RANS_MAX_BUCKETS && d + nb >= 1, E.CORRUPT, "rANS alphabet out of range");
  const a = d + nb, m = 2 ** s, freqs = new Uint32Array(a);
  let top = 0;
  if (a === 1) freqs[0] = m;
  else if (br.read(1)) {
    const q = br.read(GEOMETRIC_Q_BITS);
    check(q >= 1, E.CORRUPT, "rANS table: geometric p = 0");
    const g = quantize(geometricMasses(q, d, a), a, s, 1);
    check(g !== null, E.CORRUPT, "rANS table: geometric law does not fit the precision");
    return { scaleBits: s, direct: d, freqs: g.freqs, cums: cumsOf(g.freqs), top: g.top, geometric: q };
  } else {
    top = br.read(32 - Math.clz32(a - 1));
    check(top < a, E.CORRUPT, "rANS table: bad top symbol");
    let sum = 0, prev = s;
    for (let i = 0; i < a; i++) {
      if (i === top) continue;
      const n = readLength(br, prev);
      prev = n;
      check(n >= 0 && n <= s, E.CORRUPT, "rANS table: frequency too large");
      if (n === 0) continue;
      const mb = Math.min(n - 1, MANTISSA_BITS);
      freqs[i] = (1 << (n - 1)) | (mb > 0 ? br.read(mb) << (n - 1 - mb) : 0);
      sum += freqs[i]!;
    }
    check(sum < m, E.CORRUPT, "rANS table: frequencies exceed the total");
    freqs[top] = m - sum;
  }
  return { scaleBits: s, direct: d, freqs, cums: cumsOf(freqs), top };
}

/** Growable u16 sink the encoder emits into (in reverse of reading order). */
class ReverseSink {
  buf: Uint16Array;
  len = 0;
  constructor(hint: number) { this.buf = new Uint16Array(Math.max(64, hint)); }
  push(w: number): void {
    if (this.len === this.buf.length) { const g = new Uint16Array(this.len * 2); g.set(this.buf); this.buf = g; }
    this.buf[this.len++] = w;
  }
}

/**
 * Encoder step for one symbol (ryg_rans RansEncPut, 16-bit words): renormalize once if
 * x ≥ 2^(32−s)·f, then x ← ⌊x/f⌋·M + x mod f + c. Keeps x in [RANS_L, 2^32).
 */
function putSymbol(x: number, out: ReverseSink, f: number, c: number, s: number): number {
  if (x >= 2 ** (32 - s) * f) { out.push(x & 0xffff); x = Math.floor(x / 65536); }
  return Math.floor(x / f) * 2 ** s + (x % f) + c;
}

/** Encoder step for t ≤ 16 raw bits: a symbol of frequency 1 out of 2^t. */
function putRaw(x: number, out: ReverseSink, v: number, t: number): number {
  if (x >= 2 ** (32 - t)) { out.push(x & 0xffff); x = Math.floor(x / 65536); }
  return x * 2 ** t + v;
}

/** Push value v's raw escape bits, high chunk first (the decoder reads the low chunk first). */
function putEscape(x: number, out: ReverseSink, m: RansModel, v: number): number {
  const { bits } = symbolOf(v, m.direct);
  if (bits === 0) return x;
  const extra = v - m.direct + 1 - 2 ** bits;
  if (bits > RAW_CHUNK_BITS) x = putRaw(x, out, Math.floor(extra / 2 ** RAW_CHUNK_BITS), bits - RAW_CHUNK_BITS);
  return putRaw(x, out, extra % 2 ** RAW_CHUNK_BITS, Math.min(bits, RAW_CHUNK_BITS));
}

function putSym(x: number, out: ReverseSink, m: RansModel, v: number): number {
  const { sym } = symbolOf(v, m.direct);
  const f = m.freqs[sym]!;
  check(f > 0, E.INVALID_ARGUMENT, "value outside the model");
  return putSymbol(x, out, f, m.cums[sym]!, m.scaleBits);
}

/**
 * rANS-code the pairs (a[k], b[k]): a[k] in state x under model ma, b[k] in state y under mb,
 * both states renormalizing into one stream of u16 words (two interleaved states, so the
 * decoder's two dependency chains overlap). Output, little-endian u16 words: x (2 words,
 * low first), y (2 words), then the renormalization words in reading order.
 * Per pair the decoder does: both symbols, renorm x, renorm y, a's escape bits (x), b's (y);
 * the encoder does the exact reverse.
 */
export function encodePairs(a: ArrayLike<number>, b: ArrayLike<number>, ma: RansModel, mb: RansModel): Uint8Array {
  const out = new ReverseSink(a.length >> 1);
  let x = RANS_L, y = RANS_L;
  for (let k = a.length - 1; k >= 0; k--) {
    y = putEscape(y, out, mb, b[k]!);
    x = putEscape(x, out, ma, a[k]!);
    y = putSym(y, out, mb, b[k]!);
    x = putSym(x, out, ma, a[k]!);
  }
  out.push(Math.floor(y / 65536)); out.push(y & 0xffff);
  out.push(Math.floor(x / 65536)); out.push(x & 0xffff);
  const words = out.buf.subarray(0, out.len).reverse();
  return new Uint8Array(words.buffer, words.byteOffset, words.byteLength).slice();
}

/**
 * Per-slot decode table, one u32 per slot: symbol << 24 | (freq − 1) << 12 | (slot − cum).
 * One load per decoded symbol; needs scaleBits ≤ 12 and an alphabet ≤ 256.
 */
export function decodeTable(m: RansModel): Uint32Array {
  const table = new Uint32Array(2 ** m.scaleBits);
  for (let s = 0; s < m.freqs.length; s++) {
    const f = m.freqs[s]!, c = m.cums[s]!;
    for (let j = 0; j < f; j++) table[c + j] = ((s << 24) | ((f - 1) << 12) | j) >>> 0;
  }
  return table;
}

/**
 * Decode a.length pairs written by encodePairs into a and b. Throws CORRUPT unless the stream
 * is consumed exactly, both states return to RANS_L, and every value fits 32 bits. The loop is
 * bounded by a.length; states stay in [L, 2^32) so one word read renormalizes. A read past the
 * end yields NaN, which can only fail the final check.
 */
export function decodePairs(bytes: Uint8Array, a: Uint32Array, b: Uint32Array, ma: RansModel, mb: RansModel): void {
  check(bytes.length >= 8 && bytes.length % 2 === 0, E.CORRUPT, "rANS stream: bad length");
  // u16 words; copy only if the bytes are not 2-aligned.
  const w = bytes.byteOffset % 2 === 0 ? new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length >> 1) : new Uint16Array(bytes.slice().buffer);
  let x = w[0]! + w[1]! * 65536, y = w[2]! + w[3]! * 65536;
  check(x >= RANS_L && y >= RANS_L, E.CORRUPT, "rANS initial state out of range");
  const tabA = decodeTable(ma), sA = ma.scaleBits, maskA = (1 << sA) - 1, dA = ma.direct;
  const tabB = decodeTable(mb), sB = mb.scaleBits, maskB = (1 << sB) - 1, dB = mb.direct;
  const n = a.length;
  let p = 4, overflow = false;
  for (let k = 0; k < n; k++) {
    // x ← f·⌊x/M⌋ + (x mod M) − c  (ryg_rans RansDecAdvance), for both states.
    const e = tabA[x & maskA]!, h = tabB[y & maskB]!;
    x = (((e >>> 12) & 0xfff) + 1) * (x >>> sA) + (e & 0xfff);
    y = (((h >>> 12) & 0xfff) + 1) * (y >>> sB) + (h & 0xfff);
    if (x < RANS_L) x = x * 65536 + w[p++]!;
    if (y < RANS_L) y = y * 65536 + w[p++]!;
    let va = e >>> 24, vb = h >>> 24;
    if (va >= dA) {
      // Escape: bucket raw bits, low chunk first.
      const bucket = va - dA;
      let extra = 0;
      for (let shift = 0; shift < bucket; shift += RAW_CHUNK_BITS) {
        const t = Math.min(bucket - shift, RAW_CHUNK_BITS);
        extra += (x & ((1 << t) - 1)) * 2 ** shift;
        x = x >>> t;
        if (x < RANS_L) x = x * 65536 + w[p++]!;
      }
      va = dA - 1 + 2 ** bucket + extra;
      if (va > 0xffffffff) overflow = true;
    }
    if (vb >= dB) {
      const bucket = vb - dB;
      let extra = 0;
      for (let shift = 0; shift < bucket; shift += RAW_CHUNK_BITS) {
        const t = Math.min(bucket - shift, RAW_CHUNK_BITS);
        extra += (y & ((1 << t) - 1)) * 2 ** shift;
        y = y >>> t;
        if (y < RANS_L) y = y * 65536 + w[p++]!;
      }
      vb = dB - 1 + 2 ** bucket + extra;
      if (vb > 0xffffffff) overflow = true;
    }
    a[k] = va;
    b[k] = vb;
  }
  check(p === w.length && x === RANS_L && y === RANS_L && !overflow, E.CORRUPT, "rANS stream does not end where it should");
}

/**
 * A pair stream with its tables: [model a][model b] bit-packed, padded with zero bits to an
 * even byte count (so the words are 2-aligned in a 4-aligned region), then encodePairs.
 */
export function encodePairStream(a: ArrayLike<number>, b: ArrayLike<number>): { bytes: Uint8Array; ma: RansModel; mb: RansModel; tableBytes: number } {
  const ma = chooseModel(a), mb = chooseModel(b);
  const bw = new BitWriter();
  writeModel(bw, ma);
  writeModel(bw, mb);
  const table = bw.finish(), tableBytes = table.length + (table.length & 1), body = encodePairs(a, b, ma, mb);
  const bytes = new Uint8Array(tableBytes + body.length);
  bytes.set(table);
  bytes.set(body, tableBytes);
  return { bytes, ma, mb, tableBytes };
}

/**
 * Fewest bits a pair can cost under models ma, mb: Σ −log2(largest frequency / M). Zero only if
 * both alphabets have a single symbol (then the stream carries no information at all).
 */
export function minPairBits(ma: RansModel, mb: RansModel): number {
  const least = (m: RansModel) => m.scaleBits - Math.log2(Math.max(...m.freqs));
  return least(ma) + least(mb);
}

/**
 * The models of a pair stream of n pairs and the coded words after them (what decodePairs
 * reads). n is refused (TOO_LARGE) unless the stream's bits could carry n pairs
 * (n · minPairBits ≤ 8 · bytes + 64, the slack covering the two states), so a tiny stream
 * cannot make a decoder allocate for millions.
 */
export function readPairStreamHeader(bytes: Uint8Array, n: number): { ma: RansModel; mb: RansModel; tableBytes: number; body: Uint8Array } {
  const br = new BitReader(bytes);
  const ma = readModel(br), mb = readModel(br);
  const tableBytes = br.bytesUsed + (br.bytesUsed & 1);
  check(tableBytes <= bytes.length && (tableBytes === br.bytesUsed || bytes[tableBytes - 1] === 0), E.CORRUPT, "rANS table padding");
  const least = minPairBits(ma, mb);
  check(least === 0 || n * least <= 8 * bytes.length + 64, E.TOO_LARGE, () => `${bytes.length} rANS bytes cannot hold ${n} pairs`);
  return { ma, mb, tableBytes, body: bytes.subarray(tableBytes) };
}

/** Largest value a model can decode: its highest symbol of non-zero frequency, or that escape bucket's top. */
export function maxValueOf(m: RansModel): number {
  let s = m.freqs.length - 1;
  while (s > 0 && m.freqs[s] === 0) s--;
  return s < m.direct ? s : m.direct - 1 + 2 ** (s - m.direct + 1) - 1;
}

/** Decode a pair stream of n pairs (readPairStreamHeader, then decodePairs). */
export function decodePairStream(bytes: Uint8Array, n: number): { a: Uint32Array; b: Uint32Array; ma: RansModel; mb: RansModel; tableBytes: number } {
  const { ma, mb, tableBytes, body } = readPairStreamHeader(bytes, n);
  const a = new Uint32Array(n), b = new Uint32Array(n);
  decodePairs(body, a, b, ma, mb);
  return { a, b, ma, mb, tableBytes };
}
