/**
 * A session's budgets: bytes of intermediates alive at once, steps of Loop/Scan bodies per run,
 * and multiply-adds per sample (a static graph can ask for minutes of compute in a few bytes). A run is refused with LIMIT_EXCEEDED before a step whose planned outputs (inferred shapes
 * with the feed's symbolic dims bound) would pass the memory budget, when a kernel asks the pool
 * for a buffer that would, after any step whose real outputs did, and when loops pass their step
 * budget or their carried state passes the memory budget. So a hostile graph (a broadcast to
 * [20000, 20000], a Pad by 30000, a state doubling each iteration, a trip count of 2^62) fails fast
 * with a typed error instead of allocating gigabytes or running for ever.
 *
 * The default memory budget comes from the model's declared shapes: DEFAULT_BATCH samples of the
 * per-sample peak of input-dependent intermediates (symbolic dims taken as 1), at least
 * MIN_MEMORY_BUDGET and at most MAX_DEFAULT_MEMORY_BUDGET (or half the machine's memory), and
 * at most BUDGET_PER_MODEL_BYTE per byte of the model (a 639-byte graph padding to 1 GiB may not
 * earn itself a 4 GiB budget from its own shapes).
 * Values computed from constants only (what folding declined as too large) do not raise it.
 * @module
 */
import { type CompressedTensor, type Dim, type DType, DTYPE_BYTES, nnzOf, type Tensor, type ValueInfo } from "../format/mod.ts";
import { OpqRuntimeError, RUNTIME_ERROR_CODES } from "./errors.ts";
import { type Plan, type PlannedStep, runtimeOutputShapes } from "./planner.ts";
import { KernelError } from "./ops/types.ts";

/** node:os where the host has it (Bun, Deno, Node); edge hosts and browsers go without. */
const NODE_OS = "node:os"; // a variable, so bundlers for hosts without it leave it be
const OS: { totalmem(): number } | undefined = await import(NODE_OS).catch(() => undefined);
/** Total memory, asked when first needed (Deno without --allow-sys refuses: then 8 GiB too). */
function totalMemory(): number {
  try {
    return OS?.totalmem() ?? 8 * 2 ** 30;
  } catch {
    return 8 * 2 ** 30;
  }
}

/** The floor of the default memory budget: 256 MiB. */
export const MIN_MEMORY_BUDGET = 256 * 2 ** 20;
/** The ceiling of the default memory budget: 4 GiB (or half the machine's memory, if less). */
export const MAX_DEFAULT_MEMORY_BUDGET = 4 * 2 ** 30;
/**
 * Default memory budget per byte of the model (file bytes, or weight bytes of an in-memory model),
 * above MIN_MEMORY_BUDGET: 4096. Real models need far less: ResNet-18 `.opq` at (0.74, 3) is
 * 1.6 MiB for ~0.6 GiB of 64 samples' intermediates (~380 per byte), MobileNetV2 `.opq` ~0.5 MiB
 * for ~0.6 GiB (~1200).
 */
export const BUDGET_PER_MODEL_BYTE = 4096;
/** Samples of a dynamic batch the default memory budget makes room for. */
export const DEFAULT_BATCH = 64;
/**
 * Default step budget of one run: Loop iterations and Scan steps, nested ones included. 2^14: a
 * two-node loop body costs 5–25 µs a step on this (shared, 2-core) machine, so a loop that never
 * ends is refused in well under the fuzz bench's 2 s hang limit (2^16 steps took 1.4–1.7 s,
 * 2^20 3–6 s: `bun run bench:fuzz`); models with longer loops raise it (maxLoopSteps).
 */
export const DEFAULT_MAX_LOOP_STEPS = 1 << 14;

/**
 * Floor of the default compute budget: 2^28 multiply-adds per sample (ResNet-18 at 224² needs
 * 1.8·10^9, ResNet-20 at 28² 4·10^7, so the per-byte rule below is what binds for real models).
 */
