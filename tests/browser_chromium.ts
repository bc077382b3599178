/**
 * Helpers for the tests that drive the web viewer in a real browser: Debian's
 * Chromium, headless, through Playwright (npm `playwright-core`), and pixel
 * comparison of noVNC's canvas against the guest's framebuffer.
 */
import { type Browser, chromium, type Page } from "playwright-core";
import type { SimGuest } from "../sources/sim/guest.ts";
import { exists, skipWithout } from "./packages.ts";
import { deadline, sleep } from "./client_tools.ts";

export { deadline, sleep };

/** The page's document, inside `page.evaluate` callbacks (they run in the browser). */
declare const document: any;

export type { Browser, Page } from "playwright-core";

/** Debian's Chromium (package chromium). */
export const CHROMIUM = "/usr/bin/chromium";

/** True when the browser tests should be ignored (Chromium missing, outside CI). */
export function skipWithoutChromium(): boolean {
  return skipWithout(exists(CHROMIUM), "chromium", "apt-get install -y chromium");
}

/**
 * Starts headless Chromium. Playwright gives each launch a fresh temporary
 * profile (user-data dir), removed again by `close()`.
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    timeout: 20_000,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

/** Polls an async condition until it holds; fails with `what()` after `ms`. */
export async function until(
  cond: () => boolean | Promise<boolean>,
  what: () => string,
  ms = 10_000,
  every = 25,
): Promise<void> {
  const end = performance.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what()}`);
    await sleep(every);
  }
}

/** Opens the viewer page and waits until it says "connected". */
export async function openViewer(
  browser: Browser,
  url: string,
  viewport = { width: 800, height: 600 },
  contextOptions: { ignoreHTTPSErrors?: boolean } = {},
): Promise<{ page: Page; console: string[]; sockets: string[]; close(): Promise<void> }> {
  const context = await browser.newContext({ viewport, ...contextOptions });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  const lines: string[] = [];
  const sockets: string[] = [];
  page.on("console", (m) => lines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => lines.push(`pageerror: ${e.message}`));
  page.on("websocket", (ws) => sockets.push(ws.url()));
  try {
    await page.goto(url);
    await page.waitForFunction(() => document.getElementById("state")?.textContent === "connected");
  } catch (e) {
    await context.close();
    throw new Error(`viewer at ${url} did not connect: ${e}\npage console:\n${lines.join("\n")}`);
  }
  return { page, console: lines, sockets, close: () => context.close() };
}

/** An RGBA picture. */
export interface Picture {
  width: number;
  height: number;
  /** width * height * 4 bytes, R G B A. */
  rgba: Uint8Array;
}

/**
 * The backing store of noVNC's canvas (`#screen canvas`), whatever the CSS
 * scaling: its width and height are the framebuffer's.
 */
export async function canvasPicture(page: Page): Promise<Picture> {
  const got = await page.evaluate(() => {
    const c = document.querySelector("#screen canvas");
    if (!c) return null;
    const data = c.getContext("2d")!.getImageData(0, 0, c.width, c.height).data;
    let s = "";
    for (let i = 0; i < data.length; i += 0x8000) {
      s += String.fromCharCode(...data.subarray(i, i + 0x8000));
    }
    return { width: c.width, height: c.height, b64: btoa(s) };
  });
  if (!got) throw new Error("the page has no #screen canvas");
  const bin = atob(got.b64);
  const rgba = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) rgba[i] = bin.charCodeAt(i);
  return { width: got.width, height: got.height, rgba };
}

/**
 * The guest's framebuffer as RGBA, read straight from guest memory as
 * xen-fbfront lays out 32 bpp (XRGB8888, little-endian: red in bits 16..23),
 * independently of rxfb's own pixel conversion.
 */
export function guestPicture(sim: SimGuest): Picture {
  const fb = sim.fbfront!.fb;
  if (fb.depth !== 32) throw new Error(`guestPicture reads 32 bpp framebuffers, not ${fb.depth}`);
  const { width, height } = fb;
  const words = new Uint32Array(fb.sab, fb.byteOffset, (fb.stride / 4) * height);
  const rgba = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = words[y * (fb.stride / 4) + x];
      const o = (y * width + x) * 4;
      rgba[o] = (v >>> 16) & 0xff;
      rgba[o + 1] = (v >>> 8) & 0xff;
      rgba[o + 2] = v & 0xff;
      rgba[o + 3] = 0xff;
    }
  }
  return { width, height, rgba };
}

/** Where two pictures differ, or undefined when they are equal pixel for pixel. */
export function pictureDiff(got: Picture, want: Picture): string | undefined {
  if (got.width !== want.width || got.height !== want.height) {
    return `size ${got.width}x${got.height}, want ${want.width}x${want.height}`;
  }
  let bad = 0;
  let first = "";
  const hex = (p: Uint8Array, o: number) =>
    Array.from(p.subarray(o, o + 4), (b) => b.toString(16).padStart(2, "0")).join("");
  for (let i = 0; i < want.rgba.length; i += 4) {
    if (
      got.rgba[i] !== want.rgba[i] || got.rgba[i + 1] !== want.rgba[i + 1] ||
      got.rgba[i + 2] !== want.rgba[i + 2] || got.rgba[i + 3] !== want.rgba[i + 3]
    ) {
      if (bad++ === 0) {
        const p = i / 4;
        first = ` first at ${p % want.width},${Math.floor(p / want.width)}: ` +
          `rgba ${hex(got.rgba, i)}, want ${hex(want.rgba, i)}`;
      }
    }
  }
  return bad ? `${bad} of ${want.width * want.height} pixels differ;${first}` : undefined;
}

/** Waits until the page's canvas equals the guest's framebuffer exactly. */
export async function canvasMatchesGuest(page: Page, sim: SimGuest, ms = 10_000): Promise<void> {
  let diff: string | undefined = "nothing read yet";
  await until(
    async () => (diff = pictureDiff(await canvasPicture(page), guestPicture(sim))) === undefined,
    () => `the canvas to equal the guest framebuffer (${diff})`,
    ms,
    50,
  );
}
