/**
 * Tight / TightPNG encoder tests, against a Tight decoder written here from
 * the specification (persistent pako inflaters, one per stream id).
 */
import { assert, assertEquals, assertStrictEquals, assertThrows } from "@rxfb/assert";
import pako from "pako";
import jpegJs from "jpeg-js";
import { decode as decodePng } from "fast-png";
import { ByteWriter } from "../sinks/vnc/bytes.ts";
import { type EncodeOptions, Encoding } from "../sinks/vnc/encoder.ts";
import {
  gradientDifferences,
  JPEG_QUALITY,
  type JpegChoice,
  TIGHT_MAX_AREA,
  TIGHT_MAX_WIDTH,
  TightEncoder,
  TightPNGEncoder,
  TightStream,
  tpixelBytes,
  turboJpegAvailable,
  writeCompactLength,
} from "../sinks/vnc/encodings/tight.ts";
import type { Framebuffer } from "../pipeline/framebuffer.ts";
import type { Rect } from "../pipeline/rect.ts";
import { convertPixels } from "../pipeline/convert_pixels.ts";
import {
  BGR233,
  bytesPerPixel,
  type PixelFormat,
  RGB565,
  XRGB8888,
} from "../pipeline/pixel_format.ts";
import { createWorkload } from "../sources/sim/programs/workloads.ts";

// ---------------------------------------------------------------------------
// Pixel formats under test

/** noVNC's format: 32 bpp depth 24, bytes R, G, B, 0. */
const NOVNC: PixelFormat = { ...XRGB8888, redShift: 0, greenShift: 8, blueShift: 16 };
/** 32 bpp big-endian 0x00RRGGBB (bytes 0, R, G, B): still the 3-byte TPIXEL case. */
const XRGB_BE: PixelFormat = { ...XRGB8888, bigEndian: true };
/** 32 bpp big-endian with 10-bit channels: full 4-byte TPIXELs. */
const RGB30_BE: PixelFormat = {
  bitsPerPixel: 32,
  depth: 30,
  bigEndian: true,
  trueColour: true,
  redMax: 1023,
  greenMax: 1023,
  blueMax: 1023,
  redShift: 20,
  greenShift: 10,
  blueShift: 0,
};
const RGB565_BE: PixelFormat = { ...RGB565, bigEndian: true };

const FORMATS: [string, PixelFormat][] = [
  ["XRGB8888", XRGB8888],
  ["noVNC RGBX", NOVNC],
  ["XRGB big-endian", XRGB_BE],
  ["RGB565", RGB565],
  ["RGB565 big-endian", RGB565_BE],
  ["RGB30 big-endian", RGB30_BE],
  ["BGR233", BGR233],
];

/** Packed R, G, B bytes. */
const RGB24: PixelFormat = {
  ...XRGB8888,
  bitsPerPixel: 24,
  bigEndian: true,
};

// ---------------------------------------------------------------------------
// Test images (XRGB8888 framebuffers)

function makeFb(w: number, h: number, f: (x: number, y: number) => number): Framebuffer {
  const px = new Uint32Array(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) px[y * w + x] = f(x, y) & 0xffffff;
  return { width: w, height: h, stride: w * 4, format: XRGB8888, bytes: new Uint8Array(px.buffer) };
}

/** A deterministic hash for noise. */
function hash(x: number, y: number, s = 0): number {
  let v = Math.imul(x + 0x9e37 * s, 0x85ebca6b) ^ Math.imul(y + 1, 0xc2b2ae35);
  v ^= v >>> 15;
  v = Math.imul(v, 0x27d4eb2f);
  return (v ^ (v >>> 13)) >>> 0;
}

/** A smooth, photo-like image (what JPEG is for). */
function photo(x: number, y: number): number {
  const r = 128 + 100 * Math.sin(x / 23) * Math.cos(y / 31);
  const g = 128 + 90 * Math.sin((x + y) / 41);
  const b = 128 + 80 * Math.cos((x - 2 * y) / 37);
  const n = (hash(x, y) & 7) - 3;
  const c = (v: number) => Math.max(0, Math.min(255, Math.round(v + n)));
  return (c(r) << 16) | (c(g) << 8) | c(b);
}

const PALETTE50 = Array.from({ length: 50 }, (_, i) => hash(i, 7, 3) & 0xffffff);

// ---------------------------------------------------------------------------
// The decoder (from the spec)

interface RectInfo {
  x: number;
  y: number;
  w: number;
  h: number;
  /** "fill" | "jpeg" | "png" | "copy" | "palette" */
  method: string;
  stream?: number;
  paletteSize?: number;
  compressed?: boolean;
  resets: number;
  bytes: number;
}

