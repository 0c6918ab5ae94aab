/**
 * Data of the user's own for calibration and evaluation: a folder of images with one subfolder
 * per class (PNG and JPEG, decoded by pure-JS libraries so it runs on Bun, Deno and edge hosts),
 * `.npy` arrays, and the check that data fits a model's input. Every failure is a CompressError
 * DATA_INVALID or DATA_SHAPE naming the file or both shapes.
 * @module
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { decode as decodePng, convertIndexedToRgb } from "fast-png";
import jpeg from "jpeg-js";
import { type Dim, type Preprocess, preprocessedShape, preprocessImage, type Tensor, type ValueInfo } from "../../format/mod.ts";
import { COMPRESS_ERROR_CODES as E, CompressError, ensure } from "../errors.ts";

/** Labelled images ready for a model: input [N, C, H, W], label per image, class names by label. */
export interface LabelledImages {
  input: Tensor;
  labels: Int32Array;
  classes: string[];
  files: string[];
}

/** Decoded images larger than this many megapixels are refused (a bomb, not a photo for a CNN). */
export const MAX_MEGAPIXELS = 64;
/** File extensions read from a class folder (case-insensitive); other files are ignored. */
const IMAGE_EXTENSIONS = /\.(png|jpe?g)$/i;

/** Decode PNG or JPEG bytes (told apart by their magic bytes) to 8-bit interleaved pixels. */
export function decodeImage(bytes: Uint8Array, name = "image"): { pixels: Uint8Array; width: number; height: number; channels: number } {
  const isPng = bytes.length >= 8 && bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47;
  const isJpeg = bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
  ensure(isPng || isJpeg, E.DATA_INVALID, `${name}: not a PNG or JPEG file`);
  try {
    if (isJpeg) {
      const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxResolutionInMP: MAX_MEGAPIXELS, maxMemoryUsageInMB: 4 * MAX_MEGAPIXELS + 64 });
      return { pixels: img.data, width: img.width, height: img.height, channels: 4 };
    }
    const png = decodePng(bytes);
    ensure(png.width * png.height <= MAX_MEGAPIXELS * 1e6, E.DATA_INVALID, `${name}: ${png.width}×${png.height} is over ${MAX_MEGAPIXELS} megapixels`);
    if (png.palette) {
      const rgb = convertIndexedToRgb(png);
      return { pixels: Uint8Array.from(rgb), width: png.width, height: png.height, channels: rgb.length / (png.width * png.height) };
    }
    const data = png.data;
    // 16-bit samples keep their high byte; 1/2/4-bit gray is scaled to 8 bits.
    const pixels = png.depth === 16 ? Uint8Array.from(data as Uint16Array, (v) => v >> 8)
      : png.depth < 8 ? Uint8Array.from(data, (v) => Math.round((v * 255) / ((1 << png.depth) - 1)))
      : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    return { pixels, width: png.width, height: png.height, channels: png.channels };
  } catch (e) {
    if (e instanceof CompressError) throw e;
    throw new CompressError(E.DATA_INVALID, `${name}: cannot decode: ${(e as Error)?.message ?? e}`, { cause: e });
  }
}

/**
 * Load a folder with one subfolder per class (sorted names = class indices), every PNG/JPEG in
 * it preprocessed by `p`. All images must come out the same shape (give `resize`/`crop` for
 * photos of mixed sizes). `limit` images at most, taken evenly across the sorted files.
 */
export function loadImageFolder(dir: string, p: Preprocess, options: { limit?: number } = {}): LabelledImages {
  let entries: string[];
  try {
    entries = readdirSync(dir).filter((d) => statSync(join(dir, d)).isDirectory()).sort();
  } catch (e) {
    throw new CompressError(E.DATA_INVALID, `cannot read the image folder ${dir}: ${(e as Error).message}`, { cause: e });
  }
  ensure(entries.length > 0, E.DATA_INVALID, `${dir} has no class subfolders (expected one folder of images per class)`);
  const files: { path: string; label: number }[] = [];
  entries.forEach((cls, label) => {
    const imgs = readdirSync(join(dir, cls)).filter((f) => IMAGE_EXTENSIONS.test(f)).sort();
    ensure(imgs.length > 0, E.DATA_INVALID, `class folder ${join(dir, cls)} has no PNG or JPEG images`);
    for (const f of imgs) files.push({ path: join(dir, cls, f), label });
  });
  const limit = Math.min(files.length, options.limit ?? Infinity);
  const picked = Array.from({ length: limit }, (_, i) => files[Math.floor((i * files.length) / limit)]!);
  let shape: [number, number, number] | undefined, data: Float32Array | undefined;
  const labels = new Int32Array(limit);
  picked.forEach((f, i) => {
    const img = decodeImage(new Uint8Array(readFileSync(f.path)), f.path);
    let s: [number, number, number];
    try {
      s = preprocessedShape(p, img.width, img.height);
    } catch (e) {
      throw new CompressError(E.DATA_INVALID, `${f.path}: ${(e as Error).message}`, { cause: e });
    }
    if (!shape) { shape = s; data = new Float32Array(limit * s[0] * s[1] * s[2]); }
    ensure(s.every((v, k) => v === shape![k]), E.DATA_INVALID, `${f.path} gives [${s}], the first image [${shape}]: give a resize and crop for images of mixed sizes`);
    preprocessImage(img.pixels, img.width, img.height, img.channels, p, data!, i * s[0] * s[1] * s[2]);
    labels[i] = f.label;
  });
  return { input: { dtype: "float32", dims: [limit, ...shape!], data: data! }, labels, classes: entries, files: picked.map((f) => f.path) };
}

