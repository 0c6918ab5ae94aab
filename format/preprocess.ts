/**
 * Image preprocessing as data: resize, center crop, channel order and mean/std, stored in a
 * `.opq`'s metadata (`preprocess`, with the class names in `labels`, the key the server already shows) so that evaluation, the
 * server and the page apply exactly what compression and calibration used.
 * @module
 */
import { check } from "./errors.ts";

/** How raw 8-bit pixels become a model input [C, H, W]: x = (pixel/255 − mean_c) / std_c. */
export interface Preprocess {
  /** Resize (bilinear) so the shorter side has this many pixels; absent: keep the size. */
  resize?: number;
  /** Center crop [height, width] after the resize; absent: no crop. */
  crop?: [number, number];
  /** Channels of the tensor, in order: "rgb", "bgr", or "gray" (ITU-R BT.601 luma). */
  channels: "rgb" | "bgr" | "gray";
  /** One value per channel (or one for all). */
  mean: number[];
  std: number[];
}

/** The preprocessing of the bundled Fashion-MNIST models (models/README.md). */
export const FASHION_MNIST_PREPROCESS: Preprocess = { channels: "gray", mean: [0.286], std: [0.353] };

/** The metadata key holding a Preprocess, and the one holding the class names. */
export const PREPROCESS_KEY = "preprocess";
/** See PREPROCESS_KEY. */
export const CLASSES_KEY = "labels";

/** Largest side accepted anywhere (a resize or crop beyond it is a mistake or an attack). */
const MAX_SIDE = 16384;

/** Validate an untrusted Preprocess (from metadata or options); throws FormatError INVALID_ARGUMENT. */
export function parsePreprocess(v: unknown): Preprocess {
  check(typeof v === "object" && v !== null && !Array.isArray(v), "INVALID_ARGUMENT", "preprocess must be an object");
  const o = v as Record<string, unknown>;
  const side = (x: unknown) => typeof x === "number" && Number.isInteger(x) && x > 0 && x <= MAX_SIDE;
  check(o.resize === undefined || side(o.resize), "INVALID_ARGUMENT", `preprocess.resize must be a whole number of pixels in [1, ${MAX_SIDE}]`);
  check(o.crop === undefined || (Array.isArray(o.crop) && o.crop.length === 2 && o.crop.every(side)), "INVALID_ARGUMENT", "preprocess.crop must be [height, width]");
  check(o.channels === "rgb" || o.channels === "bgr" || o.channels === "gray", "INVALID_ARGUMENT", `preprocess.channels must be rgb, bgr or gray, got ${JSON.stringify(o.channels)}`);
  const c = o.channels === "gray" ? 1 : 3;
  for (const k of ["mean", "std"] as const) {
    const a = o[k];
    check(Array.isArray(a) && (a.length === 1 || a.length === c) && a.every((x) => typeof x === "number" && Number.isFinite(x)), "INVALID_ARGUMENT", `preprocess.${k} must be 1 or ${c} finite numbers`);
  }
  check((o.std as number[]).every((x) => x !== 0), "INVALID_ARGUMENT", "preprocess.std must not contain 0");
  const out: Preprocess = { channels: o.channels, mean: [...(o.mean as number[])], std: [...(o.std as number[])] };
  if (o.resize !== undefined) out.resize = o.resize as number;
  if (o.crop !== undefined) out.crop = [...(o.crop as [number, number])];
  return out;
}

/** The tensor shape [C, H, W] an image of width × height gets. */
export function preprocessedShape(p: Preprocess, width: number, height: number): [number, number, number] {
  let w = width, h = height;
  if (p.resize !== undefined) {
    const s = p.resize / Math.min(w, h);
    w = Math.max(1, Math.round(w * s));
    h = Math.max(1, Math.round(h * s));
  }
  if (p.crop) {
    check(p.crop[0] <= h && p.crop[1] <= w, "INVALID_ARGUMENT", `crop ${p.crop[0]}×${p.crop[1]} is larger than the ${h}×${w} image`);
    [h, w] = p.crop;
  }
  return [p.channels === "gray" ? 1 : 3, h, w];
}

/**
 * Preprocess one decoded image (`pixels` row-major with `channels` interleaved 8-bit values per
 * pixel: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA; alpha is ignored) into `out` from `offset`, laid
 * out [C, H, W]. Resizing samples bilinearly at pixel centres; the crop is centred.
 */
export function preprocessImage(pixels: Uint8Array, width: number, height: number, channels: number, p: Preprocess, out: Float32Array, offset = 0): void {
  check(channels >= 1 && channels <= 4 && pixels.length >= width * height * channels, "INVALID_ARGUMENT", `image of ${width}×${height}×${channels} has ${pixels.length} bytes`);
  const [c, oh, ow] = preprocessedShape(p, width, height);
  let rw = width, rh = height;
  if (p.resize !== undefined) {
    const s = p.resize / Math.min(width, height);
    rw = Math.max(1, Math.round(width * s));
    rh = Math.max(1, Math.round(height * s));
  }
  const top = Math.floor((rh - oh) / 2), left = Math.floor((rw - ow) / 2);
  const sx = width / rw, sy = height / rh;
  const value = (x: number, y: number, ch: number) => pixels[(y * width + x) * channels + ch]!;
  // Source channel of output channel k, for colour images (gray images repeat their one channel).
  const src = (k: number) => (channels < 3 ? 0 : p.channels === "bgr" ? 2 - k : k);
  for (let y = 0; y < oh; y++) {
    const fy = Math.min(height - 1, Math.max(0, (y + top + 0.5) * sy - 0.5)), y0 = Math.floor(fy), y1 = Math.min(height - 1, y0 + 1), ty = fy - y0;
    for (let x = 0; x < ow; x++) {
      const fx = Math.min(width - 1, Math.max(0, (x + left + 0.5) * sx - 0.5)), x0 = Math.floor(fx), x1 = Math.min(width - 1, x0 + 1), tx = fx - x0;
      const sample = (ch: number) =>
        (value(x0, y0, ch) * (1 - tx) + value(x1, y0, ch) * tx) * (1 - ty) + (value(x0, y1, ch) * (1 - tx) + value(x1, y1, ch) * tx) * ty;
      for (let k = 0; k < c; k++) {
        const v = p.channels === "gray" && channels >= 3 ? 0.299 * sample(0) + 0.587 * sample(1) + 0.114 * sample(2) : sample(src(k));
        const mean = p.mean[p.mean.length === 1 ? 0 : k]!, std = p.std[p.std.length === 1 ? 0 : k]!;
        out[offset + (k * oh + y) * ow + x] = (v / 255 - mean) / std;
      }
    }
  }
}

/**
 * The preprocessing a model gets when none is stored or given, from its input shape [N, C, H, W]:
 * for one channel Fashion-MNIST's (what the bundled models were trained with), for three
 * ImageNet's (resize the short side to 256/224 of the input, centre crop, RGB, torchvision's
 * mean and std); either resized and cropped to the input's H×W when it is known.
 */
export function defaultPreprocess(shape: readonly (number | string | null)[] | null | undefined): Preprocess {
  const [c, h, w] = [shape?.[1], shape?.[2], shape?.[3]].map((d) => (typeof d === "number" ? d : undefined));
  if (c === 1) return { ...FASHION_MNIST_PREPROCESS, ...(h && w ? { resize: Math.min(h, w), crop: [h, w] as [number, number] } : {}) };
  return { channels: "rgb", mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], ...(h && w ? { resize: Math.round((Math.min(h, w) * 256) / 224), crop: [h, w] as [number, number] } : {}) };
}
