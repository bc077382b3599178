/**
 * Monospaced text drawing with the `sevenPlus` pixel font of js-pixel-fonts
 * (7 pixels tall, descenders to 9), each glyph centred in a 6 x 10 cell and
 * scaled by an integer factor.
 *
 * ```ts
 * import { CELL_H, CELL_W, drawText } from "./font.ts";
 * const w = 100, h = 20, px = new Uint32Array(w * h);
 * const drawn = drawText(px, w, w, h, 0, 0, "Hi", 0xffffff, 0x000000, 2);
 * if (drawn !== 2 * CELL_W * 2 || !px.some((p) => p === 0xffffff)) throw new Error("no text");
 * if (CELL_H !== 10) throw new Error("cell height");
 * ```
 *
 * @module
 */

import { fonts } from "js-pixel-fonts";

/** Cell width at scale 1 (widest glyph 5 plus 1 of spacing). */
export const CELL_W = 6;
/** Cell height at scale 1 (glyphs reach row 8 with descenders, plus 1 of spacing). */
export const CELL_H = 10;

/** A glyph as a CELL_H x CELL_W mask, row-major, 1 = ink. */
type Mask = Uint8Array;

const masks = new Map<string, Mask>();

function buildMasks(): void {
  const glyphs = fonts.sevenPlus.glyphs;
  for (const [ch, g] of Object.entries(glyphs)) {
    if (ch.length !== 1) continue;
    const m = new Uint8Array(CELL_W * CELL_H);
    const gw = g.pixels.reduce((a, r) => Math.max(a, r.length), 0);
    const dx = (CELL_W - 1 - gw) >> 1;
    g.pixels.forEach((row, ry) => {
      const y = ry + g.offset;
      if (y >= CELL_H) return;
      row.forEach((p, rx) => {
        if (p && dx + rx < CELL_W) m[y * CELL_W + dx + rx] = 1;
      });
    });
    masks.set(ch, m);
  }
  // A solid block (the text caret).
  const block = new Uint8Array(CELL_W * CELL_H);
  for (let y = 0; y < 9; y++) for (let x = 0; x < 5; x++) block[y * CELL_W + x] = 1;
  masks.set("\u2588", block);
}
buildMasks();

const substitutes: Record<string, string> = {
  "\u2014": "-", // em dash
  "\u2013": "-", // en dash
  "\u2018": "'",
  "\u2019": "'",
  "\u201c": '"',
  "\u201d": '"',
  "\t": " ",
};

/** The mask drawn for a character: its glyph, a substitute, or "?". */
function maskOf(ch: string): Mask {
  return masks.get(ch) ?? masks.get(substitutes[ch] ?? "?") ?? masks.get("?")!;
}

/** True when the font has a glyph for the character (or a substitute for it). */
export function hasGlyph(ch: string): boolean {
  return masks.has(ch) || (ch in substitutes);
}

/**
 * Draws `text` in one line of cells starting at (x, y), `CELL_W * scale`
 * pixels a character: the cell is filled with `bg` (unless undefined) and the
 * glyph's pixels with `fg`. Clipped to `width` x `height`. Returns the width
 * of the text in pixels.
 */
export function drawText(
  px: Uint32Array,
  strideWords: number,
  width: number,
  height: number,
  x: number,
  y: number,
  text: string,
  fg: number,
  bg: number | undefined,
  scale: number,
): number {
  const cw = CELL_W * scale, ch = CELL_H * scale;
  const y0 = Math.max(0, y), y1 = Math.min(height, y + ch);
  let cx = x;
  for (const c of text) {
    const m = maskOf(c);
    const x0 = Math.max(0, cx), x1 = Math.min(width, cx + cw);
    if (x0 < x1 && y0 < y1) {
      for (let py = y0; py < y1; py++) {
        const mrow = ((py - y) / scale | 0) * CELL_W;
        const row = py * strideWords;
        for (let pxx = x0; pxx < x1; pxx++) {
          if (m[mrow + ((pxx - cx) / scale | 0)]) px[row + pxx] = fg;
          else if (bg !== undefined) px[row + pxx] = bg;
        }
      }
    }
    cx += cw;
  }
  return cx - x;
}
