/**
 * rxfb's VNC server against the real TigerVNC viewer (vncviewer, from
 * tigervnc-viewer) on an Xvfb display: what the viewer's window shows is
 * compared with the guest's framebuffer, what is typed and clicked into the
 * window with xdotool must reach the guest's keyboard ring, and VNC
 * authentication and VeNCrypt are proven with the viewer's own security code.
 */
import { assert, assertEquals } from "@rxfb/assert";
import type { InputEvent } from "../pipeline/events.ts";
import { BTN_LEFT, BTN_MIDDLE, BTN_RIGHT } from "../pipeline/events.ts";
import type { PixelFormat } from "../pipeline/pixel_format.ts";
import type { Rect } from "../pipeline/rect.ts";
import { encodeVncPasswdFile } from "../sinks/vnc/auth/vnc.ts";
import { serveVnc } from "../sinks/vnc/mod.ts";
import { attach } from "../sources/attach.ts";
import { memoryLogger } from "../sources/log.ts";
import { SimGuest } from "../sources/sim/guest.ts";
import { SimXen } from "../sources/sim/platform.ts";
import { waitFor } from "./helpers.ts";
import { skipWithout } from "./packages.ts";
import { paintTestPicture, type VncRig, vncRig } from "./vnc_rig.ts";
import {
  crop,
  fbPicture,
  onPath,
  type Picture,
  pictureDiff,
  psnr,
  run,
  savePng,
  sleep,
  TigerViewer,
  Xvfb,
} from "./x11_viewer.ts";

const HAVE_TOOLS = ["vncviewer", "Xvfb", "xdotool", "xwd"].every(onPath);
const ignore = skipWithout(
  HAVE_TOOLS,
  "vncviewer, Xvfb, xdotool or xwd",
  "apt-get install -y tigervnc-viewer xvfb xdotool x11-apps",
);

/** Set RXFB_TIGER_SHOTS=DIR to keep every screenshot that matched, to look at. */
const SHOTS = Deno.env.get("RXFB_TIGER_SHOTS");

/** The guest's size: not square, not a multiple of 16 or 64 in height (200 = 3*64 + 8). */
const W = 320, H = 200;

const utf8 = new TextEncoder();

let serial = 0;
/** A desktop name no other window has (the viewer's title is "NAME - TigerVNC"). */
const uniqueName = (what: string) => `rxfb-${what}-${Deno.pid}-${++serial}`;

/** An Xvfb and a scratch HOME for the viewers, both gone afterwards. */
async function withX(fn: (x: Xvfb, home: string) => Promise<void>): Promise<void> {
  const x = await Xvfb.start();
  const home = await Deno.makeTempDir({ prefix: "rxfb-tiger-home-" });
  try {
    await fn(x, home);
  } finally {
    await x.stop();
    await Deno.remove(home, { recursive: true });
  }
}

/** A rig named `name` serving a 320x200 guest showing the test picture. */
async function pictureRig(
  name: string,
  vncOpts: Parameters<typeof vncRig>[1] = {},
): Promise<VncRig> {
  const rig = await vncRig({ width: W, height: H }, { name, ...vncOpts });
  paintTestPicture(rig.sim);
  return rig;
}

/** Runs `fn` with a viewer connected to `rig` and its window; stops the viewer afterwards. */
async function withViewer(
  x: Xvfb,
  home: string,
  rig: VncRig,
  name: string,
  params: string[],
  fn: (v: TigerViewer, win: string) => Promise<void>,
): Promise<void> {
  const v = TigerViewer.start(x, rig.port, params, home);
  try {
    let win: string;
    try {
      win = await v.window(`^${name} - TigerVNC$`);
    } catch (e) {
      throw new Error(`${e instanceof Error ? e.message : e}\nserver log:\n${rig.log.join("\n")}`);
    }
    await fn(v, win);
  } finally {
    await v.stop();
  }
}

/**
 * Polls screenshots of `win` until `ok(shot)` holds (within `ms`). On failure
 * saves the last screenshot and the wanted picture as PNGs and says where.
 */
async function waitForPicture(
  x: Xvfb,
  win: string,
  want: () => Picture,
  ok: (shot: Picture, want: Picture) => boolean,
  describe: (shot: Picture, want: Picture) => string,
  what: string,
  v: TigerViewer,
  ms = 10_000,
): Promise<Picture> {
  const end = performance.now() + ms;
  let shot: Picture | undefined;
  while (performance.now() < end) {
    shot = await x.screenshot(win);
    if (ok(shot, want())) {
      if (SHOTS) await savePng(`${SHOTS}/${what.replace(/[^\w.-]+/g, "_")}.png`, shot);
      return shot;
    }
    await sleep(100);
  }
  const dir = await Deno.makeTempDir({ prefix: "rxfb-tiger-fail-" });
  if (shot) await savePng(`${dir}/window.png`, shot);
  await savePng(`${dir}/guest.png`, want());
  throw new Error(
    `${what}: ${
      shot ? describe(shot, want()) : "no screenshot"
    } (screenshots in ${dir})\nviewer log:\n${v.log()}`,
  );
}

