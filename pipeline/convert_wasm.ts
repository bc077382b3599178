/**
 * The WebAssembly SIMD path of `convertPixels`: a 32-bpp source whose red, green and
 * blue are whole bytes (XRGB8888, the PV framebuffer, in either byte order and any
 * byte arrangement) to an 8, 16 or 32-bpp true-colour destination with maxima up to
 * 255, any shifts, either byte order. The kernels are in `wasm/convert_kernel.wat`;
 * this module chooses their parameters and feeds them.
 *
 * ## Exactness
 *
 * With a source maximum of 255, `scaleComponent(c, 255, D)` is
 * `floor((2·c·D + 255) / 510)`. The kernel computes `(c·X + 2^14) >> 15` (q15mulr)
 * instead, with `X` chosen by {@link q15Multiplier} among the few candidates near
 * `D·32768/255` and accepted only when it agrees for all 256 values of `c` (one exists
 * for every `D` in 0..255). Placing, byte order and padding are plain bit moves.
 *
 * What the kernels do not take, {@link WasmConverter.supports} refuses and the caller
 * converts in JavaScript: other sources; a source maximum other than 0 or 255, or a
 * source field not on a byte; a destination maximum above 255; and, at 32 bpp, a
 * destination field straddling bit 16.
 *
 * ## Memory
 *
 * WebAssembly reads only its own memory, and a framebuffer is guest memory mapped by
 * Xen (or the simulator's buffer), so the rectangle goes through the module's memory
 * in bands of whole rows (about {@link BAND_PIXELS} pixels, which stay in the L2
 * cache): copied in, converted, copied out. At 1080p the two copies cost about as
 * much as the conversion.
 *
 * @module
 */
import type { Framebuffer } from "./framebuffer.ts";
import type { PixelFormat } from "./pixel_format.ts";
import type { Rect } from "./rect.ts";
import { KERNEL_RELAXED, KERNEL_SIMD } from "./wasm/convert_kernel.ts";
import { instantiate, memoryView } from "./wasm/instantiate.ts";

/** Which build of the kernel: relaxed SIMD (faster) or plain SIMD. */
export type KernelBuild = "relaxed" | "simd";

/** Pixels per band: small enough that a band's source and output stay in L2. */
export const BAND_PIXELS = 16384;

/** Where the band's pixels start; the kernel's parameters sit below. */
const DATA = 256;
/** Room past a band for the pixels a kernel adds to reach a multiple of 16. */
const SLACK = 64;

type KernelFn = (src: number, dst: number, n: number) => void;

interface Kernel {
  readonly memory: WebAssembly.Memory;
  readonly conv8: KernelFn;
  readonly conv16: KernelFn;
  readonly conv32: KernelFn;
  readonly perm32: KernelFn;
  readonly swap: (at: number, n: number) => void;
}

/** A format pair's kernel and its 256-byte parameter block. */
export interface Plan {
  /** The kernel's export. */
  readonly fn: "conv8" | "conv16" | "conv32" | "perm32";
  /** Whether `swap` must then turn the output big-endian. */
  readonly swap: boolean;
  /** What goes at address 0 (see `convert_kernel.wat`). */
  readonly params: Uint8Array;
}

// ---------------------------------------------------------------------------
// Scaling constants

/** `scaleComponent(c, 255, d)`, repeated here so that this module stands alone. */
const scale255 = (c: number, d: number) => d === 255 ? c : Math.floor((2 * c * d + 255) / 510);

const q15 = (c: number, x: number) => (c * x + 16384) >> 15;

const multipliers: number[] = [];

/**
 * The `X` in 0..32767 with `(c·X + 2^14) >> 15 === scaleComponent(c, 255, d)` for every
 * `c` in 0..255, for a destination maximum `d` in 0..255; undefined if there were none
 * (there is one for every `d`; the tests check all).
 */
