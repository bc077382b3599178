/**
 * The shared display shadow and the per-viewer update trackers against model
 * viewers: whatever the guest does (random changes, scrolls of bands, damage
 * reported late or twice, forced areas, several frames between two updates,
 * different for each viewer), a viewer that applies each update's copies and
 * then its pixels from the shadow ends up with the guest's pixels.
 */
import { assert, assertEquals } from "@rxfb/assert";
import type { Framebuffer } from "../pipeline/framebuffer.ts";
import { XRGB8888 } from "../pipeline/pixel_format.ts";
import type { Rect } from "../pipeline/rect.ts";
import type { ShadowFramebuffer } from "../pipeline/compare_tiles.ts";
import { DisplayShadow, type ShadowListener } from "../sinks/vnc/display_shadow.ts";
import {
  MAX_PENDING_COPIES,
  type PendingUpdate,
  UpdateTracker,
} from "../sinks/vnc/update_tracker.ts";
import { mulberry32 as prng } from "./prng.ts";

const W = 96, H = 80;

/** A viewer: its pixels, updated as an RFB client would. */
class Viewer {
  px = new Uint32Array(W * H);
  copies = 0;

  apply(t: UpdateTracker, fb: ShadowFramebuffer): void {
    this.update(t.take(), fb);
  }

  update(u: PendingUpdate, fb: ShadowFramebuffer): void {
    const shadow = new Uint32Array(fb.bytes.buffer, fb.bytes.byteOffset, W * H);
    for (const g of u.copies) {
      for (const r of g.rects) {
        // CopyRect: the source as it is before this rectangle (overlap-safe).
        const src = this.px.slice();
        for (let y = r.y; y < r.y + r.h; y++) {
          for (let x = r.x; x < r.x + r.w; x++) this.px[y * W + x] = src[(y + g.dy) * W + x];
        }
        this.copies++;
      }
    }
    // Pixels of a few covering rectangles, as the connection sends them.
    for (const r of u.region.simplify({ maxRects: 8 })) {
      for (let y = r.y; y < r.y + r.h; y++) {
        for (let x = r.x; x < r.x + r.w; x++) this.px[y * W + x] = shadow[y * W + x];
      }
    }
  }
}

function guest(): { px: Uint32Array; fb: Framebuffer } {
  const px = new Uint32Array(W * H);
  return {
    px,
    fb: { width: W, height: H, stride: W * 4, format: XRGB8888, bytes: new Uint8Array(px.buffer) },
  };
}

function assertSame(v: Viewer, px: Uint32Array, what: string) {
  for (let i = 0; i < px.length; i++) {
    if (v.px[i] !== px[i]) {
      assertEquals(v.px[i], px[i], `${what}: pixel (${i % W},${Math.floor(i / W)})`);
    }
  }
}

/** A tracker listening to `shadow`, as a connection does. */
function follow(shadow: DisplayShadow, copyRect: boolean): UpdateTracker {
  const t = new UpdateTracker();
  t.copyRect = copyRect;
  const l: ShadowListener = {
    copyRect,
    resized: (fb) => t.reset(fb.width, fb.height),
    moved: (dst, dy) => t.moved(dst, dy),
    changed: (rects) => t.changed(rects),
  };
  shadow.add(l);
  return t;
}

/** The window that scrolled last (scrolls often repeat in one window). */
let lastBand = { x: 0, w: W, top: 0, bottom: H };

/**
 * A guest full of noise (every row unique, so scrolls are found) and a
 * shadow of it, taking every scroll, with one CopyRect viewer's tracker.
 */
function noisyGuest(seed: number) {
  const g = guest();
  const rnd = prng(seed);
  for (let i = 0; i < g.px.length; i++) g.px[i] = (rnd() * 0xffffff) | 0;
  const shadow = new DisplayShadow({ tile: 16, scrollMinArea: 0 });
  shadow.resize(g.fb);
  return { g, rnd, shadow, t: follow(shadow, true) };
}

/** Random content, scrolled bands and changed blocks; returns the damage (sometimes late). */
function drawSomething(g: { px: Uint32Array }, rnd: () => number): Rect[] {
  const damage: Rect[] = [];
  const what = rnd();
  if (what < 0.4) {
    // Scroll a band of a window by dy, new rows at the uncovered edge.
    const r = rnd();
    if (r < 0.5) {
      const x = (rnd() * 20) | 0, w = W - x - ((rnd() * 20) | 0);
      lastBand = { x, w, top: (rnd() * 20) | 0, bottom: H - ((rnd() * 20) | 0) };
    } else if (r < 0.75) {
      // The same columns, other rows (a split window: only one pane scrolls).
      const top = (rnd() * 40) | 0;
      lastBand = { ...lastBand, top, bottom: top + 20 + ((rnd() * (H - top - 20)) | 0) };
    }
    const { x, w, top, bottom } = lastBand;
    const dy = ((rnd() * 24) | 0) - 12 || 5;
    const src = g.px.slice();
    for (let y = top; y < bottom; y++) {
      for (let xx = x; xx < x + w; xx++) {
        const sy = y + dy;
        g.px[y * W + xx] = sy >= top && sy < bottom ? src[sy * W + xx] : (rnd() * 0xffffff) | 0;
      }
    }
    damage.push({ x, y: top, w, h: bottom - top });
  }
  if (what >= 0.3) {
    // A few changed blocks (some redrawn identical).
    for (let k = 0; k < 3; k++) {
      const bx = (rnd() * W) | 0, by = (rnd() * H) | 0;
      const bw = 1 + ((rnd() * 30) | 0), bh = 1 + ((rnd() * 30) | 0);
      const same = rnd() < 0.3;
      for (let y = by; y < Math.min(H, by + bh); y++) {
        for (let x = bx; x < Math.min(W, bx + bw); x++) {
          if (!same) g.px[y * W + x] = (rnd() * 0xffffff) | 0;
        }
      }
      damage.push({ x: bx, y: by, w: bw, h: bh });
    }
  }
  if (rnd() < 0.2) damage.push({ x: 0, y: 0, w: W, h: H });
  return damage;
}

