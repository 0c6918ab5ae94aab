/**
 * The zero-order entropy bound a `.opq` file is measured against (SPEC.md §8), computed from
 * the symbols in the model alone, independent of any encoder:
 *
 *   gapsBits  = Σ_t n_t · H0(g_t)   over compressed tensors t, g_t its gaps (SPEC.md §4:
 *               g_k = i_k − i_{k−1} − 1, i_{−1} = −1), each gap value its own symbol
 *   codesBits = Σ_t n_t · H0(c_t)   c_t its integer codes, each code value its own symbol
 *   exactBytes = raw bytes of every kept tensor (initializers and tensor attributes, in
 *               subgraphs too; strings count their UTF-8 bytes)
 *   totalBytes = (gapsBits + codesBits) / 8 + exactBytes
 *
 * H0(x) = −Σ_v (c_v/n) log2(c_v/n) over the distinct values v occurring c_v times among the
 * n symbols; a tensor with one distinct value (or none) contributes 0 bits.
 * @module
 */
import { DTYPE_BYTES, type Graph, type OpqModel, type Tensor } from "./graph.ts";

/** The bound, in bits for the entropy-coded streams and bytes for the rest. */
export interface EntropyBound {
  gapsBits: number;
  codesBits: number;
  exactBytes: number;
  totalBytes: number;
}

/** n · H0 of a stream of integer symbols, in bits. */
export function zeroOrderBits(values: ArrayLike<number>): number {
  const n = values.length;
  if (n === 0) return 0;
  // Dense counts for small symbols (the common case), a Map for the tail.
  const small = new Float64Array(4096);
  const tail = new Map<number, number>();
  for (let k = 0; k < n; k++) {
    const v = values[k]!;
    if (v >= 0 && v < 4096) small[v]!++;
    else tail.set(v, (tail.get(v) ?? 0) + 1);
  }
  let bits = 0;
  const add = (c: number): void => { if (c > 0) bits += c * Math.log2(n / c); };
  for (let v = 0; v < 4096; v++) add(small[v]!);
  for (const c of tail.values()) add(c);
  return bits;
}

/** Gaps of strictly increasing indices (SPEC.md §4), without validation. */
function gapsOf(indices: ArrayLike<number>): Uint32Array {
  const g = new Uint32Array(indices.length);
  let prev = -1;
  for (let k = 0; k < indices.length; k++) { g[k] = indices[k]! - prev - 1; prev = indices[k]!; }
  return g;
}

/** One compressed tensor's share of the bound: n·H0 of its gaps plus n·H0 of its codes, in bits. */
export function streamBits(indices: ArrayLike<number>, codes: ArrayLike<number>): number {
  return zeroOrderBits(gapsOf(indices)) + zeroOrderBits(codes);
}

/** Every tensor a `.opq` keeps exactly: initializers and tensor attributes, subgraphs included. */
export function keptTensors(g: Graph, out: Tensor[] = []): Tensor[] {
  out.push(...Object.values(g.initializers));
  for (const n of g.nodes) {
    for (const a of Object.values(n.attrs)) {
      if (a.type === "tensor") out.push(a.value);
      else if (a.type === "graph") keptTensors(a.value, out);
    }
  }
  return out;
}

/** Raw bytes of a tensor's data (UTF-8 bytes for strings). */
export function tensorBytes(t: Tensor): number {
  if (t.dtype === "string") {
    const enc = new TextEncoder();
    return (t.data as string[]).reduce((s, x) => s + enc.encode(x).length, 0);
  }
  return t.data.length * DTYPE_BYTES[t.dtype];
}

/** The zero-order entropy bound of a model (definition in the module comment). */
export function entropyBound(m: OpqModel): EntropyBound {
  let gapsBits = 0, codesBits = 0, exactBytes = 0;
  for (const t of m.compressed) {
    gapsBits += zeroOrderBits(gapsOf(t.indices));
    codesBits += zeroOrderBits(t.codes);
  }
  for (const t of keptTensors(m.model.graph)) exactBytes += tensorBytes(t);
  return { gapsBits, codesBits, exactBytes, totalBytes: (gapsBits + codesBits) / 8 + exactBytes };
}