class Reader {
  at = 0;
  constructor(readonly b: Uint8Array) {}
  u8(): number {
    if (this.at >= this.b.length) throw new Error("read past end");
    return this.b[this.at++];
  }
  u16(): number {
    return (this.u8() << 8) | this.u8();
  }
  s32(): number {
    const v = (this.u8() << 24) | (this.u8() << 16) | (this.u8() << 8) | this.u8();
    return v | 0;
  }
  bytes(n: number): Uint8Array {
    if (this.at + n > this.b.length) throw new Error("read past end");
    const v = this.b.subarray(this.at, this.at + n);
    this.at += n;
    return v;
  }
  compact(): number {
    let b = this.u8();
    let v = b & 0x7f;
    if (b & 0x80) {
      b = this.u8();
      v |= (b & 0x7f) << 7;
      if (b & 0x80) v |= this.u8() << 14;
    }
    return v;
  }
}

/** A persistent inflater on pako's streaming API. */
class Inflater {
  private i = new pako.Inflate();
  private chunks: Uint8Array[] = [];
  constructor() {
    this.i.onData = (c: Uint8Array) => this.chunks.push(c.slice());
  }
  inflate(data: Uint8Array): Uint8Array {
    this.i.push(data, 2 /* Z_SYNC_FLUSH */);
    if (this.i.err) throw new Error(`inflate: ${this.i.msg}`);
    const n = this.chunks.reduce((a, c) => a + c.length, 0);
    const out = new Uint8Array(n);
    let o = 0;
    for (const c of this.chunks) out.set(c, o), o += c.length;
    this.chunks = [];
    return out;
  }
}

/**
 * One client's Tight (or TightPNG) decoder: keeps an RGB canvas and the four
 * zlib streams.
 */
class TightDecoder {
  readonly rgb: Uint8Array;
  private readonly streams: (Inflater | undefined)[] = [];
  readonly log: RectInfo[] = [];

  constructor(
    readonly width: number,
    readonly height: number,
    readonly pf: PixelFormat,
    readonly png = false,
  ) {
    this.rgb = new Uint8Array(width * height * 3);
  }

  /** Decodes `count` rectangles (headers included) from `buf`; all of it must be used. */
  decode(buf: Uint8Array, count: number): RectInfo[] {
    const r = new Reader(buf);
    const got: RectInfo[] = [];
    for (let k = 0; k < count; k++) got.push(this.rect(r));
    assertStrictEquals(r.at, buf.length, "trailing bytes after the rectangles");
    this.log.push(...got);
    return got;
  }

  private tpixelSize(): number {
    return tpixelBytes(this.pf) ? 3 : bytesPerPixel(this.pf);
  }

  /** TPIXELs to client PIXEL bytes. */
  private pixels(t: Uint8Array, n: number): Uint8Array {
    const at = tpixelBytes(this.pf);
    if (!at) return t;
    const out = new Uint8Array(n * 4);
    for (let i = 0; i < n; i++) {
      out[i * 4 + at[0]] = t[i * 3];
      out[i * 4 + at[1]] = t[i * 3 + 1];
      out[i * 4 + at[2]] = t[i * 3 + 2];
    }
    return out;
  }

  /** Puts client-format pixels of a w x h rectangle on the RGB canvas. */
  private blitPixels(x: number, y: number, w: number, h: number, bytes: Uint8Array): void {
    const Bpp = bytesPerPixel(this.pf);
    const fb = { width: w, height: h, stride: w * Bpp, format: this.pf, bytes };
    const rgb = convertPixels(fb, { x: 0, y: 0, w, h }, RGB24);
    this.blitRgb(x, y, w, h, rgb, 3);
  }

  private blitRgb(x: number, y: number, w: number, h: number, rgb: Uint8Array, ch: number) {
    for (let j = 0; j < h; j++) {
      for (let i = 0; i < w; i++) {
        const s = (j * w + i) * ch, d = ((y + j) * this.width + x + i) * 3;
        this.rgb[d] = rgb[s];
        this.rgb[d + 1] = rgb[s + 1];
        this.rgb[d + 2] = rgb[s + 2];
      }
    }
  }

