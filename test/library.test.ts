/**
 * opq as a library and on edge hosts, used the way a user would, from scratch projects outside
 * the repository: a Bun app with a `file:` dependency, a Deno script with an import map (`links`
 * to this folder, as a JSR package), the browser example bundled and run in Debian's Chromium,
 * and the `export default { fetch }` entries under `deno serve`, `bun run` and as a
 * Workers-style handler without file-system access. Every example in examples/ runs here.
 * @module
 */
import { afterAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { PROJECT_ROOT } from "../cli/shared.ts";
import { createSession } from "../runtime/mod.ts";
import { loadSampleBundle, sampleInput } from "../server/mod.ts";
import { CHROMIUM } from "./preflight.ts";

const BUN = join(PROJECT_ROOT, "node_modules", ".bin", "bun");
const DENO = join(PROJECT_ROOT, "node_modules", ".bin", "deno");
const MODEL = join(PROJECT_ROOT, "models", "resnet20-fmnist.opq");
const SAMPLES = join(PROJECT_ROOT, "models", "fmnist-samples.json");
const ARTIFACTS = join(PROJECT_ROOT, "test-artifacts");
const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, "package.json"), "utf8"));
const denoJson = JSON.parse(readFileSync(join(PROJECT_ROOT, "deno.json"), "utf8"));
const SUBPATHS = [".", "./runtime", "./compressor", "./format", "./server", "./edge"];

/** How many bundled samples the bundled .opq classifies correctly, computed here in-process. */
async function expectedCorrect(): Promise<number> {
  const session = await createSession(MODEL);
  const bundle = await loadSampleBundle(SAMPLES);
  let correct = 0;
  for (const s of bundle.samples) {
    const x = sampleInput(bundle, s);
    const logits = (await session.run({ input: { dtype: "float32", dims: x.shape, data: x.data } })).logits!.data as Float32Array;
    if (logits.indexOf(Math.max(...logits)) === s.label) correct++;
  }
  session.dispose();
  return correct;
}
const CORRECT = await expectedCorrect();

const scratch = (name: string) => mkdtempSync(join(tmpdir(), `opq-${name}-`));
const run = (cmd: string, args: string[], cwd: string, env: Record<string, string> = {}) =>
  spawnSync(cmd, args, { cwd, encoding: "utf8", timeout: 120_000, env: { ...process.env, NO_COLOR: "1", ...env } });

describe("package metadata", () => {
  test("package.json exports opq, opq/runtime, compressor, format, server, edge; deno.json the same for JSR", () => {
    expect(Object.keys(pkg.exports).filter((k) => k !== "./package.json")).toEqual(SUBPATHS);
    for (const k of SUBPATHS) {
      expect(existsSync(join(PROJECT_ROOT, pkg.exports[k].default))).toBe(true);
      expect(denoJson.exports[k]).toBe(pkg.exports[k].default);
    }
    expect(pkg.types).toBe("./mod.ts");
    expect(pkg.files).toContain("runtime/**/*.ts");
    expect([denoJson.name, denoJson.version]).toEqual(["@opq/opq", pkg.version]);
    // Every npm dependency a published file imports has an npm: mapping for Deno.
    for (const dep of ["@msgpack/msgpack", "fflate", "hono", "zod"]) expect(denoJson.imports[dep]).toBe(`npm:${dep}@${pkg.dependencies[dep]}`);
  });
});

describe("publishing", () => {
  test("npm pack ships every exports target and no test file", () => {
    const r = run("npm", ["pack", "--dry-run", "--json"], PROJECT_ROOT);
    expect(r.status).toBe(0);
    const files = (JSON.parse(r.stdout)[0].files as { path: string }[]).map((f) => f.path);
    for (const k of SUBPATHS) expect(files).toContain(pkg.exports[k].default.slice(2));
    expect(files.filter((f) => f.endsWith(".test.ts"))).toEqual([]);
    expect(files).toContain("models/resnet20-fmnist.onnx");
  }, 60_000);
  test("deno publish --dry-run (JSR: slow types, exports) succeeds, without tests or build files", () => {
    // --no-check: the type check is `deno task check`'s (test/setup.test.ts); the slow-type check JSR needs still runs.
    const r = run(DENO, ["publish", "--dry-run", "--allow-dirty", "--no-check"], PROJECT_ROOT);
    expect(r.stderr + r.stdout).toContain("Dry run complete");
    expect(r.status).toBe(0);
    const listed = (r.stderr + r.stdout).split("\n").filter((l) => l.includes("file:///"));
    expect(listed.length).toBeGreaterThan(50);
    expect(listed.filter((l) => /\.test\.ts|\/test\/|package-lock|\.git\b/.test(l))).toEqual([]);
  }, 60_000);
});

