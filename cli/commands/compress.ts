/**
 * `opq compress` – an FP32 ONNX model in, a `.opq` out: OPQ one-shot pruning-quantization (default)
 * or FPGM filter removal + APoT. Prints a per-layer table (or with --json one object holding the
 * whole report) and can write a self-contained HTML report.
 * @module
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, dirname, extname, join, resolve } from "node:path";
import { COMPRESS_DEFAULTS } from "../../compressor/mod.ts";
import { type Command, fmtBytes, fmtNum, formatTable, numberOption, type ParsedArgs, printJson, progress, say, stringOption, UsageError, wantsJson } from "../common.ts";
import { DEFAULT_MODEL } from "../shared.ts";

/** Default output: out/<input name>.opq under the working directory (inputs may sit in read-only folders). */
export function defaultOutput(input: string): string {
  return join("out", basename(input, extname(input)) + ".opq");
}

/** CLI options → CompressOptions; bad or inapplicable values are UsageErrors. */
export function compressOptions(args: ParsedArgs): { method: "opq" | "gm-apot"; sparsity?: number; bits?: number; maxLayerSparsity?: number; filterRate?: number } {
  const method = stringOption(args, "method", "opq")!;
  if (method !== "opq" && method !== "gm-apot") throw new UsageError(`--method must be opq or gm-apot, got ${JSON.stringify(method)}`);
  const given = (k: string) => args.values[k] !== undefined;
  const wrong = method === "opq" ? ["filter-rate"] : ["sparsity", "max-layer-sparsity"];
  for (const k of wrong) if (given(k)) throw new UsageError(`--${k} does not apply to --method ${method}`);
  const bits = given("bits") ? numberOption(args, "bits", 0, 1, 16) : undefined;
  if (method === "gm-apot" && bits !== undefined && bits !== 3 && bits !== 4) throw new UsageError(`--bits must be 3 or 4 with --method gm-apot, got ${bits}`);
  return {
    method, bits,
    sparsity: given("sparsity") ? numberOption(args, "sparsity", 0, 0, 0.999) : undefined,
    maxLayerSparsity: given("max-layer-sparsity") ? numberOption(args, "max-layer-sparsity", 0, 0.01, 1) : undefined,
    filterRate: given("filter-rate") ? numberOption(args, "filter-rate", 0, 0, 0.99) : undefined,
  };
}

const pct = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? "" : (100 * v).toFixed(1) + "%");
const sci = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? "" : v.toExponential(2));

/**
 * The warning for post-training gm-apot settings that lose most of the accuracy without training:
 * any filter removal (FPGM removes filters the network was trained to use) or 3-bit APoT weights.
 * Measured on ResNet-20, 10k test images, FP32 93.12% (filter rate / bits → top-1): 0/4 92.15%,
 * 0/3 89.44%, 0.1/4 83.62%, 0.1/3 75.24%, 0.3/4 (the defaults) 13.76%. 4-bit APoT alone is not warned.
 */
export function gmApotWarning(o: { method: string; filterRate?: number; bits?: number }): string | undefined {
  if (o.method !== "gm-apot") return undefined;
  const rate = o.filterRate ?? COMPRESS_DEFAULTS.filterRate, bits = o.bits ?? COMPRESS_DEFAULTS.apotBits;
  if (rate <= 0 && bits >= 4) return undefined;
  return `post-training gm-apot${rate > 0 ? ` removes ${Math.round(100 * rate)}% of the filters` : ""}${rate > 0 && bits < 4 ? " and" : ""}${bits < 4 ? ` quantizes to ${bits}-bit APoT` : ""} without retraining, which usually collapses accuracy ` +
    "(ResNet-20 at the defaults: 13.3% top-1, FP32 93.12%); train it instead with `opq train --method spq` or `--method ppq` " +
    "(GM pruning + APoT weights and activations, trained), or check this file with `opq eval`";
}