  private rect(r: Reader): RectInfo {
    const start = r.at;
    const x = r.u16(), y = r.u16(), w = r.u16(), h = r.u16();
    const enc = r.s32();
    assertStrictEquals(enc, this.png ? Encoding.TightPNG : Encoding.Tight);
    assert(w > 0 && h > 0, "empty rectangle");
    assert(x + w <= this.width && y + h <= this.height, "rectangle outside the screen");
    assert(w <= 2048, `rectangle ${w} wide`);
    const ctl = r.u8();
    for (let i = 0; i < 4; i++) if (ctl & (1 << i)) this.streams[i] = new Inflater();
    const type = ctl >> 4;
    const info: RectInfo = { x, y, w, h, method: "", resets: ctl & 15, bytes: 0 };
    const Bpp = bytesPerPixel(this.pf);
    if (type === 8) {
      info.method = "fill";
      const p = this.pixels(r.bytes(this.tpixelSize()), 1);
      const all = new Uint8Array(w * h * Bpp);
      for (let i = 0; i < w * h; i++) all.set(p.subarray(0, Bpp), i * Bpp);
      this.blitPixels(x, y, w, h, all);
    } else if (type === 9) {
      info.method = "jpeg";
      assert(Bpp === 2 || Bpp === 4, "JPEG at 8 bpp");
      const data = r.bytes(r.compact());
      const img = jpegJs.decode(data, { useTArray: true, formatAsRGBA: false });
      assertEquals([img.width, img.height], [w, h]);
      this.blitRgb(x, y, w, h, img.data, 3);
    } else if (type === 10) {
      info.method = "png";
      assert(this.png, "PNG in a Tight (not TightPNG) rectangle");
      const img = decodePng(r.bytes(r.compact()));
      assertEquals([img.width, img.height], [w, h]);
      let data = img.data as Uint8Array;
      if (img.palette) {
        // Expand indices (depth 1 or 8) to RGB.
        const rgb = new Uint8Array(w * h * 3);
        const rowBytes = Math.ceil((w * img.depth) / 8);
        for (let j = 0; j < h; j++) {
          for (let i = 0; i < w; i++) {
            const idx = img.depth === 8
              ? data[j * w + i]
              : (data[j * rowBytes + (i >> 3)] >> (7 - (i & 7))) & 1;
            rgb.set(img.palette[idx].slice(0, 3), (j * w + i) * 3);
          }
        }
        data = rgb;
      } else {
        assertStrictEquals(img.channels, 3);
      }
      this.blitRgb(x, y, w, h, data, 3);
    } else if (type < 8) {
      assert(!this.png, "basic compression in a TightPNG rectangle");
      const stream = type & 3;
      const filter = type & 4 ? r.u8() : 0;
      info.stream = stream;
      let len: number, palette: Uint8Array | undefined, palSize = 0;
      if (filter === 0) {
        info.method = "copy";
        len = w * h * this.tpixelSize();
      } else if (filter === 1) {
        info.method = "palette";
        palSize = r.u8() + 1;
        assert(palSize >= 2, "palette of one colour");
        info.paletteSize = palSize;
        palette = this.pixels(r.bytes(palSize * this.tpixelSize()), palSize);
        len = palSize === 2 ? ((w + 7) >> 3) * h : w * h;
      } else if (filter === 2) {
        info.method = "gradient";
        assertStrictEquals(this.tpixelSize(), 3, "gradient filter without 3-byte TPIXELs");
        len = w * h * 3;
      } else {
        throw new Error(`unexpected filter ${filter}`);
      }
      let data: Uint8Array;
      if (len < 12) {
        info.compressed = false;
        data = r.bytes(len);
      } else {
        info.compressed = true;
        const z = r.bytes(r.compact());
        const s = this.streams[stream] ??= new Inflater();
        data = s.inflate(z);
        assertStrictEquals(data.length, len, "inflated length");
      }
      if (filter === 0) {
        this.blitPixels(x, y, w, h, this.pixels(data, w * h));
      } else if (filter === 2) {
        // Prediction clamp(left + up - up-left) per channel, 0 outside the rectangle.
        const rgb = new Uint8Array(len);
        for (let j = 0; j < h; j++) {
          for (let i = 0; i < w; i++) {
            for (let c = 0; c < 3; c++) {
              const k = (j * w + i) * 3 + c;
              const left = i > 0 ? rgb[k - 3] : 0, up = j > 0 ? rgb[k - w * 3] : 0;
              const ul = i > 0 && j > 0 ? rgb[k - w * 3 - 3] : 0;
              rgb[k] = data[k] + Math.max(0, Math.min(255, left + up - ul));
            }
          }
        }
        this.blitPixels(x, y, w, h, this.pixels(rgb, w * h));
      } else {
        const out = new Uint8Array(w * h * Bpp);
        const rowBytes = (w + 7) >> 3;
        for (let j = 0; j < h; j++) {
          for (let i = 0; i < w; i++) {
            const idx = palSize === 2
              ? (data[j * rowBytes + (i >> 3)] >> (7 - (i & 7))) & 1
              : data[j * w + i];
            assert(idx < palSize, "index outside the palette");
            out.set(palette!.subarray(idx * Bpp, (idx + 1) * Bpp), (j * w + i) * Bpp);
          }
        }
        this.blitPixels(x, y, w, h, out);
      }
    } else {
      throw new Error(`bad compression control 0x${ctl.toString(16)}`);
    }
    info.bytes = r.at - start;
    return info;
  }
}

// ---------------------------------------------------------------------------
// Helpers

/** What a lossless client should show for `r` of `fb` in format `pf`, as RGB. */
function expectedRgb(fb: Framebuffer, pf: PixelFormat): Uint8Array {
  const all = { x: 0, y: 0, w: fb.width, h: fb.height };
  const client = convertPixels(fb, all, pf);
  const cfb = { ...fb, stride: fb.width * bytesPerPixel(pf), format: pf, bytes: client };
  return convertPixels(cfb, all, RGB24);
}

