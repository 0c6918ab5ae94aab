/**
 * `bun run bench:fuzz [--mutants N] [--seconds S] [--seed X] [--jobs J] [--hang-ms M] [--json]` – structure-aware
 * fuzzing of the whole pipeline (decode → load → plan → run) over mutants of `.opq` and ONNX
 * files (test/fuzz.ts: hostile attributes and dims, rewired graphs, hostile values, section
 * bytes behind recomputed CRC-32s, raw flips, truncations). Stops after N mutants or S seconds.
 *
 * Mutants run in child processes (`--jobs`, default 2), one after the other; the parent is the
 * watchdog: a mutant that has used `--hang-ms` (default 2000) of CPU, or 5× that of wall time,
 * without finishing is a HANG (the child is killed and a new one continues after it), a child that dies is a CRASH, and a child whose
 * resident size passes 4 GiB is killed (RSS_KILL). The child reports each mutant's peak RSS growth
 * (VmHWM after resetting it, Linux); one above the session's memory budget + 64 MiB is RSS_OVER.
 * Prints counts by outcome code, and exits 1 on any untyped error, hang, crash or RSS excess.
 * Reproduce one mutant: `bun bench/fuzz-bench.ts --seed X --only I`.
 * @module
 */
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeMutant, runMutant, writeSeeds } from "../test/fuzz.ts";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    mutants: { type: "string" }, seconds: { type: "string" }, seed: { type: "string" }, "hang-ms": { type: "string" },
    json: { type: "boolean" }, child: { type: "boolean" }, jobs: { type: "string" }, from: { type: "string" }, to: { type: "string" }, only: { type: "string" },
    "inject-hang": { type: "string" },
  },
  strict: true,
});
const seed = Number(values.seed ?? 1);
const SLACK = 64 * 2 ** 20;
const RSS_KILL = 4 * 2 ** 30;

const status = (field: string, pid: number | "self" = "self"): number => {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
};
/** CPU seconds (user + system) a process has used, from /proc/PID/stat (clock ticks of 1/100 s). */
const cpuSeconds = (pid: number): number => {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
};
const resetPeak = () => { try { writeFileSync("/proc/self/clear_refs", "5"); } catch { /* not Linux */ } };

if (values.only !== undefined) {
  const m = makeMutant(seed, Number(values.only));
  console.log(m.seed, m.kind, m.bytes.length, "bytes:", m.unencodable ? "unencodable" : JSON.stringify(await runMutant(m.bytes)));
  process.exit(0);
}

if (values.child) {
  const from = Number(values.from), to = Number(values.to), hangAt = values["inject-hang"] !== undefined ? Number(values["inject-hang"]) : -1;
  const gc = (globalThis as { Bun?: { gc(force: boolean): void } }).Bun?.gc;
  for (let i = from; i < to; i++) {
    const m = makeMutant(seed, i);
    if (i % 200 === 0) gc?.(true);
    const before = status("VmRSS");
    resetPeak();
    process.stdout.write(`S ${i}\n`);
    if (i === hangAt) for (;;) { /* the watchdog's own test: a mutant that never ends */ }
    const out = m.unencodable ? { code: "UNENCODABLE", budget: 0 } : await runMutant(m.bytes);
    const grew = Math.max(0, status("VmHWM") - before);
    process.stdout.write(`D ${i} ${grew} ${out.budget} ${m.kind} ${out.code.replace(/\s+/g, " ")}\n`);
  }
  process.exit(0);
}

const total = Number(values.mutants ?? 100_000);
const seconds = Number(values.seconds ?? 900);
const hangMs = Number(values["hang-ms"] ?? 2000);
const counts = new Map<string, number>();
const byKind = new Map<string, Map<string, number>>();
const failures: string[] = [];
const tally = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
let done = 0, rssOver = 0, maxGrowth = 0;
const t0 = performance.now();
const deadline = t0 + seconds * 1000;

