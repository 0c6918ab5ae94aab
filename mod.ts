/**
 * opq – one-shot pruning-quantization for CNNs and an edge inference runtime for the result.
 * The essentials of each package; the packages themselves are `opq/runtime`, `opq/compressor`,
 * `opq/format` and `opq/server`.
 *
 * ```ts
 * import { createSession } from "opq";
 * const session = await createSession(bytes); // a .opq or .onnx file's bytes
 * const { logits } = await session.run({ input: { dtype: "float32", dims: [1, 1, 28, 28], data } });
 * ```
 * @module
 */
export { createSession, OpqRuntimeError, type Session, type SessionOptions } from "./runtime/mod.ts";
export { compressModel, type CompressOptions, type CompressReport, encodeCompressed } from "./compressor/mod.ts";
export { decodeOpq, encodeOpq, FormatError, inspectOpq, isOpqBytes, type Model, type OpqModel, readOnnx, sizeRatio, type Tensor, type ValueInfo, writeOnnx } from "./format/mod.ts";
