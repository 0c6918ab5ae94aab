/**
 * The code runs unchanged under Deno: `deno check` on every package's public surface and the
 * CLI, and the CLI under Deno writes byte-identical `.opq` files to the CLI under Bun.
 * @module
 */
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PROJECT_ROOT } from "../cli/shared.ts";

const bin = (name: string) => join(PROJECT_ROOT, "node_modules", ".bin", name);
const run = (cmd: string, args: string[]) => spawnSync(bin(cmd), args, { cwd: PROJECT_ROOT, encoding: "utf8", timeout: 240_000 });

describe("Deno", () => {
  test("deno check passes on format/, compressor/, runtime/, server/ and the CLI", () => {
    const r = run("deno", ["check", "format/mod.ts", "compressor/mod.ts", "runtime/mod.ts", "server/mod.ts", "cli/main.ts"]);
    expect(r.stderr.replace(/\x1b\[[0-9;]*m/g, "")).not.toContain("error");
    expect(r.status).toBe(0);
  }, 240_000);

  test("opq compress under Deno prints one JSON object and writes the same bytes as under Bun", () => {
    const dir = mkdtempSync(join(tmpdir(), "opq-deno-"));
    const viaDeno = run("deno", ["run", "-A", "cli/main.ts", "compress", "--json", "-o", join(dir, "deno.opq")]);
    const viaBun = run("bun", ["cli/main.ts", "compress", "--json", "-o", join(dir, "bun.opq")]);
    expect(viaDeno.status).toBe(0);
    expect(viaBun.status).toBe(0);
    const report = JSON.parse(viaDeno.stdout);
    expect(report.output).toBe(join(dir, "deno.opq"));
    const a = readFileSync(join(dir, "deno.opq")), b = readFileSync(join(dir, "bun.opq"));
    expect(a.length).toBeGreaterThan(1000);
    expect(Buffer.compare(a, b)).toBe(0);
    // And Deno's inspect reads what Bun wrote.
    const inspect = run("deno", ["run", "-A", "cli/main.ts", "inspect", "--json", "--no-compare", join(dir, "bun.opq")]);
    expect(inspect.status).toBe(0);
    expect(JSON.parse(inspect.stdout).fileBytes).toBe(b.length);
  }, 240_000);
});
