/** `opq compress` end to end in a subprocess: the default model, --json shape, usage errors (exit 2), typed errors (exit 1). */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..");
const TMP = mkdtempSync(join(tmpdir(), "opq-compress-"));

function opq(...args: string[]): { code: number; stdout: string; stderr: string } {
  const p = Bun.spawnSync([process.execPath, join(ROOT, "cli", "main.ts"), "compress", ...args], { cwd: TMP });
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

describe("opq compress", () => {
  test("no model: the bundled ResNet-20 → out/resnet20-fmnist.opq, size against FP32 on stderr", () => {
    const r = opq("--report", "r.html");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("");
    const size = statSync(join(TMP, "out", "resnet20-fmnist.opq")).size;
    expect(r.stderr).toContain("resnet20-fmnist.onnx 1.04 MiB → out/resnet20-fmnist.opq");
    expect(r.stderr).toMatch(/× smaller than FP32/);
    expect(size).toBeLessThan(1_095_083 / 10);
    expect(readFileSync(join(TMP, "r.html"), "utf8")).toContain("<svg");
  });
  test("--json prints exactly one object with the whole report", () => {
    const r = opq(join(ROOT, "models", "resnet20-fmnist.onnx"), "-o", "a.opq", "--sparsity", "0.5", "--bits", "4", "--json");
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.output).toBe("a.opq");
    expect(j.file.bytes).toBe(statSync(join(TMP, "a.opq")).size);
    expect(j.layers).toHaveLength(22);
    expect(j.targetSparsity).toBe(0.5);
    expect(j.opq.budgetError).toBeLessThan(1e-6);
  });
  test("bad arguments are usage errors (exit 2)", () => {
    for (const args of [["--sparsity", "2"], ["--method", "magic"], ["--method", "gm-apot", "--sparsity", "0.5"], ["--bits", "x"], ["--filter-rate", "0.3"], ["--nope"]]) {
      const r = opq(...args, "--json");
      expect(r.code).toBe(2);
      expect(JSON.parse(r.stdout).error.code).toBe("USAGE");
    }
  });
  test("garbage input is a typed error (exit 1), not a crash", () => {
    writeFileSync(join(TMP, "garbage.onnx"), new Uint8Array(1000).map((_, i) => (i * 37) & 255));
    const r = opq("garbage.onnx", "--json");
    expect(r.code).toBe(1);
    expect(["BAD_MAGIC", "CORRUPT", "TRUNCATED"]).toContain(JSON.parse(r.stdout).error.code);
  });
});
