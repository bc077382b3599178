import { type Observable, Subject, Subscription } from "rxjs";
import { coalesceDamage } from "../pipeline/coalesce_damage.ts";
import { convertPixels } from "../pipeline/convert_pixels.ts";
import type { DisplayEvent } from "../pipeline/events.ts";
import type { Framebuffer } from "../pipeline/framebuffer.ts";
import { type PixelFormat, XRGB8888 } from "../pipeline/pixel_format.ts";
import type { Rect } from "../pipeline/rect.ts";
import type { Region } from "../pipeline/region.ts";
import type { Logger } from "../sources/log.ts";

/** What a sink gets each time it is ready: the screen and what changed since its last frame. */
export interface SinkFrame {
  /** The framebuffer (guest memory: read it now, it changes under you later). */
  readonly fb: Framebuffer;
  /** Changed pixels since the sink's previous frame (the whole screen after a resize). */
  readonly region: Region;
  /** True for the first frame and after the guest resized. */
  readonly resized: boolean;
  /** A few rectangles covering `region` (may cover a few extra pixels). */
  rects(): Rect[];
  /** The pixels of `r` (default the whole screen), tightly packed, in the sink's format. */
  pixels(r?: Rect): Uint8Array;
}

/** A sink of your own: called with a frame whenever the display changed and it is ready. */
export interface Sink {
  /** For logs. */
  readonly name: string;
  /** The pixel format `frame.pixels()` returns (default XRGB8888: bytes B, G, R, 0). */
  readonly format?: PixelFormat;
  /** Wait at least this long between frames (ms); damage in between coalesces. */
  readonly minIntervalMs?: number;
  /**
   * Takes one frame. The next frame comes only after this returns (or its
   * promise settles): a slow sink sees bigger regions, never a queue. If it
   * throws or rejects, the sink is stopped with the reason logged; the guest
   * and other sinks go on.
   */
  frame(f: SinkFrame): void | Promise<void>;
  /** Called once when the sink stops (display ended, error, or stop()). */
  close?(): void | Promise<void>;
}

/** A running sink. */
export interface SinkHandle {
  /** Resolves when the sink has stopped, with the reason. */
  readonly done: Promise<string>;
  /** Stops the sink. */
  stop(): void;
}

function frameOf(
  fb: Framebuffer,
  region: Region,
  resized: boolean,
  format: PixelFormat,
): SinkFrame {
  return {
    fb,
    region,
    resized,
    rects: () => region.simplify(),
    pixels: (r = { x: 0, y: 0, w: fb.width, h: fb.height }) => convertPixels(fb, r, format),
  };
}

/**
 * Runs a sink on a display, isolated: its errors end it alone (logged), and
 * its slowness only makes its own regions bigger.
 *
 * @example
 * ```ts
 * import { attachSink, SimGuest, SimXen, attach } from "../mod.ts";
 *
 * const xen = new SimXen();
 * const sim = await SimGuest.create(xen, 4, { program: "video", width: 320, height: 240 });
 * const guest = await attach({ domid: 4, platform: xen.platform() });
 * await sim.boot();
 * let frames = 0;
 * const h = attachSink(guest.display$, {
 *   name: "counter",
 *   minIntervalMs: 50,
 *   frame: () => {
 *     if (++frames === 3) h.stop();
 *   },
 * });
 * console.log(await h.done); // "stopped"
 * await sim.stop();
 * await guest.close();
 * ```
 */
export function attachSink(
  display$: Observable<DisplayEvent>,
  sink: Sink,
  log?: Logger,
): SinkHandle {
  const asks = new Subject<void>();
  const format = sink.format ?? XRGB8888;
  const sub = new Subscription();
  let finished = false;
  let resolveDone!: (reason: string) => void;
  const done = new Promise<string>((r) => resolveDone = r);
  let timer: ReturnType<typeof setTimeout> | undefined;
  let last = -Infinity;

  const finish = (reason: string, isError = false) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    sub.unsubscribe();
    if (isError) log?.error(`sink ${sink.name} stopped: ${reason}`);
    else log?.info(`sink ${sink.name} stopped: ${reason}`);
    Promise.resolve()
      .then(() => sink.close?.())
      .catch((e) => log?.error(`sink ${sink.name}: close failed: ${e}`))
      .finally(() => resolveDone(reason));
  };

  const askLater = () => {
    if (finished) return;
    const wait = (sink.minIntervalMs ?? 0) - (performance.now() - last);
    if (wait > 0) timer = setTimeout(() => asks.next(), wait);
    else asks.next();
  };

  sub.add(
    display$.pipe(coalesceDamage(asks)).subscribe({
      next: (u) => {
        last = performance.now();
        let result: void | Promise<void>;
        try {
          result = sink.frame(frameOf(u.fb, u.region, u.resized, format));
        } catch (e) {
          finish(e instanceof Error ? e.message : String(e), true);
          return;
        }
        if (result instanceof Promise) {
          result.then(askLater, (e) => finish(e instanceof Error ? e.message : String(e), true));
        } else askLater();
      },
      error: (e) => finish(`display failed: ${e}`, true),
      complete: () => finish("display ended"),
    }),
  );
  asks.next();
  return { done, stop: () => finish("stopped") };
}
