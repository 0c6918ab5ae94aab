/**
 * Round trip of the wasm thread team (runtime/wasm/threads.ts): µs per `team.run` of a kernel
 * with almost no work (clampF32 over 2 and over 4096 floats) split across 2 threads, for a team
 * that sleeps in Atomics.wait at once (OPQ_TEAM_SPIN=0) and one that polls first (TEAM_SPIN), in
 * one process, rounds alternating. What a split costs a layer beyond its arithmetic.
 * Usage: bun bench/team-bench.ts [--calls 2000] [--rounds 3]
 * @module
 */
import { parseArgs } from "node:util";
import { WasmKernels } from "../runtime/wasm/module.ts";
import { ThreadTeam } from "../runtime/wasm/threads.ts";
import { formatTable, say } from "../cli/common.ts";

const { values } = parseArgs({ options: { calls: { type: "string" }, rounds: { type: "string" } } });
const calls = Number(values.calls ?? 2000), rounds = Number(values.rounds ?? 3);
const k = WasmKernels.create()!;
const start = async (spin: boolean) => {
  if (!spin) process.env.OPQ_TEAM_SPIN = "0";
  try { return await ThreadTeam.start(k, 2); } finally { delete process.env.OPQ_TEAM_SPIN; }
};
const teams = { sleeping: await start(false), spinning: await start(true) };
const x = k.alloc(4096 * 4), y = k.alloc(4096 * 4);
const best: Record<string, number> = {};
for (let r = 0; r < rounds; r++) {
  for (const n of [2, 4096]) {
    for (const [name, team] of Object.entries(teams)) {
      const t0 = performance.now();
      for (let i = 0; i < calls; i++) team.run("clampF32", n, 1, [x, y, -1, 1]);
      const us = ((performance.now() - t0) / calls) * 1000, key = `${name} ${n}`;
      best[key] = Math.min(best[key] ?? Infinity, us);
    }
  }
}
for (const t of Object.values(teams)) t.stop();
say(formatTable(["team", "floats", "µs per split call (best round)"], Object.entries(best).map(([key, us]) => [...key.split(" "), us.toFixed(1)])));
say(`spinning ÷ sleeping: ${(best["spinning 2"]! / best["sleeping 2"]!).toFixed(3)} (2 floats), ${(best["spinning 4096"]! / best["sleeping 4096"]!).toFixed(3)} (4096 floats)`);
process.exit(0);
