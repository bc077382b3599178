/**
 * ZRLE encoding (16): 64x64 tiles, each raw, solid, packed palette, plain RLE or
 * palette RLE (whichever is smallest before zlib), all of a rectangle deflated on
 * the connection's one zlib stream and ended with a `Z_SYNC_FLUSH`; on the wire a
 * U32 length, then the zlib data.
 *
 * Pixels travel as CPIXELs: 3 bytes when the client's format is 32 bpp true colour
 * of depth <= 24 whose colour bits all fit in the least (preferred) or the most
 * significant three bytes of the pixel value, else a whole PIXEL.
 *
 * The connection's zlib stream is written as raw deflate after a hand-written
 * two-byte header, so that large rectangles can be encoded in bands by workers
 * ({@link ZRLEEncoder.encodeParallel}) and spliced in; mostly raw tiles that
 * hardly deflate are stored at the default level ({@link zlibPlan}).
 *
 * @module
 */
import type { Framebuffer } from "../../../pipeline/framebuffer.ts";
import { bytesPerPixel, type PixelFormat } from "../../../pipeline/pixel_format.ts";
import type { Rect } from "../../../pipeline/rect.ts";
import { type ByteWriter, rectHeader, UseWindow } from "../bytes.ts";
import { type EncodeOptions, Encoding, type RectEncoder } from "../encoder.ts";
import { createDeflate, type DeflateStrategy, type DeflateStream } from "../zlib.ts";
import type { EncodePool } from "../encode_pool.ts";
import { runBands, type SharedStage, type ZrleBand } from "../encode_jobs.ts";
import { ClientPixels } from "./raw.ts";
import { StorePolicy } from "./store_policy.ts";

/** zlib level when the client sent no CompressLevel pseudo-encoding (see the bench). */
export const ZRLE_DEFAULT_LEVEL = 1;

/** At levels up to this, rectangles of mostly raw tiles are deflated with the "rle" strategy. */
export const RLE_MAX_LEVEL = 3;

/** At levels up to this (the default), mostly raw tiles that hardly deflate are stored. */
export const STORE_MAX_LEVEL = 1;

const TILE = 64;
/**
 * The ZRLE stream's zlib header (deflate, 32 KB window, fastest), written by
 * hand before the first data: the stream itself is raw deflate, so that data
 * deflated elsewhere (worker bands) can be spliced in.
 */
const ZLIB_HEADER = [0x78, 0x01] as const;
/** Palettes beyond this many colours are not worth tracking (palette RLE's limit). */
const MAX_PALETTE = 127;

/**
 * How a client's format maps to CPIXELs: `size` bytes, taken from a pixel value
 * (wire bytes read little-endian, as in {@link ClientPixels}) shifted right by `shift`.
 */
export interface CPixelLayout {
  readonly size: number;
  readonly shift: number;
}

/** The CPIXEL layout of a client pixel format (RFB spec, ZRLE). */
export function cpixelLayout(pf: PixelFormat): CPixelLayout {
  const bpp = bytesPerPixel(pf);
  if (pf.bitsPerPixel !== 32 || !pf.trueColour || pf.depth > 24) return { size: bpp, shift: 0 };
  const m = (max: number) => max === 0 ? 0 : (2 ** (32 - Math.clz32(max))) - 1;
  const used = ((m(pf.redMax) << pf.redShift) | (m(pf.greenMax) << pf.greenShift) |
    (m(pf.blueMax) << pf.blueShift)) >>> 0;
  const fitsLow = (used & 0xff000000) === 0;
  const fitsHigh = (used & 0xff) === 0;
  if (!fitsLow && !fitsHigh) return { size: 4, shift: 0 };
  // The low three bytes of the value are wire bytes 0-2 little-endian, 1-3 big-endian.
  return { size: 3, shift: fitsLow !== pf.bigEndian ? 0 : 8 };
}

