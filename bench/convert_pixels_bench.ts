/**
 * convertPixels on a full 1920x1080 XRGB8888 frame, against a plain copy of the
 * same bytes. Targets: same format >= 0.8 of the copy's speed; 32 → 16 and
 * 32 → 8 bpp >= 0.25 of it.
 *
 * Run: `deno bench -A bench/convert_pixels_bench.ts`
 */
import { convertPixels } from "../pipeline/convert_pixels.ts";
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

const outFor = (f: PixelFormat) => new Uint8Array(W * H * bytesPerPixel(f));
const copyOut = new Uint8Array(bytes.length);
const sameOut = outFor(XRGB8888);
const out565 = outFor(RGB565);
const out233 = outFor(BGR233);
const outBe = outFor(XRGB8888_BE);

Deno.bench({
  name: "copy: Uint8Array.set of the same bytes",
  group: "convert",
  baseline: true,
  fn() {
    copyOut.set(bytes);
  },
});

Deno.bench({
  name: "convertPixels same format (XRGB8888), into out",
  group: "convert",
  fn() {
    convertPixels(fb, full, XRGB8888, sameOut);
  },
});

Deno.bench({
  name: "convertPixels XRGB8888 → RGB565, into out",
  group: "convert",
  fn() {
    convertPixels(fb, full, RGB565, out565);
  },
});

Deno.bench({
  name: "convertPixels XRGB8888 → BGR233, into out",
  group: "convert",
  fn() {
    convertPixels(fb, full, BGR233, out233);
  },
});

Deno.bench({
  name: "convertPixels XRGB8888 → XRGB8888 big-endian, into out",
  group: "convert",
  fn() {
    convertPixels(fb, full, XRGB8888_BE, outBe);
  },
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