/** The RGB of `r` cut out of a w-wide RGB canvas. */
function cut(rgb: Uint8Array, w: number, r: Rect): Uint8Array {
  const out = new Uint8Array(r.w * r.h * 3);
  for (let j = 0; j < r.h; j++) {
    out.set(rgb.subarray(((r.y + j) * w + r.x) * 3, ((r.y + j) * w + r.x + r.w) * 3), j * r.w * 3);
  }
  return out;
}

function assertSameRgb(got: Uint8Array, want: Uint8Array, w: number, what: string): void {
  if (got.length !== want.length) throw new Error(`${what}: sizes differ`);
  for (let i = 0; i < got.length; i++) {
    if (got[i] !== want[i]) {
      const p = Math.floor(i / 3);
      throw new Error(
        `${what}: pixel (${p % w}, ${Math.floor(p / w)}) channel ${i % 3}: ${got[i]} != ${want[i]}`,
      );
    }
  }
}

function psnr(a: Uint8Array, b: Uint8Array): number {
  let se = 0;
  for (let i = 0; i < a.length; i++) se += (a[i] - b[i]) ** 2;
  const mse = se / a.length;
  return mse === 0 ? Infinity : 10 * Math.log10((255 * 255) / mse);
}

/** Encodes `rects` of `fb` and decodes them into `dec`; returns what was decoded. */
function roundTrip(
  enc: TightEncoder | TightPNGEncoder,
  dec: TightDecoder,
  fb: Framebuffer,
  rects: Rect[],
  opts: EncodeOptions,
): RectInfo[] {
  const out = new ByteWriter();
  let n = 0;
  for (const r of rects) n += enc.encode(fb, r, opts, out);
  const info = dec.decode(out.view(), n);
  // The rectangles tile what was asked for, once each.
  const covered = new Uint8Array(fb.width * fb.height);
  for (const i of info) {
    if (i.method !== "fill") assert(i.w * i.h <= TIGHT_MAX_AREA, `sub-rect ${i.w}x${i.h} too big`);
    for (let y = i.y; y < i.y + i.h; y++) {
      for (let x = i.x; x < i.x + i.w; x++) covered[y * fb.width + x]++;
    }
  }
  const asked = new Uint8Array(fb.width * fb.height);
  for (const r of rects) {
    for (let y = r.y; y < r.y + r.h; y++) {
      for (let x = r.x; x < r.x + r.w; x++) asked[y * fb.width + x]++;
    }
  }
  for (let i = 0; i < covered.length; i++) {
    if (covered[i] !== asked[i]) {
      throw new Error(`pixel ${i % fb.width},${Math.floor(i / fb.width)} covered ${covered[i]}x`);
    }
  }
  return info;
}

const full = (fb: Framebuffer): Rect => ({ x: 0, y: 0, w: fb.width, h: fb.height });

// ---------------------------------------------------------------------------
// Tests

Deno.test("tight: compact length representation", () => {
  const enc = (v: number) => {
    const w = new ByteWriter();
    writeCompactLength(w, v);
    return Array.from(w.view());
  };
  assertEquals(enc(0), [0]);
  assertEquals(enc(127), [0x7f]);
  assertEquals(enc(128), [0x80, 0x01]);
  assertEquals(enc(10000), [0x90, 0x4e]); // the spec's example
  assertEquals(enc(16383), [0xff, 0x7f]);
  assertEquals(enc(16384), [0x80, 0x80, 0x01]);
  assertEquals(enc(4194303), [0xff, 0xff, 0xff]);
  for (const v of [0, 1, 127, 128, 300, 16383, 16384, 65535, 1000000, 4194303]) {
    const w = new ByteWriter();
    writeCompactLength(w, v);
    assertStrictEquals(new Reader(w.view()).compact(), v);
  }
  assertThrows(() => writeCompactLength(new ByteWriter(), 4194304), RangeError);
});

Deno.test("tight: TPIXEL is 3 bytes only for 32 bpp depth 24 with 8-bit channels", () => {
  assertEquals(tpixelBytes(XRGB8888), [2, 1, 0]);
  assertEquals(tpixelBytes(NOVNC), [0, 1, 2]);
  assertEquals(tpixelBytes(XRGB_BE), [1, 2, 3]);
  assertEquals(tpixelBytes({ ...XRGB8888, redShift: 24, greenShift: 16, blueShift: 8 }), [
    3,
    2,
    1,
  ]);
  assertStrictEquals(tpixelBytes(RGB30_BE), undefined);
  assertStrictEquals(tpixelBytes(RGB565), undefined);
  assertStrictEquals(tpixelBytes(BGR233), undefined);
  assertStrictEquals(tpixelBytes({ ...XRGB8888, depth: 32 }), undefined);
  assertStrictEquals(tpixelBytes({ ...XRGB8888, trueColour: false }), undefined);
});

