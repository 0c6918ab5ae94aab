/**
 * A loaded model ready to run: `createSession` reads a `.opq` or ONNX source, plans it once
 * (planner.ts), and `run()` validates the feeds against the declared inputs, walks the planned
 * steps and drops each intermediate after its last reader.
 * @module
 */
import { readFile } from "node:fs/promises";
import * as format from "../format/mod.ts";
import type { Dim, Model, OpqModel, Tensor, ValueInfo } from "../format/mod.ts";
import { BufferPool, recycle } from "./buffer-pool.ts";
import { ensureCpuWorkers } from "./cpu/worker-pool.ts";
import { OpqRuntimeError, RUNTIME_ERROR_CODES } from "./errors.ts";
import { asLimitExceeded, DEFAULT_MAX_LOOP_STEPS, defaultMacsPerSample, defaultMemoryBudget, MemoryMeter, perSamplePeakBytes, type RunBudget } from "./budget.ts";
import { type Plan, type PlannedStep, planModel } from "./planner.ts";
import { KernelError, type KernelContext, type OpVersion } from "./ops/types.ts";

/** One planned layer, as reported in SessionInfo. */
export interface LayerInfo {
  name: string;
  opType: string;
  /** How the layer computes, e.g. "dense-fp32", "im2col-gemm". */
  path: string;
}

/** What a session knows about the model it runs. */
export interface SessionInfo {
  format: "opq" | "onnx";
  /** Size of the source in bytes (for an in-memory model: the bytes of its weights). */
  bytes: number;
  metadata: Record<string, unknown>;
  layers: LayerInfo[];
  /** Wall time of reading and planning, in milliseconds. */
  loadMs: number;
  /** The run budgets (SessionOptions.memoryBudget / maxLoopSteps, or their defaults), and the planned per-sample peak they are sized from. */
  limits?: { memoryBudget: number; maxLoopSteps: number; perSampleBytes: number; maxMacsPerSample: number };
}

