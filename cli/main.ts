#!/usr/bin/env bun
/**
 * `opq` – one CLI, many subcommands. Each subcommand lives in commands/<name>.ts and is loaded
 * only when used, so `opq compress` does not pay for the server or onnxruntime-web. Exit codes:
 * 0 done, 1 the command failed on its input (a corrupt file, an internal error), 2 bad arguments
 * or a failing environment (a server that does not answer, missing data or files).
 * @module
 */
import { type Command, ENVIRONMENT_CODES, EnvironmentError, INVOCATION, parseCommandArgs, printJson, say, UsageError, VERSION } from "./common.ts";

/** Every subcommand, by name, loaded on demand. */
const COMMANDS: Record<string, () => Promise<{ command: Command }>> = {
  compress: () => import("./commands/compress.ts"),
  finetune: () => import("./commands/finetune.ts"),
  plan: () => import("./commands/plan.ts"),
  train: () => import("./commands/train.ts"),
  inspect: () => import("./commands/inspect.ts"),
  export: () => import("./commands/export.ts"),
  eval: () => import("./commands/eval.ts"),
  bench: () => import("./commands/bench.ts"),
  serve: () => import("./commands/serve.ts"),
  "bench-http": () => import("./commands/bench-http.ts"),
};

export { VERSION };

function mainUsage(): string {
  return [
    `opq ${VERSION} – one-shot pruning-quantization for CNNs and an inference server for the result`,
    "",
    "usage: opq <command> [options]   (every command takes --json and --help)",
    "",
    "commands:",
    ...Object.entries(SUMMARIES).map(([k, v]) => `  ${k.padEnd(11)} ${v}`),
    "",
    "options: --help (this text), --version, --json (with --help or --version: as JSON)",
    "run `opq <command> --help` for a command's options",
  ].join("\n");
}

/** One line per command for `opq --help` (kept here so the help does not load every command). */
const SUMMARIES: Record<keyof typeof COMMANDS, string> = {
  compress: "compress an FP32 ONNX model to .opq",
  finetune: "compress, then finetune on Fashion-MNIST to recover accuracy",
  inspect: "where every byte of a .opq went",
  export: "a .opq back to a dense ONNX file",
  eval: "top-1 / top-5 on the Fashion-MNIST test set",
  bench: "latency and memory, ours against onnxruntime-web",
  serve: "the HTTP inference server",
  "bench-http": "a load generator for the server",
};

/** A command's options as data: what `--help --json` prints and the text help is made of. */
export function optionList(cmd: Command): { name: string; short?: string; type: string; description: string }[] {
  const all: Record<string, { type: string; short?: string }> = { ...cmd.options, json: { type: "boolean" }, help: { type: "boolean", short: "h" } };
  const help: Record<string, string> = { ...cmd.help, json: "print one JSON object on stdout (tables and progress go to stderr)", help: "print this help" };
  return Object.entries(all).map(([name, o]) => ({ name, ...(o.short ? { short: o.short } : {}), type: o.type, description: help[name] ?? "" }));
}

function commandHelp(cmd: Command): string {
  const rows = optionList(cmd).map((o) => [`  ${o.short ? `-${o.short}, ` : "    "}--${o.name}${o.type === "string" ? " <value>" : ""}`, o.description]);
  const width = Math.max(...rows.map((r) => r[0]!.length));
  return [
    `opq ${cmd.name} – ${cmd.summary}`, "", "usage:",
    ...cmd.usage.split("\n").map((l) => (l.startsWith(cmd.name) ? `  opq ${l}` : `  ${l}`)),
    "", "options:", ...rows.map(([a, b]) => `${a!.padEnd(width)}  ${b}`),
  ].join("\n");
}

/** Write the help (or version) text to stdout, or as one JSON object under --json. */
function printHelp(text: string, json: boolean, value: unknown): void {
  if (json) printJson(value);
  else process.stdout.write(text + "\n");
}

/** Run the CLI on argv (without the runtime and script) and return the exit code. */
export async function main(argv: string[]): Promise<number> {
  INVOCATION.argv = argv;
  const json = argv.includes("--json");
  const first = argv.find((a) => a !== "--json");
  if (first === undefined) {
    say(mainUsage());
    if (json) printJson({ error: { code: "USAGE", message: "name a command" } });
    return 2;
  }
  if (first === "--help" || first === "-h") {
    printHelp(mainUsage(), json, { name: "opq", version: VERSION, commands: Object.entries(SUMMARIES).map(([name, summary]) => ({ name, summary })) });
    return 0;
  }
  if (first === "--version" || first === "-V") {
    printHelp(`opq ${VERSION}`, json, { name: "opq", version: VERSION });
    return 0;
  }
  const name = first;
  const rest = argv.slice(argv.indexOf(first) + 1).concat(argv.indexOf(first) > 0 ? ["--json"] : []);
  const load = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!load) {
    const message = `unknown command ${JSON.stringify(name)}; commands: ${Object.keys(COMMANDS).join(", ")}`;
    say(`opq: ${message}\n\n${mainUsage()}`);
    if (json) printJson({ error: { code: "USAGE", message } });
    return 2;
  }
  const { command } = await load();
  try {
    const args = parseCommandArgs(command, rest);
    if (args.values.help) {
      printHelp(commandHelp(command), json, { command: command.name, summary: command.summary, usage: command.usage.split("\n"), options: optionList(command) });
      return 0;
    }
    await command.run(args);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      say(`opq ${name}: ${e.message}\n\nrun \`opq ${name} --help\` for its options`);
      if (json) printJson({ error: { code: "USAGE", message: e.message } });
      return 2;
    }
    const err = e as Error & { code?: unknown };
    const code = typeof err.code === "string" ? err.code : "INTERNAL";
    const environment = e instanceof EnvironmentError || ENVIRONMENT_CODES.has(code);
    say(`opq ${name}: error [${code}]: ${err.message}`);
    if (code === "INTERNAL" && err.stack) say(err.stack);
    if (json) printJson({ error: { code, message: err.message } });
    return environment ? 2 : 1;
  }
}

if (import.meta.main) {
  const args = typeof Deno !== "undefined" ? Deno.args : process.argv.slice(2);
  process.exitCode = await main(args);
}

declare const Deno: { args: string[] } | undefined;
