/**
 * Damage refinement by comparison: a {@link ShadowFramebuffer} holds a copy of
 * a framebuffer's pixels (what a viewer was last given, or is about to be
 * given), and {@link ShadowFramebuffer.refresh} compares a damaged rectangle
 * of the live framebuffer with it tile by tile, copies the tiles that differ
 * and reports them. Damage without change (a guest redrawing what it already
 * showed) costs one comparison and sends nothing.
 *
 * Tiles sit on a fixed grid (multiples of the tile size from the origin), as in
 * TigerVNC's ComparingUpdateTracker (64x64) and neatvnc's damage refinery
 * (32x32 hashes). Rows are compared whole first (one `memcmp` of the damaged
 * span), and only a row that differs is looked at tile by tile, so unchanged
 * screens cost one pass over memory. The copy also serves as a snapshot: the
 * guest may redraw its framebuffer at any time, while the shadow changes only
 * when its owner refreshes it.
 *
 * @example
 * ```ts
 * import { ShadowFramebuffer } from "./compare_tiles.ts";
 * import { XRGB8888 } from "./pixel_format.ts";
 * import { assertEquals } from "@rxfb/assert";
 *
 * const px = new Uint32Array(64 * 64);
 * const fb = { width: 64, height: 64, stride: 256, format: XRGB8888, bytes: new Uint8Array(px.buffer) };
 * const shadow = ShadowFramebuffer.like(fb);
 * shadow.copyFrom(fb, { x: 0, y: 0, w: 64, h: 64 });
 * px[40 * 64 + 40] = 0xff0000; // one pixel changes, the whole screen is damaged
 * const changed: { x: number; y: number; w: number; h: number }[] = [];
 * shadow.refresh(fb, { x: 0, y: 0, w: 64, h: 64 }, 16, changed);
 * assertEquals(changed, [{ x: 32, y: 40, w: 16, h: 1 }]); // its tile's changed rows
 * ```
 *
 * @module
 */
import type { Framebuffer } from "./framebuffer.ts";
import { SpanComparer, SpanCopier } from "./memcmp.ts";
import { bytesPerPixel, type PixelFormat, sameFormat } from "./pixel_format.ts";
import type { Rect } from "./rect.ts";

/**
 * The tile size rxfb compares with. Measured with rfbbench on the standard
 * workloads at 1920x1080 (16 / 32 / 64): the static screen's changed stamp
 * cells cost 5.2 / 7.7 / 9.0 KB a frame through Raw, while a screen where
 * everything changes (desktop, Raw) cost 8.2 / 6.7 / 5.9 ms of CPU a frame;
 * 32 is near the best of both (as neatvnc's 32x32; TigerVNC compares 64x64).
 */
export const DEFAULT_TILE = 32;

/**
 * Rows of slack a shadow takes (as a share of its height) once it is moved by
 * whole rows: a vertical move of the whole width is then a change of the
 * row its view starts at, not a copy of the frame (see {@link ShadowFramebuffer.moveRows}).
 */
const SLACK_SHARE = 0.5;

/**
 * A private copy of a framebuffer's pixels, in its format, rows packed
 * (`stride = width * bytes per pixel`). Usable wherever a Framebuffer is.
 *
 * Its rows lie in a larger buffer once it has been scrolled ({@link moveRows}):
 * `bytes` is then a view that starts further down (or up) that buffer, so read
 * `bytes` anew after a move rather than keeping it.
 */
export class ShadowFramebuffer implements Framebuffer {
  readonly stride: number;
  private readonly bpp: number;
  /** The rows, with slack above and below once moved. */
  private backing: Uint8Array;
  /** The backing row that is row 0 of the shadow. */
  private base = 0;
  private view: Uint8Array;
  // Per tile column of the band being compared: first differing row, or -1.
  private firstRow = new Int32Array(0);
  // Comparer of the framebuffer last refreshed from (its bytes stay the same view).
  private cmp: SpanComparer | undefined;
  private copier: SpanCopier | undefined;

  constructor(
    readonly width: number,
    readonly height: number,
    readonly format: PixelFormat,
  ) {
    this.bpp = bytesPerPixel(format);
    this.stride = width * this.bpp;
    this.backing = this.view = new Uint8Array(this.stride * height);
  }

  /** The pixels: `stride * height` bytes, row 0 first. */
  get bytes(): Uint8Array {
    return this.view;
  }

  /** A (black) shadow of the same size and format as `fb`. */
  static like(fb: Framebuffer): ShadowFramebuffer {
    return new ShadowFramebuffer(fb.width, fb.height, fb.format);
  }

  /** True when `fb` has this shadow's size and format. */
  fits(fb: Framebuffer): boolean {
    return fb.width === this.width && fb.height === this.height &&
      sameFormat(fb.format, this.format);
  }

