/**
 * Helpers the WGSL op files share: which nodes are plain float32, static dims, and the
 * element-count and stride arithmetic of index math done on the host.
 * @module
 */
import type { NodeSpec } from "../../backend.ts";

/** Why a node is not float32 in and out (undefined if it is). Optional inputs (`""`) are skipped. */
export function notF32(spec: NodeSpec, slots?: readonly number[]): string | undefined {
  const idx = slots ?? spec.node.inputs.map((_, i) => i);
  for (const i of idx) {
    if (!spec.node.inputs[i]) continue;
    if (spec.inputDtypes[i] !== "float32") return `input ${i} is ${spec.inputDtypes[i] ?? "of unknown type"}, not float32`;
  }
  if (spec.outputDtypes[0] !== "float32") return `output is ${spec.outputDtypes[0] ?? "of unknown type"}, not float32`;
  return undefined;
}

/** Why a compressed weight in a slot other than `allowed` blocks the node (undefined if none). */
export function compressedElsewhere(spec: NodeSpec, allowed: readonly number[] = []): string | undefined {
  const at = spec.compressed.findIndex((c, i) => c !== undefined && !allowed.includes(i));
  return at >= 0 ? `compressed tensor at input ${at}` : undefined;
}

/** Number of elements of `dims`. */
export const sizeOf = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);

/** Row-major strides of `dims`. */
export function stridesOf(dims: readonly number[]): number[] {
  const s = new Array<number>(dims.length);
  let acc = 1;
  for (let d = dims.length - 1; d >= 0; d--) { s[d] = acc; acc *= dims[d]!; }
  return s;
}

/** Highest rank the index-walking kernels (broadcast, transpose) take. */
export const MAX_RANK = 6;
