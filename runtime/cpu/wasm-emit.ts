/**
 * A tiny WebAssembly binary emitter: just enough to build the runtime's SIMD kernels at run time
 * (no downloaded or checked-in binaries). Covers the module header, the type, import, function,
 * memory, export and code sections, LEB128 integers, and a `CodeBuilder` that appends instructions
 * from the opcode tables below — which list only the opcodes our kernels use.
 * Reference: the WebAssembly core spec (binary format) and the fixed-width SIMD proposal.
 * @module
 */

/** Value types (one byte each in the binary format). */
export const VALTYPE = { i32: 0x7f, v128: 0x7b } as const;
/** A value type the emitter knows. */
export type ValType = (typeof VALTYPE)[keyof typeof VALTYPE];

/** Single-byte opcodes used by our kernels. */
export const OP = {
  loop: 0x03, if: 0x04, else: 0x05, end: 0x0b, brIf: 0x0d,
  localGet: 0x20, localSet: 0x21, localTee: 0x22,
  i32Const: 0x41, i32Ne: 0x47, i32Add: 0x6a, i32Mul: 0x6c,
  /** Prefix of every SIMD instruction; the SIMD opcode follows as an unsigned LEB128. */
  simdPrefix: 0xfd,
} as const;

/** SIMD opcodes (after the 0xFD prefix) used by our kernels. */
export const SIMD_OP = {
  v128Load: 0x00, v128Load32Splat: 0x09, v128Store: 0x0b, v128Const: 0x0c,
  f32x4Add: 0xe4, f32x4Mul: 0xe6,
} as const;

/** Section ids, in the order they must appear. */
const SECTION = { type: 1, import: 2, function: 3, memory: 5, export: 7, code: 10 } as const;
/** Export / import descriptor kinds. */
const EXTERNAL_KIND = { func: 0x00, memory: 0x02 } as const;
/** Block type of a loop/if that neither takes nor leaves values. */
const BLOCKTYPE_EMPTY = 0x40;

/** Unsigned LEB128 encoding of a non-negative integer below 2^32. */
export function uleb(n: number): number[] {
  const out: number[] = [];
  n >>>= 0;
  do {
    const byte = n & 0x7f;
    n >>>= 7;
    out.push(n === 0 ? byte : byte | 0x80);
  } while (n !== 0);
  return out;
}

/** Signed LEB128 encoding of a 32-bit integer (what `i32.const` takes). */
export function sleb(n: number): number[] {
  const out: number[] = [];
  n |= 0;
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    // Done when the remaining bits are all copies of the sign bit just written.
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return out;
    }
    out.push(byte | 0x80);
  }
}

/** A length-prefixed UTF-8 name. */
function name(s: string): number[] {
  const bytes = [...new TextEncoder().encode(s)];
  return [...uleb(bytes.length), ...bytes];
}

/** A vector: element count, then the elements' bytes. */
function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

/** A section: id, byte size, payload. */
function section(id: number, payload: number[]): number[] {
  return [id, ...uleb(payload.length), ...payload];
}

/**
 * Appends instructions to a function body. Methods return `this` so a kernel reads as a listing;
 * `memarg` offsets are in bytes, alignments are log2 hints (misalignment is legal, only slower).
 */
export class CodeBuilder {
  /** The instruction bytes so far. */
  readonly bytes: number[] = [];

  /** Raw single-byte opcodes (no immediates): `op(OP.i32Add)`. */
  op(...codes: number[]): this {
    this.bytes.push(...codes);
    return this;
  }
  /** `local.get i`. */
  get(i: number): this { return this.op(OP.localGet, ...uleb(i)); }
  /** `local.set i`. */
  set(i: number): this { return this.op(OP.localSet, ...uleb(i)); }
  /** `local.tee i`. */
  tee(i: number): this { return this.op(OP.localTee, ...uleb(i)); }
  /** `i32.const n`. */
  i32(n: number): this { return this.op(OP.i32Const, ...sleb(n)); }
  /** `loop` / `if` without a result (`br_if 0` inside a loop jumps back to its start). */
  begin(kind: typeof OP.loop | typeof OP.if): this { return this.op(kind, BLOCKTYPE_EMPTY); }
  /** `end` of a loop or if (the function's own `end` is added by `emitModule`). */
  end(): this { return this.op(OP.end); }
  /** `br_if depth`. */
  brIf(depth: number): this { return this.op(OP.brIf, ...uleb(depth)); }
  /** A SIMD instruction without immediates (e.g. `f32x4.add`). */
  simd(code: number): this { return this.op(OP.simdPrefix, ...uleb(code)); }
  /** A SIMD memory instruction with its memarg (`v128.load`, `v128.store`, `v128.load32_splat`). */
  simdMem(code: number, alignLog2: number, offset: number): this {
    return this.simd(code).op(...uleb(alignLog2), ...uleb(offset));
  }
  /** `v128.const` of sixteen zero bytes. */
  v128Zero(): this { return this.simd(SIMD_OP.v128Const).op(...new Array<number>(16).fill(0)); }
}

/** One function of a module: its signature, extra locals (after the params), body and export name. */
export interface FuncDef {
  params: ValType[];
  results: ValType[];
  /** Declared locals, numbered after the params. */
  locals: ValType[];
  /** Instructions, without the final `end` (added here). */
  body: number[];
  exportName: string;
}

/** The module's single linear memory: defined and exported, or imported. */
export type MemoryDef =
  | { export: string; initialPages: number }
  | { import: [module: string, field: string]; initialPages: number };

/** Encode locals as runs of (count, type), the binary format's compression. */
function localRuns(locals: ValType[]): number[] {
  const runs: number[][] = [];
  for (let i = 0; i < locals.length;) {
    let j = i;
    while (j < locals.length && locals[j] === locals[i]) j++;
    runs.push([...uleb(j - i), locals[i]!]);
    i = j;
  }
  return vec(runs);
}

/**
 * A complete module: one type per function (duplicates are harmless at this size), one memory
 * (limits without a maximum, so it can grow), every function exported under its name.
 */
export function emitModule(funcs: FuncDef[], memory: MemoryDef): Uint8Array<ArrayBuffer> {
  const limits = [0x00, ...uleb(memory.initialPages)];
  const types = funcs.map((f) => [0x60, ...vec(f.params.map((t) => [t])), ...vec(f.results.map((t) => [t]))]);
  const bodies = funcs.map((f) => {
    const body = [...localRuns(f.locals), ...f.body, OP.end];
    return [...uleb(body.length), ...body];
  });
  const exports = funcs.map((f, i) => [...name(f.exportName), EXTERNAL_KIND.func, ...uleb(i)]);
  const bytes = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]; // "\0asm", version 1
  bytes.push(...section(SECTION.type, vec(types)));
  if ("import" in memory) {
    bytes.push(...section(SECTION.import, vec([[...name(memory.import[0]), ...name(memory.import[1]), EXTERNAL_KIND.memory, ...limits]])));
  }
  bytes.push(...section(SECTION.function, vec(funcs.map((_, i) => uleb(i)))));
  if ("export" in memory) {
    bytes.push(...section(SECTION.memory, vec([limits])));
    exports.push([...name(memory.export), EXTERNAL_KIND.memory, 0]);
  }
  bytes.push(...section(SECTION.export, vec(exports)));
  bytes.push(...section(SECTION.code, vec(bodies)));
  return new Uint8Array(bytes);
}
