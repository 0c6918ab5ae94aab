/**
 * inspectOpq: what a `.opq` file holds and where its bytes go, per layer and per category,
 * with both weight codecs' sizes side by side (the other codec is measured by re-encoding the
 * same gap and code streams) and the ratio to the zero-order entropy bound.
 * @module
 */
import { CODEC, CODEC_TRAITS, decodeOpqParts, SECTION_KIND } from "./container.ts";
import { entropyBound, type EntropyBound, zeroOrderBits } from "./entropy.ts";
import { sizeOf } from "./graph.ts";
import { deflateBytes } from "./codecs/deflate.ts";
import { indicesToGaps, writeVarints, zigzag } from "./codecs/gaps.ts";
import { encodePairStream, modelCostBits } from "./codecs/rans.ts";

/** One compressed tensor. Byte counts are of this file unless named after a codec. */
export interface OpqLayerRow {
  name: string;
  dims: number[];
  /** Dense elements. */
  size: number;
  nnz: number;
  codebookKind: "uniform" | "table";
  distinctCodes: number;
  /** Bytes of the gap stream (its share of the coder tables included). */
  indicesBytes: number;
  /** Bytes of the code stream (its share of the coder tables included). */
  codesBytes: number;
  /** Stored codebook values (a table's f32 values; a uniform step lives in the graph section). */
  codebookBytes: number;
  /** (indices + codes + codebook) bits per non-zero and per dense weight. */
  bitsPerNonzero: number;
  bitsPerWeight: number;
  /** Gap + code streams (tables included) under each weight codec. */
  ransBytes: number;
  deflateBytes: number;
  /** n·H0(gaps) + n·H0(codes), in bytes. */
  entropyBytes: number;
}

/** Bytes of the file by what they hold; the fields add up to `total`. */
export interface OpqByteBreakdown {
  indices: number;
  codes: number;
  codebooks: number;
  graph: number;
  kept: number;
  /** Preamble, header (section table + metadata), alignment padding. */
  framing: number;
  total: number;
}

/** What inspectOpq reports. */
export interface OpqInspection {
  formatVersion: number;
  fileBytes: number;
  weightCodec: string;
  metadata: Record<string, unknown>;
  sections: { kind: string; codec: string; offset: number; length: number; rawLength: number }[];
  layers: OpqLayerRow[];
  breakdown: OpqByteBreakdown;
  /** Σ over layers of the gap + code streams under each codec (the other codec's 0 if compare is false). */
  weightStreams: { rans: number; deflate: number };
  /** The whole file under each weight codec, graph, kept and framing as here (the other's 0 if compare is false). */
  fileBytesByCodec: { rans: number; deflate: number };
  /**
   * Bytes of the FP32 model the file was made from: the source ONNX file's size as the compressor
   * recorded it (`metadata.fp32Bytes`), else the dense model's tensors (4 bytes per weight + kept).
   */
  fp32Bytes: number;
  /** sizeRatio(fp32Bytes, fileBytes): the "N× smaller" every opq tool reports. */
  sizeRatio: number;
  entropy: EntropyBound;
  /** fileBytes / entropy.totalBytes. */
  ratioToBound: number;
}

const SECTION_NAMES = ["graph", "kept", "weights"];

/**
 * The one size ratio opq reports as "N× smaller" (compress, inspect, the server, the report):
 * bytes of the FP32 model it came from (the source ONNX file when known) ÷ bytes of the `.opq`.
 */
export function sizeRatio(fp32Bytes: number, opqBytes: number): number {
  return opqBytes > 0 ? fp32Bytes / opqBytes : 0;
}

/** Options of inspectOpq. */
export interface InspectOptions {
  /**
   * Re-encode every tensor's streams under both weight codecs for the side-by-side columns
   * (default true; ~0.2 s per million non-zeros). When false, the other codec's columns are 0.
   */
  compare?: boolean;
}

