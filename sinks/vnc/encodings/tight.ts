/**
 * Tight (encoding 7) and TightPNG (encoding -260), per the community RFB
 * specification ("Tight Encoding"), with TigerVNC's and noVNC's behaviour as
 * the reference for what real clients accept.
 *
 * ## Wire format (what this encoder sends)
 *
 * Every rectangle starts with a compression-control byte. Its low four bits
 * ask the client to reset zlib streams 0..3 before decoding; its high four
 * bits pick the method:
 *
 * | high bits | method | body |
 * | --- | --- | --- |
 * | `0sss` (`s` = stream id, bit 6 = filter id follows) | basic | [filter id] [palette] data |
 * | `1000` | fill | one TPIXEL |
 * | `1001` | JPEG | compact length, JFIF stream |
 * | `1010` | PNG (TightPNG only) | compact length, PNG stream |
 *
 * TPIXEL is the client's PIXEL, except for a true-colour 32 bpp client of
 * depth 24 whose channels are 8 bits wide (maximum 255) at byte-aligned
 * shifts: then it is three bytes R, G, B (TigerVNC's `is888()`; noVNC only
 * works in that format). Basic data shorter than 12 bytes is sent as is;
 * longer data goes through the stream's persistent deflater, sync-flushed,
 * after a compact (1-3 byte) length.
 *
 * ## Choices
 *
 * - **Streams.** 0: full colour (copy filter); 1: two-colour palette (1-bit
 *   rows); 2: indexed palette (3..256 colours, 8-bit indices), as TigerVNC;
 *   3: full colour through the gradient filter (see below).
 * - **Gradient filter** (TightVNC's; TigerVNC, libvncclient, gtk-vnc and
 *   noVNC decode it; TigerVNC's server never sends it). For three-byte
 *   TPIXELs, each channel is sent as its difference from the prediction
 *   `clamp(left + above - above-left)`. Smooth content (gradients, a desktop
 *   background) then becomes mostly zero bytes, which zlib takes in a
 *   fraction of the time and space. A full-colour rectangle goes through it
 *   when at least {@link GRADIENT_MIN_ZEROS} of its differences are zero
 *   ({@link GRADIENT_MIN_ZEROS_HIGH} at compress levels 6-9).
 * - **zlib levels** per compress level 0..9 (default 2, as TigerVNC), for
 *   indexed / mono / full colour: TigerVNC's table (VirtualGL's measurements),
 *   see {@link TIGHT_ZLIB_LEVELS}. A stream whose level changes is replaced by
 *   a fresh deflater, and the rectangle that first uses it carries that
 *   stream's reset bit.
 * - **Splitting.** Rectangles are at most {@link TIGHT_MAX_WIDTH} (2048)
 *   pixels wide and {@link TIGHT_MAX_AREA} (65536) pixels in area (as
 *   TigerVNC); strips are a multiple of 16 rows high where possible, so that
 *   JPEG MCUs and solid-search blocks line up. Fill rectangles are only cut to
 *   the width limit.
 * - **Solid areas first.** Before splitting, the rectangle is searched for
 *   solid areas of at least {@link SOLID_MIN_AREA} (2048) pixels, on a 16x16
 *   block grid then grown pixel by pixel (TigerVNC's idea); each is sent as
 *   one fill rectangle and the rest is encoded recursively.
 * - **Per sub-rectangle**, on the pixels converted to the client's format:
 *   1 colour: fill; 2 colours: mono palette; 3..N colours: indexed palette
 *   (not at 8 bpp, where an index is no smaller than a pixel; and only when
 *   palette plus indices are smaller than the pixels); otherwise full colour:
 *   JPEG when the client sent a quality level and uses 16 or 32 bpp and the
 *   rectangle has at least {@link JPEG_MIN_AREA} pixels, else zlib. N is 256
 *   without JPEG; with JPEG it is 24 at compress levels 0-1 and 96 otherwise
 *   (TigerVNC's rule, so that photo-like areas go to JPEG).
 * - **TightPNG** sends fill and JPEG as Tight does, and everything else as a
 *   PNG (control byte 0xA0; noVNC rejects basic compression there): indexed
 *   PNG for palettes (1-bit for two colours), RGB otherwise. PNG colours are
 *   the client-format pixels widened to 8 bits per channel.
 * - **JPEG quality** for quality levels 0..9: TigerVNC's table,
 *   {@link JPEG_QUALITY} = [15, 29, 41, 42, 62, 77, 79, 86, 92, 100], with
 *   4:2:0 chroma subsampling at levels 0-2, 4:2:2 at 3-5, none at 6-9.
 * - **JPEG backend.** libturbojpeg (`libturbojpeg.so.0`, Debian package
 *   libturbojpeg0) through Deno FFI when it can be loaded (needs
 *   `--allow-ffi`); it reads 32 bpp guest pixels in place. Otherwise the pure
 *   JavaScript jpeg-js (always 4:4:4, about ten times slower).
 *
 * @module
 */
import type { Framebuffer } from "../../../pipeline/framebuffer.ts";
import type { Rect } from "../../../pipeline/rect.ts";
import { bytesPerPixel, type PixelFormat } from "../../../pipeline/pixel_format.ts";
import { convertPixels } from "../../../pipeline/convert_pixels.ts";
import { type EncodeOptions, Encoding, type RectEncoder } from "../encoder.ts";
import { ByteWriter, rectHeader } from "../bytes.ts";
import { createDeflate, type DeflateStream, zlibBackend, type ZlibOptions } from "../zlib.ts";
import type { EncodePool } from "../encode_pool.ts";
import { runBands, type SharedStage, type TightBand } from "../encode_jobs.ts";
import { StorePolicy } from "./store_policy.ts";
import { wasmGradient } from "./gradient_wasm.ts";
import { encode as encodePng } from "fast-png";
import jpegJs from "jpeg-js";

// ---------------------------------------------------------------------------
// Constants

