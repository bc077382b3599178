/**
 * SolidSources: which CopyRects may paint a Raw viewer's solid blocks. A
 * place is used only when the shadow still has the colour there and the
 * update does not send it (so the viewer has the shadow's pixels there).
 */
import { assert, assertEquals } from "@rxfb/assert";
import { ShadowFramebuffer } from "../pipeline/compare_tiles.ts";
import { RGB565, XRGB8888 } from "../pipeline/pixel_format.ts";
import { Region } from "../pipeline/region.ts";
import { BLOCK, MAX_AREA, SolidSources } from "../sinks/vnc/solid_copies.ts";

const WHITE = 0xffffff, RED = 0xff0000;

/** A 64 x 32 black shadow with `paint` applied, as 32-bit words. */
function shadow(paint: (px: Uint32Array, w: number) => void = () => {}): ShadowFramebuffer {
  const s = new ShadowFramebuffer(64, 32, XRGB8888);
  paint(new Uint32Array(s.bytes.buffer, s.bytes.byteOffset, 64 * 32), 64);
  return s;
}

/** Fills the block at (bx, by) (in blocks) with `c`. */
function block(px: Uint32Array, w: number, bx: number, by: number, c: number) {
  for (let y = by * BLOCK; y < (by + 1) * BLOCK; y++) {
    px.fill(c, y * w + bx * BLOCK, y * w + (bx + 1) * BLOCK);
  }
}

const rect = (bx: number, by: number, bw = 1, bh = 1) => ({
  x: bx * BLOCK,
  y: by * BLOCK,
  w: bw * BLOCK,
  h: bh * BLOCK,
});

Deno.test("SolidSources: blocks of two colours come from places learnt, each its own colour", () => {
  const fb = shadow((px, w) => {
    block(px, w, 0, 0, WHITE); // (0,0) white, (1,0) black: sent earlier
    block(px, w, 4, 2, WHITE); // the update: (4,2) white, (5,2) black
  });
  const s = new SolidSources();
  s.learn(fb, rect(0, 0, 2, 1));
  const dst = rect(4, 2, 2, 1);
  assertEquals(s.plan(fb, dst, Region.fromRect(dst)), [
    { x: 32, y: 16, sx: 0, sy: 0 },
    { x: 40, y: 16, sx: 8, sy: 0 },
  ]);
});

/** A 1024 x 64 black shadow: blocks 128 apart are beyond the search around a block. */
function wide(paint: (px: Uint32Array, w: number) => void = () => {}): ShadowFramebuffer {
  const s = new ShadowFramebuffer(1024, 64, XRGB8888);
  paint(new Uint32Array(s.bytes.buffer, s.bytes.byteOffset, 1024 * 64), 1024);
  return s;
}

Deno.test("SolidSources: a colour neither learnt nor near gives no copies; one learnt far away does", () => {
  const fb = wide((px, w) => {
    block(px, w, 120, 6, RED); // the update
    block(px, w, 0, 0, RED); // far away: 120 blocks
  });
  const s = new SolidSources();
  const dst = rect(120, 6);
  assertEquals(s.plan(fb, dst, Region.fromRect(dst)), undefined);
  s.learn(fb, rect(0, 0));
  assertEquals(s.plan(fb, dst, Region.fromRect(dst)), [{ x: 960, y: 48, sx: 0, sy: 0 }]);
});

Deno.test("SolidSources: a block of its colour beside the rectangle is found, then above or below it", () => {
  const fb = wide((px, w) => {
    block(px, w, 60, 3, RED); // the update: blocks 60..61 of row 3
    block(px, w, 61, 3, RED);
    block(px, w, 60, 4, RED); // below it
    block(px, w, 66, 3, RED); // beside it, 4 blocks right: preferred
  });
  const s = new SolidSources();
  const dst = rect(60, 3, 2, 1);
  assertEquals(s.plan(fb, dst, Region.fromRect(dst)), [
    { x: 480, y: 24, sx: 528, sy: 24 },
    { x: 488, y: 24, sx: 528, sy: 24 },
  ]);
  // That one is being sent too: the one below is taken.
  assertEquals(s.plan(fb, dst, Region.fromRects([dst, rect(66, 3)])), [
    { x: 480, y: 24, sx: 480, sy: 32 },
    { x: 488, y: 24, sx: 480, sy: 32 },
  ]);
});

