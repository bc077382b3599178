import type { Framebuffer } from "../../pipeline/framebuffer.ts";
import type { PixelFormat } from "../../pipeline/pixel_format.ts";
import type { Rect } from "../../pipeline/rect.ts";
import type { ByteWriter } from "./bytes.ts";
import type { EncodePool } from "./encode_pool.ts";

/** RFB encoding numbers (RFC 6143 §7.7 and the community spec). */
export const Encoding = {
  Raw: 0,
  CopyRect: 1,
  RRE: 2,
  Hextile: 5,
  Zlib: 6,
  Tight: 7,
  ZRLE: 16,
  TightPNG: -260,
  // pseudo-encodings
  JpegQuality0: -32, // -32..-23: quality 0..9
  JpegQuality9: -23,
  DesktopSize: -223,
  LastRect: -224,
  Cursor: -239,
  XCursor: -240,
  CompressLevel0: -256, // -256..-247: compress level 0..9
  CompressLevel9: -247,
  QemuPointerMotionChange: -257,
  QemuExtendedKeyEvent: -258,
  DesktopName: -307,
  ExtendedDesktopSize: -308,
  Fence: -312,
  ContinuousUpdates: -313,
} as const;

/** What an encoder knows of its client's wishes. */
export interface EncodeOptions {
  /** The client's pixel format. */
  readonly pf: PixelFormat;
  /** 0..9, from the CompressLevel pseudo-encoding; undefined when the client sent none. */
  readonly compressLevel?: number;
  /** 0..9, from the JPEG quality pseudo-encoding; undefined means no lossy encoding. */
  readonly jpegQuality?: number;
}

/**
 * One RFB encoding: turns a rectangle of the framebuffer into one or more
 * FramebufferUpdate rectangles (each with its 12-byte header) appended to
 * `out`, in the client's pixel format. An instance belongs to one client
 * connection and keeps that connection's state (zlib streams, as the spec
 * requires them to persist). Returns how many rectangles it wrote.
 */
export interface RectEncoder {
  readonly encoding: number;
  encode(fb: Framebuffer, r: Rect, opts: EncodeOptions, out: ByteWriter): number;
  /**
   * Optional: the same, spread over the workers of `pool`. Reads `fb` before
   * returning (it may change afterwards); appends the rectangles to `out` when
   * done and resolves with their number.
   */
  encodeParallel?(
    fb: Framebuffer,
    r: Rect,
    opts: EncodeOptions,
    out: ByteWriter,
    pool: EncodePool,
  ): Promise<number>;
  /**
   * Optional, with encodeParallel: the smallest rectangle (pixels) worth sending to
   * the workers with these options (a band must cost more than its messages).
   */
  parallelMinArea?(opts: EncodeOptions): number;
  /** Frees what the encoder holds (zlib streams); called when its connection ends. */
  close?(): void;
}
