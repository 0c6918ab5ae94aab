// Elementwise kernels over float32 arrays: the fused epilogue building blocks.
import { madd } from "./simd";

/** y[i] = max(x[i], lo) then min(.., hi) for i in [begin, end): Relu is (0, +inf), Relu6 (0, 6). */
export function clampF32(begin: i32, end: i32, x: usize, y: usize, lo: f32, hi: f32): void {
  const vlo = f32x4.splat(lo), vhi = f32x4.splat(hi);
  let i = begin;
  for (; i + 4 <= end; i += 4) {
    const o = <usize>i << 2;
    v128.store(y + o, f32x4.min(f32x4.max(v128.load(x + o), vlo), vhi));
  }
  for (; i < end; i++) {
    const o = <usize>i << 2;
    store<f32>(y + o, min(max(load<f32>(x + o), lo), hi));
  }
}

/** z[i] = x[i] + y[i] for i in [begin, end). */
export function addF32(begin: i32, end: i32, x: usize, y: usize, z: usize): void {
  let i = begin;
  for (; i + 4 <= end; i += 4) {
    const o = <usize>i << 2;
    v128.store(z + o, f32x4.add(v128.load(x + o), v128.load(y + o)));
  }
  for (; i < end; i++) {
    const o = <usize>i << 2;
    store<f32>(z + o, load<f32>(x + o) + load<f32>(y + o));
  }
}

/** y[i] += a·x[i] for i in [begin, end) (tests the fused multiply-add path of each build). */
export function axpyF32(begin: i32, end: i32, a: f32, x: usize, y: usize): void {
  const va = f32x4.splat(a);
  let i = begin;
  for (; i + 4 <= end; i += 4) {
    const o = <usize>i << 2;
    v128.store(y + o, madd(va, v128.load(x + o), v128.load(y + o)));
  }
  for (; i < end; i++) {
    const o = <usize>i << 2;
    store<f32>(y + o, a * load<f32>(x + o) + load<f32>(y + o));
  }
}
