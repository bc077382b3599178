/**
 * Video recording through Debian's ffmpeg: `.mp4` (H.264, libx264) and
 * `.webm` (VP9, libvpx-vp9). ffmpeg is spawned with raw frames on its stdin
 * (`-f rawvideo -pix_fmt bgr0`, the PV framebuffer's 32-bit byte order).
 *
 * - **Constant frame rate.** A clock ticks `fps` times a second from the
 *   first frame on; each tick writes one frame: the damaged parts of the
 *   screen are read from guest memory into the recorder's own frame, and when
 *   nothing changed the last frame is written again.
 * - **Backpressure.** A tick waits for ffmpeg to take the previous frame; a
 *   tick that comes while a frame is still being written is dropped (the
 *   next frame merges its changes), so nothing queues when ffmpeg is slower
 *   than real time. Dropped ticks are counted and reported; the video is then
 *   shorter than the time it covers.
 * - **Resize.** ffmpeg cannot change a stream's size, so the video keeps the
 *   first size: after a resize the guest's screen is drawn at the top left,
 *   cropped where it is larger and padded with black where it is smaller
 *   (pixels stay 1:1; nothing is scaled). It is logged once per resize.
 * - **Even sizes.** H.264 in yuv420p needs even dimensions: an odd width or
 *   height gets one black column or row (`.mp4` only; VP9 takes odd sizes).
 * - **Progress** on stderr: one updating line when stderr is a terminal,
 *   a plain line every few seconds otherwise: frames, duration, bytes.
 * - **Errors.** ffmpeg missing, or exiting before it was told to, is
 *   reported in one line (with its exit code and last error line) and the
 *   recording ends; the guest and other sinks are not affected.
 *
 * @module
 */
import { type Observable, Subscription } from "rxjs";
import { convertPixels } from "../../pipeline/convert_pixels.ts";
import type { DisplayEvent } from "../../pipeline/events.ts";
import type { Framebuffer } from "../../pipeline/framebuffer.ts";
import { XRGB8888 } from "../../pipeline/pixel_format.ts";
import { Region } from "../../pipeline/region.ts";
import type { Logger } from "../../sources/log.ts";

/** The containers (by file extension) {@link startVideoRecorder} writes. */
export type VideoContainer = "mp4" | "webm";

/** The container a path's extension asks for, or undefined. */
export function videoContainerOf(path: string): VideoContainer | undefined {
  const m = /\.(mp4|webm)$/i.exec(path);
  return m ? m[1].toLowerCase() as VideoContainer : undefined;
}

/** Options of {@link startVideoRecorder}. */
export interface VideoRecorderOptions {
  /** The output file; `.mp4` or `.webm`. Overwritten. */
  path: string;
  /** Frames a second of the video (default 25). */
  fps?: number;
  log: Logger;
  /** The ffmpeg to run (default `ffmpeg` on PATH). */
  ffmpegPath?: string;
  /**
   * Progress: true (default) writes it to stderr; a function gets each
   * progress line instead; false for none.
   */
  progress?: boolean | ((line: string) => void);
  /** Between progress lines when not on a terminal (ms, default 5000; 500 on a terminal). */
  progressIntervalMs?: number;
  /** How long close() waits for ffmpeg to finish the file before killing it (ms, default 20000). */
  finishTimeoutMs?: number;
}

/** How far a recording got. */
export interface VideoStats {
  /** The video's size (0 until the first frame). */
  width: number;
  height: number;
  /** Frames written to ffmpeg. */
  frames: number;
  /** Of those, repeats of the previous frame (nothing changed). */
  repeated: number;
  /** Ticks skipped because ffmpeg was still taking the previous frame. */
  dropped: number;
  /** Seconds of video: frames / fps. */
  seconds: number;
  /** The output file's size in bytes (as of the last progress update, exact at the end). */
  bytes: number;
}

/** How a recording ended. */
export interface VideoResult extends VideoStats {
  /** True when ffmpeg finished the file normally. */
  ok: boolean;
  /** "closed", "display ended", or what went wrong. */
  reason: string;
}

