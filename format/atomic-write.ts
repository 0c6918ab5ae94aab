/**
 * Writing a file so that it is never lost: the bytes go to a temporary file in the target's own
 * directory, are flushed to disk (fsync), and the temporary file is renamed over the target (an
 * atomic replace on POSIX file systems), then the directory is flushed so the rename itself
 * survives a crash. At every instant the target holds either its old content or the complete new
 * one; a failure (full disk, quota, a kill) leaves the old file untouched. An output that is the
 * input (same path after resolving symlinks, or the same file through a hardlink: same device and
 * inode) is refused before anything is written.
 * @module
 */
import { closeSync, fsyncSync, openSync, realpathSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { FormatError, FORMAT_ERROR_CODES as E } from "./errors.ts";

/** The stages of a write, in order, as `onStep` reports them (tests kill a writer at each). */
export type WriteStep = "open" | "write" | "fsync" | "close" | "rename" | "sync-dir";

/** Options of writeFileAtomic. */
export interface AtomicWriteOptions {
  /** Files the output must not be (the command's inputs): refused with OUTPUT_IS_INPUT. */
  inputs?: readonly string[];
  /** Called before each step (one "write" per chunk); tests use it to crash the writer there. */
  onStep?: (step: WriteStep) => void;
  /** Bytes per write() call (default 1 MiB). */
  chunkBytes?: number;
}

type Errno = Error & { code?: string };

/** The path the bytes will really land at: symlinks (of the file and its directories) resolved. */
export function resolveTarget(path: string): string {
  const abs = resolve(path);
  try {
    return realpathSync(abs);
  } catch (e) {
    if ((e as Errno).code !== "ENOENT") throw e;
    // No file yet (or a dangling symlink: then we replace the link, like any writer would).
    try {
      return join(realpathSync(dirname(abs)), basename(abs));
    } catch {
      return abs;
    }
  }
}

/** The same file: equal resolved paths, or equal device and inode (a hardlink). */
function sameFile(a: string, b: string): boolean {
  if (resolveTarget(a) === resolveTarget(b)) return true;
  try {
    const sa = statSync(a), sb = statSync(b);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false;
  }
}

/**
 * Throw OUTPUT_IS_INPUT if writing `output` would overwrite one of `inputs` (through any chain
 * of symlinks or a hardlink). Commands call it before their work, so a refusal costs nothing.
 */
export function assertNotInput(output: string, inputs: readonly string[]): void {
  for (const input of inputs) {
    if (sameFile(output, input)) {
      throw new FormatError(E.OUTPUT_IS_INPUT, `refusing to write ${output}: it is the input ${input}${resolveTarget(output) !== resolve(output) ? ` (through a link to ${resolveTarget(output)})` : ""}`);
    }
  }
}

let counter = 0;

/**
 * Write `bytes` to `path` atomically (see the module comment). Throws FormatError OUTPUT_IS_INPUT
 * when the output is one of `options.inputs`, WRITE_FAILED (with the OS error as `cause`) when
 * the write cannot complete; the old file, if any, is then intact and no temporary file is left.
 */
export function writeFileAtomic(path: string, bytes: Uint8Array | string, options: AtomicWriteOptions = {}): void {
  if (options.inputs) assertNotInput(path, options.inputs);
  const data = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
  const target = resolveTarget(path);
  const dir = dirname(target);
  let mode = 0o666; // minus the umask, as any new file
  try {
    mode = statSync(target).mode & 0o7777;
  } catch {
    // a new file
  }
  const tmp = join(dir, `.${basename(target)}.${process.pid}.${Date.now().toString(36)}${(counter++).toString(36)}.tmp`);
  const step = options.onStep ?? (() => {});
  const chunk = Math.max(1, options.chunkBytes ?? 1 << 20);
  let fd: number | undefined;
  try {
    step("open");
    fd = openSync(tmp, "wx", mode);
    for (let off = 0; off < data.length || off === 0; ) {
      step("write");
      if (data.length === 0) break;
      off += writeSync(fd, data, off, Math.min(chunk, data.length - off));
    }
    step("fsync");
    fsyncSync(fd);
    step("close");
    closeSync(fd);
    fd = undefined;
    step("rename");
    renameSync(tmp, target);
  } catch (e) {
    if (fd !== undefined) try { closeSync(fd); } catch { /* already failing */ }
    try { unlinkSync(tmp); } catch { /* never created, or renamed */ }
    if (e instanceof FormatError) throw e;
    const err = e as Errno;
    throw new FormatError(E.WRITE_FAILED, `cannot write ${path}: ${err.code ? `${err.code}: ` : ""}${err.message ?? String(e)} (the previous file, if any, is unchanged)`, { cause: e });
  }
  // Make the rename durable. Some systems cannot open or fsync a directory; the file is in place anyway.
  step("sync-dir");
  try {
    const d = openSync(dir, "r");
    try { fsyncSync(d); } finally { closeSync(d); }
  } catch {
    // best effort
  }
}
