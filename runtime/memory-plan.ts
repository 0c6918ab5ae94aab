/**
 * The session's memory plan: for one set of input shapes, every float32 intermediate whose size
 * is then known gets a fixed offset in one arena, computed from lifetimes (producer step to the
 * step that releases it) by greedy-by-size placement — the largest value first, each at the
 * lowest offset where it overlaps no placed value that is alive at the same time (the scheme of
 * TFLite's arena planner). Values a view op passes through (Reshape, Flatten, …: the output is
 * the input's data) share their input's slot for the union of their lifetimes.
 *
 * The plan is a promise, not a trust: the session checks after each step that an output sits in
 * its own slot or in its alias group's, and moves anything else out of the arena.
 * @module
 */
import type { Dim } from "../format/mod.ts";
import type { Plan } from "./planner.ts";

/** Ops whose kernels may return their first input's data under new dims. */
const VIEW_OPS = new Set(["Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"]);
/** Slot alignment in bytes (SIMD loads want 16; a cache line keeps neighbours apart). */
const SLOT_ALIGN = 64;

/** Where one value lives in the arena. */
export interface Slot {
  offset: number;
  bytes: number;
  /** The value whose kernel writes the slot (the first of its alias group). */
  owner: string;
}

/** A memory plan for one set of input shapes. */
export interface MemoryPlan {
  /** Bytes of the arena. */
  arenaBytes: number;
  /** Slots by value name (every member of an alias group maps to the group's slot). */
  slots: Map<string, Slot>;
  /** For each step, the float32 lengths of the outputs it owns a slot for, in output order (what `alloc` hands out). */
  stepOutputs: { name: string; length: number }[][];
  /** Sum of the planned values' bytes (what a plan without reuse would need). */
  totalBytes: number;
}

/**
 * Plan the arena for inputs of dims `inputDims` (by input name). Values of unknown or symbolic
 * size, and non-float32 values, are left out (the session's heap takes them).
 */
export function planMemory(plan: Plan, inputDims: ReadonlyMap<string, readonly number[]>): MemoryPlan {
  const symbols = new Map<string, number>();
  for (const v of plan.inputs) {
    const got = inputDims.get(v.name);
    v.shape?.forEach((d, i) => { if (typeof d === "string" && got) symbols.set(d, got[i]!); });
  }
  const lengthOf = (name: string): number | undefined => {
    const sh: readonly Dim[] | undefined = plan.shapes.get(name);
    if (!sh || plan.dtypes.get(name) !== "float32") return undefined;
    let n = 1;
    for (const d of sh) {
      const v = typeof d === "number" ? d : d === null ? undefined : symbols.get(d);
      if (v === undefined) return undefined;
      n *= v;
    }
    return n;
  };
  const end = plan.steps.length;
  const graphOutputs = new Set(plan.outputs.map((o) => o.name));
  // Lifetimes [first, last] in step indices; graph outputs live to the end.
  const life = new Map<string, [number, number]>();
  const root = new Map<string, string>();
  const find = (v: string): string => { let r = v; while (root.get(r) !== r) r = root.get(r)!; return r; };
  plan.steps.forEach((s, i) => {
    for (const o of s.node.outputs) {
      if (!o || lengthOf(o) === undefined) continue;
      life.set(o, [i, graphOutputs.has(o) ? end : i]);
      root.set(o, o);
      const src = s.node.inputs[0];
      if (VIEW_OPS.has(s.node.opType) && src && root.has(src) && lengthOf(src) === lengthOf(o)) root.set(o, find(src));
    }
    for (const r of s.release) if (life.has(r)) life.get(r)![1] = i;
  });
  // Alias groups: one slot, the union of the members' lifetimes.
  const groups = new Map<string, { first: number; last: number; bytes: number; members: string[] }>();
  for (const [v, [first, last]] of life) {
    const r = find(v);
    const g = groups.get(r) ?? { first, last, bytes: Math.ceil((lengthOf(r)! * 4) / SLOT_ALIGN) * SLOT_ALIGN, members: [] };
    g.first = Math.min(g.first, first);
    g.last = Math.max(g.last, last);
    g.members.push(v);
    groups.set(r, g);
  }
  const order = [...groups].sort((a, b) => b[1].bytes - a[1].bytes || a[1].first - b[1].first);
  const placed: { offset: number; bytes: number; first: number; last: number }[] = [];
  const slots = new Map<string, Slot>();
  let arenaBytes = 0, totalBytes = 0;
  for (const [owner, g] of order) {
    // Lowest gap among placed values that are alive at the same time.
    const clash = placed.filter((p) => p.first <= g.last && g.first <= p.last).sort((a, b) => a.offset - b.offset);
    let offset = 0;
    for (const p of clash) {
      if (offset + g.bytes <= p.offset) break;
      offset = Math.max(offset, p.offset + p.bytes);
    }
    placed.push({ offset, bytes: g.bytes, first: g.first, last: g.last });
    const slot: Slot = { offset, bytes: g.bytes, owner };
    for (const m of g.members) slots.set(m, slot);
    arenaBytes = Math.max(arenaBytes, offset + g.bytes);
    totalBytes += g.bytes;
  }
  const stepOutputs = plan.steps.map((s) =>
    s.node.outputs.filter((o) => o && slots.get(o)?.owner === o).map((o) => ({ name: o, length: lengthOf(o)! })));
  return { arenaBytes, slots, stepOutputs, totalBytes };
}
