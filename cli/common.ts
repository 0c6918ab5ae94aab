/**
 * What every subcommand shares: argument parsing with usage errors (exit 2), `--json` output of
 * exactly one object on stdout, tables and progress bars on stderr.
 * @module
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs, type ParseArgsConfig } from "node:util";
import pkg from "../package.json" with { type: "json" };

/** The package version `opq --version` prints and reports record. */
export const VERSION: string = pkg.version;

/** The arguments `opq` was run with (set by main), for reports that record their command line. */
export const INVOCATION: { argv: string[] } = { argv: [] };

/** The command line as a user would retype it. */
export function commandLine(): string {
  return ["opq", ...INVOCATION.argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`))].join(" ");
}

/** A subcommand of `opq`. */
export interface Command {
  name: string;
  summary: string;
  /** One usage line per form, without the leading `opq`. */
  usage: string;
  options: NonNullable<ParseArgsConfig["options"]>;
  /** What each option does and its default, as `--help` prints it (by option name). */
  help: Record<string, string>;
  run(args: ParsedArgs): Promise<void>;
}

/** Parsed options and positionals. */
export interface ParsedArgs {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/** Bad command-line arguments: printed with the usage, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/**
 * The machine, not the arguments, is wrong: a server that does not answer, missing data, a file
 * that is not there. Printed as `error [CODE]: message` without a stack trace, exit code 2.
 */
export class EnvironmentError extends Error {
  override name = "EnvironmentError";
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

/** Error codes (ours and the OS's) that mean an environment failure: exit 2, no stack trace. */
export const ENVIRONMENT_CODES: ReadonlySet<string> = new Set([
  "NOT_FOUND", "MISSING_DATA", "OUTPUT_EXISTS", "UNREACHABLE", "ENOENT", "EACCES", "EPERM", "EADDRINUSE", "ECONNREFUSED", "ENOTFOUND", "ConnectionRefused",
]);

/** Parse argv for a command, turning node:util errors into UsageError. */
export function parseCommandArgs(cmd: Command, argv: string[]): ParsedArgs {
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { ...cmd.options, json: { type: "boolean" }, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    });
    return { values: values as ParsedArgs["values"], positionals };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** A numeric option, validated against [min, max]. */
export function numberOption(args: ParsedArgs, name: string, fallback: number, min = -Infinity, max = Infinity): number {
  const raw = args.values[name];
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (typeof raw !== "string" || raw.trim() === "" || !Number.isFinite(v) || v < min || v > max) {
    throw new UsageError(`--${name} must be a number in [${min}, ${max}], got ${JSON.stringify(raw)}`);
  }
  return v;
}

/** A string option, or the fallback. */
export function stringOption(args: ParsedArgs, name: string, fallback?: string): string | undefined {
  const v = args.values[name];
  return typeof v === "string" ? v : fallback;
}

/**
 * Where a command writes: `-o` if given, else `fallback`. Never one of the inputs; a default
 * output that already exists is refused (code OUTPUT_EXISTS, exit 2) unless `--force` is given,
 * so a default never silently replaces a file. An explicit `-o` names its target and may replace it.
 */
export function chooseOutput(args: ParsedArgs, fallback: string, inputs: readonly string[]): string {
  const explicit = stringOption(args, "output");
  const output = explicit ?? fallback;
  for (const input of inputs) if (resolve(output) === resolve(input)) throw new UsageError(`the output would overwrite the input ${input}`);
  if (explicit === undefined && args.values.force !== true && existsSync(output)) {
    throw new EnvironmentError("OUTPUT_EXISTS", `${output} exists; pass --force to replace it, or -o to write elsewhere`);
  }
  return output;
}

/** The runtime backends `--backend` accepts (the session's BackendChoice). */
export const BACKEND_CHOICES = ["auto", "webgpu", "wasm", "cpu-reference"] as const;

/** `--backend`: one of BACKEND_CHOICES (default auto). */
export function backendOption(args: ParsedArgs): (typeof BACKEND_CHOICES)[number] {
  const v = stringOption(args, "backend", "auto")!;
  if (!(BACKEND_CHOICES as readonly string[]).includes(v)) throw new UsageError(`--backend must be one of ${BACKEND_CHOICES.join(", ")}, got ${JSON.stringify(v)}`);
  return v as (typeof BACKEND_CHOICES)[number];
}

/** True when the command should print one JSON object and nothing else on stdout. */
export function wantsJson(args: ParsedArgs): boolean {
  return args.values.json === true;
}

/** Print the command's single JSON result to stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? Number(v) : v), 2) + "\n");
}

/** Write a line for humans to stderr. */
export function say(line = ""): void {
  process.stderr.write(line + "\n");
}

/** Format a table of rows (right-aligned numbers) for stderr. */
export function formatTable(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map((c) => (typeof c === "number" ? fmtNum(c) : c)))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => String(r[i] ?? "").length)));
  return cells
    .map((r, ri) =>
      r.map((c, i) => (ri > 0 && typeof rows[ri - 1]![i] === "number" ? String(c).padStart(widths[i]!) : String(c).padEnd(widths[i]!))).join("  ")
    )
    .join("\n");
}

/** A compact human rendering of a number. */
export function fmtNum(v: number): string {
  if (Number.isInteger(v)) return v.toLocaleString("en-US");
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(3) : v.toFixed(a < 1 ? 4 : 2);
}

/** Nearest-rank percentile (0 < p ≤ 1) of ascending values; NaN for none. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

/** Human byte size. */
export function fmtBytes(n: number): string {
  return n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(2)} MiB`;
}

/**
 * A progress bar on stderr for work that may take over a second. Silent when stderr is not a
 * TTY or `quiet` is set (e.g. under --json), apart from nothing: the result carries the outcome.
 */
export function progress(label: string, total: number, quiet = false): { tick(n?: number): void; done(): void } {
  const tty = !quiet && (process.stderr as { isTTY?: boolean }).isTTY === true;
  const start = performance.now();
  let count = 0;
  let last = 0;
  const draw = (final: boolean) => {
    const now = performance.now();
    if (!tty || (!final && now - last < 100)) return;
    last = now;
    const frac = total > 0 ? Math.min(1, count / total) : 1;
    const width = 28;
    const bar = "█".repeat(Math.round(frac * width)).padEnd(width, "░");
    process.stderr.write(`\r${label} ${bar} ${count}/${total} ${((now - start) / 1000).toFixed(1)}s${final ? "\n" : ""}`);
  };
  return {
    tick(n = 1) { count += n; draw(false); },
    done() { count = total; draw(true); },
  };
}
