/**
 * Detection post-processing: NonMaxSuppression and RoiAlign. Reference kernels following the
 * ONNX operator definitions (and onnxruntime where the text leaves a choice open, e.g. a box
 * is kept when its score is strictly above score_threshold).
 * @module
 */
import { fromNumbers, int64Tensor, intList, makeTensor, numbers, variants } from "./elementwise.ts";
import { KernelError, type Kernel, type OpVersion } from "./types.ts";

/** Corners [y1, x1, y2, x2] (sorted) of box `i`, from corner or center ([xc, yc, w, h]) encoding. */
function corners(b: ArrayLike<number>, i: number, center: boolean): [number, number, number, number] {
  const o = i * 4;
  if (center) {
    const xc = b[o]!, yc = b[o + 1]!, w = b[o + 2]!, h = b[o + 3]!;
    return [yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2];
  }
  const y1 = b[o]!, x1 = b[o + 1]!, y2 = b[o + 2]!, x2 = b[o + 3]!;
  return [Math.min(y1, y2), Math.min(x1, x2), Math.max(y1, y2), Math.max(x1, x2)];
}

/** Intersection over union of two corner boxes (0 when either has no area). */
export function iou(a: readonly number[], b: readonly number[]): number {
  const areaA = (a[2]! - a[0]!) * (a[3]! - a[1]!), areaB = (b[2]! - b[0]!) * (b[3]! - b[1]!);
  if (areaA <= 0 || areaB <= 0) return 0;
  const ih = Math.min(a[2]!, b[2]!) - Math.max(a[0]!, b[0]!), iw = Math.min(a[3]!, b[3]!) - Math.max(a[1]!, b[1]!);
  if (ih <= 0 || iw <= 0) return 0;
  const inter = ih * iw;
  return inter / (areaA + areaB - inter);
}

/** Greedy per-class NMS; selected_indices rows are [batch, class, box]. */
const nonMaxSuppression: Kernel = (inputs, attrs) => {
  const boxes = inputs[0]!, scores = inputs[1]!;
  const maxOut = inputs[2] && inputs[2].data.length ? intList(inputs[2])[0]! : 0;
  const iouThr = inputs[3] && inputs[3].data.length ? numbers(inputs[3])[0]! : 0;
  const scoreThr = inputs[4] && inputs[4].data.length ? numbers(inputs[4])[0]! : -Infinity;
  const center = attrs.int("center_point_box", 0) === 1;
  const [nb, nc, ns] = scores.dims as [number, number, number];
  if (boxes.dims[0] !== nb || boxes.dims[1] !== ns || boxes.dims[2] !== 4) {
    throw new KernelError(`NonMaxSuppression: boxes [${boxes.dims}] do not match scores [${scores.dims}]`);
  }
  const bv = numbers(boxes), sv = numbers(scores);
  const out: number[] = [];
  for (let b = 0; b < nb; b++) {
    const all = Array.from({ length: ns }, (_, i) => corners(bv, b * ns + i, center));
    for (let c = 0; c < nc; c++) {
      if (maxOut <= 0) continue;
      const sc = (i: number) => sv[(b * nc + c) * ns + i]!;
      const cand = Array.from({ length: ns }, (_, i) => i).filter((i) => sc(i) > scoreThr);
      cand.sort((p, q) => sc(q) - sc(p) || p - q);
      const kept: number[] = [];
      for (const i of cand) {
        if (kept.length >= maxOut) break;
        if (kept.every((k) => iou(all[k]!, all[i]!) <= iouThr)) kept.push(i);
      }
      for (const k of kept) out.push(b, c, k);
    }
  }
  return [int64Tensor(out, [out.length / 3, 3])];
};

/**
 * RoiAlign (opset 16 adds coordinate_transformation_mode; 10 behaves as "output_half_pixel"):
 * each output bin averages (or maxes) sampling_ratio² bilinear samples.
 */
const roiAlign = (since: number): Kernel => (inputs, attrs, _ctx) => {
  const x = inputs[0]!, rois = inputs[1]!, batchIdx = intList(inputs[2]!);
  const [, c, h, w] = x.dims as [number, number, number, number];
  const oh = attrs.int("output_height", 1), ow = attrs.int("output_width", 1);
  const ratio = attrs.int("sampling_ratio", 0), scale = attrs.float("spatial_scale", 1);
  const mode = attrs.string("mode", "avg");
  const halfPixel = since >= 16 && attrs.string("coordinate_transformation_mode", "half_pixel") === "half_pixel";
  const offset = halfPixel ? 0.5 : 0;
  const xv = numbers(x), rv = numbers(rois);
  const nr = rois.dims[0]!;
  const out = new Float64Array(nr * c * oh * ow);
  const bilinear = (base: number, y: number, xx: number): number => {
    if (y < -1 || y > h || xx < -1 || xx > w) return 0;
    y = Math.max(y, 0); xx = Math.max(xx, 0);
    let y0 = Math.floor(y), x0 = Math.floor(xx), y1: number, x1: number;
    if (y0 >= h - 1) { y0 = y1 = h - 1; y = y0; } else y1 = y0 + 1;
    if (x0 >= w - 1) { x0 = x1 = w - 1; xx = x0; } else x1 = x0 + 1;
    const ly = y - y0, lx = xx - x0, hy = 1 - ly, hx = 1 - lx;
    return hy * hx * xv[base + y0 * w + x0]! + hy * lx * xv[base + y0 * w + x1]! +
      ly * hx * xv[base + y1 * w + x0]! + ly * lx * xv[base + y1 * w + x1]!;
  };
  for (let r = 0; r < nr; r++) {
    const x1 = rv[r * 4]! * scale - offset, y1 = rv[r * 4 + 1]! * scale - offset;
    const x2 = rv[r * 4 + 2]! * scale - offset, y2 = rv[r * 4 + 3]! * scale - offset;
    let rw = x2 - x1, rh = y2 - y1;
    if (!halfPixel) { rw = Math.max(rw, 1); rh = Math.max(rh, 1); }
    const bh = rh / oh, bw = rw / ow;
    const gh = ratio > 0 ? ratio : Math.ceil(rh / oh), gw = ratio > 0 ? ratio : Math.ceil(rw / ow);
    const count = Math.max(gh * gw, 1);
    for (let ch = 0; ch < c; ch++) {
      const base = (batchIdx[r]! * c + ch) * h * w;
      for (let i = 0; i < oh; i++) {
        for (let j = 0; j < ow; j++) {
          let acc = mode === "max" ? -Infinity : 0;
          for (let p = 0; p < gh; p++) {
            const y = y1 + i * bh + ((p + 0.5) * bh) / gh;
            for (let q = 0; q < gw; q++) {
              const xx = x1 + j * bw + ((q + 0.5) * bw) / gw;
              const v = bilinear(base, y, xx);
              acc = mode === "max" ? Math.max(acc, v) : acc + v;
            }
          }
          out[((r * c + ch) * oh + i) * ow + j] = mode === "max" ? acc : acc / count;
        }
      }
    }
  }
  return [makeTensor(x.dtype, [nr, c, oh, ow], fromNumbers(x.dtype, out))];
};

/** Detection ops by ONNX op type. */
export const DETECTION_OPS: Record<string, OpVersion[]> = {
  NonMaxSuppression: [{ since: 10, kernel: nonMaxSuppression }],
  RoiAlign: variants(roiAlign, 10, 16),
};
