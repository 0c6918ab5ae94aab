/**
 * The one test command (`npm test`): bun's suite, then Deno's smoke tests, then one closing line
 * "N passed, M failed" summing both, with a non-zero exit if anything failed. It first checks the
 * machine (test/preflight.ts) and installs or names what is missing.
 * @module
 */
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PROJECT_ROOT } from "../cli/shared.ts";
import { ensurePrerequisites } from "./preflight.ts";

const bin = (name: string) => join(PROJECT_ROOT, "node_modules", ".bin", name);

function run(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number; out: string }> {
  return new Promise((done) => {
    const child = spawn(cmd, args, { cwd: PROJECT_ROOT, stdio: ["ignore", "pipe", "pipe"], env });
    let out = "";
    const tee = (stream: NodeJS.ReadableStream, sink: NodeJS.WriteStream) =>
      stream.on("data", (b: Buffer) => { out += b.toString(); sink.write(b); });
    tee(child.stdout!, process.stdout);
    tee(child.stderr!, process.stderr);
    child.on("close", (code) => done({ code: code ?? 1, out }));
  });
}

const count = (out: string, re: RegExp) => [...out.matchAll(re)].reduce((s, m) => s + Number(m[1]), 0);

const extra = process.argv.slice(2);
const missing = ensurePrerequisites((line) => console.log(line));
if (missing) console.log(missing);
// bunfig.toml's [test] timeout is not applied by this bun: the per-test ceiling goes on the command line.
const bun = await run(bin("bun"), ["test", "--timeout", "120000", ...extra]);
const bunPass = count(bun.out, /^\s*(\d+) pass$/gm);
const bunFail = count(bun.out, /^\s*(\d+) fail$/gm);
let denoPass = 0, denoFail = 0, denoCode = 0;
if (extra.length === 0) {
  // Deno's WebGPU (the webgpu suites, on Mesa's lavapipe without a GPU) wants a runtime dir.
  const xdg = process.env.XDG_RUNTIME_DIR ?? mkdtempSync(join(tmpdir(), "opq-xdg-"));
  const denoEnv = { ...process.env, XDG_RUNTIME_DIR: xdg };
  let deno = await run(bin("deno"), ["test", "-A", "--no-check"], denoEnv);
  if (deno.code !== 0 && count(deno.out, /(\d+) failed/g) === 0 && /\| \d+ passed \| 0 failed/.test(deno.out)) {
    // Every test passed and then the process died on the way out (seen once in CI: glibc's
    // "corrupted size vs. prev_size in fastbins" after the last WebGPU suite; not reproduced in
    // 6 local runs). Said loudly, and run once more: a second crash fails the run.
    console.log(`\ndeno exited with code ${deno.code} after all its tests passed (a crash at teardown); running the deno suites once more`);
    deno = await run(bin("deno"), ["test", "-A", "--no-check"], denoEnv);
  }
  denoPass = count(deno.out, /(\d+) passed/g);
  denoFail = count(deno.out, /(\d+) failed/g);
  denoCode = deno.code;
}
const failed = bunFail + denoFail + (bun.code !== 0 && bunFail === 0 ? 1 : 0) + (denoCode !== 0 && denoFail === 0 ? 1 : 0);
console.log(`\nbun: ${bunPass} passed, ${bunFail} failed; deno: ${denoPass} passed, ${denoFail} failed`);
if (missing) console.log(missing);
console.log(`${bunPass + denoPass} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
