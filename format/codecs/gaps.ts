/**
 * Positions of non-zeros as gaps, signed codes as zigzag, and LEB128 varints (the byte streams
 * the deflate codec compresses).
 *
 * Gap definition (SPEC.md §4): for strictly increasing flat indices i_0 < i_1 < … < i_{n−1},
 *   g_k = i_k − i_{k−1} − 1  with  i_{−1} = −1,
 * i.e. g_k is the number of zeros skipped before the k-th non-zero (g_0 = i_0). A dense run is
 * all-zero gaps; trailing zeros after the last non-zero are implied by the tensor's dims.
 * @module
 */
import { check, FORMAT_ERROR_CODES as E } from "../errors.ts";

/** Gaps of strictly increasing indices (throws INVALID_ARGUMENT if they are not). */
export function indicesToGaps(indices: Uint32Array, out = new Uint32Array(indices.length)): Uint32Array {
  let prev = -1;
  for (let k = 0; k < indices.length; k++) {
    const i = indices[k]!;
    check(i > prev, E.INVALID_ARGUMENT, () => `indices not strictly increasing at ${k}`);
    out[k] = i - prev - 1;
    prev = i;
  }
  return out;
}

/**
 * Turn gaps into indices in place, checking every index is < size (CORRUPT otherwise).
 * Because gaps are ≥ 0 the result is strictly increasing by construction.
 */
export function gapsToIndicesInPlace(a: Uint32Array, size: number): Uint32Array {
  let prev = -1;
  for (let k = 0; k < a.length; k++) {
    prev += a[k]! + 1;
    a[k] = prev;
  }
  check(prev < size, E.CORRUPT, () => `index ${prev} outside a tensor of ${size} elements`);
  return a;
}

/** Zigzag map of an int32: 0,−1,1,−2,… → 0,1,2,3,… */
export function zigzag(c: number): number {
  return ((c << 1) ^ (c >> 31)) >>> 0;
}

/** Inverse of zigzag. */
export function unzigzag(u: number): number {
  return (u >>> 1) ^ -(u & 1);
}

/** LEB128 bytes of unsigned 32-bit values (1 byte below 128, at most 5). */
export function writeVarints(values: ArrayLike<number>): Uint8Array {
  let n = 0;
  for (let k = 0; k < values.length; k++) { let v = values[k]!; do { n++; v = Math.floor(v / 128); } while (v > 0); }
  const out = new Uint8Array(n);
  let p = 0;
  for (let k = 0; k < values.length; k++) {
    let v = values[k]!;
    while (v >= 128) { out[p++] = (v & 127) | 128; v = Math.floor(v / 128); }
    out[p++] = v;
  }
  return out;
}

/** Read exactly `out.length` varints that must fill `bytes` exactly (CORRUPT otherwise). */
export function readVarints(bytes: Uint8Array, out: Uint32Array): Uint32Array {
  let p = 0;
  for (let k = 0; k < out.length; k++) {
    let v = 0, scale = 1, b = 0, i = 0;
    do {
      check(p < bytes.length, E.CORRUPT, "varint stream ends early");
      b = bytes[p++]!;
      v += (b & 127) * scale;
      scale *= 128;
    } while (b & 128 && ++i < 5);
    check(!(b & 128) && v <= 0xffffffff, E.CORRUPT, "varint over 32 bits");
    out[k] = v;
  }
  check(p === bytes.length, E.CORRUPT, "trailing bytes after varints");
  return out;
}