export const MIN_MACS_PER_SAMPLE = 2 ** 28;
/**
 * Default compute budget per sample: this many multiply-adds (Conv, ConvTranspose, Gemm, MatMul)
 * per byte of the model's constants. Real CNNs need 20–40 (ResNet-18: 1.8·10^9 / 46.8 MB = 39,
 * MobileNetV2 ~21, ResNet-20 ~37); 4096 is 100× that, and refuses a 3 KB graph whose edited
 * pads and kernels ask for 4·10^9 (fuzz mutant 2310 of seed 14: 55 s of compute). Counting a
 * compressed weight as 4 bytes per kept weight, a pruned CNN needs 1/(1 − sparsity) times more
 * per byte: ResNet-18 at sparsity 0.74 ~150, at 0.95 ~780, still 5× under this.
 */
export const MACS_PER_WEIGHT_BYTE = 4096;

/** A budget a run passed; kernels throw it, the session turns it into LIMIT_EXCEEDED. */
export class LimitError extends KernelError {
  override name = "LimitError";
  constructor(readonly limit: "memory" | "steps" | "compute", message: string) {
    super(message);
  }
}

/** The budgets of one run, shared by its subgraph runs. */
export interface RunBudget {
  maxBytes: number;
  maxLoopSteps: number;
  /** Loop/Scan steps taken so far in this run. */
  loopSteps: number;
  /** Multiply-adds (Conv, ConvTranspose, Gemm, MatMul) the run may do, and has done so far. */
  maxMacs?: number;
  macs?: number;
}

/**
 * The default compute budget per sample of a plan: MACS_PER_WEIGHT_BYTE per byte of its weights,
 * at least MIN_MACS_PER_SAMPLE. A compressed weight counts 4 bytes per kept (non-zero) weight,
 * read from its header: its dims say nothing (a file may declare any dims its per-byte element
 * limit allows), and reading a lazy constant's data would dequantize it at load.
 */
export function defaultMacsPerSample(plan: Plan, compressed: readonly CompressedTensor[] = []): number {
  const kept = new Map(compressed.map((c) => [c.name, 4 * nnzOf(c)]));
  let bytes = 0;
  for (const [name, t] of plan.constants) bytes += kept.get(name) ?? tensorBytes(t);
  return Math.max(MIN_MACS_PER_SAMPLE, MACS_PER_WEIGHT_BYTE * bytes);
}

/** Multiply-adds of a step about to run, from the shapes of its inputs and outputs (0 for other ops). */
function stepMacs(step: PlannedStep, inputs: readonly (Tensor | undefined)[], outShape: readonly (number | string | null)[] | undefined): number {
  const prod = (ds: readonly unknown[]) => ds.reduce<number>((p, d) => p * (typeof d === "number" ? Math.max(d, 0) : 1), 1);
  const [x, w] = inputs;
  switch (step.node.opType) {
    case "Conv": return w && outShape ? prod(outShape) * prod(w.dims.slice(1)) : 0;
    case "ConvTranspose": return x && w ? prod(x.dims) * prod(w.dims.slice(1)) : 0;
    case "Gemm": case "MatMul": {
      if (!x || !outShape) return 0;
      const k = step.node.opType === "Gemm" && step.attrs.int("transA", 0) ? x.dims[0] : x.dims[x.dims.length - 1];
      return prod(outShape) * (k ?? 1);
    }
    default: return 0;
  }
}

/** Bytes of a tensor's data. */
export function tensorBytes(t: Tensor): number {
  return t.dtype === "string" ? 8 * t.data.length : t.data.length * DTYPE_BYTES[t.dtype];
}

/** Count one Loop/Scan step against the run's budget (no-op without one). */
export function countLoopStep(budget: RunBudget | undefined, op: string): void {
  if (!budget) return;
  if (++budget.loopSteps > budget.maxLoopSteps) {
    throw new LimitError("steps", `${op}: more than ${budget.maxLoopSteps} loop steps in one run (SessionOptions.maxLoopSteps)`);
  }
}

/** Refuse loop state (carried values and scan outputs so far) above the memory budget. */
export function checkLoopState(budget: RunBudget | undefined, op: string, bytes: number): void {
  if (budget && bytes > budget.maxBytes) {
    throw new LimitError("memory", `${op}: loop state reached ${bytes} bytes, over the session memory budget of ${budget.maxBytes} (SessionOptions.memoryBudget)`);
  }
}

