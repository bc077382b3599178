/**
 * `replay:PATH`: a simulated guest program that plays an FBS recording back
 * (see `sinks/record/fbs.ts`): frame n draws the n-th recorded update that
 * changed pixels or the screen size, exactly as the recorder's client decoded it,
 * and returns the rectangles it set as dirty.
 *
 * - **Pace**: at a numeric `--rate` (any) frame n is due at its recorded time
 *   (the time of the block that completed the update, ms since the recording
 *   started); at `--rate max` frames come as fast as the guest kernel takes them.
 *   The program says so through {@link PacedProgram.dueMs}, which the guest's vCPU
 *   worker honours.
 * - **Size**: the guest boots at the largest size anywhere in the file (ServerInit
 *   and every DesktopSize / ExtendedDesktopSize), found by a quick scan when the
 *   program loads. The screen the program shows is ServerInit's size, then each
 *   recorded resize's; it reports that through {@link PacedProgram.screenSize}, and
 *   the guest resizes its framebuffer (xen-fbfront's resize event, within the boot
 *   size). Memory beyond the shown size is not shown (black at boot).
 * - **Ends**: after the last complete update the program draws nothing more (the
 *   screen keeps the last frame). A file cut short replays up to its last complete
 *   block, and of that up to the last complete update.
 *
 * @module
 */
import type { Rect } from "../../pipeline/rect.ts";
import type { DrawTarget, GuestProgram } from "../sim/programs/workloads.ts";
import { type FbsBlock, type FbsContents, readFbsFile } from "../../sinks/record/fbs.ts";
import type { PixelFormat } from "../../pipeline/pixel_format.ts";
import { RfbDecoder, type UpdateMessage } from "../../sinks/record/rfb_decode.ts";

/** Optional hooks of a guest program that the vCPU worker honours. */
export interface PacedProgram extends GuestProgram {
  /**
   * When frame `n` is due, in ms after the program started (used at a numeric
   * rate instead of the fixed period); undefined when there is no frame `n`: the
   * program has finished and the worker stops calling it.
   */
  dueMs?(n: number): number | undefined;
  /** The screen size the program shows now (at most the size it was loaded for). */
  screenSize?(): { width: number; height: number };
}

/** What a quick scan of a recording found. */
export interface RecordingInfo {
  /** ServerInit's size: the screen the recording starts with. */
  readonly width: number;
  readonly height: number;
  /** The largest width and height anywhere in the recording. */
  readonly maxWidth: number;
  readonly maxHeight: number;
  readonly format: PixelFormat;
  readonly name: string;
  /** Updates that change pixels or the size: the replay's frames. */
  readonly frames: number;
  /** The time of the last frame (ms since the recording started). */
  readonly lastFrameMs: number;
  /** The recording's length: its end mark's time, else the last block's. */
  readonly durationMs: number;
  /**
   * The file ends with rxfb's end mark (a block of length 0). A killed recorder
   * leaves none; neither does rfbproxy.
   */
  readonly ended: boolean;
  /** Bytes after the last complete block: the last write was cut short. */
  readonly partialBlock: boolean;
}

/** A recorded update, with the time of the block that completed it. */
interface Frame {
  readonly m: UpdateMessage;
  readonly timeMs: number;
}

/** Feeds blocks to a decoder and yields its visible updates with their times. */
class FrameSource {
  readonly dec: RfbDecoder;
  private next = 0;
  private time = 0;

  constructor(private readonly blocks: readonly FbsBlock[], decodePixels: boolean) {
    this.dec = new RfbDecoder({ decodePixels });
  }

  /** The next update that changed pixels or the size, or undefined at the end. */
  frame(): Frame | undefined {
    for (;;) {
      const m = this.dec.next();
      if (m) {
        if (m.type === "update" && (m.rects.length > 0 || m.resized)) {
          return { m, timeMs: this.time };
        }
        continue;
      }
      if (this.next >= this.blocks.length) return undefined;
      const b = this.blocks[this.next++];
      // Times never go backwards in a replay, whatever the file says.
      this.time = Math.max(this.time, b.timeMs);
      this.dec.push(b.data);
    }
  }
}

