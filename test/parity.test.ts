/**
 * Parity with onnxruntime-web, the oracle: for every model in ../shared/models our FP32 logits
 * match ort's within 1e-4 max abs (and 1e-4 relative to the largest logit); our top-1 on Fashion-MNIST matches ort's image by image and
 * the models/README.md table (LeNet-5 on all 10k images, ResNet-20 on a subset: TOP1_CHECKS);
 * and a `.opq` compressed at (sparsity 0.5, 4 bits) predicts what ort predicts on its dense
 * ONNX export.
 * @module
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSession } from "../runtime/mod.ts";
import { compressModel } from "../compressor/mod.ts";
import { decodeOpq, encodeOpq, readOnnx, type Tensor, toDenseModel, writeOnnx } from "../format/mod.ts";
import { PROJECT_ROOT, REFERENCE_MODELS, sharedPath } from "../cli/shared.ts";
import { fashionMnistBatch, loadFashionMnist } from "../cli/fashion-mnist.ts";
import { createOrtSession, type InferenceRunner } from "../cli/ort.ts";
import { evaluate } from "../cli/commands/eval.ts";
import { seededInput } from "../cli/commands/bench.ts";

/** Max abs logit difference allowed between our FP32 path and onnxruntime-web (the bound). */
const LOGIT_TOLERANCE = 1e-4;
/**
 * The same bound relative to the largest |logit|. The absolute bound alone says nothing about
 * mobilenet_v2-224: with its random weights every logit is below 2e-9 (the activations shrink
 * layer after layer), so any output would pass. Float32 reordering gives ~4e-7 relative here.
 */
const RELATIVE_LOGIT_TOLERANCE = 1e-4;
/** Fashion-MNIST images per FP32 logit comparison. */
const FMNIST_INPUTS = 100;
/**
 * Random inputs per 224x224 model (random weights: no accuracy to check, only logits). ResNet-18
 * is 1.8 GFLOP per image and our JS kernels need a few hundred ms per image for it on the shared
 * 2-core machine, so 4 inputs (two batches of 2, which also exercises batching) keep the suite at
 * a few seconds; latency is measured by `opq bench`, not here.
 */
const RANDOM_INPUTS_224 = 4;
/**
 * Top-1 check per Fashion-MNIST model: on how many test images our predictions must equal ort's
 * image by image, and the top-1 ort reaches there. LeNet-5 runs the full 10k in a few seconds,
 * so it is held to the models/README.md figure itself (89.97%). ResNet-20 takes ~14 ms per image
 * in our runtime (over 2 min for 10k on the shared machine), so the suite checks the first 500,
 * where ort's top-1 (measured once with onnxruntime-web 1.30.0; ort is fixed, so it pins our
 * loader and preprocessing) is 94.2%; the full-10k 93.12% is measured by `opq eval`
 * (bench/accuracy-bench.ts).
 */
const TOP1_CHECKS: Record<string, { images: number; top1: number }> = {
  "lenet5-fmnist.onnx": { images: 10000, top1: 0.8997 },
  "resnet20-fmnist.onnx": { images: 500, top1: 0.942 },
};
/** Images for the compressed-model agreement check, and the agreement it must reach. */
const COMPRESSED_IMAGES = 1000;
const COMPRESSED_AGREEMENT = 0.999;

const MODELS = [...REFERENCE_MODELS];
const fmnist = loadFashionMnist();

/** Largest |a - b| over two logit tensors of the same shape. */
function maxAbsDiff(a: Tensor, b: Tensor): number {
  expect(a.dims).toEqual(b.dims);
  const x = a.data as Float32Array, y = b.data as Float32Array;
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return Number.isNaN(m) ? Infinity : m;
}

/** The fraction of equal entries of two prediction arrays. */
function agreement(a: Uint8Array, b: Uint8Array): number {
  let same = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++;
  return same / a.length;
}

for (const file of MODELS) {
  const isFmnist = file.includes("fmnist");
  describe(`${file} FP32`, () => {
    const bytes = new Uint8Array(readFileSync(sharedPath("models", file)));
    let ours: InferenceRunner, ort: InferenceRunner;
    beforeAll(async () => {
      [ours, ort] = await Promise.all([createSession(bytes), createOrtSession(bytes)]);
    });
    afterAll(async () => {
      await ours?.dispose();
      await ort?.dispose();
    });

    test(`logits match onnxruntime-web within ${LOGIT_TOLERANCE} (and ${RELATIVE_LOGIT_TOLERANCE} of the largest |logit|) on ${isFmnist ? FMNIST_INPUTS + " images" : RANDOM_INPUTS_224 + " random inputs"}`, async () => {
      const input = ours.inputs[0]!.name, output = ours.outputs[0]!.name;
      expect(ort.inputs[0]!.name).toBe(input);
      const batch = isFmnist ? 25 : 2;
      const count = isFmnist ? FMNIST_INPUTS : RANDOM_INPUTS_224;
      let worst = 0, scale = 0;
      for (let s = 0; s < count; s += batch) {
        const x: Tensor = isFmnist
          ? { dtype: "float32", ...fashionMnistBatch(fmnist, s, batch) }
          : seededInput([batch, ...(ours.inputs[0]!.shape!.slice(1) as number[])], 7 + s);
        const [a, b] = [(await ours.run({ [input]: x }))[output]!, (await ort.run({ [input]: x }))[output]!];
        expect(a.dims).toEqual([batch, isFmnist ? 10 : 1000]);
        worst = Math.max(worst, maxAbsDiff(a, b));
        for (const v of b.data as Float32Array) scale = Math.max(scale, Math.abs(v));
      }
      expect(scale).toBeGreaterThan(0);
      expect(worst).toBeLessThanOrEqual(LOGIT_TOLERANCE);
      expect(worst).toBeLessThanOrEqual(RELATIVE_LOGIT_TOLERANCE * scale);
    }, isFmnist ? 120_000 : 600_000);

    const check = TOP1_CHECKS[file];
    if (check) {
      test(`top-1 is ${(100 * check.top1).toFixed(2)}% and equals onnxruntime-web's image by image on the first ${check.images} test images`, async () => {
        const set = loadFashionMnist({ limit: check.images });
        const [a, b] = [await evaluate(ours, set, { batch: 100 }), await evaluate(ort, set, { batch: 100 })];
        expect(a.images).toBe(check.images);
        expect(b.top1).toBe(check.top1);
        expect(a.top1).toBe(check.top1);
        expect(a.top5).toBe(b.top5);
        expect(agreement(a.predictions, b.predictions)).toBe(1);
      }, 300_000);
    }
  });
}