/** Waits until the window shows the guest's framebuffer exactly. */
function showsExactly(x: Xvfb, win: string, rig: VncRig, v: TigerViewer, what: string) {
  return waitForPicture(
    x,
    win,
    () => fbPicture(rig.guest.framebuffer()!),
    (s, w) => pictureDiff(s, w).count === 0,
    (s, w) => {
      const d = pictureDiff(s, w);
      return `${d.count} pixels differ, first ${d.first}`;
    },
    what,
    v,
  );
}

/** 32 cells of 8x8 at (0, 160), white where `bits` has a 1 (bit i: cell i). */
function paintCells(sim: SimGuest, bits: number): void {
  const fb = sim.fbfront!.fb;
  const px = new Uint32Array(fb.sab, fb.byteOffset, (fb.stride / 4) * fb.height);
  for (let i = 0; i < 32; i++) {
    const c = (bits >>> i) & 1 ? 0xffffff : 0;
    for (let y = 160; y < 168; y++) {
      px.fill(c, y * (fb.stride / 4) + i * 8, y * (fb.stride / 4) + i * 8 + 8);
    }
  }
  sim.fbfront!.damage([{ x: 0, y: 160, w: 256, h: 8 }]);
}

/** Fills `r` of the guest framebuffer with a pattern (stripes, a ramp and noise) and damages it. */
function paintBox(sim: SimGuest, r: Rect, seed: number): void {
  const fb = sim.fbfront!.fb;
  const px = new Uint32Array(fb.sab, fb.byteOffset, (fb.stride / 4) * fb.height);
  let s = seed;
  for (let y = r.y; y < r.y + r.h; y++) {
    for (let x = r.x; x < r.x + r.w; x++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      const band = ((y - r.y) >> 3) % 3;
      px[y * (fb.stride / 4) + x] = band === 0
        ? (((x - r.x) * 7 + seed) & 0xff) << 8 | 0xff0000
        : band === 1
        ? ((x + y) & 1 ? 0x00ff80 : 0x202020)
        : (s >>> 8) & 0xffffff;
    }
  }
  sim.fbfront!.damage([r]);
}

/**
 * Changes pixel (200, 60) without telling the backend; after a while the
 * window must differ from the guest in exactly that pixel (so the comparisons
 * here see one pixel, and the server sends nothing it was not told about).
 */
async function undamagedPixelIsUnseen(x: Xvfb, win: string, rig: VncRig): Promise<void> {
  const fb = rig.sim.fbfront!.fb;
  const px = new Uint32Array(fb.sab, fb.byteOffset, (fb.stride / 4) * fb.height);
  const i = 60 * (fb.stride / 4) + 200;
  px[i] = (px[i] ^ 0x808080) & 0xffffff;
  await sleep(300);
  const d = pictureDiff(await x.screenshot(win), fbPicture(rig.guest.framebuffer()!));
  assertEquals(d.count, 1, `undamaged pixel: ${d.first}`);
  assert(d.first!.startsWith("200,60:"), d.first!);
}

/** The encoding numbers rxfb logs ("encoding N, ..."). */
const ENCODING = { Raw: 0, Hextile: 5, Tight: 7, ZRLE: 16 } as const;

// ---------------------------------------------------------------- pixels

/** Each lossless encoding with a compression level (Raw and Hextile ignore theirs). */
const LOSSLESS: { enc: keyof typeof ENCODING; level: number; extra: string[] }[] = [
  { enc: "Raw", level: 1, extra: [] },
  { enc: "Hextile", level: 3, extra: [] },
  { enc: "ZRLE", level: 6, extra: [] },
  { enc: "Tight", level: 9, extra: ["-NoJPEG"] },
];

