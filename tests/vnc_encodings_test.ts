/**
 * The RFB encoders (Raw, RRE, Hextile, ZRLE) and the zlib streams under them.
 *
 * Each encoder's output is decoded by a small decoder written here from the RFB
 * spec, independently of the encoders, and must give back the source rectangle
 * in the client's pixel format exactly, for several kinds of content, client
 * formats and rectangle shapes.
 */
import { assert, assertEquals, assertStrictEquals, assertThrows } from "@rxfb/assert";
import { ByteWriter } from "../sinks/vnc/bytes.ts";
import { type EncodeOptions, Encoding, type RectEncoder } from "../sinks/vnc/encoder.ts";
import { HextileEncoder } from "../sinks/vnc/encodings/hextile.ts";
import { createEncoder } from "../sinks/vnc/encodings/mod.ts";
import { RawEncoder } from "../sinks/vnc/encodings/raw.ts";
import { RREEncoder } from "../sinks/vnc/encodings/rre.ts";
import { ZRLEEncoder } from "../sinks/vnc/encodings/zrle.ts";
import {
  createDeflate,
  createInflate,
  type InflateStream,
  type ZlibBackend,
  zlibBackend,
} from "../sinks/vnc/zlib.ts";
import { convertPixels } from "../pipeline/convert_pixels.ts";
import type { Framebuffer } from "../pipeline/framebuffer.ts";
import {
  BGR233,
  bytesPerPixel,
  type PixelFormat,
  RGB565,
  RGB888,
  XRGB8888,
} from "../pipeline/pixel_format.ts";
import type { Rect } from "../pipeline/rect.ts";
import { createWorkload } from "../sources/sim/programs/workloads.ts";
import { mulberry32 as rng } from "./prng.ts";
import { R11G11B10 } from "./pixel_formats.ts";

// ---------------------------------------------------------------------------
// Client pixel formats

const XRGB_BE: PixelFormat = { ...XRGB8888, bigEndian: true };
const RGB565_BE: PixelFormat = { ...RGB565, bigEndian: true };
/** Colour in the most significant three bytes (CPIXEL from the top). */
const RGBX_LE: PixelFormat = { ...XRGB8888, redShift: 24, greenShift: 16, blueShift: 8 };
const RGBX_BE: PixelFormat = { ...RGBX_LE, bigEndian: true };

const FORMATS: [string, PixelFormat][] = [
  ["32LE", XRGB8888],
  ["32BE", XRGB_BE],
  ["565LE", RGB565],
  ["565BE", RGB565_BE],
  ["233", BGR233],
];
const ZRLE_FORMATS: [string, PixelFormat][] = [
  ...FORMATS,
  ["RGBX-LE", RGBX_LE],
  ["RGBX-BE", RGBX_BE],
  ["R11G11B10", R11G11B10],
];

// ---------------------------------------------------------------------------
// Framebuffers

type Kind = "solid" | "few" | "gradient" | "noise" | "text" | "mixed";
const KINDS: Kind[] = ["solid", "few", "gradient", "noise", "text", "mixed"];

/** Fills `px` (w x h, 0x00RRGGBB words) with content of a kind. */
function paint(px: Uint32Array, w: number, h: number, kind: Kind, seed: number): void {
  const rand = rng(seed);
  const colour = () => (rand() * 0x1000000) >>> 0;
  const fillRect = (x: number, y: number, rw: number, rh: number, c: number) => {
    for (let j = y; j < Math.min(h, y + rh); j++) {
      px.fill(c, j * w + x, j * w + Math.min(w, x + rw));
    }
  };
  switch (kind) {
    case "solid":
      px.fill(colour());
      return;
    case "few": {
      const pal = [colour(), colour(), colour(), colour()];
      px.fill(pal[0]);
      for (let i = 0; i < 40; i++) {
        fillRect(
          (rand() * w) | 0,
          (rand() * h) | 0,
          1 + ((rand() * w / 3) | 0),
          1 + ((rand() * h / 3) | 0),
          pal[(rand() * 4) | 0],
        );
      }
      return;
    }
    case "gradient":
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          px[y * w + x] = ((x * 3) & 255) << 16 | ((y * 5) & 255) << 8 | ((x + y) & 255);
        }
      }
      return;
    case "noise":
      for (let i = 0; i < w * h; i++) px[i] = colour();
      return;
    case "text": {
      const bg = 0xf0f0f0, ink = [0x101010, 0x2040c0, 0xc02020];
      px.fill(bg);
      for (let cy = 0; cy + 12 <= h; cy += 12) {
        for (let cx = 0; cx + 8 <= w; cx += 8) {
          if (rand() < 0.2) continue;
          const c = ink[rand() < 0.8 ? 0 : 1 + ((rand() * 2) | 0)];
          for (let j = 2; j < 11; j++) {
            for (let i = 1; i < 7; i++) if (rand() < 0.35) px[(cy + j) * w + cx + i] = c;
          }
        }
      }
      return;
    }
    case "mixed": {
      const kinds: Kind[] = ["text", "gradient", "few", "noise"];
      const hw = w >> 1, hh = h >> 1;
      kinds.forEach((k, q) => {
        const sub = new Uint32Array(hw * hh);
        paint(sub, hw, hh, k, seed + q + 1);
        const ox = (q & 1) * hw, oy = (q >> 1) * hh;
        for (let y = 0; y < hh; y++) px.set(sub.subarray(y * hw, y * hw + hw), (oy + y) * w + ox);
      });
      return;
    }
  }
}

