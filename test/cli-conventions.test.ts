/**
 * CLI conventions as a user meets them, each through the real `opq` in a subprocess in a scratch
 * folder: defaults never overwrite, help and version on stdout (and as JSON), environment
 * failures typed with exit 2, a warning when the cap cannot deliver the sparsity asked for,
 * `finetune --steps 0` evaluating once and reporting the cap it applied, one size ratio shared by
 * compress and inspect, and the plain default table with the paper's columns behind --verbose.
 * @module
 */
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PROJECT_ROOT, sharedPath } from "../cli/shared.ts";
import { optionList } from "../cli/main.ts";

const BUN = join(PROJECT_ROOT, "node_modules", ".bin", "bun");
const MAIN = join(PROJECT_ROOT, "cli", "main.ts");
const VERSION = JSON.parse(readFileSync(join(PROJECT_ROOT, "package.json"), "utf8")).version as string;

function opq(cwd: string, ...args: string[]) {
  const r = spawnSync(BUN, [MAIN, ...args], { cwd, encoding: "utf8", timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
const md5 = (path: string) => createHash("md5").update(readFileSync(path)).digest("hex");
const scratch = () => mkdtempSync(join(tmpdir(), "opq-cli-"));

describe("default outputs never overwrite", () => {
  test("export x.opq without -o leaves the FP32 x.onnx beside it untouched; a second export needs --force", () => {
    const dir = scratch();
    copyFileSync(join(PROJECT_ROOT, "models", "resnet20-fmnist.onnx"), join(dir, "m.onnx"));
    const before = md5(join(dir, "m.onnx"));
    expect(opq(dir, "compress", "m.onnx", "-o", "m.opq").code).toBe(0);
    const e = opq(dir, "export", "m.opq", "--json");
    expect(e.code).toBe(0);
    expect(JSON.parse(e.stdout).output).toBe("m.dense.onnx");
    expect(md5(join(dir, "m.onnx"))).toBe(before);
    const again = opq(dir, "export", "m.opq", "--json");
    expect(again.code).toBe(2);
    expect(JSON.parse(again.stdout).error.code).toBe("OUTPUT_EXISTS");
    expect(again.stderr).toContain("--force");
    expect(opq(dir, "export", "m.opq", "--force").code).toBe(0);
  }, 30_000);

  test("compress twice to the default output refuses the second time; finetune writes its own default", () => {
    const dir = scratch();
    expect(opq(dir, "compress").code).toBe(0);
    const served = md5(join(dir, "out", "resnet20-fmnist.opq"));
    const second = opq(dir, "compress", "--sparsity", "0.6");
    expect(second.code).toBe(2);
    expect(second.stderr).toContain("out/resnet20-fmnist.opq exists; pass --force");
    expect(md5(join(dir, "out", "resnet20-fmnist.opq"))).toBe(served);
    expect(opq(dir, "compress", "--sparsity", "0.6", "--force").code).toBe(0);
    expect(md5(join(dir, "out", "resnet20-fmnist.opq"))).not.toBe(served);
  }, 30_000);

  test("finetune --steps 0: its own default file, one evaluation, the applied cap in --json", () => {
    const dir = scratch();
    mkdirSync(join(dir, "models"));
    copyFileSync(sharedPath("models", "lenet5-fmnist.onnx"), join(dir, "models", "lenet5-fmnist.onnx"));
    const r = opq(dir, "finetune", "models/lenet5-fmnist.onnx", "--steps", "0", "--eval-limit", "100", "--limit", "64", "--json");
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.output).toBe(join("out", "lenet5-fmnist-finetuned.opq"));
    expect(j.maxLayerSparsity).toBe(0.9);
    expect(j.after.top1).toBe(j.before.top1);
    expect(j.losses).toEqual([]);
    expect(j.imagesSeen).toBe(0);
  }, 60_000);
});

describe("help and version", () => {
  const dir = scratch();
  test("--help goes to stdout, with each option's description and default", async () => {
    const r = opq(dir, "compress", "--help");
    expect(r.code).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.stdout).toMatch(/--sparsity <value>\s+fraction of weights to prune, 0–0\.999 \(default 0\.5\)/);
    expect(r.stdout).toMatch(/--force\s+overwrite the output if it exists/);
    const j = JSON.parse(opq(dir, "serve", "--help", "--json").stdout);
    expect(j.command).toBe("serve");
    expect(j.options.find((o: { name: string }) => o.name === "port").description).toBe("port (default 8080; 0 picks a free one)");
    // Every option of every command has a description (the list --help --json prints, built in-process).
    for (const cmd of ["compress", "finetune", "inspect", "export", "eval", "bench", "serve", "bench-http"]) {
      const { command } = await import(`../cli/commands/${cmd}.ts`);
      for (const o of optionList(command)) expect([cmd, o.name, o.description.length > 0]).toEqual([cmd, o.name, true]);
    }
  }, 30_000);
  test("opq --help, --version and their JSON", () => {
    const h = opq(dir, "--help");
    expect(h.code).toBe(0);
    expect(h.stdout).toContain("usage: opq <command>");
    expect(opq(dir, "--version").stdout.trim()).toBe(`opq ${VERSION}`);
    expect(JSON.parse(opq(dir, "--version", "--json").stdout)).toEqual({ name: "opq", version: VERSION });
    expect(JSON.parse(opq(dir, "--help", "--json").stdout).commands.map((c: { name: string }) => c.name)).toContain("bench-http");
  });
  test("an unknown command with --json prints a JSON error, exit 2", () => {
    const r = opq(dir, "frobnicate", "--json");
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout).error).toMatchObject({ code: "USAGE" });
    expect(r.stderr).toContain('unknown command "frobnicate"');
  });
});

