/**
 * The worker side of train/parallel.ts: builds a TrainableGraph of the model it is sent, whose
 * parameters are views of the shared parameter buffer, then blocks in Atomics.wait and runs the
 * forward or backward of its shard on command, results in shared memory.
 * @module
 */
import type { Model, Tensor } from "../../format/mod.ts";
import { createTrainableGraph } from "./graph-grad.ts";
import { ERROR_BYTES, TCMD, TCTL } from "./parallel.ts";

interface Setup {
  options: { wasm?: boolean; keep?: [string, Uint8Array][] };
  model: Model;
  params: [string, number, number[], number][];
  paramBuffer: SharedArrayBuffer;
  ctl: SharedArrayBuffer;
  io: SharedArrayBuffer;
  shardMax: number;
  sample: number;
  sampleDims: number[];
  logitsMax: number;
  total: number;
}

const scope = globalThis as unknown as { onmessage: ((e: MessageEvent<Setup>) => void) | null; postMessage(m: unknown): void; close(): void };

scope.onmessage = (e) => {
  const s = e.data;
  const ctl = new Int32Array(s.ctl);
  const inits = { ...s.model.graph.initializers };
  for (const [name, off, dims, length] of s.params) inits[name] = { dtype: "float32", dims, data: new Float32Array(s.paramBuffer, 4 * off, length) };
  const graph = createTrainableGraph({ ...s.model, graph: { ...s.model.graph, initializers: inits } }, { wasm: s.options.wasm, keep: s.options.keep && new Map(s.options.keep) });
  const input = new Float32Array(s.io, 0, s.shardMax * s.sample);
  const logits = new Float32Array(s.io, 4 * s.shardMax * s.sample, s.logitsMax);
  const dLogits = new Float32Array(s.io, 4 * (s.shardMax * s.sample + s.logitsMax), s.logitsMax);
  const grads = new Float32Array(s.io, 4 * (s.shardMax * s.sample + 2 * s.logitsMax), s.total);
  Atomics.store(ctl, TCTL.READY, 1);
  let seen = 0;
  for (;;) {
    Atomics.wait(ctl, TCTL.SEQ, seen);
    seen = Atomics.load(ctl, TCTL.SEQ);
    const cmd = ctl[TCTL.CMD]!, rows = ctl[TCTL.ROWS]!;
    if (cmd === TCMD.STOP) { Atomics.store(ctl, TCTL.DONE, seen); scope.close(); return; }
    try {
      if (cmd === TCMD.FORWARD) {
        const dims = [rows, ...s.sampleDims];
        const x: Tensor = { dtype: "float32", dims, data: input.slice(0, rows * s.sample) };
        const y = graph.forward(x);
        logits.set(y);
      } else if (cmd === TCMD.BACKWARD) {
        const classes = graph.outputDims.slice(1).reduce((a, b) => a * b, 1);
        const g = graph.backward(dLogits.slice(0, rows * classes));
        for (const [name, off] of s.params) grads.set(g.get(name)!, off);
      }
    } catch (err) {
      const text = new TextEncoder().encode(err instanceof Error ? `${err.name}: ${err.message}` : String(err)).subarray(0, ERROR_BYTES);
      new Uint8Array(s.ctl, 4 * TCTL.WORDS, ERROR_BYTES).set(text);
      ctl[TCTL.ERROR_LENGTH] = text.length;
      Atomics.store(ctl, TCTL.STATUS, 1);
    }
    Atomics.store(ctl, TCTL.DONE, seen);
    Atomics.notify(ctl, TCTL.DONE);
  }
};
