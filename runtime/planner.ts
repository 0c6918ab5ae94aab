/**
 * Load-time planning: resolve every node to a kernel (the newest variant not newer than the
 * model's opset for the node's domain) and refuse the model with ONE error listing every
 * unsupported op, subgraphs included; fold nodes whose inputs are all constants (and Shape of a
 * statically known shape); infer shapes where the graph allows (symbolic dims such as a dynamic
 * batch stay symbolic); plan subgraphs (If/Loop/Scan bodies) with the enclosing names in scope;
 * and plan buffer lifetimes so each intermediate is released right after its last reader.
 * @module
 */
import { type CompressedTensor, type Dim, type DType, DTYPE_BYTES, dequantize, type Graph, type Model, type Node, type Tensor, type ValueInfo } from "../format/mod.ts";
import { OpqRuntimeError, RUNTIME_ERROR_CODES } from "./errors.ts";
import { convGeometry, convPath, geometryInt, type PreparedConv, windowOutputSize } from "./ops/conv.ts";
import { sliceRange } from "./ops/shape.ts";
import { OPS, resolveOp } from "./ops/registry.ts";
import { OPQ_DOMAIN, OPQ_DOMAIN_OPS } from "./ops/quantize.ts";
import { Attrs, type Kernel, type KernelContext, KernelError, type OpVersion } from "./ops/types.ts";

/** One node ready to run. */
export interface PlannedStep {
  node: Node;
  /** Display name: the node's name, or `<opType>_<index>` when the model left it empty. */
  name: string;
  kernel: Kernel;
  attrs: Attrs;
  ctx: KernelContext;
  /**
   * How the kernel computes: the op table's `path` if the variant names one; for Conv the fast
   * path conv.ts picks for the inferred shapes ("im2col-gemm", "gemm-1x1", "direct", ...);
   * "blocked-gemm" for Gemm/MatMul; else "dense-fp32". (Whether a weight was dequantized from a
   * .opq is the bound kernel's weight form, not part of the path.)
   */
  path: string;
  /** Values no later step, and no graph output, reads: dropped after this step. */
  release: string[];
  /** Everything the step reads: its inputs, then values its subgraphs take from enclosing graphs. */
  reads: string[];
  /** Plans of the node's graph attributes (If branches, Loop/Scan bodies), by attribute name. */
  subplans?: Record<string, Plan>;
  /** The op table variant's load-time hook, when planning was asked to leave it to the binder (`deferPrepare`). */
  prepare?: OpVersion["prepare"];
}

/** An op the runtime cannot run, as reported in UNSUPPORTED_OPS details. */
export interface UnsupportedOp {
  opType: string;
  domain: string;
  node: string;
  opset: number;
  /** Why: no kernel at all, or only kernels newer than the model's opset. */
  reason: string;
}

/** A whole graph ready to run. */
export interface Plan {
  steps: PlannedStep[];
  /** Initializers and folded values, readable by every step. */
  constants: Map<string, Tensor>;
  /** Graph inputs the caller must feed (initializer-backed inputs are constants, not feeds). */
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  /** Inferred shape of every value we could infer (symbolic dims kept as names). */
  shapes: Map<string, Dim[]>;
  /** Inferred element type of every value we could infer. */
  dtypes: Map<string, DType>;
  /** Nodes evaluated at load because all their inputs were constant. */
  foldedNodes: number;
  /**
   * The compressed weights of a .opq, kept as stored (by initializer name) beside their dense
   * copies in `constants`, for kernels that will compute on the compressed form directly.
   */
  compressed: ReadonlyMap<string, CompressedTensor>;
  /**
   * Peak bytes of intermediates alive at once under the release schedule, from inferred shapes
   * with every symbolic dim taken as 1 (so per sample for a dynamic batch); values of unknown
   * shape count as 0, so this is a lower bound when `shapes` is incomplete.
   */
  peakIntermediateBytes: number;
}

/** Options for planning. */
export interface PlanOptions {
  threads?: number;
  /** Op table (tests may pass a reduced one). */
  ops?: Readonly<Record<string, OpVersion[]>>;
  /** Constant folding at load (default true). */
  fold?: boolean;
  /**
   * Compressed weights of a .opq (names the graph uses that its initializers lack). Each becomes a
   * constant whose dense data is made only if something reads it (`lazyDense`); layers reading one
   * through the op table report the weight form "dequantized-f32".
   */
  compressed?: readonly CompressedTensor[];
  /**
   * Leave the op table's `prepare` hooks and path labels of the top-level steps to the caller, who
   * binds each step to a backend first (runtime/backend.ts): only steps the reference backend
   * takes then prepare, and no weight is read for a step another backend computes.
   */
  deferPrepare?: boolean;
  /** Names defined by enclosing graphs (when planning a subgraph): readable, never released here. */
  outer?: ReadonlySet<string>;
}

const DEFAULT_DOMAINS = new Set(["", "ai.onnx"]);

/** Lazy constants not read yet (their data getter has not run). */
const UNREAD = new WeakSet<Tensor>();

/**
 * A float32 constant standing for a compressed weight: dims now, data (dequantized once) only
 * when something reads `data`. A backend computing on the compressed form never does, so no
 * dense copy of that weight ever exists.
 */
