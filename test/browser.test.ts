/**
 * The server's page in a real browser: Debian's Chromium, headless, driven by playwright-core.
 * The server runs on 127.0.0.1 (random port) over a real `.opq`; the test clicks a bundled
 * Fashion-MNIST sample and checks the prediction the page shows is the API's top-1 for the same
 * image, then saves a screenshot to test-artifacts/. A missing Chromium is a failure that says
 * how to install it, never a skip.
 * @module
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Browser, chromium } from "playwright-core";
import { PROJECT_ROOT } from "../cli/shared.ts";
import { createApp, listen, type RunningServer } from "../server/mod.ts";
import { sampleInput } from "../server/samples.ts";
import { FIXTURE_MODEL, type Fixture, loadFixtureRegistry, makeFixture } from "../server/test-fixtures.ts";

import { CHROMIUM } from "./preflight.ts";
const ARTIFACTS = join(PROJECT_ROOT, "test-artifacts");

let fixture: Fixture;
let server: RunningServer;
let browser: Browser | undefined;

beforeAll(async () => {
  fixture = await makeFixture();
  const registry = await loadFixtureRegistry();
  server = await listen(createApp({ registry, samples: fixture.samples }), { port: 0, hostname: "127.0.0.1" });
});

afterAll(async () => {
  await browser?.close();
  await server?.close({ timeoutMs: 5000 });
});

test("the page classifies a sample and shows the API's prediction", async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: install Debian's Chromium (apt-get update && apt-get install -y chromium) to run the browser test`);
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
  const pageErrors: string[] = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  await page.goto(server.url + "/");
  await page.waitForSelector("body[data-ready=true]", { timeout: 20_000 });

  // The model table and the size chart are there.
  expect(await page.locator("#models td").first().textContent()).toBe(FIXTURE_MODEL);
  expect(await page.locator(".bar-opq").count()).toBe(1);

  const id = 2;
  await page.locator(`.sample[data-id="${id}"]`).click();
  await page.waitForSelector("#result[data-state=done]", { timeout: 20_000 });
  const shown = await page.locator("#prediction").textContent();
  const shownIndex = Number(await page.locator("#prediction").getAttribute("data-index"));
  const latency = await page.locator("#latency").textContent();

  const x = sampleInput(fixture.samples, fixture.samples.samples[id]!);
  const res = await fetch(`${server.url}/v1/models/${FIXTURE_MODEL}/infer?topk=1`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ inputs: { input: { shape: x.shape, data: Array.from(x.data) } } }),
  });
  const api = (await res.json()) as { topk: { index: number }[][] };
  const apiTop = api.topk[0]![0]!.index;
  expect(shownIndex).toBe(apiTop);
  expect(shown).toBe(fixture.samples.classes[apiTop]!);
  expect(latency).toMatch(/inference [\d.]+ ms on the server, [\d.]+ ms round trip/);
  expect(pageErrors).toEqual([]);

  mkdirSync(ARTIFACTS, { recursive: true });
  const shot = join(ARTIFACTS, "server-page.png");
  await page.screenshot({ path: shot, fullPage: true });
  expect(existsSync(shot)).toBe(true);
}, 60_000);
