import { assert, assertEquals } from "@rxfb/assert";
import { detectVerticalScroll, SignatureMemo } from "../pipeline/detect_scroll.ts";
import type { Framebuffer } from "../pipeline/framebuffer.ts";
import { bytesEqual } from "../pipeline/memcmp.ts";
import { bytesPerPixel, type PixelFormat, RGB565, XRGB8888 } from "../pipeline/pixel_format.ts";
import { createWorkload } from "../sources/sim/programs/workloads.ts";
import { mulberry32 as prng } from "./prng.ts";

function blank(w: number, h: number, format: PixelFormat = XRGB8888): Framebuffer {
  const stride = w * bytesPerPixel(format) + 8;
  return { width: w, height: h, stride, format, bytes: new Uint8Array(stride * h) };
}

function copy(fb: Framebuffer): Framebuffer {
  return { ...fb, bytes: fb.bytes.slice() };
}

/** Moves rows [y0 + dy, y1 + dy) to [y0, y1) over columns [x, x + w) (a scroll by dy). */
function scroll(fb: Framebuffer, x: number, w: number, y0: number, y1: number, dy: number) {
  const out = copy(fb), bpp = bytesPerPixel(fb.format);
  for (let y = y0; y < y1; y++) {
    const s = (y + dy) * fb.stride + x * bpp;
    out.bytes.set(fb.bytes.subarray(s, s + w * bpp), y * fb.stride + x * bpp);
  }
  return out;
}

/** The rows the result claims really are moved rows (the function's promise). */
function assertExact(prev: Framebuffer, next: Framebuffer, x: number, w: number, s: {
  dy: number;
  y0: number;
  y1: number;
}) {
  const bpp = bytesPerPixel(next.format);
  for (let y = s.y0; y < s.y1; y++) {
    assert(
      bytesEqual(
        next.bytes,
        y * next.stride + x * bpp,
        prev.bytes,
        (y + s.dy) * prev.stride + x * bpp,
        w * bpp,
      ),
      `row ${y} is not row ${y + s.dy}`,
    );
  }
}

for (const format of [XRGB8888, RGB565]) {
  Deno.test(`detectVerticalScroll: noise scrolled up and down by any amount (${format.bitsPerPixel} bpp)`, () => {
    const rnd = prng(format.bitsPerPixel);
    const w = 120, h = 90;
    const prev = blank(w, h, format);
    for (let i = 0; i < prev.bytes.length; i++) prev.bytes[i] = (rnd() * 256) | 0;
    for (const dy of [1, 2, 16, 45, 80, -1, -7, -16, -60]) {
      const y0 = Math.max(0, -dy), y1 = Math.min(h, h - dy);
      const next = scroll(prev, 0, w, y0, y1, dy);
      // The rows uncovered by the scroll get new content.
      const bpp = bytesPerPixel(format);
      for (let y = 0; y < h; y++) {
        if (y >= y0 && y < y1) continue;
        for (let x = 0; x < w * bpp; x++) next.bytes[y * next.stride + x] = (rnd() * 256) | 0;
      }
      const s = detectVerticalScroll(prev, next, { x: 0, y: 0, w, h });
      if (h - Math.abs(dy) < 8) assertEquals(s, undefined, `dy ${dy}: band too small`);
      else assertEquals(s, { dy, y0, y1 }, `dy ${dy}`);
    }
  });
}

Deno.test("detectVerticalScroll: only inside the area (a scrolling window beside a fixed panel)", () => {
  const rnd = prng(3);
  const w = 160, h = 100;
  const prev = blank(w, h);
  for (let i = 0; i < prev.bytes.length; i++) prev.bytes[i] = (rnd() * 256) | 0;
  // Columns 40..139, rows 10..89 scroll by 5; the rest is unchanged.
  const next = scroll(prev, 40, 100, 10, 85, 5);
  const area = { x: 40, y: 10, w: 100, h: 80 };
  const s = detectVerticalScroll(prev, next, area);
  assertEquals(s, { dy: 5, y0: 10, y1: 85 });
  // Over full rows there is no scroll: the panel did not move.
  const full = detectVerticalScroll(prev, next, { x: 0, y: 0, w, h });
  assertEquals(full, undefined);
});