/**
 * ZRLE for one connection (it owns the connection's ZRLE zlib stream).
 * The zlib level is the client's CompressLevel (0 taken as 1), else
 * {@link ZRLE_DEFAULT_LEVEL}. At fast levels (up to {@link RLE_MAX_LEVEL}) a
 * rectangle whose data is at least half raw tiles is deflated with zlib's "rle"
 * strategy (where the zlib backend can switch strategies).
 */
export class ZRLEEncoder implements RectEncoder {
  readonly encoding = Encoding.ZRLE;
  private z: DeflateStream | undefined;
  private readonly pixels = new ClientPixels();
  private readonly tile = new Int32Array(TILE * TILE);
  private buf = new Uint8Array(64 * 1024);
  private readonly bufUse = new UseWindow();
  // Palette: an open-addressing hash of 256 slots, valid where gen[slot] === this.gen.
  private readonly hKey = new Int32Array(256);
  private readonly hIdx = new Uint8Array(256);
  private readonly hGen = new Uint32Array(256);
  private gen = 0;
  private readonly palette = new Int32Array(MAX_PALETTE + 1);
  private palSize = 0;
  private headerSent = false;
  private readonly rawStore = new StorePolicy();
  // Shared memory for rectangles the workers are encoding (one each: an update may have several).
  private readonly stages: SharedStage[] = [];

  constructor(private readonly defaultLevel = ZRLE_DEFAULT_LEVEL) {}

  encode(fb: Framebuffer, r: Rect, opts: EncodeOptions, out: ByteWriter): number {
    if (r.w <= 0 || r.h <= 0) return 0;
    const tiles = this.encodeTiles(fb, r, opts.pf);
    const plan = zlibPlan(this.levelFor(opts), tiles, () => this.storeRaw());
    if (this.z === undefined) this.z = createDeflate(plan.level, { raw: true });
    else if (this.z.level !== plan.level) this.z.setLevel?.(plan.level);
    this.z.setStrategy?.(plan.strategy);
    rectHeader(out, r.x, r.y, r.w, r.h, Encoding.ZRLE);
    const lenAt = out.length;
    out.u32(0);
    const h = this.header(out);
    const z = this.z.deflateTo(tiles.data, out, "sync");
    if (plan.measure) this.learn(tiles.data.length, z);
    out.patchU32(lenAt, h + z);
    return 1;
  }

  /**
   * ZRLE in parallel: the rectangle is cut into bands of whole tile rows, each
   * encoded and deflated by a worker of `pool` on a fresh (history-less) raw
   * stream, and sent as one ZRLE rectangle each. Sync-flushed raw deflate data
   * that refers to nothing before it can follow any other on the client's one
   * zlib stream, so the bands need no coordination; this encoder's own stream
   * forgets its history afterwards, since the client's history now ends with
   * the bands.
   *
   * The pixels are copied into shared memory before this returns its promise,
   * so `fb` may change once it has returned. The rectangles are written to
   * `out` when the workers are done; resolves with their number.
   */
  encodeParallel(
    fb: Framebuffer,
    r: Rect,
    opts: EncodeOptions,
    out: ByteWriter,
    pool: EncodePool,
  ): Promise<number> {
    if (r.w <= 0 || r.h <= 0) return Promise.resolve(0);
    const level = this.levelFor(opts);
    const store = level <= STORE_MAX_LEVEL && this.storeRaw();
    const pf = opts.pf;
    return runBands<ZrleBand>(pool, this.stages, fb, r, TILE, false, (staged, rect) => ({
      kind: "zrle",
      fb: staged,
      rect,
      pf,
      level,
      store,
    })).then((bands) => {
      for (const { band, result: b } of bands) {
        rectHeader(out, r.x, r.y + band.y, r.w, band.h, Encoding.ZRLE);
        const lenAt = out.length;
        out.u32(0);
        out.patchU32(lenAt, this.header(out) + b.data.length);
        out.bytes(b.data);
        if (b.measured) this.learn(b.plain, b.data.length);
      }
      this.z?.reset();
      return bands.length;
    });
  }

