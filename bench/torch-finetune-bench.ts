/**
 * OPQ finetuning (Algorithm 1, stage 1 + stage 2) two ways, in the same run and the same table:
 * the PyTorch hand-off (`opq plan` → python/examples/finetune.py under torchrun with N gloo DDP
 * processes → `opq compress --plan`) and opq's own TypeScript loop (`opq finetune --threads N`), at the same
 * sparsity, bits, epochs, batch and learning rate. Top-1 of both `.opq` files is measured by our
 * runtime on the 10k test images; wall time is the whole command (data loading, training, export
 * or encode, and the loop's own evaluations). Not a CI test: ResNet-20 takes tens of minutes.
 * Usage: bun bench/torch-finetune-bench.ts [--model resnet20] [--epochs 2] [--limit N] [--nproc 2] [--batch 256] [--lr 0.005] [--skip-ts] [--json]
 * @module
 */
import { readFileSync, statSync } from "node:fs";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { formatTable, printJson, say } from "../cli/common.ts";
import { sharedDir, sharedPath } from "../cli/shared.ts";
import { loadFashionMnist } from "../cli/fashion-mnist.ts";
import { evaluate, openRunner } from "../cli/commands/eval.ts";

const { values: a } = parseArgs({
  options: {
    model: { type: "string", default: "resnet20" }, epochs: { type: "string", default: "2" }, limit: { type: "string" },
    nproc: { type: "string", default: "2" }, batch: { type: "string", default: "256" }, lr: { type: "string", default: "0.005" },
    sparsity: { type: "string", default: "0.74" }, bits: { type: "string", default: "3" }, "skip-ts": { type: "boolean" }, json: { type: "boolean" },
  },
});
const ROOT = join(import.meta.dir, "..");
const TMP = mkdtempSync(join(tmpdir(), "opq-torch-bench-"));
const onnx = sharedPath("models", `${a.model}-fmnist.onnx`);
const python = process.env.OPQ_PYTHON ?? "/usr/bin/python3";
const env = { ...process.env, OPQ_SHARED: sharedDir() };
const limit = a.limit ? ["--limit", a.limit] : [];

function run(cmd: string[]): { seconds: number; stdout: string } {
  const t0 = performance.now();
  const p = Bun.spawnSync(cmd, { cwd: TMP, env, stdout: "pipe", stderr: "inherit" });
  if (p.exitCode !== 0) throw new Error(`${cmd.join(" ")} exited ${p.exitCode}`);
  return { seconds: (performance.now() - t0) / 1000, stdout: p.stdout.toString() };
}
const opq = (...args: string[]) => run([process.execPath, join(ROOT, "cli", "main.ts"), ...args]);
const test = loadFashionMnist();
const top1 = async (file: string) => (await evaluate(await openRunner(file, "opq"), test)).top1;

const plan = join(TMP, "plan.safetensors");
opq("plan", onnx, "-o", plan, "--sparsity", a.sparsity!, "--bits", a.bits!);
const rows: Record<string, unknown>[] = [];

say(`PyTorch: torchrun --nproc_per_node ${a.nproc} (gloo, CPU), ${a.epochs} epoch(s) …`);
const figures = join(TMP, "torch.json"), ft = join(TMP, "finetuned.onnx"), ptOpq = join(TMP, "torch.opq");
const t = run([python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", a.nproc!, "--redirects", "2", "--tee", "2", "--log_dir", join(TMP, "logs"),
  join(ROOT, "python", "examples", "finetune.py"), "--arch", a.model!, "--onnx", onnx, "--plan", plan, "--out", ft, "--data", sharedPath("data", "fashion-mnist"),
  "--epochs", a.epochs!, "--batch", a.batch!, "--lr", a.lr!, "--json", figures, ...limit]);
const c = opq("compress", ft, "--plan", plan, "-o", ptOpq, "--json");
const fig = JSON.parse(readFileSync(figures, "utf8"));
const cj = JSON.parse(c.stdout);
rows.push({ loop: `PyTorch DDP (${a.nproc} gloo processes)`, images: fig.images, trainSeconds: fig.train_seconds, wallSeconds: t.seconds + c.seconds,
  top1Torch: fig.top1, top1Opq: await top1(ptOpq), bytes: statSync(ptOpq).size, leftMask: cj.leftMask, fellToZero: cj.fellToZero });

if (!a["skip-ts"]) {
  say(`opq finetune (TypeScript, ${a.nproc} threads), ${a.epochs} epoch(s) …`);
  const tsOpq = join(TMP, "ts.opq");
  const r = opq("finetune", onnx, "-o", tsOpq, "--sparsity", a.sparsity!, "--bits", a.bits!, "--epochs", a.epochs!, "--batch", a.batch!, "--lr", a.lr!, "--threads", a.nproc!, "--json", ...limit);
  const j = JSON.parse(r.stdout);
  rows.push({ loop: `opq finetune (TypeScript, ${a.nproc} threads)`, images: j.imagesSeen, trainSeconds: j.seconds, wallSeconds: r.seconds, top1Torch: null, top1Opq: j.after.top1, bytes: statSync(tsOpq).size });
}

const pct = (v: unknown) => (typeof v === "number" ? `${(100 * v).toFixed(2)}%` : "");
say(`\n${a.model} at (${a.sparsity}, ${a.bits}), ${a.epochs} epoch(s) (first half pruned only, then pruned + quantized), batch ${a.batch}, lr ${a.lr}${a.limit ? `, first ${a.limit} training images` : ""}`);
say(formatTable(["loop", "images", "train s", "wall s", "top-1 PyTorch", "top-1 .opq (opq runtime)", ".opq bytes"],
  rows.map((r) => [r.loop as string, r.images as number, Math.round(r.trainSeconds as number), Math.round(r.wallSeconds as number), pct(r.top1Torch), pct(r.top1Opq), r.bytes as number])));
if (rows.length === 2) say(`wall time TypeScript ÷ PyTorch: ${((rows[1]!.wallSeconds as number) / (rows[0]!.wallSeconds as number)).toFixed(2)}×`);
if (a.json) printJson({ model: a.model, epochs: Number(a.epochs), sparsity: Number(a.sparsity), bits: Number(a.bits), rows });
