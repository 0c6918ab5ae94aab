/**
 * Control flow: If, Loop and Scan. The bodies are graph attributes the planner planned at load;
 * kernels run them through `ctx.runGraph`, which also binds the values a body reads from
 * enclosing graphs.
 * @module
 */
import { sizeOf, type Tensor } from "../../format/mod.ts";
import { makeTensor, normAxis, numbers } from "./elementwise.ts";
import { concat, takeElements, transposeOffsets } from "./shape.ts";
import { KernelError, type KernelContext, type Kernel, type OpVersion } from "./types.ts";
import { checkLoopState, countLoopStep, tensorBytes } from "../budget.ts";

const stateBytes = (...groups: readonly (readonly Tensor[])[]) => groups.flat().reduce((n, t) => n + (t ? tensorBytes(t) : 0), 0);

function runner(ctx: KernelContext, op: string): NonNullable<KernelContext["runGraph"]> {
  if (!ctx.runGraph) throw new KernelError(`${op}: the runtime did not bind its subgraphs`);
  return ctx.runGraph;
}

const truthy = (t: Tensor | undefined): boolean => !!t && numbers(t)[0] !== 0;

/** Stack same-shaped tensors along a new leading axis. */
function stack(parts: readonly Tensor[]): Tensor {
  const first = parts[0]!;
  const joined = concat(parts.map((p) => makeTensor(p.dtype, [1, ...p.dims], p.data)), 0);
  return makeTensor(first.dtype, [parts.length, ...first.dims], joined.data);
}

/** Move axis 0 of `t` to position `axis`. */
function moveLeadingAxis(t: Tensor, axis: number): Tensor {
  if (axis === 0) return t;
  const r = t.dims.length;
  const perm = Array.from({ length: r }, (_, i) => i).slice(1);
  perm.splice(axis, 0, 0);
  const { dims, offsets } = transposeOffsets(t.dims, perm);
  return takeElements(t, offsets, dims);
}

const ifKernel: Kernel = (inputs, _attrs, ctx) => runner(ctx, "If")(truthy(inputs[0]) ? "then_branch" : "else_branch", []);

/**
 * Loop: body(iteration, cond, carried...) → (cond, carried..., scan outputs...); runs while
 * the trip count (input M, if given) and the condition (input cond, if given) allow.
 */
const loopKernel: Kernel = (inputs, _attrs, ctx) => {
  const run = runner(ctx, "Loop");
  const maxTrips = inputs[0] ? Number(numbers(inputs[0])[0]) : Infinity;
  let cond = inputs[1] ? truthy(inputs[1]) : true;
  let carried = inputs.slice(2) as Tensor[];
  const scanCount = (ctx.outputCount ?? carried.length) - carried.length;
  const scans: Tensor[][] = Array.from({ length: scanCount }, () => []);
  let scanned = 0;
  for (let i = 0; i < maxTrips && cond; i++) {
    // A trip count of 2^62 or a condition that stays true ends at the run's step budget.
    countLoopStep(ctx.budget, "Loop");
    const iter = makeTensor("int64", [], BigInt64Array.of(BigInt(i)));
    const outs = run("body", [iter, makeTensor("bool", [], Uint8Array.of(cond ? 1 : 0)), ...carried]);
    cond = truthy(outs[0]);
    carried = outs.slice(1, 1 + carried.length);
    outs.slice(1 + carried.length).forEach((t, k) => { scans[k]!.push(t); scanned += t ? tensorBytes(t) : 0; });
    // A state that doubles each iteration stops at the memory budget, not at 6 GB.
    checkLoopState(ctx.budget, "Loop", stateBytes(carried) + scanned);
  }
  return [...carried, ...scans.map((parts) => (parts.length ? stack(parts) : makeTensor("float32", [0], new Float32Array(0))))];
};

interface ScanSpec {
  inAxes: number[];
  inDirs: number[];
  outAxes: number[];
  outDirs: number[];
  outCount: number;
}

