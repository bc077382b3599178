/**
 * convertPixels on a full 1920x1080 XRGB8888 frame, against a plain copy of the
 * same bytes. Targets: same format >= 0.8 of the copy's throughput; 32 → 16 and
 * 32 → 8 bpp >= 0.25 of it.
 *
 * Run: `deno bench -A bench/convert_pixels_bench.ts` (Deno's table, the copy as
 * baseline), or `deno run -A bench/convert_pixels_bench.ts`: every case, through the
 * default path (WebAssembly SIMD where it applies) and through JavaScript only, timed
 * in alternating rounds of one run, with its throughput as a fraction of the copy's.
 */
import { convertPixels, setConvertBackend } from "../pipeline/convert_pixels.ts";
import type { Framebuffer } from "../pipeline/framebuffer.ts";
import {
  BGR233,
  bytesPerPixel,
  type PixelFormat,
  RGB565,
  XRGB8888,
} from "../pipeline/pixel_format.ts";

const W = 1920, H = 1080;
const stride = W * 4;
const bytes = new Uint8Array(stride * H);
// Deterministic, non-uniform content (a cheap xorshift), so tables see all indices.
let seed = 0x9e3779b9;
for (let i = 0; i < bytes.length; i += 4) {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  bytes[i] = seed;
  bytes[i + 1] = seed >>> 8;
  bytes[i + 2] = seed >>> 16;
}
const fb: Framebuffer = { width: W, height: H, stride, format: XRGB8888, bytes };
const full = { x: 0, y: 0, w: W, h: H };

/** XRGB8888's layout, big-endian on the wire (bytes 0, R, G, B). */
const XRGB8888_BE: PixelFormat = { ...XRGB8888, bigEndian: true };

const copyOut = new Uint8Array(bytes.length);
const copy = () => copyOut.set(bytes);

/** The conversions measured, each into its own output buffer; `target` as a fraction of the copy. */
const CASES: { name: string; dst: PixelFormat; target?: number }[] = [
  { name: "same format (XRGB8888)", dst: XRGB8888, target: 0.8 },
  { name: "XRGB8888 → RGB565", dst: RGB565, target: 0.25 },
  { name: "XRGB8888 → BGR233", dst: BGR233, target: 0.25 },
  { name: "XRGB8888 → XRGB8888 big-endian", dst: XRGB8888_BE },
  { name: "XRGB8888 → RGB565 big-endian", dst: { ...RGB565, bigEndian: true } },
];
const runs = CASES.map(({ dst }) => {
  const out = new Uint8Array(W * H * bytesPerPixel(dst));
  return {
    auto: () => {
      convertPixels(fb, full, dst, out);
    },
    js: () => {
      const prev = setConvertBackend("js");
      convertPixels(fb, full, dst, out);
      setConvertBackend(prev);
    },
  };
});

Deno.bench({
  name: "copy: Uint8Array.set of the same bytes",
  group: "convert",
  baseline: true,
  fn: copy,
});
CASES.forEach(({ name }, i) => {
  Deno.bench({ name: `convertPixels ${name}, into out`, group: "convert", fn: runs[i].auto });
  Deno.bench({ name: `convertPixels ${name}, JavaScript only`, group: "convert", fn: runs[i].js });
});

Deno.bench({
  name: "convertPixels XRGB8888 → RGB565, allocating",
  group: "allocating",
  fn() {
    convertPixels(fb, full, RGB565);
  },
});

Deno.bench({
  name: "convertPixels same format, allocating",
  group: "allocating",
  fn() {
    convertPixels(fb, full, XRGB8888);
  },
});

// The floor for any per-pixel JavaScript loop: read a 32-bit word, store 16 bits, no
// conversion at all. Shows how near a table-driven conversion can come to the copy.
const s32 = new Int32Array(bytes.buffer, 0, W * H);
const d16 = new Uint16Array(W * H);
Deno.bench({
  name: "floor: per-pixel loop d16[i] = s32[i] (no conversion)",
  group: "convert",
  fn() {
    for (let i = 0; i < s32.length; i++) d16[i] = s32[i];
  },
});

/**
 * Milliseconds per call of each function: in each round, a few calls to warm up, then
 * the mean of `calls` (each case in the steady state of its own working set, as
 * `deno bench` measures); rounds alternate the cases, so that noise from other work
 * on the machine spreads over all of them. The median over the rounds.
 */
function timings(fns: (() => void)[], rounds: number, calls: number): number[] {
  const times = fns.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) {
    fns.forEach((f, i) => {
      for (let k = 0; k < 3; k++) f();
      const t0 = performance.now();
      for (let k = 0; k < calls; k++) f();
      times[i].push((performance.now() - t0) / calls);
    });
  }
  return times.map((t) => t.sort((a, b) => a - b)[t.length >> 1]);
}

if (import.meta.main) {
  const fns = [copy, ...runs.flatMap((r) => [r.auto, r.js])];
  const [copyMs, ...ms] = timings(fns, 21, 10);
  const us = (t: number) => `${(t * 1000).toFixed(0)} µs`.padStart(9);
  const ratio = (t: number) => (copyMs / t).toFixed(3).padStart(6);
  console.log(`1920x1080, median of 21 alternating rounds; ratio = copy time / time`);
  console.log(`${"copy (Uint8Array.set)".padEnd(34)}${us(copyMs)}`);
  console.log(`${"".padEnd(34)}${"default".padStart(9)} ratio ${"JS only".padStart(9)} ratio`);
  CASES.forEach(({ name, target }, i) => {
    const [auto, js] = [ms[2 * i], ms[2 * i + 1]];
    const verdict = target === undefined ? "" : copyMs / auto >= target ? "  ok" : "  BELOW";
    const goal = target === undefined ? "" : ` (target ${target})`;
    console.log(
      `${name.padEnd(34)}${us(auto)} ${ratio(auto)} ${us(js)} ${ratio(js)}${goal}${verdict}`,
    );
  });
}