describe("scratch projects outside the repository", () => {
  test("a Bun app with a file: dependency imports opq and opq/server and classifies (examples/bun-classify.ts)", () => {
    const dir = scratch("bun-app");
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "scratch", type: "module", dependencies: { opq: `file:${PROJECT_ROOT}` } }));
    copyFileSync(join(PROJECT_ROOT, "examples", "bun-classify.ts"), join(dir, "app.ts"));
    const install = run(BUN, ["install", "--ignore-scripts"], dir);
    expect(install.status).toBe(0);
    const r = run(BUN, ["app.ts", join(PROJECT_ROOT, "models", "resnet20-fmnist.onnx"), SAMPLES], dir);
    expect(r.stderr).toBe("");
    const j = JSON.parse(r.stdout);
    expect(j.runtime).toBe("bun");
    expect(j.predicted).toBe(j.label);
    expect(j.bytes).toBeLessThan(j.onnxBytes / 10);
  }, 120_000);

  test("a Deno script with an import map (links to this folder as @opq/opq) runs examples/deno-classify.ts", () => {
    const dir = scratch("deno-app");
    writeFileSync(join(dir, "deno.json"), JSON.stringify({
      links: [PROJECT_ROOT],
      imports: { "opq/runtime": "jsr:@opq/opq@0.1.0/runtime", "opq/server": "jsr:@opq/opq@0.1.0/server" },
    }));
    copyFileSync(join(PROJECT_ROOT, "examples", "deno-classify.ts"), join(dir, "main.ts"));
    const r = run(DENO, ["run", "--allow-read", "--allow-env", "--allow-net", "main.ts", MODEL, SAMPLES], dir);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout.trim().split("\n").pop()!)).toEqual({ runtime: "deno", samples: 12, correct: CORRECT });
  }, 120_000);

  test("the browser example, bundled by bun build, classifies the samples in Chromium", async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install -y chromium`);
    const dir = scratch("browser");
    const b = run(BUN, ["build", join(PROJECT_ROOT, "examples", "browser", "main.ts"), "--target", "browser", "--outfile", join(dir, "main.js")], PROJECT_ROOT);
    expect(b.status).toBe(0);
    expect(readFileSync(join(dir, "main.js"), "utf8")).not.toMatch(/from\s*"node:|require\("node:/);
    copyFileSync(join(PROJECT_ROOT, "examples", "browser", "index.html"), join(dir, "index.html"));
    copyFileSync(MODEL, join(dir, "model.opq"));
    copyFileSync(SAMPLES, join(dir, "samples.json"));
    const server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: (req) => new Response(Bun.file(join(dir, new URL(req.url).pathname.slice(1) || "index.html"))) });
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"] });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      await page.goto(`http://127.0.0.1:${server.port}/index.html`);
      await page.waitForSelector("#status[data-correct]", { timeout: 30_000 });
      expect(errors).toEqual([]);
      expect(Number(await page.locator("#status").getAttribute("data-correct"))).toBe(CORRECT);
      expect(await page.locator("#results li").count()).toBe(12);
      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: join(ARTIFACTS, "browser-example.png") });
    } finally {
      await browser.close();
      server.stop(true);
    }
  }, 60_000);
});