for (const { enc, level, extra } of LOSSLESS) {
  Deno.test({
    name: `tigervnc: ${enc} shows the guest's pixels exactly, and then its updates`,
    ignore,
    fn: async () => {
      await withX(async (x, home) => {
        const name = uniqueName(enc.toLowerCase());
        const rig = await pictureRig(name);
        try {
          const params = [
            `-PreferredEncoding=${enc}`,
            "-FullColor=1",
            "-CustomCompressLevel=1",
            `-CompressLevel=${level}`,
            ...extra,
          ];
          const logged = `encoding ${ENCODING[enc]}, compress ${level}`;
          await withViewer(x, home, rig, name, params, async (v, win) => {
            const shot = await showsExactly(x, win, rig, v, `${enc}: first picture`);
            // The window is exactly the framebuffer (no scaling, viewport at 0,0).
            assertEquals([shot.width, shot.height], [W, H]);
            assert(
              v.log().includes("Using pixel format depth 24 (32bpp) little-endian rgb888"),
              v.log(),
            );
            assert(
              rig.log.some((l) => l.includes(logged)),
              `server log lacks "${logged}":\n${rig.log.join("\n")}`,
            );
            // Incremental updates: two boxes change, one after the other.
            paintBox(rig.sim, { x: 37, y: 21, w: 101, h: 67 }, 11);
            await showsExactly(x, win, rig, v, `${enc}: first update`);
            paintBox(rig.sim, { x: 250, y: 150, w: 70, h: 50 }, 12);
            paintBox(rig.sim, { x: 0, y: 0, w: 9, h: 5 }, 13);
            await showsExactly(x, win, rig, v, `${enc}: second update`);
            // The comparison sees a single pixel: one written without damage stays unseen.
            await undamagedPixelIsUnseen(x, win, rig);
            rig.sim.fbfront!.damage([{ x: 200, y: 60, w: 1, h: 1 }]);
            await showsExactly(x, win, rig, v, `${enc}: one-pixel update`);
            if (enc === "Raw") {
              // A row of black and white 8x8 cells, then the first four flipped: Raw with
              // CopyRect paints those from cells of their colour the viewer shows.
              paintCells(rig.sim, 0b0110_1001_0011_1100_0101_1010_1100_0011);
              await showsExactly(x, win, rig, v, "Raw: cells");
              paintCells(rig.sim, 0b0110_1001_0011_1100_0101_1010_1100_1100);
              await showsExactly(x, win, rig, v, "Raw: cells flipped");
            }
          });
          if (enc === "Raw") {
            const summary = (l: string) => / of solid blocks\)/.test(l);
            await waitFor(() => rig.log.some(summary), "the viewer's summary");
            const sent = rig.log.find(summary)!;
            const blocks = Number(/\((\d+) of solid blocks\)/.exec(sent)![1]);
            assert(blocks >= 4, sent);
          }
        } finally {
          await rig.stop();
        }
      });
    },
  });
}

/** PSNR of each quarter band of the test picture (gradient, blocks, text, noise) and overall. */
function bandPsnr(shot: Picture, want: Picture): number[] {
  const bands = [0, 1, 2, 3].map((k) => {
    const r = { x: 0, y: (k * H) / 4, w: W, h: H / 4 };
    return psnr(crop(shot, r), crop(want, r));
  });
  return [...bands, psnr(shot, want)];
}

/** Bound on the JPEG picture's PSNR over the whole window, and per quarter band. */
const JPEG_PSNR = 30, JPEG_BAND_PSNR = 25;

Deno.test({
  name: `tigervnc: Tight with JPEG (quality 8) shows the guest's picture within ${JPEG_PSNR} dB`,
  ignore,
  fn: async () => {
    await withX(async (x, home) => {
      const name = uniqueName("jpeg");
      const rig = await pictureRig(name);
      try {
        const params = [
          "-PreferredEncoding=Tight",
          "-FullColor=1",
          "-CustomCompressLevel=1",
          "-CompressLevel=2",
          "-NoJPEG=0",
          "-QualityLevel=8",
        ];
        await withViewer(x, home, rig, name, params, async (v, win) => {
          const want = () => fbPicture(rig.guest.framebuffer()!);
          // Lossy, so wait for a picture that is close and no longer changing.
          let last: Picture | undefined;
          const settled = (s: Picture, w: Picture) => {
            const stable = last !== undefined && pictureDiff(s, last).count === 0;
            last = s;
            return stable &&
              bandPsnr(s, w).every((p, i) => p >= (i < 4 ? JPEG_BAND_PSNR : JPEG_PSNR));
          };
          const describe = (s: Picture, w: Picture) =>
            `PSNR per band / overall ${bandPsnr(s, w).map((p) => p.toFixed(2)).join(" / ")} dB`;
          const shot = await waitForPicture(x, win, want, settled, describe, "Tight JPEG", v);
          console.log(`Tight JPEG quality 8: ${describe(shot, want())}`);
          assert(
            rig.log.some((l) => l.includes("encoding 7, compress 2, quality 8")),
            rig.log.join("\n"),
          );
          // Lossy indeed: JPEG was used (else the picture would be exact).
          assert(pictureDiff(shot, want()).count > 0, "the JPEG picture is exact: was JPEG used?");
          // An update: a box changes; the window follows it within the same bounds.
          const box = { x: 40, y: 24, w: 200, h: 120 };
          paintBox(rig.sim, box, 21);
          last = undefined;
          const boxOk = (s: Picture, w: Picture) =>
            settled(s, w) && psnr(crop(s, box), crop(w, box)) >= JPEG_BAND_PSNR;
          const shot2 = await waitForPicture(x, win, want, boxOk, describe, "Tight JPEG update", v);
          console.log(
            `Tight JPEG update: ${describe(shot2, want())}, box ${
              psnr(crop(shot2, box), crop(want(), box)).toFixed(2)
            } dB`,
          );
        });
      } finally {
        await rig.stop();
      }
    });
  },
});

