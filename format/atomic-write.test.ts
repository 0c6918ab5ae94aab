/**
 * writeFileAtomic under the failures the issue names: a full disk (`ulimit -f` in a child
 * process, with SIGXFSZ both fatal and ignored), a SIGKILL before every step of the write, and an
 * output that is the input through a symlink, a symlinked directory or a hardlink. Each case
 * must leave the old file byte for byte, or the new one complete.
 */
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assertNotInput, writeFileAtomic } from "./atomic-write.ts";
import { FormatError } from "./errors.ts";

const BUN = process.execPath;
const MODULE = join(import.meta.dir, "atomic-write.ts");
const OLD = new Uint8Array(4096).fill(0x6f);
const NEW_BYTES = 256 * 1024;
const newContent = () => Uint8Array.from({ length: NEW_BYTES }, (_, i) => (i * 31 + 7) & 0xff);

const fresh = () => mkdtempSync(join(tmpdir(), "opq-atomic-"));
const same = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((v, i) => v === b[i]);
const codeOf = (f: () => void) => { try { f(); } catch (e) { if (e instanceof FormatError) return e.code; throw e; } return "ok"; };

/**
 * A child that writes NEW_BYTES to argv[2] in 32 KiB chunks, killing itself with SIGKILL before
 * step number KILL_AT (counting from 0), and printing the FormatError code if the write fails.
 */
const CHILD = `
import { writeFileAtomic } from ${JSON.stringify(MODULE)};
const killAt = Number(process.env.KILL_AT ?? -1);
let n = 0;
const data = Uint8Array.from({ length: ${NEW_BYTES} }, (_, i) => (i * 31 + 7) & 0xff);
try {
  writeFileAtomic(process.argv[2], data, { chunkBytes: 32768, onStep: (s) => {
    if (n++ === killAt) process.kill(process.pid, "SIGKILL");
    if (process.env.LOG_STEPS) console.log(s);
  } });
  console.log("done");
} catch (e) { console.log("error " + e.code); process.exit(3); }
`;

function childScript(dir: string): string {
  const p = join(dir, "writer.ts");
  writeFileSync(p, CHILD);
  return p;
}

describe("writeFileAtomic", () => {
  test("writes the bytes, replaces an old file and keeps its mode", () => {
    const dir = fresh(), out = join(dir, "m.opq");
    writeFileSync(out, OLD, { mode: 0o640 });
    writeFileAtomic(out, newContent());
    expect(same(new Uint8Array(readFileSync(out)), newContent())).toBe(true);
    expect(statSync(out).mode & 0o777).toBe(0o640);
    expect(readdirSync(dir)).toEqual(["m.opq"]);
  });

  test("a SIGKILL before any step leaves the old file intact or the new one complete", () => {
    const dir = fresh(), script = childScript(dir), out = join(dir, "model.opq");
    const logged = spawnSync(BUN, [script, out], { env: { ...process.env, LOG_STEPS: "1" }, encoding: "utf8" });
    const steps = logged.stdout.trim().split("\n").filter((l) => l !== "done");
    // open, 8 chunks of 32 KiB, fsync, close, rename, sync-dir
    expect(steps).toEqual(["open", ...new Array(8).fill("write"), "fsync", "close", "rename", "sync-dir"]);
    const renameAt = steps.indexOf("rename");
    for (let k = 0; k < steps.length; k++) {
      writeFileSync(out, OLD);
      const r = spawnSync(BUN, [script, out], { env: { ...process.env, KILL_AT: String(k) }, encoding: "utf8" });
      expect(r.signal).toBe("SIGKILL");
      const now = new Uint8Array(readFileSync(out));
      // Killed before the rename: the old file; after it: the new one, complete.
      expect(same(now, k <= renameAt ? OLD : newContent())).toBe(true);
    }
  }, 60_000);

  for (const signal of ["fatal", "ignored"] as const) {
    test(`a full disk (ulimit -f, SIGXFSZ ${signal}) leaves the old file intact`, () => {
      const dir = fresh(), script = childScript(dir), out = join(dir, "model.opq");
      writeFileSync(out, OLD);
      // 64 blocks of 512 bytes: the 4 KiB old file fits, the 256 KiB new one does not.
      const trap = signal === "ignored" ? "trap '' XFSZ; " : "";
      const r = spawnSync("sh", ["-c", `${trap}ulimit -f 64; exec "$0" "$1" "$2"`, BUN, script, out], { encoding: "utf8" });
      if (signal === "ignored") {
        expect(r.stdout.trim()).toBe("error WRITE_FAILED");
        // The failed write removed its temporary file.
        expect(readdirSync(dir).sort()).toEqual(["model.opq", "writer.ts"]);
      } else {
        // Bun ignores SIGXFSZ itself (the write then fails with EFBIG); a runtime that does not is killed.
        expect(r.signal === "SIGXFSZ" || r.stdout.trim() === "error WRITE_FAILED").toBe(true);
      }
      expect(same(new Uint8Array(readFileSync(out)), OLD)).toBe(true);
    });
  }

  test("refuses an output that is the input through a symlink, a symlinked folder or a hardlink", () => {
    const dir = fresh(), input = join(dir, "in.onnx");
    writeFileSync(input, OLD);
    symlinkSync(input, join(dir, "link.opq"));
    linkSync(input, join(dir, "hard.opq"));
    mkdirSync(join(dir, "sub"));
    symlinkSync(dir, join(dir, "sub", "up"));
    symlinkSync(join(dir, "link.opq"), join(dir, "link2.opq")); // a chain of links
    for (const out of ["link.opq", "link2.opq", "hard.opq", "sub/up/in.onnx", "in.onnx", "./sub/../in.onnx"]) {
      expect(codeOf(() => writeFileAtomic(join(dir, out), newContent(), { inputs: [input] }))).toBe("OUTPUT_IS_INPUT");
      expect(codeOf(() => assertNotInput(join(dir, out), [input]))).toBe("OUTPUT_IS_INPUT");
    }
    expect(same(new Uint8Array(readFileSync(input)), OLD)).toBe(true);
    expect(codeOf(() => assertNotInput(join(dir, "other.opq"), [input]))).toBe("ok");
  });

  test("writes through a symlink to another file: the link stays, its target gets the bytes", () => {
    const dir = fresh(), target = join(dir, "real.opq"), link = join(dir, "link.opq");
    writeFileSync(target, OLD);
    symlinkSync(target, link);
    writeFileAtomic(link, newContent(), { inputs: [join(dir, "elsewhere.onnx")] });
    expect(same(new Uint8Array(readFileSync(target)), newContent())).toBe(true);
    expect(readdirSync(dir).sort()).toEqual(["link.opq", "real.opq"]);
  });

  test("an unwritable folder is WRITE_FAILED, not an untyped error", () => {
    expect(codeOf(() => writeFileAtomic(join(fresh(), "no", "such", "dir", "m.opq"), OLD))).toBe("WRITE_FAILED");
  });
});