/**
 * A framebuffer of `kind` content in `format` (converted from 0x00RRGGBB), with a
 * stride wider than a row; `padding` puts garbage in XRGB8888's unused byte.
 */
function makeFb(
  w: number,
  h: number,
  kind: Kind,
  seed: number,
  format: PixelFormat = XRGB8888,
  padding = false,
): Framebuffer {
  const px = new Uint32Array(w * h);
  paint(px, w, h, kind, seed);
  if (padding) {
    const rand = rng(seed ^ 0x5555);
    for (let i = 0; i < px.length; i++) px[i] |= ((rand() * 256) | 0) << 24;
  }
  const src: Framebuffer = {
    width: w,
    height: h,
    stride: w * 4,
    format: XRGB8888,
    bytes: new Uint8Array(px.buffer),
  };
  const bpp = bytesPerPixel(format);
  const stride = (w + 3) * bpp;
  const bytes = new Uint8Array(stride * h);
  convertPixels(src, { x: 0, y: 0, w, h }, format, bytes, 0, stride);
  return { width: w, height: h, stride, format, bytes };
}

// ---------------------------------------------------------------------------
// Decoding helpers (from the spec)

class Reader {
  at = 0;
  private dv: DataView;
  constructor(readonly b: Uint8Array) {
    this.dv = new DataView(b.buffer, b.byteOffset, b.length);
  }
  need(n: number): void {
    if (this.at + n > this.b.length) throw new Error(`truncated at ${this.at} (+${n})`);
  }
  u8(): number {
    this.need(1);
    return this.b[this.at++];
  }
  u16(): number {
    this.need(2);
    const v = this.dv.getUint16(this.at);
    this.at += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.dv.getUint32(this.at);
    this.at += 4;
    return v;
  }
  s32(): number {
    this.need(4);
    const v = this.dv.getInt32(this.at);
    this.at += 4;
    return v;
  }
  take(n: number): Uint8Array {
    this.need(n);
    const v = this.b.subarray(this.at, this.at + n);
    this.at += n;
    return v;
  }
  get done(): boolean {
    return this.at === this.b.length;
  }
}

/** What the client would hold: pixels of the client's format, and how often each was set. */
class Canvas {
  readonly bytes: Uint8Array;
  readonly hits: Uint32Array;
  constructor(readonly w: number, readonly h: number, readonly bpp: number) {
    this.bytes = new Uint8Array(w * h * bpp);
    this.hits = new Uint32Array(w * h);
  }
  set(x: number, y: number, pixel: Uint8Array): void {
    if (x < 0 || y < 0 || x >= this.w || y >= this.h) throw new Error(`pixel ${x},${y} outside`);
    this.bytes.set(pixel, (y * this.w + x) * this.bpp);
    this.hits[y * this.w + x]++;
  }
  fill(x: number, y: number, w: number, h: number, pixel: Uint8Array): void {
    for (let j = y; j < y + h; j++) for (let i = x; i < x + w; i++) this.set(i, j, pixel);
  }
  /** The region r, tightly packed; throws when a pixel of r was never set. */
  region(r: Rect): Uint8Array {
    const out = new Uint8Array(r.w * r.h * this.bpp);
    for (let j = 0; j < r.h; j++) {
      for (let i = 0; i < r.w; i++) {
        if (this.hits[(r.y + j) * this.w + r.x + i] === 0) {
          throw new Error(`pixel ${r.x + i},${r.y + j} not covered`);
        }
      }
      const from = ((r.y + j) * this.w + r.x) * this.bpp;
      out.set(this.bytes.subarray(from, from + r.w * this.bpp), j * r.w * this.bpp);
    }
    return out;
  }
}

interface RectHeader {
  x: number;
  y: number;
  w: number;
  h: number;
  enc: number;
}

function header(rd: Reader): RectHeader {
  return { x: rd.u16(), y: rd.u16(), w: rd.u16(), h: rd.u16(), enc: rd.s32() };
}

function decodeRaw(rd: Reader, hd: RectHeader, c: Canvas): void {
  for (let j = 0; j < hd.h; j++) {
    for (let i = 0; i < hd.w; i++) c.set(hd.x + i, hd.y + j, rd.take(c.bpp));
  }
}

function decodeRRE(rd: Reader, hd: RectHeader, c: Canvas): number {
  const n = rd.u32();
  c.fill(hd.x, hd.y, hd.w, hd.h, rd.take(c.bpp));
  for (let k = 0; k < n; k++) {
    const v = rd.take(c.bpp);
    const x = rd.u16(), y = rd.u16(), w = rd.u16(), h = rd.u16();
    if (x + w > hd.w || y + h > hd.h || w === 0 || h === 0) throw new Error("bad RRE subrect");
    c.fill(hd.x + x, hd.y + y, w, h, v);
  }
  return n;
}

