/**
 * The GPU device of the webgpu backend: finding an adapter, proving it computes (a self-check at
 * creation), and the per-backend machinery every kernel shares: the pipeline cache, one command
 * encoder and compute pass per run (submitted once, when a value is read back), uploads, buffer
 * growth and the counters the bench reports.
 *
 * An adapter can exist and still compute garbage: bun-webgpu on a machine whose only Vulkan
 * device is Mesa's lavapipe falls back to a null backend whose dispatches write nothing. So
 * `acquireDevice` runs a tiny known computation and refuses the device (BACKEND_UNAVAILABLE, with
 * the adapter's vendor/architecture/fallback flag and what was wrong) unless every value is right.
 * @module
 */
import { OpqRuntimeError, RUNTIME_ERROR_CODES } from "../errors.ts";

/** How createWebGpuBackend finds its device (every field optional). */
export interface WebGpuOptions {
  /** Use this adapter instead of requesting one (tests inject faulty ones). */
  adapter?: GPUAdapter;
  /** Use this device (of `adapter`) instead of requesting one; it is self-checked like any other. */
  device?: GPUDevice;
  /** The `navigator.gpu` to ask (default: the global one). */
  gpu?: GPU;
  /** Adapter preference passed to requestAdapter. */
  powerPreference?: GPUPowerPreference;
  /**
   * Graph outputs of the model (the session passes them): their buffers are never reused within
   * a run, since they are read after the last step.
   */
  graphOutputs?: readonly string[];
}

/** What the session reports about the adapter. */
export interface AdapterReport {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter: boolean;
  features: string[];
}

/** Counters of one backend, cumulative (the bench reports differences per run). Live: read it any time. */
export interface GpuStats {
  /** Compute dispatches encoded. */
  dispatches: number;
  /** Queue submissions (one per read-back batch). */
  submits: number;
  /** Bytes written to the GPU by runs: host inputs of GPU kernels and kernel parameters. */
  uploadBytes: number;
  /** Bytes read back to the host. */
  downloadBytes: number;
  /** Pipelines found in the cache / built. */
  pipelineHits: number;
  pipelineMisses: number;
  /** Bytes of GPU buffers currently held (weights, activations, uploads, parameters, staging). */
  gpuBytes: number;
  /** The largest `gpuBytes` seen. */
  peakGpuBytes: number;
}

const hasNavigatorGpu = () => typeof navigator !== "undefined" && (navigator as { gpu?: GPU }).gpu !== undefined;

/** True if this engine exposes `navigator.gpu` at all (Deno does; Bun does not, here). */
export function webGpuPresent(): boolean {
  return hasNavigatorGpu();
}

function adapterReport(adapter: GPUAdapter): AdapterReport {
  const info = (adapter as { info?: GPUAdapterInfo }).info;
  return {
    vendor: info?.vendor ?? "",
    architecture: info?.architecture ?? "",
    device: info?.device ?? "",
    description: info?.description ?? "",
    isFallbackAdapter: Boolean((info as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter ?? (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter),
    features: [...adapter.features].map(String).sort(),
  };
}

const unavailable = (message: string, details: Record<string, unknown>, cause?: unknown) =>
  new OpqRuntimeError(RUNTIME_ERROR_CODES.BACKEND_UNAVAILABLE, message, { backend: "webgpu", ...details }, cause ? { cause } : undefined);

/** Elements of the self-check: enough to cover several workgroups and a partial last one. */
const CHECK_N = 1000;
const CHECK_SHADER = /* wgsl */ `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x;
  if (i >= ${CHECK_N}u) { return; }
  y[i] = x[i] * 3.0 + f32(i % 7u);
}`;

/**
 * Run the self-check on `device`: y = 3x + (i mod 7) over 1000 elements, every value exact in f32.
 * Returns undefined if right, else what was wrong.
 */
export async function selfCheck(device: GPUDevice): Promise<string | undefined> {
  const x = new Float32Array(CHECK_N);
  for (let i = 0; i < CHECK_N; i++) x[i] = (i % 101) * 0.25 - 5;
  device.pushErrorScope("validation");
  const bytes = CHECK_N * 4;
  const xb = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  const yb = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const rb = device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    device.queue.writeBuffer(xb, 0, x);
    const pipeline = device.createComputePipeline({ layout: "auto", compute: { module: device.createShaderModule({ code: CHECK_SHADER }), entryPoint: "main" } });
    const group = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: xb } }, { binding: 1, resource: { buffer: yb } }] });
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(Math.ceil(CHECK_N / 64));
    pass.end();
    enc.copyBufferToBuffer(yb, 0, rb, 0, bytes);
    device.queue.submit([enc.finish()]);
    const err = await device.popErrorScope();
    if (err) return `validation error: ${err.message}`;
    await rb.mapAsync(GPUMapMode.READ);
    const y = new Float32Array(rb.getMappedRange().slice(0));
    rb.unmap();
    let wrong = 0, first = -1;
    for (let i = 0; i < CHECK_N; i++) {
      if (y[i] !== x[i]! * 3 + (i % 7)) { wrong++; if (first < 0) first = i; }
    }
    return wrong === 0 ? undefined : `${wrong} of ${CHECK_N} values wrong (y[${first}] = ${y[first]}, expected ${x[first]! * 3 + (first % 7)})`;
  } catch (e) {
    return `self-check failed: ${(e as Error)?.message ?? String(e)}`;
  } finally {
    xb.destroy();
    yb.destroy();
    rb.destroy();
  }
}

