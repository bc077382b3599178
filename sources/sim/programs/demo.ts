/**
 * The demo guest: a console that shows what the guest receives. A title bar
 * with a clock, the pointer's position, buttons and wheel, the last key, the
 * text typed so far (US layout), and a pointer marker that follows the
 * pointer. Drawn with the `sevenPlus` pixel font at twice its size.
 *
 * Frame 0 (or a frame into a new target) is a full draw; later frames redraw
 * and report only the character cells and pointer areas that changed, and
 * nothing at all when nothing did.
 *
 * ```ts
 * import { createDemo } from "./demo.ts";
 * const w = 640, h = 480;
 * const t = { px: new Uint32Array(w * h), width: w, height: h, strideWords: w };
 * const demo = createDemo(w, h, { title: "doc", now: () => new Date(2024, 0, 1, 12, 0, 0) });
 * demo.drawFrame(t, 0, 0); // the whole screen
 * demo.input!({ type: "key", code: 35, down: true }); // KEY_H
 * const dirty = demo.drawFrame(t, 1, 0);
 * if (dirty.length === 0) throw new Error("typing should redraw something");
 * ```
 *
 * @module
 */

import type { Rect } from "../../../pipeline/rect.ts";
import { BTN_LEFT, BTN_MIDDLE, BTN_RIGHT, type InputEvent } from "../../../pipeline/events.ts";
import type { DrawTarget, GuestProgram, StampTime } from "./workloads.ts";
import { CELL_H, CELL_W, drawText } from "./font.ts";

/** Options of {@link createDemo}. */
export interface DemoOptions {
  /** The title line; default "rxfb demo — domain N" (with `domid`) or "rxfb demo". */
  title?: string;
  /** The guest's domain id, shown in the default title. */
  domid?: number;
  /** The clock's time source (default `() => new Date()`); shown in local time. */
  now?: () => Date;
}

/** The font scale of the demo. */
export const DEMO_SCALE = 2;

const CW = CELL_W * DEMO_SCALE;
const CH = CELL_H * DEMO_SCALE;
const MARGIN = 8;
const TITLE_H = CH + 12;
const LINE_H = CH + 4;

const BG = 0x101820;
const TITLE_BG = 0x1f3a5f;
const TITLE_FG = 0xffffff;
const CLOCK_FG = 0x9cf0c0;
const INFO_FG = 0xffd080;
const HINT_FG = 0x8090a8;
const TEXT_BG = 0x0a0f18;
const TEXT_FG = 0xf0f0f0;
const BORDER = 0x506080;

const MAX_TEXT = 8192;

/** US-layout characters of evdev key codes: [unshifted, shifted]. */
const KEYMAP: Record<number, [string, string]> = {
  2: ["1", "!"],
  3: ["2", "@"],
  4: ["3", "#"],
  5: ["4", "$"],
  6: ["5", "%"],
  7: ["6", "^"],
  8: ["7", "&"],
  9: ["8", "*"],
  10: ["9", "("],
  11: ["0", ")"],
  12: ["-", "_"],
  13: ["=", "+"],
  15: [" ", " "], // KEY_TAB
  26: ["[", "{"],
  27: ["]", "}"],
  39: [";", ":"],
  40: ["'", '"'],
  41: ["`", "~"],
  43: ["\\", "|"],
  51: [",", "<"],
  52: [".", ">"],
  53: ["/", "?"],
  55: ["*", "*"], // KEY_KPASTERISK
  57: [" ", " "], // KEY_SPACE
  71: ["7", "7"],
  72: ["8", "8"],
  73: ["9", "9"],
  74: ["-", "-"],
  75: ["4", "4"],
  76: ["5", "5"],
  77: ["6", "6"],
  78: ["+", "+"],
  79: ["1", "1"],
  80: ["2", "2"],
  81: ["3", "3"],
  82: ["0", "0"],
  83: [".", "."],
  86: ["<", ">"], // KEY_102ND
  98: ["/", "/"], // KEY_KPSLASH
};
const LETTER_ROWS: [number, string][] = [[16, "qwertyuiop"], [30, "asdfghjkl"], [44, "zxcvbnm"]];
for (const [first, letters] of LETTER_ROWS) {
  for (let i = 0; i < letters.length; i++) {
    KEYMAP[first + i] = [letters[i], letters[i].toUpperCase()];
  }
}

const KEY_BACKSPACE = 14;
const KEY_ENTER = 28;
const KEY_KPENTER = 96;
const KEY_LEFTCTRL = 29;
const KEY_RIGHTCTRL = 97;
const KEY_LEFTSHIFT = 42;
const KEY_RIGHTSHIFT = 54;
const KEY_LEFTALT = 56;
const KEY_RIGHTALT = 100;
const KEY_CAPSLOCK = 58;
const KEY_L = 38;

