/**
 * FPGM filter pruning (He et al., CVPR 2019) with physical removal: the filters nearest the
 * geometric median of a conv are dropped together with their bias, the matching per-channel
 * parameters of channel-wise ops (BatchNormalization) and the input channels of every consumer
 * Conv/Gemm/MatMul; a depthwise conv on the way loses the same channels (and its group count).
 * Shared per-channel parameters (deduplicated zero biases) get private copies first. A conv whose output reaches an Add, Concat, graph output or any op that mixes
 * channels is skipped (tied channels must be pruned together or not at all) and reported.
 * @module
 */
import { type Graph, type Node, sizeOf, type Tensor } from "../format/mod.ts";
import { COMPRESS_ERROR_CODES as E, ensure } from "./errors.ts";

/** Ops that act on each channel separately and keep the channel axis (input 0 is the data). */
const CHANNEL_WISE_OPS: ReadonlySet<string> = new Set([
  "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu", "Selu", "Softplus",
  "Identity", "Dropout", "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization",
]);

/** A conv whose filters were removed. */
export interface PrunedConv {
  node: string;
  weight: string;
  filters: number;
  /** Removed output channels, ascending. */
  removed: number[];
}

/** A conv left alone, and why. */
export interface SkippedConv {
  node: string;
  weight: string;
  reason: string;
}

/** The pruned graph and what happened to each Conv. */
export interface FilterPruneResult {
  graph: Graph;
  pruned: PrunedConv[];
  skipped: SkippedConv[];
}

/** FPGM scores s_j = Σ_k ‖F_j − F_k‖₂ of the `filters` rows of a row-major weight. */
export function fpgmScores(w: Float32Array, filters: number): Float64Array {
  const d = w.length / filters, s = new Float64Array(filters);
  for (let j = 0; j < filters; j++) {
    for (let k = j + 1; k < filters; k++) {
      let acc = 0;
      for (let e = 0, a = j * d, b = k * d; e < d; e++) { const t = w[a + e]! - w[b + e]!; acc += t * t; }
      const dist = Math.sqrt(acc);
      s[j]! += dist; s[k]! += dist;
    }
  }
  return s;
}

/** The ⌊rate·n⌋ filters (at most n − 1) with the smallest FPGM score, ascending by index; ties by index. */
export function fpgmSelect(scores: Float64Array, rate: number): number[] {
  const n = scores.length, count = Math.min(n - 1, Math.floor(rate * n));
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a]! - scores[b]! || a - b);
  return order.slice(0, Math.max(0, count)).sort((a, b) => a - b);
}

function intAttr(node: Node, name: string, fallback: number): number {
  const a = node.attrs[name];
  return a && a.type === "int" ? a.value : fallback;
}

/** Remove the given indices along `axis` of a float tensor. */
export function sliceAxis(t: Tensor, axis: number, remove: ReadonlySet<number>): Tensor {
  const dims = t.dims, src = t.data as Float32Array;
  const outer = sizeOf(dims.slice(0, axis)), n = dims[axis]!, inner = sizeOf(dims.slice(axis + 1));
  const keep = Array.from({ length: n }, (_, i) => i).filter((i) => !remove.has(i));
  const out = new Float32Array(outer * keep.length * inner);
  let o = 0;
  for (let a = 0; a < outer; a++) for (const c of keep) { out.set(src.subarray((a * n + c) * inner, (a * n + c + 1) * inner), o); o += inner; }
  return { dtype: t.dtype, dims: dims.map((d, i) => (i === axis ? keep.length : d)), data: out };
}

/**
 * FPGM-prune every prunable Conv of `graph` at filter rate `rate` (paper §5 of ALGORITHMS.md),
 * physically. Scores use the original weights; the input graph is not modified.
 */
