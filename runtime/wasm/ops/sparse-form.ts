/**
 * The kernel form of a compressed `.opq` weight in wasm memory: level-grouped sparse rows. It is
 * transcoded once at bind from the stored `CompressedTensor` (flat increasing indices, integer
 * codes, a uniform step or an APoT/table level list); no dense float32 copy is ever made.
 *
 * One block, 16-byte aligned parts:
 *   levels  f32 × nLevels   the distinct non-zero weight values (Δ·code, or the table's values)
 *   rowPtr  u32 × rows      start of each row in `stream`, in u16 units
 *   stream  u16             per row: nLev, nLev × (levelId, count), then the row's column
 *                           indices grouped by level (ascending within a level)
 * so a row costs 2 bytes per kept weight plus 2 + 4·(levels it uses) bytes, against 4 bytes per
 * weight (kept or not) as dense float32. The kernels are in as/sparse.ts.
 * @module
 */
import { type CompressedTensor, codebookValue, encodedWeights, FORMAT_ERROR_CODES, FormatError } from "../../../format/mod.ts";
import type { WasmKernels } from "../module.ts";

/** Largest column count of the form (u16 column indices and per-level counts). */
export const SPARSE_MAX_COLS = 65535;
/** Largest number of distinct levels (u16 level ids). */
const MAX_LEVELS = 65535;

/** A transcoded weight resident in wasm memory. */
export interface SparseRows {
  rows: number;
  cols: number;
  /** Kept weights (zero-valued codes dropped). */
  nnz: number;
  nLevels: number;
  /** Addresses of the three parts. */
  levels: number;
  rowPtr: number;
  stream: number;
  /** Bytes of the block as allocated. */
  bytes: number;
  /** Nonzeros of each row (for costing and balancing). */
  rowNnz: Int32Array;
}

const align16 = (n: number) => Math.ceil(n / 16) * 16;

/**
 * The level id of every stored code (−1 for a code whose value is 0: dropped) and the level
 * values, numbered in first-use order. Uniform codes map through an offset table over their
 * range (at most 2^16 distinct values are addressable anyway).
 */
export function levelIds(t: CompressedTensor): { level: Int32Array; values: number[] } {
  const codes = t.codes, n = codes.length;
  const level = new Int32Array(n);
  const values: number[] = [];
  let lo = 0, hi = -1;
  if (t.codebook.kind === "table") {
    hi = t.codebook.values.length - 1;
  } else {
    lo = Infinity; hi = -Infinity;
    for (let i = 0; i < n; i++) { const c = codes[i]!; if (c < lo) lo = c; if (c > hi) hi = c; }
  }
  const span = hi - lo + 1;
  if (n === 0 || span <= 0) return { level, values };
  if (span > 1 << 22) {
    // Codes too spread for an offset table: look them up in a map.
    const ids = new Map<number, number>();
    for (let i = 0; i < n; i++) {
      const c = codes[i]!;
      let id = ids.get(c);
      if (id === undefined) { const v = codebookValue(t.codebook, c); id = v === 0 ? -1 : values.push(v) - 1; ids.set(c, id); }
      level[i] = id;
    }
    return { level, values };
  }
  const ids = new Int32Array(span).fill(-2);
  for (let i = 0; i < n; i++) {
    const o = codes[i]! - lo;
    let id = ids[o]!;
    if (id === -2) {
      const v = codebookValue(t.codebook, codes[i]!);
      id = ids[o] = v === 0 ? -1 : values.push(v) - 1;
    }
    level[i] = id;
  }
  return { level, values };
}

const SPANS = new WeakMap<Int32Array, { lo: number; hi: number }>();

/**
 * Smallest and largest stored code (0 included), computed once per tensor: every implementation's
 * claim asks, and a scan of ResNet-18's 3 M codes is ~20 ms.
 */
export function codeSpan(t: CompressedTensor): { lo: number; hi: number } {
  let s = SPANS.get(t.codes);
  if (!s) {
    const codes = t.codes;
    let lo = 0, hi = 0;
    for (let i = 0; i < codes.length; i++) { const c = codes[i]!; if (c < lo) lo = c; else if (c > hi) hi = c; }
    s = { lo, hi };
    SPANS.set(codes, s);
  }
  return s;
}

/**
 * A span [lo, hi] (0 included) holding every code of `t`, known without decoding it: from the
 * largest value its stored rANS symbol model can decode (format's encodedWeights; the codes are
 * zigzag-coded, so u ≤ U gives codes in [−⌈U/2⌉, ⌊U/2⌋]). Undefined for a tensor with no stored
 * stream; the table's index range for a table codebook.
 */
