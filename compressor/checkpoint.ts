/**
 * Training checkpoints: the step reached, the master weights, the optimizer's velocities and a
 * method's own state, as named float32 arrays. Layout: magic `OPQCKPT1`, u32 LE header length,
 * a JSON header {version, step, fingerprint, tensors: [{key, length}]}, then the arrays' bytes
 * in header order. Written atomically (temp file in the same folder, then rename), so an
 * interrupted write leaves the previous checkpoint intact.
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { writeFileAtomic } from "../format/mod.ts";
import { COMPRESS_ERROR_CODES as E, CompressError, ensure } from "./errors.ts";

/** What a checkpoint holds. */
export interface Checkpoint {
  /** Steps completed. */
  step: number;
  /** Options that must match for a resume to be meaningful (model, batch, seed, method, …). */
  fingerprint: string;
  /** Named arrays: `w:NAME` weights, `v:NAME` velocities, `s:NAME` method state. */
  tensors: Map<string, Float32Array>;
}

const MAGIC = "OPQCKPT1";
/** A header longer than this is not ours (guards the allocation a corrupt file would ask for). */
const MAX_HEADER = 1 << 24;

/** Serialize a checkpoint. */
export function encodeCheckpoint(c: Checkpoint): Uint8Array {
  const entries = [...c.tensors];
  const header = new TextEncoder().encode(JSON.stringify({ version: 1, step: c.step, fingerprint: c.fingerprint, tensors: entries.map(([key, a]) => ({ key, length: a.length })) }));
  const pad = (4 - ((12 + header.length) % 4)) % 4;
  const size = 12 + header.length + pad + entries.reduce((s, [, a]) => s + 4 * a.length, 0);
  const out = new Uint8Array(size);
  out.set(new TextEncoder().encode(MAGIC), 0);
  new DataView(out.buffer).setUint32(8, header.length + pad, true);
  out.set(header, 12);
  out.fill(0x20, 12 + header.length, 12 + header.length + pad); // JSON whitespace keeps the header parseable
  let o = 12 + header.length + pad;
  for (const [, a] of entries) { out.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), o); o += a.byteLength; }
  return out;
}

/** Parse a checkpoint; CompressError CHECKPOINT for anything that is not a whole one. */
export function decodeCheckpoint(bytes: Uint8Array): Checkpoint {
  const bad = (why: string) => new CompressError(E.CHECKPOINT, `not a valid training checkpoint: ${why}`);
  if (bytes.length < 12 || new TextDecoder().decode(bytes.subarray(0, 8)) !== MAGIC) throw bad("wrong magic");
  const hl = new DataView(bytes.buffer, bytes.byteOffset).getUint32(8, true);
  if (hl > MAX_HEADER || 12 + hl > bytes.length) throw bad("header length out of range");
  let h: { version: number; step: number; fingerprint: string; tensors: { key: string; length: number }[] };
  try {
    h = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + hl)));
  } catch {
    throw bad("header is not JSON");
  }
  if (h?.version !== 1 || !Number.isSafeInteger(h.step) || h.step < 0 || typeof h.fingerprint !== "string" || !Array.isArray(h.tensors)) throw bad("header fields");
  const tensors = new Map<string, Float32Array>();
  let o = 12 + hl;
  for (const t of h.tensors) {
    if (typeof t?.key !== "string" || !Number.isSafeInteger(t.length) || t.length < 0 || o + 4 * t.length > bytes.length) throw bad(`tensor ${t?.key} overruns the file`);
    tensors.set(t.key, new Float32Array(bytes.slice(o, o + 4 * t.length).buffer));
    o += 4 * t.length;
  }
  if (o !== bytes.length) throw bad("trailing bytes");
  return { step: h.step, fingerprint: h.fingerprint, tensors };
}


/** Save a checkpoint to `path` atomically. */
export function saveCheckpoint(path: string, c: Checkpoint): void {
  writeFileAtomic(path, encodeCheckpoint(c));
}

/** The checkpoint at `path`, or undefined if there is none; CHECKPOINT if it is unreadable or `fingerprint` differs. */
export function loadCheckpoint(path: string, fingerprint: string): Checkpoint | undefined {
  if (!existsSync(path)) return undefined;
  const c = decodeCheckpoint(new Uint8Array(readFileSync(path)));
  ensure(c.fingerprint === fingerprint, E.CHECKPOINT, `checkpoint ${path} was written by a different run (${c.fingerprint}), not this one (${fingerprint}); delete it or change --checkpoint`);
  return c;
}
