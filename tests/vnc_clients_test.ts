/**
 * Real VNC clients against rxfb's server, each showing a guest's test
 * picture, compared with the guest framebuffer:
 *
 * - vncsnapshot (TightVNC 1.2 based, RFB 3.3) for each encoding it has. It
 *   only writes JPEG, in RGB colour space at quality 100 without chroma
 *   subsampling, so a correct snapshot is within 1-2 levels per channel of
 *   the guest (a wrong pixel is far off): the bound is a channel error <= 2.
 * - gvncviewer (gtk-vnc) under Xvfb: the window's pixels from `xwd -root`,
 *   plain, with VeNCrypt X509None, and with VNC authentication typed into its
 *   password dialog by xdotool.
 * - noVNC (the npm package's ESM core) in headless Chromium through
 *   websockify: the canvas pixels, and keys typed into the page.
 *
 * gtk-vnc and noVNC always send a JPEG quality level and rxfb's Tight then
 * uses JPEG for photo-like areas, so exactness is checked (a) on a picture
 * with few colours per area (palette and fill only) and (b) on the full test
 * picture through tests/client_relay.ts, which removes the quality level
 * from their SetEncodings; the JPEG path itself is checked by PSNR.
 */
import { assert, assertEquals, assertStrictEquals } from "@rxfb/assert";
import jpegJs from "jpeg-js";
import { encodeVncPasswdFile } from "../sinks/vnc/auth/mod.ts";
import { paintTestPicture, type VncRig, vncRig } from "./vnc_rig.ts";
import { skipWithout } from "./packages.ts";
import {
  Child,
  crop,
  describeDiff,
  diffRgb,
  findPicture,
  guestRgb,
  have,
  paintPalettePicture,
  type Rgb,
  rgbFromRgba,
  run,
  selfSignedCert,
  sleep,
  startXvfb,
  tempDir,
  until,
  writePng,
  type XDisplay,
} from "./client_tools.ts";
import { startRelay } from "./client_relay.ts";
import {
  canvasPixels,
  haveNoVnc,
  launchChromium,
  noVncRoot,
  servePage,
  startWebsockify,
} from "./client_browser.ts";

const APT = "apt-get install -y";
const enc = new TextEncoder();

/** Saves a picture for a failure message; returns where. */
async function keep(name: string, img: Rgb): Promise<string> {
  const path = `${await Deno.makeTempDir({ prefix: "rxfb-client-" })}/${name}.png`;
  await writePng(path, img);
  return path;
}

// ---------------------------------------------------------------- vncsnapshot

/** Decodes vncsnapshot's JPEG (RGB colour space: no YCbCr transform). */
function decodeSnapshot(bytes: Uint8Array): Rgb {
  const img = jpegJs.decode(bytes, { useTArray: true, formatAsRGBA: true, colorTransform: false });
  return rgbFromRgba(img.width, img.height, img.data);
}

async function snapshot(rig: VncRig, args: string[], dir: string): Promise<Rgb> {
  const file = `${dir}/snap.jpg`;
  const r = await run("vncsnapshot", [...args, `127.0.0.1:${rig.vnc.display}`, file], 30_000);
  assertStrictEquals(r.code, 0, `vncsnapshot failed:\n${r.out}\n${r.err}\n${rig.log.join("\n")}`);
  return decodeSnapshot(await Deno.readFile(file));
}

const SNAPSHOT_CASES: {
  encodings: string;
  extra?: string[];
  /** The encoding rxfb picks (logged as "encoding N"). */
  served: number;
  maxError: number;
  minPsnr: number;
}[] = [
  { encodings: "raw", served: 0, maxError: 2, minPsnr: 55 },
  { encodings: "hextile", served: 5, maxError: 2, minPsnr: 55 },
  { encodings: "zrle", served: 16, maxError: 2, minPsnr: 55 },
  { encodings: "copyrect raw", served: 0, maxError: 2, minPsnr: 55 },
  // Not implemented by rxfb: the server falls back to Raw, which every client has.
  { encodings: "zlib", served: 0, maxError: 2, minPsnr: 55 },
  { encodings: "corre", served: 0, maxError: 2, minPsnr: 55 },
  { encodings: "tight", extra: ["-nojpeg"], served: 7, maxError: 2, minPsnr: 55 },
  // Tight with JPEG at vncsnapshot's default transmission quality 9.
  { encodings: "tight", served: 7, maxError: 16, minPsnr: 45 },
  // Fails: a 12x18 block at (0,0) is vncsnapshot's buffer fill 0xBA. See the test
  // "with the Cursor pseudo-encodings removed" below for the cause.
  { encodings: "rre", served: 2, maxError: 2, minPsnr: 55 },
];

