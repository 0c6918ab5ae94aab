/**
 * `bun run bench:format` – the `.opq` container on a ResNet-18-sized model (11.7 M weights,
 * Laplace-distributed, 74% pruned by magnitude, Δ-quantized to 3 bits), rANS against fflate
 * deflate in the same run: encode time, decode throughput (decodeOpq + dequantize, MB/s of
 * FP32 output), size against FP32 and against the zero-order entropy bound. With the shared
 * models present: ResNet-18's real weights with the same naive treatment, and ResNet-20 through
 * the real compressor (OPQ, 74% / 3 bits), with and without its metadata.
 * Prints a table and one JSON line.
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { sharedPath } from "../cli/shared.ts";
import { compressModel } from "../compressor/mod.ts";
import {
  type CompressedTensor, decodeOpq, type Node, dequantize, encodeOpq, entropyBound, inspectOpq, mulberry32, type OpqModel, readOnnx, sizeOf, type WeightCodec,
} from "../format/mod.ts";

/** ResNet-18 weight shapes (torchvision layout): stem, 4 stages of basic blocks, 1×1 downsamples, fc. */
const RESNET18_SHAPES: number[][] = [
  [64, 3, 7, 7],
  ...Array(4).fill([64, 64, 3, 3]),
  [128, 64, 3, 3], [128, 128, 3, 3], [128, 64, 1, 1], [128, 128, 3, 3], [128, 128, 3, 3],
  [256, 128, 3, 3], [256, 256, 3, 3], [256, 128, 1, 1], [256, 256, 3, 3], [256, 256, 3, 3],
  [512, 256, 3, 3], [512, 512, 3, 3], [512, 256, 1, 1], [512, 512, 3, 3], [512, 512, 3, 3],
  [1000, 512],
];

const prng = mulberry32;

/**
 * Keep the largest `density` of |w|, quantize with one Δ per layer (OPQ Eq. 10) to signed
 * `bits`-bit codes: Δ puts the 99th percentile of surviving |w| at the top level.
 */
function pruneQuantize(name: string, dims: number[], w: Float32Array, density: number, bits: number): CompressedTensor {
  const mags = Float32Array.from(w, Math.abs).sort();
  const keep = Math.round(w.length * density), t = mags[w.length - keep]!;
  const top = 2 ** (bits - 1) - 1, step = mags[Math.min(w.length - 1, Math.floor(w.length * (1 - 0.01 * density)))]! / top;
  const idx = new Uint32Array(keep), codes = new Int32Array(keep);
  let k = 0;
  for (let i = 0; i < w.length && k < keep; i++) {
    if (Math.abs(w[i]!) < t) continue;
    const c = Math.max(-top - 1, Math.min(top, Math.round(w[i]! / step)));
    idx[k] = i;
    codes[k++] = c === 0 ? Math.sign(w[i]!) : c;
  }
  return { name, dims, codebook: { kind: "uniform", step }, indices: idx.subarray(0, k), codes: codes.subarray(0, k) };
}

function syntheticResnet18(): OpqModel {
  const rng = prng(18);
  const compressed = RESNET18_SHAPES.map((dims, l) => {
    const w = new Float32Array(sizeOf(dims));
    for (let i = 0; i < w.length; i++) { const u = rng() - 0.5; w[i] = -Math.sign(u) * Math.log(1 - 2 * Math.abs(u)); }
    return pruneQuantize(`w${l}`, dims, w, 0.26, 3);
  });
  const initializers = Object.fromEntries(compressed.map((t) => [`b_${t.name}`, { dtype: "float32" as const, dims: [t.dims[0]!], data: new Float32Array(t.dims[0]!).map(() => rng() - 0.5) }]));
  const nodes = compressed.map((t, l): Node => ({
    opType: t.dims.length === 4 ? "Conv" : "Gemm", domain: "", name: `node${l}`, inputs: [l ? `h${l - 1}` : "input", t.name, `b_${t.name}`], outputs: [`h${l}`],
    attrs: t.dims.length === 4 ? { kernel_shape: { type: "ints" as const, value: [t.dims[2]!, t.dims[3]!] } } : {},
  }));
  return {
    model: { irVersion: 8, opsetImports: [{ domain: "", version: 13 }], producerName: "format-bench", graph: { name: "resnet18-synthetic", nodes, inputs: [{ name: "input", dtype: "float32", shape: ["N", 3, 224, 224] }], outputs: [{ name: `h${nodes.length - 1}`, dtype: "float32", shape: ["N", 1000] }], initializers } },
    compressed, metadata: { sparsity: 0.74, bits: 3 },
  };
}

