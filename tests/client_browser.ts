/**
 * noVNC in headless Chromium for client tests: a tiny HTTP server for a page
 * that loads noVNC's RFB class (the ESM `core/` of the @novnc/novnc npm
 * package), websockify in front of the VNC server, and Chromium through
 * playwright-core.
 */
import { chromium } from "playwright-core";
import type { BrowserContext, Page } from "playwright-core";
// A type-only import, so that type checking fetches the package into Deno's cache.
import type * as _noVnc from "@novnc/novnc";
import { Child, have, until } from "./client_tools.ts";

export const CHROMIUM = "/usr/bin/chromium";

/** The directory of the @novnc/novnc package (holding core/ and vendor/), or undefined. */
export function noVncRoot(): string | undefined {
  try {
    const rfb = new URL(import.meta.resolve("@novnc/novnc"));
    const root = new URL("../", rfb);
    Deno.statSync(new URL("core/rfb.js", root));
    return decodeURIComponent(root.pathname);
  } catch {
    return undefined;
  }
}

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>rxfb noVNC test</title></head>
<body style="margin:0;background:#000">
<div id="screen"></div>
<script type="module">
import RFB from "/novnc/core/rfb.js";
window.events = [];
window.start = (url, opts) => new Promise((resolve, reject) => {
  const rfb = new RFB(document.getElementById("screen"), url, { credentials: opts.credentials });
  if (opts.quality !== undefined) rfb.qualityLevel = opts.quality;
  if (opts.compression !== undefined) rfb.compressionLevel = opts.compression;
  rfb.addEventListener("connect", () => { window.events.push("connect"); resolve(true); });
  rfb.addEventListener("disconnect", (e) => {
    window.events.push("disconnect " + JSON.stringify(e.detail));
    reject(new Error("disconnected: " + JSON.stringify(e.detail)));
  });
  rfb.addEventListener("securityfailure", (e) => window.events.push("securityfailure " + JSON.stringify(e.detail)));
  window.rfb = rfb;
});
window.pixels = () => {
  const c = document.querySelector("#screen canvas");
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let s = "";
  for (let i = 0; i < d.length; i += 0x8000) s += String.fromCharCode.apply(null, d.subarray(i, i + 0x8000));
  return { width: c.width, height: c.height, rgba: btoa(s) };
};
</script>
</body></html>`;

/** Serves the test page at / and the noVNC package under /novnc/. */
export function servePage(root: string): { url: string; close(): Promise<void> } {
  const ac = new AbortController();
  const types: Record<string, string> = {
    js: "text/javascript",
    json: "application/json",
    html: "text/html",
    css: "text/css",
  };
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: ac.signal,
    onListen: () => {},
  }, async (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname);
    if (path === "/") return new Response(PAGE, { headers: { "content-type": "text/html" } });
    if (path.startsWith("/novnc/") && !path.includes("..")) {
      try {
        const body = await Deno.readFile(root + path.slice("/novnc/".length));
        const ext = path.split(".").pop() ?? "";
        return new Response(body, {
          headers: { "content-type": types[ext] ?? "application/octet-stream" },
        });
      } catch {
        return new Response("not found", { status: 404 });
      }
    }
    if (path === "/favicon.ico") return new Response(null, { status: 204 });
    return new Response("not found", { status: 404 });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/`,
    close: async () => {
      ac.abort();
      await server.finished;
    },
  };
}

/** A free TCP port on 127.0.0.1 (bound and released: a small race, fine for tests). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const p = (l.addr as Deno.NetAddr).port;
  l.close();
  return p;
}

/** websockify from a free port to `target`; resolves once it accepts connections. */
export async function startWebsockify(
  target: number,
): Promise<{ port: number; stop(): Promise<void> }> {
  const port = freePort();
  const w = new Child("websockify", [`127.0.0.1:${port}`, `127.0.0.1:${target}`]);
  try {
    await until(
      async () => {
        if (!w.running) throw new Error(`websockify exited\n${w.output}`);
        try {
          (await Deno.connect({ hostname: "127.0.0.1", port })).close();
          return true;
        } catch {
          return false;
        }
      },
      "websockify to listen",
      15_000,
      50,
    );
  } catch (e) {
    await w.kill();
    throw e;
  }
  return { port, stop: () => w.kill() };
}

/** Whether Chromium, websockify and the noVNC package are all here. */
export function haveNoVnc(): boolean {
  return have(CHROMIUM) && have("websockify") && noVncRoot() !== undefined;
}

/** Headless Chromium with a fresh profile. */
export async function launchChromium(
  profile: string,
): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
    timeout: 30_000,
  });
  return {
    context,
    close: async () => {
      await context.close().catch(() => {});
    },
  };
}

/** The noVNC canvas as RGBA. */
export async function canvasPixels(
  page: Page,
): Promise<{ width: number; height: number; rgba: Uint8Array }> {
  const r = await page.evaluate("window.pixels()") as {
    width: number;
    height: number;
    rgba: string;
  };
  const bin = atob(r.rgba);
  const rgba = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) rgba[i] = bin.charCodeAt(i);
  return { width: r.width, height: r.height, rgba };
}
