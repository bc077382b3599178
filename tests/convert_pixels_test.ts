import { assert, assertEquals, assertStrictEquals, assertThrows } from "@rxfb/assert";
import {
  convertPixels,
  pixelToRgb,
  rgbToPixel,
  scaleComponent,
  setConvertBackend,
} from "../pipeline/convert_pixels.ts";
import { BAND_PIXELS, kernelPlan, q15Multiplier, WasmConverter } from "../pipeline/convert_wasm.ts";
import type { Framebuffer } from "../pipeline/framebuffer.ts";
import {
  BGR233,
  bytesPerPixel,
  type PixelFormat,
  RGB332,
  RGB565,
  RGB888,
  sameFormat,
  XRGB8888,
} from "../pipeline/pixel_format.ts";
import { type Rect, rect } from "../pipeline/rect.ts";
import { mulberry32 } from "./prng.ts";

// ---------------------------------------------------------------------------
// Reference: one pixel at a time, plain arithmetic, no tables, no bit tricks.

/** Reads a pixel value of `n` bytes at `at`, in the given byte order. */
function refRead(bytes: Uint8Array, at: number, n: number, bigEndian: boolean): number {
  let v = 0;
  for (let k = 0; k < n; k++) {
    const weight = bigEndian ? n - 1 - k : k;
    v += bytes[at + k] * 2 ** (8 * weight);
  }
  return v;
}

/** Writes a pixel value of `n` bytes at `at`, in the given byte order. */
function refWrite(bytes: Uint8Array, at: number, n: number, bigEndian: boolean, v: number) {
  for (let k = 0; k < n; k++) {
    const weight = bigEndian ? n - 1 - k : k;
    bytes[at + k] = Math.floor(v / 2 ** (8 * weight)) % 256;
  }
}

/** Number of bits needed to hold `max`. */
function bitLength(max: number): number {
  let n = 0;
  while (2 ** n <= max) n++;
  return n;
}

/** The component at `shift` whose maximum is `max`: the field, clamped to max. */
function refComponent(v: number, shift: number, max: number): number {
  const field = Math.floor(v / 2 ** shift) % 2 ** bitLength(max);
  return Math.min(field, max);
}

/** The documented rounding: floor((2·c·dstMax + srcMax) / (2·srcMax)); 0 when srcMax is 0. */
function refScale(c: number, srcMax: number, dstMax: number): number {
  if (srcMax === 0) return 0;
  return Math.floor((2 * c * dstMax + srcMax) / (2 * srcMax));
}

function refPixel(v: number, s: PixelFormat, d: PixelFormat): number {
  const r = refScale(refComponent(v, s.redShift, s.redMax), s.redMax, d.redMax);
  const g = refScale(refComponent(v, s.greenShift, s.greenMax), s.greenMax, d.greenMax);
  const b = refScale(refComponent(v, s.blueShift, s.blueMax), s.blueMax, d.blueMax);
  // Fields never overlap in the formats tested, so a sum is an OR.
  const sum = r * 2 ** d.redShift + g * 2 ** d.greenShift + b * 2 ** d.blueShift;
  return sum % 2 ** d.bitsPerPixel;
}

function refConvert(
  fb: Framebuffer,
  r: Rect,
  d: PixelFormat,
  out: Uint8Array,
  outOffset: number,
  outStride: number,
): void {
  const s = fb.format, sn = s.bitsPerPixel / 8, dn = d.bitsPerPixel / 8;
  if (sameFormat(s, d)) {
    // Documented: the same format is a byte copy, padding bits included.
    for (let j = 0; j < r.h; j++) {
      for (let i = 0; i < r.w * sn; i++) {
        out[outOffset + j * outStride + i] = fb.bytes[(r.y + j) * fb.stride + r.x * sn + i];
      }
    }
    return;
  }
  for (let j = 0; j < r.h; j++) {
    for (let i = 0; i < r.w; i++) {
      const v = refRead(fb.bytes, (r.y + j) * fb.stride + (r.x + i) * sn, sn, s.bigEndian);
      refWrite(out, outOffset + j * outStride + i * dn, dn, d.bigEndian, refPixel(v, s, d));
    }
  }
}

const NAMED: PixelFormat[] = [
  XRGB8888,
  RGB888,
  RGB565,
  RGB332,
  BGR233,
  { ...XRGB8888, bigEndian: true },
  { ...RGB565, bigEndian: true },
  { ...XRGB8888, redShift: 0, blueShift: 16 }, // XBGR8888
  { ...XRGB8888, redShift: 24, greenShift: 16, blueShift: 8 }, // RGBX8888
];

