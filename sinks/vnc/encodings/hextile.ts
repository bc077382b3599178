/**
 * Hextile encoding (5): 16x16 tiles, left to right, top to bottom, each one of
 *
 * - solid: background only (BackgroundSpecified when it changed, else no byte but the mask);
 * - mono: background plus subrectangles of one foreground colour (AnySubrects,
 *   ForegroundSpecified when the foreground changed);
 * - coloured: background plus subrectangles each with its colour (SubrectsColoured);
 * - raw: whenever the subrectangle form would not be smaller.
 *
 * A large rectangle whose sampled tiles are all busy (photos, gradients: every
 * tile would go raw) is sent as a Raw rectangle instead, which every client
 * takes: the same pixels without a byte per tile or the search.
 *
 * Background and foreground carry over between tiles; after a raw tile both are
 * sent again, and the foreground after a coloured tile, since decoders differ on
 * what such tiles leave behind. The background is a tile's most common colour;
 * subrectangles are grown right, then down, over pixels of their colour (on
 * per-row bit masks of the pixels still to cover).
 *
 * @module
 */
import type { Framebuffer } from "../../../pipeline/framebuffer.ts";
import type { Rect } from "../../../pipeline/rect.ts";
import { type ByteWriter, rectHeader } from "../bytes.ts";
import { type EncodeOptions, Encoding, type RectEncoder } from "../encoder.ts";
import { convertPixels } from "../../../pipeline/convert_pixels.ts";
import { bytesPerPixel, HOST_LE } from "../../../pipeline/pixel_format.ts";
import { ClientPixels, type PixelBlock, putPixel } from "./raw.ts";

/** Subencoding mask bits. */
export const Hextile = {
  Raw: 1,
  BackgroundSpecified: 2,
  ForegroundSpecified: 4,
  AnySubrects: 8,
  SubrectsColoured: 16,
} as const;

/** Rectangles of at least this many pixels are checked for being Raw throughout. */
export const RAW_CHECK_MIN_AREA = 64 * 1024;

/** One tile in this many, each way, is sampled for that check. */
const RAW_CHECK_STEP = 4;

/** Share of the sampled tiles that must be busy (a few plain ones, e.g. a clock, may be in). */
const RAW_CHECK_SHARE = 0.9;

/** Hextile for one connection (stateless between rectangles, as the spec requires). */
export class HextileEncoder implements RectEncoder {
  readonly encoding = Encoding.Hextile;
  private readonly pixels = new ClientPixels();
  private readonly tile = new Int32Array(256);
  /** Per row of a two-colour tile: foreground bits, and those not yet covered. */
  private readonly rows = new Int32Array(16);
  private readonly left = new Int32Array(16);
  // Subrectangles found in the current tile: colour, packed x/y, packed w/h.
  private readonly subC = new Int32Array(256);
  private readonly subXY = new Uint8Array(256);
  private readonly subWH = new Uint8Array(256);
  // Colour histogram (open addressing, 512 slots, valid where gen matches).
  private readonly hKey = new Int32Array(512);
  private readonly hCount = new Uint16Array(512);
  private readonly hGen = new Uint32Array(512);
  private gen = 0;
  /** How many colours the last {@link mostCommon} saw. */
  private distinct = 0;