/** A running recording. */
export interface VideoRecorder {
  readonly path: string;
  readonly fps: number;
  /** Resolves when the recording has ended and ffmpeg has exited. */
  readonly done: Promise<VideoResult>;
  stats(): VideoStats;
  /** Stops: ends ffmpeg's input, waits for it to finish the file, reports. */
  close(): Promise<VideoResult>;
}

/** The ffmpeg arguments for raw bgr0 frames of w x h at `fps` on stdin into `path`. */
export function ffmpegArgs(
  container: VideoContainer,
  w: number,
  h: number,
  fps: number,
  path: string,
): string[] {
  const input = [
    "-hide_banner",
    "-nostats",
    "-loglevel",
    "error",
    "-f",
    "rawvideo",
    "-pix_fmt",
    "bgr0",
    "-s",
    `${w}x${h}`,
    "-framerate",
    String(fps),
    "-i",
    "pipe:0",
    "-an",
  ];
  const codec = container === "mp4"
    ? ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-f", "mp4"]
    : [
      "-c:v",
      "libvpx-vp9",
      "-deadline",
      "realtime",
      "-cpu-used",
      "8",
      "-row-mt",
      "1",
      "-b:v",
      "0",
      "-crf",
      "30",
      "-pix_fmt",
      "yuv420p",
      "-f",
      "webm",
    ];
  return [...input, ...codec, "-y", path];
}

/** The path of an executable `cmd` (a path, or a name looked up on PATH), or undefined. */
export function findExecutable(cmd: string): string | undefined {
  const isFile = (p: string) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  };
  if (cmd.includes("/")) return isFile(cmd) ? cmd : undefined;
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir && isFile(`${dir}/${cmd}`)) return `${dir}/${cmd}`;
  }
  return undefined;
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function formatDuration(s: number): string {
  const m = Math.floor(s / 60);
  const sec = s - m * 60;
  return `${m}:${sec.toFixed(1).padStart(4, "0")}`;
}

/**
 * Records a display to `opts.path` (`.mp4` or `.webm`) through ffmpeg.
 * Returns at once; the recording starts with the display's first frame.
 * Failures (ffmpeg missing, ffmpeg exiting) are logged in one line and end
 * the recording alone; `done` tells how it ended.
 *
 * @example
 * ```ts ignore
 * const rec = startVideoRecorder(guest.display$, { path: "out.mp4", fps: 25, log });
 * // ... later, e.g. on SIGINT:
 * const r = await rec.close(); // r.frames, r.seconds, r.bytes
 * ```
 */
