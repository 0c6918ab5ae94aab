/** Bit packing: exact round trips at every width, exact sizes, and the table bit reader's bounds. */
import { expect, test } from "bun:test";
import { BitReader, BitWriter, bitWidth, channelStarts, packBits, packCodeGroups, packCodes, packedWords, unpackBits, unpackCodeGroups, unpackCodes } from "./bitpack.ts";
import { FormatError } from "../errors.ts";
import { mulberry32 } from "./synthetic.ts";

test("every width 0..32 round-trips, fields straddling words", () => {
  const rng = mulberry32(4);
  for (let w = 0; w <= 32; w++) {
    const n = 101;
    const v = Uint32Array.from({ length: n }, () => Math.floor(rng() * 2 ** w));
    const words = packBits(v, w);
    expect(words.length).toBe(Math.ceil((n * w) / 32));
    expect(unpackBits(words, w, n)).toEqual(v);
  }
});

test("3-bit codes cost exactly 3 bits each", () => {
  const codes = Int32Array.from({ length: 1000 }, (_, i) => (i % 7) - 3);
  const p = packCodes(codes);
  expect(p.width).toBe(3);
  expect(p.offset).toBe(-3);
  expect(p.words.length).toBe(packedWords(1000, 3)); // 94 words = 3000 bits rounded up to u32
  expect(unpackCodes(p)).toEqual(codes);
  expect(packCodes(new Int32Array([5, 5])).width).toBe(0);
  expect(unpackCodes(packCodes(new Int32Array([-(2 ** 31), 2 ** 31 - 1])))).toEqual(new Int32Array([-(2 ** 31), 2 ** 31 - 1]));
});

test("bitWidth", () => {
  expect([0, 1, 2, 3, 4, 7, 8, 2 ** 31, 2 ** 32 - 1].map(bitWidth)).toEqual([0, 1, 2, 2, 3, 3, 4, 32, 32]);
});

test("bit writer/reader and gamma codes; reading past the end is TRUNCATED", () => {
  const bw = new BitWriter();
  bw.write(5, 3); bw.writeGamma(1); bw.writeGamma(300); bw.write(0xabcdef, 24);
  const bytes = bw.finish();
  const br = new BitReader(bytes);
  expect([br.read(3), br.readGamma(), br.readGamma(), br.read(24)]).toEqual([5, 1, 300, 0xabcdef]);
  let err: unknown;
  try { br.read(16); } catch (e) { err = e; }
  expect((err as FormatError).code).toBe("TRUNCATED");
});

test("per-channel groups: each at its own width, word-aligned, exact round trip", () => {
  // 3 channels of 4 weights: channel 0 codes ±1 (2 bits), channel 1 none, channel 2 −4..3 (3 bits).
  const indices = new Uint32Array([0, 2, 3, 8, 9, 10, 11]);
  const codes = new Int32Array([1, -1, 1, -4, 3, 0, 2]);
  const starts = channelStarts(indices, [3, 2, 2]);
  expect([...starts]).toEqual([0, 3, 3]);
  const p = packCodeGroups(codes, starts);
  expect([...p.widths]).toEqual([2, 0, 3]);
  expect([...p.wordStarts]).toEqual([0, 1, 1]);
  expect(unpackCodeGroups(p)).toEqual(codes);
  expect(unpackCodeGroups(packCodeGroups(new Int32Array(0), []))).toEqual(new Int32Array(0));
});