function encodedSpan(t: CompressedTensor): { lo: number; hi: number } | undefined {
  if (t.codebook.kind === "table") return { lo: 0, hi: t.codebook.values.length - 1 };
  const e = encodedWeights(t);
  if (!e) return undefined;
  const u = e.symbols.maxValue;
  return { lo: -Math.floor((u + 1) / 2), hi: Math.floor(u / 2) };
}

/**
 * True if `t`'s codes span at most `levels` values: decided from the stored stream's model when
 * that bound suffices (no decode at claim time), else from the decoded codes (codeSpan).
 */
export function codeSpanWithin(t: CompressedTensor, levels: number): boolean {
  const b = encodedSpan(t);
  if (b && b.hi - b.lo + 1 <= levels) return true;
  if (t.codebook.kind === "table") return false;
  const { lo, hi } = codeSpan(t);
  return hi - lo + 1 <= levels;
}

/** True if the form can hold `t` as a matrix of `cols` columns (u16 columns, at most 65535 distinct levels). */
export function sparseFormFits(t: CompressedTensor, cols: number): boolean {
  if (cols > SPARSE_MAX_COLS) return false;
  return codeSpanWithin(t, MAX_LEVELS);
}

/**
 * Transcode `t` as a `rows × cols` matrix (`transposed`: `t` is stored `[cols, rows]`) into wasm
 * memory. Throws RangeError if the form cannot address it (cols > 65536, > 65536 levels).
 */
export function transcodeSparse(k: WasmKernels, t: CompressedTensor, rows: number, cols: number, transposed = false): SparseRows {
  if (cols > SPARSE_MAX_COLS) throw new RangeError(`sparse form: ${cols} columns (at most ${SPARSE_MAX_COLS})`);
  if (rows * cols !== t.dims.reduce((a, b) => a * b, 1)) throw new RangeError(`sparse form: ${rows}×${cols} does not match [${t.dims}]`);
  if (!transposed) {
    const fast = transcodeEncoded(k, t, rows, cols) ?? transcodeRowMajor(k, t, rows, cols);
    if (fast) return fast;
  }
  const { level, values } = levelIds(t);
  const n = t.codes.length;
  const row = new Int32Array(n);
  const col = new Int32Array(n);
  const idx = t.indices;
  if (transposed) {
    for (let i = 0; i < n; i++) { const v = idx[i]!; const c = Math.floor(v / rows); row[i] = v - c * rows; col[i] = c; }
  } else {
    for (let i = 0; i < n; i++) { const v = idx[i]!; const r = Math.floor(v / cols); row[i] = r; col[i] = v - r * cols; }
  }
  const nL = values.length;
  if (nL > MAX_LEVELS) throw new RangeError(`sparse form: ${nL} levels (at most ${MAX_LEVELS})`);
  // Order the kept weights by (row, level), columns ascending within: two stable counting sorts,
  // by level then by row (the stored order is row-major; for a transposed tensor column-major, so
  // columns ascend within a row either way). O(n + rows + levels): a weight of ~10^4 distinct
  // values (training's unquantized Ŵ, train/wasm-conv.ts) costs no rows × levels table.
  const byLevel = new Int32Array(nL + 1);
  for (let i = 0; i < n; i++) if (level[i]! >= 0) byLevel[level[i]! + 1]!++;
  for (let l = 0; l < nL; l++) byLevel[l + 1]! += byLevel[l]!;
  const nnz = byLevel[nL]!;
  const tmp = new Int32Array(nnz);
  for (let i = 0; i < n; i++) if (level[i]! >= 0) tmp[byLevel[level[i]!]!++] = i;
  const rowStart = new Int32Array(rows + 1);
  for (let j = 0; j < nnz; j++) rowStart[row[tmp[j]!]! + 1]!++;
  for (let r = 0; r < rows; r++) rowStart[r + 1]! += rowStart[r]!;
  const order = new Int32Array(nnz), put = rowStart.slice(0, rows);
  for (let j = 0; j < nnz; j++) { const i = tmp[j]!; order[put[row[i]!]!++] = i; }
  // Stream size: per row 1 + 2·(levels used) + its indices.
  const rowNnz = new Int32Array(rows), used = new Int32Array(rows);
  let units = 0;
  for (let r = 0; r < rows; r++) {
    rowNnz[r] = rowStart[r + 1]! - rowStart[r]!;
    for (let j = rowStart[r]!; j < rowStart[r + 1]!; j++) if (j === rowStart[r] || level[order[j]!] !== level[order[j - 1]!]) used[r]!++;
    units += 1 + 2 * used[r]! + rowNnz[r]!;
  }
  const levelsBytes = align16(nL * 4), rowPtrBytes = align16(rows * 4), streamBytes = align16(units * 2);
  const bytes = levelsBytes + rowPtrBytes + streamBytes;
  const base = k.alloc(bytes);
  const levels = base, rowPtr = base + levelsBytes, stream = rowPtr + rowPtrBytes;
  k.f32(levels, nL).set(values);
  const rp = k.i32(rowPtr, rows);
  const s = k.u16(stream, units);
  let u = 0;
  for (let r = 0; r < rows; r++) {
    rp[r] = u;
    s[u] = used[r]!;
    let h = u + 1;
    u += 1 + 2 * used[r]!;
    for (let j = rowStart[r]!; j < rowStart[r + 1]!;) {
      const l = level[order[j]!]!;
      let e = j;
      while (e < rowStart[r + 1]! && level[order[e]!] === l) s[u++] = col[order[e++]!]!;
      s[h++] = l;
      s[h++] = e - j;
      j = e;
    }
  }
  return { rows, cols, nnz, nLevels: nL, levels, rowPtr, stream, bytes, rowNnz };
}