/** Hextile statistics: largest tile excess over raw, subencodings seen. */
interface HextileStats {
  maxExcess: number;
  kinds: Set<string>;
}

function decodeHextile(rd: Reader, hd: RectHeader, c: Canvas, st: HextileStats): void {
  const bpp = c.bpp;
  // Strict: nothing carries over a raw tile, nor the foreground over a coloured one.
  let bg: Uint8Array | undefined, fg: Uint8Array | undefined;
  for (let ty = 0; ty < hd.h; ty += 16) {
    const th = Math.min(16, hd.h - ty);
    for (let tx = 0; tx < hd.w; tx += 16) {
      const tw = Math.min(16, hd.w - tx);
      const start = rd.at;
      const mask = rd.u8();
      const X = hd.x + tx, Y = hd.y + ty;
      if (mask & 1) {
        st.kinds.add("raw");
        for (let j = 0; j < th; j++) for (let i = 0; i < tw; i++) c.set(X + i, Y + j, rd.take(bpp));
        bg = fg = undefined;
      } else {
        if (mask & ~31) throw new Error(`hextile mask ${mask}`);
        if (mask & 2) bg = rd.take(bpp).slice();
        if (!bg) throw new Error("hextile tile without a background");
        c.fill(X, Y, tw, th, bg);
        if (mask & 4) {
          if (mask & 16) throw new Error("ForegroundSpecified with SubrectsColoured");
          fg = rd.take(bpp).slice();
        }
        if (mask & 8) {
          const n = rd.u8();
          if (n === 0) throw new Error("AnySubrects with no subrect");
          st.kinds.add(mask & 16 ? "coloured" : "mono");
          for (let k = 0; k < n; k++) {
            let v: Uint8Array | undefined;
            if (mask & 16) v = rd.take(bpp);
            else {
              if (!fg) throw new Error("mono tile without a foreground");
              v = fg;
            }
            const xy = rd.u8(), wh = rd.u8();
            const x = xy >> 4, y = xy & 15, w = (wh >> 4) + 1, h = (wh & 15) + 1;
            if (x + w > tw || y + h > th) throw new Error("hextile subrect outside its tile");
            c.fill(X + x, Y + y, w, h, v);
          }
          if (mask & 16) fg = undefined;
        } else {
          if (mask & 16) throw new Error("SubrectsColoured without AnySubrects");
          st.kinds.add("solid");
        }
      }
      st.maxExcess = Math.max(st.maxExcess, rd.at - start - (1 + tw * th * bpp));
    }
  }
}

/** ZRLE decoding context of one connection. */
interface ZrleClient {
  inflater: InflateStream;
  subencodings: Set<number>;
  cpixelSizes: Set<number>;
}

function zrleClient(backend: ZlibBackend = "pako"): ZrleClient {
  return { inflater: createInflate({ backend }), subencodings: new Set(), cpixelSizes: new Set() };
}

/** CPIXEL → PIXEL bytes, as the spec defines CPIXEL. */
function cpixelDecoder(pf: PixelFormat): { size: number; expand: (b: Uint8Array) => Uint8Array } {
  const bpp = bytesPerPixel(pf);
  const bits = (max: number) => max === 0 ? 0 : 2 ** (32 - Math.clz32(max)) - 1;
  const used = ((bits(pf.redMax) << pf.redShift) | (bits(pf.greenMax) << pf.greenShift) |
    (bits(pf.blueMax) << pf.blueShift)) >>> 0;
  const low = (used & 0xff000000) === 0, high = (used & 0xff) === 0;
  if (!(pf.bitsPerPixel === 32 && pf.trueColour && pf.depth <= 24 && (low || high))) {
    return { size: bpp, expand: (b) => b };
  }
  return {
    size: 3,
    expand(b) {
      // The three bytes are the value's low or high three bytes, in the pixel's byte order.
      const c = pf.bigEndian
        ? (b[0] << 16) | (b[1] << 8) | b[2]
        : b[0] | (b[1] << 8) | (b[2] << 16);
      const v = low ? c : (c << 8) >>> 0;
      const out = new Uint8Array(4);
      new DataView(out.buffer).setUint32(0, v, !pf.bigEndian);
      return out;
    },
  };
}

function zrleRunLength(rd: Reader): number {
  let len = 1, b: number;
  do {
    b = rd.u8();
    len += b;
  } while (b === 255);
  return len;
}

