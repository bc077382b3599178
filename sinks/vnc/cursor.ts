import type { PixelFormat } from "../../pipeline/pixel_format.ts";
import { rgbToPixel } from "../../pipeline/convert_pixels.ts";
import { type ByteWriter, rectHeader } from "./bytes.ts";
import { Encoding } from "./encoder.ts";

/** The arrow's size: a 12 x 19 pointer with its hotspot at the tip. */
const W = 12, H = 19;

/**
 * The shape of a classic arrow pointer, computed rather than drawn by hand:
 * a right triangle (rows 0-12) with a stem below it. 0 transparent, 1 black
 * outline, 2 white fill.
 */
export function arrowShape(): Uint8Array {
  const s = new Uint8Array(W * H);
  const inside = (x: number, y: number) =>
    (y <= 12 && x <= y && x < W) || // the head
    (y > 12 && y < H && x >= 4 + Math.floor((y - 12) / 2) && x <= 6 + Math.floor((y - 12) / 2) &&
      x < W); // the stem, slanting right
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      if (!inside(x, y)) continue;
      const edge = !inside(x - 1, y) || !inside(x + 1, y) || !inside(x, y - 1) ||
        !inside(x, y + 1);
      s[y * W + x] = edge ? 1 : 2;
    }
  }
  return s;
}

/** Writes a Cursor pseudo-rectangle with the arrow in the client's format; returns 1. */
export function arrowCursor(w: ByteWriter, pf: PixelFormat): number {
  const shape = arrowShape();
  rectHeader(w, 0, 0, W, H, Encoding.Cursor);
  const bpp = pf.bitsPerPixel / 8;
  const black = rgbToPixel(0, 0, 0, pf);
  const white = rgbToPixel(pf.redMax, pf.greenMax, pf.blueMax, pf);
  for (let i = 0; i < W * H; i++) {
    const v = shape[i] === 2 ? white : black;
    for (let b = 0; b < bpp; b++) {
      const shift = pf.bigEndian ? (bpp - 1 - b) * 8 : b * 8;
      w.u8((v >>> shift) & 255);
    }
  }
  const rowBytes = Math.ceil(W / 8);
  for (let y = 0; y < H; y++) {
    for (let bx = 0; bx < rowBytes; bx++) {
      let m = 0;
      for (let k = 0; k < 8; k++) {
        const x = bx * 8 + k;
        if (x < W && shape[y * W + x] !== 0) m |= 0x80 >> k;
      }
      w.u8(m);
    }
  }
  return 1;
}
