/** Data loaders on small sets this test writes itself: image folders (PNG, JPEG), .npy, shapes, and every typed failure. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encode as encodePng } from "fast-png";
import jpeg from "jpeg-js";
import { FormatError, parsePreprocess, type Preprocess, preprocessImage } from "../../format/mod.ts";
import { COMPRESS_ERROR_CODES as E, CompressError } from "../errors.ts";
import { checkInputShape, decodeImage, loadImageFolder, parseNpy } from "./images.ts";

let dir: string;
const RGB: Preprocess = { channels: "rgb", mean: [0], std: [1] };

/** A w×h RGBA image whose red channel is `r`, green the column, blue the row. */
function rgba(w: number, h: number, r: number): Uint8Array {
  const d = new Uint8Array(w * h * 4);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) d.set([r, x, y, 255], (y * w + x) * 4);
  return d;
}

function npy(descr: string, shape: number[], body: Uint8Array): Uint8Array {
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(", ")}${shape.length === 1 ? "," : ""}), }`;
  while ((10 + header.length + 1) % 64) header += " ";
  header += "\n";
  const out = new Uint8Array(10 + header.length + body.length);
  out.set([0x93, ...new TextEncoder().encode("NUMPY"), 1, 0, header.length & 255, header.length >> 8]);
  out.set(new TextEncoder().encode(header), 10);
  out.set(body, 10 + header.length);
  return out;
}

const code = (f: () => unknown) => { try { f(); } catch (e) { return (e as CompressError).code; } return "none"; };

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "opq-data-"));
  for (const c of ["cat", "dog"]) mkdirSync(join(dir, "good", c), { recursive: true });
  writeFileSync(join(dir, "good", "cat", "a.png"), encodePng({ width: 4, height: 3, data: rgba(4, 3, 10), channels: 4, depth: 8 }));
  writeFileSync(join(dir, "good", "cat", "b.png"), encodePng({ width: 4, height: 3, data: rgba(4, 3, 20), channels: 4, depth: 8 }));
  writeFileSync(join(dir, "good", "dog", "c.jpg"), new Uint8Array(jpeg.encode({ width: 4, height: 3, data: rgba(4, 3, 200) }, 100).data));
  writeFileSync(join(dir, "good", "dog", "notes.txt"), "not an image");
  mkdirSync(join(dir, "corrupt", "x"), { recursive: true });
  writeFileSync(join(dir, "corrupt", "x", "broken.png"), new Uint8Array([0x89, 0x50, 0x4e, 0x47, 13, 10, 26, 10, 1, 2, 3]));
  mkdirSync(join(dir, "none"), { recursive: true });
  mkdirSync(join(dir, "emptyclass", "a"), { recursive: true });
  mkdirSync(join(dir, "mixed", "a"), { recursive: true });
  writeFileSync(join(dir, "mixed", "a", "1.png"), encodePng({ width: 4, height: 3, data: rgba(4, 3, 0), channels: 4, depth: 8 }));
  writeFileSync(join(dir, "mixed", "a", "2.png"), encodePng({ width: 6, height: 6, data: rgba(6, 6, 0), channels: 4, depth: 8 }));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("image folder: classes by sorted folder, PNG and JPEG decoded, pixels preprocessed [C, H, W]", () => {
  const set = loadImageFolder(join(dir, "good"), RGB);
  expect(set.classes).toEqual(["cat", "dog"]);
  expect(Array.from(set.labels)).toEqual([0, 0, 1]);
  expect(set.input.dims).toEqual([3, 3, 3, 4]);
  const x = set.input.data as Float32Array, per = 3 * 3 * 4;
  expect(x[0]).toBeCloseTo(10 / 255, 6); // red of a.png
  expect(x[per]).toBeCloseTo(20 / 255, 6); // red of b.png
  expect(x[1 * 12 + 3]).toBeCloseTo(3 / 255, 6); // green = column 3
  expect(x[2 * 12 + 2 * 4]).toBeCloseTo(2 / 255, 6); // blue = row 2
  expect(Math.abs(x[2 * per]! - 200 / 255)).toBeLessThan(0.05); // JPEG is lossy
  expect(loadImageFolder(join(dir, "good"), RGB, { limit: 2 }).input.dims[0]).toBe(2);
});

test("image folder: corrupt images, empty folders and mixed sizes are typed errors; resize + crop unify sizes", () => {
  expect(code(() => loadImageFolder(join(dir, "corrupt"), RGB))).toBe(E.DATA_INVALID);
  expect(code(() => loadImageFolder(join(dir, "none"), RGB))).toBe(E.DATA_INVALID);
  expect(code(() => loadImageFolder(join(dir, "emptyclass"), RGB))).toBe(E.DATA_INVALID);
  expect(code(() => loadImageFolder(join(dir, "missing"), RGB))).toBe(E.DATA_INVALID);
  expect(code(() => loadImageFolder(join(dir, "mixed"), RGB))).toBe(E.DATA_INVALID);
  expect(loadImageFolder(join(dir, "mixed"), { ...RGB, resize: 3, crop: [3, 3] }).input.dims).toEqual([2, 3, 3, 3]);
  expect(code(() => decodeImage(new TextEncoder().encode("GIF89a"), "x.gif"))).toBe(E.DATA_INVALID);
  expect(code(() => decodeImage(new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 1]), "cut.jpg"))).toBe(E.DATA_INVALID);
});

test("preprocess: channel order, gray, mean/std, validation", () => {
  const px = Uint8Array.from([255, 0, 51]); // one RGB pixel
  const out = new Float32Array(3);
  preprocessImage(px, 1, 1, 3, { channels: "bgr", mean: [0.1, 0.2, 0.3], std: [0.5, 0.5, 0.5] }, out);
  expect(Array.from(out).map((v) => +v.toFixed(4))).toEqual([+((0.2 - 0.1) / 0.5).toFixed(4), -0.4, +((1 - 0.3) / 0.5).toFixed(4)]);
  const g = new Float32Array(1);
  preprocessImage(px, 1, 1, 3, { channels: "gray", mean: [0], std: [1] }, g);
  expect(g[0]).toBeCloseTo((0.299 * 255 + 0.114 * 51) / 255, 5);
  for (const bad of [null, { channels: "cmyk", mean: [0], std: [1] }, { channels: "rgb", mean: [0, 0], std: [1] }, { channels: "gray", mean: [0], std: [0] }, { channels: "gray", mean: [0], std: [1], crop: [0, 3] }]) {
    expect(() => parsePreprocess(bad)).toThrow(FormatError);
  }
  expect(parsePreprocess({ channels: "rgb", mean: [0.5], std: [0.5], resize: 256, crop: [224, 224] })).toEqual({ channels: "rgb", mean: [0.5], std: [0.5], resize: 256, crop: [224, 224] });
});

test(".npy: float32 and uint8 arrays, corrupt files are typed errors", () => {
  const f = Float32Array.from([1.5, -2, 3, 4, 5, 6]);
  const t = parseNpy(npy("<f4", [2, 1, 3], new Uint8Array(f.buffer)));
  expect(t.dims).toEqual([2, 1, 3]);
  expect(Array.from(t.data as Float32Array)).toEqual(Array.from(f));
  expect(Array.from(parseNpy(npy("|u1", [3], Uint8Array.from([0, 7, 255]))).data as Float32Array)).toEqual([0, 7, 255]);
  expect(code(() => parseNpy(new TextEncoder().encode("hello world")))).toBe(E.DATA_INVALID);
  expect(code(() => parseNpy(npy("<f4", [2, 3], new Uint8Array(8))))).toBe(E.DATA_INVALID);
  expect(code(() => parseNpy(npy("<c8", [1], new Uint8Array(8))))).toBe(E.DATA_INVALID);
  const cut = npy("<f4", [1], new Uint8Array(4));
  expect(code(() => parseNpy(cut.subarray(0, 12)))).toBe(E.DATA_INVALID);
});

test("checkInputShape: a mismatch names both shapes", () => {
  const input = { name: "input", dtype: "float32" as const, shape: ["batch", 3, 224, 224] };
  expect(() => checkInputShape(input, [8, 3, 224, 224])).not.toThrow();
  let err: CompressError | undefined;
  try { checkInputShape(input, [8, 1, 28, 28]); } catch (e) { err = e as CompressError; }
  expect(err?.code).toBe(E.DATA_SHAPE);
  expect(err?.message).toContain("[8, 1, 28, 28]");
  expect(err?.message).toContain("[batch, 3, 224, 224]");
});
