/**
 * Pixel format conversion: a rectangle of a guest framebuffer into the pixel
 * format a VNC client asked for.
 *
 * ## Conversion rule
 *
 * For each of red, green and blue:
 *
 * 1. **Extract.** `c = (value >>> shift) & mask`, where `mask = 2^n - 1` and `n` is the
 *    bit length of the source maximum (`mask === max` when `max` is `2^n - 1`). Bits
 *    beyond the pixel read as 0. A field above the maximum (only possible for a
 *    maximum not of the form `2^n - 1`, e.g. 5) is clamped: `c = min(c, max)`.
 * 2. **Scale.** `d = floor((2·c·dstMax + srcMax) / (2·srcMax))`, which is
 *    `floor((c·dstMax + srcMax/2) / srcMax)` computed exactly: `c·dstMax/srcMax`
 *    rounded to the nearest integer, halves upwards. When `srcMax === dstMax` this is
 *    the identity; when `srcMax === 0` then `d = 0` (never a division by zero); when
 *    `dstMax === 0` then `d = 0`. Always `0 <= d <= dstMax`. See {@link scaleComponent}.
 * 3. **Assemble.** `pixel = (dR << redShift) | (dG << greenShift) | (dB << blueShift)`;
 *    bits beyond `bitsPerPixel` are dropped; padding bits are 0. Exception: when
 *    `sameFormat(src.format, dst)` the bytes are copied as they are, padding bits included.
 *
 * Pixel values are stored in `bitsPerPixel / 8` bytes: little-endian (byte 0 = bits
 * 0-7) or big-endian (byte 0 = the most significant byte). This includes packed 24 bpp
 * (little-endian 24 bpp is bytes B, G, R for `RGB888`; big-endian 24 bpp is R, G, B).
 * 8 bpp ignores the byte order. The host's byte order is checked once and only used to
 * choose a fast path.
 *
 * ## Fast paths
 *
 * - Same format: `Uint8Array.set` per row, or once for the whole block when both strides
 *   equal the row length.
 * - 32 bpp with byte channels (XRGB8888 and its byte orders) → 8, 16 or 32 bpp with
 *   maxima up to 255, rectangles at least 32 pixels wide: WebAssembly SIMD
 *   (see `convert_wasm.ts`), where the runtime has it: the same bytes, about 4 times
 *   faster at 1080p, copies in and out of its memory included.
 * - 32 bpp host-order source at a 4-byte-aligned offset (and stride) → 32, 16 or 8 bpp:
 *   read through an `Int32Array` view; written through `Int32Array` (32 bpp), or as
 *   pixel pairs (16 bpp) / quads (8 bpp) in one 32-bit word where aligned. Each pixel
 *   costs two table lookups, `lo[v & 0xffff] | hi[v >>> 16]`: tables built (and cached,
 *   per format pair) from per-component tables of the scaled, shifted and, for a
 *   destination in the other byte order, byte-swapped component.
 * - Anything else: a row at a time, read into a scratch row of values with explicit
 *   byte order, mapped through the same tables (or per-component ones when a source
 *   field straddles bit 16), written out with explicit byte order.
 *
 * @module
 */
import type { Framebuffer } from "./framebuffer.ts";
import type { Rect } from "./rect.ts";
import { bytesPerPixel, HOST_LE, type PixelFormat, sameFormat } from "./pixel_format.ts";
import { type WasmConverter, wasmConverter } from "./convert_wasm.ts";

/** True on a little-endian host (x86, most ARM). Decides only which fast paths apply. */

/**
 * Scales a colour component from `0..srcMax` to `0..dstMax`:
 * `floor((2·c·dstMax + srcMax) / (2·srcMax))` (nearest, halves up); 0 when `srcMax` is 0.
 * `c` is clamped to `0..srcMax` first.
 *
 * @example
 * ```ts
 * import { scaleComponent } from "./convert_pixels.ts";
 * import { assertStrictEquals } from "@rxfb/assert";
 * assertStrictEquals(scaleComponent(128, 255, 31), 16);
 * assertStrictEquals(scaleComponent(128, 255, 63), 32);
 * assertStrictEquals(scaleComponent(3, 5, 255), 153);
 * ```
 */