for (const c of SNAPSHOT_CASES) {
  const label = `-encodings "${c.encodings}"${c.extra ? " " + c.extra.join(" ") : ""}`;
  Deno.test({
    name:
      `vncsnapshot ${label}: the snapshot is the guest picture (channel error <= ${c.maxError})`,
    ignore: skipWithout(have("vncsnapshot"), "vncsnapshot", `${APT} vncsnapshot`),
    fn: async () => {
      const rig = await vncRig();
      const dir = await tempDir("rxfb-snap-");
      try {
        paintTestPicture(rig.sim);
        const got = await snapshot(
          rig,
          ["-quiet", ...(c.extra ?? []), "-encodings", c.encodings],
          dir.path,
        );
        assert(rig.log.some((l) => l.endsWith(": RFB 3.3")), "vncsnapshot speaks RFB 3.3");
        assert(
          rig.log.some((l) => new RegExp(`: encoding ${c.served}\\b`).test(l)),
          rig.log.filter((l) => l.includes("encoding")).join("\n"),
        );
        const want = guestRgb(rig.sim);
        const d = diffRgb(got, want);
        const ok = d.maxError <= c.maxError && d.psnr >= c.minPsnr;
        assert(
          ok,
          `${label}: ${describeDiff(d)}; snapshot at ${ok ? "" : await keep("snap", got)}`,
        );
      } finally {
        await dir.remove();
        await rig.stop();
      }
    },
  });
}

Deno.test({
  name: "vncsnapshot -encodings rre with the Cursor pseudo-encodings removed (relay): exact",
  ignore: skipWithout(have("vncsnapshot"), "vncsnapshot", `${APT} vncsnapshot`),
  fn: async () => {
    // Pins down why plain "rre" fails above: vncsnapshot's soft cursor saves the area
    // under the cursor when the Cursor rect arrives (before any pixels: its buffer
    // fill 0xBA) and restores it when a later rect of the same update overlaps the
    // cursor; rxfb's RRE sends 320 px wide bands of <= 4096 subrects (the first ends
    // above row 19), and sends the Cursor rect first. Without Cursor it is exact.
    const rig = await vncRig();
    const relay = startRelay(rig.port, (e) => e === -239 || e === -240);
    const dir = await tempDir("rxfb-snap-");
    try {
      paintTestPicture(rig.sim);
      const file = `${dir.path}/snap.jpg`;
      const r = await run("vncsnapshot", [
        "-quiet",
        "-encodings",
        "rre",
        `127.0.0.1:${relay.port - 5900}`,
        file,
      ], 30_000);
      assertStrictEquals(r.code, 0, r.err);
      assert(relay.encodings.some((l) => l.includes(-239)), "vncsnapshot asks for Cursor");
      const d = diffRgb(decodeSnapshot(await Deno.readFile(file)), guestRgb(rig.sim));
      assert(d.maxError <= 2, describeDiff(d));
    } finally {
      await dir.remove();
      await relay.close();
      await rig.stop();
    }
  },
});

Deno.test({
  name: "vncsnapshot with VNC authentication (-passwd, vncpasswd file): right and wrong password",
  ignore: skipWithout(have("vncsnapshot"), "vncsnapshot", `${APT} vncsnapshot`),
  fn: async () => {
    const rig = await vncRig({}, { password: enc.encode("s3cret") });
    const dir = await tempDir("rxfb-snap-");
    try {
      paintTestPicture(rig.sim);
      await Deno.writeFile(`${dir.path}/good`, encodeVncPasswdFile(enc.encode("s3cret")));
      await Deno.writeFile(`${dir.path}/bad`, encodeVncPasswdFile(enc.encode("wrong")));
      const got = await snapshot(
        rig,
        ["-quiet", "-passwd", `${dir.path}/good`, "-encodings", "raw"],
        dir.path,
      );
      const d = diffRgb(got, guestRgb(rig.sim));
      assert(d.maxError <= 2, describeDiff(d));
      assert(rig.log.some((l) => l.includes("security type 2 passed")), rig.log.join("\n"));
      const r = await run("vncsnapshot", [
        "-quiet",
        "-passwd",
        `${dir.path}/bad`,
        `127.0.0.1:${rig.vnc.display}`,
        `${dir.path}/bad.jpg`,
      ], 30_000);
      assert(r.code !== 0, "a wrong password fails");
      await until(() => rig.log.some((l) => /authentication failed/.test(l)), "logged failure");
    } finally {
      await dir.remove();
      await rig.stop();
    }
  },
});

