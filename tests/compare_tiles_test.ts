import { assert, assertEquals } from "@rxfb/assert";
import { ShadowFramebuffer } from "../pipeline/compare_tiles.ts";
import type { Framebuffer } from "../pipeline/framebuffer.ts";
import { bytesEqual, SpanCopier, unshared } from "../pipeline/memcmp.ts";
import {
  bytesPerPixel,
  type PixelFormat,
  RGB332,
  RGB565,
  RGB888,
  XRGB8888,
} from "../pipeline/pixel_format.ts";
import type { Rect } from "../pipeline/rect.ts";
import { Region } from "../pipeline/region.ts";
import { mulberry32 as prng } from "./prng.ts";

/** A framebuffer with padding at the end of each row (stride > width * Bpp), at an odd offset. */
function framebuffer(w: number, h: number, format: PixelFormat, pad: number): Framebuffer {
  const bpp = bytesPerPixel(format);
  const stride = w * bpp + pad;
  const buf = new Uint8Array(stride * h + 3);
  return { width: w, height: h, stride, format, bytes: buf.subarray(pad % 2 ? 1 : 0) };
}

function pixelEqual(a: Framebuffer, b: Framebuffer, x: number, y: number): boolean {
  const bpp = bytesPerPixel(a.format);
  return bytesEqual(a.bytes, y * a.stride + x * bpp, b.bytes, y * b.stride + x * bpp, bpp);
}

Deno.test("bytesEqual: every length and offset, native and JavaScript paths agree with a byte loop", () => {
  const rnd = prng(5);
  const a = new Uint8Array(5000), b = new Uint8Array(5000);
  for (let i = 0; i < a.length; i++) a[i] = b[i] = (rnd() * 256) | 0;
  for (let k = 0; k < 400; k++) {
    const n = (rnd() * 2500) | 0,
      ai = (rnd() * 2400) | 0,
      bi = rnd() < 0.5 ? ai : (rnd() * 2400) | 0;
    const flip = rnd() < 0.5 ? ai + ((rnd() * n) | 0) : -1;
    if (flip >= 0 && n > 0) a[flip] ^= 1 << ((rnd() * 8) | 0);
    let want = true;
    for (let i = 0; i < n; i++) if (a[ai + i] !== b[bi + i]) want = false;
    assertEquals(bytesEqual(a, ai, b, bi, n), want, `n=${n} at ${ai}/${bi}`);
    if (flip >= 0 && n > 0) a[flip] = b[flip];
  }
});

Deno.test("bytesEqual: a span outside either array is a RangeError", () => {
  const a = new Uint8Array(2048), b = new Uint8Array(1024);
  let threw = false;
  try {
    bytesEqual(a, 0, b, 0, 2048);
  } catch (e) {
    threw = e instanceof RangeError;
  }
  assert(threw);
});

Deno.test("unshared: a plain view over the same shared memory, of the same type; writes show both ways", () => {
  const sab = new SharedArrayBuffer(64);
  for (const v of [new Uint8Array(sab, 8, 16), new Uint32Array(sab, 16, 8), new Int32Array(sab)]) {
    const a = unshared(v);
    assert(!(a.buffer instanceof SharedArrayBuffer), `${v.constructor.name}: not shared`);
    assertEquals([a.constructor, a.length], [v.constructor, v.length]);
    v[1] = 5;
    a[2] = 7;
    assertEquals([a[1], v[2]], [5, 7]);
    assert(unshared(v) === a, "one alias per view");
  }
  const plain = new Uint8Array(8);
  assert(unshared(plain) === plain, "a plain view is its own");
});

