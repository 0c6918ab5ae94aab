/**
 * The server's per-model worker as an entry point of the compiled binary (see gemm-worker.ts
 * beside it): the server starts it from `./model-worker.ts` next to worker-runner.ts, which in a
 * `bun build --compile` binary is the embedded file system's root.
 * @module
 */
import "../../server/model-worker.ts";
