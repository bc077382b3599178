/**
 * Every WebAssembly kernel of `pipeline/wasm/` (build.ts's KERNELS): the
 * committed `NAME.ts` is what `NAME.wat` assembles to now, and both builds
 * validate, the plain one without a relaxed-SIMD opcode.
 */
import { assertStrictEquals } from "@rxfb/assert";
import { assemble, generate, KERNELS, source } from "../pipeline/wasm/build.ts";

const dir = new URL("../pipeline/wasm/", import.meta.url);

/** Relaxed SIMD opcodes are 0xfd 0x100..0x12f (LEB128: 0x80..0xaf, 0x02). */
const relaxedOps = (b: Uint8Array) =>
  b.some((v, i) => v === 0xfd && b[i + 1] >= 0x80 && b[i + 1] <= 0xaf && b[i + 2] === 0x02);

for (const name of KERNELS) {
  Deno.test(`${name}.ts holds what ${name}.wat assembles to (\`deno task wasm\`)`, async () => {
    const committed = await Deno.readTextFile(new URL(`${name}.ts`, dir));
    assertStrictEquals(committed, await generate(name));
  });

  Deno.test(`both ${name} builds validate; the plain one has no relaxed-SIMD opcode`, async () => {
    const { relaxed, simd } = await assemble(await source(name));
    assertStrictEquals(WebAssembly.validate(relaxed), true);
    assertStrictEquals(WebAssembly.validate(simd), true);
    assertStrictEquals(relaxedOps(relaxed), true);
    assertStrictEquals(relaxedOps(simd), false);
  });
}