Deno.test("SpanCopier: on shared memory as set / copyWithin, overlapping both ways", () => {
  const rnd = prng(7);
  const N = 64 * 1024;
  const sharedSrc = new Uint8Array(new SharedArrayBuffer(N)), plainSrc = new Uint8Array(N);
  for (let i = 0; i < N; i++) sharedSrc[i] = plainSrc[i] = (rnd() * 256) | 0;
  for (const n of [1, 4095, 4096, 4097, 20000]) {
    for (const [di, si] of [[0, 100], [100, 0], [3, 40000], [N - n, 0]]) {
      // Into a plain array from shared memory.
      const a = new Uint8Array(N), b = new Uint8Array(N);
      new SpanCopier(a, sharedSrc).copy(di, si, n);
      b.set(plainSrc.subarray(si, si + n), di);
      assertEquals(a, b, `copy ${n} from ${si} to ${di}`);
      // Within shared memory, overlapping.
      const shared = new Uint8Array(new SharedArrayBuffer(N)), plain = plainSrc.slice();
      shared.set(plainSrc);
      new SpanCopier(shared, shared).copy(di, si, n);
      plain.copyWithin(di, si, si + n);
      assertEquals(new Uint8Array(shared), plain, `move ${n} from ${si} to ${di}`);
    }
  }
  let threw = false;
  try {
    new SpanCopier(new Uint8Array(8192), sharedSrc).copy(4096, 0, 8192);
  } catch (e) {
    threw = e instanceof RangeError;
  }
  assert(threw, "a span outside the destination is a RangeError");
});

Deno.test("ShadowFramebuffer.refresh / copyFrom / moveRows from shared memory equal those from plain memory", () => {
  const rnd = prng(11);
  const w = 1100, h = 70; // rows of 4400 bytes: long enough for libc
  const plain = framebuffer(w, h, XRGB8888, 0);
  const shared: Framebuffer = {
    ...plain,
    bytes: new Uint8Array(new SharedArrayBuffer(plain.bytes.length)),
  };
  const fill = () => {
    for (let i = 0; i < plain.bytes.length; i++) {
      shared.bytes[i] = plain.bytes[i] = (rnd() * 256) | 0;
    }
  };
  fill();
  const a = ShadowFramebuffer.like(plain), b = ShadowFramebuffer.like(plain);
  a.copyFrom(plain, { x: 0, y: 0, w, h });
  b.copyFrom(shared, { x: 0, y: 0, w, h });
  assertEquals(a.bytes, b.bytes);
  for (let round = 0; round < 20; round++) {
    if (round % 5 === 4) fill(); // everything changes
    else {
      const bx = (rnd() * w) | 0, by = (rnd() * h) | 0, bw = (rnd() * w) | 0, bh = (rnd() * h) | 0;
      for (let y = by; y < Math.min(h, by + bh); y++) {
        for (let x = bx; x < Math.min(w, bx + bw); x++) {
          const o = y * plain.stride + x * 4;
          shared.bytes[o] = plain.bytes[o] = (rnd() * 256) | 0;
        }
      }
    }
    const damage = round % 2 ? { x: 0, y: 0, w, h } : { x: 13, y: 2, w: w - 20, h: h - 9 };
    const ca: Rect[] = [], cb: Rect[] = [];
    a.refresh(plain, damage, 32, ca);
    b.refresh(shared, damage, 32, cb);
    assertEquals(cb, ca, `round ${round}: changes`);
    assertEquals(b.bytes, a.bytes, `round ${round}: shadow`);
    const dy = ((rnd() * 20) | 0) - 10 || 1;
    a.moveRows(0, w, Math.max(0, -dy), h - Math.max(0, dy), dy);
    b.moveRows(0, w, Math.max(0, -dy), h - Math.max(0, dy), dy);
    assertEquals(b.bytes, a.bytes, `round ${round}: moved by ${dy}`);
  }
});

