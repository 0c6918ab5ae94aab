/**
 * Whether a session gets the webgpu backend — the one file of runtime/webgpu/ the session imports
 * statically: it loads the GPU code (backend.ts) only when "webgpu" is asked for, or when "auto"
 * sees `navigator.gpu` (so engines without WebGPU, Bun here, never load it).
 * @module
 */
import type { Backend } from "../backend.ts";
import { OpqRuntimeError, RUNTIME_ERROR_CODES } from "../errors.ts";
import type { Plan } from "../planner.ts";
import type { WebGpuOptions } from "./device.ts";

/** The session's `webgpu` option. */
export interface WebGpuChoiceOptions extends WebGpuOptions {
  /** Let "auto" use a software adapter (e.g. Mesa's lavapipe, slower than the wasm CPU backend). */
  allowFallbackAdapter?: boolean;
}

/**
 * The webgpu backend for a session, or undefined. "webgpu" throws BACKEND_UNAVAILABLE where no
 * adapter passes the self-check; "auto" pushes onto `notes` why it did not use one. Control flow
 * (If/Loop/Scan, whose subgraphs read outer values lazily) stays on the CPU.
 */
export async function chooseWebGpu(choice: string, plan: Plan, options: WebGpuChoiceOptions | undefined, notes: string[]): Promise<Backend | undefined> {
  const injected = options?.adapter || options?.device || options?.gpu;
  if (choice !== "webgpu" && (choice !== "auto" || (!injected && !(globalThis as { navigator?: { gpu?: unknown } }).navigator?.gpu))) return undefined;
  if (plan.steps.some((s) => s.subplans)) {
    if (choice === "webgpu") throw new OpqRuntimeError(RUNTIME_ERROR_CODES.BACKEND_UNAVAILABLE, "webgpu: models with control flow (If/Loop/Scan) run on the CPU only", { backend: "webgpu" });
    return undefined;
  }
  const { createWebGpuBackend } = await import("./backend.ts");
  try {
    const b = await createWebGpuBackend({ ...options, graphOutputs: plan.outputs.map((o) => o.name) });
    if (choice === "auto" && b.adapter.isFallbackAdapter && !options?.allowFallbackAdapter) {
      b.dispose();
      notes.push(`auto: webgpu adapter '${b.adapter.description || b.adapter.vendor}' is a software fallback; running on the CPU`);
      return undefined;
    }
    return b;
  } catch (e) {
    if (choice === "webgpu" || !(e instanceof OpqRuntimeError)) throw e;
    notes.push(`auto: ${e.message}; running on the CPU`);
    return undefined;
  }
}
