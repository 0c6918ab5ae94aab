/**
 * The CI slice of `bun run bench:fuzz`: 150 seeded mutants through the real watchdog
 * (child processes), which must end with no untyped error, no hang, no crash and no run over
 * its memory budget; and the watchdog itself must catch a mutant that never ends.
 */
import { expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { makeMutant, MUTATIONS } from "./fuzz.ts";

const BENCH = join(import.meta.dir, "..", "bench", "fuzz-bench.ts");
const bench = (...args: string[]) => {
  const r = spawnSync(process.execPath, [BENCH, "--json", ...args], { encoding: "utf8", timeout: 170_000 });
  const line = r.stdout.trim().split("\n").pop() ?? "";
  return { code: r.status, result: JSON.parse(line) as { mutants: number; untyped: number; hangs: number; crashes: number; rssOver: number; rssKills: number; counts: Record<string, number>; failures: string[] } };
};

test("mutants are a pure function of (seed, index) and cycle through every mutation", () => {
  const a = makeMutant(7, 12), b = makeMutant(7, 12);
  expect(a.seed).toBe(b.seed);
  expect(Buffer.from(a.bytes).equals(Buffer.from(b.bytes))).toBe(true);
  expect(new Set(Array.from({ length: MUTATIONS.length }, (_, i) => makeMutant(7, i).kind)).size).toBe(MUTATIONS.length);
}, 60_000);

test("150 seeded mutants: only typed errors, no hang, no crash, no RSS over the budget", () => {
  const { code, result } = bench("--mutants", "150", "--seconds", "150", "--seed", "20261201", "--jobs", "1");
  if (result.failures.length) console.log(result.failures);
  expect(result.mutants).toBe(150);
  expect(result.untyped).toBe(0);
  expect(result.hangs).toBe(0);
  expect(result.crashes + result.rssKills + result.rssOver).toBe(0);
  // Both ends of the pipeline are reached: files refused by the decoder, and runs that complete.
  expect(result.counts.ok).toBeGreaterThan(0);
  expect(Object.keys(result.counts).some((k) => k.startsWith("INVALID_MODEL/"))).toBe(true);
  expect(code).toBe(0);
}, 180_000);

test("the watchdog catches a mutant that never ends, and the run goes on after it", () => {
  const { code, result } = bench("--mutants", "6", "--seconds", "120", "--seed", "3", "--jobs", "1", "--inject-hang", "2", "--hang-ms", "1000");
  expect(result.hangs).toBe(1);
  expect(result.failures[0]).toContain("mutant 2");
  expect(result.mutants).toBe(6);
  expect(code).toBe(1);
}, 180_000);
