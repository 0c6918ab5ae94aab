/**
 * What the dense wasm kernel tests and bench/wasm-kernels-bench.ts share: a NodeSpec for one node
 * (its constant inputs given as tensors), bound through a WasmBackend, and the op table's kernel
 * for the same node (the reference it is judged by), both run on the same inputs.
 * @module
 */
import type { AttrValue, Node, Tensor } from "../../../format/mod.ts";
import type { BoundKernel, NodeSpec, RunContext } from "../../backend.ts";
import { resolveOp } from "../../ops/registry.ts";
import { Attrs, type KernelContext } from "../../ops/types.ts";
import { WasmBackend } from "../backend.ts";
import { WasmKernels } from "../module.ts";
import { ValueHeap } from "../value-heap.ts";

/** One input of a test node: a run-time value, or a constant (a weight). */
export interface CaseInput {
  tensor: Tensor;
  constant?: boolean;
}

/** Attribute values as plain JS: numbers are ints unless listed in `floats`, arrays ints, strings strings. */
export function attrValues(values: Record<string, number | number[] | string>, floats: readonly string[] = []): Record<string, AttrValue> {
  const raw: Record<string, AttrValue> = {};
  for (const [k, v] of Object.entries(values)) {
    if (typeof v === "string") raw[k] = { type: "string", value: v };
    else if (Array.isArray(v)) raw[k] = { type: "ints", value: v };
    else raw[k] = floats.includes(k) ? { type: "float", value: v } : { type: "int", value: v };
  }
  return raw;
}

/** The NodeSpec the session would build for a single node over `inputs` (shapes from the tensors). */
export function nodeSpec(opType: string, inputs: readonly (CaseInput | undefined)[], attrs: Record<string, AttrValue>, opset = 17, outputs = 1): NodeSpec {
  const names = inputs.map((x, i) => (x ? `in${i}` : ""));
  const node: Node = { opType, domain: "", name: `${opType}_0`, inputs: names, outputs: Array.from({ length: outputs }, (_, i) => `out${i}`), attrs };
  const constants = inputs.map((x) => (x?.constant ? x.tensor : undefined));
  return {
    node, name: node.name, attrs: new Attrs(attrs, opType), opset,
    inputShapes: inputs.map((x) => x?.tensor.dims), outputShapes: node.outputs.map(() => undefined),
    inputDtypes: inputs.map((x) => x?.tensor.dtype), outputDtypes: node.outputs.map(() => "float32"),
    constants, compressed: inputs.map(() => undefined),
    dense: (i) => constants[i], threads: 1,
  };
}

/** A wasm backend on a chosen build with `threads` threads, and a value heap to run bound kernels with. */
export async function testBackend(build: "simd" | "relaxed", threads: number): Promise<{ backend: WasmBackend; heap: ValueHeap; rc: RunContext } | undefined> {
  const kernels = WasmKernels.createBuild(build);
  if (!kernels) return undefined;
  const backend = (await WasmBackend.create(threads, kernels))!;
  const heap = new ValueHeap(kernels);
  return { backend, heap, rc: { alloc: (n) => heap.take(n) } };
}

/** Run a bound kernel on plain tensors (copied into wasm memory by the backend) and copy its first output out. */
export async function runBound(bound: BoundKernel, inputs: readonly (Tensor | undefined)[], rc: RunContext): Promise<Tensor> {
  const out = (await bound.run(inputs, rc))[0]!;
  return { ...out, data: (out.data as Float32Array).slice() };
}

/** The op table kernel's output for the same node (prepared as the planner would). */
export function referenceOutput(spec: NodeSpec, inputs: readonly (Tensor | undefined)[]): Tensor {
  const op = resolveOp(spec.node.opType, spec.opset);
  if (!op) throw new Error(`no reference kernel for ${spec.node.opType}`);
  const ctx: KernelContext = { opset: spec.opset, threads: 1, outputCount: spec.node.outputs.length };
  if (op.prepare) ctx.prepared = op.prepare(spec.constants as (Tensor | undefined)[], spec.attrs, { opset: spec.opset, threads: 1, inputShapes: spec.inputShapes });
  return op.kernel(inputs, spec.attrs, ctx)[0]!;
}