/** The command. */
export const command: Command = {
  name: "compress",
  summary: "compress an FP32 ONNX model to .opq (OPQ one-shot pruning-quantization, or FPGM + APoT)",
  usage: [
    "compress [in.onnx] [-o out.opq] [--method opq] [--sparsity P] [--bits B] [--max-layer-sparsity C] [--report r.html] [--json]",
    "compress [in.onnx] --method gm-apot [--filter-rate R] [--bits 3|4] [-o out.opq] [--report r.html] [--json]",
    "(no model: the bundled models/resnet20-fmnist.onnx → out/resnet20-fmnist.opq)",
    "defaults: --sparsity 0.5 --bits 3 --max-layer-sparsity 0.9; the paper's 0.74/3 needs finetuning: `opq finetune`",
  ].join("\n"),
  options: {
    output: { type: "string", short: "o" },
    method: { type: "string" },
    sparsity: { type: "string" },
    bits: { type: "string" },
    "max-layer-sparsity": { type: "string" },
    "filter-rate": { type: "string" },
    report: { type: "string" },
  },
  async run(args) {
    if (args.positionals.length > 1) throw new UsageError(`one input model only, got ${args.positionals.length}`);
    const input = args.positionals[0] ?? DEFAULT_MODEL;
    const output = stringOption(args, "output") ?? defaultOutput(input);
    const htmlPath = stringOption(args, "report");
    if (resolve(output) === resolve(input)) throw new UsageError(`the output would overwrite the input ${input}`);
    const opts = compressOptions(args);
    const json = wantsJson(args);
    const { readOnnx } = await import("../../format/mod.ts");
    const { compressModel, encodeCompressed, renderReportHtml } = await import("../../compressor/mod.ts");

    const warning = gmApotWarning(opts);
    if (warning) say(`warning: ${warning}`);
    const bytes = new Uint8Array(readFileSync(input));
    const model = readOnnx(bytes);
    let bar: ReturnType<typeof progress> | undefined, phase = "", last = 0;
    const result = compressModel(model, { ...opts, source: basename(input), fp32Bytes: bytes.length }, (p, done, total) => {
      if (p !== phase) { bar?.done(); bar = progress(p.padEnd(6), total, json); phase = p; last = 0; }
      bar!.tick(done - last);
      last = done;
    });
    bar?.done();
    const enc = progress("encode", 1, json);
    const out = encodeCompressed(result);
    enc.done();
    mkdirSync(dirname(resolve(output)), { recursive: true });
    writeFileSync(output, out);
    const { report } = result;
    if (htmlPath) {
      mkdirSync(dirname(resolve(htmlPath)), { recursive: true });
      writeFileSync(htmlPath, renderReportHtml(report));
    }
    if (json) {
      printJson({ input, output, ...(htmlPath ? { html: htmlPath } : {}), ...(warning ? { warnings: [warning] } : {}), ...report });
      return;
    }
    const f = report.file!;
    if (report.method === "opq") {
      say(formatTable(
        ["layer", "params", "τ LM", "τ MLE", "pred", "β-only", "achieved", "cap", "Δ", "bins", "bits/w", "prune err pred", "real", "quant mse pred", "real"],
        report.layers.map((l) => [l.name, l.params, sci(l.tauLm), sci(l.tauMle), pct(l.predictedSparsity), pct(l.analyticSparsity), pct(l.sparsity), l.capped ? "yes" : "", sci(l.step ?? undefined), l.avgBins ?? 0, l.fileBits ?? 0, sci(l.predictedPruningError), sci(l.realPruningError), sci(l.predictedQuantMse), sci(l.realQuantMse)]),
      ));
      const o = report.opq!;
      say(`\nβ ${sci(o.betaAnalytic)} (Eq. 6) → ${sci(o.beta)} after capping ${o.capped.length} layer(s) at ${pct(report.options.maxLayerSparsity as number)}${o.capped.length ? ": " + o.capped.join(", ") : ""}`);
      say(`sparsity: target ${pct(report.targetSparsity)}, Laplace-predicted ${pct(o.predictedSparsity)}, mask ${pct(o.maskSparsity)}, stored ${pct(report.sparsity)}`);
      say(`bins: (1/N̄)Σ2S_i/Δ_i = ${fmtNum(o.budgetBins)} = 2^${report.bits} (rel. error ${sci(o.budgetError)}), rounded K average ${fmtNum(o.roundedBins)}`);
      say(`errors: pruning predicted ${sci(o.predictedPruningError)} real ${sci(o.realPruningError)}; quantization Σ Δ²/12 ${sci(o.predictedQuantError)} real ${sci(o.realQuantError)}`);
    } else {
      say(formatTable(
        ["layer", "params", "filters", "removed", "scheme", "bits", "α / Δ", "stored sparsity", "mse", "bits/w"],
        report.layers.map((l) => [l.name, l.params, l.filters ?? 0, l.removedFilters ?? 0, l.scheme ?? "", l.bits, sci(l.alpha ?? l.step ?? undefined), pct(l.sparsity), sci(l.mse), l.fileBits ?? 0]),
      ));
      const g = report.gmApot!;
      say(`\nFPGM removed filters in ${g.pruned.length} conv(s); skipped ${g.skippedConvs.length}:`);
      for (const s of g.skippedConvs) say(`  ${s.node}: ${s.reason}`);
    }
    say(`\n${basename(input)} ${fmtBytes(report.fp32Bytes)} → ${output} ${fmtBytes(f.bytes)}: ${fmtNum(f.ratio)}× smaller than FP32 ` +
      `(nominal rate ${fmtNum(f.nominalRate)}×; entropy bound ${fmtBytes(Math.round(f.entropyBoundBytes))}, file/bound ${fmtNum(f.overBound)}; ${fmtNum(f.bitsPerWeight)} bits/weight) in ${fmtNum(report.seconds)} s`);
    if (htmlPath) say(`report: ${htmlPath}`);
    say(`accuracy is not measured here: check it with \`opq eval ${output}\` (one-shot compression loses accuracy at high sparsity; \`opq finetune\` recovers it)`);
  },
};
