/**
 * ONNX 1.12 backend conformance: every case of ../shared/onnx-backend-tests (node, simple,
 * pytorch-converted, pytorch-operator) whose ops all have a kernel at the model's opset runs as
 * its own test and must match every `test_data_set_N/output_K.pb` with the suite's tolerances
 * (allclose: |a − b| ≤ atol + rtol·|b|, rtol 1e-3, atol 1e-7, NaN equals NaN; integers, bools
 * and strings exactly). Cases with an unsupported op are excluded with that reason; any other
 * exclusion sits in EXCLUDED with a written reason (a model the format reader refuses and
 * EXCLUDED does not excuse runs and fails). The last line printed is
 * "conformance: N passed, M failed, K excluded"; the exclusions go to
 * test-artifacts/conformance-excluded.txt, the failures to conformance-failures.txt.
 * @module
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PROJECT_ROOT, sharedPath } from "../cli/shared.ts";
import { type Model, readOnnx, readTensorProtoNamed, type Tensor } from "../format/mod.ts";
import { createSession, OpqRuntimeError } from "../runtime/mod.ts";
import { OPS } from "../runtime/ops/registry.ts";
import { resolveKernels } from "../runtime/planner.ts";

const SUITES = ["node", "simple", "pytorch-converted", "pytorch-operator"] as const;
const RTOL = 1e-3;
const ATOL = 1e-7;

const BFLOAT16 = "bfloat16 tensors: the format reader has no bfloat16 dtype (refused as UNSUPPORTED at read)";
const NON_TENSOR = "sequence/optional-typed graph values: the runtime computes on tensors only (refused at read)";
const LOOP_BODY = "expanded Range: its Loop body declares an input without a type, which the format reader refuses";

/**
 * Cases whose ops we have, excluded for another reason. Every entry says why; keep it short and
 * keep it honest (a kernel bug is a failure to fix, not an exclusion).
 */
const EXCLUDED: Record<string, string> = {
  "node/test_cast_BFLOAT16_to_FLOAT": BFLOAT16,
  "node/test_cast_FLOAT_to_BFLOAT16": BFLOAT16,
  "node/test_castlike_BFLOAT16_to_FLOAT": BFLOAT16,
  "node/test_castlike_BFLOAT16_to_FLOAT_expanded": BFLOAT16,
  "node/test_castlike_FLOAT_to_BFLOAT16": BFLOAT16,
  "node/test_castlike_FLOAT_to_BFLOAT16_expanded": BFLOAT16,
  "node/test_identity_opt": NON_TENSOR,
  "node/test_identity_sequence": NON_TENSOR,
  "node/test_if_opt": NON_TENSOR,
  "node/test_if_seq": NON_TENSOR,
  "node/test_loop13_seq": NON_TENSOR,
  "node/test_loop16_seq_none": NON_TENSOR,
  "node/test_optional_get_element": NON_TENSOR,
  "node/test_optional_get_element_sequence": NON_TENSOR,
  "node/test_optional_has_element": NON_TENSOR,
  "node/test_optional_has_element_empty": NON_TENSOR,
  "node/test_sequence_insert_at_back": NON_TENSOR,
  "node/test_sequence_insert_at_front": NON_TENSOR,
  "node/test_sequence_map_add_1_sequence_1_tensor": NON_TENSOR,
  "node/test_sequence_map_add_1_sequence_1_tensor_expanded": NON_TENSOR,
  "node/test_sequence_map_add_2_sequences": NON_TENSOR,
  "node/test_sequence_map_add_2_sequences_expanded": NON_TENSOR,
  "node/test_sequence_map_extract_shapes": NON_TENSOR,
  "node/test_sequence_map_extract_shapes_expanded": NON_TENSOR,
  "node/test_sequence_map_identity_1_sequence": NON_TENSOR,
  "node/test_sequence_map_identity_1_sequence_1_tensor": NON_TENSOR,
  "node/test_sequence_map_identity_1_sequence_1_tensor_expanded": NON_TENSOR,
  "node/test_sequence_map_identity_1_sequence_expanded": NON_TENSOR,
  "node/test_sequence_map_identity_2_sequences": NON_TENSOR,
  "node/test_sequence_map_identity_2_sequences_expanded": NON_TENSOR,
  "node/test_range_float_type_positive_delta_expanded": LOOP_BODY,
  "node/test_range_int32_type_negative_delta_expanded": LOOP_BODY,
  "node/test_batchnorm_epsilon_training_mode": "training-mode BatchNormalization (batch statistics, running-mean outputs) is not an inference feature; the norm kernel refuses it",
  "node/test_batchnorm_example_training_mode": "training-mode BatchNormalization (batch statistics, running-mean outputs) is not an inference feature; the norm kernel refuses it",
  "node/test_training_dropout": "training-mode Dropout draws a random mask; outputs cannot match numpy's RNG",
  "node/test_training_dropout_default": "training-mode Dropout draws a random mask; outputs cannot match numpy's RNG",
  "node/test_training_dropout_default_mask": "training-mode Dropout draws a random mask; outputs cannot match numpy's RNG",
  "node/test_training_dropout_mask": "training-mode Dropout draws a random mask; outputs cannot match numpy's RNG",
};

interface Case {
  id: string;
  dir: string;
  model: Model | undefined;
  /** Why the model could not be read (the case then fails). */
  readError?: unknown;
}

const excluded: { id: string; reason: string }[] = [];
const cases: Case[] = [];
let root: string | undefined;
let setupError: unknown;
try {
  root = sharedPath("onnx-backend-tests");
} catch (e) {
  setupError = e;
}

