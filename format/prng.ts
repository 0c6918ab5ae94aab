/**
 * A tiny seeded PRNG (mulberry32) for reproducible fuzzing, synthetic models and benchmark inputs:
 * the same seed gives the same stream under Bun, Deno and Node, so a failing case can be replayed.
 * @module
 */

/** Uniform floats in [0, 1) from a 32-bit seed. Not for cryptography. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
