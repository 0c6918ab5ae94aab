/**
 * The GPU weight forms on the host (no GPU needed): a compressed weight packed as rows decodes,
 * with the shader's arithmetic mirrored here, to exactly the dequantized dense tensor; Bun (no
 * navigator.gpu) refuses backend "webgpu" with BACKEND_UNAVAILABLE and "auto" runs on the CPU.
 * @module
 */
import { expect, test } from "bun:test";
import { type CompressedTensor, dequantize, mulberry32 } from "../../format/mod.ts";
import { OpqRuntimeError, RUNTIME_ERROR_CODES } from "../errors.ts";
import { createSession } from "../session.ts";
import { packCompressed, type PackedWeights } from "./weights.ts";

/** Row r's (column, value) pairs, decoded as weightWgsl's wCol/wVal do. */
function decodeRow(p: PackedWeights, r: number): [number, number][] {
  const w = p.words, l = p.layout, f = new Float32Array(w.buffer);
  const out: [number, number][] = [];
  for (let j = w[l.rowPtr + r]!; j < w[l.rowPtr + r + 1]!; j++) {
    const col = l.colShift ? (w[l.cols + (j >> 1)]! >>> ((j & 1) * 16)) & 0xffff : w[l.cols + j]!;
    const per = 1 << l.codeShift;
    const field = (w[l.codes + (j >> l.codeShift)]! >>> ((j & (per - 1)) * l.codeBits)) & l.codeMask;
    out.push([col, l.kind === "sparse-table" ? f[l.table + field]! : Math.fround(Math.fround(l.step) * (field + l.codeMin))]);
  }
  return out;
}

function randomCompressed(dims: number[], kind: "uniform" | "table", seed: number, maxCode: number): CompressedTensor {
  const rnd = mulberry32(seed), n = dims.reduce((a, b) => a * b, 1);
  const indices: number[] = [], codes: number[] = [];
  const values = Float32Array.from({ length: maxCode + 1 }, (_, k) => (k - maxCode / 2) / 8);
  for (let k = 0; k < n; k++) {
    if (rnd() < 0.6) continue;
    indices.push(k);
    codes.push(kind === "table" ? Math.floor(rnd() * (maxCode + 1)) : Math.floor(rnd() * (2 * maxCode + 1)) - maxCode);
  }
  return { name: "w", dims, codebook: kind === "table" ? { kind, values } : { kind, step: 0.03125 }, indices: Uint32Array.from(indices), codes: Int32Array.from(codes) };
}

for (const [kind, maxCode, bits] of [["uniform", 3, 4], ["uniform", 7, 4], ["uniform", 127, 8], ["table", 13, 4], ["table", 300, 16]] as const) {
  test(`packCompressed ${kind} codes up to ${maxCode}: ${bits}-bit fields, rows decode to the dequantized weight (conv and transposed-gemm row maps)`, () => {
    const c = randomCompressed([6, 5, 3, 3], kind, maxCode, maxCode);
    const dense = dequantize(c);
    // Conv rows: W[m, ·].
    const conv = packCompressed(c, 6, 45, (f) => Math.floor(f / 45), (f) => f % 45);
    expect(conv.layout.codeBits).toBe(bits);
    const back = new Float32Array(dense.length);
    for (let r = 0; r < 6; r++) for (const [col, v] of decodeRow(conv, r)) back[r * 45 + col] = v;
    expect(back).toEqual(dense);
    // Gemm B [K, N] = [6, 45] read as rows of B' (n) with columns k.
    const gemm = packCompressed(c, 45, 6, (f) => f % 45, (f) => Math.floor(f / 45));
    const back2 = new Float32Array(dense.length);
    for (let n = 0; n < 45; n++) {
      const row = decodeRow(gemm, n);
      expect(row.map(([k]) => k)).toEqual([...row.map(([k]) => k)].sort((a, b) => a - b));
      for (const [k, v] of row) back2[k * 45 + n] = v;
    }
    expect(back2).toEqual(dense);
    // No dense float32 copy: rows and codes (the table aside) are smaller than the dense weight at 60% zeros.
    expect(conv.words.byteLength - (kind === "table" ? 4 * (maxCode + 1) : 0)).toBeLessThan(dense.byteLength);
  });
}

test("Bun has no navigator.gpu: backend webgpu is BACKEND_UNAVAILABLE, auto runs on the CPU", async () => {
  const model = { model: { irVersion: 8, opsetImports: [{ domain: "", version: 13 }], producerName: "t", graph: { name: "g", nodes: [{ opType: "Relu", domain: "", name: "r", inputs: ["x"], outputs: ["y"], attrs: {} }], inputs: [{ name: "x", dtype: "float32" as const, shape: [2] }], outputs: [{ name: "y", dtype: "float32" as const, shape: [2] }], initializers: {} } }, compressed: [], metadata: {} };
  const e = await createSession(model, { backend: "webgpu" }).catch((x) => x);
  expect(e).toBeInstanceOf(OpqRuntimeError);
  expect((e as OpqRuntimeError).code).toBe(RUNTIME_ERROR_CODES.BACKEND_UNAVAILABLE);
  const s = await createSession(model, { backend: "auto" });
  expect(s.info.layers[0]!.backend).not.toBe("webgpu");
  expect(Array.from((await s.run({ x: { dtype: "float32", dims: [2], data: Float32Array.of(-1, 2) } })).y!.data)).toEqual([0, 2]);
  s.dispose();
});
