/** The training loop (schedules, epoch order, checkpoint + resume), its checkpoint file and the distillation loss. */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mulberry32, type Tensor } from "../format/mod.ts";
import { decodeCheckpoint, encodeCheckpoint, loadCheckpoint, saveCheckpoint } from "./checkpoint.ts";
import { CompressError } from "./errors.ts";
import { classificationLoss } from "./losses.ts";
import { epochOrder, learningRate, type TrainData, type TrainGraph, trainLoop, type TrainOptions } from "./train.ts";

const TMP = mkdtempSync(join(tmpdir(), "opq-train-"));

/** A softmax regression z = W·x + b over 6 features and 3 classes, differentiated by hand. */
function linearGraph(w: Float32Array, b: Float32Array): TrainGraph {
  let x: Float32Array = new Float32Array(0);
  return {
    forward(input: Tensor) {
      x = input.data as Float32Array;
      const n = x.length / 6, z = new Float32Array(n * 3);
      for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) {
        let s = b[c]!;
        for (let f = 0; f < 6; f++) s += w[c * 6 + f]! * x[i * 6 + f]!;
        z[i * 3 + c] = s;
      }
      return z;
    },
    backward(dz) {
      const n = x.length / 6, dw = new Float32Array(18), db = new Float32Array(3);
      for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) {
        db[c] += dz[i * 3 + c]!;
        for (let f = 0; f < 6; f++) dw[c * 6 + f] += dz[i * 3 + c]! * x[i * 6 + f]!;
      }
      return new Map([["w", dw], ["b", db]]);
    },
  };
}

/** 40 seeded points in 3 classes. */
function toyData(): TrainData {
  const rnd = mulberry32(7), count = 40;
  const xs = Float32Array.from({ length: count * 6 }, () => rnd() * 2 - 1), ys = Uint8Array.from({ length: count }, (_, i) => i % 3);
  for (let i = 0; i < count; i++) xs[i * 6 + ys[i]!] += 1.5;
  return {
    count,
    gather(order, start, n) {
      const data = new Float32Array(n * 6), labels = new Uint8Array(n);
      for (let k = 0; k < n; k++) { const i = order[start + k]!; data.set(xs.subarray(i * 6, i * 6 + 6), k * 6); labels[k] = ys[i]!; }
      return { data, dims: [n, 6], labels };
    },
  };
}

function fresh() {
  const rnd = mulberry32(11);
  const master = new Map([["w", Float32Array.from({ length: 18 }, () => rnd() - 0.5)], ["b", new Float32Array(3)]]);
  return { master, graph: linearGraph(master.get("w")!, master.get("b")!) };
}

const OPTIONS: TrainOptions = { steps: 13, batch: 8, lr: 0.1, momentum: 0.9, weightDecay: 1e-3, schedule: { kind: "cosine" }, seed: 5 };