Deno.test("SolidSources: a place the update sends, or whose colour changed since, is not used", () => {
  let px!: Uint32Array;
  const fb = wide((p, w) => {
    px = p;
    block(p, w, 120, 6, RED);
    block(p, w, 0, 0, RED);
    block(p, w, 2, 0, RED);
  });
  const s = new SolidSources();
  s.learn(fb, rect(0, 0)); // red at (0,0)
  const dst = rect(120, 6);
  assertEquals(s.plan(fb, dst, Region.fromRect(dst)), [{ x: 960, y: 48, sx: 0, sy: 0 }]);
  // The update also sends the place: the viewer may not have it yet (or have it changed).
  assertEquals(s.plan(fb, dst, Region.fromRects([dst, { x: 7, y: 7, w: 1, h: 1 }])), undefined);
  // One pixel of the place changed in the shadow: not red any more.
  px[3 * 1024 + 5] = WHITE;
  assertEquals(s.plan(fb, dst, Region.fromRect(dst)), undefined);
  // Another red place is learnt: used.
  s.learn(fb, rect(2, 0));
  assertEquals(s.plan(fb, dst, Region.fromRect(dst)), [{ x: 960, y: 48, sx: 16, sy: 0 }]);
});

Deno.test("SolidSources: rectangles not made of whole one-colour blocks go as pixels", () => {
  let px!: Uint32Array;
  const fb = shadow((p) => (px = p));
  const s = new SolidSources();
  s.learn(fb, rect(0, 0, 2, 2));
  // A block with one pixel of another colour.
  px[(2 * BLOCK + 1) * 64 + 4 * BLOCK + 1] = WHITE;
  const mixed = rect(4, 2);
  assertEquals(s.plan(fb, mixed, Region.fromRect(mixed)), undefined);
  // Not whole blocks, or too large, or outside.
  for (const r of [{ x: 40, y: 8, w: 12, h: 8 }, { x: 40, y: 8, w: 8, h: 4 }]) {
    assertEquals(s.plan(fb, r, Region.fromRect(r)), undefined, JSON.stringify(r));
  }
  assert(64 * 32 <= MAX_AREA);
  const big = new ShadowFramebuffer(256, 64, XRGB8888);
  s.learn(big, rect(0, 0));
  const tooBig = { x: 64, y: 0, w: 128, h: 64 }; // 8192 px, all black
  assertEquals(s.plan(big, tooBig, Region.fromRect(tooBig)), undefined);
  const outside = { x: 60, y: 0, w: 8, h: 8 };
  assertEquals(s.plan(fb, outside, Region.fromRect(outside)), undefined);
});

Deno.test("SolidSources: only 32-bit shadows; clear() forgets every place", () => {
  const small = new ShadowFramebuffer(64, 32, RGB565);
  const s = new SolidSources();
  s.learn(small, rect(0, 0));
  assertEquals(s.plan(small, rect(4, 2), Region.fromRect(rect(4, 2))), undefined);
  const fb = wide((px, w) => {
    block(px, w, 120, 6, RED);
    block(px, w, 0, 0, RED);
  });
  s.learn(fb, rect(0, 0));
  const dst = rect(120, 6);
  assertEquals(s.plan(fb, dst, Region.fromRect(dst)), [{ x: 960, y: 48, sx: 0, sy: 0 }]);
  s.clear();
  assertEquals(s.plan(fb, dst, Region.fromRect(dst)), undefined);
});

Deno.test("SolidSources.take: the copies when there are some, else the rectangle's blocks are learnt", () => {
  const fb = wide((px, w) => {
    block(px, w, 0, 0, RED);
    block(px, w, 120, 6, RED);
  });
  const s = new SolidSources();
  const first = rect(0, 0), later = rect(120, 6);
  // No red place yet: nothing to copy, and (0,0) goes as pixels, so it is a place from then on.
  assertEquals(s.take(fb, first, Region.fromRect(first)), undefined);
  assertEquals(s.take(fb, later, Region.fromRect(later)), [{ x: 960, y: 48, sx: 0, sy: 0 }]);
  // Copies are not learnt from (their blocks are not sent as pixels): (120,6) is no place.
  s.clear();
  s.learn(fb, first);
  assertEquals(s.take(fb, later, Region.fromRect(later)), [{ x: 960, y: 48, sx: 0, sy: 0 }]);
  assertEquals(s.plan(fb, first, Region.fromRects([first, later])), undefined);
});
