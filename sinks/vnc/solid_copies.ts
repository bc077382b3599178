/**
 * Solid blocks for Raw viewers by CopyRect: a small rectangle made of
 * single-colour 8 x 8 blocks (a character cell being cleared, a blinking
 * cursor, a checkbox, an indicator) is sent as one CopyRect per block from a
 * block of the same colour the viewer already shows, 16 bytes instead of 268.
 * Raw has no way to say "this colour here" other than every pixel, and this
 * is the one the protocol gives it; Hextile, ZRLE and Tight have their own
 * solid sub-encodings and do not need it.
 *
 * Where the viewer shows a colour is learnt from what it is sent (the blocks
 * of small Raw rectangles), or else looked for around the rectangle (the rest
 * of a line of cells, the background around a moving block).
 * A place is used only after two checks against the shadow, so a CopyRect
 * never paints what the viewer would not have been sent: the block there has
 * the colour in the shadow, and it lies outside the update's region, where
 * (the {@link UpdateTracker}'s invariant) the viewer's pixels equal the
 * shadow's, before and after every rectangle of the update.
 *
 * @example
 * ```ts
 * import { SolidSources } from "./solid_copies.ts";
 * import { ShadowFramebuffer } from "../../pipeline/compare_tiles.ts";
 * import { XRGB8888 } from "../../pipeline/pixel_format.ts";
 * import { Region } from "../../pipeline/region.ts";
 * import { assertEquals } from "@rxfb/assert";
 *
 * const fb = new ShadowFramebuffer(64, 16, XRGB8888); // black
 * const s = new SolidSources();
 * const dst = { x: 32, y: 8, w: 8, h: 8 };
 * // The block left of it is black, and the update does not send it.
 * assertEquals(s.plan(fb, dst, Region.fromRect(dst)), [{ x: 32, y: 8, sx: 24, sy: 8 }]);
 * // When the update sends the whole screen, the viewer may have no black anywhere yet.
 * assertEquals(s.plan(fb, dst, Region.fromRect({ x: 0, y: 0, w: 64, h: 16 })), undefined);
 * ```
 *
 * @module
 */
import type { Framebuffer } from "../../pipeline/framebuffer.ts";
import { wordsOf } from "../../pipeline/memcmp.ts";
import { bytesPerPixel } from "../../pipeline/pixel_format.ts";
import type { Rect } from "../../pipeline/rect.ts";
import type { Region } from "../../pipeline/region.ts";

/** The block size: the copies' unit. */
export const BLOCK = 8;

/** Rectangles larger than this (pixels) are sent as they are (and not learnt from). */
export const MAX_AREA = 64 * 64;

/** Places remembered per colour, newest first, and colours remembered. */
const PLACES = 8, COLOURS = 64;

/** One CopyRect: the block at (x, y) takes the pixels of the block at (sx, sy). */
export interface BlockCopy {
  readonly x: number;
  readonly y: number;
  readonly sx: number;
  readonly sy: number;
}

/** One viewer's places of solid blocks, by colour (the shadow's pixel value). */
export class SolidSources {
  private readonly places = new Map<number, { x: number; y: number }[]>();

  /** Forgets every place (the viewer got a new framebuffer). */
  clear(): void {
    this.places.clear();
  }

  /**
   * The copies that paint all of `r` from places the viewer has, or undefined
   * when some block of `r` is not one colour or has no usable place (then `r`
   * goes as pixels). `region` is the update's: places inside it are not used.
   */
  plan(fb: Framebuffer, r: Rect, region: Region): BlockCopy[] | undefined {
    const colours = blockColours(fb, r);
    return colours && this.copies(fb, r, region, colours);
  }

  /** The viewer is being sent `r` as pixels: its solid blocks are places from then on. */
  learn(fb: Framebuffer, r: Rect): void {
    const colours = blockColours(fb, r);
    if (colours) this.remember(r, colours);
  }

  /**
   * {@link plan}, and when that gives nothing, {@link learn} (for `r` then goes
   * as pixels): the blocks' colours are read once.
   */
  take(fb: Framebuffer, r: Rect, region: Region): BlockCopy[] | undefined {
    const colours = blockColours(fb, r);
    if (!colours) return undefined;
    const out = this.copies(fb, r, region, colours);
    if (!out) this.remember(r, colours);
    return out;
  }

  private copies(
    fb: Framebuffer,
    r: Rect,
    region: Region,
    colours: (number | undefined)[],
  ): BlockCopy[] | undefined {
    // Every block one colour, or nothing to look for (most rectangles of a busy screen stop here).
    if (colours.includes(undefined)) return undefined;
    const busy = region.rects();
    // The region first (a few rectangles), then the pixels, which mostly differ at the first.
    const usable = (x: number, y: number, c: number) =>
      !busy.some((b) => overlaps(b, x, y)) && solidIn(fb, x, y, c);
    // One place per colour serves every block of that colour (it lies outside the region,
    // so no block of this update changes it).
    const source = new Map<number, { x: number; y: number } | null>();
    const out: BlockCopy[] = [];
    let i = 0;
    for (let y = r.y; y < r.y + r.h; y += BLOCK) {
      for (let x = r.x; x < r.x + r.w; x += BLOCK) {
        const c = colours[i++]!;
        let p = source.get(c);
        if (p === undefined) {
          p = this.places.get(c)?.find((p) => usable(p.x, p.y, c)) ?? near(r, c, usable) ??
            null;
          source.set(c, p);
        }
        if (p === null) return undefined;
        out.push({ x, y, sx: p.x, sy: p.y });
      }
    }
    return out;
  }

