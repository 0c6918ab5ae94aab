/**
 * The server under Node through @hono/node-server: server/main-node.ts is bundled for Node with
 * `bun build --target=node` (Node cannot run our TypeScript), started with `node` on a real
 * `.opq` on 127.0.0.1, asked for one inference (compared with Bun's in-process run), and stopped
 * with SIGTERM (graceful path).
 * @module
 */
import { afterAll, expect, test } from "bun:test";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import { PROJECT_ROOT } from "../cli/shared.ts";
import { sampleInput } from "./samples.ts";
import { FIXTURE_MODEL, floatBytes, loadFixtureRegistry, makeFixture } from "./test-fixtures.ts";

let child: ChildProcess | undefined;

afterAll(() => {
  if (child && child.exitCode === null) child.kill("SIGKILL");
});

test("bundled for Node: serves the in-process run's inference (to float rounding), stops on SIGTERM", async () => {
  const fixture = await makeFixture();
  const bundle = join(fixture.dir, "opq-server.mjs");
  const build = spawnSync(join(PROJECT_ROOT, "node_modules", ".bin", "bun"), ["build", "server/main-node.ts", "--target=node", "--outfile", bundle], { cwd: PROJECT_ROOT, encoding: "utf8" });
  if (build.status !== 0) throw new Error(`bun build --target=node failed (${build.status}):\n${build.stderr}`);

  child = spawn("node", [bundle, "--models", fixture.dir, "--port", "0"], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (b: Buffer) => (stderr += b.toString()));
  const line = await new Promise<string>((resolve, reject) => {
    let out = "";
    child!.stdout!.on("data", (b: Buffer) => {
      out += b.toString();
      if (out.includes("\n")) resolve(out.split("\n")[0]!);
    });
    child!.once("exit", (code) => reject(new Error(`node exited ${code}: ${stderr}`)));
  });
  const { url, runtime } = JSON.parse(line) as { url: string; runtime: string };
  expect(runtime).toBe("node");

  const x = sampleInput(fixture.samples, fixture.samples.samples[3]!);
  const res = await fetch(`${url}/v1/models/${FIXTURE_MODEL}/infer`, {
    method: "POST",
    headers: { "content-type": "application/octet-stream", "x-shape": "1,1,28,28" },
    body: floatBytes(x.data),
  });
  expect(res.status).toBe(200);
  const body = (await res.json()) as { outputs: { logits: { data: number[] } } };
  const registry = await loadFixtureRegistry();
  const direct = await registry.get(FIXTURE_MODEL)!.runner.run({ input: { dtype: "float32", dims: x.shape, data: x.data } });
  // Not bit for bit: a Conv's fast path depends on the JS engine (runtime/cpu/sparse.ts tunes the
  // sparse crossover separately for JavaScriptCore and V8), so Node and Bun may sum in different
  // orders. Same weights, same graph: equal to float32 rounding over the ~600-term sums, and the
  // same class.
  const ours = Array.from(direct.logits!.data as Float32Array), served = body.outputs.logits.data;
  expect(served.length).toBe(ours.length);
  const scale = Math.max(...ours.map(Math.abs));
  served.forEach((v, i) => expect(Math.abs(v - ours[i]!)).toBeLessThanOrEqual(1e-5 * scale));
  const argmax = (a: number[]) => a.indexOf(Math.max(...a));
  expect(argmax(served)).toBe(argmax(ours));

  const exited = new Promise<number | null>((resolve) => child!.once("exit", (code) => resolve(code)));
  child.kill("SIGTERM");
  expect(await exited).toBe(0);
}, 60_000);
