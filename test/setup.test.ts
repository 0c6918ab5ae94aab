/**
 * Install and set-up as a new user meets them: a fresh copy of the repository in a temp dir with
 * no `../shared` next to it finds its data where Debian installs it (or says which package to
 * install), bundled and seeded models stand in for the shared ones, and every `deno task` runs.
 * @module
 */
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { readOnnx, writeOnnx } from "../format/mod.ts";
import { seededModel, SEEDED_MODELS } from "../bench/models.ts";
import { DEBIAN_DATA, PROJECT_ROOT, sharedDir, sharedPath } from "../cli/shared.ts";
import { installCommand, prerequisites } from "./preflight.ts";

const BUN = join(PROJECT_ROOT, "node_modules", ".bin", "bun");
const DENO = join(PROJECT_ROOT, "node_modules", ".bin", "deno");

/** The tracked files of the working tree copied to `<tmp>/clone/opq` (no ../shared beside it), node_modules linked. */
function freshClone(): string {
  const root = join(mkdtempSync(join(tmpdir(), "opq-clone-")), "opq");
  const files = spawnSync("git", ["ls-files", "-co", "--exclude-standard"], { cwd: PROJECT_ROOT, encoding: "utf8" }).stdout.split("\n").filter(Boolean);
  for (const f of files) {
    if (!existsSync(join(PROJECT_ROOT, f))) continue;
    mkdirSync(dirname(join(root, f)), { recursive: true });
    copyFileSync(join(PROJECT_ROOT, f), join(root, f));
  }
  symlinkSync(join(PROJECT_ROOT, "node_modules"), join(root, "node_modules"));
  return root;
}

/** Run a script in `cwd` under Bun with OPQ_SHARED unset; its stdout parsed as JSON. */
function bunJson(cwd: string, script: string): Record<string, string> {
  const env = { ...process.env };
  delete env.OPQ_SHARED;
  const r = spawnSync(BUN, ["-e", script], { cwd, env, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`bun -e failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}

describe("a fresh clone without ../shared", () => {
  const clone = freshClone();
  const found = bunJson(clone, `
    import { sharedPath } from "./cli/shared.ts";
    const out = {};
    for (const parts of [["data", "fashion-mnist"], ["onnx-backend-tests"], ["models", "lenet5-fmnist.onnx"], ["models", "resnet20-fmnist.onnx"], ["models", "resnet18-224.onnx"], ["models", "no-such-model.onnx"]]) {
      try { out[parts.join("/")] = sharedPath(...parts); } catch (e) { out[parts.join("/")] = "ERROR " + e.code + ": " + e.message; }
    }
    console.log(JSON.stringify(out));`);

  for (const d of DEBIAN_DATA) {
    const key = d.prefix.join("/");
    test(`${key}: Debian's ${d.pkg} install path, or an error naming the package`, () => {
      if (existsSync(d.path)) expect(found[key]).toBe(d.path);
      else expect(found[key]).toContain(`ERROR MISSING_DATA: missing data: ${key}`), expect(found[key]).toContain(`apt-get install ${d.pkg}`);
    });
  }

  test("the conformance suite it finds holds the ~1000 cases (not silently none)", () => {
    const root = found["onnx-backend-tests"]!;
    expect(root.startsWith("ERROR")).toBe(false);
    const cases = ["node", "pytorch-converted", "pytorch-operator", "simple"].reduce((n, s) => n + readdirSync(join(root, s)).length, 0);
    expect(cases).toBeGreaterThan(1000);
  });

  test("the trained models come from models/, the 224x224 ones are generated into out/models", () => {
    expect(found["models/lenet5-fmnist.onnx"]).toBe(join(clone, "models", "lenet5-fmnist.onnx"));
    expect(found["models/resnet20-fmnist.onnx"]).toBe(join(clone, "models", "resnet20-fmnist.onnx"));
    expect(found["models/resnet18-224.onnx"]).toBe(join(clone, "out", "models", "resnet18-224.onnx"));
    const m = readOnnx(new Uint8Array(readFileSync(found["models/resnet18-224.onnx"]!)));
    expect(m.graph.inputs[0]!.shape).toEqual(["batch", 3, 224, 224]);
    expect(found["models/no-such-model.onnx"]).toContain("ERROR MISSING_DATA");
    expect(found["models/no-such-model.onnx"]).toContain("set OPQ_SHARED");
  });

  test("the bundled models equal the shared folder's copies", () => {
    for (const f of ["lenet5-fmnist.onnx", "resnet20-fmnist.onnx"]) {
      const shared = join(sharedDir(), "models", f);
      if (!existsSync(shared)) continue;
      expect(createHash("sha256").update(readFileSync(join(PROJECT_ROOT, "models", f))).digest("hex"))
        .toBe(createHash("sha256").update(readFileSync(shared)).digest("hex"));
    }
  });
});