describe("trainLoop", () => {
  test("learns the toy problem: loss falls", () => {
    const { master, graph } = fresh();
    const { history } = trainLoop(graph, master, toyData(), { ...OPTIONS, steps: 40 });
    expect(history).toHaveLength(40);
    const mean = (h: typeof history) => h.reduce((a, s) => a + s.loss, 0) / h.length;
    expect(mean(history.slice(-5))).toBeLessThan(0.5 * mean(history.slice(0, 5)));
  });

  test("interrupted mid-epoch and resumed from the last epoch's checkpoint = uninterrupted, bit for bit", () => {
    const a = fresh();
    trainLoop(a.graph, a.master, toyData(), OPTIONS);
    const ckpt = join(TMP, "toy.ckpt");
    const b = fresh();
    const first = trainLoop(b.graph, b.master, toyData(), { ...OPTIONS, checkpoint: ckpt, stopAt: 7 }); // epochs of 5 steps: saved at 5
    expect([first.resumedFrom, first.history.length]).toEqual([0, 7]);
    expect(decodeCheckpoint(new Uint8Array(readFileSync(ckpt))).step).toBe(5);
    const c = fresh(); // a new process: weights back at their initial values
    const second = trainLoop(c.graph, c.master, toyData(), { ...OPTIONS, checkpoint: ckpt });
    expect([second.resumedFrom, second.history[0]!.step, second.history.length]).toEqual([5, 5, 8]);
    for (const k of ["w", "b"]) expect(Array.from(c.master.get(k)!)).toEqual(Array.from(a.master.get(k)!));
    expect(decodeCheckpoint(new Uint8Array(readFileSync(ckpt))).step).toBe(13);
    expect(readdirSync(TMP).filter((f) => f.includes(".tmp-"))).toEqual([]); // no temp file left behind
  });

  test("a checkpoint of another run is refused", () => {
    const ckpt = join(TMP, "other.ckpt");
    const a = fresh();
    trainLoop(a.graph, a.master, toyData(), { ...OPTIONS, steps: 5, checkpoint: ckpt });
    const b = fresh();
    expect(() => trainLoop(b.graph, b.master, toyData(), { ...OPTIONS, steps: 5, lr: 0.2, checkpoint: ckpt })).toThrow(CompressError);
  });

  test("learning-rate schedules and epoch orders", () => {
    expect(learningRate({ lr: 1, schedule: { kind: "cosine" } }, 0, 10, 0)).toBe(1);
    expect(learningRate({ lr: 1, schedule: { kind: "cosine" } }, 5, 10, 0)).toBeCloseTo(0.5, 12);
    expect(learningRate({ lr: 1, schedule: { kind: "step", milestones: [2, 4], gamma: 0.1 } }, 0, 10, 3)).toBeCloseTo(0.1, 12);
    expect(learningRate({ lr: 1, schedule: { kind: "constant" } }, 9, 10, 9)).toBe(1);
    const o = epochOrder(50, 1, 0);
    expect(Array.from(o).sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(Array.from(epochOrder(50, 1, 0))).toEqual(Array.from(o));
    expect(Array.from(epochOrder(50, 1, 1))).not.toEqual(Array.from(o));
  });
});

describe("checkpoint file", () => {
  test("round trip, and every truncation or corruption is a CHECKPOINT error", () => {
    const c = { step: 3, fingerprint: "run", tensors: new Map([["w:a", Float32Array.of(1, -2, 3.5)], ["v:a", new Float32Array(3)]]) };
    const bytes = encodeCheckpoint(c);
    const d = decodeCheckpoint(bytes);
    expect([d.step, d.fingerprint, Array.from(d.tensors.get("w:a")!)]).toEqual([3, "run", [1, -2, 3.5]]);
    for (let cut = 0; cut < bytes.length; cut += 7) {
      try {
        decodeCheckpoint(bytes.subarray(0, cut));
        throw new Error(`truncated at ${cut} decoded`);
      } catch (e) {
        expect((e as CompressError).code).toBe("CHECKPOINT");
      }
    }
    const bad = bytes.slice();
    new DataView(bad.buffer).setUint32(8, 0xffffffff, true);
    expect(() => decodeCheckpoint(bad)).toThrow(/header length/);
    const path = join(TMP, "rt.ckpt");
    saveCheckpoint(path, c);
    expect(loadCheckpoint(path, "run")!.step).toBe(3);
    expect(() => loadCheckpoint(path, "another")).toThrow(/different run/);
    writeFileSync(path, "garbage");
    expect(() => loadCheckpoint(path, "run")).toThrow(/not a valid training checkpoint/);
    expect(loadCheckpoint(join(TMP, "none.ckpt"), "run")).toBeUndefined();
  });
});

describe("classificationLoss", () => {
  const n = 4, classes = 5, rnd = mulberry32(3);
  const logits = Float32Array.from({ length: n * classes }, () => 4 * rnd() - 2);
  const teacher = Float32Array.from({ length: n * classes }, () => 6 * rnd() - 3);
  const labels = [0, 3, 4, 1];

  test("without a teacher: softmax cross-entropy", () => {
    const l = classificationLoss(logits, labels, classes);
    let ref = 0;
    for (let i = 0; i < n; i++) {
      const row = Array.from(logits.subarray(i * classes, (i + 1) * classes));
      ref += Math.log(row.reduce((a, z) => a + Math.exp(z), 0)) - row[labels[i]!]!;
    }
    expect(l.loss).toBeCloseTo(ref / n, 6);
  });

  test("distillation: gradient = central finite differences of the loss, every logit; KL 0 when student = teacher", () => {
    for (const kd of [{ temperature: 4, weight: 0.5 }, { temperature: 1, weight: 1 }, { temperature: 2.5, weight: 0.2 }]) {
      const l = classificationLoss(logits, labels, classes, teacher, kd);
      const h = 1 / 256; // exact in float32 around values of magnitude < 4
      for (let i = 0; i < logits.length; i++) {
        const p = logits.slice(), m = logits.slice();
        p[i] += h; m[i] -= h;
        const fd = (classificationLoss(p, labels, classes, teacher, kd).loss - classificationLoss(m, labels, classes, teacher, kd).loss) / (2 * h);
        expect(Math.abs(fd - l.dLogits[i]!)).toBeLessThan(2e-4);
      }
    }
    const same = classificationLoss(teacher, labels, classes, teacher, { temperature: 3, weight: 1 });
    expect(Math.abs(same.loss)).toBeLessThan(1e-9);
    expect(Math.max(...Array.from(same.dLogits, Math.abs))).toBeLessThan(1e-7);
  });

  test("bad inputs are INVALID_OPTION", () => {
    expect(() => classificationLoss(logits, [9, 0, 0, 0], classes)).toThrow(CompressError);
    expect(() => classificationLoss(logits, labels, classes, teacher.subarray(1))).toThrow(CompressError);
    expect(() => classificationLoss(logits, labels, classes, teacher, { temperature: 0, weight: 0.5 })).toThrow(CompressError);
  });
});

describe("divergence", () => {
  test("a non-finite loss stops the run with NUMERIC before the weights are updated", () => {
    const { master, graph } = fresh();
    const data = toyData(), bad: TrainData = { count: data.count, gather: (o, s, n) => { const b = data.gather(o, s, n); b.data[0] = NaN; return b; } };
    const before = Float32Array.from(master.get("w")!);
    try {
      trainLoop(graph, master, bad, OPTIONS);
      throw new Error("no error");
    } catch (e) {
      expect((e as CompressError).code).toBe("NUMERIC");
    }
    expect(Array.from(master.get("w")!)).toEqual(Array.from(before));
  });
});
