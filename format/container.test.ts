/**
 * `.opq` container: exact round trips (both weight codecs, every edge case), the layout
 * invariants SPEC.md promises, argument checking, header-level errors, and size against the
 * entropy bound on the real ResNet-20 graph wrapped with naive compression.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { decode as msgpackDecode, encode as msgpackEncode } from "@msgpack/msgpack";
import { sharedPath } from "../cli/shared.ts";
import { CODEC, decodeOpq, defaultMaxElements, DENSE_ELEMENTS_PER_FILE_BYTE, encodeOpq, MIN_DENSE_ELEMENTS, OPQ_FORMAT_VERSION, PREAMBLE_BYTES } from "./container.ts";
import { crc32 } from "./codecs/crc32.ts";
import { inflateBytes } from "./codecs/deflate.ts";
import { GRAPH_DICTIONARY_V1 } from "./codecs/graph-dictionary.ts";
import { compressNaive, edgeCaseModel, mulberry32, syntheticTensor } from "./codecs/synthetic.ts";
import { entropyBound } from "./entropy.ts";
import { FormatError } from "./errors.ts";
import { dequantize, type OpqModel } from "./graph.ts";
import { inspectOpq } from "./inspect.ts";
import { readOnnx } from "./onnx-reader.ts";

/** Typed arrays as (class, bytes) and −0/NaN spelled out, so toEqual means bit-identical. */
function bitView(x: unknown): unknown {
  if (ArrayBuffer.isView(x)) return { class: x.constructor.name, bytes: new Uint8Array(x.buffer, x.byteOffset, x.byteLength) };
  if (typeof x === "number") return Object.is(x, -0) ? "-0" : Number.isNaN(x) ? "NaN" : x;
  if (Array.isArray(x)) return x.map(bitView);
  if (x && typeof x === "object") return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, bitView(v)]));
  return x;
}

function codeOf(f: () => unknown): string | undefined {
  try { f(); } catch (e) { if (e instanceof FormatError) return e.code; throw e; }
  return undefined;
}

/** Rebuild a file with a rewritten header (valid CRC), keeping the sections' bytes. */
function rewriteHeader(bytes: Uint8Array, edit: (h: { sections: number[][] }) => void, version = OPQ_FORMAT_VERSION): Uint8Array {
  const dv = new DataView(bytes.buffer, bytes.byteOffset);
  const h = dv.getUint32(8, true);
  const header = msgpackDecode(bytes.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + h)) as { sections: number[][] };
  edit(header);
  const nh = msgpackEncode(header), start = (PREAMBLE_BYTES + nh.length + 3) & ~3;
  const rest = bytes.subarray((PREAMBLE_BYTES + h + 3) & ~3);
  const out = new Uint8Array(start + rest.length);
  out.set(bytes.subarray(0, 4));
  const odv = new DataView(out.buffer);
  odv.setUint32(4, version, true);
  odv.setUint32(8, nh.length, true);
  odv.setUint32(12, crc32(nh), true);
  out.set(nh, PREAMBLE_BYTES);
  out.set(rest, start);
  return out;
}

