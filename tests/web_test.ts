/**
 * The web viewer sink (`sinks/web/`) driven by a real browser: Debian's
 * Chromium, headless, through Playwright. noVNC's canvas must equal the guest
 * framebuffer pixel for pixel; typing, the page's buttons and clicks must
 * arrive in the guest's keyboard ring; a guest resize must resize the canvas;
 * https/wss, the WebSocket subprotocol rule and the CLI's `--web` are checked
 * too.
 */
import { assert, assertEquals, assertStrictEquals } from "@rxfb/assert";
import { BTN_LEFT, type InputEvent } from "../pipeline/events.ts";
import { memoryLogger } from "../sources/log.ts";
import { serveWeb, type WebService } from "../sinks/web/server.ts";
import {
  type Browser,
  canvasMatchesGuest,
  canvasPicture,
  deadline,
  launchChromium,
  openViewer,
  skipWithoutChromium,
  sleep,
  until,
} from "./browser_chromium.ts";
import { exists, skipWithout } from "./packages.ts";
import { paintTestPicture, type VncRig, vncRig } from "./vnc_rig.ts";

/** The page's document, inside `page.evaluate` callbacks (they run in the browser). */
declare const document: any;

const KEY_1 = 2, KEY_ENTER = 28, KEY_LEFTCTRL = 29, KEY_A = 30, KEY_LEFTSHIFT = 42;
const KEY_B = 48, KEY_LEFTALT = 56, KEY_DELETE = 111, KEY_H = 35, KEY_I = 23;

const ignore = skipWithoutChromium();
// Playwright keeps timers and pipes of its own between calls; each test closes
// its browser, server and guest in `finally`.
const browserTest = { ignore, sanitizeOps: false, sanitizeResources: false };

/** A sim guest (320x200, program "none", test picture) behind serveWeb on a free port. */
interface WebRig {
  rig: VncRig;
  web: WebService;
  webLog: string[];
  browser: Browser;
  close(): Promise<void>;
}

async function webRig(
  tls?: { tlsCert: string; tlsKey: string },
  title = "placeholder title",
): Promise<WebRig> {
  const rig = await vncRig({ width: 320, height: 200 });
  paintTestPicture(rig.sim);
  const log = memoryLogger();
  let web: WebService | undefined;
  let browser: Browser | undefined;
  try {
    web = await serveWeb(rig.vnc.server, {
      hostname: "127.0.0.1",
      port: 0,
      title,
      log,
      ...(tls ?? {}),
    });
    browser = await launchChromium();
  } catch (e) {
    await web?.close();
    await rig.stop();
    throw e;
  }
  const w = web, b = browser;
  return {
    rig,
    web: w,
    webLog: log.lines,
    browser: b,
    close: async () => {
      await b.close().catch(() => {});
      rig.vnc.close(); // ends the RFB sessions, so the HTTP server can shut down
      await deadline(w.close(), 5000, "web server shutdown").catch(() => {});
      await rig.stop();
    },
  };
}

const keys = (events: readonly InputEvent[]) =>
  events.filter((e) => e.type === "key").map((e) => `${e.code}${e.down ? "v" : "^"}`);
const tap = (code: number) => [`${code}v`, `${code}^`];

const MODIFIERS = new Set([KEY_LEFTCTRL, KEY_LEFTSHIFT, KEY_LEFTALT, 54, 97, 100, 125, 126]);

/**
 * What a run of key events typed, as the guest would see it: each press of a
 * non-modifier key with the modifiers held at that moment ("42+30" is Shift+A),
 * and whether every key went up again in the end.
 */
function typed(events: readonly InputEvent[]): { strokes: string[]; allUp: boolean } {
  const held = new Set<number>();
  const strokes: string[] = [];
  for (const e of events) {
    if (e.type !== "key") continue;
    if (e.down && !MODIFIERS.has(e.code)) {
      strokes.push([...[...held].filter((c) => MODIFIERS.has(c)).sort((a, b) => a - b), e.code]
        .join("+"));
    }
    if (e.down) held.add(e.code);
    else held.delete(e.code);
  }
  return { strokes, allUp: held.size === 0 };
}

