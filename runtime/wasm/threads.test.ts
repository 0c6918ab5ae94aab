/**
 * The thread team: kernels split across a session's workers on its one shared memory give the
 * single-thread result, two sessions keep their own teams, and a session with threads reports
 * them and splits its large kernels.
 * @module
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { sharedPath } from "../../cli/shared.ts";
import { createSession } from "../mod.ts";
import { WasmKernels } from "./module.ts";
import { ThreadTeam } from "./threads.ts";

describe("thread team", () => {
  test("a split clamp equals the one-thread clamp, on every element", async () => {
    const k = WasmKernels.create()!;
    const team = await ThreadTeam.start(k, 2);
    try {
      expect(team.threads).toBe(2);
      const n = (1 << 18) + 13;
      const a = k.alloc(n * 4), b = k.alloc(n * 4);
      const x = k.f32(a, n);
      for (let i = 0; i < n; i++) x[i] = ((i * 7919) % 13) - 6;
      team.run("clampF32", n, 4096, [a, b, -2, 3]);
      expect(team.splits).toBe(1);
      const y = k.f32(b, n);
      let bad = 0;
      for (let i = 0; i < n; i++) if (y[i] !== Math.min(Math.max(x[i]!, -2), 3)) bad++;
      expect(bad).toBe(0);
    } finally {
      team.stop();
    }
  });

  test("two sessions with 2 threads each keep their own teams and agree with one thread", async () => {
    const bytes = new Uint8Array(readFileSync(sharedPath("models", "resnet20-fmnist.onnx")));
    const [s1, s2, one] = await Promise.all([createSession(bytes, { threads: 2 }), createSession(bytes, { threads: 2 }), createSession(bytes)]);
    const x = { dtype: "float32" as const, dims: [2, 1, 28, 28], data: Float32Array.from({ length: 2 * 784 }, (_, i) => Math.sin(i)) };
    const want = (await one.run({ input: x })).logits!.data;
    for (const s of [s1, s2]) {
      expect((s.info.backends.wasm as { threads: number }).threads).toBe(2);
      expect((await s.run({ input: x })).logits!.data).toEqual(want);
    }
    s1.dispose();
    // The second session's team is untouched by the first one's disposal.
    expect((await s2.run({ input: x })).logits!.data).toEqual(want);
    s2.dispose();
    one.dispose();
  });
});
