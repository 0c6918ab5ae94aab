/**
 * Shared models on webgpu beside the CPU backend (wasm): LeNet-5 FP32 and `.opq` at (0.5, 4) and
 * (0.74, 3), and ResNet-20 `.opq` at both settings, on Fashion-MNIST test images: logits within 1e-4
 * of the largest |logit| and the same top-1 image by image, every node on the GPU. The larger
 * models and the full test set (slow on lavapipe) are measured by bench/webgpu-bench.ts.
 * @module
 */
import { ok as assert } from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { compressModel } from "../../compressor/mod.ts";
import { encodeOpq, readOnnx } from "../../format/mod.ts";
import { fashionMnistBatch, loadFashionMnist } from "../../cli/fashion-mnist.ts";
import { createSession } from "../session.ts";

const models = join(import.meta.dirname!, "..", "..", "..", "shared", "models");
/** Images per model: ResNet-20 `.opq` takes ~25–50 ms per image at batch 64 on lavapipe here (conv-grid.ts), LeNet-5 ~2–5 ms. */
const CASES = [
  { model: "lenet5-fmnist", setting: undefined, images: 64 },
  { model: "lenet5-fmnist", setting: { sparsity: 0.5, bits: 4 }, images: 64 },
  { model: "lenet5-fmnist", setting: { sparsity: 0.74, bits: 3 }, images: 64 },
  { model: "resnet20-fmnist", setting: { sparsity: 0.5, bits: 4 }, images: 64 },
  { model: "resnet20-fmnist", setting: { sparsity: 0.74, bits: 3 }, images: 64 },
];
const fmnist = loadFashionMnist({ limit: 64 });

for (const c of CASES) {
  const label = `${c.model} ${c.setting ? `.opq (${c.setting.sparsity}, ${c.setting.bits})` : "FP32"}`;
  Deno.test({
    name: `webgpu model: ${label}: logits within 1e-4 relative and top-1 of the CPU backend on ${c.images} images`,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      const fp32 = new Uint8Array(readFileSync(join(models, `${c.model}.onnx`)));
      const bytes = c.setting ? encodeOpq(compressModel(readOnnx(fp32), { method: "opq", ...c.setting }).opq) : fp32;
      const gpu = await createSession(bytes, { backend: "webgpu" });
      const cpu = await createSession(bytes, { backend: "wasm" });
      try {
        assert(gpu.info.layers.every((l) => l.backend === "webgpu"), `CPU fallbacks: ${JSON.stringify(gpu.info.backends.webgpu?.fallbacks)}`);
        const convs = gpu.info.layers.filter((l) => l.opType === "Conv");
        if (c.setting) assert(convs.every((l) => /^(csr-|grid-q)/.test(l.weightForm)), `a compressed conv is held dense: ${convs.map((l) => l.weightForm)}`);
        // ResNet-20: every Conv → Add → Relu chain is one fused grid dispatch on the GPU.
        if (c.model === "resnet20-fmnist") assert(gpu.info.layers.filter((l) => /\/Add\+.*Relu/.test(l.name) && l.path === "webgpu-conv-grid").length === 9, "ResNet-20's 9 residual chains are not fused");
        const x = { dtype: "float32" as const, ...fashionMnistBatch(fmnist, 0, c.images) };
        const lg = (await gpu.run({ input: x })).logits!.data as Float32Array;
        const lc = (await cpu.run({ input: x })).logits!.data as Float32Array;
        let diff = 0, max = 0;
        for (let i = 0; i < lc.length; i++) { diff = Math.max(diff, Math.abs(lg[i]! - lc[i]!)); max = Math.max(max, Math.abs(lc[i]!)); }
        assert(diff <= 1e-4 * max, `max |Δ logit| ${diff} > 1e-4 × ${max}`);
        for (let r = 0; r < c.images; r++) {
          const row = (l: Float32Array) => { let b = 0; for (let j = 1; j < 10; j++) if (l[r * 10 + j]! > l[r * 10 + b]!) b = j; return b; };
          assert(row(lg) === row(lc), `image ${r}: top-1 ${row(lg)} on webgpu, ${row(lc)} on the CPU`);
        }
      } finally {
        gpu.dispose();
        cpu.dispose();
      }
    },
  });
}
