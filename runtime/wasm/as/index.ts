// The kernel module's entry: every file's exports become the module's exports.
// Add a kernel file here and declare its exports in runtime/wasm/module.ts (KernelExports).
export * from "./common";
export * from "./elementwise";
export * from "./sparse";
export * from "./gemm";
export * from "./depthwise";
export * from "./pool";
export * from "./winograd";
export * from "./train";
export * from "./rans";