function naive(path: string): OpqModel {
  const model = readOnnx(readFileSync(path));
  const initializers: typeof model.graph.initializers = {};
  const compressed: CompressedTensor[] = [];
  for (const [name, t] of Object.entries(model.graph.initializers)) {
    if (t.dtype === "float32" && t.dims.length >= 2) compressed.push(pruneQuantize(name, t.dims, t.data as Float32Array, 0.26, 3));
    else initializers[name] = t;
  }
  return { model: { ...model, graph: { ...model.graph, initializers } }, compressed, metadata: { sparsity: 0.74, bits: 3 } };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

function run(label: string, m: OpqModel): Record<string, unknown> {
  const weights = m.compressed.reduce((a, t) => a + sizeOf(t.dims), 0);
  const fp32 = 4 * weights;
  const bound = entropyBound(m);
  console.log(`\n${label}: ${(weights / 1e6).toFixed(2)} M weights, ${m.compressed.reduce((a, t) => a + t.indices.length, 0)} non-zeros, ` +
    `bound ${(bound.totalBytes / 1024).toFixed(1)} KiB (gaps ${(bound.gapsBits / 8 / 1024).toFixed(1)}, codes ${(bound.codesBits / 8 / 1024).toFixed(1)}, exact ${(bound.exactBytes / 1024).toFixed(1)})`);
  console.log("codec    encode ms   bytes      ×FP32    ×bound   decode ms (first / median of 5)   MB/s");
  const result: Record<string, unknown> = { weights, boundBytes: bound.totalBytes };
  for (const codec of ["rans", "deflate"] as WeightCodec[]) {
    let t = performance.now();
    const bytes = encodeOpq(m, { codec });
    const encodeMs = performance.now() - t;
    const times: number[] = [];
    for (let r = 0; r < 6; r++) {
      t = performance.now();
      const d = decodeOpq(bytes);
      for (const ct of d.compressed) dequantize(ct);
      times.push(performance.now() - t);
    }
    const ms = median(times.slice(1)), mbps = fp32 / 1e6 / (ms / 1000);
    result[codec] = { bytes: bytes.length, encodeMs, decodeMsFirst: times[0], decodeMs: ms, mbPerS: mbps, ratioToBound: bytes.length / bound.totalBytes, fp32Ratio: fp32 / bytes.length };
    console.log(`${codec.padEnd(8)} ${encodeMs.toFixed(0).padStart(9)} ${String(bytes.length).padStart(9)} ${(fp32 / bytes.length).toFixed(1).padStart(8)} ${(bytes.length / bound.totalBytes).toFixed(4).padStart(8)}   ${times[0]!.toFixed(1).padStart(8)} / ${ms.toFixed(1).padEnd(22)} ${mbps.toFixed(0).padStart(6)}`);
    if (codec === "rans") {
      const info = inspectOpq(bytes);
      const b = info.breakdown;
      console.log(`         bytes: indices ${b.indices}, codes ${b.codes}, codebooks ${b.codebooks}, graph ${b.graph}, kept ${b.kept}, framing ${b.framing}`);
    }
  }
  const r = result.rans as { bytes: number; decodeMs: number }, z = result.deflate as { bytes: number; decodeMs: number };
  console.log(`rans / deflate: size ${(r.bytes / z.bytes).toFixed(3)}×, decode time ${(r.decodeMs / z.decodeMs).toFixed(2)}×`);
  return result;
}

const results: Record<string, unknown> = { synthetic: run("synthetic ResNet-18 (Laplace, 74% pruned, 3 bits)", syntheticResnet18()) };
const real = sharedPath("models", "resnet18-224.onnx");
results.resnet18 = run("ResNet-18 real weights (naive magnitude prune 74%, 3 bits)", naive(real));
const r20 = sharedPath("models", "resnet20-fmnist.onnx");
if (existsSync(r20)) {
  const { opq } = compressModel(readOnnx(readFileSync(r20)), { sparsity: 0.74, bits: 3 });
  results.resnet20 = run("ResNet-20 through compressModel (OPQ, 74%, 3 bits)", opq);
  const bare = encodeOpq({ ...opq, metadata: {} });
  console.log(`without its metadata: ${bare.length} bytes, ${(bare.length / entropyBound(opq).totalBytes).toFixed(4)}× bound (metadata costs ${encodeOpq(opq).length - bare.length} bytes)`);
} else console.log(`\n(${r20} missing: ResNet-20 case skipped)`);
console.log(`\n${JSON.stringify(results)}`);
