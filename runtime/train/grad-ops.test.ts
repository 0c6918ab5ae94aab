/**
 * Every op's `grad` (declared beside its kernels) against central finite differences of its own forward.
 *
 * Tolerance: the probe loss is L = Σ r·Y in float64 over the float32 outputs, and every op here
 * is linear or piecewise linear in any single input element, so (L(x+h) − L(x−h)) / 2h equals the
 * derivative exactly as long as no kink (ReLU at 0, a max-pool tie, a clip bound) lies within h.
 * Inputs are drawn on a grid that keeps kinks ≥ 2h away. What is left is float32 rounding of the
 * outputs that depend on the perturbed element: ~K·6e-8·|y| each (K ≤ 100 terms, |y| ≲ 10) over
 * 2h = 2e-2, i.e. ≲ 1e-4. We allow 1e-3 + 1e-3·|g|: a wrong index or a missing term is off by O(|g|) ≥ 0.05.
 */
import { describe, expect, test } from "bun:test";
import { mulberry32, type AttrValue, type Tensor } from "../../format/mod.ts";
import { Attrs } from "../ops/types.ts";
import { resolveOp } from "../ops/registry.ts";
import { reduceToShape } from "../ops/elementwise.ts";

/** The backward of an op at the newest opset. */
const gradOf = (opType: string) => resolveOp(opType, 99)?.grad;

const H = 1e-2;
const rnd = mulberry32(7);

/** Values on a grid of 0.05 spaced away from 0 (|x| ≥ 0.05), distinct enough that max-pool ties and ReLU kinks stay ≥ 2h away. */
function gridTensor(dims: number[]): Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = (Math.floor(rnd() * 80) - 40 + 0.5) * 0.05 + (rnd() - 0.5) * 0.01;
  return { dtype: "float32", dims, data };
}

const ints = (value: number[]): AttrValue => ({ type: "ints", value });
const int = (value: number): AttrValue => ({ type: "int", value });
const float = (value: number): AttrValue => ({ type: "float", value });

/**
 * Check the forward against the inference kernel (of `opset`; summation order differs, so 1e-5 on
 * values of magnitude ≲ 10), then ∂(Σ r·Y)/∂input for every input in `wrt`, at up to 40 elements each.
 */
function gradCheck(opType: string, inputs: (Tensor | undefined)[], attrs: Record<string, AttrValue>, wrt: number[], opset = 13): number {
  const op = gradOf(opType)!, a = new Attrs(attrs, opType);
  const { outputs, backward } = op(inputs, a);
  const ref = resolveOp(opType, opset)!.kernel(inputs, a, { opset, threads: 1 });
  outputs.forEach((o, k) => {
    expect(o.dims).toEqual(ref[k]!.dims);
    const rd = ref[k]!.data as Float32Array, od = o.data as Float32Array;
    for (let i = 0; i < od.length; i++) if (!(Math.abs(od[i]! - rd[i]!) <= 1e-5)) throw new Error(`${opType} output ${k}[${i}]: ${od[i]} vs inference ${rd[i]}`);
  });
  const r = outputs.map((o) => Float32Array.from({ length: o.data.length }, () => rnd() * 2 - 1));
  const probe = () => {
    const ys = op(inputs, a).outputs;
    let s = 0;
    ys.forEach((y, k) => { const d = y.data as Float32Array; for (let i = 0; i < d.length; i++) s += r[k]![i]! * d[i]!; });
    return s;
  };
  const grads = backward(r, inputs.map((_, i) => wrt.includes(i)));
  let worst = 0;
  for (const i of wrt) {
    const x = inputs[i]!.data as Float32Array, g = grads[i]!;
    expect(g.length).toBe(x.length);
    const picks = x.length <= 40 ? Array.from(x.keys()) : Array.from({ length: 40 }, () => Math.floor(rnd() * x.length));
    for (const j of picks) {
      const v = x[j]!;
      x[j] = v + H; const up = probe();
      x[j] = v - H; const down = probe();
      x[j] = v;
      const fd = (up - down) / (2 * H);
      const err = Math.abs(fd - g[j]!);
      worst = Math.max(worst, err / (1 + Math.abs(g[j]!)));
      if (err > 1e-3 + 1e-3 * Math.abs(g[j]!)) throw new Error(`${opType} input ${i}[${j}]: backward ${g[j]} vs finite difference ${fd}`);
    }
  }
  return worst;
}

