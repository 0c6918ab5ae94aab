/**
 * The one op table: every family's kernels merged under their exact ONNX op type (default
 * domain), each a list of opset-versioned variants. The planner picks the newest variant whose
 * `since` is not newer than the model's opset.
 * @module
 */
import { CONTROL_OPS } from "./control.ts";
import { CONV_OPS } from "./conv.ts";
import { DETECTION_OPS } from "./detection.ts";
import { ELEMENTWISE_OPS } from "./elementwise.ts";
import { GEMM_OPS } from "./gemm.ts";
import { NORM_OPS } from "./norm.ts";
import { POOL_OPS } from "./pool.ts";
import { RECURRENT_OPS } from "./recurrent.ts";
import { REDUCE_OPS } from "./reduce.ts";
import { SHAPE_OPS } from "./shape.ts";
import { SIGNAL_OPS } from "./signal.ts";
import type { OpVersion } from "./types.ts";

/** Compute families first: on a clash their kernel wins. */
const FAMILIES: Record<string, OpVersion[]>[] = [CONV_OPS, GEMM_OPS, POOL_OPS, NORM_OPS, ELEMENTWISE_OPS, SHAPE_OPS, REDUCE_OPS, DETECTION_OPS, RECURRENT_OPS, SIGNAL_OPS, CONTROL_OPS];

/** Op types defined by more than one family (the first family listed wins); a test keeps this empty. */
export const OP_CONFLICTS: string[] = [];

function merge(tables: Record<string, OpVersion[]>[]): Record<string, OpVersion[]> {
  const out: Record<string, OpVersion[]> = {};
  for (const t of tables) {
    for (const [op, versions] of Object.entries(t)) {
      // A clash is reported by registry.test.ts instead of throwing here, which would break every import.
      if (Object.hasOwn(out, op)) { OP_CONFLICTS.push(op); continue; }
      out[op] = [...versions].sort((a, b) => a.since - b.since);
    }
  }
  return out;
}

/** Every kernel the runtime has, by ONNX op type; variants sorted by `since`. */
export const OPS: Readonly<Record<string, OpVersion[]>> = merge(FAMILIES);

/** The variant of `opType` valid at `opset`, or undefined if there is none. */
export function resolveOp(opType: string, opset: number, table: Readonly<Record<string, OpVersion[]>> = OPS): OpVersion | undefined {
  const versions = Object.hasOwn(table, opType) ? table[opType] : undefined;
  if (!versions) return undefined;
  let best: OpVersion | undefined;
  for (const v of versions) if (v.since <= opset && (!best || v.since >= best.since)) best = v;
  return best;
}
