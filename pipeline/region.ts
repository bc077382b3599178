/**
 * Pixel regions: sets of framebuffer pixels kept as non-overlapping rectangles.
 *
 * @module
 */

import type { Rect } from "./rect.ts";

/**
 * One horizontal band: rows `y1 <= y < y2` that all hold the same spans.
 * `xs` is `[x1, x2, x1, x2, ...]`: half-open spans, sorted, never touching or overlapping.
 * Only mutated while a region is being built (see `pushBand`).
 */
interface Band {
  y1: number;
  y2: number;
  xs: readonly number[];
}

/** Options of {@linkcode Region.simplify}. */
export interface SimplifyOptions {
  /** Upper bound on the number of rectangles returned (at least 1). Default 16. */
  readonly maxRects?: number;
  /**
   * Largest share of a merged rectangle's area that may be pixels outside the region,
   * for merges that are not needed to reach `maxRects`. Default 0.3.
   */
  readonly maxWaste?: number;
}

/** Above this many rectangles `simplify` gives up on pairing and returns the bounding box. */
const SIMPLIFY_MAX_INPUT = 1024;

/**
 * An immutable set of integer pixels, stored like X11/pixman regions: y-x banded rectangles.
 *
 * Bands are sorted by y and never overlap; the spans in a band are sorted by x and never touch;
 * two touching bands never hold the same spans (they would have been merged). This form is
 * canonical, so equal pixel sets have equal {@linkcode Region.rects} lists, and the set
 * operations are one linear sweep over both band lists.
 *
 * Input rectangles may have fractional coordinates: x/y are floored and the far edges
 * (`x + w`, `y + h`) ceiled, so the region covers every pixel the rectangle touches.
 * Rectangles with `w <= 0` or `h <= 0` are ignored; non-finite values throw a RangeError.
 *
 * @example Damage minus an opaque window
 * ```ts
 * import { assertEquals } from "@rxfb/assert";
 * import { Region } from "./region.ts";
 *
 * const damage = Region.fromRects([{ x: 0, y: 0, w: 8, h: 8 }, { x: 4, y: 4, w: 8, h: 8 }]);
 * const visible = damage.subtract(Region.fromRect({ x: 2, y: 2, w: 4, h: 4 }));
 * assertEquals(visible.area(), 8 * 8 + 8 * 8 - 4 * 4 - 4 * 4); // union, minus the hole
 * assertEquals(visible.contains(3, 3), false);
 * assertEquals(visible.boundingBox(), { x: 0, y: 0, w: 12, h: 12 });
 * ```
 */
export class Region {
  static readonly #empty: Region = new Region([]);
  readonly #bands: readonly Band[];
  #rects: readonly Rect[] | undefined;

  private constructor(bands: readonly Band[]) {
    this.#bands = bands;
  }

  /** The region holding no pixel. */
  static empty(): Region {
    return Region.#empty;
  }

  /** The pixels of one rectangle (empty when `w <= 0` or `h <= 0`). */
  static fromRect(r: Rect): Region {
    const n = normalize(r);
    return n ? new Region([{ y1: n[1], y2: n[3], xs: [n[0], n[2]] }]) : Region.#empty;
  }

  /** The union of any rectangles; they may overlap, and empty ones are ignored. */
  static fromRects(rects: Iterable<Rect>): Region {
    const parts = Array.from(rects, (r) => Region.fromRect(r));
    // Divide and conquer keeps the operands of each union about the same size.
    const build = (lo: number, hi: number): Region => {
      if (hi - lo === 0) return Region.#empty;
      if (hi - lo === 1) return parts[lo];
      const mid = (lo + hi) >> 1;
      return build(lo, mid).union(build(mid, hi));
    };
    return build(0, parts.length);
  }