export function startVideoRecorder(
  display$: Observable<DisplayEvent>,
  opts: VideoRecorderOptions,
): VideoRecorder {
  const { path, log } = opts;
  const fps = opts.fps ?? 25;
  if (!(fps > 0 && fps <= 1000)) throw new RangeError(`fps must be in 1..1000, not ${fps}`);
  const container = videoContainerOf(path);
  if (!container) throw new Error(`cannot record video to ${path}: use .mp4 or .webm`);
  const period = 1000 / fps;

  const stats: VideoStats = {
    width: 0,
    height: 0,
    frames: 0,
    repeated: 0,
    dropped: 0,
    seconds: 0,
    bytes: 0,
  };
  let resolveDone!: (r: VideoResult) => void;
  const done = new Promise<VideoResult>((r) => resolveDone = r);
  let ending = false;
  // Created first: finish() may run while subscribing (a display that emits at once).
  const sub = new Subscription();
  let child: Deno.ChildProcess | undefined;
  let writer: WritableStreamDefaultWriter<Uint8Array> | undefined;
  let stderrTail = "";
  let stderrDone: Promise<void> = Promise.resolve();
  let loop: Promise<void> = Promise.resolve();
  let wake: (() => void) | undefined;
  let progressTimer: ReturnType<typeof setInterval> | undefined;
  let progressOnTty = false;

  // The screen as the video shows it, and what changed in it since the last tick.
  let fb: Framebuffer | undefined;
  let frame: Uint8Array | undefined;
  let dirty = Region.empty();
  let blank = false;

  const fail = (msg: string) => {
    if (finishing) return finishing;
    log.error(`cannot record video: ${msg}`);
    return finish(false, msg);
  };

  const progressLine = () =>
    `rxfb: recording ${path}: ${stats.frames} frames, ${formatDuration(stats.seconds)}, ${
      formatBytes(stats.bytes)
    }` + (stats.dropped ? `, ${stats.dropped} ticks dropped` : "");
  const enc = new TextEncoder();
  const showProgress = async () => {
    try {
      stats.bytes = (await Deno.stat(path)).size;
    } catch {
      // not created yet
    }
    if (ending && !progressTimer) return;
    const line = progressLine();
    if (typeof opts.progress === "function") opts.progress(line);
    else if (progressOnTty) Deno.stderr.writeSync(enc.encode(`\r${line}\x1b[K`));
    else Deno.stderr.writeSync(enc.encode(line + "\n"));
  };
  const startProgress = () => {
    if (opts.progress === false) return;
    progressOnTty = typeof opts.progress !== "function" && Deno.stderr.isTerminal();
    const every = opts.progressIntervalMs ?? (progressOnTty ? 500 : 5000);
    progressTimer = setInterval(() => void showProgress(), every);
  };
  const stopProgress = () => {
    if (!progressTimer) return;
    clearInterval(progressTimer);
    progressTimer = undefined;
    if (progressOnTty) Deno.stderr.writeSync(enc.encode(`\r${progressLine()}\x1b[K\n`));
  };

  let finished = false;
  let finishing: Promise<VideoResult> | undefined;
  const finish = (ok: boolean, reason: string): Promise<VideoResult> => {
    if (finishing) return finishing;
    ending = true;
    sub.unsubscribe();
    wake?.();
    finishing = (async () => {
      let result = { ok, reason };
      const c = child;
      // ffmpeg gets finishTimeoutMs to take the last frame and finish the file.
      let killed = false;
      const killer = c &&
        setTimeout(() => {
          killed = true;
          log.error(`ffmpeg did not finish ${path} in time; killing it`);
          try {
            c.kill("SIGKILL");
          } catch {
            // gone already
          }
        }, opts.finishTimeoutMs ?? 20_000);
      await loop;
      if (c && child) {
        await writer?.close().catch(() => {});
        const status = await c.status;
        await stderrDone;
        if (killed) {
          if (result.ok) result = { ok: false, reason: "ffmpeg did not finish in time" };
        } else if (result.ok && !status.success) {
          const why = `ffmpeg exited with ${
            status.signal ? `signal ${status.signal}` : `code ${status.code}`
          }${stderrTail ? `: ${stderrTail}` : ""}`;
          log.error(`cannot record video: ${why}`);
          result = { ok: false, reason: why };
        }
      }
      clearTimeout(killer);
      try {
        stats.bytes = (await Deno.stat(path)).size;
      } catch {
        stats.bytes = 0;
      }
      stopProgress();
      if (result.ok && stats.frames > 0) {
        log.info(
          `recorded ${path}: ${stats.frames} frames (${stats.repeated} repeated), ${
            stats.seconds.toFixed(1)
          } s at ${fps} fps, ${stats.width}x${stats.height}, ${formatBytes(stats.bytes)}` +
            (stats.dropped
              ? `, ${stats.dropped} ticks dropped (ffmpeg slower than real time)`
              : ""),
        );
      }
      finished = true;
      const r = { ...stats, ...result };
      resolveDone(r);
      return r;
    })();
    return finishing;
  };

  /** Brings the recorder's frame up to date with what changed on the screen. */
  const paint = (): boolean => {
    if (!fb || !frame || dirty.isEmpty()) return false;
    if (blank) frame.fill(0);
    blank = false;
    const vw = stats.width;
    const visible = {
      x: 0,
      y: 0,
      w: Math.min(fb.width, vw),
      h: Math.min(fb.height, stats.height),
    };
    for (const r of dirty.clip(visible).rects()) {
      convertPixels(fb, r, XRGB8888, frame, (r.y * vw + r.x) * 4, vw * 4);
    }
    dirty = Region.empty();
    return true;
  };

  const run = async (w: Writable) => {
    const t0 = performance.now();
    let tick = 0;
    while (!ending) {
      const due = t0 + tick * period;
      const wait = due - performance.now();
      if (wait > 0) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, wait);
          wake = () => {
            clearTimeout(t);
            r();
          };
        });
        wake = undefined;
        if (ending) break;
      }
      const late = Math.floor((performance.now() - due) / period);
      if (late > 0) {
        stats.dropped += late;
        tick += late;
      }
      const changed = paint();
      if (!changed && stats.frames > 0) stats.repeated++;
      try {
        await w.write(frame!);
      } catch (e) {
        if (!ending) void finishFfmpegDied(e);
        return;
      }
      stats.frames++;
      stats.seconds = stats.frames / fps;
      tick++;
    }
  };
  type Writable = WritableStreamDefaultWriter<Uint8Array>;

  const finishFfmpegDied = async (e: unknown) => {
    // The write failed: ffmpeg is gone (or going). Report its status and last words.
    const c = child!;
    const status = await c.status;
    await stderrDone;
    const why = `ffmpeg exited with ${
      status.signal ? `signal ${status.signal}` : `code ${status.code}`
    }${stderrTail ? `: ${stderrTail}` : e instanceof Error ? ` (${e.message})` : ""}`;
    await writer?.close().catch(() => {});
    child = undefined; // already reaped
    writer = undefined;
    return fail(why);
  };

  const readStderr = async (stream: ReadableStream<Uint8Array>) => {
    let buf = "";
    try {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        buf += chunk;
        const lines = buf.split(/\r?\n|\r/);
        buf = lines.pop()!;
        for (const l of lines) if (l.trim()) stderrTail = l.trim();
      }
    } catch {
      // closed
    }
    if (buf.trim()) stderrTail = buf.trim();
  };

  const start = (first: Framebuffer) => {
    const exe = findExecutable(opts.ffmpegPath ?? "ffmpeg");
    if (!exe) {
      void fail("ffmpeg not found (apt-get install ffmpeg)");
      return;
    }
    let w = first.width, h = first.height;
    if (container === "mp4") {
      w += w & 1;
      h += h & 1;
    }
    stats.width = w;
    stats.height = h;
    frame = new Uint8Array(w * h * 4);
    let c: Deno.ChildProcess;
    try {
      c = new Deno.Command(exe, {
        args: ffmpegArgs(container, w, h, fps, path),
        stdin: "piped",
        stdout: "null",
        stderr: "piped",
        // Its own process group: a terminal's Ctrl-C reaches rxfb, which then
        // ends ffmpeg's input so that it finishes the file.
        detached: true,
      }).spawn();
    } catch (e) {
      const msg = e instanceof Deno.errors.NotFound
        ? "ffmpeg not found (apt-get install ffmpeg)"
        : `cannot start ${exe}: ${e instanceof Error ? e.message : e}`;
      void fail(msg);
      return;
    }
    child = c;
    stderrDone = readStderr(c.stderr);
    writer = c.stdin.getWriter();
    log.info(
      `recording ${path}: ${w}x${h} at ${fps} fps, ${
        container === "mp4" ? "H.264 (libx264)" : "VP9 (libvpx-vp9)"
      }`,
    );
    startProgress();
    loop = run(writer);
  };

  const onResize = (next: Framebuffer) => {
    const prev = fb;
    fb = next;
    dirty = Region.fromRect({ x: 0, y: 0, w: next.width, h: next.height });
    if (!frame) {
      start(next);
      return;
    }
    if (prev && (prev.width !== next.width || prev.height !== next.height)) {
      if (next.width !== stats.width || next.height !== stats.height) {
        log.warn(
          `guest resized to ${next.width}x${next.height}; the video stays ${stats.width}x${stats.height} ` +
            `(the screen at the top left, cropped or padded with black)`,
        );
      }
      blank = true; // at the next tick: the frame may be being written now
    }
  };

  sub.add(display$.subscribe({
    next: (e) => {
      if (ending) return;
      if (e.type === "resize") onResize(e.fb);
      else if (fb) dirty = dirty.union(Region.fromRects(e.rects));
    },
    error: (e) => void finish(true, `display failed: ${e}`),
    complete: () => void finish(true, "display ended"),
  }));

  return {
    path,
    fps,
    done,
    stats: () => ({ ...stats }),
    close: () => finished ? done : finish(true, "closed"),
  };
}