export function scaleComponent(c: number, srcMax: number, dstMax: number): number {
  if (srcMax <= 0) return 0;
  if (c > srcMax) c = srcMax;
  if (c <= 0) return 0;
  if (srcMax === dstMax) return c;
  return Math.floor((2 * c * dstMax + srcMax) / (2 * srcMax));
}

/** The field mask for a maximum: `2^n - 1` with `n` the bit length of `max`. */
function maskFor(max: number): number {
  return max === 0 ? 0 : (2 ** (32 - Math.clz32(max))) - 1;
}

/**
 * Throws a RangeError unless `f` is a format this module converts: true colour,
 * 8/16/24/32 bpp, integer maxima in 0..65535, integer shifts in 0..31.
 */
function checkFormat(f: PixelFormat, what: string): void {
  const bpp = f.bitsPerPixel;
  if (bpp !== 8 && bpp !== 16 && bpp !== 24 && bpp !== 32) {
    throw new RangeError(`${what}: unsupported bitsPerPixel ${bpp}`);
  }
  if (!f.trueColour) throw new RangeError(`${what}: colour-map formats are not supported`);
  for (const m of [f.redMax, f.greenMax, f.blueMax]) {
    if (!Number.isInteger(m) || m < 0 || m > 65535) {
      throw new RangeError(`${what}: maximum ${m} not an integer in 0..65535`);
    }
  }
  for (const s of [f.redShift, f.greenShift, f.blueShift]) {
    if (!Number.isInteger(s) || s < 0 || s > 31) {
      throw new RangeError(`${what}: shift ${s} not an integer in 0..31`);
    }
  }
}

/**
 * Splits a pixel value of `fmt` into its red, green and blue components, each in
 * `0..max` of `fmt` (extracted and clamped as the module documentation says).
 *
 * @example
 * ```ts
 * import { pixelToRgb } from "./convert_pixels.ts";
 * import { RGB565 } from "./pixel_format.ts";
 * import { assertEquals } from "@rxfb/assert";
 * assertEquals(pixelToRgb(0xfc00, RGB565), [31, 32, 0]);
 * ```
 */
export function pixelToRgb(value: number, fmt: PixelFormat): [number, number, number] {
  checkFormat(fmt, "pixelToRgb");
  const v = fmt.bitsPerPixel === 32 ? value >>> 0 : (value >>> 0) % (2 ** fmt.bitsPerPixel);
  const get = (shift: number, max: number) => Math.min((v >>> shift) & maskFor(max), max);
  return [
    get(fmt.redShift, fmt.redMax),
    get(fmt.greenShift, fmt.greenMax),
    get(fmt.blueShift, fmt.blueMax),
  ];
}

/**
 * Assembles a pixel value of `fmt` from components already in `fmt`'s ranges
 * (RangeError when one is not an integer in `0..max`). Bits beyond the pixel are dropped.
 *
 * @example
 * ```ts
 * import { rgbToPixel } from "./convert_pixels.ts";
 * import { BGR233, XRGB8888 } from "./pixel_format.ts";
 * import { assertStrictEquals } from "@rxfb/assert";
 * assertStrictEquals(rgbToPixel(255, 128, 0, XRGB8888), 0xff8000);
 * assertStrictEquals(rgbToPixel(7, 4, 0, BGR233), 0x27);
 * ```
 */
export function rgbToPixel(r: number, g: number, b: number, fmt: PixelFormat): number {
  checkFormat(fmt, "rgbToPixel");
  const put = (c: number, shift: number, max: number) => {
    if (!Number.isInteger(c) || c < 0 || c > max) {
      throw new RangeError(`component ${c} not an integer in 0..${max}`);
    }
    return c << shift;
  };
  const v = (put(r, fmt.redShift, fmt.redMax) | put(g, fmt.greenShift, fmt.greenMax) |
    put(b, fmt.blueShift, fmt.blueMax)) >>> 0;
  return fmt.bitsPerPixel === 32 ? v : v % (2 ** fmt.bitsPerPixel);
}