export function lazyDense(c: CompressedTensor): Tensor {
  let data: Float32Array | undefined;
  const t = {
    dtype: "float32" as const,
    dims: [...c.dims],
    get data(): Float32Array {
      if (!data) { data = dequantize(c); UNREAD.delete(t); }
      return data;
    },
  };
  UNREAD.add(t);
  return t;
}

/**
 * A constant whose data only a backend's own kernel form holds (the stored form was dropped after
 * binding): reading `data` throws.
 */
export function unreadable(name: string, dims: readonly number[]): Tensor {
  const t = {
    dtype: "float32" as const,
    dims: [...dims],
    get data(): Float32Array {
      throw new KernelError(`weight '${name}' is held only in a compressed kernel form`);
    },
  };
  UNREAD.add(t);
  return t;
}

/** False for a `lazyDense` constant whose data has not been made; true for every other tensor. */
export function isMaterialized(t: Tensor): boolean {
  return !UNREAD.has(t);
}
/** The UNSUPPORTED_OPS message names at most this many nodes; `details.nodes` has them all. */
const MAX_LISTED_NODES = 20;

/** The opset the model imports for `domain` ("" and "ai.onnx" are the same domain). */
export function opsetFor(model: Model, domain: string): number | undefined {
  const want = DEFAULT_DOMAINS.has(domain) ? DEFAULT_DOMAINS : new Set([domain]);
  let v: number | undefined;
  for (const imp of model.opsetImports) if (want.has(imp.domain)) v = Math.max(v ?? 0, imp.version);
  return v;
}

/** Resolve every node's kernel; throws one UNSUPPORTED_OPS error listing all misses. */
export function resolveKernels(model: Model, table: Readonly<Record<string, OpVersion[]>> = OPS, graph: Graph = model.graph): OpVersion[] {
  const missing: UnsupportedOp[] = [];
  const found = resolveInto(model, table, graph, missing);
  if (missing.length > 0) {
    const types = [...new Set(missing.map((m) => (m.domain && !DEFAULT_DOMAINS.has(m.domain) ? `${m.domain}:` : "") + m.opType))];
    const list = missing.slice(0, MAX_LISTED_NODES).map((m) => `${m.opType} (node '${m.node}', opset ${m.opset}: ${m.reason})`);
    if (missing.length > MAX_LISTED_NODES) list.push(`... and ${missing.length - MAX_LISTED_NODES} more nodes (see details.nodes)`);
    throw new OpqRuntimeError(
      RUNTIME_ERROR_CODES.UNSUPPORTED_OPS,
      `unsupported ops: ${types.join(", ")}\n  ${list.join("\n  ")}`,
      { ops: types, nodes: missing },
    );
  }
  return found;
}

/** The graph attributes of a node (If branches, Loop/Scan bodies). */
export function graphAttrs(node: Node): [string, Graph][] {
  return Object.entries(node.attrs).filter(([, a]) => a.type === "graph").map(([k, a]) => [k, a.value as Graph]);
}

/** Resolve a graph's nodes, collecting misses (including those inside subgraphs) into `missing`. */
function resolveInto(model: Model, table: Readonly<Record<string, OpVersion[]>>, graph: Graph, missing: UnsupportedOp[]): OpVersion[] {
  const found: OpVersion[] = [];
  graph.nodes.forEach((node, i) => {
    for (const [, sub] of graphAttrs(node)) resolveInto(model, table, sub, missing);
    const name = node.name || `${node.opType}_${i}`;
    const opset = opsetFor(model, node.domain);
    if (node.domain === OPQ_DOMAIN) {
      // opq's own operators (ops/quantize.ts), versioned by the model's ai.opq opset.
      const v = opset === undefined ? undefined : resolveOp(node.opType, opset, OPQ_DOMAIN_OPS);
      if (v) found.push(v);
      else missing.push({ opType: node.opType, domain: node.domain, node: name, opset: opset ?? 0, reason: opset === undefined ? `the model imports no opset for ${OPQ_DOMAIN}` : "no kernel" });
      return;
    }
    if (!DEFAULT_DOMAINS.has(node.domain)) {
      missing.push({ opType: node.opType, domain: node.domain, node: name, opset: opset ?? 0, reason: `domain '${node.domain}' is not supported` });
      return;
    }
    if (opset === undefined) {
      missing.push({ opType: node.opType, domain: node.domain, node: name, opset: 0, reason: "the model imports no opset for the default domain" });
      return;
    }
    const v = resolveOp(node.opType, opset, table);
    if (!v) {
      const reason = Object.hasOwn(table, node.opType)
        ? `no kernel for opset ${opset} (earliest supported: ${Math.min(...table[node.opType]!.map((x) => x.since))})`
        : "no kernel";
      missing.push({ opType: node.opType, domain: node.domain, node: name, opset, reason });
      return;
    }
    found.push(v);
  });
  return found;
}

/** Names a graph reads that it does not define (its subgraphs' included): what it takes from enclosing graphs. */
export function implicitInputs(graph: Graph): string[] {
  const defined = new Set<string>([...graph.inputs.map((v) => v.name), ...Object.keys(graph.initializers)]);
  const used = new Set<string>();
  const use = (n: string) => { if (n !== "" && !defined.has(n)) used.add(n); };
  for (const node of graph.nodes) {
    node.inputs.forEach(use);
    for (const [, sub] of graphAttrs(node)) implicitInputs(sub).forEach(use);
    for (const o of node.outputs) if (o !== "") defined.add(o);
  }
  graph.outputs.forEach((o) => use(o.name));
  return [...used];
}

