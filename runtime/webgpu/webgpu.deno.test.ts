/**
 * The webgpu backend under Deno's navigator.gpu (CI: Mesa's lavapipe, `mesa-vulkan-drivers`):
 * the self-check refusal path (a device whose kernels write garbage gets BACKEND_UNAVAILABLE,
 * and `auto` then runs on the CPU and says so); the shared op cases (backend-cases.ts) on the
 * reference, wasm and webgpu backends, each within its named tolerance and each node actually on
 * the GPU; the ONNX conformance cases of the ops the backend has; the compressed-weight forms.
 * Models are compared in webgpu-models.deno.test.ts.
 * @module
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { readOnnx, readTensorProtoNamed, type Tensor } from "../../format/mod.ts";
import { OP_CASES, runCase } from "../backend-cases.ts";
import { OpqRuntimeError, RUNTIME_ERROR_CODES } from "../errors.ts";
import { createSession } from "../session.ts";
import { createWebGpuBackend } from "./backend.ts";
import { acquireDevice } from "./device.ts";

const sharedRoot = join(import.meta.dirname!, "..", "..", "..", "shared");

/** The GPU device is shared by the process and outlives single tests (Deno's sanitizers count it as a leak). */
const gpuTest = (name: string, fn: () => Promise<void>) => Deno.test({ name, fn, sanitizeResources: false, sanitizeOps: false });

/** The OpqRuntimeError `fn` rejects with (fails if it resolves or throws something else). */
async function assertRejects(fn: () => Promise<unknown>, cls: typeof OpqRuntimeError): Promise<OpqRuntimeError> {
  try {
    await fn();
  } catch (e) {
    assert(e instanceof cls, `expected ${cls.name}, got ${e}`);
    return e;
  }
  throw new Error("expected a rejection, got none");
}

