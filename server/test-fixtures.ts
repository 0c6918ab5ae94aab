/**
 * Test fixtures shared by the server's tests (not part of the server): a real `.opq` made from
 * the bundled ResNet-20 by the real compressor, loaded by the real runtime, and the bundled
 * sample images. A gate wraps a real runner to hold runs open, so queue, timeout and shutdown
 * tests are deterministic without timing assertions.
 * @module
 */
import { type ChildProcess, spawn } from "node:child_process";
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

/** A test server in a child process (server/test-server.ts). */
export interface TestServer { proc: ChildProcess; port: number; url: string; exited: Promise<number | null>; stderr: () => string }

/**
 * Start server/test-server.ts (the fixture model over a real socket on 127.0.0.1) on `runtime`,
 * with `limits` as its OPQ_TEST_LIMITS, optionally under `ulimit -n fdLimit`.
 */
export async function startServer(runtime: "bun" | "deno", limits: object = {}, fdLimit?: number): Promise<TestServer> {
  const bin = join(PROJECT_ROOT, "node_modules", ".bin");
  const script = join(PROJECT_ROOT, "server", "test-server.ts");
  const cmd = runtime === "bun" ? [join(bin, "bun"), script] : [join(bin, "deno"), "run", "-A", "--no-check", script];
  const env = { ...process.env, OPQ_TEST_LIMITS: JSON.stringify(limits) };
  const proc = fdLimit
    ? spawn("sh", ["-c", `ulimit -n ${fdLimit}; exec "$@"`, "sh", ...cmd], { env, stdio: ["ignore", "pipe", "pipe"] })
    : spawn(cmd[0]!, cmd.slice(1), { env, stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  proc.stderr!.on("data", (b) => { err = (err + b).slice(-4000); });
  const exited = new Promise<number | null>((r) => proc.on("exit", (code) => r(code)));
  const port = await new Promise<number>((resolve, reject) => {
    let out = "";
    proc.stdout!.on("data", (b) => {
      out += b;
      const m = /"port":(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    void exited.then((code) => reject(new Error(`server exited with ${code} before listening: ${err}`)));
  });
  return { proc, port, url: `http://127.0.0.1:${port}`, exited, stderr: () => err };
}

/** `n` deterministic 1×28×28 images in [-0.5, 0.5), the fixture model's input. */
export function fixtureImages(n: number): Float32Array {
  const x = new Float32Array(n * 784);
  for (let i = 0; i < x.length; i++) x[i] = ((i * 2654435761) % 1000) / 1000 - 0.5;
  return x;
}

/** POST `n` fixture images to the fixture model's infer route as a binary body. */
export function inferBinary(url: string, n: number, init: RequestInit = {}): Promise<Response> {
  return fetch(`${url}/v1/models/${FIXTURE_MODEL}/infer`, {
    method: "POST", headers: { "content-type": "application/octet-stream", "x-shape": `${n},1,28,28` }, body: floatBytes(fixtureImages(n)), ...init,
  });
}
