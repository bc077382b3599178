/**
 * RRE encoding (2): a background colour and a list of subrectangles.
 *
 * The background is the most common colour of a sample of the rectangle. The
 * subrectangles are each row's maximal runs of one non-background colour, a run
 * continued downwards while the next row has the same run (same x, width, colour).
 * So that no rectangle grows without bound on busy content, the rectangle is sent
 * as several RRE rectangles (bands of whole rows) once one holds
 * {@link RRE_MAX_SUBRECTS} subrectangles.
 *
 * @module
 */
import type { Framebuffer } from "../../../pipeline/framebuffer.ts";
import type { Rect } from "../../../pipeline/rect.ts";
import { type ByteWriter, rectHeader } from "../bytes.ts";
import { type EncodeOptions, Encoding, type RectEncoder } from "../encoder.ts";
import { ClientPixels, type PixelBlock, putPixel } from "./raw.ts";

/** A band is closed (at a row boundary) once it has this many subrectangles. */
export const RRE_MAX_SUBRECTS = 4096;

/** Pixels sampled to pick the background. */
const SAMPLES = 1024;

/** RRE for one connection (stateless between rectangles). */
export class RREEncoder implements RectEncoder {
  readonly encoding = Encoding.RRE;
  private readonly pixels = new ClientPixels();
  // Runs of the previous row (p*) and the current row (c*): x, width, colour, first row.
  private pX = new Int32Array(0);
  private pW = new Int32Array(0);
  private pC = new Int32Array(0);
  private pY = new Int32Array(0);
  private cX = new Int32Array(0);
  private cW = new Int32Array(0);
  private cC = new Int32Array(0);
  private cY = new Int32Array(0);
  private readonly hKey = new Int32Array(2048);
  private readonly hCount = new Uint16Array(2048);
  private readonly hUsed = new Uint8Array(2048);

  constructor(private readonly maxSubrects = RRE_MAX_SUBRECTS) {}

  encode(fb: Framebuffer, r: Rect, opts: EncodeOptions, out: ByteWriter): number {
    if (r.w <= 0 || r.h <= 0) return 0;
    const b = this.pixels.read(fb, r, opts.pf);
    const { px, stride, mask, bpp } = b;
    const w = r.w;
    if (this.pX.length < w) {
      for (const k of ["pX", "pW", "pC", "pY", "cX", "cW", "cC", "cY"] as const) {
        this[k] = new Int32Array(w);
      }
    }
    const bg = this.background(b, w, r.h);
    const sub = 8 + bpp;

    let rects = 0;
    let y0 = 0, hdrAt = 0, count = 0;
    let pn = 0; // runs open from the previous row
    const start = (y: number) => {
      y0 = y;
      hdrAt = out.length;
      rectHeader(out, r.x, r.y + y, w, 0, Encoding.RRE);
      out.u32(0);
      const { buf, offset } = out.target(bpp);
      out.length = putPixel(buf, offset, bg, bpp);
      count = 0;
      rects++;
    };
    const emit = (x: number, yTop: number, rw: number, rh: number, c: number) => {
      const { buf, offset } = out.target(sub);
      let o = putPixel(buf, offset, c, bpp);
      buf[o++] = x >>> 8;
      buf[o++] = x;
      buf[o++] = (yTop - y0) >>> 8;
      buf[o++] = yTop - y0;
      buf[o++] = rw >>> 8;
      buf[o++] = rw;
      buf[o++] = rh >>> 8;
      buf[o++] = rh;
      out.length = o;
      count++;
    };
    const finish = (y: number) => {
      for (let i = 0; i < pn; i++) {
        emit(this.pX[i], this.pY[i], this.pW[i], y - this.pY[i], this.pC[i]);
      }
      pn = 0;
      out.patchU16(hdrAt + 6, y - y0);
      out.patchU32(hdrAt + 12, count);
    };

    start(0);
    for (let y = 0; y < r.h; y++) {
      if (count >= this.maxSubrects) {
        finish(y);
        start(y);
      }
      // This row's runs, matched against the previous row's (both sorted by x).
      let cn = 0, p = 0;
      const row = b.at + y * stride;
      let x = 0;
      while (x < w) {
        const c = px[row + x] & mask;
        let x2 = x + 1;
        while (x2 < w && (px[row + x2] & mask) === c) x2++;
        if (c !== bg) {
          while (p < pn && this.pX[p] < x) {
            emit(this.pX[p], this.pY[p], this.pW[p], y - this.pY[p], this.pC[p]);
            p++;
          }
          let top = y;
          if (p < pn && this.pX[p] === x && this.pW[p] === x2 - x && this.pC[p] === c) {
            top = this.pY[p];
            p++;
          }
          this.cX[cn] = x;
          this.cW[cn] = x2 - x;
          this.cC[cn] = c;
          this.cY[cn] = top;
          cn++;
        }
        x = x2;
      }
      while (p < pn) {
        emit(this.pX[p], this.pY[p], this.pW[p], y - this.pY[p], this.pC[p]);
        p++;
      }
      [this.pX, this.cX] = [this.cX, this.pX];
      [this.pW, this.cW] = [this.cW, this.pW];
      [this.pC, this.cC] = [this.cC, this.pC];
      [this.pY, this.cY] = [this.cY, this.pY];
      pn = cn;
    }
    finish(r.h);
    return rects;
  }

  /** The most common colour among up to {@link SAMPLES} pixels spread over the block. */
  private background(b: PixelBlock, w: number, h: number): number {
    const { px, stride, mask } = b;
    const key = this.hKey, cnt = this.hCount, used = this.hUsed;
    used.fill(0);
    const n = w * h;
    const step = Math.max(1, Math.floor(n / SAMPLES));
    let best = px[b.at] & mask, bestN = 0;
    for (let k = 0; k < n; k += step) {
      const y = (k / w) | 0, x = k - y * w;
      const v = px[b.at + y * stride + x] & mask;
      let s = Math.imul(v, 0x9e3779b1) >>> 21;
      while (used[s] && key[s] !== v) s = (s + 1) & 2047;
      if (!used[s]) {
        used[s] = 1;
        key[s] = v;
        cnt[s] = 0;
      }
      const c = ++cnt[s];
      if (c > bestN) {
        bestN = c;
        best = v;
      }
    }
    return best;
  }
}
