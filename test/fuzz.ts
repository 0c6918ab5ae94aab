/**
 * Structure-aware mutants of `.opq` and ONNX files, and what each does to the whole pipeline
 * (decode, load, plan, run). Used by `bun run bench:fuzz` (bench/fuzz-bench.ts, which runs them
 * in child processes under a watchdog) and by its CI slice (test/fuzz.test.ts).
 *
 * Mutant `i` of seed `s` is a pure function of (s, i): a seed file (a tiny CNN, a Loop model and
 * a Pad model, each as `.opq` and as ONNX, plus ResNet-20 and the format's edge-case file), and
 * one mutation:
 *   bytes     flip 1–8 random bytes (checksums then mostly fail: CHECKSUM)
 *   truncate  cut the file at a random length
 *   attr      set an int/ints attribute of a random node to a hostile value (0, −1, 2^31, 1e15,
 *             2^32, 2^62, …), re-encoded so checksums are valid
 *   dims      set a dim of an initializer, compressed tensor or graph input to a hostile value
 *   graph     rewire the graph: swap an input, rename an op, drop an output, duplicate a node
 *   value     overwrite initializer values (NaN, ±Inf, huge, negative indices in int64 tensors)
 *   section   flip bytes inside one `.opq` section, then recompute its CRC-32 and the header's
 * The outcome is "ok" (ran), a typed error's code, or "UNTYPED <name>: <message>".
 * @module
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { decode as msgpackDecode, encode as msgpackEncode } from "@msgpack/msgpack";
import { PROJECT_ROOT } from "../cli/shared.ts";
import { compressModel } from "../compressor/mod.ts";
import {
  type AttrValue, decodeOpq, type Dim, encodeOpq, FormatError, type Graph, type Model, mulberry32, type Node, type OpqModel,
  readOnnx, type Tensor, writeOnnx,
} from "../format/mod.ts";
import { crc32 } from "../format/codecs/crc32.ts";
import { decodeOpqParts, PREAMBLE_BYTES } from "../format/container.ts";
import { edgeCaseModel } from "../format/codecs/synthetic.ts";
import { createSession, OpqRuntimeError } from "../runtime/mod.ts";

/** The mutation kinds, in the order mutants cycle through them. */
export const MUTATIONS = ["attr", "dims", "graph", "value", "section", "bytes", "truncate"] as const;
/** A mutation kind. */
export type Mutation = (typeof MUTATIONS)[number];

const HOSTILE_INTS = [0, -1, -2, 1, 2, 3, 7, 255, 30000, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 1e15, 2 ** 53, 2 ** 62, -(2 ** 31), -1e15];
const HOSTILE_FLOATS = [NaN, Infinity, -Infinity, 1e38, -1e38, 1e-45, 0];

const node = (opType: string, inputs: string[], outputs: string[], attrs: Record<string, AttrValue> = {}): Node =>
  ({ opType, domain: "", name: `${opType}_${outputs[0]}`, inputs, outputs, attrs });
const ints = (value: number[]): AttrValue => ({ type: "ints", value });
const int = (value: number): AttrValue => ({ type: "int", value });

function randomTensor(dims: number[], rng: () => number): Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  return { dtype: "float32", dims, data: Float32Array.from({ length: n }, () => (rng() - 0.5) * 0.5) };
}

/** A tiny CNN: Conv → Relu → MaxPool → Conv → GlobalAveragePool → Flatten → Gemm, input [N, 1, 8, 8]. */
function tinyCnn(): Model {
  const rng = mulberry32(5);
  return {
    irVersion: 8, opsetImports: [{ domain: "", version: 13 }], producerName: "fuzz",
    graph: {
      name: "tiny", inputs: [{ name: "input", dtype: "float32", shape: ["N", 1, 8, 8] }],
      outputs: [{ name: "logits", dtype: "float32", shape: ["N", 4] }],
      initializers: { w1: randomTensor([8, 1, 3, 3], rng), b1: randomTensor([8], rng), w2: randomTensor([8, 8, 3, 3], rng), fc: randomTensor([4, 8], rng), fcb: randomTensor([4], rng) },
      nodes: [
        node("Conv", ["input", "w1", "b1"], ["c1"], { pads: ints([1, 1, 1, 1]), strides: ints([1, 1]), dilations: ints([1, 1]), group: int(1) }),
        node("Relu", ["c1"], ["r1"]),
        node("MaxPool", ["r1"], ["p1"], { kernel_shape: ints([2, 2]), strides: ints([2, 2]), pads: ints([0, 0, 0, 0]) }),
        node("Conv", ["p1", "w2"], ["c2"], { pads: ints([1, 1, 1, 1]), strides: ints([1, 1]) }),
        node("GlobalAveragePool", ["c2"], ["g"]),
        node("Flatten", ["g"], ["f"], { axis: int(1) }),
        node("Gemm", ["f", "fc", "fcb"], ["logits"], { transB: int(1) }),
      ],
    },
  };
}

