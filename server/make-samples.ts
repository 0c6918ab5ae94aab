/**
 * Writes `models/fmnist-samples.json`: the first test image of each Fashion-MNIST class, then the
 * next two test images, read from ../shared with the CLI's loader. A build tool, not part of the
 * server (which only reads the written file): `bun server/make-samples.ts`.
 * @module
 */
import { writeFileAtomic } from "../format/mod.ts";
import { join } from "node:path";
import { FMNIST_MEAN, FMNIST_SIDE, FMNIST_STD, loadFashionMnist } from "../cli/fashion-mnist.ts";
import { PROJECT_ROOT } from "../cli/shared.ts";
import { encodeSampleBundle, FMNIST_CLASSES, type SampleBundle } from "./samples.ts";

/** Where the bundle lives in the repo. */
export const SAMPLES_PATH: string = join(PROJECT_ROOT, "models", "fmnist-samples.json");

/** How many samples the bundle holds. */
export const SAMPLE_COUNT = 12;

/** Build the bundle from the shared test set. */
export function buildSampleBundle(): SampleBundle {
  const set = loadFashionMnist({ split: "t10k" });
  const px = FMNIST_SIDE * FMNIST_SIDE;
  const chosen: number[] = [];
  for (let c = 0; c < FMNIST_CLASSES.length; c++) {
    const i = set.labels.indexOf(c);
    if (i < 0) throw new Error(`no test image of class ${c}`);
    chosen.push(i);
  }
  for (let i = 0; chosen.length < SAMPLE_COUNT; i++) if (!chosen.includes(i)) chosen.push(i);
  return {
    source: "Fashion-MNIST t10k (index = position in the test set)",
    side: FMNIST_SIDE,
    mean: FMNIST_MEAN,
    std: FMNIST_STD,
    classes: [...FMNIST_CLASSES],
    samples: chosen.map((i) => ({ index: i, label: set.labels[i]!, pixels: set.pixels.slice(i * px, (i + 1) * px) })),
  };
}

if (import.meta.main) {
  writeFileAtomic(SAMPLES_PATH, encodeSampleBundle(buildSampleBundle()));
  console.error(`wrote ${SAMPLES_PATH}`);
}