  /** Copies `r` (clipped) from `fb` without comparing. */
  copyFrom(fb: Framebuffer, r: Rect): void {
    const c = this.clip(r);
    if (!c) return;
    const n = c.w * this.bpp, copier = this.copierFor(fb.bytes);
    if (c.x === 0 && c.w === this.width && fb.stride === this.stride) {
      copier.copy(c.y * this.stride, c.y * fb.stride, c.h * this.stride); // rows back to back
      return;
    }
    for (let y = c.y; y < c.y + c.h; y++) {
      copier.copy(y * this.stride + c.x * this.bpp, y * fb.stride + c.x * this.bpp, n);
    }
  }

  /**
   * Compares `r` (clipped) of `fb` with the shadow on a grid of `tile` x `tile`
   * tiles; copies every part that differs into the shadow and appends it to
   * `changed`: per band of tiles, runs of neighbouring changed tiles as one
   * rectangle, clipped to `r`, from the run's first to its last changed row.
   * The rectangles are disjoint and in band order.
   */
  refresh(fb: Framebuffer, r: Rect, tile: number, changed: Rect[]): void {
    const c = this.clip(r);
    if (!c) return;
    const bpp = this.bpp, src = fb.bytes, dst = this.bytes;
    if (this.cmp?.a !== src || this.cmp.b !== dst) this.cmp = new SpanComparer(src, dst);
    const cmp = this.cmp, copier = this.copierFor(src);
    const x0 = c.x, x1 = c.x + c.w;
    const col0 = Math.floor(x0 / tile), cols = Math.floor((x1 - 1) / tile) - col0 + 1;
    if (this.firstRow.length < cols) this.firstRow = new Int32Array(cols);
    const first = this.firstRow;
    // Whole rows that lie back to back in both buffers: a band is compared in one call first.
    const contiguous = c.x === 0 && c.w === this.width && fb.stride === this.stride;
    for (let ty = Math.floor(c.y / tile) * tile; ty < c.y + c.h; ty += tile) {
      const y0 = Math.max(ty, c.y), y1 = Math.min(ty + tile, c.y + c.h);
      if (contiguous && cmp.equal(y0 * fb.stride, y0 * this.stride, (y1 - y0) * this.stride)) {
        continue;
      }
      first.fill(-1, 0, cols);
      let dirty = 0, lo = cols, hi = -1; // changed tile columns so far, and the outermost
      for (let y = y0; y < y1 && dirty < cols; y++) {
        const so = y * fb.stride, doff = y * this.stride;
        if (cmp.equal(so + x0 * bpp, doff + x0 * bpp, c.w * bpp)) continue;
        // Once some tiles changed, the row left of the leftmost and right of the rightmost is
        // compared in one call each (libc's memcmp when long), tile by tile only if it differs:
        // a change in one place of full-width rows (a window, a cursor) costs two calls a row.
        let kFrom = 0, kTo = cols;
        if (lo > 0 && lo < cols) {
          const end = Math.max((col0 + lo) * tile, x0);
          if (cmp.equal(so + x0 * bpp, doff + x0 * bpp, (end - x0) * bpp)) kFrom = lo;
        }
        if (hi >= 0 && hi < cols - 1) {
          const start = Math.min((col0 + hi + 1) * tile, x1);
          if (cmp.equal(so + start * bpp, doff + start * bpp, (x1 - start) * bpp)) kTo = hi + 1;
        }
        for (let k = kFrom; k < kTo; k++) {
          if (first[k] >= 0) continue;
          const tx0 = Math.max((col0 + k) * tile, x0), tx1 = Math.min((col0 + k + 1) * tile, x1);
          if (!cmp.equal(so + tx0 * bpp, doff + tx0 * bpp, (tx1 - tx0) * bpp)) {
            first[k] = y;
            dirty++;
            if (k < lo) lo = k;
            if (k > hi) hi = k;
          }
        }
      }
      if (dirty === 0) continue;
      // Runs of changed tile columns, each from its first to its last changed row (found
      // from the bottom up; rows outside are equal): copied and reported.
      for (let k = 0; k < cols;) {
        if (first[k] < 0) {
          k++;
          continue;
        }
        let e = k;
        let top = y1, bottom = y0;
        for (; e < cols && first[e] >= 0; e++) {
          const tx0 = Math.max((col0 + e) * tile, x0), tx1 = Math.min((col0 + e + 1) * tile, x1);
          let y = y1 - 1;
          while (
            y > first[e] &&
            cmp.equal(y * fb.stride + tx0 * bpp, y * this.stride + tx0 * bpp, (tx1 - tx0) * bpp)
          ) y--;
          top = Math.min(top, first[e]);
          bottom = Math.max(bottom, y + 1);
        }
        const rx0 = Math.max((col0 + k) * tile, x0), rx1 = Math.min((col0 + e) * tile, x1);
        const n = (rx1 - rx0) * bpp;
        if (contiguous && rx0 === 0 && rx1 === this.width) {
          copier.copy(top * this.stride, top * fb.stride, (bottom - top) * this.stride);
        } else {
          for (let y = top; y < bottom; y++) {
            copier.copy(y * this.stride + rx0 * bpp, y * fb.stride + rx0 * bpp, n);
          }
        }
        changed.push({ x: rx0, y: top, w: rx1 - rx0, h: bottom - top });
        k = e;
      }
    }
  }

