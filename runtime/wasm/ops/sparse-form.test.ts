/**
 * The in-wasm transcoders of a stored rANS stream (as/rans.ts via sparse-form.ts
 * transcodeEncoded, and encodedCodesU8 for the u8 code form) against the JS transcoder of the
 * decoded indices and codes: the same matrix
 * for every bit width 2–8, uniform steps and APoT tables, empty rows, odd sizes; it never reads
 * the decoded arrays; and a corrupted stream either fails with a FormatError CORRUPT in all, or
 * decodes to the same matrix in all.
 * @module
 */
import { describe, expect, test } from "bun:test";
import { type CompressedTensor, decodeOpq, encodedWeights, encodeOpq, FormatError, mulberry32 } from "../../../format/mod.ts";
import { WasmKernels } from "../module.ts";
import { caseModel, caseWeight, type SparseCase } from "./sparse-check.ts";
import { encodedCodesU8, type SparseRows, transcodeSparse } from "./sparse-form.ts";

const k = WasmKernels.create()!;

/** The dense matrix a form holds (summed, so a column written twice would show). */
function formDense(f: SparseRows): Float64Array {
  const out = new Float64Array(f.rows * f.cols);
  const lv = k.f32(f.levels, f.nLevels), rp = k.i32(f.rowPtr, f.rows);
  const st = k.u16(f.stream, (f.levels + f.bytes - f.stream) / 2);
  let nnz = 0;
  for (let r = 0; r < f.rows; r++) {
    const u = rp[r]!, nLev = st[u]!;
    let p = u + 1 + 2 * nLev, kept = 0;
    for (let h = u + 1; h < u + 1 + 2 * nLev; h += 2) {
      const v = lv[st[h]!]!;
      for (let j = 0; j < st[h + 1]!; j++) { out[r * f.cols + st[p++]!]! += v; kept++; }
    }
    expect(kept).toBe(f.rowNnz[r]!);
    nnz += kept;
  }
  expect(nnz).toBe(f.nnz);
  return out;
}

/** A case's weight stored in a `.opq` and decoded lazily (so it carries its rANS stream). */
function stored(c: SparseCase): { t: CompressedTensor; bytes: Uint8Array } {
  const bytes = encodeOpq(caseModel(c, caseWeight(c, 3)));
  return { t: decodeOpq(bytes, { lazyWeights: true }).compressed[0]!, bytes };
}

/** transcodeSparse of a plain copy of `t`'s decoded arrays (the JS path), as a dense matrix. */
function viaJs(t: CompressedTensor, rows: number, cols: number): Float64Array {
  const f = transcodeSparse(k, { name: t.name, dims: t.dims, codebook: t.codebook, indices: t.indices, codes: t.codes }, rows, cols);
  try { return formDense(f); } finally { k.free(f.levels); }
}

/** transcodeSparse of `t` with its decoded arrays made unreadable: only the stored stream can serve. */
function viaStream(t: CompressedTensor, rows: number, cols: number): Float64Array {
  const saved = { indices: Object.getOwnPropertyDescriptor(t, "indices")!, codes: Object.getOwnPropertyDescriptor(t, "codes")! };
  const refuse = { get() { throw new Error("the stream transcoder read the decoded arrays"); }, configurable: true };
  Object.defineProperty(t, "indices", refuse);
  Object.defineProperty(t, "codes", refuse);
  try {
    const f = transcodeSparse(k, t, rows, cols);
    try { return formDense(f); } finally { k.free(f.levels); }
  } finally {
    Object.defineProperty(t, "indices", saved.indices);
    Object.defineProperty(t, "codes", saved.codes);
  }
}

/** The u8 code form decoded from the stored stream (encodedCodesU8), as a dense matrix. */
function viaCodes(t: CompressedTensor): Float64Array {
  const n = t.dims.reduce((a, b) => a * b, 1);
  const p = k.alloc(n);
  try {
    const got = encodedCodesU8(k, t, p, 255)!;
    expect(got).toBeDefined();
    const codes = k.u8(p, n);
    return Float64Array.from(codes, (c) => (c === 0 ? 0 : got.values[c - 1]!));
  } finally {
    k.free(p);
  }
}