// ---------------------------------------------------------------- low colour

/**
 * The guest's picture as a viewer at `pf` shows it: each 8-bit component
 * reduced the way the server converts (nearest, halves up: convert_pixels.ts'
 * rule, written out again here) and expanded the way TigerVNC does
 * (PixelFormat's upconvTable: v * 255 / max, rounded down).
 */
function reducedPicture(p: Picture, maxes: readonly [number, number, number]): Picture {
  const rgb = new Uint8Array(p.rgb.length);
  for (let i = 0; i < rgb.length; i++) {
    const max = maxes[i % 3];
    const q = Math.floor((2 * p.rgb[i] * max + 255) / 510);
    rgb[i] = Math.floor((q * 255) / max);
  }
  return { ...p, rgb };
}

/** TigerVNC's low colour levels: the 8 bpp true-colour formats it asks for (CConn.cxx). */
const LOW_COLOUR: {
  level: number;
  enc: keyof typeof ENCODING;
  viewerSays: string;
  pf: Pick<
    PixelFormat,
    "redMax" | "greenMax" | "blueMax" | "redShift" | "greenShift" | "blueShift"
  >;
  /** Bound on the PSNR against the full-colour picture (measured 12.2, 21.5, 24.8 dB). */
  minPsnr: number;
}[] = [
  {
    level: 0,
    enc: "Tight",
    viewerSays: "depth 3 (8bpp) rgb111",
    minPsnr: 11,
    pf: { redMax: 1, greenMax: 1, blueMax: 1, redShift: 2, greenShift: 1, blueShift: 0 },
  },
  {
    level: 1,
    enc: "ZRLE",
    viewerSays: "depth 6 (8bpp) rgb222",
    minPsnr: 20,
    pf: { redMax: 3, greenMax: 3, blueMax: 3, redShift: 4, greenShift: 2, blueShift: 0 },
  },
  {
    level: 2,
    enc: "Hextile",
    viewerSays: "depth 8 (8bpp) rgb332",
    minPsnr: 23,
    pf: { redMax: 7, greenMax: 7, blueMax: 3, redShift: 5, greenShift: 2, blueShift: 0 },
  },
];

for (const lc of LOW_COLOUR) {
  Deno.test({
    name: `tigervnc: low colour level ${lc.level} (${
      lc.viewerSays.split(" ").pop()
    }, ${lc.enc}) shows the server's reduction exactly`,
    ignore,
    fn: async () => {
      await withX(async (x, home) => {
        const name = uniqueName(`low${lc.level}`);
        const rig = await pictureRig(name);
        try {
          const params = [
            `-PreferredEncoding=${lc.enc}`,
            "-FullColor=0",
            `-LowColorLevel=${lc.level}`,
            "-NoJPEG",
          ];
          const maxes = [lc.pf.redMax, lc.pf.greenMax, lc.pf.blueMax] as const;
          await withViewer(x, home, rig, name, params, async (v, win) => {
            const original = () => fbPicture(rig.guest.framebuffer()!);
            const want = () => reducedPicture(original(), maxes);
            const exact = (s: Picture, w: Picture) => pictureDiff(s, w).count === 0;
            const describe = (s: Picture, w: Picture) => {
              const d = pictureDiff(s, w);
              return `${d.count} pixels differ from the reduced picture, first ${d.first}`;
            };
            const shot = await waitForPicture(
              x,
              win,
              want,
              exact,
              describe,
              `low colour ${lc.level}`,
              v,
            );
            assert(v.log().includes(`Using pixel format ${lc.viewerSays}`), v.log());
            const seen = rig.log.find((l) => l.includes(": pixel format "));
            console.log(
              `level ${lc.level}: server saw ${
                seen?.replace(/^.*pixel format /, "")
              }; PSNR vs the original ${psnr(shot, original()).toFixed(2)} dB`,
            );
            const p = lc.pf;
            assert(
              rig.log.some((l) =>
                l.includes(`pixel format 8 bpp`) &&
                l.includes(
                  `max ${p.redMax}/${p.greenMax}/${p.blueMax}, shift ${p.redShift}/${p.greenShift}/${p.blueShift}`,
                )
              ),
              rig.log.join("\n"),
            );
            assert(psnr(shot, original()) >= lc.minPsnr, `PSNR below ${lc.minPsnr} dB`);
            paintBox(rig.sim, { x: 100, y: 90, w: 133, h: 77 }, 31);
            await waitForPicture(x, win, want, exact, describe, `low colour ${lc.level} update`, v);
          });
        } finally {
          await rig.stop();
        }
      });
    },
  });
}