export function q15Multiplier(d: number): number | undefined {
  if (d in multipliers) return multipliers[d];
  const mid = Math.round((d * 32768) / 255);
  for (let k = 0; k <= 256; k++) {
    for (const x of [mid + k, mid - k]) {
      if (x < 0 || x > 32767) continue;
      let c = 0;
      while (c < 256 && q15(c, x) === scale255(c, d)) c++;
      if (c === 256) return multipliers[d] = x;
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// Plans

/** The byte (0-3) of a 32-bpp pixel holding a channel, -1 if absent, undefined if neither. */
function sourceByte(shift: number, max: number, bigEndian: boolean): number | undefined {
  if (max === 0) return -1;
  if (max !== 255 || shift % 8 !== 0 || shift > 24) return undefined;
  return bigEndian ? 3 - shift / 8 : shift / 8;
}

const bitLength = (v: number) => 32 - Math.clz32(v);

/** One channel's parameters: source byte (-1: none) and the kernel's multipliers. */
interface Channel {
  readonly byte: number;
  readonly x: number;
  readonly lo: number;
  readonly hi: number;
}

/** A channel's parameters; undefined when the kernels cannot convert it exactly. */
function channel(
  sShift: number,
  sMax: number,
  sBigEndian: boolean,
  shift: number,
  max: number,
  bpp: number,
): Channel | undefined {
  const byte = sourceByte(sShift, sMax, sBigEndian);
  if (byte === undefined) return undefined;
  if (byte < 0 || max === 0) return { byte: -1, x: 0, lo: 0, hi: 0 };
  const x = max <= 255 ? q15Multiplier(max) : undefined;
  if (x === undefined) return undefined;
  if (bpp === 32 && shift >= 16) return { byte, x, lo: 0, hi: 2 ** (shift - 16) };
  if (bpp === 32 && shift + bitLength(max) > 16) return undefined; // straddles bit 16
  return { byte, x, lo: (2 ** shift) & 0xffff, hi: 0 }; // lo 0: past 16 bits, dropped
}

/** The kernel and parameters for `s` → `d`; undefined when the kernels cannot take it. */
export function kernelPlan(s: PixelFormat, d: PixelFormat): Plan | undefined {
  if (s.bitsPerPixel !== 32 || !s.trueColour || !d.trueColour) return undefined;
  const bpp = d.bitsPerPixel;
  if (bpp !== 8 && bpp !== 16 && bpp !== 32) return undefined;
  const be = s.bigEndian;
  const r = channel(s.redShift, s.redMax, be, d.redShift, d.redMax, bpp);
  const g = channel(s.greenShift, s.greenMax, be, d.greenShift, d.greenMax, bpp);
  const b = channel(s.blueShift, s.blueMax, be, d.blueShift, d.blueMax, bpp);
  if (r === undefined || g === undefined || b === undefined) return undefined;

  const p = new Uint8Array(DATA);
  const v = new DataView(p.buffer);
  p.fill(0x80, 0, 48); // swizzle bytes not set below select 0
  for (let i = 0; i < 8; i++) {
    // "01" vectors: lanes 0-3 red, 4-7 green, of px 0-3 (or 4-7); "2": blue of px 0-7,
    // taken from the first load by M2A (lanes 0-3) and from the second by M2B.
    const c01 = i < 4 ? r : g, px = i & 3;
    if (c01.byte >= 0) p[2 * i] = 4 * px + c01.byte;
    if (b.byte >= 0) p[(i < 4 ? 16 : 32) + 2 * i] = 4 * px + b.byte;
    for (const [at, k] of [[48, "x"], [80, "lo"], [112, "hi"]] as const) {
      v.setUint16(at + 2 * i, c01[k], true);
      v.setUint16(at + 16 + 2 * i, b[k], true);
    }
  }
  const swap = d.bigEndian && bpp > 8;
  for (let i = 0; i < 16; i++) p[144 + i] = swap ? i ^ (bpp / 8 - 1) : i;

  const perm = permutation([r, g, b], [d.redShift, d.greenShift, d.blueShift], d);
  if (perm !== undefined) {
    p.set(perm, 160);
    return { fn: "perm32", swap: false, params: p };
  }
  return { fn: bpp === 8 ? "conv8" : bpp === 16 ? "conv16" : "conv32", swap, params: p };
}

/**
 * The byte permutation when a 32-bpp destination takes each present channel unscaled
 * (maximum 255) into a byte of its own; undefined otherwise.
 */
function permutation(chans: Channel[], shifts: number[], d: PixelFormat): Uint8Array | undefined {
  if (d.bitsPerPixel !== 32) return undefined;
  const perm = new Uint8Array(16).fill(0x80);
  const used = new Set<number>();
  for (let k = 0; k < 3; k++) {
    const { byte } = chans[k], shift = shifts[k], max = [d.redMax, d.greenMax, d.blueMax][k];
    if (byte < 0) continue;
    if (max !== 255 || shift % 8 !== 0 || shift > 24) return undefined;
    const at = d.bigEndian ? 3 - shift / 8 : shift / 8;
    if (used.has(at)) return undefined;
    used.add(at);
    for (let px = 0; px < 4; px++) perm[4 * px + at] = 4 * px + byte;
  }
  return perm;
}

// ---------------------------------------------------------------------------
// The converter

/** Converts through one build of the kernel; see the module documentation. */
export class WasmConverter {
  readonly #k: Kernel;
  #view: Uint8Array;
  readonly #plans = new Map<string, Plan | undefined>();

  private constructor(k: Kernel) {
    this.#k = k;
    this.#view = new Uint8Array(k.memory.buffer);
  }

  /** The converter for a build, or undefined where WebAssembly cannot run it. */
  static load(build: KernelBuild): WasmConverter | undefined {
    const k = instantiate<Kernel>(build === "relaxed" ? KERNEL_RELAXED : KERNEL_SIMD);
    return k && new WasmConverter(k);
  }

  #plan(s: PixelFormat, d: PixelFormat): Plan | undefined {
    const key = `${formatKey(s)}|${formatKey(d)}`;
    if (this.#plans.has(key)) return this.#plans.get(key);
    const plan = kernelPlan(s, d);
    if (this.#plans.size >= 64) this.#plans.clear();
    this.#plans.set(key, plan);
    return plan;
  }

  /** True when this converter takes `src` → `dst` (see the module documentation). */
  supports(src: PixelFormat, dst: PixelFormat): boolean {
    return this.#plan(src, dst) !== undefined;
  }

  /**
   * Converts `r` of `src` into `out` as `convertPixels` does, with its arguments
   * already checked (`r` inside and non-empty, `out` large enough). False, having
   * written nothing, when the formats are not supported.
   */
  convert(
    src: Framebuffer,
    r: Rect,
    dst: PixelFormat,
    out: Uint8Array,
    outOffset: number,
    outStride: number,
  ): boolean {
    const plan = this.#plan(src.format, dst);
    if (plan === undefined) return false;
    const { w, h } = r;
    const dBpp = dst.bitsPerPixel >> 3;
    const rowIn = w * 4, rowOut = w * dBpp;
    const rows = Math.max(1, Math.floor(BAND_PIXELS / w));
    const bandIn = rows * rowIn + SLACK;
    const outAt = DATA + bandIn;
    const mem = this.#memory(outAt + rows * rowOut + SLACK);
    mem.set(plan.params, 0);
    const fn = this.#k[plan.fn];
    const { bytes, stride } = src;
    for (let j = 0; j < h; j += rows) {
      const k = Math.min(rows, h - j), n = k * w;
      let s = (r.y + j) * stride + r.x * 4;
      if (stride === rowIn || k === 1) mem.set(bytes.subarray(s, s + n * 4), DATA);
      else {
        for (let i = 0, at = DATA; i < k; i++, s += stride, at += rowIn) {
          mem.set(bytes.subarray(s, s + rowIn), at);
        }
      }
      fn(DATA, outAt, n);
      if (plan.swap) this.#k.swap(outAt, (n * dBpp + 15) & ~15);
      let o = outOffset + j * outStride;
      if (outStride === rowOut || k === 1) out.set(mem.subarray(outAt, outAt + n * dBpp), o);
      else {
        for (let i = 0, at = outAt; i < k; i++, o += outStride, at += rowOut) {
          out.set(mem.subarray(at, at + rowOut), o);
        }
      }
    }
    return true;
  }

  /** The memory as bytes, grown to at least `size`. */
  #memory(size: number): Uint8Array {
    return this.#view = memoryView(this.#k.memory, size, this.#view);
  }
}

const formatKey = (f: PixelFormat) =>
  `${f.bitsPerPixel},${f.bigEndian ? 1 : 0},${f.redMax},${f.greenMax},${f.blueMax},` +
  `${f.redShift},${f.greenShift},${f.blueShift}`;

let best: WasmConverter | null | undefined;

/** The fastest converter this runtime can run, or undefined without WebAssembly SIMD. */
export function wasmConverter(): WasmConverter | undefined {
  if (best === undefined) {
    best = WasmConverter.load("relaxed") ?? WasmConverter.load("simd") ?? null;
  }
  return best ?? undefined;
}