/**
 * A random true-colour format: fields of random width (up to `maxField` bits) at random
 * non-overlapping places.
 */
function randomFormat(rnd: () => number, bppChoices: number[], maxField = 16): PixelFormat {
  const pick = <T>(a: T[]) => a[Math.floor(rnd() * a.length)];
  const bpp = pick(bppChoices);
  const budget = Math.min(bpp, 48);
  const widths: number[] = [];
  let left = budget;
  for (let k = 0; k < 3; k++) {
    const w = rnd() < 0.05 ? 0 : Math.min(left, 1 + Math.floor(rnd() * Math.min(left, maxField)));
    widths.push(Math.max(0, w));
    left -= widths[k];
  }
  // Random order of the three fields, random gaps between them.
  const order = [0, 1, 2].sort(() => rnd() - 0.5);
  const shifts = [0, 0, 0];
  let pos = Math.floor(rnd() * (left + 1));
  left -= pos;
  for (const k of order) {
    shifts[k] = Math.min(pos, 31); // a 0-bit field may sit at the very end
    const gap = Math.floor(rnd() * (left + 1));
    left -= gap;
    pos += widths[k] + gap;
  }
  const maxima = widths.map((w) => {
    if (w === 0) return 0;
    const full = 2 ** w - 1;
    // Mostly 2^n - 1; sometimes any value needing exactly w bits (like 5).
    return rnd() < 0.7 ? full : 2 ** (w - 1) + Math.floor(rnd() * 2 ** (w - 1));
  });
  return {
    bitsPerPixel: bpp,
    depth: widths[0] + widths[1] + widths[2],
    bigEndian: rnd() < 0.5,
    trueColour: true,
    redMax: maxima[0],
    greenMax: maxima[1],
    blueMax: maxima[2],
    redShift: shifts[0],
    greenShift: shifts[1],
    blueShift: shifts[2],
  };
}

/** A framebuffer of random bytes: stride padding, `bytes` a subarray at an offset. */
function randomFramebuffer(
  rnd: () => number,
  format: PixelFormat,
  maxWidth = 37,
  maxHeight = 9,
): Framebuffer {
  const bpp = bytesPerPixel(format);
  const aligned = rnd() < 0.5;
  const width = 1 + Math.floor(rnd() * maxWidth), height = 1 + Math.floor(rnd() * maxHeight);
  const pad = aligned ? 4 * Math.floor(rnd() * 3) : Math.floor(rnd() * 7);
  const stride = width * bpp + pad + (aligned ? (4 - (width * bpp) % 4) % 4 : 0);
  const offset = aligned ? 4 * Math.floor(rnd() * 3) : Math.floor(rnd() * 8);
  const backing = new Uint8Array(offset + stride * height);
  for (let i = 0; i < backing.length; i++) backing[i] = Math.floor(rnd() * 256);
  const len = stride * (height - 1) + width * bpp;
  return { width, height, stride, format, bytes: backing.subarray(offset, offset + len) };
}

function randomRect(rnd: () => number, fb: Framebuffer): Rect {
  const x = Math.floor(rnd() * fb.width), y = Math.floor(rnd() * fb.height);
  const w = rnd() < 0.03 ? 0 : 1 + Math.floor(rnd() * (fb.width - x));
  const h = 1 + Math.floor(rnd() * (fb.height - y));
  return rect(x, y, w, h);
}

function hex(a: Uint8Array): string {
  return Array.from(a, (b) => b.toString(16).padStart(2, "0")).join("");
}