/** Check that every node input is defined before use (graph input, initializer or earlier output). */
function checkDefined(graph: Graph, outer: ReadonlySet<string>): void {
  const defined = new Set<string>([...outer, ...graph.inputs.map((v) => v.name), ...Object.keys(graph.initializers)]);
  const problems: string[] = [];
  graph.nodes.forEach((node, i) => {
    const reads = [...node.inputs, ...graphAttrs(node).flatMap(([, sub]) => implicitInputs(sub))];
    for (const inp of reads) {
      if (inp !== "" && !defined.has(inp)) problems.push(`node '${node.name || `${node.opType}_${i}`}' reads undefined value '${inp}'`);
    }
    for (const out of node.outputs) if (out !== "") defined.add(out);
  });
  for (const o of graph.outputs) if (!defined.has(o.name)) problems.push(`graph output '${o.name}' is never produced`);
  if (problems.length) {
    throw new OpqRuntimeError(RUNTIME_ERROR_CODES.INVALID_MODEL, `invalid graph: ${problems.slice(0, 10).join("; ")}`, { problems });
  }
}

/** Plan a model for running. Throws OpqRuntimeError (UNSUPPORTED_OPS, INVALID_MODEL). */
export function planModel(model: Model, options: PlanOptions = {}): Plan {
  return planGraph(model, model.graph, options);
}

/** Plan one graph of a model (the main graph, or a subgraph with `options.outer` set). */
function planGraph(model: Model, graph: Graph, options: PlanOptions): Plan {
  const outer = options.outer ?? new Set<string>();
  const versions = resolveKernels(model, options.ops ?? OPS, graph);
  const compressed = new Map((options.compressed ?? []).map((c) => [c.name, c] as const));
  checkDefined(graph, compressed.size ? new Set([...outer, ...compressed.keys()]) : outer);
  const threads = Math.max(1, options.threads ?? 1);
  const constants = new Map<string, Tensor>(Object.entries(graph.initializers));
  const inputs = graph.inputs.filter((v) => !constants.has(v.name));
  const outputNames = new Set(graph.outputs.map((o) => o.name));
  const fold = options.fold ?? true;
  for (const c of compressed.values()) constants.set(c.name, lazyDense(c));

  // Subgraphs see every name of this graph and of the graphs around it.
  const visible = new Set<string>([...outer, ...graph.inputs.map((v) => v.name), ...Object.keys(graph.initializers), ...compressed.keys()]);
  for (const n of graph.nodes) for (const o of n.outputs) if (o !== "") visible.add(o);
  const prepares = new Map<PlannedStep, NonNullable<OpVersion["prepare"]>>();
  let steps: PlannedStep[] = graph.nodes.map((node, i) => {
    const v = versions[i]!;
    const subs = graphAttrs(node);
    const subplans = subs.length
      ? Object.fromEntries(subs.map(([k, g]) => [k, planGraph(model, g, { ...options, compressed: undefined, outer: visible })]))
      : undefined;
    const step: PlannedStep = {
      node,
      name: node.name || `${node.opType}_${i}`,
      kernel: v.kernel,
      attrs: new Attrs(node.attrs, node.opType),
      ctx: { opset: opsetFor(model, node.domain)!, threads, outputCount: node.outputs.length },
      path: (v as OpVersion & { path?: string }).path ?? DEFAULT_PATH,
      release: [],
      reads: [...node.inputs, ...new Set(subs.flatMap(([, g]) => implicitInputs(g)))],
      subplans,
    };
    if (v.prepare) prepares.set(step, v.prepare);
    if (v.prepare && options.deferPrepare) step.prepare = v.prepare;
    return step;
  });

  // One pass in graph order: fold nodes whose inputs are all constant (and Shape of a static
  // shape), infer shapes of the rest. A kernel that throws while folding is left in the plan so
  // the failure surfaces at run() with the node's name, as usual.
  const shapes = new Map<string, Dim[]>();
  const dtypes = new Map<string, DType>();
  // Only graph inputs seed inference: producer-recorded value infos are not trusted for folding.
  for (const v of inputs) {
    if (v.shape) shapes.set(v.name, v.shape);
    dtypes.set(v.name, v.dtype);
  }
  const noteConstant = (name: string, t: Tensor) => { shapes.set(name, t.dims.slice()); dtypes.set(name, t.dtype); };
  for (const [name, t] of constants) noteConstant(name, t);
  let foldedNodes = 0, foldedElements = 0;
  const kept: PlannedStep[] = [];
  for (const s of steps) {
    const ins = s.node.inputs;
    let outs: (Tensor | undefined)[] | undefined;
    if (fold && !s.subplans) {
      if (ins.every((n) => n === "" || constants.has(n)) && foldedElements < MAX_FOLD_TOTAL_ELEMENTS && foldable(s, constants)) {
        try {
          outs = s.kernel(ins.map((n) => (n === "" ? undefined : constants.get(n))), s.attrs, s.ctx);
          for (const t of outs) foldedElements += t?.data.length ?? 0;
        } catch {
          outs = undefined;
        }
      } else if (s.node.opType === "Shape" && isStatic(shapes.get(ins[0]!))) {
        const dims = shapes.get(ins[0]!) as number[];
        const probe: Tensor = { dtype: "float32", dims, data: new Float32Array(0) };
        outs = s.kernel([probe], s.attrs, s.ctx);
      }
    }
    if (outs && s.node.outputs.every((o, k) => o === "" || outs![k] !== undefined)) {
      s.node.outputs.forEach((o, k) => { if (o !== "" && outs![k]) { constants.set(o, outs![k]!); noteConstant(o, outs![k]!); } });
      foldedNodes++;
      continue;
    }
    inferNode(s, shapes, dtypes, constants);
    if (!options.deferPrepare) {
      prepareStep(s, prepares.get(s), shapes, constants);
      s.path = layerPath(s, shapes, constants);
    }
    kept.push(s);
  }
  steps = kept;

  for (const v of graph.outputs) {
    if (v.shape && !shapes.has(v.name)) shapes.set(v.name, v.shape);
    if (!dtypes.has(v.name)) dtypes.set(v.name, v.dtype);
  }

  // Lifetimes: release each non-output intermediate after its last reader (or its producer).
  const inputNames = new Set(inputs.map((v) => v.name));
  const last = new Map<string, number>();
  steps.forEach((s, i) => {
    for (const o of s.node.outputs) if (o !== "") last.set(o, i);
    for (const n of s.reads) if (n !== "" && !constants.has(n) && !inputNames.has(n) && !outer.has(n)) last.set(n, i);
  });
  for (const [name, i] of last) if (!outputNames.has(name)) steps[i]!.release.push(name);

  const peakIntermediateBytes = peakBytes(steps, shapes, dtypes);
  return { steps, constants, inputs, outputs: graph.outputs, shapes, dtypes, foldedNodes, compressed, peakIntermediateBytes };
}