function decodeZRLE(rd: Reader, hd: RectHeader, c: Canvas, pf: PixelFormat, zc: ZrleClient): void {
  const len = rd.u32();
  const data = zc.inflater.inflate(rd.take(len));
  const z = new Reader(data);
  const cp = cpixelDecoder(pf);
  zc.cpixelSizes.add(cp.size);
  const cpixel = () => cp.expand(z.take(cp.size));
  for (let ty = 0; ty < hd.h; ty += 64) {
    const th = Math.min(64, hd.h - ty);
    for (let tx = 0; tx < hd.w; tx += 64) {
      const tw = Math.min(64, hd.w - tx);
      const X = hd.x + tx, Y = hd.y + ty, n = tw * th;
      const put = (k: number, v: Uint8Array) => c.set(X + (k % tw), Y + Math.floor(k / tw), v);
      const sub = z.u8();
      zc.subencodings.add(sub);
      if (sub === 0) {
        for (let k = 0; k < n; k++) put(k, cpixel());
      } else if (sub === 1) {
        c.fill(X, Y, tw, th, cpixel());
      } else if (sub <= 16) {
        const pal = Array.from({ length: sub }, cpixel);
        const bits = sub === 2 ? 1 : sub <= 4 ? 2 : 4;
        for (let j = 0; j < th; j++) {
          let byte = 0, left = 0;
          for (let i = 0; i < tw; i++) {
            if (left === 0) {
              byte = z.u8();
              left = 8;
            }
            left -= bits;
            const ix = (byte >> left) & ((1 << bits) - 1);
            if (ix >= sub) throw new Error("packed index beyond the palette");
            c.set(X + i, Y + j, pal[ix]);
          }
        }
      } else if (sub === 128) {
        for (let k = 0; k < n;) {
          const v = cpixel();
          const l = zrleRunLength(z);
          if (k + l > n) throw new Error("run past the tile");
          for (const e = k + l; k < e; k++) put(k, v);
        }
      } else if (sub >= 130) {
        const pal = Array.from({ length: sub - 128 }, cpixel);
        for (let k = 0; k < n;) {
          const b = z.u8();
          const v = pal[b & 127];
          if (!v) throw new Error("palette RLE index beyond the palette");
          const l = b & 128 ? zrleRunLength(z) : 1;
          if (k + l > n) throw new Error("run past the tile");
          for (const e = k + l; k < e; k++) put(k, v);
        }
      } else {
        throw new Error(`unused ZRLE subencoding ${sub}`);
      }
    }
  }
  if (!z.done) throw new Error(`${data.length - z.at} bytes left after the last tile`);
}

interface DecodeState {
  hextile: HextileStats;
  zrle?: ZrleClient;
  rre: { rects: number };
}

function newState(): DecodeState {
  return { hextile: { maxExcess: -Infinity, kinds: new Set() }, rre: { rects: 0 } };
}

/** Decodes every rectangle in `bytes` onto `c`; returns how many there were. */
function decodeAll(
  bytes: Uint8Array,
  c: Canvas,
  pf: PixelFormat,
  st: DecodeState,
  only?: Rect,
): number {
  const rd = new Reader(bytes);
  let n = 0;
  while (!rd.done) {
    const hd = header(rd);
    if (only) {
      assert(
        hd.x >= only.x && hd.y >= only.y && hd.x + hd.w <= only.x + only.w &&
          hd.y + hd.h <= only.y + only.h,
        `rect ${JSON.stringify(hd)} outside ${JSON.stringify(only)}`,
      );
    }
    switch (hd.enc) {
      case Encoding.Raw:
        decodeRaw(rd, hd, c);
        break;
      case Encoding.RRE:
        decodeRRE(rd, hd, c);
        st.rre.rects++;
        break;
      case Encoding.Hextile:
        decodeHextile(rd, hd, c, st.hextile);
        break;
      case Encoding.ZRLE:
        decodeZRLE(rd, hd, c, pf, st.zrle ??= zrleClient());
        break;
      default:
        throw new Error(`unexpected encoding ${hd.enc}`);
    }
    n++;
  }
  return n;
}

/** Zeroes the padding bits of client-format pixels (they carry nothing). */
function maskPadding(b: Uint8Array, pf: PixelFormat): Uint8Array {
  const bpp = bytesPerPixel(pf);
  if (bpp === 1) return b;
  const bits = (max: number) => max === 0 ? 0 : 2 ** (32 - Math.clz32(max)) - 1;
  const used = ((bits(pf.redMax) << pf.redShift) | (bits(pf.greenMax) << pf.greenShift) |
    (bits(pf.blueMax) << pf.blueShift)) >>> 0;
  const out = b.slice();
  const dv = new DataView(out.buffer);
  for (let o = 0; o < out.length; o += bpp) {
    if (bpp === 4) dv.setUint32(o, (dv.getUint32(o, !pf.bigEndian) & used) >>> 0, !pf.bigEndian);
    else dv.setUint16(o, dv.getUint16(o, !pf.bigEndian) & used, !pf.bigEndian);
  }
  return out;
}

const RECTS = (W: number, H: number): Rect[] => [
  { x: 0, y: 0, w: 1, h: 1 },
  { x: 5, y: 3, w: 17, h: 33 },
  { x: 64, y: 64, w: 64, h: 64 },
  { x: 7, y: 9, w: 65, h: 65 },
  { x: W - 3, y: H - 70, w: 3, h: 70 },
  { x: 1, y: 100, w: W - 2, h: 1 },
  { x: 0, y: 0, w: W, h: H },
];

/**
 * Encodes `r` with `enc` and checks that decoding gives the expected pixels.
 * Returns the encoded length.
 */