function checkAgainstReference(
  rnd: () => number,
  src: PixelFormat,
  dst: PixelFormat,
  label: string,
  maxWidth?: number,
  maxHeight?: number,
): void {
  const fb = randomFramebuffer(rnd, src, maxWidth, maxHeight);
  const r = randomRect(rnd, fb);
  const dBpp = bytesPerPixel(dst);
  const rowBytes = r.w * dBpp;
  const ctx = () =>
    `${label}: ${JSON.stringify(src)} → ${JSON.stringify(dst)}, fb ${fb.width}x${fb.height} ` +
    `stride ${fb.stride} offset ${fb.bytes.byteOffset}, rect ${JSON.stringify(r)}`;
  if (rnd() < 0.4) {
    // Allocating, tightly packed.
    const got = convertPixels(fb, r, dst);
    const want = new Uint8Array(r.w === 0 ? 0 : r.h * rowBytes);
    refConvert(fb, r, dst, want, 0, rowBytes);
    assertStrictEquals(hex(got), hex(want), ctx());
  } else {
    // Into a caller's buffer: odd offsets, padded rows; bytes not ours stay as they were.
    const outOffset = Math.floor(rnd() * 9);
    const outStride = rowBytes + Math.floor(rnd() * 9);
    const viewAt = Math.floor(rnd() * 5);
    const size = viewAt + outOffset + r.h * outStride + 3;
    const backing = new Uint8Array(size);
    for (let i = 0; i < size; i++) backing[i] = Math.floor(rnd() * 256);
    const expected = backing.slice(viewAt);
    const out = backing.subarray(viewAt);
    const before = backing.slice(0, viewAt);
    const ret = convertPixels(fb, r, dst, out, outOffset, outStride);
    assert(ret === out, "returns out");
    refConvert(fb, r, dst, expected, outOffset, outStride);
    assertStrictEquals(hex(out), hex(expected), ctx());
    assertStrictEquals(hex(backing.subarray(0, viewAt)), hex(before), "bytes before out");
  }
}

// ---------------------------------------------------------------------------
// Backends: JavaScript, and each WebAssembly build this runtime runs, forced (no size
// threshold; formats the kernels do not take still go to JavaScript)

const BACKENDS: [string, "js" | WasmConverter][] = [
  ["js", "js"],
  ...(["relaxed", "simd"] as const).flatMap((b) => {
    const c = WasmConverter.load(b);
    return c === undefined ? [] : [[`wasm-${b}`, c] as [string, WasmConverter]];
  }),
];

/** One Deno.test per backend, with convertPixels forced to it. */
function testEachBackend(name: string, fn: () => void): void {
  for (const [label, backend] of BACKENDS) {
    Deno.test(`[${label}] ${name}`, () => {
      const prev = setConvertBackend(backend);
      try {
        fn();
      } finally {
        setConvertBackend(prev);
      }
    });
  }
}

// ---------------------------------------------------------------------------
// Against the reference

testEachBackend("convertPixels matches the reference: random formats", () => {
  const rnd = mulberry32(0x5eed);
  for (let n = 0; n < 3000; n++) {
    const src = rnd() < 0.25 ? NAMED[Math.floor(rnd() * NAMED.length)] : randomFormat(rnd, [
      8,
      16,
      24,
      32,
    ]);
    const dst = rnd() < 0.25
      ? NAMED.filter((f) => f.bitsPerPixel !== 24)[Math.floor(rnd() * (NAMED.length - 1))]
      : randomFormat(rnd, [8, 16, 32]);
    checkAgainstReference(rnd, src, dst, `case ${n}`);
  }
});

testEachBackend("convertPixels matches the reference: 32 bpp sources (fast paths)", () => {
  const rnd = mulberry32(42);
  const sources = [XRGB8888, { ...XRGB8888, bigEndian: true }, NAMED[7], NAMED[8]];
  for (let n = 0; n < 2000; n++) {
    const src = rnd() < 0.6 ? sources[Math.floor(rnd() * sources.length)] : randomFormat(rnd, [
      32,
    ]);
    const dst = rnd() < 0.5
      ? NAMED.filter((f) => f.bitsPerPixel !== 24)[Math.floor(rnd() * (NAMED.length - 1))]
      : randomFormat(rnd, [8, 16, 32]);
    checkAgainstReference(rnd, src, dst, `case ${n}`);
  }
});

testEachBackend("convertPixels matches the reference: every named pair", () => {
  const rnd = mulberry32(7);
  for (const src of NAMED) {
    for (const dst of NAMED) {
      if (dst.bitsPerPixel === 24 && src !== dst) continue;
      for (let n = 0; n < 20; n++) checkAgainstReference(rnd, src, dst, "named");
    }
  }
});

Deno.test("convertPixels matches the reference: 24 bpp destinations, 24 bpp big-endian", () => {
  const rnd = mulberry32(24);
  for (let n = 0; n < 300; n++) {
    checkAgainstReference(rnd, randomFormat(rnd, [8, 16, 24, 32]), randomFormat(rnd, [24]), "24");
  }
});