// ---------------------------------------------------------------------------
// Lookup tables

/** How a table's entries are byte-swapped: not, within 16 bits, within 32 bits. */
const Swap = { None: 0, S16: 1, S32: 2 } as const;
type Swap = typeof Swap[keyof typeof Swap];

function swapValue(v: number, swap: Swap): number {
  if (swap === Swap.S16) return ((v & 0xff) << 8) | ((v >>> 8) & 0xff);
  if (swap === Swap.S32) {
    return ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24);
  }
  return v;
}

/**
 * The table for one component: indexed by the masked source field, giving the
 * scaled destination component already shifted into place (and byte-swapped when
 * a fast path writes through a view whose byte order differs from the destination's).
 */
function componentTable(srcMax: number, dstMax: number, dstShift: number, swap: Swap): Int32Array {
  const t = new Int32Array(maskFor(srcMax) + 1);
  for (let i = 0; i < t.length; i++) {
    t[i] = swapValue(scaleComponent(i, srcMax, dstMax) << dstShift, swap);
  }
  return t;
}

/**
 * Per-component form: `out = rt[(v >>> rs) & rm] | gt[(v >>> gs) & gm] | bt[(v >>> bs) & bm]`.
 * Works for every pair of formats.
 */
interface ComponentPlan {
  readonly rs: number;
  readonly rm: number;
  readonly rt: Int32Array;
  readonly gs: number;
  readonly gm: number;
  readonly gt: Int32Array;
  readonly bs: number;
  readonly bm: number;
  readonly bt: Int32Array;
}

function componentPlan(s: PixelFormat, d: PixelFormat, swap: Swap): ComponentPlan {
  return cached(`c${swap}|${formatKey(s)}|${formatKey(d)}`, () => ({
    rs: s.redShift,
    rm: maskFor(s.redMax),
    rt: componentTable(s.redMax, d.redMax, d.redShift, swap),
    gs: s.greenShift,
    gm: maskFor(s.greenMax),
    gt: componentTable(s.greenMax, d.greenMax, d.greenShift, swap),
    bs: s.blueShift,
    bm: maskFor(s.blueMax),
    bt: componentTable(s.blueMax, d.blueMax, d.blueShift, swap),
  }));
}

/** Table element types: 32-bit for the generic path and 32 bpp, narrower for 16 and 8 bpp. */
type Table = Int32Array | Uint16Array | Uint8Array;

/**
 * Split form: `out = lo[v & loMask] | hi[(v >>> 16) & hiMask]`, two lookups per pixel
 * instead of three (for a 16 or 8 bpp source, `hi` is `[0]` and `lo` maps the whole
 * pixel). Possible when no source field straddles bit 16. Entries are already cut to
 * the destination's bits per pixel (and byte-swapped as asked).
 */
interface SplitPlan<T extends Table> {
  readonly lo: T;
  readonly loMask: number;
  readonly hi: T;
  readonly hiMask: number;
}

/** Plans by format pair. Split tables take up to 256 KiB each, so keep few. */
const planCache = new Map<string, unknown>();
const PLAN_CACHE_MAX = 16;

function cached<T>(key: string, build: () => T): T {
  if (planCache.has(key)) return planCache.get(key) as T;
  const plan = build();
  if (planCache.size >= PLAN_CACHE_MAX) planCache.clear();
  planCache.set(key, plan);
  return plan;
}

const formatKey = (f: PixelFormat) =>
  `${f.bitsPerPixel},${f.redMax},${f.greenMax},${f.blueMax},${f.redShift},${f.greenShift},${f.blueShift}`;

const I32 = (a: Int32Array) => a;
const U16 = (a: Int32Array) => new Uint16Array(a);
const U8 = (a: Int32Array) => new Uint8Array(a);