/** Run mutants [from, total) in one child until it finishes, hangs or dies; returns where to go on. */
function runChild(from: number, to: number): Promise<number> {
  return new Promise((resolve) => {
    const args = [process.argv[1]!, "--child", "--seed", String(seed), "--from", String(from), "--to", String(to)];
    if (values["inject-hang"] !== undefined) args.push("--inject-hang", values["inject-hang"]);
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, OPQ_FUZZ_SEEDS: seedDir } });
    let current = -1, startedAt = 0, startedCpu = 0, next = from, buf = "", finished = false;
    const end = (resume: number) => { if (!finished) { finished = true; clearInterval(watch); resolve(resume); } };
    const watch = setInterval(() => {
      const now = performance.now();
      const rss = child.pid ? status("VmRSS", child.pid) : 0;
      // A hang is 2 s of CPU (this machine is shared: wall time inflates 2-3×), or 5× that of wall time.
      const cpuMs = current >= 0 && child.pid ? 1000 * (cpuSeconds(child.pid) - startedCpu) : 0;
      if (current >= 0 && (cpuMs > hangMs || now - startedAt > 5 * hangMs)) {
        tally(counts, "HANG");
        failures.push(`HANG: mutant ${current} (seed ${seed}) did not finish in ${hangMs} ms of CPU (${cpuMs.toFixed(0)} ms CPU, ${(now - startedAt).toFixed(0)} ms wall)`);
        done++;
        child.kill("SIGKILL");
        end(current + 1);
      } else if (rss > RSS_KILL) {
        tally(counts, "RSS_KILL");
        failures.push(`RSS_KILL: mutant ${current} reached ${(rss / 2 ** 20).toFixed(0)} MiB`);
        done++;
        child.kill("SIGKILL");
        end(current + 1);
      } else if (now > deadline) {
        child.kill("SIGKILL");
        end(to);
      }
    }, 50);
    child.stdout!.on("data", (b: Buffer) => {
      buf += b.toString();
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.startsWith("S ")) { current = Number(line.slice(2)); startedAt = performance.now(); startedCpu = child.pid ? cpuSeconds(child.pid) : 0; continue; }
        const [, i, grew, budget, kind, ...code] = line.split(" ");
        const c = code.join(" ");
        done++;
        current = -1;
        next = Number(i) + 1;
        if (done % 5000 === 0) {
          process.stderr.write(`fuzz: ${done} mutants, ${((performance.now() - t0) / 1000).toFixed(0)} s, untyped ${counts.get("UNTYPED") ?? 0}, hangs ${counts.get("HANG") ?? 0}, crashes ${counts.get("CRASH") ?? 0}, RSS over ${rssOver}\n`);
        }
        tally(counts, c.startsWith("UNTYPED") ? "UNTYPED" : c);
        let k = byKind.get(kind!);
        if (!k) byKind.set(kind!, (k = new Map()));
        tally(k, c.startsWith("UNTYPED") ? "UNTYPED" : c.split("/")[0]!);
        if (c.startsWith("UNTYPED")) failures.push(`mutant ${i} (${kind}): ${c}`);
        maxGrowth = Math.max(maxGrowth, Number(grew));
        if (Number(budget) > 0 && Number(grew) > Number(budget) + SLACK) {
          rssOver++;
          failures.push(`RSS_OVER: mutant ${i} grew ${(Number(grew) / 2 ** 20).toFixed(0)} MiB, budget ${(Number(budget) / 2 ** 20).toFixed(0)} MiB`);
        }
      }
    });
    child.on("exit", (code, signal) => {
      if (finished) return;
      if (current >= 0) {
        tally(counts, "CRASH");
        failures.push(`CRASH: mutant ${current} killed the child (${signal ?? `exit ${code}`})`);
        done++;
        end(current + 1);
      } else end(next >= to || code === 0 ? to : next);
    });
  });
}

// Children read the seed files instead of compressing ResNet-20 again at every (re)start.
const seedDir = mkdtempSync(join(tmpdir(), "opq-fuzz-"));
writeSeeds(seedDir);
const jobs = Math.max(1, Number(values.jobs ?? 2));
await Promise.all(Array.from({ length: jobs }, async (_, j) => {
  const to = Math.round(((j + 1) * total) / jobs);
  let from = Math.round((j * total) / jobs);
  while (from < to && performance.now() < deadline) from = await runChild(from, to);
}));
const elapsed = (performance.now() - t0) / 1000;
const sorted = [...counts.entries()].sort((a, b) => b[1] - a[1]);
const bad = (counts.get("UNTYPED") ?? 0) + (counts.get("HANG") ?? 0) + (counts.get("CRASH") ?? 0) + (counts.get("RSS_KILL") ?? 0) + rssOver;
const result = {
  seed, mutants: done, seconds: Math.round(elapsed), perSecond: Math.round(done / elapsed),
  untyped: counts.get("UNTYPED") ?? 0, hangs: counts.get("HANG") ?? 0, crashes: counts.get("CRASH") ?? 0, rssKills: counts.get("RSS_KILL") ?? 0, rssOver,
  maxGrowthMiB: Math.round(maxGrowth / 2 ** 20), counts: Object.fromEntries(sorted),
  byKind: Object.fromEntries([...byKind].map(([k, m]) => [k, Object.fromEntries([...m].sort((a, b) => b[1] - a[1]))])),
  failures: failures.slice(0, 50),
};
if (values.json) console.log(JSON.stringify(result));
else {
  console.log(`fuzz: ${done} mutants in ${elapsed.toFixed(0)} s (${result.perSecond}/s), seed ${seed}`);
  for (const [k, n] of sorted) console.log(`  ${String(n).padStart(8)}  ${k}`);
  console.log(`untyped ${result.untyped}, hangs > ${hangMs} ms ${result.hangs}, crashes ${result.crashes}, RSS over budget ${rssOver} (largest growth ${result.maxGrowthMiB} MiB)`);
  for (const f of failures.slice(0, 20)) console.log(`  ${f}`);
  console.log(JSON.stringify(result));
}
process.exit(bad > 0 ? 1 : 0);
