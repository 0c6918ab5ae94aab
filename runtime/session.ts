/**
 * A loaded model ready to run: `createSession` reads a `.opq` or ONNX source, plans it once
 * (planner.ts), and `run()` validates the feeds against the declared inputs, walks the planned
 * steps and drops each intermediate after its last reader.
 * @module
 */
import * as format from "../format/mod.ts";
import type { Dim, Model, OpqModel, Tensor, ValueInfo } from "../format/mod.ts";
import { type Backend, type BackendName, bindReference, type BoundKernel, isDeviceTensor, type NodeSpec, type RunContext, toHost } from "./backend.ts";
import { BufferPool, recycle } from "./buffer-pool.ts";
import { applyFusions, type FusionCandidate, findFusions } from "./fusion.ts";
import { ensureCpuWorkers } from "./cpu/worker-pool.ts";
import { OpqRuntimeError, RUNTIME_ERROR_CODES } from "./errors.ts";
import { asLimitExceeded, DEFAULT_MAX_LOOP_STEPS, defaultMacsPerSample, defaultMemoryBudget, MemoryMeter, perSamplePeakBytes, type RunBudget } from "./budget.ts";
import { isMaterialized, layerPath, type Plan, type PlannedStep, planModel, prepareStep, unreadable } from "./planner.ts";
import { KernelError, type KernelContext, type OpVersion } from "./ops/types.ts";
import { WasmBackend } from "./wasm/backend.ts";
import { ValueHeap } from "./wasm/value-heap.ts";
import { kernelSupport } from "./wasm/module.ts";
import { chooseWebGpu, type WebGpuChoiceOptions } from "./webgpu/choose.ts";
import { type MemoryPlan, planMemory } from "./memory-plan.ts";
import { batchSymbol, imagesOf } from "./batch-split.ts";
import { normalizeFeed } from "./classify.ts";

/** One planned layer, as reported in SessionInfo: the implementation bound to it, which is what runs. */
export interface LayerInfo {
  name: string;
  opType: string;
  /** The backend that computes it. */
  backend: BackendName;
  /** How the layer computes, e.g. "wasm-conv-sparse-q", "winograd"; for the reference backend the op table kernel's label. */
  path: string;
  /** The form its weights are held in ("dense-f32", a compressed kernel form, "none"). */
  weightForm: string;
  /** Bytes the layer holds for its weights, as held. */
  residentBytes: number;
}

/** What a session knows about the model it runs. */
export interface SessionInfo {
  format: "opq" | "onnx";
  /** Size of the source in bytes (for an in-memory model: the bytes of its weights). */
  bytes: number;
  metadata: Record<string, unknown>;
  layers: LayerInfo[];
  /** Why the session runs where it does when that is not what was asked (e.g. auto refused an adapter). */
  notes: string[];
  /** Wall time of reading and planning, in milliseconds. */
  loadMs: number;
  /** The run budgets (SessionOptions.memoryBudget / maxLoopSteps, or their defaults), and the planned per-sample peak they are sized from. */
  limits: { memoryBudget: number; maxLoopSteps: number; perSampleBytes: number; maxMacsPerSample: number };
  /** The backends bound to at least one layer, with what they report (threads, SIMD features, adapter). */
  backends: Record<string, Record<string, unknown>>;
  /** Bytes held for weights, summed over the layers (the weights as the kernels hold them). */
  residentWeightBytes: number;
  /** The same weights as dense float32 (what an FP32 runtime holds), for the ratio resident ÷ FP32. */
  fp32WeightBytes: number;
  /** True if a batch runs in chunks of images (SessionOptions.splitBatch and a graph that allows it). */
  batchSplit: boolean;
}

