/**
 * Vertical scroll detection from pixels: finds a band of rows of a new frame
 * that are rows of the previous frame moved up or down, so that a viewer can
 * be told to move what it has (RFB's CopyRect) instead of being sent the
 * pixels again. A terminal scrolling one line costs one new line, not a
 * screen.
 *
 * Method: every row of the area gets a signature (a hash of sampled pixels)
 * in both frames. Each row of the new frame whose signature occurs exactly
 * once in the previous frame votes for the shift between the two rows
 * (repeated rows, e.g. blank ones, say nothing). The shift with the most votes
 * is then checked exactly, row by row over the area's columns, and the run of
 * equal rows holding the most rows that changed at all is the answer. The
 * result is therefore exact: the signatures only choose which shift to check
 * (and which rows count as changed). With a {@link SignatureMemo}, the shift
 * found last time on the same area is checked first: a terminal scrolling
 * line after line is then found without signatures, as long as most rows
 * moved by that shift and some of them differ from what was there.
 *
 * @example
 * ```ts
 * import { detectVerticalScroll } from "./detect_scroll.ts";
 * import { XRGB8888 } from "./pixel_format.ts";
 * import { assertEquals } from "@rxfb/assert";
 *
 * const w = 64, h = 100;
 * const frame = (top: number) => {
 *   const px = new Uint32Array(w * h);
 *   for (let y = 0; y < h; y++) {
 *     for (let x = 0; x < w; x++) px[y * w + x] = Math.imul((y + top) * 131 + x, 0x9e3779b1) >>> 8;
 *   }
 *   return { width: w, height: h, stride: w * 4, format: XRGB8888, bytes: new Uint8Array(px.buffer) };
 * };
 * // The content moved up by 7 rows: new row y is old row y + 7.
 * const s = detectVerticalScroll(frame(0), frame(7), { x: 0, y: 0, w, h });
 * assertEquals(s, { dy: 7, y0: 0, y1: 93 });
 * ```
 *
 * @module
 */
import type { Framebuffer } from "./framebuffer.ts";
import { SpanComparer } from "./memcmp.ts";
import { bytesPerPixel, sameFormat } from "./pixel_format.ts";
import type { Rect } from "./rect.ts";

/** Rows `[y0, y1)` of the new frame are rows `[y0 + dy, y1 + dy)` of the previous one. */
export interface VerticalScroll {
  /** Positive: the content moved up (new row y was row y + dy). Never 0. */
  readonly dy: number;
  readonly y0: number;
  readonly y1: number;
}

/** Options of {@link detectVerticalScroll}. */
export interface ScrollOptions {
  /** Largest |dy| looked for. Default: any. */
  readonly maxShift?: number;
  /** Fewest rows a band may have. Default 8. */
  readonly minRows?: number;
  /** Pixels sampled per row for its signature. Default 48. */
  readonly samples?: number;
  /**
   * Signatures kept from call to call: the new frame's signatures of this
   * call stand for the previous frame's in the next call on the same area,
   * which saves reading the previous frame. For a caller whose `prev` is
   * brought up to `next` after each call (a shadow framebuffer). Signatures
   * that no longer match `prev` cost a missed scroll now and then, never a
   * wrong answer (the shift is checked exactly).
   */
  readonly memo?: SignatureMemo;
}

/** See {@link ScrollOptions.memo}. */
export class SignatureMemo {
  private key = "";
  private sig: Int32Array | undefined;
  private shiftKey = "";
  private shift = 0;
  /** Scrolls found by checking the last shift first, without signatures (for tests and statistics). */
  predicted = 0;

  /** The shift found on this area last time, if the last check found one. */
  lastShift(key: string): number | undefined {
    return key === this.shiftKey ? this.shift : undefined;
  }

  /** Takes note of the shift found on an area (undefined: none). */
  setShift(key: string, dy: number | undefined): void {
    this.shiftKey = dy === undefined ? "" : key;
    this.shift = dy ?? 0;
  }

  /** The signatures kept for `key`, if any. */
  get(key: string): Int32Array | undefined {
    return key === this.key ? this.sig : undefined;
  }

  set(key: string, sig: Int32Array): void {
    this.key = key;
    this.sig = sig;
  }

  /** Forgets the signatures (the previous frame was replaced, or they were not taken). */
  forgetSignatures(): void {
    this.key = "";
    this.sig = undefined;
  }

  /** Forgets everything (the previous frame was replaced). */
  clear(): void {
    this.forgetSignatures();
    this.shiftKey = "";
  }
}