  /**
   * The tiles of `r` in the client's format, before zlib: the ZRLE data of one
   * rectangle. `data` is a view on a buffer this encoder reuses; `rawBytes` is
   * how much of it is raw tiles.
   */
  encodeTiles(fb: Framebuffer, r: Rect, pf: PixelFormat): { data: Uint8Array; rawBytes: number } {
    const block = this.pixels.read(fb, r, pf);
    const cp = cpixelLayout(pf);
    const cps = cp.size;
    const tilesX = Math.ceil(r.w / TILE), tilesY = Math.ceil(r.h / TILE);
    // Each tile's encoding is at most its raw size (1 + n * cps).
    const bound = tilesX * tilesY + r.w * r.h * cps;
    const trimTo = this.bufUse.use(bound, this.buf.length);
    if (this.buf.length < bound) this.buf = new Uint8Array(Math.max(bound, this.buf.length * 2));
    else if (trimTo) this.buf = new Uint8Array(trimTo);
    const buf = this.buf, tile = this.tile, shift = cp.shift;
    // 32 bpp blocks are read in place; others are copied first (one element type for twoColour).
    const inPlace = block.bpp === 4 ? block.px as Int32Array : undefined;
    let o = 0, rawBytes = 0;
    for (let ty = 0; ty < r.h; ty += TILE) {
      const th = Math.min(TILE, r.h - ty);
      for (let tx = 0; tx < r.w; tx += TILE) {
        const tw = Math.min(TILE, r.w - tx);
        const start = o;
        if (inPlace) {
          const at = block.at + ty * block.stride + tx, st = block.stride, m = block.mask;
          const end = twoColour(inPlace, at, st, m, shift, tw, th, cps, buf, o);
          o = end >= 0 ? end : this.encodeTile(inPlace, at, st, m, shift, tw, th, cps, o);
        } else {
          ClientPixels.copyTile(block, tx, ty, tw, th, tile, shift);
          const end = twoColour(tile, 0, tw, -1, 0, tw, th, cps, buf, o);
          o = end >= 0 ? end : this.encodeTile(tile, 0, tw, -1, 0, tw, th, cps, o);
        }
        if (buf[start] === 0) rawBytes += o - start;
      }
    }
    return { data: this.buf.subarray(0, o), rawBytes };
  }

  /** The zlib level: the client's CompressLevel (0 taken as 1), else the default. */
  private levelFor(opts: EncodeOptions): number {
    return opts.compressLevel === undefined
      ? this.defaultLevel
      : Math.max(1, Math.min(9, opts.compressLevel));
  }

  /** Writes the zlib stream's header before its first data; returns the bytes written. */
  private header(out: ByteWriter): number {
    if (this.headerSent) return 0;
    this.headerSent = true;
    out.u8(ZLIB_HEADER[0]).u8(ZLIB_HEADER[1]);
    return 2;
  }

  /** Whether data of mostly raw tiles should go stored now (see {@link StorePolicy}). */
  private storeRaw(): boolean {
    return this.rawStore.store();
  }

  /** Takes note of how well data of mostly raw tiles deflated. */
  private learn(plain: number, deflated: number): void {
    this.rawStore.learn(plain, deflated);
  }

  /** Frees the zlib stream (the encoder starts a new one if used again). */
  close(): void {
    this.z?.close();
    this.z = undefined;
    this.headerSent = false;
    this.stages.length = 0;
  }

  /** Index of `v` in the palette, adding it; -1 when the palette is full. */
  private lookup(v: number): number {
    const key = this.hKey, idx = this.hIdx, gen = this.hGen, g = this.gen;
    let s = Math.imul(v, 0x9e3779b1) >>> 24;
    for (;;) {
      if (gen[s] !== g) {
        if (this.palSize > MAX_PALETTE - 1) return -1;
        gen[s] = g;
        key[s] = v;
        const i = this.palSize++;
        idx[s] = i;
        this.palette[i] = v;
        return i;
      }
      if (key[s] === v) return idx[s];
      s = (s + 1) & 255;
    }
  }