// ---------------------------------------------------------------- input

/** Evdev key codes (linux/input-event-codes.h). */
const KEY = {
  A: 30,
  B: 48,
  C: 46,
  KEY_1: 2,
  KEY_2: 3,
  KEY_0: 11,
  LEFTSHIFT: 42,
  LEFTCTRL: 29,
  LEFT: 105,
  UP: 103,
  RIGHT: 106,
  DOWN: 108,
  F1: 59,
  ENTER: 28,
  BACKSPACE: 14,
} as const;

const keyEvents = (inputs: readonly InputEvent[]) =>
  inputs.filter((e) => e.type === "key").map((e) => e.type === "key" && [e.code, e.down]);
const tap = (code: number) => [[code, true], [code, false]];

/** Focuses the viewer's window (there is no window manager to do it) and waits for it. */
async function focus(x: Xvfb, win: string): Promise<void> {
  await x.xdotool("windowfocus", "--sync", win);
  await sleep(100);
}

Deno.test({
  name:
    "tigervnc: keys typed into the window reach the guest's ring as evdev codes, by scancode and by keysym",
  ignore,
  fn: async () => {
    await withX(async (x, home) => {
      const name = uniqueName("keys");
      // A French server keymap tells the two paths apart: by XT scancode (QEMU
      // Extended Key Event, which TigerVNC uses since the server acknowledges it)
      // the key labelled A on the viewer's US keyboard is KEY_A; by keysym, "a"
      // would be KEY_Q on AZERTY.
      const rig = await pictureRig(name, { keymap: "fr" });
      try {
        await withViewer(x, home, rig, name, ["-PreferredEncoding=Raw"], async (v, win) => {
          await showsExactly(x, win, rig, v, "keys: picture");
          await focus(x, win);
          const k = (...args: string[]) => x.xdotool(...args);
          await k("key", "--delay", "20", "a");
          await k("keydown", "Shift_L");
          await k("key", "b");
          await k("keyup", "Shift_L");
          await k("key", "--delay", "20", "1", "2", "0");
          await k("keydown", "Control_L");
          await k("key", "c");
          await k("keyup", "Control_L");
          await k(
            "key",
            "--delay",
            "20",
            "Left",
            "Up",
            "Right",
            "Down",
            "F1",
            "Return",
            "BackSpace",
          );
          // "eacute" is on no key of the viewer's US keyboard: xdotool binds it to a
          // spare keycode that has no XT scancode, so TigerVNC sends a plain KeyEvent
          // with the keysym, and the server's fr keymap puts it on KEY_2.
          await k("key", "eacute");
          const want = [
            ...tap(KEY.A),
            [KEY.LEFTSHIFT, true],
            ...tap(KEY.B),
            [KEY.LEFTSHIFT, false],
            ...tap(KEY.KEY_1),
            ...tap(KEY.KEY_2),
            ...tap(KEY.KEY_0),
            [KEY.LEFTCTRL, true],
            ...tap(KEY.C),
            [KEY.LEFTCTRL, false],
            ...[KEY.LEFT, KEY.UP, KEY.RIGHT, KEY.DOWN, KEY.F1, KEY.ENTER, KEY.BACKSPACE].flatMap(
              tap,
            ),
            ...tap(KEY.KEY_2),
          ];
          await waitFor(
            () => rig.sim.inputs.length >= want.length,
            `${want.length} key events (got ${JSON.stringify(rig.sim.inputs)})`,
          ).catch(() => {});
          await sleep(200); // nothing more may come
          assertEquals(keyEvents(rig.sim.inputs), want);
          assertEquals(rig.sim.inputs.filter((e) => e.type !== "key"), []);
        });
      } finally {
        await rig.stop();
      }
    });
  },
});

