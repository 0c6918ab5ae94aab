/**
 * Test fixtures shared by the server's tests (not part of the server): a real `.opq` made from
 * the bundled ResNet-20 by the real compressor, loaded by the real runtime, and the bundled
 * sample images. A gate wraps a real runner to hold runs open, so queue, timeout and shutdown
 * tests are deterministic without timing assertions.
 * @module
 */
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encode as encodeMsgpack } from "@msgpack/msgpack";
import { compressModel } from "../compressor/mod.ts";
import * as format from "../format/mod.ts";
import type { OpqModel } from "../format/mod.ts";
import { PROJECT_ROOT } from "../cli/shared.ts";
import { loadModelDir, type ModelRegistry, type ModelRunner, serveModel, type ServedModel } from "./registry.ts";
import type { QueueLimits } from "./queue.ts";
import { loadSampleBundle, type SampleBundle } from "./samples.ts";

/** A float32 array's bytes as a request body. */
export function floatBytes(data: Float32Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
}

/** Encode msgpack as a request body. */
export function msgpackBody(value: unknown): Uint8Array<ArrayBuffer> {
  return encodeMsgpack(value) as Uint8Array<ArrayBuffer>;
}

/** Name the fixture model is served under. */
export const FIXTURE_MODEL = "resnet20-fmnist";

/** A folder holding `resnet20-fmnist.opq`, compressed from models/resnet20-fmnist.onnx. */
export interface Fixture {
  dir: string;
  /** The written .opq. */
  path: string;
  bytes: Uint8Array;
  /** The compressed model as the compressor returned it. */
  opq: OpqModel;
  samples: SampleBundle;
}

let cached: Promise<Fixture> | undefined;

/** Compress the bundled ResNet-20 once per test process and write it to a temp folder. */
export function makeFixture(): Promise<Fixture> {
  cached ??= (async () => {
    const onnx = new Uint8Array(readFileSync(join(PROJECT_ROOT, "models", "resnet20-fmnist.onnx")));
    const { opq } = compressModel(format.readOnnx(onnx), { source: "resnet20-fmnist.onnx" });
    const dir = mkdtempSync(join(tmpdir(), "opq-server-"));
    const samples = await loadSampleBundle(join(PROJECT_ROOT, "models", "fmnist-samples.json"));
    const bytes = format.encodeOpq(opq);
    const path = join(dir, `${FIXTURE_MODEL}.opq`);
    writeFileSync(path, bytes);
    return { dir, path, bytes, opq, samples };
  })();
  return cached;
}

/** Load the fixture folder through the registry, as `opq serve --models DIR` does. */
export async function loadFixtureRegistry(limits?: QueueLimits): Promise<ModelRegistry> {
  const fixture = await makeFixture();
  return loadModelDir(fixture.dir, limits ? { limits } : {});
}

/** A gate: runs wait at `wait()` until `open()`; `entered` counts runs that reached it. */
export class Gate {
  entered = 0;
  private release!: () => void;
  private readonly opened = new Promise<void>((r) => (this.release = r));
  private waiters: (() => void)[] = [];
  /** Open the gate for every waiting and future run. */
  open(): void { this.release(); }
  /** Called inside a run. */
  async wait(): Promise<void> {
    this.entered++;
    for (const w of this.waiters.splice(0)) w();
    await this.opened;
  }
  /** Resolve once `n` runs have reached the gate. */
  async reached(n: number): Promise<void> {
    while (this.entered < n) await new Promise<void>((r) => this.waiters.push(r));
  }
}

/** Serve a real model's runner behind a gate, under the given queue limits. */
export function gatedModel(real: ServedModel, gate: Gate, limits: QueueLimits): ServedModel {
  const runner: ModelRunner = {
    inputs: real.runner.inputs,
    outputs: real.runner.outputs,
    async run(feeds) {
      await gate.wait();
      return real.runner.run(feeds);
    },
    dispose: () => {},
  };
  const served = serveModel(real.summary.name, runner, {
    format: real.summary.format, bytes: real.summary.bytes, metadata: {}, layers: [], loadMs: 0,
  }, limits);
  return served;
}