function roundTrip(
  enc: RectEncoder,
  fb: Framebuffer,
  r: Rect,
  opts: EncodeOptions,
  st: DecodeState,
  exact = false,
): number {
  const out = new ByteWriter(64);
  const n = enc.encode(fb, r, opts, out);
  const c = new Canvas(fb.width, fb.height, bytesPerPixel(opts.pf));
  const bytes = out.view().slice();
  const decoded = decodeAll(bytes, c, opts.pf, st, r);
  assertStrictEquals(decoded, n, "rectangles written vs decoded");
  const want = convertPixels(fb, r, opts.pf);
  const got = c.region(r);
  const what = `${enc.constructor.name} ${JSON.stringify(r)}`;
  if (exact) assert(equalBytes(got, want), `${what}: pixels differ`);
  else {
    assert(equalBytes(maskPadding(got, opts.pf), maskPadding(want, opts.pf)), `${what}: differ`);
  }
  for (let i = 0; i < c.hits.length; i++) {
    const x = i % fb.width, y = Math.floor(i / fb.width);
    const inside = x >= r.x && y >= r.y && x < r.x + r.w && y < r.y + r.h;
    if (!inside && c.hits[i] !== 0) throw new Error(`${what}: painted ${x},${y} outside`);
  }
  return bytes.length;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Runs an encoder over all kinds x formats x rects (one encoder instance per format). */
function sweep(make: () => RectEncoder, formats = FORMATS): DecodeState[] {
  const states: DecodeState[] = [];
  const W = 160, H = 140;
  for (const [, pf] of formats) {
    const enc = make();
    const st = newState();
    states.push(st);
    KINDS.forEach((kind, k) => {
      const fb = makeFb(W, H, kind, 1000 + k);
      for (const r of RECTS(W, H)) roundTrip(enc, fb, r, { pf }, st, make === RAW);
    });
  }
  return states;
}
const RAW = () => new RawEncoder();

// ---------------------------------------------------------------------------
// zlib

const BACKENDS: ZlibBackend[] = zlibBackend().backend === "ffi" ? ["ffi", "pako"] : ["pako"];

function pseudoText(n: number, seed: number): Uint8Array {
  const rand = rng(seed);
  const words = ["rfb", "xen", "frame", "buffer", "tile", "zlib", "pixel", "rect"];
  const s: string[] = [];
  let len = 0;
  while (len < n) {
    const wd = words[(rand() * words.length) | 0];
    s.push(wd);
    len += wd.length + 1;
  }
  return new TextEncoder().encode(s.join(" ")).subarray(0, n);
}

Deno.test("zlib: libz is loaded through FFI when the ffi permission is granted", () => {
  const b = zlibBackend();
  if (
    Deno.permissions.querySync({ name: "ffi" }).state === "granted" && Deno.build.os === "linux"
  ) {
    assertStrictEquals(b.backend, "ffi", b.reason ?? "");
    assert(b.version?.startsWith("1."));
  }
});

Deno.test("zlib: round trips on both backends, and each inflates the other's output", () => {
  const inputs = [
    new Uint8Array(0),
    new Uint8Array([42]),
    pseudoText(100, 1),
    pseudoText(300_000, 2),
    Uint8Array.from({ length: 70_000 }, (_, i) => (Math.imul(i, 2654435761) >>> 24) & 255),
  ];
  for (const db of BACKENDS) {
    for (const ib of BACKENDS) {
      for (const level of [0, 1, 6, 9]) {
        const d = createDeflate(level, { backend: db });
        const inf = createInflate({ backend: ib });
        assertStrictEquals(d.backend, db);
        for (const a of inputs) {
          const z = d.deflate(a);
          assertEquals(inf.inflate(z), a, `${db}->${ib} level ${level} ${a.length} bytes`);
        }
        d.close();
        inf.close();
      }
    }
  }
});

Deno.test("zlib: the stream persists across rectangles (rect 2 needs rect 1)", () => {
  for (const db of BACKENDS) {
    const d = createDeflate(6, { backend: db });
    const rand = rng(3);
    const rect1 = Uint8Array.from({ length: 20_000 }, () => (rand() * 256) | 0);
    const z1 = d.deflate(rect1);
    assert(z1.length > 20_000, "random data does not compress");
    // The same data again can only be compressed as references into rect 1.
    const z2 = d.deflate(rect1);
    assert(z2.length < 1000, `rect 2 takes ${z2.length} bytes`);
    for (const ib of BACKENDS) {
      // Alone, even after the stream's 2-byte zlib header, rect 2 cannot be decoded.
      const alone = createInflate({ backend: ib });
      assertThrows(() => {
        alone.inflate(z1.subarray(0, 2));
        alone.inflate(z2);
      });
      const both = createInflate({ backend: ib });
      assertEquals(both.inflate(z1), rect1);
      assertEquals(both.inflate(z2), rect1);
    }
    d.close();
  }
});

Deno.test("zlib: deflateTo appends to a writer; 'none' and 'finish' flushes", () => {
  for (const db of BACKENDS) {
    const d = createDeflate(6, { backend: db });
    const w = new ByteWriter(16);
    w.u32(0xdeadbeef);
    const a = pseudoText(5000, 4), b = pseudoText(5000, 5);
    const n1 = d.deflateTo(a, w, "none");
    const n2 = d.deflateTo(b, w, "finish");
    assertStrictEquals(w.length, 4 + n1 + n2);
    const inf = createInflate({ backend: "pako" });
    const all = inf.inflate(w.view().subarray(4));
    assertEquals(all, new Uint8Array([...a, ...b]));
    assertThrows(() => d.deflate(a));
    d.close();
  }
});

Deno.test("zlib (ffi): setLevel/setStrategy change parameters mid-stream; the stream stays valid", () => {
  if (!BACKENDS.includes("ffi")) return;
  const d = createDeflate(1, { backend: "ffi" });
  const inf = createInflate({ backend: "pako" });
  const parts = [pseudoText(40_000, 6), pseudoText(40_000, 7), pseudoText(40_000, 8)];
  assertEquals(inf.inflate(d.deflate(parts[0])), parts[0]);
  d.setLevel!(9);
  assertStrictEquals(d.level, 9);
  assertEquals(inf.inflate(d.deflate(parts[1])), parts[1]);
  d.setLevel!(0);
  const z = d.deflate(parts[2]);
  assert(z.length >= parts[2].length, "level 0 stores");
  assertEquals(inf.inflate(z), parts[2]);
  d.setLevel!(1);
  for (const s of ["rle", "huffman", "filtered", "default"] as const) {
    d.setStrategy!(s);
    assertStrictEquals(d.strategy, s);
    assertEquals(inf.inflate(d.deflate(parts[0])), parts[0], s);
  }
  assertThrows(() => d.setStrategy!("fastest" as "rle"));
  d.close();
});

Deno.test("zlib: throughput on a 1920x1080x4 desktop frame", () => {
  const W = 1920, H = 1080;
  const px = new Uint32Array(W * H);
  createWorkload("desktop", W, H).drawFrame({ px, width: W, height: H, strideWords: W }, 0, 0);
  const data = new Uint8Array(px.buffer);
  const mb = data.length / 1e6;
  const lines: string[] = [];
  for (const backend of BACKENDS) {
    for (const level of [1, 6]) {
      const d = createDeflate(level, { backend });
      d.deflate(data.subarray(0, 1 << 20)); // warm up
      const reps = 3;
      let bytes = 0;
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) bytes = d.deflate(data).length;
      const ms = (performance.now() - t0) / reps;
      lines.push(
        `${backend} level ${level}: ${(mb / (ms / 1000)).toFixed(0)} MB/s, ${ms.toFixed(1)} ms, ` +
          `${(bytes / 1024).toFixed(0)} KiB (ratio ${(data.length / bytes).toFixed(0)})`,
      );
      d.close();
    }
  }
  console.log(`  zlib on ${mb.toFixed(1)} MB desktop frame:\n    ${lines.join("\n    ")}`);
});