/**
 * The longest band of rows of `area` in `next` that are rows of `prev` moved
 * vertically (columns `area.x .. area.x + area.w` only), or undefined when
 * there is none of at least `minRows` rows. `prev` and `next` must have the
 * same size and format (else undefined).
 */
export function detectVerticalScroll(
  prev: Framebuffer,
  next: Framebuffer,
  area: Rect,
  opts: ScrollOptions = {},
): VerticalScroll | undefined {
  if (
    prev.width !== next.width || prev.height !== next.height ||
    !sameFormat(prev.format, next.format)
  ) return undefined;
  const x0 = Math.max(0, Math.floor(area.x)), y0 = Math.max(0, Math.floor(area.y));
  const x1 = Math.min(next.width, Math.ceil(area.x + area.w));
  const y1 = Math.min(next.height, Math.ceil(area.y + area.h));
  const minRows = Math.max(1, opts.minRows ?? 8);
  const h = y1 - y0, w = x1 - x0;
  if (w <= 0 || h < minRows + 1) return undefined;
  const maxShift = Math.min(opts.maxShift ?? h, h - minRows);

  const bpp = bytesPerPixel(next.format);
  const samples = Math.max(1, Math.min(w, opts.samples ?? 48));
  const key = `${x0},${y0},${w},${h},${samples},${bpp},${next.stride}`;
  const cmp = new SpanComparer(next.bytes, prev.bytes);
  const band = { cmp, next, prev, x0, w, y0, y1, bpp };

  // A terminal that scrolled last frame most likely scrolled by as much again: that shift is
  // checked first, exactly, and taken when most rows moved so and some of them really changed;
  // the signatures (a read of every row) are then not needed.
  const predicted = opts.memo?.lastShift(key);
  if (predicted !== undefined && Math.abs(predicted) <= maxShift) {
    const run = longestRun(band, predicted, undefined);
    if (run.len * 2 >= h && run.len >= minRows && changedInPlace(band, run)) {
      opts.memo!.forgetSignatures(); // this frame's were not taken
      opts.memo!.predicted++;
      return { dy: predicted, y0: run.start, y1: run.start + run.len };
    }
  }

  const sigPrev = opts.memo?.get(key) ?? signatures(prev, x0, w, y0, y1, bpp, samples);
  const sigNext = signatures(next, x0, w, y0, y1, bpp, samples);
  opts.memo?.set(key, sigNext);
  opts.memo?.setShift(key, undefined);

  // Rows of prev by signature; -1 marks a signature seen on more than one row.
  const rowOf = new Map<number, number>();
  for (let i = 0; i < h; i++) {
    const s = sigPrev[i];
    rowOf.set(s, rowOf.has(s) ? -1 : i);
  }
  const votes = new Map<number, number>();
  let best = 0, bestVotes = 0;
  for (let i = 0; i < h; i++) {
    const s = sigNext[i];
    if (s === sigPrev[i]) continue; // most likely unchanged: no shift to learn
    const j = rowOf.get(s);
    if (j === undefined || j < 0) continue;
    const dy = j - i;
    if (Math.abs(dy) > maxShift) continue;
    const v = (votes.get(dy) ?? 0) + 1;
    votes.set(dy, v);
    if (v > bestVotes) {
      bestVotes = v;
      best = dy;
    }
  }
  if (bestVotes === 0) return undefined;

  // Exact check of the winning shift: the run of rows equal to prev's moved rows that holds
  // the most rows that changed at all (by their signatures): rows that are also equal where
  // they were (repeating patterns, or a part the guest has not redrawn yet) are not worth a copy.
  const run = longestRun(band, best, (i) => sigNext[i] !== sigPrev[i]);
  if (run.len < minRows || run.changed < minRows) return undefined;
  opts.memo?.setShift(key, best);
  return { dy: best, y0: run.start, y1: run.start + run.len };
}

/** The rows of the area being checked, and the comparer of `next` with `prev`. */
interface Band {
  readonly cmp: SpanComparer;
  readonly next: Framebuffer;
  readonly prev: Framebuffer;
  readonly x0: number;
  readonly w: number;
  readonly y0: number;
  readonly y1: number;
  readonly bpp: number;
}

/**
 * The run of rows of `b` in `next` equal to `prev`'s rows `dy` further, that
 * holds the most rows `changed` says changed (row index from `b.y0`), or the
 * longest without `changed`.
 */