/** Widest rectangle a Tight client must accept. */
export const TIGHT_MAX_WIDTH = 2048;
/** Largest area of a non-fill sub-rectangle (TigerVNC's SubRectMaxArea). */
export const TIGHT_MAX_AREA = 65536;
/** Smallest solid area sent as a fill of its own (TigerVNC's SolidBlockMinArea). */
export const SOLID_MIN_AREA = 2048;
/** Block size of the solid-area search grid. */
const SOLID_BLOCK = 16;
/** Smallest full-colour rectangle sent as JPEG (below, headers outweigh the gain). */
export const JPEG_MIN_AREA = 1024;
/** Basic data shorter than this is sent uncompressed (fixed by the protocol). */
const MIN_TO_COMPRESS = 12;
/** Largest value the compact length representation holds. */
const MAX_COMPACT = 4194303;

/** JPEG quality (1..100) for Tight quality levels 0..9 (TigerVNC's table). */
export const JPEG_QUALITY: readonly number[] = [15, 29, 41, 42, 62, 77, 79, 86, 92, 100];

/** Chroma subsampling for quality levels 0..9: 420, 422 or 444 (TigerVNC's table). */
export const JPEG_SUBSAMPLING: readonly (420 | 422 | 444)[] = [
  420,
  420,
  420,
  422,
  422,
  422,
  444,
  444,
  444,
  444,
];

/**
 * zlib levels for Tight compress levels 0..9: `[indexed, mono, full colour]`
 * (TigerVNC's table, from VirtualGL's measurements).
 */
export const TIGHT_ZLIB_LEVELS: readonly (readonly [number, number, number])[] = [
  [0, 0, 0],
  [1, 1, 1],
  [3, 3, 2],
  [5, 5, 2],
  [6, 7, 3],
  [7, 8, 4],
  [7, 8, 5],
  [8, 9, 6],
  [9, 9, 7],
  [9, 9, 9],
];

/** Compress level used when the client sent none (TigerVNC's default). */
export const DEFAULT_COMPRESS_LEVEL = 2;

/** The stream ids this encoder uses. */
export const TightStream = { FullColour: 0, Mono: 1, Indexed: 2, Gradient: 3 } as const;

const CTL_FILL = 0x80;
const CTL_JPEG = 0x90;
const CTL_PNG = 0xa0;
const CTL_EXPLICIT_FILTER = 0x40;
const FILTER_PALETTE = 1;
const FILTER_GRADIENT = 2;

/**
 * Share of zero gradient differences from which a full-colour rectangle is
 * sent through the gradient filter at the default compress levels. Smooth
 * content (the desktop workload: 0.83) then deflates to a few per cent, in a
 * third of the time. Photo-like content (the video workload: 0.57) deflates
 * to about 45 % filtered, but the filter and deflate cost 2.3 times what
 * sending it stored does, so it is left to the copy filter (and the
 * StorePolicy) unless the client asked for more compression.
 */
export const GRADIENT_MIN_ZEROS = 0.75;

/** {@link GRADIENT_MIN_ZEROS} for clients that asked for compress level 6 or more. */
export const GRADIENT_MIN_ZEROS_HIGH = 0.5;

// ---------------------------------------------------------------------------
// Small helpers

/** Appends `v` (0..4194303) in Tight's compact 1-3 byte representation. */
export function writeCompactLength(out: ByteWriter, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > MAX_COMPACT) {
    throw new RangeError(`compact length ${v} out of range`);
  }
  if (v <= 0x7f) {
    out.u8(v);
  } else if (v <= 0x3fff) {
    out.u8((v & 0x7f) | 0x80).u8(v >>> 7);
  } else {
    out.u8((v & 0x7f) | 0x80).u8(((v >>> 7) & 0x7f) | 0x80).u8(v >>> 14);
  }
}

/**
 * Where R, G and B sit in a 32 bpp pixel's four bytes when the format is
 * Tight's three-byte TPIXEL case (true colour, 32 bpp, depth 24, every maximum
 * 255, byte-aligned shifts); undefined otherwise.
 */
export function tpixelBytes(pf: PixelFormat): [number, number, number] | undefined {
  if (!pf.trueColour || pf.bitsPerPixel !== 32 || pf.depth !== 24) return undefined;
  if (pf.redMax !== 255 || pf.greenMax !== 255 || pf.blueMax !== 255) return undefined;
  const at = (shift: number) => {
    if (shift % 8 !== 0 || shift > 24) return -1;
    return pf.bigEndian ? 3 - shift / 8 : shift / 8;
  };
  const r = at(pf.redShift), g = at(pf.greenShift), b = at(pf.blueShift);
  if (r < 0 || g < 0 || b < 0 || r === g || g === b || r === b) return undefined;
  return [r, g, b];
}

/** The bits of a pixel that carry colour, as seen through a host-order view of the pixel's bytes. */
function hostMask(pf: PixelFormat): number {
  const Bpp = bytesPerPixel(pf);
  const bitsOf = (max: number, shift: number) => {
    const mask = max === 0 ? 0 : 2 ** (32 - Math.clz32(max)) - 1;
    return shift >= 32 ? 0 : (mask * 2 ** shift) % 2 ** 32;
  };
  let m = bitsOf(pf.redMax, pf.redShift) | bitsOf(pf.greenMax, pf.greenShift) |
    bitsOf(pf.blueMax, pf.blueShift);
  m = (m >>> 0) % 2 ** (8 * Bpp);
  const b = new Uint8Array(4);
  for (let i = 0; i < Bpp; i++) {
    const byte = (m >>> (8 * i)) & 0xff; // byte i counted from the least significant
    b[pf.bigEndian && Bpp > 1 ? Bpp - 1 - i : i] = byte;
  }
  if (Bpp === 4) return new Uint32Array(b.buffer)[0];
  if (Bpp === 2) return new Uint16Array(b.buffer)[0];
  return b[0];
}

/** The pixels of `bytes` (from offset 0) as host-order values of the pixel's width. */
function pixelView(
  bytes: Uint8Array,
  Bpp: number,
  n: number,
): Uint32Array | Uint16Array | Uint8Array {
  if (Bpp === 4) return new Uint32Array(bytes.buffer, bytes.byteOffset, n);
  if (Bpp === 2) return new Uint16Array(bytes.buffer, bytes.byteOffset, n);
  return bytes.subarray(0, n);
}

