/**
 * The `video` workload's region V through WebAssembly SIMD (`video_wasm.ts`, kernel
 * `pipeline/wasm/video_kernel.wat`) against the JavaScript reference (`drawVideoJs`),
 * pixel for pixel: frames up to the uint32 wrap, whole and clipped boxes, odd widths,
 * padded strides, shared memory; and the workload, which draws through the kernel,
 * against the spec's formulas at screen sizes that clip V.
 */
import { assert, assertEquals, assertStrictEquals } from "@rxfb/assert";
import { WasmVideo, wasmVideo } from "../sources/sim/programs/video_wasm.ts";
import {
  createWorkload,
  drawStamp,
  type DrawTarget,
  drawVideoJs,
  mix32,
  VIDEO_H,
  VIDEO_W,
} from "../sources/sim/programs/workloads.ts";

const FRAMES = [0, 1, 2, 3, 255, 256, 1000, 0x7fffffff, 0x80000000, 0xfffffff0, 0xffffffff];
const SENTINEL = 0xdeadbeef;

/** A target of w x h pixels, rows `stride` words apart, filled with SENTINEL. */
function target(w: number, h: number, stride = w, shared = false): DrawTarget {
  const bytes = stride * h * 4;
  const buf = shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes);
  return { px: new Uint32Array(buf).fill(SENTINEL), width: w, height: h, strideWords: stride };
}

/** The first word where a and b differ, described, or undefined. */
function firstDiff(a: DrawTarget, b: DrawTarget): string | undefined {
  for (let i = 0; i < a.px.length; i++) {
    if (a.px[i] !== b.px[i]) {
      const x = i % a.strideWords, y = Math.floor(i / a.strideWords);
      return `(${x}, ${y}): ${a.px[i].toString(16)} != ${b.px[i].toString(16)}`;
    }
  }
  return undefined;
}

const kernel = WasmVideo.load();

Deno.test("the video kernel loads here, and the workload draws through it", () => {
  assert(kernel !== undefined);
  assert(wasmVideo() !== undefined);
});

Deno.test("WasmVideo.load: undefined where WebAssembly rejects the kernel", () => {
  const validate = WebAssembly.validate;
  try {
    WebAssembly.validate = () => false;
    assertStrictEquals(WasmVideo.load(), undefined);
  } finally {
    WebAssembly.validate = validate;
  }
});

/** Kernel and reference draw the same box (u in [ua, ub), v in [va, vb)) of frame n. */
function check(
  n: number,
  box: [number, number, number, number],
  make: () => DrawTarget,
  at: [number, number],
): void {
  const want = make(), got = make();
  drawVideoJs(want, n, at[0], at[1], ...box);
  kernel!.draw(got, n, at[0], at[1], ...box);
  assertStrictEquals(firstDiff(want, got), undefined, `frame ${n}, box ${box}`);
}

Deno.test("video kernel = drawVideoJs: whole V, frames up to the uint32 wrap, plain, padded and shared", () => {
  const whole: [number, number, number, number] = [0, VIDEO_W, 0, VIDEO_H];
  for (const n of FRAMES) {
    check(n, whole, () => target(VIDEO_W, VIDEO_H), [0, 0]);
    check(n, whole, () => target(VIDEO_W + 5, VIDEO_H + 2, VIDEO_W + 13), [3, 1]);
    check(n, whole, () => target(1920, 1080, 1920, true), [640, 360]);
  }
});

Deno.test("video kernel = drawVideoJs: clipped boxes of every width mod 4, bands of many rows", () => {
  const boxes: [number, number, number, number][] = [
    [0, 1, 0, 1],
    [639, 640, 359, 360],
    [1, 4, 2, 9],
    [5, 10, 0, 360], // width 5, taller than a band of 640-wide rows
    [3, 640, 17, 300], // width 637
    [100, 102, 40, 41],
    [200, 207, 100, 130],
    [0, 639, 0, 360],
    [1, 640, 1, 359],
    [320, 576, 180, 196], // a stamp-sized box inside V
  ];
  for (const n of [0, 7, 0xfffffff0]) {
    for (const box of boxes) {
      check(n, box, () => target(700, 400, 711), [30, 20]);
      check(n, box, () => target(700, 400, 700, true), [30, 20]);
    }
  }
});

Deno.test("video kernel: many random boxes and frames against drawVideoJs", () => {
  let s = 12345;
  const rand = (k: number) => (s = mix32(s + 1)) % k;
  for (let i = 0; i < 60; i++) {
    const ua = rand(VIDEO_W), ub = ua + 1 + rand(VIDEO_W - ua);
    const va = rand(VIDEO_H), vb = va + 1 + rand(Math.min(40, VIDEO_H - va));
    const n = rand(2) ? rand(1000) : (0xffffffff - rand(1000)) >>> 0;
    check(n, [ua, ub, va, vb], () => target(660, 370, 667, i % 2 === 1), [7, 5]);
  }
});

/** Pixel (x, y) of `video` frame n on a W x H screen, from WORKLOADS.md (stamp not included). */
function specPixel(W: number, H: number, n: number, x: number, y: number): number {
  const x0 = Math.floor(W / 2) - 320, y0 = Math.floor(H / 2) - 180;
  const u = x - x0, v = y - y0;
  if (u < 0 || u >= 640 || v < 0 || v >= 360) {
    return ((x & 255) << 16) | ((y & 255) << 8) | (((x + y) >> 2) & 255); // desktop frame 0
  }
  const r = (((u * u + v * v) >> 6) + 4 * n) & 255;
  const g = (u + 2 * n) & 255;
  const b = ((2 * v + n) & 255) ^ (mix32((Math.imul(n, 1000003) + v * 640 + u) >>> 0) & 15);
  return (r << 16) | (g << 8) | b;
}

Deno.test("video workload = the spec, frames in sequence, at screen sizes that clip V", () => {
  const sizes = [[1920, 1080], [641, 363], [640, 360], [301, 199], [97, 1000], [1000, 33]];
  for (const [W, H] of sizes) {
    const t = target(W, H, W + 3, true);
    const prog = createWorkload("video", W, H);
    for (const n of [0, 1, 2, 3]) {
      prog.drawFrame(t, n, 0);
      const want = target(W, H, W + 3);
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) want.px[y * want.strideWords + x] = specPixel(W, H, n, x, y);
      }
      drawStamp(want, n, 0);
      assertEquals(firstDiff(want, t), undefined, `${W}x${H}, frame ${n}`);
    }
  }
});
