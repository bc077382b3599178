import { assertStrictEquals } from "@rxfb/assert";
import { assemble, generate, source } from "../pipeline/wasm/build.ts";

const dir = new URL("../pipeline/wasm/", import.meta.url);

Deno.test("convert_kernel.ts holds what convert_kernel.wat assembles to (`deno task wasm`)", async () => {
  const committed = await Deno.readTextFile(new URL("convert_kernel.ts", dir));
  assertStrictEquals(committed, await generate("convert_kernel"));
});

Deno.test("both kernel builds validate; the plain one has no relaxed-SIMD opcode", async () => {
  const { relaxed, simd } = await assemble(await source("convert_kernel"));
  assertStrictEquals(WebAssembly.validate(relaxed), true);
  assertStrictEquals(WebAssembly.validate(simd), true);
  // Relaxed SIMD opcodes are 0xfd 0x100..0x12f (LEB128: 0x80..0xaf, 0x02).
  const relaxedOps = (b: Uint8Array) =>
    b.some((v, i) => v === 0xfd && b[i + 1] >= 0x80 && b[i + 1] <= 0xaf && b[i + 2] === 0x02);
  assertStrictEquals(relaxedOps(relaxed), true);
  assertStrictEquals(relaxedOps(simd), false);
});