  /** Index of a value known to be in the palette. */
  private indexOf(v: number): number {
    const key = this.hKey;
    let s = Math.imul(v, 0x9e3779b1) >>> 24;
    while (key[s] !== v) s = (s + 1) & 255;
    return this.hIdx[s];
  }

  /**
   * Encodes a tile (tw x th) into `this.buf` at `o`; returns the new offset. Pixel
   * (i, j) is `(px[at + j * stride + i] & mask) >>> shift`; the analysis copies
   * the pixels into `this.tile` as it reads them, for the output passes.
   */
  private encodeTile(
    px: Int32Array,
    at: number,
    stride: number,
    mask: number,
    shift: number,
    tw: number,
    th: number,
    cps: number,
    o: number,
  ): number {
    const t = this.tile, n = tw * th, buf = this.buf;
    this.gen = (this.gen + 1) >>> 0;
    if (this.gen === 0) {
      this.hGen.fill(0);
      this.gen = 1;
    }
    this.palSize = 0;

    // One pass: runs (they continue across rows), RLE length bytes, palette.
    const rawSize = n * cps;
    // Once the palette is full, plain RLE (>= cps + 1 bytes a run) loses to raw past this.
    const runLimit = Math.floor(rawSize / (cps + 1));
    let prev = ((px[at] & mask) >>> shift) | 0, other = prev;
    this.lookup(prev);
    // `longs`: the extra 255 bytes of runs longer than 255.
    let runs = 1, runStart = 0, longs = 0, singles = 0, overflow = false, cut = false;
    let k = 0; // pixel number in the tile
    rows: for (let j = 0; j < th; j++) {
      for (let i = at + j * stride, end = i + tw; i < end; i++, k++) {
        const v = ((px[i] & mask) >>> shift) | 0;
        t[k] = v;
        if (v === prev) continue;
        const len = k - runStart;
        if (len === 1) singles++;
        else if (len > 255) longs += (len - 1) / 255 | 0;
        runs++;
        runStart = k;
        // The colour of the run before the previous one is in the palette: alternations skip the hash.
        const seen = v === other;
        other = prev;
        prev = v;
        if (!seen && this.lookup(v) < 0) {
          overflow = true;
          break rows;
        }
      }
    }
    // The palette is full: only plain RLE can still beat raw; count runs up to runLimit.
    for (k++; overflow && k < n;) {
      const x = k % tw, e = k + tw - x;
      for (let i = at + (k - x) / tw * stride + x; k < e; i++) {
        const v = ((px[i] & mask) >>> shift) | 0;
        t[k++] = v;
        if (v === prev) continue;
        const len = k - 1 - runStart;
        if (len > 255) longs += (len - 1) / 255 | 0;
        runs++;
        runStart = k - 1;
        prev = v;
        if (runs > runLimit) {
          cut = true;
          break;
        }
      }
      if (cut) break;
    }
    // Plain RLE lost too: raw it is; copy the rest for it.
    for (; cut && k < n;) {
      const x = k % tw, e = k + tw - x;
      for (let i = at + (k - x) / tw * stride + x; k < e; i++) {
        t[k++] = ((px[i] & mask) >>> shift) | 0;
      }
    }
    if (!cut) {
      const len = n - runStart;
      if (len === 1) singles++;
      else if (len > 255) longs += (len - 1) / 255 | 0;
    }
    const lenBytes = runs + longs;

    const pal = overflow ? 0 : this.palSize;
    if (pal === 1) {
      buf[o++] = 1;
      return putC(buf, o, t[0], cps);
    }
    // Pick the smallest.
    let best = 0, bestSize = rawSize;
    if (!cut) {
      const plain = runs * cps + lenBytes;
      if (plain < bestSize) {
        best = 128;
        bestSize = plain;
      }
      if (pal >= 2) {
        const palRle = pal * cps + runs + lenBytes - singles;
        if (palRle < bestSize) {
          best = 128 + pal;
          bestSize = palRle;
        }
      }
    }
    if (pal >= 2 && pal <= 16) {
      const bits = pal === 2 ? 1 : pal <= 4 ? 2 : 4;
      const packed = pal * cps + th * ((tw * bits + 7) >> 3);
      if (packed < bestSize) {
        best = pal;
        bestSize = packed;
      }
    }

    buf[o++] = best;
    if (best === 0) {
      if (cps === 4) {
        for (let i = 0; i < n; i++, o += 4) {
          const v = t[i];
          buf[o] = v;
          buf[o + 1] = v >>> 8;
          buf[o + 2] = v >>> 16;
          buf[o + 3] = v >>> 24;
        }
      } else if (cps === 3) {
        for (let i = 0; i < n; i++, o += 3) {
          const v = t[i];
          buf[o] = v;
          buf[o + 1] = v >>> 8;
          buf[o + 2] = v >>> 16;
        }
      } else {
        for (let i = 0; i < n; i++) o = putC(buf, o, t[i], cps);
      }
      return o;
    }
    if (best < 128) return this.packed(tw, th, cps, pal, o);
    if (best === 128) {
      let i = 0;
      while (i < n) {
        const v = t[i];
        let j = i + 1;
        while (j < n && t[j] === v) j++;
        o = putC(buf, o, v, cps);
        o = putRunLength(buf, o, j - i);
        i = j;
      }
      return o;
    }
    // Palette RLE; indices of the last two colours are kept (alternations skip the hash).
    for (let p = 0; p < pal; p++) o = putC(buf, o, this.palette[p], cps);
    let c1 = t[0], x1 = 0, c2 = c1, x2 = 0;
    for (let i = 0; i < n;) {
      const v = t[i];
      let j = i + 1;
      while (j < n && t[j] === v) j++;
      let ix: number;
      if (v === c1) ix = x1;
      else {
        ix = v === c2 ? x2 : this.indexOf(v);
        c2 = c1;
        x2 = x1;
        c1 = v;
        x1 = ix;
      }
      if (j - i === 1) buf[o++] = ix;
      else {
        buf[o++] = ix | 128;
        o = putRunLength(buf, o, j - i);
      }
      i = j;
    }
    return o;
  }

