/**
 * What the examples share: a simulated guest to run against, from the
 * command line. (On a Xen dom0 an example would call `attach()` with the real
 * platform instead; this build has only the simulator.)
 *
 * Flags every example takes:
 *
 *   --sim              run against a simulated Xen host and guest (the default)
 *   --domid N          the simulated domain's id (default 1)
 *   --guest PROGRAM    what the guest shows: demo, desktop, scroll, video, cursor, static,
 *                      image:PATH (default per example)
 *   --size WxH         its screen (default 640x480)
 *   --seconds N        stop after N seconds (default: at Ctrl-C)
 *
 * @module
 */
import { parseArgs } from "node:util";
import { attach, type Guest, memoryLogger, SimGuest, SimXen } from "../mod.ts";

/** A flag of an example's own, as node:util's parseArgs takes it. */
export type ExampleFlag = { type: "string"; default?: string } | {
  type: "boolean";
  default?: boolean;
};

/** A running simulated guest for an example. */
export interface ExampleGuest {
  /** The guest as any sink sees it: `display$` and `input`. */
  readonly guest: Guest;
  /** The simulator's side of it (what the guest drew, the input it read). */
  readonly sim: SimGuest;
  /** The parsed flags, the example's own included. */
  readonly flags: Record<string, string | boolean | undefined>;
  /** Resolves once the guest's keyboard is connected (input sent before is dropped). */
  keyboardReady(): Promise<void>;
  /** Resolves after `--seconds`, or at Ctrl-C / SIGTERM. */
  running(): Promise<void>;
  stop(): Promise<void>;
}

/** Parses `args` (the common flags and `own`) and boots a simulated guest. */
export async function startExampleGuest(
  args: string[],
  own: Record<string, ExampleFlag>,
  defaultProgram: string,
): Promise<ExampleGuest> {
  const { values: flags } = parseArgs({
    args,
    options: {
      sim: { type: "boolean", default: true },
      domid: { type: "string", default: "1" },
      guest: { type: "string", default: defaultProgram },
      size: { type: "string", default: "640x480" },
      seconds: { type: "string" },
      ...own,
    },
  });
  const domid = Number(flags.domid);
  const [width, height] = String(flags.size).split("x").map(Number);
  if (!(domid > 0) || !(width > 0) || !(height > 0)) {
    throw new Error(`bad --domid or --size (${flags.domid}, ${flags.size})`);
  }
  const xen = new SimXen();
  const sim = await SimGuest.create(xen, domid, { program: String(flags.guest), width, height });
  // The backend's own chatter (handshake steps) is kept quiet in the examples.
  const guest = await attach({ domid, platform: xen.platform(), log: memoryLogger() });
  await sim.boot();
  await guest.connected();
  // Start on a drawn screen: wait (a little) for the program's first frame.
  if (flags.guest !== "none" && sim.lastFrame < 0) {
    await Promise.race([sim.nextFrame(), new Promise((r) => setTimeout(r, 2000))]);
  }
  const xs = xen.platform().xenstore;
  return {
    guest,
    sim,
    flags,
    keyboardReady: async () => {
      const be = `/local/domain/0/backend/vkbd/${domid}/0/state`;
      const fe = `/local/domain/${domid}/device/vkbd/0/state`;
      while ((await xs.read(be)) !== "4" || (await xs.read(fe)) !== "4") {
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    running: () =>
      new Promise<void>((resolve) => {
        const stop = () => {
          Deno.removeSignalListener("SIGINT", stop);
          Deno.removeSignalListener("SIGTERM", stop);
          clearTimeout(timer);
          resolve();
        };
        const timer = flags.seconds === undefined
          ? undefined
          : setTimeout(stop, Number(flags.seconds) * 1000);
        Deno.addSignalListener("SIGINT", stop);
        Deno.addSignalListener("SIGTERM", stop);
      }),
    stop: async () => {
      await sim.stop();
      await guest.close();
    },
  };
}
