/**
 * The update tracker against a model viewer: whatever the guest does (random
 * changes, scrolls of bands, damage reported late or twice, forced areas,
 * several frames between two updates), a viewer that applies each update's
 * copies and then its pixels from the shadow ends up with the guest's pixels.
 */
import { assert, assertEquals } from "@rxfb/assert";
import type { Framebuffer } from "../pipeline/framebuffer.ts";
import { XRGB8888 } from "../pipeline/pixel_format.ts";
import type { Rect } from "../pipeline/rect.ts";
import {
  MAX_PENDING_COPIES,
  type PendingUpdate,
  UpdateTracker,
} from "../sinks/vnc/update_tracker.ts";

function prng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const W = 96, H = 80;

/** A viewer: its pixels, updated as an RFB client would. */
class Viewer {
  px = new Uint32Array(W * H);
  copies = 0;

  apply(t: UpdateTracker): void {
    this.update(t.take());
  }

  update(u: PendingUpdate): void {
    const shadow = new Uint32Array(u.fb.bytes.buffer, u.fb.bytes.byteOffset, W * H);
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

for (const copyRect of [true, false]) {
  Deno.test(`UpdateTracker: a model viewer always ends up with the guest's pixels (CopyRect ${copyRect ? "on" : "off"})`, () => {
    const rnd = prng(copyRect ? 1 : 2);
    let copies = 0;
    for (let run = 0; run < 40; run++) {
      const g = guest();
      // Text-like content: unique rows, so that scrolls are found.
      for (let i = 0; i < g.px.length; i++) g.px[i] = (rnd() * 0xffffff) | 0;
      const t = new UpdateTracker({ tile: [8, 16, 32][run % 3], scrollMinArea: 0 });
      t.copyRect = copyRect;
      const v = new Viewer();
      t.resize(g.fb);
      v.apply(t);
      assertSame(v, g.px, "first update");
      for (let step = 0; step < 40; step++) {
        const frames = 1 + ((rnd() * 4) | 0); // frames between two updates
        for (let f = 0; f < frames; f++) {
          const damage: Rect[] = [];
          const what = rnd();
          if (what < 0.4) {
            // Scroll a band of a window by dy, new rows at the uncovered edge.
            const x = (rnd() * 20) | 0, w = W - x - ((rnd() * 20) | 0);
            const top = (rnd() * 20) | 0, bottom = H - ((rnd() * 20) | 0);
            const dy = ((rnd() * 24) | 0) - 12 || 5;
            const src = g.px.slice();
            for (let y = top; y < bottom; y++) {
              for (let xx = x; xx < x + w; xx++) {
                const sy = y + dy;
                g.px[y * W + xx] = sy >= top && sy < bottom
                  ? src[sy * W + xx]
                  : (rnd() * 0xffffff) | 0;
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
          // Damage may come in several events, overlapping, and whole-screen.
          if (rnd() < 0.2) damage.push({ x: 0, y: 0, w: W, h: H });
          const cut = (rnd() * (damage.length + 1)) | 0;
          t.damage(g.fb, damage.slice(0, cut));
          t.damage(g.fb, damage.slice(cut));
        }
        if (rnd() < 0.1) t.force(g.fb, { x: 5, y: 5, w: 30, h: 30 });
        v.apply(t);
        assertSame(v, g.px, `run ${run} step ${step}`);
      }
      copies += v.copies;
    }
    if (copyRect) assert(copies > 100, `only ${copies} copies: scrolls not found`);
    else assertEquals(copies, 0);
  });
}

Deno.test("UpdateTracker: a scroll becomes one copy and the new rows", () => {
  const g = guest();
  const rnd = prng(4);
  for (let i = 0; i < g.px.length; i++) g.px[i] = (rnd() * 0xffffff) | 0;
  const t = new UpdateTracker({ tile: 16, scrollMinArea: 0 });
  t.copyRect = true;
  t.resize(g.fb);
  t.take();
  // Up by 4 rows: new row y is old row y + 4; rows 76..79 are new.
  g.px.copyWithin(0, 4 * W);
  for (let i = 76 * W; i < H * W; i++) g.px[i] = (rnd() * 0xffffff) | 0;
  t.damage(g.fb, [{ x: 0, y: 0, w: W, h: H }]);
  const u = t.take();
  assertEquals(u.copies, [{ dy: 4, rects: [{ x: 0, y: 0, w: W, h: 76 }] }]);
  assertEquals(u.region.rects(), [{ x: 0, y: 76, w: W, h: 4 }]);
});

Deno.test("UpdateTracker: a viewer that never asks keeps a bounded list of copies", () => {
  const g = guest();
  const rnd = prng(6);
  for (let i = 0; i < g.px.length; i++) g.px[i] = (rnd() * 0xffffff) | 0;
  const t = new UpdateTracker({ tile: 16, scrollMinArea: 0 });
  t.copyRect = true;
  const v = new Viewer();
  t.resize(g.fb);
  v.apply(t);
  for (let k = 0; k < 50; k++) {
    g.px.copyWithin(0, 2 * W);
    for (let i = (H - 2) * W; i < H * W; i++) g.px[i] = (rnd() * 0xffffff) | 0;
    t.damage(g.fb, [{ x: 0, y: 0, w: W, h: H }]);
  }
  const u = t.take();
  assert(u.copies.length <= MAX_PENDING_COPIES, `${u.copies.length} copies pending`);
  v.update(u);
  assertSame(v, g.px, "after 50 frames");
});
