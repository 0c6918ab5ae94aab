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
import { type CompressedTensor, codebookValue } from "../../../format/mod.ts";
import type { WasmKernels } from "../module.ts";

/** Largest column count the u16 indices address. */
export const SPARSE_MAX_COLS = 65536;
/** Largest number of distinct levels (u16 level ids). */
const MAX_LEVELS = 65536;

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

/** Level ids of the codes, and the level values. */
function levelTable(t: CompressedTensor): { id: (code: number) => number; values: number[] } {
  const values: number[] = [];
  if (t.codebook.kind === "table") {
    const table = t.codebook.values;
    const ids = new Int32Array(table.length).fill(-1);
    return {
      id: (code) => {
        if (ids[code] === -1) {
          const v = table[code]!;
          ids[code] = v === 0 ? -2 : values.push(v) - 1;
        }
        return ids[code]!;
      },
      values,
    };
  }
  const cb = t.codebook;
  // Uniform codes are small integers: a dense id table over their range beats a Map per weight.
  let lo = 0, hi = 0;
  for (const c of t.codes) { if (c < lo) lo = c; else if (c > hi) hi = c; }
  if (hi - lo < 1 << 16) {
    const dense = new Int32Array(hi - lo + 1).fill(-1);
    return {
      id: (code) => {
        let id = dense[code - lo]!;
        if (id === -1) {
          const v = codebookValue(cb, code);
          id = dense[code - lo] = v === 0 ? -2 : values.push(v) - 1;
        }
        return id;
      },
      values,
    };
  }
  const ids = new Map<number, number>();
  return {
    id: (code) => {
      let id = ids.get(code);
      if (id === undefined) {
        const v = codebookValue(cb, code);
        id = v === 0 ? -2 : values.push(v) - 1;
        ids.set(code, id);
      }
      return id;
    },
    values,
  };
}

/** Per-weight scratch arrays of transcodeSparse, grown on demand and reused (slot → array). */
const SCRATCH: Int32Array[] = [];
/** Scratch array `slot` with room for `n` values (contents unspecified), as a view of exactly `n`. */
function scratch(slot: number, n: number): Int32Array {
  if ((SCRATCH[slot]?.length ?? -1) < n) SCRATCH[slot] = new Int32Array(Math.max(n, 1024));
  return SCRATCH[slot]!.subarray(0, n);
}

/**
 * Transcode `t` as a `rows × cols` matrix (`transposed`: `t` is stored `[cols, rows]`) into wasm
 * memory. Throws RangeError if the form cannot address it (cols > 65536, > 65536 levels).
 */
export function transcodeSparse(k: WasmKernels, t: CompressedTensor, rows: number, cols: number, transposed = false): SparseRows {
  if (cols > SPARSE_MAX_COLS) throw new RangeError(`sparse form: ${cols} columns (at most ${SPARSE_MAX_COLS})`);
  if (rows * cols !== t.dims.reduce((a, b) => a * b, 1)) throw new RangeError(`sparse form: ${rows}×${cols} does not match [${t.dims}]`);
  const lv = levelTable(t);
  const codes = t.codes, indices = t.indices;
  const n = codes.length;
  // Scratch reused across tensors: a model's load then makes no per-weight garbage here.
  const level = scratch(0, n), row = scratch(1, n), col = scratch(2, n);
  for (let i = 0; i < n; i++) {
    level[i] = lv.id(codes[i]!);
    const idx = indices[i]!;
    if (transposed) { row[i] = idx % rows; col[i] = Math.floor(idx / rows); }
    else { row[i] = Math.floor(idx / cols); col[i] = idx % cols; }
  }
  const nL = lv.values.length;
  if (nL > MAX_LEVELS) throw new RangeError(`sparse form: ${nL} levels (at most ${MAX_LEVELS})`);
  // Counting sort by (row, level); stable, so columns stay ascending within a bucket (the
  // stored order is row-major; for a transposed tensor it is column-major, i.e. ascending
  // columns within a row too).
  const buckets = rows * nL;
  const start = new Int32Array(buckets + 1);
  for (let i = 0; i < n; i++) if (level[i]! >= 0) start[row[i]! * nL + level[i]! + 1]!++;
  for (let b = 0; b < buckets; b++) start[b + 1]! += start[b]!;
  const order = scratch(3, start[buckets]!);
  const fill = start.slice(0, buckets);
  for (let i = 0; i < n; i++) if (level[i]! >= 0) order[fill[row[i]! * nL + level[i]!]!++] = i;
  const nnz = order.length;
  // Stream size: per row 1 + 2·(levels used) + its indices.
  const rowNnz = new Int32Array(rows);
  let units = 0;
  for (let r = 0; r < rows; r++) {
    let used = 0;
    for (let l = 0; l < nL; l++) {
      const c = start[r * nL + l + 1]! - start[r * nL + l]!;
      if (c > 0) { used++; rowNnz[r]! += c; }
    }
    units += 1 + 2 * used + rowNnz[r]!;
  }
  const levelsBytes = align16(nL * 4), rowPtrBytes = align16(rows * 4), streamBytes = align16(units * 2);
  const bytes = levelsBytes + rowPtrBytes + streamBytes;
  const base = k.alloc(bytes);
  const levels = base, rowPtr = base + levelsBytes, stream = rowPtr + rowPtrBytes;
  k.f32(levels, nL).set(lv.values);
  const rp = k.i32(rowPtr, rows);
  const s = k.u16(stream, units);
  let u = 0;
  for (let r = 0; r < rows; r++) {
    rp[r] = u;
    const head = u;
    u += 1;
    let used = 0;
    for (let l = 0; l < nL; l++) if (start[r * nL + l + 1]! > start[r * nL + l]!) used++;
    s[head] = used;
    let h = head + 1;
    u += 2 * used;
    for (let l = 0; l < nL; l++) {
      const b0 = start[r * nL + l]!, b1 = start[r * nL + l + 1]!;
      if (b1 === b0) continue;
      s[h++] = l;
      s[h++] = b1 - b0;
      for (let j = b0; j < b1; j++) s[u++] = col[order[j]!]!;
    }
  }
  return { rows, cols, nnz, nLevels: nL, levels, rowPtr, stream, bytes, rowNnz };
}