  /** Pixels in this region, in `other`, or in both. */
  union(other: Region): Region {
    if (other.isEmpty()) return this;
    if (this.isEmpty()) return other;
    return new Region(combine(this.#bands, other.#bands, (a, b) => a || b));
  }

  /** Pixels in both this region and `other`. */
  intersect(other: Region): Region {
    if (this.isEmpty() || other.isEmpty()) return Region.#empty;
    return new Region(combine(this.#bands, other.#bands, (a, b) => a && b));
  }

  /** Pixels in this region but not in `other`. */
  subtract(other: Region): Region {
    if (this.isEmpty() || other.isEmpty()) return this;
    return new Region(combine(this.#bands, other.#bands, (a, b) => a && !b));
  }

  /** Pixels of this region inside `r` (same input rules as {@linkcode Region.fromRect}). */
  clip(r: Rect): Region {
    return this.intersect(Region.fromRect(r));
  }

  /** The region moved by integer offsets; throws a RangeError for non-integer offsets. */
  translate(dx: number, dy: number): Region {
    if (!Number.isInteger(dx) || !Number.isInteger(dy)) {
      throw new RangeError(`Region.translate: offsets must be integers, got ${dx}, ${dy}`);
    }
    if ((dx === 0 && dy === 0) || this.isEmpty()) return this;
    return new Region(
      this.#bands.map((b) => ({ y1: b.y1 + dy, y2: b.y2 + dy, xs: b.xs.map((x) => x + dx) })),
    );
  }

  /** True when the region holds no pixel. */
  isEmpty(): boolean {
    return this.#bands.length === 0;
  }

  /** Number of pixels in the region. */
  area(): number {
    let total = 0;
    for (const b of this.#bands) {
      let width = 0;
      for (let k = 0; k < b.xs.length; k += 2) width += b.xs[k + 1] - b.xs[k];
      total += width * (b.y2 - b.y1);
    }
    return total;
  }

  /** The smallest rectangle holding every pixel, or undefined for the empty region. */
  boundingBox(): Rect | undefined {
    const bands = this.#bands;
    if (bands.length === 0) return undefined;
    let x1 = Infinity, x2 = -Infinity;
    for (const b of bands) {
      x1 = Math.min(x1, b.xs[0]);
      x2 = Math.max(x2, b.xs[b.xs.length - 1]);
    }
    const y1 = bands[0].y1, y2 = bands[bands.length - 1].y2;
    return { x: x1, y: y1, w: x2 - x1, h: y2 - y1 };
  }

  /**
   * The region as non-overlapping rectangles, sorted by y then x (band order). The list is
   * canonical: regions with the same pixels give equal lists.
   */
  rects(): readonly Rect[] {
    if (this.#rects === undefined) {
      const out: Rect[] = [];
      for (const b of this.#bands) {
        for (let k = 0; k < b.xs.length; k += 2) {
          out.push({ x: b.xs[k], y: b.y1, w: b.xs[k + 1] - b.xs[k], h: b.y2 - b.y1 });
        }
      }
      this.#rects = Object.freeze(out);
    }
    return this.#rects;
  }

  /** True when pixel `(floor(x), floor(y))` is in the region. */
  contains(x: number, y: number): boolean {
    const px = Math.floor(x), py = Math.floor(y);
    const bands = this.#bands;
    // Last band starting at or above py.
    let lo = 0, hi = bands.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (bands[mid].y1 <= py) lo = mid + 1;
      else hi = mid;
    }
    const band = bands[lo - 1];
    if (band === undefined || py >= band.y2) return false;
    // Inside iff an odd number of span edges lie at or left of px.
    const xs = band.xs;
    lo = 0, hi = xs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (xs[mid] <= px) lo = mid + 1;
      else hi = mid;
    }
    return (lo & 1) === 1;
  }

  /** True when both regions hold the same pixels. */
  equals(other: Region): boolean {
    const a = this.#bands, b = other.#bands;
    if (a === b) return true;
    if (a.length !== b.length) return false;
    for (let k = 0; k < a.length; k++) {
      if (a[k].y1 !== b[k].y1 || a[k].y2 !== b[k].y2 || !sameSpans(a[k].xs, b[k].xs)) return false;
    }
    return true;
  }

  /**
   * Fewer, coarser rectangles for the region, for consumers where each rectangle has a fixed
   * cost (e.g. one damage message per rectangle). The result is pairwise disjoint and covers a
   * superset of the region.
   *
   * Heuristic: start from {@linkcode Region.rects}, with rects of equal x-span in touching bands
   * stacked back into one (free: no waste), and greedily merge the pair whose bounding box
   * adds the fewest pixels not in the region. A merged box swallows every other box it overlaps,
   * so the output stays disjoint. Two phases:
   * 1. optional merges: only while the merged box's waste (pixels outside the region) is at most
   *    `maxWaste` of its area;
   * 2. forced merges: cheapest first, ignoring `maxWaste`, until at most `maxRects` remain.
   *
   * Each box remembers its cheapest partner, so a merge usually costs O(n) rather than O(n²).
   * Beyond 1024 stacked rectangles the bounding box is returned instead.
   */
  simplify(opts: SimplifyOptions = {}): Rect[] {
    const maxRects = Math.max(1, Math.floor(opts.maxRects ?? 16));
    const maxWaste = opts.maxWaste ?? 0.3;
    const input = this.rects();
    if (input.length <= 1) return input.map((r) => ({ ...r }));
    const boxes = stackBands(input);
    if (boxes.length > SIMPLIFY_MAX_INPUT) return [this.boundingBox()!];
    return mergeBoxes(boxes, maxRects, maxWaste);
  }
}

const EMPTY_SPANS: readonly number[] = [];

/** `[x1, y1, x2, y2]` in whole pixels, or undefined for an empty rectangle. */
function normalize(r: Rect): [number, number, number, number] | undefined {
  if (![r.x, r.y, r.w, r.h].every(Number.isFinite)) {
    throw new RangeError(`Region: non-finite rectangle ${JSON.stringify(r)}`);
  }
  if (r.w <= 0 || r.h <= 0) return undefined;
  const x1 = Math.floor(r.x), y1 = Math.floor(r.y);
  const x2 = Math.ceil(r.x + r.w), y2 = Math.ceil(r.y + r.h);
  // A tiny fractional size can round away (x + w === x in floating point).
  return x2 > x1 && y2 > y1 ? [x1, y1, x2, y2] : undefined;
}

function sameSpans(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false;
  return true;
}

/** Appends rows `y1..y2` holding `xs`, merging into the previous band when that is identical. */
function pushBand(out: Band[], y1: number, y2: number, xs: readonly number[]): void {
  if (xs.length === 0) return;
  const last = out[out.length - 1];
  if (last !== undefined && last.y2 === y1 && sameSpans(last.xs, xs)) last.y2 = y2;
  else out.push({ y1, y2, xs });
}

/**
 * Sweeps the x edges of two span lists, emitting an edge wherever `op(inA, inB)` changes.
 * Emitting only on changes also joins spans that end up touching.
 */
function combineSpans(
  a: readonly number[],
  b: readonly number[],
  op: (inA: boolean, inB: boolean) => boolean,
): number[] {
  const out: number[] = [];
  let i = 0, j = 0, inA = false, inB = false, inOut = false;
  while (i < a.length || j < b.length) {
    const x = Math.min(i < a.length ? a[i] : Infinity, j < b.length ? b[j] : Infinity);
    if (a[i] === x) {
      inA = !inA;
      i++;
    }
    if (b[j] === x) {
      inB = !inB;
      j++;
    }
    const now = op(inA, inB);
    if (now !== inOut) {
      out.push(x);
      inOut = now;
    }
  }
  return out;
}

/**
 * Sweeps the y edges of two band lists: each strip between consecutive edges has constant spans
 * in both inputs, which `combineSpans` merges. `op(false, false)` must be false.
 */
function combine(
  a: readonly Band[],
  b: readonly Band[],
  op: (inA: boolean, inB: boolean) => boolean,
): Band[] {
  const out: Band[] = [];
  let i = 0, j = 0;
  let y = Math.min(a[0]?.y1 ?? Infinity, b[0]?.y1 ?? Infinity);
  while (i < a.length || j < b.length) {
    const ba = a[i], bb = b[j];
    // Next y edge: the start of a band we are above, else the end of the band we are in.
    const ya = ba === undefined ? Infinity : y < ba.y1 ? ba.y1 : ba.y2;
    const yb = bb === undefined ? Infinity : y < bb.y1 ? bb.y1 : bb.y2;
    const next = Math.min(ya, yb);
    const xa = ba !== undefined && ba.y1 <= y ? ba.xs : EMPTY_SPANS;
    const xb = bb !== undefined && bb.y1 <= y ? bb.xs : EMPTY_SPANS;
    if (xa.length > 0 || xb.length > 0) pushBand(out, y, next, combineSpans(xa, xb, op));
    y = next;
    if (ba !== undefined && ba.y2 <= y) i++;
    if (bb !== undefined && bb.y2 <= y) j++;
  }
  return out;
}

/** A box during `simplify`: edges, region pixels inside it, and a stable id. */
interface Box {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  real: number;
  id: number;
  alive: boolean;
}

const boxArea = (b: Box): number => (b.x2 - b.x1) * (b.y2 - b.y1);

/**
 * Boxes from band-ordered rects, stacking rects with the same x-span in touching bands into one
 * box. Free (no waste), and undoes most of the splitting banding does to overlapping inputs.
 */
function stackBands(rects: readonly Rect[]): Box[] {
  const boxes: Box[] = [];
  const open = new Map<string, Box>(); // by x-span: the box that may grow downwards
  for (const r of rects) {
    const key = `${r.x},${r.w}`;
    const box = open.get(key);
    if (box !== undefined && box.y2 === r.y) {
      box.y2 += r.h;
      box.real += r.w * r.h;
    } else {
      const b = { x1: r.x, y1: r.y, x2: r.x + r.w, y2: r.y + r.h, real: r.w * r.h };
      const id = boxes.push({ ...b, id: boxes.length, alive: true }) - 1;
      open.set(key, boxes[id]);
    }
  }
  return boxes;
}

/** The greedy pair merging behind `Region.simplify`; `boxes` must be disjoint. */
function mergeBoxes(boxes: Box[], maxRects: number, maxWaste: number): Rect[] {
  let alive = boxes.length;
  let forced = false;
  // Pairs whose merge failed the exact waste check (absorbing neighbours can add waste).
  // Ids stay below 2 * SIMPLIFY_MAX_INPUT, far below the 2^20 multiplier.
  const rejected = new Set<number>();
  const pairKey = (a: Box, b: Box) => Math.min(a.id, b.id) * 2 ** 20 + Math.max(a.id, b.id);
  // Estimated waste of merging a and b (ignores boxes the merge would swallow).
  const cost = (a: Box, b: Box): number => {
    const area = (Math.max(a.x2, b.x2) - Math.min(a.x1, b.x1)) *
      (Math.max(a.y2, b.y2) - Math.min(a.y1, b.y1));
    const waste = area - a.real - b.real;
    if (forced) return waste;
    if (waste > maxWaste * area) return Infinity;
    return rejected.size > 0 && rejected.has(pairKey(a, b)) ? Infinity : waste;
  };
  // For each box, its cheapest partner (-1: none allowed) and that cost.
  const bestJ: number[] = [];
  const bestCost: number[] = [];
  const refresh = (i: number) => {
    bestJ[i] = -1;
    bestCost[i] = Infinity;
    for (let k = 0; k < boxes.length; k++) {
      if (k === i || !boxes[k].alive) continue;
      const c = cost(boxes[i], boxes[k]);
      if (c < bestCost[i]) {
        bestJ[i] = k;
        bestCost[i] = c;
      }
    }
  };

  /** One merge attempt: "merged", "rejected" or "done" (no allowed pair left). */
  const step = (): "merged" | "rejected" | "done" => {
    let i = -1;
    for (let k = 0; k < boxes.length; k++) {
      if (boxes[k].alive && bestCost[k] < (i < 0 ? Infinity : bestCost[i])) i = k;
    }
    if (i < 0) return "done";
    const j = bestJ[i];
    const a = boxes[i], b = boxes[j];
    const m: Box = {
      x1: Math.min(a.x1, b.x1),
      y1: Math.min(a.y1, b.y1),
      x2: Math.max(a.x2, b.x2),
      y2: Math.max(a.y2, b.y2),
      real: a.real + b.real,
      id: boxes.length,
      alive: true,
    };
    // Swallow every box the merged box overlaps, until none is left, to stay disjoint.
    const members = [i, j];
    for (let grown = true; grown;) {
      grown = false;
      for (let k = 0; k < boxes.length; k++) {
        const o = boxes[k];
        if (!o.alive || members.includes(k)) continue;
        if (o.x1 < m.x2 && m.x1 < o.x2 && o.y1 < m.y2 && m.y1 < o.y2) {
          m.x1 = Math.min(m.x1, o.x1);
          m.y1 = Math.min(m.y1, o.y1);
          m.x2 = Math.max(m.x2, o.x2);
          m.y2 = Math.max(m.y2, o.y2);
          m.real += o.real;
          members.push(k);
          grown = true;
        }
      }
    }
    if (!forced && boxArea(m) - m.real > maxWaste * boxArea(m)) {
      rejected.add(pairKey(a, b));
      refresh(i);
      refresh(j);
      return "rejected";
    }
    for (const k of members) boxes[k].alive = false;
    alive -= members.length - 1;
    const n = boxes.push(m) - 1;
    refresh(n);
    for (let k = 0; k < n; k++) {
      if (!boxes[k].alive) continue;
      // Every other partner of k costs at least bestCost[k], so m wins if it is as cheap; only
      // when k's partner died and m is dearer does k need a full rescan.
      const c = cost(boxes[k], m);
      const partnerDied = bestJ[k] >= 0 && !boxes[bestJ[k]].alive;
      if (c < bestCost[k] || (partnerDied && c === bestCost[k])) {
        bestJ[k] = n;
        bestCost[k] = c;
      } else if (partnerDied) refresh(k);
    }
    return "merged";
  };

  // Phase 1: merges within maxWaste. Rejections are capped so the work stays about O(n²).
  for (let i = 0; i < boxes.length; i++) refresh(i);
  for (let budget = 2 * boxes.length; alive > 1 && budget > 0;) {
    const r = step();
    if (r === "done") break;
    if (r === "rejected") budget--;
  }
  // Phase 2: cheapest merges regardless of waste, down to maxRects.
  if (alive > maxRects) {
    forced = true;
    for (let i = 0; i < boxes.length; i++) if (boxes[i].alive) refresh(i);
    while (alive > maxRects && step() === "merged");
  }

  return boxes.filter((b) => b.alive)
    .map((b) => ({ x: b.x1, y: b.y1, w: b.x2 - b.x1, h: b.y2 - b.y1 }))
    .sort((p, q) => p.y - q.y || p.x - q.x);
}