/**
 * The level id of every code of `t`'s span [lo, hi] (uniform codes) or table (−1: the value is 0),
 * and the level values in id order: what levelIds gives per stored code, as a table over the
 * distinct codes instead (a level no weight uses only takes its 4 bytes in the values). Undefined
 * if the span is wider than MAX_LEVELS.
 */
export function levelTable(t: CompressedTensor): { idOf: Int32Array; lo: number; values: number[] } | undefined {
  let lo = 0, hi = -1;
  if (t.codebook.kind === "table") hi = t.codebook.values.length - 1;
  else if (t.codes.length > 0) ({ lo, hi } = codeSpan(t));
  const span = hi - lo + 1;
  if (span > MAX_LEVELS) return undefined;
  const idOf = new Int32Array(Math.max(0, span));
  const values: number[] = [];
  for (let c = lo; c <= hi; c++) {
    const v = codebookValue(t.codebook, c);
    idOf[c - lo] = v === 0 ? -1 : values.push(v) - 1;
  }
  return { idOf, lo, values };
}

/**
 * transcodeSparse for a row-major tensor in two passes over its kept weights and no per-weight
 * temporaries: the stored indices are strictly increasing, so each row is one contiguous run of
 * them; per row the levels are counted, then each column is written to its level's place. Level
 * ids index the code span [lo, hi] (uniform) or the table; a level no weight uses costs its 4
 * bytes in `levels` only. Undefined when the span is too wide for an id table (transcodeSparse's
 * general path then runs). ResNet-18 at (0.74, 3): 3.0 M kept weights in ~40 ms instead of ~200.
 */
function transcodeRowMajor(k: WasmKernels, t: CompressedTensor, rows: number, cols: number): SparseRows | undefined {
  const table = levelTable(t);
  if (!table) return undefined;
  const { idOf, lo, values } = table;
  const codes = t.codes, idx = t.indices, n = codes.length;
  const nL = values.length;
  // Its per-(row, level) counts cost rows × levels: fine for a stored tensor's handful of levels,
  // not for a training step's Ŵ with a level per weight (train/wasm-conv.ts), which the general
  // path (two counting sorts, O(n + rows + levels)) takes.
  if (rows * nL > 4 * n + (1 << 16)) return undefined;
  // Pass 1: row starts within the stored weights, and the kept weights of each (row, level).
  const rowStart = new Int32Array(rows + 1);
  const rowNnz = new Int32Array(rows);
  const count = new Int32Array(rows * nL);
  let units = 0, nnz = 0;
  let i = 0;
  for (let r = 0; r < rows; r++) {
    rowStart[r] = i;
    const end = (r + 1) * cols, cb = r * nL;
    for (; i < n && idx[i]! < end; i++) { const l = idOf[codes[i]! - lo]!; if (l >= 0) count[cb + l]!++; }
    let used = 0, kept = 0;
    for (let l = 0; l < nL; l++) { const c = count[cb + l]!; if (c > 0) { used++; kept += c; } }
    rowNnz[r] = kept;
    nnz += kept;
    units += 1 + 2 * used + kept;
  }
  rowStart[rows] = n;
  // Pass 2: headers, then each column to its level's place, built in a local array and copied
  // into wasm memory once (element writes to a view of shared memory are slower on some engines).
  const rp = new Int32Array(rows);
  const st = new Uint16Array(units);
  const place = new Int32Array(nL);
  let u = 0;
  for (let r = 0; r < rows; r++) {
    const cb = r * nL;
    rp[r] = u;
    let used = 0;
    for (let l = 0; l < nL; l++) if (count[cb + l]! > 0) used++;
    st[u] = used;
    let h = u + 1, p = u + 1 + 2 * used;
    for (let l = 0; l < nL; l++) {
      const c = count[cb + l]!;
      if (c === 0) continue;
      st[h++] = l;
      st[h++] = c;
      place[l] = p;
      p += c;
    }
    const rowBase = r * cols;
    for (let j = rowStart[r]!, b = rowStart[r + 1]!; j < b; j++) { const l = idOf[codes[j]! - lo]!; if (l >= 0) st[place[l]!++] = idx[j]! - rowBase; }
    u = p;
  }
  const levelsBytes = align16(nL * 4), rowPtrBytes = align16(rows * 4), streamBytes = align16(units * 2);
  const bytes = levelsBytes + rowPtrBytes + streamBytes;
  const base = k.alloc(bytes);
  const levels = base, rowPtr = base + levelsBytes, stream = rowPtr + rowPtrBytes;
  k.f32(levels, nL).set(values);
  k.i32(rowPtr, rows).set(rp);
  k.u16(stream, units).set(st);
  return { rows, cols, nnz, nLevels: nL, levels, rowPtr, stream, bytes, rowNnz };
}