describe("round trip", () => {
  for (const codec of ["rans", "deflate"] as const) {
    test(`edge cases are bit-identical (${codec})`, () => {
      const m = edgeCaseModel();
      const bytes = encodeOpq(m, { codec });
      const back = decodeOpq(bytes);
      expect(bitView(back)).toEqual(bitView(m));
      expect(back.model.graph.valueInfo).toBeDefined();
      expect(back.model.graph.nodes[2]!.attrs.body!.type).toBe("graph");
      // Encoding is deterministic, so the decoded model re-encodes to the same bytes.
      expect(encodeOpq(back, { codec })).toEqual(bytes);
    });
  }

  test("dequantized weights match", () => {
    const m = edgeCaseModel(7);
    const back = decodeOpq(encodeOpq(m));
    for (let i = 0; i < m.compressed.length; i++) {
      if (m.compressed[i]!.dims[0] === 1 << 22) continue; // 16 MB of zeros proves nothing more
      expect(bitView(dequantize(back.compressed[i]!))).toEqual(bitView(dequantize(m.compressed[i]!)));
    }
  });

  test("a gap of 2^32 − 1 (the widest escape) round-trips", () => {
    const m: OpqModel = { ...edgeCaseModel(), compressed: [
      { name: "w.wide", dims: [2 ** 32], codebook: { kind: "uniform", step: 1 }, indices: new Uint32Array([2 ** 32 - 1]), codes: new Int32Array([3]) },
    ] };
    for (const codec of ["rans", "deflate"] as const) {
      const bytes = encodeOpq(m, { codec });
      expect(codeOf(() => decodeOpq(bytes))).toBe("TOO_LARGE"); // 2^32 dense elements > the default cap
      expect(bitView(decodeOpq(bytes, { maxElements: 2 ** 33 }))).toEqual(bitView(m));
    }
  });

  test("input at any byte offset (pooled Buffers) decodes the same", () => {
    const m = edgeCaseModel(3);
    for (const codec of ["rans", "deflate"] as const) {
      const bytes = encodeOpq(m, { codec });
      for (const off of [1, 2, 3]) {
        const buf = new Uint8Array(bytes.length + off);
        buf.set(bytes, off);
        expect(bitView(decodeOpq(buf.subarray(off)))).toEqual(bitView(m));
        expect(inspectOpq(buf.subarray(off)).fileBytes).toBe(bytes.length);
      }
    }
  });

  test("outputs named `${node}_output_${k}` go as nil and come back exactly", () => {
    const m = edgeCaseModel();
    const node = (name: string, outputs: string[]) => ({ opType: "Identity", domain: "", name, inputs: ["x"], outputs, attrs: {} });
    m.model.graph.nodes.push(
      node("/a/Split", ["/a/Split_output_0", "/a/Split_output_1", "", "other"]),
      node("/b", ["/b_output_1", "/b_output_0"]),
      node("", ["_output_0"]),
    );
    const bytes = encodeOpq(m);
    expect(bitView(decodeOpq(bytes))).toEqual(bitView(m));
    const g = inspectOpq(bytes).sections.find((s) => s.kind === "graph")!;
    const dict = g.codec === "deflate+graph-dict-v1" ? GRAPH_DICTIONARY_V1 : undefined;
    const content = g.codec === "raw" ? bytes.subarray(g.offset, g.offset + g.length) : inflateBytes(bytes.subarray(g.offset, g.offset + g.length), g.rawLength, dict);
    const wireNodes = ((msgpackDecode(content) as unknown[][])[0]![3] as unknown[][])[1] as unknown[][];
    expect(wireNodes.slice(-3).map((n) => n[4])).toEqual([[null, null, "", "other"], ["/b_output_1", "/b_output_0"], ["_output_0"]]);
  });

  test("an empty model round-trips", () => {
    const m: OpqModel = {
      model: { irVersion: 7, opsetImports: [], producerName: "", graph: { name: "", nodes: [], inputs: [], outputs: [], initializers: {} } },
      compressed: [], metadata: {},
    };
    expect(bitView(decodeOpq(encodeOpq(m)))).toEqual(bitView(m));
  });
});

test("golden: the rANS WEIGHTS bytes of the edge-case model are pinned (same constant in container.deno.test.ts)", () => {
  const bytes = encodeOpq(edgeCaseModel());
  const w = inspectOpq(bytes).sections.find((s) => s.kind === "weights")!;
  expect(crc32(bytes.subarray(w.offset, w.offset + w.length))).toBe(0x35d3b219);
});

describe("layout", () => {
  const bytes = encodeOpq(edgeCaseModel());
  const info = inspectOpq(bytes);

  test("magic, version, 4-byte alignment", () => {
    expect([...bytes.subarray(0, 4)]).toEqual([0x4f, 0x50, 0x51, 0]);
    expect(new DataView(bytes.buffer).getUint32(4, true)).toBe(OPQ_FORMAT_VERSION);
    expect(bytes.length % 4).toBe(0);
    for (const s of info.sections) expect(s.offset % 4).toBe(0);
    expect(info.sections.map((s) => s.kind)).toEqual(["graph", "kept", "weights"]);
    expect(info.weightCodec).toBe("rans");
  });

  test("inspect: byte categories add up to the file; rows describe the layers", () => {
    const b = info.breakdown;
    expect(b.indices + b.codes + b.codebooks + b.graph + b.kept + b.framing).toBe(bytes.length);
    expect(b.framing).toBeGreaterThan(PREAMBLE_BYTES);
    const table = info.layers.find((l) => l.name === "w.table")!;
    expect(table.codebookKind).toBe("table");
    expect(table.codebookBytes).toBe(20);
    expect(table.nnz).toBe(40);
    expect(info.layers.find((l) => l.name === "w.zero")!.indicesBytes).toBe(0);
    expect(info.layers.find((l) => l.name === "w.single")!.distinctCodes).toBe(1);
    for (const l of info.layers) expect(l.indicesBytes + l.codesBytes).toBe(info.weightCodec === "rans" ? l.ransBytes : l.deflateBytes);
    expect(info.metadata).toEqual(edgeCaseModel().metadata);
    const quick = inspectOpq(bytes, { compare: false });
    expect(quick.breakdown).toEqual(b);
    expect(quick.weightStreams.deflate).toBe(0);
  });
});