/** Inspect `.opq` bytes (decodes and validates them fully; throws FormatError like decodeOpq). */
export function inspectOpq(bytes: Uint8Array, options: InspectOptions = {}): OpqInspection {
  const compare = options.compare ?? true;
  const parts = decodeOpqParts(bytes);
  const { model, sections, regions } = parts;
  const weights = sections.find((s) => s.kind === SECTION_KIND.WEIGHTS)!;
  const layers: OpqLayerRow[] = [];
  let streamsRans = 0, streamsDeflate = 0, streamsHere = 0;
  model.compressed.forEach((t, i) => {
    const region = regions[i]!;
    const gaps = indicesToGaps(t.indices);
    const syms = t.codebook.kind === "uniform" ? Uint32Array.from(t.codes, zigzag) : new Uint32Array(t.codes);
    const nnz = t.indices.length;
    let ransBytes = 0, deflated = 0, indicesBytes = 0, codesBytes = 0;
    if (nnz > 0) {
      const rans = parts.weightCodec === CODEC.RANS;
      const stream = region.regionBytes - region.codebookBytes;
      const r = rans || compare ? encodePairStream(gaps, syms) : undefined;
      ransBytes = r ? r.bytes.length : 0;
      deflated = !rans || compare ? 16 + deflateBytes(writeVarints(gaps)).length + deflateBytes(writeVarints(syms)).length : 0;
      if (rans) {
        // One rANS stream carries both: split by each stream's coded bits.
        const g = modelCostBits(r!.ma, gaps), s = modelCostBits(r!.mb, syms);
        indicesBytes = Math.round((stream * g) / Math.max(g + s, 1e-9));
      } else {
        const at = weights.offset + region.offset + region.codebookBytes;
        indicesBytes = 8 + new DataView(bytes.buffer, bytes.byteOffset + at, 8).getUint32(4, true);
      }
      codesBytes = stream - indicesBytes;
    }
    streamsRans += ransBytes;
    streamsDeflate += deflated;
    streamsHere += indicesBytes + codesBytes;
    const size = sizeOf(t.dims), stored = indicesBytes + codesBytes + region.codebookBytes;
    layers.push({
      name: t.name, dims: t.dims, size, nnz, codebookKind: t.codebook.kind,
      distinctCodes: new Set(t.codes).size,
      indicesBytes, codesBytes, codebookBytes: region.codebookBytes,
      bitsPerNonzero: nnz ? (8 * stored) / nnz : 0, bitsPerWeight: size ? (8 * stored) / size : 0,
      ransBytes, deflateBytes: deflated,
      entropyBytes: (zeroOrderBits(gaps) + zeroOrderBits(t.codes)) / 8,
    });
  });
  const sectionLength = (kind: number) => sections.filter((s) => s.kind === kind).reduce((a, s) => a + s.length, 0);
  const indices = layers.reduce((a, l) => a + l.indicesBytes, 0);
  const codes = layers.reduce((a, l) => a + l.codesBytes, 0);
  const codebooks = layers.reduce((a, l) => a + l.codebookBytes, 0);
  const graph = sectionLength(SECTION_KIND.GRAPH), kept = sectionLength(SECTION_KIND.KEPT);
  const total = bytes.length;
  const entropy = entropyBound(model);
  // Weight regions are 4-aligned, so the other codec's file size is estimated to within padding.
  const otherFile = (streams: number) => total - streamsHere + streams;
  const recorded = model.metadata.fp32Bytes;
  const fp32Bytes = typeof recorded === "number" && recorded > 0 ? recorded : 4 * layers.reduce((a, l) => a + l.size, 0) + entropy.exactBytes;
  return {
    formatVersion: parts.version,
    fileBytes: total,
    weightCodec: CODEC_TRAITS[parts.weightCodec]!.name,
    metadata: model.metadata,
    sections: sections.map((s) => ({ kind: SECTION_NAMES[s.kind] ?? `kind ${s.kind}`, codec: CODEC_TRAITS[s.codec]?.name ?? `codec ${s.codec}`, offset: s.offset, length: s.length, rawLength: s.rawLength })),
    layers,
    breakdown: { indices, codes, codebooks, graph, kept, framing: total - indices - codes - codebooks - graph - kept, total },
    weightStreams: { rans: streamsRans, deflate: streamsDeflate },
    fileBytesByCodec: {
      rans: compare || parts.weightCodec === CODEC.RANS ? otherFile(streamsRans) : 0,
      deflate: compare || parts.weightCodec !== CODEC.RANS ? otherFile(streamsDeflate) : 0,
    },
    fp32Bytes,
    sizeRatio: sizeRatio(fp32Bytes, total),
    entropy,
    ratioToBound: total / entropy.totalBytes,
  };
}