testEachBackend("convertPixels: a large aligned frame through every fast path", () => {
  const rnd = mulberry32(99);
  const width = 67, height = 23, stride = width * 4 + 12;
  const bytes = new Uint8Array(stride * height);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(rnd() * 256);
  const fb = { width, height, stride, format: XRGB8888, bytes };
  for (const dst of NAMED.filter((f) => f.bitsPerPixel !== 24)) {
    for (const r of [rect(0, 0, width, height), rect(1, 2, 30, 5), rect(3, 0, 1, 1)]) {
      const got = convertPixels(fb, r, dst);
      const want = new Uint8Array(r.w * r.h * bytesPerPixel(dst));
      refConvert(fb, r, dst, want, 0, r.w * bytesPerPixel(dst));
      assertStrictEquals(hex(got), hex(want), `${JSON.stringify(dst)} ${JSON.stringify(r)}`);
    }
  }
});

// ---------------------------------------------------------------------------
// The WebAssembly kernels' domain: 32-bpp sources with byte channels

/** A 32-bpp format whose channels are whole bytes at random places (or absent). */
function randomByteFormat(rnd: () => number): PixelFormat {
  const order = [0, 1, 2, 3].sort(() => rnd() - 0.5);
  const at = order.slice(0, 3).map((b) => rnd() < 0.05 ? -1 : b);
  const max = (b: number) => b < 0 ? 0 : 255;
  const shift = (b: number) => b < 0 ? Math.floor(rnd() * 32) : 8 * b;
  return {
    bitsPerPixel: 32,
    depth: 24,
    bigEndian: rnd() < 0.5,
    trueColour: true,
    redMax: max(at[0]),
    greenMax: max(at[1]),
    blueMax: max(at[2]),
    redShift: shift(at[0]),
    greenShift: shift(at[1]),
    blueShift: shift(at[2]),
  };
}

Deno.test("the WebAssembly builds load here (so the backend tests run them)", () => {
  assertEquals(BACKENDS.map(([label]) => label), ["js", "wasm-relaxed", "wasm-simd"]);
});

Deno.test("q15Multiplier: (c·X + 2^14) >> 15 is scaleComponent(c, 255, d), all c and d", () => {
  for (let d = 0; d <= 255; d++) {
    const x = q15Multiplier(d);
    assert(x !== undefined && x >= 0 && x <= 32767, `d ${d}`);
    for (let c = 0; c <= 255; c++) {
      assertStrictEquals((c * x + 16384) >> 15, scaleComponent(c, 255, d), `c ${c} d ${d}`);
    }
  }
  assertStrictEquals(q15Multiplier(31), 3984);
});

Deno.test("kernelPlan: which format pairs the kernels take", () => {
  const be = (f: PixelFormat) => ({ ...f, bigEndian: true });
  const plan = (s: PixelFormat, d: PixelFormat) => {
    const p = kernelPlan(s, d);
    return p === undefined ? undefined : `${p.fn}${p.swap ? "+swap" : ""}`;
  };
  assertStrictEquals(plan(XRGB8888, RGB565), "conv16");
  assertStrictEquals(plan(XRGB8888, be(RGB565)), "conv16+swap");
  assertStrictEquals(plan(XRGB8888, BGR233), "conv8");
  assertStrictEquals(plan(be(XRGB8888), RGB332), "conv8");
  assertStrictEquals(plan(XRGB8888, be(XRGB8888)), "perm32");
  assertStrictEquals(plan(XRGB8888, NAMED[7]), "perm32");
  assertStrictEquals(plan(XRGB8888, { ...XRGB8888, redMax: 127 }), "conv32");
  assertStrictEquals(plan(XRGB8888, be({ ...XRGB8888, redMax: 127 })), "conv32+swap");
  assertStrictEquals(plan(XRGB8888, { ...XRGB8888, redMax: 0, blueShift: 24 }), "perm32");
  // Refused: other sources, sub-byte or odd source fields, maxima above 255, a field
  // straddling bit 16 of a 32-bpp pixel, 24 bpp.
  assertStrictEquals(plan(RGB565, XRGB8888), undefined);
  assertStrictEquals(plan(RGB888, RGB565), undefined);
  assertStrictEquals(plan({ ...XRGB8888, redMax: 127 }, RGB565), undefined);
  assertStrictEquals(plan({ ...XRGB8888, redShift: 12 }, RGB565), undefined);
  assertStrictEquals(plan(XRGB8888, { ...RGB565, greenMax: 1023 }), undefined);
  assertStrictEquals(plan(XRGB8888, { ...XRGB8888, greenShift: 10 }), undefined);
  assertStrictEquals(plan(XRGB8888, RGB888), undefined);
});

