/**
 * The report as one self-contained HTML page: summary, inline SVG bar charts (per-layer sparsity,
 * bits, predicted against real errors) and the per-layer table. No scripts, fonts or external assets.
 * @module
 */
import type { CompressReport, LayerReport } from "./report.ts";

/** Series colours: predicted / nominal first, real / achieved second, a third for extras. */
const COLORS = ["#8fa8c8", "#d9534f", "#5cb85c"] as const;

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const num = (v: number | undefined | null, digits = 3) => (v === undefined || v === null || Number.isNaN(v) ? "–" : Math.abs(v) !== 0 && (Math.abs(v) < 1e-2 || Math.abs(v) >= 1e5) ? v.toExponential(2) : v.toFixed(digits));

/** A grouped bar chart: one group per layer, one bar per series; `log` plots log10 of positive values. */
export function barChart(title: string, labels: string[], series: { name: string; values: (number | undefined)[] }[], opts: { log?: boolean; max?: number; line?: number } = {}): string {
  const W = Math.max(480, labels.length * 14 * series.length + 80), left = 56, top = 28;
  // Room below the axis for the layer names, drawn at 45°.
  const bottom = 16 + Math.min(140, 5.2 * Math.max(1, ...labels.map((l) => l.length))), H = 196 + bottom;
  const f = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? undefined : opts.log ? (v > 0 ? Math.log10(v) : undefined) : v);
  const all = series.flatMap((s) => s.values.map(f)).filter((v): v is number => v !== undefined);
  // Log axes span whole decades, so every tick is a power of ten.
  const hi = opts.max ?? (all.length ? (opts.log ? Math.ceil(Math.max(...all)) : Math.max(...all)) : 1);
  const lo = opts.log ? (all.length ? Math.floor(Math.min(...all)) : 0) : 0;
  const y = (v: number) => top + (H - top - bottom) * (1 - (v - lo) / (hi - lo || 1));
  const gw = (W - left - 8) / Math.max(1, labels.length), bw = (gw * 0.8) / series.length;
  const bars = labels.flatMap((label, i) => series.map((s, k) => {
    const v = f(s.values[i]);
    if (v === undefined) return "";
    const x = left + i * gw + gw * 0.1 + k * bw;
    return `<rect x="${x.toFixed(1)}" y="${y(v).toFixed(1)}" width="${bw.toFixed(1)}" height="${Math.max(0, y(lo) - y(v)).toFixed(1)}" fill="${COLORS[k % 3]}"><title>${esc(label)} ${esc(s.name)}: ${num(s.values[i])}</title></rect>`;
  }));
  const tickAt = opts.log ? Array.from({ length: hi - lo + 1 }, (_, k) => lo + k) : [lo, (lo + hi) / 2, hi];
  const ticks = tickAt.map((v) => `<text x="${left - 4}" y="${y(v) + 4}" text-anchor="end">${opts.log ? `1e${v}` : num(v, 2)}</text>`);
  const line = opts.line === undefined ? "" : `<line x1="${left}" x2="${W - 8}" y1="${y(opts.line)}" y2="${y(opts.line)}" stroke="#333" stroke-dasharray="4 3"/>`;
  const legend = series.map((s, k) => `<rect x="${left + k * 150}" y="6" width="10" height="10" fill="${COLORS[k % 3]}"/><text x="${left + k * 150 + 14}" y="15">${esc(s.name)}</text>`);
  return `<figure><figcaption>${esc(title)}</figcaption><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" style="max-width:100%;height:auto" font-size="10" font-family="sans-serif">` +
    `<line x1="${left}" x2="${left}" y1="${top}" y2="${H - bottom}" stroke="#999"/><line x1="${left}" x2="${W - 8}" y1="${y(lo)}" y2="${y(lo)}" stroke="#999"/>` +
    ticks.join("") + bars.join("") + line + legend.join("") +
    labels.map((l, i) => { const x = left + i * gw + gw / 2, yl = H - bottom + 10; return `<text x="${x.toFixed(1)}" y="${yl}" text-anchor="end" transform="rotate(-45 ${x.toFixed(1)} ${yl})">${esc(l)}</text>`; }).join("") + `</svg></figure>`;
}

/** One point of a size–accuracy plot: a series name, file bytes (log x) and top-1 (y). */
export interface SizeAccuracyPoint {
  series: string;
  label: string;
  bytes: number;
  top1: number;
}