/** A loaded model. */
export interface Session {
  /** The inputs `run()` needs (initializer-backed graph inputs excluded). */
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  info: SessionInfo;
  /** Run the model. Throws OpqRuntimeError (INPUT_MISSING, INPUT_SHAPE, INPUT_DTYPE, INPUT_INVALID, KERNEL_FAILED, DISPOSED). */
  run(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>>;
  /** Release the weights; later `run()` calls fail with DISPOSED. */
  dispose(): void;
}

/** Options for createSession. */
export interface SessionOptions {
  /** Worker threads kernels may use (default 1). More than 1 starts the process-wide worker pool at load. */
  threads?: number;
  /** Op table override (tests). */
  ops?: Readonly<Record<string, OpVersion[]>>;
  /**
   * Bytes of intermediates a run may hold at once; a run that would pass it fails with
   * LIMIT_EXCEEDED. Default: from the model's declared shapes (runtime/budget.ts).
   */
  memoryBudget?: number;
  /** Loop iterations and Scan steps one run may take (default DEFAULT_MAX_LOOP_STEPS = 2^14). */
  maxLoopSteps?: number;
  /**
   * Multiply-adds (Conv, ConvTranspose, Gemm, MatMul) one run may do per sample of its batch;
   * default 4096 per byte of the model's weights, at least 2^28 (runtime/budget.ts).
   */
  maxMacsPerSample?: number;
}

const isOpqModel = (x: unknown): x is OpqModel =>
  typeof x === "object" && x !== null && "model" in x && "compressed" in x && Array.isArray((x as OpqModel).compressed);
const isModel = (x: unknown): x is Model => typeof x === "object" && x !== null && "graph" in x && "opsetImports" in x;

/** Turn a FormatError (or anything thrown while reading) into INVALID_MODEL. */
function invalidModel(e: unknown, what: string): OpqRuntimeError {
  if (e instanceof OpqRuntimeError) return e;
  const formatCode = (e as { code?: unknown })?.code;
  return new OpqRuntimeError(
    RUNTIME_ERROR_CODES.INVALID_MODEL,
    `cannot read ${what}: ${(e as Error)?.message ?? String(e)}`,
    formatCode ? { formatCode } : undefined,
    { cause: e },
  );
}

/** Bytes of an in-memory model's weights: its initializers, and for a .opq its compressed tensors as held. */
function weightBytes(model: Model, opq?: OpqModel): number {
  let n = 0;
  for (const t of Object.values(model.graph.initializers)) {
    n += t.dtype === "string" ? 0 : t.data.length * format.DTYPE_BYTES[t.dtype];
  }
  for (const c of opq?.compressed ?? []) {
    n += c.indices.byteLength + c.codes.byteLength + (c.codebook.kind === "table" ? c.codebook.values.byteLength : 4);
  }
  return n;
}

/**
 * Load a model: `.opq` bytes (magic "OPQ"), ONNX bytes, a file path, a decoded OpqModel or an
 * ONNX Model. Compressed weights are dequantized to dense float32 at load. Throws
 * OpqRuntimeError: INVALID_MODEL for unreadable input, UNSUPPORTED_OPS listing every op the
 * runtime cannot run.
 */
export async function createSession(source: Uint8Array | string | OpqModel | Model, options: SessionOptions = {}): Promise<Session> {
  const t0 = performance.now();
  let bytes: Uint8Array | undefined;
  if (typeof source === "string") {
    try {
      // A view, not `new Uint8Array(buffer)`: that copies, doubling the file in memory at load.
      const file = await readFile(source);
      bytes = new Uint8Array(file.buffer, file.byteOffset, file.byteLength);
    } catch (e) {
      throw invalidModel(e, `model file ${source}`);
    }
  } else if (source instanceof Uint8Array) {
    bytes = source;
  }
  let opq: OpqModel | undefined;
  let model: Model;
  try {
    if (bytes) {
      if (format.isOpqBytes(bytes)) opq = format.decodeOpq(bytes);
      else model = format.readOnnx(bytes);
    } else if (isOpqModel(source)) opq = source;
    else if (isModel(source)) model = source;
    else throw new OpqRuntimeError(RUNTIME_ERROR_CODES.INVALID_MODEL, "createSession: source must be bytes, a path, an OpqModel or a Model");
    if (opq) model = format.toDenseModel(opq);
  } catch (e) {
    throw invalidModel(e, typeof source === "string" ? source : "model");
  }
  // Kernels split large GEMMs across the process-wide worker pool once it is up; start it now.
  if ((options.threads ?? 1) > 1) await ensureCpuWorkers(options.threads!);
  const plan = planModel(model!, { threads: options.threads, ops: options.ops, compressed: opq?.compressed });
  const perSampleBytes = perSamplePeakBytes(plan);
  const limits = {
    memoryBudget: options.memoryBudget ?? defaultMemoryBudget(plan),
    maxLoopSteps: options.maxLoopSteps ?? DEFAULT_MAX_LOOP_STEPS,
    perSampleBytes,
    maxMacsPerSample: options.maxMacsPerSample ?? defaultMacsPerSample(plan),
  };
  const metadata: Record<string, unknown> = opq
    ? { ...opq.metadata }
    : { producerName: model!.producerName, irVersion: model!.irVersion, opsetImports: model!.opsetImports };
  const info: SessionInfo = {
    format: opq ? "opq" : "onnx",
    bytes: bytes?.byteLength ?? (opq ? weightBytes(opq.model, opq) : weightBytes(model!)),
    metadata,
    layers: plan.steps.map((s) => ({ name: s.name, opType: s.node.opType, path: s.path })),
    loadMs: performance.now() - t0,
    limits,
  };
  return new PlannedSession(plan, info);
}

const describe = (dims: readonly Dim[]) => `[${dims.map((d) => (d === null ? "?" : d)).join(", ")}]`;

/** Which storage each dtype must arrive in. */
const STORAGE: Record<string, (d: unknown) => boolean> = {
  float32: (d) => d instanceof Float32Array, float64: (d) => d instanceof Float64Array,
  int8: (d) => d instanceof Int8Array, uint8: (d) => d instanceof Uint8Array, bool: (d) => d instanceof Uint8Array,
  int16: (d) => d instanceof Int16Array, uint16: (d) => d instanceof Uint16Array, float16: (d) => d instanceof Uint16Array,
  int32: (d) => d instanceof Int32Array, uint32: (d) => d instanceof Uint32Array,
  int64: (d) => d instanceof BigInt64Array, uint64: (d) => d instanceof BigUint64Array, string: (d) => Array.isArray(d),
};

/** Check feeds against the declared inputs; throws the first problem as a typed error. */
export function validateFeeds(inputs: readonly ValueInfo[], feeds: Record<string, Tensor>): void {
  if (typeof feeds !== "object" || feeds === null) {
    throw new OpqRuntimeError(RUNTIME_ERROR_CODES.INPUT_INVALID, "feeds must be an object of tensors by input name");
  }
  const missing = inputs.filter((v) => !Object.hasOwn(feeds, v.name)).map((v) => v.name);
  if (missing.length) {
    throw new OpqRuntimeError(
      RUNTIME_ERROR_CODES.INPUT_MISSING,
      `missing input${missing.length > 1 ? "s" : ""} ${missing.map((n) => `'${n}'`).join(", ")} (expected: ${inputs.map((v) => v.name).join(", ")})`,
      { missing },
    );
  }
  const known = new Set(inputs.map((v) => v.name));
  const unknown = Object.keys(feeds).filter((n) => !known.has(n));
  if (unknown.length) {
    throw new OpqRuntimeError(RUNTIME_ERROR_CODES.INPUT_INVALID, `unknown input ${unknown.map((n) => `'${n}'`).join(", ")} (expected: ${[...known].join(", ")})`, { unknown });
  }
  const symbols = new Map<string, { value: number; input: string }>();
  for (const v of inputs) {
    const t = feeds[v.name]!;
    if (!t || !Array.isArray(t.dims) || t.data === undefined) {
      throw new OpqRuntimeError(RUNTIME_ERROR_CODES.INPUT_INVALID, `input '${v.name}' is not a tensor ({ dtype, dims, data })`, { input: v.name });
    }
    if (t.dtype !== v.dtype) {
      throw new OpqRuntimeError(RUNTIME_ERROR_CODES.INPUT_DTYPE, `input '${v.name}': expected dtype ${v.dtype}, got ${t.dtype}`, { input: v.name, expected: v.dtype, got: t.dtype });
    }
    if (v.shape) {
      const bad = t.dims.length !== v.shape.length ||
        v.shape.some((d, i) => typeof d === "number" && d !== t.dims[i]);
      let clash = "";
      if (!bad) {
        v.shape.forEach((d, i) => {
          if (typeof d !== "string") return;
          const seen = symbols.get(d);
          if (seen && seen.value !== t.dims[i]) clash = ` ('${d}' is ${seen.value} in input '${seen.input}')`;
          else if (!seen) symbols.set(d, { value: t.dims[i]!, input: v.name });
        });
      }
      if (bad || clash) {
        throw new OpqRuntimeError(
          RUNTIME_ERROR_CODES.INPUT_SHAPE,
          `input '${v.name}': expected shape ${describe(v.shape)}, got ${describe(t.dims)}${clash}`,
          { input: v.name, expected: v.shape, got: t.dims },
        );
      }
    }
    if (!t.dims.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new OpqRuntimeError(RUNTIME_ERROR_CODES.INPUT_INVALID, `input '${v.name}': dims ${describe(t.dims)} are not non-negative integers`, { input: v.name });
    }
    if (!STORAGE[t.dtype]?.(t.data)) {
      throw new OpqRuntimeError(RUNTIME_ERROR_CODES.INPUT_INVALID, `input '${v.name}': ${t.dtype} data must be stored in its typed array`, { input: v.name });
    }
    if (t.data.length !== format.sizeOf(t.dims)) {
      throw new OpqRuntimeError(
        RUNTIME_ERROR_CODES.INPUT_INVALID,
        `input '${v.name}': dims ${describe(t.dims)} need ${format.sizeOf(t.dims)} elements, got ${t.data.length}`,
        { input: v.name, expected: format.sizeOf(t.dims), got: t.data.length },
      );
    }
  }
}

/** Called after each step with the step and its outputs (debugging, shape-inference tests). */
export type StepObserver = (step: PlannedStep, outputs: readonly Tensor[]) => void;

/** Reads a value of an enclosing graph (subgraph runs). */
export type OuterScope = (name: string) => Tensor | undefined;

/** Buffers of a plan's constants (a released value sharing one is never recycled). */
const constantBuffers = new WeakMap<Plan, Set<ArrayBufferLike>>();
function constantBuffersOf(plan: Plan): Set<ArrayBufferLike> {
  let set = constantBuffers.get(plan);
  if (!set) {
    set = new Set([...plan.constants.values()].map((t) => (t.data as { buffer?: ArrayBufferLike }).buffer).filter((b) => b !== undefined));
    constantBuffers.set(plan, set);
  }
  return set;
}

/**
 * Run a plan on validated feeds (no validation here: tests and tools may call it directly). With
 * a `pool` (a session's), released float32 intermediates are recycled into kernel outputs; it is
 * ignored with an observer (which may keep outputs) and in subgraphs (whose values may be views of
 * enclosing ones).
 */
export function runPlan(plan: Plan, feeds: Record<string, Tensor>, observe?: StepObserver, outer?: OuterScope, pool?: BufferPool, budget?: RunBudget): Record<string, Tensor> {
  if (observe || outer) pool = undefined;
  pool?.beginRun();
  try {
    return runSteps(plan, feeds, observe, outer, pool, budget);
  } finally {
    pool?.endRun();
  }
}

function runSteps(plan: Plan, feeds: Record<string, Tensor>, observe: StepObserver | undefined, outer: OuterScope | undefined, pool: BufferPool | undefined, budget: RunBudget | undefined): Record<string, Tensor> {
  const env = new Map<string, Tensor>();
  const meter = budget ? new MemoryMeter(plan, budget, plan.inputs, feeds) : undefined;
  const alloc = pool ? (n: number) => { meter?.alloc(n); return pool.take(n); } : undefined;
  for (const v of plan.inputs) env.set(v.name, feeds[v.name]!);
  const read = (n: string): Tensor | undefined => (n === "" ? undefined : env.get(n) ?? plan.constants.get(n) ?? outer?.(n));
  for (const step of plan.steps) {
    const { node } = step;
    const ins = node.inputs.map(read);
    let outs: Tensor[];
    try {
      meter?.before(step, ins);
      const ctx = step.subplans ? withSubgraphs(step, read, budget) : step.ctx;
      outs = step.kernel(ins, step.attrs, alloc || budget ? { ...ctx, alloc, budget } : ctx);
    } catch (e) {
      const limit = asLimitExceeded(e, step);
      if (limit) throw limit;
      const shapes = ins.map((t) => (t ? `${t.dtype}${describe(t.dims)}` : "-")).join(", ");
      throw new OpqRuntimeError(
        RUNTIME_ERROR_CODES.KERNEL_FAILED,
        `${node.opType} node '${step.name}' failed on inputs (${shapes}): ${(e as Error)?.message ?? String(e)}`,
        { node: step.name, opType: node.opType },
        { cause: e },
      );
    }
    node.outputs.forEach((o, k) => {
      if (o === "") return;
      const t = outs[k];
      if (!t) {
        throw new OpqRuntimeError(RUNTIME_ERROR_CODES.KERNEL_FAILED, `${node.opType} node '${step.name}' produced no output #${k} ('${o}')`, { node: step.name, opType: node.opType });
      }
      env.set(o, t);
    });
    observe?.(step, outs);
    meter?.after(step, outs);
    const released: Tensor[] = [];
    for (const r of step.release) {
      const t = env.get(r);
      if (t) released.push(t);
      env.delete(r);
    }
    if (pool && released.length) recycle(released, env, constantBuffersOf(plan), pool);
  }
  const constData = new Set<unknown>([...plan.constants.values()].map((t) => t.data));
  const result: Record<string, Tensor> = {};
  for (const o of plan.outputs) {
    const t = read(o.name)!;
    // Never hand out a buffer the plan keeps (a constant, or a view of one): callers may mutate
    // results. Nor a view of a larger pooled block: it would keep the whole block alive.
    const pooledView = pool !== undefined && t.data instanceof Float32Array && pool.isView(t.data);
    result[o.name] = constData.has(t.data) || pooledView ? { dtype: t.dtype, dims: t.dims.slice(), data: t.data.slice() as Tensor["data"] } : t;
  }
  return result;
}

/** The step's context with `runGraph` bound to this run's values (for If/Loop/Scan). */
function withSubgraphs(step: PlannedStep, read: OuterScope, budget: RunBudget | undefined): KernelContext {
  return {
    ...step.ctx,
    runGraph: (attr, feeds) => {
      const sub = step.subplans![attr];
      if (!sub) throw new KernelError(`${step.node.opType}: no graph attribute '${attr}'`);
      if (feeds.length !== sub.inputs.length) {
        throw new KernelError(`${step.node.opType}: '${attr}' takes ${sub.inputs.length} inputs, got ${feeds.length}`);
      }
      const named: Record<string, Tensor> = {};
      sub.inputs.forEach((v, i) => { named[v.name] = feeds[i]!; });
      const out = runPlan(sub, named, undefined, read, undefined, budget);
      return sub.outputs.map((o) => out[o.name]!);
    },
  };
}

class PlannedSession implements Session {
  readonly inputs: ValueInfo[];
  readonly outputs: ValueInfo[];
  #plan: Plan | undefined;
  /** Released intermediates, reused by later steps and runs of this session. */
  #pool = new BufferPool();