/** A device whose kernels write zeros wherever they should write a result: what a null backend does. */
async function faultyDevice(): Promise<GPUDevice> {
  const { device } = await acquireDevice();
  return new Proxy(device, {
    get(target, prop) {
      if (prop === "createShaderModule") {
        return (d: GPUShaderModuleDescriptor) => target.createShaderModule({ ...d, code: d.code.replace(/\by\[i\] = ([^;]+);/, "y[i] = ($1) * 0.0;") });
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

gpuTest("webgpu: the adapter passes the self-check and is described", async () => {
  const b = await createWebGpuBackend();
  const d = b.describe() as { adapter: { vendor: string; isFallbackAdapter: boolean; features: string[] } };
  assert(typeof d.adapter.vendor === "string" && Array.isArray(d.adapter.features));
  assertEquals(typeof d.adapter.isFallbackAdapter, "boolean");
  b.dispose();
});

gpuTest("webgpu: a device that computes wrong is refused with BACKEND_UNAVAILABLE and the adapter's details", async () => {
  const device = await faultyDevice();
  const e = await assertRejects(() => createWebGpuBackend({ device }), OpqRuntimeError);
  assertEquals(e.code, RUNTIME_ERROR_CODES.BACKEND_UNAVAILABLE);
  assert(/self-check/.test(e.message), e.message);
  for (const k of ["vendor", "architecture", "isFallbackAdapter", "reason"]) assert(k in e.details!, `details lack ${k}`);
  assert(/values wrong/.test(String(e.details!.reason)), String(e.details!.reason));
  // backend "webgpu" fails the same way; "auto" runs on the CPU and says why.
  const model = join(sharedRoot, "models", "lenet5-fmnist.onnx");
  const e2 = await assertRejects(() => createSession(model, { backend: "webgpu", webgpu: { device } }), OpqRuntimeError);
  assertEquals(e2.code, RUNTIME_ERROR_CODES.BACKEND_UNAVAILABLE);
  const s = await createSession(model, { backend: "auto", webgpu: { device, allowFallbackAdapter: true } });
  assert(s.info.layers.every((l) => l.backend !== "webgpu"));
  assert(s.info.notes.some((n) => /self-check/.test(n) && /CPU/.test(n)), s.info.notes.join("; "));
  s.dispose();
});

gpuTest("webgpu: auto uses a software adapter only when allowed, and says so", async () => {
  const { adapter } = await acquireDevice();
  const model = join(sharedRoot, "models", "lenet5-fmnist.onnx");
  const allowed = await createSession(model, { backend: "auto", webgpu: { allowFallbackAdapter: true } });
  assert(allowed.info.layers.every((l) => l.backend === "webgpu"));
  allowed.dispose();
  const plain = await createSession(model, { backend: "auto" });
  if (adapter.isFallbackAdapter) {
    assert(plain.info.layers.every((l) => l.backend !== "webgpu"));
    assert(plain.info.notes.some((n) => /software fallback/.test(n)));
  } else {
    assert(plain.info.layers.every((l) => l.backend === "webgpu"));
  }
  plain.dispose();
});

OP_CASES.forEach((c, index) => {
  gpuTest(`op case ${c.op}: ${c.name} (tolerance ${c.tolerance.name}) on wasm and webgpu`, async () => {
    for (const backend of ["wasm", "webgpu"] as const) {
      const r = await runCase(index, { backend });
      assert(r.maxDiff <= r.bound, `${backend}: max |diff| ${r.maxDiff} > ${r.bound}`);
      if (backend === "webgpu") assertEquals(r.ranOn, "webgpu", "the node fell back to the CPU");
    }
  });
});

gpuTest("webgpu: compressed weights are held compressed (resident bytes below the dense float32 size)", async () => {
  const index = OP_CASES.findIndex((c) => c.name === "conv 3x3 compressed uniform 74% zeros");
  const { caseModel } = await import("../backend-cases.ts");
  const { model } = caseModel(OP_CASES[index]!, index);
  const s = await createSession(model, { backend: "webgpu" });
  const layer = s.info.layers[0]!;
  assertEquals(layer.backend, "webgpu");
  // The grid kernel's form: 4-bit codes on the weight grid (conv-grid.ts), no float32 copy.
  assert(layer.weightForm.startsWith("grid-q4-uniform"), layer.weightForm);
  const denseBytes = 16 * 16 * 3 * 3 * 4;
  assert(layer.residentBytes < denseBytes / 3, `${layer.residentBytes} bytes held for a ${denseBytes}-byte dense weight`);
  s.dispose();
});

// ---- ONNX conformance cases of the backend's ops, with every input but the first as a constant
// (the GPU kernels take weights, shapes and axes as constants, as models give them).
const OPS = /^test_(conv|gemm|matmul|batchnorm|relu|leakyrelu|clip|sigmoid|hardswish|hardsigmoid|tanh|add|sub|mul|div|maxpool|averagepool|globalaveragepool|concat|reshape|flatten|transpose|squeeze|unsqueeze|softmax)(_|$)/;
/** Cases run but left to the CPU by design (the node must still give the right answer there), with why. */
const ON_CPU: [RegExp, string][] = [
  [/_uint8$|_int8_/, "integer tensors: the GPU kernels are float32"],
  [/_3d_/, "3-D pools: the GPU pools are 1-D and 2-D"],
  [/with_argmax/, "MaxPool's Indices output stays on the CPU"],
  [/_expanded$/, "expanded functions use ops the GPU does not have (ReduceMax, Exp, ...)"],
  [/^test_concat_/, "Concat with every input constant is folded at load"],
  [/^test_matmul_(3d|4d)/, "MatMul with a B of rank > 2"],
];
const conformanceDir = join(sharedRoot, "onnx-backend-tests", "node");
/** Not run: BatchNormalization training_mode has no kernel anywhere in the runtime (an inference runtime; the reference refuses it). */
const NOT_RUN = /training_mode/;
const conformance = readdirSync(conformanceDir).filter((n) => OPS.test(n) && !NOT_RUN.test(n)).sort();

gpuTest(`conformance: ${conformance.length} ONNX node cases of the backend's ops on webgpu`, async () => {
  const failures: string[] = [];
  let onGpu = 0;
  for (const name of conformance) {
    const dir = join(conformanceDir, name);
    const model = readOnnx(new Uint8Array(readFileSync(join(dir, "model.onnx"))));
    const g = model.graph;
    const data = join(dir, "test_data_set_0");
    const read = (f: string) => readTensorProtoNamed(new Uint8Array(readFileSync(join(data, f))));
    const feedsAll = g.inputs.map((_, k) => read(`input_${k}.pb`).tensor);
    const feeds: Record<string, Tensor> = {};
    g.inputs.forEach((v, k) => {
      if (k === 0) feeds[v.name] = feedsAll[k]!;
      else g.initializers[v.name] = feedsAll[k]!;
    });
    g.inputs = g.inputs.slice(0, 1);
    const want = g.outputs.map((_, k) => read(`output_${k}.pb`).tensor);
    try {
      const s = await createSession(model, { backend: "webgpu" });
      const out = await s.run(feeds);
      const gpu = s.info.layers.some((l) => l.backend === "webgpu");
      const why = ON_CPU.find(([re]) => re.test(name));
      if (gpu) onGpu++;
      else if (!why) failures.push(`${name}: ran on the CPU (${JSON.stringify((s.info.backends.webgpu as { fallbacks?: unknown })?.fallbacks ?? s.info.layers.map((l) => l.backend))})`);
      g.outputs.forEach((o, k) => {
        const got = out[o.name]!, w = want[k]!;
        if (got.dims.join() !== w.dims.join()) { failures.push(`${name}: dims [${got.dims}] != [${w.dims}]`); return; }
        for (let i = 0; i < w.data.length; i++) {
          const a = Number(got.data[i]), b = Number(w.data[i]);
          if (!(a === b || Math.abs(a - b) <= 1e-7 + 1e-3 * Math.abs(b))) { failures.push(`${name}: element ${i} ${a} != ${b}`); return; }
        }
      });
      s.dispose();
    } catch (e) {
      failures.push(`${name}: ${(e as Error).message}`);
    }
  }
  console.log(`webgpu conformance: ${conformance.length - failures.length}/${conformance.length} right, ${onGpu} on the GPU`);
  assertEquals(failures, []);
});

gpuTest("webgpu: a node without a GPU kernel runs on the CPU between GPU nodes, values moved both ways, and is reported", async () => {
  const node = (opType: string, inputs: string[], outputs: string[]) => ({ opType, domain: "", name: `${opType}_n`, inputs, outputs, attrs: {} });
  const model = {
    irVersion: 8, opsetImports: [{ domain: "", version: 13 }], producerName: "t",
    graph: {
      name: "g",
      nodes: [node("Relu", ["x"], ["r"]), node("Exp", ["r"], ["e"]), node("Add", ["e", "b"], ["s"]), node("Exp", ["s"], ["y"])],
      inputs: [{ name: "x", dtype: "float32" as const, shape: ["n", 3] }],
      outputs: [{ name: "y", dtype: "float32" as const, shape: null }],
      initializers: { b: { dtype: "float32" as const, dims: [3], data: Float32Array.of(-1, 0, 0.5) } },
    },
  };
  const x = { dtype: "float32" as const, dims: [2, 3], data: Float32Array.of(-1, 0.5, 1, 2, -3, 0.25) };
  const s = await createSession(model, { backend: "webgpu" });
  const ref = await createSession(model, { backend: "cpu-reference" });
  assertEquals(s.info.layers.map((l) => l.backend === "webgpu"), [true, false, true, false]);
  const fallbacks = (s.info.backends.webgpu as { fallbacks: { opType: string; reason: string }[] }).fallbacks;
  assertEquals(fallbacks.map((f) => f.opType), ["Exp", "Exp"]);
  assert(fallbacks.every((f) => /no WGSL kernel/.test(f.reason)));
  for (let run = 0; run < 2; run++) {
    const got = (await s.run({ x })).y!.data as Float32Array, want = (await ref.run({ x })).y!.data as Float32Array;
    for (let i = 0; i < want.length; i++) assert(Math.abs(got[i]! - want[i]!) <= 1e-6 * Math.abs(want[i]!), `run ${run} element ${i}: ${got[i]} vs ${want[i]}`);
  }
  s.dispose();
  ref.dispose();
});
