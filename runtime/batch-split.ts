/**
 * Batch splitting: a CNN classifier computes each image of a batch independently, so the session
 * may run a batch of N as N runs of one image. That keeps the activation arena at its batch-1
 * size (ResNet-18 at batch 8: 4 MB instead of 32 MB), keeps each layer's working set in cache,
 * and lets a server answer other requests between images. It is used only when every node of the
 * plan provably treats the batch axis independently (the rules below, checked on the inferred
 * shapes at load); any other graph runs whole.
 * @module
 */
import type { Dim, Tensor } from "../format/mod.ts";
import type { Plan, PlannedStep } from "./planner.ts";

/** Ops that act on each element, or each image, alone (no attribute can make them mix the batch). */
const PER_IMAGE = new Set([
  "Conv", "ConvTranspose", "Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "Elu", "Selu",
  "Exp", "Log", "Neg", "Abs", "Sqrt", "Erf", "Identity", "Dropout", "Cast", "Softplus", "PRelu",
  "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "BatchNormalization", "InstanceNormalization",
]);
/** Broadcasting binary ops: per image when every run-time operand carries the batch axis first and constants broadcast over it. */
const BROADCAST = new Set(["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean"]);

/** The batch symbol of a plan whose nodes all keep images apart, else undefined. */
export function batchSymbol(plan: Plan): string | undefined {
  const first = plan.inputs[0]?.shape?.[0];
  if (typeof first !== "string" || !first) return undefined;
  if (!plan.inputs.every((v) => v.shape?.[0] === first)) return undefined;
  const carries = (name: string) => plan.shapes.get(name)?.[0] === first;
  const isConst = (name: string) => plan.constants.has(name);
  for (const s of plan.steps) {
    try {
      if (!separable(s, first, carries, isConst, plan)) return undefined;
    } catch {
      return undefined; // a malformed attribute: run the batch whole; the kernel reports it at run()
    }
  }
  if (!plan.outputs.every((o) => carries(o.name))) return undefined;
  return first;
}

function separable(s: PlannedStep, batch: string, carries: (n: string) => boolean, isConst: (n: string) => boolean, plan: Plan): boolean {
  const { node, attrs } = s;
  if (s.subplans) return false;
  const runtimeInputs = node.inputs.filter((n) => n && !isConst(n));
  const outputsCarry = node.outputs.every((o) => !o || carries(o));
  if (!outputsCarry) return false;
  const op = node.opType;
  if (PER_IMAGE.has(op)) {
    // Only the data input may be a run-time value (weights, bounds and scales are constants).
    if (op === "BatchNormalization" && node.outputs.filter(Boolean).length > 1) return false;
    return runtimeInputs.length === 1 && carries(runtimeInputs[0]!) && runtimeInputs[0] === node.inputs[0];
  }
  if (BROADCAST.has(op)) {
    const rank = plan.shapes.get(node.outputs[0]!)?.length ?? 0;
    return node.inputs.every((n) => {
      if (!n) return true;
      if (!isConst(n)) return carries(n);
      const dims: readonly Dim[] = plan.constants.get(n)!.dims;
      return dims.length < rank || dims[0] === 1;
    });
  }
  const x = node.inputs[0];
  if (!x || isConst(x) || !carries(x)) return false;
  const onlyData = runtimeInputs.length === 1;
  switch (op) {
    case "Flatten": return onlyData && attrs.int("axis", 1) >= 1;
    case "Gemm": return onlyData && attrs.int("transA", 0) === 0;
    case "MatMul": return onlyData && (plan.shapes.get(x)?.length ?? 0) >= 2;
    case "Softmax": case "LogSoftmax": return onlyData && attrs.int("axis", s.ctx.opset >= 13 ? -1 : 1) !== 0;
    case "Transpose": return onlyData && attrs.ints("perm", [])[0] === 0;
    case "Concat": return runtimeInputs.every(carries) && attrs.int("axis", 0) !== 0 && attrs.int("axis", 0) !== -(plan.shapes.get(x)?.length ?? 0);
    case "Reshape": {
      const target = node.inputs[1] && plan.constants.get(node.inputs[1]);
      if (!onlyData || !target) return false;
      const t = Array.from(target.data as ArrayLike<number | bigint>, Number);
      // [-1 | 0, positive…]: the first axis stays the batch whatever its size.
      return (t[0] === -1 || t[0] === 0) && t.slice(1).every((d) => d > 0) && attrs.int("allowzero", 0) === 0;
    }
    default: return false;
  }
}

/** Images `i … i+count−1` of a batch tensor (a view, no copy). */
export function imagesOf(t: Tensor, i: number, count: number): Tensor {
  const per = t.data.length / t.dims[0]!;
  const data = (t.data as Float32Array).subarray(i * per, (i + count) * per) as Tensor["data"];
  return { dtype: t.dtype, dims: [count, ...t.dims.slice(1)], data };
}
