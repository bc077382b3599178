import { attach, type Guest } from "../sources/attach.ts";
import { memoryLogger } from "../sources/log.ts";
import { SimGuest, type SimGuestOptions } from "../sources/sim/guest.ts";
import { SimXen } from "../sources/sim/platform.ts";
import { serveVnc, type VncOptions, type VncService } from "../sinks/vnc/mod.ts";
import { waitFor } from "./helpers.ts";
import { mulberry32 } from "./prng.ts";

/** A simulated guest served by rxfb's VNC server on a free display, in this process. */
export interface VncRig {
  xen: SimXen;
  sim: SimGuest;
  guest: Guest;
  vnc: VncService;
  /** "127.0.0.1::PORT" / host and port for clients. */
  port: number;
  log: string[];
  stop(): Promise<void>;
}

let nextDisplay = 40 + (Deno.pid % 200);

/**
 * Starts domain `domid` running `guestOpts.program` (default "none": the test
 * fills the framebuffer itself) and a VNC server for it on the first free
 * display from a per-process base, so parallel test files do not collide.
 */
export async function vncRig(
  guestOpts: SimGuestOptions = {},
  vncOpts: Partial<VncOptions> = {},
  domid = 7,
): Promise<VncRig> {
  const xen = new SimXen();
  const logger = memoryLogger();
  const sim = await SimGuest.create(xen, domid, {
    program: "none",
    width: 320,
    height: 200,
    ...guestOpts,
  });
  const guest = await attach({ domid, platform: xen.platform(), log: logger });
  await sim.boot();
  await guest.connected();
  await waitFor(() => sim.fbfront!.isConnected, "fbfront Connected");
  const vnc = await serveVnc(guest, {
    defaultDisplay: nextDisplay,
    unused: true,
    name: `domain ${domid}`,
    log: logger.child("vnc"),
    ...vncOpts,
  });
  nextDisplay = vnc.display + 1;
  return {
    xen,
    sim,
    guest,
    vnc,
    port: vnc.port,
    log: logger.lines,
    stop: async () => {
      vnc.close();
      await sim.stop();
      await guest.close();
    },
  };
}

/** Fills a 32-bpp guest framebuffer with a test picture: gradients, text-like noise, solid blocks. */
export function paintTestPicture(sim: SimGuest, seed = 1): void {
  const fb = sim.fbfront!.fb;
  const px = new Uint32Array(fb.sab, fb.byteOffset, (fb.stride / 4) * fb.height);
  const rnd = mulberry32(seed);
  const w = fb.width, h = fb.height, sw = fb.stride / 4;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let v: number;
      if (y < h / 4) v = ((x * 255 / w) << 16) | ((y * 4 * 255 / h) << 8) | 0x40; // gradient
      else if (y < h / 2) v = x < w / 2 ? 0x3050a0 : 0xc0c0c0; // solid blocks
      else if (y < (3 * h) / 4) v = rnd() < 0.2 ? 0xffffff : 0x101010; // text-like
      else v = (rnd() * 0xffffff) | 0; // noise
      px[y * sw + x] = v & 0xffffff;
    }
  }
  sim.fbfront!.damage([{ x: 0, y: 0, w, h }]);
}