export function pruneFilters(graph: Graph, rate: number): FilterPruneResult {
  ensure(rate >= 0 && rate < 1, E.INVALID_OPTION, `filter rate must be in [0, 1), got ${rate}`);
  const inits = graph.initializers;
  const uses = new Map<string, { node: Node; slot: number }[]>();
  for (const node of graph.nodes) node.inputs.forEach((name, slot) => { if (name) (uses.get(name) ?? uses.set(name, []).get(name)!).push({ node, slot }); });
  const outputs = new Set(graph.outputs.map((o) => o.name));
  // PyTorch exports deduplicated constants as Identity(initializer): follow Identity chains.
  const producer = new Map(graph.nodes.flatMap((n) => n.outputs.map((o) => [o, n] as const)));
  const constOf = (name: string | undefined): string | undefined => {
    for (let hops = 0; name && hops < 8; hops++) {
      if (Object.hasOwn(inits, name)) return name;
      const p = producer.get(name);
      name = p && p.opType === "Identity" && (p.domain === "" || p.domain === "ai.onnx") ? p.inputs[0] : undefined;
    }
    return undefined;
  };
  const floatInit = (name: string | undefined) => { const c = constOf(name); return c && inits[c]!.dtype === "float32" ? inits[c] : undefined; };
  const usedOnce = (name: string) => (uses.get(name)?.length ?? 0) === 1 && !outputs.has(name);
  // Nodes are copied so that shared per-channel parameters can be given private names and a
  // depthwise conv its new group count; the input graph stays untouched.
  const copies = new Map(graph.nodes.map((n) => [n, { ...n, inputs: [...n.inputs], attrs: { ...n.attrs } }]));
  const initializers: Record<string, Tensor> = { ...inits };
  const replaced = new Set<string>(); // originals that got private copies (dropped below if now unused)
  const privatize = (node: Node, slot: number): string => {
    const name = constOf(node.inputs[slot])!;
    if (name === node.inputs[slot] && usedOnce(name)) return name;
    let fresh = `${name}.${node.name || node.outputs[0]}`;
    for (let k = 1; Object.hasOwn(initializers, fresh); k++) fresh = `${name}.${node.name || node.outputs[0]}.${k}`;
    initializers[fresh] = inits[name]!;
    replaced.add(name);
    copies.get(node)!.inputs[slot] = fresh;
    return fresh;
  };

  const cuts = new Map<string, Map<number, Set<number>>>(); // initializer → axis → removed indices
  const channelCount = new Map<string, number>(); // traced value → channels left
  const pruned: PrunedConv[] = [], skipped: SkippedConv[] = [];
  const isDepthwise = (n: Node, channels: number) =>
    n.opType === "Conv" && intAttr(n, "group", 1) === channels && channels > 1 && floatInit(n.inputs[1])?.dims[0] === channels && floatInit(n.inputs[1])!.dims[1] === 1;

  for (const conv of graph.nodes) {
    if (conv.opType !== "Conv" || (conv.domain !== "" && conv.domain !== "ai.onnx")) continue;
    const wName = conv.inputs[1] ?? "", w = floatInit(wName), label = conv.name || conv.outputs[0]!;
    const skip = (reason: string) => skipped.push({ node: label, weight: wName, reason });
    if (!w || w.dims.length < 3 || !Object.hasOwn(inits, wName)) { skip("weight is not a float32 initializer"); continue; }
    if (intAttr(conv, "group", 1) !== 1) { skip("grouped convolution"); continue; }
    if (!usedOnce(wName)) { skip("weight shared with another node"); continue; }
    const filters = w.dims[0]!;
    const bias = conv.inputs[2];
    if (bias && floatInit(bias)?.dims[0] !== filters) { skip("bias is not a float32 initializer"); continue; }
    // Trace the output through channel-wise ops to the consumers whose input channels must go.
    // Each cut is [node, input slot, axis, reached through Flatten, is a consumer's weight].
    const plan: [Node, number, number, boolean, boolean][] = bias ? [[conv, 2, 0, false, false]] : [];
    const depthwise: Node[] = [];
    const traced: string[] = [];
    let blocked = "";
    const stack: { value: string; flat: boolean }[] = [{ value: conv.outputs[0]!, flat: false }];
    const seen = new Set<string>();
    while (stack.length && !blocked) {
      const { value, flat } = stack.pop()!;
      if (seen.has(value)) continue;
      seen.add(value);
      if (!flat) traced.push(value);
      if (outputs.has(value)) { blocked = "output is a graph output"; break; }
      for (const { node, slot } of uses.get(value) ?? []) {
        const op = node.opType, name = node.name || op;
        if (slot !== 0) { blocked = `channels tied by ${op} ${name} (input ${slot})`; break; }
        if (node.outputs.slice(1).some((o) => o && uses.has(o))) { blocked = `${op} ${name} has a used second output`; break; }
        if (CHANNEL_WISE_OPS.has(op) || (!flat && isDepthwise(node, filters))) {
          if (flat && /Pool|BatchNorm/.test(op)) { blocked = `${op} ${name} after Flatten`; break; }
          if (op === "BatchNormalization" || op === "Conv") {
            const slots = node.inputs.map((_, i) => i).filter((i) => i > 0 && node.inputs[i]);
            const bad = slots.find((i) => floatInit(node.inputs[i])?.dims[0] !== filters);
            if (bad !== undefined) { blocked = `${op} ${name} has a parameter ${node.inputs[bad]} that is not a per-channel float32 initializer`; break; }
            for (const i of slots) plan.push([node, i, 0, false, false]);
            if (op === "Conv") depthwise.push(node);
          } else if (op === "PRelu") { blocked = `PRelu ${name} slope layout not handled`; break; }
          stack.push({ value: node.outputs[0]!, flat });
        } else if (op === "Flatten" && !flat && intAttr(node, "axis", 1) === 1) {
          // [N, C, H, W] → [N, C·H·W]: channel j becomes the block of H·W features j·HW … (j+1)·HW − 1.
          stack.push({ value: node.outputs[0]!, flat: true });
        } else if (op === "Conv" && !flat && intAttr(node, "group", 1) === 1 && floatInit(node.inputs[1]) && usedOnce(node.inputs[1]!)) {
          plan.push([node, 1, 1, false, true]);
        } else if (op === "Gemm" && flat && intAttr(node, "transA", 0) === 0 && floatInit(node.inputs[1]) && usedOnce(node.inputs[1]!)) {
          plan.push([node, 1, intAttr(node, "transB", 0) === 1 ? 1 : 0, true, true]);
        } else if (op === "MatMul" && flat && floatInit(node.inputs[1])?.dims.length === 2 && usedOnce(node.inputs[1]!)) {
          plan.push([node, 1, 0, true, true]);
        } else {
          blocked = `channels tied by ${op} ${name}`;
          break;
        }
      }
    }
    if (blocked) { skip(blocked); continue; }
    if (!plan.some((c) => c[4])) { skip("output feeds no Conv/Gemm/MatMul"); continue; }
    const blockOf = ([node, slot, axis, flattened]: (typeof plan)[number]): number => {
      const k = floatInit(node.inputs[slot])!.dims[axis]!;
      return flattened ? k / filters : k === filters ? 1 : NaN;
    };
    const bad = plan.find((c) => !Number.isInteger(blockOf(c)));
    if (bad) { skip(`${bad[0].inputs[bad[1]]} has ${floatInit(bad[0].inputs[bad[1]])!.dims[bad[2]]} input features, not a multiple of ${filters} channels`); continue; }
    const removed = fpgmSelect(fpgmScores(w.data as Float32Array, filters), rate);
    if (removed.length === 0) { skip("rate removes no filter"); continue; }
    const cut = (name: string, axis: number, block: number) => {
      const byAxis = cuts.get(name) ?? cuts.set(name, new Map()).get(name)!;
      const acc = byAxis.get(axis) ?? new Set<number>();
      for (const j of removed) for (let e = 0; e < block; e++) acc.add(j * block + e);
      byAxis.set(axis, acc);
    };
    cut(wName, 0, 1);
    for (const c of plan) cut(privatize(c[0], c[1]), c[2], blockOf(c));
    for (const d of depthwise) copies.get(d)!.attrs.group = { type: "int", value: filters - removed.length };
    for (const v of traced) channelCount.set(v, filters - removed.length);
    pruned.push({ node: label, weight: wName, filters, removed });
  }

  for (const [name, byAxis] of cuts) {
    let t = initializers[name]!;
    for (const [axis, remove] of byAxis) t = sliceAxis(t, axis, remove);
    initializers[name] = t;
  }
  // Identity nodes and shared originals that privatization left unread are dropped (not with subgraphs,
  // whose reads are not tracked here).
  let nodes = graph.nodes.map((n) => copies.get(n)!);
  if (!graph.nodes.some((n) => Object.values(n.attrs).some((a) => a.type === "graph"))) {
    const readBy = (ns: Node[]) => new Set(ns.flatMap((n) => n.inputs).concat([...outputs]));
    const read = readBy(nodes);
    nodes = nodes.filter((n) => n.opType !== "Identity" || n.outputs.some((o) => read.has(o)));
    const still = readBy(nodes);
    for (const name of replaced) if (!still.has(name)) delete initializers[name];
  }
  const valueInfo = graph.valueInfo?.map((vi) => {
    const c = channelCount.get(vi.name);
    return c !== undefined && vi.shape && typeof vi.shape[1] === "number" ? { ...vi, shape: vi.shape.map((d, i) => (i === 1 ? c : d)) } : vi;
  });
  return { graph: { ...graph, nodes, initializers, ...(valueInfo ? { valueInfo } : {}) }, pruned, skipped };
}
