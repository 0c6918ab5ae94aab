/**
 * Recurrent layers: RNN, GRU and LSTM, one reference implementation driven by a per-op cell
 * (gate order as ONNX defines it: GRU z r h, LSTM i o f c). Supports forward, reverse and
 * bidirectional, sequence_lens, initial states, LSTM peepholes, clip, layout 0 (time-major) and
 * 1 (batch-major, opset 14) and the activations listed in ACTIVATIONS.
 * @module
 */
import type { DType, Tensor } from "../../format/mod.ts";
import { fromNumbers, intList, makeTensor, numbers, variants } from "./elementwise.ts";
import { type Attrs, KernelError, type Kernel, type OpVersion } from "./types.ts";

type Act = (x: number) => number;

/** Activation functions by ONNX name; alpha/beta as the RNN operators define them. */
const ACTIVATIONS: Record<string, (alpha?: number, beta?: number) => Act> = {
  Sigmoid: () => (x) => 1 / (1 + Math.exp(-x)),
  Tanh: () => Math.tanh,
  Relu: () => (x) => Math.max(0, x),
  Affine: (a = 1, b = 0) => (x) => a * x + b,
  LeakyRelu: (a = 0.01) => (x) => (x >= 0 ? x : a * x),
  ThresholdedRelu: (a = 1) => (x) => (x > a ? x : 0),
  ScaledTanh: (a = 1, b = 1) => (x) => a * Math.tanh(b * x),
  HardSigmoid: (a = 0.2, b = 0.5) => (x) => Math.max(0, Math.min(1, a * x + b)),
  Elu: (a = 1) => (x) => (x >= 0 ? x : a * (Math.exp(x) - 1)),
  Softsign: () => (x) => x / (1 + Math.abs(x)),
  Softplus: () => (x) => Math.log1p(Math.exp(x)),
};

interface CellSpec {
  gates: number;
  defaults: string[];
}
const CELLS: Record<"RNN" | "GRU" | "LSTM", CellSpec> = {
  RNN: { gates: 1, defaults: ["Tanh"] },
  GRU: { gates: 3, defaults: ["Sigmoid", "Tanh"] },
  LSTM: { gates: 4, defaults: ["Sigmoid", "Tanh", "Tanh"] },
};

function activations(attrs: Attrs, spec: CellSpec, dirs: number): Act[][] {
  const names = attrs.has("activations") ? (attrs.raw.activations!.value as string[]) : [];
  const alphas = attrs.floats("activation_alpha", []), betas = attrs.floats("activation_beta", []);
  const per = spec.defaults.length;
  return Array.from({ length: dirs }, (_, d) =>
    spec.defaults.map((def, k) => {
      const i = d * per + k;
      const name = names[i] ?? def;
      const make = ACTIVATIONS[name];
      if (!make) throw new KernelError(`${attrs.opType}: activation '${name}' is not supported`);
      return make(alphas[i], betas[i]);
    }));
}