/** numpy dtype descriptors we read, with their element size. */
const NPY_TYPES: Record<string, { bytes: number; read: (v: DataView, o: number, le: boolean) => number }> = {
  f4: { bytes: 4, read: (v, o, le) => v.getFloat32(o, le) }, f8: { bytes: 8, read: (v, o, le) => v.getFloat64(o, le) },
  u1: { bytes: 1, read: (v, o) => v.getUint8(o) }, i1: { bytes: 1, read: (v, o) => v.getInt8(o) },
  u2: { bytes: 2, read: (v, o, le) => v.getUint16(o, le) }, i2: { bytes: 2, read: (v, o, le) => v.getInt16(o, le) },
  i4: { bytes: 4, read: (v, o, le) => v.getInt32(o, le) }, i8: { bytes: 8, read: (v, o, le) => Number(v.getBigInt64(o, le)) },
};

/**
 * Parse a `.npy` file (format versions 1–3, C order, numeric dtypes) into a float32 tensor. The
 * array is taken as the model input as it is (already preprocessed), labels as integers.
 */
export function parseNpy(bytes: Uint8Array, name = "array.npy"): Tensor {
  const bad = (why: string) => new CompressError(E.DATA_INVALID, `${name}: ${why}`);
  if (bytes.length < 10 || bytes[0] !== 0x93 || String.fromCharCode(...bytes.subarray(1, 6)) !== "NUMPY") throw bad("not a .npy file (bad magic)");
  const major = bytes[6]!, view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (major < 1 || major > 3) throw bad(`unsupported .npy version ${major}`);
  const hlen = major === 1 ? view.getUint16(8, true) : bytes.length >= 12 ? view.getUint32(8, true) : -1;
  const start = major === 1 ? 10 : 12;
  if (hlen < 0 || start + hlen > bytes.length) throw bad("header runs past the end of the file");
  const header = new TextDecoder().decode(bytes.subarray(start, start + hlen));
  const descr = /'descr'\s*:\s*'([<>|=])([a-z]\d+)'/.exec(header), fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header);
  const shapeM = /'shape'\s*:\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shapeM) throw bad(`unreadable header ${JSON.stringify(header.slice(0, 80))}`);
  if (fortran[1] === "True") throw bad("Fortran-ordered arrays are not supported (save with np.ascontiguousarray)");
  const type = NPY_TYPES[descr[2]!];
  if (!type) throw bad(`dtype ${descr[1]}${descr[2]} is not supported (float, int or uint)`);
  const dims = shapeM[1]!.split(",").map((s) => s.trim()).filter((s) => s !== "").map(Number);
  if (!dims.every((d) => Number.isSafeInteger(d) && d >= 0)) throw bad(`bad shape (${shapeM[1]})`);
  const count = dims.reduce((a, b) => a * b, 1), off = start + hlen;
  if (bytes.length - off !== count * type.bytes) throw bad(`shape [${dims}] needs ${count * type.bytes} data bytes, the file has ${bytes.length - off}`);
  const le = descr[1] !== ">", data = new Float32Array(count);
  for (let i = 0; i < count; i++) data[i] = type.read(view, off + i * type.bytes, le);
  return { dtype: "float32", dims, data };
}

/** `[N, …]` data against a model input whose shape is `[batch, …]`; throws DATA_SHAPE naming both. */
export function checkInputShape(input: ValueInfo, dims: readonly number[]): void {
  const want: readonly Dim[] | null = input.shape;
  if (!want) return;
  const fits = want.length === dims.length && want.every((d, i) => i === 0 || typeof d !== "number" || d === dims[i]);
  const show = (s: readonly Dim[]) => `[${s.map((d) => (d === null ? "?" : d)).join(", ")}]`;
  ensure(fits, E.DATA_SHAPE, `the data has shape ${show(dims)} but the model input '${input.name}' is ${show(want)}: check the resize/crop/channels or the data`);
}
