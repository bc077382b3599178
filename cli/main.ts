import { parseFlags } from "@rxfb/flags";
import { attach } from "../sources/attach.ts";
import { consoleLogger } from "../sources/log.ts";
import { SimGuest } from "../sources/sim/guest.ts";
import { SimXen } from "../sources/sim/platform.ts";
import { PROGRAM_NAMES } from "../sources/sim/programs/mod.ts";
import { findXen } from "../sources/xen/detect.ts";
import { parseVncAddress, serveVnc, type SharePolicy } from "../sinks/vnc/mod.ts";
import { parseWebAddress, serveWeb } from "../sinks/web/server.ts";

export const USAGE = `Usage: deno run -A mod.ts [--sim] --domid N [options]

rxfb serves the display and input of a Xen PV guest's vfb/vkbd.

  --domid N            the guest's domain id (required)
  --sim                run against a simulated Xen host and guest (no Xen needed)
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
  --quiet              log warnings and errors only
  -h, --help           this text
`;

const FLAGS = {
  domid: { type: "string" },
  d: { type: "string" },
  sim: { type: "boolean" },
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
  quiet: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** A command-line mistake: printed with the usage, exit status 2. */
export class UsageError extends Error {}

/** The settings the command line asks for. */
export interface CliOptions {
  domid: number;
  sim: boolean;
  guest: string;
  width: number;
  height: number;
  depth: number;
  rate: number | "max";
  flavour: "linux" | "minios";
  inputLog?: string;
  /** undefined: the default address; null: no VNC server. */
  vnc?: string | null;
  vncUnused: boolean;
  passwordFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  keymap?: string;
  web?: { hostname: string; port: number };
  share: SharePolicy;
  quiet: boolean;
  help: boolean;
}

function int(v: string, what: string, min: number, max: number): number {
  if (!/^\d+$/.test(v)) throw new UsageError(`${what} must be a number, not "${v}"`);
  const n = Number(v);
  if (n < min || n > max) throw new UsageError(`${what} must be in ${min}..${max}, not ${n}`);
  return n;
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
  if (domidText === undefined && !help) throw new UsageError("--domid N is required");
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
    domid,
    sim: f.sim === true,
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

/** Runs rxfb from the command line; resolves with the exit status. */
export async function main(args: string[]): Promise<number> {
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
  if (!o.sim) {
    const xen = await findXen();
    if (!xen.found) {
      console.error(
        `rxfb: no Xen found (${xen.why}); run it in a Xen dom0, or add --sim to serve a simulated guest`,
      );
      return 1;
    }
    console.error(
      `rxfb: Xen found (${xen.why}), but this build has no real-Xen platform yet; use --sim`,
    );
    return 1;
  }

  const xen = new SimXen();
  let guest;
  try {
    guest = await SimGuest.create(xen, o.domid, {
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
    return 1;
  }
  log.info(`simulated domain ${o.domid} "${guest.domain.name}" created (${o.guest})`);
  const served = await attach({ domid: o.domid, platform: xen.platform(), log });
  await guest.boot();
  const fb = await served.connected();
  log.info(`dom${o.domid}: serving ${fb.width}x${fb.height} framebuffer; Ctrl-C stops`);
  const name = (await xen.platform().xenstore.read(`/local/domain/${o.domid}/name`)) ??
    `domain ${o.domid}`;
  let vnc, web;
  const vncLog = log.child(`dom${o.domid} vnc`);
  try {
    if (o.vnc !== null || o.web) {
      vnc = await serveVnc(served, {
        address: o.vnc ?? undefined,
        noListen: o.vnc === null,
        defaultDisplay: o.domid,
        unused: o.vncUnused,
        passwordFile: o.passwordFile,
        tlsCert: o.tlsCert,
        tlsKey: o.tlsKey,
        keymap: o.keymap,
        share: o.share,
        name,
        log: vncLog,
      });
    }
    if (o.web && vnc) {
      web = await serveWeb(vnc.server, {
        ...o.web,
        title: name,
        tlsCert: o.tlsCert,
        tlsKey: o.tlsKey,
        log: log.child(`dom${o.domid} web`),
      });
      console.log(`rxfb: open ${web.url} to see domain ${o.domid}`);
    }
  } catch (e) {
    console.error(`rxfb: ${e instanceof Error ? e.message : e}`);
    vnc?.close();
    await guest.stop();
    await served.close();
    return 1;
  }
  const sub = vnc ? undefined : served.display$.subscribe(); // keep the guest refreshing

  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
  });
  sub?.unsubscribe();
  await web?.close();
  vnc?.close();
  await guest.stop();
  await served.close();
  log.info("stopped");
  return 0;
}
