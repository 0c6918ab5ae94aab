/**
 * The `webgpu` backend: WGSL kernels (ops/) on a self-checked device (device.ts). Each node it
 * claims is bound once — weights uploaded (compressed ones in their compressed form), pipeline
 * built or found in the cache, parameter block allocated — and each run only records dispatches
 * into the run's one compute pass. Values stay on the GPU between GPU nodes; a host value reaching
 * a GPU node is uploaded by it, and the session reads device values back (`toHost`) before a CPU
 * node and for the graph outputs.
 *
 * Value buffers are planned at `finish()`: every value a GPU node produces gets a slot, and slots
 * are shared by values whose lifetimes (first writer to last reader, over the steps in order) do
 * not overlap; a slot's buffer grows to the largest value it holds and is reused by every run.
 * @module
 */
import type { Tensor } from "../../format/mod.ts";
import type { Backend, BoundKernel, BoundStep, NodeSpec } from "../backend.ts";
import { KernelError } from "../ops/types.ts";
import { type Binding, GpuContext, type GpuTensor, isGpuTensor, PARAM_WORDS, Params } from "./context.ts";
import { acquireDevice, type AdapterReport, type WebGpuOptions } from "./device.ts";
import { GPU_OPS } from "./ops/index.ts";

export type { WebGpuOptions } from "./device.ts";

/** What a kernel gets at run time for one step. */
export interface StepIO {
  readonly ctx: GpuContext;
  /** The buffer of input `slot`: its constant (uploaded at bind), its device buffer, or the host tensor uploaded now. */
  input(slot: number, t: Tensor | undefined): GPUBuffer;
  /** A device tensor of `dims` for output `k` (the slot planned for it, grown if needed). */
  output(k: number, dims: number[]): GpuTensor;
  /** Record dispatch number `n` of this step (its own parameter block) over `invocations` threads. */
  dispatch(n: number, pipe: { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }, p: Params, buffers: readonly Binding[], invocations: number): void;
}

/** A node bound by a GPU implementation. */
export interface GpuBound {
  path: string;
  weightForm: string;
  residentBytes: number;
  /** Parameter blocks (dispatches) per run; default 1. */
  dispatches?: number;
  /** Outputs are views of input 0 with new dims (Reshape & co.): no buffer of their own. */
  alias?: boolean;
  run(inputs: readonly (Tensor | undefined)[], io: StepIO): Tensor[];
  dispose?(): void;
}

/** One GPU implementation of some op types. */
export interface GpuOpImpl {
  opTypes: readonly string[];
  /** Bind the node, or say (a string) why it stays on the CPU. */
  bind(spec: NodeSpec, ctx: GpuContext): GpuBound | string;
}

interface StepRecord {
  inputs: readonly string[];
  outputs: readonly string[];
  bound?: GpuBound;
  /** Output slot of each output (−1 none). */
  slots: number[];
}

/** A node left to the CPU, and why. */
export interface Fallback {
  name: string;
  opType: string;
  reason: string;
}

/** The webgpu backend of one session. */
export class WebGpuBackend implements Backend {
  readonly name = "webgpu" as const;
  /** Conv nodes take the binder's epilogue (bias, residual add, clamp) in the grid kernel. */
  readonly fuses = true;
  readonly ctx: GpuContext;
  readonly fallbacks: Fallback[] = [];
  #steps: StepRecord[] = [];
  #records = new Map<BoundKernel, StepRecord>();
  #slotBuffers: (GPUBuffer | undefined)[] = [];
  #graphOutputs: Set<string>;
  #disposed = false;

  constructor(device: GPUDevice, readonly adapter: AdapterReport, f16: boolean, graphOutputs: readonly string[] = []) {
    this.ctx = new GpuContext(device, f16);
    this.#graphOutputs = new Set(graphOutputs);
  }

