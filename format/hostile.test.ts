/**
 * Hostile input: truncations, random byte flips, and flips behind recomputed checksums
 * (structure-aware fuzzing of the graph msgpack and the rANS/deflate weight streams). Every
 * case must throw a FormatError with a code, or decode to a model whose compressed tensors
 * have strictly increasing in-range indices and codes valid for their codebook. Seeded PRNG,
 * so any failure is reproducible; counts by error code are printed.
 */
import { describe, expect, test } from "bun:test";
import { decode as msgpackDecode, encode as msgpackEncode } from "@msgpack/msgpack";
import { CODEC, decodeOpq, decodeOpqParts, encodeOpq, PREAMBLE_BYTES, SECTION_KIND } from "./container.ts";
import { crc32 } from "./codecs/crc32.ts";
import { deflateBytes, inflateBytes } from "./codecs/deflate.ts";
import { GRAPH_DICTIONARY_V1 } from "./codecs/graph-dictionary.ts";
import { edgeCaseModel, mulberry32 } from "./codecs/synthetic.ts";
import { FORMAT_ERROR_CODES, FormatError } from "./errors.ts";
import { type OpqModel, sizeOf } from "./graph.ts";

/** The invariants a decoded model must hold even if a flip slipped past every check. */
function assertValid(m: OpqModel): void {
  for (const t of m.compressed) {
    const size = sizeOf(t.dims);
    expect(t.codes.length).toBe(t.indices.length);
    let prev = -1;
    for (let k = 0; k < t.indices.length; k++) {
      const i = t.indices[k]!;
      if (!(i > prev && i < size)) throw new Error(`${t.name}: bad index ${i} at ${k}`);
      prev = i;
      if (t.codebook.kind === "table" && !(t.codes[k]! >= 0 && t.codes[k]! < t.codebook.values.length)) throw new Error(`${t.name}: code outside table`);
    }
  }
}

/** Decode and classify: a FormatError code, "ok" (valid model), or a test failure. */
function outcome(bytes: Uint8Array): string {
  try {
    const m = decodeOpq(bytes);
    assertValid(m);
    return "ok";
  } catch (e) {
    if (e instanceof FormatError && Object.values(FORMAT_ERROR_CODES).includes(e.code)) return e.code;
    throw e;
  }
}

function tally(counts: Record<string, number>, key: string): void {
  counts[key] = (counts[key] ?? 0) + 1;
}

/** Rebuild a file with one section's stored bytes replaced (header CRCs and lengths recomputed). */
function forge(bytes: Uint8Array, kind: number, stored: Uint8Array, rawLength: number): Uint8Array {
  const parts = decodeOpqParts(bytes);
  const h = new DataView(bytes.buffer, bytes.byteOffset).getUint32(8, true);
  const header = msgpackDecode(bytes.subarray(PREAMBLE_BYTES, PREAMBLE_BYTES + h)) as { sections: number[][] };
  const bodies = parts.sections.map((s) => (s.kind === kind ? stored : bytes.subarray(s.offset, s.offset + s.length)));
  header.sections.forEach((s, i) => { if (s[0] === kind) { s[2] = stored.length; s[3] = rawLength; } s[4] = crc32(bodies[i]!); });
  const nh = msgpackEncode(header);
  let total = (PREAMBLE_BYTES + nh.length + 3) & ~3;
  const offsets = bodies.map((b) => { const o = total; total = (o + b.length + 3) & ~3; return o; });
  const out = new Uint8Array(total);
  out.set(bytes.subarray(0, 8));
  new DataView(out.buffer).setUint32(8, nh.length, true);
  new DataView(out.buffer).setUint32(12, crc32(nh), true);
  out.set(nh, PREAMBLE_BYTES);
  bodies.forEach((b, i) => out.set(b, offsets[i]!));
  return out;
}

