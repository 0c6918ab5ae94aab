/**
 * Locates `../shared` (models, data, the ONNX conformance suite): `$OPQ_SHARED`, else `../shared`
 * from the project root. Missing data is an error that names the path, never a silent pass.
 * @module
 */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The project root (the folder holding package.json). */
export const PROJECT_ROOT: string = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** The shared folder, whether or not it exists. */
export function sharedDir(): string {
  const env = typeof process !== "undefined" ? process.env.OPQ_SHARED : undefined;
  return env ? resolve(env) : resolve(PROJECT_ROOT, "..", "shared");
}

/** A path inside the shared folder; throws a clear error if it is missing. */
export function sharedPath(...parts: string[]): string {
  const p = join(sharedDir(), ...parts);
  if (!existsSync(p)) {
    throw new Error(
      `missing shared data: ${p}\n` +
        `opq looks for the shared folder at $OPQ_SHARED or ../shared from ${PROJECT_ROOT}; ` +
        `see ../shared/README.md for what it should contain.`,
    );
  }
  return p;
}

/** The model that ships with the repo, used when no model is named. */
export const DEFAULT_MODEL: string = join(PROJECT_ROOT, "models", "resnet20-fmnist.onnx");