testEachBackend("byte-channel 32-bpp sources to random destinations, odd sizes", () => {
  const rnd = mulberry32(0xb17e);
  const wasm = BACKENDS.find(([label]) => label === "wasm-simd")![1] as WasmConverter;
  let taken = 0;
  const cases = 1500;
  for (let n = 0; n < cases; n++) {
    const src = rnd() < 0.3 ? XRGB8888 : randomByteFormat(rnd);
    const pick = rnd();
    const dst = pick < 0.2
      ? NAMED.filter((f) => f.bitsPerPixel !== 24)[Math.floor(rnd() * (NAMED.length - 1))]
      : pick < 0.8
      ? randomFormat(rnd, [8, 16, 32], 8) // maxima up to 255: the kernels' own
      : randomFormat(rnd, [8, 16, 32]);
    if (wasm.supports(src, dst)) taken++;
    checkAgainstReference(rnd, src, dst, `case ${n}`, 90, 12);
  }
  // Most of these are the kernels' to convert, not JavaScript's.
  assert(taken > cases * 0.6, `${taken} of ${cases} supported`);
});

testEachBackend("rects across several bands, padded strides, rows wider than a band", () => {
  const rnd = mulberry32(0xba4d);
  const check = (fb: Framebuffer, r: Rect, dst: PixelFormat, outOffset: number, pad: number) => {
    const outStride = r.w * bytesPerPixel(dst) + pad;
    const size = outOffset + (r.h - 1) * outStride + r.w * bytesPerPixel(dst) + 7;
    const got = new Uint8Array(size).fill(0x5a), want = got.slice();
    convertPixels(fb, r, dst, got, outOffset, outStride);
    refConvert(fb, r, dst, want, outOffset, outStride);
    assertStrictEquals(hex(got), hex(want), `${JSON.stringify(dst)} ${JSON.stringify(r)}`);
  };
  const frame = (width: number, height: number, stride: number, format: PixelFormat) => {
    const bytes = new Uint8Array(stride * height + 5).subarray(5);
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(rnd() * 256);
    return { width, height, stride, format, bytes };
  };
  const dsts = [RGB565, BGR233, { ...RGB565, bigEndian: true }, { ...XRGB8888, bigEndian: true }];
  dsts.push({ ...XRGB8888, redMax: 31, greenMax: 63, bigEndian: true });
  for (const dst of dsts) {
    // 700 wide: 23 rows a band; padded rows copy one by one, packed ones in blocks.
    const padded = frame(700, 60, 700 * 4 + 12, XRGB8888);
    check(padded, rect(3, 1, 611, 57), dst, 3, 5);
    const packed = frame(700, 60, 700 * 4, { ...XRGB8888, bigEndian: true });
    check(packed, rect(0, 2, 700, 58), dst, 0, 0);
    // A row longer than a band.
    const wide = frame(BAND_PIXELS + 21, 3, (BAND_PIXELS + 21) * 4, XRGB8888);
    check(wide, rect(1, 0, BAND_PIXELS + 19, 3), dst, 1, 2);
  }
});

Deno.test("WasmConverter.load: undefined where WebAssembly rejects the kernel", () => {
  const validate = WebAssembly.validate;
  try {
    WebAssembly.validate = () => false;
    assertStrictEquals(WasmConverter.load("relaxed"), undefined);
    assertStrictEquals(WasmConverter.load("simd"), undefined);
  } finally {
    WebAssembly.validate = validate;
  }
});

// ---------------------------------------------------------------------------
// Known values, worked by hand

/** A 1x1 framebuffer holding one pixel value, stored in the format's byte order. */
function onePixel(format: PixelFormat, value: number): Framebuffer {
  const n = bytesPerPixel(format);
  const bytes = new Uint8Array(n);
  refWrite(bytes, 0, n, format.bigEndian, value);
  return { width: 1, height: 1, stride: n, format, bytes };
}

const ONE = rect(0, 0, 1, 1);

