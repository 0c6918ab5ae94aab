/**
 * Float32 2-D MaxPool (without the Indices output), AveragePool (count_include_pad either way,
 * ceil_mode) and GlobalAveragePool on wasm (as/pool.ts), planes split across the team. The
 * geometry is the op table's (`poolGeometry`, with the features of the node's opset, so an
 * attribute the opset lacks fails the claim and the reference reports it). Dilated pools,
 * other ranks and dtypes stay with the reference.
 * @module
 */
import type { Tensor } from "../../../format/mod.ts";
import { sizeOf } from "../../../format/mod.ts";
import type { NodeSpec } from "../../backend.ts";
import { type PoolFeatures, type PoolGeometry, poolGeometry } from "../../ops/pool.ts";
import type { WasmOpImpl } from "../backend.ts";
import { allFloat32, CALL_NS, DENSE_GFLOPS, staticDim } from "./dense-common.ts";

/** Words of the pool geometry block (as/pool.ts reads them by these indices). */
const POOL_GEO = ["inH", "inW", "kh", "kw", "sh", "sw", "pt", "pl", "pb", "pr", "outH", "outW", "includePad"] as const;

/** Below this many taps a pool stays on one thread (a split costs ~20 µs). */
const PARALLEL_MIN_TAPS = 1 << 16;

/** The pooling features of the node's opset, as the op table versions them (ops/pool.ts POOL_OPS). */
function featuresOf(spec: NodeSpec): PoolFeatures & { countIncludePad: boolean } {
  if (spec.node.opType === "MaxPool") return { ceilMode: spec.opset >= 10, dilations: spec.opset >= 10, countIncludePad: false };
  return { ceilMode: spec.opset >= 10, dilations: spec.opset >= 19, countIncludePad: spec.opset >= 7 };
}

/** The geometry for static dims (dynamic batch as 1), undefined if the node's attributes are invalid for it. */
function geometryOf(spec: NodeSpec, dims: readonly number[]): PoolGeometry | undefined {
  try {
    const g = poolGeometry(dims, spec.attrs, featuresOf(spec));
    if (g.dilations.some((d) => d !== 1)) return undefined;
    if (spec.node.opType === "AveragePool" && spec.attrs.int("count_include_pad", 0) !== 0 && !featuresOf(spec).countIncludePad) return undefined;
    return g;
  } catch {
    return undefined;
  }
}

const pool2d: WasmOpImpl = {
  opTypes: ["MaxPool", "AveragePool"],
  claim(spec) {
    const x = spec.inputShapes[0];
    if (!allFloat32(spec) || !x || x.length !== 4) return undefined;
    // MaxPool's Indices output is the reference's.
    if (spec.node.outputs.length > 1 && spec.node.outputs[1] !== "") return undefined;
    const dims = x.map((d, i) => staticDim(d) ?? (i === 0 ? 1 : undefined));
    let taps = 56 * 56 * 64 * 9;
    if (dims.every((d) => d !== undefined)) {
      const g = geometryOf(spec, dims as number[]);
      if (!g) return undefined;
      taps = g.channels * sizeOf(g.outSpatial) * sizeOf(g.kernel);
    } else {
      // Spatial dims unknown: attributes still have to be valid for the opset.
      if (!geometryOf(spec, [1, 1, 64, 64])) return undefined;
    }
    return { path: spec.node.opType === "MaxPool" ? "wasm-maxpool" : "wasm-avgpool", weightForm: "none", cost: CALL_NS + taps / DENSE_GFLOPS.pool };
  },
  bind(spec, env) {
    const k = env.kernels;
    const geo = k.alloc(POOL_GEO.length * 4);
    let key = "";
    let g: PoolGeometry | undefined;
    const mode = spec.node.opType === "MaxPool" ? 0 : 1;
    const includePad = mode === 1 && spec.attrs.int("count_include_pad", 0) !== 0;
    return {
      residentBytes: 0,
      run([x], rc, addr) {
        const dk = x!.dims.join(",");
        if (dk !== key || !g) {
          g = poolGeometry(x!.dims, spec.attrs, featuresOf(spec));
          if (g.dilations.some((d) => d !== 1)) throw new Error("wasm pool: dilations are not supported");
          const vals: Record<(typeof POOL_GEO)[number], number> = {
            inH: g.inSpatial[0]!, inW: g.inSpatial[1]!, kh: g.kernel[0]!, kw: g.kernel[1]!, sh: g.strides[0]!, sw: g.strides[1]!,
            pt: g.pads[0]!, pl: g.pads[1]!, pb: g.pads[2]!, pr: g.pads[3]!, outH: g.outSpatial[0]!, outW: g.outSpatial[1]!,
            includePad: includePad ? 1 : 0,
          };
          const view = k.i32(geo, POOL_GEO.length);
          POOL_GEO.forEach((name, i) => { view[i] = vals[name]; });
          key = dk;
        }
        const planes = g.batch * g.channels, out = sizeOf(g.outSpatial);
        const y = rc.alloc(planes * out);
        const args = [geo, addr(x!), y.byteOffset, mode];
        if (planes > 1 && planes * out * sizeOf(g.kernel) >= PARALLEL_MIN_TAPS) env.team.run("pool2dF32", planes, 1, args);
        else k.exports.pool2dF32(0, planes, ...(args as [number, number, number, number]));
        return [{ dtype: "float32", dims: [g.batch, g.channels, ...g.outSpatial], data: y } as Tensor];
      },
      dispose() { k.free(geo); },
    };
  },
};

const globalAvgPool: WasmOpImpl = {
  opTypes: ["GlobalAveragePool"],
  claim(spec) {
    const x = spec.inputShapes[0];
    if (!allFloat32(spec) || !x || x.length < 3) return undefined;
    const size = x.slice(1).reduce<number>((r, d) => r * (staticDim(d) ?? 64), 1);
    return { path: "wasm-global-avgpool", weightForm: "none", cost: CALL_NS + size / DENSE_GFLOPS.pool };
  },
  bind(_spec, env) {
    const k = env.kernels;
    return {
      residentBytes: 0,
      run([x], rc, addr) {
        const d = x!.dims;
        if (d.length < 3) throw new Error(`GlobalAveragePool: X [${d}] must be [N, C, spatial...]`);
        const planes = d[0]! * d[1]!, size = sizeOf(d.slice(2));
        const y = rc.alloc(planes);
        const args = [addr(x!), y.byteOffset, size];
        if (planes > 1 && planes * size >= PARALLEL_MIN_TAPS) env.team.run("globalAvgPoolF32", planes, 1, args);
        else k.exports.globalAvgPoolF32(0, planes, ...(args as [number, number, number]));
        return [{ dtype: "float32", dims: [d[0]!, d[1]!, ...d.slice(2).map(() => 1)], data: y } as Tensor];
      },
    };
  },
};

/** The pooling implementations. */
export const POOL_WASM: readonly WasmOpImpl[] = [pool2d, globalAvgPool];
