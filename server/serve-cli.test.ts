/**
 * `opq serve` as a process: it serves a folder and stops gracefully on SIGTERM (exit 0), and it
 * refuses to start on a folder holding a broken `.opq`, naming the file (exit 1).
 * @module
 */
import { afterAll, expect, test } from "bun:test";
import { type ChildProcess, spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PROJECT_ROOT } from "../cli/shared.ts";
import { FIXTURE_MODEL, makeFixture } from "./test-fixtures.ts";

const BUN = join(PROJECT_ROOT, "node_modules", ".bin", "bun");
const children: ChildProcess[] = [];

afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
});

function serve(args: string[], cwd = PROJECT_ROOT) {
  const child = spawn(BUN, [join(PROJECT_ROOT, "cli", "main.ts"), "serve", ...args], { cwd, stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let stdout = "", stderr = "";
  child.stdout!.on("data", (b: Buffer) => (stdout += b.toString()));
  child.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, exited, out: () => stdout, err: () => stderr };
}

test("serves a folder over TCP and exits 0 on SIGTERM", async () => {
  const fixture = await makeFixture();
  const p = serve(["--models", fixture.dir, "--port", "0", "--json"]);
  const deadline = Date.now() + 30_000;
  while (!p.out().trimEnd().endsWith("}") && p.child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  const { url, models } = JSON.parse(p.out()) as { url: string; models: { name: string }[] };
  expect(models.map((m) => m.name)).toEqual([FIXTURE_MODEL]);
  const health = await fetch(`${url}/healthz`);
  expect(health.status).toBe(200);
  p.child.kill("SIGTERM");
  expect(await p.exited).toBe(0);
}, 60_000);

test("without --models: makes out/resnet20-fmnist.opq with `opq compress` if missing, then serves out/", async () => {
  const cwd = mkdtempSync(join(tmpdir(), "opq-serve-default-"));
  const p = serve(["--port", "0", "--json"], cwd);
  const deadline = Date.now() + 60_000;
  while (!p.out().trimEnd().endsWith("}") && p.child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  expect(p.child.exitCode).toBeNull();
  const { url, models } = JSON.parse(p.out()) as { url: string; models: { name: string; bytes: number }[] };
  expect(models.map((m) => m.name)).toEqual(["resnet20-fmnist"]);
  expect(existsSync(join(cwd, "out", "resnet20-fmnist.opq"))).toBe(true);
  expect(models[0]!.bytes).toBe(statSync(join(cwd, "out", "resnet20-fmnist.opq")).size);
  expect(p.err()).toContain("making it with `opq compress`");
  expect((await fetch(`${url}/v1/models/resnet20-fmnist`)).status).toBe(200);
  p.child.kill("SIGTERM");
  expect(await p.exited).toBe(0);
}, 90_000);

test("refuses to start on a folder with a broken .opq, naming it", async () => {
  const fixture = await makeFixture();
  const dir = mkdtempSync(join(tmpdir(), "opq-serve-broken-"));
  copyFileSync(fixture.path, join(dir, "good.opq"));
  writeFileSync(join(dir, "broken.opq"), "not an opq file");
  const p = serve(["--models", dir, "--port", "0"]);
  expect(await p.exited).toBe(1);
  expect(p.err()).toContain("MODEL_LOAD_FAILED");
  expect(p.err()).toContain("broken.opq");
}, 60_000);
