/** compressModel on the bundled ResNet-20 and on broken models: metadata, budget, cap, exact round trip, typed errors. */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { decodeOpq, dequantize, FormatError, type Model, readOnnx, toDenseModel } from "../format/mod.ts";
import { compressModel, encodeCompressed, findWeights } from "./compress.ts";
import { CompressError } from "./errors.ts";
import { renderReportHtml } from "./report-html.ts";

const BYTES = new Uint8Array(readFileSync(join(import.meta.dir, "..", "models", "resnet20-fmnist.onnx")));
const MODEL = readOnnx(BYTES);

function code(f: () => unknown): string {
  try { f(); } catch (e) { return e instanceof CompressError || e instanceof FormatError ? e.code : `untyped ${e}`; }
  return "no error";
}

describe("OPQ on ResNet-20", () => {
  const result = compressModel(MODEL, { sparsity: 0.74, bits: 3, source: "resnet20-fmnist.onnx", fp32Bytes: BYTES.length });
  const { opq, report } = result;
  const bytes = encodeCompressed(result);

  test("every Conv and the Gemm weight is compressed; biases stay exact", () => {
    expect(opq.compressed).toHaveLength(22);
    for (const t of opq.compressed) expect(Object.hasOwn(opq.model.graph.initializers, t.name)).toBe(false);
    for (const [k, v] of Object.entries(opq.model.graph.initializers)) expect(v.data).toBe(MODEL.graph.initializers[k]!.data);
  });
  test("metadata carries the keys the server reads", () => {
    const md = opq.metadata;
    // No per-layer list: the server derives it from the decoded tensors (issue 2).
    expect(Object.keys(md).sort()).toEqual(["bits", "fp32Bytes", "method", "params", "source", "sparsity", "targetSparsity"]);
    expect(md).toMatchObject({ method: "opq", targetSparsity: 0.74, bits: 3, fp32Bytes: BYTES.length, source: "resnet20-fmnist.onnx", params: 271_402 });
    expect(Math.abs((md.sparsity as number) - 0.74)).toBeLessThan(0.02);
  });
  test("Eq. 9 budget holds and the 99.8% layer is capped at the default 0.9", () => {
    expect(report.opq!.budgetError).toBeLessThan(1e-6);
    const worst = report.layers.reduce((a, l) => (l.analyticSparsity! > a.analyticSparsity! ? l : a));
    expect(worst.analyticSparsity).toBeGreaterThan(0.99);
    expect(worst.capped).toBe(true);
    expect(worst.maskSparsity).toBeLessThanOrEqual(0.9);
    expect(report.opq!.capped).toContain(worst.name);
  });
  test("the .opq decodes to bit-identical weights and the report has the file's real costs", () => {
    const back = decodeOpq(bytes);
    expect(back.compressed.map((t) => t.name)).toEqual(opq.compressed.map((t) => t.name));
    const dense = toDenseModel(back).graph.initializers;
    for (const t of opq.compressed) expect(dense[t.name]!.data).toEqual(dequantize(t));
    expect(report.file!.bytes).toBe(bytes.length);
    expect(report.file!.ratio).toBeGreaterThan(15);
    expect(report.file!.overBound).toBeGreaterThan(0.9);
    expect(report.layers.every((l) => l.fileBits! > 0 && l.fileBits! < 8)).toBe(true);
  });
  test("the HTML report is self-contained with one SVG per chart and per layer histogram", () => {
    const html = renderReportHtml(report);
    expect(html.match(/<svg/g)).toHaveLength(4 + report.layers.length);
    expect(html).not.toMatch(/<script|src=|href=|url\(/);
  });
});

describe("gm-apot on ResNet-20", () => {
  const { opq, report } = compressModel(MODEL, { method: "gm-apot" });
  test("9 convs lose 30% of their filters, the rest are skipped with a reason; edge layers 8-bit", () => {
    expect(report.gmApot!.pruned).toHaveLength(9);
    expect(report.gmApot!.skippedConvs).toHaveLength(12);
    expect(report.layers[0]!.bits).toBe(8);
    expect(report.layers.at(-1)!.bits).toBe(8);
    expect(report.layers.slice(1, -1).every((l) => l.bits === 4 && l.scheme === "apot")).toBe(true);
    const t = opq.compressed[1]!;
    expect(t.codebook.kind).toBe("table");
    expect(t.dims[0]).toBe(16 - 4);
    expect(opq.compressed[2]!.dims[1]).toBe(16 - 4);
  });
});

describe("weight discovery", () => {
  test("Gemm (transB 0/1), MatMul on either side; shared non-weight uses stay exact", () => {
    const t = (dims: number[]) => ({ dtype: "float32" as const, dims, data: Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i + 1)) });
    const g = {
      name: "g", inputs: [{ name: "x", dtype: "float32" as const, shape: [1, 8] }], outputs: [{ name: "y", dtype: "float32" as const, shape: null }],
      initializers: { a: t([8, 6]), b: t([5, 6]), c: t([5, 7]), d: t([3, 7]), e: t([7, 3]) },
      nodes: [
        { opType: "Gemm", domain: "", name: "g0", inputs: ["x", "a"], outputs: ["h0"], attrs: {} },
        { opType: "Gemm", domain: "", name: "g1", inputs: ["h0", "b"], outputs: ["h1"], attrs: { transB: { type: "int" as const, value: 1 } } },
        { opType: "MatMul", domain: "", name: "m0", inputs: ["h1", "c"], outputs: ["h2"], attrs: {} },
        { opType: "MatMul", domain: "", name: "m1", inputs: ["d", "h2"], outputs: ["h3"], attrs: {} },
        { opType: "MatMul", domain: "", name: "m2", inputs: ["h3", "e"], outputs: ["y0"], attrs: {} },
        { opType: "Add", domain: "", name: "add", inputs: ["y0", "e"], outputs: ["y"], attrs: {} },
      ],
    };
    const { slots, skipped } = findWeights(g);
    expect(slots.map((s) => [s.name, s.channelAxis])).toEqual([["a", 1], ["b", 0], ["c", 1], ["d", 0]]);
    expect(skipped.map((s) => s.name)).toEqual(["e"]);
    const { opq, report } = compressModel({ irVersion: 8, opsetImports: [{ domain: "", version: 13 }], producerName: "t", graph: g }, { sparsity: 0.3, bits: 4 });
    expect(report.opq!.budgetError).toBeLessThan(1e-6);
    expect(opq.model.graph.initializers.e).toBe(g.initializers.e);
  });
});

