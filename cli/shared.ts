/**
 * Locates the data tests and benchmarks read (models, Fashion-MNIST, the ONNX conformance suite).
 * Each path is looked for in turn at `$OPQ_SHARED`, at `../shared` from the project root, and then
 * where a user can get it without that folder: Debian's `dataset-fashion-mnist` and
 * `libonnx-testdata` install paths, the models bundled in `models/`, and the seeded 224×224
 * benchmark models, which bench/models.ts writes to `out/models/` on first use. Missing data is
 * an error naming the path and the one command that provides it, never a silent pass.
 * @module
 */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ensureSeededModel, isSeededModel } from "../bench/models.ts";

/** The project root (the folder holding package.json). */
export const PROJECT_ROOT: string = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** The shared folder, whether or not it exists. */
export function sharedDir(): string {
  const env = typeof process !== "undefined" ? process.env.OPQ_SHARED : undefined;
  return env ? resolve(env) : resolve(PROJECT_ROOT, "..", "shared");
}

/**
 * Shared-folder paths a Debian package also provides: the prefix inside the shared folder, where
 * the package installs the same files, and the package.
 */
export const DEBIAN_DATA = [
  { prefix: ["data", "fashion-mnist"], path: "/usr/share/datasets/fashion-mnist", pkg: "dataset-fashion-mnist" },
  { prefix: ["onnx-backend-tests"], path: "/usr/share/libonnx-testdata/data", pkg: "libonnx-testdata" },
] as const;

/** The reference models tests compare against (models/README.md of the shared folder). */
export const REFERENCE_MODELS = ["lenet5-fmnist.onnx", "mobilenet_v2-224.onnx", "resnet18-224.onnx", "resnet20-fmnist.onnx"] as const;

/** Where the seeded benchmark models are written when no shared copy exists. */
export const SEEDED_MODELS_DIR: string = join(PROJECT_ROOT, "out", "models");

/** Where `parts` (a path inside the shared folder) can be found, best first, and the Debian package that provides it if any. */
export function dataCandidates(parts: string[]): { paths: string[]; pkg?: string } {
  const paths = [join(sharedDir(), ...parts)];
  const ownShared = resolve(PROJECT_ROOT, "..", "shared");
  if (ownShared !== sharedDir()) paths.push(join(ownShared, ...parts));
  let pkg: string | undefined;
  for (const d of DEBIAN_DATA) {
    if (d.prefix.every((p, i) => parts[i] === p)) {
      paths.push(join(d.path, ...parts.slice(d.prefix.length)));
      pkg = d.pkg;
    }
  }
  if (parts[0] === "models" && parts.length === 2) paths.push(join(PROJECT_ROOT, "models", parts[1]!));
  return { paths, pkg };
}

/** A path inside the shared folder, or its stand-in (see the module comment); throws a clear error if none exists. */
export function sharedPath(...parts: string[]): string {
  const { paths, pkg } = dataCandidates(parts);
  const found = paths.find((p) => existsSync(p));
  if (found) return found;
  if (parts[0] === "models" && parts.length === 2 && isSeededModel(parts[1]!)) return ensureSeededModel(parts[1]!, SEEDED_MODELS_DIR);
  const fix = pkg
    ? `run \`apt-get install ${pkg}\` (Debian/Ubuntu), or set OPQ_SHARED to a folder holding ${parts.join("/")}`
    : `set OPQ_SHARED to a folder holding ${parts.join("/")} (see README.md, "Quick start")`;
  throw Object.assign(new Error(`missing data: ${parts.join("/")} (looked in ${paths.join(", ")}); ${fix}`), { code: "MISSING_DATA" });
}

/**
 * Files a compiled binary embeds (cli/binary/main.ts sets this before the CLI loads), by their
 * path in the repository: the bundled files are then read from the binary, not beside it.
 */
const EMBEDDED: Record<string, string> = (globalThis as { __opqEmbedded?: Record<string, string> }).__opqEmbedded ?? {};

/** A file of the repository (`models/...`): its embedded copy in a compiled binary, else the file in the checkout. */
export function bundledFile(path: string): string {
  return EMBEDDED[path] ?? join(PROJECT_ROOT, path);
}

/** The model that ships with the repo, used when no model is named. */
export const DEFAULT_MODEL: string = bundledFile("models/resnet20-fmnist.onnx");