/** Waits until the guest has read `want` key events (as "codev"/"code^") since `from`. */
async function keysArrive(r: WebRig, from: number, want: string[]): Promise<void> {
  await until(
    () => keys(r.rig.sim.inputs.slice(from)).length >= want.length,
    () => `${want.length} key events (got ${keys(r.rig.sim.inputs.slice(from))})`,
  );
  await sleep(100); // nothing more should follow
  assertEquals(keys(r.rig.sim.inputs.slice(from)), want);
}

Deno.test({
  name: "web: the canvas equals the guest framebuffer pixel for pixel (port 0)",
  ...browserTest,
  async fn() {
    const r = await webRig();
    try {
      assert(r.web.port > 0, `serveWeb on port 0 must report the bound port, not ${r.web.port}`);
      assertStrictEquals(r.web.url, `http://127.0.0.1:${r.web.port}/`);
      const v = await openViewer(r.browser, r.web.url, { width: 1000, height: 700 });
      try {
        await canvasMatchesGuest(v.page, r.rig.sim);
        // Lossless: the page announces no JPEG quality level.
        const enc = r.rig.log.filter((l) => /\(websocket\): encoding /.test(l));
        assert(enc.length === 1 && !enc[0].includes("quality"), `negotiated: ${enc}`);
        // The page scales the canvas to the window; its backing store stays 320x200.
        const box = (await v.page.locator("#screen canvas").boundingBox())!;
        assert(box.width > 320, `the canvas is scaled to the window (${box.width} CSS px wide)`);
        // A change the guest draws afterwards shows too.
        paintTestPicture(r.rig.sim, 2);
        await canvasMatchesGuest(v.page, r.rig.sim);
        assertEquals(v.sockets, [`ws://127.0.0.1:${r.web.port}/websockify`]);
        const shot = Deno.env.get("RXFB_WEB_SCREENSHOT");
        if (shot) await v.page.screenshot({ path: shot });
      } finally {
        await v.close();
      }
      // JPEG only when asked for with ?quality=N.
      const q = await openViewer(r.browser, `${r.web.url}?quality=6`);
      try {
        await until(
          () => r.rig.log.some((l) => /\(websocket\): encoding .*, quality 6$/.test(l)),
          () => `quality 6 in the log: ${r.rig.log.join("\n")}`,
        );
      } finally {
        await q.close();
      }
    } finally {
      await r.close();
    }
  },
});

Deno.test({
  name: "web: the page shows the connection state and the guest's name from ServerInit",
  ...browserTest,
  async fn() {
    const r = await webRig(undefined, "placeholder title");
    try {
      const v = await openViewer(r.browser, r.web.url);
      try {
        await v.page.waitForFunction(() =>
          document.getElementById("name")?.textContent !== "placeholder title"
        );
        const dom = await v.page.evaluate(() => ({
          state: document.getElementById("state")!.textContent,
          stateClass: document.getElementById("state")!.className,
          name: document.getElementById("name")!.textContent,
          title: document.title,
        }));
        assertEquals(dom, {
          state: "connected",
          stateClass: "connected",
          name: "domain 7",
          title: "domain 7 — rxfb",
        });
        // When rxfb goes away, the page says so.
        r.rig.vnc.close();
        await v.page.waitForFunction(() =>
          document.getElementById("state")?.textContent === "disconnected"
        );
      } finally {
        await v.close();
      }
    } finally {
      await r.close();
    }
  },
});

