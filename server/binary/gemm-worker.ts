/**
 * The GEMM worker as a second entry point of the compiled server binary. The runtime starts its
 * workers from `./gemm-worker.ts` beside the module that does, and in a `bun build --compile`
 * binary every bundled module sits at the root of the embedded file system, so the worker must be
 * embedded there too: entry points side by side in this folder put it at `/$bunfs/root/gemm-worker.ts`.
 * @module
 */
import "../../runtime/cpu/gemm-worker.ts";
