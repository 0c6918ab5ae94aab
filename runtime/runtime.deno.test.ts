/**
 * The runtime under Deno: load a reference model from a path, run a batch, refuse bad feeds
 * with typed errors. The full behaviour is covered by the bun suites beside this file.
 * @module
 */
import { sharedPath } from "../cli/shared.ts";
import { createSession, OpqRuntimeError, RUNTIME_ERROR_CODES } from "./mod.ts";

function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new Error(message);
}

Deno.test("runtime: lenet5 loads, runs a batch of 2 and validates feeds", async () => {
  const session = await createSession(sharedPath("models", "lenet5-fmnist.onnx"));
  const input = session.inputs[0]!;
  const output = session.outputs[0]!;
  const data = new Float32Array(2 * 784).fill(0.5);
  const result = await session.run({ [input.name]: { dtype: "float32", dims: [2, 1, 28, 28], data } });
  const logits = result[output.name]!;
  assert(logits.dims.join(",") === "2,10", `logits dims ${logits.dims}`);
  const d = logits.data as Float32Array;
  for (let i = 0; i < 10; i++) assert(Number.isFinite(d[i]!) && d[i] === d[i + 10], `row mismatch at ${i}`);
  try {
    await session.run({ [input.name]: { dtype: "float32", dims: [2, 1, 27, 28], data: new Float32Array(2 * 27 * 28) } });
    throw new Error("a wrong shape was accepted");
  } catch (e) {
    assert(e instanceof OpqRuntimeError && e.code === RUNTIME_ERROR_CODES.INPUT_SHAPE, `got ${e}`);
  }
  session.dispose();
});
