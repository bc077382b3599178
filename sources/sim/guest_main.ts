/**
 * A simulated guest in its own process, on a simulated host in another
 * (sim/host_main.ts): creates domain N through the host's hypervisor service
 * as the toolstack does (its xenstore home, a vfb and a vkbd), boots Linux-
 * like frontends on it and runs a guest program, whose framebuffer is a
 * /dev/shm file that rxfb's backend maps from a third process.
 *
 * ```sh
 * deno run -A sources/sim/guest_main.ts --host PATH --domid N [--guest demo] [--size WxH]
 *     [--depth BITS] [--rate FPS|max] [--flavour linux|minios] [--input-log FILE]
 *     [--name NAME] [--no-keyboard] [--quiet]
 * ```
 *
 * SIGINT or SIGTERM shuts the guest down (frontends Closing, Closed) and
 * destroys the domain; the process dying any other way (even SIGKILL)
 * destroys it too, as the host ends its session. Exits 1 when the host goes.
 */
import { parseArgs } from "node:util";
import { consoleLogger } from "../log.ts";
import { SimGuest, simGuestName, type SimGuestOptions } from "./guest.ts";
import { PROGRAM_NAMES } from "./programs/mod.ts";
import { type RemoteDevice, RemoteDomain } from "./remote.ts";

const USAGE = `Usage: deno run -A sources/sim/guest_main.ts --host PATH --domid N [options]

Runs a simulated PV guest as its own process on the simulated host at PATH
(sources/sim/host_main.ts PATH). rxfb attaches with: mod.ts --domid N --sim-host PATH

  --host PATH          the host's xenstore socket (its hypervisor is PATH.hv)
  --domid N            the domain to create, 1..32751
  --name NAME          the domain's name (default sim-PROGRAM-N)
  --guest PROGRAM      ${PROGRAM_NAMES.join(", ")}, or none (default demo)
  --size WxH           framebuffer size (default 1024x768)
  --depth BITS         8, 16, 24 or 32 (default 32)
  --rate FPS|max       frames a second the program offers (default 60)
  --flavour F          linux (default) or minios
  --input-log FILE     append each input event the guest reads as a JSON line
  --no-keyboard        no vkbd
  --quiet              log warnings and errors only
`;

class UsageError extends Error {}

function int(v: string, what: string, min: number, max: number): number {
  if (!/^\d+$/.test(v)) throw new UsageError(`${what} must be a number, not "${v}"`);
  const n = Number(v);
  if (n < min || n > max) throw new UsageError(`${what} must be in ${min}..${max}, not ${n}`);
  return n;
}

/** The guest's settings from argv. */
export function parseGuestArgs(args: string[]): {
  host: string;
  domid: number;
  name?: string;
  keyboard: boolean;
  quiet: boolean;
  help: boolean;
  guest: SimGuestOptions;
} {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        host: { type: "string" },
        domid: { type: "string" },
        name: { type: "string" },
        guest: { type: "string" },
        size: { type: "string" },
        depth: { type: "string" },
        rate: { type: "string" },
        flavour: { type: "string" },
        "input-log": { type: "string" },
        "no-keyboard": { type: "boolean" },
        quiet: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  const help = values.help === true;
  if (!help && (!values.host || !values.domid)) {
    throw new UsageError("--host PATH and --domid N are required");
  }
  const domid = values.domid ? int(values.domid, "--domid", 1, 32751) : 0;
  const size = values.size ?? "1024x768";
  const m = /^(\d+)x(\d+)$/.exec(size);
  if (!m) throw new UsageError(`--size must be WxH, e.g. 1024x768, not "${size}"`);
  const depth = int(values.depth ?? "32", "--depth", 8, 32);
  if (![8, 16, 24, 32].includes(depth)) throw new UsageError("--depth must be 8, 16, 24 or 32");
  const rate = values.rate === "max" ? "max" : int(values.rate ?? "60", "--rate", 1, 1000);
  const flavour = values.flavour ?? "linux";
  if (flavour !== "linux" && flavour !== "minios") {
    throw new UsageError("--flavour must be linux or minios");
  }
  const keyboard = values["no-keyboard"] !== true;
  return {
    host: values.host ?? "",
    domid,
    name: values.name,
    keyboard,
    quiet: values.quiet === true,
    help,
    guest: {
      program: values.guest ?? "demo",
      width: int(m[1], "width", 1, 8192),
      height: int(m[2], "height", 1, 8192),
      depth,
      rate,
      flavour,
      inputLog: values["input-log"],
      keyboard,
    },
  };
}

/** Runs the guest from the command line; resolves with the exit status. */
export async function guestMain(args: string[]): Promise<number> {
  let o;
  try {
    o = parseGuestArgs(args);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`rxfb sim-guest: ${e.message}\n\n${USAGE}`);
    return 2;
  }
  if (o.help) {
    console.log(USAGE);
    return 0;
  }
  const log = consoleLogger(`rxfb sim-guest dom${o.domid}`, o.quiet);
  const program = o.guest.program ?? "demo";
  const name = o.name ?? simGuestName(program, o.domid);
  const devices: RemoteDevice[] = [{ kind: "vfb" }];
  if (o.keyboard) devices.push({ kind: "vkbd" });
  let dom: RemoteDomain;
  let sim: SimGuest<RemoteDomain>;
  try {
    dom = await RemoteDomain.create(o.host, o.domid, name, devices);
  } catch (e) {
    console.error(
      `rxfb sim-guest: cannot create domain ${o.domid}: ${e instanceof Error ? e.message : e}`,
    );
    return 1;
  }
  try {
    sim = await SimGuest.onDomain(dom, { ...o.guest, log });
    await sim.boot();
  } catch (e) {
    console.error(`rxfb sim-guest: ${e instanceof Error ? e.message : e}`);
    dom.close();
    return 1;
  }
  const fb = sim.fbfront!.fb;
  log.info(
    `domain ${o.domid} "${name}" running ${program} on a ${fb.width}x${fb.height}x${fb.depth} ` +
      `framebuffer (${fb.file?.path}); Ctrl-C stops`,
  );
  const signalled = new Promise<undefined>((resolve) => {
    let once = false;
    const stop = () => {
      if (once) Deno.exit(1);
      once = true;
      resolve(undefined);
    };
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
  });
  const lost = await Promise.race([signalled, dom.lost]);
  if (lost !== undefined) {
    log.error(`the simulated host went away (${lost})`);
    await sim.stop();
    dom.close();
    return 1;
  }
  // A clean shutdown: the frontends close, then the domain is destroyed.
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    sim.shutdown().catch(() => {}),
    new Promise((r) => timer = setTimeout(r, 3000)),
  ]);
  clearTimeout(timer);
  await sim.stop();
  dom.close();
  log.info("stopped");
  return 0;
}

if (import.meta.main) Deno.exit(await guestMain(Deno.args));