describe("arguments and header errors", () => {
  test("invalid models are INVALID_ARGUMENT", () => {
    const bad = (edit: (m: OpqModel) => void) => { const m = edgeCaseModel(); edit(m); return codeOf(() => encodeOpq(m)); };
    expect(bad((m) => { m.compressed[0]!.indices = Uint32Array.from([5, 5]); m.compressed[0]!.codes = new Int32Array(2); })).toBe("INVALID_ARGUMENT");
    expect(bad((m) => { m.compressed[0]!.indices = Uint32Array.from([99999]); m.compressed[0]!.codes = new Int32Array(1); })).toBe("INVALID_ARGUMENT");
    expect(bad((m) => { m.compressed[6]!.codes[0] = 5; })).toBe("INVALID_ARGUMENT");
    expect(bad((m) => { m.compressed[1]!.codes = new Int32Array(3); })).toBe("INVALID_ARGUMENT");
    expect(bad((m) => { m.model.graph.initializers.bias!.data = new Float64Array(4); })).toBe("INVALID_ARGUMENT");
    expect(bad((m) => { m.model.graph.initializers.bias!.dims = [5]; })).toBe("INVALID_ARGUMENT");
    expect(bad((m) => { m.compressed.push({ ...m.compressed[0]! }); })).toBe("INVALID_ARGUMENT");
    expect(codeOf(() => encodeOpq(edgeCaseModel(), { codec: "zstd" as "rans" }))).toBe("INVALID_ARGUMENT");
    expect(bad((m) => { (m.model as { irVersion: unknown }).irVersion = "8"; })).toBe("INVALID_ARGUMENT");
    expect(bad((m) => { m.model.graph.nodes[0]!.attrs.group = { type: "int", value: 1.5 }; })).toBe("INVALID_ARGUMENT");
    expect(bad((m) => { let deep: unknown = 1; for (let i = 0; i < 500; i++) deep = { deep }; m.metadata = { deep }; })).toBe("INVALID_ARGUMENT");
  });

  test("names that shadow Object.prototype are ordinary names", () => {
    const m = edgeCaseModel();
    m.compressed[0]!.name = "constructor";
    expect(bitView(decodeOpq(encodeOpq(m)))).toEqual(bitView(m));
  });

  const good = encodeOpq(edgeCaseModel());
  test("bad magic, version, codec, kind", () => {
    const notOpq = good.slice(); notOpq[1] = 0x51;
    expect(codeOf(() => decodeOpq(notOpq))).toBe("BAD_MAGIC");
    expect(codeOf(() => decodeOpq(new Uint8Array([0x4f, 0x50])))).toBe("TRUNCATED");
    expect(codeOf(() => decodeOpq(rewriteHeader(good, () => {}, 2)))).toBe("UNSUPPORTED_VERSION");
    expect(codeOf(() => decodeOpq(rewriteHeader(good, (h) => { h.sections[2]![1] = 9; })))).toBe("UNKNOWN_CODEC");
    expect(codeOf(() => decodeOpq(rewriteHeader(good, (h) => { h.sections[0]![1] = CODEC.RANS; })))).toBe("CORRUPT");
    expect(codeOf(() => decodeOpq(rewriteHeader(good, (h) => { h.sections[1]![0] = 0; })))).toBe("CORRUPT");
    expect(codeOf(() => decodeOpq(rewriteHeader(good, (h) => { (h as Record<string, unknown>).extra = 1; })))).toBe("CORRUPT");
  });

  test("a lying inflated length is TOO_LARGE before any allocation", () => {
    expect(codeOf(() => decodeOpq(rewriteHeader(good, (h) => { h.sections[0]![3] = 2 ** 31; })))).toBe("TOO_LARGE");
    expect(codeOf(() => decodeOpq(rewriteHeader(good, (h) => { h.sections[0]![3]! += 1; })))).toBe("CORRUPT");
  });

  test("appended bytes are rejected, a still-valid prefix is not mistaken for the file", () => {
    const longer = new Uint8Array(good.length + 4); longer.set(good);
    expect(codeOf(() => decodeOpq(longer))).toBe("CORRUPT");
  });

  test("an unknown section kind is checksummed and skipped; a missing required one is CORRUPT", () => {
    const extra = new Uint8Array([1, 2, 3, 4]);
    const withExtra = rewriteHeader(good, (h) => { h.sections.push([9, 0, 4, 4, crc32(extra)]); });
    const file = new Uint8Array(withExtra.length + 4);
    file.set(withExtra);
    file.set(extra, withExtra.length);
    expect(bitView(decodeOpq(file))).toEqual(bitView(decodeOpq(good)));
    file[file.length - 1] ^= 1;
    expect(codeOf(() => decodeOpq(file))).toBe("CHECKSUM");
    expect(codeOf(() => decodeOpq(rewriteHeader(good, (h) => { h.sections.pop(); })))).toBe("CORRUPT");
  });

  test("maxElements caps the dense size", () => {
    expect(codeOf(() => decodeOpq(good, { maxElements: 1000 }))).toBe("TOO_LARGE");
  });

  test("the default cap is proportionate to the file: a few hundred bytes cannot declare 2^25 dense elements", () => {
    const m = edgeCaseModel();
    m.compressed = [{ name: "w.huge", dims: [1 << 25], codebook: { kind: "uniform", step: 0.5 }, indices: Uint32Array.of(0, (1 << 25) - 1), codes: Int32Array.of(1, -1) }];
    const bytes = encodeOpq(m);
    expect(defaultMaxElements(bytes.length)).toBe(MIN_DENSE_ELEMENTS);
    expect(codeOf(() => decodeOpq(bytes))).toBe("TOO_LARGE");
    // A caller that trusts the file raises the cap.
    expect(decodeOpq(bytes, { maxElements: 1 << 25 }).compressed[0]!.dims).toEqual([1 << 25]);
    expect(defaultMaxElements(1 << 20)).toBe(DENSE_ELEMENTS_PER_FILE_BYTE << 20);
  });
});

