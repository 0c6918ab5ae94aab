/**
 * Weights as the GPU holds them, in one u32 storage buffer per layer.
 *
 * A compressed `.opq` weight is transcoded from its stored form (flat sorted `indices`, integer
 * `codes`, a step or a table) without ever making a dense float32 copy: the nonzeros are grouped
 * into rows, one per output channel (Conv: W[m, ·]; Gemm: column n of B'), as
 *   rowPtr  rows+1 u32 offsets into the nonzeros,
 *   cols    each nonzero's column within its row, two u16 per word (u32 when a row is ≥ 65536 long),
 *   codes   each nonzero's code as a `bits`-wide unsigned field (bits a power of two ≤ 32, so no
 *           field straddles a word): uniform codes shifted by −min(code), table codes as stored,
 *   table   the APoT levels (f32), for table codebooks,
 * and the shader decodes value = step · (field + min) (OPQ Eq. 10) or table[field]. A bias and
 * other per-channel vectors go in the same buffer after the weights (`extra`).
 * @module
 */
import type { CompressedTensor } from "../../format/mod.ts";

/** Where each part of a packed weight buffer starts (u32 word offsets) and how fields are read. */
export interface WeightLayout {
  /** "dense": `values` f32 at `dense`; "sparse-uniform" / "sparse-table": rows as above. */
  kind: "dense" | "sparse-uniform" | "sparse-table";
  dense: number;
  rowPtr: number;
  cols: number;
  codes: number;
  table: number;
  /** log2 of codes per word, code width and mask. */
  codeShift: number;
  codeBits: number;
  codeMask: number;
  /** 1: two u16 columns per word; 0: one u32 per column. */
  colShift: number;
  /** Added to a uniform code field to get the signed code. */
  codeMin: number;
  step: number;
  /** Offsets of the `extra` vectors, in order. */
  extra: number[];
  /** Nonzeros (sparse) or values (dense). */
  count: number;
}

/** A packed weight buffer's words and layout. */
export interface PackedWeights {
  words: Uint32Array;
  layout: WeightLayout;
  /** e.g. "dense-f32", "csr-u16-q4-uniform", "csr-u16-q4-table". */
  form: string;
}

const EMPTY_LAYOUT: Omit<WeightLayout, "kind" | "count"> = { dense: 0, rowPtr: 0, cols: 0, codes: 0, table: 0, codeShift: 0, codeBits: 32, codeMask: 0xffffffff, colShift: 0, codeMin: 0, step: 0, extra: [] };

/** Pack dense float32 `values` (then `extra` vectors) into one buffer. */
export function packDense(values: Float32Array, extra: readonly Float32Array[] = []): PackedWeights {
  const total = values.length + extra.reduce((n, e) => n + e.length, 0);
  const f = new Float32Array(Math.max(1, total));
  f.set(values, 0);
  const offsets: number[] = [];
  let at = values.length;
  for (const e of extra) { offsets.push(at); f.set(e, at); at += e.length; }
  return { words: new Uint32Array(f.buffer), layout: { ...EMPTY_LAYOUT, kind: "dense", extra: offsets, count: values.length }, form: "dense-f32" };
}

/**
 * Pack a compressed weight as rows: `rowOf(flat)` and `colOf(flat)` map a stored flat index to
 * its row and column (the row count is `rows`, every column < `rowLength`).
 */