  encode(fb: Framebuffer, r: Rect, opts: EncodeOptions, out: ByteWriter): number {
    if (r.w <= 0 || r.h <= 0) return 0;
    const block = this.pixels.read(fb, r, opts.pf);
    const bpp = block.bpp;
    // A large rectangle whose sampled tiles are all busy would be raw tiles throughout:
    // Raw (which every client takes) says the same without a byte per tile or the search.
    if (r.w * r.h >= RAW_CHECK_MIN_AREA && this.looksBusy(block, r.w, r.h)) {
      rectHeader(out, r.x, r.y, r.w, r.h, Encoding.Raw);
      convertPixels(fb, r, opts.pf, out.claim(r.w * r.h * bytesPerPixel(opts.pf)));
      return 1;
    }
    rectHeader(out, r.x, r.y, r.w, r.h, Encoding.Hextile);
    // Raw tiles straight from the block's bytes when they are the wire bytes already.
    const rawBytes = block.mask === -1 && HOST_LE
      ? new Uint8Array(block.px.buffer, block.px.byteOffset, block.px.length * bpp)
      : undefined;
    // More colours than this cannot beat raw (each one but the background needs a subrectangle).
    const maxColours = (n: number) => Math.min(256, Math.floor((n * bpp - 2) / (bpp + 2)) + 1);
    const tiles = Math.ceil(r.w / 16) * Math.ceil(r.h / 16);
    // No tile is larger than raw (1 + 256 * bpp).
    const { buf } = out.target(tiles + r.w * r.h * bpp);
    let o = out.length;
    const t = this.tile;
    let bgValid = false, fgValid = false, bg = 0, fg = 0;
    for (let ty = 0; ty < r.h; ty += 16) {
      const th = Math.min(16, r.h - ty);
      for (let tx = 0; tx < r.w; tx += 16) {
        const tw = Math.min(16, r.w - tx);
        const n = tw * th;
        ClientPixels.copyTile(block, tx, ty, tw, th, t);

        // Up to two colours and their counts; `many` when there are more.
        const c0 = t[0];
        let c1 = 0, n0 = 1, n1 = 0, many = false;
        for (let i = 1; i < n; i++) {
          const v = t[i];
          if (v === c0) n0++;
          else if (n1 === 0) {
            c1 = v;
            n1 = 1;
          } else if (v === c1) n1++;
          else {
            many = true;
            break;
          }
        }

        if (n1 === 0) {
          // Solid.
          if (bgValid && bg === c0) buf[o++] = 0;
          else {
            buf[o++] = Hextile.BackgroundSpecified;
            o = putPixel(buf, o, c0, bpp);
            bg = c0;
            bgValid = true;
          }
          continue;
        }

        // Many colours whose first and last rows change at every pixel (photos, gradients):
        // raw, without counting colours (the subrectangle form would not be smaller).
        const busy = many && tw > 2 && th > 1 && changesEverywhere(t, 0, tw) &&
          changesEverywhere(t, (th - 1) * tw, tw);
        const tileBg = busy ? c0 : many ? this.mostCommon(n, maxColours(n)) : n0 >= n1 ? c0 : c1;
        const rawSize = 1 + n * bpp;
        if (busy || (many && this.distinct > maxColours(n))) {
          o = this.rawTile(buf, o, block, rawBytes, tx, ty, tw, th);
          bgValid = fgValid = false;
          continue;
        }
        const bgCost = bgValid && bg === tileBg ? 0 : bpp;
        let size: number, k: number;
        if (!many) {
          const tileFg = tileBg === c0 ? c1 : c0;
          const fgCost = fgValid && fg === tileFg ? 0 : bpp;
          const fixed = 2 + bgCost + fgCost;
          k = this.monoSubrects(tw, th, tileBg, Math.min(255, (rawSize - fixed - 1) >> 1));
          size = fixed + 2 * k;
          if (k >= 0 && size < rawSize) {
            let mask = Hextile.AnySubrects;
            if (bgCost) mask |= Hextile.BackgroundSpecified;
            if (fgCost) mask |= Hextile.ForegroundSpecified;
            buf[o++] = mask;
            if (bgCost) o = putPixel(buf, o, tileBg, bpp);
            if (fgCost) o = putPixel(buf, o, tileFg, bpp);
            buf[o++] = k;
            for (let s = 0; s < k; s++) {
              buf[o++] = this.subXY[s];
              buf[o++] = this.subWH[s];
            }
            bg = tileBg;
            fg = tileFg;
            bgValid = fgValid = true;
            continue;
          }
        } else {
          const fixed = 2 + bgCost;
          const limit = Math.min(255, ((rawSize - fixed - 1) / (bpp + 2)) | 0);
          // Each colour but the background needs a subrectangle at least.
          k = this.distinct - 1 > limit ? -1 : this.subrects(tw, th, tileBg, limit);
          size = fixed + (bpp + 2) * k;
          if (k >= 0 && size < rawSize) {
            buf[o++] = Hextile.AnySubrects | Hextile.SubrectsColoured |
              (bgCost ? Hextile.BackgroundSpecified : 0);
            if (bgCost) o = putPixel(buf, o, tileBg, bpp);
            buf[o++] = k;
            for (let s = 0; s < k; s++) {
              o = putPixel(buf, o, this.subC[s], bpp);
              buf[o++] = this.subXY[s];
              buf[o++] = this.subWH[s];
            }
            bg = tileBg;
            bgValid = true;
            fgValid = false;
            continue;
          }
        }

        o = this.rawTile(buf, o, block, rawBytes, tx, ty, tw, th);
        bgValid = fgValid = false;
      }
    }
    out.length = o;
    return 1;
  }

