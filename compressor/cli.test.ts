/** `opq compress` end to end in a subprocess: the default model, --json shape, usage errors (exit 2), typed errors (exit 1). */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeOpq } from "../format/mod.ts";
import { sharedPath } from "../cli/shared.ts";

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
  test("--calibrate N: per-layer errors and times in the JSON, file size kept, preprocessing stored; data of the wrong shape is DATA_SHAPE", () => {
    const shared = sharedPath("models", "lenet5-fmnist.onnx");
    const r = opq(shared, "-o", "c.opq", "--sparsity", "0.74", "--bits", "3", "--calibrate", "32", "--json");
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.calibration.images).toBe(32);
    expect(j.calibration.layers).toHaveLength(5);
    for (const l of j.calibration.layers) expect(l.seconds).toBeGreaterThan(0);
    expect(j.calibration.layers.reduce((a: number, l: { errorAfter: number }) => a + l.errorAfter, 0)).toBeLessThan(j.calibration.layers.reduce((a: number, l: { errorBefore: number }) => a + l.errorBefore, 0));
    expect(j.file.bytes).toBeLessThanOrEqual(1.02 * j.calibration.uncalibratedBytes);
    const meta = decodeOpq(new Uint8Array(readFileSync(join(TMP, "c.opq")))).metadata;
    expect(meta.preprocess).toEqual({ channels: "gray", mean: [0.286], std: [0.353] });
    expect((meta.labels as string[])[9]).toBe("Ankle boot");
    for (const args of [["--calibrate", "0"], ["--calibrate", "2.5"], ["--data", "x"]]) expect(opq(shared, "-o", "d.opq", ...args, "--json").code).toBe(2);
    writeFileSync(join(TMP, "rgb.npy"), npyFloat32([2, 3, 28, 28]));
    const bad = opq(shared, "-o", "e.opq", "--calibrate", "2", "--data", "rgb.npy", "--json");
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout).error.code).toBe("DATA_SHAPE");
  }, 180_000); // five CLI runs: over 60 s when the shared machine is loaded ~5× over
  test("garbage input is a typed error (exit 1), not a crash", () => {
    writeFileSync(join(TMP, "garbage.onnx"), new Uint8Array(1000).map((_, i) => (i * 37) & 255));
    const r = opq("garbage.onnx", "--json");
    expect(r.code).toBe(1);
    expect(["BAD_MAGIC", "CORRUPT", "TRUNCATED"]).toContain(JSON.parse(r.stdout).error.code);
  });
});

/** A zero-filled float32 .npy of `shape`. */
function npyFloat32(shape: number[]): Uint8Array {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(", ")}), }`;
  while ((11 + header.length) % 64) header += " ";
  header += "\n";
  const body = 4 * shape.reduce((a, b) => a * b, 1), out = new Uint8Array(10 + header.length + body);
  out.set([0x93, 78, 85, 77, 80, 89, 1, 0, header.length & 255, header.length >> 8]);
  out.set(new TextEncoder().encode(header), 10);
  return out;
}
