/**
 * `GET /`: one self-contained HTML page (no external scripts, styles or fonts). It lists the
 * loaded models with a bar chart of .opq size against FP32 size, and a try-it panel that
 * classifies the bundled Fashion-MNIST samples through `POST /v1/models/:name/infer`, showing the
 * prediction, the server's inference time and the round trip, or an image the user draws
 * (`#draw`) or uploads (`#upload`); each model's top-1 where the file records one; a copyable curl
 * command (`#curl`). Element ids are stable: the browser tests read `#prediction` (with
 * `data-index`), `#latency`, `#curl` and `.accuracy`.
 * @module
 */

import { FAVICON_SVG } from "./routes/assets.ts";

const STYLE = `
:root { font-family: system-ui, sans-serif; color: #1d2430; background: #f6f7f9; }
body { max-width: 980px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 1.4rem; margin-bottom: 4px; } h2 { font-size: 1.1rem; margin-top: 28px; }
.muted { color: #667; font-size: 0.9rem; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #e3e6ea; font-size: 0.9rem; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.chart { background: #fff; padding: 12px; margin-top: 12px; border: 1px solid #e3e6ea; }
.bar-row { display: grid; grid-template-columns: 180px 1fr; gap: 8px; align-items: center; margin: 6px 0; }
.bar-line { display: flex; align-items: center; gap: 6px; margin: 3px 0; font-size: 12px; white-space: nowrap; }
.bar-line div { height: 14px; }
.bar-fp32 { background: #9aa5b4; } .bar-opq { background: #2f7d4f; }
.samples { display: flex; flex-wrap: wrap; gap: 8px; margin: 12px 0; }
.sample { border: 2px solid transparent; background: #fff; padding: 2px; cursor: pointer; }
.sample.selected { border-color: #2f7d4f; }
.sample canvas { display: block; width: 56px; height: 56px; image-rendering: pixelated; }
.result { background: #fff; border: 1px solid #e3e6ea; padding: 12px; min-height: 60px; }
#prediction { font-size: 1.3rem; font-weight: 600; }
.error { color: #a4262c; }
.own { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; margin: 12px 0; }
#draw { width: 168px; height: 168px; border: 1px solid #9aa5b4; background: #fff; touch-action: none; image-rendering: pixelated; cursor: crosshair; }
.own .tools { display: flex; flex-direction: column; gap: 6px; font-size: 0.9rem; }
pre { background: #fff; border: 1px solid #e3e6ea; padding: 8px; overflow-x: auto; font-size: 0.8rem; white-space: pre-wrap; word-break: break-all; }
.scroll { overflow-x: auto; }
input[type=file] { max-width: 100%; }
@media (max-width: 600px) { .bar-row { grid-template-columns: 1fr; } .bar-line { white-space: normal; } .own .tools { flex: 1 1 100%; } }
`;