/** A loaded model. */
export interface Session {
  /** The inputs `run()` needs (initializer-backed graph inputs excluded). */
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  /** Names of `inputs` and `outputs`, in order (as onnxruntime's InferenceSession has them). */
  inputNames: string[];
  outputNames: string[];
  info: SessionInfo;
  /**
   * Run the model. A feed is `{ dtype, dims, data }`, onnxruntime-web's `{ type, dims, data }`, or
   * a plain number array for an input of static shape. Throws OpqRuntimeError (INPUT_MISSING,
   * INPUT_SHAPE, INPUT_DTYPE, INPUT_INVALID, KERNEL_FAILED, LIMIT_EXCEEDED, DISPOSED).
   */
  run(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>>;
  /** Release the weights; later `run()` calls fail with DISPOSED. */
  dispose(): void;
  /** Per-layer calls, time and the paths that actually ran, when the session was created with `profile: true`. */
  profile(): LayerProfile[] | undefined;
}

/** What one layer did over the session's runs so far (`profile: true`). */
export interface LayerProfile {
  name: string;
  backend: BackendName;
  /** The bound path (as in SessionInfo.layers). */
  path: string;
  calls: number;
  ms: number;
  /** Paths the kernel reported taking when it chooses at run time (op-table kernels); else the bound path. */
  ran: string[];
}

/** Which backend a session computes on. */
export type BackendChoice = "auto" | BackendName;

/** Options for createSession. */
export interface SessionOptions {
  /** Threads kernels may use (default 1): the session starts its own `threads - 1` workers. */
  threads?: number;
  /**
   * "auto" (default): WebAssembly SIMD kernels where the engine has them, the reference for the
   * rest. "wasm": the same, but fail with BACKEND_UNAVAILABLE where WASM SIMD is missing.
   * "cpu-reference": the op table's kernels only. "webgpu": WGSL kernels on a self-checked GPU
   * adapter (BACKEND_UNAVAILABLE if there is none), the CPU for the nodes it cannot run; "auto"
   * tries it first when `navigator.gpu` has a hardware adapter (a software one, e.g. lavapipe,
   * only with `webgpu.allowFallbackAdapter`).
   */
  backend?: BackendChoice;
  /** How the webgpu backend finds its adapter (tests inject adapters and devices). */
  webgpu?: WebGpuChoiceOptions;
  /** Count calls and time per layer, and record the paths kernels report taking (`session.profile()`). */
  profile?: boolean;
  /**
   * Let dense kernels take layers whose weights are compressed, where their cost estimate is lower:
   * each such layer then holds a dense float32 copy (reported in `info.layers`). Default false: a
   * compressed layer is computed on its compressed form, so the session holds no dense copy of it.
   */
  denseCopies?: boolean;
  /**
   * Run a batch in chunks of images where every node provably keeps images apart
   * (runtime/batch-split.ts; default true): the activation memory stays at a chunk's size.
   * `info.batchSplit` says if it applies. A number fixes the images per chunk; `true` picks it
   * per input shape (one image, or up to BATCH_CHUNK_MAX in session.ts where the weights outweigh
   * an image's activations).
   */
  splitBatch?: boolean | number;
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
  for (const c of opq?.compressed ?? []) n += 8 * format.nnzOf(c) + (c.codebook.kind === "table" ? c.codebook.values.byteLength : 4);
  return n;
}

/**
 * Load a model: `.opq` bytes (magic "OPQ"), ONNX bytes, a file path, a decoded OpqModel or an
 * ONNX Model. Compressed weights stay compressed: a backend's kernel form is transcoded from
 * them, and only a layer the reference kernels run reads a dense copy. Throws
 * OpqRuntimeError: INVALID_MODEL for unreadable input, UNSUPPORTED_OPS listing every op the
 * runtime cannot run.
 */
export async function createSession(source: Uint8Array | string | OpqModel | Model, options: SessionOptions = {}): Promise<Session> {
  const t0 = performance.now();
  let bytes: Uint8Array | undefined;
  if (typeof source === "string") {
    try {
      // A view, not `new Uint8Array(buffer)`: that copies, doubling the file in memory at load.
      // Loaded only for a path, so hosts without node:fs (edge workers, browsers) never import it.
      const NODE_FS = "node:fs/promises";
      const { readFile } = await import(NODE_FS) as typeof import("node:fs/promises");
      const file = await readFile(source);
      bytes = new Uint8Array(file.buffer, file.byteOffset, file.byteLength);
    } catch (e) {
      throw invalidModel(e, `model file ${source}`);
    }
  } else if (source instanceof Uint8Array) {
    bytes = source;
  }
  // (an in-memory OpqModel's compressed tensors are checked below, as decodeOpq checks its own)
  let opq: OpqModel | undefined;
  let model: Model;
  try {
    if (bytes) {
      if (format.isOpqBytes(bytes)) opq = format.decodeOpq(bytes, { lazyWeights: true });
      else model = format.readOnnx(bytes);
    } else if (isOpqModel(source)) opq = source;
    else if (isModel(source)) model = source;
    else throw new OpqRuntimeError(RUNTIME_ERROR_CODES.INVALID_MODEL, "createSession: source must be bytes, a path, an OpqModel or a Model");
    if (opq) {
      model = opq.model;
      if (!bytes) for (const c of opq.compressed) format.checkCompressedTensor(c, model.graph.initializers);
    }
  } catch (e) {
    throw invalidModel(e, typeof source === "string" ? source : "model");
  }
  const threads = Math.max(1, Math.floor(options.threads ?? 1));
  const choice = options.backend ?? "auto";
  if (!["auto", "wasm", "cpu-reference", "webgpu"].includes(choice)) {
    throw new OpqRuntimeError(RUNTIME_ERROR_CODES.BACKEND_UNAVAILABLE, `backend '${choice}' is not available (use auto, webgpu, wasm or cpu-reference)`, { backend: choice });
  }
  let wasm: WasmBackend | undefined;
  if (choice !== "cpu-reference") {
    wasm = await WasmBackend.create(threads, undefined, options.denseCopies ?? false);
    if (!wasm && choice === "wasm") {
      throw new OpqRuntimeError(RUNTIME_ERROR_CODES.BACKEND_UNAVAILABLE, `the wasm backend needs WebAssembly SIMD and shared memory: ${kernelSupport().reason}`, { backend: "wasm", reason: kernelSupport().reason });
    }
  }
  // The reference kernels split large GEMMs across the process-wide JS worker pool.
  if (!wasm && threads > 1) await ensureCpuWorkers(threads);
  let plan: Plan;
  try {
    plan = planModel(model!, { threads, ops: options.ops, compressed: opq?.compressed, deferPrepare: true });
  } catch (e) {
    wasm?.dispose();
    throw e;
  }
  const modelBytes = bytes?.byteLength ?? (opq ? weightBytes(opq.model, opq) : weightBytes(model!));
  const limits = {
    memoryBudget: options.memoryBudget ?? defaultMemoryBudget(plan, modelBytes),
    maxLoopSteps: options.maxLoopSteps ?? DEFAULT_MAX_LOOP_STEPS,
    perSampleBytes: perSamplePeakBytes(plan),
    maxMacsPerSample: options.maxMacsPerSample ?? defaultMacsPerSample(plan, opq?.compressed),
  };
  const notes: string[] = [];
  let gpu: Backend | undefined;
  try {
    gpu = await chooseWebGpu(choice, plan, options.webgpu, notes);
  } catch (e) {
    wasm?.dispose();
    throw e;
  }
  const backends: Backend[] = [...(gpu ? [gpu] : []), ...(wasm ? [wasm] : [])];
  // Decided on the plan as the model wrote it (fusion rewrites nodes); a GPU wants the whole batch.
  const batchSplit = options.splitBatch !== false && !gpu && batchSymbol(plan) !== undefined;
  // A number below 1 or not finite counts as 1 (one image at a time), as `threads` is clamped.
  const fixedChunk = typeof options.splitBatch === "number" ? (Number.isFinite(options.splitBatch) ? Math.max(1, Math.floor(options.splitBatch)) : 1) : undefined;
  let bound: BoundKernel[];
  try {
    bound = bindSteps(plan, backends);
  } catch (e) {
    // A lazily decoded weight stream that turns out corrupt surfaces here as its FormatError.
    for (const b of backends) b.dispose();
    if (e instanceof format.FormatError) throw invalidModel(e, typeof source === "string" ? source : "model");
    throw e;
  }
  dropStoredWeights(plan, bound);
  const profile = options.profile ? bound.map((b, i) => profiled(b, plan.steps[i]!.name)) : undefined;
  if (profile) profile.forEach((p, i) => { bound[i] = p.kernel; });
  const metadata: Record<string, unknown> = opq
    ? { ...opq.metadata }
    : { producerName: model!.producerName, irVersion: model!.irVersion, opsetImports: model!.opsetImports };
  const layers = plan.steps.map((s, i) => ({
    name: s.name, opType: s.node.opType, backend: bound[i]!.backend, path: bound[i]!.path,
    weightForm: bound[i]!.weightForm, residentBytes: bound[i]!.residentBytes,
  }));
  const used = new Set(layers.map((l) => l.backend));
  const info: SessionInfo = {
    format: opq ? "opq" : "onnx",
    bytes: modelBytes,
    metadata,
    layers,
    notes,
    loadMs: performance.now() - t0,
    limits,
    backends: Object.fromEntries([...backends.filter((b) => used.has(b.name)).map((b) => [b.name, b.describe()] as const), ...(used.has("cpu-reference") ? [["cpu-reference", { threads }] as const] : [])]),
    residentWeightBytes: layers.reduce((n, l) => n + l.residentBytes, 0),
    fp32WeightBytes: fp32Bytes(model!, opq),
    batchSplit,
  };
  return new PlannedSession(plan, info, bound, backends, wasm ? new ValueHeap(wasm.env.kernels) : undefined, profile?.map((p) => p.record), fixedChunk);
}

/**
 * Once every reader of a compressed weight is bound to a kernel that keeps its own form of it,
 * the stored form (8 bytes per kept weight as decoded) is no longer needed: drop it, leaving a
 * constant that cannot be read, so the session holds each weight once.
 */
function dropStoredWeights(plan: Plan, bound: readonly BoundKernel[]): void {
  if (!plan.compressed.size) return;
  const needed = new Set<string>();
  plan.steps.forEach((s, i) => {
    if (bound[i]!.backend === "cpu-reference" || s.subplans) for (const n of s.reads) needed.add(n);
  });
  const compressed = plan.compressed as Map<string, format.CompressedTensor>;
  for (const [name, c] of compressed) {
    if (needed.has(name)) continue;
    compressed.delete(name);
    plan.constants.set(name, unreadable(name, c.dims));
  }
}

/** Bytes of a model's float weights as dense float32: its float initializers and compressed tensors. */
function fp32Bytes(model: Model, opq?: OpqModel): number {
  let n = 0;
  for (const t of Object.values(model.graph.initializers)) if (t.dtype === "float32" || t.dtype === "float16" || t.dtype === "float64") n += 4 * t.data.length;
  for (const c of opq?.compressed ?? []) n += 4 * format.sizeOf(c.dims);
  return n;
}

/** Wrap a bound kernel to count its calls and time and collect the paths it reports. */
function profiled(k: BoundKernel, name: string): { kernel: BoundKernel; record: LayerProfile } {
  const record: LayerProfile = { name, backend: k.backend, path: k.path, calls: 0, ms: 0, ran: [] };
  const note = (p: string) => { if (!record.ran.includes(p)) record.ran.push(p); };
  const run: BoundKernel["run"] = (inputs, rc) => {
    const t0 = performance.now();
    let reported = false;
    const out = k.run(inputs, { ...rc, reportPath: (p) => { reported = true; note(p); } });
    const done = (r: Tensor[]) => { record.calls++; record.ms += performance.now() - t0; if (!reported) note(k.path); return r; };
    return out instanceof Promise ? out.then(done) : done(out);
  };
  return { kernel: { ...k, run }, record };
}

/**
 * A backend's bind, where a node it cannot make sense of (a malformed attribute, a shape its
 * claim did not expect) is a node it does not claim: the reference takes it and reports the
 * problem at run() with the node's name, as for any kernel (a format or budget error still stops the load).
 */
function tryBind(b: Backend, spec: NodeSpec): BoundKernel | undefined {
  try {
    return b.bind(spec);
  } catch (e) {
    if (e instanceof format.FormatError || e instanceof OpqRuntimeError) throw e;
    return undefined;
  }
}

/**
 * Bind every top-level step: fused chains first (runtime/fusion.ts; applied only where a backend
 * claims the fused node), then each remaining step to the first backend that claims it, else to
 * the reference (the op table kernel, prepared now). Returns the bound kernels in step order.
 */
function bindSteps(plan: Plan, backends: readonly Backend[]): BoundKernel[] {
  const specOf = (step: PlannedStep, node = step.node, epilogue?: NodeSpec["epilogue"]): NodeSpec => {
    const get = <T>(m: ReadonlyMap<string, T>) => node.inputs.map((n) => (n === "" ? undefined : m.get(n)));
    const compressed = get(plan.compressed);
    return {
      node, name: epilogue ? node.name : step.name, attrs: step.attrs, opset: step.ctx.opset,
      inputShapes: get(plan.shapes), outputShapes: node.outputs.map((n) => plan.shapes.get(n)),
      inputDtypes: get(plan.dtypes), outputDtypes: node.outputs.map((n) => plan.dtypes.get(n)),
      constants: node.inputs.map((n, i) => (n === "" || compressed[i] ? undefined : plan.constants.get(n))),
      compressed,
      dense: (i) => (node.inputs[i] ? plan.constants.get(node.inputs[i]!) : undefined),
      threads: step.ctx.threads,
      epilogue,
    };
  };
  const claim = (spec: NodeSpec) => {
    for (const b of backends) {
      const k = tryBind(b, spec);
      // The kernel holds its own form now: drop the decoded stored form (decoded again if read again).
      for (const c of spec.compressed) if (c) format.releaseDecoded(c);
      if (k) return k;
    }
    return undefined;
  };
  const pre = new Map<PlannedStep, BoundKernel>();
  // Fused nodes go to the first-choice backend only, and only if it applies epilogues.
  if (backends[0]?.fuses) {
    const taken = new Set<number>();
    const claimed: FusionCandidate[] = [];
    for (const c of findFusions(plan)) {
      if (c.absorbed.some((k) => taken.has(k)) || taken.has(c.head)) continue;
      const head = plan.steps[c.head]!;
      const spec = specOf(head, c.node, c.epilogue);
      const k = tryBind(backends[0], spec);
      for (const t of spec.compressed) if (t) format.releaseDecoded(t);
      if (!k) continue;
      claimed.push(c);
      pre.set(head, k);
      for (const a of [c.head, ...c.absorbed]) taken.add(a);
    }
    applyFusions(plan, claimed);
  }
  const out = plan.steps.map((step) => {
    const fused = pre.get(step);
    if (fused) return fused;
    const spec = specOf(step);
    const k = step.subplans ? undefined : claim(spec);
    if (k) return k;
    prepareStep(step, step.prepare, plan.shapes, plan.constants);
    step.path = layerPath(step, plan.shapes, plan.constants, plan.dtypes);
    const ref = bindReference(spec, step.kernel, step.ctx, step.path);
    for (const c of spec.compressed) if (c) format.releaseDecoded(c);
    return ref;
  });
  const order = plan.steps.map((s, i) => ({ inputs: s.node.inputs, outputs: s.node.outputs, kernel: out[i]! }));
  for (const b of backends) b.finish?.(order);
  return out;
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
  // Lazily dequantized weights get their buffers when first read: recompute while any exist.
  if (!set || plan.compressed.size > 0) {
    set = new Set([...plan.constants.values()].filter(isMaterialized).map((t) => (t.data as { buffer?: ArrayBufferLike }).buffer).filter((b) => b !== undefined));
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
      throw stepError(e, step, ins);
    }
    node.outputs.forEach((o, k) => {
      if (o !== "") env.set(o, outs[k] ?? missingOutput(step, k));
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
  return collectOutputs(plan, read, pooledView(pool));
}

/** The typed error of a failing step: LIMIT_EXCEEDED as the budget raised it, else KERNEL_FAILED naming the node and its inputs. */
function stepError(e: unknown, step: PlannedStep, ins: readonly (Tensor | undefined)[], details: Record<string, unknown> = {}): OpqRuntimeError {
  const limit = asLimitExceeded(e, step);
  if (limit) return limit;
  const shapes = ins.map((t) => (t ? `${t.dtype}${describe(t.dims)}` : "-")).join(", ");
  return new OpqRuntimeError(
    RUNTIME_ERROR_CODES.KERNEL_FAILED,
    `${step.node.opType} node '${step.name}' failed on inputs (${shapes}): ${(e as Error)?.message ?? String(e)}`,
    { node: step.name, opType: step.node.opType, ...details },
    { cause: e },
  );
}

/** Thrown when a kernel returns fewer outputs than its node declares. */
function missingOutput(step: PlannedStep, k: number): never {
  throw new OpqRuntimeError(RUNTIME_ERROR_CODES.KERNEL_FAILED, `${step.node.opType} node '${step.name}' produced no output #${k} ('${step.node.outputs[k]}')`, { node: step.name, opType: step.node.opType });
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

/** The input shapes of `feeds` as one key (memory plans are cached per key). */
const shapeKey = (plan: Plan, feeds: Record<string, Tensor>): string => plan.inputs.map((v) => feeds[v.name]!.dims.join("x")).join(",");

/**
 * Most images per chunk of a split batch (SessionOptions.splitBatch). Batch 8, 1 thread, CPU time,
 * chunked against image by image in one process, runs alternating (AMD EPYC, load 3–5): ResNet-18
 * `.opq` 0.96× / 1.00×, ResNet-50 `.opq` 0.99× / 0.94×, ResNet-50 FP32 0.96×, MobileNetV2 FP32
 * 0.97×; MobileNetV2 `.opq` (weights 0.33× an image's arena) 1.07× at 4, so it keeps one image;
 * ResNet-18 `.opq` whole (8) 1.08×. Four keeps the arena at 4× its one-image size.
 */
const BATCH_CHUNK_MAX = 4;

/** Yield to the event loop after this much computing, so a server stays responsive during a long run (ms). */
const YIELD_AFTER_MS = 8;
/**
 * One turn of the event loop (pending I/O and timers run). setImmediate where the host has it
 * (Bun, Node, Deno 2): 4 µs a turn on Bun, 34 µs on Deno, against 1.07 ms / 2.2 ms for
 * setTimeout(0), whose clamp cost a ResNet-18 run ~11 turns = ~12 ms of idle wall time (measured
 * on this machine). Elsewhere (browsers) setTimeout(0).
 */
const yieldToEventLoop: () => Promise<void> = typeof (globalThis as { setImmediate?: unknown }).setImmediate === "function"
  ? () => new Promise<void>((r) => (globalThis as unknown as { setImmediate(f: () => void): void }).setImmediate(r))
  : () => new Promise<void>((r) => setTimeout(r, 0));

class PlannedSession implements Session {
  readonly inputs: ValueInfo[];
  readonly outputs: ValueInfo[];
  readonly inputNames: string[];
  readonly outputNames: string[];
  #plan: Plan | undefined;
  /** Released intermediates, reused by later steps and runs of this session (reference backend only). */
  #pool = new BufferPool();
  /** Runs one at a time: they share the session's memory and threads. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(plan: Plan, readonly info: SessionInfo, private readonly bound: BoundKernel[], private readonly backends: Backend[], private readonly heap?: ValueHeap, private readonly records?: LayerProfile[], private readonly fixedChunk?: number) {
    this.#plan = plan;
    this.inputs = plan.inputs.map((v) => ({ ...v, shape: v.shape ? v.shape.slice() : null }));
    this.outputs = plan.outputs.map((v) => ({ ...v, shape: v.shape ? v.shape.slice() : plan.shapes.get(v.name)?.slice() ?? null }));
    this.inputNames = this.inputs.map((v) => v.name);
    this.outputNames = this.outputs.map((v) => v.name);
  }

  run(given: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    let feeds = given;
    try {
      const plan = this.#plan;
      if (!plan) throw new OpqRuntimeError(RUNTIME_ERROR_CODES.DISPOSED, "run() on a disposed session");
      // onnxruntime-web's { type, dims, data } and plain number arrays are accepted too (runtime/classify.ts).
      if (typeof given === "object" && given !== null) {
        feeds = Object.fromEntries(Object.entries(given).map(([k, v]) => {
          const info = plan.inputs.find((i) => i.name === k);
          return [k, info ? normalizeFeed(v, info.dtype, info.shape) as Tensor : v];
        }));
      }
      validateFeeds(plan.inputs, feeds);
    } catch (e) {
      return Promise.reject(e);
    }
    const result = this.#queue.then(() => {
      const plan = this.#plan;
      if (!plan) throw new OpqRuntimeError(RUNTIME_ERROR_CODES.DISPOSED, "run() on a disposed session");
      const n = feeds[plan.inputs[0]?.name ?? ""]?.dims[0] ?? 1;
      const numeric = plan.inputs.every((v) => feeds[v.name]!.dtype !== "string");
      return this.info.batchSplit && n > 1 && numeric ? this.#runSplit(plan, feeds, n) : this.#runBound(plan, feeds);
    });
    this.#queue = result.catch(() => undefined);
    return result;
  }

  /** The memory plan of the last input shapes run, and the arena block it uses. */
  #memory?: { key: string; plan: MemoryPlan; ptr: number; bytes: number };
  /** Memory plans of recent input shapes (a chunked batch alternates between a full and a last chunk). */
  #plans = new Map<string, MemoryPlan>();

  /** The memory plan for these feeds' shapes (re-planned when the shapes change; the arena only grows). */
  #memoryFor(plan: Plan, feeds: Record<string, Tensor>, heap: ValueHeap): { plan: MemoryPlan; ptr: number; bytes: number } | undefined {
    const key = shapeKey(plan, feeds);
    const m = this.#memory;
    if (m && m.key === key) return m;
    const mp = this.#planFor(plan, feeds, key);
    // Over the budget: no arena; the run's meter then refuses the step that passes it, by name.
    if (mp.arenaBytes > this.info.limits.memoryBudget) return undefined;
    let ptr = m?.ptr ?? 0, bytes = m?.bytes ?? 0;
    if (mp.arenaBytes > bytes) {
      if (m) heap.kernels.free(m.ptr);
      ptr = heap.kernels.alloc(mp.arenaBytes);
      bytes = mp.arenaBytes;
    }
    this.#memory = { key, plan: mp, ptr, bytes };
    return this.#memory;
  }

  #planFor(plan: Plan, feeds: Record<string, Tensor>, key = shapeKey(plan, feeds)): MemoryPlan {
    let mp = this.#plans.get(key);
    if (!mp) {
      mp = planMemory(plan, new Map(plan.inputs.map((v) => [v.name, feeds[v.name]!.dims])));
      if (this.#plans.size >= 4) this.#plans.delete(this.#plans.keys().next().value!);
      this.#plans.set(key, mp);
    }
    return mp;
  }

  /**
   * Images per chunk of a split batch of `n`: SessionOptions.splitBatch's number, else an image
   * per wasm thread (the sparse kernels then give each thread its own image: MobileNetV2 and
   * ResNet-50 `.opq` at batch 8 on 2 threads, min of 10 alternating runs in one process, 0.86× and
   * 0.85× the time of one image at a time), or up to BATCH_CHUNK_MAX where the resident weights
   * outweigh one image's activation arena (a run per image streams every weight again, while a
   * chunk's activations leave the caches).
   * Chunks come out even (8 → 4 + 4, 6 → 3 + 3) so the session plans at most two shapes.
   */
  #chunkFor(plan: Plan, feeds: Record<string, Tensor>, n: number): number {
    let c = this.fixedChunk;
    if (c === undefined) {
      if (!this.heap) return 1;
      const one = Object.fromEntries(plan.inputs.map((v) => [v.name, imagesOf(feeds[v.name]!, 0, 1)]));
      const arena = this.#planFor(plan, one).arenaBytes;
      // Light weights: an image per wasm thread (the kernels give each thread its own image, no
      // input shared between the threads' caches), else one image.
      if (this.info.residentWeightBytes < arena) c = Math.max(1, Number((this.info.backends.wasm as { threads?: number } | undefined)?.threads ?? 1));
      else c = Math.max(1, Math.min(BATCH_CHUNK_MAX, Math.floor(this.info.limits.memoryBudget / Math.max(1, arena))));
    }
    c = Math.min(c, n);
    return Math.ceil(n / Math.ceil(n / c));
  }

  /** Bytes of the session's activation arena and its memory plan (undefined before the first run, or without wasm memory). */
  get memoryPlan(): { arenaBytes: number; totalBytes: number } | undefined {
    const m = this.#memory;
    return m ? { arenaBytes: m.plan.arenaBytes, totalBytes: m.plan.totalBytes } : undefined;
  }

  /** Run a batch of `n` in chunks of images (#chunkFor) and put the outputs back together along the batch axis. */
  async #runSplit(plan: Plan, feeds: Record<string, Tensor>, n: number): Promise<Record<string, Tensor>> {
    const result: Record<string, Tensor> = {};
    const chunk = this.#chunkFor(plan, feeds, n);
    for (let i = 0; i < n; i += chunk) {
      const c = Math.min(chunk, n - i);
      const one = Object.fromEntries(plan.inputs.map((v) => [v.name, imagesOf(feeds[v.name]!, i, c)]));
      const outs = await this.#runBound(plan, one);
      for (const [name, t] of Object.entries(outs)) {
        const per = t.data.length / c;
        result[name] ??= { dtype: t.dtype, dims: [n, ...t.dims.slice(1)], data: new (t.data.constructor as Float32ArrayConstructor)(per * n) as Tensor["data"] };
        (result[name]!.data as Float32Array).set(t.data as Float32Array, i * per);
      }
    }
    return result;
  }

  async #runBound(plan: Plan, feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    const heap = this.heap, pool = this.#pool;
    const env = new Map<string, Tensor>();
    for (const v of plan.inputs) env.set(v.name, feeds[v.name]!);
    const read = (n: string): Tensor | undefined => (n === "" ? undefined : env.get(n) ?? plan.constants.get(n));
    const memory = heap ? this.#memoryFor(plan, feeds, heap) : undefined;
    const limits = this.info.limits;
    // The batch of this run (one image when the session splits batches): dimension 0 of the first input, when symbolic.
    const first = plan.inputs[0];
    const batch = first?.shape && typeof first.shape[0] !== "number" ? Math.max(1, feeds[first.name]!.dims[0] ?? 1) : 1;
    const budget: RunBudget = { maxBytes: limits.memoryBudget, maxLoopSteps: limits.maxLoopSteps, loopSteps: 0, maxMacs: limits.maxMacsPerSample * batch, macs: 0 };
    const meter = new MemoryMeter(plan, budget, plan.inputs, feeds);
    let planned: { name: string; length: number }[] = [], next = 0;
    const rc: RunContext = {
      alloc: heap
        ? (n) => {
          const want = planned[next];
          if (want && want.length === n) {
            next++;
            return heap.kernels.f32(memory!.ptr + memory!.plan.slots.get(want.name)!.offset, n);
          }
          meter.alloc(n);
          return heap.take(n);
        }
        : (n) => { meter.alloc(n); return pool.take(n); },
      budget,
    };
    if (!heap) pool.beginRun();
    let since = performance.now();
    try {
      for (let i = 0; i < plan.steps.length; i++) {
        const step = plan.steps[i]!, { node } = step;
        let ins = node.inputs.map(read);
        if (memory) { planned = memory.plan.stepOutputs[i]!; next = 0; }
        let outs: Tensor[];
        try {
          // A CPU step reads device values (webgpu outputs) back first.
          const host = this.bound[i]?.backend !== "webgpu" ? toHost(ins) : undefined;
          if (host) ins = await host;
          meter.before(step, ins);
          const r = step.subplans ? step.kernel(ins, step.attrs, { ...withSubgraphs(step, read, budget), budget }) : this.bound[i]!.run(ins, rc);
          outs = r instanceof Promise ? await r : r;
        } catch (e) {
          if (e instanceof OpqRuntimeError) throw e;
          throw stepError(e, step, ins, { backend: this.bound[i]!.backend, path: this.bound[i]!.path });
        }
        node.outputs.forEach((o, k) => {
          if (o === "") return;
          let t = outs[k] ?? missingOutput(step, k);
          if (memory) t = keepInSlot(t, o, memory, heap!);
          env.set(o, t);
          outs[k] = t;
        });
        meter.after(step, outs);
        const released: Tensor[] = [];
        for (const r of step.release) {
          const t = env.get(r);
          if (t) released.push(t);
          env.delete(r);
        }
        if (released.length) {
          if (heap) heap.release(released, env.values());
          else recycle(released, env, constantBuffersOf(plan), pool);
        }
        if (performance.now() - since > YIELD_AFTER_MS) {
          await yieldToEventLoop();
          since = performance.now();
        }
      }
      await downloadOutputs(plan, env);
      return collectOutputs(plan, read, heap ? (d) => heap.inMemory(d) : pooledView(pool));
    } finally {
      if (heap) heap.clear();
      else pool.endRun();
    }
  }

