/**
 * Seeded 224×224 benchmark models written by our own ONNX writer, so benchmarks and tests need no
 * external file: torchvision's MobileNetV2, ResNet-18 and ResNet-50 architectures with the
 * structure of the shared reference models (opset 13, BatchNorm already folded into the Conv
 * before it, input `input` [batch, 3, 224, 224], output `logits` [batch, 1000]) and weights drawn
 * the way torchvision initializes them (Kaiming-normal convs, fan-out mode; BatchNorm at its
 * identity init folded in), from a fixed seed: the same bytes on every run and runtime.
 * Random weights: for size, decode speed, memory and latency, never for accuracy.
 *
 * CLI: `bun bench/models.ts <name> [-o file.onnx]` (names: `bun bench/models.ts --list`).
 * @module
 */
import { existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { type AttrValue, type Model, type Node, type Tensor, mulberry32, writeOnnx } from "../format/mod.ts";

/**
 * The seeded models, by file stem: `params` counts the weights the file holds (conv weights and
 * folded biases, classifier), `torchvisionParams` the module's count before folding (BatchNorm's
 * γ and β are two per channel, the folded bias one).
 */
export const SEEDED_MODELS = {
  "mobilenet_v2-224": { params: 3_487_816, torchvisionParams: 3_504_872 },
  "resnet18-224": { params: 11_684_712, torchvisionParams: 11_689_512 },
  "resnet50-224": { params: 25_530_472, torchvisionParams: 25_557_032 },
} as const;

/** A seeded model's name. */
export type SeededModelName = keyof typeof SEEDED_MODELS;

/** True when `name` (with or without `.onnx`) is one of SEEDED_MODELS. */
export function isSeededModel(name: string): name is SeededModelName {
  return Object.hasOwn(SEEDED_MODELS, name.replace(/\.onnx$/, ""));
}

/** BatchNorm's epsilon: folding γ=1, β=0, mean 0, var 1 scales the conv by 1/√(1+ε). */
const BN_EPS = 1e-5;
const SEED = 20240601;

/** Builds a graph node by node with torch-exporter-style names (`/layer1/layer1.0/conv1/Conv`). */
class GraphBuilder {
  nodes: Node[] = [];
  initializers: Record<string, Tensor> = {};
  private normal: () => number;
  private uniform: () => number;

  constructor(seed: number) {
    const u = mulberry32(seed);
    this.uniform = u;
    // Box–Muller; 1 − u keeps the log argument in (0, 1].
    this.normal = () => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
  }

  private node(opType: string, scope: string, inputs: string[], attrs: Record<string, AttrValue> = {}): string {
    const name = `${scope}/${opType}`;
    const output = `${name}_output_0`;
    this.nodes.push({ opType, domain: "", name, inputs, outputs: [output], attrs });
    return output;
  }

  /** Conv + folded BatchNorm: Kaiming-normal (fan-out, ReLU gain) weights, zero bias. */
  conv(scope: string, param: string, x: string, cin: number, cout: number, k: number, stride = 1, group = 1): string {
    const w = new Float32Array(cout * (cin / group) * k * k);
    const std = Math.sqrt(2 / (cout * k * k)) / Math.sqrt(1 + BN_EPS);
    for (let i = 0; i < w.length; i++) w[i] = std * this.normal();
    this.initializers[`${param}.weight`] = { dtype: "float32", dims: [cout, cin / group, k, k], data: w };
    this.initializers[`${param}.bias`] = { dtype: "float32", dims: [cout], data: new Float32Array(cout) };
    const p = (k - 1) >> 1;
    return this.node("Conv", scope, [x, `${param}.weight`, `${param}.bias`], {
      dilations: { type: "ints", value: [1, 1] }, group: { type: "int", value: group },
      kernel_shape: { type: "ints", value: [k, k] }, pads: { type: "ints", value: [p, p, p, p] },
      strides: { type: "ints", value: [stride, stride] },
    });
  }

  relu(scope: string, x: string): string {
    return this.node("Relu", scope, [x]);
  }

  relu6(scope: string, x: string): string {
    for (const [k, v] of [["min", 0], ["max", 6]] as const) {
      this.initializers[`clip.${k}`] ??= { dtype: "float32", dims: [], data: new Float32Array([v]) };
    }
    return this.node("Clip", scope, [x, "clip.min", "clip.max"]);
  }

  add(scope: string, a: string, b: string): string {
    return this.node("Add", scope, [a, b]);
  }

  maxPool(scope: string, x: string): string {
    return this.node("MaxPool", scope, [x], {
      ceil_mode: { type: "int", value: 0 }, dilations: { type: "ints", value: [1, 1] }, kernel_shape: { type: "ints", value: [3, 3] },
      pads: { type: "ints", value: [1, 1, 1, 1] }, strides: { type: "ints", value: [2, 2] },
    });
  }

  /** GlobalAveragePool, Flatten and the classifier Gemm writing `logits`. */
  head(scope: string, param: string, x: string, features: number, classes: number, init: "torch-linear" | "normal-0.01"): void {
    const pooled = this.node("GlobalAveragePool", scope === "" ? "" : scope, [x]);
    const flat = this.node("Flatten", "", [pooled], { axis: { type: "int", value: 1 } });
    const w = new Float32Array(classes * features), b = new Float32Array(classes);
    if (init === "torch-linear") {
      // nn.Linear's default: U(−1/√in, 1/√in) for weight and bias.
      const bound = 1 / Math.sqrt(features);
      for (let i = 0; i < w.length; i++) w[i] = bound * (2 * this.uniform() - 1);
      for (let i = 0; i < b.length; i++) b[i] = bound * (2 * this.uniform() - 1);
    } else {
      for (let i = 0; i < w.length; i++) w[i] = 0.01 * this.normal();
    }
    this.initializers[`${param}.weight`] = { dtype: "float32", dims: [classes, features], data: w };
    this.initializers[`${param}.bias`] = { dtype: "float32", dims: [classes], data: b };
    this.nodes.push({
      opType: "Gemm", domain: "", name: `/${param.replace(/\./g, "/")}/Gemm`, inputs: [flat, `${param}.weight`, `${param}.bias`], outputs: ["logits"],
      attrs: { alpha: { type: "float", value: 1 }, beta: { type: "float", value: 1 }, transB: { type: "int", value: 1 } },
    });
  }

  model(): Model {
    return {
      irVersion: 7, opsetImports: [{ domain: "", version: 13 }], producerName: "opq-seeded",
      graph: {
        name: "main", nodes: this.nodes, initializers: this.initializers,
        inputs: [{ name: "input", dtype: "float32", shape: ["batch", 3, 224, 224] }],
        outputs: [{ name: "logits", dtype: "float32", shape: ["batch", 1000] }],
      },
    };
  }
}

/** torchvision ResNet: BasicBlock ([2,2,2,2] is ResNet-18) or Bottleneck ([3,4,6,3] is ResNet-50, stride on the 3×3). */
function resnet(g: GraphBuilder, blocks: number[], bottleneck: boolean): void {
  const expansion = bottleneck ? 4 : 1;
  let x = g.relu("/relu", g.conv("/conv1", "conv1", "input", 3, 64, 7, 2));
  x = g.maxPool("/maxpool", x);
  let cin = 64;
  blocks.forEach((count, li) => {
    const width = 64 << li;
    for (let bi = 0; bi < count; bi++) {
      const stride = bi === 0 && li > 0 ? 2 : 1;
      const s = `/layer${li + 1}/layer${li + 1}.${bi}`, p = `layer${li + 1}.${bi}`;
      const cout = width * expansion;
      let y: string;
      if (bottleneck) {
        y = g.relu(`${s}/relu`, g.conv(`${s}/conv1`, `${p}.conv1`, x, cin, width, 1));
        y = g.relu(`${s}/relu_1`, g.conv(`${s}/conv2`, `${p}.conv2`, y, width, width, 3, stride));
        y = g.conv(`${s}/conv3`, `${p}.conv3`, y, width, cout, 1);
      } else {
        y = g.relu(`${s}/relu`, g.conv(`${s}/conv1`, `${p}.conv1`, x, cin, width, 3, stride));
        y = g.conv(`${s}/conv2`, `${p}.conv2`, y, width, width, 3);
      }
      const shortcut = stride !== 1 || cin !== cout ? g.conv(`${s}/downsample/downsample.0`, `${p}.downsample.0`, x, cin, cout, 1, stride) : x;
      x = g.relu(`${s}/relu_${bottleneck ? 2 : 1}`, g.add(s, y, shortcut));
      cin = cout;
    }
  });
  g.head("/avgpool", "fc", x, cin, 1000, "torch-linear");
}

/** torchvision MobileNetV2 (width 1.0): inverted residuals (t, c, n, s), ReLU6, 1280 features. */
function mobilenetV2(g: GraphBuilder): void {
  const settings = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]];
  let x = g.relu6("/features/features.0/features.0.2", g.conv("/features/features.0/features.0.0", "features.0.0", "input", 3, 32, 3, 2));
  let cin = 32, f = 1;
  for (const [t, c, n, s] of settings) {
    for (let i = 0; i < n!; i++, f++) {
      const stride = i === 0 ? s! : 1, hidden = cin * t!;
      const scope = `/features/features.${f}/conv`, p = `features.${f}.conv`;
      let y = x, j = 0;
      if (t !== 1) y = g.relu6(`${scope}/conv.${j}/conv.${j}.2`, g.conv(`${scope}/conv.${j}/conv.${j}.0`, `${p}.${j}.0`, y, cin, hidden, 1)), j++;
      y = g.relu6(`${scope}/conv.${j}/conv.${j}.2`, g.conv(`${scope}/conv.${j}/conv.${j}.0`, `${p}.${j}.0`, y, hidden, hidden, 3, stride, hidden)), j++;
      y = g.conv(`${scope}/conv.${j}`, `${p}.${j}`, y, hidden, c!, 1);
      x = stride === 1 && cin === c ? g.add(`/features/features.${f}`, x, y) : y;
      cin = c!;
    }
  }
  x = g.relu6(`/features/features.${f}/features.${f}.2`, g.conv(`/features/features.${f}/features.${f}.0`, `features.${f}.0`, x, cin, 1280, 1));
  g.head("", "classifier.1", x, 1280, 1000, "normal-0.01");
}

