/**
 * Run-time values in wasm memory: every float32 intermediate a session run produces is a view of a
 * block of the session's kernel memory (wasm/module.ts), so wasm kernels read and write them in
 * place. A block is freed when the value is released after its last reader, unless a live value
 * still views it (a Reshape or Flatten output shares its input's block).
 * @module
 */
import type { Tensor } from "../../format/mod.ts";
import type { WasmKernels } from "./module.ts";

/** Blocks handed out for values of the running session. */
export class ValueHeap {
  /** Block size by address, for blocks this heap allocated and has not freed. */
  #blocks = new Map<number, number>();

  constructor(readonly kernels: WasmKernels) {}

  /** A float32 view of `length` elements (contents unspecified) in a new block. */
  take(length: number): Float32Array {
    const ptr = this.kernels.alloc(Math.max(1, length) * 4);
    this.#blocks.set(ptr, Math.max(1, length) * 4);
    return this.kernels.f32(ptr, length);
  }

  /** The block a view starts in, if this heap owns it. */
  #blockOf(d: Float32Array): number | undefined {
    const a = this.kernels.addressOf(d);
    return a >= 0 && this.#blocks.has(a) ? a : undefined;
  }

  /** Free the blocks of `released` values that no value in `live` still views. */
  release(released: readonly Tensor[], live: Iterable<Tensor>): void {
    let candidates: number[] | undefined;
    for (const t of released) {
      if (!(t.data instanceof Float32Array)) continue;
      const b = this.#blockOf(t.data);
      if (b !== undefined) (candidates ??= []).push(b);
    }
    if (!candidates) return;
    for (const v of live) {
      if (!(v.data instanceof Float32Array)) continue;
      const a = this.kernels.addressOf(v.data);
      if (a < 0) continue;
      candidates = candidates.filter((b) => a < b || a >= b + this.#blocks.get(b)!);
      if (!candidates.length) return;
    }
    for (const b of new Set(candidates)) this.#free(b);
  }

  /** True if `d` is a view of the session's wasm memory (a heap block, the arena or a weight): the session's, never the caller's. */
  inMemory(d: unknown): boolean {
    return d instanceof Float32Array && this.kernels.addressOf(d) >= 0;
  }

  /** Free every block still held (end of a run: what is left belongs to no value). */
  clear(): void {
    for (const b of [...this.#blocks.keys()]) this.#free(b);
  }

  #free(b: number): void {
    this.#blocks.delete(b);
    this.kernels.free(b);
  }
}