  /** Packed palette tile: indices of 1, 2 or 4 bits, leftmost pixel in the top bits, rows padded. */
  private packed(tw: number, th: number, cps: number, pal: number, o: number): number {
    const t = this.tile, buf = this.buf;
    for (let p = 0; p < pal; p++) o = putC(buf, o, this.palette[p], cps);
    const bits = pal === 2 ? 1 : pal <= 4 ? 2 : 4;
    const perByte = 8 / bits;
    const p0 = this.palette[0];
    // Indices of the last two colours seen.
    let c1 = t[0], x1 = 0, c2 = c1, x2 = 0;
    for (let j = 0, i = 0; j < th; j++) {
      for (let x = 0; x < tw; x += perByte) {
        const m = Math.min(perByte, tw - x);
        let acc = 0;
        if (pal === 2) {
          for (let k = 0; k < m; k++) acc = (acc << 1) | (t[i++] === p0 ? 0 : 1);
        } else {
          for (let k = 0; k < m; k++) {
            const v = t[i++];
            if (v !== c1) {
              const ix = v === c2 ? x2 : this.indexOf(v);
              c2 = c1;
              x2 = x1;
              c1 = v;
              x1 = ix;
            }
            acc = (acc << bits) | x1;
          }
        }
        buf[o++] = acc << ((perByte - m) * bits);
      }
    }
    return o;
  }
}

/** How to deflate a rectangle's tile data (see {@link zlibPlan}). */
export interface ZlibPlan {
  readonly level: number;
  readonly strategy: DeflateStrategy;
  /** True when the result tells how well raw tiles deflate (mostly raw, deflated). */
  readonly measure: boolean;
}

/**
 * How to deflate tile data at the client's `level`: data of mostly raw tiles
 * (photos, gradients, video) deflates about as small and faster with zlib's
 * RLE strategy at the fast levels; and at levels up to {@link STORE_MAX_LEVEL}
 * it is stored (level 0) when `store()` says it has not been worth deflating
 * lately (see {@link StorePolicy}).
 */