  bind(spec: NodeSpec): BoundKernel | undefined {
    const rec: StepRecord = { inputs: spec.node.inputs, outputs: spec.node.outputs, slots: [] };
    this.#steps.push(rec);
    const impl = GPU_OPS.find((o) => o.opTypes.includes(spec.node.opType));
    let bound: GpuBound | string = impl ? "" : `no WGSL kernel for ${spec.node.opType}`;
    if (impl) {
      try {
        bound = impl.bind(spec, this.ctx);
      } catch (e) {
        bound = e instanceof KernelError ? e.message : `bind failed: ${(e as Error)?.message ?? e}`;
      }
    }
    if (typeof bound === "string") {
      // A fused spec declined: the binder offers its nodes one by one next (no fallback, no step).
      if (spec.epilogue) {
        this.#steps.pop();
        return undefined;
      }
      this.fallbacks.push({ name: spec.name, opType: spec.node.opType, reason: bound });
      return undefined;
    }
    rec.bound = bound;
    const b = bound, ctx = this.ctx;
    let kernel: BoundKernel;
    const constants = spec.constants;
    const constBuffers = new Map<number, GPUBuffer>();
    const uploads: (GPUBuffer | undefined)[] = [];
    const blocks = b.alias ? 0 : (b.dispatches ?? 1);
    const params = blocks ? ctx.paramBuffer(blocks) : undefined;
    const last = Array.from({ length: blocks }, () => new Uint32Array(PARAM_WORDS).fill(0xffffffff));
    const io: StepIO = {
      ctx,
      input: (slot, t) => {
        if (constants[slot]) {
          let cb = constBuffers.get(slot);
          if (!cb) {
            const c = constants[slot]!;
            if (!(c.data instanceof Float32Array)) throw new KernelError(`${spec.node.opType}: input ${slot} must be float32`);
            cb = ctx.constantBuffer(c.data, `${spec.name}:const${slot}`);
            constBuffers.set(slot, cb);
          }
          return cb;
        }
        if (!t) throw new KernelError(`${spec.node.opType}: input ${slot} missing`);
        if (isGpuTensor(t)) return t.gpu.buffer;
        if (!(t.data instanceof Float32Array)) throw new KernelError(`${spec.node.opType}: input ${slot} must be float32, got ${t.dtype}`);
        const buf = uploads[slot] = ctx.grow(uploads[slot], t.data.byteLength, `${spec.name}:upload${slot}`);
        ctx.upload(buf, t.data);
        return buf;
      },
      output: (k, dims) => {
        const elements = dims.reduce((a, d) => a * d, 1);
        const slot = rec.slots[k] ?? -1;
        if (slot < 0) throw new KernelError(`${spec.node.opType}: output ${k} has no planned buffer`);
        const buf = this.#slotBuffers[slot] = ctx.grow(this.#slotBuffers[slot], elements * 4, `slot${slot}`);
        return ctx.tensor(dims, buf);
      },
      dispatch: (n, pipe, p, buffers, invocations) => {
        ctx.writeParams(params!, n, p, last[n]!);
        ctx.dispatch(pipe, params!, n, buffers, invocations);
      },
    };
    kernel = {
      backend: "webgpu",
      path: b.path,
      weightForm: b.weightForm,
      residentBytes: b.residentBytes,
      run: (inputs) => {
        if (this.#disposed) throw new KernelError("webgpu backend disposed");
        return b.run(inputs, io);
      },
      dispose: () => {
        b.dispose?.();
        for (const cb of constBuffers.values()) ctx.destroyBuffer(cb);
        for (const u of uploads) if (u) ctx.destroyBuffer(u);
        if (params) ctx.destroyBuffer(params);
      },
    };
    this.#records.set(kernel, rec);
    return kernel;
  }

  /**
   * Plan the value slots over the steps in run order: a value's slot is free again after its last
   * reader (graph outputs: never).
   */
  finish(order?: readonly BoundStep[]): void {
    const steps = order ? order.map((s) => this.#records.get(s.kernel) ?? { inputs: s.inputs, outputs: s.outputs, slots: [] }) : this.#steps;
    this.#steps = steps;
    // Alias outputs (Reshape & co.) share their input's buffer: lifetimes are tracked per root value.
    const root = new Map<string, string>();
    const rootOf = (n: string) => root.get(n) ?? n;
    const producedOnGpu = new Set<string>();
    steps.forEach((s) => {
      if (!s.bound) return;
      if (s.bound.alias) {
        const r = rootOf(s.inputs[0]!);
        for (const o of s.outputs) if (o) root.set(o, r);
      } else for (const o of s.outputs) if (o) producedOnGpu.add(o);
    });
    const lastUse = new Map<string, number>();
    steps.forEach((s, i) => { for (const n of s.inputs) if (n) lastUse.set(rootOf(n), i); });
    for (const o of this.#graphOutputs) lastUse.set(rootOf(o), Infinity);
    const free: number[] = [];
    let slots = 0;
    const live = new Map<string, number>();
    steps.forEach((s, i) => {
      for (const [r, slot] of [...live]) {
        if ((lastUse.get(r) ?? -1) < i) { free.push(slot); live.delete(r); }
      }
      if (!s.bound || s.bound.alias) return;
      s.slots = s.outputs.map((o) => {
        if (!o || !producedOnGpu.has(o)) return -1;
        const slot = free.pop() ?? slots++;
        // A value nobody reads (and no graph output) is still written: it holds its slot for this step only.
        live.set(o, slot);
        if (!lastUse.has(o)) lastUse.set(o, i);
        return slot;
      });
    });
    this.#slotBuffers = new Array(slots).fill(undefined);
  }

  /** Value slots planned (buffers shared by values with disjoint lifetimes). */
  get slotCount(): number {
    return this.#slotBuffers.length;
  }

  describe(): Record<string, unknown> {
    return {
      adapter: this.adapter,
      f16: this.ctx.f16,
      gpuNodes: this.#steps.filter((s) => s.bound).length,
      cpuNodes: this.fallbacks.length,
      fallbacks: this.fallbacks,
      valueSlots: this.#slotBuffers.length,
      /** Live counters: read them after runs for dispatches, uploads and cache hits. */
      stats: this.ctx.stats,
    };
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.ctx.dispose();
  }
}

/**
 * Create the webgpu backend: a self-checked device (the process's shared one unless `options`
 * injects an adapter or device). Throws OpqRuntimeError BACKEND_UNAVAILABLE when WebGPU is
 * missing or the adapter fails the self-check (details: vendor, architecture, isFallbackAdapter, reason).
 */
export async function createWebGpuBackend(options: WebGpuOptions = {}): Promise<WebGpuBackend> {
  const d = await acquireDevice(options);
  return new WebGpuBackend(d.device, d.adapter, d.f16, options.graphOutputs);
}
