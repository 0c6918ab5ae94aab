/**
 * The server's page in Debian's Chromium against `opq serve --backend webgpu` under Deno (CI:
 * Mesa's lavapipe), beside `opq serve --backend wasm` serving the same bundled ResNet-20 `.opq`:
 * both pages load with no 404 and no script error, every bundled sample clicked on the webgpu
 * page shows the prediction the CPU server's page shows for it, and a drawing classified on both
 * pages gets the same class (which is also the CPU API's top-1 for the pad's pixels). The
 * servers are the real command (`cli/main.ts serve`, started with `--json` for its url); an
 * explicit `--backend webgpu` refuses to start rather than run on the CPU, so a served answer
 * is the GPU's. The bun page test (test/page.test.ts) covers the rest of the page on the CPU.
 * @module
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { copyFileSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { PROJECT_ROOT } from "../cli/shared.ts";
import { CHROMIUM } from "./preflight.ts";
import { drawTrousers } from "./page-support.ts";

interface Served {
  url: string;
  stop(): Promise<void>;
}

/** Start `opq serve` on a free port with `backend`; resolves once it prints its url. */
async function serve(dir: string, backend: string): Promise<Served> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", join(PROJECT_ROOT, "cli", "main.ts"), "serve", "--models", dir, "--port", "0", "--backend", backend, "--json"],
    cwd: PROJECT_ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? mkdtempSync(join(tmpdir(), "opq-xdg-")) },
  }).spawn();
  let err = "";
  const errDone = child.stderr.pipeTo(new WritableStream({ write: (b) => { err += new TextDecoder().decode(b); } }));
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  // `--json` prints one (indented) object: it ends at the first top-level closing brace.
  while (!/^\}\s*$/m.test(out)) {
    const { value, done } = await reader.read();
    if (done) {
      await errDone;
      throw new Error(`opq serve --backend ${backend} exited before listening: ${err}`);
    }
    out += value;
  }
  const { url } = JSON.parse(out) as { url: string };
  return {
    url,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await reader.cancel().catch(() => {});
      await errDone.catch(() => {});
    },
  };
}

async function open(browser: Browser, url: string): Promise<{ page: Page; problems: string[] }> {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  const problems: string[] = [];
  page.on("response", (r) => { if (r.status() >= 400) problems.push(`${r.status()} ${r.url()}`); });
  page.on("pageerror", (e) => problems.push(e.message));
  await page.goto(url + "/");
  await page.waitForSelector("body[data-ready=true]", { timeout: 30_000 });
  return { page, problems };
}

/** Click sample `k`'s thumbnail and read the class the page shows. */
async function predictSample(page: Page, k: number): Promise<number> {
  await page.evaluate(() => { document.getElementById("result")!.dataset.state = "idle"; });
  await page.locator(".sample").nth(k).click();
  await page.waitForSelector("#result[data-state=done]", { timeout: 30_000 });
  return Number(await page.locator("#prediction").getAttribute("data-index"));
}

/** Draw the same two strokes (a trouser-like shape) on the pad, classify, read the class. */
async function predictDrawing(page: Page): Promise<number> {
  await drawTrousers(page);
  await page.evaluate(() => { document.getElementById("result")!.dataset.state = "idle"; });
  await page.locator("#classify-own").click();
  await page.waitForSelector("#result[data-state=done]", { timeout: 30_000 });
  return Number(await page.locator("#prediction").getAttribute("data-index"));
}

/** The CPU server API's top-1 for the pixels on `page`'s pad (read the way the page reads them). */
async function apiTop1ForPad(page: Page, cpuUrl: string): Promise<number> {
  const pixels = await page.evaluate(() => {
    const c = document.getElementById("draw") as HTMLCanvasElement, d = c.getContext("2d")!.getImageData(0, 0, c.width, c.height).data;
    return Array.from({ length: c.width * c.height }, (_, i) => Math.round(255 - (0.299 * d[4 * i]! + 0.587 * d[4 * i + 1]! + 0.114 * d[4 * i + 2]!)));
  });
  const s = await (await fetch(`${cpuUrl}/v1/samples`)).json() as { mean: number; std: number };
  const res = await fetch(`${cpuUrl}/v1/models/resnet20-fmnist/infer?topk=1`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ inputs: { input: { shape: [1, 1, 28, 28], data: pixels.map((p) => (p / 255 - s.mean) / s.std) } } }),
  });
  return ((await res.json()) as { topk: { index: number }[][] }).topk[0]![0]!.index;
}

Deno.test({
  name: "page on `opq serve --backend webgpu` (Deno): samples and a drawing predicted as on the CPU server's page",
  // Chromium's and the servers' handles are closed in finally; Deno's sanitizers do not see through playwright's pipes.
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    assert(existsSync(CHROMIUM), `${CHROMIUM} not found: apt-get install -y chromium`);
    const dir = mkdtempSync(join(tmpdir(), "opq-page-webgpu-"));
    copyFileSync(join(PROJECT_ROOT, "models", "resnet20-fmnist.opq"), join(dir, "resnet20-fmnist.opq"));
    const started: Served[] = [];
    let browser: Browser | undefined;
    try {
      const [gpu, cpu] = await Promise.all([serve(dir, "webgpu"), serve(dir, "wasm")]);
      started.push(gpu, cpu);
      browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"] });
      const onGpu = await open(browser, gpu.url), onCpu = await open(browser, cpu.url);
      const count = await onGpu.page.locator(".sample").count();
      assert(count >= 10, `${count} sample thumbnails on the page`);
      const gpuPred: number[] = [], cpuPred: number[] = [];
      for (let k = 0; k < count; k++) {
        gpuPred.push(await predictSample(onGpu.page, k));
        cpuPred.push(await predictSample(onCpu.page, k));
      }
      assertEquals(gpuPred, cpuPred);
      // Not all one class: the comparison would pass for a model that ignores its input.
      assert(new Set(gpuPred).size >= 3, `predictions ${gpuPred}`);
      const drawnGpu = await predictDrawing(onGpu.page), drawnCpu = await predictDrawing(onCpu.page);
      assertEquals(drawnGpu, drawnCpu);
      assertEquals(drawnGpu, await apiTop1ForPad(onGpu.page, cpu.url));
      assertEquals([...onGpu.problems, ...onCpu.problems], []);
    } finally {
      await browser?.close();
      await Promise.all(started.map((s) => s.stop()));
      rmSync(dir, { recursive: true, force: true });
    }
  },
});