Deno.test("detectVerticalScroll: the scroll workload, frame n to n + 1 (and a skipped frame)", () => {
  const w = 640, h = 400;
  const frames: Framebuffer[] = [];
  const px = new Uint32Array(w * h);
  const prog = createWorkload("scroll", w, h);
  for (let n = 0; n < 4; n++) {
    prog.drawFrame({ px, width: w, height: h, strideWords: w }, n, n * 1000);
    frames.push({
      width: w,
      height: h,
      stride: w * 4,
      format: XRGB8888,
      bytes: new Uint8Array(px.slice().buffer),
    });
  }
  const area = { x: 0, y: 0, w, h };
  // 25 lines of 16 rows. The top line holds the stamp over its first 256 pixels, so full
  // rows match from row 16 down to the last line, which is new.
  assertEquals(detectVerticalScroll(frames[0], frames[1], area), { dy: 16, y0: 16, y1: 384 });
  assertEquals(detectVerticalScroll(frames[1], frames[3], area), { dy: 32, y0: 16, y1: 368 });
  // Beside the stamp, the top line moved too.
  assertEquals(
    detectVerticalScroll(frames[0], frames[1], { x: 256, y: 0, w: w - 256, h }),
    { dy: 16, y0: 0, y1: 384 },
  );
});

Deno.test("detectVerticalScroll: no answer for unchanged, unrelated or repeating frames", () => {
  const rnd = prng(9);
  const w = 64, h = 64, area = { x: 0, y: 0, w, h };
  const a = blank(w, h), b = blank(w, h);
  for (let i = 0; i < a.bytes.length; i++) a.bytes[i] = (rnd() * 256) | 0;
  for (let i = 0; i < b.bytes.length; i++) b.bytes[i] = (rnd() * 256) | 0;
  assertEquals(detectVerticalScroll(a, a, area), undefined, "unchanged");
  assertEquals(detectVerticalScroll(a, b, area), undefined, "unrelated");
  assertEquals(detectVerticalScroll(blank(w, h), blank(w, h), area), undefined, "blank");
  // Stripes repeating every 8 rows: every shift by 8 matches, but nothing changed.
  const stripes = blank(w, h);
  for (let y = 0; y < h; y++) {
    stripes.bytes.fill(y % 8, y * stripes.stride, y * stripes.stride + w * 4);
  }
  assertEquals(detectVerticalScroll(stripes, copy(stripes), area), undefined, "stripes");
  // The desktop workload repeats every 1024 rows: the same frame is not a scroll.
  const dw = 320, dh = 1100;
  const px = new Uint32Array(dw * dh);
  const prog = createWorkload("desktop", dw, dh);
  const t = { px, width: dw, height: dh, strideWords: dw };
  prog.drawFrame(t, 0, 0);
  const d0 = {
    width: dw,
    height: dh,
    stride: dw * 4,
    format: XRGB8888,
    bytes: new Uint8Array(px.slice().buffer),
  };
  prog.drawFrame(t, 1, 0);
  const d1 = { ...d0, bytes: new Uint8Array(px.slice().buffer) };
  const all = { x: 0, y: 0, w: dw, h: dh };
  assertEquals(detectVerticalScroll(d0, d1, all), undefined, "desktop n to n + 1");
  // Half redrawn (the guest is still drawing): the old half is unchanged, not a scroll.
  const half = copy(d0);
  half.bytes.set(d1.bytes.subarray(0, 500 * dw * 4));
  assertEquals(detectVerticalScroll(d0, half, all), undefined, "desktop half drawn");
});

Deno.test("detectVerticalScroll: whatever it answers is exact (low-entropy pictures, random shifts)", () => {
  const rnd = prng(11);
  for (let k = 0; k < 300; k++) {
    const w = 8 + ((rnd() * 40) | 0), h = 20 + ((rnd() * 60) | 0);
    const prev = blank(w, h);
    const colours = 1 + ((rnd() * 3) | 0);
    const px = new Uint32Array(prev.bytes.buffer);
    for (let i = 0; i < px.length; i++) px[i] = (rnd() * colours) | 0;
    const dy = ((rnd() * h) | 0) - (h >> 1);
    const y0 = Math.max(0, -dy), y1 = Math.min(h, h - dy);
    let next = y1 > y0 && dy !== 0 ? scroll(prev, 0, w, y0, y1, dy) : copy(prev);
    if (rnd() < 0.3) {
      next = copy(next);
      const n = new Uint32Array(next.bytes.buffer);
      for (let i = 0; i < 20; i++) n[(rnd() * n.length) | 0] = (rnd() * colours) | 0;
    }
    const area = { x: 0, y: 0, w, h };
    const s = detectVerticalScroll(prev, next, area, { minRows: 2 });
    if (s) {
      assert(s.dy !== 0 && s.y1 - s.y0 >= 2);
      assert(s.y0 >= 0 && s.y1 <= h && s.y0 + s.dy >= 0 && s.y1 + s.dy <= h);
      assertExact(prev, next, 0, w, s);
    }
  }
});

