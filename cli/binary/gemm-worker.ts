/**
 * The GEMM worker as a second entry point of the compiled `opq` binary (see
 * server/binary/gemm-worker.ts for why it must sit beside the main entry).
 * @module
 */
import "../../runtime/cpu/gemm-worker.ts";
