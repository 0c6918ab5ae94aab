// Load-time transcoder of a compressed `.opq` weight into the level-grouped sparse row form of
// sparse.ts (layout in ops/sparse-form.ts), straight from the file's rANS pair stream (format/
// codecs/rans.ts, SPEC.md §6): per pair the gap and the symbol are decoded (two interleaved
// states sharing one u16 word stream), the gap advances the flat index, and the kept weight's
// column and level id go to two u16 arrays while its (row, level) is counted. sparseRowsPlace
// then writes each row's header and its columns grouped by level. So the stored stream becomes
// the kernel form in two passes, with no indices/codes arrays of the tensor in JS.

/** Lower bound of the normalized rANS state (RANS_L of format/codecs/rans.ts). */
const RANS_L: u32 = 65536;
/** Raw escape bits go through the state at most this many at a time (RAW_CHUNK_BITS). */
const RAW_CHUNK: u32 = 16;

/**
 * Decode `n` (gap, symbol) pairs of the words at `words` (`nWords` u16, followed by at least 16
 * readable bytes) under the decode tables `tabA`/`tabB` (u32 per slot: symbol << 24 |
 * (freq − 1) << 12 | slot − cum; scale bits sA/sB; direct counts dA/dB) as a `rows × cols`
 * row-major matrix. A symbol is a code (zigzag-coded when `zig`), mapped to a level id by the i32
 * table `idOf` over codes [idLo, idLo + idLen) (−1: the weight is zero, dropped). Writes the kept
 * weights' columns to `outCol` and level ids to `outLvl` (u16 each, in stored order), each row's
 * first kept weight to `rowStart` (i32 × rows + 1) and adds kept weights per (row, level) into
 * `count` (i32 × rows·nL, zeroed by the caller). Returns the kept count, or −1 if the stream does
 * not end where it should (format's decodePairs check) or a value exceeds 32 bits, −2 if an index
 * falls outside the matrix, −3 if a code falls outside `idOf`.
 * With `codes` ≠ 0 it writes the u8 code form instead (ops/conv-coded.ts): level id + 1 at byte
 * `codes` + flat index (0 for a zero weight; the caller zeroes the rest), and no rows or counts.
 */
