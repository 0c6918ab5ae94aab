/**
 * Deno smoke test: the container round-trips under V8 and writes the same rANS bytes as under
 * Bun's JavaScriptCore (geometric tables and frequency quantization are IEEE-deterministic);
 * the golden checksum is shared with container.test.ts.
 */
import { decodeOpq, encodeOpq } from "../mod.ts";
import { decodeOpqParts, SECTION_KIND } from "../container.ts";
import { crc32 } from "./crc32.ts";
import { edgeCaseModel } from "./synthetic.ts";

/** CRC-32 of the rANS WEIGHTS section of encodeOpq(edgeCaseModel()). Changes only with the format. */
const GOLDEN_WEIGHTS_CRC = 0x35d3b219;

Deno.test("opq round trip under Deno; rANS bytes identical to Bun's", () => {
  const bytes = encodeOpq(edgeCaseModel());
  const back = decodeOpq(bytes);
  const again = encodeOpq(back);
  if (again.length !== bytes.length || !again.every((b, i) => b === bytes[i])) throw new Error("decode → encode changed the bytes");
  const w = decodeOpqParts(bytes).sections.find((s) => s.kind === SECTION_KIND.WEIGHTS)!;
  const crc = crc32(bytes.subarray(w.offset, w.offset + w.length));
  if (crc !== GOLDEN_WEIGHTS_CRC) throw new Error(`WEIGHTS crc 0x${crc.toString(16)}, golden 0x${GOLDEN_WEIGHTS_CRC.toString(16)}`);
  let code: string | undefined;
  try { decodeOpq(bytes.subarray(0, bytes.length - 1)); } catch (e) { code = (e as { code?: string }).code; }
  if (code !== "TRUNCATED") throw new Error(`truncated file gave ${code}`);
});
