/**
 * Elementwise float32 ops on wasm: Relu and Clip (a clamp), and Add of two same-shape tensors.
 * Broadcasting Adds and other dtypes stay with the reference.
 * @module
 */
import type { Tensor } from "../../../format/mod.ts";
import type { NodeSpec } from "../../backend.ts";
import type { WasmOpImpl } from "../backend.ts";

/** Below this many elements a split costs more than it saves (one worker round trip ~20 µs ≈ 100k clamps). */
const PARALLEL_MIN = 1 << 16;
const GRAIN = 4096;

const allF32 = (spec: NodeSpec) => spec.inputDtypes.every((d, i) => d === "float32" || spec.node.inputs[i] === "") && spec.outputDtypes[0] === "float32";

/** Clip bounds of a node: attributes before opset 11, optional constant inputs since. */
function clipBounds(spec: NodeSpec): [number, number] | undefined {
  if (spec.node.opType === "Relu") return [0, Infinity];
  if (spec.opset < 11) return [spec.attrs.float("min", -3.4028234663852886e38), spec.attrs.float("max", 3.4028234663852886e38)];
  const bound = (k: number, fallback: number) => {
    if (!spec.node.inputs[k]) return fallback;
    const c = spec.constants[k];
    return c && c.data.length === 1 ? Number(c.data[0]) : undefined;
  };
  const lo = bound(1, -Infinity), hi = bound(2, Infinity);
  return lo === undefined || hi === undefined ? undefined : [lo, hi];
}

const clamp: WasmOpImpl = {
  opTypes: ["Relu", "Clip"],
  claim(spec) {
    if (!allF32(spec) || !clipBounds(spec)) return undefined;
    return { path: "wasm-clamp", weightForm: "none", cost: 1 };
  },
  bind(spec, env) {
    const [lo, hi] = clipBounds(spec)!;
    return {
      residentBytes: 0,
      run([x], rc, addr) {
        const n = x!.data.length;
        const y = rc.alloc(n);
        const args = [addr(x!), y.byteOffset, lo, hi];
        if (n >= PARALLEL_MIN) env.team.run("clampF32", n, GRAIN, args);
        else env.kernels.exports.clampF32(0, n, ...(args as [number, number, number, number]));
        return [{ dtype: "float32", dims: x!.dims.slice(), data: y } as Tensor];
      },
    };
  },
};

const add: WasmOpImpl = {
  opTypes: ["Add"],
  claim(spec) {
    const [a, b] = spec.inputShapes;
    if (!allF32(spec) || !a || !b || a.length !== b.length || !a.every((d, i) => d === b[i])) return undefined;
    return { path: "wasm-add", weightForm: "none", cost: 1 };
  },
  bind(_spec, env) {
    return {
      residentBytes: 0,
      run([a, b], rc, addr) {
        const n = a!.data.length;
        if (b!.data.length !== n) throw new Error(`Add: inputs of ${n} and ${b!.data.length} elements`);
        const z = rc.alloc(n);
        const args = [addr(a!), addr(b!), z.byteOffset];
        if (n >= PARALLEL_MIN) env.team.run("addF32", n, GRAIN, args);
        else env.kernels.exports.addF32(0, n, ...(args as [number, number, number]));
        return [{ dtype: "float32", dims: a!.dims.slice(), data: z } as Tensor];
      },
    };
  },
};

/** The elementwise implementations. */
export const ELEMENTWISE_WASM: readonly WasmOpImpl[] = [clamp, add];