export function packCompressed(c: CompressedTensor, rows: number, rowLength: number, rowOf: (flat: number) => number, colOf: (flat: number) => number, extra: readonly Float32Array[] = []): PackedWeights {
  const nnz = c.indices.length;
  // Counting sort by row: stored indices are sorted, so each row's columns stay in increasing order.
  const rowPtr = new Uint32Array(rows + 1);
  const rowIdx = new Uint32Array(nnz);
  for (let k = 0; k < nnz; k++) { const r = rowOf(c.indices[k]!); rowIdx[k] = r; rowPtr[r + 1]!++; }
  for (let r = 0; r < rows; r++) rowPtr[r + 1]! += rowPtr[r]!;
  const fill = rowPtr.slice(0, rows);
  const cols = new Uint32Array(nnz), fields = new Uint32Array(nnz);
  const table = c.codebook.kind === "table";
  let codeMin = 0;
  if (!table) for (let k = 0; k < nnz; k++) codeMin = Math.min(codeMin, c.codes[k]!);
  let maxField = 0;
  for (let k = 0; k < nnz; k++) {
    const at = fill[rowIdx[k]!]!++;
    cols[at] = colOf(c.indices[k]!);
    const field = c.codes[k]! - codeMin;
    fields[at] = field;
    if (field > maxField) maxField = field;
  }
  let codeBits = 1;
  while (codeBits < 32 && maxField >= 2 ** codeBits) codeBits *= 2;
  const codeShift = Math.log2(32 / codeBits);
  const colShift = rowLength <= 0x10000 ? 1 : 0;
  const colWords = colShift ? Math.ceil(nnz / 2) : nnz;
  const codeWords = Math.ceil(nnz / (32 / codeBits));
  const tableLen = table ? (c.codebook as { values: Float32Array }).values.length : 0;
  const extraLen = extra.reduce((n, e) => n + e.length, 0);
  const o = { rowPtr: 0, cols: rows + 1, codes: 0, table: 0 };
  o.codes = o.cols + colWords;
  o.table = o.codes + codeWords;
  const words = new Uint32Array(Math.max(1, o.table + tableLen + extraLen));
  words.set(rowPtr, o.rowPtr);
  for (let k = 0; k < nnz; k++) {
    if (colShift) words[o.cols + (k >> 1)]! |= cols[k]! << ((k & 1) * 16);
    else words[o.cols + k] = cols[k]!;
    const per = 32 / codeBits;
    words[o.codes + Math.floor(k / per)]! |= (fields[k]! << ((k % per) * codeBits)) >>> 0;
  }
  const f = new Float32Array(words.buffer);
  if (table) f.set((c.codebook as { values: Float32Array }).values, o.table);
  const offsets: number[] = [];
  let at = o.table + tableLen;
  for (const e of extra) { offsets.push(at); f.set(e, at); at += e.length; }
  const codeMask = codeBits === 32 ? 0xffffffff : 2 ** codeBits - 1;
  return {
    words,
    layout: {
      kind: table ? "sparse-table" : "sparse-uniform", dense: 0, rowPtr: o.rowPtr, cols: o.cols, codes: o.codes, table: o.table,
      codeShift, codeBits, codeMask, colShift, codeMin, step: c.codebook.kind === "uniform" ? c.codebook.step : 0, extra: offsets, count: nnz,
    },
    form: `csr-u${colShift ? 16 : 32}-q${codeBits}-${table ? "table" : "uniform"}`,
  };
}

/** Parameter words a kernel passes for a weight layout, from index `at` (10 words). */
export function layoutParams(l: WeightLayout, u: Uint32Array, f: Float32Array, s: Int32Array, at: number): void {
  u[at] = l.kind === "dense" ? l.dense : l.rowPtr;
  u[at + 1] = l.cols;
  u[at + 2] = l.codes;
  u[at + 3] = l.table;
  u[at + 4] = l.codeShift;
  u[at + 5] = l.codeBits;
  u[at + 6] = l.codeMask;
  u[at + 7] = l.colShift;
  s[at + 8] = l.codeMin;
  f[at + 9] = l.step;
}

/**
 * WGSL to read a packed weight (`w: array<u32>`, parameters at `at` as `layoutParams` wrote):
 * `wDense(k)` reads dense value k; `wRowBegin(r)`/`wRowEnd(r)` bound row r's nonzeros; `wLayout()`
 * reads the layout parameters once (call it before the loop: storage loads are not hoisted for
 * us), then `wCol(L, j)` and `wVal(L, j)` read nonzero j's column and value.
 */
export function weightWgsl(at: number, kind: WeightLayout["kind"]): string {
  const value = kind === "sparse-table" ? "bitcast<f32>(w[L.table + field])" : "L.step * f32(i32(field) + L.cmin)";
  return /* wgsl */ `
struct WL { cols: u32, codes: u32, table: u32, shift: u32, bits: u32, mask: u32, colShift: u32, cmin: i32, step: f32 }
fn wLayout() -> WL {
  return WL(pu(${at + 1}u), pu(${at + 2}u), pu(${at + 3}u), pu(${at + 4}u), pu(${at + 5}u), pu(${at + 6}u), pu(${at + 7}u), pi(${at + 8}u), pf(${at + 9}u));
}
fn wDense(k: u32) -> f32 { return bitcast<f32>(w[pu(${at}u) + k]); }
fn wRowBegin(r: u32) -> u32 { return w[pu(${at}u) + r]; }
fn wRowEnd(r: u32) -> u32 { return w[pu(${at}u) + r + 1u]; }
fn wCol(L: WL, j: u32) -> u32 {
  if (L.colShift == 1u) { return (w[L.cols + (j >> 1u)] >> ((j & 1u) * 16u)) & 0xffffu; }
  return w[L.cols + j];
}
fn wVal(L: WL, j: u32) -> f32 {
  let word = w[L.codes + (j >> L.shift)];
  let field = (word >> ((j & ((1u << L.shift) - 1u)) * L.bits)) & L.mask;
  return ${value};
}
fn wExtra(off: u32, k: u32) -> f32 { return bitcast<f32>(w[off + k]); }
`;
}
