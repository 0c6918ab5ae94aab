/**
 * Fixtures for the format tests: a seeded PRNG, Laplace-distributed sparse quantized tensors
 * (the statistics a pruned, Δ-quantized CNN layer has), and a naive magnitude-prune +
 * uniform-quantize of a real model's weights. Not a compressor: just realistic symbols.
 * @module
 */
import type { CompressedTensor, Graph, Model, OpqModel, Tensor } from "../graph.ts";
import { sizeOf } from "../graph.ts";
import { mulberry32 } from "../prng.ts";

export { mulberry32 };

/**
 * Keep the `density` fraction of largest-magnitude weights and quantize them uniformly with
 * 2^(bits−1) − 1 positive levels: step Δ = max|w| / (2^(bits−1) − 1), code = round(w/Δ), never 0.
 */
export function pruneQuantize(name: string, dims: number[], w: Float32Array, density: number, bits: number): CompressedTensor {
  const n = w.length, keep = Math.round(n * density);
  const mags = Float32Array.from(w, Math.abs).sort();
  const threshold = keep > 0 ? mags[n - keep]! : Infinity;
  const maxAbs = n > 0 ? mags[n - 1]! : 0;
  const levels = 2 ** (bits - 1) - 1;
  const step = maxAbs > 0 ? maxAbs / levels : 1;
  const idx: number[] = [], codes: number[] = [];
  for (let i = 0; i < n && idx.length < keep; i++) {
    if (Math.abs(w[i]!) < threshold) continue;
    idx.push(i);
    const c = Math.max(-levels, Math.min(levels, Math.round(w[i]! / step)));
    codes.push(c === 0 ? (w[i]! < 0 ? -1 : 1) : c);
  }
  return { name, dims, codebook: { kind: "uniform", step }, indices: Uint32Array.from(idx), codes: Int32Array.from(codes) };
}

/** Laplace(0, 1) samples. */
export function laplace(n: number, rng: () => number): Float32Array {
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) { const u = rng() - 0.5; w[i] = -Math.sign(u) * Math.log(1 - 2 * Math.abs(u)); }
  return w;
}

/** A synthetic sparse tensor: Laplace weights, pruned to `density`, quantized to `bits`. */
export function syntheticTensor(name: string, dims: number[], rng: () => number, density = 0.26, bits = 3): CompressedTensor {
  return pruneQuantize(name, dims, laplace(sizeOf(dims), rng), density, bits);
}

/**
 * Wrap a real model: every float32 initializer of rank ≥ 2 becomes a compressed tensor
 * (pruneQuantize of its own weights); the rest stay exact.
 */
export function compressNaive(model: Model, density: number, bits: number): OpqModel {
  const initializers: Record<string, Tensor> = {};
  const compressed: CompressedTensor[] = [];
  for (const [name, t] of Object.entries(model.graph.initializers)) {
    if (t.dtype === "float32" && t.dims.length >= 2) compressed.push(pruneQuantize(name, t.dims, t.data as Float32Array, density, bits));
    else initializers[name] = t;
  }
  return {
    model: { ...model, graph: { ...model.graph, initializers } },
    compressed,
    metadata: { method: "naive magnitude prune + uniform quantize (test fixture)", density, bits },
  };
}

/**
 * A small model exercising every corner the container must round-trip: every dtype kept
 * (int64, uint64, strings, float16 bits, bool, a scalar, an empty tensor), every attribute
 * type including a tensor and a subgraph with its own initializer, symbolic shapes, and
 * compressed tensors that are empty, all-zero, fully dense, a single huge gap, a single code
 * symbol, a float table with NaN and −0, int32-extreme codes, and a Laplace layer.
 */