/** Packed bytes R, G, B (a big-endian 24 bpp format): fast-png's RGB input. */
const RGB24: PixelFormat = {
  bitsPerPixel: 24,
  depth: 24,
  bigEndian: true,
  trueColour: true,
  redMax: 255,
  greenMax: 255,
  blueMax: 255,
  redShift: 16,
  greenShift: 8,
  blueShift: 0,
};

/** Bytes R, G, B, X: jpeg-js's input and TJPF_RGBX. */
const RGBX32: PixelFormat = {
  bitsPerPixel: 32,
  depth: 24,
  bigEndian: false,
  trueColour: true,
  redMax: 255,
  greenMax: 255,
  blueMax: 255,
  redShift: 0,
  greenShift: 8,
  blueShift: 16,
};

// ---------------------------------------------------------------------------
// Scratch buffers, shared: encoding is synchronous, so one set serves every connection.

const scratch = {
  /** Client-format pixels of a sub-rectangle. */
  px: new Uint8Array(TIGHT_MAX_AREA * 4),
  /** Filtered data before compression (RGB triples, indices, mono rows). */
  data: new Uint8Array(TIGHT_MAX_AREA * 4),
  /** RGBX or RGB pixels for the image codecs. */
  img: new Uint8Array(TIGHT_MAX_AREA * 4),
  /** Palette: position of each colour's first pixel, and its masked value. */
  palPos: new Int32Array(257),
  palVal: new Float64Array(257),
  /** Open-addressing colour -> palette index table, cleared by generation. */
  hKey: new Float64Array(1024),
  hIdx: new Uint16Array(1024),
  hGen: new Uint32Array(1024),
  gen: 0,
  /** Deflated output before it is copied behind its compact length. */
  z: new ByteWriter(64 * 1024),
};

/** Counts the distinct (masked) values of `v[0..n)`, stopping once above `max`. */
function analysePalette(
  v: Uint32Array | Uint16Array | Uint8Array,
  n: number,
  mask: number,
  max: number,
): number {
  const { palPos, palVal, hKey, hIdx, hGen } = scratch;
  if (++scratch.gen >= 0xffffffff) {
    hGen.fill(0);
    scratch.gen = 1;
  }
  const g = scratch.gen;
  let count = 0;
  let prev = -1;
  for (let i = 0; i < n; i++) {
    const c = (v[i] & mask) >>> 0;
    if (c === prev) continue;
    prev = c;
    let h = Math.imul(c, 0x9e3779b1) >>> 22;
    for (;;) {
      if (hGen[h] !== g) {
        if (count >= max) return max + 1;
        hGen[h] = g;
        hKey[h] = c;
        hIdx[h] = count;
        palPos[count] = i;
        palVal[count] = c;
        count++;
        break;
      }
      if (hKey[h] === c) break;
      h = (h + 1) & 1023;
    }
  }
  return count;
}

/** The palette index of `c` (which analysePalette saw last). */
function paletteIndex(c: number): number {
  const { hKey, hIdx, hGen } = scratch;
  const g = scratch.gen;
  let h = Math.imul(c, 0x9e3779b1) >>> 22;
  while (hGen[h] === g) {
    if (hKey[h] === c) return hIdx[h];
    h = (h + 1) & 1023;
  }
  throw new Error("tight: colour not in palette");
}

// ---------------------------------------------------------------------------
// JPEG

/** A JPEG backend's name. */
export type JpegBackend = "turbojpeg" | "jpeg-js";

/** Which JPEG backend an encoder uses: the best available, or a named one. */
export type JpegChoice = "auto" | JpegBackend;

/** Where a JPEG encoder takes its pixels from. */
interface JpegSource {
  bytes: Uint8Array;
  /** Byte offset of the first pixel. */
  at: number;
  pitch: number;
  w: number;
  h: number;
  /** libturbojpeg pixel format of the 4-byte pixels. */
  tjpf: number;
}

const TJPF_RGBX = 2, TJPF_BGRX = 3, TJPF_XBGR = 4, TJPF_XRGB = 5;
const TJSAMP_444 = 0, TJSAMP_422 = 1, TJSAMP_420 = 2;
const TJFLAG_NOREALLOC = 1024, TJFLAG_FASTDCT = 2048;

const TJ_SYMBOLS = {
  tjInitCompress: { parameters: [], result: "pointer" },
  tjCompress2: {
    parameters: [
      "pointer", // handle
      "buffer", // srcBuf
      "i32", // width
      "i32", // pitch
      "i32", // height
      "i32", // pixelFormat
      "buffer", // unsigned char **jpegBuf
      "buffer", // unsigned long *jpegSize
      "i32", // jpegSubsamp
      "i32", // jpegQual
      "i32", // flags
    ],
    result: "i32",
  },
  tjBufSize: { parameters: ["i32", "i32", "i32"], result: "u64" },
  tjAlloc: { parameters: ["i32"], result: "pointer" },
  tjFree: { parameters: ["pointer"], result: "void" },
  tjDestroy: { parameters: ["pointer"], result: "i32" },
  tjGetErrorStr2: { parameters: ["pointer"], result: "pointer" },
} as const;

interface TurboJpeg {
  lib: Deno.DynamicLibrary<typeof TJ_SYMBOLS>;
  handle: Deno.PointerValue;
  /**
   * The output buffer (from tjAlloc, grown to tjBufSize's worst case before a
   * call, never reallocated by libturbojpeg) and its capacity; `io` is the
   * `unsigned char **` / `unsigned long *` pair handed to tjCompress2.
   */
  buf: Deno.PointerValue;
  cap: number;
  bufPtr: BigUint64Array;
  bufSize: BigUint64Array;
}

/** Where libturbojpeg is looked for, in order. */
const TJ_PATHS = [
  "/usr/lib/x86_64-linux-gnu/libturbojpeg.so.0",
  "/usr/lib/aarch64-linux-gnu/libturbojpeg.so.0",
  "libturbojpeg.so.0",
];

let turbo: TurboJpeg | null | undefined;