for (const format of [XRGB8888, RGB888, RGB565, RGB332]) {
  for (const tile of [16, 32, 64]) {
    Deno.test(`ShadowFramebuffer.refresh: ${format.bitsPerPixel} bpp, ${tile}px tiles: exact changes, copied, nothing else`, () => {
      const rnd = prng(format.bitsPerPixel * 100 + tile);
      const w = 203, h = 117;
      const fb = framebuffer(w, h, format, 5);
      for (let i = 0; i < fb.bytes.length; i++) fb.bytes[i] = (rnd() * 256) | 0;
      const shadow = ShadowFramebuffer.like(fb);
      shadow.copyFrom(fb, { x: 0, y: 0, w, h });
      const bpp = bytesPerPixel(format);
      for (let round = 0; round < 30; round++) {
        // Change a few pixels and small blocks, some outside the damage.
        const touched: [number, number][] = [];
        for (let k = 0; k < 1 + ((rnd() * 6) | 0); k++) {
          const bx = (rnd() * w) | 0, by = (rnd() * h) | 0;
          const bw = 1 + ((rnd() * 40) | 0), bh = 1 + ((rnd() * 20) | 0);
          for (let y = by; y < Math.min(h, by + bh); y++) {
            for (let x = bx; x < Math.min(w, bx + bw); x++) {
              fb.bytes[y * fb.stride + x * bpp + ((rnd() * bpp) | 0)] ^= 1 + ((rnd() * 255) | 0);
              touched.push([x, y]);
            }
          }
        }
        const before = shadow.bytes.slice();
        const x0 = (rnd() * w) | 0, y0 = (rnd() * h) | 0;
        const damage = {
          x: x0 - 10,
          y: y0 - 5,
          w: 1 + ((rnd() * (w - x0 + 20)) | 0),
          h: 1 + ((rnd() * (h - y0 + 10)) | 0),
        };
        const changed: Rect[] = [];
        shadow.refresh(fb, damage, tile, changed);
        const inDamage = Region.fromRect(damage).clip({ x: 0, y: 0, w, h });
        const reported = Region.fromRects(changed);
        // Reported rectangles: disjoint, inside the damage.
        assertEquals(reported.area(), changed.reduce((s, r) => s + r.w * r.h, 0), "disjoint");
        assert(reported.subtract(inDamage).isEmpty(), "inside the damage");
        for (let y = 0; y < h; y++) {
          for (let x = 0; x < w; x++) {
            const o = y * shadow.stride + x * bpp;
            if (inDamage.contains(x, y)) {
              // Inside the damage the shadow now equals the framebuffer...
              assert(pixelEqual(fb, shadow, x, y), `(${x},${y}) copied`);
              // ... and every pixel that differed is reported.
              const was = bytesEqual(before, o, fb.bytes, y * fb.stride + x * bpp, bpp);
              if (!was) assert(reported.contains(x, y), `(${x},${y}) changed but not reported`);
            } else {
              assert(bytesEqual(before, o, shadow.bytes, o, bpp), `(${x},${y}) outside touched`);
            }
          }
        }
        // Each reported run starts and ends on a changed row, and each of its tiles changed.
        for (const r of changed) {
          const rowChanged = (y: number) => {
            for (let x = r.x; x < r.x + r.w; x++) {
              const o = y * shadow.stride + x * bpp;
              if (!bytesEqual(before, o, shadow.bytes, o, bpp)) return true;
            }
            return false;
          };
          assert(rowChanged(r.y) && rowChanged(r.y + r.h - 1), `tight rows: ${JSON.stringify(r)}`);
          for (let tx = Math.floor(r.x / tile) * tile; tx < r.x + r.w; tx += tile) {
            let any = false;
            for (let y = r.y; y < r.y + r.h && !any; y++) {
              for (let x = Math.max(tx, r.x); x < Math.min(tx + tile, r.x + r.w); x++) {
                const o = y * shadow.stride + x * bpp;
                if (!bytesEqual(before, o, shadow.bytes, o, bpp)) any = true;
              }
            }
            assert(any, `tile at x=${tx} of ${JSON.stringify(r)} did not change`);
          }
        }
        // Undamaged changes stay pending: a full refresh finds them.
        const all: Rect[] = [];
        shadow.refresh(fb, { x: 0, y: 0, w, h }, tile, all);
        for (const [x, y] of touched) assert(pixelEqual(fb, shadow, x, y));
      }
    });
  }
}

