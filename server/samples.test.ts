/**
 * The bundled samples (models/fmnist-samples.json) are exactly the Fashion-MNIST test images and
 * labels they claim to be, one of each class first, and survive an encode/decode round trip.
 * @module
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { buildSampleBundle, SAMPLE_COUNT, SAMPLES_PATH } from "./make-samples.ts";
import { decodeSampleBundle, encodeSampleBundle, FMNIST_CLASSES, sampleInput } from "./samples.ts";

test("bundled samples equal the shared test set's images and labels", () => {
  const bundled = decodeSampleBundle(readFileSync(SAMPLES_PATH, "utf8"));
  const fresh = buildSampleBundle();
  expect(bundled.samples).toHaveLength(SAMPLE_COUNT);
  expect(bundled.classes).toEqual([...FMNIST_CLASSES]);
  expect(bundled.samples.slice(0, 10).map((s) => s.label)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  expect(bundled.samples.map((s) => s.index)).toEqual(fresh.samples.map((s) => s.index));
  expect(bundled.samples.map((s) => s.label)).toEqual(fresh.samples.map((s) => s.label));
  bundled.samples.forEach((s, i) => expect(Array.from(s.pixels)).toEqual(Array.from(fresh.samples[i]!.pixels)));
  expect(decodeSampleBundle(encodeSampleBundle(fresh))).toEqual(fresh);
});

test("sampleInput applies the training normalisation", () => {
  const bundle = decodeSampleBundle(readFileSync(SAMPLES_PATH, "utf8"));
  const s = bundle.samples[0]!;
  const x = sampleInput(bundle, s);
  expect(x.shape).toEqual([1, 1, 28, 28]);
  const i = s.pixels.findIndex((p) => p > 0);
  expect(x.data[i]).toBeCloseTo((s.pixels[i]! / 255 - 0.286) / 0.353, 6);
  expect(x.data[0]).toBeCloseTo(-0.286 / 0.353, 6);
});

test("a corrupt bundle is refused", () => {
  const text = encodeSampleBundle(buildSampleBundle()).replace(/"label": 9/, '"label": 42');
  expect(() => decodeSampleBundle(text)).toThrow(/bad label 42/);
});
