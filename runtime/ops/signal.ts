/**
 * Signal processing (opset 17): DFT, STFT and MelWeightMatrix, reference implementations by
 * direct summation in float64 (O(N²) per transform; audio front-ends, not a hot path here).
 * Complex values are a trailing dimension of 2 (real, imaginary); a trailing 1 is real input.
 * @module
 */
import { sizeOf } from "../../format/mod.ts";
import { dtypeOfOnnx } from "./shape.ts";
import { fromNumbers, intList, makeTensor, normAxis, numbers } from "./elementwise.ts";
import { KernelError, type Kernel, type OpVersion } from "./types.ts";

/** DFT of `n` complex samples (re, im; `len` of them present, the rest zero) into `bins` outputs. */
function dft1d(re: Float64Array, im: Float64Array, len: number, n: number, bins: number, inverse: boolean): [Float64Array, Float64Array] {
  const outRe = new Float64Array(bins), outIm = new Float64Array(bins);
  const sign = inverse ? 1 : -1;
  for (let k = 0; k < bins; k++) {
    let sr = 0, si = 0;
    for (let t = 0; t < Math.min(len, n); t++) {
      const a = (sign * 2 * Math.PI * ((k * t) % n)) / n;
      const c = Math.cos(a), s = Math.sin(a);
      sr += re[t]! * c - im[t]! * s;
      si += re[t]! * s + im[t]! * c;
    }
    outRe[k] = inverse ? sr / n : sr;
    outIm[k] = inverse ? si / n : si;
  }
  return [outRe, outIm];
}

const dft: Kernel = (inputs, attrs) => {
  const x = inputs[0]!;
  const r = x.dims.length;
  const complexIn = x.dims[r - 1] === 2;
  if (x.dims[r - 1] !== 1 && !complexIn) throw new KernelError("DFT: the last dimension must be 1 (real) or 2 (complex)");
  const axis = normAxis(attrs.int("axis", 1), r - 1, "DFT");
  const inverse = attrs.int("inverse", 0) === 1, onesided = attrs.int("onesided", 0) === 1;
  const len = x.dims[axis]!;
  const n = inputs[1] && inputs[1].data.length ? intList(inputs[1])[0]! : len;
  const bins = onesided ? Math.floor(n / 2) + 1 : n;
  const v = numbers(x);
  const outer = sizeOf(x.dims.slice(0, axis)), inner = sizeOf(x.dims.slice(axis + 1, r - 1));
  const c = complexIn ? 2 : 1;
  const out = new Float64Array(outer * bins * inner * 2);
  const re = new Float64Array(len), im = new Float64Array(len);
  for (let o = 0; o < outer; o++) {
    for (let q = 0; q < inner; q++) {
      for (let t = 0; t < len; t++) {
        const at = ((o * len + t) * inner + q) * c;
        re[t] = v[at]!;
        im[t] = complexIn ? v[at + 1]! : 0;
      }
      const [fr, fi] = dft1d(re, im, len, n, bins, inverse);
      for (let k = 0; k < bins; k++) {
        const at = ((o * bins + k) * inner + q) * 2;
        out[at] = fr[k]!;
        out[at + 1] = fi[k]!;
      }
    }
  }
  const dims = x.dims.slice();
  dims[axis] = bins;
  dims[r - 1] = 2;
  return [makeTensor(x.dtype, dims, fromNumbers(x.dtype, out))];
};

const stft: Kernel = (inputs, attrs) => {
  const x = inputs[0]!;
  const step = intList(inputs[1]!)[0]!;
  const window = inputs[2] && inputs[2].data.length ? numbers(inputs[2]) : undefined;
  const frameLen = inputs[3] && inputs[3].data.length ? intList(inputs[3])[0]! : window ? window.length : 0;
  if (frameLen <= 0) throw new KernelError("STFT: needs a window or a frame_length");
  const onesided = attrs.int("onesided", 1) === 1;
  const [batch, length] = x.dims as [number, number];
  const c = x.dims[2] === 2 ? 2 : 1;
  const frames = Math.floor((length - frameLen) / step) + 1;
  const bins = onesided ? Math.floor(frameLen / 2) + 1 : frameLen;
  const v = numbers(x);
  const out = new Float64Array(batch * frames * bins * 2);
  const re = new Float64Array(frameLen), im = new Float64Array(frameLen);
  for (let b = 0; b < batch; b++) {
    for (let f = 0; f < frames; f++) {
      for (let t = 0; t < frameLen; t++) {
        const at = (b * length + f * step + t) * c;
        const w = window ? window[t]! : 1;
        re[t] = v[at]! * w;
        im[t] = c === 2 ? v[at + 1]! * w : 0;
      }
      const [fr, fi] = dft1d(re, im, frameLen, frameLen, bins, false);
      for (let k = 0; k < bins; k++) {
        const at = ((b * frames + f) * bins + k) * 2;
        out[at] = fr[k]!;
        out[at + 1] = fi[k]!;
      }
    }
  }
  return [makeTensor(x.dtype, [batch, frames, bins, 2], fromNumbers(x.dtype, out))];
};

/** Triangular mel filters over the DFT bins, as the ONNX reference builds them (HTK mel scale). */
const melWeightMatrix: Kernel = (inputs, attrs) => {
  const [mels, dftLen, rate] = inputs.slice(0, 3).map((t) => intList(t!)[0]!) as [number, number, number];
  const [lo, hi] = inputs.slice(3, 5).map((t) => numbers(t!)[0]!) as [number, number];
  const dtype = dtypeOfOnnx(attrs.int("output_datatype", 1));
  const specBins = Math.floor(dftLen / 2) + 1;
  const toMel = (hz: number) => 2595 * Math.log10(1 + hz / 700);
  const loMel = toMel(lo), hiMel = toMel(hi);
  const step = (hiMel - loMel) / (mels + 2);
  const edges = Array.from({ length: mels + 2 }, (_, i) => {
    const hz = 700 * (10 ** ((i * step + loMel) / 2595) - 1);
    return Math.floor(((dftLen + 1) * hz) / rate);
  });
  const out = new Float64Array(specBins * mels);
  for (let i = 0; i < mels; i++) {
    const l = edges[i]!, cpt = edges[i + 1]!, h = edges[i + 2]!;
    if (cpt === l) out[cpt * mels + i] = 1;
    else for (let j = l; j <= cpt; j++) out[j * mels + i] = (j - l) / (cpt - l);
    if (h > cpt) for (let j = cpt; j < h; j++) out[j * mels + i] = (h - j) / (h - cpt);
  }
  return [makeTensor(dtype, [specBins, mels], fromNumbers(dtype, out))];
};

/** Signal-processing ops by ONNX op type. */
export const SIGNAL_OPS: Record<string, OpVersion[]> = {
  DFT: [{ since: 17, kernel: dft }],
  STFT: [{ since: 17, kernel: stft }],
  MelWeightMatrix: [{ since: 17, kernel: melWeightMatrix }],
};
