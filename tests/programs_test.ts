import {
  assert,
  assertEquals,
  assertNotEquals,
  assertRejects,
  assertStrictEquals,
} from "@rxfb/assert";
import { encode } from "fast-png";
import type { Rect } from "../pipeline/rect.ts";
import { BTN_LEFT, type InputEvent } from "../pipeline/events.ts";
import type { DrawTarget, GuestProgram } from "../sources/sim/programs/workloads.ts";
import { clockText, createDemo, wrapText } from "../sources/sim/programs/demo.ts";
import { createImage, decodeToXrgb } from "../sources/sim/programs/image.ts";
import { loadProgram, PROGRAM_NAMES } from "../sources/sim/programs/mod.ts";
import { CELL_W, drawText } from "../sources/sim/programs/font.ts";

const W = 640, H = 480;

function target(w = W, h = H): DrawTarget {
  return { px: new Uint32Array(w * h), width: w, height: h, strideWords: w };
}

/** A settable clock. */
function clock(start = new Date(2024, 4, 17, 9, 5, 7)) {
  let ms = start.getTime();
  return { now: () => new Date(ms), advance: (s: number) => (ms += s * 1000) };
}

// evdev codes
const KEY_H = 35, KEY_I = 23, KEY_O = 24, KEY_BACKSPACE = 14, KEY_LEFTSHIFT = 42;
const KEY_ENTER = 28, KEY_1 = 2, KEY_SPACE = 57;

function press(p: GuestProgram, code: number): void {
  p.input!({ type: "key", code, down: true });
  p.input!({ type: "key", code, down: false });
}

function inside(r: Rect, x: number, y: number): boolean {
  return x >= r.x && y >= r.y && x < r.x + r.w && y < r.y + r.h;
}

/** Draws a frame and checks that the dirty rectangles cover every changed pixel. */
function step(p: GuestProgram, t: DrawTarget, n: number): { rects: Rect[]; changed: number[] } {
  const before = t.px.slice();
  const rects = p.drawFrame(t, n, 0);
  const changed: number[] = [];
  for (let i = 0; i < before.length; i++) {
    if (before[i] === t.px[i]) continue;
    changed.push(i);
    const x = i % t.strideWords, y = Math.floor(i / t.strideWords);
    if (!rects.some((r) => inside(r, x, y))) {
      throw new Error(`frame ${n}: (${x}, ${y}) changed outside ${JSON.stringify(rects)}`);
    }
  }
  for (const r of rects) {
    assert(r.x >= 0 && r.y >= 0 && r.x + r.w <= t.width && r.y + r.h <= t.height);
  }
  return { rects, changed };
}

/** Renders a demo after typing the key codes (with a fixed clock). */
function demoAfter(codes: number[], events: InputEvent[] = []): Uint32Array {
  const c = clock();
  const p = createDemo(W, H, { title: "test", now: c.now });
  const t = target();
  p.drawFrame(t, 0, 0);
  for (const k of codes) press(p, k);
  for (const e of events) p.input!(e);
  p.drawFrame(t, 1, 0);
  return t.px;
}

Deno.test("demo: frame 0 is a full draw in dark background and light text", () => {
  const c = clock();
  const p = createDemo(W, H, { now: c.now, domid: 7 });
  const t = target();
  assertEquals(p.drawFrame(t, 0, 0), [{ x: 0, y: 0, w: W, h: H }]);
  const counts = new Map<number, number>();
  for (const v of t.px) counts.set(v, (counts.get(v) ?? 0) + 1);
  const [bg] = [...counts.entries()].sort((a, b) => b[1] - a[1])[0];
  const lum = (v: number) => ((v >> 16) & 255) + ((v >> 8) & 255) + (v & 255);
  assert(lum(bg) < 3 * 64, `background ${bg.toString(16)} is dark`);
  assert([...counts.keys()].some((v) => lum(v) > 3 * 200), "there is light text");
  // Nothing changed: no dirty rectangles.
  assertEquals(step(p, t, 1).rects, []);
  assertEquals(step(p, t, 2).rects, []);
});