/** A size–accuracy scatter: log10 bytes across, top-1 up, one colour per series, points of a series joined in size order. */
export function sizeAccuracyPlot(title: string, points: SizeAccuracyPoint[]): string {
  const W = 640, H = 360, left = 56, bottom = 36, top = 28, right = 12;
  const series = [...new Set(points.map((p) => p.series))];
  const xs = points.map((p) => Math.log10(p.bytes)), lo = Math.floor(Math.min(...xs, 3) * 2) / 2, hi = Math.ceil(Math.max(...xs, 4) * 2) / 2;
  const x = (b: number) => left + ((Math.log10(b) - lo) / (hi - lo || 1)) * (W - left - right);
  const y = (a: number) => top + (1 - a) * (H - top - bottom);
  const ticksX = Array.from({ length: Math.round((hi - lo) * 2) + 1 }, (_, k) => lo + k / 2);
  const ticksY = [0, 0.25, 0.5, 0.75, 1];
  const marks = series.map((name, k) => {
    const ps = points.filter((p) => p.series === name).sort((a, b) => a.bytes - b.bytes);
    const path = ps.map((p, i) => `${i ? "L" : "M"}${x(p.bytes).toFixed(1)},${y(p.top1).toFixed(1)}`).join("");
    return `<path d="${path}" fill="none" stroke="${COLORS[k % 3]}" stroke-width="1"/>` +
      ps.map((p) => `<circle cx="${x(p.bytes).toFixed(1)}" cy="${y(p.top1).toFixed(1)}" r="3.5" fill="${COLORS[k % 3]}"><title>${esc(`${name} ${p.label}: ${p.bytes} B, top-1 ${(100 * p.top1).toFixed(2)}%`)}</title></circle>`).join("");
  });
  const legend = series.map((s2, k) => `<rect x="${left + k * 200}" y="6" width="10" height="10" fill="${COLORS[k % 3]}"/><text x="${left + k * 200 + 14}" y="15">${esc(s2)}</text>`);
  return `<figure><figcaption>${esc(title)}</figcaption><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" style="max-width:100%;height:auto" font-size="10" font-family="sans-serif">` +
    `<line x1="${left}" x2="${left}" y1="${top}" y2="${H - bottom}" stroke="#999"/><line x1="${left}" x2="${W - right}" y1="${H - bottom}" y2="${H - bottom}" stroke="#999"/>` +
    ticksX.map((t) => `<text x="${x(10 ** t).toFixed(1)}" y="${H - bottom + 14}" text-anchor="middle">${t % 1 ? "" : `1e${t}`}</text><line x1="${x(10 ** t).toFixed(1)}" x2="${x(10 ** t).toFixed(1)}" y1="${H - bottom}" y2="${H - bottom + 3}" stroke="#999"/>`).join("") +
    ticksY.map((t) => `<text x="${left - 4}" y="${y(t) + 4}" text-anchor="end">${100 * t}%</text>`).join("") +
    `<text x="${(W + left) / 2}" y="${H - 4}" text-anchor="middle">file bytes (log)</text>` + marks.join("") + legend.join("") + `</svg></figure>`;
}

