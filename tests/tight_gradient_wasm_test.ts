/**
 * Tight's gradient filter through WebAssembly SIMD (`gradient_wasm.ts`, kernel
 * `pipeline/wasm/gradient_kernel.wat`): each build against the JavaScript reference
 * (`gradientDifferencesJs`), byte for byte and zero count, and against the
 * prediction's formula for every (left, above, above-left) triple.
 */
import { assert, assertEquals, assertStrictEquals } from "@rxfb/assert";
import {
  GRADIENT_BAND_PIXELS,
  WasmGradient,
  wasmGradient,
} from "../sinks/vnc/encodings/gradient_wasm.ts";
import { gradientDifferences, gradientDifferencesJs } from "../sinks/vnc/encodings/tight.ts";

type At = [number, number, number];

const BUILDS = (["relaxed", "simd"] as const).flatMap((b) => {
  const g = WasmGradient.load(b);
  return g === undefined ? [] : [[b, g] as const];
});

Deno.test("both gradient builds load here, and gradientDifferences goes through one", () => {
  assertEquals(BUILDS.map(([b]) => b), ["relaxed", "simd"]);
  assert(wasmGradient() !== undefined);
});

Deno.test("WasmGradient.load: undefined where WebAssembly rejects the kernel", () => {
  const validate = WebAssembly.validate;
  try {
    WebAssembly.validate = () => false;
    assertStrictEquals(WasmGradient.load("relaxed"), undefined);
    assertStrictEquals(WasmGradient.load("simd"), undefined);
  } finally {
    WebAssembly.validate = validate;
  }
});

// ---------------------------------------------------------------------------
// Against the JavaScript reference

/** A seeded generator of floats in [0, 1). */
function random(seed: number): () => number {
  let s = seed;
  return () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296;
}

/** Every `at` of three distinct byte offsets (24), and some that repeat one. */
const ATS: At[] = [];
for (let r = 0; r < 4; r++) {
  for (let g = 0; g < 4; g++) {
    for (let b = 0; b < 4; b++) if (r !== g && g !== b && r !== b) ATS.push([r, g, b]);
  }
}
ATS.push([0, 0, 0], [3, 3, 3], [1, 1, 2], [2, 0, 2]);

type Kind = "random" | "smooth" | "extremes" | "flat";

/**
 * `w * h` 32 bpp pixels of a kind, at `lead` bytes into a buffer with `trail` bytes of
 * noise after them (the encoder passes a scratch buffer longer than the rectangle).
 */
function pixels(rnd: () => number, kind: Kind, w: number, h: number, lead: number, trail: number) {
  const buf = new Uint8Array(lead + w * h * 4 + trail);
  for (let i = 0; i < buf.length; i++) buf[i] = (rnd() * 256) | 0;
  const px = buf.subarray(lead, lead + w * h * 4);
  const ext = [0, 1, 2, 127, 128, 129, 253, 254, 255];
  const base = [rnd() * 256, rnd() * 256, rnd() * 256, rnd() * 256];
  const slope = [rnd() * 4 - 2, rnd() * 4 - 2, rnd() * 4 - 2, rnd() * 4 - 2];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 4; c++) {
        const i = (y * w + x) * 4 + c;
        if (kind === "random") continue;
        if (kind === "extremes") px[i] = ext[(rnd() * ext.length) | 0];
        else if (kind === "flat") px[i] = rnd() < 0.02 ? (rnd() * 256) | 0 : base[c];
        else {
          // a gradient that wraps past 255, with a little noise now and then
          const v = base[c] + slope[c] * x + slope[(c + 1) & 3] * y;
          px[i] = (Math.round(v) + (rnd() < 0.1 ? ((rnd() * 5) | 0) - 2 : 0)) & 255;
        }
      }
    }
  }
  return { buf, px };
}

/** Checks one case: the same bytes (and nothing written past them) and zero count. */
function check(g: WasmGradient, px: Uint8Array, w: number, h: number, at: At, what: string) {
  const n = w * h * 3;
  const want = new Uint8Array(n + 16).fill(0xa5);
  const got = new Uint8Array(n + 16).fill(0xa5);
  const wantZeros = gradientDifferencesJs(px, w, h, at, want);
  const zeros = g.differences(px, w, h, at, got);
  const diff = got.findIndex((v, i) => v !== want[i]);
  if (diff >= 0) {
    const p = Math.floor(diff / 3);
    throw new Error(
      `${what}: byte ${diff} (pixel ${p % w},${Math.floor(p / w)} channel ${diff % 3}) ` +
        `is ${got[diff]}, not ${want[diff]}`,
    );
  }
  assertStrictEquals(zeros, wantZeros, `${what}: zero count`);
}

/** Shapes: the edges (1 wide, 1 high, widths around multiples of 4 and 16), and bands. */
const SHAPES: [number, number][] = [
  [1, 1],
  [2, 1],
  [3, 1],
  [4, 1],
  [5, 1],
  [1, 2],
  [1, 7],
  [3, 3],
  [4, 4],
  [15, 2],
  [16, 3],
  [17, 5],
  [31, 9],
  [33, 1],
  [64, 64],
  [127, 3],
  [2048, 32], // Tight's widest, 65536 pixels: 4 bands
  [1920, 34],
  [1, GRADIENT_BAND_PIXELS + 3], // bands of many rows
  [7, 5000],
  [GRADIENT_BAND_PIXELS - 1, 3], // one row a band
  [GRADIENT_BAND_PIXELS + 5, 2],
];

