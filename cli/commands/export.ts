/**
 * `opq export` – turn a `.opq` back into a plain ONNX file with dequantized float32 weights, so
 * any ONNX runtime (onnxruntime, Netron, other toolchains) can load what opq compressed.
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { chooseOutput, type Command, fmtBytes, printJson, say, UsageError, wantsJson } from "../common.ts";

/** What `opq export --json` prints. */
export interface ExportResult {
  /** The ONNX file written. */
  output: string;
  /** Its size in bytes. */
  bytes: number;
  /** Compressed tensors dequantized into float32 initializers. */
  tensors: number;
  /** Nodes of opq's own ai.opq domain (SPQ/PPQ activation quantizers) kept as they are: other runtimes do not know them. */
  opqDomainNodes: number;
}

/**
 * Where the dense model goes when `-o` is not given: beside the input, `.opq` → `.dense.onnx`
 * (never plain `.onnx`, which is usually the FP32 original the `.opq` was made from).
 */
export function defaultOutput(input: string): string {
  return input.replace(/(\.opq)?$/i, ".dense.onnx");
}

/** Decode a `.opq`, dequantize it and write the dense ONNX to `output`. */
export async function exportDense(input: string, output: string): Promise<ExportResult> {
  if (!existsSync(input)) throw Object.assign(new Error(`no such file: ${input}`), { code: "NOT_FOUND" });
  // Loaded here so `opq --help` does not pay for the format package.
  const { assertNotInput, decodeOpq, toDenseModel, writeFileAtomic, writeOnnx } = await import("../../format/mod.ts");
  assertNotInput(output, [input]);
  const opq = decodeOpq(new Uint8Array(readFileSync(input)));
  const bytes = writeOnnx(toDenseModel(opq));
  writeFileAtomic(output, bytes, { inputs: [input] });
  const opqDomainNodes = opq.model.graph.nodes.filter((n) => n.domain === "ai.opq").length;
  return { output, bytes: bytes.length, tensors: opq.compressed.length, opqDomainNodes };
}

/** The `opq export` subcommand. */
export const command: Command = {
  name: "export",
  summary: "write a .opq model as a dense ONNX file (weights dequantized to float32)",
  usage: "export <model.opq> [-o <dense.onnx>] [--force]",
  options: { output: { type: "string", short: "o" }, force: { type: "boolean" } },
  help: {
    output: "the ONNX file to write (default <input>.dense.onnx beside the input; an existing file needs --force)",
    force: "overwrite the output if it exists",
  },
  async run(args) {
    const [input, ...extra] = args.positionals;
    if (!input) throw new UsageError("name the .opq file to export");
    if (extra.length) throw new UsageError(`one input file only, got ${args.positionals.length}`);
    const output = chooseOutput(args, defaultOutput(input), [input]);
    const result = await exportDense(input, output);
    if (wantsJson(args)) printJson(result);
    if (result.opqDomainNodes) say(`warning: ${result.opqDomainNodes} ai.opq node(s) (the activation quantizers of opq train --method spq|ppq) are kept as they are; runtimes other than opq's will refuse the file`);
    if (!wantsJson(args)) say(`wrote ${result.output} (${fmtBytes(result.bytes)}, ${result.tensors} tensor${result.tensors === 1 ? "" : "s"} dequantized)`);
  },
};