Deno.test("DisplayShadow + UpdateTracker: viewers with their own pace and CopyRect or not all end up with the guest's pixels", () => {
  const rnd = prng(1);
  let copies = 0, pinnedReads = 0;
  for (let run = 0; run < 30; run++) {
    const g = guest();
    // Text-like content: unique rows, so that scrolls are found.
    for (let i = 0; i < g.px.length; i++) g.px[i] = (rnd() * 0xffffff) | 0;
    const shadow = new DisplayShadow({ tile: [8, 16, 32][run % 3], scrollMinArea: 0 });
    shadow.resize(g.fb);
    // Viewers 0 and 1 take CopyRect, 2 does not; 3 joins later.
    const viewers = [true, true, false].map((c) => ({ t: follow(shadow, c), v: new Viewer() }));
    for (const { t, v } of viewers) v.apply(t, shadow.fb!);
    for (const { v } of viewers) assertSame(v, g.px, "first update");
    // A write by reference in flight: the viewer's pixels come from the pinned shadow.
    let inFlight:
      | { u: PendingUpdate; fb: ShadowFramebuffer; unpin: () => void; k: number }
      | undefined;
    for (let step = 0; step < 60; step++) {
      const damage = drawSomething(g, rnd);
      // Damage may come in several events, overlapping.
      const cut = (rnd() * (damage.length + 1)) | 0;
      shadow.damage(damage.slice(0, cut));
      shadow.damage(damage.slice(cut));
      if (step === 20) {
        const late = { t: follow(shadow, true), v: new Viewer() };
        viewers.push(late);
      }
      if (inFlight && rnd() < 0.5) {
        viewers[inFlight.k].v.update(inFlight.u, inFlight.fb);
        inFlight.unpin();
        pinnedReads++;
        inFlight = undefined;
      }
      for (let k = 0; k < viewers.length; k++) {
        if (inFlight?.k === k || rnd() < 0.4) continue; // this viewer skips a frame
        const { t, v } = viewers[k];
        if (rnd() < 0.1) {
          t.force({ x: 5, y: 5, w: 30, h: 30 });
          shadow.damage([{ x: 5, y: 5, w: 30, h: 30 }]);
        }
        if (!inFlight && rnd() < 0.2) {
          inFlight = { u: t.take(), fb: shadow.fb!, unpin: shadow.pin(), k };
          continue;
        }
        v.apply(t, shadow.fb!);
        assertSame(v, g.px, `run ${run} step ${step} viewer ${k}`);
      }
    }
    for (const [k, { t, v }] of viewers.entries()) {
      if (inFlight?.k === k) {
        v.update(inFlight.u, inFlight.fb);
        inFlight.unpin();
      }
      v.apply(t, shadow.fb!);
      assertSame(v, g.px, `run ${run} end, viewer ${k}`);
      if (k === 2) assertEquals(v.copies, 0, "the viewer without CopyRect got copies");
      else copies += v.copies;
    }
  }
  assert(copies > 100, `only ${copies} copies: scrolls not found`);
  assert(pinnedReads > 20, `only ${pinnedReads} updates read from a pinned shadow`);
});

Deno.test("UpdateTracker: a scroll becomes one copy and the new rows", () => {
  const { g, rnd, shadow, t } = noisyGuest(4);
  t.take();
  // Up by 4 rows: new row y is old row y + 4; rows 76..79 are new.
  g.px.copyWithin(0, 4 * W);
  for (let i = 76 * W; i < H * W; i++) g.px[i] = (rnd() * 0xffffff) | 0;
  shadow.damage([{ x: 0, y: 0, w: W, h: H }]);
  const u = t.take();
  assertEquals(u.copies, [{ dy: 4, rects: [{ x: 0, y: 0, w: W, h: 76 }] }]);
  assertEquals(u.region.rects(), [{ x: 0, y: 76, w: W, h: 4 }]);
});