// ---------------------------------------------------------------- gvncviewer

const haveGvnc = have("gvncviewer") && have("Xvfb") && have("xwd");
const gvncSkip = (extra: [boolean, string][] = []) => {
  for (const [ok, what] of [[haveGvnc, "gvncviewer, Xvfb, xwd"], ...extra] as [boolean, string][]) {
    if (skipWithout(ok, what, `${APT} gvncviewer xvfb x11-apps xdotool openssl util-linux`)) {
      return true;
    }
  }
  return false;
};

/** Flags for a private mount namespace in which we may bind-mount (root, or a user namespace). */
const UNSHARE = (Deno.uid() ?? 0) === 0 ? ["--mount"] : ["--mount", "--map-root-user"];

/** Whether `unshare` can make that namespace here (containers may forbid it). */
const canUnshare = have("unshare") && (() => {
  try {
    return new Deno.Command("unshare", { args: [...UNSHARE, "true"], stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
})();

/** The home directory gtk-vnc takes from getpwuid(getuid()) (not $HOME). */
async function passwdHome(uid: number): Promise<string> {
  const r = await run("getent", ["passwd", String(uid)]);
  return r.out.split(":")[5]?.trim() || "/root";
}

/** gvncviewer on an X display, connected to 127.0.0.1:`port`. */
async function startGvnc(
  x: XDisplay,
  port: number,
  home: string,
  opts: { pkiDir?: string } = {},
): Promise<Child> {
  const env = {
    ...x.env,
    HOME: home,
    XDG_CONFIG_HOME: `${home}/.config`,
    XDG_CACHE_HOME: `${home}/.cache`,
    XDG_DATA_HOME: `${home}/.local/share`,
    NO_AT_BRIDGE: "1",
    GDK_BACKEND: "x11",
  };
  const target = `127.0.0.1:${port - 5900}`;
  if (!opts.pkiDir) return new Child("stdbuf", ["-oL", "gvncviewer", target], { env });
  // gtk-vnc looks for its CA in /etc/pki/CA/cacert.pem and <passwd home>/.pki/CA/cacert.pem.
  // A private mount namespace puts a home holding the test CA over the passwd home for
  // gvncviewer alone (as root; otherwise in a user namespace where we are root).
  const realHome = await passwdHome(0); // uid 0: root, or root in the user namespace
  return new Child("unshare", [
    ...UNSHARE,
    "--",
    "sh",
    "-c",
    'mount --bind "$1" "$2" && shift 2 && exec stdbuf -oL gvncviewer "$@"',
    "sh",
    opts.pkiDir,
    realHome,
    target,
  ], { env });
}

/** Waits until the X screen shows `want` exactly; returns where. */
async function waitForPicture(
  x: XDisplay,
  want: Rgb,
  viewer: Child,
  ms = 20_000,
): Promise<{ x: number; y: number }> {
  let at: { x: number; y: number } | undefined;
  let last: Rgb | undefined;
  try {
    await until(
      async () => {
        if (!viewer.running) throw new Error(`the viewer exited\n${viewer.output}`);
        last = await x.screenshot();
        at = findPicture(last, want);
        return at !== undefined;
      },
      "the guest picture on the screen",
      ms,
      150,
    );
  } catch (e) {
    const path = last ? await keep("screen", last) : "-";
    throw new Error(
      `${e instanceof Error ? e.message : e}; last screenshot ${path}\n${viewer.output}`,
    );
  }
  return at!;
}

/** A rig, an X display, a temp home and (optionally) a relay, torn down in order. */
async function gvncSession(
  fn: (s: { rig: VncRig; x: XDisplay; home: string }) => Promise<void>,
  vncOpts: Parameters<typeof vncRig>[1] = {},
): Promise<void> {
  const rig = await vncRig({}, vncOpts);
  const home = await tempDir("rxfb-gvnc-");
  let x: XDisplay | undefined;
  try {
    x = await startXvfb(640, 480);
    await fn({ rig, x, home: home.path });
  } finally {
    await x?.stop();
    await home.remove();
    await rig.stop();
  }
}

Deno.test({
  name:
    "gvncviewer: exact pixels with lossless Tight (JPEG quality level removed by a relay); typed keys",
  ignore: gvncSkip([[have("xdotool"), "xdotool"]]),
  fn: async () => {
    await gvncSession(async ({ rig, x, home }) => {
      paintTestPicture(rig.sim);
      const relay = startRelay(rig.port);
      const viewer = await startGvnc(x, relay.port, home);
      try {
        const want = guestRgb(rig.sim);
        const at = await waitForPicture(x, want, viewer);
        assert(relay.encodings.some((l) => l.includes(-27)), "gtk-vnc asked for JPEG quality 5");
        assert(rig.log.some((l) => /: encoding 7$/.test(l)), "Tight without quality level");
        // Keys typed into the window reach the guest as evdev codes (gtk-vnc sends
        // QEMU extended key events with XT scancodes).
        await run("xdotool", ["mousemove", String(at.x + 160), String(at.y + 100)], 10_000, {
          env: x.env,
        });
        await run("xdotool", ["type", "--delay", "50", "hi"], 10_000, { env: x.env });
        const keys = () => rig.sim.inputs.filter((e) => e.type === "key");
        await until(() => keys().length >= 4, "4 key events", 10_000);
        assertEquals(keys(), [
          { type: "key", code: 35, down: true },
          { type: "key", code: 35, down: false },
          { type: "key", code: 23, down: true },
          { type: "key", code: 23, down: false },
        ]);
        // A change in the guest shows up too.
        paintTestPicture(rig.sim, 2);
        await waitForPicture(x, guestRgb(rig.sim), viewer);
      } finally {
        await viewer.kill();
        await relay.close();
      }
    });
  },
});

Deno.test({
  name: "gvncviewer: Tight with JPEG as it asks (quality 5): solid areas exact, the rest by PSNR",
  ignore: gvncSkip(),
  fn: async () => {
    await gvncSession(async ({ rig, x, home }) => {
      paintTestPicture(rig.sim);
      const viewer = await startGvnc(x, rig.port, home);
      try {
        const want = guestRgb(rig.sim);
        // The solid blocks (rows 50-99) are fills: exact. Find them, then compare all.
        const solid = crop(want, 0, 50, 320, 50);
        const at = await waitForPicture(x, solid, viewer);
        await sleep(300);
        const got = crop(await x.screenshot(), at.x, at.y - 50, 320, 200);
        const d = diffRgb(got, want);
        const gradient = diffRgb(crop(got, 0, 0, 320, 50), crop(want, 0, 0, 320, 50));
        // Measured: gradient ~46 dB, noise ~14 dB (JPEG quality 77 with 4:2:2 on random
        // pixels), all ~20 dB. The bounds leave room for libjpeg versions.
        assert(gradient.psnr >= 38, `gradient: ${describeDiff(gradient)}`);
        assert(d.psnr >= 17, `whole picture: ${describeDiff(d)}`);
        assert(rig.log.some((l) => /: encoding 7, quality 5$/.test(l)), rig.log.join("\n"));
      } finally {
        await viewer.kill();
      }
    });
  },
});

Deno.test({
  name: "gvncviewer: VeNCrypt X509None with a self-signed certificate it trusts: exact pixels",
  ignore: gvncSkip([[have("openssl"), "openssl"], [canUnshare, "unshare --mount (util-linux)"]]),
  fn: async () => {
    const certs = await tempDir("rxfb-cert-");
    try {
      const { cert, key } = await selfSignedCert(certs.path);
      await gvncSession(async ({ rig, x, home }) => {
        paintPalettePicture(rig.sim);
        // The home mounted over the passwd home: .pki/CA/cacert.pem is the test CA.
        await Deno.mkdir(`${home}/.pki/CA`, { recursive: true });
        await Deno.copyFile(cert, `${home}/.pki/CA/cacert.pem`);
        const viewer = await startGvnc(x, rig.port, home, { pkiDir: home });
        try {
          await waitForPicture(x, guestRgb(rig.sim), viewer);
          assertStrictEquals(rig.vnc.security, "VeNCrypt X509None");
          assert(rig.log.some((l) => l.includes("security type 19 passed")), rig.log.join("\n"));
        } finally {
          await viewer.kill();
        }
      }, { tlsCert: cert, tlsKey: key });
    } finally {
      await certs.remove();
    }
  },
});

Deno.test({
  name: "gvncviewer: VeNCrypt X509None with a certificate its CA did not sign: no connection",
  ignore: gvncSkip([[have("openssl"), "openssl"], [canUnshare, "unshare --mount (util-linux)"]]),
  fn: async () => {
    // The check above is only worth something if gtk-vnc does verify: with another CA it must fail.
    const certs = await tempDir("rxfb-cert-");
    try {
      const server = await selfSignedCert(certs.path);
      await Deno.mkdir(`${certs.path}/other`);
      const other = await selfSignedCert(`${certs.path}/other`);
      await gvncSession(async ({ rig, x, home }) => {
        paintPalettePicture(rig.sim);
        await Deno.mkdir(`${home}/.pki/CA`, { recursive: true });
        await Deno.copyFile(other.cert, `${home}/.pki/CA/cacert.pem`);
        const viewer = await startGvnc(x, rig.port, home, { pkiDir: home });
        try {
          await until(() => !viewer.running, "gvncviewer to give up", 20_000);
          // The TLS handshake itself completes; gtk-vnc then checks the chain and hangs up.
          assert(/certificate|Failed to connect/i.test(viewer.output), viewer.output);
          assert(findPicture(await x.screenshot(), guestRgb(rig.sim)) === undefined);
        } finally {
          await viewer.kill();
        }
      }, { tlsCert: server.cert, tlsKey: server.key });
    } finally {
      await certs.remove();
    }
  },
});

Deno.test({
  name: "gvncviewer: VNC authentication, the password typed into its dialog: exact pixels",
  ignore: gvncSkip([[have("xdotool"), "xdotool"]]),
  fn: async () => {
    await gvncSession(async ({ rig, x, home }) => {
      paintPalettePicture(rig.sim, 3);
      const viewer = await startGvnc(x, rig.port, home);
      try {
        let id = "";
        await until(
          async () => {
            if (!viewer.running) throw new Error(`gvncviewer exited\n${viewer.output}`);
            const r = await run("xdotool", ["search", "--name", "Authentication required"], 5000, {
              env: x.env,
            });
            id = r.out.trim().split("\n")[0];
            return r.code === 0 && id !== "";
          },
          "the password dialog",
          20_000,
          200,
        );
        await run("xdotool", ["windowfocus", "--sync", id], 10_000, { env: x.env });
        await run("xdotool", ["type", "--delay", "30", "pa55word"], 10_000, { env: x.env });
        await run("xdotool", ["key", "Return"], 10_000, { env: x.env });
        await waitForPicture(x, guestRgb(rig.sim), viewer);
        assert(rig.log.some((l) => l.includes("security type 2 passed")), rig.log.join("\n"));
      } finally {
        await viewer.kill();
      }
    }, { password: enc.encode("pa55word") });
  },
});

// ---------------------------------------------------------------- noVNC

Deno.test({
  name: "noVNC in headless Chromium through websockify: canvas pixels and keys",
  ignore: skipWithout(
    haveNoVnc(),
    "chromium, websockify and the @novnc/novnc npm package",
    `${APT} chromium websockify  (and: deno cache tests/client_browser.ts)`,
  ),
  // playwright-core keeps process-wide handles (its driver, timers) after close.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    const root = noVncRoot();
    assert(
      root,
      "the @novnc/novnc npm package is not in Deno's cache (deno cache tests/client_browser.ts)",
    );
    const page = servePage(root);
    const profile = await tempDir("rxfb-chromium-");
    const browser = await launchChromium(profile.path);
    /** One guest, websockify (to the server, or to a relay), one page connected. */
    const session = async (
      opts: { relay?: boolean; quality?: number; palette?: boolean },
      fn: (s: { rig: VncRig; p: import("playwright-core").Page }) => Promise<void>,
    ) => {
      const rig = await vncRig();
      const relay = opts.relay ? startRelay(rig.port) : undefined;
      const ws = await startWebsockify(relay?.port ?? rig.port);
      const p = await browser.context.newPage();
      try {
        if (opts.palette) paintPalettePicture(rig.sim, 5);
        else paintTestPicture(rig.sim);
        await p.goto(page.url);
        await p.waitForFunction("typeof window.start === 'function'", null, { timeout: 15_000 });
        await p.evaluate(
          `window.start("ws://127.0.0.1:${ws.port}", ${JSON.stringify({ quality: opts.quality })})`,
        );
        await fn({ rig, p });
      } finally {
        await p.close().catch(() => {});
        await ws.stop();
        await relay?.close();
        await rig.stop();
      }
    };
    /** Waits until the canvas equals the guest; returns the last diff if it never does. */
    const canvasMatches = async (rig: VncRig, p: import("playwright-core").Page, ms = 15_000) => {
      const want = guestRgb(rig.sim);
      let got: Rgb | undefined;
      try {
        await until(
          async () => {
            const c = await canvasPixels(p);
            got = rgbFromRgba(c.width, c.height, c.rgba);
            return diffRgb(got, want).pixels === 0;
          },
          "the canvas to show the guest picture",
          ms,
          200,
        );
      } catch {
        throw new Error(
          `${describeDiff(diffRgb(got!, want))}; canvas at ${await keep("canvas", got!)}`,
        );
      }
    };
    try {
      await t.step("palette picture, noVNC's defaults (Tight, quality 6): exact", async () => {
        await session({ palette: true }, async ({ rig, p }) => {
          await canvasMatches(rig, p);
          assert(
            rig.log.some((l) => /: encoding 7, compress 2, quality 6$/.test(l)),
            rig.log.join("\n"),
          );
        });
      });
      await t.step(
        "test picture, quality level removed by a relay (lossless Tight): exact",
        async () => {
          await session({ relay: true }, async ({ rig, p }) => {
            await canvasMatches(rig, p);
            assert(rig.log.some((l) => /: encoding 7, compress 2$/.test(l)), rig.log.join("\n"));
            paintTestPicture(rig.sim, 9);
            await canvasMatches(rig, p);
          });
        },
      );
      for (const [quality, gradientDb, allDb] of [[6, 35, 17], [9, 40, 30]] as const) {
        await t.step(`test picture with JPEG (quality ${quality}): solid exact, PSNR`, async () => {
          await session({ quality }, async ({ rig, p }) => {
            const want = guestRgb(rig.sim);
            let d = diffRgb(want, want), grad = d, solid = d;
            await until(
              async () => {
                const c = await canvasPixels(p);
                const got = rgbFromRgba(c.width, c.height, c.rgba);
                d = diffRgb(got, want);
                solid = diffRgb(crop(got, 0, 50, 320, 50), crop(want, 0, 50, 320, 50));
                grad = diffRgb(crop(got, 0, 0, 320, 50), crop(want, 0, 0, 320, 50));
                return solid.pixels === 0 && grad.psnr >= gradientDb && d.psnr >= allDb;
              },
              `quality ${quality}: solid ${describeDiff(solid)}; gradient ${
                describeDiff(grad)
              }; all ${describeDiff(d)}`,
              15_000,
              200,
            ).catch(() => {
              throw new Error(
                `quality ${quality}: solid ${describeDiff(solid)}; gradient ${
                  describeDiff(grad)
                }; all ${describeDiff(d)}`,
              );
            });
            assert(rig.log.some((l) => new RegExp(`quality ${quality}$`).test(l)));
          });
        });
      }
      await t.step("keys typed into the page reach the guest: h, i -> KEY_H, KEY_I", async () => {
        await session({ palette: true }, async ({ rig, p }) => {
          await canvasMatches(rig, p);
          await p.evaluate("window.rfb.focus()");
          await p.keyboard.type("hi", { delay: 30 });
          const keys = () => rig.sim.inputs.filter((e) => e.type === "key");
          await until(() => keys().length >= 4, "4 key events", 10_000);
          assertEquals(keys(), [
            { type: "key", code: 35, down: true },
            { type: "key", code: 35, down: false },
            { type: "key", code: 23, down: true },
            { type: "key", code: 23, down: false },
          ]);
        });
      });
    } finally {
      await browser.close();
      await page.close();
      await profile.remove();
    }
  },
});
