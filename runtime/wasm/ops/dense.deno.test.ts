/**
 * The dense wasm kernels under Deno (V8): every claimed case of dense-cases.ts against the op
 * table's kernel, on the relaxed-SIMD and the plain-SIMD build, with 1 and 2 threads (the full
 * suite with the model checks runs under Bun in dense.test.ts).
 * @module
 */
import { relativeDiff } from "../../cpu/test-support.ts";
import { CLAIMED_CASES, DENSE_TOLERANCE, REFUSED_CASES } from "./dense-cases.ts";
import { attrValues, nodeSpec, referenceOutput, runBound, testBackend } from "./test-support.ts";

function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new Error(message);
}

for (const build of ["relaxed", "simd"] as const) {
  for (const threads of [1, 2]) {
    Deno.test(`dense wasm kernels (${build} build, ${threads} thread(s)) match the reference`, async () => {
      const env = await testBackend(build, threads);
      assert(env, `the ${build} build is not available in this Deno`);
      try {
        assert(env.backend.env.kernels.exports.buildFeatures() === (build === "relaxed" ? 1 : 0), "wrong build instantiated");
        const splits = env.backend.env.team.splits;
        for (const c of CLAIMED_CASES) {
          const spec = nodeSpec(c.op, c.inputs, attrValues(c.attrs, c.floats), c.opset, c.outputs);
          const bound = env.backend.bind(spec);
          assert(bound && (!c.path || bound.path === c.path), `${c.name}: bound ${bound?.path}, expected ${c.path}`);
          const xs = c.inputs.map((i) => i?.tensor);
          const got = await runBound(bound, xs, env.rc);
          env.heap.clear();
          const d = relativeDiff(got, referenceOutput(spec, xs));
          assert(d <= DENSE_TOLERANCE, `${c.name}: relative difference ${d}`);
          bound.dispose?.();
        }
        if (threads === 2) assert(env.backend.env.team.splits > splits, "no kernel call was split across the team");
        for (const c of REFUSED_CASES) {
          const spec = nodeSpec(c.op, c.inputs, attrValues(c.attrs, c.floats), c.opset, c.outputs);
          assert(env.backend.bind(spec) === undefined, `${c.name} was claimed`);
        }
      } finally {
        env.backend.dispose();
      }
    });
  }
}
