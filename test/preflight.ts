/**
 * What `npm test` needs from the machine beyond npm: Debian's Chromium (the browser tests),
 * Fashion-MNIST and the ONNX conformance suite (found through cli/shared.ts: `$OPQ_SHARED`,
 * `../shared`, or the Debian packages). `npm test` checks first; what is missing is installed
 * with apt-get when that is allowed (root, apt-get present, `OPQ_NO_INSTALL` unset), and
 * otherwise named in one line with the command that provides it. Tests that need a missing
 * piece still run and fail with its message: nothing is skipped.
 * @module
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { DEBIAN_DATA, sharedPath } from "../cli/shared.ts";

/** The browser the page and bundle tests drive (Debian's `chromium`). */
export const CHROMIUM = "/usr/bin/chromium";

/** One thing the suite needs, where it was looked for, and the Debian package that provides it. */
export interface Prerequisite {
  what: string;
  pkg: string;
  present: boolean;
}

/** Check every prerequisite. */
export function prerequisites(): Prerequisite[] {
  const data = DEBIAN_DATA.map((d) => {
    let present = true;
    try {
      sharedPath(...d.prefix);
    } catch {
      present = false;
    }
    return { what: d.prefix.join("/"), pkg: d.pkg, present };
  });
  return [{ what: "chromium", pkg: "chromium", present: existsSync(CHROMIUM) }, ...data];
}

/** The one command that installs the missing packages. */
export function installCommand(missing: readonly Prerequisite[]): string {
  return `apt-get update && apt-get install -y ${missing.map((m) => m.pkg).join(" ")}`;
}

/** Whether this process may install Debian packages itself. */
export function mayInstall(): boolean {
  const root = typeof process.getuid === "function" && process.getuid() === 0;
  return root && !process.env.OPQ_NO_INSTALL && spawnSync("apt-get", ["--version"], { stdio: "ignore" }).status === 0;
}

/**
 * Install what is missing when allowed; returns the line to print for what is still missing
 * (undefined when nothing is).
 */
export function ensurePrerequisites(log: (line: string) => void): string | undefined {
  let missing = prerequisites().filter((p) => !p.present);
  if (missing.length === 0) return undefined;
  if (mayInstall()) {
    log(`npm test: installing ${missing.map((m) => m.pkg).join(", ")} with apt-get (for ${missing.map((m) => m.what).join(", ")}; OPQ_NO_INSTALL=1 refuses)`);
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    spawnSync("apt-get", ["update", "-qq"], { stdio: "inherit", env });
    spawnSync("apt-get", ["install", "-y", "-qq", ...missing.map((m) => m.pkg)], { stdio: "inherit", env });
    missing = prerequisites().filter((p) => !p.present);
    if (missing.length === 0) return undefined;
  }
  return `npm test: missing ${missing.map((m) => m.what).join(", ")}; to provide ${missing.length === 1 ? "it" : "them"} run: sudo ${installCommand(missing)} (or set OPQ_SHARED to a folder holding the data)`;
}
