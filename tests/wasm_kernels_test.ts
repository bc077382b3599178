/**
 * Every WebAssembly kernel of `pipeline/wasm/` (build.ts's KERNELS): the
 * committed `NAME.ts` is what `NAME.wat` assembles to now, and both builds
 * validate, the plain one without a relaxed-SIMD opcode, the relaxed one with
 * one exactly when the `.wat` uses a relaxed instruction.
 */
import { assertStrictEquals } from "@rxfb/assert";
import { assemble, generate, KERNELS, source } from "../pipeline/wasm/build.ts";

const dir = new URL("../pipeline/wasm/", import.meta.url);

/** Relaxed SIMD opcodes are 0xfd 0x100..0x12f (LEB128: 0x80..0xaf, 0x02). */
const relaxedOps = (b: Uint8Array) =>
  b.some((v, i) => v === 0xfd && b[i + 1] >= 0x80 && b[i + 1] <= 0xaf && b[i + 2] === 0x02);

/** True when the text uses a relaxed instruction (`i8x16.relaxed_swizzle`, ...) outside comments. */
const usesRelaxed = (wat: string) => /\.relaxed_/.test(wat.replace(/;;.*$/gm, ""));

for (const name of KERNELS) {
  Deno.test(`${name}.ts holds what ${name}.wat assembles to (\`deno task wasm\`)`, async () => {
    const committed = await Deno.readTextFile(new URL(`${name}.ts`, dir));
    assertStrictEquals(committed, await generate(name));
  });

  Deno.test(`both ${name} builds validate; relaxed-SIMD opcodes only in the relaxed build, where the .wat uses them`, async () => {
    const wat = await source(name);
    const { relaxed, simd } = await assemble(wat);
    assertStrictEquals(WebAssembly.validate(relaxed), true);
    assertStrictEquals(WebAssembly.validate(simd), true);
    assertStrictEquals(relaxedOps(relaxed), usesRelaxed(wat));
    assertStrictEquals(relaxedOps(simd), false);
  });
}
