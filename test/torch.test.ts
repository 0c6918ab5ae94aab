/**
 * The PyTorch hand-off end to end (issue 12): `opq plan` → python/opq_torch apply_plan → one
 * epoch of OPQ Algorithm 1 on Fashion-MNIST with 2 DDP processes on CPU (gloo, torchrun) →
 * export → `opq compress --plan`; the .opq must hold exactly the plan's positions and steps,
 * the PyTorch model's weights bit for bit, and the same test top-1 (±0.1 pt) under our runtime.
 * Plus the Python unit tests (plan reader on hostile files, matching, parametrization).
 * Needs python3 with torch and numpy (Debian: python3-torch python3-numpy); $OPQ_PYTHON picks one.
 * @module
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeOpq, dequantize, readOnnx } from "../format/mod.ts";
import { decodePlan } from "../compressor/mod.ts";
import { sharedDir, sharedPath } from "../cli/shared.ts";
import { loadFashionMnist } from "../cli/fashion-mnist.ts";
import { evaluate, openRunner } from "../cli/commands/eval.ts";

const ROOT = join(import.meta.dir, "..");
const TMP = mkdtempSync(join(tmpdir(), "opq-torch-"));

/** The first python that imports torch and numpy: $OPQ_PYTHON, python3, Debian's /usr/bin/python3 (pyenv shims may hide it). */
function findPython(): { python: string; torch: string } | { error: string } {
  const tried: string[] = [];
  for (const py of [process.env.OPQ_PYTHON, "python3", "/usr/bin/python3"].filter(Boolean) as string[]) {
    const p = Bun.spawnSync([py, "-c", "import torch, numpy; print(torch.__version__)"], { stderr: "pipe" });
    if (p.exitCode === 0) return { python: py, torch: p.stdout.toString().trim() };
    tried.push(`${py}: ${(p.stderr?.toString().trim().split("\n").pop() ?? "") || `exit ${p.exitCode}`}`);
  }
  return { error: `no python3 with torch and numpy (apt-get install python3-torch python3-numpy, or set OPQ_PYTHON):\n  ${tried.join("\n  ")}` };
}

const PY = findPython();
const python = (): string => {
  if ("error" in PY) throw new Error(PY.error);
  return PY.python;
};
const ENV = { ...process.env, OPQ_SHARED: sharedDir(), PYTHONPATH: join(ROOT, "python") };

function run(cmd: string[], env: Record<string, string | undefined> = ENV): { code: number; stdout: string; stderr: string } {
  const p = Bun.spawnSync(cmd, { cwd: TMP, env, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

function opq(...args: string[]) {
  return run([process.execPath, join(ROOT, "cli", "main.ts"), ...args]);
}

const LENET = sharedPath("models", "lenet5-fmnist.onnx");
const PLAN = join(TMP, "plan.safetensors");

describe("PyTorch hand-off", () => {
  test("opq plan writes a LeNet-5 plan at (0.74, 3)", () => {
    const r = opq("plan", LENET, "-o", PLAN, "--json");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.layers).toHaveLength(5);
    expect(j.options).toMatchObject({ sparsity: 0.74, bits: 3 });
    expect(j.modelSha256).toBe(new Bun.CryptoHasher("sha256").update(readFileSync(LENET)).digest("hex"));
  }, 120_000);

  test("python: opq_torch unit tests (hostile plans, matching, parametrization)", () => {
    const r = run([python(), "-m", "unittest", "discover", "-s", join(ROOT, "python", "tests"), "-v"], { ...ENV, OPQ_PLAN: PLAN });
    if (r.code !== 0) console.error(r.stderr);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/Ran \d+ tests/);
    expect(r.stderr).not.toMatch(/skipped/);
  }, 120_000);

  test("LeNet-5: plan → apply_plan → 1 epoch on 2 DDP CPU processes → export → compress --plan, bit-exact", async () => {
    const out = join(TMP, "finetuned.onnx"), figures = join(TMP, "figures.json"), opqFile = join(TMP, "finetuned.opq");
    // --standalone: a free rendezvous port (other jobs may hold 29500). --redirects/--tee 2:
    // Debian's torch 1.13 under Python 3.11 crashes on the default (its Std enum lost NONE in
    // iteration); routing stderr through a log and back to the console avoids that code path.
    const t0 = performance.now();
    const r = run([python(), "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--redirects", "2", "--tee", "2", "--log_dir", join(TMP, "logs"),
      join(ROOT, "python", "examples", "finetune.py"), "--arch", "lenet5", "--onnx", LENET, "--plan", PLAN, "--out", out,
      "--data", sharedPath("data", "fashion-mnist"), "--epochs", "1", "--batch", "256", "--json", figures]);
    const seconds = (performance.now() - t0) / 1000;
    if (r.code !== 0) console.error(r.stderr.slice(-4000));
    expect(r.code).toBe(0);
    const fig = JSON.parse(readFileSync(figures, "utf8"));
    expect([fig.world_size, fig.backend]).toEqual([2, "gloo"]);
    expect(fig.images).toBeGreaterThan(59_000); // one epoch of the 60k training images
    console.error(`torchrun, 2 gloo processes: ${fig.steps} steps in ${fig.train_seconds.toFixed(1)} s of training (${seconds.toFixed(1)} s in all), PyTorch test top-1 ${(100 * fig.top1).toFixed(2)}%`);

    const c = opq("compress", out, "--plan", PLAN, "-o", opqFile, "--json");
    if (c.code !== 0) console.error(c.stderr);
    expect(c.code).toBe(0);
    const cj = JSON.parse(c.stdout);
    expect([cj.leftMask, cj.fellToZero]).toEqual([0, 0]);

    const plan = decodePlan(new Uint8Array(readFileSync(PLAN)));
    const model = decodeOpq(new Uint8Array(readFileSync(opqFile)));
    const onnx = readOnnx(new Uint8Array(readFileSync(out)));
    expect(model.compressed.map((t) => t.name)).toEqual(plan.layers.map((l) => l.name)); // LeNet's export keeps the names
    for (const [i, l] of plan.layers.entries()) {
      const t = model.compressed[i]!;
      expect(Array.from(t.indices)).toEqual(Array.from(l.mask.keys()).filter((k) => l.mask[k]));
      expect(t.codebook).toEqual(l.codebook);
      const exported = onnx.graph.initializers[t.name]!.data as Float32Array;
      expect(new Uint32Array(dequantize(t).buffer)).toEqual(new Uint32Array(Float32Array.from(exported).buffer));
    }
    const ours = await evaluate(await openRunner(opqFile, "opq"), loadFashionMnist());
    console.error(`opq runtime test top-1 of the .opq: ${(100 * ours.top1).toFixed(2)}% (PyTorch ${(100 * fig.top1).toFixed(2)}%)`);
    expect(Math.abs(ours.top1 - fig.top1)).toBeLessThanOrEqual(0.001);
  }, 600_000);
});
