/**
 * The browser example: fetch a `.opq`, run it in the page with `createSession(bytes)` and show a
 * prediction per bundled sample. Bundle it with
 * `bun build examples/browser/main.ts --target browser --outfile examples/browser/main.js`, put
 * `model.opq` and `samples.json` beside index.html and serve the folder.
 * @module
 */
import { createSession } from "opq/runtime";

interface Bundle { side: number; mean: number; std: number; classes: string[]; images: { label: number; pixels: string }[] }

const status = document.getElementById("status")!;
const list = document.getElementById("results")!;
const [bytes, bundle] = await Promise.all([
  fetch("./model.opq").then(async (r) => new Uint8Array(await r.arrayBuffer())),
  fetch("./samples.json").then((r) => r.json() as Promise<Bundle>),
]);
const session = await createSession(bytes);
let correct = 0;
for (const image of bundle.images) {
  const pixels = Uint8Array.from(atob(image.pixels), (c) => c.charCodeAt(0));
  const data = Float32Array.from(pixels, (p) => (p / 255 - bundle.mean) / bundle.std);
  const out = await session.run({ [session.inputs[0]!.name]: { dtype: "float32", dims: [1, 1, bundle.side, bundle.side], data } });
  const logits = out[session.outputs[0]!.name]!.data as Float32Array;
  const best = logits.indexOf(Math.max(...logits));
  if (best === image.label) correct++;
  const li = document.createElement("li");
  li.textContent = `${bundle.classes[best]} (label: ${bundle.classes[image.label]})`;
  list.append(li);
}
status.textContent = `${correct} of ${bundle.images.length} correct`;
status.dataset.correct = String(correct);
status.dataset.total = String(bundle.images.length);