/** The Scan loop proper: state in, per-step slices of the scan inputs, stacked scan outputs. */
function scanCore(run: NonNullable<KernelContext["runGraph"]>, state: Tensor[], scanIns: Tensor[], spec: ScanSpec, length: number | undefined, budget: KernelContext["budget"]): Tensor[] {
  const n = state.length;
  const full = scanIns[0] ? scanIns[0].dims[spec.inAxes[0]!]! : 0;
  for (let i = 1; i < scanIns.length; i++) {
    if (scanIns[i]!.dims[spec.inAxes[i]!] !== full) throw new KernelError("Scan: scan inputs differ in length along their axes");
  }
  const steps = length ?? full;
  const slices: Tensor[][] = Array.from({ length: spec.outCount }, () => []);
  let scanned = 0;
  for (let t = 0; t < steps; t++) {
    countLoopStep(budget, "Scan");
    const feedSlices = scanIns.map((x, i) => sliceAt(x, spec.inAxes[i]!, spec.inDirs[i] === 1 ? steps - 1 - t : t));
    const outs = run("body", [...state, ...feedSlices]);
    state = outs.slice(0, n);
    outs.slice(n).forEach((o, k) => { slices[k]!.push(o); scanned += o ? tensorBytes(o) : 0; });
    checkLoopState(budget, "Scan", stateBytes(state) + scanned);
  }
  const scanOuts = slices.map((parts, k) => {
    if (!parts.length) throw new KernelError("Scan: zero iterations leave scan outputs without a shape");
    const ordered = spec.outDirs[k] === 1 ? [...parts].reverse() : parts;
    const stacked = stack(ordered);
    return moveLeadingAxis(stacked, normAxis(spec.outAxes[k]!, stacked.dims.length, "Scan"));
  });
  return [...state, ...scanOuts];
}

/** Scan (opset 9+): body(state..., scan slices...) → (state..., scan output slices...), per step along each scan axis. */
const scanKernel: Kernel = (inputs, attrs, ctx) => {
  const m = attrs.int("num_scan_inputs");
  const all = inputs as Tensor[];
  const n = all.length - m;
  const scanIns = all.slice(n);
  const outCount = (ctx.outputCount ?? n) - n;
  return scanCore(runner(ctx, "Scan"), all.slice(0, n), scanIns, {
    inAxes: attrs.ints("scan_input_axes", new Array(m).fill(0)).map((a, i) => normAxis(a, scanIns[i]!.dims.length, "Scan")),
    inDirs: attrs.ints("scan_input_directions", new Array(m).fill(0)),
    outAxes: attrs.ints("scan_output_axes", new Array(outCount).fill(0)),
    outDirs: attrs.ints("scan_output_directions", new Array(outCount).fill(0)),
    outCount,
  }, undefined, ctx.budget);
};

/** Scan-8: a leading batch axis on states and scan inputs (scanned along axis 1), optional sequence_lens. */
const scan8Kernel: Kernel = (inputs, attrs, ctx) => {
  const run = runner(ctx, "Scan");
  const m = attrs.int("num_scan_inputs");
  const lens = inputs[0] ? Array.from(numbers(inputs[0]), Number) : undefined;
  const rest = inputs.slice(1) as Tensor[];
  const n = rest.length - m;
  const outCount = (ctx.outputCount ?? n) - n;
  const batch = rest[0]!.dims[0]!;
  const dirs = attrs.ints("directions", new Array(m).fill(0));
  const perBatch: Tensor[][] = [];
  for (let b = 0; b < batch; b++) {
    const at = rest.map((t) => sliceAt(t, 0, b));
    perBatch.push(scanCore(run, at.slice(0, n), at.slice(n), {
      inAxes: new Array(m).fill(0), inDirs: dirs, outAxes: new Array(outCount).fill(0), outDirs: new Array(outCount).fill(0), outCount,
    }, lens?.[b], ctx.budget));
  }
  return Array.from({ length: n + outCount }, (_, k) => stack(perBatch.map((outs) => outs[k]!)));
};

/** The slice of `x` at index `i` along `axis`, with that axis removed. */
function sliceAt(x: Tensor, axis: number, i: number): Tensor {
  const dims = x.dims.filter((_, k) => k !== axis);
  const outer = sizeOf(x.dims.slice(0, axis)), inner = sizeOf(x.dims.slice(axis + 1));
  const offsets = new Int32Array(outer * inner);
  for (let o = 0; o < outer; o++) for (let q = 0; q < inner; q++) offsets[o * inner + q] = (o * x.dims[axis]! + i) * inner + q;
  return takeElements(x, offsets, dims);
}

/** Control-flow ops by ONNX op type. */
export const CONTROL_OPS: Record<string, OpVersion[]> = {
  If: [{ since: 1, kernel: ifKernel }],
  Loop: [{ since: 1, kernel: loopKernel }],
  Scan: [{ since: 8, kernel: scan8Kernel }, { since: 9, kernel: scanKernel }],
};
