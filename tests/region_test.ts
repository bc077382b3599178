import { assert, assertEquals, assertThrows } from "@rxfb/assert";
import { area, type Rect, rect } from "../pipeline/rect.ts";
import { Region } from "../pipeline/region.ts";
import { mulberry32 } from "./prng.ts";

// ---------------------------------------------------------------------------------------------
// Brute-force model: a pixel mask over [-LO, SIZE - LO) in both axes.

const LO = 20;
const SIZE = 100;

type Mask = Uint8Array;
const newMask = (): Mask => new Uint8Array(SIZE * SIZE);
const at = (x: number, y: number) => (y + LO) * SIZE + (x + LO);

/** Sets the pixels of `r`, with the region's rounding rule (floor near edges, ceil far edges). */
function paint(m: Mask, r: Rect): void {
  if (r.w <= 0 || r.h <= 0) return;
  for (let y = Math.floor(r.y); y < Math.ceil(r.y + r.h); y++) {
    for (let x = Math.floor(r.x); x < Math.ceil(r.x + r.w); x++) m[at(x, y)] = 1;
  }
}

function maskOf(rects: readonly Rect[]): Mask {
  const m = newMask();
  for (const r of rects) paint(m, r);
  return m;
}

/** The mask of a region, failing if its rectangles overlap or are not positive integers. */
function regionMask(region: Region): Mask {
  const m = newMask();
  for (const r of region.rects()) {
    assert([r.x, r.y, r.w, r.h].every(Number.isInteger), `non-integer rect ${JSON.stringify(r)}`);
    assert(r.w > 0 && r.h > 0, `empty rect ${JSON.stringify(r)}`);
    for (let y = r.y; y < r.y + r.h; y++) {
      for (let x = r.x; x < r.x + r.w; x++) {
        assert(m[at(x, y)] === 0, `rects overlap at ${x},${y}`);
        m[at(x, y)] = 1;
      }
    }
  }
  return m;
}

const mapMask = (a: Mask, b: Mask, f: (p: number, q: number) => number): Mask =>
  a.map((p, i) => f(p, b[i]));
const count = (m: Mask) => m.reduce((s, p) => s + p, 0);

/** The region of a mask built row by row (1-pixel-high runs), independent of any input rects. */
function regionFromMask(m: Mask): Region {
  const runs: Rect[] = [];
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      if (!m[y * SIZE + x]) continue;
      const x0 = x;
      while (x < SIZE && m[y * SIZE + x]) x++;
      runs.push(rect(x0 - LO, y - LO, x - x0, 1));
    }
  }
  return Region.fromRects(runs);
}

/** Checks the banded canonical form directly on the rect list. */
function assertCanonical(region: Region): void {
  const rs = region.rects();
  // Group into bands: consecutive rects with the same y and h.
  const bands: Rect[][] = [];
  for (const r of rs) {
    const last = bands[bands.length - 1];
    if (last && last[0].y === r.y && last[0].h === r.h) last.push(r);
    else bands.push([r]);
  }
  for (let b = 0; b < bands.length; b++) {
    const band = bands[b];
    for (let k = 1; k < band.length; k++) {
      assert(band[k - 1].x + band[k - 1].w < band[k].x, "spans in a band must not touch");
    }
    if (b === 0) continue;
    const prev = bands[b - 1];
    const prevEnd = prev[0].y + prev[0].h;
    assert(prevEnd <= band[0].y, "bands must be sorted and disjoint");
    if (prevEnd === band[0].y) {
      const spans = (bs: Rect[]) => bs.map((r) => `${r.x}+${r.w}`).join(",");
      assert(spans(prev) !== spans(band), "touching bands with equal spans must be merged");
    }
  }
}

/** Random rects on a small grid: overlapping, empty, negative, sometimes fractional. */
function randomRects(rand: () => number): Rect[] {
  const n = Math.floor(rand() * 7);
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo));
  const out: Rect[] = [];
  for (let k = 0; k < n; k++) {
    const r = rect(int(-5, 40), int(-5, 40), int(-4, 20), int(-4, 20));
    if (rand() < 0.15) out.push(rect(r.x + rand(), r.y - rand(), r.w + rand(), r.h + rand()));
    else out.push(r);
  }
  return out;
}

function assertSameMask(actual: Mask, expected: Mask, what: string): void {
  const diff = actual.findIndex((p, i) => p !== expected[i]);
  if (diff >= 0) {
    throw new Error(`${what}: mismatch at ${(diff % SIZE) - LO},${Math.floor(diff / SIZE) - LO}`);
  }
}

/** Checks a computed region against its expected mask: pixels, area, form, canonicity. */
function check(region: Region, expected: Mask, what: string): void {
  assertSameMask(regionMask(region), expected, what);
  assertEquals(region.area(), count(expected), `${what}: area`);
  assertEquals(region.isEmpty(), count(expected) === 0, `${what}: isEmpty`);
  assertCanonical(region);
  const rebuilt = regionFromMask(expected);
  assertEquals(region.rects(), rebuilt.rects(), `${what}: not canonical`);
  assert(region.equals(rebuilt), `${what}: equals`);
}

