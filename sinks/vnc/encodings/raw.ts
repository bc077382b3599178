/**
 * Raw encoding (0): the rectangle's pixels in the client's format, row after
 * row. Also home of {@link ClientPixels}, which the other encoders use to see a
 * rectangle as pixel values of the client's format.
 *
 * @module
 */
import { convertPixels } from "../../../pipeline/convert_pixels.ts";
import type { Framebuffer } from "../../../pipeline/framebuffer.ts";
import {
  bytesPerPixel,
  HOST_LE,
  type PixelFormat,
  sameFormat,
} from "../../../pipeline/pixel_format.ts";
import type { Rect } from "../../../pipeline/rect.ts";
import { type ByteWriter, rectHeader, UseWindow } from "../bytes.ts";
import { type EncodeOptions, Encoding, type RectEncoder } from "../encoder.ts";

/**
 * Raw: header, then `w * h` PIXELs converted straight into the writer's buffer.
 *
 * @example
 * ```ts
 * import { RawEncoder } from "./raw.ts";
 * import { ByteWriter } from "../bytes.ts";
 * import { XRGB8888 } from "../../../pipeline/pixel_format.ts";
 * import { assertStrictEquals } from "@rxfb/assert";
 *
 * const fb = { width: 4, height: 2, stride: 16, format: XRGB8888, bytes: new Uint8Array(32) };
 * const out = new ByteWriter();
 * new RawEncoder().encode(fb, { x: 1, y: 0, w: 3, h: 2 }, { pf: XRGB8888 }, out);
 * assertStrictEquals(out.length, 12 + 3 * 2 * 4);
 * ```
 */
export class RawEncoder implements RectEncoder {
  readonly encoding = Encoding.Raw;

  encode(fb: Framebuffer, r: Rect, opts: EncodeOptions, out: ByteWriter): number {
    if (r.w <= 0 || r.h <= 0) return 0;
    rectHeader(out, r.x, r.y, r.w, r.h, Encoding.Raw);
    const n = r.w * r.h * bytesPerPixel(opts.pf);
    convertPixels(fb, r, opts.pf, out.claim(n));
    return 1;
  }
}

// ---------------------------------------------------------------------------
// Client pixel values

/**
 * A rectangle's pixels as values of the client's format: pixel (i, j) is
 * `(px[at + j * stride + i] & mask)`. A value is the pixel's bytes as they go on the
 * wire, read little-endian (byte 0 in bits 0-7), whatever the client's byte order:
 * equal values are equal pixels, and writing a value's low `bpp` bytes little-endian
 * gives the wire bytes. `mask` clears the padding bits (which a same-format view of
 * the guest's memory may hold); it is -1 when there are none to clear.
 */
export interface PixelBlock {
  readonly px: Int32Array | Uint16Array | Uint8Array;
  readonly at: number;
  readonly stride: number;
  /** Bytes per pixel: 1, 2 or 4. */
  readonly bpp: number;
  readonly mask: number;
}

/** Swaps the bytes of a 32-bit value. */
export function bswap32(v: number): number {
  return ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24);
}

/**
 * The bits of a pixel value (as {@link PixelBlock} defines it) that hold colour in
 * format `f`: all of them but the padding.
 */
export function colourMask(f: PixelFormat): number {
  const m = (max: number) => max === 0 ? 0 : (2 ** (32 - Math.clz32(max))) - 1;
  let u = ((m(f.redMax) << f.redShift) | (m(f.greenMax) << f.greenShift) |
    (m(f.blueMax) << f.blueShift)) >>> 0;
  const bits = f.bitsPerPixel;
  if (bits < 32) u &= (1 << bits) - 1;
  if (!f.bigEndian || bits === 8) return u | 0;
  return bits === 16 ? ((u & 0xff) << 8) | (u >>> 8) : bswap32(u) | 0;
}

/**
 * Gives encoders a rectangle's pixels in the client's format as a {@link PixelBlock}:
 * a view on the guest's memory when the formats agree (and it is aligned), else the
 * converted pixels in a scratch buffer that it keeps between calls.
 */