  constructor(plan: Plan, readonly info: SessionInfo) {
    this.#plan = plan;
    this.inputs = plan.inputs.map((v) => ({ ...v, shape: v.shape ? v.shape.slice() : null }));
    this.outputs = plan.outputs.map((v) => ({ ...v, shape: v.shape ? v.shape.slice() : plan.shapes.get(v.name)?.slice() ?? null }));
  }

  run(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    try {
      const plan = this.#plan;
      if (!plan) throw new OpqRuntimeError(RUNTIME_ERROR_CODES.DISPOSED, "run() on a disposed session");
      validateFeeds(plan.inputs, feeds);
      const limits = this.info.limits!;
      // The batch: dimension 0 of the first input, when the model declares it symbolic.
      const first = plan.inputs[0];
      const batch = first?.shape && typeof first.shape[0] !== "number" ? Math.max(1, feeds[first.name]!.dims[0] ?? 1) : 1;
      const budget: RunBudget = { maxBytes: limits.memoryBudget, maxLoopSteps: limits.maxLoopSteps, loopSteps: 0, maxMacs: limits.maxMacsPerSample * batch, macs: 0 };
      return Promise.resolve(runPlan(plan, feeds, undefined, undefined, this.#pool, budget));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  dispose(): void {
    this.#plan = undefined;
    this.#pool = new BufferPool();
  }
}
