/**
 * The repository files the compiled `opq` binary carries (imported as files, so `bun build
 * --compile` embeds them), registered before the CLI loads so cli/shared.ts's bundledFile finds them.
 * @module
 */
import model from "../../models/resnet20-fmnist.onnx" with { type: "file" };
import samples from "../../models/fmnist-samples.json" with { type: "file" };

(globalThis as { __opqEmbedded?: Record<string, string> }).__opqEmbedded = {
  "models/resnet20-fmnist.onnx": model,
  "models/fmnist-samples.json": samples,
};

// onnxruntime-web's WASM build (the peer `opq bench` and `opq eval --runtime ort` run), which it
// otherwise loads from beside its own module in node_modules.
import ortMjs from "../../node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.mjs" with { type: "file" };
import ortWasm from "../../node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm" with { type: "file" };

Object.assign((globalThis as { __opqEmbedded?: Record<string, string> }).__opqEmbedded!, {
  "onnxruntime-web/ort-wasm-simd-threaded.mjs": ortMjs,
  "onnxruntime-web/ort-wasm-simd-threaded.wasm": ortWasm,
});
