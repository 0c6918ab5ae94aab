/**
 * `opq inspect` – what a `.opq` holds and where its bytes went: header, per-layer rows, the byte
 * breakdown by category, and the dedicated entropy coder against deflate on the same streams.
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { type Command, fmtBytes, formatTable, printJson, say, UsageError, wantsJson } from "../common.ts";

/** The `opq inspect` subcommand. */
export const command: Command = {
  name: "inspect",
  summary: "print a .opq file's header, layers and byte breakdown",
  usage: "inspect <model.opq> [--no-compare]",
  options: { "no-compare": { type: "boolean" } },
  help: {
    "no-compare": "skip re-encoding the weights with deflate for the side-by-side (faster on big files)",
  },
  async run(args) {
    const [input, ...extra] = args.positionals;
    if (!input) throw new UsageError("name the .opq file to inspect");
    if (extra.length) throw new UsageError(`one input file only, got ${args.positionals.length}`);
    if (!existsSync(input)) throw Object.assign(new Error(`no such file: ${input}`), { code: "NOT_FOUND" });
    const { inspectOpq } = await import("../../format/mod.ts");
    const info = inspectOpq(new Uint8Array(readFileSync(input)), { compare: args.values["no-compare"] !== true });
    if (wantsJson(args)) return printJson({ file: input, ...info });

    const b = info.breakdown;
    say(`${input}: .opq format v${info.formatVersion}, weights coded with ${info.weightCodec}`);
    const m = info.metadata;
    if (m.method !== undefined) say(`method ${m.method}, target sparsity ${m.targetSparsity}, achieved ${Number(m.sparsity).toFixed(4)}, nominal bits ${m.bits}, source ${m.source}`);
    say("");
    say(formatTable(
      ["layer", "dims", "nnz", "sparsity", "codebook", "codes", "indices B", "codes B", "codebook B", "bits/nnz", "bits/w", "rans B", "deflate B", "H0 B"],
      info.layers.map((l) => [
        l.name, l.dims.join("x"), l.nnz, l.size ? 1 - l.nnz / l.size : 0, l.codebookKind, l.distinctCodes,
        l.indicesBytes, l.codesBytes, l.codebookBytes, l.bitsPerNonzero, l.bitsPerWeight, l.ransBytes, l.deflateBytes, Math.round(l.entropyBytes),
      ]),
    ));
    say("");
    say(formatTable(["part", "bytes", "share"], [
      ...(["indices", "codes", "codebooks", "graph", "kept", "framing"] as const).map((k) => [k, b[k], `${((100 * b[k]) / b.total).toFixed(1)}%`]),
      ["total", b.total, "100%"],
    ]));
    say("");
    const { rans, deflate } = info.fileBytesByCodec;
    say(`FP32 ${fmtBytes(info.fp32Bytes)} → .opq ${fmtBytes(info.fileBytes)}: ${info.sizeRatio.toFixed(2)}× smaller`);
    say(`zero-order entropy bound ${fmtBytes(Math.round(info.entropy.totalBytes))}: file is ${info.ratioToBound.toFixed(3)}× the bound`);
    if (rans && deflate) say(`whole file by weight codec: rans ${fmtBytes(rans)}, deflate ${fmtBytes(deflate)} (deflate/rans ${(deflate / rans).toFixed(3)})`);
  },
};
