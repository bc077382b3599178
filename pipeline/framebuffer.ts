import type { PixelFormat } from "./pixel_format.ts";

/**
 * A guest framebuffer: a view on guest memory, never a copy. Pixel (x, y)
 * starts at `bytes[y * stride + x * bytesPerPixel(format)]`. The guest may
 * write to it at any time; read it when you encode, not before.
 */
export interface Framebuffer {
  readonly width: number;
  readonly height: number;
  /** Bytes per row (the PV `line_length`). */
  readonly stride: number;
  readonly format: PixelFormat;
  /** Starts at pixel (0, 0); at least `stride * (height - 1) + width * Bpp` bytes long. */
  readonly bytes: Uint8Array;
}