  /**
   * True when at least {@link RAW_CHECK_SHARE} of a sparse sample of tiles
   * (one in {@link RAW_CHECK_STEP} each way) have three colours or more and
   * first and last rows that change at every pixel: photo-like or gradient
   * content, where nearly every tile would be sent raw.
   */
  private looksBusy(block: PixelBlock, w: number, h: number): boolean {
    const t = this.tile;
    let sampled = 0, busy = 0;
    for (let ty = 0; ty + 16 <= h; ty += 16 * RAW_CHECK_STEP) {
      for (let tx = 0; tx + 16 <= w; tx += 16 * RAW_CHECK_STEP) {
        sampled++;
        ClientPixels.copyTile(block, tx, ty, 16, 16, t);
        if (!changesEverywhere(t, 0, 16) || !changesEverywhere(t, 240, 16)) continue;
        let third = false; // (t[1] differs from t[0]: the first row changes everywhere)
        for (let i = 2; i < 256 && !third; i++) third = t[i] !== t[0] && t[i] !== t[1];
        if (third) busy++;
      }
    }
    return sampled > 0 && busy >= RAW_CHECK_SHARE * sampled;
  }

  /** Writes a raw tile (mask byte and pixels) at `buf[o]`; returns the new offset. */
  private rawTile(
    buf: Uint8Array,
    o: number,
    block: PixelBlock,
    rawBytes: Uint8Array | undefined,
    tx: number,
    ty: number,
    tw: number,
    th: number,
  ): number {
    buf[o++] = Hextile.Raw;
    const bpp = block.bpp;
    if (rawBytes) {
      const row = tw * bpp;
      for (let j = 0; j < th; j++) {
        const at = (block.at + (ty + j) * block.stride + tx) * bpp;
        buf.set(rawBytes.subarray(at, at + row), o);
        o += row;
      }
      return o;
    }
    const t = this.tile, n = tw * th;
    for (let i = 0; i < n; i++) o = putPixel(buf, o, t[i], bpp);
    return o;
  }

  /**
   * The most common colour of the tile's first `n` pixels; stops counting once
   * more than `maxDistinct` colours were seen (then {@link distinct} says so).
   */
  private mostCommon(n: number, maxDistinct = 256): number {
    const t = this.tile, key = this.hKey, cnt = this.hCount, gen = this.hGen;
    let g = this.gen = (this.gen + 1) >>> 0;
    if (g === 0) {
      gen.fill(0);
      g = this.gen = 1;
    }
    let best = t[0], bestN = 0, prev = t[0] + 1, slot = 0, distinct = 0;
    for (let i = 0; i < n; i++) {
      const v = t[i];
      if (v !== prev) {
        prev = v;
        slot = Math.imul(v, 0x9e3779b1) >>> 23;
        for (;;) {
          if (gen[slot] !== g) {
            gen[slot] = g;
            key[slot] = v;
            cnt[slot] = 0;
            if (++distinct > maxDistinct) {
              this.distinct = distinct;
              return best;
            }
            break;
          }
          if (key[slot] === v) break;
          slot = (slot + 1) & 511;
        }
      }
      const c = ++cnt[slot];
      if (c > bestN) {
        bestN = c;
        best = v;
      }
    }
    this.distinct = distinct;
    return best;
  }