const SCRIPT = `
const $ = (id) => document.getElementById(id);
const fmtBytes = (n) => n < 1024 ? n + " B" : n < 1048576 ? (n / 1024).toFixed(1) + " KiB" : (n / 1048576).toFixed(2) + " MiB";
const esc = (v) => String(v).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
const pct = (v) => v == null ? "–" : (100 * v).toFixed(1) + "%";
let samples = null;
let selected = null;

async function getJson(url, init) {
  const res = await fetch(url, init);
  const body = await res.json();
  if (!res.ok) throw new Error(body.error ? body.error.code + ": " + body.error.message : res.status + "");
  return body;
}

// Bars scale to 80% of the row so the label after the longest bar still fits.
const bar = (cls, frac, label) => "<div class=bar-line><div class=" + cls + " style='width:" + Math.max(0.3, 80 * frac) + "%'></div><span>" + esc(label) + "</span></div>";

function renderModels(models) {
  const rows = models.map((m) => "<tr><td>" + esc(m.name) + "</td><td>" + esc(m.inputs.map((i) => i.name + " " + JSON.stringify(i.shape)).join(", ")) +
    "</td><td class=num>" + fmtBytes(m.bytes) + "</td><td class=num>" + fmtBytes(m.fp32Bytes) + "</td><td class=num>" + m.ratio.toFixed(1) +
    "×</td><td class=num>" + pct(m.sparsity) + "</td><td class=num>" + esc(m.bits ?? "–") + "</td><td>" + esc(m.method ?? "–") +
    "</td><td class='num accuracy'>" + (m.accuracy ? pct(m.accuracy.top1) + " <span class=muted>(" + esc(m.accuracy.images) + " " + esc(m.accuracy.dataset) + " test images)</span>" : "<span class=muted>not measured</span>") + "</td></tr>").join("");
  $("models").innerHTML = "<div class=scroll><table><thead><tr><th>model</th><th>inputs</th><th>.opq</th><th>FP32</th><th>ratio</th><th>sparsity</th><th>bits</th><th>method</th><th>top-1</th></tr></thead><tbody>" + rows + "</tbody></table></div>";
  renderCurl(models[0]);
  const max = Math.max(1, ...models.map((m) => Math.max(m.fp32Bytes, m.bytes)));
  $("chart").innerHTML = models.map((m) => "<div class=bar-row><div>" + esc(m.name) + "</div><div class=bars>" +
    bar("bar-fp32", m.fp32Bytes / max, "FP32 " + fmtBytes(m.fp32Bytes)) +
    bar("bar-opq", m.bytes / max, ".opq " + fmtBytes(m.bytes) + " (" + m.ratio.toFixed(1) + "× smaller)") + "</div></div>").join("");
  $("model").innerHTML = models.map((m) => "<option>" + esc(m.name) + "</option>").join("");
}

function renderSamples() {
  const box = $("samples");
  box.innerHTML = "";
  for (const s of samples.samples) {
    const button = document.createElement("button");
    button.className = "sample";
    button.dataset.id = String(s.id);
    button.title = s.labelName;
    const canvas = document.createElement("canvas");
    canvas.width = samples.side; canvas.height = samples.side;
    const ctx = canvas.getContext("2d");
    const img = ctx.createImageData(samples.side, samples.side);
    s.pixels.forEach((p, i) => { img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = 255 - p; img.data[4 * i + 3] = 255; });
    ctx.putImageData(img, 0, 0);
    button.appendChild(canvas);
    button.addEventListener("click", () => classify(s, button));
    box.appendChild(button);
  }
}

function classify(sample, button) {
  for (const b of document.querySelectorAll(".sample")) b.classList.remove("selected");
  if (button) button.classList.add("selected");
  return classifyPixels(sample.pixels, sample.labelName, sample.label);
}

// pixels: side×side values 0..255, bright object on a dark ground (as Fashion-MNIST stores them).
async function classifyPixels(pixels, truthName, truth) {
  const model = $("model").value;
  const data = Array.from(pixels, (p) => (p / 255 - samples.mean) / samples.std);
  $("status").textContent = "classifying…";
  $("result").dataset.state = "busy";
  const t0 = performance.now();
  try {
    const body = await getJson("/v1/models/" + encodeURIComponent(model) + "/infer?topk=3", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ inputs: { [$("model").selectedOptions[0].dataset.input || "input"]: { shape: [1, 1, samples.side, samples.side], data } } }),
    });
    const rtt = performance.now() - t0;
    const top = body.topk[0];
    const name = (k) => k.label ?? samples.classes[k.index] ?? ("class " + k.index);
    $("prediction").textContent = name(top[0]);
    $("prediction").dataset.index = String(top[0].index);
    $("truth").textContent = truthName === undefined ? "your image" : "true label: " + truthName + (top[0].index === truth ? " ✓" : " ✗");
    $("topk").textContent = top.map((k) => name(k) + " " + (100 * k.probability).toFixed(1) + "%").join(" · ");
    $("latency").textContent = "inference " + body.timing.inferMs.toFixed(2) + " ms on the server, " + rtt.toFixed(1) + " ms round trip";
    $("status").textContent = "";
    $("result").dataset.state = "done";
  } catch (e) {
    $("status").innerHTML = "<span class=error>" + esc(e.message) + "</span>";
    $("result").dataset.state = "error";
  }
}

// The drawing pad: dark strokes on white, read back as Fashion-MNIST pixels (inverted, 28×28).
function setupOwnImage() {
  const pad = $("draw"), side = samples.side, ctx = pad.getContext("2d");
  pad.width = pad.height = side;
  const clear = () => { ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, side, side); };
  clear();
  let drawing = false;
  const at = (e) => { const r = pad.getBoundingClientRect(); return [((e.clientX - r.left) / r.width) * side, ((e.clientY - r.top) / r.height) * side]; };
  pad.addEventListener("pointerdown", (e) => { drawing = true; pad.setPointerCapture(e.pointerId); ctx.beginPath(); ctx.moveTo(...at(e)); });
  pad.addEventListener("pointermove", (e) => { if (!drawing) return; ctx.lineWidth = 2.5; ctx.lineCap = ctx.lineJoin = "round"; ctx.strokeStyle = "#000"; ctx.lineTo(...at(e)); ctx.stroke(); });
  pad.addEventListener("pointerup", () => { drawing = false; });
  $("clear").addEventListener("click", clear);
  const pixelsOf = (invert) => {
    const d = ctx.getImageData(0, 0, side, side).data, out = new Uint8Array(side * side);
    for (let i = 0; i < out.length; i++) { const g = 0.299 * d[4 * i] + 0.587 * d[4 * i + 1] + 0.114 * d[4 * i + 2]; out[i] = Math.round(invert ? 255 - g : g); }
    return out;
  };
  $("classify-own").addEventListener("click", () => classifyPixels(pixelsOf(true)));
  $("upload").addEventListener("change", async () => {
    const file = $("upload").files[0];
    if (!file) return;
    const img = await createImageBitmap(file);
    clear();
    // Fit the picture into the square, keeping its aspect ratio.
    const s = Math.min(side / img.width, side / img.height), w = img.width * s, h = img.height * s;
    ctx.drawImage(img, (side - w) / 2, (side - h) / 2, w, h);
    classifyPixels(pixelsOf($("invert").checked));
  });
}

// A curl command for the first model: the raw float32 form, zeros of the input's shape.
function renderCurl(model) {
  if (!model || !model.inputs[0]) return;
  const shape = (model.inputs[0].shape || [1]).map((d) => (typeof d === "number" && d > 0 ? d : 1));
  const bytes = 4 * shape.reduce((a, b) => a * b, 1);
  $("curl").textContent = "head -c " + bytes + " /dev/zero | curl -s -X POST --data-binary @- -H 'Content-Type: application/octet-stream' -H 'X-Shape: " + shape.join(",") + "' '" +
    location.origin + "/v1/models/" + encodeURIComponent(model.name) + "/infer?topk=3'";
}

async function copyCurl() {
  const text = $("curl").textContent;
  try { await navigator.clipboard.writeText(text); $("copy").textContent = "copied"; }
  catch { const r = document.createRange(); r.selectNodeContents($("curl")); getSelection().removeAllRanges(); getSelection().addRange(r); $("copy").textContent = "selected: press Ctrl-C"; }
}

async function start() {
  try {
    const { models } = await getJson("/v1/models");
    renderModels(models);
    [...$("model").options].forEach((o, i) => { o.dataset.input = models[i].inputs[0] ? models[i].inputs[0].name : "input"; });
    samples = await getJson("/v1/samples");
    renderSamples();
    setupOwnImage();
    document.body.dataset.ready = "true";
  } catch (e) {
    $("status").innerHTML = "<span class=error>" + esc(e.message) + "</span>";
  }
}
start();
`;

