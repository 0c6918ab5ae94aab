/**
 * opq/server – the inference server: a Hono app (`createApp`) over a registry of loaded `.opq`
 * models, runnable on Bun, Deno and Node (`listen`). `opq serve` is the command-line front.
 * @module
 */
export { createApp, type AppOptions, type OpqApp } from "./app.ts";
export { DEFAULT_LIMITS, type ServerLimits, ServerState } from "./context.ts";
export { describeError, ERROR_STATUS, type ErrorBody, type ErrorCode, SERVER_ERROR_CODES, ServerError, type ServerErrorCode } from "./errors.ts";
export { listen, type ListenOptions, type RunningServer } from "./listen.ts";
export { Metrics } from "./metrics.ts";
export { DEFAULT_QUEUE_LIMITS, defaultCaps, describeLayers, type LayerSummary, loadModelDir, loadModelFile, loadModelFiles, ModelRegistry, type ModelRunner, type ModelSummary, type ServedModel, serveModel, type SessionInfo } from "./registry.ts";
export { type QueueLimits, WorkQueue } from "./queue.ts";
export type { RequestCaps } from "./schema.ts";
export { DEFAULT_TOPK, type InferResponse, type TopKEntry } from "./routes/infer.ts";
export { decodeSampleBundle, FMNIST_CLASSES, loadSampleBundle, type SampleBundle, sampleInput } from "./samples.ts";
