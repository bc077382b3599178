/**
 * ZRLE tile data (before zlib) against a plain reference written from the RFB
 * spec's tile rules: raw, solid, packed palette, plain RLE or palette RLE,
 * whichever is smallest, ties going to the earlier of raw, plain RLE, palette
 * RLE, packed; palette in order of first appearance, at most 127 colours. The
 * encoder's fast paths (two-colour tiles, in-place reads) must give the same
 * bytes for every tile.
 */
import { assertEquals } from "@rxfb/assert";
import { colourMask } from "../sinks/vnc/encodings/raw.ts";
import { cpixelLayout, ZRLEEncoder } from "../sinks/vnc/encodings/zrle.ts";
import { convertPixels } from "../pipeline/convert_pixels.ts";
import type { Framebuffer } from "../pipeline/framebuffer.ts";
import {
  BGR233,
  bytesPerPixel,
  type PixelFormat,
  RGB565,
  XRGB8888,
} from "../pipeline/pixel_format.ts";
import type { Rect } from "../pipeline/rect.ts";
import { createWorkload } from "../sources/sim/programs/workloads.ts";
import { mulberry32 as rng } from "./prng.ts";
import { R11G11B10 } from "./pixel_formats.ts";

const FORMATS: [string, PixelFormat][] = [
  ["XRGB8888 (in place, CPIXEL 3)", XRGB8888],
  ["XRGB8888 BE (CPIXEL 3)", { ...XRGB8888, bigEndian: true }],
  ["RGBX LE (CPIXEL 3, shifted)", { ...XRGB8888, redShift: 24, greenShift: 16, blueShift: 8 }],
  ["R11G11B10 (CPIXEL 4)", R11G11B10],
  ["RGB565", RGB565],
  ["BGR233", BGR233],
];

/** The reference: ZRLE tile data of `r`, tile by tile from the client's pixel values. */
function referenceTiles(fb: Framebuffer, r: Rect, pf: PixelFormat): Uint8Array {
  const bpp = bytesPerPixel(pf), cm = colourMask(pf), { size: cps, shift } = cpixelLayout(pf);
  const bytes = new Uint8Array(r.w * r.h * bpp);
  convertPixels(fb, r, pf, bytes);
  const value = (k: number) => {
    let v = 0;
    for (let b = 0; b < bpp; b++) v += bytes[k * bpp + b] * 2 ** (8 * b);
    return ((v & cm) >>> shift) >>> 0;
  };
  const out: number[] = [];
  const cpixel = (v: number) => {
    for (let b = 0; b < cps; b++) out.push(Math.floor(v / 2 ** (8 * b)) & 0xff);
  };
  const runLength = (len: number) => {
    for (len--; len >= 255; len -= 255) out.push(255);
    out.push(len);
  };
  for (let ty = 0; ty < r.h; ty += 64) {
    const th = Math.min(64, r.h - ty);
    for (let tx = 0; tx < r.w; tx += 64) {
      const tw = Math.min(64, r.w - tx), n = tw * th;
      const t: number[] = [];
      for (let j = 0; j < th; j++) {
        for (let i = 0; i < tw; i++) t.push(value((ty + j) * r.w + tx + i));
      }
      const palette = [...new Set(t)];
      if (palette.length === 1) {
        out.push(1);
        cpixel(t[0]);
        continue;
      }
      const runs: [number, number][] = [];
      for (let i = 0; i < n;) {
        let j = i + 1;
        while (j < n && t[j] === t[i]) j++;
        runs.push([t[i], j - i]);
        i = j;
      }
      const rl = (len: number) => 1 + Math.floor((len - 1) / 255);
      const pal = palette.length > 127 ? 0 : palette.length;
      const bits = pal === 2 ? 1 : pal <= 4 ? 2 : 4;
      const sizes: [number, number][] = [[0, n * cps]];
      sizes.push([128, runs.reduce((s, [, len]) => s + cps + rl(len), 0)]);
      if (pal >= 2) {
        sizes.push([128 + pal, runs.reduce((s, [, l]) => s + 1 + (l > 1 ? rl(l) : 0), pal * cps)]);
      }
      if (pal >= 2 && pal <= 16) sizes.push([pal, pal * cps + th * ((tw * bits + 7) >> 3)]);
      let best = sizes[0];
      for (const s of sizes) if (s[1] < best[1]) best = s;
      const sub = best[0];
      out.push(sub);
      if (sub === 0) t.forEach(cpixel);
      else if (sub === 128) {
        for (const [v, len] of runs) {
          cpixel(v);
          runLength(len);
        }
      } else {
        palette.forEach(cpixel);
        if (sub > 128) {
          for (const [v, len] of runs) {
            const ix = palette.indexOf(v);
            out.push(len > 1 ? ix | 128 : ix);
            if (len > 1) runLength(len);
          }
        } else {
          for (let j = 0; j < th; j++) {
            let acc = 0, used = 0;
            for (let i = 0; i < tw; i++) {
              acc = (acc << bits) | palette.indexOf(t[j * tw + i]);
              used += bits;
              if (used === 8) {
                out.push(acc);
                acc = used = 0;
              }
            }
            if (used > 0) out.push(acc << (8 - used));
          }
        }
      }
    }
  }
  return Uint8Array.from(out);
}