const conv = (w: number[], bits: number, density: number, extra: Partial<SparseCase> = {}): SparseCase =>
  ({ name: `${w} ${bits}b`, op: "Conv", x: [1, w[1]!, 5, 5], w, density, bits, ...extra });

describe("the rANS stream → sparse rows transcoder in wasm", () => {
  const cases: SparseCase[] = [];
  for (let bits = 2; bits <= 8; bits++) {
    cases.push(conv([7, 5, 3, 3], bits, 0.4, { emptyRows: [0, 3, 6] }));
    cases.push(conv([13, 3, 1, 1], bits, 0.9, { table: true }));
    cases.push(conv([5, 11, 1, 7], bits, 0.05));
  }
  cases.push(conv([3, 4, 3, 3], 3, 0.5, { emptyRows: [0, 1, 2] }));
  cases.push(conv([40, 300, 3, 3], 3, 0.26));

  test("the same matrix as the JS transcoder: bits 2–8, steps and tables, empty rows, odd sizes", () => {
    for (const c of cases) {
      const { t } = stored(c);
      const rows = c.w[0]!, cols = c.w[1]! * c.w[2]! * c.w[3]!;
      // A tensor with no kept weight stores no stream (the JS path transcodes its empty arrays).
      expect(encodedWeights(t) === undefined).toBe(t.nnz === 0);
      const a = t.nnz === 0 ? viaJs(t, rows, cols) : viaStream(t, rows, cols), b = viaJs(t, rows, cols);
      expect(a.length).toBe(rows * cols);
      if (t.nnz! > 0) expect(Array.from(viaCodes(t))).toEqual(Array.from(b));
      let diff = 0, nz = 0;
      for (let i = 0; i < a.length; i++) { if (a[i] !== b[i]) diff++; if (b[i] !== 0) nz++; }
      expect(diff).toBe(0);
      if (!c.emptyRows || c.emptyRows.length < rows) expect(nz).toBeGreaterThan(0);
    }
  });

  test("a corrupted stream fails with CORRUPT, or decodes to the same matrix, in both transcoders", () => {
    const c = conv([24, 16, 3, 3], 4, 0.4, { emptyRows: [5] });
    const rows = 24, cols = 16 * 9;
    const rand = mulberry32(11);
    let failed = 0;
    for (let trial = 0; trial < 60; trial++) {
      const { t } = stored(c);
      // The stream is a view of the file's bytes: corrupt them after decodeOpq's checksum check.
      const words = encodedWeights(t)!.words;
      for (let f = 0; f < 1 + (trial % 3); f++) words[Math.floor(rand() * words.length)]! ^= 1 << Math.floor(rand() * 8);
      if (trial % 10 === 9) words[words.length - 1 - Math.floor(rand() * 4)] = 0xff;
      let a: Float64Array | FormatError, b: Float64Array | FormatError, u: Float64Array | FormatError;
      try { a = viaStream(t, rows, cols); } catch (e) { if (!(e instanceof FormatError)) throw e; a = e; }
      try { u = viaCodes(t); } catch (e) { if (!(e instanceof FormatError)) throw e; u = e; }
      try { b = viaJs(t, rows, cols); } catch (e) { if (!(e instanceof FormatError)) throw e; b = e; }
      if (a instanceof FormatError || b instanceof FormatError || u instanceof FormatError) {
        expect(a instanceof FormatError && a.code).toBe("CORRUPT");
        expect(b instanceof FormatError && b.code).toBe("CORRUPT");
        expect(u instanceof FormatError && u.code).toBe("CORRUPT");
        failed++;
      } else {
        expect(Array.from(a)).toEqual(Array.from(b));
        expect(Array.from(u)).toEqual(Array.from(b));
      }
    }
    expect(failed).toBeGreaterThan(30);
  });
});