  profile(): LayerProfile[] | undefined {
    return this.records?.map((r) => ({ ...r, ran: [...r.ran] }));
  }

  dispose(): void {
    this.#plan = undefined;
    this.#pool = new BufferPool();
    for (const b of this.bound) b.dispose?.();
    for (const b of this.backends) b.dispose();
  }
}

/** Replace graph outputs held on a device by host copies (one read-back batch). */
async function downloadOutputs(plan: Plan, env: Map<string, Tensor>): Promise<void> {
  const names = plan.outputs.map((o) => o.name).filter((n) => isDeviceTensor(env.get(n)));
  if (!names.length) return;
  const host = (await toHost(names.map((n) => env.get(n))))!;
  names.forEach((n, k) => env.set(n, host[k]!));
}

/**
 * An output that lies in the arena must sit in its own planned slot (or its alias group's): a
 * kernel that returned a view of some other value's slot would be overwritten when that slot is
 * reused, so such an output is copied out to the heap.
 */
function keepInSlot(t: Tensor, name: string, memory: { plan: MemoryPlan; ptr: number; bytes: number }, heap: ValueHeap): Tensor {
  if (!(t.data instanceof Float32Array)) return t;
  const a = heap.kernels.addressOf(t.data);
  if (a < memory.ptr || a >= memory.ptr + memory.bytes) return t;
  const slot = memory.plan.slots.get(name);
  const off = a - memory.ptr;
  if (slot && off >= slot.offset && off + t.data.byteLength <= slot.offset + slot.bytes) return t;
  const copy = heap.take(t.data.length);
  copy.set(t.data);
  return { ...t, data: copy };
}

/** True for a view of a larger block the pool handed out (handing it out would keep the whole block alive). */
const pooledView = (pool: BufferPool | undefined) => (d: unknown): boolean => pool !== undefined && d instanceof Float32Array && pool.isView(d);

/**
 * The graph outputs of a finished run. Never hands out a buffer the plan or the session keeps
 * (a constant, a view of one, a block of session memory): callers may keep and mutate results.
 */
function collectOutputs(plan: Plan, read: (n: string) => Tensor | undefined, sessionOwned: (d: unknown) => boolean): Record<string, Tensor> {
  const constData = new Set<unknown>([...plan.constants.values()].filter(isMaterialized).map((t) => t.data));
  const result: Record<string, Tensor> = {};
  for (const o of plan.outputs) {
    const t = read(o.name)!;
    result[o.name] = constData.has(t.data) || sessionOwned(t.data) ? { dtype: t.dtype, dims: t.dims.slice(), data: t.data.slice() as Tensor["data"] } : t;
  }
  return result;
}