Deno.test("known values: XRGB8888 0x00ff8000 (orange)", () => {
  const fb = onePixel(XRGB8888, 0x00ff8000);
  // R 255 → 31; G 128 → floor((2·128·63 + 255) / 510) = floor(16383 / 510) = 32; B 0.
  // (31 << 11) | (32 << 5) = 0xf800 | 0x0400 = 0xfc00, little-endian.
  assertEquals(Array.from(convertPixels(fb, ONE, RGB565)), [0x00, 0xfc]);
  assertEquals(Array.from(convertPixels(fb, ONE, { ...RGB565, bigEndian: true })), [0xfc, 0x00]);
  // G 128 → floor((2·128·7 + 255) / 510) = floor(2047 / 510) = 4.
  // BGR233: 7 | (4 << 3) | (0 << 6) = 0x27; RGB332: (7 << 5) | (4 << 2) = 0xf0.
  assertEquals(Array.from(convertPixels(fb, ONE, BGR233)), [0x27]);
  assertEquals(Array.from(convertPixels(fb, ONE, RGB332)), [0xf0]);
  assertEquals(Array.from(convertPixels(fb, ONE, { ...XRGB8888, bigEndian: true })), [
    0x00,
    0xff,
    0x80,
    0x00,
  ]);
  // Padding byte ignored: 0xaaff8000 converts the same.
  const padded = onePixel(XRGB8888, 0xaaff8000);
  assertEquals(Array.from(convertPixels(padded, ONE, RGB565)), [0x00, 0xfc]);
  assertEquals(Array.from(convertPixels(padded, ONE, { ...XRGB8888, bigEndian: true })), [
    0x00,
    0xff,
    0x80,
    0x00,
  ]);
});

Deno.test("known values: RGB565 and RGB888 sources", () => {
  // RGB565 0xfc00: R 31 → 255; G 32 → floor((2·32·255 + 63) / 126) = floor(16383 / 126) = 130.
  const fb = onePixel(RGB565, 0xfc00);
  assertEquals(Array.from(convertPixels(fb, ONE, XRGB8888)), [0x00, 0x82, 0xff, 0x00]);
  // Packed 24 bpp: bytes B, G, R.
  const bytes = new Uint8Array([0x10, 0x20, 0x30]);
  const fb24 = { width: 1, height: 1, stride: 3, format: RGB888, bytes };
  assertEquals(Array.from(convertPixels(fb24, ONE, XRGB8888)), [0x10, 0x20, 0x30, 0x00]);
  // R 0x30 = 48 → floor((2·48·31 + 255) / 510) = floor(3231 / 510) = 6;
  // G 0x20 = 32 → floor((2·32·63 + 255) / 510) = floor(4287 / 510) = 8; B 16 → 2.
  // (6 << 11) | (8 << 5) | 2 = 0x3102.
  assertEquals(Array.from(convertPixels(fb24, ONE, RGB565)), [0x02, 0x31]);
});

Deno.test("known values: odd maxima, clamping, halves rounding up, zero maxima", () => {
  const max5: PixelFormat = { ...XRGB8888, redMax: 5, greenMax: 0, blueMax: 1 };
  const white = onePixel(XRGB8888, 0x00ffffff);
  // R 255 → 5; G → 0 (dstMax 0); B 255 → 1.
  assertEquals(Array.from(convertPixels(white, ONE, max5)), [0x01, 0x00, 0x05, 0x00]);
  // 127·5/255 = 2.49 → 2; 128·5/255 = 2.51 → 3.
  assertStrictEquals(scaleComponent(127, 255, 5), 2);
  assertStrictEquals(scaleComponent(128, 255, 5), 3);
  // 1·1/2 = 0.5 rounds up.
  assertStrictEquals(scaleComponent(1, 2, 1), 1);
  assertStrictEquals(scaleComponent(0, 0, 255), 0);
  assertStrictEquals(scaleComponent(9, 9, 9), 9);
  // Source with maximum 5 in a 3-bit field: field 7 is clamped to 5 → 255; 0 max reads 0.
  const src5: PixelFormat = { ...RGB332, redMax: 5, greenMax: 0 };
  const fb = onePixel(src5, 0xff);
  assertEquals(Array.from(convertPixels(fb, ONE, XRGB8888)), [0xff, 0x00, 0xff, 0x00]);
  // Field 3 of max 5 → floor((2·3·255 + 5) / 10) = 153 = 0x99.
  const fb3 = onePixel(src5, 3 << 5);
  assertEquals(Array.from(convertPixels(fb3, ONE, XRGB8888)), [0x00, 0x00, 0x99, 0x00]);
});

