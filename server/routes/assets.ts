/**
 * Static assets of the page: the favicon (`/favicon.svg`, and `/favicon.ico` for browsers that
 * ask for it by that name), an SVG drawn here so the server needs no file for it.
 * @module
 */
import type { OpqHono } from "../context.ts";

/** A 3×3 weight grid with pruned cells left out: the picture of a sparse layer. */
export const FAVICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#2f7d4f"/>` +
  [[0, 0], [2, 0], [1, 1], [0, 2], [1, 2]].map(([x, y]) => `<rect x="${5 + 8 * x!}" y="${5 + 8 * y!}" width="6" height="6" rx="1" fill="#fff"/>`).join("") + `</svg>`;

/** Register the favicon routes. */
export function assetRoutes(app: OpqHono): void {
  for (const path of ["/favicon.svg", "/favicon.ico"]) {
    app.get(path, (c) => {
      c.set("route", "favicon");
      return c.body(FAVICON_SVG, 200, { "Content-Type": "image/svg+xml", "Cache-Control": "public, max-age=86400" });
    });
  }
}