/** The seeded model `name` (e.g. `resnet50-224`) as an in-memory Model; the same weights every call. */
export function seededModel(name: string): Model {
  const stem = name.replace(/\.onnx$/, "");
  if (!isSeededModel(stem)) throw new Error(`unknown seeded model ${JSON.stringify(name)}; known: ${Object.keys(SEEDED_MODELS).join(", ")}`);
  const g = new GraphBuilder(SEED);
  if (stem === "mobilenet_v2-224") mobilenetV2(g);
  else if (stem === "resnet18-224") resnet(g, [2, 2, 2, 2], false);
  else resnet(g, [3, 4, 6, 3], true);
  return g.model();
}

/** Write the seeded model's ONNX bytes to `path` (through a temporary file, so no reader sees half a model). */
export function writeSeededModel(name: string, path: string): number {
  const bytes = writeOnnx(seededModel(name));
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, path);
  return bytes.length;
}

/** The seeded model's file in `dir` (default `out/models` of the project), written on first use. */
export function ensureSeededModel(name: string, dir: string): string {
  const path = join(dir, `${name.replace(/\.onnx$/, "")}.onnx`);
  if (!existsSync(path)) writeSeededModel(name, path);
  return path;
}

if (import.meta.main) {
  const { parseArgs } = await import("node:util");
  const { values, positionals } = parseArgs({ args: process.argv.slice(2), options: { output: { type: "string", short: "o" }, list: { type: "boolean" }, help: { type: "boolean", short: "h" } }, allowPositionals: true });
  if (values.list || values.help || positionals.length !== 1) {
    const out = values.list || values.help ? process.stdout : process.stderr;
    out.write(`usage: bun bench/models.ts <name> [-o file.onnx]\nwrites a seeded 224x224 benchmark model (random weights, fixed seed) as ONNX\nnames: ${Object.keys(SEEDED_MODELS).join(", ")}\n`);
    process.exit(values.list || values.help ? 0 : 2);
  }
  const name = positionals[0]!;
  if (!isSeededModel(name)) {
    process.stderr.write(`unknown model ${JSON.stringify(name)}; names: ${Object.keys(SEEDED_MODELS).join(", ")}\n`);
    process.exit(2);
  }
  const path = values.output ?? `${name.replace(/\.onnx$/, "")}.onnx`;
  const bytes = writeSeededModel(name, path);
  process.stderr.write(`wrote ${path} (${bytes.toLocaleString("en-US")} bytes, ${SEEDED_MODELS[name.replace(/\.onnx$/, "") as SeededModelName].params.toLocaleString("en-US")} parameters)\n`);
}