const BUTTON_NAMES: Record<number, string> = {
  [BTN_LEFT]: "left",
  [BTN_RIGHT]: "right",
  [BTN_MIDDLE]: "middle",
  0x113: "side",
  0x114: "extra",
};

/** The pointer marker: B = outline, W = fill, space = transparent; hotspot (0, 0). */
const ARROW = [
  "B",
  "BB",
  "BWB",
  "BWWB",
  "BWWWB",
  "BWWWWB",
  "BWWWWWB",
  "BWWWWWWB",
  "BWWWWWWWB",
  "BWWWWWWWWB",
  "BWWWWWWWWWB",
  "BWWWWWWWWWWB",
  "BWWWWWWBBBBB",
  "BWWWBWWB",
  "BWWB BWWB",
  "BWB  BWWB",
  "BB    BWWB",
  "B     BWWB",
  "       BWWB",
  "        BB",
];
const ARROW_W = 12;
const ARROW_H = ARROW.length;

/** One line of text cells at a fixed place, redrawn cell by cell. */
interface Field {
  x: number;
  y: number;
  cols: number;
  fg: number;
  bg: number;
  text: string;
}

interface Layout {
  w: number;
  h: number;
  title: Field;
  clock: Field;
  pointer: Field;
  key: Field;
  hint: Field;
  box: Rect;
  lines: Field[];
  textCols: number;
}

function pad(s: string, cols: number): string {
  const chars = [...s];
  if (chars.length >= cols) return chars.slice(0, cols).join("");
  return s + " ".repeat(cols - chars.length);
}

function two(v: number): string {
  return v < 10 ? `0${v}` : `${v}`;
}

