/**
 * The training conv kernels against the JS paths they replace, per conv geometry of a model, at
 * several sparsities: forward (train/wasm-conv.ts sparseConv vs ops/conv.ts convPath's choice) and
 * weight gradient (masked convWeightGradF32 vs im2col + GEMM on every weight), interleaved, CPU
 * time of this thread (steadier than the wall clock on a shared machine), min of `--reps`.
 * Sets sparsePays (train/wasm-conv.ts): the sparsity from which each kernel wins, by geometry.
 * Usage: bun bench/train-conv-bench.ts [--model resnet20-fmnist.onnx] [--batch 64] [--reps 3] [--sparsity 0,0.3,0.5,0.7,0.9]
 * @module
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { mulberry32, readOnnx } from "../format/mod.ts";
import { conv2dFast, convGeometry, convPath } from "../runtime/ops/conv.ts";
import { Attrs } from "../runtime/ops/types.ts";
import { matrixView, sgemm } from "../runtime/cpu/sgemm.ts";
import { im2col, type Window2d } from "../runtime/cpu/im2col.ts";
import { createWasmConvKernels } from "../runtime/train/wasm-conv.ts";
import { formatTable, say } from "../cli/common.ts";
import { sharedPath } from "../cli/shared.ts";

const { values } = parseArgs({ options: { model: { type: "string" }, batch: { type: "string" }, reps: { type: "string" }, sparsity: { type: "string" } } });
const model = readOnnx(new Uint8Array(readFileSync(sharedPath("models", values.model ?? "resnet20-fmnist.onnx"))));
const batch = Number(values.batch ?? 64), reps = Number(values.reps ?? 3);
const sparsities = (values.sparsity ?? "0,0.3,0.5,0.7,0.9").split(",").map(Number);
const kernels = createWasmConvKernels(true);
if (!kernels) throw new Error("no WASM SIMD in this engine");
const cpuMs = (f: () => void) => { const c = process.cpuUsage(); f(); const d = process.cpuUsage(c); return (d.user + d.system) / 1000; };
const best = (f: () => void) => Math.min(...Array.from({ length: reps }, () => cpuMs(f)));

// Input shapes: run the geometry chain by hand (Conv inputs are the previous outputs' shapes).
const shapes = new Map<string, number[]>([[model.graph.inputs[0]!.name, [batch, ...model.graph.inputs[0]!.shape!.slice(1).map(Number)]]]);
const rows: (string | number)[][] = [];
const rnd = mulberry32(7);
const seen = new Set<string>();
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
  const x = Float32Array.from({ length: xs.reduce((a, b) => a * b, 1) }, () => rnd() * 2 - 1);
  const dy = Float32Array.from({ length: batch * g.outChannels * g.outSpatial[0]! * g.outSpatial[1]! }, () => rnd() * 2 - 1);
  const win: Window2d = {
    channels: g.inChannels, inH: g.inSpatial[0]!, inW: g.inSpatial[1]!, kH: g.kernel[0]!, kW: g.kernel[1]!,
    strideH: g.strides[0]!, strideW: g.strides[1]!, dilationH: g.dilations[0]!, dilationW: g.dilations[1]!,
    padTop: g.pads[0]!, padLeft: g.pads[1]!, outH: g.outSpatial[0]!, outW: g.outSpatial[1]!,
  };
  const k = g.inChannels * win.kH * win.kW, p = win.outH * win.outW, col = new Float32Array(k * p);
  for (const s of sparsities) {
    const w = Float32Array.from(w0.data as Float32Array, (v) => (rnd() < s ? 0 : v));
    const keep = Uint8Array.from(w, (v) => (v !== 0 ? 1 : 0));
    const path = convPath(g, w) ?? "im2col-gemm";
    const xt = { dtype: "float32" as const, dims: xs, data: x }, wt = { dtype: "float32" as const, dims: w0.dims, data: w };
    const js = best(() => conv2dFast(xt, wt, undefined, g, path));
    let ran = true;
    const wasm = best(() => { ran = !!kernels.sparseConv(x, w, undefined, g, attrs, (n) => new Float32Array(n)); });
    const dw = new Float32Array(w.length);
    const jsDw = best(() => {
      for (let n = 0; n < batch; n++) {
        im2col(x, n * g.inChannels * g.inSpatial[0]! * g.inSpatial[1]!, win, col);
        sgemm(g.outChannels, k, p, 1, matrixView(dy, n * g.outChannels * p, p), matrixView(col, 0, p, true), dw, 0, k, n > 0);
      }
    });
    const maskedDw = best(() => kernels.weightGrad(x, dy, g, keep, dw));
    rows.push([key, s, path, js.toFixed(1), ran ? wasm.toFixed(1) : "–", ran ? (wasm / js).toFixed(2) : "–", jsDw.toFixed(1), maskedDw.toFixed(1), (maskedDw / jsDw).toFixed(2)]);
  }
}
say(`batch ${batch}, CPU ms of this thread, min of ${reps}`);
say(formatTable(["conv", "zeros", "JS path", "JS fwd", "sparse fwd", "sparse ÷ JS", "JS dW", "masked dW", "masked ÷ JS"], rows));