export function zlibPlan(
  level: number,
  tiles: { readonly data: Uint8Array; readonly rawBytes: number },
  store: () => boolean,
): ZlibPlan {
  const rawHeavy = tiles.rawBytes * 2 >= tiles.data.length;
  if (!rawHeavy) return { level, strategy: "default", measure: false };
  if (level <= STORE_MAX_LEVEL && store()) return { level: 0, strategy: "default", measure: false };
  return { level, strategy: level <= RLE_MAX_LEVEL ? "rle" : "default", measure: true };
}

/**
 * Encodes a tile that is solid, or of two colours with so many runs that packed
 * (1 bit/px) is surely the smallest, into `buf` at `o`; returns the new offset,
 * or -1 for any other tile. Pixel (i, j) is `(px[at + j * stride + i] & mask) >>> shift`.
 * Branch-free per pixel: text tiles change colour too often for branches to predict.
 */
function twoColour(
  px: Int32Array,
  at: number,
  stride: number,
  mask: number,
  shift: number,
  tw: number,
  th: number,
  cps: number,
  buf: Uint8Array,
  o: number,
): number {
  const c0 = ((px[at] & mask) >>> shift) | 0;
  let c1 = c0;
  find: for (let j = 0; j < th; j++) {
    for (let i = at + j * stride, end = i + tw; i < end; i++) {
      const v = ((px[i] & mask) >>> shift) | 0;
      if (v !== c0) {
        c1 = v;
        break find;
      }
    }
  }
  if (c1 === c0) {
    buf[o] = 1;
    return putC(buf, o + 1, c0, cps);
  }
  const rowBytes = (tw + 7) >> 3, packedBytes = th * rowBytes;
  if (2 * cps + packedBytes >= tw * th * cps) return -1;
  // Bit b tells c0 from c1; a pixel's index is bit b of it xor that of c0.
  const d = c0 ^ c1, b = 31 - Math.clz32(d & -d), f0 = (c0 >>> b) & 1;
  let q = o + 1 + 2 * cps, bad = 0, changes = 0, prev = 0;
  for (let j = 0; j < th; j++) {
    const row = at + j * stride;
    for (let x = 0; x < tw; x += 8) {
      const m = Math.min(8, tw - x);
      let acc = 0;
      for (let i = row + x, end = i + m; i < end; i++) {
        const v = ((px[i] & mask) >>> shift) | 0;
        const bit = ((v >>> b) ^ f0) & 1;
        bad |= v ^ c0 ^ (-bit & d);
        changes += bit ^ prev;
        prev = bit;
        acc = (acc << 1) | bit;
      }
      buf[q++] = acc << (8 - m);
    }
    if (bad !== 0) return -1;
    // Too few runs so far for packed to be sure (as on the stamp's blocks): leave it to the analysis.
    if (j >= 3 && changes < (j + 1) * rowBytes) return -1;
  }
  // Palette RLE is at least 2 * cps + runs bytes, plain RLE more: packed wins
  // outright past packedBytes runs; below that, the full analysis decides.
  if (changes + 1 <= packedBytes) return -1;
  buf[o] = 2;
  putC(buf, putC(buf, o + 1, c0, cps), c1, cps);
  return q;
}

/** Writes a CPIXEL: the low `size` bytes of `v`, least significant first. */
function putC(buf: Uint8Array, o: number, v: number, size: number): number {
  buf[o] = v;
  if (size > 1) {
    buf[o + 1] = v >>> 8;
    if (size > 2) {
      buf[o + 2] = v >>> 16;
      if (size > 3) buf[o + 3] = v >>> 24;
    }
  }
  return o + size;
}

/** A run length as ZRLE writes it: 255s, then (len - 1) % 255. */
function putRunLength(buf: Uint8Array, o: number, len: number): number {
  let rest = len - 1;
  while (rest >= 255) {
    buf[o++] = 255;
    rest -= 255;
  }
  buf[o++] = rest;
  return o;
}