/** The split plan for `s` → `d`, tables made by `make`; undefined when a field straddles bit 16. */
function splitPlan<T extends Table>(
  s: PixelFormat,
  d: PixelFormat,
  swap: Swap,
  make: (a: Int32Array) => T,
): SplitPlan<T> | undefined {
  const key = `s${swap}${make === I32 ? 32 : make === U16 ? 16 : 8}|${formatKey(s)}|${
    formatKey(d)
  }`;
  return cached(key, () => buildSplitPlan(s, d, swap, make));
}

function buildSplitPlan<T extends Table>(
  s: PixelFormat,
  d: PixelFormat,
  swap: Swap,
  make: (a: Int32Array) => T,
): SplitPlan<T> | undefined {
  const bpp = s.bitsPerPixel;
  const comps: [number, number, number, Int32Array][] = [];
  let loBits = 0, hiBits = 0;
  for (
    const [shift, sMax, dMax, dShift] of [
      [s.redShift, s.redMax, d.redMax, d.redShift],
      [s.greenShift, s.greenMax, d.greenMax, d.greenShift],
      [s.blueShift, s.blueMax, d.blueMax, d.blueShift],
    ]
  ) {
    const mask = maskFor(sMax);
    const top = Math.min(shift + 32 - Math.clz32(mask), bpp);
    if (mask === 0 || shift >= bpp) continue; // always reads 0, which maps to 0
    if (shift < 16 && top > 16) return undefined; // straddles bit 16
    if (top <= 16) loBits = Math.max(loBits, top);
    else hiBits = Math.max(hiBits, top - 16);
    comps.push([shift, mask, top, componentTable(sMax, dMax, dShift, swap)]);
  }
  const loMask = 2 ** loBits - 1, hiMask = 2 ** hiBits - 1;
  const cut = d.bitsPerPixel === 32 ? -1 : 2 ** d.bitsPerPixel - 1;
  const lo = new Int32Array(loMask + 1), hi = new Int32Array(hiMask + 1);
  for (const [shift, mask, top, t] of comps) {
    if (top <= 16) { for (let i = 0; i <= loMask; i++) lo[i] |= t[(i >>> shift) & mask]; }
    else for (let i = 0; i <= hiMask; i++) hi[i] |= t[(i >>> (shift - 16)) & mask];
  }
  for (let i = 0; i <= loMask; i++) lo[i] &= cut;
  for (let i = 0; i <= hiMask; i++) hi[i] &= cut;
  return { lo: make(lo), loMask, hi: make(hi), hiMask };
}

// ---------------------------------------------------------------------------
// The entry point

/** Below these (pixels a row, in all) copying rows in and out costs more than SIMD saves. */
const WASM_MIN_WIDTH = 32;
const WASM_MIN_PIXELS = 256;

let backend: "auto" | "js" | WasmConverter = "auto";

/**
 * Chooses how {@link convertPixels} converts what WebAssembly could: `"auto"` (the
 * default) through {@link wasmConverter} when the rectangle is large enough, `"js"`
 * never, or always through the given converter. For tests and benchmarks.
 * @returns the previous choice.
 */
export function setConvertBackend(
  b: "auto" | "js" | WasmConverter,
): "auto" | "js" | WasmConverter {
  const prev = backend;
  backend = b;
  return prev;
}