// ---------------------------------------------------------------------------
// Encoders

Deno.test("raw: decodes to the source pixels exactly, all kinds, formats and rects", () => {
  sweep(RAW);
});

Deno.test("raw: width above 2048, source formats 16 and 24 bpp, unaligned writer", () => {
  const enc = new RawEncoder();
  const st = newState();
  for (const [, pf] of FORMATS) {
    const fb = makeFb(2100, 6, "mixed", 7);
    roundTrip(enc, fb, { x: 0, y: 0, w: 2100, h: 6 }, { pf }, st, true);
    roundTrip(enc, fb, { x: 3, y: 1, w: 2093, h: 4 }, { pf }, st, true);
    for (const src of [RGB565, RGB888, BGR233]) {
      const f2 = makeFb(40, 30, "gradient", 8, src);
      roundTrip(enc, f2, { x: 1, y: 2, w: 37, h: 27 }, { pf }, st, true);
    }
  }
  // Behind a 1-byte prefix the 32 bpp fast path is unaligned; output must not change.
  const fb = makeFb(50, 20, "noise", 9);
  const r = { x: 1, y: 1, w: 47, h: 17 };
  const a = new ByteWriter(), b = new ByteWriter();
  b.u8(0);
  enc.encode(fb, r, { pf: XRGB_BE }, a);
  enc.encode(fb, r, { pf: XRGB_BE }, b);
  assertEquals(b.view().subarray(1), a.view());
});

Deno.test("rre: decodes to the source pixels, all kinds, formats and rects", () => {
  const sts = sweep(() => new RREEncoder());
  assert(sts.every((s) => s.rre.rects > 0));
});

Deno.test("rre: busy content is split into bands of bounded subrectangle count", () => {
  const enc = new RREEncoder(500);
  const fb = makeFb(200, 120, "noise", 11);
  const st = newState();
  const r = { x: 0, y: 0, w: 200, h: 120 };
  roundTrip(enc, fb, r, { pf: RGB565 }, st);
  assert(st.rre.rects > 10, `${st.rre.rects} rects`);
  // Solid content stays one rectangle with no subrectangle.
  const solid = new ByteWriter();
  assertStrictEquals(
    new RREEncoder(500).encode(makeFb(200, 120, "solid", 1), r, { pf: RGB565 }, solid),
    1,
  );
  assertStrictEquals(solid.length, 12 + 4 + 2);
});

Deno.test("hextile: decodes to the source pixels; no tile exceeds raw", () => {
  const sts = sweep(() => new HextileEncoder());
  const kinds = new Set<string>();
  for (const s of sts) {
    assert(s.hextile.maxExcess <= 0, `a tile is ${s.hextile.maxExcess} bytes over raw`);
    for (const k of s.hextile.kinds) kinds.add(k);
  }
  assertEquals([...kinds].sort(), ["coloured", "mono", "raw", "solid"]);
});

