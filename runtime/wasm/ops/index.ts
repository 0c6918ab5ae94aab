/**
 * Every wasm implementation, in one list (the backend picks the cheapest claimant per node).
 * Add an implementation file here.
 * @module
 */
import type { WasmOpImpl } from "../backend.ts";
import { SPARSE_WASM } from "./conv-sparse.ts";
import { CODED_WASM } from "./conv-coded.ts";
import { CONV_DENSE_WASM } from "./conv-dense.ts";
import { ELEMENTWISE_WASM } from "./elementwise.ts";
import { GEMM_WASM } from "./gemm.ts";
import { POOL_WASM } from "./pool.ts";

/** All wasm op implementations. */
export const WASM_OPS: readonly WasmOpImpl[] = [...ELEMENTWISE_WASM, ...SPARSE_WASM, ...CODED_WASM, ...CONV_DENSE_WASM, ...GEMM_WASM, ...POOL_WASM];
