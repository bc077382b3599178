import { attach, type Guest } from "../sources/attach.ts";
import { memoryLogger } from "../sources/log.ts";
import { SimGuest, type SimGuestOptions } from "../sources/sim/guest.ts";
import { SimXen } from "../sources/sim/platform.ts";

/** Polls `cond` until it holds; fails with `what` after `ms`. */
export async function waitFor(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** A simulated host with one guest, served by rxfb, logs kept in memory. */
export interface Rig {
  xen: SimXen;
  sim: SimGuest;
  guest: Guest;
  log: string[];
  stop(): Promise<void>;
}

/** Creates domain `domid` running `opts.program` (default "none"), attaches, boots. */
export async function rig(
  domid = 5,
  opts: SimGuestOptions = {},
  xen = new SimXen(),
  boot = true,
): Promise<Rig> {
  const logger = memoryLogger();
  const sim = await SimGuest.create(xen, domid, {
    program: "none",
    width: 64,
    height: 48,
    ...opts,
  });
  const guest = await attach({ domid, platform: xen.platform(), log: logger });
  if (boot) {
    await sim.boot();
    await guest.connected();
    await waitFor(() => sim.fbfront!.isConnected, "fbfront Connected");
  }
  return {
    xen,
    sim,
    guest,
    log: logger.lines,
    stop: async () => {
      await sim.stop();
      await guest.close();
    },
  };
}