export function ransSparseRows(
  words: usize, nWords: i32, tabA: usize, sA: u32, dA: u32, tabB: usize, sB: u32, dB: u32, n: i32,
  rows: i32, cols: i32, zig: i32, idOf: usize, idLo: i32, idLen: i32, nL: i32,
  outCol: usize, outLvl: usize, rowStart: usize, count: usize, codes: usize,
): i32 {
  const maskA: u32 = (1 << sA) - 1, maskB: u32 = (1 << sB) - 1;
  let x: u32 = <u32>load<u16>(words) | (<u32>load<u16>(words, 2) << 16);
  let y: u32 = <u32>load<u16>(words, 4) | (<u32>load<u16>(words, 6) << 16);
  if (x < RANS_L || y < RANS_L) return -1;
  let p: usize = 4;
  const end = <usize>nWords;
  const size: u64 = <u64>rows * <u64>cols;
  let prev: u64 = <u64>-1;
  let r: i32 = 0, kept: i32 = 0;
  let rowEnd: u64 = <u64>cols, rowBase: u64 = 0;
  store<i32>(rowStart, 0);
  for (let k = 0; k < n; k++) {
    const e = load<u32>(tabA + ((<usize>(x & maskA)) << 2));
    const h = load<u32>(tabB + ((<usize>(y & maskB)) << 2));
    x = (((e >> 12) & 0xfff) + 1) * (x >> sA) + (e & 0xfff);
    y = (((h >> 12) & 0xfff) + 1) * (y >> sB) + (h & 0xfff);
    // Renormalize without a branch: read the next word, advance only if the state needs it.
    let w = <u32>load<u16>(words + (p << 1));
    const nx = x < RANS_L;
    x = select<u32>((x << 16) | w, x, nx);
    p += <usize>nx;
    w = <u32>load<u16>(words + (p << 1));
    const ny = y < RANS_L;
    y = select<u32>((y << 16) | w, y, ny);
    p += <usize>ny;
    let va: u64 = <u64>(e >> 24), vb: u64 = <u64>(h >> 24);
    if (va >= <u64>dA) {
      // Escape: bucket raw bits, low chunk first.
      const bucket = <u32>va - dA;
      let extra: u64 = 0;
      for (let shift: u32 = 0; shift < bucket; shift += RAW_CHUNK) {
        const t = min(bucket - shift, RAW_CHUNK);
        extra += (<u64>(x & ((1 << t) - 1))) << shift;
        x = x >> t;
        if (x < RANS_L) { x = (x << 16) | <u32>load<u16>(words + (p << 1)); p++; }
      }
      va = <u64>dA - 1 + (<u64>1 << bucket) + extra;
      if (va > 0xffffffff) return -1;
    }
    if (vb >= <u64>dB) {
      const bucket = <u32>vb - dB;
      let extra: u64 = 0;
      for (let shift: u32 = 0; shift < bucket; shift += RAW_CHUNK) {
        const t = min(bucket - shift, RAW_CHUNK);
        extra += (<u64>(y & ((1 << t) - 1))) << shift;
        y = y >> t;
        if (y < RANS_L) { y = (y << 16) | <u32>load<u16>(words + (p << 1)); p++; }
      }
      vb = <u64>dB - 1 + (<u64>1 << bucket) + extra;
      if (vb > 0xffffffff) return -1;
    }
    // At most 6 words were read this pair: the 16 bytes of slack cover a stream that overruns.
    if (p > end) return -1;
    prev += va + 1;
    if (prev >= size) return -2;
    if (codes) {
      const s = <u32>vb;
      const o = (zig ? <i32>((s >> 1) ^ (0 - (s & 1))) : <i32>s) - idLo;
      if (<u32>o >= <u32>idLen) return -3;
      const l = load<i32>(idOf + (<usize>o << 2));
      store<u8>(codes + <usize>prev, <u8>(l + 1));
      kept += i32(l >= 0);
      continue;
    }
    while (prev >= rowEnd) {
      r++;
      store<i32>(rowStart + (<usize>r << 2), kept);
      rowBase = rowEnd;
      rowEnd += <u64>cols;
    }
    const s = <u32>vb;
    const code = zig ? <i32>((s >> 1) ^ (0 - (s & 1))) : <i32>s;
    const o = code - idLo;
    if (<u32>o >= <u32>idLen) return -3;
    const l = load<i32>(idOf + (<usize>o << 2));
    if (l >= 0) {
      store<u16>(outCol + (<usize>kept << 1), <u16>(prev - rowBase));
      store<u16>(outLvl + (<usize>kept << 1), <u16>l);
      const c = count + ((<usize>r * <usize>nL + <usize>l) << 2);
      store<i32>(c, load<i32>(c) + 1);
      kept++;
    }
  }
  if (p != end || x != RANS_L || y != RANS_L) return -1;
  if (codes) return kept;
  for (r++; r <= rows; r++) store<i32>(rowStart + (<usize>r << 2), kept);
  return kept;
}

/**
 * Write the sparse row form of the kept weights ransSparseRows collected: for each row its
 * stream offset (u16 units) to `rowPtr`, then at that offset nLev, nLev × (level id, count) and
 * the row's columns grouped by level (stored order within a level, so ascending). `place` is
 * scratch of nL i32. Returns the u16 units written.
 */
export function sparseRowsPlace(rows: i32, nL: i32, rowStart: usize, count: usize, outCol: usize, outLvl: usize, rowPtr: usize, stream: usize, place: usize): i32 {
  let u: i32 = 0;
  for (let r = 0; r < rows; r++) {
    const cb = count + ((<usize>r * <usize>nL) << 2);
    store<i32>(rowPtr + (<usize>r << 2), u);
    let used: i32 = 0;
    for (let l = 0; l < nL; l++) if (load<i32>(cb + (<usize>l << 2)) > 0) used++;
    store<u16>(stream + (<usize>u << 1), <u16>used);
    let hp: i32 = u + 1, pos: i32 = u + 1 + 2 * used;
    for (let l = 0; l < nL; l++) {
      const c = load<i32>(cb + (<usize>l << 2));
      if (c == 0) continue;
      store<u16>(stream + (<usize>hp << 1), <u16>l);
      store<u16>(stream + (<usize>(hp + 1) << 1), <u16>c);
      hp += 2;
      store<i32>(place + (<usize>l << 2), pos);
      pos += c;
    }
    const b = load<i32>(rowStart + (<usize>(r + 1) << 2));
    for (let j = load<i32>(rowStart + (<usize>r << 2)); j < b; j++) {
      const l = <usize>load<u16>(outLvl + (<usize>j << 1));
      const q = load<i32>(place + (l << 2));
      store<u16>(stream + (<usize>q << 1), load<u16>(outCol + (<usize>j << 1)));
      store<i32>(place + (l << 2), q + 1);
    }
    u = pos;
  }
  return u;
}