/** Start a server process, wait until `url` answers, return it with a stop function. */
async function startServer(cmd: string, args: string[], url: string, env: Record<string, string> = {}) {
  const child = spawn(cmd, args, { cwd: PROJECT_ROOT, env: { ...process.env, NO_COLOR: "1", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  child.stdout!.on("data", (b) => (log += b));
  child.stderr!.on("data", (b) => (log += b));
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const r = await fetch(url);
      if (r.ok) return { child, log: () => log };
    } catch { /* not up yet */ }
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`${cmd} ${args.join(" ")} did not serve ${url}:\n${log}`);
    await Bun.sleep(200);
  }
}
const children: { kill(): void }[] = [];
afterAll(() => { for (const c of children) c.kill(); });
const freePort = () => { const s = Bun.serve({ port: 0, fetch: () => new Response() }); const p = s.port; s.stop(true); return p; };

/** One inference through the HTTP API: the top-1 class name of sample 0. */
async function classifyOverHttp(base: string): Promise<{ label: string; predicted: string }> {
  const bundle = await loadSampleBundle(SAMPLES);
  const x = sampleInput(bundle, bundle.samples[0]!);
  const res = await fetch(`${base}/v1/models/resnet20-fmnist/infer?topk=1`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ inputs: { input: { shape: x.shape, data: Array.from(x.data) } } }),
  });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { topk: { index: number }[][] };
  return { label: bundle.classes[bundle.samples[0]!.label]!, predicted: bundle.classes[body.topk[0]![0]!.index]! };
}

describe("export default { fetch } on edge hosts (server/edge-entry.ts)", () => {
  test("deno serve runs it unchanged", async () => {
    const port = freePort();
    const s = await startServer(DENO, ["serve", "--allow-read", "--allow-net", "--allow-env", "--port", String(port), "server/edge-entry.ts"], `http://127.0.0.1:${port}/healthz`);
    children.push(s.child);
    const r = await classifyOverHttp(`http://127.0.0.1:${port}`);
    expect(r.predicted).toBe(r.label);
    s.child.kill();
  }, 60_000);

  test("bun run runs it unchanged", async () => {
    const port = freePort();
    const s = await startServer(BUN, ["run", "server/edge-entry.ts"], `http://127.0.0.1:${port}/healthz`, { PORT: String(port) });
    children.push(s.child);
    const r = await classifyOverHttp(`http://127.0.0.1:${port}`);
    expect(r.predicted).toBe(r.label);
    s.child.kill();
  }, 60_000);

  test("Workers-style: examples/edge-handler.ts bundled for the web, called as fetch(request, env) with no file-system permission", async () => {
    const dir = scratch("worker");
    const out = join(dir, "worker.js");
    const b = run(BUN, ["build", join(PROJECT_ROOT, "examples", "edge-handler.ts"), "--target", "browser", "--format", "esm", "--outfile", out], PROJECT_ROOT);
    expect(b.status).toBe(0);
    const code = readFileSync(out, "utf8");
    expect(code).not.toMatch(/from\s*"node:|require\("node:/);
    const assets = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response(Bun.file(MODEL)) });
    // The host: Deno with network access only (reading the bundle itself is the host's job: one file).
    writeFileSync(join(dir, "host.ts"), `
      const worker = (await import(${JSON.stringify("file://" + out)})).default;
      const env = { MODEL_URL: "http://127.0.0.1:${assets.port}/model.opq", MODEL_NAME: "resnet20-fmnist" };
      const list = await (await worker.fetch(new Request("http://edge/v1/models"), env)).json();
      const health = await worker.fetch(new Request("http://edge/healthz"), env);
      console.log(JSON.stringify({ models: list.models.map((m) => m.name), health: health.status }));`);
    try {
      // Asynchronously: the asset server answers from this process's event loop.
      const p = Bun.spawn([DENO, "run", `--allow-read=${out}`, "--allow-net=127.0.0.1", "--no-config", join(dir, "host.ts")], { cwd: dir, env: { ...process.env, NO_COLOR: "1" }, stdout: "pipe", stderr: "pipe" });
      const r = { status: await p.exited, stdout: await new Response(p.stdout).text(), stderr: await new Response(p.stderr).text() };
      expect(r.stderr).not.toContain("PermissionDenied");
      expect(r.status).toBe(0);
      expect(JSON.parse(r.stdout.trim().split("\n").pop()!)).toEqual({ models: ["resnet20-fmnist"], health: 200 });
    } finally {
      assets.stop(true);
    }
  }, 60_000);
});