Deno.test("scaleComponent is c·dstMax/srcMax rounded half up, for all small maxima", () => {
  for (let sM = 0; sM <= 20; sM++) {
    for (let dM = 0; dM <= 20; dM++) {
      for (let c = 0; c <= sM; c++) {
        const d = scaleComponent(c, sM, dM);
        if (sM === 0) {
          assertStrictEquals(d, 0);
          continue;
        }
        // d - 1/2 <= c·dM/sM < d + 1/2, in integers.
        assert(2 * d * sM - sM <= 2 * c * dM && 2 * c * dM < 2 * d * sM + sM, `${c} ${sM} ${dM}`);
        assert(d >= 0 && d <= dM);
      }
      if (sM === dM) {
        for (let c = 0; c <= sM; c++) assertStrictEquals(scaleComponent(c, sM, dM), c);
      }
    }
  }
});

Deno.test("pixelToRgb and rgbToPixel", () => {
  assertEquals(pixelToRgb(0x00ff8000, XRGB8888), [255, 128, 0]);
  assertEquals(pixelToRgb(0xfc00, RGB565), [31, 32, 0]);
  assertEquals(pixelToRgb(0x27, BGR233), [7, 4, 0]);
  assertStrictEquals(rgbToPixel(31, 32, 0, RGB565), 0xfc00);
  assertStrictEquals(rgbToPixel(255, 255, 255, { ...XRGB8888, redShift: 24 }), 0xff00ffff);
  assertThrows(() => rgbToPixel(32, 0, 0, RGB565), RangeError);
  const rnd = mulberry32(1);
  for (let n = 0; n < 500; n++) {
    const f = randomFormat(rnd, [8, 16, 24, 32]);
    const rgb: [number, number, number] = [
      Math.floor(rnd() * (f.redMax + 1)),
      Math.floor(rnd() * (f.greenMax + 1)),
      Math.floor(rnd() * (f.blueMax + 1)),
    ];
    const v = rgbToPixel(...rgb, f);
    assertEquals(pixelToRgb(v, f), rgb);
    assertStrictEquals(refPixel(v, f, f), v);
  }
});

// ---------------------------------------------------------------------------
// Output placement, copies, errors

testEachBackend("out, outOffset and outStride place rows and leave the rest alone", () => {
  const width = 4, height = 3, stride = 16;
  const bytes = new Uint8Array(stride * height);
  for (let i = 0; i < bytes.length; i++) bytes[i] = i;
  const fb = { width, height, stride, format: XRGB8888, bytes };
  const out = new Uint8Array(20).fill(0xee);
  // 2x2 at (1, 1) as BGR233 (1 byte per pixel), rows 5 bytes apart from offset 3.
  const ret = convertPixels(fb, rect(1, 1, 2, 2), BGR233, out, 3, 5);
  assert(ret === out);
  const px = (x: number, y: number) => {
    const [r, g, b] = pixelToRgb(refRead(bytes, y * stride + x * 4, 4, false), XRGB8888);
    return rgbToPixel(
      scaleComponent(r, 255, 7),
      scaleComponent(g, 255, 7),
      scaleComponent(b, 255, 3),
      BGR233,
    );
  };
  const want = new Uint8Array(20).fill(0xee);
  want[3] = px(1, 1);
  want[4] = px(2, 1);
  want[8] = px(1, 2);
  want[9] = px(2, 2);
  assertEquals(Array.from(out), Array.from(want));
  // Exactly large enough: 3 + 5 + 2 = 10 bytes.
  convertPixels(fb, rect(1, 1, 2, 2), BGR233, new Uint8Array(10), 3, 5);
});

Deno.test("same format copies bytes, with padding rows and single-block copies", () => {
  const rnd = mulberry32(3);
  for (const format of [XRGB8888, RGB888, RGB565, RGB332]) {
    for (let n = 0; n < 30; n++) {
      const fb = randomFramebuffer(rnd, format);
      const r = randomRect(rnd, fb);
      const got = convertPixels(fb, r, format);
      const bpp = bytesPerPixel(format);
      const want: number[] = [];
      for (let j = 0; j < r.h; j++) {
        const at = (r.y + j) * fb.stride + r.x * bpp;
        want.push(...fb.bytes.subarray(at, at + r.w * bpp));
      }
      assertEquals(Array.from(got), want);
    }
  }
  // 8 bpp ignores byte order: sameFormat, still a copy.
  const fb = { width: 2, height: 1, stride: 2, format: RGB332, bytes: new Uint8Array([1, 2]) };
  assertEquals(Array.from(convertPixels(fb, rect(0, 0, 2, 1), { ...RGB332, bigEndian: true })), [
    1,
    2,
  ]);
  // Full-width rows with matching strides: one contiguous block.
  const full = { width: 2, height: 2, stride: 8, format: XRGB8888, bytes: new Uint8Array(16) };
  full.bytes.forEach((_, i) => full.bytes[i] = i);
  assertEquals(Array.from(convertPixels(full, rect(0, 0, 2, 2), XRGB8888)), [...full.bytes]);
});

