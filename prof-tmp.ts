import { im2col, type Window2d } from "./runtime/cpu/im2col.ts";
import { matrixView, sgemm } from "./runtime/cpu/sgemm.ts";
const win: Window2d = { channels: 16, inH: 28, inW: 28, kH: 3, kW: 3, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1, padTop: 1, padLeft: 1, outH: 28, outW: 28 };
const N = 64, k = 144, p = 784, m = 16;
const x = new Float32Array(N * 16 * 784).map(() => Math.random());
const w = new Float32Array(m * k).map(() => Math.random());
const col = new Float32Array(k * p), y = new Float32Array(N * m * p);
for (let rep = 0; rep < 3; rep++) {
  let t0 = performance.now();
  for (let n = 0; n < N; n++) im2col(x, n * 16 * 784, win, col);
  const tIm = performance.now() - t0;
  t0 = performance.now();
  for (let n = 0; n < N; n++) sgemm(m, p, k, 1, matrixView(w, 0, k), matrixView(col, 0, p), y, n * m * p, p, false);
  const tG = performance.now() - t0;
  t0 = performance.now();
  const z = new Float32Array(y.length);
  for (let i = 0; i < y.length; i++) { const v = y[i]!; z[i] = v < 0 ? 0 : v; }
  const tR = performance.now() - t0;
  // dW style: m x k, inner p
  const dw = new Float32Array(m * k);
  t0 = performance.now();
  for (let n = 0; n < N; n++) sgemm(m, k, p, 1, matrixView(y, n * m * p, p), matrixView(col, 0, p, true), dw, 0, k, true);
  const tW = performance.now() - t0;
  const dcol = new Float32Array(k * p);
  t0 = performance.now();
  for (let n = 0; n < N; n++) sgemm(k, p, m, 1, matrixView(w, 0, k, true), matrixView(y, n * m * p, p), dcol, 0, p, false);
  const tX = performance.now() - t0;
  console.log({ tIm, tG, tR, tW, tX, gflopsFwd: 2 * N * m * p * k / tG / 1e6 });
}