Deno.test("ShadowFramebuffer.refresh: an unchanged screen reports nothing", () => {
  const fb = framebuffer(640, 480, XRGB8888, 0);
  fb.bytes.fill(0x5a);
  const shadow = ShadowFramebuffer.like(fb);
  shadow.copyFrom(fb, { x: 0, y: 0, w: 640, h: 480 });
  const changed: Rect[] = [];
  shadow.refresh(fb, { x: -5, y: -5, w: 1000, h: 1000 }, 32, changed);
  assertEquals(changed, []);
});

Deno.test("ShadowFramebuffer.moveRows: as a CopyRect, up and down, full width and a column band", () => {
  const w = 50, h = 40;
  for (const [x, cw] of [[0, w], [7, 20]]) {
    for (const dy of [3, -3, 17, -17]) {
      const s = new ShadowFramebuffer(w, h, XRGB8888);
      const before = new Uint32Array(s.bytes.buffer, s.bytes.byteOffset, w * h);
      for (let i = 0; i < before.length; i++) before[i] = i;
      const old = before.slice();
      const y0 = Math.max(0, -dy) + 2, y1 = Math.min(h, h - dy) - 1;
      s.moveRows(x, cw, y0, y1, dy);
      const px = new Uint32Array(s.bytes.buffer, s.bytes.byteOffset, w * h); // the view may move
      for (let y = 0; y < h; y++) {
        for (let xx = 0; xx < w; xx++) {
          const inside = xx >= x && xx < x + cw && y >= y0 && y < y1;
          const want = inside ? old[(y + dy) * w + xx] : old[y * w + xx];
          assertEquals(px[y * w + xx], want, `dy ${dy} x ${x}: (${xx},${y})`);
        }
      }
    }
  }
});

Deno.test("ShadowFramebuffer.moveRows: hundreds of scrolls (the view moving through its buffer) equal row copies", () => {
  const rnd = prng(23);
  const w = 24, h = 60;
  const s = new ShadowFramebuffer(w, h, XRGB8888);
  const ref = new Uint32Array(w * h);
  let next = 1;
  const words = () => new Uint32Array(s.bytes.buffer, s.bytes.byteOffset, w * h);
  words().set(ref.map(() => next++));
  ref.set(words());
  for (let round = 0; round < 400; round++) {
    // Mostly whole-width scrolls of most rows (the view moves), now and then the others.
    const full = rnd() < 0.8;
    const x = full ? 0 : (rnd() * 10) | 0, cw = full ? w : 1 + ((rnd() * (w - x - 1)) | 0);
    const up = rnd() < 0.6 ? 1 : -1;
    const dy = up * (1 + ((rnd() * 12) | 0));
    const y0 = Math.max(0, -dy) + ((rnd() * 4) | 0), y1 = Math.min(h, h - dy) - ((rnd() * 4) | 0);
    if (y1 <= y0) continue;
    s.moveRows(x, cw, y0, y1, dy);
    const old = ref.slice();
    for (let y = y0; y < y1; y++) {
      for (let xx = x; xx < x + cw; xx++) ref[y * w + xx] = old[(y + dy) * w + xx];
    }
    // Fresh pixels in a few rows, as a guest's new line.
    const got = words();
    for (let k = 0; k < 3; k++) {
      const i = (rnd() * w * h) | 0;
      got[i] = ref[i] = next++;
    }
    assertEquals(words(), ref, `round ${round}: rows ${y0}..${y1} by ${dy}, columns ${x}+${cw}`);
  }
});

Deno.test("ShadowFramebuffer.fits: size and format", () => {
  const fb = framebuffer(10, 10, XRGB8888, 0);
  const s = ShadowFramebuffer.like(fb);
  assert(s.fits(fb));
  assert(!s.fits({ ...fb, width: 9 }));
  assert(!s.fits(framebuffer(10, 10, RGB565, 0)));
  assertEquals(s.stride, 40);
});
