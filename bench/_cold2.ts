import { readFileSync } from "node:fs";
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
const { createSession } = await import("../runtime/mod.ts");
const { WASM_OPS } = await import("../runtime/wasm/ops/index.ts");
const planner = await import("../runtime/planner.ts");
const acc = new Map<string, { n: number; ms: number }>();
const add = (k: string, ms: number) => { const a = acc.get(k) ?? { n: 0, ms: 0 }; a.n++; a.ms += ms; acc.set(k, a); };
for (const impl of WASM_OPS) {
  const bind = impl.bind.bind(impl), claim = impl.claim.bind(impl);
  impl.bind = (spec, env, c) => { const t = cpu(); const r = bind(spec, env, c); add(`bind ${c.path}`, cpu() - t); return r; };
  impl.claim = (spec, env) => { const t = cpu(); const r = claim(spec, env); add(`claim ${impl.opTypes[0]}${impl.codeForm ? "-coded" : ""}`, cpu() - t); return r; };
}
const t0 = cpu();
const s = await createSession("/tmp/kp/r18.opq", { threads: 1 });
const t1 = cpu();
console.log("create cpu", (t1 - t0).toFixed(0), "loadMs", s.info.loadMs.toFixed(0));
for (const [k, v] of [...acc].sort((a, b) => b[1].ms - a[1].ms)) console.log(k.padEnd(40), v.n, v.ms.toFixed(1));
process.exit(0);