Deno.test("demo: typed text shows, and different texts render differently", () => {
  const c = clock();
  const p = createDemo(W, H, { title: "test", now: c.now });
  const t = target();
  p.drawFrame(t, 0, 0);
  press(p, KEY_H);
  press(p, KEY_I);
  const { rects, changed } = step(p, t, 1);
  assert(rects.length > 0, "typing marks something dirty");
  assert(changed.length > 0, "typing changes pixels");
  // The text lines are in the lower part of the screen (the text box).
  assert(changed.some((i) => Math.floor(i / W) > 100), "the text area changed");
  // Dirty rectangles stay small: no full-screen redraw for two characters.
  const area = rects.reduce((a, r) => a + r.w * r.h, 0);
  assert(area < W * H / 10, `dirty area ${area} is small`);

  const hi = demoAfter([KEY_H, KEY_I]);
  const ho = demoAfter([KEY_H, KEY_O]);
  const none = demoAfter([]);
  assertNotEquals([...hi], [...ho], '"hi" and "ho" differ');
  assertNotEquals([...hi], [...none], '"hi" differs from nothing');
  // Backspace really removes a character: "hi" + backspace + "o" looks like "ho"
  // apart from the "last key" line.
  const hbo = demoAfter([KEY_H, KEY_I, KEY_BACKSPACE, KEY_O]);
  const rowsDiffering = new Set<number>();
  for (let i = 0; i < hbo.length; i++) if (hbo[i] !== ho[i]) rowsDiffering.add(Math.floor(i / W));
  assert([...rowsDiffering].every((y) => y < 120), "only the info lines differ");
  // Shift makes capitals.
  const shifted = (() => {
    const c2 = clock();
    const q = createDemo(W, H, { title: "test", now: c2.now });
    const u = target();
    q.drawFrame(u, 0, 0);
    q.input!({ type: "key", code: KEY_LEFTSHIFT, down: true });
    press(q, KEY_H);
    q.input!({ type: "key", code: KEY_LEFTSHIFT, down: false });
    press(q, KEY_I);
    q.drawFrame(u, 1, 0);
    return u.px;
  })();
  assertNotEquals([...shifted], [...hi], '"Hi" differs from "hi"');
});

Deno.test("demo: enter, digits and space type; long text keeps the last lines", () => {
  const c = clock();
  const p = createDemo(W, H, { title: "test", now: c.now });
  const t = target();
  p.drawFrame(t, 0, 0);
  for (let i = 0; i < 40; i++) {
    press(p, KEY_1);
    press(p, KEY_SPACE);
    press(p, KEY_ENTER);
    step(p, t, i + 1);
  }
  // Typing one more line scrolls the text box: many cells change.
  press(p, KEY_H);
  const { changed } = step(p, t, 100);
  assert(changed.length > 0);
});

Deno.test("demo: the clock ticks each second and only its cells are redrawn", () => {
  const c = clock(new Date(2024, 4, 17, 9, 5, 7));
  const p = createDemo(W, H, { title: "test", now: c.now });
  const t = target();
  p.drawFrame(t, 0, 0);
  assertEquals(step(p, t, 1).rects, [], "same second: nothing to do");
  c.advance(1);
  const { rects, changed } = step(p, t, 2);
  assertEquals(rects.length, 1);
  const r = rects[0];
  assert(r.x > W / 2 && r.y < 32, `clock rect ${JSON.stringify(r)} is in the title bar, right`);
  assert(r.w <= 2 * CELL_W * 2, "one second changes at most two digits");
  assert(changed.length > 0);
  c.advance(60 * 60);
  const wide = step(p, t, 3).rects;
  assertEquals(wide.length, 1);
  assert(wide[0].w > r.w, "an hour later more digits change");
  assertStrictEquals(clockText(new Date(2024, 0, 1, 3, 4, 5)), "03:04:05");
});

