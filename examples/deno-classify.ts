/**
 * Load a `.opq` (or ONNX) model from bytes and classify the bundled Fashion-MNIST samples, under
 * Deno. Run: `deno run --allow-read examples/deno-classify.ts model.opq [samples.json]`. Prints
 * one JSON line with the top-1 over the samples.
 * @module
 */
import { createSession } from "opq/runtime";
import { decodeSampleBundle, sampleInput } from "opq/server";

const [modelPath, samplesPath = new URL("../models/fmnist-samples.json", import.meta.url).pathname] = Deno.args;
if (!modelPath) {
  console.error("usage: deno run --allow-read examples/deno-classify.ts model.opq [samples.json]");
  Deno.exit(2);
}
const session = await createSession(await Deno.readFile(modelPath));
const bundle = decodeSampleBundle(await Deno.readTextFile(samplesPath));
let correct = 0;
for (const sample of bundle.samples) {
  const x = sampleInput(bundle, sample);
  const out = await session.run({ [session.inputs[0]!.name]: { dtype: "float32", dims: x.shape, data: x.data } });
  const logits = out[session.outputs[0]!.name]!.data as Float32Array;
  if (logits.indexOf(Math.max(...logits)) === sample.label) correct++;
}
console.log(JSON.stringify({ runtime: "deno", samples: bundle.samples.length, correct }));
session.dispose();
