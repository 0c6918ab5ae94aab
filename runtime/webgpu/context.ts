/**
 * What every webgpu kernel shares within one backend: the device, the pipeline cache, the one
 * command encoder and compute pass a run records into (submitted when a value is read back, so a
 * run whose nodes all run on the GPU is one submit), the value slots planned at bind, uploads,
 * read-back, and the counters (GpuStats).
 *
 * Kernel conventions (WGSL_PRELUDE): binding 0 is a 256-byte read-only storage block of u32
 * parameters (`pu(i)`, floats by bitcast `pf(i)`; a storage array of u32 is read with a plain index,
 * where a uniform array would need 16-byte elements), parameter 0 is the number
 * of invocations; bindings 1.. are
 * storage buffers in the order the kernel passes them, the last one written. Workgroups of 64 on
 * a 2-D grid (x up to 65535) so large outputs fit the dispatch limits.
 * @module
 */
import type { DeviceTensor, DeviceValue } from "../backend.ts";
import type { Tensor } from "../../format/mod.ts";
import type { GpuStats } from "./device.ts";
import { envVar } from "../wasm/module.ts";

/** Invocations per workgroup of every kernel. */
export const WORKGROUP = 64;
/** u32 parameters per dispatch (the block is 256 bytes, the storage offset alignment WebGPU guarantees). */
export const PARAM_WORDS = 64;
const PARAM_BYTES = PARAM_WORDS * 4;
const MAX_GROUPS_X = 65535;
/** OPQ_WEBGPU_DEBUG=1 prints WGSL compiler messages. */
const DEBUG_SHADERS = envVar("OPQ_WEBGPU_DEBUG") === "1";

/** Shared WGSL: the parameter block, its readers and the flat invocation index. */
export const WGSL_PRELUDE = /* wgsl */ `
@group(0) @binding(0) var<storage, read> P: array<u32, ${PARAM_WORDS}>;
fn pu(i: u32) -> u32 { return P[i]; }
fn pi(i: u32) -> i32 { return bitcast<i32>(pu(i)); }
fn pf(i: u32) -> f32 { return bitcast<f32>(pu(i)); }
`;

/** The entry point header: `i` is the flat invocation index; invocations past `pu(0)` return. */
export const WGSL_MAIN = /* wgsl */ `
@compute @workgroup_size(${WORKGROUP})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * ${WORKGROUP}u + lid;
  if (i >= pu(0u)) { return; }
`;

/** A kernel binding: a whole buffer, or a range of one (`offset` a multiple of 256). */
export type Binding = GPUBuffer | GPUBufferBinding;

/** Parameters of one dispatch, filled by index (floats and signed ints stored by bit pattern). */
export class Params {
  readonly u = new Uint32Array(PARAM_WORDS);
  readonly f = new Float32Array(this.u.buffer);
  readonly s = new Int32Array(this.u.buffer);
}

/** Bytes of a uniform window (the binding size WebGPU guarantees). */
export const UNIFORM_WINDOW = 65536;

/** Largest finite float32: the "no clamp" bounds (WGSL may assume no infinities). */
export const F32_MAX = 3.4028234663852886e38;

const EMPTY = new Float32Array(0);

/** A float32 tensor whose values live in a GPU buffer. */
export interface GpuTensor extends DeviceTensor {
  gpu: GpuValue;
}

/** The GPU side of a device tensor. */
export interface GpuValue extends DeviceValue {
  readonly buffer: GPUBuffer;
  readonly elements: number;
}

/** True if `t` is a tensor of this backend's GPU memory. */
export function isGpuTensor(t: Tensor | undefined): t is GpuTensor {
  return t !== undefined && (t as Partial<GpuTensor>).gpu?.buffer !== undefined;
}

/** Uniform weights gathered into one buffer (GpuContext.uniformSlice). */
interface Arena {
  parts: { words: Uint32Array; at: number }[];
  vec4: number;
  buffer?: GPUBuffer;
}

interface PendingRead {
  staging: GPUBuffer;
  bytes: number;
  done: (v: Float32Array) => void;
  fail: (e: unknown) => void;
}

/** Pipelines by key, per device: sessions on the shared device reuse each other's (WGSL does not depend on weights). */
const PIPELINES = new WeakMap<GPUDevice, Map<string, { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }>>();

/** The per-backend GPU state kernels record into. */
export class GpuContext {
  readonly stats: GpuStats = { dispatches: 0, submits: 0, uploadBytes: 0, downloadBytes: 0, pipelineHits: 0, pipelineMisses: 0, gpuBytes: 0, peakGpuBytes: 0 };
  #pipelines: Map<string, { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }>;
  #encoder: GPUCommandEncoder | undefined;
  #pass: GPUComputePassEncoder | undefined;
  #reads: PendingRead[] = [];
  #flushQueued = false;
  /** Buffers replaced while commands may still reference them: destroyed after the next submit. */
  #retired: GPUBuffer[] = [];
  #staging: GPUBuffer[] = [];
  #owned = new Set<GPUBuffer>();
  #arena: Arena | undefined;