/**
 * Run the variant's load-time `prepare` on the node's constant inputs (its weights), if it has
 * one and some input is constant. A prepare that throws leaves the step unprepared: the kernel
 * then does the work per call, and reports bad inputs at run() as usual.
 */
export function prepareStep(s: PlannedStep, prepare: OpVersion["prepare"], shapes: ReadonlyMap<string, Dim[]>, constants: ReadonlyMap<string, Tensor>): void {
  if (!prepare) return;
  const consts = s.node.inputs.map((n) => (n === "" ? undefined : constants.get(n)));
  if (!consts.some((t) => t !== undefined)) return;
  const inputShapes = s.node.inputs.map((n) => (n === "" ? undefined : shapes.get(n)));
  try {
    const state = prepare(consts, s.attrs, { opset: s.ctx.opset, threads: s.ctx.threads, inputShapes });
    if (state !== undefined) s.ctx.prepared = state;
  } catch {
    // unprepared: see above
  }
}

/** Walk the schedule: add each step's outputs, record the high-water mark, drop its releases. */
function peakBytes(steps: readonly PlannedStep[], shapes: Map<string, Dim[]>, dtypes: Map<string, DType>): number {
  const bytesOf = (name: string) => {
    const sh = shapes.get(name), dt = dtypes.get(name);
    if (!sh || !dt || dt === "string") return 0;
    return sh.reduce<number>((p, d) => p * (typeof d === "number" ? d : 1), 1) * DTYPE_BYTES[dt];
  };
  const live = new Map<string, number>();
  let cur = 0, peak = 0;
  for (const s of steps) {
    for (const o of s.node.outputs) if (o !== "" && !live.has(o)) { const b = bytesOf(o); live.set(o, b); cur += b; }
    peak = Math.max(peak, cur);
    for (const r of s.release) { cur -= live.get(r) ?? 0; live.delete(r); }
  }
  return peak;
}

// ---------------------------------------------------------------------------------------------
// Shape inference: static where the graph allows, symbolic dims (a dynamic batch) carried along.

/** True if a shape is known and every dim is a number. */
export function isStatic(shape: readonly Dim[] | undefined | null): shape is number[] {
  return !!shape && shape.every((d) => typeof d === "number");
}

type ShapeRule = (shapes: (Dim[] | undefined)[], consts: (Tensor | undefined)[], attrs: Attrs, opset: number) => (Dim[] | undefined)[];

const sameAsFirst: ShapeRule = (s) => [s[0]];

/** numpy broadcast of possibly symbolic shapes; undefined when it cannot be decided. */
export function broadcastDims(shapes: (Dim[] | undefined)[]): Dim[] | undefined {
  if (shapes.some((s) => !s)) return undefined;
  const rank = Math.max(...shapes.map((s) => s!.length));
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    let d: Dim = 1;
    for (const s of shapes) {
      const x = s![s!.length - rank + i];
      if (x === undefined || x === 1) continue;
      if (d === 1) d = x;
      else if (d !== x) return undefined;
    }
    out.push(d);
  }
  return out;
}

const broadcastRule: ShapeRule = (s) => [broadcastDims(s)];

