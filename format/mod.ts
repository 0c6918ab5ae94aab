/**
 * opq/format – the `.opq` file and the ONNX files it is made from: reading, writing and the
 * shared model types. The byte layout is specified in SPEC.md and at the top of container.ts.
 * @module
 */
export * from "./graph.ts";
export * from "./errors.ts";
export { readOnnx, readTensorProto, readTensorProtoNamed } from "./onnx-reader.ts";
export { checkCompressedTensor, toDenseModel, writeOnnx, writeTensorProto } from "./onnx-writer.ts";
export { type DecodeOptions, decodeOpq, type EncodedModel, type EncodedWeights, encodedWeights, type EncodeOptions, encodeOpq, isOpqBytes, OPQ_FORMAT_VERSION, releaseDecoded, type WeightCodec } from "./container.ts";
export { type InspectOptions, type OpqByteBreakdown, type OpqInspection, type OpqLayerRow, inspectOpq, sizeRatio } from "./inspect.ts";
export { type EntropyBound, entropyBound, streamBits } from "./entropy.ts";
export { bitWidth, channelStarts, packBits, type PackedCodeGroups, type PackedCodes, packCodeGroups, packCodes, unpackBits, unpackCodeGroups, unpackCodes } from "./codecs/bitpack.ts";
export { mulberry32 } from "./prng.ts";
export { readSafetensors, type SafetensorsDType, type SafetensorsFile, type SafeTensor, type SafeTensorInput, safeTensorFloat32, writeSafetensors } from "./safetensors.ts";
export { CLASSES_KEY, defaultPreprocess, FASHION_MNIST_PREPROCESS, parsePreprocess, type Preprocess, PREPROCESS_KEY, preprocessedShape, preprocessImage } from "./preprocess.ts";
export { assertNotInput, type AtomicWriteOptions, writeFileAtomic, type WriteStep } from "./atomic-write.ts";
