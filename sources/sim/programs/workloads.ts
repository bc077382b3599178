/**
 * The five standard display workloads of `WORKLOADS.md` (v1): `desktop`,
 * `scroll`, `video`, `cursor` and `static`, as guest programs drawing into a
 * 32-bpp framebuffer (little-endian `0x00RRGGBB` words).
 *
 * Every program can draw any frame directly (a full draw) and draws the frame
 * that follows the one it drew last into the same target incrementally,
 * touching only the pixels that change. Both paths give identical pixels.
 *
 * ```ts
 * import { createWorkload } from "./workloads.ts";
 * const w = 320, h = 200;
 * const t = { px: new Uint32Array(w * h), width: w, height: h, strideWords: w };
 * const prog = createWorkload("cursor", w, h);
 * prog.drawFrame(t, 0, 0); // [{ x: 0, y: 0, w: 320, h: 200 }]
 * const dirty = prog.drawFrame(t, 1, 0); // old block, new block, stamp
 * if (dirty.length !== 3) throw new Error("unexpected dirty set");
 * ```
 *
 * @module
 */

import type { Rect } from "../../../pipeline/rect.ts";
import type { InputEvent } from "../../../pipeline/events.ts";
import { unshared } from "../../../pipeline/memcmp.ts";
import { wasmVideo } from "./video_wasm.ts";

/** Where a program draws: `px[y * strideWords + x]` is pixel (x, y), `0x00RRGGBB`. */
export interface DrawTarget {
  px: Uint32Array;
  width: number;
  height: number;
  /** Pixels per row (>= width). */
  strideWords: number;
}

/**
 * The stamp's time field (uint32 microseconds): a value, or a clock that is
 * read once the frame's pixels are drawn, just before the stamp, as
 * `WORKLOADS.md` says ("taken when the frame is finished"). A guest passes its
 * clock, so that the latency a viewer measures does not include the drawing.
 */
export type StampTime = number | (() => number);

/** A program a simulated guest runs, frame by frame. */
export interface GuestProgram {
  /**
   * Draws frame n (n = 0, 1, 2, ... in order; frame 0 is a full draw) and
   * returns its dirty rectangles. `time` gives the stamp's time field.
   */
  drawFrame(t: DrawTarget, n: number, time: StampTime): Rect[];
  /** Optional: react to input the guest read from its keyboard ring (used by the demo). */
  input?(ev: InputEvent): void;
}

/** The names of the standard workloads, in the order of `WORKLOADS.md`. */
export const WORKLOAD_NAMES = ["desktop", "scroll", "video", "cursor", "static"] as const;

/** One of {@link WORKLOAD_NAMES}. */
export type WorkloadName = typeof WORKLOAD_NAMES[number];

/** True when `s` names a standard workload. */
export function isWorkloadName(s: string): s is WorkloadName {
  return (WORKLOAD_NAMES as readonly string[]).includes(s);
}

