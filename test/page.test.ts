/**
 * The server's page in Debian's Chromium as a visitor uses it, over the bundled ResNet-20 `.opq`
 * (its stored top-1 and class names): no request 404s (favicon included), each model's top-1
 * shown, a drawn image and an uploaded one classified exactly as the API classifies the same
 * pixels, and the curl command it offers copied and run in a shell. Screenshots at desktop and
 * phone widths go to test-artifacts/.
 * @module
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { PROJECT_ROOT } from "../cli/shared.ts";
import { createApp, listen, loadModelFile, loadSampleBundle, ModelRegistry, type RunningServer } from "../server/mod.ts";
import { CHROMIUM } from "./preflight.ts";
import { drawTrousers } from "./page-support.ts";
import { FAVICON_SVG } from "../server/routes/assets.ts";

const MODEL = join(PROJECT_ROOT, "models", "resnet20-fmnist.opq");
const ARTIFACTS = join(PROJECT_ROOT, "test-artifacts");
let server: RunningServer;
let browser: Browser;
let registry: ModelRegistry;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install -y chromium`);
  registry = new ModelRegistry([await loadModelFile(MODEL)]);
  const samples = await loadSampleBundle(join(PROJECT_ROOT, "models", "fmnist-samples.json"));
  server = await listen(createApp({ registry, samples }), { port: 0, hostname: "127.0.0.1" });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"] });
});
afterAll(async () => {
  await browser?.close();
  await server?.close({ timeoutMs: 5000 });
});

async function open(width: number): Promise<{ page: Page; missing: string[]; errors: string[] }> {
  const context = await browser.newContext({ viewport: { width, height: 900 } });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.url });
  const page = await context.newPage();
  const missing: string[] = [], errors: string[] = [];
  page.on("response", (r) => { if (r.status() >= 400) missing.push(`${r.status()} ${r.url()}`); });
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(server.url + "/");
  await page.waitForSelector("body[data-ready=true]", { timeout: 20_000 });
  return { page, missing, errors };
}

/** The API's top-1 for the pixels now on the page's drawing pad (read the way the page reads them). */
async function apiTop1ForPad(page: Page, invert: boolean): Promise<number> {
  const pixels = await page.evaluate((inv) => {
    const c = document.getElementById("draw") as HTMLCanvasElement, d = c.getContext("2d")!.getImageData(0, 0, c.width, c.height).data;
    return Array.from({ length: c.width * c.height }, (_, i) => { const g = 0.299 * d[4 * i]! + 0.587 * d[4 * i + 1]! + 0.114 * d[4 * i + 2]!; return Math.round(inv ? 255 - g : g); });
  }, invert);
  const s = await (await fetch(`${server.url}/v1/samples`)).json() as { mean: number; std: number };
  const res = await fetch(`${server.url}/v1/models/resnet20-fmnist/infer?topk=1`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ inputs: { input: { shape: [1, 1, 28, 28], data: pixels.map((p) => (p / 255 - s.mean) / s.std) } } }),
  });
  return ((await res.json()) as { topk: { index: number }[][] }).topk[0]![0]!.index;
}

test("the page loads with no 404 (favicon included) and shows the stored top-1", async () => {
  const { page, missing, errors } = await open(1280);
  await page.waitForTimeout(300);
  expect(missing).toEqual([]);
  expect(errors).toEqual([]);
  expect(await page.locator("link[rel=icon]").getAttribute("href")).toBe(`data:image/svg+xml,${encodeURIComponent(FAVICON_SVG)}`);
  const ico = await fetch(`${server.url}/favicon.ico`);
  expect([ico.status, ico.headers.get("content-type")]).toEqual([200, "image/svg+xml"]);
  const acc = registry.list()[0]!.summary.accuracy;
  expect(acc).not.toBeNull();
  expect(await page.locator(".accuracy").first().textContent()).toBe(`${(100 * acc!.top1).toFixed(1)}% (${acc!.images} ${acc!.dataset} test images)`);
  await page.context().close();
});

test("a drawn image and an uploaded one are classified as the API classifies their pixels", async () => {
  const { page, errors } = await open(1280);
  await drawTrousers(page);
  await page.locator("#classify-own").click();
  await page.waitForSelector("#result[data-state=done]", { timeout: 20_000 });
  expect(Number(await page.locator("#prediction").getAttribute("data-index"))).toBe(await apiTop1ForPad(page, true));
  expect(await page.locator("#truth").textContent()).toBe("your image");

  // Upload: a PNG of a sample thumbnail as the page shows it (dark garment on white).
  const png = await page.locator(".sample canvas").nth(1).screenshot();
  await page.evaluate(() => { document.getElementById("result")!.dataset.state = "idle"; });
  await page.locator("#upload").setInputFiles({ name: "garment.png", mimeType: "image/png", buffer: png });
  await page.waitForSelector("#result[data-state=done]", { timeout: 20_000 });
  expect(Number(await page.locator("#prediction").getAttribute("data-index"))).toBe(await apiTop1ForPad(page, true));
  expect(errors).toEqual([]);
  await page.context().close();
}, 60_000);

test("the curl example copies and runs against the server", async () => {
  const { page } = await open(1280);
  const curl = (await page.locator("#curl").textContent())!;
  expect(curl).toContain(`${server.url}/v1/models/resnet20-fmnist/infer?topk=3`);
  await page.locator("#copy").click();
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(curl);
  // Asynchronously: the server answers from this process's event loop.
  const sh = Bun.spawn(["bash", "-c", curl], { stdout: "pipe", stderr: "pipe" });
  expect(await sh.exited).toBe(0);
  const body = JSON.parse(await new Response(sh.stdout).text()) as { topk: { label: string }[][] };
  expect(body.topk[0]).toHaveLength(3);
  expect(typeof body.topk[0]![0]!.label).toBe("string");
  await page.context().close();
}, 30_000);

test("desktop and phone widths: no sideways scrolling; screenshots in test-artifacts/", async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  for (const [width, name] of [[1280, "desktop"], [390, "phone"]] as const) {
    const { page } = await open(width);
    const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    expect([name, scroll]).toEqual([name, inner]);
    await page.screenshot({ path: join(ARTIFACTS, `page-${name}.png`), fullPage: true });
    await page.context().close();
  }
}, 30_000);
