/**
 * The training conv kernels against the JS paths they replace, per conv geometry of a model, at
 * several sparsities, interleaved, CPU time of this thread (steadier than the wall clock on a
 * shared machine), min of `--reps`:
 * - forward: JS (ops/conv.ts convPath's choice: Winograd or im2col + GEMM), the dense wasm kernels
 *   (train/wasm-conv.ts "dense": wasm/ops/conv-dense.ts's cheapest claim) and the sparse one;
 * - input gradient: the Conv grad's backward (dX only) on the JS GEMMs, the dense and the sparse kernels;
 * - weight gradient: im2col + GEMM on every weight (JS), convWeightGradDenseF32 (every weight) and
 *   the masked convWeightGradF32 (kept weights only).
 * Sets densePays, denseGradPays and sparsePays (train/wasm-conv.ts): where each kernel wins, by geometry.
 * Usage: bun bench/train-conv-bench.ts [--model resnet20-fmnist.onnx] [--batch 64] [--reps 3] [--sparsity 0,0.3,0.5,0.7,0.9]
 * @module
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { mulberry32, readOnnx, type Tensor } from "../format/mod.ts";
import { conv2dFast, convGeometry, convPath } from "../runtime/ops/conv.ts";
import { resolveOp } from "../runtime/ops/registry.ts";
import { type Alloc, Attrs } from "../runtime/ops/types.ts";
import { matrixView, sgemm } from "../runtime/cpu/sgemm.ts";
import { im2col, type Window2d } from "../runtime/cpu/im2col.ts";
import { createWasmConvKernels, type WasmConvMode } from "../runtime/train/wasm-conv.ts";
import { formatTable, say } from "../cli/common.ts";
import { sharedPath } from "../cli/shared.ts";

const { values } = parseArgs({ options: { model: { type: "string" }, batch: { type: "string" }, reps: { type: "string" }, sparsity: { type: "string" } } });
const model = readOnnx(new Uint8Array(readFileSync(sharedPath("models", values.model ?? "resnet20-fmnist.onnx"))));
const batch = Number(values.batch ?? 64), reps = Number(values.reps ?? 3);
const sparsities = (values.sparsity ?? "0,0.3,0.5,0.7,0.9").split(",").map(Number);
const K = createWasmConvKernels("dense");
if (!K) throw new Error("no WASM SIMD in this engine");
/** Run `f` with the kernels in `mode`. */
const inMode = <T>(mode: WasmConvMode, f: () => T): T => { K.mode = mode; return f(); };
/**
 * Buffers as the training graph hands them out: in the kernels' memory, the k-th request of a
 * call getting the k-th buffer of the last call (`reset` between calls).
 */
function pool() {
  const bufs: Float32Array[] = [];
  let next = 0;
  const alloc: Alloc = (n, zeroed = true) => {
    const b = bufs[next];
    if (b && b.length === n) { next++; return zeroed ? b.fill(0) : b; }
    return (bufs[next++] = K!.buffer(n));
  };
  return { alloc, reset: () => { next = 0; } };
}
const resident = (a: Float32Array) => { const b = K.buffer(a.length); b.set(a); return b; };
const convGrad = resolveOp("Conv", 11)!.grad!;
const cpuMs = (f: () => void) => { const c = process.cpuUsage(); f(); const d = process.cpuUsage(c); return (d.user + d.system) / 1000; };
/** Min CPU ms of each of `fs` over `reps` rounds, the functions interleaved within a round. */
const bestOf = (fs: (() => void)[]) => {
  const t = fs.map(() => Infinity);
  for (let r = 0; r < reps; r++) fs.forEach((f, i) => { t[i] = Math.min(t[i]!, cpuMs(f)); });
  return t;
};