export function edgeCaseModel(seed = 1): OpqModel {
  const rng = mulberry32(seed);
  const dense = syntheticTensor("w.dense", [8, 9], rng, 1, 3);
  const single = syntheticTensor("w.single", [32, 16], rng, 0.3, 3);
  single.codes.fill(2);
  const sub: Graph = {
    name: "body",
    nodes: [{ opType: "Add", domain: "", name: "sub_add", inputs: ["x", "c"], outputs: ["y"], attrs: {} }],
    inputs: [{ name: "x", dtype: "float32" as const, shape: [1] }],
    outputs: [{ name: "y", dtype: "float32" as const, shape: [1] }],
    initializers: { c: { dtype: "float32" as const, dims: [1], data: new Float32Array([0.5]) } },
  };
  const graph: Graph = {
    name: "edge",
    nodes: [
      {
        opType: "Conv", domain: "", name: "conv", inputs: ["input", "w.laplace", "bias"], outputs: ["h"],
        attrs: {
          kernel_shape: { type: "ints" as const, value: [3, 3] }, group: { type: "int" as const, value: 1 },
          alpha: { type: "float" as const, value: Math.fround(0.1) }, neg0: { type: "float" as const, value: -0 },
          scales: { type: "floats" as const, value: [1.5, NaN, -Infinity] }, mode: { type: "string" as const, value: "constant" },
          names: { type: "strings" as const, value: ["a", "", "ü"] }, big: { type: "int" as const, value: 2 ** 63 },
        },
      },
      {
        opType: "Constant", domain: "", name: "const", inputs: [], outputs: ["shape"],
        attrs: { value: { type: "tensor" as const, value: { dtype: "int64" as const, dims: [2], data: new BigInt64Array([-1n, 9007199254740993n]) } } },
      },
      { opType: "Loop", domain: "", name: "loop", inputs: ["", "cond"], outputs: ["z"], attrs: { body: { type: "graph" as const, value: sub } } },
      { opType: "MatMul", domain: "com.example", name: "mm", inputs: ["h", "w.dense", "w.empty", "w.zero", "w.gap", "w.single", "w.table", "w.extreme"], outputs: ["output"], attrs: {} },
    ],
    inputs: [{ name: "input", dtype: "float32" as const, shape: ["N", 3, null, 32] }],
    outputs: [{ name: "output", dtype: "float32" as const, shape: null }],
    initializers: {
      bias: { dtype: "float32" as const, dims: [4], data: new Float32Array([1, -0, NaN, 3.25]) },
      shape: { dtype: "int64" as const, dims: [3], data: new BigInt64Array([1n, -2n, 2n ** 62n]) },
      u64: { dtype: "uint64" as const, dims: [1], data: new BigUint64Array([2n ** 64n - 1n]) },
      labels: { dtype: "string" as const, dims: [2, 2], data: ["cat", "dog", "", "日本"] },
      half: { dtype: "float16" as const, dims: [3], data: new Uint16Array([0x3c00, 0x8000, 0x7e00]) },
      mask: { dtype: "bool" as const, dims: [2], data: new Uint8Array([1, 0]) },
      scalar: { dtype: "float64" as const, dims: [], data: new Float64Array([Math.PI]) },
      empty: { dtype: "int8" as const, dims: [0, 5], data: new Int8Array(0) },
      i16: { dtype: "int16" as const, dims: [3], data: new Int16Array([-32768, 0, 32767]) },
    },
    valueInfo: [{ name: "h", dtype: "float32" as const, shape: [1, 4, "H", "W"] }],
  };
  // ONNX allows any name; this one must stay an own property, never the prototype.
  Object.defineProperty(graph.initializers, "__proto__", { value: { dtype: "int32", dims: [1], data: new Int32Array([7]) }, enumerable: true, writable: true, configurable: true });
  const compressed: CompressedTensor[] = [
    syntheticTensor("w.laplace", [16, 8, 3, 3], rng),
    dense,
    { name: "w.empty", dims: [0, 3], codebook: { kind: "uniform", step: 0.25 }, indices: new Uint32Array(0), codes: new Int32Array(0) },
    { name: "w.zero", dims: [4, 4], codebook: { kind: "uniform", step: 0.1 }, indices: new Uint32Array(0), codes: new Int32Array(0) },
    { name: "w.gap", dims: [1 << 22], codebook: { kind: "uniform", step: -0.5 }, indices: new Uint32Array([3, (1 << 22) - 1]), codes: new Int32Array([-1, 1]) },
    single,
    {
      name: "w.table", dims: [10, 10], codebook: { kind: "table", values: new Float32Array([-0.75, -0, 0.5, NaN, 1e-30]) },
      indices: Uint32Array.from({ length: 40 }, (_, i) => i * 2 + (i % 2)), codes: Int32Array.from({ length: 40 }, (_, i) => (i * 7) % 5),
    },
    { name: "w.extreme", dims: [6], codebook: { kind: "uniform", step: 1e-3 }, indices: new Uint32Array([0, 2, 5]), codes: new Int32Array([-(2 ** 31), 2 ** 31 - 1, 0]) },
  ];
  return {
    model: { irVersion: 8, opsetImports: [{ domain: "", version: 13 }, { domain: "com.example", version: 1 }], producerName: "opq-test", graph },
    compressed,
    metadata: { method: "edge cases", sparsity: 0.74, bits: 3, nested: { list: [1, "x", null, true, 2.5] } },
  };
}
