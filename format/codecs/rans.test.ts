/** rANS pair streams: exact round trips, size against n·H0, and corrupted streams refused. */
import { expect, test } from "bun:test";
import { chooseModel, decodePairStream, encodePairStream, RANS_MAX_DIRECT } from "./rans.ts";
import { zeroOrderBits } from "../entropy.ts";
import { FormatError } from "../errors.ts";
import { mulberry32 } from "./synthetic.ts";

function roundTrip(a: Uint32Array, b: Uint32Array): Uint8Array {
  const { bytes } = encodePairStream(a, b);
  const back = decodePairStream(bytes, a.length);
  expect(back.a).toEqual(a);
  expect(back.b).toEqual(b);
  return bytes;
}

/** Geometric gaps (density p) with a rare uniform long tail, and codes −3..3 zigzagged. */
function stream(n: number, p: number, seed: number): [Uint32Array, Uint32Array] {
  const rng = mulberry32(seed);
  const a = Uint32Array.from({ length: n }, () => (rng() < 0.002 ? Math.floor(rng() * 10000) : Math.floor(Math.log(1 - rng()) / Math.log(1 - p))));
  const b = Uint32Array.from({ length: n }, () => Math.min(6, Math.floor(-Math.log(1 - rng()) * 1.5)));
  return [a, b];
}

test("geometric gaps + codes: within 1% of n·H0 at 100k symbols, 3% at 5k", () => {
  for (const [n, tol] of [[100000, 1.01], [5000, 1.03]] as const) {
    const [a, b] = stream(n, 0.26, n);
    const bytes = roundTrip(a, b);
    expect(bytes.length / ((zeroOrderBits(a) + zeroOrderBits(b)) / 8)).toBeLessThan(tol);
  }
});

test("edge streams: one pair, one symbol, every value up to 2^32 − 1, a wide alphabet", () => {
  roundTrip(new Uint32Array([0]), new Uint32Array([0]));
  // A single symbol costs no state change at all: 10 000 pairs take two tables (≤ 8 bytes) + two 4-byte states.
  expect(roundTrip(new Uint32Array(10000), new Uint32Array(10000).fill(3)).length).toBeLessThanOrEqual(16);
  roundTrip(new Uint32Array([2 ** 32 - 1, 0, 2 ** 31, 65535, 65536]), new Uint32Array([1, 2 ** 32 - 1, 0, 7, 2 ** 32 - 2]));
  const rng = mulberry32(9);
  const wide = Uint32Array.from({ length: 20000 }, () => Math.floor(rng() * 1000));
  roundTrip(wide, wide.map((v) => v % 300));
  expect(chooseModel(wide).direct).toBeLessThanOrEqual(RANS_MAX_DIRECT);
});

test("truncated or extended streams are refused with a code, never another exception", () => {
  const [a, b] = stream(3000, 0.26, 1);
  const { bytes } = encodePairStream(a, b);
  const codes = new Set<string>();
  for (let cut = 0; cut < bytes.length; cut += 7) {
    try { decodePairStream(bytes.subarray(0, cut), a.length); codes.add("ok"); } catch (e) { codes.add((e as FormatError).code); }
  }
  const longer = new Uint8Array(bytes.length + 1); longer.set(bytes);
  try { decodePairStream(longer, a.length); codes.add("ok"); } catch (e) { codes.add((e as FormatError).code); }
  // Cut inside the tables: TRUNCATED; cut so short the claimed pairs cannot fit: TOO_LARGE; else CORRUPT.
  expect([...codes].sort()).toEqual(["CORRUPT", "TOO_LARGE", "TRUNCATED"]);
});

test("a stream too short for the pairs it claims is TOO_LARGE before allocating", () => {
  const [a, b] = stream(3000, 0.26, 2);
  const { bytes } = encodePairStream(a, b);
  let err: unknown;
  try { decodePairStream(bytes, 2 ** 31); } catch (e) { err = e; }
  expect((err as FormatError).code).toBe("TOO_LARGE");
  // Two single-symbol models carry no information: any count is consistent with the stream.
  expect(decodePairStream(encodePairStream(new Uint32Array(5), new Uint32Array(5)).bytes, 5).a).toEqual(new Uint32Array(5));
});

test("random bytes as a pair stream: only FormatErrors or valid output, never a hang", () => {
  const rng = mulberry32(77);
  const codes = new Map<string, number>();
  for (let k = 0; k < 2000; k++) {
    const bytes = Uint8Array.from({ length: 1 + Math.floor(rng() * 64) }, () => Math.floor(rng() * 256));
    const n = 1 + Math.floor(rng() * 200);
    let code = "ok";
    try { decodePairStream(bytes, n); } catch (e) { if (!(e instanceof FormatError)) throw e; code = e.code; }
    codes.set(code, (codes.get(code) ?? 0) + 1);
  }
  expect([...codes.values()].reduce((a, b) => a + b)).toBe(2000);
  expect(codes.get("CORRUPT")! + (codes.get("TRUNCATED") ?? 0) + (codes.get("TOO_LARGE") ?? 0)).toBeGreaterThan(1900);
});
