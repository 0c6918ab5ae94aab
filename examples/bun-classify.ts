/**
 * Compress an ONNX classifier in memory, load the `.opq` it makes and classify one Fashion-MNIST
 * sample, under Bun. Run: `bun examples/bun-classify.ts [model.onnx] [samples.json]` (defaults:
 * the bundled ResNet-20 and samples). Prints one JSON line.
 * @module
 */
import { readFileSync } from "node:fs";
import { compressModel, createSession, encodeCompressed, readOnnx } from "opq";
import { decodeSampleBundle, sampleInput } from "opq/server";

const modelPath = process.argv[2] ?? new URL("../models/resnet20-fmnist.onnx", import.meta.url).pathname;
const samplesPath = process.argv[3] ?? new URL("../models/fmnist-samples.json", import.meta.url).pathname;

const onnx = new Uint8Array(readFileSync(modelPath));
const compressed = encodeCompressed(compressModel(readOnnx(onnx), { sparsity: 0.5, bits: 3 }));
const session = await createSession(compressed);
const bundle = decodeSampleBundle(readFileSync(samplesPath, "utf8"));
const sample = bundle.samples[0]!;
const x = sampleInput(bundle, sample);
const out = await session.run({ [session.inputs[0]!.name]: { dtype: "float32", dims: x.shape, data: x.data } });
const logits = out[session.outputs[0]!.name]!.data as Float32Array;
const best = logits.indexOf(Math.max(...logits));
console.log(JSON.stringify({ runtime: "bun", bytes: compressed.length, onnxBytes: onnx.length, predicted: bundle.classes[best], label: bundle.classes[sample.label] }));
session.dispose();
