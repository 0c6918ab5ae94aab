/**
 * CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320; the zlib/PNG/gzip checksum) with
 * slice-by-4 tables, so checksumming a multi-megabyte section costs a few milliseconds.
 * @module
 */

/** 4 × 256 lookup tables, built once at module load: TABLES[k][b] is the CRC of byte b followed by k zero bytes. */
const CRC_TABLES: Uint32Array = (() => {
  const t = new Uint32Array(4 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    for (let k = 1; k < 4; k++) t[k * 256 + n] = (t[(k - 1) * 256 + n]! >>> 8) ^ t[t[(k - 1) * 256 + n]! & 0xff]!;
  }
  return t;
})();

/**
 * CRC-32 of `bytes` (continuing from `crc`, the value a previous call returned).
 * `crc32(new TextEncoder().encode("123456789")) === 0xcbf43926`.
 */
export function crc32(bytes: Uint8Array, crc = 0): number {
  const t = CRC_TABLES;
  let c = ~crc;
  let i = 0;
  const n = bytes.length, n4 = n & ~3;
  for (; i < n4; i += 4) {
    c ^= bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    c = t[768 + (c & 0xff)]! ^ t[512 + ((c >>> 8) & 0xff)]! ^ t[256 + ((c >>> 16) & 0xff)]! ^ t[c >>> 24]!;
  }
  for (; i < n; i++) c = t[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}
