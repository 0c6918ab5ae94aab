/**
 * `opq plan` – the allocation of a one-shot compression (masks M_i, steps Δ_i or APoT tables)
 * as a safetensors file, for finetuning in PyTorch (python/opq_torch). `opq compress --plan`
 * brings the finetuned ONNX back and encodes it with exactly this plan.
 * @module
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { basename, dirname, extname, join, resolve } from "node:path";
import { type Command, fmtBytes, formatTable, type ParsedArgs, printJson, say, stringOption, UsageError, VERSION, wantsJson } from "../common.ts";
import { writeFileAtomic } from "../../format/mod.ts";
import { DEFAULT_MODEL } from "../shared.ts";
import { ALLOCATION_OPTIONS, compressOptions } from "./compress.ts";



/** The command. */
export const command: Command = {
  name: "plan",
  summary: "write the one-shot allocation (masks, steps) as safetensors, for finetuning in PyTorch",
  usage: [
    "plan [in.onnx] [-o plan.safetensors] [--sparsity P] [--bits B] [--max-layer-sparsity C] [--json]",
    "plan [in.onnx] --method gm-apot --filter-rate 0 [--bits 3|4] [-o plan.safetensors]",
    "defaults: the paper's --sparsity 0.74 --bits 3 (finetuning recovers the accuracy); then",
    "finetune with python/opq_torch and encode the result: `opq compress finetuned.onnx --plan plan.safetensors`",
  ].join("\n"),
  options: ALLOCATION_OPTIONS,
  help: {
    output: "the plan to write (default: the input's name with .plan.safetensors)",
    method: "opq (default) or gm-apot (with --filter-rate 0: APoT levels, no filters removed)",
    sparsity: "fraction of weights to prune (default 0.74, the paper's setting)",
    bits: "quantization bits (default 3)",
    "max-layer-sparsity": "cap on any one layer's sparsity (default 0.9; 1 = no cap)",
    "filter-rate": "gm-apot only: must be 0 (a plan keeps every filter)",
  },
  async run(args) {
    if (args.positionals.length > 1) throw new UsageError(`one input model only, got ${args.positionals.length}`);
    const input = args.positionals[0] ?? DEFAULT_MODEL;
    const output = stringOption(args, "output") ?? join("out", basename(input, extname(input)) + ".plan.safetensors");
    if (resolve(output) === resolve(input)) throw new UsageError(`the output would overwrite the input ${input}`);
    const opts = compressOptions(args);
    // A plan is for finetuning, so it defaults to the paper's operating point, not compress's 0.5.
    if (opts.method === "opq") opts.sparsity ??= 0.74;
    const { readOnnx } = await import("../../format/mod.ts");
    const { encodePlan, makePlan } = await import("../../compressor/mod.ts");
    const bytes = new Uint8Array(readFileSync(input));
    const sha = createHash("sha256").update(bytes).digest("hex");
    const { plan } = makePlan(readOnnx(bytes), { ...opts, source: basename(input), fp32Bytes: bytes.length }, { modelSha256: sha, opqVersion: VERSION, source: basename(input) });
    const out = encodePlan(plan);
    mkdirSync(dirname(resolve(output)), { recursive: true });
    writeFileAtomic(output, out, { inputs: [input] });
    const layers = plan.layers.map((l) => ({
      name: l.name, node: l.node, dims: l.dims, kept: l.kept, sparsity: 1 - l.kept / l.mask.length, bits: l.bits,
      ...(l.codebook.kind === "uniform" ? { step: l.codebook.step } : { levels: l.codebook.values.length }),
    }));
    const kept = plan.layers.reduce((a, l) => a + l.kept, 0), total = plan.layers.reduce((a, l) => a + l.mask.length, 0);
    if (wantsJson(args)) {
      printJson({ input, output, bytes: out.length, modelSha256: sha, opqVersion: plan.opqVersion, options: plan.options, sparsity: 1 - kept / total, layers });
      return;
    }
    say(formatTable(["initializer", "node", "dims", "kept", "sparsity", "bits", "Δ / levels"], layers.map((l) => [
      l.name, l.node, l.dims.join("×"), l.kept, `${(100 * l.sparsity).toFixed(1)}%`, l.bits, "step" in l ? l.step!.toExponential(3) : `${l.levels} levels`,
    ])));
    say(`\n${basename(input)} → ${output} (${fmtBytes(out.length)}): ${plan.layers.length} layers, ${(100 * (1 - kept / total)).toFixed(1)}% pruned, sha256 ${sha.slice(0, 16)}…`);
    say(`next: finetune in PyTorch (python/opq_torch: apply_plan, export), then \`opq compress finetuned.onnx --plan ${output}\``);
  },
};

/** `opq compress in.onnx --plan plan.safetensors`: encode with the plan's masks and steps; no new allocation. */
export async function compressWithPlanCommand(args: ParsedArgs, input: string, output: string, planPath: string): Promise<void> {
  for (const k of ["method", "sparsity", "bits", "max-layer-sparsity", "filter-rate", "report"]) {
    if (args.values[k] !== undefined) throw new UsageError(`--${k} does not apply with --plan: the plan fixes the allocation`);
  }
  const { encodeOpq, inspectOpq, readOnnx } = await import("../../format/mod.ts");
  const { compressWithPlan, decodePlan } = await import("../../compressor/mod.ts");
  const plan = decodePlan(new Uint8Array(readFileSync(planPath)));
  const bytes = new Uint8Array(readFileSync(input));
  const r = compressWithPlan(readOnnx(bytes), plan, { source: basename(input), fp32Bytes: bytes.length });
  const out = encodeOpq(r.opq);
  mkdirSync(dirname(resolve(output)), { recursive: true });
  writeFileAtomic(output, out, { inputs: [input, planPath] });
  const kept = r.layers.reduce((a, l) => a + l.kept, 0), stored = r.layers.reduce((a, l) => a + l.stored, 0);
  const summary = { input, output, plan: planPath, bytes: out.length, ratio: bytes.length / out.length, kept, stored, fellToZero: r.fellToZero, leftMask: r.leftMask, layers: r.layers };
  if (wantsJson(args)) {
    printJson({ ...summary, ratioToBound: inspectOpq(out, { compare: false }).ratioToBound });
    return;
  }
  say(formatTable(["layer", "model initializer", "kept", "stored", "fell to 0", "left mask", "max |w| outside"], r.layers.map((l) => [
    l.name, l.modelName, l.kept, l.stored, l.fellToZero, l.leftMask, l.leftMask ? l.leftMaskMax.toExponential(2) : "",
  ])));
  say(`\n${basename(input)} ${fmtBytes(bytes.length)} → ${output} ${fmtBytes(out.length)} (${(bytes.length / out.length).toFixed(2)}× smaller) with ${basename(planPath)}: ${stored} of the plan's ${kept} positions stored`);
  if (r.leftMask) say(`warning: ${r.leftMask} weight(s) were nonzero at pruned positions (they left the mask) and were dropped; train with opq_torch.apply_plan so the mask holds`);
  if (r.fellToZero) say(`${r.fellToZero} kept weight(s) now quantize to 0 and are not stored (the mask only gets sparser)`);
}
