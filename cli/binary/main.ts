/**
 * The `opq` CLI as one executable: `bun run build:cli` (bun build --compile of this file and the
 * GEMM worker beside it) writes out/opq, which carries the default model and the page's samples
 * (embed.ts) and runs `opq bench`'s measuring children by starting itself again.
 * @module
 */
import "./embed.ts";
import { main } from "../main.ts";
import { runBenchChild } from "../commands/bench.ts";

// A compiled binary's argv is [binary, /$bunfs/root/<name>, ...args]; `opq bench` restarts it as
// [binary, <its own module path>, --child, ...], so an embedded module path in front is dropped.
let args = process.argv.slice(2);
if (args[0]?.startsWith("/$bunfs/") || args[0]?.startsWith("B:/~BUN/")) args = args.slice(1);
process.exitCode = args[0] === "--child" ? await runBenchChild(args) : await main(args);
