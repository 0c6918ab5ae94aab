/**
 * What the page tests (Bun: test/page.test.ts, Deno: test/page-webgpu.deno.test.ts) do alike on
 * the served page.
 * @module
 */
import type { Page } from "playwright-core";

/** Draw a trouser-like shape on the page's drawing pad: two vertical strokes. */
export async function drawTrousers(page: Page): Promise<void> {
  const box = (await page.locator("#draw").boundingBox())!;
  for (const x of [0.38, 0.62]) {
    await page.mouse.move(box.x + x * box.width, box.y + 0.15 * box.height);
    await page.mouse.down();
    await page.mouse.move(box.x + x * box.width, box.y + 0.9 * box.height, { steps: 12 });
    await page.mouse.up();
  }
}
