/**
 * The checked-in kernel binaries are what the AssemblyScript sources build (so nobody runs a
 * kernel whose source says otherwise), neither build has a data segment, and the engine here
 * runs the build it picks.
 * @module
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { buildSource, hasDataSection } from "./build.ts";
import { KERNELS_RELAXED, KERNELS_SIMD } from "./kernels-binary.ts";
import { kernelSupport, WasmKernels } from "./module.ts";

test("kernels-binary.ts is the build of as/*.ts (run `npm run build:wasm` after editing a kernel)", () => {
  expect(buildSource()).toBe(readFileSync(new URL("./kernels-binary.ts", import.meta.url), "utf8"));
}, 120_000);

test("both builds validate, have no data segment, and report which they are", () => {
  for (const [b64, relaxed] of [[KERNELS_SIMD, 0], [KERNELS_RELAXED, 1]] as const) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    expect(hasDataSection(bytes)).toBe(false);
    if (relaxed && !kernelSupport().relaxed) continue;
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
    const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } });
    expect((inst.exports.buildFeatures as () => number)()).toBe(relaxed);
  }
  expect(WasmKernels.create()!.exports.buildFeatures()).toBe(kernelSupport().relaxed ? 1 : 0);
});
