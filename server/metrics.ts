/**
 * Prometheus metrics in the text exposition format (version 0.0.4), without a client library:
 * requests by route, model and status; request and inference latency histograms; requests in
 * flight; queue depth; models loaded; model bytes vs FP32 bytes and the bytes saved; process RSS.
 * @module
 */

/** Upper bounds (seconds) of the latency histogram buckets. */
export const LATENCY_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** What the metrics page reads from the models at scrape time. */
export interface ModelGauges {
  name: string;
  bytes: number;
  fp32Bytes: number;
  queueDepth: number;
  running: number;
  /** Model runs so far (a micro-batched run counts once) and the images they held. */
  runs: number;
  images: number;
}

class Histogram {
  readonly counts = new Array<number>(LATENCY_BUCKETS.length).fill(0);
  sum = 0;
  count = 0;
  observe(seconds: number): void {
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) if (seconds <= LATENCY_BUCKETS[i]!) this.counts[i]!++;
    this.sum += seconds;
    this.count++;
  }
}

const escapeLabel = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
const labels = (l: Record<string, string>) => {
  const parts = Object.entries(l).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
};

/** The server's metrics. One instance per app. */
export class Metrics {
  /** Requests being handled now. */
  inFlight = 0;
  private readonly requests = new Map<string, { l: Record<string, string>; n: number }>();
  private readonly requestLatency = new Map<string, { l: Record<string, string>; h: Histogram }>();
  private readonly inferLatency = new Map<string, Histogram>();

  /** Count one finished request and its latency. */
  recordRequest(route: string, model: string, status: number, seconds: number): void {
    const l = { route, model, status: String(status) };
    const key = `${route}\u0000${model}\u0000${status}`;
    const r = this.requests.get(key);
    if (r) r.n++;
    else this.requests.set(key, { l, n: 1 });
    const hk = `${route}\u0000${model}`;
    let h = this.requestLatency.get(hk);
    if (!h) this.requestLatency.set(hk, (h = { l: { route, model }, h: new Histogram() }));
    h.h.observe(seconds);
  }

  /** Record the time one model run took (kernel time, without queueing and HTTP). */
  recordInference(model: string, seconds: number): void {
    let h = this.inferLatency.get(model);
    if (!h) this.inferLatency.set(model, (h = new Histogram()));
    h.observe(seconds);
  }

  /** Total requests counted with this status (any route, any model). */
  countStatus(status: number): number {
    let n = 0;
    for (const r of this.requests.values()) if (r.l.status === String(status)) n += r.n;
    return n;
  }

  /** The exposition text. */
  render(models: readonly ModelGauges[]): string {
    const out: string[] = [];
    const head = (name: string, type: string, help: string) => out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    const histogram = (name: string, l: Record<string, string>, h: Histogram) => {
      LATENCY_BUCKETS.forEach((le, i) => out.push(`${name}_bucket${labels({ ...l, le: String(le) })} ${h.counts[i]}`));
      out.push(`${name}_bucket${labels({ ...l, le: "+Inf" })} ${h.count}`);
      out.push(`${name}_sum${labels(l)} ${h.sum}`, `${name}_count${labels(l)} ${h.count}`);
    };

    head("opq_http_requests_total", "counter", "HTTP requests answered, by route, model and status.");
    for (const { l, n } of this.requests.values()) out.push(`opq_http_requests_total${labels(l)} ${n}`);
    head("opq_http_request_duration_seconds", "histogram", "Time from request to response, by route and model.");
    for (const { l, h } of this.requestLatency.values()) histogram("opq_http_request_duration_seconds", l, h);
    head("opq_inference_duration_seconds", "histogram", "Time in the model's run, by model (no queueing, no HTTP).");
    for (const [model, h] of this.inferLatency) histogram("opq_inference_duration_seconds", { model }, h);
    head("opq_http_requests_in_flight", "gauge", "Requests being handled now.");
    out.push(`opq_http_requests_in_flight ${this.inFlight}`);
    head("opq_queue_depth", "gauge", "Infer requests waiting for a slot, by model.");
    for (const m of models) out.push(`opq_queue_depth${labels({ model: m.name })} ${m.queueDepth}`);
    head("opq_inference_running", "gauge", "Model runs in progress, by model.");
    for (const m of models) out.push(`opq_inference_running${labels({ model: m.name })} ${m.running}`);
    head("opq_inference_runs_total", "counter", "Model runs, by model (one micro-batched run counts once).");
    for (const m of models) out.push(`opq_inference_runs_total${labels({ model: m.name })} ${m.runs}`);
    head("opq_inference_images_total", "counter", "Images those runs held, by model (images / runs = mean batch).");
    for (const m of models) out.push(`opq_inference_images_total${labels({ model: m.name })} ${m.images}`);
    head("opq_models_loaded", "gauge", "Models loaded.");
    out.push(`opq_models_loaded ${models.length}`);
    head("opq_model_bytes", "gauge", "Size of the model's .opq file.");
    for (const m of models) out.push(`opq_model_bytes${labels({ model: m.name })} ${m.bytes}`);
    head("opq_model_fp32_bytes", "gauge", "Size of the model's FP32 weights before compression.");
    for (const m of models) out.push(`opq_model_fp32_bytes${labels({ model: m.name })} ${m.fp32Bytes}`);
    head("opq_model_bytes_saved", "gauge", "FP32 bytes minus .opq bytes, summed over loaded models.");
    out.push(`opq_model_bytes_saved ${models.reduce((s, m) => s + Math.max(0, m.fp32Bytes - m.bytes), 0)}`);
    const rss = residentMemoryBytes();
    if (rss !== undefined) {
      head("process_resident_memory_bytes", "gauge", "Resident set size of the server process.");
      out.push(`process_resident_memory_bytes ${rss}`);
    }
    return out.join("\n") + "\n";
  }
}

/** RSS of this process on Bun, Node and Deno, or undefined where none of them is present. */
export function residentMemoryBytes(): number | undefined {
  const g = globalThis as { process?: { memoryUsage?: () => { rss: number } }; Deno?: { memoryUsage?: () => { rss: number } } };
  try {
    if (g.Deno?.memoryUsage) return g.Deno.memoryUsage().rss;
    if (g.process?.memoryUsage) return g.process.memoryUsage().rss;
  } catch {
    // Sandboxed runtimes may refuse; the gauge is then omitted.
  }
  return undefined;
}