/** Formats a local time as HH:MM:SS. */
export function clockText(d: Date): string {
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

/** Splits text into display lines of at most `cols` characters (at "\n" and by length). */
export function wrapText(text: string, cols: number): string[] {
  const out: string[] = [];
  const c = Math.max(1, cols);
  for (const para of text.split("\n")) {
    const chars = [...para];
    if (chars.length === 0) out.push("");
    for (let i = 0; i < chars.length; i += c) out.push(chars.slice(i, i + c).join(""));
  }
  return out;
}

class Demo implements GuestProgram {
  private readonly titleText: string;
  private readonly now: () => Date;
  private layout: Layout | undefined;
  private off = new Uint32Array(0);
  /** The buffer drawn last; a different one gets a full draw. */
  private lastBuf: ArrayBufferLike | undefined;
  private lastOff = -1;
  private lastStride = -1;

  // Input state.
  private text = "";
  private pointerX: number;
  private pointerY: number;
  private buttons = new Set<number>();
  private wheel = 0;
  private shift = new Set<number>();
  private ctrl = new Set<number>();
  private alt = new Set<number>();
  private capsLock = false;
  private lastKey = "none";

  // What the target shows.
  private drawnPointer: { x: number; y: number; pressed: boolean } | undefined;

  constructor(private readonly w: number, private readonly h: number, opts: DemoOptions = {}) {
    this.titleText = opts.title ??
      (opts.domid !== undefined ? `rxfb demo \u2014 domain ${opts.domid}` : "rxfb demo");
    this.now = opts.now ?? (() => new Date());
    this.pointerX = Math.floor(w / 2);
    this.pointerY = Math.floor(h / 2);
  }

  input(ev: InputEvent): void {
    switch (ev.type) {
      case "position":
        this.pointerX = ev.x;
        this.pointerY = ev.y;
        this.wheel += ev.dz ?? 0;
        break;
      case "motion":
        this.pointerX += ev.dx;
        this.pointerY += ev.dy;
        this.wheel += ev.dz ?? 0;
        break;
      case "key":
        this.key(ev.code, ev.down);
        break;
    }
    this.pointerX = Math.max(0, Math.min(this.w - 1, Math.round(this.pointerX)));
    this.pointerY = Math.max(0, Math.min(this.h - 1, Math.round(this.pointerY)));
  }

  private key(code: number, down: boolean): void {
    if (code >= 0x100 && code < 0x160) {
      if (down) this.buttons.add(code);
      else this.buttons.delete(code);
      return;
    }
    this.lastKey = `${code} ${down ? "down" : "up"}`;
    const mod = (set: Set<number>) => {
      if (down) set.add(code);
      else set.delete(code);
    };
    if (code === KEY_LEFTSHIFT || code === KEY_RIGHTSHIFT) return mod(this.shift);
    if (code === KEY_LEFTCTRL || code === KEY_RIGHTCTRL) return mod(this.ctrl);
    if (code === KEY_LEFTALT || code === KEY_RIGHTALT) return mod(this.alt);
    if (!down) return;
    if (code === KEY_CAPSLOCK) {
      this.capsLock = !this.capsLock;
      return;
    }
    if (this.ctrl.size > 0) {
      if (code === KEY_L) this.text = ""; // Ctrl+L clears the text.
      return;
    }
    if (code === KEY_BACKSPACE) {
      const chars = [...this.text];
      chars.pop();
      this.text = chars.join("");
      return;
    }
    if (code === KEY_ENTER || code === KEY_KPENTER) return this.type("\n");
    const m = KEYMAP[code];
    if (!m) return;
    const isLetter = m[0] >= "a" && m[0] <= "z";
    const shifted = this.shift.size > 0 !== (isLetter && this.capsLock);
    this.type(m[shifted ? 1 : 0]);
  }

  private type(s: string): void {
    this.text += s;
    if (this.text.length > MAX_TEXT) this.text = this.text.slice(this.text.length - MAX_TEXT);
  }

  private makeLayout(w: number, h: number): Layout {
    const field = (x: number, y: number, cols: number, fg: number, bg: number): Field => ({
      x,
      y,
      cols: Math.max(0, cols),
      fg,
      bg,
      text: "",
    });
    const infoCols = Math.floor((w - 2 * MARGIN) / CW);
    const clockX = w - MARGIN - 8 * CW;
    const ty = (TITLE_H - CH) >> 1;
    const boxTop = TITLE_H + 12 + 3 * LINE_H;
    const box = { x: MARGIN, y: boxTop, w: w - 2 * MARGIN, h: h - MARGIN - boxTop };
    const textCols = Math.max(1, Math.floor((box.w - 12) / CW));
    const nLines = Math.max(0, Math.floor((box.h - 8) / LINE_H));
    const lines: Field[] = [];
    for (let i = 0; i < nLines; i++) {
      lines.push(field(box.x + 6, box.y + 6 + i * LINE_H, textCols, TEXT_FG, TEXT_BG));
    }
    return {
      w,
      h,
      title: field(MARGIN, ty, Math.floor((clockX - CW - MARGIN) / CW), TITLE_FG, TITLE_BG),
      clock: field(clockX, ty, 8, CLOCK_FG, TITLE_BG),
      pointer: field(MARGIN, TITLE_H + 8, infoCols, INFO_FG, BG),
      key: field(MARGIN, TITLE_H + 8 + LINE_H, infoCols, INFO_FG, BG),
      hint: field(MARGIN, TITLE_H + 8 + 2 * LINE_H, infoCols, HINT_FG, BG),
      box,
      lines,
      textCols,
    };
  }

  /** Puts `text` in the field (offscreen); returns the rectangle of the cells that changed. */
  private setField(f: Field, text: string, force: boolean): Rect | undefined {
    const L = this.layout!;
    const next = [...pad(text, f.cols)];
    const prev = [...f.text];
    let a = -1, b = -1;
    for (let i = 0; i < f.cols; i++) {
      if (force || prev[i] !== next[i]) {
        if (a < 0) a = i;
        b = i;
      }
    }
    f.text = next.join("");
    if (a < 0) return undefined;
    const x = f.x + a * CW;
    drawText(
      this.off,
      L.w,
      L.w,
      L.h,
      x,
      f.y,
      next.slice(a, b + 1).join(""),
      f.fg,
      f.bg,
      DEMO_SCALE,
    );
    return clip({ x, y: f.y, w: (b - a + 1) * CW, h: CH }, L.w, L.h);
  }

  private pointerText(): string {
    const names = [...this.buttons].sort((p, q) => p - q).map((c) =>
      BUTTON_NAMES[c] ?? `0x${c.toString(16)}`
    );
    return `pointer x=${this.pointerX} y=${this.pointerY}  buttons: ${
      names.length ? names.join(" ") : "none"
    }  wheel: ${this.wheel}`;
  }

  private keyText(): string {
    const mods = [
      this.shift.size ? "shift" : "",
      this.ctrl.size ? "ctrl" : "",
      this.alt.size ? "alt" : "",
      this.capsLock ? "caps" : "",
    ].filter((s) => s).join(" ");
    return `last key: ${this.lastKey}${mods ? `  (${mods})` : ""}`;
  }

  /** Updates every field offscreen; returns the changed rectangles. */
  private updateFields(force: boolean): Rect[] {
    const L = this.layout!;
    const rects: Rect[] = [];
    const put = (f: Field, s: string) => {
      const r = this.setField(f, s, force);
      if (r && r.w > 0 && r.h > 0) rects.push(r);
    };
    put(L.title, this.titleText);
    put(L.clock, clockText(this.now()));
    put(L.pointer, this.pointerText());
    put(L.key, this.keyText());
    put(L.hint, "type to write text; enter, backspace; ctrl+L clears");
    const wrapped = wrapText(this.text + "\u2588", L.textCols);
    const shown = wrapped.slice(Math.max(0, wrapped.length - L.lines.length));
    L.lines.forEach((f, i) => put(f, shown[i] ?? ""));
    return rects;
  }

  /** Draws the static frame (background, title bar, text box) offscreen. */
  private drawChrome(): void {
    const L = this.layout!;
    const { w, h } = L;
    this.off.fill(BG);
    fillRect(this.off, w, w, h, { x: 0, y: 0, w, h: TITLE_H }, TITLE_BG);
    const b = L.box;
    if (b.w > 0 && b.h > 0) {
      fillRect(this.off, w, w, h, b, BORDER);
      fillRect(this.off, w, w, h, { x: b.x + 1, y: b.y + 1, w: b.w - 2, h: b.h - 2 }, TEXT_BG);
    }
  }

  private pointerRect(p: { x: number; y: number }): Rect {
    const L = this.layout!;
    return clip({ x: p.x, y: p.y, w: ARROW_W, h: ARROW_H }, L.w, L.h);
  }

  private drawPointer(t: DrawTarget, p: { x: number; y: number; pressed: boolean }): void {
    const fill = p.pressed ? 0xff7060 : 0xffffff;
    for (let ry = 0; ry < ARROW_H; ry++) {
      const y = p.y + ry;
      if (y < 0 || y >= t.height) continue;
      const line = ARROW[ry];
      for (let rx = 0; rx < line.length; rx++) {
        const x = p.x + rx;
        if (x < 0 || x >= t.width) continue;
        const c = line[rx];
        if (c === "B") t.px[y * t.strideWords + x] = 0x000000;
        else if (c === "W") t.px[y * t.strideWords + x] = fill;
      }
    }
  }

  private copyOut(t: DrawTarget, r: Rect): void {
    const L = this.layout!;
    for (let y = r.y; y < r.y + r.h; y++) {
      const src = y * L.w + r.x;
      t.px.set(this.off.subarray(src, src + r.w), y * t.strideWords + r.x);
    }
  }

  drawFrame(t: DrawTarget, n: number, _time: StampTime): Rect[] {
    const full = n === 0 || !this.layout || this.layout.w !== t.width ||
      this.layout.h !== t.height || t.px.buffer !== this.lastBuf ||
      t.px.byteOffset !== this.lastOff || t.strideWords !== this.lastStride;
    if (full) {
      if (!this.layout || this.layout.w !== t.width || this.layout.h !== t.height) {
        this.layout = this.makeLayout(t.width, t.height);
        this.off = new Uint32Array(t.width * t.height);
      }
      this.drawChrome();
      this.updateFields(true);
      const all = { x: 0, y: 0, w: t.width, h: t.height };
      this.copyOut(t, all);
      this.drawnPointer = this.currentPointer();
      this.drawPointer(t, this.drawnPointer);
      this.lastBuf = t.px.buffer;
      this.lastOff = t.px.byteOffset;
      this.lastStride = t.strideWords;
      return [all];
    }
    const rects = this.updateFields(false);
    const p = this.currentPointer();
    const old = this.drawnPointer!;
    if (p.x !== old.x || p.y !== old.y || p.pressed !== old.pressed) {
      const a = this.pointerRect(old), b = this.pointerRect(p);
      if (a.w > 0 && a.h > 0) rects.push(a);
      if ((b.x !== a.x || b.y !== a.y) && b.w > 0 && b.h > 0) rects.push(b);
    }
    if (rects.length === 0) return [];
    for (const r of rects) this.copyOut(t, r);
    this.drawnPointer = p;
    this.drawPointer(t, p);
    return rects;
  }

  private currentPointer(): { x: number; y: number; pressed: boolean } {
    return { x: this.pointerX, y: this.pointerY, pressed: this.buttons.size > 0 };
  }
}

function clip(r: Rect, w: number, h: number): Rect {
  const x0 = Math.max(0, r.x), y0 = Math.max(0, r.y);
  const x1 = Math.min(w, r.x + r.w), y1 = Math.min(h, r.y + r.h);
  return { x: x0, y: y0, w: Math.max(0, x1 - x0), h: Math.max(0, y1 - y0) };
}

function fillRect(px: Uint32Array, stride: number, w: number, h: number, r: Rect, v: number) {
  const c = clip(r, w, h);
  for (let y = c.y; y < c.y + c.h; y++) px.fill(v, y * stride + c.x, y * stride + c.x + c.w);
}

/**
 * Makes the demo console for a w x h screen. Feed it the guest's input with
 * `input`; `drawFrame` returns only what changed since the previous frame.
 */
export function createDemo(w: number, h: number, opts?: DemoOptions): GuestProgram {
  return new Demo(w, h, opts);
}
