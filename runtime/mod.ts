/**
 * opq/runtime – load a `.opq` or ONNX model and run it on the CPU with reference kernels.
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
export { OPS, resolveOp } from "./ops/registry.ts";
export type { Kernel, OpVersion } from "./ops/types.ts";
export { type Plan, planModel, resolveKernels } from "./planner.ts";
export { type OuterScope, runPlan, type StepObserver, validateFeeds } from "./session.ts";
export { stopCpuWorkers } from "./cpu/worker-pool.ts";
export { createMatrixKernels, type GemmF32, type MatrixKernels } from "./linalg.ts";
export { type Backward, GRAD_OPS, type GradOp, type GradResult } from "./train/grad-ops.ts";
export { createTrainableGraph, type TrainableGraph } from "./train/graph-grad.ts";
export { createParallelTrainableGraph, type ParallelTrainableGraph } from "./train/parallel.ts";
export { type CrossEntropy, softmaxCrossEntropy } from "./train/loss.ts";