Deno.test("tight: fill, mono, palette and full colour round-trip exactly in every format", async (t) => {
  const W = 96, H = 48;
  const images: [string, Framebuffer, string, number | undefined][] = [
    ["solid", makeFb(W, H, () => 0x3366cc), "fill", undefined],
    ["two colours", makeFb(W, H, (x, y) => ((x >> 2) + y) % 3 ? 0xffffff : 0x102030), "palette", 2],
    ["50 colours", makeFb(W, H, (x, y) => PALETTE50[(x * 7 + y * 3) % 50]), "palette", 50],
    ["noise", makeFb(W, H, (x, y) => hash(x, y)), "copy", undefined],
  ];
  for (const [fname, pf] of FORMATS) {
    await t.step(fname, () => {
      const enc = new TightEncoder();
      const dec = new TightDecoder(W, H, pf);
      for (const [iname, fb, method, pal] of images) {
        const info = roundTrip(enc, dec, fb, [full(fb)], { pf });
        assertSameRgb(dec.rgb, expectedRgb(fb, pf), W, `${fname} ${iname}`);
        let want = method, wantPal = pal;
        // 8 bpp: an index is no smaller than a pixel, so no 50-colour palette.
        if (pf.bitsPerPixel === 8 && pal === 50) want = "copy", wantPal = undefined;
        // Colours that a coarse format merges make fewer distinct pixels.
        const want8 = expectedRgb(fb, pf);
        const seen = new Set<number>();
        for (let i = 0; i < W * H; i++) {
          seen.add((want8[i * 3] << 16) | (want8[i * 3 + 1] << 8) | want8[i * 3 + 2]);
        }
        const distinct = seen.size;
        if (distinct === 1) want = "fill", wantPal = undefined;
        assertEquals(info.map((i) => i.method), [want], `${fname} ${iname}`);
        if (wantPal !== undefined && distinct === wantPal) {
          assertStrictEquals(info[0].paletteSize, wantPal);
        }
        if (want === "copy") assertStrictEquals(info[0].stream, 0);
        if (want === "palette") assertStrictEquals(info[0].stream, wantPal === 2 ? 1 : 2);
      }
    });
  }
});

Deno.test("tight: smooth full colour goes through the gradient filter (3-byte TPIXELs only) and decodes exactly", async (t) => {
  const W = 300, H = 70;
  // The desktop workload's kind of picture: every pixel differs from its neighbours, but
  // predictably (with wraps at 255, where the clamp is exercised).
  const smooth = makeFb(
    W,
    H,
    (x, y) => (((x + y) & 255) << 16) | (((y * 5) & 255) << 8) | (x & 255),
  );
  // The video workload's kind: two smooth channels and a noisy one (about half zero differences).
  const photo = makeFb(
    W,
    H,
    (x, y) => (((x + y) & 255) << 16) | ((y & 255) << 8) | (hash(x, y) & 255),
  );
  const noise = makeFb(W, H, (x, y) => hash(x, y));
  const methods = (info: { method?: string }[]) => [...new Set(info.map((i) => i.method))];
  for (const [fname, pf] of FORMATS) {
    await t.step(fname, () => {
      const enc = new TightEncoder();
      const dec = new TightDecoder(W, H, pf);
      for (let frame = 0; frame < 3; frame++) {
        const info = roundTrip(enc, dec, smooth, [full(smooth)], { pf });
        assertSameRgb(dec.rgb, expectedRgb(smooth, pf), W, `${fname} smooth ${frame}`);
        if (tpixelBytes(pf)) {
          assertEquals(methods(info), ["gradient"], fname);
          for (const i of info) assertStrictEquals(i.stream, TightStream.Gradient);
        } else {assert(
            !methods(info).includes("gradient"),
            `${fname}: gradient without 3-byte TPIXELs`,
          );}
        // Photo-like: the copy filter at the default compress level, the gradient filter at 9.
        let p = roundTrip(enc, dec, photo, [full(photo)], { pf });
        assertSameRgb(dec.rgb, expectedRgb(photo, pf), W, `${fname} photo ${frame}`);
        assert(!methods(p).includes("gradient"), `${fname}: photo through the gradient filter`);
        p = roundTrip(enc, dec, photo, [full(photo)], { pf, compressLevel: 9 });
        assertSameRgb(dec.rgb, expectedRgb(photo, pf), W, `${fname} photo, level 9, ${frame}`);
        if (tpixelBytes(pf)) assertEquals(methods(p), ["gradient"], `${fname} photo at level 9`);
        const n = roundTrip(enc, dec, noise, [full(noise)], { pf, compressLevel: 9 });
        assertSameRgb(dec.rgb, expectedRgb(noise, pf), W, `${fname} noise ${frame}`);
        assert(!methods(n).includes("gradient"), `${fname}: noise through the gradient filter`);
      }
    });
  }
});