/**
 * Clicks into the window at (px, py) and waits for the viewer to settle. Without
 * a window manager, FLTK (TigerVNC's toolkit) reports no pointer motion to
 * the viewer until the window was clicked once: vncviewer sends no
 * PointerEvent for a move before (the server receives none). Returns the
 * index of the guest's next input event.
 */
async function primePointer(x: Xvfb, win: string, rig: VncRig, px: number, py: number) {
  await x.xdotool("mousemove", "--window", win, String(px), String(py));
  await x.xdotool("click", "1");
  await waitFor(
    () => rig.sim.inputs.some((e) => e.type === "key" && e.code === BTN_LEFT && !e.down),
    "the priming click",
  );
  await sleep(150);
  return rig.sim.inputs.length;
}

/** The guest's pointer events after index `from`, without key events. */
const pointerEvents = (inputs: readonly InputEvent[], from = 0) =>
  inputs.slice(from).filter((e) => e.type !== "key");

Deno.test({
  name:
    "tigervnc: an absolute guest gets the pointer's framebuffer position, buttons and wheel from the window",
  ignore,
  fn: async () => {
    await withX(async (x, home) => {
      const name = uniqueName("pointer");
      const rig = await pictureRig(name);
      try {
        await waitFor(() => rig.guest.pointerIsAbsolute(), "an absolute pointer");
        await withViewer(x, home, rig, name, ["-PreferredEncoding=Raw"], async (v, win) => {
          await showsExactly(x, win, rig, v, "pointer: picture");
          const start = await primePointer(x, win, rig, 3, 4);
          const inputs = rig.sim.inputs;
          /** Moves to (px, py) of the window, waits for that position, clicks `button`. */
          const clickAt = async (px: number, py: number, button: string) => {
            await x.xdotool("mousemove", "--window", win, String(px), String(py));
            await waitFor(() => {
              const last = pointerEvents(inputs).at(-1);
              return last?.type === "position" && last.x === px && last.y === py;
            }, `position ${px},${py} (got ${JSON.stringify(inputs)})`);
            const n = inputs.length;
            await x.xdotool("click", button);
            await waitFor(() => inputs.length >= n + 2, `click ${button} at ${px},${py}`);
            return n;
          };
          await clickAt(10, 20, "1");
          await clickAt(300, 190, "2");
          await clickAt(0, 0, "3");
          const wheelFrom = await clickAt(W - 1, H - 1, "4");
          await x.xdotool("click", "5");
          await waitFor(
            () => inputs.slice(wheelFrom).filter((e) => e.type === "position" && e.dz).length >= 2,
            "two wheel clicks",
          );
          await sleep(200);
          // Buttons: down and up, in order, each at the place it was clicked.
          const buttons = inputs.flatMap((e, i) =>
            i >= start && e.type === "key" ? [[i, e.code, e.down]] : []
          );
          assertEquals(buttons.map(([, c, d]) => [c, d]), [
            ...tap(BTN_LEFT),
            ...tap(BTN_MIDDLE),
            ...tap(BTN_RIGHT),
          ]);
          const at = buttons.map(([i]) => {
            const p = pointerEvents(inputs.slice(0, i as number)).at(-1);
            return p?.type === "position" ? [p.x, p.y] : p;
          });
          assertEquals(at, [[10, 20], [10, 20], [300, 190], [300, 190], [0, 0], [0, 0]]);
          // The wheel: rel_z -1 for up (button 4), +1 for down (button 5), at the corner.
          const wheel = inputs.flatMap((e) =>
            e.type === "position" && e.dz ? [[e.x, e.y, e.dz]] : []
          );
          assertEquals(wheel, [[W - 1, H - 1, -1], [W - 1, H - 1, 1]]);
          // Every event was a position inside the framebuffer (no relative motion).
          for (const e of pointerEvents(inputs, start)) {
            assert(
              e.type === "position" && e.x >= 0 && e.x < W && e.y >= 0 && e.y < H,
              JSON.stringify(e),
            );
          }
        });
      } finally {
        await rig.stop();
      }
    });
  },
});

/**
 * Like vncRig, but the guest boots before the backend is attached, so its
 * kbdfront probes before feature-abs-pointer is written and takes a relative
 * pointer (as tests/sim_guest_test.ts shows).
 */
