/** Deno smoke test: the compressor runs unchanged under Deno on the bundled ResNet-20. */
import { decodeOpq, readOnnx } from "../format/mod.ts";
import { compressModel, encodeCompressed } from "./mod.ts";

Deno.test("compress ResNet-20 (0.74, 3) under Deno", async () => {
  const bytes = await Deno.readFile(new URL("../models/resnet20-fmnist.onnx", import.meta.url));
  const result = compressModel(readOnnx(bytes), { sparsity: 0.74, bits: 3 });
  if (!(result.report.opq!.budgetError < 1e-6)) throw new Error(`Eq. 9 budget off by ${result.report.opq!.budgetError}`);
  const out = encodeCompressed(result);
  if (decodeOpq(out).compressed.length !== 22) throw new Error("round trip lost tensors");
  if (!(result.report.file!.ratio > 15)) throw new Error(`ratio ${result.report.file!.ratio}`);
});