Deno.test({
  name: "web: keys typed on the canvas and pasted text arrive in the guest's keyboard ring",
  ...browserTest,
  async fn() {
    const r = await webRig();
    try {
      const v = await openViewer(r.browser, r.web.url);
      try {
        await v.page.focus("#screen canvas");
        let from = r.rig.sim.inputs.length;
        await v.page.keyboard.type("hi");
        await keysArrive(r, from, [...tap(KEY_H), ...tap(KEY_I)]);

        // "A" takes Shift; rxfb may let Shift go before or after the A (QEMU's way).
        from = r.rig.sim.inputs.length;
        await v.page.fill("#paste", "Ab1\n");
        await v.page.click("#type");
        await until(
          () => keys(r.rig.sim.inputs.slice(from)).length >= 10,
          () => `10 key events (got ${keys(r.rig.sim.inputs.slice(from))})`,
        );
        await sleep(100); // nothing more should follow
        const got = r.rig.sim.inputs.slice(from);
        assertEquals(typed(got), {
          strokes: [`${KEY_LEFTSHIFT}+${KEY_A}`, `${KEY_B}`, `${KEY_1}`, `${KEY_ENTER}`],
          allUp: true,
        }, `key events ${keys(got)}`);
        assertStrictEquals(keys(got).length, 10, `key events ${keys(got)}`);
      } finally {
        await v.close();
      }
    } finally {
      await r.close();
    }
  },
});

Deno.test({
  name: "web: the Ctrl-Alt-Del button arrives as Ctrl, Alt, Delete",
  ...browserTest,
  async fn() {
    const r = await webRig();
    try {
      const v = await openViewer(r.browser, r.web.url);
      try {
        const from = r.rig.sim.inputs.length;
        await v.page.click("#cad");
        await keysArrive(r, from, [
          `${KEY_LEFTCTRL}v`,
          `${KEY_LEFTALT}v`,
          `${KEY_DELETE}v`,
          `${KEY_DELETE}^`,
          `${KEY_LEFTALT}^`,
          `${KEY_LEFTCTRL}^`,
        ]);
      } finally {
        await v.close();
      }
    } finally {
      await r.close();
    }
  },
});

Deno.test({
  name: "web: a click on the canvas arrives as a framebuffer position and BTN_LEFT",
  ...browserTest,
  async fn() {
    const r = await webRig();
    try {
      // 800x600 scales 320x200 by 2.5 (the header takes some height): no 1:1 mapping.
      const v = await openViewer(r.browser, r.web.url, { width: 800, height: 600 });
      try {
        const box = (await v.page.locator("#screen canvas").boundingBox())!;
        const scale = box.width / 320;
        assert(Math.abs(scale - 1) > 0.1, `the canvas is scaled (scale ${scale})`);
        const fx = 213, fy = 57;
        const from = r.rig.sim.inputs.length;
        await v.page.mouse.click(box.x + (fx + 0.5) * scale, box.y + (fy + 0.5) * scale);
        await until(
          () => keys(r.rig.sim.inputs.slice(from)).length >= 2,
          () => `button events (got ${JSON.stringify(r.rig.sim.inputs.slice(from))})`,
        );
        const got = r.rig.sim.inputs.slice(from);
        assertEquals(keys(got), [`${BTN_LEFT}v`, `${BTN_LEFT}^`]);
        const down = got.findIndex((e) => e.type === "key");
        const before = got.slice(0, down).filter((e) => e.type === "position").at(-1);
        assert(before?.type === "position", `a position before the press: ${JSON.stringify(got)}`);
        assertEquals([before.x, before.y, before.dz ?? 0], [fx, fy, 0]);
        for (const e of got) {
          if (e.type === "position") assertEquals([e.x, e.y], [fx, fy], JSON.stringify(e));
          assert(e.type !== "motion", `the pointer is absolute: ${JSON.stringify(e)}`);
        }
      } finally {
        await v.close();
      }
    } finally {
      await r.close();
    }
  },
});

