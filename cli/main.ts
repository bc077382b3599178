import { parseFlags } from "@rxfb/flags";
import { attach, type Guest } from "../sources/attach.ts";
import { consoleLogger, type Logger } from "../sources/log.ts";
import type { Platform } from "../sources/platform.ts";
import { SimGuest } from "../sources/sim/guest.ts";
import { SimXen } from "../sources/sim/platform.ts";
import { PROGRAM_NAMES } from "../sources/sim/programs/mod.ts";
import { findXen } from "../sources/xen/detect.ts";
import { parseVncAddress } from "../sinks/vnc/mod.ts";
import { parseWebAddress } from "../sinks/web/server.ts";
import { videoContainerOf } from "../sinks/record/video.ts";
import { serveXenstore } from "../sources/sim/xenstore_server.ts";
import { openXenPlatform } from "../sources/xen/platform.ts";
import { openSimHostPlatform } from "../sources/sim/remote.ts";
import { runDaemon } from "./daemon.ts";
import { serveSinks, type SinkSettings } from "./serve_guest.ts";
import { type DeviceModelArgs, markDeviceModelRunning, parseDeviceModelArgs } from "./toolstack.ts";

export const USAGE = `Usage: deno run -A mod.ts [--sim] --domid N [options]
       deno run -A mod.ts --all [options]
       deno run -A mod.ts --domid N|--all --sim-host PATH [options]
       rxfb -d DOMID -domain-name NAME -nographic -M xenpv   (as libxl's device model)

rxfb serves the display and input of a Xen PV guest's vfb/vkbd.

  --domid N            the guest's domain id (required unless --all)
  --all                serve every guest of this host as its vfb appears (daemon mode)
  --sim                run against a simulated Xen host and guest (no Xen needed)
  --xenstore-socket P  sim: also serve the simulated xenstore on UNIX socket P
                       (xenstore-ls etc. with XENSTORED_PATH=P)
  --sim-host PATH      instead of real Xen, the simulated host of
                       "deno run -A sources/sim/host_main.ts PATH", whose guests
                       are processes of their own (sources/sim/guest_main.ts)
  --guest PROGRAM      sim: what the guest shows: ${PROGRAM_NAMES.join(", ")} (default demo)
  --size WxH           sim: framebuffer size (default 1024x768)
  --depth BITS         sim: framebuffer depth 8, 16, 24 or 32 (default 32)
  --rate FPS|max       sim: frames a second the guest program offers (default 60)
  --flavour F          sim: frontend like "linux" (default) or "minios" (obeys refresh period)
  --input-log FILE     sim: the guest appends each input event it reads as a JSON line
  --vnc HOST:DISPLAY   VNC server on port 5900+DISPLAY (default 127.0.0.1:DOMID); "none" for no VNC
  --vnc-unused         take the first free display from DISPLAY on
  --password-file FILE VNC authentication with the password on the file's first line
  --tls-cert FILE      VeNCrypt TLS certificate (PEM), with --tls-key
  --tls-key FILE       VeNCrypt TLS private key (PEM)
  --web [HOST:]PORT    browser viewer (noVNC) and RFB over WebSocket on this port (host 127.0.0.1)
  --keymap NAME        keyboard layout for keysym clients (default en-us; de, fr, ...)
  --share POLICY       allow-exclusive (default), force-shared or ignore, as QEMU's share=
  --record PATH        record the screen: .mp4 (H.264) or .webm (VP9) through ffmpeg,
                       or .fbs (the VNC session); Ctrl-C or SIGTERM finishes the file
  --record-fps N       frames a second of a .mp4/.webm recording (default 25; an
                       unchanged screen repeats the last frame)
  --snapshot PATH.png  write a PNG of the screen once it is drawn, and again on each SIGUSR1
  --quiet              log warnings and errors only
  -h, --help           this text
`;