/** The spec's integer hash (all arithmetic wrapping uint32). */
export function mix32(x: number): number {
  x = x >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Width and height of the stamp region (0, 0, 256, 16). */
export const STAMP_W = 256;
export const STAMP_H = 16;

/**
 * Draws the 64-cell stamp over the top-left corner: bits 0..31 hold n (cells
 * of row y = 0), bits 32..63 hold the time (row y = 8); a 1 bit is 0xFFFFFF, a
 * 0 bit 0x000000. Clipped to the target.
 */
export function drawStamp(t: DrawTarget, n: number, time: StampTime): void {
  const timeUs = typeof time === "function" ? time() : time;
  const { px, width, height, strideWords } = t;
  for (let half = 0; half < 2; half++) {
    const word = (half === 0 ? n : timeUs) >>> 0;
    const y0 = half * 8;
    const y1 = Math.min(y0 + 8, height);
    for (let i = 0; i < 32; i++) {
      const x0 = i * 8;
      if (x0 >= width) break;
      const x1 = Math.min(x0 + 8, width);
      const v = (word >>> i) & 1 ? 0xffffff : 0;
      for (let y = y0; y < y1; y++) {
        const row = y * strideWords;
        px.fill(v, row + x0, row + x1);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Helpers

interface Box {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

function clipBox(x: number, y: number, w: number, h: number, W: number, H: number): Box {
  return {
    x0: Math.max(0, x),
    y0: Math.max(0, y),
    x1: Math.min(W, x + w),
    y1: Math.min(H, y + h),
  };
}

function boxRect(b: Box): Rect {
  return { x: b.x0, y: b.y0, w: Math.max(0, b.x1 - b.x0), h: Math.max(0, b.y1 - b.y0) };
}

function stampRect(W: number, H: number): Rect {
  return { x: 0, y: 0, w: Math.min(STAMP_W, W), h: Math.min(STAMP_H, H) };
}

/**
 * Tracks what a program drew last, so that the next frame can be drawn
 * incrementally only when it follows directly in the same target.
 */
class Continuity {
  private buf: ArrayBufferLike | undefined;
  private off = -1;
  private len = -1;
  private w = -1;
  private h = -1;
  private stride = -1;
  private n = -1;

  /** True when frame n follows the last frame drawn, in the same target. */
  follows(t: DrawTarget, n: number): boolean {
    return this.n >= 0 && n === this.n + 1 && t.px.buffer === this.buf &&
      t.px.byteOffset === this.off && t.px.length === this.len && t.width === this.w &&
      t.height === this.h && t.strideWords === this.stride;
  }

  record(t: DrawTarget, n: number): void {
    this.buf = t.px.buffer;
    this.off = t.px.byteOffset;
    this.len = t.px.length;
    this.w = t.width;
    this.h = t.height;
    this.stride = t.strideWords;
    this.n = n;
  }
}

function checkTarget(t: DrawTarget): void {
  if (t.strideWords < t.width) throw new RangeError("strideWords < width");
  if (t.width > 0 && t.height > 0 && t.px.length < t.strideWords * (t.height - 1) + t.width) {
    throw new RangeError("pixel buffer too short for the target");
  }
}

// ---------------------------------------------------------------------------
// desktop

/** Per-frame tables of the desktop pattern: R by column, B by x + y. */
class DesktopTables {
  colR = new Int32Array(0);
  diagB = new Int32Array(0);
  private w = -1;
  private h = -1;
  private n = -1;

  get(w: number, h: number, n: number): this {
    if (w === this.w && h === this.h && n === this.n) return this;
    if (w !== this.w) this.colR = new Int32Array(w);
    if (w !== this.w || h !== this.h) this.diagB = new Int32Array(w + h);
    const r2 = (n * 2) & 255, b3 = (n * 3) & 255;
    const colR = this.colR, diagB = this.diagB;
    for (let x = 0; x < w; x++) colR[x] = ((x + r2) & 255) << 16;
    for (let s = 0; s < w + h; s++) diagB[s] = ((s >> 2) + b3) & 255;
    this.w = w;
    this.h = h;
    this.n = n;
    return this;
  }
}

/** Draws desktop frame n's pixels in columns [x0, x1) of rows [y0, y1). */
function drawDesktopBox(
  t: DrawTarget,
  tab: DesktopTables,
  n: number,
  x0: number,
  y0: number,
  x1: number,
  y1: number,
): void {
  if (x1 <= x0 || y1 <= y0) return;
  const px = t.px, stride = t.strideWords, colR = tab.colR, diagB = tab.diagB;
  for (let y = y0; y < y1; y++) {
    const g = ((y + n) & 255) << 8;
    const row = y * stride;
    for (let x = x0; x < x1; x++) px[row + x] = colR[x] | diagB[x + y] | g;
  }
}

function fullRect(t: DrawTarget): Rect {
  return { x: 0, y: 0, w: t.width, h: t.height };
}

class Desktop implements GuestProgram {
  private tab = new DesktopTables();
  constructor(w: number, h: number) {
    this.tab.get(w, h, 0);
  }
  drawFrame(t: DrawTarget, n: number, time: StampTime): Rect[] {
    checkTarget(t);
    n = n >>> 0;
    drawDesktopBox(t, this.tab.get(t.width, t.height, n), n, 0, 0, t.width, t.height);
    drawStamp(t, n, time);
    return [fullRect(t)];
  }
}

// ---------------------------------------------------------------------------
// static

class Static implements GuestProgram {
  private tab = new DesktopTables();
  private cont = new Continuity();
  constructor(w: number, h: number) {
    this.tab.get(w, h, 0);
  }
  drawFrame(t: DrawTarget, n: number, time: StampTime): Rect[] {
    checkTarget(t);
    n = n >>> 0;
    const tab = this.tab.get(t.width, t.height, 0);
    if (this.cont.follows(t, n)) {
      // Only the stamp's cells differ from desktop frame 0: restore, restamp.
      const s = stampRect(t.width, t.height);
      drawDesktopBox(t, tab, 0, 0, 0, s.w, s.h);
    } else {
      drawDesktopBox(t, tab, 0, 0, 0, t.width, t.height);
    }
    drawStamp(t, n, time);
    this.cont.record(t, n);
    return [fullRect(t)];
  }
}

// ---------------------------------------------------------------------------
// scroll

const SCROLL_BG = 0x101010;
const SCROLL_INK = 0xc0c0c0;

class Scroll implements GuestProgram {
  private cont = new Continuity();
  private glyphs = new Int32Array(0);
  /** 64 six-bit ink masks x 8 pixels: the pixels of one glyph row. */
  private patterns = new Uint32Array(64 * 8);

  constructor(w: number, _h: number) {
    this.glyphs = new Int32Array(Math.floor(w / 8));
    for (let m = 0; m < 64; m++) {
      for (let p = 0; p < 8; p++) {
        const ink = p >= 1 && p <= 6 && ((m >>> (p - 1)) & 1) === 1;
        this.patterns[m * 8 + p] = ink ? SCROLL_INK : SCROLL_BG;
      }
    }
  }

  /** Draws text line r at screen row k (y = 16k .. 16k + 15), full width. */
  private drawLine(t: DrawTarget, k: number, r: number): void {
    const { px, width, strideWords } = t;
    const cols = Math.floor(width / 8);
    if (this.glyphs.length < cols) this.glyphs = new Int32Array(cols);
    const glyphs = this.glyphs, pat = this.patterns;
    const len = mix32((2 * r + 1) >>> 0) % (cols + 1);
    const rBase = Math.imul(r, 65536);
    for (let c = 0; c < len; c++) glyphs[c] = mix32(((rBase + c) ^ 0x9e3779b9) >>> 0);
    const textEnd = len * 8;
    for (let py = 0; py < 16; py++) {
      const row = (16 * k + py) * strideWords;
      if (py < 2 || py > 13) {
        px.fill(SCROLL_BG, row, row + width);
        continue;
      }
      const s = ((py - 2) * 6) & 31;
      let i = row;
      for (let c = 0; c < len; c++) {
        const g = glyphs[c];
        // Bits s .. s+5 (mod 32) of g: rotate right by s, keep 6 bits.
        const m = (((g >>> s) | (g << (32 - s))) & 63) << 3;
        px[i] = pat[m];
        px[i + 1] = pat[m + 1];
        px[i + 2] = pat[m + 2];
        px[i + 3] = pat[m + 3];
        px[i + 4] = pat[m + 4];
        px[i + 5] = pat[m + 5];
        px[i + 6] = pat[m + 6];
        px[i + 7] = pat[m + 7];
        i += 8;
      }
      px.fill(SCROLL_BG, row + textEnd, row + width);
    }
  }

  drawFrame(t: DrawTarget, n: number, time: StampTime): Rect[] {
    checkTarget(t);
    n = n >>> 0;
    const { px, width, height, strideWords } = t;
    const rows = Math.floor(height / 16);
    if (this.cont.follows(t, n) && rows >= 1) {
      // Frame n is frame n-1 moved up one text row (16 pixel rows) with a new
      // last row. Old row 0 (under the stamp) is overwritten by old row 1.
      if (rows >= 2) {
        // Through a plain view of a guest's shared memory: twice as fast there (memcmp.ts).
        unshared(px).copyWithin(0, 16 * strideWords, (16 * rows - 1) * strideWords + width);
      }
      this.drawLine(t, rows - 1, (n + rows - 1) >>> 0);
    } else {
      for (let k = 0; k < rows; k++) this.drawLine(t, k, (n + k) >>> 0);
      for (let y = 16 * rows; y < height; y++) {
        px.fill(SCROLL_BG, y * strideWords, y * strideWords + width);
      }
    }
    // With rows === 0 the incremental path falls through to the full draw,
    // which is all background: the stamp area is always restored.
    drawStamp(t, n, time);
    this.cont.record(t, n);
    return [fullRect(t)];
  }
}

// ---------------------------------------------------------------------------
// video

/** Width and height of the video region V. */
export const VIDEO_W = 640;
export const VIDEO_H = 360;

const videoUU = Int32Array.from({ length: VIDEO_W }, (_, u) => u * u);
const videoVV = Int32Array.from({ length: VIDEO_H }, (_, v) => v * v);

/**
 * Draws frame n's pixels of the video region V for u in [ua, ub), v in [va, vb)
 * (0 <= ua, ub <= 640, 0 <= va, vb <= 360), V's top-left corner being at (vx, vy)
 * on the screen, which the caller has clipped the ranges to. The JavaScript
 * reference, and the fallback, of the WebAssembly kernel of `video_wasm.ts`.
 */
export function drawVideoJs(
  t: DrawTarget,
  n: number,
  vx: number,
  vy: number,
  ua: number,
  ub: number,
  va: number,
  vb: number,
): void {
  n = n >>> 0;
  const px = t.px, stride = t.strideWords, uu = videoUU, vvt = videoVV;
  const r4 = (n * 4) & 255, g2 = (n * 2) & 255, nb = n & 255;
  const hashBase = Math.imul(n, 1000003);
  for (let v = va; v < vb; v++) {
    const vsq = vvt[v];
    const bHi = (2 * v + nb) & 255;
    const hrow = (hashBase + v * 640) | 0;
    const i = (vy + v) * stride + vx;
    for (let u = ua; u < ub; u++) {
      // mix32 inlined.
      let x = (hrow + u) | 0;
      x ^= x >>> 16;
      x = Math.imul(x, 0x7feb352d);
      x ^= x >>> 15;
      x = Math.imul(x, 0x846ca68b);
      x ^= x >>> 16;
      const r = (((uu[u] + vsq) >> 6) + r4) & 255;
      const g = (u + g2) & 255;
      const bl = bHi ^ (x & 15);
      px[i + u] = (r << 16) | (g << 8) | bl;
    }
  }
}

class Video implements GuestProgram {
  private cont = new Continuity();
  private tab0 = new DesktopTables();

  constructor(w: number, h: number) {
    this.tab0.get(w, h, 0);
  }

  /** The video region V in screen coordinates, unclipped. */
  private static region(W: number, H: number): { x: number; y: number } {
    return { x: Math.floor(W / 2) - 320, y: Math.floor(H / 2) - 180 };
  }

  /** Draws frame n's pixels (without stamp) in the box b (already clipped to the screen). */
  private drawBox(t: DrawTarget, n: number, b: Box): void {
    if (b.x1 <= b.x0 || b.y1 <= b.y0) return;
    const { x: vx, y: vy } = Video.region(t.width, t.height);
    const v0 = Math.max(b.y0, vy), v1 = Math.min(b.y1, vy + VIDEO_H);
    const u0 = Math.max(b.x0, vx), u1 = Math.min(b.x1, vx + VIDEO_W);
    const tab = this.tab0.get(t.width, t.height, 0);
    if (v1 <= v0 || u1 <= u0) {
      drawDesktopBox(t, tab, 0, b.x0, b.y0, b.x1, b.y1);
      return;
    }
    // Desktop frame 0 around V: above, below, left, right.
    drawDesktopBox(t, tab, 0, b.x0, b.y0, b.x1, v0);
    drawDesktopBox(t, tab, 0, b.x0, v1, b.x1, b.y1);
    drawDesktopBox(t, tab, 0, b.x0, v0, u0, v1);
    drawDesktopBox(t, tab, 0, u1, v0, b.x1, v1);
    // Inside V: the SIMD kernel where this runtime has one (the same pixels, about
    // 4 times cheaper: the guest's CPU counts against the backend in the benchmark).
    const kernel = wasmVideo();
    if (kernel) kernel.draw(t, n, vx, vy, u0 - vx, u1 - vx, v0 - vy, v1 - vy);
    else drawVideoJs(t, n, vx, vy, u0 - vx, u1 - vx, v0 - vy, v1 - vy);
  }

  drawFrame(t: DrawTarget, n: number, time: StampTime): Rect[] {
    checkTarget(t);
    n = n >>> 0;
    const { width: W, height: H } = t;
    const { x: vx, y: vy } = Video.region(W, H);
    const vBox = clipBox(vx, vy, 640, 360, W, H);
    const s = stampRect(W, H);
    let dirty: Rect[];
    if (this.cont.follows(t, n)) {
      this.drawBox(t, n, vBox);
      this.drawBox(t, n, { x0: 0, y0: 0, x1: s.w, y1: s.h });
      dirty = [boxRect(vBox), s];
    } else {
      this.drawBox(t, n, { x0: 0, y0: 0, x1: W, y1: H });
      dirty = [fullRect(t)];
    }
    drawStamp(t, n, time);
    this.cont.record(t, n);
    return dirty;
  }
}

// ---------------------------------------------------------------------------
// cursor

const CURSOR_BG = 0x3050a0;
const CURSOR_FG = 0xffffff;

class Cursor implements GuestProgram {
  private cont = new Continuity();

  private static block(W: number, H: number, n: number): Box {
    const mx = W - 32, my = H - 32;
    const x = mx > 0 ? (Math.imul(37, n) >>> 0) % mx : 0;
    const y = my > 0 ? (Math.imul(23, n) >>> 0) % my : 0;
    return clipBox(x, y, 32, 32, W, H);
  }

  /** Draws frame n's pixels (no stamp) in box b (clipped to the screen). */
  private drawBox(t: DrawTarget, blk: Box, b: Box): void {
    const px = t.px, stride = t.strideWords;
    for (let y = b.y0; y < b.y1; y++) {
      const row = y * stride;
      if (y >= blk.y0 && y < blk.y1) {
        const a = Math.max(b.x0, blk.x0), e = Math.min(b.x1, blk.x1);
        if (a < e) {
          px.fill(CURSOR_BG, row + b.x0, row + a);
          px.fill(CURSOR_FG, row + a, row + e);
          px.fill(CURSOR_BG, row + e, row + b.x1);
          continue;
        }
      }
      px.fill(CURSOR_BG, row + b.x0, row + b.x1);
    }
  }

  drawFrame(t: DrawTarget, n: number, time: StampTime): Rect[] {
    checkTarget(t);
    n = n >>> 0;
    const { width: W, height: H } = t;
    const cur = Cursor.block(W, H, n);
    const s = stampRect(W, H);
    let dirty: Rect[];
    if (this.cont.follows(t, n)) {
      const prev = Cursor.block(W, H, (n - 1) >>> 0);
      this.drawBox(t, cur, prev);
      this.drawBox(t, cur, cur);
      this.drawBox(t, cur, { x0: 0, y0: 0, x1: s.w, y1: s.h });
      dirty = [boxRect(prev), boxRect(cur), s];
    } else {
      this.drawBox(t, cur, { x0: 0, y0: 0, x1: W, y1: H });
      dirty = [fullRect(t)];
    }
    drawStamp(t, n, time);
    this.cont.record(t, n);
    return dirty;
  }
}

// ---------------------------------------------------------------------------

/**
 * Makes the program of a standard workload for a w x h screen. Its frames
 * follow `WORKLOADS.md` to the bit; the dirty set of frame n is the spec's
 * (plus the stamp region) when frame n directly follows the frame drawn last
 * into the same target, and the whole screen otherwise (frame 0, or a jump).
 */
export function createWorkload(name: WorkloadName, w: number, h: number): GuestProgram {
  switch (name) {
    case "desktop":
      return new Desktop(w, h);
    case "scroll":
      return new Scroll(w, h);
    case "video":
      return new Video(w, h);
    case "cursor":
      return new Cursor();
    case "static":
      return new Static(w, h);
    default:
      throw new Error(
        `unknown workload "${name as string}"; valid names: ${WORKLOAD_NAMES.join(", ")}`,
      );
  }
}