  constructor(readonly device: GPUDevice, readonly f16: boolean) {
    let cache = PIPELINES.get(device);
    if (!cache) PIPELINES.set(device, cache = new Map());
    this.#pipelines = cache;
  }

  /** The pipeline of `key`, built from `source()` only on a cache miss. */
  pipeline(key: string, source: () => string): { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout } {
    const hit = this.#pipelines.get(key);
    if (hit) {
      this.stats.pipelineHits++;
      return hit;
    }
    this.stats.pipelineMisses++;
    const code = source();
    const module = this.device.createShaderModule({ code, label: key });
    if (DEBUG_SHADERS) {
      void module.getCompilationInfo().then((info) => {
        for (const m of info.messages) console.error(`[${key}] ${m.type} line ${m.lineNum}: ${m.message}\n${code.split("\n")[m.lineNum - 1]}`);
      });
    }
    const pipeline = this.device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" }, label: key });
    const entry = { pipeline, layout: pipeline.getBindGroupLayout(0) };
    this.#pipelines.set(key, entry);
    return entry;
  }

  /** Pipelines held (shared by every backend on this device). */
  get pipelineCount(): number {
    return this.#pipelines.size;
  }

  /** A buffer this context accounts for (and destroys on dispose). */
  createBuffer(bytes: number, usage: number, label?: string): GPUBuffer {
    const size = Math.max(16, Math.ceil(bytes / 4) * 4);
    const b = this.device.createBuffer({ size, usage, label });
    this.#owned.add(b);
    this.stats.gpuBytes += size;
    this.stats.peakGpuBytes = Math.max(this.stats.peakGpuBytes, this.stats.gpuBytes);
    return b;
  }

  /** Release a buffer now (it must not be referenced by unsubmitted commands: use `retire` then). */
  destroyBuffer(b: GPUBuffer): void {
    if (!this.#owned.delete(b)) return;
    this.stats.gpuBytes -= b.size;
    b.destroy();
  }

  /** Release a buffer after the next submit. */
  retire(b: GPUBuffer): void {
    if (this.#encoder) this.#retired.push(b);
    else this.destroyBuffer(b);
  }

  /** A storage buffer holding `data` (weights, uploaded once at bind). */
  constantBuffer(data: Uint32Array | Float32Array, label?: string): GPUBuffer {
    const b = this.createBuffer(data.byteLength, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST, label);
    this.device.queue.writeBuffer(b, 0, data.buffer, data.byteOffset, data.byteLength);
    return b;
  }

  /**
   * A place for `words` in a uniform weight arena (what conv-grid.ts binds as 64 KiB windows):
   * `at` is its offset in vec4s (a multiple of 16, so 256-byte aligned) and `buffer()` the arena,
   * built (and the host copies dropped) on first use, with 64 KiB of tail so every window fits.
   * The layers bound before a run share one arena: one padding for the model, and every kernel
   * declares the same 64 KiB array (fewer pipeline variants). Slices made after that start a new one.
   */
  uniformSlice(words: Uint32Array): { at: number; buffer(): GPUBuffer } {
    const arena = this.#arena ??= { parts: [], vec4: 0 };
    const at = arena.vec4;
    arena.parts.push({ words, at });
    arena.vec4 += Math.ceil(words.length / 64) * 16;
    return { at, buffer: () => this.#arenaBuffer(arena) };
  }

  #arenaBuffer(a: Arena): GPUBuffer {
    if (a.buffer) return a.buffer;
    const b = a.buffer = this.createBuffer((a.vec4 + UNIFORM_WINDOW / 16) * 16, GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, "uniform-arena");
    for (const p of a.parts) this.device.queue.writeBuffer(b, p.at * 16, p.words.buffer, p.words.byteOffset, p.words.byteLength);
    a.parts = [];
    if (this.#arena === a) this.#arena = undefined;
    return b;
  }

  /** `buffer` if it holds `bytes`, else a new one (the old one retired). Usage: storage, copy in and out. */
  grow(buffer: GPUBuffer | undefined, bytes: number, label?: string): GPUBuffer {
    if (buffer && buffer.size >= bytes) return buffer;
    if (buffer) this.retire(buffer);
    // A quarter of headroom: a growing batch does not reallocate at every run.
    const size = buffer ? Math.max(bytes, Math.ceil(buffer.size * 1.25)) : bytes;
    return this.createBuffer(size, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST, label);
  }

  /** Write host data into a GPU buffer (counted as uploaded). */
  upload(buffer: GPUBuffer, data: ArrayBufferView): void {
    this.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    this.stats.uploadBytes += data.byteLength;
  }

  #passEncoder(): GPUComputePassEncoder {
    if (!this.#pass) {
      if (!this.#encoder) {
        this.device.pushErrorScope("validation");
        this.#encoder = this.device.createCommandEncoder();
      }
      this.#pass = this.#encoder.beginComputePass();
    }
    return this.#pass;
  }

  /**
   * Record one dispatch of `invocations` threads of `pipeline` with `params` (at `paramBuffer`
   * offset `slot`·256) and `buffers` as bindings 1.. (a whole buffer, or a range of one).
   */
  dispatch(pipe: { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }, paramBuffer: GPUBuffer, slot: number, buffers: readonly Binding[], invocations: number): void {
    if (invocations <= 0) return;
    const groups = Math.ceil(invocations / WORKGROUP);
    const gx = Math.min(groups, MAX_GROUPS_X), gy = Math.ceil(groups / gx);
    const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: paramBuffer, offset: slot * PARAM_BYTES, size: PARAM_BYTES } }];
    buffers.forEach((b, k) => entries.push({ binding: k + 1, resource: "buffer" in b ? b : { buffer: b } }));
    const group = this.device.createBindGroup({ layout: pipe.layout, entries });
    const pass = this.#passEncoder();
    pass.setPipeline(pipe.pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(gx, gy);
    this.stats.dispatches++;
  }