function loadTurbo(): TurboJpeg | null {
  if (turbo !== undefined) return turbo;
  turbo = null;
  try {
    // Never prompt: without the ffi permission, jpeg-js it is.
    if (typeof Deno.dlopen !== "function") return turbo;
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return turbo;
  } catch {
    return turbo;
  }
  for (const path of TJ_PATHS) {
    let lib: Deno.DynamicLibrary<typeof TJ_SYMBOLS> | undefined;
    try {
      lib = Deno.dlopen(path, TJ_SYMBOLS);
      const handle = lib.symbols.tjInitCompress();
      if (handle === null) {
        lib.close();
        continue;
      }
      turbo = {
        lib,
        handle,
        buf: null,
        cap: 0,
        bufPtr: new BigUint64Array(1),
        bufSize: new BigUint64Array(1),
      };
      break;
    } catch {
      try {
        lib?.close();
      } catch { /* already closed */ }
    }
  }
  return turbo;
}

/** True when libturbojpeg can be loaded (the library is there and FFI is allowed). */
export function turboJpegAvailable(): boolean {
  return loadTurbo() !== null;
}

function turboCompress(tj: TurboJpeg, s: JpegSource, level: number): Uint8Array {
  const samp = JPEG_SUBSAMPLING[level] === 444
    ? TJSAMP_444
    : JPEG_SUBSAMPLING[level] === 422
    ? TJSAMP_422
    : TJSAMP_420;
  const src = s.bytes.subarray(s.at, s.at + (s.h - 1) * s.pitch + s.w * 4);
  const need = Number(tj.lib.symbols.tjBufSize(s.w, s.h, samp));
  if (need > tj.cap || tj.buf === null) {
    if (tj.buf !== null) tj.lib.symbols.tjFree(tj.buf);
    tj.buf = tj.lib.symbols.tjAlloc(need);
    tj.cap = tj.buf === null ? 0 : need;
    if (tj.buf === null) throw new Error(`tjAlloc(${need}) failed`);
  }
  tj.bufPtr[0] = BigInt(Deno.UnsafePointer.value(tj.buf));
  tj.bufSize[0] = BigInt(tj.cap);
  const flags = TJFLAG_NOREALLOC | (level >= 9 ? 0 : TJFLAG_FASTDCT);
  const rc = tj.lib.symbols.tjCompress2(
    tj.handle,
    src,
    s.w,
    s.pitch,
    s.h,
    s.tjpf,
    tj.bufPtr,
    tj.bufSize,
    samp,
    JPEG_QUALITY[level],
    flags,
  );
  if (rc !== 0) {
    const msg = tj.lib.symbols.tjGetErrorStr2(tj.handle);
    throw new Error(`tjCompress2: ${msg ? new Deno.UnsafePointerView(msg).getCString() : rc}`);
  }
  // A view on our buffer, valid until the next call (the caller copies it out at once).
  return new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(tj.buf!, Number(tj.bufSize[0])));
}

/** The libturbojpeg pixel format for a 32 bpp source format, or -1. */
function tjpfOf(f: PixelFormat): number {
  const at = tpixelBytes({ ...f, depth: 24 });
  if (at === undefined) return -1;
  const [r, g, b] = at;
  if (r === 0 && g === 1 && b === 2) return TJPF_RGBX;
  if (b === 0 && g === 1 && r === 2) return TJPF_BGRX;
  if (b === 1 && g === 2 && r === 3) return TJPF_XRGB;
  if (r === 1 && g === 2 && b === 3) return TJPF_XBGR;
  return -1;
}

// ---------------------------------------------------------------------------
// Solid-area search on the guest's pixels

/** Reads masked pixel values of a framebuffer. */
class SourcePixels {
  private readonly a: Uint32Array | Uint16Array | Uint8Array | undefined;
  private readonly stride: number;
  private readonly mask: number;
  private readonly Bpp: number;

  constructor(private readonly fb: Framebuffer) {
    const f = fb.format;
    this.Bpp = bytesPerPixel(f);
    this.mask = hostMask(f);
    const b = fb.bytes;
    const Bpp = this.Bpp;
    if (
      (Bpp === 4 || Bpp === 2 || Bpp === 1) && b.byteOffset % Bpp === 0 && fb.stride % Bpp === 0
    ) {
      const len = Math.floor(b.length / Bpp);
      this.a = Bpp === 4
        ? new Uint32Array(b.buffer, b.byteOffset, len)
        : Bpp === 2
        ? new Uint16Array(b.buffer, b.byteOffset, len)
        : b;
      this.stride = fb.stride / Bpp;
    } else {
      this.a = undefined;
      this.stride = fb.stride;
    }
  }

  get(x: number, y: number): number {
    if (this.a !== undefined) return (this.a[y * this.stride + x] & this.mask) >>> 0;
    const b = this.fb.bytes, i = y * this.stride + x * this.Bpp;
    let v = 0;
    for (let k = 0; k < this.Bpp; k++) v = v * 256 + b[i + k];
    return v; // byte order does not matter for equality; 24 bpp has no padding bits
  }

  /** True when pixels (x..x+w-1, y..y+h-1) all equal `c`. */
  solid(x: number, y: number, w: number, h: number, c: number): boolean {
    const a = this.a;
    if (a !== undefined) {
      const m = this.mask, s = this.stride;
      for (let j = 0; j < h; j++) {
        let i = (y + j) * s + x;
        const end = i + w;
        for (; i < end; i++) if (((a[i] & m) >>> 0) !== c) return false;
      }
      return true;
    }
    for (let j = 0; j < h; j++) {
      for (let i = 0; i < w; i++) if (this.get(x + i, y + j) !== c) return false;
    }
    return true;
  }
}