  /**
   * Moves pixels within the shadow, as a CopyRect does on the viewer: rows
   * `[y0 + dy, y1 + dy)` of columns `[x, x + w)` to rows `[y0, y1)`. Both
   * bands must lie inside the shadow.
   *
   * A move of whole rows that are most of the shadow (a scrolling terminal)
   * copies no pixels of the band: the shadow's view starts `dy` rows further
   * into its buffer, and only the rows outside the band are copied to keep
   * their place. Once the view reaches an end of the buffer it is copied back
   * to the middle, one frame's copy every few dozen moves.
   */
  moveRows(x: number, w: number, y0: number, y1: number, dy: number): void {
    if (
      x < 0 || w <= 0 || x + w > this.width || y0 < 0 || y1 > this.height ||
      y0 + dy < 0 || y1 + dy > this.height
    ) throw new RangeError(`moveRows: rows ${y0}..${y1} by ${dy} outside the shadow`);
    const bpp = this.bpp, n = w * bpp, stride = this.stride, band = y1 - y0;
    if (dy === 0 || band <= 0) return;
    if (x === 0 && w === this.width && Math.abs(dy) < band && band * 2 > this.height) {
      this.shiftView(y0, y1, dy);
      return;
    }
    const b = this.bytes; // the shadow's own memory is never shared: plain copyWithin
    if (x === 0 && w === this.width) {
      b.copyWithin(y0 * stride, (y0 + dy) * stride, (y1 + dy) * stride);
      return;
    }
    // Row by row, in the order that never overwrites a row still to be read.
    const step = dy > 0 ? 1 : -1;
    for (let y = dy > 0 ? y0 : y1 - 1; y >= y0 && y < y1; y += step) {
      const s = (y + dy) * stride + x * bpp;
      b.copyWithin(y * stride + x * bpp, s, s + n);
    }
  }

  /**
   * {@link moveRows} of whole rows by moving the view (`|dy| < y1 - y0`): the
   * band's rows are where the view's rows `y0 .. y1` will be; the rows above
   * and below it are copied along so they stay put.
   */
  private shiftView(y0: number, y1: number, dy: number): void {
    const h = this.height, stride = this.stride;
    const rows = this.backing.length / stride;
    if (rows === h) {
      // First move: room for the view to travel (only shadows that scroll pay for it).
      const slack = Math.max(2 * Math.abs(dy), Math.ceil(h * SLACK_SHARE));
      const grown = new Uint8Array((h + slack) * stride);
      const mid = slack >> 1;
      grown.set(this.view, mid * stride);
      this.backing = grown;
      this.base = mid;
    } else if (this.base + dy < 0 || this.base + dy + h > rows) {
      // At an end: back to the middle (one copy of the frame).
      const mid = (rows - h) >> 1;
      this.backing.copyWithin(mid * stride, this.base * stride, (this.base + h) * stride);
      this.base = mid;
    }
    const b = this.backing, base = this.base, nb = base + dy;
    // The rows outside the band keep their place: from base + y to nb + y. The two runs
    // neither overlap the band's new place nor each other's sources (|dy| < band).
    if (y0 > 0) b.copyWithin(nb * stride, base * stride, (base + y0) * stride);
    if (y1 < h) b.copyWithin((nb + y1) * stride, (base + y1) * stride, (base + h) * stride);
    this.base = nb;
    this.view = b.subarray(nb * stride, (nb + h) * stride);
  }

  /** The copier from `src` into the shadow (kept while the source is the same). */
  private copierFor(src: Uint8Array): SpanCopier {
    if (this.copier?.src !== src || this.copier.dst !== this.bytes) {
      this.copier = new SpanCopier(this.bytes, src);
    }
    return this.copier;
  }

  private clip(r: Rect): Rect | undefined {
    // Whole pixels covering the rectangle, as Region does.
    const x0 = Math.max(0, Math.floor(r.x)), y0 = Math.max(0, Math.floor(r.y));
    const x1 = Math.min(this.width, Math.ceil(r.x + r.w));
    const y1 = Math.min(this.height, Math.ceil(r.y + r.h));
    return x1 > x0 && y1 > y0 ? { x: x0, y: y0, w: x1 - x0, h: y1 - y0 } : undefined;
  }
}