const bytesOfShape = (shape: readonly Dim[] | undefined, dtype: DType | undefined, bind: (d: Dim) => number | undefined): number | undefined => {
  if (!shape || !dtype) return undefined;
  let n = dtype === "string" ? 8 : DTYPE_BYTES[dtype];
  for (const d of shape) {
    const v = bind(d);
    if (v === undefined || !(v >= 0)) return undefined;
    n *= v;
  }
  return n;
};

/**
 * Peak bytes of input-dependent intermediates per sample (symbolic dims as 1) under the plan's
 * release schedule; values computed from constants alone are left out.
 */
export function perSamplePeakBytes(plan: Plan): number {
  const fromInput = new Set(plan.inputs.map((v) => v.name));
  const live = new Map<string, number>();
  let cur = 0, peak = 0;
  for (const s of plan.steps) {
    const dependent = s.reads.some((n) => fromInput.has(n)) || !!s.subplans;
    for (const o of s.node.outputs) {
      if (o === "" || !dependent) continue;
      fromInput.add(o);
      const b = bytesOfShape(plan.shapes.get(o), plan.dtypes.get(o), (d) => (typeof d === "number" ? d : 1)) ?? 0;
      live.set(o, b);
      cur += b;
    }
    peak = Math.max(peak, cur);
    for (const r of s.release) { cur -= live.get(r) ?? 0; live.delete(r); }
  }
  return peak;
}

/** The default memory budget of a plan (see the module comment). */
export function defaultMemoryBudget(plan: Plan, modelBytes = Infinity): number {
  const ceiling = Math.min(MAX_DEFAULT_MEMORY_BUDGET, Math.floor(totalMemory() / 2), BUDGET_PER_MODEL_BYTE * modelBytes);
  return Math.max(MIN_MEMORY_BUDGET, Math.min(ceiling, DEFAULT_BATCH * perSamplePeakBytes(plan)));
}

const limitExceeded = (message: string, details: Record<string, unknown>) =>
  new OpqRuntimeError(RUNTIME_ERROR_CODES.LIMIT_EXCEEDED, message, details);

/**
 * Live-byte accounting of one graph run against a budget: `before` each step from its planned
 * output shapes, `alloc` for pooled kernel buffers, `after` each step from its real outputs.
 */
export class MemoryMeter {
  #live = new Map<string, number>();
  #bytes = 0;
  #symbols = new Map<string, number>();