/** The page's HTML. */
export function renderPage(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>opq inference server</title>
<link rel="icon" href="data:image/svg+xml,${encodeURIComponent(FAVICON_SVG)}" type="image/svg+xml">
<style>${STYLE}</style>
</head>
<body>
<h1>opq inference server</h1>
<div class="muted">Compressed CNNs served from <code>.opq</code> files. API: <code>GET /v1/models</code>, <code>POST /v1/models/:name/infer</code>, <code>GET /metrics</code>.</div>
<h2>Models</h2>
<div id="models">loading…</div>
<div class="chart"><div class="muted">size on disk: FP32 weights (grey) vs .opq (green)</div><div id="chart"></div></div>
<h2>Try it</h2>
<label>model <select id="model"></select></label>
<div class="muted">Click a Fashion-MNIST test image to classify it, or draw or upload your own.</div>
<div id="samples" class="samples"></div>
<div class="own">
<canvas id="draw" aria-label="drawing pad"></canvas>
<div class="tools">
<button id="classify-own">classify drawing</button>
<button id="clear">clear</button>
<label>upload an image <input id="upload" type="file" accept="image/*"></label>
<label><input id="invert" type="checkbox" checked> dark object on a light ground (invert)</label>
</div>
</div>
<div id="result" class="result" data-state="idle">
<div id="prediction"></div>
<div id="truth" class="muted"></div>
<div id="topk" class="muted"></div>
<div id="latency" class="muted"></div>
<div id="status"></div>
</div>
<h2>From the command line</h2>
<div class="muted">The same API with curl (a blank image in the raw float32 form; JSON and msgpack work too, see <a href="/openapi.json">/openapi.json</a>):</div>
<pre id="curl"></pre>
<button id="copy" onclick="copyCurl()">copy</button>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