async function relativeRig(name: string): Promise<VncRig> {
  const xen = new SimXen();
  const logger = memoryLogger();
  const domid = 9;
  const sim = await SimGuest.create(xen, domid, { program: "none", width: W, height: H });
  await sim.boot();
  const guest = await attach({ domid, platform: xen.platform(), log: logger });
  const stop = async () => {
    await sim.stop();
    await guest.close();
  };
  try {
    await guest.connected();
    await waitFor(
      () => sim.fbfront?.isConnected === true && logger.lines.some((l) => l.includes("pointer is")),
      "the vfb and the vkbd connected",
    );
    paintTestPicture(sim);
    const vnc = await serveVnc(guest, {
      defaultDisplay: 100 + (Deno.pid % 300),
      unused: true,
      name,
      log: logger.child("vnc"),
    });
    return {
      xen,
      sim,
      guest,
      vnc,
      port: vnc.port,
      log: logger.lines,
      stop: async () => {
        vnc.close();
        await stop();
      },
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

Deno.test({
  name: "tigervnc: a relative guest gets motion deltas derived from the window's positions",
  ignore,
  fn: async () => {
    await withX(async (x, home) => {
      const name = uniqueName("relative");
      const rig = await relativeRig(name);
      try {
        assert(rig.log.some((l) => l.includes("pointer is relative")), rig.log.join("\n"));
        assertEquals(rig.guest.pointerIsAbsolute(), false);
        await withViewer(x, home, rig, name, ["-PreferredEncoding=Raw"], async (v, win) => {
          await showsExactly(x, win, rig, v, "relative: picture");
          const inputs = rig.sim.inputs;
          // The backend starts at 0,0: the priming click's deltas add up to its position.
          let from = await primePointer(x, win, rig, 3, 4);
          const sum = (from: number) => {
            let dx = 0, dy = 0;
            for (const e of pointerEvents(inputs, from)) {
              assert(e.type === "motion", `not a motion: ${JSON.stringify(e)}`);
              dx += e.dx;
              dy += e.dy;
            }
            return [dx, dy];
          };
          assertEquals(sum(0), [3, 4], "the priming click");
          let cur = [3, 4];
          for (const [px, py] of [[10, 20], [50, 70], [40, 65], [W - 1, H - 1], [3, 4]]) {
            const want = [px - cur[0], py - cur[1]];
            await x.xdotool("mousemove", "--window", win, String(px), String(py));
            await waitFor(
              () => sum(from)[0] === want[0] && sum(from)[1] === want[1],
              `motion by ${want} to ${px},${py}`,
            ).catch(() => {});
            assertEquals(sum(from), want, `moving to ${px},${py}`);
            cur = [px, py];
            from = inputs.length;
          }
          await x.xdotool("click", "1");
          await x.xdotool("click", "4");
          await x.xdotool("click", "5");
          await waitFor(() => inputs.length >= from + 4, "a click and two wheel clicks").catch(
            () => {},
          );
          await sleep(200);
          // A click does not move; the wheel is a motion with only rel_z.
          assertEquals(inputs.slice(from), [
            { type: "key", code: BTN_LEFT, down: true },
            { type: "key", code: BTN_LEFT, down: false },
            { type: "motion", dx: 0, dy: 0, dz: -1 },
            { type: "motion", dx: 0, dy: 0, dz: 1 },
          ]);
        });
      } finally {
        await rig.stop();
      }
    });
  },
});

// ---------------------------------------------------------------- security

/** Writes a file readable by its owner only. */
async function writePrivate(path: string, data: string | Uint8Array): Promise<void> {
  await Deno.writeFile(path, typeof data === "string" ? utf8.encode(data) : data, {
    mode: 0o600,
  });
}

Deno.test({
  name: "tigervnc: VNC authentication: the right password shows the pixels, a wrong one is refused",
  ignore,
  fn: async () => {
    await withX(async (x, home) => {
      // Plain text for the server. Not a 7-character password: "s3cret!\n" is 8 bytes,
      // which readVncPassword takes for an obfuscated vncpasswd file (a bug in
      // sinks/vnc/auth/vnc.ts: its printable-text check counts the newline).
      await writePrivate(`${home}/server-passwd`, "s3cret\n");
      // The viewer's -passwd file is vncpasswd's obfuscated format.
      await writePrivate(`${home}/right.passwd`, encodeVncPasswdFile(utf8.encode("s3cret")));
      await writePrivate(`${home}/wrong.passwd`, encodeVncPasswdFile(utf8.encode("s3cre7")));
      const name = uniqueName("vncauth");
      const rig = await pictureRig(name, { passwordFile: `${home}/server-passwd` });
      try {
        assertEquals(rig.vnc.security, "VNC authentication");
        const common = ["-PreferredEncoding=ZRLE", "-SecurityTypes=VncAuth"];
        await withViewer(
          x,
          home,
          rig,
          name,
          [...common, `-passwd=${home}/right.passwd`],
          async (v, win) => {
            await showsExactly(x, win, rig, v, "VncAuth: picture");
            assert(v.log().includes("Choosing security type VncAuth(2)"), v.log());
          },
        );
        assert(rig.log.some((l) => l.includes("security type 2 passed")), rig.log.join("\n"));
        // The wrong password: the server refuses, the viewer gives up and never shows a desktop.
        const v = TigerViewer.start(x, rig.port, [...common, `-passwd=${home}/wrong.passwd`], home);
        try {
          const status = await v.proc.waitExit(15_000);
          assert(status, `the viewer did not exit:\n${v.log()}`);
          // vncviewer 1.12 with AlertOnFatalError=0 exits with status 0 here: its log says why.
          assert(/Authentication failure: Authentication failed/.test(v.log()), v.log());
          assert(
            rig.log.some((l) => l.includes("authentication failed")),
            rig.log.join("\n"),
          );
          const r = await x.xdotool("search", "--name", `^${name} - TigerVNC$`).catch(() => "");
          assertEquals(r.trim(), "", "a desktop window appeared");
        } finally {
          await v.stop();
        }
      } finally {
        await rig.stop();
      }
    });
  },
});

/** A self-signed certificate for 127.0.0.1 (made with the openssl CLI) in `dir`. */
async function selfSigned(dir: string): Promise<{ cert: string; key: string }> {
  const cert = `${dir}/cert.pem`, key = `${dir}/key.pem`;
  const r = await run(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1",
      "-days",
      "1",
    ],
    {},
    30_000,
  );
  if (r.code !== 0) throw new Error(`openssl: ${r.stderr}`);
  return { cert, key };
}

for (const withPassword of [false, true]) {
  const type = withPassword ? "X509Vnc" : "X509None";
  Deno.test({
    name: `tigervnc: VeNCrypt ${type} with a self-signed certificate shows the exact pixels`,
    ignore: ignore || skipWithout(onPath("openssl"), "openssl", "apt-get install -y openssl"),
    fn: async () => {
      await withX(async (x, home) => {
        const { cert, key } = await selfSigned(home);
        if (withPassword) {
          // One vncpasswd-format file for both: the server reads that format too.
          await writePrivate(`${home}/viewer.passwd`, encodeVncPasswdFile(utf8.encode("tls-pw")));
        }
        const name = uniqueName(type.toLowerCase());
        const rig = await pictureRig(name, {
          tlsCert: cert,
          tlsKey: key,
          ...(withPassword ? { passwordFile: `${home}/viewer.passwd` } : {}),
        });
        try {
          assertEquals(rig.vnc.security, `VeNCrypt ${type}`);
          const params = [
            "-PreferredEncoding=Tight",
            "-NoJPEG",
            `-SecurityTypes=${type}`,
            `-X509CA=${cert}`,
            `-X509CRL=${home}/no-crl.pem`,
            // TLS 1.2: vncviewer 1.12 hangs now and then on TLS 1.3. The server's
            // NewSessionTicket record arrives in one read with the next record (the
            // SecurityResult, or X509Vnc's challenge); GnuTLS consumes the ticket and
            // returns GNUTLS_E_AGAIN, and 1.12's TLSInStream::readTLS then waits for
            // the socket although that next record is already in its buffer (fixed in
            // later TigerVNC, which retries unless its input is really empty).
            "-GnuTLSPriority=NORMAL:-VERS-TLS1.3",
            "-Log=*:stderr:30,TLS:stderr:100", // the TLS version is a debug line
            ...(withPassword ? [`-passwd=${home}/viewer.passwd`] : []),
          ];
          await withViewer(x, home, rig, name, params, async (v, win) => {
            await showsExactly(x, win, rig, v, `${type}: picture`);
            paintBox(rig.sim, { x: 64, y: 64, w: 128, h: 64 }, 41);
            await showsExactly(x, win, rig, v, `${type}: update`);
            assert(v.log().includes(`Choosing security type VeNCrypt(19)`), v.log());
            assert(v.log().includes(`Choosing security type ${type} (`), v.log());
            assert(/TLS handshake completed with\s+\(TLS1\.2\)/.test(v.log()), v.log());
          });
          assert(rig.log.some((l) => l.includes("security type 19 passed")), rig.log.join("\n"));
        } finally {
          await rig.stop();
        }
      });
    },
  });
}