describe("bad input gives typed errors", () => {
  test("options", () => {
    expect(code(() => compressModel(MODEL, { sparsity: 1.5 }))).toBe("INVALID_OPTION");
    expect(code(() => compressModel(MODEL, { method: "nope" as "opq" }))).toBe("INVALID_OPTION");
    expect(code(() => compressModel(MODEL, { method: "gm-apot", bits: 5 }))).toBe("INVALID_OPTION");
    expect(code(() => compressModel(MODEL, { bits: NaN }))).toBe("INVALID_OPTION");
  });
  test("broken models", () => {
    const w = findWeights(MODEL.graph).slots[0]!.name;
    const short: Model = { ...MODEL, graph: { ...MODEL.graph, initializers: { ...MODEL.graph.initializers, [w]: { dtype: "float32", dims: [16, 1, 3, 3], data: new Float32Array(5) } } } };
    expect(code(() => compressModel(short))).toBe("INVALID_MODEL");
    const nan = new Float32Array(144).fill(NaN);
    expect(code(() => compressModel({ ...MODEL, graph: { ...MODEL.graph, initializers: { ...MODEL.graph.initializers, [w]: { dtype: "float32", dims: [16, 1, 3, 3], data: nan } } } }))).toBe("INVALID_MODEL");
    expect(code(() => compressModel({ ...MODEL, graph: { ...MODEL.graph, nodes: [] } }))).toBe("NO_WEIGHTS");
    expect(code(() => compressModel({} as Model))).toBe("INVALID_MODEL");
  });
  test("garbage and mutated ONNX bytes never crash untyped", () => {
    expect(code(() => compressModel(readOnnx(new TextEncoder().encode("not an onnx model at all"))))).toBe("BAD_MAGIC");
    let seed = 1;
    const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
    for (let k = 0; k < 24; k++) {
      const mut = BYTES.slice(0, k % 3 === 0 ? next() % BYTES.length : BYTES.length);
      for (let j = 0; j < 8; j++) mut[next() % mut.length] = next() & 255;
      const c = code(() => compressModel(readOnnx(mut), { sparsity: 0.5, bits: 4 }));
      expect(c).not.toStartWith("untyped");
    }
  });
});
