/**
 * A small client-side RFB decoder for recordings: it reads the server-to-client
 * half of an RFB session (what an FBS file holds) and keeps the framebuffer a
 * viewer would show, as `0x00RRGGBB` words.
 *
 * - **Handshake**: ProtocolVersion 3.3, 3.7 or 3.8; security None or VNC
 *   authentication (the challenge and SecurityResult are skipped); the forms
 *   rfbproxy writes (a 3.3 "no auth" word, or a 3.7+ list `[1]` with no
 *   SecurityResult after it) as well as verbatim 3.8 streams (SecurityResult
 *   present); ServerInit.
 * - **Server messages**: FramebufferUpdate, SetColourMapEntries, Bell,
 *   ServerCutText, EndOfContinuousUpdates, ServerFence, XVP.
 * - **Encodings**: Raw, CopyRect, RRE, CoRRE, Hextile, Zlib, ZRLE; pseudo-encodings
 *   DesktopSize, ExtendedDesktopSize, LastRect, Cursor, XCursor, DesktopName,
 *   PointerPos and QEMU's two. Tight is not decoded (an error names it).
 * - **Pixel formats**: whatever ServerInit announces (8, 16 or 32 bpp, either byte
 *   order, true colour or a colour map), expanded to 8 bits a channel with the
 *   rounding of `convertPixels` (`scaleComponent`), so 32-bpp XRGB is exact.
 *   The recorded stream cannot say whether the client sent SetPixelFormat; like
 *   rfbproxy's player this decoder assumes it did not (FBS 1.1's guarantee, which
 *   rxfb's recorder keeps).
 *
 * Bytes go in with {@link RfbDecoder.push} in pieces of any size; {@link RfbDecoder.next}
 * returns the next complete message, or undefined until more bytes come. A message
 * is decoded only once all of it is there (a first pass measures it), so the zlib
 * streams and the framebuffer never see half a message.
 *
 * @module
 */
import type { PixelFormat } from "../../pipeline/pixel_format.ts";
import type { Rect } from "../../pipeline/rect.ts";
import { scaleComponent } from "../../pipeline/convert_pixels.ts";
import { createInflate, type InflateStream } from "../vnc/zlib.ts";

/** RFB encoding numbers this decoder knows. */
export const RfbEncoding = {
  Raw: 0,
  CopyRect: 1,
  RRE: 2,
  CoRRE: 4,
  Hextile: 5,
  Zlib: 6,
  Tight: 7,
  ZRLE: 16,
  DesktopSize: -223,
  LastRect: -224,
  PointerPos: -232,
  Cursor: -239,
  XCursor: -240,
  QemuPointerMotionChange: -257,
  QemuExtendedKeyEvent: -258,
  TightPNG: -260,
  DesktopName: -307,
  ExtendedDesktopSize: -308,
} as const;

/** ServerInit, once the handshake has been read. */
export interface ServerInitMessage {
  readonly type: "serverInit";
  /** "3.3", "3.7" or "3.8". */
  readonly version: string;
  /** The security type the session used: 1 None, 2 VNC authentication. */
  readonly security: number;
  readonly width: number;
  readonly height: number;
  readonly format: PixelFormat;
  readonly name: string;
}

/** One FramebufferUpdate, applied. */
export interface UpdateMessage {
  readonly type: "update";
  /** The rectangles whose pixels it set (CopyRect: the destination), clipped to the screen. */
  readonly rects: Rect[];
  /** True when it changed the screen size (DesktopSize / ExtendedDesktopSize). */
  readonly resized: boolean;
  /** The screen size after it. */
  readonly width: number;
  readonly height: number;
  /** Rectangles in the message, pseudo-rectangles included. */
  readonly count: number;
}

/** A server message other than an update. */
export interface OtherMessage {
  readonly type: "colourMap" | "bell" | "cutText" | "endOfContinuousUpdates" | "fence" | "xvp";
}

/** What {@link RfbDecoder.next} returns. */
export type RfbMessage = ServerInitMessage | UpdateMessage | OtherMessage;