const FLAGS = {
  domid: { type: "string" },
  d: { type: "string" },
  sim: { type: "boolean" },
  all: { type: "boolean" },
  "xenstore-socket": { type: "string" },
  "sim-host": { type: "string" },
  guest: { type: "string" },
  size: { type: "string" },
  depth: { type: "string" },
  rate: { type: "string" },
  flavour: { type: "string" },
  "input-log": { type: "string" },
  vnc: { type: "string" },
  "vnc-unused": { type: "boolean" },
  "password-file": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  keymap: { type: "string" },
  web: { type: "string" },
  share: { type: "string" },
  record: { type: "string" },
  "record-fps": { type: "string" },
  snapshot: { type: "string" },
  quiet: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** A command-line mistake: printed with the usage, exit status 2. */
export class UsageError extends Error {}

/** The settings the command line asks for. */
export interface CliOptions extends SinkSettings {
  domid: number;
  sim: boolean;
  all: boolean;
  xenstoreSocket?: string;
  /** --sim-host: the xenstore socket of a simulated host in another process. */
  simHost?: string;
  guest: string;
  width: number;
  height: number;
  depth: number;
  rate: number | "max";
  flavour: "linux" | "minios";
  inputLog?: string;
  // The sink settings (--vnc, --web, --record, ...) come from SinkSettings.
  help: boolean;
}

function int(v: string, what: string, min: number, max: number): number {
  if (!/^\d+$/.test(v)) throw new UsageError(`${what} must be a number, not "${v}"`);
  const n = Number(v);
  if (n < min || n > max) throw new UsageError(`${what} must be in ${min}..${max}, not ${n}`);
  return n;
}

/** What `--record PATH` records, by the path's extension. */
export function recordKind(path: string): "mp4" | "webm" | "fbs" | undefined {
  return videoContainerOf(path) ?? (/\.fbs$/i.test(path) ? "fbs" : undefined);
}

/** Parses and checks argv. Throws UsageError with a readable message. */
export function parseCli(args: string[]): CliOptions {
  let f;
  try {
    f = parseFlags(args, FLAGS);
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  const s = (k: keyof typeof FLAGS) => f[k] as string | undefined;
  const help = f.help === true;
  const domidText = s("domid") ?? s("d");
  const all = f.all === true;
  if (all && domidText !== undefined) throw new UsageError("--all serves every domain: no --domid");
  if (all && f.sim === true) {
    throw new UsageError("--all needs real Xen or --sim-host PATH (a simulated host of its own)");
  }
  if (domidText === undefined && !help && !all) throw new UsageError("--domid N is required");
  const simHost = s("sim-host");
  if (simHost !== undefined && f.sim === true) {
    throw new UsageError("--sim-host attaches to a simulated host of its own: no --sim");
  }
  if (simHost !== undefined && s("xenstore-socket") !== undefined) {
    throw new UsageError("--xenstore-socket is for --sim (the host serves its own)");
  }
  const domid = domidText === undefined ? 0 : int(domidText, "--domid", 1, 32751);
  const size = s("size") ?? "1024x768";
  const m = /^(\d+)x(\d+)$/.exec(size);
  if (!m) throw new UsageError(`--size must be WxH, e.g. 1024x768, not "${size}"`);
  const width = int(m[1], "width", 1, 8192), height = int(m[2], "height", 1, 8192);
  const depth = int(s("depth") ?? "32", "--depth", 8, 32);
  if (![8, 16, 24, 32].includes(depth)) throw new UsageError(`--depth must be 8, 16, 24 or 32`);
  const rateText = s("rate") ?? "60";
  const rate = rateText === "max" ? "max" : int(rateText, "--rate", 1, 1000);
  const flavour = s("flavour") ?? "linux";
  if (flavour !== "linux" && flavour !== "minios") {
    throw new UsageError(`--flavour must be linux or minios`);
  }
  const share = s("share") ?? "allow-exclusive";
  if (share !== "allow-exclusive" && share !== "force-shared" && share !== "ignore") {
    throw new UsageError(`--share must be allow-exclusive, force-shared or ignore`);
  }
  const vnc = s("vnc") === "none" ? null : s("vnc");
  if (vnc) {
    try {
      parseVncAddress(vnc, domid);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  let web;
  if (s("web") !== undefined) {
    try {
      web = parseWebAddress(s("web")!);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  const record = s("record");
  if (record !== undefined && !recordKind(record)) {
    throw new UsageError(`--record must name a .mp4, .webm or .fbs file, not "${record}"`);
  }
  const fpsText = s("record-fps");
  if (fpsText !== undefined && record === undefined) {
    throw new UsageError("--record-fps goes with --record");
  }
  if (fpsText !== undefined && recordKind(record!) === "fbs") {
    throw new UsageError("--record-fps is for .mp4 and .webm recordings");
  }
  const recordFps = int(fpsText ?? "25", "--record-fps", 1, 120);
  const snapshot = s("snapshot");
  if (snapshot !== undefined && !/\.png$/i.test(snapshot)) {
    throw new UsageError(`--snapshot must name a .png file, not "${snapshot}"`);
  }
  if (!!s("tls-cert") !== !!s("tls-key")) {
    throw new UsageError("--tls-cert and --tls-key go together");
  }
  return {
    vnc,
    vncUnused: f["vnc-unused"] === true,
    passwordFile: s("password-file"),
    tlsCert: s("tls-cert"),
    tlsKey: s("tls-key"),
    keymap: s("keymap"),
    web,
    share,
    record,
    recordFps,
    snapshot,
    domid,
    sim: f.sim === true,
    all,
    xenstoreSocket: s("xenstore-socket"),
    simHost,
    guest: s("guest") ?? "demo",
    width,
    height,
    depth,
    rate,
    flavour,
    inputLog: s("input-log"),
    quiet: f.quiet === true,
    help,
  };
}

/** Resolves on the first SIGINT or SIGTERM; a second one exits at once. */
function untilSignalled(): Promise<void> {
  return new Promise<void>((resolve) => {
    let signalled = false;
    const stop = () => {
      if (signalled) {
        console.error("rxfb: stopping at once (second signal)");
        Deno.exit(1);
      }
      signalled = true;
      resolve();
    };
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
    // libxl ends a device model with SIGHUP (xl destroy, guest reboot).
    Deno.addSignalListener("SIGHUP", stop);
  });
}

/** Opens the real Xen platform, or says in one line why it cannot. */
async function realXen(): Promise<Platform & { close(): Promise<void> } | undefined> {
  const found = await findXen();
  if (!found.found) {
    console.error(
      `rxfb: no Xen found (${found.why}); run it in a Xen dom0, or add --sim to serve a simulated guest`,
    );
    return undefined;
  }
  try {
    return await openXenPlatform();
  } catch (e) {
    console.error(`rxfb: ${e instanceof Error ? e.message : e}`);
    return undefined;
  }
}

/** The simulated host of --sim-host, or one line saying why it cannot be reached. */
async function simHostPlatform(path: string, log: Logger) {
  try {
    const p = await openSimHostPlatform(path);
    log.info(`simulated host at ${path} (hypervisor ${p.hv.path}, host pid ${p.hv.hostPid})`);
    return p;
  } catch (e) {
    console.error(
      `rxfb: cannot reach the simulated host at ${path} ` +
        `(${e instanceof Error ? e.message : e}); start it with ` +
        `"deno run -A sources/sim/host_main.ts ${path}"`,
    );
    return undefined;
  }
}

/** Serves one attached guest until a signal (or `until`); returns the exit status. */
async function serveUntilSignalled(
  platform: Platform,
  guest: Guest,
  settings: SinkSettings,
  log: Logger,
  cleanup: () => Promise<void>,
  until?: Promise<unknown>,
): Promise<number> {
  let sinks;
  try {
    sinks = await serveSinks(platform, guest, settings, log.child(`dom${guest.domid}`));
  } catch (e) {
    console.error(`rxfb: ${e instanceof Error ? e.message : e}`);
    await guest.close();
    await cleanup();
    return 1;
  }
  await Promise.race([untilSignalled(), until ?? new Promise(() => {})]);
  await sinks.close();
  await guest.close();
  await cleanup();
  log.info("stopped");
  return 0;
}

/**
 * libxl's device-model slot: `-d DOMID -domain-name NAME -nographic -M xenpv`.
 * Writes the backend feature keys at once (before the guest's frontends
 * probe), tells libxl it is running, then serves the guest with the
 * toolstack's vnc settings; ends when the domain goes away or on a signal.
 */
async function deviceModel(dm: DeviceModelArgs): Promise<number> {
  const log = consoleLogger("rxfb");
  log.info(`device model for domain ${dm.domid}${dm.domainName ? ` "${dm.domainName}"` : ""}`);
  if (dm.ignored.length) log.info(`ignoring qemu-dm options: ${dm.ignored.join(" ")}`);
  const platform = await realXen();
  if (!platform) return 1;
  const guest = await attach({ domid: dm.domid, platform, log });
  await markDeviceModelRunning(platform.xenstore, platform.backendDomid, dm.domid);
  const settings: SinkSettings = {
    vnc: dm.vnc?.replace(/,.*$/, ""),
    vncUnused: dm.vncUnused,
    keymap: dm.keymap,
    share: "allow-exclusive",
    recordFps: 25,
    quiet: false,
    toolstackKeys: true,
    publishPort: true,
  };
  // The domain going away ends the device model, as it ends qemu-dm.
  const gone = new Promise<void>((resolve) => {
    platform.xenstore.watch(`/local/domain/${dm.domid}`).subscribe(async () => {
      if (
        (await platform.xenstore.read(`/local/domain/${dm.domid}/name`).catch(() => undefined)) ===
          undefined
      ) {
        resolve();
      }
    });
  });
  let sinks;
  try {
    sinks = await serveSinks(platform, guest, settings, log.child(`dom${dm.domid}`));
  } catch (e) {
    console.error(`rxfb: ${e instanceof Error ? e.message : e}`);
  }
  await Promise.race([untilSignalled(), gone]);
  await sinks?.close();
  await guest.close();
  await platform.close();
  log.info("stopped");
  return 0;
}

/** Runs rxfb from the command line; resolves with the exit status. */
export async function main(args: string[]): Promise<number> {
  let dm: DeviceModelArgs | undefined;
  try {
    dm = parseDeviceModelArgs(args);
  } catch (e) {
    console.error(`rxfb: ${e instanceof Error ? e.message : e}`);
    return 2;
  }
  if (dm) return await deviceModel(dm);
  let o: CliOptions;
  try {
    o = parseCli(args);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`rxfb: ${e.message}\n\n${USAGE}`);
    return 2;
  }
  if (o.help) {
    console.log(USAGE);
    return 0;
  }
  const log = consoleLogger("rxfb", o.quiet);

  if (o.simHost !== undefined) {
    const platform = await simHostPlatform(o.simHost, log);
    if (!platform) return 1;
    let hostGone = false;
    const gone = platform.lost.then((why) => {
      hostGone = true;
      log.error(`the simulated host went away (${why})`);
    });
    if (o.all) {
      const daemon = runDaemon(platform, o, log);
      await Promise.race([untilSignalled(), gone]);
      await daemon.close();
      await platform.close();
      log.info("stopped");
      return hostGone ? 1 : 0;
    }
    const guest = await attach({ domid: o.domid, platform, log });
    const code = await serveUntilSignalled(
      platform,
      guest,
      { ...o, toolstackKeys: true, publishPort: true },
      log,
      () => platform.close(),
      gone,
    );
    return hostGone ? 1 : code;
  }

  if (o.all) {
    const platform = await realXen();
    if (!platform) return 1;
    const daemon = runDaemon(platform, o, log);
    await untilSignalled();
    await daemon.close();
    await platform.close();
    log.info("stopped");
    return 0;
  }

  if (!o.sim) {
    const platform = await realXen();
    if (!platform) return 1;
    const guest = await attach({ domid: o.domid, platform, log });
    return await serveUntilSignalled(
      platform,
      guest,
      { ...o, toolstackKeys: true, publishPort: true },
      log,
      () => platform.close(),
    );
  }

  const xen = new SimXen();
  const xsServer = o.xenstoreSocket
    ? serveXenstore(xen.xenstored, o.xenstoreSocket, { log: log.child("xenstore") })
    : undefined;
  if (xsServer) {
    log.info(`simulated xenstore on ${o.xenstoreSocket} (XENSTORED_PATH=${o.xenstoreSocket})`);
  }
  let sim;
  try {
    sim = await SimGuest.create(xen, o.domid, {
      program: o.guest,
      width: o.width,
      height: o.height,
      depth: o.depth,
      rate: o.rate,
      flavour: o.flavour,
      inputLog: o.inputLog,
      log: log.child(`dom${o.domid} guest`),
    });
  } catch (e) {
    console.error(`rxfb: ${e instanceof Error ? e.message : e}`);
    xsServer?.close();
    return 1;
  }
  log.info(`simulated domain ${o.domid} "${sim.domain.name}" created (${o.guest})`);
  const platform = xen.platform();
  const guest = await attach({ domid: o.domid, platform, log });
  await sim.boot();
  const fb = await guest.connected();
  log.info(`dom${o.domid}: serving ${fb.width}x${fb.height} framebuffer; Ctrl-C stops`);
  const simGuest = sim;
  return await serveUntilSignalled(platform, guest, o, log, async () => {
    await simGuest.stop();
    xsServer?.close();
  });
}