Deno.test("demo: the pointer marker follows position and motion; buttons show", () => {
  const c = clock();
  const p = createDemo(W, H, { title: "test", now: c.now });
  const t = target();
  p.drawFrame(t, 0, 0);
  p.input!({ type: "position", x: 100, y: 300 });
  const moved = step(p, t, 1);
  assert(moved.rects.some((r) => inside(r, 100, 300)), "new marker area dirty");
  assertStrictEquals(t.px[300 * W + 100], 0x000000, "marker outline at the hotspot");
  assertStrictEquals(t.px[305 * W + 102], 0xffffff, "marker fill inside");
  p.input!({ type: "motion", dx: 20, dy: -10 });
  step(p, t, 2);
  assertStrictEquals(t.px[305 * W + 102] === 0xffffff, false, "old marker erased");
  assertStrictEquals(t.px[290 * W + 120], 0x000000, "marker moved by (20, -10)");
  const before = t.px.slice();
  p.input!({ type: "key", code: BTN_LEFT, down: true });
  const pressed = step(p, t, 3);
  assert(pressed.changed.length > 0, "pressing a button shows");
  assertNotEquals(t.px[295 * W + 122], before[295 * W + 122], "marker fill changes when pressed");
  p.input!({ type: "key", code: BTN_LEFT, down: false });
  step(p, t, 4);
  // Clamped to the screen.
  p.input!({ type: "position", x: 10_000, y: -5 });
  step(p, t, 5);
  assertStrictEquals(t.px[0 * W + W - 1], 0x000000, "marker at the top-right corner");
});

Deno.test("demo: a new target gets a full draw", () => {
  const p = createDemo(320, 200, { now: clock().now });
  const a = target(320, 200), b = target(320, 200);
  p.drawFrame(a, 0, 0);
  assertEquals(p.drawFrame(b, 1, 0), [{ x: 0, y: 0, w: 320, h: 200 }]);
  assertEquals([...a.px], [...b.px]);
});

Deno.test("demo: tiny screens do not throw", () => {
  for (const [w, h] of [[1, 1], [50, 30], [200, 100]]) {
    const p = createDemo(w, h);
    const t = target(w, h);
    p.drawFrame(t, 0, 0);
    press(p, KEY_H);
    p.input!({ type: "position", x: w, y: h });
    step(p, t, 1);
  }
});

Deno.test("wrapText wraps at newlines and by length", () => {
  assertEquals(wrapText("abcdef\ngh\n", 4), ["abcd", "ef", "gh", ""]);
});

Deno.test("font: glyphs render, unknown characters fall back", () => {
  const w = 200, h = 20;
  const a = new Uint32Array(w * h), b = new Uint32Array(w * h);
  assertStrictEquals(drawText(a, w, w, h, 0, 0, "ab", 1, 0, 1), 2 * CELL_W);
  drawText(b, w, w, h, 0, 0, "ac", 1, 0, 1);
  assertNotEquals([...a], [...b]);
  const d1 = new Uint32Array(w * h), d2 = new Uint32Array(w * h);
  drawText(d1, w, w, h, 0, 0, "a\u2014b", 1, 0, 2);
  drawText(d2, w, w, h, 0, 0, "a-b", 1, 0, 2);
  assertEquals([...d1], [...d2], "em dash drawn as '-'");
});

async function withPng(
  img: Parameters<typeof encode>[0],
  f: (path: string) => Promise<void>,
): Promise<void> {
  const path = await Deno.makeTempFile({ suffix: ".png" });
  try {
    await Deno.writeFile(path, encode(img));
    await f(path);
  } finally {
    await Deno.remove(path);
  }
}

Deno.test("image: an RGB PNG shows at its size with exact pixels; later frames are clean", async () => {
  const w = 3, h = 2;
  const data = new Uint8Array([
    255,
    0,
    0,
    0,
    255,
    0,
    0,
    0,
    255,
    1,
    2,
    3,
    250,
    128,
    7,
    0,
    0,
    0,
  ]);
  await withPng({ width: w, height: h, data, channels: 3, depth: 8 }, async (path) => {
    const { width, height, program } = await createImage(path);
    assertEquals([width, height], [3, 2]);
    const t: DrawTarget = {
      px: new Uint32Array(5 * 2).fill(0xabcdef),
      width,
      height,
      strideWords: 5,
    };
    assertEquals(program.drawFrame(t, 0, 0), [{ x: 0, y: 0, w: 3, h: 2 }]);
    assertEquals([...t.px], [
      0xff0000,
      0x00ff00,
      0x0000ff,
      0xabcdef,
      0xabcdef,
      0x010203,
      0xfa8007,
      0x000000,
      0xabcdef,
      0xabcdef,
    ]);
    assertEquals(program.drawFrame(t, 1, 0), []);
    assertEquals(program.drawFrame(t, 2, 0), []);
    // Through loadProgram.
    const loaded = await loadProgram(`image:${path}`, 1, 1);
    assertEquals([loaded.width, loaded.height], [3, 2]);
  });
});

