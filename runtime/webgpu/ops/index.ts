/**
 * Every WGSL op implementation, in one list (the backend takes the first whose opTypes include
 * the node's). Add an implementation file here.
 * @module
 */
import type { GpuOpImpl } from "../backend.ts";
import { CONV_GPU } from "./conv.ts";
import { ELEMENTWISE_GPU } from "./elementwise.ts";
import { GEMM_GPU } from "./gemm.ts";
import { NORM_GPU } from "./norm.ts";
import { POOL_GPU } from "./pool.ts";
import { SHAPE_GPU } from "./shape.ts";

/** All GPU op implementations. */
export const GPU_OPS: readonly GpuOpImpl[] = [...CONV_GPU, ...GEMM_GPU, ...ELEMENTWISE_GPU, ...NORM_GPU, ...POOL_GPU, ...SHAPE_GPU];