Deno.test("tight: gradientDifferences against the spec's prediction, pixel by pixel", () => {
  const rnd = (() => {
    let s = 7;
    return () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296;
  })();
  for (let run = 0; run < 50; run++) {
    const w = 1 + ((rnd() * 40) | 0), h = 1 + ((rnd() * 20) | 0);
    const px = new Uint8Array(w * h * 4);
    for (let i = 0; i < px.length; i++) px[i] = rnd() < 0.5 ? (rnd() * 256) | 0 : (i * 3) & 255;
    const at: [number, number, number] = [[2, 1, 0], [0, 1, 2], [1, 2, 3]][run % 3] as [
      number,
      number,
      number,
    ];
    const got = new Uint8Array(w * h * 3);
    const zeros = gradientDifferences(px, w, h, at, got);
    let wantZeros = 0;
    const v = (
      x: number,
      y: number,
      c: number,
    ) => (x < 0 || y < 0 ? 0 : px[(y * w + x) * 4 + at[c]]);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        for (let c = 0; c < 3; c++) {
          const p = Math.max(
            0,
            Math.min(255, v(x - 1, y, c) + v(x, y - 1, c) - v(x - 1, y - 1, c)),
          );
          const want = (v(x, y, c) - p + 256) % 256;
          assertStrictEquals(got[(y * w + x) * 3 + c], want, `${w}x${h} (${x},${y}) channel ${c}`);
          if (want === 0) wantZeros++;
        }
      }
    }
    assertStrictEquals(zeros, wantZeros);
  }
});

Deno.test("tight: data under 12 bytes goes uncompressed", () => {
  const fb = makeFb(8, 8, (x, y) => (x + y) & 1 ? 0xff0000 : 0x00ff00);
  for (const pf of [XRGB8888, RGB565]) {
    const enc = new TightEncoder();
    const dec = new TightDecoder(8, 8, pf);
    // Mono 8x8: 8 bytes of bits.
    let info = roundTrip(enc, dec, fb, [{ x: 0, y: 0, w: 8, h: 8 }], { pf });
    assertEquals(info.map((i) => [i.method, i.compressed]), [["palette", false]]);
    // Full colour 3x1: 9 bytes (TPIXELs) or 6 bytes (16 bpp); a row of 8: 24 or 16 bytes.
    const noise = makeFb(8, 8, (x, y) => hash(x, y));
    info = roundTrip(enc, dec, noise, [{ x: 1, y: 1, w: 3, h: 1 }], { pf });
    assertEquals(info.map((i) => [i.method, i.compressed]), [["copy", false]]);
    info = roundTrip(enc, dec, noise, [{ x: 0, y: 2, w: 8, h: 1 }], { pf });
    assertEquals(info.map((i) => [i.method, i.compressed]), [["copy", true]]);
    assertSameRgb(
      cut(dec.rgb, 8, { x: 0, y: 2, w: 8, h: 1 }),
      cut(expectedRgb(noise, pf), 8, { x: 0, y: 2, w: 8, h: 1 }),
      8,
      "row",
    );
  }
});

Deno.test("tight: wide and large rects are split to <= 2048 wide, <= 65536 px", () => {
  const W = 3000, H = 70;
  const fb = makeFb(W, H, (x, y) => hash(x, y, 1));
  const pf = NOVNC;
  const enc = new TightEncoder();
  const dec = new TightDecoder(W, H, pf);
  const info = roundTrip(enc, dec, fb, [full(fb)], { pf });
  assert(info.length >= 4, `${info.length} rects`);
  for (const i of info) {
    assert(i.w <= TIGHT_MAX_WIDTH && i.w * i.h <= TIGHT_MAX_AREA, `${i.w}x${i.h}`);
  }
  assertSameRgb(dec.rgb, expectedRgb(fb, pf), W, "wide");
  // A wide solid area: fill rects, each at most 2048 wide.
  const solid = makeFb(W, 40, (x, y) => y < 20 ? 0x808080 : hash(x, y));
  const dec2 = new TightDecoder(W, 40, pf);
  const info2 = roundTrip(new TightEncoder(), dec2, solid, [full(solid)], { pf });
  const fills = info2.filter((i) => i.method === "fill");
  assertEquals(fills.map((i) => [i.x, i.y, i.w, i.h]), [[0, 0, 2048, 20], [2048, 0, 952, 20]]);
  assertSameRgb(dec2.rgb, expectedRgb(solid, pf), W, "wide solid");
});

