/**
 * Per-session recycling of float32 intermediates. Every run used to allocate each activation
 * afresh and leave the old ones to the garbage collector, which frees typed arrays late: peak RSS
 * grew with the number of runs, far above the live set (mobilenet_v2-224, batch 8: ~330 MiB after
 * one run, 790 MiB over a benchmark, for ~100 MiB of intermediates alive at once). The session now
 * hands released intermediates to this pool, keyed by length, and kernels take their outputs from
 * it (`KernelContext.alloc`), so a steady run allocates almost nothing.
 * @module
 */
import type { Tensor } from "../format/mod.ts";

/**
 * Free float32 blocks, best fit: a request takes the smallest free block that holds it (a view of
 * its first `length` floats), so one block serves layers of different sizes and the pool stays
 * near the peak of live intermediates instead of one buffer per distinct size. Blocks not taken
 * during a run are dropped at its end (the shapes may have changed).
 */
export class BufferPool {
  /** Free blocks in ascending length. */
  #free: Float32Array[] = [];
  /** Free blocks left from the previous run, not taken yet: dropped by endRun. */
  #previous: Float32Array[] = [];
  /** The block behind each view handed out. */
  #blockOf = new WeakMap<Float32Array, Float32Array>();

  /** A buffer of `length` floats: a view of a free block (contents unspecified), else a new zeroed array. */
  take(length: number): Float32Array {
    const block = takeFit(this.#free, length) ?? takeFit(this.#previous, length) ?? new Float32Array(length);
    if (block.length === length) return block;
    const view = block.subarray(0, length);
    this.#blockOf.set(view, block);
    return view;
  }

  /** True if `buffer` is a view of a larger block this pool handed out. */
  isView(buffer: Float32Array): boolean {
    return this.#blockOf.has(buffer);
  }

  /** True if `buffer` can be given back: handed out by this pool, or an array owning its whole ArrayBuffer. */
  accepts(buffer: Float32Array): boolean {
    return this.#blockOf.has(buffer) ||
      (buffer.buffer instanceof ArrayBuffer && buffer.byteOffset === 0 && buffer.byteLength === buffer.buffer.byteLength);
  }

  /** Hand back a buffer nothing else references any more (see `accepts`). */
  give(buffer: Float32Array): void {
    insertSorted(this.#free, this.#blockOf.get(buffer) ?? buffer);
  }

  /** Start a run: what is free now is kept only if this run takes it again. */
  beginRun(): void {
    this.#previous = this.#free;
    this.#free = [];
  }

  /** End a run: drop the blocks of the previous run it did not take. */
  endRun(): void {
    this.#previous = [];
  }

  /** Floats held free (tests, diagnostics). */
  get freeFloats(): number {
    let n = 0;
    for (const b of this.#free) n += b.length;
    for (const b of this.#previous) n += b.length;
    return n;
  }
}

/** Remove and return the smallest block of `sorted` with at least `length` floats. */
function takeFit(sorted: Float32Array[], length: number): Float32Array | undefined {
  let lo = 0, hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]!.length < length) lo = mid + 1;
    else hi = mid;
  }
  return lo < sorted.length ? sorted.splice(lo, 1)[0] : undefined;
}

function insertSorted(sorted: Float32Array[], block: Float32Array): void {
  let i = sorted.length;
  while (i > 0 && sorted[i - 1]!.length > block.length) i--;
  sorted.splice(i, 0, block);
}

/**
 * Give back the buffers of `released` values that are safe to reuse: float32 arrays the pool
 * accepts (its own views, or arrays owning a whole non-shared ArrayBuffer), not a constant's, and
 * not sharing a buffer with a value still in `live` (a Reshape or Identity output is a view of its
 * input's buffer).
 */
export function recycle(released: readonly Tensor[], live: ReadonlyMap<string, Tensor>, constantBuffers: ReadonlySet<ArrayBufferLike>, pool: BufferPool): void {
  let liveBuffers: Set<ArrayBufferLike> | undefined;
  const given = new Set<ArrayBufferLike>();
  for (const t of released) {
    const d = t.data;
    if (!(d instanceof Float32Array) || !pool.accepts(d)) continue;
    if (constantBuffers.has(d.buffer) || given.has(d.buffer)) continue;
    liveBuffers ??= new Set([...live.values()].map((v) => (v.data as { buffer?: ArrayBufferLike }).buffer).filter((b) => b !== undefined));
    if (liveBuffers.has(d.buffer)) continue;
    given.add(d.buffer);
    pool.give(d);
  }
}