/** Settings of an {@link RfbDecoder}. */
export interface RfbDecoderOptions {
  /**
   * Decode pixels (default true). False only finds message boundaries, sizes and
   * dirty rectangles: no zlib, no framebuffer (for scanning a file quickly).
   */
  decodePixels?: boolean;
}

/** The recorded bytes are not an RFB session this decoder can follow. */
export class RfbDecodeError extends Error {
  override name = "RfbDecodeError";
}

/** Thrown inside a parse when the message is not complete yet. */
const NEED_MORE = Symbol("need more bytes");

/** A bounds-checked big-endian cursor over the buffered bytes. */
class Cursor {
  constructor(public b: Uint8Array, public p: number, public end: number) {}

  need(n: number): void {
    if (this.p + n > this.end) throw NEED_MORE;
  }
  u8(): number {
    this.need(1);
    return this.b[this.p++];
  }
  u16(): number {
    this.need(2);
    const v = (this.b[this.p] << 8) | this.b[this.p + 1];
    this.p += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const b = this.b, p = this.p;
    this.p += 4;
    return ((b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]) >>> 0;
  }
  s32(): number {
    return this.u32() | 0;
  }
  skip(n: number): void {
    this.need(n);
    this.p += n;
  }
  bytes(n: number): Uint8Array {
    this.need(n);
    const v = this.b.subarray(this.p, this.p + n);
    this.p += n;
    return v;
  }
}

