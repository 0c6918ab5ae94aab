/**
 * The single-file executables, built with `bun build --compile` as `npm run build:cli` and
 * `npm run build:server` build them, copied alone into an empty folder and run there: the
 * embedded default model and samples are found, `serve --threads 2` listens (the GEMM worker is
 * embedded beside the entry), and `opq bench` restarts the binary for its measuring children
 * (onnxruntime-web's WASM embedded too).
 * @module
 */
import { afterAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PROJECT_ROOT } from "../cli/shared.ts";

const BUN = join(PROJECT_ROOT, "node_modules", ".bin", "bun");
const pkg = await Bun.file(join(PROJECT_ROOT, "package.json")).json();
const BUILD = mkdtempSync(join(tmpdir(), "opq-binary-"));
const started: { kill(): boolean }[] = [];
afterAll(() => {
  for (const c of started) c.kill();
  rmSync(BUILD, { recursive: true, force: true });
});

/** Build with the package.json script's own command, to `file` instead of out/. */
function build(script: "build:cli" | "build:server", file: string): string {
  const args = (pkg.scripts[script] as string).split(" ").slice(1).map((a) => (a.startsWith("out/") ? join(BUILD, file) : a));
  const r = spawnSync(BUN, args, { cwd: PROJECT_ROOT, encoding: "utf8", timeout: 120_000 });
  if (r.status !== 0) throw new Error(`${script} failed: ${r.stderr}`);
  // Alone in an empty folder: nothing of the repository beside it.
  const dir = mkdtempSync(join(BUILD, "run-"));
  copyFileSync(join(BUILD, file), join(dir, file));
  return dir;
}

/** Start `cmd`, wait for its first stdout line that parses as JSON with a url, or a log line naming it. */
async function listening(cmd: string, args: string[], cwd: string, urlFrom: (out: string) => string | undefined): Promise<string> {
  const child = spawn(cmd, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
  started.push(child);
  let out = "";
  child.stdout!.on("data", (b) => (out += b));
  child.stderr!.on("data", (b) => (out += b));
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && child.exitCode === null) {
    const url = urlFrom(out);
    if (url) {
      try {
        if ((await fetch(`${url}/healthz`)).ok) return url;
      } catch { /* not yet */ }
    }
    await Bun.sleep(100);
  }
  throw new Error(`${cmd} ${args.join(" ")} did not listen:\n${out}`);
}

async function classifies(url: string): Promise<void> {
  const samples = (await (await fetch(`${url}/v1/samples`)).json()) as { samples: { label: number; pixels: number[] }[]; mean: number; std: number };
  expect(samples.samples.length).toBe(12);
  const s = samples.samples[0]!;
  const res = await fetch(`${url}/v1/models/resnet20-fmnist/infer?topk=1`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ inputs: { input: { shape: [1, 1, 28, 28], data: s.pixels.map((p) => (p / 255 - samples.mean) / samples.std) } } }),
  });
  expect(res.status).toBe(200);
  expect(((await res.json()) as { topk: { index: number }[][] }).topk[0]![0]!.index).toBe(s.label);
  expect((await fetch(`${url}/`)).status).toBe(200);
}

describe("the compiled opq CLI", () => {
  const dir = build("build:cli", "opq");
  const opq = join(dir, "opq");

  test("--version, and compress with no argument uses the embedded model", () => {
    expect(spawnSync(opq, ["--version"], { encoding: "utf8" }).stdout.trim()).toBe(`opq ${pkg.version}`);
    const r = spawnSync(opq, ["compress", "--json"], { cwd: dir, encoding: "utf8", timeout: 60_000 });
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).output).toBe(join("out", "resnet20-fmnist.opq"));
    expect(existsSync(join(dir, "out", "resnet20-fmnist.opq"))).toBe(true);
  }, 60_000);

  test("serve --threads 2 listens, with the page's samples", async () => {
    const url = await listening(opq, ["serve", "--threads", "2", "--port", "0", "--json"], dir, (out) => out.match(/"url": "([^"]+)"/)?.[1]);
    await classifies(url);
  }, 60_000);

  test("bench runs its measuring children (ours and onnxruntime-web) from the binary", () => {
    const r = spawnSync(opq, ["bench", "out/resnet20-fmnist.opq", "--iterations", "2", "--warmup", "0", "--json"], { cwd: dir, encoding: "utf8", timeout: 180_000 });
    expect(r.stderr).not.toContain("unknown command");
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.opq).toBeDefined();
    expect(j.ort).toBeDefined();
  }, 180_000);
});

describe("the compiled opq-server", () => {
  const dir = build("build:server", "opq-server");

  test("serves the embedded model and samples from an empty folder, with --threads 2", async () => {
    const url = await listening(join(dir, "opq-server"), ["--port", "0", "--threads", "2"], dir, (out) => out.match(/"url":"([^"]+)"/)?.[1]);
    const models = (await (await fetch(`${url}/v1/models`)).json()) as { models: { name: string; format: string }[] };
    expect(models.models.map((m) => [m.name, m.format])).toEqual([["resnet20-fmnist", "opq"]]);
    await classifies(url);
  }, 60_000);

  // No docker here: the Dockerfile's steps are checked against the project, and its ENTRYPOINT
  // runs against the binary its build stage makes (the same npm script).
  test("the Dockerfile: Debian stages, the npm script it builds with, its ENTRYPOINT serving", async () => {
    const lines = (await Bun.file(join(PROJECT_ROOT, "Dockerfile")).text()).split("\n").filter((l) => /^[A-Z]+ /.test(l));
    expect(lines.filter((l) => l.startsWith("FROM ")).every((l) => l.startsWith("FROM debian:"))).toBe(true);
    const runs = lines.filter((l) => l.startsWith("RUN ")).map((l) => l.slice(4));
    expect(runs).toContain("npm run build:server");
    expect(pkg.scripts["build:server"]).toContain("--outfile out/opq-server");
    expect(lines).toContain("COPY --from=build /src/out/opq-server /usr/local/bin/opq-server");
    for (const l of lines.filter((l) => l.startsWith("COPY ") && !l.includes("--from"))) {
      for (const src of l.split(" ").slice(1, -1)) if (src !== ".") expect(existsSync(join(PROJECT_ROOT, src))).toBe(true);
    }
    const entry = JSON.parse(lines.find((l) => l.startsWith("ENTRYPOINT "))!.slice(11)) as string[];
    expect(entry[0]).toBe("/usr/local/bin/opq-server");
    const args = entry.slice(1).map((a) => (a === "0.0.0.0" ? "127.0.0.1" : a === "8080" ? "0" : a));
    const url = await listening(join(dir, "opq-server"), args, dir, (out) => out.match(/"url":"([^"]+)"/)?.[1]);
    await classifies(url);
  }, 60_000);
});
