/**
 * The webgpu backend beside the CPU backend (wasm), same process, same inputs.
 *
 * Default: the shared models FP32 and compressed at (0.5, 4) and (0.74, 3): max |logit
 * difference| relative to the largest |logit| (the issue's bound is 1e-4), load and batch-2 run
 * times, GPU peak bytes and CPU fallbacks.
 *
 * `--eval`: top-1 on the Fashion-MNIST test set (all 10k unless `--images N`), image by image,
 * for `.opq` files (`--files a.opq,b.opq`, e.g. made by `opq compress`) or, without `--files`,
 * LeNet-5 and ResNet-20 compressed here at both settings. Batches of `--batch` images (default
 * 128) go through both backends; it prints the images whose top-1 differs (must be 0), the
 * largest per-image logit error relative to that image's largest |logit|, accuracy on each, and
 * ms per image on each. Progress on stderr. Run under Deno (navigator.gpu):
 *   XDG_RUNTIME_DIR=$(mktemp -d) npx deno run -A --no-check bench/webgpu-bench.ts [--models a,b]
 *   XDG_RUNTIME_DIR=$(mktemp -d) npx deno run -A --no-check bench/webgpu-bench.ts --eval [--files a.opq,b.opq] [--images N] [--batch B]
 * On lavapipe the times are a software rasterizer's, not GPU speed (see `opq bench --backend webgpu`).
 * @module
 */
import { readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { parseArgs } from "node:util";
import { compressModel } from "../compressor/mod.ts";
import { encodeOpq, readOnnx, type Tensor } from "../format/mod.ts";
import { createSession, type Session } from "../runtime/mod.ts";
import { fashionMnistBatch, loadFashionMnist } from "../cli/fashion-mnist.ts";
import { sharedPath } from "../cli/shared.ts";
import { seededInput } from "../cli/commands/bench.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    models: { type: "string" },
    eval: { type: "boolean" },
    files: { type: "string" },
    images: { type: "string" },
    batch: { type: "string" },
  },
});
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

const modelBytes = (name: string) => new Uint8Array(readFileSync(join(sharedPath("models"), `${name}.onnx`)));
const compressed = (name: string, s: { sparsity: number; bits: number }) => encodeOpq(compressModel(readOnnx(modelBytes(name)), { method: "opq", ...s }).opq);

/** Top-1 of webgpu against the CPU on the test set, image by image. */
async function evalTop1(label: string, bytes: Uint8Array, images: number, batch: number): Promise<void> {
  const fmnist = loadFashionMnist();
  const n = Math.min(images, fmnist.count);
  const gpu = await createSession(bytes, { backend: "webgpu" });
  const cpu = await createSession(bytes, { backend: "wasm" });
  const onCpu = gpu.info.layers.filter((l) => l.backend !== "webgpu").map((l) => l.name);
  const stats = gpu.info.backends.webgpu?.stats as { dispatches: number; submits: number } | undefined;
  let differ = 0, maxRel = 0, worst = -1;
  const right = { gpu: 0, cpu: 0 }, ms = { gpu: 0, cpu: 0 };
  const d0 = { dispatches: stats?.dispatches ?? 0, submits: stats?.submits ?? 0 };
  let runs = 0;
  const differing: number[] = [];
  for (let start = 0; start < n; start += batch) {
    const b = fashionMnistBatch(fmnist, start, Math.min(batch, n - start));
    const rows = b.dims[0]!, x = { dtype: "float32" as const, ...b };
    let t = performance.now();
    const lg = await logits(gpu, x);
    ms.gpu += performance.now() - t;
    t = performance.now();
    const lc = await logits(cpu, x);
    ms.cpu += performance.now() - t;
    runs++;
    const pg = argmaxRows(lg, rows), pc = argmaxRows(lc, rows), k = lc.length / rows;
    for (let r = 0; r < rows; r++) {
      let diff = 0, max = 0;
      for (let j = r * k; j < (r + 1) * k; j++) { diff = Math.max(diff, Math.abs(lg[j]! - lc[j]!)); max = Math.max(max, Math.abs(lc[j]!)); }
      if (diff / max > maxRel) { maxRel = diff / max; worst = start + r; }
      if (pg[r] !== pc[r]) { differ++; if (differing.length < 20) differing.push(start + r); }
      if (pg[r] === fmnist.labels[start + r]) right.gpu++;
      if (pc[r] === fmnist.labels[start + r]) right.cpu++;
    }
    const done = start + rows;
    if (done % 1000 < batch || done === n) {
      console.error(`  ${label}: ${done}/${n} images, ${differ} differ, webgpu ${(ms.gpu / done).toFixed(1)} ms/image, cpu ${(ms.cpu / done).toFixed(1)} ms/image`);
    }
  }
  const perRun = stats ? `; ${((stats.dispatches - d0.dispatches) / runs).toFixed(0)} dispatches and ${((stats.submits - d0.submits) / runs).toFixed(0)} submit(s) per batch-${batch} run` : "";
  console.log(
    `${label}: top-1 on ${n} test images differs on ${differ} (${differing.length ? `images ${differing.join(", ")}` : "none"}); ` +
      `max per-image |Δ logit|/max|logit| ${maxRel.toExponential(2)} (image ${worst}; ${maxRel <= 1e-4 ? "within" : "OUTSIDE"} 1e-4); ` +
      `accuracy webgpu ${(100 * right.gpu / n).toFixed(2)}%, cpu ${(100 * right.cpu / n).toFixed(2)}%; ` +
      `webgpu ${(ms.gpu / n).toFixed(1)} ms/image (${(ms.gpu / 1000).toFixed(0)} s), cpu ${(ms.cpu / n).toFixed(1)} ms/image (${(ms.cpu / 1000).toFixed(0)} s), ratio ${(ms.gpu / ms.cpu).toFixed(2)}× ` +
      `at batch ${batch}${perRun}; on the CPU: ${onCpu.length ? onCpu.join(", ") : "no node"}`,
  );
  gpu.dispose();
  cpu.dispose();
}