if (root) {
  for (const suite of SUITES) {
    const suiteDir = join(root, suite);
    if (!existsSync(suiteDir)) {
      setupError = new Error(`missing conformance suite folder ${suiteDir}`);
      continue;
    }
    for (const name of readdirSync(suiteDir).sort()) {
      const id = `${suite}/${name}`;
      const dir = join(suiteDir, name);
      let model: Model;
      try {
        model = readOnnx(new Uint8Array(readFileSync(join(dir, "model.onnx"))));
      } catch (e) {
        if (Object.hasOwn(EXCLUDED, id)) {
          excluded.push({ id, reason: EXCLUDED[id]! });
          continue;
        }
        // Not excused: the case runs and fails with the reader's message.
        cases.push({ id, dir, model: undefined, readError: e });
        continue;
      }
      try {
        resolveKernels(model, OPS);
      } catch (e) {
        if (!(e instanceof OpqRuntimeError)) throw e;
        const ops = (e.details?.ops as string[] | undefined) ?? [];
        excluded.push({ id, reason: `unsupported op ${ops.join(", ")}` });
        continue;
      }
      if (Object.hasOwn(EXCLUDED, id)) {
        excluded.push({ id, reason: EXCLUDED[id]! });
        continue;
      }
      cases.push({ id, dir, model });
    }
  }
}

test("conformance suite is present", () => {
  if (setupError) throw setupError;
  expect(cases.length).toBeGreaterThan(0);
});

/** allclose on floats, exact otherwise; returns a description of the first mismatch. */
export function compareTensors(got: Tensor, want: Tensor): string | undefined {
  if (got.dtype !== want.dtype) return `dtype ${got.dtype} != expected ${want.dtype}`;
  if (got.dims.length !== want.dims.length || got.dims.some((d, i) => d !== want.dims[i])) {
    return `dims [${got.dims}] != expected [${want.dims}]`;
  }
  const g = got.data, w = want.data;
  if (g.length !== w.length) return `length ${g.length} != expected ${w.length}`;
  const float = want.dtype === "float32" || want.dtype === "float64" || want.dtype === "float16";
  let bad = 0, first = -1;
  for (let i = 0; i < w.length; i++) {
    let ok: boolean;
    if (float) {
      let a = g[i] as number, b = w[i] as number;
      if (want.dtype === "float16") { a = half(a); b = half(b); }
      ok = (Number.isNaN(a) && Number.isNaN(b)) || a === b || Math.abs(a - b) <= ATOL + RTOL * Math.abs(b);
    } else {
      ok = g[i] === w[i];
    }
    if (!ok) { bad++; if (first < 0) first = i; }
  }
  if (bad === 0) return undefined;
  return `${bad}/${w.length} elements differ; first at ${first}: got ${String(g[first])}, expected ${String(w[first])}`;
}

function half(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

function readDataSet(dir: string, prefix: "input" | "output"): { name: string; tensor: Tensor }[] {
  const files = readdirSync(dir).filter((f) => f.startsWith(`${prefix}_`) && f.endsWith(".pb"));
  files.sort((a, b) => Number(a.slice(prefix.length + 1, -3)) - Number(b.slice(prefix.length + 1, -3)));
  return files.map((f) => readTensorProtoNamed(new Uint8Array(readFileSync(join(dir, f)))));
}

let passed = 0, failed = 0;
const failures: string[] = [];
const passedIds: string[] = [];

for (const c of cases) {
  test(c.id, async () => {
    try {
      if (!c.model) throw c.readError;
      const session = await createSession(c.model);
      const sets = readdirSync(c.dir).filter((d) => d.startsWith("test_data_set_")).sort();
      expect(sets.length).toBeGreaterThan(0);
      for (const set of sets) {
        const ins = readDataSet(join(c.dir, set), "input");
        const outs = readDataSet(join(c.dir, set), "output");
        const feeds: Record<string, Tensor> = {};
        ins.forEach((t, k) => {
          const byName = session.inputs.find((v) => v.name === t.name);
          const v = byName ?? session.inputs[k];
          if (!v) throw new Error(`${set}: input_${k} has no matching model input`);
          feeds[v.name] = t.tensor;
        });
        const result = await session.run(feeds);
        expect(outs.length).toBe(session.outputs.length);
        outs.forEach((t, k) => {
          const name = session.outputs[k]!.name;
          const diff = compareTensors(result[name]!, t.tensor);
          if (diff) throw new Error(`${set} output '${name}': ${diff}`);
        });
      }
      session.dispose();
      passed++;
      passedIds.push(c.id);
    } catch (e) {
      failed++;
      failures.push(`${c.id}: ${(e as Error).message.split("\n")[0]}`);
      throw e;
    }
  });
}

afterAll(() => {
  const dir = join(PROJECT_ROOT, "test-artifacts");
  mkdirSync(dir, { recursive: true });
  const lines = excluded.map((x) => `${x.id}\t${x.reason}`);
  writeFileSync(join(dir, "conformance-excluded.txt"), lines.join("\n") + "\n");
  writeFileSync(join(dir, "conformance-failures.txt"), failures.join("\n") + (failures.length ? "\n" : ""));
  const bySuite = SUITES.map((suite) => {
    const inSuite = (id: string) => id.startsWith(`${suite}/`);
    const f = failures.filter(inSuite).length, x = excluded.filter((e) => inSuite(e.id)).length;
    return `${suite}: ${passedIds.filter(inSuite).length} passed, ${f} failed, ${x} excluded`;
  });
  console.log(`conformance by suite: ${bySuite.join("; ")}`);
  console.log(`conformance: ${passed} passed, ${failed} failed, ${excluded.length} excluded`);
});