  private remember(r: Rect, colours: (number | undefined)[]): void {
    let i = 0;
    for (let y = r.y; y < r.y + r.h; y += BLOCK) {
      for (let x = r.x; x < r.x + r.w; x += BLOCK) {
        const c = colours[i++];
        if (c === undefined) continue;
        const list = this.places.get(c) ?? [];
        const k = list.findIndex((p) => p.x === x && p.y === y);
        if (k >= 0) list.splice(k, 1);
        list.unshift({ x, y });
        if (list.length > PLACES) list.length = PLACES;
        this.places.delete(c); // the map's order is the colours' recency
        this.places.set(c, list);
      }
    }
    // Bounded: a screen of many colours keeps the colours seen last.
    while (this.places.size > COLOURS) this.places.delete(this.places.keys().next().value!);
  }
}

/** Each block's colour (undefined: not one colour), row by row; undefined when `r` does not fit. */
function blockColours(fb: Framebuffer, r: Rect): (number | undefined)[] | undefined {
  if (!fits(fb, r)) return undefined;
  const out: (number | undefined)[] = [];
  for (let y = r.y; y < r.y + r.h; y += BLOCK) {
    for (let x = r.x; x < r.x + r.w; x += BLOCK) out.push(solidColour(fb, x, y));
  }
  return out;
}

/** Blocks looked at each way beside a rectangle, on each of its rows of blocks. */
const NEAR_BLOCKS = 8;

/**
 * A usable place of colour `c` near `r`: beside it on its rows of blocks,
 * nearest first, then just above and below it (the rest of a line of cells,
 * the background around a moving block). Most tries fail at their first
 * pixel; the search is short, for it runs on every update of a Raw viewer.
 */
function near(
  r: Rect,
  c: number,
  usable: (x: number, y: number, c: number) => boolean,
): { x: number; y: number } | undefined {
  for (let k = 0; k < NEAR_BLOCKS; k++) {
    const left = r.x - (k + 1) * BLOCK, right = r.x + r.w + k * BLOCK;
    for (let y = r.y; y < r.y + r.h; y += BLOCK) {
      if (usable(left, y, c)) return { x: left, y };
      if (usable(right, y, c)) return { x: right, y };
    }
  }
  for (let x = r.x; x < r.x + r.w; x += BLOCK) {
    if (usable(x, r.y - BLOCK, c)) return { x, y: r.y - BLOCK };
    if (usable(x, r.y + r.h, c)) return { x, y: r.y + r.h };
  }
  return undefined;
}

/** True when the block at (x, y) and `b` share a pixel. */
function overlaps(b: Rect, x: number, y: number): boolean {
  return x < b.x + b.w && b.x < x + BLOCK && y < b.y + b.h && b.y < y + BLOCK;
}

/** True when `r` is small, whole blocks, inside `fb`, and `fb` has aligned 32-bit pixels. */
function fits(fb: Framebuffer, r: Rect): boolean {
  return bytesPerPixel(fb.format) === 4 && fb.stride % 4 === 0 && fb.bytes.byteOffset % 4 === 0 &&
    r.w * r.h <= MAX_AREA && r.w > 0 && r.h > 0 &&
    r.w % BLOCK === 0 && r.h % BLOCK === 0 && r.x >= 0 && r.y >= 0 &&
    r.x + r.w <= fb.width && r.y + r.h <= fb.height;
}

/** True when every pixel of the block at (x, y) is `c` (as a signed 32-bit word). */
function solidIn(fb: Framebuffer, x: number, y: number, c: number): boolean {
  if (x < 0 || y < 0 || x + BLOCK > fb.width || y + BLOCK > fb.height) return false;
  const words = wordsOf(fb.bytes.buffer), stride = fb.stride >> 2;
  const base = (fb.bytes.byteOffset >> 2) + y * stride + x;
  for (let j = 0; j < BLOCK; j++) {
    const row = base + j * stride;
    for (let i = 0; i < BLOCK; i++) if (words[row + i] !== c) return false;
  }
  return true;
}

/** The colour of the block at (x, y) when all its pixels have it, else undefined. */
function solidColour(fb: Framebuffer, x: number, y: number): number | undefined {
  if (x < 0 || y < 0 || x + BLOCK > fb.width || y + BLOCK > fb.height) return undefined;
  const c = wordsOf(fb.bytes.buffer)[(fb.bytes.byteOffset >> 2) + y * (fb.stride >> 2) + x];
  return solidIn(fb, x, y, c) ? c : undefined;
}