function poolLike(s: (Dim[] | undefined)[], attrs: Attrs, channels: Dim | undefined, kernel: number[] | undefined): Dim[] | undefined {
  const x = s[0];
  if (!x || x.length < 3 || !kernel) return undefined;
  const sp = x.length - 2;
  const strides = attrs.ints("strides", new Array(sp).fill(1));
  const dil = attrs.ints("dilations", new Array(sp).fill(1));
  const pads = attrs.ints("pads", new Array(2 * sp).fill(0));
  const autoPad = attrs.string("auto_pad", "NOTSET");
  const ceil = attrs.int("ceil_mode", 0) === 1;
  const out: Dim[] = [x[0]!, channels ?? x[1]!];
  for (let i = 0; i < sp; i++) {
    const d = x[i + 2];
    if (typeof d !== "number") { out.push(null); continue; }
    // The kernels' checked geometry (conv.ts): bad strides, dilations or pads throw, and the shape stays unknown.
    if (autoPad === "SAME_UPPER" || autoPad === "SAME_LOWER") out.push(Math.ceil(d / geometryInt(strides[i]!, "stride", 1)));
    else if (autoPad === "VALID") out.push(windowOutputSize(d, kernel[i]!, strides[i]!, dil[i]!, 0, 0));
    else out.push(windowOutputSize(d, kernel[i]!, strides[i]!, dil[i]!, pads[i]!, pads[i + sp]!, ceil));
  }
  return out;
}

