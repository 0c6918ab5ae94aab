/**
 * Epilogue fusion: a Conv or Gemm whose output feeds only an Add (a residual) and/or a Relu or
 * Clip is offered to the backends as one node computing `clamp(op(x) + residual, lo, hi)`, so the
 * output is written once instead of three times. Found on the plan, applied only where a backend
 * claims the fused node; otherwise the nodes stay separate.
 * @module
 */
import type { Node, Tensor } from "../format/mod.ts";
import type { Epilogue } from "./backend.ts";
import type { Plan, PlannedStep } from "./planner.ts";

/** A fusable chain: the head step, the steps it absorbs, and the fused node. */
export interface FusionCandidate {
  head: number;
  absorbed: number[];
  node: Node;
  epilogue: Epilogue;
}

const FLT_MAX = 3.4028234663852886e38;

/** Clamp bounds of a Relu or Clip step, or undefined when they are not constants. */
function clampOf(step: PlannedStep, constants: ReadonlyMap<string, Tensor>): [number, number] | undefined {
  const { node } = step;
  if (node.opType === "Relu") return [0, Infinity];
  if (node.opType !== "Clip") return undefined;
  if (step.ctx.opset < 11) {
    try {
      return [step.attrs.float("min", -FLT_MAX), step.attrs.float("max", FLT_MAX)];
    } catch {
      return undefined; // a malformed attribute: not fused; the Clip kernel reports it at run()
    }
  }
  const bound = (k: number, fallback: number) => {
    const name = node.inputs[k];
    if (!name) return fallback;
    const c = constants.get(name);
    return c && c.data.length === 1 && typeof c.data[0] === "number" ? c.data[0] : undefined;
  };
  const lo = bound(1, -Infinity), hi = bound(2, Infinity);
  return lo === undefined || hi === undefined ? undefined : [lo, hi];
}

/** Every chain Conv|Gemm → [Add] → [Relu|Clip] whose inner values have no other reader. */
export function findFusions(plan: Plan): FusionCandidate[] {
  const readers = new Map<string, number[]>();
  plan.steps.forEach((s, i) => { for (const n of new Set(s.reads)) if (n) readers.set(n, [...(readers.get(n) ?? []), i]); });
  const outputs = new Set(plan.outputs.map((o) => o.name));
  const producer = new Map<string, number>();
  plan.steps.forEach((s, i) => s.node.outputs.forEach((o) => o && producer.set(o, i)));
  /** The only reader of value `v`, if it has exactly one and `v` is not a graph output. */
  const soleReader = (v: string): number | undefined => {
    const r = readers.get(v);
    return r && r.length === 1 && !outputs.has(v) ? r[0] : undefined;
  };
  const f32 = (v: string) => plan.dtypes.get(v) === "float32";
  const out: FusionCandidate[] = [];
  plan.steps.forEach((head, i) => {
    const op = head.node.opType;
    if ((op !== "Conv" && op !== "Gemm") || head.subplans || head.node.outputs.length !== 1 || !f32(head.node.outputs[0]!)) return;
    let value = head.node.outputs[0]!;
    const absorbed: number[] = [];
    const inputs = [...head.node.inputs];
    let residual: number | undefined;
    let j = soleReader(value);
    let next = j === undefined ? undefined : plan.steps[j]!;
    if (next?.node.opType === "Add" && next.node.inputs.length === 2) {
      const other = next.node.inputs[0] === value ? next.node.inputs[1]! : next.node.inputs[0]!;
      const same = (a = plan.shapes.get(other), b = plan.shapes.get(value)) => !!a && !!b && a.length === b.length && a.every((d, k) => d === b[k]);
      const ready = plan.constants.has(other) || plan.inputs.some((v) => v.name === other) || (producer.get(other) ?? Infinity) < i;
      if (other !== value && f32(other) && same() && ready) {
        residual = inputs.length;
        inputs.push(other);
        absorbed.push(j!);
        value = next.node.outputs[0]!;
        j = soleReader(value);
        next = j === undefined ? undefined : plan.steps[j]!;
      }
    }
    let lo = -Infinity, hi = Infinity;
    const clamp = next ? clampOf(next, plan.constants) : undefined;
    if (clamp && next!.node.inputs[0] === value) {
      [lo, hi] = clamp;
      absorbed.push(j!);
      value = next!.node.outputs[0]!;
    }
    if (!absorbed.length) return;
    const names = absorbed.map((k) => plan.steps[k]!.name);
    out.push({
      head: i,
      absorbed,
      node: { ...head.node, name: [head.name, ...names].join("+"), inputs, outputs: [value] },
      epilogue: { residual, lo, hi, fused: names },
    });
  });
  return out;
}

/**
 * Apply the claimed fusions to the plan in place: each head step gets the fused node, takes over
 * the releases of the steps it absorbs (minus the values that no longer exist), which are removed.
 */
export function applyFusions(plan: Plan, claimed: readonly FusionCandidate[]): void {
  const drop = new Set<number>();
  for (const c of claimed) {
    const head = plan.steps[c.head]!;
    const gone = new Set<string>();
    for (const k of c.absorbed) {
      const s = plan.steps[k]!;
      drop.add(k);
      for (const inp of s.node.inputs) gone.add(inp);
      head.release.push(...s.release);
    }
    for (const o of head.node.outputs) gone.add(o);
    for (const k of c.absorbed) for (const o of plan.steps[k]!.node.outputs) gone.add(o);
    gone.delete(c.node.outputs[0]!);
    // Values the fused node still reads (the residual) keep their release here.
    for (const inp of c.node.inputs) gone.delete(inp);
    head.release = [...new Set(head.release.filter((r) => !gone.has(r) || c.node.inputs.includes(r)))];
    head.node = c.node;
    head.name = c.node.name;
    head.reads = [...c.node.inputs];
  }
  plan.steps = plan.steps.filter((_, k) => !drop.has(k));
}