Deno.test("tight: large solid areas are found and sent as fills", () => {
  const W = 200, H = 120;
  // A noisy frame with a big solid window and a two-colour "text" strip.
  const fb = makeFb(W, H, (x, y) => {
    if (x >= 30 && x < 170 && y >= 20 && y < 100) return 0xe0e0e0;
    if (y >= 104 && y < 116) return (hash(x, y) & 3) === 0 ? 0 : 0xffffff;
    return hash(x, y, 2);
  });
  for (const pf of [XRGB8888, RGB565]) {
    const dec = new TightDecoder(W, H, pf);
    const info = roundTrip(new TightEncoder(), dec, fb, [full(fb)], { pf });
    const fill = info.find((i) => i.method === "fill" && i.w * i.h >= 140 * 80);
    assert(fill, "the solid window was not sent as one fill");
    assertEquals([fill.x, fill.y, fill.w, fill.h], [30, 20, 140, 80]);
    assertSameRgb(dec.rgb, expectedRgb(fb, pf), W, "solid search");
    // Without the search, the same pixels still decode.
    const dec2 = new TightDecoder(W, H, pf);
    roundTrip(new TightEncoder({ solidSearch: false }), dec2, fb, [full(fb)], { pf });
    assertSameRgb(dec2.rgb, expectedRgb(fb, pf), W, "no solid search");
  }
});

Deno.test("tight: many rects and frames on one connection (persistent streams)", async (t) => {
  const W = 320, H = 200;
  for (const name of ["desktop", "scroll"] as const) {
    for (
      const [fname, pf] of [["XRGB8888", XRGB8888], ["RGB565", RGB565], [
        "XRGB BE",
        XRGB_BE,
      ]] as const
    ) {
      await t.step(`${name} ${fname}`, () => {
        const prog = createWorkload(name, W, H);
        const px = new Uint32Array(W * H);
        const target = { px, width: W, height: H, strideWords: W };
        const fb = {
          width: W,
          height: H,
          stride: W * 4,
          format: XRGB8888,
          bytes: new Uint8Array(px.buffer),
        };
        const enc = new TightEncoder();
        const dec = new TightDecoder(W, H, pf);
        const used = new Set<number>();
        for (let n = 0; n < 12; n++) {
          const dirty = prog.drawFrame(target, n, n * 16667);
          // Compress level changes midway: streams must survive (or be reset) correctly.
          const opts = { pf, compressLevel: n < 6 ? 2 : 6 };
          const info = roundTrip(enc, dec, fb, dirty, opts);
          for (const i of info) if (i.compressed) used.add(i.stream!);
          assertSameRgb(dec.rgb, expectedRgb(fb, pf), W, `${name} frame ${n}`);
        }
        assert(used.size >= 2, `streams used: ${[...used]}`);
      });
    }
  }
});

Deno.test("tight: a stream whose level cannot change is reset, with its reset bit", () => {
  const W = 64, H = 32;
  const fb = makeFb(W, H, (x, y) => hash(x, y, 4));
  const enc = new TightEncoder({ zlib: { backend: "pako" } });
  const dec = new TightDecoder(W, H, NOVNC);
  const resets: number[] = [];
  for (const level of [2, 2, 6, 6, 1]) {
    const info = roundTrip(enc, dec, fb, [full(fb)], { pf: NOVNC, compressLevel: level });
    assertEquals(info.map((i) => [i.method, i.stream]), [["copy", 0]]);
    resets.push(info[0].resets);
    assertSameRgb(dec.rgb, expectedRgb(fb, NOVNC), W, `level ${level}`);
  }
  // zlib levels for full colour: 2 -> 2, 6 -> 5, 1 -> 1.
  assertEquals(resets, [0, 0, 1, 0, 1]);
});

Deno.test("tight: every compress level round-trips", () => {
  const W = 128, H = 64;
  const fb = makeFb(
    W,
    H,
    (x, y) =>
      x < 40 ? PALETTE50[(x + y) % 50] : x < 80 ? (((x ^ y) & 4) ? 0 : 0xffffff) : hash(x, y),
  );
  const enc = new TightEncoder();
  const dec = new TightDecoder(W, H, NOVNC);
  for (let level = 0; level <= 9; level++) {
    const rects = [{ x: 0, y: 0, w: 40, h: H }, { x: 40, y: 0, w: 40, h: H }, {
      x: 80,
      y: 0,
      w: 48,
      h: H,
    }];
    dec.rgb.fill(0);
    const info = roundTrip(enc, dec, fb, rects, { pf: NOVNC, compressLevel: level });
    assertEquals(info.map((i) => [i.method, i.stream, i.paletteSize]), [
      ["palette", 2, 50],
      ["palette", 1, 2],
      ["copy", 0, undefined],
    ]);
    assertSameRgb(dec.rgb, expectedRgb(fb, NOVNC), W, `level ${level}`);
  }
});

const JPEG_BACKENDS: JpegChoice[] = ["jpeg-js", "turbojpeg"];