  /** A parameter buffer for `slots` dispatches. */
  paramBuffer(slots: number): GPUBuffer {
    return this.createBuffer(slots * PARAM_BYTES, GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST, "params");
  }

  /** Write one dispatch's parameters unless `last` (the slot's previous contents) already equals them. */
  writeParams(buffer: GPUBuffer, slot: number, p: Params, last: Uint32Array): void {
    let same = true;
    for (let k = 0; k < PARAM_WORDS; k++) if (last[k] !== p.u[k]) { same = false; break; }
    if (same) return;
    last.set(p.u);
    this.device.queue.writeBuffer(buffer, slot * PARAM_BYTES, p.u.buffer, 0, PARAM_BYTES);
    this.stats.uploadBytes += PARAM_BYTES;
  }

  /** A device tensor of `dims` over `buffer` (its first `elements` floats). */
  tensor(dims: number[], buffer: GPUBuffer): GpuTensor {
    const elements = dims.reduce((a, b) => a * b, 1);
    const gpu: GpuValue = { buffer, elements, read: () => this.read(buffer, elements) };
    return { dtype: "float32", dims, data: EMPTY, gpu };
  }

  /**
   * Read `elements` floats of `buffer` back. Reads requested in the same tick share one submit
   * with the work recorded before them.
   */
  read(buffer: GPUBuffer, elements: number): Promise<Float32Array> {
    const bytes = elements * 4;
    if (bytes === 0) return Promise.resolve(new Float32Array(0));
    this.#pass?.end();
    this.#pass = undefined;
    if (!this.#encoder) {
      this.device.pushErrorScope("validation");
      this.#encoder = this.device.createCommandEncoder();
    }
    const staging = this.#takeStaging(bytes);
    this.#encoder.copyBufferToBuffer(buffer, 0, staging, 0, bytes);
    this.stats.downloadBytes += bytes;
    const p = new Promise<Float32Array>((done, fail) => this.#reads.push({ staging, bytes, done, fail }));
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      queueMicrotask(() => void this.#flushReads());
    }
    return p;
  }

  #takeStaging(bytes: number): GPUBuffer {
    const k = this.#staging.findIndex((b) => b.size >= bytes);
    if (k >= 0) return this.#staging.splice(k, 1)[0]!;
    return this.createBuffer(bytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, "staging");
  }

  /** Submit what is recorded (the run's dispatches and any copies), then resolve the pending reads. */
  async #flushReads(): Promise<void> {
    this.#flushQueued = false;
    const reads = this.#reads;
    this.#reads = [];
    let error: unknown;
    try {
      const scope = this.submit();
      const err = await scope;
      if (err) error = new Error(`webgpu: ${err.message}`);
    } catch (e) {
      error = e;
    }
    for (const r of reads) {
      try {
        if (error) throw error;
        await r.staging.mapAsync(GPUMapMode.READ, 0, r.bytes);
        const out = new Float32Array(r.staging.getMappedRange(0, r.bytes).slice(0));
        r.staging.unmap();
        r.done(out);
      } catch (e) {
        r.fail(e);
      } finally {
        this.#staging.push(r.staging);
      }
    }
  }

  /** Submit the recorded commands (if any); resolves to the validation error of the batch, if one. */
  submit(): Promise<GPUError | null> {
    this.#pass?.end();
    this.#pass = undefined;
    const enc = this.#encoder;
    if (!enc) return Promise.resolve(null);
    this.#encoder = undefined;
    this.device.queue.submit([enc.finish()]);
    this.stats.submits++;
    for (const b of this.#retired) this.destroyBuffer(b);
    this.#retired = [];
    return this.device.popErrorScope();
  }

  /** Destroy every buffer this context made (the device itself is shared and stays). */
  dispose(): void {
    this.#pass?.end();
    this.#pass = undefined;
    if (this.#encoder) void this.submit();
    for (const b of [...this.#owned]) this.destroyBuffer(b);
    this.#staging = [];
  }
}