interface Solid {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** The first solid area of at least SOLID_MIN_AREA pixels in `r`, grown as far as it goes. */
function findSolid(src: SourcePixels, r: Rect): Solid | undefined {
  const right = r.x + r.w, bottom = r.y + r.h;
  for (let by = r.y; by < bottom; by += SOLID_BLOCK) {
    const bh = Math.min(SOLID_BLOCK, bottom - by);
    for (let bx = r.x; bx < right; bx += SOLID_BLOCK) {
      const bw = Math.min(SOLID_BLOCK, right - bx);
      const c = src.get(bx, by);
      if (!src.solid(bx, by, bw, bh, c)) continue;
      // Grow by whole blocks: right along each block row, then down while rows stay solid.
      let maxW = right - bx, best: Solid = { x: bx, y: by, w: bw, h: bh };
      for (let y = by; y < bottom; y += SOLID_BLOCK) {
        const h = Math.min(SOLID_BLOCK, bottom - y);
        let w = 0;
        while (w < maxW) {
          const cw = Math.min(SOLID_BLOCK, maxW - w);
          if (!src.solid(bx + w, y, cw, h, c)) break;
          w += cw;
        }
        if (w === 0) break;
        maxW = w;
        const cand = { x: bx, y: by, w, h: y + h - by };
        if (cand.w * cand.h > best.w * best.h) best = cand;
      }
      // Grow by single pixels: up, down, left, right.
      let { x, y, w, h } = best;
      while (y > r.y && src.solid(x, y - 1, w, 1, c)) y--, h++;
      while (y + h < bottom && src.solid(x, y + h, w, 1, c)) h++;
      while (x > r.x && src.solid(x - 1, y, 1, h, c)) x--, w++;
      while (x + w < right && src.solid(x + w, y, 1, h, c)) w++;
      if (w * h >= SOLID_MIN_AREA) return { x, y, w, h };
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// The encoders

/** Options for {@link TightEncoder} and {@link TightPNGEncoder}. */
export interface TightOptions {
  /** JPEG backend: "auto" (default) takes libturbojpeg when it loads, else jpeg-js. */
  jpeg?: JpegChoice;
  /** Search for large solid areas before splitting (default true). */
  solidSearch?: boolean;
  /** Passed to `createDeflate` (e.g. to force the pako backend). */
  zlib?: ZlibOptions;
}

/** What one encode() call works with, derived from the options. */
interface Ctx {
  pf: PixelFormat;
  Bpp: number;
  /** TPIXEL byte positions of R, G, B for three-byte TPIXELs. */
  rgb: [number, number, number] | undefined;
  /** TPIXEL size in bytes. */
  tpx: number;
  mask: number;
  zlib: readonly [number, number, number];
  maxColours: number;
  /** JPEG quality level 0..9, or -1 when JPEG is not allowed. */
  jpeg: number;
  /** Full-colour data may go stored when it hardly deflates (default compress levels). */
  storeFull: boolean;
  /** Share of zero differences from which full colour goes through the gradient filter. */
  gradientMinZeros: number;
}

/** What Tight and TightPNG share: the analysis, the streams, the methods. */
class TightBase implements RectEncoder {
  private readonly streams: (DeflateStream | undefined)[] = [
    undefined,
    undefined,
    undefined,
    undefined,
  ];
  /** How well full-colour data deflated lately (see StorePolicy). */
  private readonly fullStore = new StorePolicy();
  /** Streams whose next use resets them on the client (bit i: stream i). */
  private resetDue = 0;
  // Shared memory for rectangles the workers are encoding (one each).
  private readonly stages: SharedStage[] = [];
  private readonly jpegChoice: JpegChoice;
  private readonly solidSearch: boolean;
  private readonly zlibOpts: ZlibOptions;

  constructor(readonly encoding: number, private readonly png: boolean, opts: TightOptions = {}) {
    this.jpegChoice = opts.jpeg ?? "auto";
    this.solidSearch = opts.solidSearch ?? true;
    this.zlibOpts = opts.zlib ?? {};
    if (this.jpegChoice === "turbojpeg" && !turboJpegAvailable()) {
      throw new Error("libturbojpeg (libturbojpeg.so.0) cannot be loaded");
    }
  }

  /** The JPEG backend this encoder uses. */
  get jpegBackend(): JpegBackend {
    if (this.jpegChoice !== "auto") return this.jpegChoice;
    return turboJpegAvailable() ? "turbojpeg" : "jpeg-js";
  }

  /** True when this encoder's streams change level in place (libz; pako cannot). */
  private levelsInPlace(): boolean {
    return this.zlibOpts.backend !== "pako" && zlibBackend().backend === "ffi";
  }

  /** Frees the four zlib streams. */
  close(): void {
    for (let i = 0; i < this.streams.length; i++) {
      this.streams[i]?.close();
      this.streams[i] = undefined;
    }
  }

  /**
   * Drops the four zlib streams and has the rectangle that next uses each one
   * reset it on the client: after this, what the client's streams held before
   * does not matter (e.g. rectangles encoded elsewhere used them).
   */
  forgetStreams(): void {
    this.close();
    this.resetDue = 0xf;
  }

  /**
   * Worth the workers from 128K pixels; with JPEG (libturbojpeg: a few ms for
   * 640x360) only from 1M pixels, below which the messages cost more than they
   * save.
   */
  parallelMinArea(opts: EncodeOptions): number {
    return opts.jpegQuality !== undefined ? 1024 * 1024 : 128 * 1024;
  }

  /**
   * Tight in parallel: the rectangle is cut into bands (whole 16-row strips),
   * each encoded by a worker of `pool` with its own fresh streams (each band's
   * first rectangle on a stream resets it on the client), so the bands need no
   * coordination; afterwards this encoder's streams start afresh too. The
   * pixels are copied before this returns its promise; the rectangles are
   * written to `out` when the workers are done (resolves with their number).
   */
  encodeParallel(
    fb: Framebuffer,
    r: Rect,
    opts: EncodeOptions,
    out: ByteWriter,
    pool: EncodePool,
  ): Promise<number> {
    if (r.w <= 0 || r.h <= 0) return Promise.resolve(0);
    const encoding = this.encoding;
    return runBands<TightBand>(pool, this.stages, fb, r, 16, true, (staged, rect) => ({
      kind: "tight",
      encoding,
      fb: staged,
      rect,
      opts,
    })).then((bands) => {
      let n = 0;
      for (const { result: b } of bands) {
        out.bytes(b.data);
        n += b.rects;
      }
      this.forgetStreams();
      return n;
    });
  }

  encode(fb: Framebuffer, r: Rect, opts: EncodeOptions, out: ByteWriter): number {
    if (r.w <= 0 || r.h <= 0) return 0;
    if (r.x < 0 || r.y < 0 || r.x + r.w > fb.width || r.y + r.h > fb.height) {
      throw new RangeError(`rect ${r.x},${r.y} ${r.w}x${r.h} outside the framebuffer`);
    }
    const pf = opts.pf;
    const Bpp = bytesPerPixel(pf);
    if (Bpp !== 1 && Bpp !== 2 && Bpp !== 4) {
      throw new RangeError(`tight: client bitsPerPixel ${pf.bitsPerPixel} not 8, 16 or 32`);
    }
    const level = clampLevel(opts.compressLevel, DEFAULT_COMPRESS_LEVEL);
    const q = opts.jpegQuality;
    const jpeg = q !== undefined && (Bpp === 2 || Bpp === 4) ? clampLevel(q, 0) : -1;
    const rgb = tpixelBytes(pf);
    const ctx: Ctx = {
      pf,
      Bpp,
      rgb,
      tpx: rgb ? 3 : Bpp,
      mask: hostMask(pf),
      zlib: TIGHT_ZLIB_LEVELS[level],
      maxColours: Bpp === 1
        ? 2
        : jpeg < 0
        ? 256
        : opts.compressLevel !== undefined && level < 2
        ? 24
        : 96,
      jpeg,
      storeFull: level > 0 && level <= DEFAULT_COMPRESS_LEVEL,
      gradientMinZeros: level >= 6 ? GRADIENT_MIN_ZEROS_HIGH : GRADIENT_MIN_ZEROS,
    };
    const src = this.solidSearch ? new SourcePixels(fb) : undefined;
    return this.encodeArea(fb, src, r, ctx, out);
  }

  /**
   * Solid areas first, each splitting what is left of its area into up to four
   * parts (above, left, right, below) that are searched in turn (an explicit
   * stack, not recursion: a screen may hold thousands of solid areas); then
   * what has no solid area left, in sub-rectangles.
   */
  private encodeArea(
    fb: Framebuffer,
    src: SourcePixels | undefined,
    area: Rect,
    ctx: Ctx,
    out: ByteWriter,
  ): number {
    let n = 0;
    const todo: Rect[] = [area];
    while (todo.length > 0) {
      const r = todo.pop()!;
      if (r.w <= 0 || r.h <= 0) continue;
      const s = src !== undefined && r.w * r.h >= SOLID_MIN_AREA ? findSolid(src, r) : undefined;
      if (s !== undefined) {
        n += this.writeFills(fb, s, ctx, out);
        const right = r.x + r.w, bottom = r.y + r.h;
        todo.push(
          { x: r.x, y: s.y + s.h, w: r.w, h: bottom - s.y - s.h },
          { x: s.x + s.w, y: s.y, w: right - s.x - s.w, h: s.h },
          { x: r.x, y: s.y, w: s.x - r.x, h: s.h },
          { x: r.x, y: r.y, w: r.w, h: s.y - r.y },
        );
        continue;
      }
      const sw = Math.min(TIGHT_MAX_WIDTH, r.w);
      let sh = Math.max(1, Math.floor(TIGHT_MAX_AREA / sw));
      if (sh >= 16) sh -= sh % 16;
      for (let y = r.y; y < r.y + r.h; y += sh) {
        const h = Math.min(sh, r.y + r.h - y);
        for (let x = r.x; x < r.x + r.w; x += sw) {
          n += this.encodeSub(fb, { x, y, w: Math.min(sw, r.x + r.w - x), h }, ctx, out);
        }
      }
    }
    return n;
  }

  /** A solid area as fill rectangles at most TIGHT_MAX_WIDTH wide. */
  private writeFills(fb: Framebuffer, s: Solid, ctx: Ctx, out: ByteWriter): number {
    const px = convertPixels(fb, { x: s.x, y: s.y, w: 1, h: 1 }, ctx.pf, scratch.px, 0);
    let n = 0;
    for (let x = s.x; x < s.x + s.w; x += TIGHT_MAX_WIDTH) {
      const w = Math.min(TIGHT_MAX_WIDTH, s.x + s.w - x);
      rectHeader(out, x, s.y, w, s.h, this.encoding);
      out.u8(CTL_FILL | this.resetBits(-1));
      writeTPixel(out, px, 0, ctx);
      n++;
    }
    return n;
  }

  /** One sub-rectangle (within the width and area limits): one FramebufferUpdate rectangle. */
  private encodeSub(fb: Framebuffer, r: Rect, ctx: Ctx, out: ByteWriter): number {
    const n = r.w * r.h;
    const { Bpp } = ctx;
    const px = convertPixels(fb, r, ctx.pf, scratch.px, 0);
    const vals = pixelView(px, Bpp, n);
    const count = analysePalette(vals, n, ctx.mask, ctx.maxColours);
    rectHeader(out, r.x, r.y, r.w, r.h, this.encoding);
    if (count === 1) {
      out.u8(CTL_FILL | this.resetBits(-1));
      writeTPixel(out, px, 0, ctx);
      return 1;
    }
    const indexedPays = count >= 3 && count <= ctx.maxColours && Bpp > 1 &&
      count * ctx.tpx + n < n * ctx.tpx;
    if (count === 2 || indexedPays) {
      if (this.png) this.writePngPalette(r, px, vals, count, ctx, out);
      else this.writePalette(r, px, vals, count, ctx, out);
      return 1;
    }
    if (ctx.jpeg >= 0 && n >= JPEG_MIN_AREA) {
      this.writeJpeg(fb, r, ctx, out);
      return 1;
    }
    if (this.png) this.writePngFull(r, px, ctx, out);
    else this.writeFull(r, px, ctx, out);
    return 1;
  }

  // -- basic compression ----------------------------------------------------

  private writePalette(
    r: Rect,
    px: Uint8Array,
    vals: Uint32Array | Uint16Array | Uint8Array,
    count: number,
    ctx: Ctx,
    out: ByteWriter,
  ): void {
    const mono = count === 2;
    const data = mono ? packMono(r, vals, ctx.mask) : indices(r.w * r.h, vals, ctx.mask);
    const stream = mono ? TightStream.Mono : TightStream.Indexed;
    const z = this.compress(stream, mono ? ctx.zlib[1] : ctx.zlib[0], data);
    out.u8((stream << 4) | CTL_EXPLICIT_FILTER | this.resetBits(z.reset));
    out.u8(FILTER_PALETTE);
    out.u8(count - 1);
    for (let k = 0; k < count; k++) writeTPixel(out, px, scratch.palPos[k], ctx);
    writeData(out, data, z.bytes);
  }

  private writeFull(r: Rect, px: Uint8Array, ctx: Ctx, out: ByteWriter): void {
    const n = r.w * r.h;
    // (At zlib level 0 nothing deflates: the filter would only cost time.)
    if (ctx.rgb && ctx.zlib[2] > 0) {
      const zeros = gradientDifferences(px, r.w, r.h, ctx.rgb, scratch.data);
      if (zeros >= ctx.gradientMinZeros * n * 3) {
        const data = scratch.data.subarray(0, n * 3);
        const z = this.compress(TightStream.Gradient, ctx.zlib[2], data);
        out.u8((TightStream.Gradient << 4) | CTL_EXPLICIT_FILTER | this.resetBits(z.reset));
        out.u8(FILTER_GRADIENT);
        writeData(out, data, z.bytes);
        return;
      }
    }
    const data = ctx.rgb ? packRgb(px, n, ctx.rgb, scratch.data) : px.subarray(0, n * ctx.Bpp);
    // Photo-like data that hardly deflates goes stored at the default levels (StorePolicy),
    // where the stream can change its level in place (else each switch would reset it).
    const store = ctx.storeFull && this.levelsInPlace() && this.fullStore.store();
    const z = this.compress(TightStream.FullColour, store ? 0 : ctx.zlib[2], data);
    if (!store && ctx.storeFull && z.bytes) this.fullStore.learn(data.length, z.bytes.length);
    out.u8((TightStream.FullColour << 4) | this.resetBits(z.reset));
    writeData(out, data, z.bytes);
  }

  /**
   * Deflates `data` on stream `id` at `level`, or leaves it alone when `data` is
   * too short to compress. A level change goes through `setLevel` when the
   * stream has it; otherwise the stream is replaced and its reset bit is due.
   */
  private compress(
    id: number,
    level: number,
    data: Uint8Array,
  ): { bytes: Uint8Array | undefined; reset: number } {
    if (data.length < MIN_TO_COMPRESS) return { bytes: undefined, reset: -1 };
    let reset = -1;
    let s = this.streams[id];
    if (s === undefined) {
      s = this.streams[id] = createDeflate(level, this.zlibOpts);
      if (this.resetDue & (1 << id)) {
        this.resetDue &= ~(1 << id);
        reset = id;
      }
    } else if (s.level !== level) {
      if (s.setLevel) s.setLevel(level);
      else {
        s.close();
        s = this.streams[id] = createDeflate(level, this.zlibOpts);
        reset = id;
      }
    }
    const z = scratch.z;
    z.clear();
    s.deflateTo(data, z, "sync");
    return { bytes: z.view(), reset };
  }

  /** The reset bits for a control byte: the stream just replaced (id >= 0), if any. */
  private resetBits(id: number): number {
    return id >= 0 ? 1 << id : 0;
  }

  // -- JPEG ------------------------------------------------------------------

  private writeJpeg(fb: Framebuffer, r: Rect, ctx: Ctx, out: ByteWriter): void {
    const backend = this.jpegBackend;
    let jpg: Uint8Array;
    if (backend === "turbojpeg") {
      const tj = loadTurbo()!;
      const f = fb.format;
      const tjpf = f.bitsPerPixel === 32 ? tjpfOf(f) : -1;
      const direct = tjpf >= 0 && f.trueColour;
      const s: JpegSource = direct
        ? {
          bytes: fb.bytes,
          at: r.y * fb.stride + r.x * 4,
          pitch: fb.stride,
          w: r.w,
          h: r.h,
          tjpf,
        }
        : {
          bytes: convertPixels(fb, r, RGBX32, scratch.img, 0),
          at: 0,
          pitch: r.w * 4,
          w: r.w,
          h: r.h,
          tjpf: TJPF_RGBX,
        };
      jpg = turboCompress(tj, s, ctx.jpeg);
    } else {
      const img = convertPixels(fb, r, RGBX32, scratch.img, 0).subarray(0, r.w * r.h * 4);
      jpg = jpegJs.encode({ data: img, width: r.w, height: r.h }, JPEG_QUALITY[ctx.jpeg]).data;
    }
    out.u8(CTL_JPEG | this.resetBits(-1));
    writeCompactLength(out, jpg.length);
    out.bytes(jpg);
  }

  // -- PNG (TightPNG) ------------------------------------------------------------

  private writePngPalette(
    r: Rect,
    px: Uint8Array,
    vals: Uint32Array | Uint16Array | Uint8Array,
    count: number,
    ctx: Ctx,
    out: ByteWriter,
  ): void {
    const mono = count === 2;
    const data = mono ? packMono(r, vals, ctx.mask) : indices(r.w * r.h, vals, ctx.mask);
    const palette: number[][] = [];
    for (let k = 0; k < count; k++) palette.push(rgb8(px, scratch.palPos[k], ctx));
    const png = encodePng(
      {
        width: r.w,
        height: r.h,
        data: data.slice(),
        channels: 1,
        depth: mono ? 1 : 8,
        palette,
      },
      { zlib: { level: ctx.zlib[mono ? 1 : 0] as ZlibLevel } },
    );
    out.u8(CTL_PNG | this.resetBits(-1));
    writeCompactLength(out, png.length);
    out.bytes(png);
  }

  private writePngFull(r: Rect, px: Uint8Array, ctx: Ctx, out: ByteWriter): void {
    const n = r.w * r.h;
    let data: Uint8Array;
    if (ctx.rgb) data = packRgb(px, n, ctx.rgb, scratch.img);
    else {
      const view = { width: r.w, height: r.h, stride: r.w * ctx.Bpp, format: ctx.pf, bytes: px };
      data = convertPixels(view, { x: 0, y: 0, w: r.w, h: r.h }, RGB24, scratch.img, 0);
    }
    const png = encodePng(
      { width: r.w, height: r.h, data: data.slice(0, n * 3), channels: 3, depth: 8 },
      { zlib: { level: ctx.zlib[2] as ZlibLevel } },
    );
    out.u8(CTL_PNG | this.resetBits(-1));
    writeCompactLength(out, png.length);
    out.bytes(png);
  }
}

type ZlibLevel = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9;

function clampLevel(v: number | undefined, dflt: number): number {
  if (v === undefined || !Number.isFinite(v)) return dflt;
  return Math.min(9, Math.max(0, Math.trunc(v)));
}

/** Writes the TPIXEL of the client-format pixel at index `p` of `px`. */
function writeTPixel(out: ByteWriter, px: Uint8Array, p: number, ctx: Ctx): void {
  if (ctx.rgb) {
    const i = p * 4;
    out.u8(px[i + ctx.rgb[0]]).u8(px[i + ctx.rgb[1]]).u8(px[i + ctx.rgb[2]]);
  } else {
    out.bytes(px.subarray(p * ctx.Bpp, (p + 1) * ctx.Bpp));
  }
}

/** The client-format pixel at index `p`, widened to 8-bit R, G, B. */
function rgb8(px: Uint8Array, p: number, ctx: Ctx): number[] {
  if (ctx.rgb) {
    const i = p * 4;
    return [px[i + ctx.rgb[0]], px[i + ctx.rgb[1]], px[i + ctx.rgb[2]]];
  }
  const view = { width: p + 1, height: 1, stride: (p + 1) * ctx.Bpp, format: ctx.pf, bytes: px };
  const c = convertPixels(view, { x: p, y: 0, w: 1, h: 1 }, RGB24, new Uint8Array(3), 0);
  return [c[0], c[1], c[2]];
}

/** Basic data: raw when short, else compact length and the deflated bytes. */
function writeData(out: ByteWriter, data: Uint8Array, z: Uint8Array | undefined): void {
  if (z === undefined) {
    out.bytes(data);
    return;
  }
  writeCompactLength(out, z.length);
  out.bytes(z);
}

/**
 * The gradient filter's data for `w` x `h` 32 bpp pixels packed in `px` (rows
 * `4 * w` bytes apart) whose R, G, B bytes are at offsets `at`: per pixel and
 * channel, `(value - clamp(left + above - above-left, 0, 255)) & 255`,
 * neighbours outside the rectangle being 0. Writes `w * h * 3` bytes to `dst`;
 * returns how many of them are zero. Through WebAssembly SIMD where the runtime
 * has it (`gradient_wasm.ts`), else {@link gradientDifferencesJs}.
 */
export function gradientDifferences(
  px: Uint8Array,
  w: number,
  h: number,
  at: readonly [number, number, number],
  dst: Uint8Array,
): number {
  return wasmGradient()?.differences(px, w, h, at, dst) ??
    gradientDifferencesJs(px, w, h, at, dst);
}

/** {@link gradientDifferences} in JavaScript: the reference, and the fallback. */
export function gradientDifferencesJs(
  px: Uint8Array,
  w: number,
  h: number,
  at: readonly [number, number, number],
  dst: Uint8Array,
): number {
  let zeros = 0;
  const row = w * 4;
  for (let c = 0; c < 3; c++) {
    const off = at[c];
    // First row: the prediction is the left neighbour.
    let left = 0;
    for (let x = 0, s = off, d = c; x < w; x++, s += 4, d += 3) {
      const v = px[s], diff = (v - left) & 255;
      dst[d] = diff;
      if (diff === 0) zeros++;
      left = v;
    }
    for (let y = 1; y < h; y++) {
      let s = y * row + off, d = y * w * 3 + c;
      let l = 0, upLeft = 0;
      for (let x = 0; x < w; x++, s += 4, d += 3) {
        const up = px[s - row], v = px[s];
        let p = l + up - upLeft;
        p = p < 0 ? 0 : p > 255 ? 255 : p;
        const diff = (v - p) & 255;
        dst[d] = diff;
        if (diff === 0) zeros++;
        l = v;
        upLeft = up;
      }
    }
  }
  return zeros;
}

/** Three-byte TPIXELs (R, G, B) of `n` 32 bpp pixels. */
function packRgb(
  px: Uint8Array,
  n: number,
  at: [number, number, number],
  dst: Uint8Array,
): Uint8Array {
  const [r, g, b] = at;
  for (let i = 0, s = 0, d = 0; i < n; i++, s += 4, d += 3) {
    dst[d] = px[s + r];
    dst[d + 1] = px[s + g];
    dst[d + 2] = px[s + b];
  }
  return dst.subarray(0, n * 3);
}

/** 8-bit palette indices of `n` pixels. */
function indices(
  n: number,
  vals: Uint32Array | Uint16Array | Uint8Array,
  mask: number,
): Uint8Array {
  const dst = scratch.data;
  let prev = -1, idx = 0;
  for (let i = 0; i < n; i++) {
    const c = (vals[i] & mask) >>> 0;
    if (c !== prev) {
      prev = c;
      idx = paletteIndex(c);
    }
    dst[i] = idx;
  }
  return dst.subarray(0, n);
}

/** 1-bit rows, most significant bit leftmost, each row padded to a byte: bit set = colour 1. */
function packMono(r: Rect, vals: Uint32Array | Uint16Array | Uint8Array, mask: number): Uint8Array {
  const dst = scratch.data;
  const bg = scratch.palVal[0];
  const rowBytes = (r.w + 7) >> 3;
  let d = 0, i = 0;
  for (let y = 0; y < r.h; y++) {
    for (let x = 0; x < r.w; x += 8) {
      const end = Math.min(8, r.w - x);
      let byte = 0;
      for (let k = 0; k < end; k++, i++) {
        if (((vals[i] & mask) >>> 0) !== bg) byte |= 0x80 >> k;
      }
      dst[d++] = byte;
    }
  }
  return dst.subarray(0, rowBytes * r.h);
}

/**
 * Tight encoding (7). One instance per client connection: it owns that
 * connection's four zlib streams.
 */
export class TightEncoder extends TightBase {
  constructor(opts: TightOptions = {}) {
    super(Encoding.Tight, false, opts);
  }
}

/**
 * TightPNG encoding (-260): Tight's fill and JPEG, and PNG for everything else.
 * One instance per client connection.
 */
export class TightPNGEncoder extends TightBase {
  constructor(opts: TightOptions = {}) {
    super(Encoding.TightPNG, true, opts);
  }
}
