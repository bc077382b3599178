/**
 * Encoding jobs that run in workers (see `encode_pool.ts`): what is sent to a
 * worker, what comes back, and how a rectangle is cut into them. Pixels
 * travel in shared memory: the connection copies the rectangle once into a
 * {@link SharedStage} (the shadow it encodes from keeps changing while the
 * workers run), and every worker reads its band there. The workers' side is
 * `encode_worker.ts`, running the pool's `JobRunner` (which the pool also
 * runs on the main thread for the jobs of a worker that failed: the staged
 * pixels are still there, so the result is the same).
 *
 * @module
 */
import type { Framebuffer } from "../../pipeline/framebuffer.ts";
import { bytesPerPixel, type PixelFormat } from "../../pipeline/pixel_format.ts";
import type { Rect } from "../../pipeline/rect.ts";
import { UseWindow } from "./bytes.ts";
import type { EncodeOptions } from "./encoder.ts";
import type { EncodePool } from "./encode_pool.ts";

/** A framebuffer in shared memory, as it crosses to a worker. */
export interface SharedFramebuffer {
  readonly sab: SharedArrayBuffer;
  readonly width: number;
  readonly height: number;
  readonly stride: number;
  readonly format: PixelFormat;
}

/** Encode `rect` of `fb` as ZRLE tiles, deflated on a fresh raw stream, sync-flushed. */
export interface ZrleJob {
  readonly kind: "zrle";
  readonly fb: SharedFramebuffer;
  readonly rect: Rect;
  readonly pf: PixelFormat;
  readonly level: number;
  /** Store (zlib level 0) the band if it is mostly raw tiles (see `zlibPlan`). */
  readonly store: boolean;
}

/** A ZRLE band's zlib data (raw deflate: it refers to nothing before it). */
export interface ZrleBand {
  readonly data: Uint8Array;
  /** Bytes of tile data before zlib. */
  readonly plain: number;
  /** True when `data` tells how well raw tiles deflate (see `zlibPlan`). */
  readonly measured: boolean;
}

/**
 * Encode `rect` of `fb` as Tight (7) or TightPNG (-260) rectangles, on fresh
 * zlib streams that each rectangle first using one resets on the client.
 */
export interface TightJob {
  readonly kind: "tight";
  readonly encoding: number;
  readonly fb: SharedFramebuffer;
  readonly rect: Rect;
  readonly opts: EncodeOptions;
}

/** Complete Tight rectangles (headers included), and how many. */
export interface TightBand {
  readonly data: Uint8Array;
  readonly rects: number;
}

export type EncodeJob = ZrleJob | TightJob;

/** A stage unused for this long lets its memory go (the next rectangle it takes allocates anew). */
export const STAGE_IDLE_MS = 30_000;

/**
 * A reusable piece of shared memory holding one rectangle copied out of a
 * framebuffer. It shrinks when it has been far larger than its rectangles
 * for a while ({@link UseWindow}), and lets its memory go when it has not
 * been used for `idleMs` (a viewer that gets no more large rectangles does
 * not keep a full screen's worth until it disconnects).
 */
export class SharedStage {
  private sab: SharedArrayBuffer | undefined;
  private readonly uses = new UseWindow();
  private lastUse = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly idleMs = STAGE_IDLE_MS) {}

  /** Bytes of shared memory held. */
  get byteLength(): number {
    return this.sab?.byteLength ?? 0;
  }

  /**
   * Copies `r` of `fb` into shared memory, valid until the next copy: as a
   * framebuffer of `r`'s size (rows packed), or with `inPlace` at its place in
   * one of `fb`'s size (for encoders that write screen coordinates; only `r`
   * is copied).
   */
  copy(fb: Framebuffer, r: Rect, inPlace = false): SharedFramebuffer {
    const bpp = bytesPerPixel(fb.format), row = r.w * bpp;
    const stride = inPlace ? fb.width * bpp : row;
    const x0 = inPlace ? r.x : 0, y0 = inPlace ? r.y : 0;
    const need = (y0 + r.h) * stride;
    const trimTo = this.sab ? this.uses.use(need, this.sab.byteLength) : 0;
    if (this.sab === undefined || this.sab.byteLength < need) {
      this.sab = new SharedArrayBuffer(Math.max(need, 64 * 1024));
    } else if (trimTo) this.sab = new SharedArrayBuffer(trimTo);
    this.lastUse = performance.now();
    this.watch(this.idleMs);
    const dst = new Uint8Array(this.sab, 0, need);
    for (let y = 0; y < r.h; y++) {
      const s = (r.y + y) * fb.stride + r.x * bpp;
      dst.set(fb.bytes.subarray(s, s + row), (y0 + y) * stride + x0 * bpp);
    }
    return inPlace
      ? { sab: this.sab, width: fb.width, height: r.y + r.h, stride, format: fb.format }
      : { sab: this.sab, width: r.w, height: r.h, stride, format: fb.format };
  }

  /**
   * Lets the memory go once the stage has been idle for `idleMs` (a timer
   * that does not keep the process alive; jobs still reading the memory keep
   * it until they are done).
   */
  private watch(ms: number) {
    if (this.timer !== undefined) return;
    const timer = setTimeout(() => {
      this.timer = undefined;
      const idle = performance.now() - this.lastUse;
      if (idle < this.idleMs) return this.watch(this.idleMs - idle);
      this.sab = undefined;
    }, ms);
    Deno.unrefTimer(timer);
    this.timer = timer;
  }
}

/**
 * Runs a job per band of `r` on `pool`: bands of whole `unit`-row strips,
 * about one per worker, over `r`'s pixels copied once into a stage taken
 * from `stages` (and given back when every band is done). With `inPlace` the
 * bands are in `fb`'s coordinates (for encoders that write screen
 * coordinates), else relative to `r`. Resolves with each band and its
 * result, in order.
 */
export function runBands<T>(
  pool: EncodePool,
  stages: SharedStage[],
  fb: Framebuffer,
  r: Rect,
  unit: number,
  inPlace: boolean,
  jobOf: (staged: SharedFramebuffer, band: Rect) => EncodeJob,
): Promise<{ band: Rect; result: T }[]> {
  const stage = stages.pop() ?? new SharedStage();
  const staged = stage.copy(fb, r, inPlace);
  const rows = Math.max(unit, Math.ceil(r.h / Math.max(1, pool.size) / unit) * unit);
  const x = inPlace ? r.x : 0, y0 = inPlace ? r.y : 0;
  const bands: Rect[] = [];
  for (let y = y0; y < y0 + r.h; y += rows) {
    bands.push({ x, y, w: r.w, h: Math.min(rows, y0 + r.h - y) });
  }
  // The stage goes back once every band is done with it, even when one failed early.
  return Promise.allSettled(bands.map((band) => pool.run<T>(jobOf(staged, band))))
    .then((settled) => {
      stages.push(stage);
      return settled.map((s, i) => {
        if (s.status === "rejected") throw s.reason;
        return { band: bands[i], result: s.value };
      });
    });
}
