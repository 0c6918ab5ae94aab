/**
 * The fixed parts of OPQ finetuning (paper Algorithm 1, ALGORITHMS.md §3): the masks M_i and
 * steps Δ_i of a compressed model stay as one-shot OPQ chose them, training updates the
 * full-precision weights W, and the network runs with Ŵ = M ∘ Q(W), Q(x) = Δ·round(x/Δ)
 * (Eq. 10 with the fixed Δ). Pure functions over format types; the loop is train.ts's.
 * @module
 */
import { type OpqModel, sizeOf, type Tensor } from "../format/mod.ts";
import { COMPRESS_ERROR_CODES as E, ensure } from "./errors.ts";
import type { TrainMethod } from "./train.ts";

/** What finetuning keeps fixed for one compressed layer. */
export interface LayerConstraint {
  name: string;
  dims: number[];
  /** 1 where the weight is kept (a stored index), 0 where it is pruned. */
  mask: Uint8Array;
  /** The layer's quantization step Δ_i, as float32 (the value the codebook decodes with). */
  step: number;
}

/**
 * Masks and steps of every compressed tensor of an OPQ model, by tensor name. A position whose
 * one-shot code rounded to 0 is not stored, so it is masked too. Throws INVALID_OPTION for a
 * table codebook (GM-APoT): Algorithm 1 needs a uniform step.
 */
export function layerConstraints(opq: OpqModel): Map<string, LayerConstraint> {
  const out = new Map<string, LayerConstraint>();
  for (const t of opq.compressed) {
    ensure(t.codebook.kind === "uniform", E.INVALID_OPTION, `${t.name}: finetuning needs a uniform (OPQ) codebook, not ${t.codebook.kind}`);
    const mask = new Uint8Array(sizeOf(t.dims));
    for (const i of t.indices) mask[i] = 1;
    out.set(t.name, { name: t.name, dims: [...t.dims], mask, step: Math.fround(t.codebook.step) });
  }
  return out;
}

/** Ŵ = M ∘ W: the pruned-only weights of stage 1 (written to `out`, which may be `w`). */
export function maskWeights(w: Float32Array, mask: Uint8Array, out: Float32Array = new Float32Array(w.length)): Float32Array {
  for (let i = 0; i < w.length; i++) out[i] = mask[i] ? w[i]! : 0;
  return out;
}

/**
 * Ŵ = M ∘ Δ·round(W/Δ) (Eq. 10 with the layer's fixed Δ), bit-equal to what `requantize` stores
 * and the codebook decodes: `fround(fround(Δ)·code)`. Written to `out` (may be `w`).
 */
export function quantizeFixed(w: Float32Array, mask: Uint8Array, step: number, out: Float32Array = new Float32Array(w.length)): Float32Array {
  const d = Math.fround(step);
  for (let i = 0; i < w.length; i++) out[i] = mask[i] ? d * Math.round(w[i]! / d) : 0;
  return out;
}

/**
 * The OPQ model with new codes from finetuned full-precision weights: for each compressed tensor
 * in `master`, code = round(W/Δ) at its stored positions (same Δ, so the same codebook), positions
 * whose code is now 0 dropped (indices stay strictly increasing, the mask only gets sparser).
 * Any other name in `master` (biases, other float initializers) replaces that initializer's data.
 * The input model is not modified.
 */
export function requantize(opq: OpqModel, master: ReadonlyMap<string, Float32Array>): OpqModel {
  const compressed = opq.compressed.map((t) => {
    const w = master.get(t.name);
    if (!w) return t;
    ensure(t.codebook.kind === "uniform", E.INVALID_OPTION, `${t.name}: requantize needs a uniform (OPQ) codebook`);
    ensure(w.length === sizeOf(t.dims), E.INVALID_MODEL, `${t.name}: ${w.length} weights for dims [${t.dims}]`);
    const d = Math.fround(t.codebook.step);
    const indices = new Uint32Array(t.indices.length), codes = new Int32Array(t.indices.length);
    let n = 0;
    for (const i of t.indices) {
      const code = Math.round(w[i]! / d);
      if (code === 0) continue;
      ensure(Number.isSafeInteger(code) && Math.abs(code) < 2 ** 31, E.NUMERIC, `${t.name}: weight ${w[i]} gives code ${code} with Δ ${d}`);
      indices[n] = i;
      codes[n++] = code;
    }
    return { ...t, dims: [...t.dims], indices: indices.slice(0, n), codes: codes.slice(0, n) };
  });
  const names = new Set(opq.compressed.map((t) => t.name));
  const initializers: Record<string, Tensor> = { ...opq.model.graph.initializers };
  for (const [name, w] of master) {
    if (names.has(name)) continue;
    const t = Object.hasOwn(initializers, name) ? initializers[name] : undefined;
    ensure(t && t.dtype === "float32" && t.data.length === w.length, E.INVALID_MODEL, `${name}: no float32 initializer of ${w.length} values to write back`);
    // defineProperty: an initializer may be named like an Object.prototype member.
    Object.defineProperty(initializers, name, { value: { dtype: "float32", dims: [...t.dims], data: Float32Array.from(w) }, enumerable: true, writable: true, configurable: true });
  }
  return { ...opq, model: { ...opq.model, graph: { ...opq.model.graph, initializers } }, compressed };
}

/**
 * OPQ finetuning (Algorithm 1) as a training method: steps [0, stage1Steps) train Ŵ = M ∘ W
 * (stage 1, pruned only), the rest Ŵ = M ∘ Q(W) (stage 2); `hats` are the arrays the graph reads
 * for each compressed tensor, rewritten from the master W before every step. Straight-through
 * estimator: ∂L/∂W = M ∘ ∂L/∂Ŵ, so pruned weights get neither gradient nor decay.
 */
export function opqFinetuneMethod(constraints: ReadonlyMap<string, LayerConstraint>, hats: ReadonlyMap<string, Float32Array>, stage1Steps: number): TrainMethod {
  return {
    prepare(master, ctx) {
      for (const [name, c] of constraints) {
        const w = master.get(name)!, hat = hats.get(name)!;
        if (ctx.step < stage1Steps) maskWeights(w, c.mask, hat);
        else quantizeFixed(w, c.mask, c.step, hat);
      }
    },
    trainable: (name) => constraints.get(name)?.mask,
  };
}