Deno.test("empty rects convert to nothing", () => {
  const fb = onePixel(XRGB8888, 0);
  assertStrictEquals(convertPixels(fb, rect(0, 0, 0, 1), RGB565).length, 0);
  assertStrictEquals(convertPixels(fb, rect(1, 1, 0, 0), RGB565).length, 0);
});

Deno.test("errors: rects outside the framebuffer", () => {
  const fb = { width: 4, height: 3, stride: 16, format: XRGB8888, bytes: new Uint8Array(48) };
  for (
    const r of [
      rect(0, 0, 5, 1),
      rect(3, 0, 2, 1),
      rect(0, 2, 1, 2),
      rect(-1, 0, 1, 1),
      rect(0, -1, 1, 1),
      rect(0, 0, -1, 1),
      rect(0.5, 0, 1, 1),
    ]
  ) {
    assertThrows(() => convertPixels(fb, r, RGB565), RangeError, JSON.stringify(r));
  }
  // bytes shorter than the framebuffer claims.
  const short = { ...fb, bytes: new Uint8Array(40) };
  assertThrows(() => convertPixels(short, rect(0, 0, 4, 3), RGB565), RangeError);
});

Deno.test("errors: out too small, bad offsets and strides, unsupported formats", () => {
  const fb = { width: 4, height: 3, stride: 16, format: XRGB8888, bytes: new Uint8Array(48) };
  const r = rect(0, 0, 4, 3);
  assertThrows(() => convertPixels(fb, r, RGB565, new Uint8Array(23)), RangeError);
  assertThrows(() => convertPixels(fb, r, RGB565, new Uint8Array(24), 1), RangeError);
  assertThrows(() => convertPixels(fb, r, RGB565, new Uint8Array(100), 0, 7), RangeError);
  assertThrows(() => convertPixels(fb, r, RGB565, new Uint8Array(100), -1), RangeError);
  // Same-format copies check too.
  assertThrows(() => convertPixels(fb, r, XRGB8888, new Uint8Array(47)), RangeError);
  convertPixels(fb, r, RGB565, new Uint8Array(24));
  assertThrows(() => convertPixels(fb, r, { ...RGB565, trueColour: false }), RangeError);
  assertThrows(() => convertPixels(fb, r, { ...RGB565, bitsPerPixel: 12 }), RangeError);
  assertThrows(() => convertPixels(fb, r, { ...RGB565, redMax: 65536 }), RangeError);
  assertThrows(() => convertPixels(fb, r, { ...RGB565, redShift: 32 }), RangeError);
  const cmap = { ...fb, format: { ...XRGB8888, trueColour: false } };
  assertThrows(() => convertPixels(cmap, r, RGB565), RangeError);
});

testEachBackend(
  "fields reaching past the pixel: bits beyond read as 0, bits beyond are dropped",
  () => {
    const rnd = mulberry32(11);
    const width = 21, height = 3, stride = width * 4;
    const bytes = new Uint8Array(stride * height);
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(rnd() * 256);
    const fb = { width, height, stride, format: XRGB8888, bytes };
    const wide8: PixelFormat = { ...RGB332, redShift: 6, greenShift: 3, blueShift: 0 };
    const wide16: PixelFormat = { ...RGB565, redShift: 12, bigEndian: true };
    const wide24: PixelFormat = { ...RGB888, redShift: 20, redMax: 255 };
    for (const dst of [wide8, wide16, wide24, { ...XRGB8888, redShift: 28 }]) {
      for (const r of [rect(0, 0, width, height), rect(1, 1, 13, 2)]) {
        const got = convertPixels(fb, r, dst);
        const want = new Uint8Array(got.length);
        refConvert(fb, r, dst, want, 0, r.w * bytesPerPixel(dst));
        assertStrictEquals(hex(got), hex(want), JSON.stringify(dst));
      }
    }
    // A 16 bpp source whose red field runs past bit 15 reads the missing bits as 0.
    const src: PixelFormat = { ...RGB565, redShift: 12, redMax: 255 };
    const one = onePixel(src, 0xf000);
    assertEquals(Array.from(convertPixels(one, ONE, XRGB8888)), [0x00, 0x00, 0x0f, 0x00]);
  },
);
