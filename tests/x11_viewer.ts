/**
 * Test helpers for driving real X11 VNC viewers: an Xvfb display, a viewer
 * process with its window, screenshots of that window (xwd, decoded here),
 * xdotool, and picture comparisons against a guest framebuffer.
 *
 * Every process started here is killed by its `stop()`, and every wait has a
 * deadline, so a test using these cannot hang.
 */
import { encode as encodePng } from "fast-png";
import type { Framebuffer } from "../pipeline/framebuffer.ts";

/** True when `cmd` is an executable on PATH. */
export function onPath(cmd: string): boolean {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${cmd}`).isFile) return true;
    } catch {
      // not here
    }
  }
  return false;
}

/** Waits `ms` milliseconds. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Collects a child's output stream as it arrives (so the child never blocks on a full pipe). */
class Collector {
  private chunks: Uint8Array[] = [];
  readonly done: Promise<void>;
  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      for await (const c of stream) this.chunks.push(c);
    })().catch(() => {});
  }
  bytes(): Uint8Array {
    const n = this.chunks.reduce((a, c) => a + c.length, 0);
    const out = new Uint8Array(n);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
  text(): string {
    return new TextDecoder().decode(this.bytes());
  }
}

/** A spawned process whose output is kept, killed (TERM, then KILL) by `stop()`. */
export class Proc {
  readonly child: Deno.ChildProcess;
  private readonly out: Collector;
  private readonly err: Collector;
  /** Set once the process has exited. */
  exitCode: number | undefined;
  readonly status: Promise<Deno.CommandStatus>;

  constructor(cmd: string, args: string[], env: Record<string, string> = {}) {
    this.child = new Deno.Command(cmd, {
      args,
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.out = new Collector(this.child.stdout);
    this.err = new Collector(this.child.stderr);
    this.status = this.child.status.then((s) => {
      this.exitCode = s.code;
      return s;
    });
  }

  get pid(): number {
    return this.child.pid;
  }
  stdout(): string {
    return this.out.text();
  }
  stdoutBytes(): Uint8Array {
    return this.out.bytes();
  }
  stderr(): string {
    return this.err.text();
  }

  /** Resolves with the exit status, or undefined after `ms`. */
  async waitExit(ms: number): Promise<Deno.CommandStatus | undefined> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const t = new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), ms));
    try {
      return await Promise.race([this.status, t]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Ends the process (SIGTERM, SIGKILL after 2 s) and waits for it and its output. */
  async stop(): Promise<void> {
    if (this.exitCode === undefined) {
      try {
        this.child.kill("SIGTERM");
      } catch {
        // already gone
      }
      if (!(await this.waitExit(2000))) {
        try {
          this.child.kill("SIGKILL");
        } catch {
          // already gone
        }
      }
    }
    await this.status;
    await this.out.done;
    await this.err.done;
  }
}

/** Runs a command to completion within `ms`; its stdout bytes and stderr text. */
export async function run(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
  ms = 10_000,
): Promise<{ code: number; stdout: Uint8Array; stderr: string }> {
  const p = new Proc(cmd, args, env);
  const s = await p.waitExit(ms);
  if (!s) {
    await p.stop();
    throw new Error(`${cmd} ${args.join(" ")}: no exit within ${ms} ms`);
  }
  await p.stop();
  return { code: s.code, stdout: p.stdoutBytes(), stderr: p.stderr() };
}

/** An Xvfb server on a display it chose itself (`-displayfd`), so parallel runs never collide. */
export class Xvfb {
  private constructor(readonly proc: Proc, readonly display: string) {}

  /** Starts Xvfb with one 1280x1024x24 screen; resolves once it accepts clients. */
  static async start(): Promise<Xvfb> {
    const proc = new Proc("Xvfb", [
      "-displayfd",
      "1",
      "-screen",
      "0",
      "1280x1024x24",
      "-nolisten",
      "tcp",
      "-noreset",
    ]);
    const end = performance.now() + 10_000;
    let n: string | undefined;
    while (performance.now() < end && proc.exitCode === undefined) {
      const m = /^(\d+)\n/.exec(proc.stdout());
      if (m) {
        n = m[1];
        break;
      }
      await sleep(20);
    }
    if (n === undefined) {
      await proc.stop();
      throw new Error(`Xvfb did not start: ${proc.stderr()}`);
    }
    return new Xvfb(proc, `:${n}`);
  }

  /** The environment X clients need to use this display. */
  env(extra: Record<string, string> = {}): Record<string, string> {
    return { DISPLAY: this.display, ...extra };
  }

  /** Runs xdotool with these arguments on this display (10 s limit); its stdout. */
  async xdotool(...args: string[]): Promise<string> {
    const r = await run("xdotool", args, this.env());
    if (r.code !== 0) throw new Error(`xdotool ${args.join(" ")}: exit ${r.code}: ${r.stderr}`);
    return new TextDecoder().decode(r.stdout);
  }

  /** Screenshot of one window's contents (xwd), decoded. */
  async screenshot(win: string): Promise<Picture> {
    const r = await run("xwd", ["-silent", "-id", win], this.env());
    if (r.code !== 0) throw new Error(`xwd -id ${win}: exit ${r.code}: ${r.stderr}`);
    return parseXwd(r.stdout);
  }

  stop(): Promise<void> {
    return this.proc.stop();
  }
}

/** An RGB picture, 3 bytes a pixel, rows packed. */
export interface Picture {
  width: number;
  height: number;
  rgb: Uint8Array;
}

/**
 * Decodes an XWD file (X11 XWDFileHeader, version 7) of a TrueColor ZPixmap
 * with 24 or 32 bits per pixel into RGB, using the header's colour masks.
 */
export function parseXwd(b: Uint8Array): Picture {
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  const h = (i: number) => dv.getUint32(i * 4); // the header is big-endian CARD32s
  const headerSize = h(0), version = h(1), format = h(2);
  const width = h(4), height = h(5), byteOrder = h(7), bpp = h(11), bpl = h(12);
  const masks = [h(14), h(15), h(16)];
  const ncolors = h(19);
  if (version !== 7 || format !== 2) throw new Error(`xwd: version ${version} format ${format}`);
  if (bpp !== 32 && bpp !== 24) throw new Error(`xwd: ${bpp} bits per pixel`);
  const data = headerSize + ncolors * 12;
  if (b.length < data + bpl * height) throw new Error("xwd: file too short");
  const shifts = masks.map((m) => 31 - Math.clz32(m & -m));
  const maxes = masks.map((m, i) => m >>> shifts[i]);
  const rgb = new Uint8Array(width * height * 3);
  const step = bpp / 8;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = data + y * bpl + x * step;
      let v = 0;
      for (let k = 0; k < step; k++) {
        v |= b[o + k] << (byteOrder === 0 ? 8 * k : 8 * (step - 1 - k)); // 0 = LSBFirst
      }
      v >>>= 0;
      for (let c = 0; c < 3; c++) {
        const raw = (v & masks[c]) >>> shifts[c];
        rgb[(y * width + x) * 3 + c] = maxes[c] === 255 ? raw : Math.round(raw * 255 / maxes[c]);
      }
    }
  }
  return { width, height, rgb };
}

/**
 * A 32 bpp XRGB8888 guest framebuffer (bytes B, G, R, X) as an RGB picture, a
 * copy. Done here by hand rather than with convertPixels, so that the
 * expected picture does not share code with what the server sends.
 */
export function fbPicture(fb: Framebuffer): Picture {
  const f = fb.format;
  if (
    f.bitsPerPixel !== 32 || f.bigEndian || f.redShift !== 16 || f.greenShift !== 8 ||
    f.blueShift !== 0 || f.redMax !== 255 || f.greenMax !== 255 || f.blueMax !== 255
  ) throw new Error("fbPicture takes XRGB8888 framebuffers only");
  const rgb = new Uint8Array(fb.width * fb.height * 3);
  for (let y = 0; y < fb.height; y++) {
    for (let x = 0; x < fb.width; x++) {
      const i = y * fb.stride + x * 4, o = (y * fb.width + x) * 3;
      rgb[o] = fb.bytes[i + 2];
      rgb[o + 1] = fb.bytes[i + 1];
      rgb[o + 2] = fb.bytes[i];
    }
  }
  return { width: fb.width, height: fb.height, rgb };
}

/** Pixels that differ, and the first of them ("x,y got ... want ..."). */
export function pictureDiff(got: Picture, want: Picture): { count: number; first?: string } {
  if (got.width !== want.width || got.height !== want.height) {
    return {
      count: want.width * want.height,
      first: `size ${got.width}x${got.height}, want ${want.width}x${want.height}`,
    };
  }
  let count = 0, first: string | undefined;
  for (let i = 0; i < want.width * want.height; i++) {
    const o = i * 3;
    if (
      got.rgb[o] !== want.rgb[o] || got.rgb[o + 1] !== want.rgb[o + 1] ||
      got.rgb[o + 2] !== want.rgb[o + 2]
    ) {
      if (count++ === 0) {
        const hex = (p: Uint8Array) =>
          "#" + [...p.subarray(o, o + 3)].map((v) => v.toString(16).padStart(2, "0")).join("");
        first = `${i % want.width},${Math.floor(i / want.width)}: got ${hex(got.rgb)} want ${
          hex(want.rgb)
        }`;
      }
    }
  }
  return { count, first };
}

/** The part `r` of a picture (a copy). */
export function crop(p: Picture, r: { x: number; y: number; w: number; h: number }): Picture {
  const rgb = new Uint8Array(r.w * r.h * 3);
  for (let y = 0; y < r.h; y++) {
    const o = ((r.y + y) * p.width + r.x) * 3;
    rgb.set(p.rgb.subarray(o, o + r.w * 3), y * r.w * 3);
  }
  return { width: r.w, height: r.h, rgb };
}

/** Peak signal-to-noise ratio over R, G and B (dB; Infinity when equal). */
export function psnr(got: Picture, want: Picture): number {
  if (got.width !== want.width || got.height !== want.height) return 0;
  let se = 0;
  for (let i = 0; i < want.rgb.length; i++) {
    const d = got.rgb[i] - want.rgb[i];
    se += d * d;
  }
  if (se === 0) return Infinity;
  return 10 * Math.log10((255 * 255 * want.rgb.length) / se);
}

/** Writes a picture as PNG (to look at when a comparison fails). */
export async function savePng(path: string, p: Picture): Promise<void> {
  await Deno.writeFile(
    path,
    encodePng({ width: p.width, height: p.height, data: p.rgb, channels: 3, depth: 8 }),
  );
}

/**
 * TigerVNC's vncviewer kept plain: no remote resize, no full screen, no menu
 * key, no clipboard, errors end the process instead of opening a dialog, no
 * pointer-event rate limit, and logs at "info" on stderr (at "debug" it
 * would draw a throughput graph over the picture).
 */
export const TIGER_PLAIN = [
  "-Shared",
  "-AutoSelect=0",
  "-RemoteResize=0",
  "-FullScreen=0",
  "-Maximize=0",
  "-MenuKey=",
  "-AcceptClipboard=0",
  "-SendClipboard=0",
  "-SendPrimary=0",
  "-SetPrimary=0",
  "-ReconnectOnError=0",
  "-AlertOnFatalError=0",
  "-DotWhenNoCursor=0",
  "-PointerEventInterval=0",
  "-Log=*:stderr:30",
];

/** A running vncviewer on an Xvfb display. */
export class TigerViewer {
  private constructor(readonly x: Xvfb, readonly proc: Proc) {}

  /**
   * Starts `vncviewer PLAIN... params... 127.0.0.1::port` with HOME in
   * `home` (it saves its settings and history there, not in the real HOME).
   */
  static start(x: Xvfb, port: number, params: string[], home: string): TigerViewer {
    const proc = new Proc("vncviewer", [...TIGER_PLAIN, ...params, `127.0.0.1::${port}`], {
      ...x.env(),
      HOME: home,
    });
    return new TigerViewer(x, proc);
  }

  /** The viewer's log (stderr). */
  log(): string {
    return this.proc.stderr();
  }

  /** The id of the visible window titled `title` (a regular expression), within `ms`. */
  async window(title: string, ms = 10_000): Promise<string> {
    const end = performance.now() + ms;
    while (performance.now() < end) {
      if (this.proc.exitCode !== undefined) {
        throw new Error(`vncviewer exited with ${this.proc.exitCode}:\n${this.log()}`);
      }
      const r = await run("xdotool", ["search", "--onlyvisible", "--name", title], this.x.env());
      const id = new TextDecoder().decode(r.stdout).trim().split("\n")[0];
      if (r.code === 0 && id) return id;
      await sleep(50);
    }
    throw new Error(`no window "${title}" within ${ms} ms; viewer log:\n${this.log()}`);
  }

  stop(): Promise<void> {
    return this.proc.stop();
  }
}