  /**
   * As {@link subrects} for a two-colour tile (into subXY/subWH only), on bit masks:
   * bit x of `rows[y]` is set where pixel (x, y) is not the background.
   */
  private monoSubrects(tw: number, th: number, bg: number, limit: number): number {
    const t = this.tile, rows = this.rows, left = this.left;
    for (let y = 0, i = 0; y < th; y++) {
      let m = 0;
      for (let x = 0; x < tw; x++, i++) if (t[i] !== bg) m |= 1 << x;
      rows[y] = left[y] = m;
    }
    let k = 0;
    for (let y = 0; y < th; y++) {
      let m = left[y];
      while (m !== 0) {
        if (k >= limit) return -1;
        const x = 31 - Math.clz32(m & -m); // lowest set bit
        const run = ~(m >>> x);
        const len = 31 - Math.clz32(run & -run); // trailing ones of m >>> x
        const bits = len >= 16 ? 0xffff << x : ((1 << len) - 1) << x;
        // Down while the next row has the whole run (covered pixels included).
        let y2 = y + 1;
        while (y2 < th && (rows[y2] & bits) === bits) y2++;
        for (let yy = y + 1; yy < y2; yy++) left[yy] &= ~bits;
        m &= ~bits;
        this.subXY[k] = (x << 4) | y;
        this.subWH[k] = ((len - 1) << 4) | (y2 - y - 1);
        k++;
      }
    }
    return k;
  }

  /**
   * Finds subrectangles covering every pixel not of colour `bg` (into subC/subXY/subWH);
   * returns their number, or -1 when more than `limit` would be needed. Greedy, in
   * raster order: from the first pixel not yet covered, right while the colour holds,
   * then down while the row below has that colour all along (covered pixels included).
   */
  private subrects(tw: number, th: number, bg: number, limit: number): number {
    const t = this.tile, left = this.left;
    for (let y = 0, i = 0; y < th; y++) {
      let m = 0;
      for (let x = 0; x < tw; x++, i++) if (t[i] !== bg) m |= 1 << x;
      left[y] = m;
    }
    let k = 0;
    for (let y = 0; y < th; y++) {
      const row = y * tw;
      let m = left[y];
      while (m !== 0) {
        if (k >= limit) return -1;
        const x = 31 - Math.clz32(m & -m);
        const c = t[row + x];
        let x2 = x + 1;
        while (x2 < tw && t[row + x2] === c) x2++;
        let y2 = y + 1;
        down: for (; y2 < th; y2++) {
          const r2 = y2 * tw;
          for (let xx = x; xx < x2; xx++) if (t[r2 + xx] !== c) break down;
        }
        const bits = ((1 << (x2 - x)) - 1) << x;
        m &= ~bits;
        for (let yy = y + 1; yy < y2; yy++) left[yy] &= ~bits;
        this.subC[k] = c;
        this.subXY[k] = (x << 4) | y;
        this.subWH[k] = ((x2 - x - 1) << 4) | (y2 - y - 1);
        k++;
      }
    }
    return k;
  }
}

/** True when each of the `n` values from `t[i]` differs from the one before it. */
function changesEverywhere(t: Int32Array, i: number, n: number): boolean {
  for (let k = i + 1; k < i + n; k++) if (t[k] === t[k - 1]) return false;
  return true;
}
