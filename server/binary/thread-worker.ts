/**
 * The wasm thread-team worker as an entry point of the compiled binary, for the same reason as
 * gemm-worker.ts beside it: the runtime starts it from `./thread-worker.ts` next to the module
 * that does, which in a `bun build --compile` binary is the embedded file system's root.
 * @module
 */
import "../../runtime/wasm/thread-worker.ts";
