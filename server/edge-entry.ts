/**
 * The bundled example model and samples as an `export default { fetch }` module: runs unchanged
 * with `deno serve -A server/edge-entry.ts`, `bun run server/edge-entry.ts` (Bun serves a
 * default export with a fetch; port from `PORT`, default 3000) or any host that calls
 * `fetch(request)`. Files are read with `fetch(file URL)`, not node:fs.
 * @module
 */
import { createEdgeHandler } from "./edge.ts";

const file = (name: string) => async () => {
  const res = await fetch(new URL(`../models/${name}`, import.meta.url));
  if (!res.ok) throw new Error(`cannot read models/${name}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
};

export default createEdgeHandler({
  models: { "resnet20-fmnist": file("resnet20-fmnist.opq") },
  samples: async () => new TextDecoder().decode(await file("fmnist-samples.json")()),
});