Deno.test("detectVerticalScroll: with a SignatureMemo, a frame's signatures stand for the next call's previous frame; stale ones cost a scroll, never exactness", () => {
  const w = 640, h = 400;
  const area = { x: 0, y: 0, w, h };
  const memo = new SignatureMemo();
  const rnd = prng(7);
  const noise: Framebuffer = { ...blank(w, h), stride: w * 4, bytes: new Uint8Array(w * h * 4) };
  for (let i = 0; i < noise.bytes.length; i++) noise.bytes[i] = rnd() * 256;
  // Noise scrolled by 24 rows is found, and the memo keeps `moved`'s signatures.
  const moved = scroll(noise, 0, w, 0, h - 24, 24);
  assertEquals(detectVerticalScroll(noise, moved, area, { memo })?.dy, 24);
  // The caller then replaced its previous frame unseen and the picture scrolled by 40: the
  // last shift (24) does not fit, and the stale signatures cost this scroll, nothing else.
  const other: Framebuffer = { ...noise, bytes: noise.bytes.map((b) => b ^ 0x5a) };
  const other2 = scroll(other, 0, w, 0, h - 40, 40);
  assertEquals(detectVerticalScroll(other, other2, area, { memo }), undefined);
  // The memo now holds `other2`'s signatures, which are true for the next call.
  const other3 = scroll(other2, 0, w, 0, h - 40, 40);
  const s3 = detectVerticalScroll(other2, other3, area, { memo });
  assert(s3 && s3.dy === 40, JSON.stringify(s3));
  assertExact(other2, other3, 0, w, s3);
  // A memo forgotten is a memo not used.
  memo.clear();
  assertEquals(detectVerticalScroll(other, other2, area, { memo })?.dy, 40);
});

Deno.test("detectVerticalScroll: a terminal scrolling line after line is found by its last shift, without signatures; the answers are the same and exact", () => {
  const w = 640, h = 400;
  const px = new Uint32Array(w * h);
  const prog = createWorkload("scroll", w, h);
  const frame = (n: number): Framebuffer => {
    prog.drawFrame({ px, width: w, height: h, strideWords: w }, n, n * 1000);
    const bytes = new Uint8Array(px.slice().buffer);
    return { width: w, height: h, stride: w * 4, format: XRGB8888, bytes };
  };
  const area = { x: 0, y: 0, w, h };
  const memo = new SignatureMemo();
  let prev = frame(0);
  for (let n = 1; n <= 8; n++) {
    const next = frame(n);
    const s = detectVerticalScroll(prev, next, area, { memo });
    assertEquals(s, detectVerticalScroll(prev, next, area), `frame ${n}: as without a memo`);
    assertEquals(s, { dy: 16, y0: 16, y1: 384 });
    assertExact(prev, next, 0, w, s!);
    prev = next;
  }
  assertEquals(memo.predicted, 7, "frames 2 to 8 by the last shift");
  // The terminal stops scrolling but keeps reporting damage: no answer.
  assertEquals(detectVerticalScroll(prev, copy(prev), area, { memo }), undefined);
  // A mostly blank screen whose blank rows equal themselves at any shift: no copy of blank
  // rows onto blank rows, though the last shift fits them.
  const blankish = frame(9);
  const cleared: Framebuffer = { ...blankish, bytes: new Uint8Array(blankish.bytes.length) };
  const memo2 = new SignatureMemo();
  const b9 = frame(10);
  assertEquals(detectVerticalScroll(blankish, b9, area, { memo: memo2 })?.dy, 16);
  const cleared2 = copy(cleared);
  cleared2.bytes.fill(7, 0, w * 4 * 3); // a change in the top rows only
  assertEquals(detectVerticalScroll(cleared, cleared2, area, { memo: memo2 }), undefined);
  assertEquals(memo2.predicted, 0);
});