describe("seeded benchmark models (bench/models.ts)", () => {
  const ops = (m: ReturnType<typeof readOnnx>) => m.graph.nodes.map((n) => n.opType).filter((t) => t !== "Identity" && t !== "Constant");

  for (const name of Object.keys(SEEDED_MODELS) as (keyof typeof SEEDED_MODELS)[]) {
    test(`${name}: opset 13, input/logits, its parameter count${name === "resnet50-224" ? "" : ", the shared model's op sequence"}`, () => {
      const m = seededModel(name);
      expect(m.opsetImports).toEqual([{ domain: "", version: 13 }]);
      expect(m.graph.inputs).toEqual([{ name: "input", dtype: "float32", shape: ["batch", 3, 224, 224] }]);
      expect(m.graph.outputs).toEqual([{ name: "logits", dtype: "float32", shape: ["batch", 1000] }]);
      expect(m.graph.nodes.some((n) => n.opType === "BatchNormalization")).toBe(false);
      const params = Object.values(m.graph.initializers).reduce((s, t) => s + (t.dims.length ? t.data.length : 0), 0);
      expect(params).toBe(SEEDED_MODELS[name].params);
      const shared = join(sharedDir(), "models", `${name}.onnx`);
      if (name !== "resnet50-224" && existsSync(shared)) expect(ops(m)).toEqual(ops(readOnnx(new Uint8Array(readFileSync(shared)))));
    }, 60_000); // ResNet-50's 25.5M seeded weights take 1.5 s alone, several times that on a loaded machine
  }

  test("the same seed gives the same bytes; the CLI writes a file the reader loads", () => {
    const a = writeOnnx(seededModel("mobilenet_v2-224")), b = writeOnnx(seededModel("mobilenet_v2-224"));
    expect(createHash("sha256").update(a).digest("hex")).toBe(createHash("sha256").update(b).digest("hex"));
    const out = join(mkdtempSync(join(tmpdir(), "opq-seeded-")), "m.onnx");
    const r = spawnSync(BUN, ["bench/models.ts", "mobilenet_v2-224", "-o", out], { cwd: PROJECT_ROOT, encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stderr).toContain("3,487,816 parameters");
    expect(new Uint8Array(readFileSync(out))).toEqual(a);
    const bad = spawnSync(BUN, ["bench/models.ts", "vgg16"], { cwd: PROJECT_ROOT, encoding: "utf8" });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("resnet50-224");
  }, 30_000);
});

describe("npm test's preflight", () => {
  test("names each prerequisite's package and the one command that installs the missing ones", () => {
    const p = prerequisites();
    expect(p.map((x) => x.pkg)).toEqual(["chromium", "dataset-fashion-mnist", "libonnx-testdata"]);
    expect(p.every((x) => typeof x.present === "boolean")).toBe(true);
    expect(installCommand(p)).toBe("apt-get update && apt-get install -y chromium dataset-fashion-mnist libonnx-testdata");
    for (const d of DEBIAN_DATA) if (existsSync(d.path)) expect(p.find((x) => x.pkg === d.pkg)!.present).toBe(true);
  });
});

describe("every deno task runs", () => {
  const tasks = Object.keys(JSON.parse(readFileSync(join(PROJECT_ROOT, "deno.json"), "utf8")).tasks).sort();
  const task = (...args: string[]) => spawnSync(DENO, ["task", ...args], { cwd: PROJECT_ROOT, encoding: "utf8", timeout: 120_000, env: { ...process.env, NO_COLOR: "1" } });

  test("the tasks are the ones tested here", () => {
    expect(tasks).toEqual(["check", "compress", "finetune", "opq", "serve", "test"]);
  });
  test("opq, finetune, serve: --help prints the command's help on stdout", () => {
    for (const [t, want] of [["opq", "usage: opq <command>"], ["finetune", "opq finetune"], ["serve", "opq serve"]] as const) {
      const r = task(t, "--help");
      expect(r.stderr).not.toContain("Invalid or unexpected token");
      expect(r.status).toBe(0);
      expect(r.stdout).toContain(want);
    }
  }, 30_000);
  test("compress writes a .opq", () => {
    const out = join(mkdtempSync(join(tmpdir(), "opq-task-")), "r20.opq");
    const r = task("compress", "-o", out, "--json");
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).output).toBe(out);
    expect(readFileSync(out).subarray(0, 4).toString("latin1")).toBe("OPQ\u0000");
  }, 30_000);
  test("test runs a Deno test file; check type-checks every package", () => {
    const t = task("test", "runtime/cpu/sgemm-simd.deno.test.ts");
    expect(t.status).toBe(0);
    expect(t.stdout).toMatch(/ok \| \d+ passed \| 0 failed/);
    const c = task("check");
    expect(c.status).toBe(0);
  }, 180_000);
});
