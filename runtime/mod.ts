/**
 * opq/runtime – load a `.opq` or ONNX model and run it (WebGPU, WASM SIMD or the reference
 * kernels), and the training graphs the compressor's loop drives.
 *
 * ```ts
 * const session = await createSession("models/lenet5-fmnist.onnx");
 * const { logits } = await session.run({ input: { dtype: "float32", dims: [1, 1, 28, 28], data } });
 * ```
 * Every failure is an OpqRuntimeError whose `code` is one of RUNTIME_ERROR_CODES.
 * @module
 */
export type { Tensor, ValueInfo } from "../format/mod.ts";
export { OpqRuntimeError, RUNTIME_ERROR_CODES, type RuntimeErrorCode } from "./errors.ts";
export { type BackendChoice, createSession, type LayerInfo, type LayerProfile, type Session, type SessionInfo, type SessionOptions } from "./session.ts";
export type { BackendName } from "./backend.ts";
export { type ClassScore, classify, type ImageData8, tensor } from "./classify.ts";
export { createMatrixKernels, type GemmF32, type MatrixKernels } from "./linalg.ts";
export type { Backward, GradOp, GradResult } from "./ops/types.ts";
export { createTrainableGraph, type TrainableGraph, type TrainGraphOptions } from "./train/graph-grad.ts";
export { createParallelTrainableGraph, type ParallelTrainableGraph } from "./train/parallel.ts";