/** A Loop that adds 1 to x `trip` times, then Pads and Reshapes the result (ops whose sizes come from constants). */
function loopPad(): Model {
  const body: Graph = {
    name: "body", initializers: { one: { dtype: "float32", dims: [1], data: Float32Array.of(1) } },
    inputs: [{ name: "i", dtype: "int64", shape: [] }, { name: "c_in", dtype: "bool", shape: [] }, { name: "x_in", dtype: "float32", shape: null }],
    outputs: [{ name: "c_out", dtype: "bool", shape: [] }, { name: "x_out", dtype: "float32", shape: null }],
    nodes: [node("Identity", ["c_in"], ["c_out"]), node("Add", ["x_in", "one"], ["x_out"])],
  };
  return {
    irVersion: 8, opsetImports: [{ domain: "", version: 13 }], producerName: "fuzz",
    graph: {
      name: "loop", inputs: [{ name: "x", dtype: "float32", shape: [1, 4] }],
      outputs: [{ name: "y", dtype: "float32", shape: null }],
      initializers: {
        trip: { dtype: "int64", dims: [], data: BigInt64Array.of(3n) }, cond: { dtype: "bool", dims: [], data: Uint8Array.of(1) },
        pads: { dtype: "int64", dims: [4], data: BigInt64Array.of(0n, 1n, 0n, 1n) }, shape: { dtype: "int64", dims: [2], data: BigInt64Array.of(2n, -1n) },
        w: randomTensor([6, 6], mulberry32(9)),
      },
      nodes: [
        node("Loop", ["trip", "cond", "x"], ["l"], { body: { type: "graph", value: body } }),
        node("Pad", ["l", "pads"], ["p"]),
        node("MatMul", ["p", "w"], ["m"]),
        node("Reshape", ["m", "shape"], ["y"]),
      ],
    },
  };
}

/** A seed file: its bytes, and whether it is a `.opq`. */
export interface Seed {
  name: string;
  bytes: Uint8Array;
  opq: boolean;
}

let seeds: Seed[] | undefined;

const SEED_FILES: readonly [string, boolean][] = [
  ["tiny-cnn.opq", true], ["tiny-cnn.onnx", false], ["loop-pad.onnx", false], ["loop-pad.opq", true],
  ["tiny-cnn-deflate.opq", true], ["edge-case.opq", true], ["resnet20.opq", true],
];

/** Write the seed files to `dir` (a watchdog's children then read them instead of compressing again). */
export function writeSeeds(dir: string): void {
  for (const s of fuzzSeeds()) writeFileSync(join(dir, s.name), s.bytes);
}

/** The seed files (built once per process, or read from the folder in env OPQ_FUZZ_SEEDS). */
export function fuzzSeeds(): Seed[] {
  if (seeds) return seeds;
  const cached = process.env.OPQ_FUZZ_SEEDS;
  if (cached) {
    seeds = SEED_FILES.map(([name, opq]) => ({ name, opq, bytes: new Uint8Array(readFileSync(join(cached, name))) }));
    return seeds;
  }
  const resnet = readOnnx(new Uint8Array(readFileSync(join(PROJECT_ROOT, "models", "resnet20-fmnist.onnx"))));
  const tiny = tinyCnn(), loop = loopPad();
  const asOpq = (m: Model) => encodeOpq(compressModel(m, { sparsity: 0.5, bits: 3 }).opq);
  seeds = [
    { name: "tiny-cnn.opq", bytes: asOpq(tiny), opq: true },
    { name: "tiny-cnn.onnx", bytes: writeOnnx(tiny), opq: false },
    { name: "loop-pad.onnx", bytes: writeOnnx(loop), opq: false },
    { name: "loop-pad.opq", bytes: encodeOpq({ model: loop, compressed: [], metadata: {} }), opq: true },
    { name: "tiny-cnn-deflate.opq", bytes: encodeOpq(compressModel(tiny, { sparsity: 0.7, bits: 2 }).opq, { codec: "deflate" }), opq: true },
    { name: "edge-case.opq", bytes: encodeOpq(edgeCaseModel()), opq: true },
    { name: "resnet20.opq", bytes: asOpq(resnet), opq: true },
  ];
  return seeds;
}