if (values.eval) {
  const images = Number(values.images ?? 10000), batch = Number(values.batch ?? 128);
  if (values.files) {
    for (const f of values.files.split(",")) await evalTop1(basename(f), new Uint8Array(readFileSync(f)), images, batch);
  } else {
    for (const name of (values.models ?? "lenet5-fmnist,resnet20-fmnist").split(",")) {
      for (const s of SETTINGS) if (s) await evalTop1(`${name} .opq (${s.sparsity}, ${s.bits})`, compressed(name, s), images, batch);
    }
  }
} else {
  for (const name of (values.models ?? "lenet5-fmnist,resnet20-fmnist,mobilenet_v2-224,resnet18-224").split(",")) {
    for (const setting of SETTINGS) {
      const bytes = setting ? compressed(name, setting) : modelBytes(name);
      const label = `${name} ${setting ? `.opq (${setting.sparsity}, ${setting.bits})` : "FP32"}`;
      let t = performance.now();
      const gpu = await createSession(bytes, { backend: "webgpu" });
      const gpuLoad = performance.now() - t;
      t = performance.now();
      const cpu = await createSession(bytes, { backend: "wasm" });
      const cpuLoad = performance.now() - t;
      const x = name.endsWith("fmnist") ? { dtype: "float32" as const, ...fashionMnistBatch(loadFashionMnist({ limit: 2 }), 0, 2) } : seededInput([2, 3, 224, 224], 7);
      t = performance.now();
      const lg = await logits(gpu, x);
      const gpuMs = performance.now() - t;
      t = performance.now();
      const lc = await logits(cpu, x);
      const cpuMs = performance.now() - t;
      let diff = 0, max = 0;
      for (let i = 0; i < lc.length; i++) { diff = Math.max(diff, Math.abs(lg[i]! - lc[i]!)); max = Math.max(max, Math.abs(lc[i]!)); }
      const stats = gpu.info.backends.webgpu?.stats as { peakGpuBytes: number } | undefined;
      console.log(
        `${label}: logits max|Δ|/max|logit| ${(diff / max).toExponential(2)} (${diff / max <= 1e-4 ? "within" : "OUTSIDE"} 1e-4); ` +
          `load ${gpuLoad.toFixed(0)} / ${cpuLoad.toFixed(0)} ms, batch-2 first run ${gpuMs.toFixed(0)} / ${cpuMs.toFixed(0)} ms (webgpu / cpu); ` +
          `GPU peak ${((stats?.peakGpuBytes ?? 0) / 2 ** 20).toFixed(1)} MiB; fallbacks ${JSON.stringify(gpu.info.backends.webgpu?.fallbacks ?? [])}`,
      );
      gpu.dispose();
      cpu.dispose();
    }
  }
}