function shuffle<T>(xs: T[], rand: () => number): T[] {
  const out = xs.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Property tests

Deno.test("region: set operations match a pixel mask (random cases)", () => {
  const rand = mulberry32(0xc0ffee);
  for (let iter = 0; iter < 1500; iter++) {
    const ra = randomRects(rand), rb = randomRects(rand);
    const a = Region.fromRects(ra), b = Region.fromRects(rb);
    const ma = maskOf(ra), mb = maskOf(rb);
    const tag = `case ${iter}`;
    check(a, ma, `${tag} fromRects`);
    check(a.union(b), mapMask(ma, mb, (p, q) => p | q), `${tag} union`);
    check(a.intersect(b), mapMask(ma, mb, (p, q) => p & q), `${tag} intersect`);
    check(a.subtract(b), mapMask(ma, mb, (p, q) => p & (1 - q)), `${tag} subtract`);
    // Input order must not matter for the canonical form.
    assertEquals(Region.fromRects(shuffle(ra, rand)).rects(), a.rects(), `${tag} order`);
    assertEquals(a.equals(b), ma.every((p, i) => p === mb[i]), `${tag} equals`);
  }
});

Deno.test("region: clip, translate, contains and boundingBox match a pixel mask", () => {
  const rand = mulberry32(42);
  for (let iter = 0; iter < 1500; iter++) {
    const rs = randomRects(rand);
    const region = Region.fromRects(rs);
    const m = maskOf(rs);
    const tag = `case ${iter}`;

    const c = randomRects(rand)[0] ?? rect(3, 4, 10, 5);
    check(region.clip(c), mapMask(m, maskOf([c]), (p, q) => p & q), `${tag} clip`);

    const dx = Math.floor(rand() * 11) - 5, dy = Math.floor(rand() * 11) - 5;
    const moved = newMask();
    for (const r of rs) paint(moved, r.w > 0 && r.h > 0 ? { ...r, x: r.x + dx, y: r.y + dy } : r);
    check(region.translate(dx, dy), moved, `${tag} translate`);

    for (let k = 0; k < 40; k++) {
      const x = Math.floor(rand() * 60) - 10, y = Math.floor(rand() * 60) - 10;
      assertEquals(region.contains(x, y), m[at(x, y)] === 1, `${tag} contains(${x},${y})`);
    }

    let x1 = Infinity, y1 = Infinity, x2 = -Infinity, y2 = -Infinity;
    for (let y = -LO; y < SIZE - LO; y++) {
      for (let x = -LO; x < SIZE - LO; x++) {
        if (!m[at(x, y)]) continue;
        x1 = Math.min(x1, x), y1 = Math.min(y1, y);
        x2 = Math.max(x2, x + 1), y2 = Math.max(y2, y + 1);
      }
    }
    const expected = x1 === Infinity ? undefined : rect(x1, y1, x2 - x1, y2 - y1);
    assertEquals(region.boundingBox(), expected, `${tag} boundingBox`);
  }
});

/** Checks simplify's contract: disjoint, superset, at most maxRects, and returns the waste. */
function checkSimplify(region: Region, out: Rect[], maxRects: number, what: string): number {
  assert(out.length <= Math.max(1, maxRects), `${what}: ${out.length} > maxRects ${maxRects}`);
  const cover = regionMask(Region.fromRects(out));
  assertEquals(count(cover), out.reduce((s, r) => s + area(r), 0), `${what}: output overlaps`);
  const m = regionMask(region);
  assert(m.every((p, i) => p <= cover[i]), `${what}: not a superset`);
  return count(cover) - count(m);
}

Deno.test("region: simplify covers a superset with disjoint rects (random cases)", () => {
  const rand = mulberry32(7);
  for (let iter = 0; iter < 1500; iter++) {
    const region = Region.fromRects([...randomRects(rand), ...randomRects(rand)]);
    const maxRects = 1 + Math.floor(rand() * 6);
    const maxWaste = rand() * 0.5;
    checkSimplify(region, region.simplify({ maxRects, maxWaste }), maxRects, `case ${iter}`);

    // Without a rect budget every merged box must respect maxWaste.
    const free = region.simplify({ maxRects: Infinity, maxWaste });
    checkSimplify(region, free, Infinity, `case ${iter} free`);
    assert(free.length <= region.rects().length, `case ${iter}: simplify added rects`);
    for (const r of free) {
      const inside = region.clip(r).area();
      assert(area(r) - inside <= maxWaste * area(r) + 1e-9, `case ${iter}: box too wasteful`);
    }
  }
});

Deno.test("region: simplify stays fast and valid on a few hundred rects", () => {
  const rand = mulberry32(99);
  const rs: Rect[] = [];
  for (let k = 0; k < 400; k++) {
    rs.push(
      rect(
        Math.floor(rand() * 1900),
        Math.floor(rand() * 1000),
        1 + Math.floor(rand() * 40),
        1 + Math.floor(rand() * 20),
      ),
    );
  }
  const region = Region.fromRects(rs);
  assert(region.rects().length > 300, "expected a fragmented region");
  const t0 = performance.now();
  const out = region.simplify();
  const ms = performance.now() - t0;
  assert(out.length <= 16);
  assert(ms < 1000, `simplify took ${ms} ms`);
  // Superset and disjointness, checked via regions (the brute-force mask is too small here).
  assert(region.subtract(Region.fromRects(out)).isEmpty(), "not a superset");
  assertEquals(Region.fromRects(out).area(), out.reduce((s, r) => s + area(r), 0), "overlap");
});

// ---------------------------------------------------------------------------------------------
// Hand-written cases

Deno.test("region: simplify merges across a 1px gap but not far apart rects", () => {
  const gap = Region.fromRects([rect(0, 0, 10, 10), rect(11, 0, 10, 10)]);
  assertEquals(gap.rects().length, 2);
  assertEquals(gap.simplify(), [rect(0, 0, 21, 10)]);

  const far = Region.fromRects([rect(0, 0, 10, 10), rect(100, 100, 10, 10)]);
  assertEquals(far.simplify(), [rect(0, 0, 10, 10), rect(100, 100, 10, 10)]);
  // ...unless the rect budget forces it.
  assertEquals(far.simplify({ maxRects: 1 }), [rect(0, 0, 110, 110)]);
});

Deno.test("region: simplify re-merges what banding split, within maxWaste", () => {
  // A 10x10 square with a 2x2 tab on its right edge is three bands.
  const region = Region.fromRects([rect(0, 0, 10, 10), rect(10, 3, 2, 2)]);
  assertEquals(region.rects(), [rect(0, 0, 10, 3), rect(0, 3, 12, 2), rect(0, 5, 10, 5)]);
  // Top band + tab band wastes 6 of 60 pixels; adding the bottom would waste 16 of 120.
  const tight = region.simplify({ maxWaste: 0.1 });
  assertEquals(tight, [rect(0, 0, 12, 5), rect(0, 5, 10, 5)]);
  assertEquals(checkSimplify(region, tight, 16, "tight"), 6);
  const loose = region.simplify();
  assertEquals(loose, [rect(0, 0, 12, 10)]);
  assertEquals(checkSimplify(region, loose, 16, "loose"), 16);
  assertEquals(region.simplify({ maxWaste: 0 }), region.rects());

  // A 3x3 grid of 4x4 tiles with 1px gaps: the gaps are 26% of the box, under the default 30%.
  const tiles: Rect[] = [];
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) tiles.push(rect(i * 5, j * 5, 4, 4));
  const grid = Region.fromRects(tiles);
  const merged = grid.simplify();
  assertEquals(merged, [rect(0, 0, 14, 14)]);
  assertEquals(checkSimplify(grid, merged, 16, "grid"), 14 * 14 - 9 * 16);
});

