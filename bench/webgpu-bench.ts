/**
 * The webgpu backend beside the CPU backend (wasm), same process, same inputs, for the shared
 * models FP32 and compressed at (0.5, 4) and (0.74, 3): max |logit difference| relative to the
 * largest |logit| (the issue's bound is 1e-4), and for the Fashion-MNIST models top-1 on the test
 * set, image by image (must be identical). Run under Deno (navigator.gpu):
 *   XDG_RUNTIME_DIR=$(mktemp -d) npx deno run -A --no-check bench/webgpu-bench.ts [--models a,b] [--images N] [--images-resnet20 N]
 * On lavapipe the times are a software rasterizer's, not GPU speed (see `opq bench --backend webgpu`).
 * @module
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { compressModel } from "../compressor/mod.ts";
import { encodeOpq, readOnnx, type Tensor } from "../format/mod.ts";
import { createSession, type Session } from "../runtime/mod.ts";
import { fashionMnistBatch, loadFashionMnist } from "../cli/fashion-mnist.ts";
import { sharedPath } from "../cli/shared.ts";
import { seededInput } from "../cli/commands/bench.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { models: { type: "string" }, images: { type: "string" }, "images-resnet20": { type: "string" }, batch: { type: "string" } },
});
const MODELS = (values.models ?? "lenet5-fmnist,resnet20-fmnist,mobilenet_v2-224,resnet18-224").split(",");
const IMAGES = Number(values.images ?? 10000);
const IMAGES_RESNET20 = Number(values["images-resnet20"] ?? IMAGES);
const BATCH = Number(values.batch ?? 100);
const SETTINGS = [undefined, { sparsity: 0.5, bits: 4 }, { sparsity: 0.74, bits: 3 }] as const;

async function logits(s: Session, x: Tensor): Promise<Float32Array> {
  return (await s.run({ [s.inputNames[0]!]: x }))[s.outputNames[0]!]!.data as Float32Array;
}

function argmaxRows(l: Float32Array, rows: number): number[] {
  const k = l.length / rows;
  return Array.from({ length: rows }, (_, r) => {
    let best = 0;
    for (let j = 1; j < k; j++) if (l[r * k + j]! > l[r * k + best]!) best = j;
    return best;
  });
}

const fmnist = loadFashionMnist();
for (const name of MODELS) {
  const fp32 = new Uint8Array(readFileSync(join(sharedPath("models"), `${name}.onnx`)));
  for (const setting of SETTINGS) {
    const bytes = setting ? encodeOpq(compressModel(readOnnx(fp32), { method: "opq", ...setting }).opq) : fp32;
    const label = `${name} ${setting ? `.opq (${setting.sparsity}, ${setting.bits})` : "FP32"}`;
    let t = performance.now();
    const gpu = await createSession(bytes, { backend: "webgpu" });
    const gpuLoad = performance.now() - t;
    t = performance.now();
    const cpu = await createSession(bytes, { backend: "wasm" });
    const cpuLoad = performance.now() - t;
    const fashion = name.endsWith("fmnist");
    const x = fashion ? { dtype: "float32" as const, ...fashionMnistBatch(fmnist, 0, 2) } : seededInput([2, 3, 224, 224], 7);
    t = performance.now();
    const lg = await logits(gpu, x);
    const gpuMs = performance.now() - t;
    t = performance.now();
    const lc = await logits(cpu, x);
    const cpuMs = performance.now() - t;
    let diff = 0, max = 0;
    for (let i = 0; i < lc.length; i++) { diff = Math.max(diff, Math.abs(lg[i]! - lc[i]!)); max = Math.max(max, Math.abs(lc[i]!)); }
    const stats = gpu.info.backends.webgpu?.stats as { peakGpuBytes: number } | undefined;
    let line = `${label}: logits max|Δ|/max|logit| ${(diff / max).toExponential(2)} (${diff / max <= 1e-4 ? "within" : "OUTSIDE"} 1e-4); ` +
      `load ${gpuLoad.toFixed(0)} / ${cpuLoad.toFixed(0)} ms, batch-2 run ${gpuMs.toFixed(0)} / ${cpuMs.toFixed(0)} ms (webgpu / cpu); ` +
      `GPU peak ${((stats?.peakGpuBytes ?? 0) / 2 ** 20).toFixed(1)} MiB; fallbacks ${JSON.stringify(gpu.info.backends.webgpu?.fallbacks ?? [])}`;
    const images = name === "resnet20-fmnist" ? IMAGES_RESNET20 : IMAGES;
    if (fashion && setting && images > 0) {
      let same = 0, right = { gpu: 0, cpu: 0 };
      t = performance.now();
      for (let start = 0; start < Math.min(images, fmnist.count); start += BATCH) {
        const b = fashionMnistBatch(fmnist, start, Math.min(BATCH, images - start));
        const rows = b.dims[0]!;
        const pg = argmaxRows(await logits(gpu, { dtype: "float32", ...b }), rows);
        const pc = argmaxRows(await logits(cpu, { dtype: "float32", ...b }), rows);
        for (let r = 0; r < rows; r++) {
          if (pg[r] === pc[r]) same++;
          if (pg[r] === fmnist.labels[start + r]) right.gpu++;
          if (pc[r] === fmnist.labels[start + r]) right.cpu++;
        }
      }
      const n = Math.min(images, fmnist.count);
      line += `\n  top-1 on ${n} test images: webgpu ${(100 * right.gpu / n).toFixed(2)}%, cpu ${(100 * right.cpu / n).toFixed(2)}%, ` +
        `same prediction ${same}/${n} (${((performance.now() - t) / 1000).toFixed(0)} s)`;
    }
    console.log(line);
    gpu.dispose();
    cpu.dispose();
  }
}