export class ClientPixels {
  private scratch = new ArrayBuffer(0);
  private readonly uses = new UseWindow();

  read(fb: Framebuffer, r: Rect, pf: PixelFormat): PixelBlock {
    const bpp = bytesPerPixel(pf);
    if (bpp !== 1 && bpp !== 2 && bpp !== 4) {
      throw new RangeError(`client bitsPerPixel ${pf.bitsPerPixel} not 8, 16 or 32`);
    }
    const full = bpp === 4 ? -1 : (1 << (8 * bpp)) - 1;
    const cm = colourMask(pf);
    if (sameFormat(fb.format, pf) && (bpp === 1 || HOST_LE)) {
      const b = fb.bytes;
      const start = b.byteOffset + r.y * fb.stride + r.x * bpp;
      if (start % bpp === 0 && fb.stride % bpp === 0 && r.w > 0 && r.h > 0) {
        const base = b.byteOffset - (b.byteOffset % bpp);
        const len = Math.floor((b.byteOffset + b.length - base) / bpp);
        const px = bpp === 4
          ? new Int32Array(b.buffer, base, len)
          : bpp === 2
          ? new Uint16Array(b.buffer, base, len)
          : new Uint8Array(b.buffer, base, len);
        return {
          px,
          at: (start - base) / bpp,
          stride: fb.stride / bpp,
          bpp,
          mask: cm === full ? -1 : cm,
        };
      }
    }
    const need = r.w * r.h * bpp;
    const trimTo = this.uses.use(need, this.scratch.byteLength);
    if (this.scratch.byteLength < need) {
      this.scratch = new ArrayBuffer(Math.max(need, this.scratch.byteLength * 2, 4096));
    } else if (trimTo) this.scratch = new ArrayBuffer(trimTo);
    const bytes = new Uint8Array(this.scratch, 0, need);
    convertPixels(fb, r, pf, bytes);
    const n = r.w * r.h;
    let px: Int32Array | Uint16Array | Uint8Array;
    if (bpp === 4) {
      px = new Int32Array(this.scratch, 0, n);
      if (!HOST_LE) { for (let i = 0; i < n; i++) px[i] = bswap32(px[i]); }
    } else if (bpp === 2) {
      px = new Uint16Array(this.scratch, 0, n);
      if (!HOST_LE) { for (let i = 0; i < n; i++) px[i] = ((px[i] & 0xff) << 8) | (px[i] >>> 8); }
    } else {
      px = bytes;
    }
    // Conversion leaves padding bits 0, except a same-format copy, which keeps them.
    const mask = sameFormat(fb.format, pf) && cm !== full ? cm : -1;
    return { px, at: 0, stride: r.w, bpp, mask };
  }

  /** Copies a tile of `b` (relative to the block) into `tile` (tightly packed), masked. */
  static copyTile(
    b: PixelBlock,
    tx: number,
    ty: number,
    tw: number,
    th: number,
    tile: Int32Array,
    shift = 0,
  ): void {
    const { px, stride, mask } = b;
    let k = 0;
    for (let j = 0; j < th; j++) {
      let i = b.at + (ty + j) * stride + tx;
      const end = i + tw;
      if (mask === -1 && shift === 0) {
        while (i < end) tile[k++] = px[i++];
      } else {
        while (i < end) tile[k++] = (px[i++] & mask) >>> shift;
      }
    }
  }
}

/** Writes the low `bpp` bytes of `v`, least significant first, at `buf[o]`. Returns the new offset. */
export function putPixel(buf: Uint8Array, o: number, v: number, bpp: number): number {
  buf[o] = v;
  if (bpp > 1) {
    buf[o + 1] = v >>> 8;
    if (bpp > 2) {
      buf[o + 2] = v >>> 16;
      if (bpp > 3) buf[o + 3] = v >>> 24;
    }
  }
  return o + bpp;
}
