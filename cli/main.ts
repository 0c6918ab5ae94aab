#!/usr/bin/env bun
/**
 * `opq` – one CLI, many subcommands. Each subcommand lives in commands/<name>.ts and is loaded
 * only when used, so `opq compress` does not pay for the server or onnxruntime-web.
 * @module
 */
import { type Command, parseCommandArgs, printJson, say, UsageError } from "./common.ts";

/** Every subcommand, by name, loaded on demand. */
const COMMANDS: Record<string, () => Promise<{ command: Command }>> = {
  compress: () => import("./commands/compress.ts"),
  finetune: () => import("./commands/finetune.ts"),
  train: () => import("./commands/train.ts"),
  inspect: () => import("./commands/inspect.ts"),
  export: () => import("./commands/export.ts"),
  eval: () => import("./commands/eval.ts"),
  bench: () => import("./commands/bench.ts"),
  serve: () => import("./commands/serve.ts"),
  "bench-http": () => import("./commands/bench-http.ts"),
};

function mainUsage(): string {
  return [
    "usage: opq <command> [options]   (every command takes --json and --help)",
    "",
    "commands: " + Object.keys(COMMANDS).join(", "),
    "run `opq <command> --help` for a command's options",
  ].join("\n");
}

function commandHelp(cmd: Command): string {
  const opts = Object.entries(cmd.options).map(([k, o]) => `  ${o.short ? `-${o.short}, ` : ""}--${k}${o.type === "string" ? " <value>" : ""}`);
  return [`opq ${cmd.name} – ${cmd.summary}`, "", "usage:", ...cmd.usage.split("\n").map((l) => (l.startsWith(cmd.name) ? `  opq ${l}` : `  ${l}`)), "", "options:", ...opts, "  --json", "  --help"].join("\n");
}

/** Run the CLI on argv (without the runtime and script) and return the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h") {
    say(mainUsage());
    return name ? 0 : 2;
  }
  const load = COMMANDS[name];
  if (!load) {
    say(`opq: unknown command ${JSON.stringify(name)}\n\n${mainUsage()}`);
    return 2;
  }
  const { command } = await load();
  const json = rest.includes("--json");
  try {
    const args = parseCommandArgs(command, rest);
    if (args.values.help) {
      say(commandHelp(command));
      return 0;
    }
    await command.run(args);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      say(`opq ${name}: ${e.message}\n\n${commandHelp(command)}`);
      if (json) printJson({ error: { code: "USAGE", message: e.message } });
      return 2;
    }
    const err = e as Error & { code?: string };
    const code = typeof err.code === "string" ? err.code : "INTERNAL";
    say(`opq ${name}: error [${code}]: ${err.message}`);
    if (code === "INTERNAL" && err.stack) say(err.stack);
    if (json) printJson({ error: { code, message: err.message } });
    return 1;
  }
}

if (import.meta.main) {
  const args = typeof Deno !== "undefined" ? Deno.args : process.argv.slice(2);
  process.exitCode = await main(args);
}

declare const Deno: { args: string[] } | undefined;
