/**
 * The shared op cases (backend-cases.ts) on Bun: the wasm backend and the default (auto) choice
 * against the reference, each within its named tolerance. Deno runs them on webgpu too
 * (webgpu/webgpu.deno.test.ts).
 * @module
 */
import { expect, test } from "bun:test";
import { OP_CASES, runCase } from "./backend-cases.ts";

OP_CASES.forEach((c, index) => {
  test(`op case ${c.op}: ${c.name} (tolerance ${c.tolerance.name}) on wasm and auto`, async () => {
    for (const backend of ["wasm", "auto"] as const) {
      const r = await runCase(index, { backend });
      expect(r.maxDiff).toBeLessThanOrEqual(r.bound);
      // Bun has no navigator.gpu here: auto never binds webgpu.
      expect(r.ranOn).not.toBe("webgpu");
    }
  });
});
