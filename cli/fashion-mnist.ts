/**
 * The Fashion-MNIST test set, read from the gzipped big-endian IDX files in
 * `../shared/data/fashion-mnist/` and preprocessed exactly as at training time
 * (models/README.md): x = (pixel / 255 − 0.2860) / 0.3530, shape [N, 1, 28, 28].
 * @module
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "fflate";
import { sharedPath } from "./shared.ts";

/** Normalisation used in training: mean and standard deviation of the training pixels in [0, 1]. */
export const FMNIST_MEAN = 0.286;
/** See FMNIST_MEAN. */
export const FMNIST_STD = 0.353;
/** Side of one image in pixels. */
export const FMNIST_SIDE = 28;

/** IDX magic numbers: 0x0000 · type (0x08 = ubyte) · number of dimensions. */
const IDX_MAGIC = { images: 0x00000803, labels: 0x00000801 } as const;

/** A loaded split: raw pixels (N·28·28 bytes) and labels (N bytes). */
export interface FashionMnist {
  count: number;
  pixels: Uint8Array;
  labels: Uint8Array;
}

/** Where the IDX files live: `dir`, else the shared data folder (throws naming what is missing). */
export function fashionMnistDir(dir?: string): string {
  return dir ?? sharedPath("data", "fashion-mnist");
}

/** Parse one IDX buffer (already gunzipped), validating magic, dimensions and length. */
export function parseIdx(bytes: Uint8Array, kind: keyof typeof IDX_MAGIC): { dims: number[]; data: Uint8Array } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const rank = kind === "images" ? 3 : 1;
  const header = 4 + 4 * rank;
  if (bytes.length < header) throw new Error(`IDX ${kind}: ${bytes.length} bytes is shorter than the ${header}-byte header`);
  const magic = view.getUint32(0, false);
  if (magic !== IDX_MAGIC[kind]) {
    throw new Error(`IDX ${kind}: magic 0x${magic.toString(16).padStart(8, "0")}, expected 0x${IDX_MAGIC[kind].toString(16).padStart(8, "0")}`);
  }
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i, false));
  if (kind === "images" && (dims[1] !== FMNIST_SIDE || dims[2] !== FMNIST_SIDE)) {
    throw new Error(`IDX images: ${dims[1]}x${dims[2]} images, expected ${FMNIST_SIDE}x${FMNIST_SIDE}`);
  }
  const size = dims.reduce((a, b) => a * b, 1);
  if (bytes.length !== header + size) throw new Error(`IDX ${kind}: header declares ${size} data bytes, file has ${bytes.length - header}`);
  return { dims, data: bytes.subarray(header) };
}

/** Load a split ("t10k" = the 10k test set, "train"), optionally only its first `limit` images. */
export function loadFashionMnist(options: { dir?: string; split?: "t10k" | "train"; limit?: number } = {}): FashionMnist {
  const dir = fashionMnistDir(options.dir);
  const split = options.split ?? "t10k";
  const read = (name: string) => gunzipSync(new Uint8Array(readFileSync(join(dir, name))));
  const images = parseIdx(read(`${split}-images-idx3-ubyte.gz`), "images");
  const labels = parseIdx(read(`${split}-labels-idx1-ubyte.gz`), "labels");
  if (images.dims[0] !== labels.dims[0]) throw new Error(`IDX ${split}: ${images.dims[0]} images but ${labels.dims[0]} labels`);
  const count = Math.min(images.dims[0]!, options.limit ?? Infinity);
  const px = FMNIST_SIDE * FMNIST_SIDE;
  return { count, pixels: images.data.subarray(0, count * px), labels: labels.data.subarray(0, count) };
}

/** Preprocess images [start, start + n) into one float32 batch [n, 1, 28, 28]. */
export function fashionMnistBatch(set: FashionMnist, start: number, n: number): { dims: number[]; data: Float32Array } {
  const end = Math.min(set.count, start + n);
  const px = FMNIST_SIDE * FMNIST_SIDE;
  const raw = set.pixels.subarray(start * px, end * px);
  const data = new Float32Array(raw.length);
  normalizePixels(raw, data, 0);
  return { dims: [end - start, 1, FMNIST_SIDE, FMNIST_SIDE], data };
}

/** Write the training-time preprocessing of raw pixels, (v / 255 − mean) / std, into `dst` from `offset`. */
export function normalizePixels(raw: Uint8Array, dst: Float32Array, offset: number): void {
  for (let i = 0; i < raw.length; i++) dst[offset + i] = (raw[i]! / 255 - FMNIST_MEAN) / FMNIST_STD;
}
