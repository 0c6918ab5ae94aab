/**
 * Batch latency of our runtime and onnxruntime-web (wasm) in one process, their runs alternating
 * (ours, ort, ours, ort, …), so on a shared machine whatever load there is hits both alike.
 * `opq bench` measures each runtime in its own process one after the other (needed for RSS); when
 * other jobs come and go between the two, its latency ratio moves with them, this one does not.
 *
 * With --opq, a `.opq` of each model at (0.74, 3) (compressed in the run) joins the rotation:
 * ours on the .opq, ours on the FP32 ONNX and ort on the FP32 ONNX, ratios to ort.
 *
 * With --cpu (one thread only) each run is timed by the process's CPU time instead of the wall
 * clock: both runtimes then compute on this thread, and preemption by other jobs drops out.
 *
 *   bun bench/interleaved-bench.ts [--models a.onnx,b.onnx] [--threads 1,2] [--batches 1,8] [--reps N] [--opq] [--cpu]
 * @module
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { openRunner } from "../cli/commands/eval.ts";
import { seededInput } from "../cli/commands/bench.ts";
import { sharedPath } from "../cli/shared.ts";
import { compressModel } from "../compressor/mod.ts";
import { encodeOpq, readOnnx } from "../format/mod.ts";

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}
// A bare name is a shared model (the seeded ones, e.g. resnet50-224.onnx, are built on first use).
const models = option("models", "mobilenet_v2-224.onnx,resnet18-224.onnx").split(",").map((m) => (m.includes("/") ? m : sharedPath("models", m)));
const threadCounts = option("threads", "1,2").split(",").map(Number);
const batches = option("batches", "1,8").split(",").map(Number);
const reps = Number(option("reps", "9"));
const withOpq = process.argv.includes("--opq");
const useCpu = process.argv.includes("--cpu");
if (useCpu && threadCounts.some((t) => t !== 1)) throw new Error("--cpu needs --threads 1 (worker threads' time would count for whichever runtime ran)");
const clock = useCpu ? () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; } : () => performance.now();

declare const Deno: { execPath(): string } | undefined;
const median = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1]!;
if (threadCounts.length > 1) {
  // onnxruntime-web fixes its thread count per process: one child process per count.
  const [cmd, ...pre] = typeof Deno !== "undefined" ? [Deno.execPath(), "run", "-A", "--no-check"] : [process.execPath];
  const rest = process.argv.slice(2).filter((a, i, all) => a !== "--threads" && all[i - 1] !== "--threads");
  for (const t of threadCounts) spawnSync(cmd!, [...pre, fileURLToPath(import.meta.url), ...rest, "--threads", String(t)], { stdio: "inherit" });
  process.exit(0);
}
console.log(`interleaved runs, ${reps} of each after 2 warm-ups; p50 ${useCpu ? "CPU" : "wall"} ms and ours ÷ ort`);
const tmp = mkdtempSync(join(tmpdir(), "opq-interleaved-"));
for (const model of models) {
  let opqPath: string | undefined;
  if (withOpq) {
    opqPath = join(tmp, "model.opq");
    writeFileSync(opqPath, encodeOpq(compressModel(readOnnx(new Uint8Array(readFileSync(model))), { method: "opq", sparsity: 0.74, bits: 3 }).opq));
  }
  for (const threads of threadCounts) {
    const runners = [["opq", await openRunner(model, "opq", { threads })], ["ort", await openRunner(model, "ort", { threads })]] as [string, Awaited<ReturnType<typeof openRunner>>][];
    if (opqPath) runners.unshift([".opq", await openRunner(opqPath, "opq", { threads })]);
    const input = runners[0]![1].inputs[0]!;
    for (const batch of batches) {
      const x = seededInput(input.shape!.map((d, i) => (i === 0 ? batch : (d as number))), 5);
      const t: Record<string, number[]> = Object.fromEntries(runners.map(([k]) => [k, []]));
      for (let i = 0; i < reps + 2; i++) {
        // The order rotates: onnxruntime-web's threads spin for a while after a run, slowing
        // whichever runner comes next, so each runner follows it equally often.
        for (const [k, r] of runners.map((_, j) => runners[(i + j) % runners.length]!)) {
          const t0 = clock();
          await r.run({ [input.name]: x });
          if (i >= 2) t[k]!.push(clock() - t0);
        }
      }
      const b = median(t.ort!);
      const ours = runners.filter(([k]) => k !== "ort").map(([k]) => `${k === "opq" ? "ours fp32" : "ours .opq"} ${median(t[k]!).toFixed(1)} (${(median(t[k]!) / b).toFixed(2)})`);
      console.log(`${model.split("/").pop()}  threads ${threads}  batch ${batch}:  ${ours.join("  ")}  ort ${b.toFixed(1)}`);
    }
    for (const [, r] of runners) await r.dispose();
  }
}
rmSync(tmp, { recursive: true, force: true });
process.exit(0);
