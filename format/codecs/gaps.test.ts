/** Gaps (SPEC.md §4), zigzag and varints. */
import { expect, test } from "bun:test";
import { gapsToIndicesInPlace, indicesToGaps, readVarints, unzigzag, writeVarints, zigzag } from "./gaps.ts";
import { FormatError } from "../errors.ts";

const codeOf = (f: () => unknown) => { try { f(); } catch (e) { return (e as FormatError).code; } };

test("gap k is the number of zeros skipped before non-zero k", () => {
  expect(indicesToGaps(new Uint32Array([0, 1, 5, 6, 100]))).toEqual(new Uint32Array([0, 0, 3, 0, 93]));
  expect(indicesToGaps(new Uint32Array([7]))).toEqual(new Uint32Array([7]));
  expect(gapsToIndicesInPlace(new Uint32Array([0, 0, 3, 0, 93]), 101)).toEqual(new Uint32Array([0, 1, 5, 6, 100]));
  expect(codeOf(() => gapsToIndicesInPlace(new Uint32Array([0, 0, 3, 0, 93]), 100))).toBe("CORRUPT");
  expect(codeOf(() => indicesToGaps(new Uint32Array([3, 3])))).toBe("INVALID_ARGUMENT");
});

test("zigzag", () => {
  expect([0, -1, 1, -2, 2, -(2 ** 31), 2 ** 31 - 1].map(zigzag)).toEqual([0, 1, 2, 3, 4, 2 ** 32 - 1, 2 ** 32 - 2]);
  for (const c of [0, -1, 1, -(2 ** 31), 2 ** 31 - 1, 12345]) expect(unzigzag(zigzag(c))).toBe(c);
});

test("varints round-trip and reject malformed streams", () => {
  const v = new Uint32Array([0, 127, 128, 300, 2 ** 32 - 1]);
  const b = writeVarints(v);
  expect(b.length).toBe(1 + 1 + 2 + 2 + 5);
  expect(readVarints(b, new Uint32Array(5))).toEqual(v);
  expect(codeOf(() => readVarints(b, new Uint32Array(6)))).toBe("CORRUPT");
  expect(codeOf(() => readVarints(b, new Uint32Array(4)))).toBe("CORRUPT");
  expect(codeOf(() => readVarints(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x7f]), new Uint32Array(1)))).toBe("CORRUPT");
  expect(codeOf(() => readVarints(new Uint8Array([0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), new Uint32Array(1)))).toBe("CORRUPT");
});
