/**
 * The RFB encoders on whole 1920x1080 frames of the standard workloads
 * (desktop, scroll, video) and of the demo console (a mostly flat screen with
 * text), client format 32 bpp little-endian (the guest's own,
 * so conversion is a copy or a view) and, for some, RGB565. Encoded sizes are
 * printed once before the timings.
 *
 * Run: `deno bench -A bench/encoders_bench.ts`
 */
import { ByteWriter } from "../sinks/vnc/bytes.ts";
import type { EncodeOptions, RectEncoder } from "../sinks/vnc/encoder.ts";
import { HextileEncoder } from "../sinks/vnc/encodings/hextile.ts";
import { RawEncoder } from "../sinks/vnc/encodings/raw.ts";
import { RREEncoder } from "../sinks/vnc/encodings/rre.ts";
import { ZRLEEncoder } from "../sinks/vnc/encodings/zrle.ts";
import { zlibBackend } from "../sinks/vnc/zlib.ts";
import type { Framebuffer } from "../pipeline/framebuffer.ts";
import { type PixelFormat, RGB565, XRGB8888 } from "../pipeline/pixel_format.ts";
import { createWorkload, type WorkloadName } from "../sources/sim/programs/workloads.ts";
import { createDemo } from "../sources/sim/programs/demo.ts";

const W = 1920, H = 1080;
const full = { x: 0, y: 0, w: W, h: H };

/** Frame `n` of a workload (or the demo), drawn in order from frame 0. */
function frame(name: WorkloadName | "demo", n: number): Framebuffer {
  const px = new Uint32Array(W * H);
  const prog = name === "demo"
    ? createDemo(W, H, { title: "rxfb bench", now: () => new Date(2024, 0, 1, 12) })
    : createWorkload(name, W, H);
  const t = { px, width: W, height: H, strideWords: W };
  for (let i = 0; i <= n; i++) prog.drawFrame(t, i, i * 16_667);
  return { width: W, height: H, stride: W * 4, format: XRGB8888, bytes: new Uint8Array(px.buffer) };
}

const FRAMES: [string, Framebuffer][] = [
  ["desktop", frame("desktop", 3)],
  ["scroll", frame("scroll", 3)],
  ["video", frame("video", 3)],
  ["demo", frame("demo", 0)],
];

interface Case {
  name: string;
  make: () => RectEncoder;
  pf: PixelFormat;
  compressLevel?: number;
}

const CASES: Case[] = [
  { name: "raw", make: () => new RawEncoder(), pf: XRGB8888 },
  { name: "raw 565", make: () => new RawEncoder(), pf: RGB565 },
  { name: "rre", make: () => new RREEncoder(), pf: XRGB8888 },
  { name: "hextile", make: () => new HextileEncoder(), pf: XRGB8888 },
  { name: "hextile 565", make: () => new HextileEncoder(), pf: RGB565 },
  { name: "zrle (default level)", make: () => new ZRLEEncoder(), pf: XRGB8888 },
  { name: "zrle level 1", make: () => new ZRLEEncoder(), pf: XRGB8888, compressLevel: 1 },
  { name: "zrle level 6", make: () => new ZRLEEncoder(), pf: XRGB8888, compressLevel: 6 },
  { name: "zrle 565", make: () => new ZRLEEncoder(), pf: RGB565 },
];

const sizes: string[] = [`zlib backend: ${zlibBackend().backend}`];
for (const [wl, fb] of FRAMES) {
  for (const c of CASES) {
    const enc = c.make();
    const out = new ByteWriter(W * H * 4 + 4096);
    const opts: EncodeOptions = { pf: c.pf, compressLevel: c.compressLevel };
    const rects = enc.encode(fb, full, opts, out);
    const n = out.length;
    sizes.push(
      `${wl.padEnd(8)} ${c.name.padEnd(22)} ${String(n).padStart(9)} bytes` +
        ` (${(n / (W * H * 4) * 100).toFixed(1)}% of raw 32 bpp, ${rects} rect${
          rects > 1 ? "s" : ""
        })`,
    );
  }
}
console.log(sizes.join("\n"));

for (const [wl, fb] of FRAMES) {
  for (const c of CASES) {
    const enc = c.make();
    const out = new ByteWriter(W * H * 4 + 4096);
    const opts: EncodeOptions = { pf: c.pf, compressLevel: c.compressLevel };
    Deno.bench({
      name: `${c.name} ${wl} 1920x1080`,
      group: wl,
      baseline: c.name === "raw",
      fn() {
        out.clear();
        enc.encode(fb, full, opts, out);
      },
    });
  }
}