for (const [build, g] of BUILDS) {
  Deno.test(`[wasm-${build}] gradient filter = the JavaScript reference: edge shapes, every at, all kinds`, () => {
    const rnd = random(1);
    let k = 0;
    for (const [w, h] of SHAPES) {
      for (const kind of ["random", "smooth", "extremes", "flat"] as const) {
        const at = ATS[k++ % ATS.length];
        const { px } = pixels(rnd, kind, w, h, k % 5, 64);
        check(g, px, w, h, at, `${w}x${h} ${kind} at ${at}`);
      }
    }
  });

  Deno.test(`[wasm-${build}] gradient filter = the JavaScript reference: 3000 random rectangles`, () => {
    const rnd = random(2 + build.length);
    const kinds = ["random", "smooth", "extremes", "flat"] as const;
    for (let run = 0; run < 3000; run++) {
      // mostly small, some up to Tight's largest rectangles
      const big = run % 10 === 0;
      const w = 1 + ((rnd() * (big ? 2048 : 70)) | 0);
      const h = 1 + ((rnd() * (big ? Math.floor(65536 / w) : 40)) | 0);
      const kind = kinds[run % 4];
      const at = ATS[(rnd() * ATS.length) | 0];
      const { px } = pixels(rnd, kind, w, h, (rnd() * 8) | 0, (rnd() * 100) | 0);
      check(g, px, w, h, at, `run ${run}: ${w}x${h} ${kind} at ${at}`);
    }
  });

  Deno.test(`[wasm-${build}] gradient filter: every (left, above, above-left) triple`, () => {
    // Two rows, pixel pairs i = 256 * above + aboveLeft: row 0 holds aboveLeft, above;
    // row 1 holds left, then the value, so that the second pixel of each pair sees the
    // triple. R, G and B take three values of left at a time.
    const w = 2 * 65536, h = 2;
    const px = new Uint8Array(w * h * 4);
    const got = new Uint8Array(w * h * 3);
    const ref = new Uint8Array(w * h * 3);
    const at: At = [0, 1, 2];
    for (let l0 = 0; l0 < 256; l0 += 3) {
      const lefts = [l0, Math.min(l0 + 1, 255), Math.min(l0 + 2, 255)];
      for (let i = 0; i < 65536; i++) {
        const up = i >> 8, upLeft = i & 255;
        const o0 = 2 * i * 4, o1 = (w + 2 * i) * 4;
        for (let c = 0; c < 3; c++) {
          px[o0 + c] = upLeft;
          px[o0 + 4 + c] = up;
          px[o1 + c] = lefts[c];
          px[o1 + 4 + c] = (lefts[c] + up - upLeft) & 255; // 0 unless clamped
        }
        px[o0 + 3] =
          px[o0 + 7] =
          px[o1 + 3] =
          px[o1 + 7] =
            i & 255;
      }
      const zeros = g.differences(px, w, h, at, got);
      assertStrictEquals(zeros, gradientDifferencesJs(px, w, h, at, ref), `left ${l0}..`);
      for (let i = 0; i < 65536; i++) {
        const up = i >> 8, upLeft = i & 255;
        for (let c = 0; c < 3; c++) {
          const left = lefts[c];
          const p = Math.max(0, Math.min(255, left + up - upLeft));
          const want = (((left + up - upLeft) & 255) - p) & 255;
          const d = got[(w + 2 * i + 1) * 3 + c];
          if (d !== want) {
            throw new Error(`left ${left} above ${up} above-left ${upLeft}: ${d}, not ${want}`);
          }
        }
      }
    }
  });
}

Deno.test("gradientDifferences: the reference's result where the kernel cannot take it", () => {
  const rnd = random(9);
  const { px } = pixels(rnd, "smooth", 9, 4, 0, 8);
  for (const at of [[0, 1, 4], [-1, 0, 1], [0.5, 1, 2]] as At[]) {
    assertStrictEquals(wasmGradient()!.differences(px, 9, 4, at, new Uint8Array(108)), undefined);
  }
  // offset 4 reads the next pixel's first byte: what the JavaScript loop does
  const at: At = [1, 2, 4];
  const want = new Uint8Array(9 * 3 * 3), got = new Uint8Array(9 * 3 * 3);
  assertStrictEquals(
    gradientDifferences(px, 9, 3, at, got),
    gradientDifferencesJs(px, 9, 3, at, want),
  );
  assertEquals(got, want);
  // px or dst too short; empty rectangles
  const dst = new Uint8Array(9 * 4 * 3);
  assertStrictEquals(
    wasmGradient()!.differences(px.subarray(0, 143), 9, 4, [0, 1, 2], dst),
    undefined,
  );
  assertStrictEquals(wasmGradient()!.differences(px, 9, 4, [0, 1, 2], dst.subarray(1)), undefined);
  assertStrictEquals(typeof wasmGradient()!.differences(px, 9, 4, [0, 1, 2], dst), "number");
  assertStrictEquals(gradientDifferences(px, 0, 4, [0, 1, 2], got), 0);
  assertStrictEquals(gradientDifferences(px, 9, 0, [0, 1, 2], got), 0);
});