Deno.test("image: RGBA (composited on black), grey, grey+alpha, 16-bit and palette PNGs", () => {
  const px = (img: Parameters<typeof encode>[0]) => [...decodeToXrgb(encode(img)).px];
  assertEquals(
    px({
      width: 2,
      height: 1,
      channels: 4,
      depth: 8,
      data: new Uint8Array([10, 20, 30, 255, 200, 100, 50, 0]),
    }),
    [0x0a141e, 0x000000],
  );
  assertEquals(
    px({ width: 1, height: 1, channels: 4, depth: 8, data: new Uint8Array([200, 100, 51, 128]) }),
    [(Math.round(200 * 128 / 255) << 16) | (Math.round(100 * 128 / 255) << 8) | 26],
  );
  assertEquals(
    px({ width: 3, height: 1, channels: 1, depth: 8, data: new Uint8Array([0, 0x7f, 0xff]) }),
    [0x000000, 0x7f7f7f, 0xffffff],
  );
  assertEquals(
    px({ width: 2, height: 1, channels: 2, depth: 8, data: new Uint8Array([0x80, 255, 0x80, 0]) }),
    [0x808080, 0x000000],
  );
  assertEquals(
    px({
      width: 2,
      height: 1,
      channels: 3,
      depth: 16,
      data: new Uint16Array([0xffff, 0x1234, 0x00ff, 0x8000, 0x7fff, 0]),
    }),
    [0xff1200, 0x807f00],
  );
  assertEquals(
    px({ width: 2, height: 1, channels: 1, depth: 16, data: new Uint16Array([0xabcd, 0x0100]) }),
    [0xababab, 0x010101],
  );
  assertEquals(
    px({
      width: 3,
      height: 2,
      channels: 1,
      depth: 8,
      palette: [[255, 0, 0], [0, 255, 0], [1, 2, 3]],
      data: new Uint8Array([0, 1, 2, 2, 1, 0]),
    }),
    [0xff0000, 0x00ff00, 0x010203, 0x010203, 0x00ff00, 0xff0000],
  );
  // Sub-byte greyscale: depth 1 (0 and 1 map to black and white).
  assertEquals(
    px({
      width: 9,
      height: 1,
      channels: 1,
      depth: 1,
      data: new Uint8Array([0b10100000, 0b10000000]),
    }),
    [0xffffff, 0, 0xffffff, 0, 0, 0, 0, 0, 0xffffff],
  );
});

Deno.test("image: a missing or broken file fails with a clear message", async () => {
  await assertRejects(() => createImage("/nonexistent/x.png"), /cannot read image/);
  const path = await Deno.makeTempFile({ suffix: ".png" });
  try {
    await Deno.writeTextFile(path, "not a png");
    await assertRejects(() => createImage(path), /cannot decode PNG/);
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("loadProgram: workloads and demo load; an unknown name lists the valid ones", async () => {
  for (const name of ["demo", "desktop", "scroll", "video", "cursor", "static"]) {
    const { program, width, height } = await loadProgram(name, 320, 200);
    assertEquals([width, height], [320, 200]);
    const t = target(320, 200);
    assertEquals(program.drawFrame(t, 0, 0), [{ x: 0, y: 0, w: 320, h: 200 }], name);
  }
  await assertRejects(
    () => loadProgram("nosuch", 320, 200),
    (e: Error) => {
      assert(e.message.includes('"nosuch"'), e.message);
      for (const n of PROGRAM_NAMES) assert(e.message.includes(n), `${n} in ${e.message}`);
      return true;
    },
  );
  await assertRejects(() => loadProgram("image:", 320, 200), /needs a path/);
});