function bswap32(v: number): number {
  return (((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24)) >>> 0;
}

function maskFor(max: number): number {
  return max === 0 ? 0 : (2 ** (32 - Math.clz32(max))) - 1;
}

/** Reads PIXELs / CPIXELs of one format and turns them into 0x00RRGGBB. */
class Pixels {
  /** Bytes per PIXEL. */
  readonly bpp: number;
  /** Bytes per ZRLE CPIXEL, and the shift from a CPIXEL's little-endian value to the pixel's. */
  readonly cpp: number;
  private readonly cshift: number;
  private readonly xrgb: boolean;
  private readonly tables?: { r: Uint32Array; g: Uint32Array; b: Uint32Array };
  /** The colour map (colour-map formats only), 0x00RRGGBB. */
  readonly palette = new Uint32Array(256);

  constructor(readonly f: PixelFormat) {
    if (![8, 16, 32].includes(f.bitsPerPixel)) {
      throw new RfbDecodeError(`pixel format of ${f.bitsPerPixel} bits per pixel`);
    }
    if (!f.trueColour && f.bitsPerPixel !== 8) {
      throw new RfbDecodeError(`colour-map format at ${f.bitsPerPixel} bits per pixel`);
    }
    this.bpp = f.bitsPerPixel >> 3;
    this.xrgb = f.trueColour && f.bitsPerPixel === 32 && !f.bigEndian && f.redMax === 255 &&
      f.greenMax === 255 && f.blueMax === 255 && f.redShift === 16 && f.greenShift === 8 &&
      f.blueShift === 0;
    if (f.trueColour && !this.xrgb) {
      const table = (max: number, shift: number) => {
        const m = maskFor(max), t = new Uint32Array(m + 1);
        for (let c = 0; c <= m; c++) t[c] = scaleComponent(c, max, 255) << shift;
        return t;
      };
      this.tables = {
        r: table(f.redMax, 16),
        g: table(f.greenMax, 8),
        b: table(f.blueMax, 0),
      };
    }
    // CPIXEL (ZRLE): 3 bytes for 32-bpp true colour of depth <= 24 whose colour bits all
    // sit in the least or the most significant three bytes of the pixel value.
    this.cpp = this.bpp;
    this.cshift = 0;
    if (f.bitsPerPixel === 32 && f.trueColour && f.depth <= 24) {
      const used = ((maskFor(f.redMax) << f.redShift) | (maskFor(f.greenMax) << f.greenShift) |
        (maskFor(f.blueMax) << f.blueShift)) >>> 0;
      const fitsLow = (used & 0xff000000) === 0, fitsHigh = (used & 0xff) === 0;
      if (fitsLow || fitsHigh) {
        this.cpp = 3;
        // The CPIXEL is the pixel's three colour bytes in wire order; as a little-endian
        // number it is the little-endian wire value of the pixel shifted right by cshift.
        this.cshift = fitsLow !== f.bigEndian ? 0 : 8;
      }
    }
  }

  /** 0x00RRGGBB of a pixel value. */
  rgb(v: number): number {
    if (this.xrgb) return v & 0xffffff;
    const t = this.tables;
    if (!t) return this.palette[v & 0xff];
    const f = this.f;
    return t.r[Math.min((v >>> f.redShift) & (t.r.length - 1), f.redMax)] |
      t.g[Math.min((v >>> f.greenShift) & (t.g.length - 1), f.greenMax)] |
      t.b[Math.min((v >>> f.blueShift) & (t.b.length - 1), f.blueMax)];
  }

  /** The PIXEL at b[p], as 0x00RRGGBB. */
  pixel(b: Uint8Array, p: number): number {
    switch (this.bpp) {
      case 4: {
        const le = (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
        return this.rgb(this.f.bigEndian ? bswap32(le) : le);
      }
      case 2:
        return this.rgb(this.f.bigEndian ? (b[p] << 8) | b[p + 1] : b[p] | (b[p + 1] << 8));
      default:
        return this.rgb(b[p]);
    }
  }

  /** The CPIXEL at b[p], as 0x00RRGGBB. */
  cpixel(b: Uint8Array, p: number): number {
    if (this.cpp !== 3) return this.pixel(b, p);
    const le = ((b[p] | (b[p + 1] << 8) | (b[p + 2] << 16)) << this.cshift) >>> 0;
    return this.rgb(this.f.bigEndian ? bswap32(le) : le);
  }
}

/** A rectangle of a FramebufferUpdate, as measured. */
interface RectInfo {
  x: number;
  y: number;
  w: number;
  h: number;
  enc: number;
  /** Offset of its data in the buffer. */
  at: number;
}

type Phase = "version" | "security" | "serverInit" | "messages";

const te = new TextDecoder();

/**
 * Decodes the server side of an RFB session. See the module documentation.
 *
 * @example
 * ```ts
 * import { RfbDecoder } from "./rfb_decode.ts";
 * const d = new RfbDecoder();
 * const init = [82, 70, 66, 32, 48, 48, 51, 46, 48, 48, 51, 10, 0, 0, 0, 1, // "RFB 003.003\n", None
 *   0, 2, 0, 1, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0, 0, 0, 0, 0];
 * d.push(Uint8Array.from(init));
 * const m = d.next();
 * if (m?.type !== "serverInit" || m.width !== 2) throw new Error("no ServerInit");
 * // FramebufferUpdate of one rectangle: x 1, y 0, 1x1, Raw; one pixel (bytes B, G, R, X).
 * d.push(Uint8Array.from([0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0x56, 0x34, 0x12, 0]));
 * const u = d.next();
 * if (u?.type !== "update" || d.fb[1] !== 0x123456) throw new Error("not decoded");
 * ```
 */
export class RfbDecoder {
  /** The screen: `fb[y * width + x]` is `0x00RRGGBB` (empty when not decoding pixels). */
  fb: Uint32Array = new Uint32Array(0);
  width = 0;
  height = 0;
  /** ServerInit, once read. */
  init: ServerInitMessage | undefined;
  /** The desktop name (ServerInit's, or a later DesktopName's). */
  name = "";
  /** Bytes taken by complete messages so far. */
  consumed = 0;

  private buf = new Uint8Array(64 * 1024);
  private start = 0;
  private end = 0;
  private phase: Phase = "version";
  private minor = 3;
  private security = 1;
  private px: Pixels | undefined;
  private readonly decodePixels: boolean;
  private zrleZ: InflateStream | undefined;
  private zlibZ: InflateStream | undefined;

  constructor(opts: RfbDecoderOptions = {}) {
    this.decodePixels = opts.decodePixels ?? true;
  }

  /** Bytes pushed and not yet part of a complete message. */
  get buffered(): number {
    return this.end - this.start;
  }

  /** Adds the next bytes of the stream (copied). */
  push(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    if (this.start === this.end) this.start = this.end = 0;
    if (this.buf.length - this.end < bytes.length) {
      const live = this.end - this.start;
      if (this.start > 0 && this.buf.length - live >= bytes.length && live < this.buf.length / 2) {
        this.buf.copyWithin(0, this.start, this.end);
      } else {
        let cap = this.buf.length * 2;
        while (cap < live + bytes.length) cap *= 2;
        const next = new Uint8Array(cap);
        next.set(this.buf.subarray(this.start, this.end));
        this.buf = next;
      }
      this.end = live;
      this.start = 0;
    }
    this.buf.set(bytes, this.end);
    this.end += bytes.length;
  }

  /**
   * The next complete message, applied to {@link fb}; undefined when more bytes are
   * needed. Throws {@link RfbDecodeError} for a stream it cannot follow (and keeps
   * throwing it after).
   */
  next(): RfbMessage | undefined {
    for (;;) {
      const c = new Cursor(this.buf, this.start, this.end);
      let m: RfbMessage | undefined;
      try {
        m = this.step(c);
      } catch (e) {
        if (e === NEED_MORE) return undefined;
        throw e;
      }
      this.consumed += c.p - this.start;
      this.start = c.p;
      if (m) return m;
    }
  }

  /** Frees the zlib streams. */
  close(): void {
    this.zrleZ?.close();
    this.zlibZ?.close();
    this.zrleZ = this.zlibZ = undefined;
  }

  /** Parses one unit (a handshake step or a message); returns a message or undefined for a handshake step. */
  private step(c: Cursor): RfbMessage | undefined {
    switch (this.phase) {
      case "version": {
        const v = te.decode(c.bytes(12));
        const m = /^RFB (\d{3})\.(\d{3})\n$/.exec(v);
        if (!m || Number(m[1]) !== 3) {
          throw new RfbDecodeError(`not an RFB 3.x session (starts with ${JSON.stringify(v)})`);
        }
        const minor = Number(m[2]);
        this.minor = minor >= 8 ? 8 : minor === 7 ? 7 : 3;
        this.phase = "security";
        return undefined;
      }
      case "security":
        this.readSecurity(c);
        this.phase = "serverInit";
        return undefined;
      case "serverInit":
        return this.readServerInit(c);
      case "messages":
        return this.readMessage(c);
    }
  }

  private failure(c: Cursor, what: string): never {
    const n = c.u32();
    const reason = te.decode(c.bytes(n));
    throw new RfbDecodeError(`${what}: ${reason}`);
  }

  private readSecurity(c: Cursor): void {
    if (this.minor === 3) {
      const type = c.u32();
      if (type === 0) this.failure(c, "the recorded session was refused by the server");
      if (type === 2) {
        c.skip(16); // challenge (the client's answer is not recorded)
        this.securityResult(c);
      } else if (type !== 1) {
        throw new RfbDecodeError(`the recorded session used security type ${type}`);
      }
      this.security = type;
      return;
    }
    const n = c.u8();
    if (n === 0) this.failure(c, "the recorded session was refused by the server");
    const types = [...c.bytes(n)];
    // The client's choice is not recorded: None when offered, else VNC authentication.
    if (types.includes(1)) {
      this.security = 1;
      // A verbatim 3.8 stream has SecurityResult (0) here; rfbproxy's files do not.
      // ServerInit cannot start with four zero bytes (a 0x0 screen), so this tells them apart.
      c.need(4);
      const b = c.b, p = c.p;
      if (b[p] === 0 && b[p + 1] === 0 && b[p + 2] === 0 && b[p + 3] === 0) c.skip(4);
    } else if (types.includes(2)) {
      this.security = 2;
      c.skip(16);
      this.securityResult(c);
    } else {
      throw new RfbDecodeError(
        `the recorded session offered security types ${types.join(", ")} ` +
          `(only None and VNC authentication can be followed; others are encrypted)`,
      );
    }
  }

  private securityResult(c: Cursor): void {
    const r = c.u32();
    if (r === 0) return;
    if (this.minor === 8) this.failure(c, "the recorded session failed authentication");
    throw new RfbDecodeError("the recorded session failed authentication");
  }

  private readServerInit(c: Cursor): ServerInitMessage {
    const w = c.u16(), h = c.u16();
    const f = c.bytes(16);
    const format: PixelFormat = {
      bitsPerPixel: f[0],
      depth: f[1],
      bigEndian: f[2] !== 0,
      trueColour: f[3] !== 0,
      redMax: (f[4] << 8) | f[5],
      greenMax: (f[6] << 8) | f[7],
      blueMax: (f[8] << 8) | f[9],
      redShift: f[10],
      greenShift: f[11],
      blueShift: f[12],
    };
    const n = c.u32();
    if (n > 1 << 20) throw new RfbDecodeError(`ServerInit name of ${n} bytes`);
    const name = te.decode(c.bytes(n));
    this.px = new Pixels(format);
    this.name = name;
    this.resize(w, h);
    this.phase = "messages";
    this.init = {
      type: "serverInit",
      version: `3.${this.minor}`,
      security: this.security,
      width: w,
      height: h,
      format,
      name,
    };
    return this.init;
  }

  private resize(w: number, h: number): void {
    if (this.decodePixels) {
      const next = new Uint32Array(w * h);
      // Keep what overlaps (as most viewers do); the server sends the new screen next anyway.
      const cw = Math.min(w, this.width), ch = Math.min(h, this.height);
      for (let y = 0; y < ch; y++) {
        next.set(this.fb.subarray(y * this.width, y * this.width + cw), y * w);
      }
      this.fb = next;
    }
    this.width = w;
    this.height = h;
  }

  private readMessage(c: Cursor): RfbMessage {
    const type = c.u8();
    switch (type) {
      case 0:
        return this.readUpdate(c);
      case 1: { // SetColourMapEntries
        c.skip(1);
        const first = c.u16(), n = c.u16();
        const b = c.bytes(n * 6);
        const pal = this.px!.palette;
        for (let i = 0; i < n && first + i < 256; i++) {
          const o = i * 6;
          pal[first + i] = (b[o] << 16) | (b[o + 2] << 8) | b[o + 4];
        }
        return { type: "colourMap" };
      }
      case 2:
        return { type: "bell" };
      case 3: { // ServerCutText (a negative length: extended clipboard)
        c.skip(3);
        const n = Math.abs(c.s32());
        c.skip(n);
        return { type: "cutText" };
      }
      case 150:
        return { type: "endOfContinuousUpdates" };
      case 248: { // ServerFence
        c.skip(3 + 4);
        c.skip(c.u8());
        return { type: "fence" };
      }
      case 250: // XVP
        c.skip(3);
        return { type: "xvp" };
      default:
        throw new RfbDecodeError(`unknown server message type ${type}`);
    }
  }

  // ---- FramebufferUpdate ---------------------------------------------------

  private readUpdate(c: Cursor): UpdateMessage {
    c.skip(1);
    const n = c.u16();
    // Pass 1: find every rectangle and the end of the message (no side effects).
    const rects: RectInfo[] = [];
    const bpp = this.px!.bpp;
    // n is 0xffff when the server ends the list with LastRect instead.
    for (let i = 0; i < n; i++) {
      const x = c.u16(), y = c.u16(), w = c.u16(), h = c.u16(), enc = c.s32();
      rects.push({ x, y, w, h, enc, at: c.p });
      if (enc === RfbEncoding.LastRect) break;
      this.measure(c, w, h, enc, bpp);
    }
    // Pass 2: apply.
    const dirty: Rect[] = [];
    let resized = false;
    for (const r of rects) {
      if (r.enc === RfbEncoding.DesktopSize) {
        if (r.w !== this.width || r.h !== this.height) resized = true;
        this.resize(r.w, r.h);
        continue;
      }
      if (r.enc === RfbEncoding.ExtendedDesktopSize) {
        // y is the status: non-zero answers a client's SetDesktopSize with a refusal.
        if (r.y === 0 && (r.w !== this.width || r.h !== this.height)) {
          resized = true;
          this.resize(r.w, r.h);
        }
        continue;
      }
      if (r.enc === RfbEncoding.DesktopName) {
        const len = (c.b[r.at] << 24 | c.b[r.at + 1] << 16 | c.b[r.at + 2] << 8 | c.b[r.at + 3]) >>>
          0;
        this.name = te.decode(c.b.subarray(r.at + 4, r.at + 4 + len));
        continue;
      }
      if (r.enc < 0) continue; // cursor shapes, pointer position, QEMU acks, LastRect
      if (r.w === 0 || r.h === 0) continue;
      if (r.x + r.w > this.width || r.y + r.h > this.height) {
        throw new RfbDecodeError(
          `rectangle ${r.w}x${r.h} at ${r.x},${r.y} (encoding ${r.enc}) outside the ` +
            `${this.width}x${this.height} screen`,
        );
      }
      if (this.decodePixels) this.decodeRect(c.b, r);
      dirty.push({ x: r.x, y: r.y, w: r.w, h: r.h });
    }
    return {
      type: "update",
      rects: dirty,
      resized,
      width: this.width,
      height: this.height,
      count: rects.length,
    };
  }

  /** Skips a rectangle's data (pass 1). */
  private measure(c: Cursor, w: number, h: number, enc: number, bpp: number): void {
    switch (enc) {
      case RfbEncoding.Raw:
        c.skip(w * h * bpp);
        return;
      case RfbEncoding.CopyRect:
        c.skip(4);
        return;
      case RfbEncoding.RRE:
        c.skip(c.u32() * (bpp + 8) + bpp);
        return;
      case RfbEncoding.CoRRE:
        c.skip(c.u32() * (bpp + 4) + bpp);
        return;
      case RfbEncoding.Hextile:
        for (let ty = 0; ty < h; ty += 16) {
          const th = Math.min(16, h - ty);
          for (let tx = 0; tx < w; tx += 16) {
            const tw = Math.min(16, w - tx);
            const sub = c.u8();
            if (sub & 1) {
              c.skip(tw * th * bpp);
              continue;
            }
            if (sub & 2) c.skip(bpp);
            if (sub & 4) c.skip(bpp);
            if (sub & 8) c.skip(c.u8() * ((sub & 16 ? bpp : 0) + 2));
          }
        }
        return;
      case RfbEncoding.Zlib:
      case RfbEncoding.ZRLE:
        c.skip(c.u32());
        return;
      case RfbEncoding.DesktopSize:
      case RfbEncoding.PointerPos:
      case RfbEncoding.QemuPointerMotionChange:
      case RfbEncoding.QemuExtendedKeyEvent:
        return;
      case RfbEncoding.Cursor:
        c.skip(w * h * bpp + ((w + 7) >> 3) * h);
        return;
      case RfbEncoding.XCursor:
        if (w * h > 0) c.skip(6 + 2 * ((w + 7) >> 3) * h);
        return;
      case RfbEncoding.DesktopName:
        c.skip(c.u32());
        return;
      case RfbEncoding.ExtendedDesktopSize: {
        const screens = c.u8();
        c.skip(3 + 16 * screens);
        return;
      }
      case RfbEncoding.Tight:
      case RfbEncoding.TightPNG:
        throw new RfbDecodeError(`Tight encoding (${enc}) is not supported by this decoder`);
      default:
        throw new RfbDecodeError(`unknown encoding ${enc}`);
    }
  }

  // ---- pixel decoding (pass 2) ---------------------------------------------

  private fill(x: number, y: number, w: number, h: number, v: number): void {
    const fb = this.fb, W = this.width;
    for (let j = 0; j < h; j++) {
      const row = (y + j) * W + x;
      fb.fill(v, row, row + w);
    }
  }

  /** Writes w*h packed PIXELs (or CPIXELs) from b[p] into the screen at (x, y); returns the end. */
  private putPixels(
    b: Uint8Array,
    p: number,
    x: number,
    y: number,
    w: number,
    h: number,
    cp = false,
  ): number {
    const px = this.px!, fb = this.fb, W = this.width;
    const size = cp ? px.cpp : px.bpp;
    if (p + w * h * size > b.length) throw new RfbDecodeError("pixel data ends early");
    for (let j = 0; j < h; j++) {
      let o = (y + j) * W + x;
      for (let i = 0; i < w; i++, p += size) fb[o++] = cp ? px.cpixel(b, p) : px.pixel(b, p);
    }
    return p;
  }

  private decodeRect(b: Uint8Array, r: RectInfo): void {
    const px = this.px!, bpp = px.bpp;
    const { x, y, w, h } = r;
    let p = r.at;
    const u16 = () => {
      const v = (b[p] << 8) | b[p + 1];
      p += 2;
      return v;
    };
    const u32 = () => {
      const v = ((b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]) >>> 0;
      p += 4;
      return v;
    };
    switch (r.enc) {
      case RfbEncoding.Raw:
        this.putPixels(b, p, x, y, w, h);
        return;
      case RfbEncoding.CopyRect: {
        const sx = u16(), sy = u16();
        if (sx + w > this.width || sy + h > this.height) {
          throw new RfbDecodeError(`CopyRect source ${w}x${h} at ${sx},${sy} outside the screen`);
        }
        const tmp = new Uint32Array(w * h), fb = this.fb, W = this.width;
        for (let j = 0; j < h; j++) {
          tmp.set(fb.subarray((sy + j) * W + sx, (sy + j) * W + sx + w), j * w);
        }
        for (let j = 0; j < h; j++) fb.set(tmp.subarray(j * w, j * w + w), (y + j) * W + x);
        return;
      }
      case RfbEncoding.RRE:
      case RfbEncoding.CoRRE: {
        const small = r.enc === RfbEncoding.CoRRE;
        const n = u32();
        this.fill(x, y, w, h, px.pixel(b, p));
        p += bpp;
        for (let i = 0; i < n; i++) {
          const v = px.pixel(b, p);
          p += bpp;
          let sx, sy, sw, sh;
          if (small) {
            sx = b[p], sy = b[p + 1], sw = b[p + 2], sh = b[p + 3];
            p += 4;
          } else {
            sx = u16(), sy = u16(), sw = u16(), sh = u16();
          }
          if (sx + sw > w || sy + sh > h) {
            throw new RfbDecodeError("RRE subrectangle outside its rectangle");
          }
          this.fill(x + sx, y + sy, sw, sh, v);
        }
        return;
      }
      case RfbEncoding.Hextile: {
        let bg = 0, fg = 0;
        for (let ty = 0; ty < h; ty += 16) {
          const th = Math.min(16, h - ty);
          for (let tx = 0; tx < w; tx += 16) {
            const tw = Math.min(16, w - tx);
            const sub = b[p++];
            if (sub & 1) {
              p = this.putPixels(b, p, x + tx, y + ty, tw, th);
              continue;
            }
            if (sub & 2) {
              bg = px.pixel(b, p);
              p += bpp;
            }
            this.fill(x + tx, y + ty, tw, th, bg);
            if (sub & 4) {
              fg = px.pixel(b, p);
              p += bpp;
            }
            if (sub & 8) {
              const n = b[p++];
              for (let i = 0; i < n; i++) {
                let v = fg;
                if (sub & 16) {
                  v = px.pixel(b, p);
                  p += bpp;
                }
                const xy = b[p++], wh = b[p++];
                const sx = xy >> 4, sy = xy & 15, sw = (wh >> 4) + 1, sh = (wh & 15) + 1;
                if (sx + sw > tw || sy + sh > th) {
                  throw new RfbDecodeError("Hextile subrectangle outside its tile");
                }
                this.fill(x + tx + sx, y + ty + sy, sw, sh, v);
              }
            }
          }
        }
        return;
      }
      case RfbEncoding.Zlib: {
        const n = u32();
        this.zlibZ ??= createInflate();
        const data = this.zlibZ.inflate(b.subarray(p, p + n));
        if (data.length !== w * h * bpp) {
          throw new RfbDecodeError(
            `Zlib rectangle inflated to ${data.length} bytes, not ${w * h * bpp}`,
          );
        }
        this.putPixels(data, 0, x, y, w, h);
        return;
      }
      case RfbEncoding.ZRLE: {
        const n = u32();
        this.zrleZ ??= createInflate();
        this.decodeZrle(this.zrleZ.inflate(b.subarray(p, p + n)), x, y, w, h);
        return;
      }
    }
  }

  private decodeZrle(d: Uint8Array, x: number, y: number, w: number, h: number): void {
    const px = this.px!, cpp = px.cpp, fb = this.fb, W = this.width;
    const pal = new Uint32Array(128);
    let p = 0;
    const short = () => new RfbDecodeError("ZRLE data ends early");
    const runLength = () => {
      let len = 1, v;
      do {
        if (p >= d.length) throw short();
        v = d[p++];
        len += v;
      } while (v === 255);
      return len;
    };
    for (let ty = 0; ty < h; ty += 64) {
      const th = Math.min(64, h - ty);
      for (let tx = 0; tx < w; tx += 64) {
        const tw = Math.min(64, w - tx);
        if (p >= d.length) throw short();
        const sub = d[p++];
        const X = x + tx, Y = y + ty;
        if (sub === 0) {
          p = this.putPixels(d, p, X, Y, tw, th, true);
        } else if (sub === 1) {
          if (p + cpp > d.length) throw short();
          this.fill(X, Y, tw, th, px.cpixel(d, p));
          p += cpp;
        } else if (sub <= 16) {
          if (p + sub * cpp > d.length) throw short();
          for (let i = 0; i < sub; i++, p += cpp) pal[i] = px.cpixel(d, p);
          const bits = sub === 2 ? 1 : sub <= 4 ? 2 : 4;
          const rowBytes = (tw * bits + 7) >> 3, mask = (1 << bits) - 1;
          if (p + rowBytes * th > d.length) throw short();
          for (let j = 0; j < th; j++) {
            let o = (Y + j) * W + X;
            for (let i = 0; i < tw; i++) {
              const bit = i * bits;
              const idx = (d[p + (bit >> 3)] >> (8 - bits - (bit & 7))) & mask;
              if (idx >= sub) throw new RfbDecodeError("ZRLE palette index out of range");
              fb[o++] = pal[idx];
            }
            p += rowBytes;
          }
        } else if (sub === 128 || sub >= 130) {
          const palSize = sub - 128;
          if (p + palSize * cpp > d.length) throw short();
          for (let i = 0; i < palSize; i++, p += cpp) pal[i] = px.cpixel(d, p);
          let i = 0;
          const total = tw * th;
          while (i < total) {
            let v, run = 1;
            if (palSize === 0) {
              if (p + cpp > d.length) throw short();
              v = px.cpixel(d, p);
              p += cpp;
              run = runLength();
            } else {
              if (p >= d.length) throw short();
              const idx = d[p++];
              if ((idx & 127) >= palSize) {
                throw new RfbDecodeError("ZRLE palette index out of range");
              }
              v = pal[idx & 127];
              if (idx & 128) run = runLength();
            }
            if (i + run > total) throw new RfbDecodeError("ZRLE run past the end of its tile");
            for (const end = i + run; i < end; i++) {
              fb[(Y + Math.floor(i / tw)) * W + X + (i % tw)] = v;
            }
          }
        } else {
          throw new RfbDecodeError(`ZRLE subencoding ${sub}`);
        }
      }
    }
    if (p !== d.length) {
      throw new RfbDecodeError(`ZRLE rectangle has ${d.length - p} bytes left over`);
    }
  }
}