const SHAPE_RULES: Partial<Record<string, ShapeRule>> = {
  Conv: (s, _c, a) => {
    const w = s[1];
    const k = a.has("kernel_shape") ? a.ints("kernel_shape") : w && isStatic(w.slice(2)) ? (w.slice(2) as number[]) : undefined;
    return [poolLike(s, a, w?.[0] ?? undefined, k)];
  },
  MaxPool: (s, _c, a) => [poolLike(s, a, undefined, a.ints("kernel_shape"))],
  AveragePool: (s, _c, a) => [poolLike(s, a, undefined, a.ints("kernel_shape"))],
  GlobalAveragePool: (s) => [s[0] ? [s[0][0]!, s[0][1]!, ...s[0].slice(2).map(() => 1)] : undefined],
  GlobalMaxPool: (s) => [s[0] ? [s[0][0]!, s[0][1]!, ...s[0].slice(2).map(() => 1)] : undefined],
  BatchNormalization: sameAsFirst,
  Gemm: (s, _c, a) => {
    const [x, w] = s;
    if (!x || !w || x.length !== 2 || w.length !== 2) return [undefined];
    return [[a.int("transA", 0) ? x[1]! : x[0]!, a.int("transB", 0) ? w[0]! : w[1]!]];
  },
  MatMul: (s) => {
    const [x, w] = s;
    if (!x || !w || x.length < 2 || w.length < 2) return [undefined];
    const batch = broadcastDims([x.slice(0, -2), w.slice(0, -2)]);
    return [batch ? [...batch, x[x.length - 2]!, w[w.length - 1]!] : undefined];
  },
  Flatten: (s, _c, a) => {
    const x = s[0];
    if (!x) return [undefined];
    const axis = a.int("axis", 1) < 0 ? a.int("axis", 1) + x.length : a.int("axis", 1);
    const prod = (ds: Dim[]): Dim => (ds.length === 1 ? ds[0]! : isStatic(ds) ? ds.reduce((p, d) => p * d, 1) : null);
    return [[prod(x.slice(0, axis)), prod(x.slice(axis))]];
  },
  Reshape: (s, c, a) => {
    const x = s[0], shapeT = c[1];
    if (!shapeT) return [undefined];
    const target = Array.from(shapeT.data as BigInt64Array, Number) as Dim[];
    const allowZero = a.int("allowzero", 0) === 1;
    const out: Dim[] = target.map((d, i) => (d === 0 && !allowZero ? x?.[i] ?? null : d));
    const neg = out.indexOf(-1);
    if (neg >= 0) {
      if (!x) out[neg] = null;
      else {
        // Divide the input's dims by the known target dims; what remains (one symbol or a number) fills -1.
        const rest: Dim[] = x.slice();
        let known = 1;
        out.forEach((d, i) => {
          if (i === neg) return;
          const j = rest.indexOf(d);
          if (typeof d === "string" && j >= 0) rest.splice(j, 1);
          else if (typeof d === "number") known *= d;
          else known = NaN;
        });
        const syms = rest.filter((d) => typeof d !== "number");
        const num = (rest.filter((d) => typeof d === "number") as number[]).reduce((p, d) => p * d, 1);
        out[neg] = syms.length === 0 ? num / known : syms.length === 1 && num === known ? syms[0]! : null;
      }
    }
    return [out];
  },
  Transpose: (s, _c, a) => {
    const x = s[0];
    if (!x) return [undefined];
    const perm = a.ints("perm", x.map((_, i) => x.length - 1 - i));
    return [perm.map((p) => x[p]!)];
  },
  Concat: (s, _c, a) => {
    if (s.some((x) => !x) || s.length === 0) return [undefined];
    const r = s[0]!.length, axis = a.int("axis") < 0 ? a.int("axis") + r : a.int("axis");
    const out = s[0]!.slice();
    const parts = s.map((x) => x![axis]!);
    out[axis] = parts.every((d) => typeof d === "number") ? (parts as number[]).reduce((p, d) => p + d, 0) : null;
    return [out];
  },
  Unsqueeze: (s, c, a, opset) => {
    const x = s[0];
    const axes = opset >= 13 ? (c[1] ? Array.from(c[1].data as BigInt64Array, Number) : undefined) : a.ints("axes");
    if (!x || !axes) return [undefined];
    const rank = x.length + axes.length;
    const set = new Set(axes.map((v) => (v < 0 ? v + rank : v)));
    const out: Dim[] = [];
    let k = 0;
    for (let i = 0; i < rank; i++) out.push(set.has(i) ? 1 : x[k++]!);
    return [out];
  },
  Squeeze: (s, c, a, opset) => {
    const x = s[0];
    if (opset >= 13 && s.length > 1 && !c[1]) return [undefined]; // axes computed at run time
    const axes = opset >= 13 ? (c[1] ? Array.from(c[1].data as BigInt64Array, Number) : []) : a.ints("axes", []);
    if (!x || (axes.length === 0 && !isStatic(x))) return [undefined];
    if (axes.length === 0) return [x.filter((d) => d !== 1)];
    const set = new Set(axes.map((v) => (v < 0 ? v + x.length : v)));
    return [x.filter((_, i) => !set.has(i))];
  },
  Shape: (s, _c, a) => {
    if (!s[0]) return [undefined];
    const r = s[0].length;
    const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + r : v, 0), r);
    const start = clamp(a.int("start", 0)), end = clamp(a.int("end", r));
    return [[Math.max(end - start, 0)]];
  },
  Gather: (s, _c, a) => {
    const [x, ind] = s;
    if (!x || !ind) return [undefined];
    const axis = a.int("axis", 0) < 0 ? a.int("axis", 0) + x.length : a.int("axis", 0);
    return [[...x.slice(0, axis), ...ind, ...x.slice(axis + 1)]];
  },
  ArgMax: (s, _c, a) => [reduceRule(s[0], [a.int("axis", 0)], a.int("keepdims", 1) === 1)],
  ArgMin: (s, _c, a) => [reduceRule(s[0], [a.int("axis", 0)], a.int("keepdims", 1) === 1)],
  Slice: (s, c, a, opset) => {
    const x = s[0];
    if (!x) return [undefined];
    let starts: number[], ends: number[], axes: number[] | undefined, steps: number[] | undefined;
    if (opset >= 10) {
      if (!c[1] || !c[2] || (s[3] && !c[3]) || (s[4] && !c[4])) return [undefined];
      starts = asInts(c[1]); ends = asInts(c[2]);
      axes = c[3] ? asInts(c[3]) : undefined; steps = c[4] ? asInts(c[4]) : undefined;
    } else {
      starts = a.ints("starts"); ends = a.ints("ends"); axes = a.has("axes") ? a.ints("axes") : undefined;
    }
    const out = x.slice();
    for (let i = 0; i < starts.length; i++) {
      const ax = axes ? (axes[i]! < 0 ? axes[i]! + x.length : axes[i]!) : i;
      const d = x[ax];
      if (typeof d !== "number") { out[ax] = null; continue; }
      out[ax] = sliceRange(d, starts[i]!, ends[i]!, steps ? steps[i]! : 1).count;
    }
    return [out];
  },
  Pad: (s, c, a, opset) => {
    const x = s[0];
    const pads = opset >= 11 ? (c[1] && !s[3] ? asInts(c[1]) : undefined) : a.ints(opset >= 2 ? "pads" : "paddings");
    if (!x || !pads) return [undefined];
    return [x.map((d, i) => (typeof d === "number" ? d + pads[i]! + pads[i + x.length]! : null))];
  },
  Expand: (s, c) => (c[1] ? [broadcastDims([s[0], asInts(c[1])])] : [undefined]),
  Tile: (s, c) => {
    const x = s[0];
    if (!x || !c[1]) return [undefined];
    const reps = asInts(c[1]);
    return [x.map((d, i) => (typeof d === "number" ? d * reps[i]! : reps[i] === 1 ? d : null))];
  },
  Split: (s, c, a, opset) => {
    const x = s[0];
    if (!x) return [];
    const axis = a.int("axis", 0) < 0 ? a.int("axis", 0) + x.length : a.int("axis", 0);
    let sizes: number[] | undefined = opset >= 13 ? (c[1] ? asInts(c[1]) : s[1] ? undefined : []) : a.ints("split", []);
    if (!sizes) return [];
    const parts = sizes.length || undefined;
    return (parts ? sizes : [undefined]).map((sz) => {
      const out = x.slice();
      out[axis] = sz ?? null;
      return out;
    });
  },
  LayerNormalization: (s, _c, a) => {
    const x = s[0];
    if (!x) return [undefined];
    const axis = a.int("axis", -1) < 0 ? a.int("axis", -1) + x.length : a.int("axis", -1);
    const stat = x.map((d, i) => (i < axis ? d : 1));
    return [x, stat, stat];
  },
  Identity: sameAsFirst,
  Dropout: (s) => [s[0], s[0]],
  Cast: sameAsFirst,
  Softmax: sameAsFirst,
  LogSoftmax: sameAsFirst,
  Where: broadcastRule,
};

const BROADCAST_OPS = new Set(["Add", "Sub", "Mul", "Div", "Pow", "Mod", "PRelu", "Max", "Min", "Sum", "Mean",
  "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Xor", "BitShift"]);
