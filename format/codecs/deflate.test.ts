/** The fflate wrapper: exact lengths, bounded allocation, errors as FormatError. */
import { expect, test } from "bun:test";
import { deflateBytes, inflateBytes } from "./deflate.ts";
import { FormatError } from "../errors.ts";

const codeOf = (f: () => unknown) => { try { f(); } catch (e) { return (e as FormatError).code; } };

test("round trip, and a stream that inflates to more or less than declared is CORRUPT", () => {
  const data = new TextEncoder().encode("opq ".repeat(1000));
  const z = deflateBytes(data);
  expect(z.length).toBeLessThan(100);
  expect(inflateBytes(z, data.length)).toEqual(data);
  expect(codeOf(() => inflateBytes(z, data.length - 1))).toBe("CORRUPT");
  expect(codeOf(() => inflateBytes(z, data.length + 1))).toBe("CORRUPT");
  expect(inflateBytes(deflateBytes(new Uint8Array(0)), 0)).toEqual(new Uint8Array(0));
});

test("lengths beyond DEFLATE's 1032:1 are TOO_LARGE; garbage is CORRUPT", () => {
  expect(codeOf(() => inflateBytes(new Uint8Array(10), 2 ** 30))).toBe("TOO_LARGE");
  expect(codeOf(() => inflateBytes(new Uint8Array([0xff, 0xff, 0xff, 0xff]), 100))).toBe("CORRUPT");
  expect(codeOf(() => inflateBytes(new Uint8Array(0), 10))).toBe("CORRUPT");
});
