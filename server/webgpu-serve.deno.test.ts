/**
 * The server on the webgpu backend under Deno (what `opq serve --backend webgpu` loads): the
 * same fixture model served twice, once on webgpu and once on the CPU backend, must answer the
 * routes alike and predict the same for bundled sample images, over JSON and raw float32
 * (one image) and one batched request of three (logits within 1e-4 of the largest |logit|, identical top-k indices).
 * @module
 */
import { createApp } from "./app.ts";
import { loadModelDir } from "./registry.ts";
import { sampleInput } from "./samples.ts";
import { FIXTURE_MODEL, floatBytes, makeFixture } from "./test-fixtures.ts";

function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new Error(message);
}

interface InferBody {
  outputs: { logits: { shape: number[]; data: number[] } };
  topk: { index: number }[][];
}

Deno.test({
  name: "server on webgpu: routes and predictions equal the CPU server's",
  // The GPU device is shared by the process and outlives the test.
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const fixture = await makeFixture();
    const gpuRegistry = await loadModelDir(fixture.dir, { backend: "webgpu" });
    const cpuRegistry = await loadModelDir(fixture.dir, { backend: "wasm" });
    const gpu = createApp({ registry: gpuRegistry, samples: fixture.samples }).app;
    const cpu = createApp({ registry: cpuRegistry, samples: fixture.samples }).app;
    try {
      const info = (gpuRegistry.get(FIXTURE_MODEL)!.runner as unknown as { info: { layers: { backend: string }[] } }).info;
      assert(info.layers.every((l) => l.backend === "webgpu"), `layers not all on webgpu: ${info.layers.map((l) => l.backend)}`);
      for (const route of ["/healthz", "/v1/models", `/v1/models/${FIXTURE_MODEL}`, "/v1/samples", "/"]) {
        const [a, b] = [await gpu.request(route), await cpu.request(route)];
        assert(a.status === 200 && b.status === 200, `${route}: ${a.status} vs ${b.status}`);
        await a.body?.cancel();
        await b.body?.cancel();
      }
      const infer = `/v1/models/${FIXTURE_MODEL}/infer`;
      const compare = (a: InferBody, b: InferBody, what: string) => {
        const x = a.outputs.logits.data, y = b.outputs.logits.data;
        assert(x.length === y.length && a.outputs.logits.shape.join() === b.outputs.logits.shape.join(), `${what}: shapes differ`);
        const max = Math.max(...y.map(Math.abs));
        const diff = Math.max(...x.map((v, i) => Math.abs(v - y[i]!)));
        assert(diff <= 1e-4 * max, `${what}: logits differ by ${diff} (max |logit| ${max})`);
        assert(JSON.stringify(a.topk.map((r) => r.map((e) => e.index))) === JSON.stringify(b.topk.map((r) => r.map((e) => e.index))), `${what}: top-k differs`);
      };
      const post = async (app: typeof gpu, init: RequestInit) => {
        const res = await app.request(infer, { method: "POST", ...init });
        assert(res.status === 200, `infer answered ${res.status}: ${await res.clone().text()}`);
        return (await res.json()) as InferBody;
      };
      const samples = fixture.samples.samples;
      // One sample over each encoding, then three in one batch (ResNet-20 .opq takes 1-2 s per image on lavapipe here).
      for (const s of samples.slice(0, 1)) {
        const x = sampleInput(fixture.samples, s);
        const json = { headers: { "content-type": "application/json" }, body: JSON.stringify({ inputs: { input: { shape: x.shape, data: Array.from(x.data) } } }) };
        compare(await post(gpu, json), await post(cpu, json), `sample ${s.index ?? ""} (json)`);
        const raw = () => ({ headers: { "content-type": "application/octet-stream", "x-shape": x.shape.join(",") }, body: floatBytes(x.data) });
        compare(await post(gpu, raw()), await post(cpu, raw()), `sample (raw float32)`);
      }
      const xs = samples.slice(1, 4).map((s) => sampleInput(fixture.samples, s));
      const batch = new Float32Array(xs.reduce((n, x) => n + x.data.length, 0));
      let at = 0;
      for (const x of xs) { batch.set(x.data, at); at += x.data.length; }
      const shape = [xs.length, ...xs[0]!.shape.slice(1)];
      const raw = () => ({ headers: { "content-type": "application/octet-stream", "x-shape": shape.join(",") }, body: floatBytes(batch) });
      compare(await post(gpu, raw()), await post(cpu, raw()), `batch of ${xs.length}`);
    } finally {
      await gpuRegistry.dispose();
      await cpuRegistry.dispose();
    }
  },
});
