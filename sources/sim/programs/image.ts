/**
 * A guest that shows a PNG image at its own size: frame 0 draws it, later
 * frames change nothing.
 *
 * ```ts
 * import { encode } from "fast-png";
 * import { decodeToXrgb } from "./image.ts";
 * const png = encode({ width: 1, height: 1, data: new Uint8Array([1, 2, 3]), channels: 3 });
 * const { px } = decodeToXrgb(png);
 * if (px[0] !== 0x010203) throw new Error("wrong pixel");
 * ```
 *
 * @module
 */

import { decode } from "fast-png";
import type { Rect } from "../../../pipeline/rect.ts";
import type { DrawTarget, GuestProgram } from "./workloads.ts";

/** A decoded image: `px[y * width + x]` is `0x00RRGGBB`. */
export interface XrgbImage {
  width: number;
  height: number;
  px: Uint32Array;
}

/**
 * Decodes a PNG to `0x00RRGGBB` pixels: greyscale, RGB, palette, with or
 * without alpha, depths 1 to 16. Alpha is composited on black.
 */
export function decodeToXrgb(bytes: Uint8Array): XrgbImage {
  const png = decode(bytes);
  const { width, height, depth, channels } = png;
  const data = png.data;
  const px = new Uint32Array(width * height);
  if (png.palette) {
    const pal = png.palette.map((c) => {
      const a = c.length > 3 ? c[3] : 255;
      return (over(c[0], a, 255) << 16) | (over(c[1], a, 255) << 8) | over(c[2], a, 255);
    });
    const rowBytes = Math.ceil((width * depth) / 8);
    forEachSample(data, width, height, depth, rowBytes, (i, v) => {
      px[i] = pal[v] ?? 0;
    });
    return { width, height, px };
  }
  const max = (1 << depth) - 1;
  const to8 = (v: number) => Math.round((v * 255) / max);
  if (depth < 8) {
    // Only greyscale images have sub-byte samples (without palette).
    const rowBytes = Math.ceil((width * depth) / 8);
    forEachSample(data, width, height, depth, rowBytes, (i, v) => {
      const g = to8(v);
      px[i] = (g << 16) | (g << 8) | g;
    });
    return { width, height, px };
  }
  if (data.length < width * height * channels) {
    throw new Error(
      `PNG data too short: ${data.length} samples for ${width}x${height}x${channels}`,
    );
  }
  const shift = depth === 16 ? 8 : 0;
  for (let i = 0, s = 0; i < width * height; i++, s += channels) {
    let r: number, g: number, b: number, a = max;
    switch (channels) {
      case 1:
        r = g = b = data[s];
        break;
      case 2:
        r = g = b = data[s];
        a = data[s + 1];
        break;
      case 3:
        r = data[s];
        g = data[s + 1];
        b = data[s + 2];
        break;
      case 4:
        r = data[s];
        g = data[s + 1];
        b = data[s + 2];
        a = data[s + 3];
        break;
      default:
        throw new Error(`unsupported PNG channel count ${channels}`);
    }
    if (a !== max) {
      r = over(r, a, max);
      g = over(g, a, max);
      b = over(b, a, max);
    }
    px[i] = ((r >> shift) << 16) | ((g >> shift) << 8) | (b >> shift);
  }
  return { width, height, px };
}

/** A sample of alpha a (of max) composited on black. */
function over(v: number, a: number, max: number): number {
  return a === max ? v : Math.round((v * a) / max);
}

/** Calls f(pixel index, sample) for each packed sample of depth 1, 2, 4 or 8. */
function forEachSample(
  data: ArrayLike<number>,
  width: number,
  height: number,
  depth: number,
  rowBytes: number,
  f: (i: number, v: number) => void,
): void {
  if (data.length < rowBytes * height) {
    throw new Error(`PNG data too short: ${data.length} bytes for ${height} rows of ${rowBytes}`);
  }
  const mask = (1 << depth) - 1;
  for (let y = 0; y < height; y++) {
    const row = y * rowBytes;
    for (let x = 0; x < width; x++) {
      const bit = x * depth;
      const byte = data[row + (bit >> 3)];
      f(y * width + x, (byte >> (8 - depth - (bit & 7))) & mask);
    }
  }
}

/** Makes a program that shows the image: frame 0 (or any frame into a new target) draws it. */
export function imageProgram(img: XrgbImage): GuestProgram {
  let lastBuf: ArrayBufferLike | undefined;
  let lastOff = -1, lastStride = -1, lastW = -1, lastH = -1;
  return {
    drawFrame(t: DrawTarget, n: number): Rect[] {
      if (
        n !== 0 && t.px.buffer === lastBuf && t.px.byteOffset === lastOff &&
        t.strideWords === lastStride && t.width === lastW && t.height === lastH
      ) return [];
      const w = Math.min(t.width, img.width), h = Math.min(t.height, img.height);
      for (let y = 0; y < t.height; y++) {
        const row = y * t.strideWords;
        if (y < h) {
          t.px.set(img.px.subarray(y * img.width, y * img.width + w), row);
          t.px.fill(0, row + w, row + t.width);
        } else t.px.fill(0, row, row + t.width);
      }
      lastBuf = t.px.buffer;
      lastOff = t.px.byteOffset;
      lastStride = t.strideWords;
      lastW = t.width;
      lastH = t.height;
      return [{ x: 0, y: 0, w: t.width, h: t.height }];
    },
  };
}

/** Loads a PNG file; the guest's screen takes the image's size. */
export async function createImage(
  path: string,
): Promise<{ width: number; height: number; program: GuestProgram }> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new Error(`cannot read image ${path}: ${(e as Error).message}`);
  }
  let img: XrgbImage;
  try {
    img = decodeToXrgb(bytes);
  } catch (e) {
    throw new Error(`cannot decode PNG ${path}: ${(e as Error).message}`);
  }
  return { width: img.width, height: img.height, program: imageProgram(img) };
}
