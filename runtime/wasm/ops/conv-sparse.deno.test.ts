/**
 * The wasm sparse-quantized kernels under Deno (V8): every data-driven case of sparse-check.ts
 * against the reference backend at 1 and 2 threads, loaded from the model and from its `.opq` bytes, and the plain-SIMD build (OPQ_WASM_RELAXED=0)
 * in a child process. The rest (fused epilogue, form size, whole models) runs under bun in
 * conv-sparse.test.ts.
 * @module
 */
import { boundAsExpected, CASE_SOURCES, type CaseResult, checkCase, FORM_CHOICES, SPARSE_CASES } from "./sparse-check.ts";

const TOL = 1e-5;

function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new Error(message);
}

for (const [threads, source] of [[1, "model"], [2, "model"], [1, "file"], [2, "file"]] as const) {
  for (const forms of FORM_CHOICES) {
    Deno.test(`sparse kernels: every case matches the reference, ${threads} thread(s), forms ${forms}, from the ${source}`, async () => {
      for (const c of SPARSE_CASES) {
        const r = await checkCase(c, threads, forms, source);
        assert(boundAsExpected(c, r, forms), `${c.name}: bound to ${r.backend} ${r.path} ${r.weightForm}`);
        assert(r.relErr <= TOL, `${c.name}: relative error ${r.relErr}`);
      }
    });
  }
}

Deno.test("sparse kernels: the plain-SIMD build matches too (child process, 2 threads)", async () => {
  const script = new URL("./sparse-check.ts", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", script, "2"], env: { OPQ_WASM_RELAXED: "0" }, stdout: "piped", stderr: "inherit",
  }).output();
  assert(out.success, "sparse-check.ts failed");
  const r = JSON.parse(new TextDecoder().decode(out.stdout)) as { relaxed: boolean; results: (CaseResult & { ok: boolean })[] };
  assert(r.relaxed === false, "the child ran the relaxed build");
  assert(r.results.length === CASE_SOURCES.length * FORM_CHOICES.length * SPARSE_CASES.length, "not every case ran");
  for (const x of r.results) assert(x.ok && x.relErr <= TOL, `${x.name}: ${x.backend} ${x.path} relative error ${x.relErr}`);
});