/**
 * Scans a parsed recording without decoding pixels. Throws when it has no
 * ServerInit or holds something the decoder cannot follow.
 */
export function scanRecording(f: FbsContents): RecordingInfo {
  const src = new FrameSource(f.blocks, false);
  let frames = 0, lastFrameMs = 0, maxW = 0, maxH = 0;
  for (let fr = src.frame(); fr; fr = src.frame()) {
    frames++;
    lastFrameMs = fr.timeMs;
    maxW = Math.max(maxW, fr.m.width);
    maxH = Math.max(maxH, fr.m.height);
  }
  const init = src.dec.init;
  if (!init) throw new Error("the recording has no complete RFB handshake (ServerInit)");
  const lastBlock = f.blocks.length ? f.blocks[f.blocks.length - 1].timeMs : 0;
  return {
    width: init.width,
    height: init.height,
    maxWidth: Math.max(maxW, init.width),
    maxHeight: Math.max(maxH, init.height),
    format: init.format,
    name: init.name,
    frames,
    lastFrameMs,
    durationMs: f.endMs ?? lastBlock,
    ended: f.ended,
    partialBlock: f.truncated,
  };
}

/** The replay program over parsed contents (see the module documentation). */
export function replayProgram(
  f: FbsContents,
  info: RecordingInfo = scanRecording(f),
): PacedProgram {
  const src = new FrameSource(f.blocks, true);
  let ahead: Frame | undefined;
  let finished = false;
  let width = info.width, height = info.height;
  let lastTarget: DrawTarget | undefined;

  const peek = (): Frame | undefined => {
    if (!ahead && !finished) {
      ahead = src.frame();
      if (!ahead) {
        finished = true;
        src.dec.close();
      }
    }
    return ahead;
  };

  return {
    dueMs(_n: number): number | undefined {
      return peek()?.timeMs;
    },
    screenSize() {
      return { width, height };
    },
    drawFrame(t: DrawTarget, n: number): Rect[] {
      const fr = peek();
      ahead = undefined;
      if (!fr) return [];
      const { m } = fr;
      const fb = src.dec.fb, W = m.width;
      width = m.width;
      height = m.height;
      const full = n === 0 || m.resized || t !== lastTarget;
      lastTarget = t;
      const clip = (r: Rect): Rect | undefined => {
        const w = Math.min(r.w, t.width - r.x), h = Math.min(r.h, t.height - r.y);
        return w > 0 && h > 0 ? { x: r.x, y: r.y, w, h } : undefined;
      };
      const copy = (r: Rect) => {
        for (let y = r.y; y < r.y + r.h; y++) {
          t.px.set(fb.subarray(y * W + r.x, y * W + r.x + r.w), y * t.strideWords + r.x);
        }
      };
      if (full) {
        const r = clip({ x: 0, y: 0, w: m.width, h: m.height });
        if (!r) return [];
        copy(r);
        return [r];
      }
      const out: Rect[] = [];
      for (const r0 of m.rects) {
        const r = clip(r0);
        if (!r) continue;
        copy(r);
        out.push(r);
      }
      return out;
    },
  };
}

/**
 * Loads `replay:PATH`'s recording: the program, and the guest's screen size (the
 * largest in the file).
 */
export async function createReplay(
  path: string,
): Promise<{ program: PacedProgram; width: number; height: number; info: RecordingInfo }> {
  const f = await readFbsFile(path);
  let info: RecordingInfo;
  try {
    info = scanRecording(f);
  } catch (e) {
    throw new Error(`cannot replay ${path}: ${(e as Error).message}`);
  }
  if (info.maxWidth === 0 || info.maxHeight === 0) {
    throw new Error(`cannot replay ${path}: its screen is ${info.maxWidth}x${info.maxHeight}`);
  }
  return {
    program: replayProgram(f, info),
    width: info.maxWidth,
    height: info.maxHeight,
    info,
  };
}