/** The GRAPH section's content, and a packer that codes new content the same way. */
function graphCodec(good: Uint8Array): { content: Uint8Array; pack: (raw: Uint8Array) => Uint8Array } {
  const g = decodeOpqParts(good).sections.find((s) => s.kind === SECTION_KIND.GRAPH)!;
  const dict = g.codec === CODEC.DEFLATE_GRAPH_DICT_V1 ? GRAPH_DICTIONARY_V1 : undefined;
  expect(g.codec === CODEC.DEFLATE || dict !== undefined).toBe(true);
  return { content: inflateBytes(good.subarray(g.offset, g.offset + g.length), g.rawLength, dict), pack: (raw) => deflateBytes(raw, 9, dict) };
}

const model = edgeCaseModel(11);
const files = { rans: encodeOpq(model), deflate: encodeOpq(model, { codec: "deflate" }) };

describe("hostile input", () => {
  test("200 truncations are all rejected", () => {
    const rng = mulberry32(2024);
    const counts: Record<string, number> = {};
    const good = files.rans;
    for (let k = 0; k < 200; k++) {
      // A quarter inside the preamble and header, the rest anywhere.
      const at = k < 50 ? Math.floor(rng() * 64) : Math.floor(rng() * good.length);
      tally(counts, outcome(good.subarray(0, at)));
    }
    console.log("truncations:", counts);
    expect(counts.ok).toBeUndefined();
    expect(Object.values(counts).reduce((a, b) => a + b)).toBe(200);
  });

  for (const [codec, good] of Object.entries(files)) {
    test(`2000 random byte flips (${codec})`, () => {
      const rng = mulberry32(codec === "rans" ? 7 : 8);
      const counts: Record<string, number> = {};
      for (let k = 0; k < 2000; k++) {
        const bad = good.slice();
        const flips = 1 + Math.floor(rng() * 3);
        for (let f = 0; f < flips; f++) bad[Math.floor(rng() * bad.length)] ^= 1 + Math.floor(rng() * 255);
        tally(counts, outcome(bad));
      }
      console.log(`flips (${codec}):`, counts);
      expect(Object.values(counts).reduce((a, b) => a + b)).toBe(2000);
      expect(counts.CHECKSUM).toBeGreaterThan(1500);
    });
  }

  // Behind the checksums: mutate section contents and recompute every CRC, so the structural
  // validators (msgpack limits, graph shape, rANS end state, varint and index checks) are hit.
  test("300 graph-section mutations with valid checksums", () => {
    const rng = mulberry32(99);
    const good = files.rans;
    const { content, pack } = graphCodec(good);
    const counts: Record<string, number> = {};
    for (let k = 0; k < 300; k++) {
      const bad = content.slice();
      const flips = 1 + Math.floor(rng() * 4);
      for (let f = 0; f < flips; f++) bad[Math.floor(rng() * bad.length)] ^= 1 << Math.floor(rng() * 8);
      tally(counts, outcome(forge(good, SECTION_KIND.GRAPH, pack(bad), bad.length)));
    }
    console.log("graph mutations:", counts);
    expect(Object.values(counts).reduce((a, b) => a + b)).toBe(300);
  });

  for (const [codec, good] of Object.entries(files)) {
    test(`300 weight-stream mutations with valid checksums (${codec})`, () => {
      const rng = mulberry32(codec === "rans" ? 5 : 6);
      const w = decodeOpqParts(good).sections.find((s) => s.kind === SECTION_KIND.WEIGHTS)!;
      const counts: Record<string, number> = {};
      for (let k = 0; k < 300; k++) {
        const bad = good.slice(w.offset, w.offset + w.length);
        const flips = 1 + Math.floor(rng() * 3);
        for (let f = 0; f < flips; f++) bad[Math.floor(rng() * bad.length)] ^= 1 << Math.floor(rng() * 8);
        tally(counts, outcome(forge(good, SECTION_KIND.WEIGHTS, bad, bad.length)));
      }
      console.log(`weight mutations (${codec}):`, counts);
      expect(Object.values(counts).reduce((a, b) => a + b)).toBe(300);
      expect(counts.CORRUPT).toBeGreaterThan(100);
    });
  }

  test("forged structures: huge dims, nnz, region lengths and deep nesting are refused cheaply", () => {
    const good = files.rans;
    const { content, pack } = graphCodec(good);
    const wire = msgpackDecode(content) as unknown[][];
    const withGraph = (edit: (w: unknown[][]) => void) => {
      const w = structuredClone(wire);
      edit(w);
      const raw = msgpackEncode(w);
      return outcome(forge(good, SECTION_KIND.GRAPH, pack(raw), raw.length));
    };
    const tensors = () => 1, model = () => 0;
    expect(withGraph((w) => { (w[tensors()]![0] as unknown[])[1] = [2 ** 26, 2 ** 26]; })).toBe("TOO_LARGE");
    expect(withGraph((w) => { (w[tensors()]![0] as unknown[])[4] = 2 ** 31; })).toBe("CORRUPT");
    expect(withGraph((w) => { (w[tensors()]![0] as unknown[])[5] = 2 ** 40; })).toBe("CORRUPT");
    expect(withGraph((w) => { (w[tensors()]![0] as unknown[])[2] = 7; })).toBe("UNSUPPORTED");
    // w.gap (2^22 elements, 2 non-zeros in a ~20-byte stream) claiming 2^22 non-zeros: refused
    // before 32 MB of indices and codes are allocated.
    expect(withGraph((w) => { const d = (w[tensors()] as unknown[][]).find((t) => t[0] === "w.gap")!; d[4] = 2 ** 22; })).toBe("TOO_LARGE");
    // A nil output stands for `${name}_output_${k}`; an unnamed node has no such name.
    const firstNode = (w: unknown[][]) => ((w[model()]![3] as unknown[])[1] as unknown[][])[0]!;
    expect(withGraph((w) => { (firstNode(w)[4] as unknown[])[0] = null; })).toBe("ok");
    expect(withGraph((w) => { firstNode(w)[2] = ""; (firstNode(w)[4] as unknown[])[0] = null; })).toBe("CORRUPT");
    // A kept tensor claiming 2^40 float32 elements: bounded by the KEPT section, not allocated.
    expect(withGraph((w) => { ((w[model()]![3] as unknown[])[4] as unknown[][])[0]![1] = [1, [2 ** 40]]; })).toBe("CORRUPT");
    // 100 000 nested subgraphs (msgpack written by hand: its encoder refuses such depth):
    // no stack overflow, refused by the depth limit.
    const text = (t: string) => [0xa0 | t.length, ...new TextEncoder().encode(t)];
    const prefix = [0x96, ...text("g"), 0x91, 0x96, ...text("Loop"), ...text(""), ...text("n"), 0x90, 0x90, 0x91, 0x93, ...text("body"), 5];
    const innermost = [0x96, ...text("g"), 0x90, 0x90, 0x90, 0x90, 0xc0];
    const suffix = [0x90, 0x90, 0x90, 0xc0];
    const depth = 100000;
    const raw = new Uint8Array(4 + 5 + depth * (prefix.length + suffix.length) + innermost.length + 1);
    let p = 0;
    raw.set([0x93, 0x94, 7, 0x90, 0xa0], p); p += 5; // [[7, [], "", graph], [], {}]
    for (let d = 0; d < depth; d++) { raw.set(prefix, p); p += prefix.length; }
    raw.set(innermost, p); p += innermost.length;
    for (let d = 0; d < depth; d++) { raw.set(suffix, p); p += suffix.length; }
    raw[p++] = 0x90;
    raw[p++] = 0x80;
    const nested = raw.subarray(0, p);
    let err: unknown;
    try { decodeOpq(forge(good, SECTION_KIND.GRAPH, pack(nested), nested.length)); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(FormatError);
    expect((err as FormatError).code).toBe("CORRUPT");
    expect((err as FormatError).message).toContain("deep");
  });
});