/** ransSparseRows' failure codes, as the CORRUPT FormatError decodeOpq would have thrown. */
const STREAM_FAULTS: Record<number, string> = {
  [-1]: "rANS stream does not end where it should",
  [-2]: "an index falls outside the tensor",
  [-3]: "a code falls outside its table",
};

/**
 * transcodeSparse for a row-major tensor of an rANS-coded `.opq` (decoded with `lazyWeights`),
 * inside wasm from the stored stream (as/rans.ts): the pairs are decoded once into kept columns
 * and level ids (2 + 2 bytes a weight, freed after) while each (row, level) is counted, then the
 * rows are written. No indices or codes arrays are made, and decodeOpq's checks apply (a corrupt
 * stream throws its FormatError CORRUPT). Level ids index the span the stream's model allows
 * (encodedSpan); a level no weight uses costs its 4 bytes in `levels` only. Undefined when the
 * tensor has no stored stream or the span is too wide (the other paths then run).
 * ResNet-50 at (0.74, 3), 6.4 M stored weights: ~60 ms, against ~420 ms for decodeOpq's JS
 * decode plus transcodeRowMajor (the cold-start profile in this commit's message).
 */
function transcodeEncoded(k: WasmKernels, t: CompressedTensor, rows: number, cols: number): SparseRows | undefined {
  const e = encodedWeights(t);
  const span = e && encodedSpan(t);
  if (!e || !span || span.hi - span.lo + 1 > MAX_LEVELS) return undefined;
  const n = e.nnz, { lo, hi } = span;
  const idOf = new Int32Array(hi - lo + 1);
  const values: number[] = [];
  for (let c = lo; c <= hi; c++) {
    const v = codebookValue(t.codebook, c);
    idOf[c - lo] = v === 0 ? -1 : values.push(v) - 1;
  }
  const nL = values.length;
  if (rows * nL > 4 * n + (1 << 16)) return undefined;
  const words = e.words;
  // Temporaries: the words (+16 bytes the decoder may read past a corrupt stream's end), both
  // decode tables, the level ids, kept columns and level ids, row starts, (row, level) counts.
  const sizes = [words.length + 16, e.gaps.table.length * 4, e.symbols.table.length * 4, idOf.length * 4, n * 2, n * 2, (rows + 1) * 4, Math.max(1, rows * nL) * 4, Math.max(1, nL) * 4];
  const temps = sizes.map((b) => k.alloc(b));
  const [wp, ta, tb, ip, colP, lvlP, rsP, cntP, placeP] = temps as [number, number, number, number, number, number, number, number, number];
  try {
    stageStream(k, e, wp, ta, tb);
    k.i32(ip, idOf.length).set(idOf);
    k.i32(cntP, rows * nL).fill(0);
    const kept = k.exports.ransSparseRows(wp, words.length >> 1, ta, e.gaps.scaleBits, e.gaps.direct, tb, e.symbols.scaleBits, e.symbols.direct, n,
      rows, cols, e.zigzag ? 1 : 0, ip, lo, idOf.length, nL, colP, lvlP, rsP, cntP, 0);
    if (kept < 0) throw new FormatError(FORMAT_ERROR_CODES.CORRUPT, `compressed tensor ${t.name}: ${STREAM_FAULTS[kept] ?? "corrupt stream"}`);
    // Row sizes from the counts (rows × levels: small).
    const count = k.i32(cntP, rows * nL);
    const rowNnz = new Int32Array(rows);
    let units = 0;
    for (let r = 0; r < rows; r++) {
      let used = 0, c = 0;
      for (let l = 0; l < nL; l++) { const v = count[r * nL + l]!; if (v > 0) { used++; c += v; } }
      rowNnz[r] = c;
      units += 1 + 2 * used + c;
    }
    const levelsBytes = align16(nL * 4), rowPtrBytes = align16(rows * 4), streamBytes = align16(units * 2);
    const bytes = levelsBytes + rowPtrBytes + streamBytes;
    const base = k.alloc(bytes);
    const levels = base, rowPtr = base + levelsBytes, stream = rowPtr + rowPtrBytes;
    k.f32(levels, nL).set(values);
    const written = k.exports.sparseRowsPlace(rows, nL, rsP, cntP, colP, lvlP, rowPtr, stream, placeP);
    if (written !== units) throw new Error(`sparse form: ${written} stream units written, ${units} expected`);
    return { rows, cols, nnz: kept, nLevels: nL, levels, rowPtr, stream, bytes, rowNnz };
  } finally {
    for (const p of temps) k.free(p);
  }
}