Deno.test("hextile: a large busy rectangle goes as Raw, plain ones stay Hextile; both exact in every format", () => {
  const W = 320, H = 240;
  for (const [fname, pf] of FORMATS) {
    for (
      const [kind, want] of [["gradient", undefined], ["noise", Encoding.Raw], [
        "text",
        Encoding.Hextile,
      ], ["few", Encoding.Hextile]] as const
    ) {
      const fb = makeFb(W, H, kind, 7);
      const enc = new HextileEncoder();
      const out = new ByteWriter(64);
      enc.encode(fb, { x: 0, y: 0, w: W, h: H }, { pf }, out);
      const got = new DataView(out.view().buffer, out.view().byteOffset).getInt32(8);
      // (A gradient may repeat pixels once reduced to a coarse format: either is right.)
      // (At 8 bpp, neighbours in noise are equal now and then: either is right there too.)
      if (want !== undefined && (bytesPerPixel(pf) > 1 || want === Encoding.Hextile)) {
        assertStrictEquals(got, want, `${fname} ${kind}`);
      }
      roundTrip(new HextileEncoder(), fb, { x: 0, y: 0, w: W, h: H }, { pf }, newState());
      // Below the size checked, busy content stays Hextile (raw tiles).
      const small = new ByteWriter(64);
      enc.encode(fb, { x: 0, y: 0, w: 200, h: 100 }, { pf }, small);
      assertStrictEquals(new DataView(small.view().buffer).getInt32(8), Encoding.Hextile);
    }
  }
});

Deno.test("hextile: background is sent once for a run of solid tiles", () => {
  const fb = makeFb(64, 32, "solid", 5);
  const out = new ByteWriter();
  new HextileEncoder().encode(fb, { x: 0, y: 0, w: 64, h: 32 }, { pf: XRGB8888 }, out);
  // 8 tiles: the first BackgroundSpecified (1 + 4 bytes), seven bare masks.
  assertStrictEquals(out.length, 12 + 5 + 7);
});

Deno.test("zrle: decodes to the source pixels, all kinds, formats and rects, one stream", () => {
  const sts = sweep(() => new ZRLEEncoder(), ZRLE_FORMATS);
  const subs = new Set<number>();
  for (const s of sts) for (const v of s.zrle!.subencodings) subs.add(v);
  const has = (f: (v: number) => boolean) => [...subs].some(f);
  assert(subs.has(0), "raw tiles");
  assert(subs.has(1), "solid tiles");
  assert(has((v) => v >= 2 && v <= 16), "packed palette tiles");
  assert(subs.has(128), "plain RLE tiles");
  assert(has((v) => v >= 130), "palette RLE tiles");
});

/** A framebuffer from a function of (x, y) giving 0x00RRGGBB. */
function fbOf(w: number, h: number, f: (x: number, y: number) => number): Framebuffer {
  const px = new Uint32Array(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) px[y * w + x] = f(x, y) & 0xffffff;
  return { width: w, height: h, stride: w * 4, format: XRGB8888, bytes: new Uint8Array(px.buffer) };
}

Deno.test("hextile: stripes, checkerboards, full-width runs, lone pixels", () => {
  const fbs = [
    fbOf(48, 48, (x) => (x & 1 ? 0xffffff : 0)),
    fbOf(48, 48, (_, y) => (y & 1 ? 0xffffff : 0x123456)),
    fbOf(48, 48, (x, y) => ((x ^ y) & 1 ? 0xff0000 : 0x00ff00)),
    fbOf(48, 48, (x, y) => (x === 15 || y === 15 ? 0xff : 0x808080)),
    fbOf(48, 48, (x, y) => (x % 16 === 15 && y % 16 === 0 ? 0xabcdef : 0)),
    fbOf(48, 48, (x, y) => [0x10, 0x2000, 0x300000][(x >> 2) % 3] + (y >> 3)),
    fbOf(48, 48, (x, y) => (x * 7 + y * 13) % 5 * 0x203040),
  ];
  for (const fb of fbs) {
    for (const [, pf] of FORMATS) {
      const enc = new HextileEncoder(), st = newState();
      for (const r of [{ x: 0, y: 0, w: 48, h: 48 }, { x: 1, y: 2, w: 33, h: 17 }]) {
        roundTrip(enc, fb, r, { pf }, st);
      }
      assert(st.hextile.maxExcess <= 0);
    }
  }
});

Deno.test("zrle: palette sizes at the subencoding boundaries", () => {
  for (const colours of [2, 3, 4, 5, 16, 17, 126, 127, 128, 200]) {
    for (const runLen of [1, 3, 300]) {
      const fb = fbOf(130, 70, (x, y) => {
        const k = Math.floor((y * 130 + x) / runLen) % colours;
        return Math.imul(k + 1, 0x9e3779b1) >>> 8;
      });
      for (const [, pf] of ZRLE_FORMATS) {
        roundTrip(new ZRLEEncoder(), fb, { x: 0, y: 0, w: 130, h: 70 }, { pf }, newState());
      }
    }
  }
});