/** A device that passed the self-check, with what is reported about its adapter. */
export interface CheckedDevice {
  device: GPUDevice;
  adapter: AdapterReport;
  /** The device has `shader-f16` enabled. */
  f16: boolean;
}

/** The process's shared device (requesting an adapter costs ~0.5 s under Deno; every session shares one). */
let shared: Promise<CheckedDevice> | undefined;

/**
 * A self-checked device: the injected adapter/device if given, else the process's shared one.
 * Throws OpqRuntimeError BACKEND_UNAVAILABLE when there is no WebGPU, no adapter, no device, or
 * the device computes wrong.
 */
export function acquireDevice(options: WebGpuOptions = {}): Promise<CheckedDevice> {
  if (options.adapter || options.device || options.gpu) return openDevice(options);
  shared ??= openDevice(options);
  // A refusal is not cached as a device: later calls retry (the error is the same, but cheap to learn again).
  shared.catch(() => { shared = undefined; });
  return shared;
}

async function openDevice(options: WebGpuOptions): Promise<CheckedDevice> {
  const gpu = options.gpu ?? (hasNavigatorGpu() ? (navigator as { gpu: GPU }).gpu : undefined);
  let adapter = options.adapter;
  if (!adapter) {
    if (!gpu) throw unavailable("webgpu: this engine has no navigator.gpu", { reason: "no navigator.gpu" });
    try {
      adapter = (await gpu.requestAdapter(options.powerPreference ? { powerPreference: options.powerPreference } : undefined)) ?? undefined;
    } catch (e) {
      throw unavailable(`webgpu: requestAdapter failed: ${(e as Error)?.message ?? e}`, { reason: "requestAdapter failed" }, e);
    }
    if (!adapter) throw unavailable("webgpu: no GPU adapter (on Linux without a GPU, install mesa-vulkan-drivers for lavapipe)", { reason: "no adapter" });
  }
  const report = adapterReport(adapter);
  const f16 = report.features.includes("shader-f16");
  let device = options.device;
  if (!device) {
    try {
      device = await adapter.requestDevice({
        requiredFeatures: f16 ? ["shader-f16" as GPUFeatureName] : [],
        requiredLimits: {
          maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
          maxBufferSize: adapter.limits.maxBufferSize,
        },
      });
    } catch (e) {
      throw unavailable(`webgpu: requestDevice failed on ${describeAdapter(report)}: ${(e as Error)?.message ?? e}`, { ...report, reason: "requestDevice failed" }, e);
    }
  }
  const wrong = await selfCheck(device);
  if (wrong) {
    throw unavailable(`webgpu: adapter ${describeAdapter(report)} failed the self-check: ${wrong}`, {
      vendor: report.vendor, architecture: report.architecture, description: report.description, isFallbackAdapter: report.isFallbackAdapter, reason: wrong,
    });
  }
  return { device, adapter: report, f16: f16 && device.features.has("shader-f16") };
}

/** One line naming an adapter. */
export function describeAdapter(a: AdapterReport): string {
  const name = a.description || [a.vendor, a.architecture].filter(Boolean).join(" ") || "unnamed adapter";
  return `${name}${a.isFallbackAdapter ? " (fallback adapter)" : ""}`;
}