describe("op grad backward = finite differences", () => {
  test("Conv: pads, strides, dilations, bias", () => {
    const attrs = { pads: ints([1, 0, 2, 1]), strides: ints([2, 1]), dilations: ints([1, 2]) };
    expect(gradCheck("Conv", [gridTensor([2, 3, 7, 6]), gridTensor([4, 3, 3, 2]), gridTensor([4])], attrs, [0, 1, 2])).toBeLessThan(1e-3);
  });
  test("Conv: grouped and depthwise, auto_pad SAME_UPPER", () => {
    expect(gradCheck("Conv", [gridTensor([1, 4, 5, 5]), gridTensor([6, 2, 3, 3]), undefined], { group: int(2), pads: ints([1, 1, 1, 1]) }, [0, 1])).toBeLessThan(1e-3);
    expect(gradCheck("Conv", [gridTensor([2, 3, 6, 6]), gridTensor([3, 1, 3, 3]), gridTensor([3])], { group: int(3), auto_pad: { type: "string", value: "SAME_UPPER" }, strides: ints([2, 2]) }, [0, 1, 2])).toBeLessThan(1e-3);
  });
  test("Gemm: every transpose, alpha/beta, broadcast C", () => {
    for (const [tA, tB] of [[0, 0], [0, 1], [1, 0], [1, 1]] as const) {
      const a = gridTensor(tA ? [4, 3] : [3, 4]), b = gridTensor(tB ? [5, 4] : [4, 5]);
      for (const c of [gridTensor([5]), gridTensor([3, 1]), gridTensor([3, 5])]) {
        gradCheck("Gemm", [a, b, c], { transA: int(tA), transB: int(tB), alpha: float(0.7), beta: float(1.3) }, [0, 1, 2]);
      }
    }
  });
  test("MatMul 2-D", () => {
    gradCheck("MatMul", [gridTensor([3, 6]), gridTensor([6, 2])], {}, [0, 1]);
  });
  test("Relu, Clip (inputs and attributes)", () => {
    gradCheck("Relu", [gridTensor([2, 3, 4])], {}, [0]);
    const bound = (v: number): Tensor => ({ dtype: "float32", dims: [], data: Float32Array.of(v) });
    gradCheck("Clip", [gridTensor([40]), bound(-0.51), bound(0.76)], {}, [0]);
    gradCheck("Clip", [gridTensor([40])], { min: float(-0.26), max: float(0.51) }, [0], 6);
  });
  test("Add with broadcasting", () => {
    gradCheck("Add", [gridTensor([2, 3, 4, 4]), gridTensor([3, 1, 1])], {}, [0, 1]);
    gradCheck("Add", [gridTensor([4]), gridTensor([2, 3, 4])], {}, [0, 1]);
  });
  test("MaxPool: pads, strides, ceil_mode, dilation", () => {
    gradCheck("MaxPool", [gridTensor([2, 2, 6, 7])], { kernel_shape: ints([2, 2]), strides: ints([2, 2]) }, [0]);
    gradCheck("MaxPool", [gridTensor([1, 2, 7, 7])], { kernel_shape: ints([3, 3]), strides: ints([2, 2]), pads: ints([1, 1, 1, 1]), ceil_mode: int(1) }, [0]);
    gradCheck("MaxPool", [gridTensor([1, 1, 7, 7])], { kernel_shape: ints([2, 2]), dilations: ints([2, 2]) }, [0]);
  });
  test("AveragePool with and without count_include_pad", () => {
    for (const cip of [0, 1]) {
      gradCheck("AveragePool", [gridTensor([2, 2, 7, 6])], { kernel_shape: ints([3, 3]), strides: ints([2, 2]), pads: ints([1, 1, 1, 1]), count_include_pad: int(cip) }, [0]);
    }
    gradCheck("AveragePool", [gridTensor([1, 2, 7, 7])], { kernel_shape: ints([2, 2]), strides: ints([2, 2]), ceil_mode: int(1) }, [0]);
  });
  test("GlobalAveragePool, Flatten, Reshape, Identity", () => {
    gradCheck("GlobalAveragePool", [gridTensor([2, 3, 4, 5])], {}, [0]);
    gradCheck("Flatten", [gridTensor([2, 3, 4])], { axis: int(2) }, [0]);
    const shape: Tensor = { dtype: "int64", dims: [2], data: BigInt64Array.of(0n, -1n) };
    const r = gradOf("Reshape")!([gridTensor([2, 3, 4]), shape], new Attrs({}, "Reshape"));
    expect(r.outputs[0]!.dims).toEqual([2, 12]);
    gradCheck("Reshape", [gridTensor([2, 3, 4]), shape], {}, [0]);
    gradCheck("Identity", [gridTensor([5])], {}, [0]);
  });
  test("reduceToShape sums over broadcast axes", () => {
    const d = Float32Array.from({ length: 12 }, (_, i) => i);
    expect(Array.from(reduceToShape(d, [2, 2, 3], [2, 1, 1]))).toEqual([0 + 1 + 2 + 3 + 4 + 5, 6 + 7 + 8 + 9 + 10 + 11]);
    expect(Array.from(reduceToShape(d, [2, 2, 3], [3]))).toEqual([0 + 3 + 6 + 9, 1 + 4 + 7 + 10, 2 + 5 + 8 + 11]);
  });

  test("Conv 3×3/1 pad 1 on the inference paths (Winograd; CSR for pruned weights), dX as the flipped conv of dY", () => {
    const pads = { pads: ints([1, 1, 1, 1]) };
    expect(gradCheck("Conv", [gridTensor([2, 16, 8, 8]), gridTensor([16, 16, 3, 3]), gridTensor([16])], pads, [0, 1, 2])).toBeLessThan(1e-3);
    const w = gridTensor([12, 16, 3, 3]);
    (w.data as Float32Array).forEach((_, i, d) => { if (i % 5) d[i] = 0; }); // 80% zeros
    expect(gradCheck("Conv", [gridTensor([1, 16, 8, 8]), w, undefined], pads, [0, 1])).toBeLessThan(1e-3);
  });
});
