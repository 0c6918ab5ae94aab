/** Deno smoke test: the PNG/JPEG decoders and the .npy reader load and work under Deno too. */
import { encode as encodePng } from "fast-png";
import jpeg from "jpeg-js";
import { decodeImage, parseNpy } from "./images.ts";

Deno.test("image decoders and .npy under Deno", () => {
  const rgba = new Uint8Array(4 * 4 * 4).map((_, i) => (i % 4 === 3 ? 255 : i));
  const png = decodeImage(encodePng({ width: 4, height: 4, data: rgba, channels: 4, depth: 8 }));
  if (png.width !== 4 || png.pixels[5] !== 5) throw new Error(`PNG decoded wrong: ${png.width} ${png.pixels[5]}`);
  const jpg = decodeImage(new Uint8Array(jpeg.encode({ width: 4, height: 4, data: rgba }, 90).data));
  if (jpg.width !== 4 || jpg.height !== 4) throw new Error("JPEG decoded wrong");
  let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  while ((11 + header.length) % 64) header += " ";
  header += "\n";
  const bytes = new Uint8Array(10 + header.length + 8);
  bytes.set([0x93, 78, 85, 77, 80, 89, 1, 0, header.length, 0]);
  bytes.set(new TextEncoder().encode(header), 10);
  new DataView(bytes.buffer).setFloat32(10 + header.length + 4, 2.5, true);
  const t = parseNpy(bytes);
  if (t.dims[0] !== 2 || (t.data as Float32Array)[1] !== 2.5) throw new Error("npy read wrong");
});