Deno.test("region: hand-written basics", () => {
  const empty = Region.empty();
  assert(empty.isEmpty());
  assertEquals(empty.rects(), []);
  assertEquals(empty.boundingBox(), undefined);
  assertEquals(empty.simplify(), []);
  assertEquals(Region.fromRects([rect(1, 1, 0, 5), rect(1, 1, -3, 5)]).isEmpty(), true);

  // Two rects touching edge to edge become one.
  const joined = Region.fromRects([rect(0, 0, 5, 5), rect(5, 0, 5, 5)]);
  assertEquals(joined.rects(), [rect(0, 0, 10, 5)]);
  // A hole: a ring is four rects in three bands.
  const ring = Region.fromRect(rect(0, 0, 6, 6)).subtract(Region.fromRect(rect(2, 2, 2, 2)));
  assertEquals(ring.rects(), [
    rect(0, 0, 6, 2),
    rect(0, 2, 2, 2),
    rect(4, 2, 2, 2),
    rect(0, 4, 6, 2),
  ]);
  assertEquals(ring.area(), 32);
  assert(!ring.contains(2, 3) && ring.contains(1, 3) && ring.contains(4.9, 3.5));
  // Filling the hole restores the square exactly.
  assert(ring.union(Region.fromRect(rect(2, 2, 2, 2))).equals(Region.fromRect(rect(0, 0, 6, 6))));
  assert(!ring.equals(Region.fromRect(rect(0, 0, 6, 6))));

  // Fractional input covers every touched pixel.
  assertEquals(Region.fromRect(rect(0.5, 1.2, 1, 1)).rects(), [rect(0, 1, 2, 2)]);
  assertThrows(() => Region.fromRect(rect(0, 0, Infinity, 1)), RangeError);
  assertThrows(() => ring.translate(0.5, 0), RangeError);
  assertEquals(ring.translate(-3, 10).boundingBox(), rect(-3, 10, 6, 6));
});