Deno.test("zrle: CPIXEL is 3 bytes for 32 bpp depth <= 24 formats, else a PIXEL", () => {
  const cases: [PixelFormat, number][] = [
    [XRGB8888, 3],
    [XRGB_BE, 3],
    [RGBX_LE, 3],
    [RGBX_BE, 3],
    [
      {
        ...XRGB8888,
        depth: 16,
        redMax: 31,
        greenMax: 63,
        blueMax: 31,
        redShift: 11,
        greenShift: 5,
      },
      3,
    ],
    [R11G11B10, 4],
    [RGB565, 2],
    [BGR233, 1],
  ];
  const fb = makeFb(20, 20, "solid", 3);
  for (const [pf, size] of cases) {
    const out = new ByteWriter();
    new ZRLEEncoder().encode(fb, { x: 0, y: 0, w: 20, h: 20 }, { pf }, out);
    const rd = new Reader(out.view());
    header(rd);
    const tiles = createInflate({ backend: "pako" }).inflate(rd.take(rd.u32()));
    assertEquals(tiles.length, 1 + size, `CPIXEL of ${JSON.stringify(pf)}`);
    assertStrictEquals(tiles[0], 1);
    // The decoded colour is the source colour.
    const st = newState();
    roundTrip(new ZRLEEncoder(), fb, { x: 2, y: 2, w: 9, h: 9 }, { pf }, st);
  }
});

Deno.test("zrle: many rects on one connection decode with one persistent inflater", () => {
  for (const backend of ["ffi", "pako"] as ZlibBackend[]) {
    const enc = new ZRLEEncoder();
    const st = newState();
    st.zrle = zrleClient(backend === "ffi" && BACKENDS.includes("ffi") ? "ffi" : "pako");
    const W = 300, H = 200;
    for (let f = 0; f < 4; f++) {
      const fb = makeFb(W, H, KINDS[(f + 1) % KINDS.length], 50 + f);
      for (const r of RECTS(W, H)) {
        // Level changes mid-connection (CompressLevel) must not break the stream.
        roundTrip(enc, fb, r, { pf: XRGB8888, compressLevel: (f * 3) % 10 }, st);
      }
    }
    // A fresh inflater cannot pick up in the middle.
    const out = new ByteWriter();
    const fb = makeFb(W, H, "text", 1);
    enc.encode(fb, { x: 0, y: 0, w: W, h: H }, { pf: XRGB8888 }, out);
    out.clear();
    enc.encode(fb, { x: 0, y: 0, w: W, h: H }, { pf: XRGB8888 }, out);
    const late = newState();
    assertThrows(() => decodeAll(out.view().slice(), new Canvas(W, H, 4), XRGB8888, late));
    enc.close();
  }
});

Deno.test("encoders: guest padding bytes do not reach the decoded colours", () => {
  const fb = makeFb(100, 80, "few", 21, XRGB8888, true);
  const r = { x: 3, y: 4, w: 90, h: 70 };
  for (
    const make of [RAW, () => new RREEncoder(), () => new HextileEncoder(), () => new ZRLEEncoder()]
  ) {
    for (const [, pf] of ZRLE_FORMATS) roundTrip(make(), fb, r, { pf }, newState());
  }
  // Padding is masked before comparing colours: a few-colour frame stays a few-colour tile.
  const out = new ByteWriter();
  new HextileEncoder().encode(fb, { x: 0, y: 0, w: 16, h: 16 }, { pf: XRGB8888 }, out);
  assert(out.length < 12 + 1 + 256 * 4, "padding garbage made the tile raw");
});

Deno.test("encoders: source framebuffers of 16 and 24 bpp, unaligned strides", () => {
  for (const src of [RGB565, RGB888, BGR233]) {
    const fb = makeFb(90, 70, "mixed", 31, src);
    for (
      const make of [() => new RREEncoder(), () => new HextileEncoder(), () => new ZRLEEncoder()]
    ) {
      const enc = make();
      const st = newState();
      for (const [, pf] of FORMATS) roundTrip(enc, fb, { x: 1, y: 3, w: 87, h: 66 }, { pf }, st);
    }
  }
});

Deno.test("encoders: empty rects write nothing", () => {
  const fb = makeFb(10, 10, "solid", 1);
  for (const e of [Encoding.Raw, Encoding.RRE, Encoding.Hextile, Encoding.ZRLE]) {
    const out = new ByteWriter();
    assertStrictEquals(
      createEncoder(e)!.encode(fb, { x: 2, y: 2, w: 0, h: 5 }, { pf: XRGB8888 }, out),
      0,
    );
    assertStrictEquals(out.length, 0);
  }
});

Deno.test("registry: createEncoder gives a fresh encoder per call, by encoding number", () => {
  for (const e of [Encoding.Raw, Encoding.RRE, Encoding.Hextile, Encoding.ZRLE]) {
    const a = createEncoder(e), b = createEncoder(e);
    assertStrictEquals(a?.encoding, e);
    assert(a !== b);
  }
  assertStrictEquals(createEncoder(Encoding.CopyRect), undefined);
  assertStrictEquals(createEncoder(12345), undefined);
});