describe("environment failures", () => {
  const dir = scratch();
  test("bench-http against a closed port: typed UNREACHABLE, exit 2, no stack trace", () => {
    const r = opq(dir, "bench-http", "--url", "http://127.0.0.1:9", "--duration", "1", "--json");
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout).error.code).toBe("UNREACHABLE");
    expect(r.stderr).toContain("is `opq serve` running?");
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
  test("a bad --url is a usage error, exit 2", () => {
    for (const url of ["notaurl", "ftp://x"]) {
      const r = opq(dir, "bench-http", "--url", url, "--json");
      expect(r.code).toBe(2);
      expect(JSON.parse(r.stdout).error.code).toBe("USAGE");
    }
  });
  test("a missing input file: NOT_FOUND, exit 2", () => {
    const r = opq(dir, "inspect", "nope.opq", "--json");
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout).error.code).toBe("NOT_FOUND");
  });
});

describe("compress output", () => {
  const dir = scratch();
  const LENET = join(PROJECT_ROOT, "models", "lenet5-fmnist.onnx");
  test("--sparsity 0.99 warns that the cap delivered less (stderr and --json)", () => {
    const r = opq(dir, "compress", LENET, "-o", "a.opq", "--sparsity", "0.99");
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/warning: asked for sparsity 99\.0% but stored 90\.0%/);
    const j = JSON.parse(opq(dir, "compress", LENET, "-o", "b.opq", "--sparsity", "0.99", "--max-layer-sparsity", "1", "--json").stdout);
    expect(j.warnings).toBeUndefined();
    expect(j.sparsity).toBeGreaterThan(0.985);
  }, 30_000);
  test("compress and inspect print the same size ratio for the same file", () => {
    const c = JSON.parse(opq(dir, "compress", LENET, "-o", "r.opq", "--json").stdout);
    const i = JSON.parse(opq(dir, "inspect", "r.opq", "--no-compare", "--json").stdout);
    expect(i.sizeRatio).toBe(c.file.ratio);
    expect(i.fp32Bytes).toBe(readFileSync(LENET).length);
    const text = opq(dir, "inspect", "r.opq", "--no-compare").stderr;
    expect(text).toContain(`${c.file.ratio.toFixed(2)}× smaller`);
  }, 30_000);
  test("the default table is plain (node name, kept, bits, bytes, error); --verbose adds τ and β", () => {
    const plain = opq(dir, "compress", LENET, "-o", "p.opq").stderr;
    expect(plain).toMatch(/^layer\s+weights\s+kept\s+bits\s+bytes\s+error \(rms\)/m);
    expect(plain).toMatch(/^\S*c1\S*\s+150\s/m);
    expect(plain.split("\n")[0]).not.toContain("τ");
    const verbose = opq(dir, "compress", LENET, "-o", "v.opq", "--verbose").stderr;
    expect(verbose).toContain("τ LM");
    expect(verbose).toContain("β");
  }, 30_000);
});
