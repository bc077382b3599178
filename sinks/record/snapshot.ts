/**
 * PNG snapshots of a guest's screen: {@link snapshot} writes one now;
 * {@link startSnapshots} writes one when the first full frame is ready and
 * again on each SIGUSR1 (the CLI's `--snapshot PATH.png`).
 *
 * PNGs are encoded by fast-png (pure TypeScript), as 8-bit RGB. A file is
 * written next to its destination and renamed over it, so a reader never
 * sees half a PNG.
 *
 * @module
 */
import { encode } from "fast-png";
import type { Observable } from "rxjs";
import { convertPixels } from "../../pipeline/convert_pixels.ts";
import type { DisplayEvent } from "../../pipeline/events.ts";
import type { Framebuffer } from "../../pipeline/framebuffer.ts";
import { type PixelFormat, RGB888 } from "../../pipeline/pixel_format.ts";
import { Region } from "../../pipeline/region.ts";
import type { Logger } from "../../sources/log.ts";
import { attachSink } from "../sink.ts";

/** 24 bpp with bytes R, G, B: what a PNG's RGB rows hold. */
export const PNG_RGB: PixelFormat = { ...RGB888, bigEndian: true };

/** Encodes the framebuffer as it is now as an 8-bit RGB PNG. */
export function encodePng(fb: Framebuffer): Uint8Array {
  const data = convertPixels(fb, { x: 0, y: 0, w: fb.width, h: fb.height }, PNG_RGB);
  return encode({ width: fb.width, height: fb.height, data, channels: 3, depth: 8 });
}

/**
 * Writes the framebuffer as it is now to `path` as a PNG (through a
 * temporary file renamed over `path`).
 *
 * @example
 * ```ts
 * import { attach, SimGuest, SimXen, snapshot } from "../../mod.ts";
 *
 * const xen = new SimXen();
 * const sim = await SimGuest.create(xen, 6, { program: "desktop", width: 320, height: 200 });
 * const guest = await attach({ domid: 6, platform: xen.platform() });
 * await sim.boot();
 * const path = await Deno.makeTempFile({ suffix: ".png" });
 * await snapshot(await guest.connected(), path);
 * await Deno.remove(path);
 * await sim.stop();
 * await guest.close();
 * ```
 */
export async function snapshot(fb: Framebuffer, path: string): Promise<void> {
  const png = encodePng(fb);
  const tmp = `${path}.${Deno.pid}.tmp`;
  try {
    await Deno.writeFile(tmp, png);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** Options of {@link startSnapshots}. */
export interface SnapshotOptions {
  /** Take a snapshot on each SIGUSR1 (default true). */
  signal?: boolean;
  /**
   * The first snapshot waits until the guest has drawn every pixel since
   * the display (re)appeared, or this long (ms) after it, whichever is
   * first (default 1000), so that a guest that only ever redraws a part
   * still gets one.
   */
  settleMs?: number;
}

/** Running snapshots of one display. */
export interface SnapshotService {
  /** Resolves once the first snapshot is written. */
  readonly first: Promise<void>;
  /** Snapshots written so far. */
  readonly count: number;
  /** Writes a snapshot of the screen now; false when there is no screen yet or writing failed. */
  take(): Promise<boolean>;
  /** Stops (and stops listening to SIGUSR1). */
  close(): void;
}

/**
 * Writes `path` (a PNG) when the display's first full frame is ready, and
 * again on each SIGUSR1 or {@link SnapshotService.take}. Runs as an
 * isolated sink: a write error is logged and the next request tries again.
 */
export function startSnapshots(
  display$: Observable<DisplayEvent>,
  path: string,
  log: Logger,
  opts: SnapshotOptions = {},
): SnapshotService {
  const settleMs = opts.settleMs ?? 1000;
  let fb: Framebuffer | undefined;
  let covered = Region.empty();
  let firstDone = false;
  let count = 0;
  let settle: ReturnType<typeof setTimeout> | undefined;
  let queue: Promise<unknown> = Promise.resolve();
  let resolveFirst!: () => void;
  const first = new Promise<void>((r) => resolveFirst = r);

  const take = (why: string): Promise<boolean> => {
    const run = async () => {
      if (!fb) {
        log.warn(`snapshot ${path}: no screen yet`);
        return false;
      }
      try {
        await snapshot(fb, path);
      } catch (e) {
        log.error(`snapshot ${path}: ${e instanceof Error ? e.message : e}`);
        return false;
      }
      count++;
      log.info(`snapshot ${path} written (${fb.width}x${fb.height}, ${why})`);
      return true;
    };
    const p = queue.then(run);
    queue = p;
    return p;
  };
  const takeFirst = () => {
    if (firstDone) return;
    firstDone = true;
    clearTimeout(settle);
    take("first full frame").then(() => resolveFirst());
  };
  const onSignal = () => void take("SIGUSR1");
  if (opts.signal !== false) Deno.addSignalListener("SIGUSR1", onSignal);

  const handle = attachSink(display$, {
    name: "snapshot",
    minIntervalMs: 50,
    frame(f) {
      fb = f.fb;
      if (firstDone) return;
      if (f.resized) {
        covered = Region.empty();
        clearTimeout(settle);
        settle = setTimeout(takeFirst, settleMs);
        return;
      }
      covered = covered.union(f.region);
      if (covered.area() >= f.fb.width * f.fb.height) takeFirst();
    },
    close() {
      clearTimeout(settle);
      if (opts.signal !== false) Deno.removeSignalListener("SIGUSR1", onSignal);
    },
  }, log);

  return {
    first,
    get count() {
      return count;
    },
    take: () => take("asked"),
    close: () => handle.stop(),
  };
}