Deno.test("UpdateTracker: a terminal that scrolled ten times since the last update is one copy and ten new lines", () => {
  const { g, rnd, shadow, t } = noisyGuest(5);
  const v = new Viewer();
  v.apply(t, shadow.fb!);
  for (let k = 0; k < 10; k++) {
    g.px.copyWithin(0, 2 * W);
    for (let i = (H - 2) * W; i < H * W; i++) g.px[i] = (rnd() * 0xffffff) | 0;
    shadow.damage([{ x: 0, y: 0, w: W, h: H }]);
  }
  const u = t.take();
  assertEquals(u.copies, [{ dy: 20, rects: [{ x: 0, y: 0, w: W, h: H - 20 }] }]);
  assertEquals(u.region.rects(), [{ x: 0, y: H - 20, w: W, h: 20 }]);
  v.update(u, shadow.fb!);
  assertSame(v, g.px, "after ten scrolls");
});

Deno.test("UpdateTracker: a viewer that never asks keeps a bounded list of copies", () => {
  const { g, rnd, shadow, t } = noisyGuest(6);
  const v = new Viewer();
  v.apply(t, shadow.fb!);
  // Two panes side by side scroll in turn: their copies cannot compose.
  const half = W / 2;
  for (let k = 0; k < 50; k++) {
    const x0 = k % 2 ? half : 0;
    for (let y = 0; y < H - 2; y++) {
      g.px.copyWithin(y * W + x0, (y + 2) * W + x0, (y + 2) * W + x0 + half);
    }
    for (let y = H - 2; y < H; y++) {
      for (let x = x0; x < x0 + half; x++) g.px[y * W + x] = (rnd() * 0xffffff) | 0;
    }
    shadow.damage([{ x: x0, y: 0, w: half, h: H }]);
  }
  const u = t.take();
  assert(u.copies.length > 0, "no copies kept");
  assert(u.copies.length <= MAX_PENDING_COPIES, `${u.copies.length} copies pending`);
  v.update(u, shadow.fb!);
  assertSame(v, g.px, "after 50 frames");
});

Deno.test("DisplayShadow: a pinned shadow never changes; damage goes to a copy, and back once unpinned", () => {
  const g = guest();
  g.px.fill(0x123456);
  const shadow = new DisplayShadow({ tile: 16 });
  shadow.resize(g.fb);
  const first = shadow.fb!;
  const before = first.bytes.slice();
  const unpin = shadow.pin();
  g.px[10] = 0xffffff;
  shadow.damage([{ x: 0, y: 0, w: W, h: H }]);
  assert(shadow.fb !== first, "damage went to the pinned shadow");
  assertEquals(first.bytes, before);
  assertEquals(new Uint32Array(shadow.fb!.bytes.buffer)[10], 0xffffff);
  unpin();
  // The old one is the spare: the next copy on write reuses it instead of allocating.
  const second = shadow.fb!;
  const unpin2 = shadow.pin();
  g.px[11] = 0xffffff;
  shadow.damage([{ x: 0, y: 0, w: W, h: H }]);
  assert(shadow.fb === first, "the spare was not reused");
  assertEquals(new Uint32Array(first.bytes.buffer)[10], 0xffffff);
  assertEquals(new Uint32Array(second.bytes.buffer)[11], 0x123456);
  unpin2();
});

Deno.test("DisplayShadow: a guest reporting its whole screen in a tight loop is held to its CPU share, and nothing is lost", async () => {
  const W2 = 1920, H2 = 1080;
  const px = new Uint32Array(W2 * H2);
  const fb = {
    width: W2,
    height: H2,
    stride: W2 * 4,
    format: XRGB8888,
    bytes: new Uint8Array(px.buffer),
  };
  const said: string[] = [];
  const shadow = new DisplayShadow({ cpuShare: 0.25, onThrottle: (m) => said.push(m) });
  const t = new UpdateTracker();
  shadow.add({
    copyRect: false,
    resized: (f) => t.reset(f.width, f.height),
    moved: (dst, dy) => t.moved(dst, dy),
    changed: (rects) => t.changed(rects),
  });
  shadow.resize(fb);
  t.take();
  // Two seconds of a hostile guest: every call reports the whole screen (and one pixel changes).
  const start = performance.now();
  for (let i = 0; performance.now() - start < 2000; i++) {
    px[i % px.length] = i & 0xffffff;
    shadow.damage([{ x: 0, y: 0, w: W2, h: H2 }]);
  }
  assert(shadow.throttled > 0, "never held back");
  assertEquals(said.length, 1, said.join("\n"));
  // Time spent comparing: the burst (250 ms) plus a quarter of the two seconds, not all of it.
  const busy = shadow.busyMs;
  assert(busy < 250 + 0.25 * 2000 + 100, `${busy.toFixed(0)} ms of 2000 spent taking damage`);
  // The held damage is taken once the budget allows: the shadow ends up with the guest's pixels.
  await new Promise((r) => setTimeout(r, 3000));
  const got = new Uint32Array(shadow.fb!.bytes.buffer);
  let bad = 0;
  for (let i = 0; i < px.length; i++) if (got[i] !== px[i]) bad++;
  assertEquals(bad, 0, "pixels the shadow did not take");
  assert(t.pending, "the viewer was told of the changes");
});
