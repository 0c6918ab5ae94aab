/**
 * The inference-user API: tensor(), feeds in onnxruntime-web's shape and as plain arrays, and
 * classify() applying the stored preprocessing and labels (checked against a hand-made run).
 * @module
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { sharedPath } from "../cli/shared.ts";
import { classify, createSession, OpqRuntimeError, tensor } from "./mod.ts";

const bytes = new Uint8Array(readFileSync(sharedPath("models", "lenet5-fmnist.onnx")));

describe("inference API", () => {
  test("tensor() checks lengths; feeds as ort tensors and plain arrays run like typed ones", async () => {
    expect(() => tensor("float32", [1, 2, 3], [2, 2])).toThrow(OpqRuntimeError);
    const s = await createSession(bytes);
    expect(s.inputNames).toEqual(s.inputs.map((i) => i.name));
    expect(s.outputNames).toEqual(s.outputs.map((o) => o.name));
    const values = Array.from({ length: 784 }, (_, i) => Math.sin(i));
    const x = tensor("float32", values, [1, 1, 28, 28]);
    const want = (await s.run({ [s.inputNames[0]!]: x }))[s.outputNames[0]!]!.data;
    const ort = { type: "float32", dims: [1, 1, 28, 28], data: Float32Array.from(values) };
    expect((await s.run({ [s.inputNames[0]!]: ort as never }))[s.outputNames[0]!]!.data).toEqual(want);
    // The batch dim is symbolic, so a plain array has no shape to take: refused with the typed error.
    const e = await s.run({ [s.inputNames[0]!]: values as never }).catch((err) => err);
    expect(e).toBeInstanceOf(OpqRuntimeError);
  });

  test("classify() preprocesses as stored, returns labels best first, and equals a hand-made run", async () => {
    const s = await createSession(bytes);
    const w = 28, h = 28, px = new Uint8Array(w * h).map((_, i) => (i * 37) % 256);
    const top = await classify(s, { width: w, height: h, channels: 1, data: px }, 3);
    expect(top.length).toBe(3);
    expect(top[0]!.probability).toBeGreaterThanOrEqual(top[1]!.probability);
    // By hand: Fashion-MNIST's (v/255 − 0.286)/0.353, the default for a 1-channel model.
    const x = Float32Array.from(px, (v) => (v / 255 - 0.286) / 0.353);
    const logits = (await s.run({ [s.inputNames[0]!]: { dtype: "float32", dims: [1, 1, 28, 28], data: x } }))[s.outputNames[0]!]!.data as Float32Array;
    const best = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]!)[0];
    expect(top[0]!.index).toBe(best!);
    // Any size is resized and cropped to the input (the default preprocessing resizes): a 10×5 image classifies.
    expect((await classify(s, { width: 10, height: 5, channels: 1, data: new Uint8Array(50).fill(200) }, 1)).length).toBe(1);
    // Bytes that do not match width × height × channels are a typed error.
    const bad = await classify(s, { width: 10, height: 5, channels: 3, data: new Uint8Array(50) }).catch((err) => err);
    expect(bad).toBeInstanceOf(OpqRuntimeError);
    expect((bad as OpqRuntimeError).code).toBe("INPUT_INVALID");
  });
});