describe("compressed .opq at (sparsity 0.5, 4 bits) vs onnxruntime-web on its dense export", () => {
  for (const file of ["lenet5-fmnist.onnx", "resnet20-fmnist.onnx"]) {
    test(`${file}: ≥ ${100 * COMPRESSED_AGREEMENT}% equal predictions on ${COMPRESSED_IMAGES} images`, async () => {
      const fp32 = readOnnx(new Uint8Array(readFileSync(sharedPath("models", file))));
      const opqBytes = encodeOpq(compressModel(fp32, { method: "opq", sparsity: 0.5, bits: 4 }).opq);
      const dense = writeOnnx(toDenseModel(decodeOpq(opqBytes)));
      const [ours, ort] = await Promise.all([createSession(opqBytes), createOrtSession(dense)]);
      try {
        expect(ours.info.format).toBe("opq");
        const set = loadFashionMnist({ limit: COMPRESSED_IMAGES });
        const [a, b] = [await evaluate(ours, set, { batch: 100 }), await evaluate(ort, set, { batch: 100 })];
        expect(a.images).toBe(COMPRESSED_IMAGES);
        expect(agreement(a.predictions, b.predictions)).toBeGreaterThanOrEqual(COMPRESSED_AGREEMENT);
        // The compressed model must still classify: far above chance (10%) on both runtimes.
        expect(b.top1).toBeGreaterThan(0.5);
      } finally {
        await ours.dispose();
        await ort.dispose();
      }
    }, 600_000);
  }
});

describe("opq eval and opq bench on the command line", () => {
  /** Run the CLI in a child process; stdout must be exactly one JSON object. */
  function cli(args: string[]): { code: number; json: Record<string, unknown> } {
    const r = spawnSync(process.execPath, [join(PROJECT_ROOT, "cli", "main.ts"), ...args, "--json"], { encoding: "utf8" });
    return { code: r.status ?? -1, json: JSON.parse(r.stdout) };
  }
  const lenet = sharedPath("models", "lenet5-fmnist.onnx");

  test("eval --json prints {model, runtime, images, top1, top5, ms}; a .opq under --runtime ort runs its dense export", () => {
    const dir = mkdtempSync(join(tmpdir(), "opq-eval-"));
    const opqPath = join(dir, "lenet5.opq");
    writeFileSync(opqPath, encodeOpq(compressModel(readOnnx(new Uint8Array(readFileSync(lenet))), { sparsity: 0.5, bits: 4 }).opq));
    const fp32 = cli(["eval", lenet, "--limit", "100", "--batch", "32"]);
    expect(fp32.code).toBe(0);
    expect(Object.keys(fp32.json).sort()).toEqual(["images", "model", "ms", "runtime", "top1", "top5"]);
    expect(fp32.json).toMatchObject({ model: lenet, runtime: "opq", images: 100, top1: 0.88, top5: 1 });
    const ours = cli(["eval", opqPath, "--limit", "300"]);
    const ort = cli(["eval", opqPath, "--limit", "300", "--runtime", "ort"]);
    expect(ort.json.runtime).toBe("ort");
    expect(ours.json.top1).toBe(ort.json.top1);
    expect(ours.json.top1 as number).toBeGreaterThan(0.8);
    expect(cli(["eval", lenet, "--runtime", "tf"])).toEqual({ code: 2, json: { error: { code: "USAGE", message: expect.stringContaining("--runtime") } } });
  }, 120_000);

  test("bench --json reports both runtimes, ratios and our layer paths (timings printed, never asserted)", () => {
    const { code, json } = cli(["bench", lenet, "--iterations", "2", "--warmup", "0"]);
    expect(code).toBe(0);
    const opq = json.opq as { runtime: string; latency: { batch: number }[]; layers: { opType: string; backend: string; path: string; weightForm: string; residentBytes: number }[] };
    const ort = json.ort as { runtime: string; peakRssBytes: number };
    expect([opq.runtime, ort.runtime]).toEqual(["opq", "ort"]);
    expect(opq.latency.map((l) => l.batch)).toEqual([1, 8]);
    expect(ort.peakRssBytes).toBeGreaterThan(0);
    expect(Object.values(json.ratios as Record<string, number>).every((v) => Number.isFinite(v) && v > 0)).toBe(true);
    expect(opq.layers.map((l) => l.opType)).toContain("Conv");
    for (const l of opq.layers) {
      expect(typeof l.backend === "string" && typeof l.path === "string" && typeof l.weightForm === "string").toBe(true);
      expect(l.residentBytes).toBeGreaterThanOrEqual(0);
    }
  }, 120_000);
});