// Input shapes: run the geometry chain by hand (Conv inputs are the previous outputs' shapes).
const shapes = new Map<string, number[]>([[model.graph.inputs[0]!.name, [batch, ...model.graph.inputs[0]!.shape!.slice(1).map(Number)]]]);
const rows: (string | number)[][] = [];
const rnd = mulberry32(7);
const seen = new Set<string>();
const r2 = (a: number, b: number) => (a / b).toFixed(2);
for (const node of model.graph.nodes) {
  const xs = shapes.get(node.inputs[0]!);
  if (!xs) continue;
  if (node.opType !== "Conv") { shapes.set(node.outputs[0]!, node.opType === "GlobalAveragePool" ? [xs[0]!, xs[1]!, 1, 1] : xs); continue; }
  const w0 = model.graph.initializers[node.inputs[1]!]!;
  const attrs = new Attrs(node.attrs, "Conv");
  const g = convGeometry(xs, w0.dims, attrs);
  shapes.set(node.outputs[0]!, [batch, g.outChannels, ...g.outSpatial]);
  const key = `${w0.dims.join("x")}@${xs[2]}/${g.strides[0]}`;
  if (seen.has(key)) continue;
  seen.add(key);
  const x = resident(Float32Array.from({ length: xs.reduce((a, b) => a * b, 1) }, () => rnd() * 2 - 1));
  const dy = resident(Float32Array.from({ length: batch * g.outChannels * g.outSpatial[0]! * g.outSpatial[1]! }, () => rnd() * 2 - 1));
  const y = K.buffer(dy.length);
  const win: Window2d = {
    channels: g.inChannels, inH: g.inSpatial[0]!, inW: g.inSpatial[1]!, kH: g.kernel[0]!, kW: g.kernel[1]!,
    strideH: g.strides[0]!, strideW: g.strides[1]!, dilationH: g.dilations[0]!, dilationW: g.dilations[1]!,
    padTop: g.pads[0]!, padLeft: g.pads[1]!, outH: g.outSpatial[0]!, outW: g.outSpatial[1]!,
  };
  const k = g.inChannels * win.kH * win.kW, p = win.outH * win.outW, col = new Float32Array(k * p);
  const first = node.inputs[0] === model.graph.inputs[0]!.name; // the stem's dX is never computed
  for (const s of sparsities) {
    const w = Float32Array.from(w0.data as Float32Array, (v) => (rnd() < s ? 0 : v));
    const keep = Uint8Array.from(w, (v) => (v !== 0 ? 1 : 0));
    const path = convPath(g, w) ?? "im2col-gemm";
    const xt: Tensor = { dtype: "float32", dims: xs, data: x }, wt: Tensor = { dtype: "float32", dims: w0.dims, data: w };
    const out = () => y;
    let sparseRan = true;
    const [js, dense, sparse] = bestOf([
      () => conv2dFast(xt, wt, undefined, g, path, 1, { alloc: out }),
      () => inMode("dense", () => K.conv(x, w, undefined, g, attrs, out)),
      () => inMode("sparse", () => { sparseRan = !!K.conv(x, w, undefined, g, attrs, out); }),
    ]);
    // dX through the grad's backward (the forward run once outside the timing).
    const dxRuns = ([undefined, "dense", "sparse"] as const).map((mode) => {
      const { alloc, reset } = pool();
      const back = inMode(mode ?? "dense", () => convGrad([xt, wt], attrs, alloc, mode && { conv: K }).backward);
      return () => { reset(); inMode(mode ?? "dense", () => back([dy], [true, false, false])); };
    });
    const [jsDx, denseDx, sparseDx] = first ? [NaN, NaN, NaN] : bestOf(dxRuns);
    const dw = new Float32Array(w.length);
    const [jsDw, maskedDw, denseDw] = bestOf([
      () => {
        for (let n = 0; n < batch; n++) {
          im2col(x, n * g.inChannels * g.inSpatial[0]! * g.inSpatial[1]!, win, col);
          sgemm(g.outChannels, k, p, 1, matrixView(dy, n * g.outChannels * p, p), matrixView(col, 0, p, true), dw, 0, k, n > 0);
        }
      },
      () => inMode("sparse", () => K.weightGrad(x, dy, g, keep, dw)),
      () => inMode("dense", () => K.weightGrad(x, dy, g, keep, dw)),
    ]);
    rows.push([
      key, s, path, js.toFixed(1), dense.toFixed(1), r2(dense, js), sparseRan ? r2(sparse, dense) : "–",
      first ? "–" : jsDx.toFixed(1), first ? "–" : r2(denseDx, jsDx), first ? "–" : r2(sparseDx, denseDx),
      jsDw.toFixed(1), r2(denseDw, jsDw), r2(maskedDw, denseDw),
    ]);
  }
}
say(`batch ${batch}, CPU ms of this thread, min of ${reps} interleaved rounds`);
say(formatTable(["conv", "zeros", "JS path", "JS fwd", "dense fwd", "dense ÷ JS", "sparse ÷ dense", "JS dX", "dense ÷ JS", "sparse ÷ dense", "JS dW", "dense ÷ JS", "masked ÷ dense"], rows));