const pick = <T>(rng: () => number, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;

function allNodes(g: Graph, out: { node: Node; graph: Graph }[] = []): { node: Node; graph: Graph }[] {
  for (const n of g.nodes) {
    out.push({ node: n, graph: g });
    for (const a of Object.values(n.attrs)) if (a.type === "graph") allNodes(a.value, out);
  }
  return out;
}

/** Apply a structural mutation to a decoded model (in place). */
function mutateModel(m: Model, opq: OpqModel | undefined, kind: Mutation, rng: () => number): void {
  const nodes = allNodes(m.graph);
  const { node: n, graph } = pick(rng, nodes);
  if (kind === "attr") {
    const names = Object.keys(n.attrs).filter((k) => n.attrs[k]!.type === "int" || n.attrs[k]!.type === "ints");
    const name = names.length && rng() < 0.8 ? pick(rng, names) : pick(rng, ["pads", "strides", "dilations", "group", "axis", "kernel_shape", "ceil_mode", "transB", "keepdims"]);
    const v = pick(rng, HOSTILE_INTS);
    const old = n.attrs[name];
    if (old?.type === "ints" && old.value.length && rng() < 0.7) {
      const value = old.value.slice();
      value[Math.floor(rng() * value.length)] = v;
      n.attrs[name] = ints(value);
    } else if (rng() < 0.5) {
      n.attrs[name] = int(v);
    } else {
      n.attrs[name] = ints(Array.from({ length: 1 + Math.floor(rng() * 4) }, () => pick(rng, HOSTILE_INTS)));
    }
  } else if (kind === "dims") {
    // Dense tensors rarely: the writer refuses dims that disagree with their data (UNENCODABLE).
    const targets: { dims: Dim[] | number[] }[] = [
      ...(rng() < 0.15 ? Object.values(m.graph.initializers).filter((t) => t.dims.length > 0) : []),
      ...(opq?.compressed ?? []),
      ...m.graph.inputs.filter((v) => v.shape && v.shape.length > 0).map((v) => ({ dims: v.shape! })),
    ];
    if (!targets.length) return;
    const t = pick(rng, targets);
    (t.dims as (number | Dim)[])[Math.floor(rng() * t.dims.length)] = pick(rng, [...HOSTILE_INTS, 20000, 1400, 65536]);
  } else if (kind === "graph") {
    const r = rng();
    const names = [...new Set(nodes.flatMap((x) => [...x.node.inputs, ...x.node.outputs]))];
    if (r < 0.3 && n.inputs.length) n.inputs[Math.floor(rng() * n.inputs.length)] = pick(rng, [...names, "", "nope"]);
    else if (r < 0.5) n.opType = pick(rng, ["Add", "Conv", "Pad", "Expand", "Tile", "ConstantOfShape", "Range", "Loop", "Scan", "Concat", "Resize", "NoSuchOp", "MatMul", "Reshape"]);
    else if (r < 0.7) n.outputs.pop();
    else if (r < 0.85) graph.nodes.splice(Math.floor(rng() * (graph.nodes.length + 1)), 0, { ...n, name: `${n.name}_dup`, attrs: { ...n.attrs } });
    else graph.nodes.reverse();
  } else if (kind === "value") {
    const ts = Object.values(m.graph.initializers).filter((t) => t.dtype !== "string" && t.data.length > 0);
    for (const { node: x } of nodes) for (const a of Object.values(x.attrs)) if (a.type === "tensor" && a.value.data.length) ts.push(a.value);
    if (!ts.length) return;
    const t = pick(rng, ts);
    const k = Math.floor(rng() * t.data.length);
    if (t.data instanceof BigUint64Array) t.data[k] = BigInt(Math.floor(rng() * 2 ** 53));
    else if (t.data instanceof BigInt64Array) t.data[k] = BigInt(pick(rng, HOSTILE_INTS.map((v) => Math.max(-(2 ** 62), Math.min(2 ** 62, v)))));
    else if (t.data instanceof Float32Array || t.data instanceof Float64Array) t.data[k] = pick(rng, HOSTILE_FLOATS);
    else if (ArrayBuffer.isView(t.data)) (t.data as Uint8Array)[k] = Math.floor(rng() * 256);
  }
}

/** Flip bytes inside one section of a `.opq` and recompute every CRC, so the decoder sees valid checksums. */
function forgeSection(bytes: Uint8Array, rng: () => number): Uint8Array {
  const parts = decodeOpqParts(bytes, { maxElements: 2 ** 40 });
  const h = new DataView(bytes.buffer, bytes.byteOffset).getUint32(8, true);
  const header = msgpackDecode(bytes.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + h)) as { sections: number[][] };
  const bodies = parts.sections.map((s) => bytes.slice(s.offset, s.offset + s.length));
  const target = Math.floor(rng() * bodies.length);
  const body = bodies[target]!;
  if (body.length) for (let i = 0, k = 1 + Math.floor(rng() * 4); i < k; i++) body[Math.floor(rng() * body.length)] = Math.floor(rng() * 256);
  header.sections.forEach((s, i) => { s[4] = crc32(bodies[i]!); });
  const nh = msgpackEncode(header);
  let total = (PREAMBLE_BYTES + nh.length + 3) & ~3;
  const offsets = bodies.map((b) => { const o = total; total = (o + b.length + 3) & ~3; return o; });
  const out = new Uint8Array(total);
  out.set(bytes.subarray(0, 8));
  const dv = new DataView(out.buffer);
  dv.setUint32(8, nh.length, true);
  dv.setUint32(12, crc32(nh), true);
  out.set(nh, PREAMBLE_BYTES);
  bodies.forEach((b, i) => out.set(b, offsets[i]!));
  return out;
}