/** A 32 bpp XRGB8888 framebuffer of `w` x `h` (padding bytes random, which no encoding shows). */
function framebuffer(w: number, h: number, f: (x: number, y: number) => number): Framebuffer {
  const px = new Uint32Array(w * h);
  const pad = rng(w * 31 + h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      px[y * w + x] = ((f(x, y) & 0xffffff) | ((pad() * 256) << 24)) >>> 0;
    }
  }
  return { width: w, height: h, stride: w * 4, format: XRGB8888, bytes: new Uint8Array(px.buffer) };
}

/** Content with `k` colours in runs of about `mean` pixels (k > 4096: every run a new colour). */
function runsOf(w: number, h: number, k: number, mean: number, seed: number): Framebuffer {
  const rand = rng(seed);
  const colours = Array.from({ length: Math.min(k, 4096) }, () => (rand() * 0x1000000) >>> 0);
  const px: number[] = [];
  while (px.length < w * h) {
    const c = k > 4096 ? (rand() * 0x1000000) >>> 0 : colours[(rand() * colours.length) | 0];
    const len = 1 + Math.floor(-Math.log(1 - rand()) * (mean - 1));
    for (let i = 0; i < len; i++) px.push(c);
  }
  return framebuffer(w, h, (x, y) => px[y * w + x]);
}

/** A scroll-workload frame: text lines of two colours. */
function scrollFrame(w: number, h: number, n: number): Framebuffer {
  const px = new Uint32Array(w * h);
  const prog = createWorkload("scroll", w, h);
  for (let i = 0; i <= n; i++) prog.drawFrame({ px, width: w, height: h, strideWords: w }, i, i);
  return { width: w, height: h, stride: w * 4, format: XRGB8888, bytes: new Uint8Array(px.buffer) };
}

function check(name: string, fb: Framebuffer, rects: Rect[]): void {
  for (const [fname, pf] of FORMATS) {
    const enc = new ZRLEEncoder();
    for (const r of rects) {
      const got = enc.encodeTiles(fb, r, pf).data.slice();
      const want = referenceTiles(fb, r, pf);
      if (got.length !== want.length || got.some((v, i) => v !== want[i])) {
        assertEquals(got, want, `${name}, ${fname}, rect ${JSON.stringify(r)}`);
      }
    }
  }
}

const EDGES = (w: number, h: number): Rect[] => [
  { x: 0, y: 0, w, h },
  { x: 3, y: 1, w: w - 5, h: h - 2 },
  { x: 1, y: 2, w: 65, h: 3 },
  { x: 5, y: 0, w: 7, h: Math.min(h, 64) },
  { x: w - 1, y: h - 1, w: 1, h: 1 },
  { x: 0, y: h - 2, w: 2, h: 2 },
];

Deno.test("zrle tiles: random pixels, 1..5 colours, many colours, long runs; all formats, odd edges", () => {
  const W = 150, H = 80;
  let seed = 1;
  for (const k of [1, 2, 3, 4, 5, 16, 17, 127, 128, 200, 5000]) {
    for (const mean of [1, 2, 3, 8, 40, 300]) {
      check(`${k} colours, runs ~${mean}`, runsOf(W, H, k, mean, seed++), EDGES(W, H));
    }
  }
  const noise = rng(7);
  check("noise", framebuffer(W, H, () => (noise() * 0x1000000) >>> 0), EDGES(W, H));
  check(
    "checkerboard",
    framebuffer(W, H, (x, y) => (x ^ y) & 1 ? 0xffffff : 0x102030),
    EDGES(W, H),
  );
  check("stripes", framebuffer(W, H, (x) => (x >> 2) & 1 ? 0xc0c0c0 : 0x101010), EDGES(W, H));
  check(
    "gradient",
    framebuffer(W, H, (x, y) => (x * 3) << 16 | (y * 2) << 8 | (x + y)),
    EDGES(W, H),
  );
  // Two colours in the top rows only, then one: the fast path's early give-up.
  check("two then one", framebuffer(W, H, (x, y) => y < 5 && (x & 1) ? 0xff : 0), EDGES(W, H));
});

Deno.test("zrle tiles: scroll workload text lines and stamp", () => {
  const W = 640, H = 96;
  for (const n of [1, 2, 3, 6, 13]) {
    check(`scroll frame ${n}`, scrollFrame(W, H, n), [
      { x: 0, y: H - 16, w: W, h: 16 },
      { x: 0, y: 0, w: 256, h: 16 },
      { x: 0, y: 0, w: W, h: H },
      { x: 13, y: 7, w: 300, h: 70 },
    ]);
  }
});