Deno.test({
  name: "web: a guest resize resizes the canvas, and the pixels still match",
  ...browserTest,
  async fn() {
    const r = await webRig();
    try {
      const v = await openViewer(r.browser, r.web.url);
      try {
        await canvasMatchesGuest(v.page, r.rig.sim);
        assert(r.rig.sim.resize(160, 100), "the sim guest shrinks to 160x100");
        paintTestPicture(r.rig.sim, 3);
        await canvasMatchesGuest(v.page, r.rig.sim);
        const c = await canvasPicture(v.page);
        assertEquals([c.width, c.height], [160, 100]);
        assertStrictEquals(
          await v.page.evaluate(() => document.getElementById("state")!.textContent),
          "connected",
        );
      } finally {
        await v.close();
      }
    } finally {
      await r.close();
    }
  },
});

Deno.test({
  name: "web: --tls-cert/--tls-key serve the page over https and RFB over wss",
  ignore: ignore ||
    skipWithout(exists("/usr/bin/openssl"), "openssl", "apt-get install -y openssl"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "rxfb-web-tls-" });
    try {
      const tlsKey = `${dir}/k.pem`, tlsCert = `${dir}/c.pem`;
      const made = await new Deno.Command("openssl", {
        args: [
          ...["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", tlsKey, "-out"],
          ...[tlsCert, "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
          ...["-days", "1"],
        ],
        stdout: "null",
        stderr: "piped",
      }).output();
      assert(made.success, new TextDecoder().decode(made.stderr));
      const r = await webRig({ tlsCert, tlsKey });
      try {
        assertStrictEquals(r.web.url, `https://127.0.0.1:${r.web.port}/`);
        const v = await openViewer(r.browser, r.web.url, undefined, { ignoreHTTPSErrors: true });
        try {
          assertStrictEquals(await v.page.evaluate(() => location.protocol), "https:");
          assertEquals(v.sockets, [`wss://127.0.0.1:${r.web.port}/websockify`]);
          await canvasMatchesGuest(v.page, r.rig.sim);
        } finally {
          await v.close();
        }
        // Plain http on the https port gets no page.
        const plain = await fetch(`http://127.0.0.1:${r.web.port}/`).then(
          (res) => res.text().then(() => res.status),
          () => "refused",
        );
        assert(plain !== 200, `plain http on the https port answered ${plain}`);
      } finally {
        await r.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** Connects a raw WebSocket client: the protocol it got and the first bytes, or the failure. */
async function rawWebSocket(
  url: string,
  protocols?: string[],
): Promise<{ protocol: string; first: string } | { failed: string }> {
  const ws = protocols ? new WebSocket(url, protocols) : new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const closed = new Promise<void>((res) => ws.addEventListener("close", () => res()));
  try {
    return await deadline(
      new Promise((resolve) => {
        ws.onerror = (e) => resolve({ failed: (e as ErrorEvent).message ?? "error" });
        ws.onmessage = (e) => {
          const first = typeof e.data === "string"
            ? `text frame ${e.data}`
            : new TextDecoder().decode(new Uint8Array(e.data as ArrayBuffer));
          resolve({ protocol: ws.protocol, first });
        };
      }),
      5000,
      `WebSocket ${url} ${protocols ?? "(no protocols)"}`,
    );
  } finally {
    if (ws.readyState !== WebSocket.CLOSED) ws.close();
    await deadline(closed, 5000, "WebSocket close");
  }
}

Deno.test('web: RFB over WebSocket takes subprotocol "binary" or none, refuses others', async () => {
  const rig = await vncRig();
  const log = memoryLogger();
  const web = await serveWeb(rig.vnc.server, { hostname: "127.0.0.1", port: 0, title: "t", log });
  try {
    const url = `ws://127.0.0.1:${web.port}/websockify`;
    assertEquals(await rawWebSocket(url, ["binary"]), {
      protocol: "binary",
      first: "RFB 003.008\n",
    });
    assertEquals(await rawWebSocket(url, ["base64", "binary"]), {
      protocol: "binary",
      first: "RFB 003.008\n",
    });
    assertEquals(await rawWebSocket(url), { protocol: "", first: "RFB 003.008\n" });
    const refused = await rawWebSocket(url, ["base64"]);
    assert("failed" in refused, `["base64"] alone must be refused, got ${JSON.stringify(refused)}`);
    assert(
      log.lines.some((l) => l.includes('lack "binary"')),
      `the refusal is logged: ${log.lines.join("\n")}`,
    );
    // The same refusal, seen as plain HTTP: 400.
    const res = await fetch(`http://127.0.0.1:${web.port}/websockify`, {
      headers: {
        upgrade: "websocket",
        connection: "Upgrade",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13",
        "sec-websocket-protocol": "base64",
      },
    });
    await res.body?.cancel();
    assertStrictEquals(res.status, 400);
  } finally {
    rig.vnc.close();
    await deadline(web.close(), 5000, "web server shutdown");
    await rig.stop();
  }
});

Deno.test({
  name: "web: `--web 127.0.0.1:0` prints the URL with the bound port, and the page works",
  ...browserTest,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "rxfb-web-cli-" });
    const inputLog = `${dir}/input.jsonl`;
    const root = new URL("..", import.meta.url).pathname;
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        ...["run", "-A", "mod.ts", "--sim", "--domid", "9", "--guest", "demo"],
        ...["--size", "320x200", "--vnc", "none", "--web", "127.0.0.1:0"],
        ...["--input-log", inputLog],
      ],
      cwd: root,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let out = "", err = "";
    const drain = async (s: ReadableStream<Uint8Array>, add: (t: string) => void) => {
      const dec = new TextDecoder();
      for await (const chunk of s) add(dec.decode(chunk, { stream: true }));
    };
    const drained = Promise.all([
      drain(child.stdout, (t) => out += t),
      drain(child.stderr, (t) => err += t),
    ]);
    let browser: Browser | undefined;
    try {
      let m: RegExpExecArray | null = null;
      await until(
        () => (m = /open (http:\/\/127\.0\.0\.1:(\d+)\/)/.exec(out)) !== null,
        () => `the URL on stdout (stdout: ${out}; stderr: ${err})`,
        30_000,
      );
      const [, url, port] = m!;
      assert(Number(port) > 0, `the printed URL names the bound port: ${url}`);
      browser = await launchChromium();
      const v = await openViewer(browser, url);
      try {
        const name = /simulated domain 9 "([^"]+)" created/.exec(err)?.[1];
        assert(name, `the domain's name in the log: ${err}`);
        await v.page.waitForFunction(
          (name) => document.getElementById("name")?.textContent === name,
          name,
        );
        const c = await canvasPicture(v.page);
        assertEquals([c.width, c.height], [320, 200]);
        await v.page.focus("#screen canvas");
        await v.page.keyboard.type("hi");
        const logged = () => {
          try {
            return Deno.readTextFileSync(inputLog).trim().split("\n").filter((l) => l)
              .map((l) => JSON.parse(l) as InputEvent);
          } catch {
            return [];
          }
        };
        await until(
          () => keys(logged()).length >= 4,
          () => `the typed keys in --input-log (got ${keys(logged())})`,
        );
        assertEquals(keys(logged()), [...tap(KEY_H), ...tap(KEY_I)]);
      } finally {
        await v.close();
      }
      await browser.close();
      browser = undefined;
      // SIGTERM stops rxfb cleanly (status 0).
      child.kill("SIGTERM");
      const status = await deadline(child.status, 10_000, "rxfb exit after SIGTERM");
      assert(status.success, `rxfb exit: ${JSON.stringify(status)}\n${err}`);
    } finally {
      await browser?.close().catch(() => {});
      const exited = await deadline(child.status, 100, "rxfb exit").then(() => true, () => false);
      if (!exited) {
        child.kill("SIGKILL");
        await child.status;
      }
      await deadline(drained, 5000, "rxfb's output closing").catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  },
});