for (const backend of JPEG_BACKENDS) {
  Deno.test({
    name: `tight: JPEG (${backend}) quality 9 >= 30 dB, quality 0 >= 20 dB and smaller`,
    ignore: backend === "turbojpeg" && !turboJpegAvailable(),
    fn() {
      const W = 256, H = 192;
      const fb = makeFb(W, H, photo);
      const src = convertPixels(fb, full(fb), RGB24);
      const sizes: number[] = [];
      for (const pf of [NOVNC, XRGB8888, RGB565]) {
        for (const q of [9, 0]) {
          const dec = new TightDecoder(W, H, pf);
          const enc = new TightEncoder({ jpeg: backend });
          assertStrictEquals(enc.jpegBackend, backend);
          const info = roundTrip(enc, dec, fb, [full(fb)], { pf, jpegQuality: q });
          assert(info.every((i) => i.method === "jpeg"), info.map((i) => i.method).join());
          const db = psnr(dec.rgb, src);
          const bytes = info.reduce((a, i) => a + i.bytes, 0);
          if (pf === NOVNC) sizes.push(bytes);
          assert(db >= (q === 9 ? 30 : 20), `${backend} q${q} ${db.toFixed(1)} dB`);
        }
      }
      assert(sizes[1] < sizes[0] / 2, `q0 ${sizes[1]} B vs q9 ${sizes[0]} B`);
    },
  });
}

Deno.test("tight: JPEG only with a quality level and 16/32 bpp; palettes stay lossless", () => {
  const W = 128, H = 64;
  const fb = makeFb(W, H, (x, y) => x < 64 ? photo(x, y) : PALETTE50[(x + 3 * y) % 50]);
  const left = { x: 0, y: 0, w: 64, h: H }, right = { x: 64, y: 0, w: 64, h: H };
  // No quality level: no JPEG.
  let dec = new TightDecoder(W, H, NOVNC);
  let info = roundTrip(new TightEncoder(), dec, fb, [left, right], { pf: NOVNC });
  assertEquals(info.map((i) => i.method), ["copy", "palette"]);
  // 8 bpp: no JPEG even with a quality level.
  dec = new TightDecoder(W, H, BGR233);
  info = roundTrip(new TightEncoder(), dec, fb, [left, right], { pf: BGR233, jpegQuality: 5 });
  assert(info.every((i) => i.method !== "jpeg"));
  assertSameRgb(dec.rgb, expectedRgb(fb, BGR233), W, "8 bpp");
  // With quality: JPEG for the photo; 50 colours exceed the 24-colour limit at compress
  // level 1, but not the 96-colour limit at level 2.
  dec = new TightDecoder(W, H, NOVNC);
  info = roundTrip(new TightEncoder(), dec, fb, [left, right], { pf: NOVNC, jpegQuality: 7 });
  assertEquals(info.map((i) => i.method), ["jpeg", "palette"]);
  assertSameRgb(cut(dec.rgb, W, right), cut(expectedRgb(fb, NOVNC), W, right), 64, "palette");
  info = roundTrip(new TightEncoder(), dec, fb, [right], {
    pf: NOVNC,
    jpegQuality: 7,
    compressLevel: 1,
  });
  assertEquals(info.map((i) => i.method), ["jpeg"]);
});

Deno.test("tightpng: PNG for everything but fill and JPEG, exact", async (t) => {
  const W = 160, H = 64;
  const fb = makeFb(W, H, (x, y) => {
    if (x < 40) return 0x204060;
    if (x < 80) return ((x * y) & 8) ? 0xffff00 : 0x0000ff;
    if (x < 120) return PALETTE50[(x + y * 5) % 50];
    return hash(x, y);
  });
  const rects = [0, 40, 80, 120].map((x) => ({ x, y: 0, w: 40, h: H }));
  for (const [fname, pf] of FORMATS) {
    await t.step(fname, () => {
      const dec = new TightDecoder(W, H, pf, true);
      const enc = new TightPNGEncoder();
      assertStrictEquals(enc.encoding, Encoding.TightPNG);
      const info = roundTrip(enc, dec, fb, rects, { pf });
      assertStrictEquals(info[0].method, "fill");
      assert(info.slice(1).every((i) => i.method === "png" || i.method === "fill"));
      assertSameRgb(dec.rgb, expectedRgb(fb, pf), W, `tightpng ${fname}`);
    });
  }
  await t.step("with a quality level: JPEG for full colour", () => {
    const dec = new TightDecoder(W, H, NOVNC, true);
    const info = roundTrip(new TightPNGEncoder(), dec, fb, rects, { pf: NOVNC, jpegQuality: 8 });
    assertEquals(info.map((i) => i.method), ["fill", "png", "png", "jpeg"]);
  });
});

Deno.test("tight: JPEG quality mapping is TigerVNC's", () => {
  assertEquals([...JPEG_QUALITY], [15, 29, 41, 42, 62, 77, 79, 86, 92, 100]);
});

Deno.test("tight: empty rect writes nothing; rect outside throws", () => {
  const fb = makeFb(8, 8, () => 0);
  const out = new ByteWriter();
  assertStrictEquals(
    new TightEncoder().encode(fb, { x: 0, y: 0, w: 0, h: 4 }, { pf: XRGB8888 }, out),
    0,
  );
  assertStrictEquals(out.length, 0);
  assertThrows(
    () => new TightEncoder().encode(fb, { x: 4, y: 0, w: 8, h: 4 }, { pf: XRGB8888 }, out),
    RangeError,
  );
});
