/**
 * The Fashion-MNIST loader: IDX header validation on hand-made buffers, the real test set's
 * shape and class balance, and the preprocessing formula from models/README.md.
 * @module
 */
import { describe, expect, test } from "bun:test";
import { gzipSync } from "fflate";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FMNIST_MEAN, FMNIST_STD, fashionMnistBatch, loadFashionMnist, parseIdx } from "../cli/fashion-mnist.ts";

/** A big-endian IDX buffer: magic, dims, then `data`. */
function idx(magic: number, dims: number[], data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, magic, false);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

describe("parseIdx", () => {
  test("reads big-endian dims and the data after the header", () => {
    const px = new Uint8Array(2 * 28 * 28).map((_, i) => i % 251);
    const { dims, data } = parseIdx(idx(0x803, [2, 28, 28], px), "images");
    expect(dims).toEqual([2, 28, 28]);
    expect(data).toEqual(px);
    expect(parseIdx(idx(0x801, [3], new Uint8Array([7, 8, 9])), "labels").data).toEqual(new Uint8Array([7, 8, 9]));
  });
  test("rejects a wrong magic (labels file given as images, little-endian header)", () => {
    expect(() => parseIdx(idx(0x801, [1, 28, 28], new Uint8Array(784)), "images")).toThrow(/magic 0x00000801/);
    const le = idx(0x803, [1, 28, 28], new Uint8Array(784));
    new DataView(le.buffer).setUint32(0, 0x803, true);
    expect(() => parseIdx(le, "images")).toThrow(/magic/);
  });
  test("rejects truncated data, trailing bytes, a short header and non-28x28 images", () => {
    expect(() => parseIdx(idx(0x803, [2, 28, 28], new Uint8Array(784)), "images")).toThrow(/declares 1568/);
    expect(() => parseIdx(idx(0x801, [2], new Uint8Array(3)), "labels")).toThrow(/declares 2/);
    expect(() => parseIdx(new Uint8Array(10), "images")).toThrow(/header/);
    expect(() => parseIdx(idx(0x803, [1, 32, 32], new Uint8Array(1024)), "images")).toThrow(/32x32/);
  });
  test("loadFashionMnist rejects image and label counts that disagree", () => {
    const dir = mkdtempSync(join(tmpdir(), "opq-idx-"));
    writeFileSync(join(dir, "t10k-images-idx3-ubyte.gz"), gzipSync(idx(0x803, [2, 28, 28], new Uint8Array(1568))));
    writeFileSync(join(dir, "t10k-labels-idx1-ubyte.gz"), gzipSync(idx(0x801, [3], new Uint8Array(3))));
    expect(() => loadFashionMnist({ dir })).toThrow(/2 images but 3 labels/);
  });
  test("a missing data folder is an error naming the path", () => {
    expect(() => loadFashionMnist({ dir: "/nonexistent/fmnist" })).toThrow(/nonexistent\/fmnist/);
  });
});

describe("Fashion-MNIST test set", () => {
  const set = loadFashionMnist();
  test("10k images of 28x28 and labels 0..9, exactly 1000 per class", () => {
    expect(set.count).toBe(10000);
    expect(set.pixels.length).toBe(10000 * 784);
    const perClass = new Array(10).fill(0);
    for (const l of set.labels) perClass[l]++;
    expect(perClass).toEqual(new Array(10).fill(1000));
  });
  test("--limit keeps the first N images and labels", () => {
    const head = loadFashionMnist({ limit: 100 });
    expect(head.count).toBe(100);
    expect(head.labels).toEqual(set.labels.subarray(0, 100));
    expect(head.pixels).toEqual(set.pixels.subarray(0, 100 * 784));
  });
  test("batches are [n,1,28,28] of (pixel/255 - 0.2860)/0.3530, the last one short", () => {
    const b = fashionMnistBatch(set, 9990, 64);
    expect(b.dims).toEqual([10, 1, 28, 28]);
    expect(b.data.length).toBe(10 * 784);
    for (const i of [0, 100, 783, 784 * 9 + 400]) {
      expect(b.data[i]).toBeCloseTo((set.pixels[9990 * 784 + i]! / 255 - 0.286) / 0.353, 6);
    }
    expect(FMNIST_MEAN).toBe(0.286);
    expect(FMNIST_STD).toBe(0.353);
    const all = fashionMnistBatch(set, 0, 1000).data;
    const min = all.reduce((a, b) => Math.min(a, b)), max = all.reduce((a, b) => Math.max(a, b));
    expect(min).toBeCloseTo(-0.286 / 0.353, 5);
    expect(max).toBeCloseTo((1 - 0.286) / 0.353, 5);
    // The normalisation was fitted on the training set, so the test images' mean is near 0 (it is about 0.00 ± 0.02).
    expect(Math.abs(all.reduce((a, b) => a + b, 0) / all.length)).toBeLessThan(0.05);
  });
});
