/**
 * The bundled Fashion-MNIST samples the page's try-it panel classifies: a dozen test images with
 * their labels in `models/fmnist-samples.json`, so the server never needs ../shared at run time.
 * `server/make-samples.ts` writes the file from the shared test set; a test checks it still
 * matches. Pixels are raw bytes (base64); clients preprocess with the bundle's mean and std.
 * @module
 */
import { readFile } from "node:fs/promises";

/** Fashion-MNIST class names, by label. */
export const FMNIST_CLASSES: readonly string[] = [
  "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
];

/** One sample image. */
export interface Sample {
  /** Index in the source test set. */
  index: number;
  label: number;
  /** side·side raw pixels, row-major, 0..255. */
  pixels: Uint8Array;
}

/** A bundle of samples with what a client needs to preprocess them. */
export interface SampleBundle {
  source: string;
  side: number;
  /** x = (pixel / 255 − mean) / std. */
  mean: number;
  std: number;
  classes: string[];
  samples: Sample[];
}

/** The bundle as stored in JSON (pixels base64). */
interface SampleFile {
  source: string;
  side: number;
  mean: number;
  std: number;
  classes: string[];
  images: { index: number; label: number; pixels: string }[];
}

const toBase64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));
const fromBase64 = (text: string) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));

/** Serialise a bundle to the JSON file format. */
export function encodeSampleBundle(bundle: SampleBundle): string {
  const file: SampleFile = {
    source: bundle.source, side: bundle.side, mean: bundle.mean, std: bundle.std, classes: bundle.classes,
    images: bundle.samples.map((s) => ({ index: s.index, label: s.label, pixels: toBase64(s.pixels) })),
  };
  return JSON.stringify(file, null, 1) + "\n";
}

/** Parse the JSON file format, checking every image has side·side pixels and a known label. */
export function decodeSampleBundle(text: string): SampleBundle {
  const file = JSON.parse(text) as SampleFile;
  const px = file.side * file.side;
  const samples = file.images.map((img, i) => {
    const pixels = fromBase64(img.pixels);
    if (pixels.length !== px) throw new Error(`sample ${i}: ${pixels.length} pixels, expected ${px}`);
    if (!Number.isInteger(img.label) || img.label < 0 || img.label >= file.classes.length) throw new Error(`sample ${i}: bad label ${img.label}`);
    return { index: img.index, label: img.label, pixels };
  });
  return { source: file.source, side: file.side, mean: file.mean, std: file.std, classes: file.classes, samples };
}

/** Read a bundle from a file. */
export async function loadSampleBundle(path: string): Promise<SampleBundle> {
  return decodeSampleBundle(await readFile(path, "utf8"));
}

/** One sample preprocessed into a float32 [1, 1, side, side] input. */
export function sampleInput(bundle: SampleBundle, sample: Sample): { shape: number[]; data: Float32Array } {
  const data = new Float32Array(sample.pixels.length);
  for (let i = 0; i < data.length; i++) data[i] = (sample.pixels[i]! / 255 - bundle.mean) / bundle.std;
  return { shape: [1, 1, bundle.side, bundle.side], data };
}

/** The bundle as the `GET /v1/samples` route returns it (pixels as number arrays). */
export function samplesResponse(bundle: SampleBundle): unknown {
  return {
    source: bundle.source, side: bundle.side, mean: bundle.mean, std: bundle.std, classes: bundle.classes,
    samples: bundle.samples.map((s, id) => ({ id, index: s.index, label: s.label, labelName: bundle.classes[s.label], pixels: Array.from(s.pixels) })),
  };
}
