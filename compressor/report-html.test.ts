/**
 * The HTML report as a user opens it: made by `opq compress --report` and `opq finetune --report`,
 * checked for what it must show (node names, a histogram per layer with the Laplace density and
 * the threshold, the byte breakdown, the command line and version, accuracy and the loss curve
 * when measured) and rendered in Chromium at desktop and phone widths (screenshots in
 * test-artifacts/), where the phone page must not scroll sideways.
 * @module
 */
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { PROJECT_ROOT } from "../cli/shared.ts";
import { CHROMIUM } from "../test/preflight.ts";

const BUN = join(PROJECT_ROOT, "node_modules", ".bin", "bun");
const MAIN = join(PROJECT_ROOT, "cli", "main.ts");
const VERSION = JSON.parse(readFileSync(join(PROJECT_ROOT, "package.json"), "utf8")).version;
const dir = mkdtempSync(join(tmpdir(), "opq-report-"));
const opq = (...args: string[]) => spawnSync(BUN, [MAIN, ...args], { cwd: dir, encoding: "utf8", timeout: 120_000 });

describe("opq compress --report", () => {
  const r = opq("compress", "-o", "r.opq", "--report", "r.html", "--json");
  const report = JSON.parse(r.stdout);
  const html = readFileSync(join(dir, "r.html"), "utf8");

  test("layers by node name; the command line, version and options", () => {
    expect(r.status).toBe(0);
    for (const name of ["stem/stem.0", "layers/layers.6/sc/sc.0", "fc"]) expect([name, html.includes(`<td>${name}</td>`)]).toEqual([name, true]);
    for (const want of [`made by <code>opq compress -o r.opq --report r.html --json</code> with opq ${VERSION}`, ">maxLayerSparsity<", "accuracy not measured in this run"]) {
      expect([want, html.includes(want)]).toEqual([want, true]);
    }
  });
  test("a weight histogram per layer with the fitted Laplace density and the threshold drawn", () => {
    const hists = html.match(/<figure class="hist">[\s\S]*?<\/figure>/g) ?? [];
    expect(hists).toHaveLength(report.layers.length);
    for (const h of hists) {
      expect(h).toContain("<polyline"); // the density
      expect(h.match(/stroke-dasharray/g)?.length).toBe(2); // ±threshold
    }
    for (const l of report.layers) expect(l.histogram.counts.reduce((a: number, c: number) => a + c, 0)).toBe(l.params);
    const uncapped = report.layers.find((l: { capped: boolean }) => !l.capped);
    expect(uncapped.threshold).toBe(report.opq.beta);
  });
  test("the byte breakdown inspect computes, summing to the file size", () => {
    const b = report.file.breakdown;
    expect(b.total).toBe(statSync(join(dir, "r.opq")).size);
    expect(b.indices + b.codes + b.codebooks + b.graph + b.kept + b.framing).toBe(b.total);
    expect(html).toContain("Where the bytes went");
    expect(html).toContain(`<th>${b.total}</th>`);
  });
});

describe("opq finetune --report", () => {
  test("shows top-1 before and after and the loss curve", () => {
    const r = opq("finetune", join(PROJECT_ROOT, "models", "lenet5-fmnist.onnx"), "-o", "f.opq", "--steps", "4", "--batch", "32", "--limit", "256", "--eval-limit", "200", "--report", "f.html", "--json");
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    const html = readFileSync(join(dir, "f.html"), "utf8");
    expect(html).toContain(`top-1 ${(100 * j.after.top1).toFixed(2)}% on 200 Fashion-MNIST test images (one-shot, before finetuning: ${(100 * j.before.top1).toFixed(2)}%)`);
    expect(html).toContain("Training loss per step");
    expect(html).toContain("step 4");
  }, 60_000);
});

describe("in Chromium", () => {
  test("desktop and phone widths render without sideways scrolling (screenshots in test-artifacts/)", async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: apt-get install -y chromium`);
    const out = join(PROJECT_ROOT, "test-artifacts");
    mkdirSync(out, { recursive: true });
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--headless", "--no-sandbox", "--disable-gpu"] });
    try {
      for (const file of ["r.html", "f.html"]) {
        if (!existsSync(join(dir, file))) throw new Error(`${file} was not written by the tests above`);
        for (const [width, name] of [[1280, "desktop"], [390, "phone"]] as const) {
          const page = await browser.newPage({ viewport: { width, height: 900 } });
          await page.goto(`file://${join(dir, file)}`);
          const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
          expect([file, name, scroll]).toEqual([file, name, inner]);
          await page.screenshot({ path: join(out, `report-${file.replace(".html", "")}-${name}.png`), fullPage: true });
          await page.close();
        }
      }
    } finally {
      await browser.close();
    }
  }, 60_000);
});
