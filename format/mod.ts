/**
 * opq/format – the `.opq` file and the ONNX files it is made from: reading, writing and the
 * shared model types. The byte layout is specified in SPEC.md and at the top of container.ts.
 * @module
 */
export * from "./graph.ts";
export * from "./errors.ts";