/**
 * Converts the rectangle `r` of `src` into pixel format `dst`.
 *
 * Rows are written to `out` (allocated when not given, `outOffset + (r.h - 1) *
 * outStride + r.w * bytesPerPixel(dst)` bytes) starting at `outOffset`, `outStride`
 * bytes apart (tightly packed by default). Bytes of `out` between rows are left alone.
 * Components are scaled with `floor((2·c·dstMax + srcMax) / (2·srcMax))` (see the
 * module documentation for extraction, clamping and byte order).
 *
 * Sources and destinations: true colour, 8, 16, 24 (packed) or 32 bpp, either byte
 * order, any maxima 0..65535 and shifts 0..31.
 *
 * @throws RangeError when `r` is not inside `src` (or `src.bytes` is too short for it),
 * when `out` is too small, when `outOffset`/`outStride` are bad, or when a format is
 * not supported (colour map, odd bpp, maximum above 65535, shift above 31).
 * @returns `out`, or the new buffer.
 *
 * @example
 * ```ts
 * import { convertPixels } from "./convert_pixels.ts";
 * import { RGB565, XRGB8888 } from "./pixel_format.ts";
 * import { assertEquals } from "@rxfb/assert";
 *
 * // 2x1 XRGB8888 framebuffer: orange 0xff8000 and white.
 * const bytes = new Uint8Array([0x00, 0x80, 0xff, 0, 0xff, 0xff, 0xff, 0]);
 * const fb = { width: 2, height: 1, stride: 8, format: XRGB8888, bytes };
 * const out = convertPixels(fb, { x: 0, y: 0, w: 2, h: 1 }, RGB565);
 * assertEquals(Array.from(out), [0x00, 0xfc, 0xff, 0xff]); // 0xfc00, 0xffff little-endian
 * ```
 */