/** Mutant `index` of `seed`: which seed file, which mutation, and the bytes. */
export function makeMutant(seed: number, index: number): { seed: string; kind: Mutation; bytes: Uint8Array; unencodable?: boolean } {
  const rng = mulberry32((seed * 0x9e3779b1 + index * 0x85ebca6b) >>> 0);
  const all = fuzzSeeds();
  // ResNet-20 is the slowest seed to load and run: 1 mutant in 100.
  const s = rng() < 0.01 ? all[all.length - 1]! : all[Math.floor(rng() * (all.length - 1))]!;
  const kind = MUTATIONS[index % MUTATIONS.length]!;
  let bytes = s.bytes;
  if (kind === "bytes") {
    bytes = bytes.slice();
    for (let i = 0, k = 1 + Math.floor(rng() * 8); i < k; i++) bytes[Math.floor(rng() * bytes.length)] = Math.floor(rng() * 256);
  } else if (kind === "truncate") {
    bytes = bytes.slice(0, Math.floor(rng() * bytes.length));
  } else if (kind === "section") {
    bytes = s.opq ? forgeSection(bytes, rng) : bytes.slice();
    if (!s.opq) for (let i = 0, k = 1 + Math.floor(rng() * 3); i < k; i++) bytes[Math.floor(rng() * bytes.length)] ^= 1 << Math.floor(rng() * 8);
  } else {
    // Decoded, mutated, encoded again: every checksum and length of the file is valid.
    const opq = s.opq ? decodeOpq(s.bytes, { maxElements: 2 ** 40 }) : undefined;
    const model = opq ? opq.model : readOnnx(s.bytes);
    for (let i = 0, k = 1 + Math.floor(rng() * 2); i < k; i++) mutateModel(model, opq, kind, rng);
    try {
      bytes = opq ? encodeOpq(opq) : writeOnnx(model);
    } catch {
      // The writer refuses what it cannot encode (a dim of 1e15 in a dense tensor, ...): not a mutant of the reader.
      return { seed: s.name, kind, bytes: new Uint8Array(0), unencodable: true };
    }
  }
  return { seed: s.name, kind, bytes };
}

/** A feed for every declared input: symbolic or absurd dims become 1 (2 for a batch), values in [−1, 1). */
function feedsFor(inputs: readonly { name: string; dtype: string; shape: Dim[] | null }[]): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  for (const v of inputs) {
    const dims = (v.shape ?? [1]).map((d, i) => (typeof d === "number" && d >= 0 && d <= 4096 ? d : i === 0 ? 2 : 1));
    const n = dims.reduce((a, b) => a * b, 1);
    if (n > 1 << 22) return {};
    const data = v.dtype === "float32" ? Float32Array.from({ length: n }, (_, i) => ((i * 37) % 200) / 100 - 1)
      : v.dtype === "int64" ? new BigInt64Array(n) : v.dtype === "bool" ? new Uint8Array(n) : v.dtype === "float64" ? new Float64Array(n) : new Float32Array(n);
    feeds[v.name] = { dtype: v.dtype as Tensor["dtype"], dims, data } as Tensor;
  }
  return feeds;
}

/** What one mutant did. `budget` is the session's memory budget (0 if it never loaded). */
export interface Outcome {
  code: string;
  budget: number;
}

/** Decode, load and run `bytes`; the outcome is "ok", a typed error's code, or "UNTYPED …". */
export async function runMutant(bytes: Uint8Array): Promise<Outcome> {
  let budget = 0;
  try {
    const session = await createSession(bytes);
    budget = session.info.limits?.memoryBudget ?? 0;
    try {
      await session.run(feedsFor(session.inputs));
    } finally {
      session.dispose();
    }
    return { code: "ok", budget };
  } catch (e) {
    if (e instanceof OpqRuntimeError || e instanceof FormatError) {
      const inner = e instanceof OpqRuntimeError ? (e.details as { formatCode?: string } | undefined)?.formatCode : undefined;
      return { code: inner ? `${e.code}/${inner}` : e.code, budget };
    }
    const err = e as Error;
    return { code: `UNTYPED ${err?.name ?? typeof e}: ${String(err?.message ?? e).slice(0, 120)}`, budget };
  }
}