function longestRun(
  b: Band,
  dy: number,
  changed: ((i: number) => boolean) | undefined,
): { start: number; len: number; changed: number } {
  const { cmp, next, prev, x0, w, y0, y1, bpp } = b;
  const from = Math.max(y0, y0 - dy), to = Math.min(y1, y1 - dy);
  const n = w * bpp;
  // Whole rows lie back to back: a block of rows is compared in one call first, and row by row
  // only when it differs (one call per row costs more than the comparing, at 1080p).
  const whole = x0 === 0 && n === next.stride && next.stride === prev.stride;
  let equalUntil = from; // rows [.., equalUntil) are known equal
  let runStart = -1, runChanged = 0, bestStart = 0, bestLen = 0, bestChanged = 0;
  for (let y = from; y <= to; y++) {
    if (whole && y >= equalUntil && y < to) {
      const rows = Math.min(BLOCK_ROWS, to - y);
      if (cmp.equal(y * next.stride, (y + dy) * prev.stride, rows * n)) equalUntil = y + rows;
    }
    const equal = y < to && (y < equalUntil ||
      cmp.equal(y * next.stride + x0 * bpp, (y + dy) * prev.stride + x0 * bpp, n));
    if (equal) {
      if (runStart < 0) {
        runStart = y;
        runChanged = 0;
      }
      if (!changed || changed(y - y0)) runChanged++;
    } else if (runStart >= 0) {
      if (runChanged > bestChanged) {
        bestLen = y - runStart;
        bestStart = runStart;
        bestChanged = runChanged;
      }
      runStart = -1;
    }
  }
  return { start: bestStart, len: bestLen, changed: bestChanged };
}

/** Rows of a run sampled by {@link changedInPlace}. */
const IN_PLACE_SAMPLES = 8;

/**
 * True when some of a few rows spread over the run differ from `prev`'s rows
 * in place: the rows really moved, rather than being the same as before
 * (blank rows equal whatever the shift).
 */
function changedInPlace(b: Band, run: { start: number; len: number }): boolean {
  const { cmp, next, prev, x0, w, bpp } = b;
  for (let k = 0; k < IN_PLACE_SAMPLES; k++) {
    const y = run.start + Math.floor(((k + 0.5) * run.len) / IN_PLACE_SAMPLES);
    if (!cmp.equal(y * next.stride + x0 * bpp, y * prev.stride + x0 * bpp, w * bpp)) return true;
  }
  return false;
}

/** Rows of a block compared in one call by the exact check (see detectVerticalScroll). */
const BLOCK_ROWS = 64;

/** Neighbouring pixels a signature takes together (they share a cache line). */
const RUN = 4;

/**
 * A hash per row of about `samples` pixels of columns `[x0, x0 + w)`: runs of
 * {@link RUN} neighbouring pixels spread evenly over the width. (Reading a
 * frame's rows is what costs, one cache line per run, not the hashing.)
 */
function signatures(
  fb: Framebuffer,
  x0: number,
  w: number,
  y0: number,
  y1: number,
  bpp: number,
  samples: number,
): Int32Array {
  const out = new Int32Array(y1 - y0);
  const b = fb.bytes;
  const run = Math.min(RUN, samples);
  const runs = Math.max(1, Math.floor(samples / run));
  const step = Math.floor(w / runs);
  const first = x0 + ((step - run) >> 1);
  const aligned = bpp === 4 && (b.byteOffset & 3) === 0 && (fb.stride & 3) === 0;
  const words = aligned ? new Int32Array(b.buffer, b.byteOffset, b.length >> 2) : undefined;
  for (let y = y0; y < y1; y++) {
    let hsh = 0x811c9dc5 | 0;
    if (words) {
      const row = (y * fb.stride) >> 2;
      for (let k = 0, x = first; k < runs; k++, x += step) {
        for (let i = row + x, e = i + run; i < e; i++) {
          hsh = Math.imul(hsh ^ words[i], 0x01000193);
          hsh ^= hsh >>> 15;
        }
      }
    } else {
      for (let k = 0, x = first; k < runs; k++, x += step) {
        for (let o = y * fb.stride + x * bpp, e = o + run * bpp; o < e; o += bpp) {
          for (let c = 0; c < bpp; c++) hsh = Math.imul(hsh ^ b[o + c], 0x01000193);
          hsh ^= hsh >>> 15;
        }
      }
    }
    out[y - y0] = hsh;
  }
  return out;
}
