// Module-wide exports. Every pointer a kernel takes is a byte offset into the session's one
// shared memory; no kernel allocates, and the module has no data segment (each worker
// instantiates it on the same memory, and a data segment would be re-copied every time).

/** Which build this is: 1 with relaxed SIMD (FMA), 0 with plain SIMD. */
export function buildFeatures(): i32 {
  return ASC_FEATURE_RELAXED_SIMD ? 1 : 0;
}