function recurrent(kind: "RNN" | "GRU" | "LSTM", since: number): Kernel {
  const spec = CELLS[kind];
  return (inputs, attrs) => {
    const [x, wT, rT, bT, lensT, h0T, c0T, pT] = inputs;
    const layout = since >= 14 ? attrs.int("layout", 0) : 0;
    const direction = attrs.string("direction", "forward");
    const dirs = direction === "bidirectional" ? 2 : 1;
    const hidden = attrs.has("hidden_size") ? attrs.int("hidden_size") : rT!.dims[2]!;
    const clip = attrs.has("clip") ? attrs.float("clip") : Infinity;
    const lbr = kind === "GRU" && attrs.int("linear_before_reset", 0) !== 0;
    const acts = activations(attrs, spec, dirs);
    const [seq, batch, inSize] = layout === 0 ? (x!.dims as [number, number, number]) : ([x!.dims[1], x!.dims[0], x!.dims[2]] as [number, number, number]);
    const G = spec.gates * hidden;
    const xv = numbers(x!), wv = numbers(wT!), rv = numbers(rT!);
    const bv = bT ? numbers(bT) : new Float64Array(dirs * 2 * G);
    const lens = lensT ? intList(lensT) : new Array<number>(batch).fill(seq);
    const h0 = h0T ? numbers(h0T) : undefined, c0 = c0T ? numbers(c0T) : undefined, pv = pT ? numbers(pT) : undefined;
    const xAt = (t: number, b: number, i: number) => xv[layout === 0 ? (t * batch + b) * inSize + i : (b * seq + t) * inSize + i]!;
    const y = new Float64Array(seq * dirs * batch * hidden); // [seq, dirs, batch, hidden]
    const yh = new Float64Array(dirs * batch * hidden), yc = new Float64Array(dirs * batch * hidden);
    const cl = (v: number) => (v > clip ? clip : v < -clip ? -clip : v);
    for (let d = 0; d < dirs; d++) {
      const reverse = direction === "reverse" || d === 1;
      const [f, g, hAct] = acts[d]!;
      const W = d * G * inSize, R = d * G * hidden, Bw = d * 2 * G, Br = Bw + G;
      for (let b = 0; b < batch; b++) {
        const h = new Float64Array(hidden), c = new Float64Array(hidden);
        for (let k = 0; k < hidden; k++) {
          if (h0) h[k] = h0[(d * batch + b) * hidden + k]!;
          if (c0) c[k] = c0[(d * batch + b) * hidden + k]!;
        }
        const len = lens[b]!;
        const xw = new Float64Array(G), hr = new Float64Array(G);
        for (let s = 0; s < len; s++) {
          const t = reverse ? len - 1 - s : s;
          for (let gi = 0; gi < G; gi++) {
            let a = bv[Bw + gi]!, r = bv[Br + gi]!;
            for (let i = 0; i < inSize; i++) a += xAt(t, b, i) * wv[W + gi * inSize + i]!;
            for (let k = 0; k < hidden; k++) r += h[k]! * rv[R + gi * hidden + k]!;
            xw[gi] = a; hr[gi] = r;
          }
          if (kind === "RNN") {
            for (let k = 0; k < hidden; k++) h[k] = f!(cl(xw[k]! + hr[k]!));
          } else if (kind === "GRU") {
            const prev = Float64Array.from(h);
            const z = new Float64Array(hidden), r = new Float64Array(hidden);
            for (let k = 0; k < hidden; k++) {
              z[k] = f!(cl(xw[k]! + hr[k]!));
              r[k] = f!(cl(xw[hidden + k]! + hr[hidden + k]!));
            }
            for (let k = 0; k < hidden; k++) {
              let pre: number;
              if (lbr) pre = xw[2 * hidden + k]! + r[k]! * hr[2 * hidden + k]!;
              else {
                // (r ⊙ H) · Rhᵀ + Rbh
                let acc = bv[Br + 2 * hidden + k]!;
                for (let q = 0; q < hidden; q++) acc += r[q]! * prev[q]! * rv[R + (2 * hidden + k) * hidden + q]!;
                pre = xw[2 * hidden + k]! + acc;
              }
              h[k] = (1 - z[k]!) * g!(cl(pre)) + z[k]! * prev[k]!;
            }
          } else {
            const P = d * 3 * hidden;
            for (let k = 0; k < hidden; k++) {
              const pi = pv ? pv[P + k]! : 0, po = pv ? pv[P + hidden + k]! : 0, pf = pv ? pv[P + 2 * hidden + k]! : 0;
              const i = f!(cl(xw[k]! + hr[k]! + pi * c[k]!));
              const fg = f!(cl(xw[2 * hidden + k]! + hr[2 * hidden + k]! + pf * c[k]!));
              const cc = g!(cl(xw[3 * hidden + k]! + hr[3 * hidden + k]!));
              c[k] = fg * c[k]! + i * cc;
              const o = f!(cl(xw[hidden + k]! + hr[hidden + k]! + po * c[k]!));
              h[k] = o * hAct!(c[k]!);
            }
          }
          y.set(h, ((t * dirs + d) * batch + b) * hidden);
        }
        yh.set(h, (d * batch + b) * hidden);
        yc.set(c, (d * batch + b) * hidden);
      }
    }
    const dtype: DType = x!.dtype;
    const out = (dims: number[], v: Float64Array): Tensor => makeTensor(dtype, dims, fromNumbers(dtype, v));
    if (layout === 0) {
      return [out([seq, dirs, batch, hidden], y), out([dirs, batch, hidden], yh), out([dirs, batch, hidden], yc)];
    }
    // layout 1: Y [batch, seq, dirs, hidden], Y_h / Y_c [batch, dirs, hidden]
    const yb = new Float64Array(y.length), yhb = new Float64Array(yh.length), ycb = new Float64Array(yc.length);
    for (let t = 0; t < seq; t++) for (let d = 0; d < dirs; d++) for (let b = 0; b < batch; b++) {
      for (let k = 0; k < hidden; k++) yb[((b * seq + t) * dirs + d) * hidden + k] = y[((t * dirs + d) * batch + b) * hidden + k]!;
    }
    for (let d = 0; d < dirs; d++) for (let b = 0; b < batch; b++) for (let k = 0; k < hidden; k++) {
      yhb[(b * dirs + d) * hidden + k] = yh[(d * batch + b) * hidden + k]!;
      ycb[(b * dirs + d) * hidden + k] = yc[(d * batch + b) * hidden + k]!;
    }
    return [out([batch, seq, dirs, hidden], yb), out([batch, dirs, hidden], yhb), out([batch, dirs, hidden], ycb)];
  };
}

/** Recurrent ops by ONNX op type. */
export const RECURRENT_OPS: Record<string, OpVersion[]> = {
  RNN: variants((v) => recurrent("RNN", v), 7, 14),
  GRU: variants((v) => recurrent("GRU", v), 7, 14),
  LSTM: variants((v) => recurrent("LSTM", v), 7, 14),
};