  constructor(readonly plan: Plan, readonly budget: RunBudget, inputs: readonly ValueInfo[], feeds: Record<string, Tensor>) {
    for (const v of inputs) {
      v.shape?.forEach((d, i) => { if (typeof d === "string") this.#symbols.set(d, feeds[v.name]?.dims[i] ?? 1); });
    }
  }

  /** Bytes alive now. */
  get bytes(): number { return this.#bytes; }

  /**
   * Refuse a step whose outputs would pass the budget: their sizes from the shape rules applied to
   * the inputs it is about to get, else from the planned shapes (symbols bound by the feeds).
   */
  before(step: PlannedStep, inputs: readonly (Tensor | undefined)[]): void {
    let planned = 0;
    const now = runtimeOutputShapes(step, inputs);
    const first = inputs.find((t) => t !== undefined);
    step.node.outputs.forEach((o, k) => {
      if (o === "") return;
      const dtype = this.plan.dtypes.get(o) ?? first?.dtype ?? "float32";
      const b = bytesOfShape(now[k] ?? undefined, dtype, (d) => (typeof d === "number" ? d : undefined)) ??
        generatedBytes(step, inputs, k) ??
        bytesOfShape(this.plan.shapes.get(o), this.plan.dtypes.get(o), (d) => (typeof d === "number" ? d : d === null ? undefined : this.#symbols.get(d)));
      if (b !== undefined) planned += b;
    });
    const budget = this.budget;
    if (budget.maxMacs !== undefined) {
      const macs = stepMacs(step, inputs, now[0]);
      budget.macs = (budget.macs ?? 0) + macs;
      if (budget.macs > budget.maxMacs) {
        throw limitExceeded(
          `${step.node.opType} node '${step.name}' would bring the run to ${budget.macs.toExponential(2)} multiply-adds: over the session compute budget of ${budget.maxMacs.toExponential(2)} (SessionOptions.maxMacsPerSample × batch)`,
          { node: step.name, opType: step.node.opType, macs: budget.macs, budget: budget.maxMacs, limit: "compute" },
        );
      }
    }
    if (this.#bytes + planned > this.budget.maxBytes) {
      throw limitExceeded(
        `${step.node.opType} node '${step.name}' would allocate ${planned} bytes with ${this.#bytes} alive: over the session memory budget of ${this.budget.maxBytes} bytes (SessionOptions.memoryBudget)`,
        { node: step.name, opType: step.node.opType, plannedBytes: planned, liveBytes: this.#bytes, budget: this.budget.maxBytes },
      );
    }
  }

  /** Refuse a pooled buffer of `floats` float32 that would pass the budget. */
  alloc(floats: number): void {
    if (this.#bytes + 4 * floats > this.budget.maxBytes) {
      throw new LimitError("memory", `a buffer of ${4 * floats} bytes with ${this.#bytes} alive is over the session memory budget of ${this.budget.maxBytes} bytes (SessionOptions.memoryBudget)`);
    }
  }

  /** Account a step's outputs and releases; refuse the run if what is alive passed the budget. */
  after(step: PlannedStep, outs: readonly (Tensor | undefined)[]): void {
    step.node.outputs.forEach((o, k) => {
      const t = outs[k];
      if (o === "" || !t || this.#live.has(o)) return;
      const b = tensorBytes(t);
      this.#live.set(o, b);
      this.#bytes += b;
    });
    const over = this.#bytes > this.budget.maxBytes ? this.#bytes : 0;
    for (const r of step.release) { this.#bytes -= this.#live.get(r) ?? 0; this.#live.delete(r); }
    if (over) {
      throw limitExceeded(
        `${step.node.opType} node '${step.name}' brought live intermediates to ${over} bytes: over the session memory budget of ${this.budget.maxBytes} bytes (SessionOptions.memoryBudget)`,
        { node: step.name, opType: step.node.opType, liveBytes: over, budget: this.budget.maxBytes },
      );
    }
  }
}

const ints = (t: Tensor | undefined): number[] | undefined => (t && t.dtype !== "string" ? Array.from(t.data as ArrayLike<number | bigint>, Number) : undefined);

/** Bytes of output `k` of the generating ops no shape rule covers, whose size a constant sets. */
function generatedBytes(step: PlannedStep, inputs: readonly (Tensor | undefined)[], k: number): number | undefined {
  if (k !== 0) return undefined;
  const prod = (ds: number[]) => ds.reduce((p, d) => p * d, 1);
  switch (step.node.opType) {
    case "ConstantOfShape": { const d = ints(inputs[0]); return d && d.every((v) => v >= 0) ? 4 * prod(d) : undefined; }
    case "Range": {
      const [start, limit, delta] = [0, 1, 2].map((i) => ints(inputs[i])?.[0]);
      if (start === undefined || limit === undefined || !delta) return undefined;
      return 8 * Math.max(0, Math.ceil((limit - start) / delta));
    }
    case "Resize": case "Upsample": {
      const x = inputs[0];
      if (!x) return undefined;
      const sizes = ints(inputs[3]);
      const scales = inputs[step.node.opType === "Upsample" ? 1 : 2]?.data as ArrayLike<number> | undefined;
      if (sizes?.length === x.dims.length) return 4 * prod(sizes.map((v) => Math.max(0, v)));
      if (scales && scales.length === x.dims.length) return 4 * prod(x.dims.map((d, i) => Math.max(0, Math.floor(d * Number(scales[i])))));
      return undefined;
    }
    default: return undefined;
  }
}

/** The typed error for a budget a kernel (or a nested run) passed, else undefined. */
export function asLimitExceeded(e: unknown, step: PlannedStep): OpqRuntimeError | undefined {
  if (e instanceof OpqRuntimeError && e.code === RUNTIME_ERROR_CODES.LIMIT_EXCEEDED) return e;
  if (e instanceof LimitError) return limitExceeded(`${step.node.opType} node '${step.name}': ${e.message}`, { node: step.name, opType: step.node.opType, limit: e.limit });
  return undefined;
}
