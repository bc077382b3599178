/**
 * Tight and TightPNG on 1920x1080 frames of the standard workloads (desktop,
 * scroll, video), in noVNC's pixel format (32 bpp depth 24, 3-byte TPIXELs):
 *
 * - **full**: the whole of frame 5, each iteration (a FramebufferUpdate for the
 *   whole screen, e.g. after a connect or a resize);
 * - **incr**: the dirty rectangles of frames 1..8 in turn (what a connected
 *   client receives frame by frame), on one connection, so the zlib streams
 *   persist.
 *
 * Configurations: compress level 1, 2 and 6 without JPEG; level 2 with JPEG
 * quality 6 (noVNC's default) through jpeg-js and, when it loads, libturbojpeg;
 * TightPNG at level 2. The bytes per frame are printed once, before the
 * benchmarks (and are in each benchmark's name).
 *
 * Run: `deno bench -A bench/tight_bench.ts`
 */
import { ByteWriter } from "../sinks/vnc/bytes.ts";
import type { EncodeOptions } from "../sinks/vnc/encoder.ts";
import {
  type JpegChoice,
  TightEncoder,
  TightPNGEncoder,
  turboJpegAvailable,
} from "../sinks/vnc/encodings/tight.ts";
import type { Framebuffer } from "../pipeline/framebuffer.ts";
import type { Rect } from "../pipeline/rect.ts";
import { type PixelFormat, XRGB8888 } from "../pipeline/pixel_format.ts";
import { createWorkload, type WorkloadName } from "../sources/sim/programs/workloads.ts";
import { zlibBackend } from "../sinks/vnc/zlib.ts";

const W = 1920, H = 1080;
/** noVNC's pixel format: bytes R, G, B, 0. */
const NOVNC: PixelFormat = { ...XRGB8888, redShift: 0, greenShift: 8, blueShift: 16 };

interface Frame {
  fb: Framebuffer;
  dirty: Rect[];
}

/** Frames 0..8 of a workload, each a copy, with its dirty rectangles. */
function frames(name: WorkloadName): Frame[] {
  const prog = createWorkload(name, W, H);
  const px = new Uint32Array(W * H);
  const t = { px, width: W, height: H, strideWords: W };
  const out: Frame[] = [];
  for (let n = 0; n <= 8; n++) {
    const dirty = prog.drawFrame(t, n, n * 16667);
    const bytes = new Uint8Array(px.slice().buffer);
    out.push({ fb: { width: W, height: H, stride: W * 4, format: XRGB8888, bytes }, dirty });
  }
  return out;
}

interface Config {
  name: string;
  png: boolean;
  opts: EncodeOptions;
  jpeg: JpegChoice;
}

const configs: Config[] = [
  { name: "L1", png: false, opts: { pf: NOVNC, compressLevel: 1 }, jpeg: "auto" },
  { name: "L2", png: false, opts: { pf: NOVNC, compressLevel: 2 }, jpeg: "auto" },
  { name: "L6", png: false, opts: { pf: NOVNC, compressLevel: 6 }, jpeg: "auto" },
  {
    name: "L2 jpeg-js q6",
    png: false,
    opts: { pf: NOVNC, compressLevel: 2, jpegQuality: 6 },
    jpeg: "jpeg-js",
  },
  ...(turboJpegAvailable()
    ? [{
      name: "L2 turbojpeg q6",
      png: false,
      opts: { pf: NOVNC, compressLevel: 2, jpegQuality: 6 },
      jpeg: "turbojpeg" as const,
    }]
    : []),
  { name: "PNG L2", png: true, opts: { pf: NOVNC, compressLevel: 2 }, jpeg: "auto" },
];

const mk = (c: Config) =>
  c.png ? new TightPNGEncoder({ jpeg: c.jpeg }) : new TightEncoder({ jpeg: c.jpeg });
const full: Rect = { x: 0, y: 0, w: W, h: H };
const out = new ByteWriter(16 << 20);

function encodeFull(enc: TightEncoder | TightPNGEncoder, f: Frame, c: Config): number {
  out.clear();
  enc.encode(f.fb, full, c.opts, out);
  return out.length;
}

function encodeIncr(enc: TightEncoder | TightPNGEncoder, f: Frame, c: Config): number {
  out.clear();
  for (const r of f.dirty) enc.encode(f.fb, r, c.opts, out);
  return out.length;
}

console.log(
  `tight bench: ${W}x${H}, zlib ${zlibBackend().backend}, turbojpeg ${
    turboJpegAvailable() ? "yes" : "no"
  }`,
);
const kb = (b: number) => `${(b / 1024).toFixed(1)} KiB`;

for (const wl of ["desktop", "scroll", "video"] as const) {
  const fs = frames(wl);
  for (const c of configs) {
    // Sizes, measured once on a fresh connection.
    const enc0 = mk(c);
    const fullBytes = encodeFull(enc0, fs[5], c);
    const encI = mk(c);
    let incrBytes = 0;
    for (let n = 1; n <= 8; n++) incrBytes += encodeIncr(encI, fs[n], c);
    incrBytes /= 8;
    console.log(
      `${wl.padEnd(8)} ${c.name.padEnd(16)} full ${kb(fullBytes)}, incr ${kb(incrBytes)}/frame`,
    );

    const heavy = c.jpeg === "jpeg-js" && c.opts.jpegQuality !== undefined;
    const encF = mk(c);
    Deno.bench({
      name: `${wl} full ${c.name} (${kb(fullBytes)})`,
      group: `${wl} full`,
      baseline: c.name === "L2",
      n: heavy ? 5 : undefined,
      warmup: heavy ? 1 : undefined,
      fn() {
        encodeFull(encF, fs[5], c);
      },
    });
    const encB = mk(c);
    let k = 0;
    Deno.bench({
      name: `${wl} incr ${c.name} (${kb(incrBytes)}/frame)`,
      group: `${wl} incr`,
      baseline: c.name === "L2",
      fn() {
        encodeIncr(encB, fs[1 + (k++ % 8)], c);
      },
    });
  }
}