describe("size against the entropy bound", () => {
  test("entropy bound of a hand-made tensor", () => {
    // gaps 0,1,0,1 → H0 = 1 bit each; codes all equal → 0 bits; one float32 kept tensor.
    const m = edgeCaseModel();
    m.compressed = [{ name: "w", dims: [8], codebook: { kind: "uniform", step: 1 }, indices: new Uint32Array([0, 2, 3, 5]), codes: new Int32Array([4, 4, 4, 4]) }];
    m.model.graph = { name: "g", nodes: [], inputs: [], outputs: [], initializers: { b: { dtype: "float32", dims: [3], data: new Float32Array(3) }, s: { dtype: "string", dims: [1], data: ["ab"] } } };
    expect(entropyBound(m)).toEqual({ gapsBits: 4, codesBits: 0, exactBytes: 14, totalBytes: 14.5 });
  });

  test("synthetic Laplace layers: rANS streams within 2% of n·H0, deflate further", () => {
    const rng = mulberry32(3);
    const m = edgeCaseModel();
    m.compressed = [syntheticTensor("a", [64, 64, 3, 3], rng), syntheticTensor("b", [128, 64, 3, 3], rng)];
    m.model.graph.initializers = {};
    m.model.graph.nodes = [];
    const info = inspectOpq(encodeOpq(m));
    const rans = info.layers.reduce((a, l) => a + l.ransBytes, 0), h0 = info.layers.reduce((a, l) => a + l.entropyBytes, 0);
    expect(rans / h0).toBeLessThan(1.02);
    expect(info.weightStreams.deflate / h0).toBeGreaterThan(rans / h0);
  });

  test("ResNet-20 (real graph and weights, naive 74% prune / 3 bits): whole file ≤ 1.05 × bound", () => {
    const m = compressNaive(readOnnx(readFileSync(sharedPath("models", "resnet20-fmnist.onnx"))), 0.26, 3);
    const bound = entropyBound(m).totalBytes;
    const rans = encodeOpq(m), deflate = encodeOpq(m, { codec: "deflate" });
    expect(bitView(decodeOpq(rans))).toEqual(bitView(m));
    expect(bitView(decodeOpq(deflate))).toEqual(bitView(m));
    console.log(`resnet20: bound ${bound.toFixed(0)} B, rans ${rans.length} B (${(rans.length / bound).toFixed(4)}×), deflate ${deflate.length} B (${(deflate.length / bound).toFixed(4)}×)`);
    expect(rans.length / bound).toBeLessThanOrEqual(1.05);
    expect(deflate.length).toBeGreaterThan(rans.length);
    const info = inspectOpq(rans);
    expect(info.fileBytesByCodec.deflate).toBeGreaterThanOrEqual(deflate.length - 4 * m.compressed.length);
    expect(info.fileBytesByCodec.deflate).toBeLessThanOrEqual(deflate.length + 4 * m.compressed.length);
  });
});