export function convertPixels(
  src: Framebuffer,
  r: Rect,
  dst: PixelFormat,
  out?: Uint8Array,
  outOffset = 0,
  outStride: number = r.w * bytesPerPixel(dst),
): Uint8Array {
  const sf = src.format;
  checkFormat(sf, "source format");
  checkFormat(dst, "destination format");
  const { x, y, w, h } = r;
  if (
    !Number.isInteger(x) || !Number.isInteger(y) || !Number.isInteger(w) ||
    !Number.isInteger(h) || x < 0 || y < 0 || w < 0 || h < 0 ||
    x + w > src.width || y + h > src.height
  ) {
    throw new RangeError(
      `rect ${x},${y} ${w}x${h} not inside the ${src.width}x${src.height} framebuffer`,
    );
  }
  const sBpp = bytesPerPixel(sf), dBpp = bytesPerPixel(dst);
  const sStride = src.stride, sBytes = src.bytes;
  const rowBytes = w * dBpp;
  if (!Number.isInteger(outOffset) || outOffset < 0) {
    throw new RangeError(`outOffset ${outOffset} not a non-negative integer`);
  }
  if (!Number.isInteger(outStride) || (h > 1 && outStride < rowBytes)) {
    throw new RangeError(`outStride ${outStride} is less than a row (${rowBytes} bytes)`);
  }
  const empty = w === 0 || h === 0;
  const span = empty ? 0 : (h - 1) * outStride + rowBytes;
  const need = outOffset + span;
  if (out === undefined) out = new Uint8Array(need);
  else if (out.length < need) {
    throw new RangeError(`out holds ${out.length} bytes; ${need} needed`);
  }
  if (empty) return out;
  const sStart = y * sStride + x * sBpp;
  const sEnd = sStart + (h - 1) * sStride + w * sBpp;
  if (!Number.isInteger(sStride) || sStride < 0 || sEnd > sBytes.length) {
    throw new RangeError(`framebuffer bytes (${sBytes.length}) too short for the rect`);
  }

  // (a) Same format: row copies.
  if (sameFormat(sf, dst)) {
    copyRows(sBytes, sStart, sStride, out, outOffset, outStride, rowBytes, h);
    return out;
  }

  // 32 bpp with byte channels → 8/16/32 bpp: WebAssembly SIMD, when worth its copies.
  if (backend !== "js" && sf.bitsPerPixel === 32) {
    const wc = backend !== "auto"
      ? backend
      : w >= WASM_MIN_WIDTH && w * h >= WASM_MIN_PIXELS
      ? wasmConverter()
      : undefined;
    if (wc?.convert(src, r, dst, out, outOffset, outStride)) return out;
  }

  const dBits = dst.bitsPerPixel;
  const srcNative = sf.bitsPerPixel === 32 && sf.bigEndian !== HOST_LE &&
    (sBytes.byteOffset + sStart) % 4 === 0 && (h === 1 || sStride % 4 === 0);
  const outAt = out.byteOffset + outOffset;

  if (srcNative && dBits !== 24) {
    const s32 = new Int32Array(sBytes.buffer, sBytes.byteOffset + sStart, (sEnd - sStart) >> 2);
    const sStride32 = sStride >> 2;
    const swap = dBits === 32 && dst.bigEndian === HOST_LE
      ? Swap.S32
      : dBits === 16 && dst.bigEndian === HOST_LE
      ? Swap.S16
      : Swap.None;
    // Views on out.buffer from a 4-aligned base at or before outAt.
    const base = outAt - (outAt & 3), lead = outAt - base;
    const sp = dBits !== 32 ? undefined : splitPlan(sf, dst, swap, I32);
    // (b) 32 bpp → 32 bpp, through Int32Array views, two table lookups a pixel.
    if (dBits === 32 && lead === 0 && (h === 1 || outStride % 4 === 0)) {
      const d32 = new Int32Array(out.buffer, outAt, span >> 2);
      if (sp !== undefined) {
        conv32to32(s32, sStride32, d32, outStride >> 2, w, h, sp);
        return out;
      }
    }
    // (c) 32 bpp → 16 bpp: Uint16Array view, pixel pairs written as one 32-bit word.
    const sp16 = dBits === 16 ? splitPlan(sf, dst, swap, U16) : undefined;
    if (sp16 !== undefined && lead % 2 === 0 && (h === 1 || outStride % 2 === 0)) {
      const n = lead + span;
      const d16 = new Uint16Array(out.buffer, base, n >> 1);
      const d32 = new Int32Array(out.buffer, base, n >> 2);
      conv32to16(s32, sStride32, d16, d32, HOST_LE, lead >> 1, outStride >> 1, w, h, sp16);
      return out;
    }
    // (c) 32 bpp → 8 bpp: four pixels written as one 32-bit word.
    const sp8 = dBits === 8 ? splitPlan(sf, dst, Swap.None, U8) : undefined;
    if (sp8 !== undefined) {
      const n = lead + span;
      const d8 = new Uint8Array(out.buffer, base, n);
      const d32 = new Int32Array(out.buffer, base, n >> 2);
      conv32to8(s32, sStride32, d8, d32, HOST_LE, lead, outStride, w, h, sp8);
      return out;
    }
  }

  // (d) Generic: one row at a time through a scratch row of pixel values.
  const row = new Int32Array(w);
  const read = readerFor(sf);
  const write = writerFor(dst);
  const sp = splitPlan(sf, dst, Swap.None, I32);
  const cp = sp === undefined ? componentPlan(sf, dst, Swap.None) : undefined;
  for (let j = 0; j < h; j++) {
    read(sBytes, sStart + j * sStride, row, w);
    if (sp !== undefined) mapRowSplit(row, w, sp);
    else mapRowComponents(row, w, cp!);
    write(row, w, out, outOffset + j * outStride);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Loops. Each is small and monomorphic so that V8 optimises it well.

function copyRows(
  s: Uint8Array,
  sAt: number,
  sStride: number,
  d: Uint8Array,
  dAt: number,
  dStride: number,
  rowBytes: number,
  h: number,
): void {
  if (h === 1 || (sStride === rowBytes && dStride === rowBytes)) {
    // Contiguous block: one copy.
    d.set(s.subarray(sAt, sAt + h * rowBytes), dAt);
    return;
  }
  for (let j = 0; j < h; j++) {
    d.set(s.subarray(sAt, sAt + rowBytes), dAt);
    sAt += sStride;
    dAt += dStride;
  }
}

function conv32to32(
  s: Int32Array,
  sStride: number,
  d: Int32Array,
  dStride: number,
  w: number,
  h: number,
  p: SplitPlan<Int32Array>,
): void {
  const { lo, loMask, hi, hiMask } = p;
  for (let j = 0; j < h; j++) {
    let si = j * sStride, di = j * dStride;
    const end = si + w;
    while (si < end) {
      const v = s[si++];
      d[di++] = lo[v & loMask] | hi[(v >>> 16) & hiMask];
    }
  }
}

/**
 * `d16` and `d32` view the same bytes from a 4-aligned base; row `j` starts at
 * `d16[at + j * stride]`. Pixel pairs at 4-aligned places go out as one word
 * (in host order, hence `le`).
 */
function conv32to16(
  s: Int32Array,
  sStride: number,
  d16: Uint16Array,
  d32: Int32Array,
  le: boolean,
  at: number,
  stride: number,
  w: number,
  h: number,
  p: SplitPlan<Uint16Array>,
): void {
  const { lo, loMask, hi, hiMask } = p;
  for (let j = 0; j < h; j++) {
    let si = j * sStride, di = at + j * stride;
    const end = si + w;
    if (le) {
      if (di & 1 && si < end) {
        const v = s[si++];
        d16[di++] = lo[v & loMask] | hi[(v >>> 16) & hiMask];
      }
      let k = di >> 1;
      const pairsEnd = si + ((end - si) & ~1);
      while (si < pairsEnd) {
        const v = s[si], u = s[si + 1];
        si += 2;
        d32[k++] = lo[v & loMask] | hi[(v >>> 16) & hiMask] |
          ((lo[u & loMask] | hi[(u >>> 16) & hiMask]) << 16);
      }
      di = k << 1;
    }
    while (si < end) {
      const v = s[si++];
      d16[di++] = lo[v & loMask] | hi[(v >>> 16) & hiMask];
    }
  }
}

/** As {@link conv32to16}, for 8 bpp: groups of four pixels at 4-aligned places. */
function conv32to8(
  s: Int32Array,
  sStride: number,
  d8: Uint8Array,
  d32: Int32Array,
  le: boolean,
  at: number,
  stride: number,
  w: number,
  h: number,
  p: SplitPlan<Uint8Array>,
): void {
  const { lo, loMask, hi, hiMask } = p;
  for (let j = 0; j < h; j++) {
    let si = j * sStride, di = at + j * stride;
    const end = si + w;
    if (le) {
      while (di & 3 && si < end) {
        const v = s[si++];
        d8[di++] = lo[v & loMask] | hi[(v >>> 16) & hiMask];
      }
      let k = di >> 2;
      const quadsEnd = si + ((end - si) & ~3);
      while (si < quadsEnd) {
        const a = s[si], b = s[si + 1], c = s[si + 2], e = s[si + 3];
        si += 4;
        d32[k++] = lo[a & loMask] | hi[(a >>> 16) & hiMask] |
          ((lo[b & loMask] | hi[(b >>> 16) & hiMask]) << 8) |
          ((lo[c & loMask] | hi[(c >>> 16) & hiMask]) << 16) |
          ((lo[e & loMask] | hi[(e >>> 16) & hiMask]) << 24);
      }
      di = k << 2;
    }
    while (si < end) {
      const v = s[si++];
      d8[di++] = lo[v & loMask] | hi[(v >>> 16) & hiMask];
    }
  }
}

function mapRowSplit(row: Int32Array, w: number, p: SplitPlan<Int32Array>): void {
  const { lo, loMask, hi, hiMask } = p;
  for (let i = 0; i < w; i++) {
    const v = row[i];
    row[i] = lo[v & loMask] | hi[(v >>> 16) & hiMask];
  }
}

function mapRowComponents(row: Int32Array, w: number, p: ComponentPlan): void {
  const { rs, rm, rt, gs, gm, gt, bs, bm, bt } = p;
  for (let i = 0; i < w; i++) {
    const v = row[i];
    row[i] = rt[(v >>> rs) & rm] | gt[(v >>> gs) & gm] | bt[(v >>> bs) & bm];
  }
}

type Reader = (b: Uint8Array, at: number, row: Int32Array, w: number) => void;
type Writer = (row: Int32Array, w: number, b: Uint8Array, at: number) => void;

function readerFor(f: PixelFormat): Reader {
  switch (f.bitsPerPixel) {
    case 8:
      return read8;
    case 16:
      return f.bigEndian ? read16be : read16le;
    case 24:
      return f.bigEndian ? read24be : read24le;
    default:
      return f.bigEndian ? read32be : read32le;
  }
}

function writerFor(f: PixelFormat): Writer {
  switch (f.bitsPerPixel) {
    case 8:
      return write8;
    case 16:
      return f.bigEndian ? write16be : write16le;
    case 24:
      return f.bigEndian ? write24be : write24le;
    default:
      return f.bigEndian ? write32be : write32le;
  }
}

function read8(b: Uint8Array, at: number, row: Int32Array, w: number): void {
  for (let i = 0; i < w; i++) row[i] = b[at + i];
}
function read16le(b: Uint8Array, at: number, row: Int32Array, w: number): void {
  for (let i = 0; i < w; i++, at += 2) row[i] = b[at] | (b[at + 1] << 8);
}
function read16be(b: Uint8Array, at: number, row: Int32Array, w: number): void {
  for (let i = 0; i < w; i++, at += 2) row[i] = (b[at] << 8) | b[at + 1];
}
function read24le(b: Uint8Array, at: number, row: Int32Array, w: number): void {
  for (let i = 0; i < w; i++, at += 3) row[i] = b[at] | (b[at + 1] << 8) | (b[at + 2] << 16);
}
function read24be(b: Uint8Array, at: number, row: Int32Array, w: number): void {
  for (let i = 0; i < w; i++, at += 3) row[i] = (b[at] << 16) | (b[at + 1] << 8) | b[at + 2];
}
function read32le(b: Uint8Array, at: number, row: Int32Array, w: number): void {
  for (let i = 0; i < w; i++, at += 4) {
    row[i] = b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24);
  }
}
function read32be(b: Uint8Array, at: number, row: Int32Array, w: number): void {
  for (let i = 0; i < w; i++, at += 4) {
    row[i] = (b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3];
  }
}

function write8(row: Int32Array, w: number, b: Uint8Array, at: number): void {
  for (let i = 0; i < w; i++) b[at + i] = row[i];
}
function write16le(row: Int32Array, w: number, b: Uint8Array, at: number): void {
  for (let i = 0; i < w; i++, at += 2) {
    const v = row[i];
    b[at] = v;
    b[at + 1] = v >>> 8;
  }
}
function write16be(row: Int32Array, w: number, b: Uint8Array, at: number): void {
  for (let i = 0; i < w; i++, at += 2) {
    const v = row[i];
    b[at] = v >>> 8;
    b[at + 1] = v;
  }
}
function write24le(row: Int32Array, w: number, b: Uint8Array, at: number): void {
  for (let i = 0; i < w; i++, at += 3) {
    const v = row[i];
    b[at] = v;
    b[at + 1] = v >>> 8;
    b[at + 2] = v >>> 16;
  }
}
function write24be(row: Int32Array, w: number, b: Uint8Array, at: number): void {
  for (let i = 0; i < w; i++, at += 3) {
    const v = row[i];
    b[at] = v >>> 16;
    b[at + 1] = v >>> 8;
    b[at + 2] = v;
  }
}
function write32le(row: Int32Array, w: number, b: Uint8Array, at: number): void {
  for (let i = 0; i < w; i++, at += 4) {
    const v = row[i];
    b[at] = v;
    b[at + 1] = v >>> 8;
    b[at + 2] = v >>> 16;
    b[at + 3] = v >>> 24;
  }
}
function write32be(row: Int32Array, w: number, b: Uint8Array, at: number): void {
  for (let i = 0; i < w; i++, at += 4) {
    const v = row[i];
    b[at] = v >>> 24;
    b[at + 1] = v >>> 16;
    b[at + 2] = v >>> 8;
    b[at + 3] = v;
  }
}