/** Copy a stream's words (then 16 zero bytes the decoder may read past a corrupt stream's end) and its two decode tables into wasm memory. */
function stageStream(k: WasmKernels, e: NonNullable<ReturnType<typeof encodedWeights>>, words: number, gaps: number, symbols: number): void {
  const w8 = k.u8(words, e.words.length + 16);
  w8.set(e.words);
  w8.fill(0, e.words.length);
  new Uint32Array(k.memory.buffer, gaps, e.gaps.table.length).set(e.gaps.table);
  new Uint32Array(k.memory.buffer, symbols, e.symbols.table.length).set(e.symbols.table);
}

/**
 * The u8 code form (ops/conv-coded.ts) of an rANS-coded lazily decoded tensor, decoded inside wasm
 * straight into `codes` (`size` bytes in wasm memory, zeroed here): level id + 1 per weight, 0 for
 * a pruned one; the level values in id order. Level ids index the span the stream's model allows
 * (encodedSpan). Undefined when the tensor has no stored stream or that span has more than
 * `maxLevels` non-zero levels (the caller then decodes in JS). A corrupt stream throws its
 * FormatError CORRUPT.
 */
export function encodedCodesU8(k: WasmKernels, t: CompressedTensor, codes: number, maxLevels: number): { values: number[] } | undefined {
  const e = encodedWeights(t);
  const span = e && encodedSpan(t);
  if (!e || !span || span.hi - span.lo + 1 > MAX_LEVELS) return undefined;
  const idOf = new Int32Array(span.hi - span.lo + 1);
  const values: number[] = [];
  for (let c = span.lo; c <= span.hi; c++) {
    const v = codebookValue(t.codebook, c);
    idOf[c - span.lo] = v === 0 ? -1 : values.push(v) - 1;
  }
  if (values.length > maxLevels) return undefined;
  const words = e.words;
  const sizes = [words.length + 16, e.gaps.table.length * 4, e.symbols.table.length * 4, idOf.length * 4, 4];
  const temps = sizes.map((b) => k.alloc(b));
  const [wp, ta, tb, ip, rsP] = temps as [number, number, number, number, number];
  try {
    stageStream(k, e, wp, ta, tb);
    k.i32(ip, idOf.length).set(idOf);
    k.u8(codes, e.size).fill(0);
    const kept = k.exports.ransSparseRows(wp, words.length >> 1, ta, e.gaps.scaleBits, e.gaps.direct, tb, e.symbols.scaleBits, e.symbols.direct, e.nnz,
      1, e.size, e.zigzag ? 1 : 0, ip, span.lo, idOf.length, values.length, 0, 0, rsP, 0, codes);
    if (kept < 0) throw new FormatError(FORMAT_ERROR_CODES.CORRUPT, `compressed tensor ${t.name}: ${STREAM_FAULTS[kept] ?? "corrupt stream"}`);
    return { values };
  } finally {
    for (const p of temps) k.free(p);
  }
}
