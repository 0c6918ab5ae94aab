/**
 * Helpers the kernel tests and the kernel benchmark share: a seeded generator (so a failing random
 * case reproduces) and the comparison every fast kernel is judged by against its reference.
 * @module
 */
import type { Tensor } from "../../format/mod.ts";
import { sizeOf } from "../../format/mod.ts";
import { Attrs } from "../ops/types.ts";
import type { AttrValue } from "../../format/mod.ts";
import { mulberry32 } from "../../format/mod.ts";

/** Max |fast - ref| allowed, relative to max(1, max |ref|), for float32 kernels that reorder sums. */
export const FLOAT32_KERNEL_TOLERANCE = 1e-5;

/** Seeded uniform [0, 1) stream (mulberry32). */
export const seededRandom = mulberry32;

/** A float32 tensor of uniform values in [-1, 1); `zeros` is the fraction forced to exactly 0. */
export function randomTensor(rand: () => number, dims: number[], zeros = 0): Tensor {
  const data = new Float32Array(sizeOf(dims));
  for (let i = 0; i < data.length; i++) data[i] = rand() < zeros ? 0 : rand() * 2 - 1;
  return { dtype: "float32", dims, data };
}

/** A float32 tensor from values. */
export function tensor(dims: number[], values: ArrayLike<number>): Tensor {
  return { dtype: "float32", dims, data: Float32Array.from(values) };
}

/** Max |a - b| / max(1, max |b|) over two same-shaped numeric tensors; Infinity if the shapes differ. */
export function relativeDiff(a: Tensor, b: Tensor): number {
  if (a.dims.length !== b.dims.length || a.dims.some((d, i) => d !== b.dims[i])) return Infinity;
  const x = a.data as ArrayLike<number>, y = b.data as ArrayLike<number>;
  if (x.length !== y.length) return Infinity;
  let diff = 0, scale = 1;
  for (let i = 0; i < x.length; i++) {
    diff = Math.max(diff, Math.abs(x[i]! - y[i]!));
    scale = Math.max(scale, Math.abs(y[i]!));
    if (Number.isNaN(x[i]) !== Number.isNaN(y[i])) return Infinity;
  }
  return diff / scale;
}

/** Attrs from plain values: numbers become ints (floats with `floats`), arrays ints, strings strings. */
export function attrs(opType: string, values: Record<string, number | number[] | string>, floats: string[] = []): Attrs {
  const raw: Record<string, AttrValue> = {};
  for (const [k, v] of Object.entries(values)) {
    if (typeof v === "string") raw[k] = { type: "string", value: v };
    else if (Array.isArray(v)) raw[k] = floats.includes(k) ? { type: "floats", value: v } : { type: "ints", value: v };
    else raw[k] = floats.includes(k) ? { type: "float", value: v } : { type: "int", value: v };
  }
  return new Attrs(raw, opType);
}

/** The context tests run kernels with. */
export const TEST_CONTEXT = { opset: 17, threads: 1 } as const;
