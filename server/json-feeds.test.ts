/**
 * The infer-body JSON reader: RFC 8259 values, data arrays straight into floats (flat or nested),
 * typed errors at the first bad value, the element cap, and yielding to the event loop during a
 * long data array.
 */
import { expect, test } from "bun:test";
import { parseInferJson } from "./json-feeds.ts";
import { ServerError } from "./errors.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const code = async (p: Promise<unknown>) => { try { await p; return "ok"; } catch (e) { return e instanceof ServerError ? e.code : `untyped ${e}`; } };

test("data arrays become Float32Array, flat or nested; the envelope stays ordinary JSON", async () => {
  const v = await parseInferJson(enc(`{"inputs":{"x":{"shape":[2,2],"data":[[1,-2.5],[3e2,[4]]]},"y":{"data":[]}},"top_k":3,"tag":"a\\nb","f":[true,null,{"data":[1]}]}`), 100) as {
    inputs: { x: { shape: number[]; data: Float32Array }; y: { data: Float32Array } }; top_k: number; tag: string; f: unknown[];
  };
  expect(v.inputs.x.data).toEqual(new Float32Array([1, -2.5, 300, 4]));
  expect(v.inputs.x.shape).toEqual([2, 2]);
  expect(v.inputs.y.data).toEqual(new Float32Array(0));
  expect(v.top_k).toBe(3);
  expect(v.tag).toBe("a\nb");
  // A "data" key off the inputs path is an ordinary array.
  expect(v.f).toEqual([true, null, { data: [1] }]);
});

test("a key __proto__ is an own member, not the prototype", async () => {
  const v = await parseInferJson(enc(`{"__proto__":{"polluted":1},"inputs":{"__proto__":{"data":[1]}}}`), 10) as Record<string, unknown>;
  expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
  expect(Object.hasOwn(v, "__proto__")).toBe(true);
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
});

test("numbers read equal Number() on the token", async () => {
  const tokens = ["0", "-0.5", "1e-7", "123456789012345678", "0.1", "3.4028234663852886e38", "2.5E+3"];
  const v = await parseInferJson(enc(`{"inputs":{"x":{"data":[${tokens.join(",")}]}}}`), 100) as { inputs: { x: { data: Float32Array } } };
  expect([...v.inputs.x.data]).toEqual(tokens.map((t) => Math.fround(Number(t))));
});

test("bad bodies: typed errors at the first violation", async () => {
  const cases: [string, string][] = [
    [`{"inputs":{"x":{"data":[1,2,3,4,5]}}}`, "PAYLOAD_TOO_LARGE"], // cap 4
    [`{"inputs":{"x":{"data":[1,"2"]}}}`, "BAD_REQUEST"],
    [`{"inputs":{"x":{"data":[1,2}}}`, "BAD_REQUEST"],
    [`{"inputs":{"x":{"data":[1e999]}}}`, "INPUT_NOT_FINITE"],
    [`{"inputs":{"x":{"data":${"[".repeat(40)}1${"]".repeat(40)}}}}`, "BAD_REQUEST"],
    [`{"inputs":{"x":{"data":[1]}}} x`, "BAD_REQUEST"],
    [`{"inputs":{"x":{"data":[1`, "BAD_REQUEST"],
    [`{"inputs":{"x":{"data":[[1],]}}}`, "BAD_REQUEST"],
  ];
  for (const [body, want] of cases) expect(`${body} → ${await code(parseInferJson(enc(body), 4))}`).toBe(`${body} → ${want}`);
});

test("a long data array lets timers run while it is read", async () => {
  const n = 100_000;
  const body = enc(`{"inputs":{"x":{"data":[${new Array(n).fill("0.25").join(",")}]}}}`);
  let ticks = 0;
  const timer = setInterval(() => ticks++, 0);
  const v = await parseInferJson(body, n, 0) as { inputs: { x: { data: Float32Array } } };
  clearInterval(timer);
  expect(v.inputs.x.data.length).toBe(n);
  expect(ticks).toBeGreaterThan(0);
});
