/**
 * Helpers for the tests that drive real VNC clients: child processes that are
 * always killed, deadlines, an Xvfb display, XWD screenshots, and pixel
 * comparison against the guest's framebuffer.
 */
import { encode as encodePng } from "fast-png";
import type { SimGuest } from "../sources/sim/guest.ts";

/** True when an executable named `cmd` is on PATH (or is an existing path). */
export function have(cmd: string): boolean {
  if (cmd.includes("/")) {
    try {
      return Deno.statSync(cmd).isFile;
    } catch {
      return false;
    }
  }
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${cmd}`).isFile) return true;
    } catch {
      // not here
    }
  }
  return false;
}

/** Rejects with `what` after `ms` unless `p` settles first. */
export async function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls an async condition until it holds; fails with `what` after `ms`. */
export async function until(
  cond: () => boolean | Promise<boolean>,
  what: string,
  ms = 10_000,
  every = 20,
): Promise<void> {
  const end = performance.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(every);
  }
}

const dec = new TextDecoder();

/** A child process whose stdout and stderr are collected as text. */
export class Child {
  readonly proc: Deno.ChildProcess;
  out = "";
  err = "";
  private readonly pumps: Promise<void>[];
  private exited = false;
  readonly status: Promise<Deno.CommandStatus>;

  constructor(readonly cmd: string, args: string[], opts: Deno.CommandOptions = {}) {
    this.proc = new Deno.Command(cmd, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      ...opts,
    }).spawn();
    this.status = this.proc.status.then((s) => {
      this.exited = true;
      return s;
    });
    this.pumps = [
      this.pump(this.proc.stdout, (s) => (this.out += s)),
      this.pump(this.proc.stderr, (s) => (this.err += s)),
    ];
  }

  private async pump(s: ReadableStream<Uint8Array> | null, add: (s: string) => void) {
    if (!s) return;
    try {
      for await (const c of s) add(dec.decode(c, { stream: true }));
    } catch {
      // stream closed by kill
    }
  }

  get running(): boolean {
    return !this.exited;
  }

  /** Everything the child printed so far (for failure messages). */
  get output(): string {
    return `${this.cmd} stdout:\n${this.out}\n${this.cmd} stderr:\n${this.err}`;
  }

  /** Kills the child (SIGTERM, then SIGKILL after 2 s) and waits for it and its pipes. */
  async kill(): Promise<void> {
    if (!this.exited) {
      try {
        this.proc.kill("SIGTERM");
      } catch {
        // gone already
      }
      const t = setTimeout(() => {
        try {
          this.proc.kill("SIGKILL");
        } catch {
          // gone already
        }
      }, 2000);
      await this.status;
      clearTimeout(t);
    }
    await Promise.all(this.pumps);
  }
}

/** Runs a command to completion within `ms`; kills it on timeout. */
export async function run(
  cmd: string,
  args: string[],
  ms = 20_000,
  opts: Deno.CommandOptions = {},
): Promise<{ code: number; out: string; err: string }> {
  const c = new Child(cmd, args, opts);
  try {
    const s = await deadline(c.status, ms, `${cmd} ${args.join(" ")}`);
    await c.kill(); // drains the pipes
    return { code: s.code, out: c.out, err: c.err };
  } finally {
    await c.kill();
  }
}

// ---------------------------------------------------------------- pixels

/** An RGB picture, 3 bytes a pixel, rows packed. */
export interface Rgb {
  width: number;
  height: number;
  data: Uint8Array;
}

/** The guest's framebuffer (32 bpp XRGB, as paintTestPicture draws) as RGB. */
export function guestRgb(sim: SimGuest): Rgb {
  const fb = sim.fbfront!.fb;
  if (fb.depth !== 32) throw new Error(`guestRgb needs a 32-bpp guest, not ${fb.depth}`);
  const px = new Uint32Array(fb.sab, fb.byteOffset, (fb.stride / 4) * fb.height);
  const sw = fb.stride / 4;
  const data = new Uint8Array(fb.width * fb.height * 3);
  for (let y = 0; y < fb.height; y++) {
    for (let x = 0; x < fb.width; x++) {
      const v = px[y * sw + x];
      const o = (y * fb.width + x) * 3;
      data[o] = (v >>> 16) & 255;
      data[o + 1] = (v >>> 8) & 255;
      data[o + 2] = v & 255;
    }
  }
  return { width: fb.width, height: fb.height, data };
}

/** Takes RGB out of RGBA (canvas ImageData, jpeg-js output). */
export function rgbFromRgba(width: number, height: number, rgba: Uint8Array): Rgb {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < width * height; i++, j += 4) {
    data[i * 3] = rgba[j];
    data[i * 3 + 1] = rgba[j + 1];
    data[i * 3 + 2] = rgba[j + 2];
  }
  return { width, height, data };
}

/** The `w` x `h` area of `img` at `x`,`y`. */
export function crop(img: Rgb, x: number, y: number, w: number, h: number): Rgb {
  const data = new Uint8Array(w * h * 3);
  for (let r = 0; r < h; r++) {
    const s = ((y + r) * img.width + x) * 3;
    data.set(img.data.subarray(s, s + w * 3), r * w * 3);
  }
  return { width: w, height: h, data };
}

/** How two same-size pictures differ: differing pixels, the first of them, the worst channel error, PSNR. */
export interface Diff {
  pixels: number;
  first?: string;
  maxError: number;
  psnr: number;
}

export function diffRgb(got: Rgb, want: Rgb): Diff {
  if (got.width !== want.width || got.height !== want.height) {
    return {
      pixels: want.width * want.height,
      first: `size ${got.width}x${got.height}, want ${want.width}x${want.height}`,
      maxError: 255,
      psnr: 0,
    };
  }
  let pixels = 0, maxError = 0, se = 0;
  let first: string | undefined;
  for (let i = 0; i < want.width * want.height; i++) {
    let bad = false;
    for (let c = 0; c < 3; c++) {
      const d = Math.abs(got.data[i * 3 + c] - want.data[i * 3 + c]);
      if (d) bad = true;
      if (d > maxError) maxError = d;
      se += d * d;
    }
    if (bad) {
      pixels++;
      if (!first) {
        const x = i % want.width, y = Math.floor(i / want.width);
        const g = [...got.data.subarray(i * 3, i * 3 + 3)];
        const w = [...want.data.subarray(i * 3, i * 3 + 3)];
        first = `(${x},${y}) is rgb(${g}), want rgb(${w})`;
      }
    }
  }
  const mse = se / (want.width * want.height * 3);
  return { pixels, first, maxError, psnr: mse === 0 ? Infinity : 10 * Math.log10(65025 / mse) };
}

/** A one-line account of a Diff for assertion messages. */
export function describeDiff(d: Diff): string {
  return `${d.pixels} pixels differ (first ${d.first ?? "-"}), max channel error ${d.maxError}, ` +
    `PSNR ${d.psnr.toFixed(2)} dB`;
}

/**
 * Where `want` appears in `screen` (exactly, every pixel), or undefined. Candidates are
 * positions whose pixel equals want's top-left one and whose corners match.
 */
export function findPicture(screen: Rgb, want: Rgb): { x: number; y: number } | undefined {
  const at = (img: Rgb, x: number, y: number) => {
    const o = (y * img.width + x) * 3;
    return (img.data[o] << 16) | (img.data[o + 1] << 8) | img.data[o + 2];
  };
  const tl = at(want, 0, 0);
  const probes: [number, number][] = [];
  for (let i = 0; i < 64; i++) {
    probes.push([(i * 37) % want.width, (i * 53) % want.height]);
  }
  probes.push([want.width - 1, want.height - 1], [want.width - 1, 0], [0, want.height - 1]);
  for (let y = 0; y + want.height <= screen.height; y++) {
    for (let x = 0; x + want.width <= screen.width; x++) {
      if (at(screen, x, y) !== tl) continue;
      if (!probes.every(([px, py]) => at(screen, x + px, y + py) === at(want, px, py))) continue;
      if (diffRgb(crop(screen, x, y, want.width, want.height), want).pixels === 0) return { x, y };
    }
  }
  return undefined;
}

/** Writes an RGB picture as PNG (for looking at failures). */
export async function writePng(path: string, img: Rgb): Promise<void> {
  await Deno.writeFile(
    path,
    encodePng({ width: img.width, height: img.height, data: img.data, channels: 3, depth: 8 }),
  );
}

/** Decodes an X Window Dump (`xwd -root`) of a TrueColor screen to RGB. */
export function parseXwd(b: Uint8Array): Rgb {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const h = (i: number) => dv.getUint32(i * 4); // the header is big-endian
  const headerSize = h(0), version = h(1), format = h(2);
  const width = h(4), height = h(5), byteOrder = h(7), bpp = h(11), bpl = h(12);
  const masks = [h(14), h(15), h(16)];
  const ncolors = h(19);
  if (version !== 7 || format !== 2) throw new Error(`xwd version ${version} format ${format}`);
  if (bpp !== 32 && bpp !== 24) throw new Error(`xwd with ${bpp} bits per pixel`);
  const shifts = masks.map((m) => 31 - Math.clz32(m) - 7);
  const start = headerSize + ncolors * 12;
  const data = new Uint8Array(width * height * 3);
  const bytes = bpp / 8;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = start + y * bpl + x * bytes;
      let v = 0;
      for (let k = 0; k < bytes; k++) {
        v |= b[o + k] << (byteOrder === 0 ? 8 * k : 8 * (bytes - 1 - k));
      }
      v >>>= 0;
      const p = (y * width + x) * 3;
      for (let c = 0; c < 3; c++) data[p + c] = (v & masks[c]) >>> shifts[c];
    }
  }
  return { width, height, data };
}

// ---------------------------------------------------------------- X display

/** A virtual X display (Xvfb) for viewers to draw on. */
export interface XDisplay {
  /** ":N" */
  name: string;
  env: Record<string, string>;
  screenshot(): Promise<Rgb>;
  stop(): Promise<void>;
}

/** Starts Xvfb on a free display (it picks one and reports it through -displayfd). */
export async function startXvfb(width = 800, height = 600): Promise<XDisplay> {
  const x = new Child("Xvfb", [
    "-displayfd",
    "1",
    "-screen",
    "0",
    `${width}x${height}x24`,
    "-nolisten",
    "tcp",
    "-noreset",
  ]);
  try {
    await until(() => /^\d+\n/.test(x.out) || !x.running, "Xvfb to report its display", 15_000);
    if (!/^\d+\n/.test(x.out)) throw new Error(`Xvfb failed\n${x.output}`);
  } catch (e) {
    await x.kill();
    throw e;
  }
  const name = `:${x.out.trim()}`;
  const env = { DISPLAY: name };
  return {
    name,
    env,
    screenshot: async () => {
      // A window that goes away while xwd reads the screen (a client's password dialog
      // closing) fails the capture with BadDrawable / BadWindow: that one is taken again.
      for (let attempt = 1;; attempt++) {
        const r = await new Deno.Command("xwd", {
          args: ["-root", "-silent", "-display", name],
          stdout: "piped",
          stderr: "piped",
        }).output();
        if (r.code === 0) return parseXwd(r.stdout);
        const err = dec.decode(r.stderr);
        if (attempt < 3 && /BadDrawable|BadWindow/.test(err)) continue;
        throw new Error(`xwd failed: ${err}`);
      }
    },
    stop: () => x.kill(),
  };
}

/** A throw-away directory, removed by `remove()`. */
export async function tempDir(prefix: string): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    remove: () => Deno.remove(path, { recursive: true }).catch(() => {}),
  };
}

/**
 * A self-signed certificate for 127.0.0.1 (CN and subjectAltName IP), made
 * with openssl; `cert` doubles as its own CA.
 */
export async function selfSignedCert(dir: string): Promise<{ cert: string; key: string }> {
  const cert = `${dir}/cert.pem`, key = `${dir}/key.pem`;
  const r = await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=127.0.0.1",
    "-addext",
    "subjectAltName=IP:127.0.0.1",
    "-keyout",
    key,
    "-out",
    cert,
  ]);
  if (r.code !== 0) throw new Error(`openssl failed: ${r.err}`);
  return { cert, key };
}

/**
 * Fills a 32-bpp guest framebuffer with a picture of few colours per area
 * (at most 30 in all): Tight sends it with fills and palettes only, never
 * JPEG, so even a client that allows JPEG gets it losslessly. Seeded noise
 * makes it unique on a screen.
 */
export function paintPalettePicture(sim: SimGuest, seed = 1): void {
  const fb = sim.fbfront!.fb;
  const px = new Uint32Array(fb.sab, fb.byteOffset, (fb.stride / 4) * fb.height);
  let s = seed >>> 0;
  const rnd = () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s >>> 8) / 16777216;
  };
  const eight = [0x000000, 0xffffff, 0xc00000, 0x00a000, 0x0000c0, 0xc0c000, 0x00c0c0, 0xc000c0];
  const sixteen = Array.from({ length: 16 }, (_, i) => ((i * 0x1f3d5b) ^ 0x5a5a5a) & 0xffffff);
  const blocks = [0x204080, 0xe0e0e0, 0x806040, 0x10c070];
  const w = fb.width, h = fb.height, sw = fb.stride / 4;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let v: number;
      if (y < h / 4) v = eight[Math.floor(rnd() * 8)];
      else if (y < h / 2) v = rnd() < 0.25 ? 0xf0f0f0 : 0x181818; // text-like, two colours
      else if (y < (3 * h) / 4) v = blocks[Math.floor((x * 4) / w)];
      else v = sixteen[Math.floor(rnd() * 16)];
      px[y * sw + x] = v;
    }
  }
  sim.fbfront!.damage([{ x: 0, y: 0, w, h }]);
}
