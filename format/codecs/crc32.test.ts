/** CRC-32 against the standard check value and a bitwise reference. */
import { expect, test } from "bun:test";
import { crc32 } from "./crc32.ts";
import { mulberry32 } from "./synthetic.ts";

/** Bit-at-a-time reference (the definition, no tables). */
function crc32Reference(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) { c ^= b; for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1; }
  return ~c >>> 0;
}

test("check value and empty input", () => {
  expect(crc32(new TextEncoder().encode("123456789"))).toBe(0xcbf43926);
  expect(crc32(new Uint8Array(0))).toBe(0);
});

test("matches the bitwise reference at every length 0..67, and incrementally", () => {
  const rng = mulberry32(1);
  const data = Uint8Array.from({ length: 67 }, () => Math.floor(rng() * 256));
  for (let n = 0; n <= data.length; n++) expect(crc32(data.subarray(0, n))).toBe(crc32Reference(data.subarray(0, n)));
  expect(crc32(data.subarray(30), crc32(data.subarray(0, 30)))).toBe(crc32(data));
});
