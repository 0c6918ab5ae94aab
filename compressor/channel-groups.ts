/**
 * Channel spaces for structured pruning that follows residual connections: a *space* is a set of
 * values that share one channel axis because channel j of each is computed from channel j of the
 * others — a Conv's output, the channel-wise ops after it (ReLU, the ai.opq ApotQuantize, pools),
 * and every Add that sums such values (a residual stream: all convs writing into it are tied).
 * Removing channel j of a space means removing filter j (and bias j) of every producing Conv and
 * input channel j of every consuming Conv/Gemm; when the producers' filters and biases j are zero
 * the removal is exact, which is how SPQ/PPQ train (masks) before removing (ALGORITHMS.md §5).
 * A space is blocked (not prunable) when any of its values reaches a graph output, an op that
 * mixes channels other than a consumer, an Add with a value outside it, a non-Conv producer, a
 * grouped conv or a shared weight; the reason is reported.
 * @module
 */
import { type Graph, type Node, sizeOf, type Tensor } from "../format/mod.ts";
import { fpgmScores, fpgmSelect, sliceAxis } from "./fpgm.ts";

/** Ops that keep the channel axis and act on each channel separately, with no per-channel parameter. */
const PASS_THROUGH: ReadonlySet<string> = new Set(["Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSwish", "Identity", "Dropout", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ApotQuantize"]);

/** A Conv writing into a space: its filters are the space's channels. */
export interface SpaceProducer {
  node: string;
  weight: string;
  bias?: string;
}

/** A Conv or Gemm reading a space: its input features `j·block … (j+1)·block − 1` along `axis` of `weight` are channel j. */
export interface SpaceConsumer {
  node: string;
  weight: string;
  axis: number;
  block: number;
}

/** One channel space. */
export interface ChannelSpace {
  channels: number;
  producers: SpaceProducer[];
  consumers: SpaceConsumer[];
  /** The values (tensor names) sharing the channel axis. */
  values: string[];
  /** Why the space cannot be pruned, or "" if it can. */
  blocked: string;
}

const isDefault = (n: Node) => n.domain === "" || n.domain === "ai.onnx";
const intAttr = (n: Node, k: string, f: number) => { const a = n.attrs[k]; return a && a.type === "int" ? a.value : f; };

/** The channel spaces of `graph` (prunable and blocked), producers in node order. */
export function channelSpaces(graph: Graph): ChannelSpace[] {
  const inits = graph.initializers;
  const uses = new Map<string, { node: Node; slot: number }[]>();
  for (const node of graph.nodes) node.inputs.forEach((v, slot) => { if (v) (uses.get(v) ?? uses.set(v, []).get(v)!).push({ node, slot }); });
  const usedOnce = (v: string) => (uses.get(v)?.length ?? 0) === 1;
  const floatInit = (v: string | undefined): Tensor | undefined => (v && Object.hasOwn(inits, v) && inits[v]!.dtype === "float32" ? inits[v] : undefined);
  // Union-find over value names.
  const parent = new Map<string, string>();
  const find = (v: string): string => { let r = v; while (parent.get(r) !== r) r = parent.get(r)!; parent.set(v, r); return r; };
  const blockedBy = new Map<string, string>(); // value → reason (resolved to roots later)
  const producers = new Map<string, SpaceProducer & { channels: number }>(); // output value → producer
  const flat = new Map<string, string>(); // a Flatten's output → the space value it flattens
  const inSpace = (v: string) => parent.has(v);
  const union = (a: string, b: string) => { const ra = find(a), rb = find(b); if (ra !== rb) parent.set(ra, rb); };

  for (const node of graph.nodes) {
    const out = node.outputs[0];
    if (!out) continue;
    const opType = isDefault(node) || node.domain === "ai.opq" ? node.opType : `${node.domain}:${node.opType}`;
    if (opType === "Conv" && isDefault(node)) {
      const w = floatInit(node.inputs[1]), b = node.inputs[2] ? floatInit(node.inputs[2]) : undefined;
      parent.set(out, out);
      const label = node.name || out;
      if (!w || w.dims.length !== 4) blockedBy.set(out, `${label}: weight is not a 4-D float32 initializer`);
      else if (intAttr(node, "group", 1) !== 1) blockedBy.set(out, `${label}: grouped convolution`);
      else if (!usedOnce(node.inputs[1]!)) blockedBy.set(out, `${label}: weight shared with another node`);
      else if (node.inputs[2] && (!b || b.dims.length !== 1 || b.dims[0] !== w.dims[0] || !usedOnce(node.inputs[2]))) blockedBy.set(out, `${label}: bias is not a private per-filter float32 initializer`);
      if (w) producers.set(out, { node: label, weight: node.inputs[1]!, bias: node.inputs[2] || undefined, channels: w.dims[0]! });
    } else if (PASS_THROUGH.has(opType) && inSpace(node.inputs[0] ?? "")) {
      parent.set(out, out);
      union(out, node.inputs[0]!);
    } else if (opType === "Add" && node.inputs.some((v) => inSpace(v))) {
      parent.set(out, out);
      for (const v of node.inputs) {
        if (inSpace(v)) union(out, v);
        else blockedBy.set(out, `${node.name || out}: Add of a value (${v}) outside the channel space`);
      }
    } else if (opType === "Flatten" && inSpace(node.inputs[0] ?? "") && intAttr(node, "axis", 1) === 1) {
      flat.set(out, node.inputs[0]!);
    }
  }
  // Readers: consumers, or reasons to block.
  const consumers = new Map<string, SpaceConsumer[]>(); // root → consumers (filled after roots are final)
  const pending: [string, SpaceConsumer][] = [];
  const check = (value: string, space: string, viaFlatten: boolean) => {
    for (const { node, slot } of uses.get(value) ?? []) {
      const label = node.name || node.outputs[0] || node.opType;
      const op = isDefault(node) || node.domain === "ai.opq" ? node.opType : `${node.domain}:${node.opType}`;
      if (!viaFlatten && ((PASS_THROUGH.has(op) && slot === 0) || op === "Add")) continue;
      if (!viaFlatten && op === "Flatten" && flat.has(node.outputs[0]!)) continue;
      const w = floatInit(node.inputs[1]);
      if (!viaFlatten && op === "Conv" && slot === 0 && w && intAttr(node, "group", 1) === 1 && usedOnce(node.inputs[1]!)) {
        pending.push([space, { node: label, weight: node.inputs[1]!, axis: 1, block: 1 }]);
      } else if (viaFlatten && op === "Gemm" && slot === 0 && w && w.dims.length === 2 && intAttr(node, "transA", 0) === 0 && usedOnce(node.inputs[1]!)) {
        const axis = intAttr(node, "transB", 0) === 1 ? 1 : 0;
        pending.push([space, { node: label, weight: node.inputs[1]!, axis, block: -1 }]);
      } else if (viaFlatten && op === "MatMul" && slot === 0 && w && w.dims.length === 2 && usedOnce(node.inputs[1]!)) {
        pending.push([space, { node: label, weight: node.inputs[1]!, axis: 0, block: -1 }]);
      } else {
        blockedBy.set(space, `${value} is read by ${op} ${label}${slot ? ` (input ${slot})` : ""}, which mixes channels`);
      }
    }
  };
  for (const v of parent.keys()) check(v, v, false);
  for (const [f, v] of flat) check(f, v, true);
  const outputs = new Set(graph.outputs.map((o) => o.name));
  for (const v of parent.keys()) if (outputs.has(v)) blockedBy.set(v, `${v} is a graph output`);
  for (const [v, c] of pending) (consumers.get(find(v)) ?? consumers.set(find(v), []).get(find(v))!).push(c);

  const spaces = new Map<string, ChannelSpace>();
  for (const v of parent.keys()) {
    const r = find(v);
    const s = spaces.get(r) ?? spaces.set(r, { channels: 0, producers: [], consumers: consumers.get(r) ?? [], values: [], blocked: "" }).get(r)!;
    s.values.push(v);
    const p = producers.get(v);
    if (p) {
      if (s.channels && s.channels !== p.channels) s.blocked ||= `producers of ${s.channels} and ${p.channels} channels are tied`;
      s.channels ||= p.channels;
      s.producers.push({ node: p.node, weight: p.weight, ...(p.bias ? { bias: p.bias } : {}) });
    }
    const why = blockedBy.get(v);
    if (why) s.blocked ||= why;
  }
  for (const s of spaces.values()) {
    if (!s.producers.length) s.blocked ||= "no Conv produces it";
    if (!s.consumers.length) s.blocked ||= "no Conv or Gemm reads it";
    for (const c of s.consumers) {
      if (c.block !== -1) continue;
      const k = inits[c.weight]!.dims[c.axis]!;
      if (k % s.channels !== 0) s.blocked ||= `${c.weight} has ${k} input features, not a multiple of ${s.channels} channels`;
      else c.block = k / s.channels;
    }
    for (const c of s.consumers) if (c.block === 1 && inits[c.weight]!.dims[c.axis] !== s.channels) s.blocked ||= `${c.weight} reads ${inits[c.weight]!.dims[c.axis]} channels, not ${s.channels}`;
  }
  return [...spaces.values()];
}

/**
 * FPGM on a space: channel j is the concatenation of filter j of every producer (weights taken
 * from `weights`, else the graph); returns the ⌊rate·channels⌋ channels nearest the geometric
 * median, ascending. `exclude` channels (already pruned) are never chosen again and count
 * toward the rate.
 */
export function selectSpaceChannels(space: ChannelSpace, weight: (name: string) => Float32Array, rate: number, exclude: readonly number[] = []): number[] {
  const n = space.channels;
  const rows = space.producers.map((p) => weight(p.weight));
  const d = rows.reduce((a, w) => a + w.length / n, 0);
  const m = new Float32Array(n * d);
  let o = 0;
  for (let j = 0; j < n; j++) for (const w of rows) { const k = w.length / n; m.set(w.subarray(j * k, (j + 1) * k), o); o += k; }
  const want = Math.min(n - 1, Math.floor(rate * n));
  const ex = new Set(exclude);
  if (ex.size >= want) return [...ex].sort((a, b) => a - b);
  const scores = fpgmScores(m, n);
  for (const j of ex) scores[j] = -Infinity; // kept first in the order, so they stay selected
  return fpgmSelect(scores, want / n + 1e-9).sort((a, b) => a - b);
}

/**
 * Remove channels physically: for every space with a non-empty `removed` list, filter j of each
 * producer (weight axis 0, bias), input channel j of each consumer. Returns a new graph (the input
 * is not modified); value infos' channel dims are updated.
 */
export function removeChannels(graph: Graph, cuts: readonly { space: ChannelSpace; removed: readonly number[] }[]): Graph {
  const initializers: Record<string, Tensor> = { ...graph.initializers };
  const channelOf = new Map<string, number>();
  for (const { space, removed } of cuts) {
    if (!removed.length) continue;
    const drop = new Set(removed);
    const cut = (name: string, axis: number, block: number) => {
      const r = new Set<number>();
      for (const j of drop) for (let e = 0; e < block; e++) r.add(j * block + e);
      initializers[name] = sliceAxis(initializers[name]!, axis, r);
    };
    for (const p of space.producers) { cut(p.weight, 0, 1); if (p.bias) cut(p.bias, 0, 1); }
    for (const c of space.consumers) cut(c.weight, c.axis, c.block);
    for (const v of space.values) channelOf.set(v, space.channels - drop.size);
  }
  const valueInfo = graph.valueInfo?.map((vi) => {
    const c = channelOf.get(vi.name);
    return c !== undefined && vi.shape && typeof vi.shape[1] === "number" ? { ...vi, shape: vi.shape.map((d, i) => (i === 1 ? c : d)) } : vi;
  });
  return { ...graph, initializers, ...(valueInfo ? { valueInfo } : {}) };
}

/** Multiply-accumulates of one image through the Conv and Gemm/MatMul nodes of `graph` for input dims `[1, …]`; undefined when a shape on the way is unknown. */
export function countMacs(graph: Graph, inputDims: readonly number[]): number | undefined {
  const dims = new Map<string, number[]>();
  const feed = graph.inputs.find((i) => !Object.hasOwn(graph.initializers, i.name));
  if (!feed) return undefined;
  dims.set(feed.name, [...inputDims]);
  for (const [k, t] of Object.entries(graph.initializers)) dims.set(k, t.dims);
  let macs = 0;
  for (const node of graph.nodes) {
    const x = dims.get(node.inputs[0] ?? ""), out = node.outputs[0]!;
    if (!x) return undefined;
    const ints = (k: string, f: number[]) => { const a = node.attrs[k]; return a && a.type === "ints" ? a.value : f; };
    switch (node.opType) {
      case "Conv": {
        const w = dims.get(node.inputs[1]!)!, k = w.slice(2), s = ints("strides", k.map(() => 1)), p = ints("pads", [...k, ...k].map(() => 0)), dl = ints("dilations", k.map(() => 1));
        const sp = k.map((kk, i) => Math.floor((x[2 + i]! + p[i]! + p[i + k.length]! - dl[i]! * (kk - 1) - 1) / s[i]!) + 1);
        const y = [x[0]!, w[0]!, ...sp];
        macs += sizeOf(y) * sizeOf(w.slice(1));
        dims.set(out, y);
        break;
      }
      case "Gemm": case "MatMul": {
        const w = dims.get(node.inputs[1]!)!, transB = node.opType === "Gemm" && node.attrs.transB?.type === "int" && node.attrs.transB.value === 1;
        const n = transB ? w[0]! : w[1]!;
        macs += x[0]! * x[1]! * n;
        dims.set(out, [x[0]!, n]);
        break;
      }
      case "GlobalAveragePool": case "GlobalMaxPool": dims.set(out, [x[0]!, x[1]!, ...x.slice(2).map(() => 1)]); break;
      case "Flatten": dims.set(out, [x[0]!, sizeOf(x.slice(1))]); break;
      case "MaxPool": case "AveragePool": {
        const k = ints("kernel_shape", []), s = ints("strides", k.map(() => 1)), p = ints("pads", [...k, ...k].map(() => 0));
        dims.set(out, [x[0]!, x[1]!, ...k.map((kk, i) => Math.floor((x[2 + i]! + p[i]! + p[i + k.length]! - kk) / s[i]!) + 1)]);
        break;
      }
      default:
        if (PASS_THROUGH.has(node.opType) || node.opType === "Add") dims.set(out, x);
        else return undefined;
    }
  }
  return macs;
}
