/** `opq plan` and `opq compress --plan` in a subprocess: outputs, usage errors (exit 2), typed refusals (exit 1). */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeOpq } from "../format/mod.ts";
import { sharedPath } from "./shared.ts";

const ROOT = join(import.meta.dir, "..");
const TMP = mkdtempSync(join(tmpdir(), "opq-plan-"));
const LENET = sharedPath("models", "lenet5-fmnist.onnx");
const RESNET = join(ROOT, "models", "resnet20-fmnist.onnx");

function opq(...args: string[]): { code: number; stdout: string; stderr: string } {
  const p = Bun.spawnSync([process.execPath, join(ROOT, "cli", "main.ts"), ...args], { cwd: TMP });
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

describe("opq plan / compress --plan", () => {
  test("plan → compress --plan of the same model: the one-shot allocation, every pruned nonzero weight reported", () => {
    const p = opq("plan", LENET, "-o", "l.safetensors", "--json");
    expect(p.code).toBe(0);
    const j = JSON.parse(p.stdout);
    expect(j.output).toBe("l.safetensors");
    expect(j.bytes).toBe(readFileSync(join(TMP, "l.safetensors")).length);
    const c = opq("compress", LENET, "--plan", "l.safetensors", "-o", "l.opq", "--json");
    expect(c.code).toBe(0);
    const cj = JSON.parse(c.stdout);
    expect(cj.stored).toBe(j.layers.reduce((a: number, l: { kept: number }) => a + l.kept, 0));
    expect(cj.leftMask).toBeGreaterThan(40_000); // the FP32 weights are nonzero where the plan prunes
    expect(decodeOpq(new Uint8Array(readFileSync(join(TMP, "l.opq")))).compressed).toHaveLength(5);
    const human = opq("compress", LENET, "--plan", "l.safetensors", "-o", "l2.opq");
    expect(human.stderr).toMatch(/weight\(s\) were nonzero at pruned positions \(they left the mask\) and were dropped/);
  }, 120_000);
  test("a model that is not the plan's: PLAN_MISMATCH (exit 1) naming the layers", () => {
    const r = opq("compress", RESNET, "--plan", "l.safetensors", "-o", "x.opq", "--json");
    expect(r.code).toBe(1);
    const e = JSON.parse(r.stdout).error;
    expect(e.code).toBe("PLAN_MISMATCH");
    expect(e.message).toContain("plan layer c1.weight (node /c1/Conv) has no matching weight");
    expect(e.message).toContain("weight onnx::Conv_203 (node /stem/stem.0/Conv) is not in the plan");
  }, 120_000);
  test("hostile plan files are typed errors (exit 1)", () => {
    const good = readFileSync(join(TMP, "l.safetensors"));
    writeFileSync(join(TMP, "cut.safetensors"), good.subarray(0, 5));
    const big = Buffer.from(good);
    big.writeUInt32LE(good.length, 0);
    writeFileSync(join(TMP, "big.safetensors"), big);
    for (const [f, code] of [["cut.safetensors", "TRUNCATED"], ["big.safetensors", "TRUNCATED"]]) {
      const r = opq("compress", LENET, "--plan", f!, "-o", "x.opq", "--json");
      expect([f, r.code, JSON.parse(r.stdout).error.code]).toEqual([f, 1, code]);
    }
  }, 120_000);
  test("usage errors (exit 2): allocation options with --plan, gm-apot plans with filter removal are INVALID_OPTION", () => {
    const r = opq("compress", LENET, "--plan", "l.safetensors", "--sparsity", "0.5", "--json");
    expect([r.code, JSON.parse(r.stdout).error.code]).toEqual([2, "USAGE"]);
    const g = opq("plan", LENET, "--method", "gm-apot", "-o", "g.safetensors", "--json");
    expect([g.code, JSON.parse(g.stdout).error.code]).toEqual([1, "INVALID_OPTION"]);
    expect(opq("plan", LENET, "--method", "gm-apot", "--filter-rate", "0", "-o", "g.safetensors", "--json").code).toBe(0);
  }, 120_000);
});
