/**
 * The `wasm` backend: WebAssembly SIMD kernels (as/*.ts, built by build.ts) on the session's one
 * shared memory, split across the session's own thread team. Each implementation in WASM_OPS says
 * which nodes it can run and at what estimated cost; the cheapest claimant binds the node, packing
 * or transcoding its weights into wasm memory once (a compressed `.opq` weight goes straight into
 * a kernel form: no dense copy is made). Inputs arrive as views of the session memory (the session
 * allocates every float32 value there); one that does not is copied in for the call.
 * @module
 */
import type { Tensor } from "../../format/mod.ts";
import type { Backend, BoundKernel, NodeSpec, RunContext } from "../backend.ts";
import { envVar, kernelSupport, WasmKernels } from "./module.ts";
import { ThreadTeam } from "./threads.ts";
import { WASM_OPS } from "./ops/index.ts";

/** What a wasm implementation gets at bind time. */
export interface WasmEnv {
  kernels: WasmKernels;
  team: ThreadTeam;
}

/** The address of a float32 tensor's data in wasm memory, copying it into a block of `scratch` if it lives elsewhere. */
export type AddressOf = (t: Tensor) => number;

/** One wasm implementation of one or more op types. */
export interface WasmOpImpl {
  opTypes: readonly string[];
  /** True if it applies `NodeSpec.epilogue` (fused nodes are offered only to implementations that say so). */
  fuses?: boolean;
  /**
   * True if it keeps a compressed weight in a compressed form. Nodes with a compressed weight are
   * offered only to such implementations unless the session allows dense copies
   * (SessionOptions.denseCopies): the compression then pays in memory, not only on disk.
   */
  keepsCompressed?: boolean;
  /**
   * True if it keeps a compressed weight as dense u8 codes (ops/conv-coded.ts). With
   * OPQ_WASM_FORMS=sparse in the environment such implementations are not offered compressed
   * layers (the sparse-row form then runs them); with OPQ_WASM_FORMS=coded they take every layer
   * one of them claims, whatever the cost. Both are there to compare the forms layer by layer
   * (bench/form-profile.ts) and to test each form's kernels.
   */
  codeForm?: boolean;
  /**
   * Undefined if this implementation cannot run the node; else the path it would report, its
   * weight form and an estimated cost (lower wins; any consistent unit, e.g. ns from a benchmark).
   */
  claim(spec: NodeSpec, env: WasmEnv): { path: string; weightForm: string; cost: number } | undefined;
  /**
   * Prepare the node (weights into wasm memory) and return its runner. `run` gets the inputs, the
   * run context (its `alloc` gives float32 views of wasm memory) and `addr` to get pointers.
   */
  bind(spec: NodeSpec, env: WasmEnv, claimed: { path: string; weightForm: string }): WasmBound;
}

/** The bound form an implementation returns. */
export interface WasmBound {
  residentBytes: number;
  run(inputs: readonly (Tensor | undefined)[], rc: RunContext, addr: AddressOf): Tensor[];
  dispose?(): void;
}

/** The wasm backend of one session. */
export class WasmBackend implements Backend {
  readonly name = "wasm" as const;
  readonly fuses = true;
  private constructor(readonly env: WasmEnv, private readonly denseCopies: boolean) {}

  /**
   * Start the backend with `threads` threads; undefined where the engine lacks WASM SIMD or shared
   * memory. `denseCopies`: let dense kernels take compressed layers too (a dense copy each) when cheaper.
   */
  static async create(threads: number, kernels = WasmKernels.create(), denseCopies = false): Promise<WasmBackend | undefined> {
    if (!kernels) return undefined;
    const team = await ThreadTeam.start(kernels, threads);
    return new WasmBackend({ kernels, team }, denseCopies);
  }

  bind(spec: NodeSpec): BoundKernel | undefined {
    let best: { impl: WasmOpImpl; claim: { path: string; weightForm: string; cost: number } } | undefined;
    const forms = envVar("OPQ_WASM_FORMS");
    // OPQ_WASM_FORMS=coded: a code-form claim beats any other (ranked among themselves by cost).
    const rank = (impl: WasmOpImpl) => (forms === "coded" && impl.codeForm ? 0 : 1);
    for (const impl of WASM_OPS) {
      if (forms === "sparse" && impl.codeForm) continue;
      if (!impl.opTypes.includes(spec.node.opType) || (spec.epilogue && !impl.fuses)) continue;
      if (!impl.keepsCompressed && !this.denseCopies && spec.compressed.some((c) => c !== undefined)) continue;
      const claim = impl.claim(spec, this.env);
      if (!claim) continue;
      if (!best || rank(impl) < rank(best.impl) || (rank(impl) === rank(best.impl) && claim.cost < best.claim.cost)) best = { impl, claim };
    }
    if (!best) return undefined;
    const bound = best.impl.bind(spec, this.env, best.claim);
    const k = this.env.kernels;
    return {
      backend: "wasm",
      path: best.claim.path,
      weightForm: best.claim.weightForm,
      residentBytes: bound.residentBytes,
      run: (inputs, rc) => {
        const temps: number[] = [];
        const addr: AddressOf = (t) => {
          const a = k.addressOf(t.data as Float32Array);
          if (a >= 0) return a;
          const src = t.data as Float32Array;
          const p = k.alloc(src.byteLength);
          temps.push(p);
          k.f32(p, src.length).set(src);
          return p;
        };
        try {
          return bound.run(inputs, rc, addr);
        } finally {
          for (const p of temps) k.free(p);
        }
      },
      dispose: bound.dispose,
    };
  }

  describe(): Record<string, unknown> {
    const s = kernelSupport();
    const team = this.env.team, kernels = this.env.kernels;
    // Getters: the session keeps this object from load on, and these change with each run.
    return {
      simd: s.ok, relaxedSimd: s.relaxed, threads: team.threads,
      get splitCalls() { return team.splits; },
      get memoryBytes() { return kernels.memoryBytes; },
    };
  }

  dispose(): void {
    this.env.team.stop();
  }
}
