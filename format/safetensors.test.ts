/** safetensors: round trips, and every hostile container gives a typed FormatError before any allocation it declares. */
import { describe, expect, test } from "bun:test";
import { FormatError, readSafetensors, safeTensorFloat32, writeSafetensors } from "./mod.ts";

const enc = new TextEncoder();

/** A file from a raw header string and data bytes (no validation: for hostile cases). */
function raw(header: string, data = new Uint8Array(0), declared?: number): Uint8Array {
  const h = enc.encode(header);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setUint32(0, declared ?? h.length, true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(FormatError);
    return (e as FormatError).code;
  }
  throw new Error("no error");
}

describe("safetensors", () => {
  test("round trip: dtypes, shapes (scalar, empty), metadata, 8-aligned header", () => {
    const bytes = writeSafetensors([
      ["w", { dtype: "F32", shape: [2, 3], data: Float32Array.of(1, -2, 3.5, 0, 1e-30, -0) }],
      ["s", { dtype: "F32", shape: [], data: Float32Array.of(0.125) }],
      ["m", { dtype: "U8", shape: [3], data: Uint8Array.of(1, 255, 7) }],
      ["e", { dtype: "I32", shape: [0, 4], data: new Int32Array(0) }],
    ], { format: "x", note: "ünïcode" });
    const n = new DataView(bytes.buffer).getUint32(0, true);
    expect(n % 8).toBe(0);
    const f = readSafetensors(bytes);
    expect([...f.tensors.keys()]).toEqual(["w", "s", "m", "e"]);
    expect(Array.from(safeTensorFloat32(f.tensors.get("w")!))).toEqual([1, -2, 3.5, 0, Math.fround(1e-30), -0]);
    expect(f.tensors.get("s")!.shape).toEqual([]);
    expect(Array.from(f.tensors.get("m")!.data)).toEqual([1, 255, 7]);
    expect(f.tensors.get("e")!.shape).toEqual([0, 4]);
    expect(f.metadata).toEqual({ format: "x", note: "ünïcode" });
  });
  test("a byte layout the reference writes is read (hand-built, tensors out of header order)", () => {
    const data = Uint8Array.of(0, 0, 128, 63, 9);
    const f = readSafetensors(raw('{"b":{"dtype":"U8","shape":[1],"data_offsets":[4,5]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', data));
    expect(safeTensorFloat32(f.tensors.get("a")!)[0]).toBe(1);
    expect(f.tensors.get("b")!.data[0]).toBe(9);
  });
  test("truncated files and headers larger than the file are TRUNCATED", () => {
    const good = writeSafetensors([["w", { dtype: "F32", shape: [4], data: new Float32Array(4) }]]);
    for (const n of [0, 3, 7]) expect(code(() => readSafetensors(good.subarray(0, n)))).toBe("TRUNCATED");
    expect(code(() => readSafetensors(raw("{}", new Uint8Array(0), 1000)))).toBe("TRUNCATED");
    const huge = raw("{}");
    new DataView(huge.buffer).setUint32(4, 0xffffffff, true); // 2^64-ish
    expect(code(() => readSafetensors(huge))).toBe("TRUNCATED");
    // Cutting the data: the tensor's range now lies outside the buffer.
    expect(code(() => readSafetensors(good.subarray(0, good.length - 1)))).toBe("CORRUPT");
  });
  test("bad JSON, bad entries, wrong shapes, out-of-range, overlapping, holes, trailing bytes are CORRUPT; unknown dtypes UNSUPPORTED", () => {
    const d8 = new Uint8Array(8);
    const cases: [string, Uint8Array, string][] = [
      ["{not json", d8, "CORRUPT"],
      ["[1,2]", d8, "CORRUPT"],
      ['{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', d8, "CORRUPT"], // shape needs 12 bytes
      ['{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', d8, "CORRUPT"],
      ['{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}}', d8, "CORRUPT"], // past the buffer
      ['{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}', d8, "CORRUPT"],
      ['{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', d8, "CORRUPT"], // overlap
      ['{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', d8, "CORRUPT"], // hole
      ['{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', d8, "CORRUPT"], // trailing bytes
      ['{"a":{"dtype":"F32","shape":[2]}}', d8, "CORRUPT"],
      ['{"__metadata__":{"k":1}}', new Uint8Array(0), "CORRUPT"],
      ['{"a":{"dtype":"Q4","shape":[8],"data_offsets":[0,8]}}', d8, "UNSUPPORTED"],
    ];
    for (const [h, data, c] of cases) expect([h, code(() => readSafetensors(raw(h, data)))]).toEqual([h, c]);
    expect(code(() => readSafetensors(Uint8Array.of(2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe)))).toBe("CORRUPT"); // not UTF-8
  });
  test("a shape whose product overflows cannot pass the byte check", () => {
    const h = `{"w":{"dtype":"F32","shape":[${2 ** 30},${2 ** 30},${2 ** 30}],"data_offsets":[0,8]}}`;
    expect(code(() => readSafetensors(raw(h, new Uint8Array(8))))).toBe("CORRUPT");
  });
  test("the writer refuses bytes that do not match the shape", () => {
    expect(code(() => writeSafetensors([["w", { dtype: "F32", shape: [3], data: new Float32Array(2) }]]))).toBe("INVALID_ARGUMENT");
  });
});