const BOOL_OPS = new Set(["Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Xor", "Not", "IsNaN", "IsInf"]);
const SHAPE_PRESERVING = new Set(["Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Erf",
  "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Tanh", "Sigmoid", "Relu",
  "Softplus", "Softsign", "LeakyRelu", "Elu", "Celu", "Selu", "ThresholdedRelu", "HardSigmoid", "HardSwish", "Shrink",
  "Clip", "Not", "IsNaN", "IsInf", "Hardmax", "CumSum", "Trilu"]);

const asInts = (t: Tensor): number[] => Array.from(t.data as ArrayLike<number | bigint>, Number);

function reduceRule(x: Dim[] | undefined, axes: number[], keep: boolean): Dim[] | undefined {
  if (!x) return undefined;
  const set = new Set((axes.length ? axes : x.map((_, i) => i)).map((v) => (v < 0 ? v + x.length : v)));
  const out: Dim[] = [];
  x.forEach((d, i) => { if (!set.has(i)) out.push(d); else if (keep) out.push(1); });
  return out;
}

/** ReduceSum takes axes as an input from opset 13 (the others from 18); before, as an attribute. */
const reduceOpRule = (axesInputSince: number): ShapeRule => (s, c, a, opset) => {
  const keep = a.int("keepdims", 1) === 1;
  if (opset >= axesInputSince) {
    if (s[1] && !c[1]) return [undefined];
    const axes = c[1] ? asInts(c[1]) : [];
    if (axes.length === 0 && a.int("noop_with_empty_axes", 0) === 1) return [s[0]];
    return [reduceRule(s[0], axes, keep)];
  }
  return [reduceRule(s[0], a.ints("axes", []), keep)];
};
for (const op of ["ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]) {
  SHAPE_RULES[op] = reduceOpRule(18);
}
SHAPE_RULES.ReduceSum = reduceOpRule(13);

/** Record the inferred output shapes and dtypes of one node, where a rule knows them. */
function inferNode(s: PlannedStep, shapes: Map<string, Dim[]>, dtypes: Map<string, DType>, constants: Map<string, Tensor>): void {
  const { node } = s;
  const inShapes = node.inputs.map((n) => (n === "" ? undefined : shapes.get(n)));
  const consts = node.inputs.map((n) => (n === "" ? undefined : constants.get(n)));
  const op = node.opType;
  const rule: ShapeRule | undefined = SHAPE_RULES[op] ?? (BROADCAST_OPS.has(op) ? broadcastRule : SHAPE_PRESERVING.has(op) ? sameAsFirst : undefined);
  let outShapes: (Dim[] | undefined)[] = [];
  if (rule) {
    try {
      outShapes = rule(inShapes, consts, s.attrs, s.ctx.opset);
    } catch {
      outShapes = [];
    }
  }
  // Where's data type is its second input's; every other rule keeps its first input's.
  const typed = op === "Where" ? node.inputs[1] : node.inputs[0];
  const inType = typed ? dtypes.get(typed) : undefined;
  node.outputs.forEach((o, k) => {
    if (o === "") return;
    const sh = outShapes[k];
    if (sh && !shapes.has(o)) shapes.set(o, sh);
    if (dtypes.has(o)) return;
    let dt: DType | undefined;
    if (BOOL_OPS.has(op) || (op === "Dropout" && k === 1)) dt = "bool";
    else if (op === "Shape" || op === "Size" || op === "ArgMax" || op === "ArgMin" || op === "NonZero") dt = "int64";
    else if (op === "Cast") dt = castDtype(s.attrs);
    else if (k === 0 && (rule || op.startsWith("Reduce"))) dt = inType;
    if (dt) dtypes.set(o, dt);
  });
}

const ONNX_TO_DTYPE: Record<number, DType> = {
  1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string", 9: "bool",
  10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
};
const castDtype = (a: Attrs): DType | undefined => ONNX_TO_DTYPE[a.int("to", 0)];

// ---------------------------------------------------------------------------------------------
// Layer paths: how each planned node will compute, for SessionInfo.layers.

const DEFAULT_PATH = "dense-fp32";

/**
 * The compute path of a step: the op table's `path` if the variant declares one; for a float32
 * 2-D Conv with constant weights and a known input shape, the fast path conv.ts will take
 * (symbolic dims count as 1; the choice does not depend on the batch); Gemm/MatMul "blocked-gemm".
 */
export function layerPath(s: PlannedStep, shapes: ReadonlyMap<string, Dim[]>, constants: ReadonlyMap<string, Tensor>, dtypes?: ReadonlyMap<string, DType>): string {
  const { node } = s;
  let path = s.path;
  if (path !== DEFAULT_PATH) {
    // the op table named its path
  } else if (node.opType === "Conv") {
    const x = shapes.get(node.inputs[0]!), w = constants.get(node.inputs[1] ?? "");
    if (x && w && w.dtype === "float32" && x.every((d, i) => typeof d === "number" || i === 0)) {
      try {
        const dims = x.map((d) => (typeof d === "number" ? d : 1));
        const prepared = s.ctx.prepared as PreparedConv | undefined;
        path = convPath(convGeometry(dims, w.dims, s.attrs), w.data as Float32Array, prepared?.weight === w ? prepared.zeros : undefined) ?? "reference-conv";
      } catch {
        path = "reference-conv";
      }
    }
  } else if (node.opType === "Gemm" || node.opType === "MatMul") {
    const dt = dtypes?.get(node.inputs[0] ?? "");
    path = dt === undefined || dt === "float32" ? "blocked-gemm" : "reference";
  }
  return path;
}

// ---------------------------------------------------------------------------------------------
// Folding guard: ops whose output size is set by a constant are folded only when it is small,
// so a model cannot make loading allocate gigabytes (running it still would, when asked to).

/** Largest output (elements) any op may have to be folded at load. */
export const MAX_FOLD_ELEMENTS = 1 << 20;
/** Elements all folded values of one graph may add up to; past it, nodes run at run() under the memory budget. */
export const MAX_FOLD_TOTAL_ELEMENTS = 1 << 24;

function foldable(s: PlannedStep, constants: Map<string, Tensor>): boolean {
  const c = (k: number) => (s.node.inputs[k] ? constants.get(s.node.inputs[k]!) : undefined);
  const prod = (ds: number[]) => ds.reduce((p, d) => p * Math.max(d, 0), 1);
  try {
    // Every op: its inferred output size, where a shape rule knows it (a broadcast Add, a Pad, ...).
    const rule = SHAPE_RULES[s.node.opType] ?? (BROADCAST_OPS.has(s.node.opType) ? broadcastRule : SHAPE_PRESERVING.has(s.node.opType) ? sameAsFirst : undefined);
    if (rule) {
      const consts = s.node.inputs.map((n) => (n ? constants.get(n) : undefined));
      const outs = rule(consts.map((t) => t?.dims.slice()), consts, s.attrs, s.ctx.opset);
      if (outs.some((sh) => sh && sh.some((d) => typeof d !== "number" || !Number.isFinite(d) || d < 0))) return false;
      if (outs.some((sh) => sh && prod(sh as number[]) > MAX_FOLD_ELEMENTS)) return false;
    }
    switch (s.node.opType) {
      case "ConstantOfShape": return prod(asInts(c(0)!)) <= MAX_FOLD_ELEMENTS;
      case "Expand": {
        const a = c(0)!.dims, b = asInts(c(1)!);
        const r = Math.max(a.length, b.length);
        const dims = Array.from({ length: r }, (_, i) => Math.max(a[i - r + a.length] ?? 1, b[i - r + b.length] ?? 1));
        return prod(dims) <= MAX_FOLD_ELEMENTS;
      }
      case "Tile": return c(0)!.data.length * prod(asInts(c(1)!)) <= MAX_FOLD_ELEMENTS;
      case "Range": {
        const [start, limit, delta] = [0, 1, 2].map((k) => asInts(c(k)!)[0]!) as [number, number, number];
        return Math.ceil((limit - start) / delta) <= MAX_FOLD_ELEMENTS;
      }
      case "Resize": case "Upsample": case "EyeLike": case "OneHot": return false;
      default: return true;
    }
  } catch {
    return false;
  }
}

/**
 * Output shapes of a step for the tensors it is about to get (at run time, every input known),
 * where a shape rule knows them; the session's memory budget checks them before the kernel runs.
 */
export function runtimeOutputShapes(step: PlannedStep, inputs: readonly (Tensor | undefined)[]): (Dim[] | undefined)[] {
  const op = step.node.opType;
  const rule = SHAPE_RULES[op] ?? (BROADCAST_OPS.has(op) ? broadcastRule : SHAPE_PRESERVING.has(op) ? sameAsFirst : undefined);
  if (!rule) return [];
  // Ops whose output shapes follow from the input dims and attributes alone: the last answer is
  // reused while the dims repeat (a Conv's rule re-parses its geometry, ~15 µs: ~0.8 ms of a
  // MobileNetV2 run). Value-dependent rules (Reshape, Slice, …) always run.
  const dimsOnly = DIMS_ONLY_OPS.has(op) || BROADCAST_OPS.has(op) || SHAPE_PRESERVING.has(op);
  const last = dimsOnly ? lastShapes.get(step) : undefined;
  if (last && last.dims.length === inputs.length && inputs.every((t, i) => sameDims(t?.dims, last.dims[i]))) return last.out;
  let out: (Dim[] | undefined)[];
  try {
    out = rule(inputs.map((t) => t?.dims.slice()), inputs as (Tensor | undefined)[], step.attrs, step.ctx.opset);
  } catch {
    return [];
  }
  if (dimsOnly) lastShapes.set(step, { dims: inputs.map((t) => t?.dims.slice()), out });
  return out;
}

/** Shape-rule ops (SHAPE_RULES) whose outputs depend on the input dims and attributes only, never on input values. */
const DIMS_ONLY_OPS = new Set(["Conv", "ConvTranspose", "Gemm", "MatMul", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization", "Flatten", "Softmax", "LRN"]);
/** Each step's last runtimeOutputShapes answer for dims-only ops, by the input dims it was for. */
const lastShapes = new WeakMap<PlannedStep, { dims: (readonly number[] | undefined)[]; out: (Dim[] | undefined)[] }>();
const sameDims = (a: readonly number[] | undefined, b: readonly number[] | undefined): boolean =>
  a === b || (!!a && !!b && a.length === b.length && a.every((d, i) => d === b[i]));
