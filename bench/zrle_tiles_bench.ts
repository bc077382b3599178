/**
 * ZRLE tile encoding (before zlib, `ZRLEEncoder.encodeTiles`) on the rectangles
 * the workloads damage at 1920x1080: the scroll workload's new text line plus
 * the stamp, the cursor workload's three small rectangles, a whole desktop
 * frame and the video region; client format 32 bpp (the guest's own) and, for
 * some, RGB565. Each case encodes frames 1..8 (the text lines vary in length);
 * times are per frame.
 *
 * Run: `deno bench -A bench/zrle_tiles_bench.ts`
 */
import { ZRLEEncoder } from "../sinks/vnc/encodings/zrle.ts";
import type { Framebuffer } from "../pipeline/framebuffer.ts";
import { type PixelFormat, RGB565, XRGB8888 } from "../pipeline/pixel_format.ts";
import type { Rect } from "../pipeline/rect.ts";
import { createWorkload, type WorkloadName } from "../sources/sim/programs/workloads.ts";

const W = 1920, H = 1080, FRAMES = 8;

/** Frames 1..count of a workload, each with the rectangles `pick` chooses from its dirty set. */
function frames(
  name: WorkloadName,
  count: number,
  pick: (dirty: Rect[]) => Rect[],
): [Framebuffer, Rect][] {
  const px = new Uint32Array(W * H);
  const prog = createWorkload(name, W, H);
  const t = { px, width: W, height: H, strideWords: W };
  prog.drawFrame(t, 0, 0);
  const out: [Framebuffer, Rect][] = [];
  for (let n = 1; n <= count; n++) {
    const dirty = prog.drawFrame(t, n, n * 16_667);
    const fb = {
      width: W,
      height: H,
      stride: W * 4,
      format: XRGB8888,
      bytes: new Uint8Array(px.slice().buffer),
    };
    for (const r of pick(dirty)) out.push([fb, r]);
  }
  return out;
}

// The scroll workload's damage is the whole screen; a server sends the rest as a copy.
const scroll = frames("scroll", FRAMES, () => [
  { x: 0, y: H - 24, w: W, h: 16 },
  { x: 0, y: 0, w: 256, h: 16 },
]);
const cursor = frames("cursor", FRAMES, (d) => d);
const desktop = frames("desktop", 1, () => [{ x: 0, y: 0, w: W, h: H }]);
const video = frames("video", 2, (d) => d);

const CASES: [string, [Framebuffer, Rect][], number, PixelFormat][] = [
  ["scroll line + stamp", scroll, FRAMES, XRGB8888],
  ["cursor 3 rects", cursor, FRAMES, XRGB8888],
  ["desktop 1920x1080", desktop, 1, XRGB8888],
  ["video 640x360 + stamp", video, 2, XRGB8888],
  ["scroll line + stamp 565", scroll, FRAMES, RGB565],
  ["desktop 1920x1080 565", desktop, 1, RGB565],
];

for (const [name, rects, count, pf] of CASES) {
  const enc = new ZRLEEncoder();
  Deno.bench({
    name: `zrle tiles: ${name} (${count} frame${count > 1 ? "s" : ""})`,
    fn() {
      for (const [fb, r] of rects) enc.encodeTiles(fb, r, pf);
    },
  });
}