/** A page of size–accuracy plots (one per model) and the table behind them (bench/calibration-sweep.ts). */
export function renderSweepHtml(title: string, plots: { model: string; points: SizeAccuracyPoint[] }[]): string {
  const rows = plots.flatMap((p) => p.points.map((q) => `<tr><td>${esc(p.model)}</td><td>${esc(q.series)}</td><td>${esc(q.label)}</td><td>${q.bytes}</td><td>${(100 * q.top1).toFixed(2)}%</td></tr>`));
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font:14px sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}figure{margin:1em 0}figcaption{font-weight:bold}</style>
</head><body><h1>${esc(title)}</h1>
${plots.map((p) => sizeAccuracyPlot(`${p.model}: top-1 against file size`, p.points)).join("\n")}
<table><thead><tr><th>model</th><th>series</th><th>setting</th><th>bytes</th><th>top-1</th></tr></thead><tbody>${rows.join("")}</tbody></table>
</body></html>
`;
}

function layerTable(r: CompressReport): string {
  const opq = r.method === "opq";
  const cols: [string, (l: LayerReport) => string][] = [
    ["#", () => ""], ["layer", (l) => esc(shortName(l))], ["weight", (l) => esc(l.name)], ["op", (l) => l.opType], ["params", (l) => String(l.params)],
    ...(opq
      ? ([["τ LM", (l) => num(l.tauLm)], ["τ MLE", (l) => num(l.tauMle)], ["predicted", (l) => num(l.predictedSparsity)], ["β only", (l) => num(l.analyticSparsity)],
        ["achieved", (l) => num(l.sparsity)], ["capped", (l) => (l.capped ? "yes" : "")], ["Δ", (l) => num(l.step)], ["avg bins", (l) => num(l.avgBins, 2)]] as [string, (l: LayerReport) => string][])
      : ([["filters", (l) => `${l.filters} − ${l.removedFilters}`], ["scheme", (l) => l.scheme ?? ""], ["α / Δ", (l) => num(l.alpha ?? l.step)], ["sparsity", (l) => num(l.sparsity)], ["mse", (l) => num(l.mse)]] as [string, (l: LayerReport) => string][])),
    ["bits", (l) => num(l.bits, 2)], ["file bits/w", (l) => num(l.fileBits, 2)],
  ];
  const rows = r.layers.map((l, i) => `<tr>${cols.map(([, f], k) => `<td>${k === 0 ? i : f(l)}</td>`).join("")}</tr>`);
  return `<div class="scroll"><table><thead><tr>${cols.map(([h]) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>${rows.join("")}</tbody></table></div>`;
}

/** A layer's node name without the exporter's leading "/" and trailing "/Conv" (the op column says it). */
export function shortName(l: LayerReport): string {
  const n = l.node || l.name;
  return n.replace(/^\//, "").replace(new RegExp(`/${l.opType}$`), "") || n;
}

/**
 * One layer's weight histogram with the fitted Laplace density (scale τ of the LM fit; expected
 * count per bin N·w·e^(−|x|/τ)/(2τ), OPQ Eq. 1) and the pruning threshold ±β drawn.
 */
export function histogramChart(l: LayerReport, beta?: number): string {
  const h = l.histogram;
  if (!h || h.hi <= h.lo) return "";
  const W = 280, H = 130, left = 6, right = 6, top = 6, bottom = 18, bins = h.counts.length, width = (h.hi - h.lo) / bins;
  const tau = l.tauLm ?? l.tauMle;
  const density = (x: number) => (tau && tau > 0 ? (l.params * width * Math.exp(-Math.abs(x) / tau)) / (2 * tau) : 0);
  const peak = Math.max(1, ...h.counts, density(0));
  const X = (x: number) => left + ((x - h.lo) / (h.hi - h.lo)) * (W - left - right), Y = (c: number) => top + (H - top - bottom) * (1 - c / peak);
  const bars = h.counts.map((c, i) => `<rect x="${X(h.lo + i * width).toFixed(1)}" y="${Y(c).toFixed(1)}" width="${Math.max(0.5, X(h.lo + width) - X(h.lo) - 0.5).toFixed(1)}" height="${(Y(0) - Y(c)).toFixed(1)}" fill="${COLORS[0]}"/>`).join("");
  const curve = tau ? `<polyline fill="none" stroke="${COLORS[1]}" stroke-width="1.5" points="${Array.from({ length: 121 }, (_, k) => { const x = h.lo + (k / 120) * (h.hi - h.lo); return `${X(x).toFixed(1)},${Y(Math.min(peak, density(x))).toFixed(1)}`; }).join(" ")}"/>` : "";
  const t = l.threshold ?? beta;
  const cut = t !== undefined && t < h.hi ? [-t, t].map((x) => `<line x1="${X(x).toFixed(1)}" x2="${X(x).toFixed(1)}" y1="${top}" y2="${Y(0)}" stroke="#333" stroke-dasharray="3 2"/>`).join("") : "";
  const caption = `${esc(shortName(l))}: ${l.params} weights, kept ${num(100 * (1 - l.sparsity), 1)}%${tau ? `, τ ${num(tau)}` : ""}${t !== undefined ? `, threshold ${num(t)}${l.capped ? " (cap)" : ""}` : ""}`;
  return `<figure class="hist"><figcaption>${caption}</figcaption><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-size="9" font-family="sans-serif">` +
    bars + curve + cut + `<line x1="${left}" x2="${W - right}" y1="${Y(0)}" y2="${Y(0)}" stroke="#999"/>` +
    `<text x="${left}" y="${H - 4}">${num(h.lo)}</text><text x="${W - right}" y="${H - 4}" text-anchor="end">${num(h.hi)}</text><text x="${W / 2}" y="${H - 4}" text-anchor="middle">0</text></svg></figure>`;
}

/** A line chart of per-step loss. */
function lossChart(losses: number[]): string {
  const W = 560, H = 180, left = 48, bottom = 22, top = 10, max = Math.max(...losses), min = Math.min(0, ...losses);
  const X = (i: number) => left + (i / Math.max(1, losses.length - 1)) * (W - left - 8), Y = (v: number) => top + (H - top - bottom) * (1 - (v - min) / (max - min || 1));
  return `<figure><figcaption>Training loss per step</figcaption><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-size="10" font-family="sans-serif">` +
    `<line x1="${left}" x2="${left}" y1="${top}" y2="${H - bottom}" stroke="#999"/><line x1="${left}" x2="${W - 8}" y1="${Y(min)}" y2="${Y(min)}" stroke="#999"/>` +
    `<text x="${left - 4}" y="${Y(max) + 4}" text-anchor="end">${num(max, 2)}</text><text x="${left - 4}" y="${Y(min) + 4}" text-anchor="end">${num(min, 2)}</text>` +
    `<text x="${W - 8}" y="${H - 6}" text-anchor="end">step ${losses.length}</text>` +
    `<polyline fill="none" stroke="${COLORS[1]}" stroke-width="1.5" points="${losses.map((v, i) => `${X(i).toFixed(1)},${Y(v).toFixed(1)}`).join(" ")}"/></svg></figure>`;
}

/** The byte breakdown `opq inspect` prints, as a table with a stacked bar. */
function breakdownTable(b: NonNullable<NonNullable<CompressReport["file"]>["breakdown"]>): string {
  const parts = ["indices", "codes", "codebooks", "graph", "kept", "framing"] as const;
  const colors = ["#2f7d4f", "#8fa8c8", "#d9a441", "#9a6fb0", "#d9534f", "#999"];
  const bar = parts.map((k, i) => `<span style="display:inline-block;height:14px;width:${((100 * b[k]) / b.total).toFixed(2)}%;background:${colors[i]}" title="${k}"></span>`).join("");
  return `<div class="stack">${bar}</div><div class="scroll"><table><thead><tr><th>part</th><th>bytes</th><th>share</th></tr></thead><tbody>` +
    parts.map((k, i) => `<tr><td style="text-align:left"><span style="color:${colors[i]}">■</span> ${k}</td><td>${b[k]}</td><td>${((100 * b[k]) / b.total).toFixed(1)}%</td></tr>`).join("") +
    `<tr><th style="text-align:left">total</th><th>${b.total}</th><th>100%</th></tr></tbody></table></div>`;
}

/** Render a CompressReport as a self-contained HTML page. */
export function renderReportHtml(r: CompressReport): string {
  const labels = r.layers.map(shortName);
  const f = r.file;
  const summary: [string, string][] = [
    ["source", esc(r.source || "–")], ["method", r.method], ["weights compressed", `${r.weights} of ${r.params} parameters`],
    ["target / achieved sparsity", `${num(r.targetSparsity)} / ${num(r.sparsity)}`], ["nominal bits", String(r.bits)],
    ...(f ? ([["FP32 → .opq", `${f.bytes} bytes, ${num(f.ratio, 2)}× smaller than FP32 (${r.fp32Bytes} bytes)`], ["nominal rate 32/((1−p)·B)", `${num(f.nominalRate, 2)}×`],
      ["entropy bound", `${Math.round(f.entropyBoundBytes)} bytes (file is ${num(f.overBound, 3)}× the bound)`], ["bits per weight in the file", num(f.bitsPerWeight, 3)]] as [string, string][]) : []),
    ...(r.opq ? ([["β (Eq. 6) / after cap", `${num(r.opq.betaAnalytic)} / ${num(r.opq.beta)}`], ["capped layers", esc(r.opq.capped.join(", ") || "none")],
      ["Eq. 9 budget", `${num(r.opq.budgetBins, 6)} bins = 2^${r.bits} (relative error ${num(r.opq.budgetError)})`],
      ["pruning error predicted / real", `${num(r.opq.predictedPruningError)} / ${num(r.opq.realPruningError)}`],
      ["quantization error Σ Δ²/12 / real", `${num(r.opq.predictedQuantError)} / ${num(r.opq.realQuantError)}`]] as [string, string][]) : []),
    ...(r.gmApot ? ([["filter-pruned convs", String(r.gmApot.pruned.length)], ["skipped convs", esc(r.gmApot.skippedConvs.map((s) => `${s.node} (${s.reason})`).join("; ") || "none")]] as [string, string][]) : []),
  ];
  const charts = r.opq
    ? [
      barChart("Sparsity per layer (dashed: cap)", labels, [{ name: "Laplace-predicted", values: r.layers.map((l) => l.predictedSparsity) }, { name: "achieved", values: r.layers.map((l) => l.sparsity) }, { name: "β only (no cap)", values: r.layers.map((l) => l.analyticSparsity) }], { max: 1, line: r.options.maxLayerSparsity as number }),
      barChart("Bits per layer", labels, [{ name: "log2 avg bins (Eq. 8)", values: r.layers.map((l) => l.bits) }, { name: "file bits per weight", values: r.layers.map((l) => l.fileBits) }]),
      barChart("Pruning error per layer, Σ W² (log10)", labels, [{ name: "predicted (Eq. 2)", values: r.layers.map((l) => l.predictedPruningError) }, { name: "real", values: r.layers.map((l) => l.realPruningError) }], { log: true }),
      barChart("Quantization MSE per layer (log10)", labels, [{ name: "Δ²/12 (Eq. 12)", values: r.layers.map((l) => l.predictedQuantMse) }, { name: "real (Eq. 11)", values: r.layers.map((l) => l.realQuantMse) }], { log: true }),
    ]
    : [
      barChart("Sparsity per layer (removed filters + zero codes)", labels, [{ name: "sparsity", values: r.layers.map((l) => l.sparsity) }], { max: 1 }),
      barChart("Bits per layer", labels, [{ name: "bit width", values: r.layers.map((l) => l.bits) }, { name: "file bits per weight", values: r.layers.map((l) => l.fileBits) }]),
      barChart("Quantization MSE per layer (log10)", labels, [{ name: "MSE", values: r.layers.map((l) => l.mse) }], { log: true }),
    ];
  const c = r.calibration;
  if (c) {
    charts.push(barChart(`Layer output error against FP32 on ${c.images} calibration images (log10)`, c.layers.map((l) => l.name), [{ name: "one-shot", values: c.layers.map((l) => l.errorBefore) }, { name: "calibrated", values: c.layers.map((l) => l.errorAfter) }], { log: true }));
    summary.push(["calibration", esc(`${c.data}: ${c.seconds.toFixed(1)} s${c.uncalibratedBytes ? `; one-shot file ${c.uncalibratedBytes} bytes` : ""}`)]);
  }
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>opq compress report – ${esc(r.source)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:14px sans-serif;margin:1em auto;padding:0 1em;max-width:1200px}table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:nth-child(2),th:nth-child(2){text-align:left}figure{margin:1em 0;overflow-x:auto}figcaption{font-weight:bold}.scroll{overflow-x:auto;max-width:100%}.hists{display:grid;grid-template-columns:repeat(auto-fill,minmax(280px,1fr));gap:8px}.hist figcaption{font-weight:normal;font-size:11px}.hist svg{max-width:100%;height:auto}.stack{display:flex;width:100%;max-width:600px;margin:6px 0}code{word-break:break-all}</style>
</head><body><h1>opq compress report</h1>
${r.run ? `<p>made by <code>${esc(r.run.command)}</code> with opq ${esc(r.run.version)}</p>` : ""}
${r.accuracy ? `<h2>Accuracy</h2><p>top-1 ${num(100 * r.accuracy.top1, 2)}% on ${r.accuracy.images} ${esc(r.accuracy.dataset)} test images${r.accuracy.top1Before !== undefined ? ` (one-shot, before finetuning: ${num(100 * r.accuracy.top1Before, 2)}%)` : ""}</p>` : "<p>accuracy not measured in this run (<code>opq eval</code> measures it)</p>"}
${r.losses?.length ? lossChart(r.losses) : ""}
<h2>Summary</h2>
<div class="scroll"><table>${summary.map(([k, v]) => `<tr><th style="text-align:left">${esc(k)}</th><td style="text-align:left">${v}</td></tr>`).join("")}</table></div>
<h2>Options</h2>
<div class="scroll"><table>${Object.entries(r.options).map(([k, v]) => `<tr><th style="text-align:left">${esc(k)}</th><td style="text-align:left">${esc(String(v))}</td></tr>`).join("")}</table></div>
${f?.breakdown ? `<h2>Where the bytes went</h2>${breakdownTable(f.breakdown)}` : ""}
<h2>Per layer</h2>
${charts.join("\n")}
<h2>Weight histograms</h2>
<p>Bars: each layer's weights; red: the fitted Laplace density; dashed: the pruning threshold (weights between the lines are pruned).</p>
<div class="hists">${r.layers.map((l) => histogramChart(l, r.opq?.beta)).join("")}</div>
<h2>Layers</h2>${layerTable(r)}
</body></html>
`;
}
