/**
 * Serves one attached guest with the sinks the command line asks for: the
 * VNC server (TCP, and WebSocket through the web viewer), recordings and
 * snapshots. Each sink fails alone; the toolstack's vnc keys are defaults
 * under rxfb's own flags.
 */
import type { Guest } from "../sources/attach.ts";
import type { Logger } from "../sources/log.ts";
import type { Platform } from "../sources/platform.ts";
import { serveVnc, type SharePolicy, type VncService } from "../sinks/vnc/mod.ts";
import { serveWeb, type WebService } from "../sinks/web/server.ts";
import { startVideoRecorder, videoContainerOf } from "../sinks/record/video.ts";
import { startSnapshots } from "../sinks/record/snapshot.ts";
import { recordDisplay } from "../sinks/record/fbs.ts";
import { publishVncPort, readToolstackVnc } from "./toolstack.ts";

/** The sink settings of the command line. */
export interface SinkSettings {
  /** undefined: the default address; null: no VNC TCP port. */
  vnc?: string | null;
  vncUnused: boolean;
  passwordFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  keymap?: string;
  web?: { hostname: string; port: number };
  share: SharePolicy;
  record?: string;
  recordFps: number;
  snapshot?: string;
  quiet: boolean;
  /** Read the toolstack's vnc keys from the backend directory (real Xen, device-model mode). */
  toolstackKeys?: boolean;
  /** Publish /local/domain/N/console/vnc-port (for `xl vncviewer`). */
  publishPort?: boolean;
  /** Share of a core that taking this guest's damage may use (the daemon sets one). */
  damageCpuShare?: number;
}

/** The sinks serving one guest. */
export interface ServedSinks {
  readonly vnc?: VncService;
  readonly web?: WebService;
  close(): Promise<void>;
}

/** Starts the sinks for `guest`. Throws (after cleaning up) when the VNC server cannot start. */
export async function serveSinks(
  platform: Platform,
  guest: Guest,
  s: SinkSettings,
  log: Logger,
): Promise<ServedSinks> {
  const domid = guest.domid;
  const xs = platform.xenstore;
  const name = (await xs.read(`/local/domain/${domid}/name`).catch(() => undefined)) ??
    `domain ${domid}`;
  let address = s.vnc, unused = s.vncUnused, keymap = s.keymap;
  let password: Uint8Array | undefined;
  if (s.toolstackKeys) {
    const be = `/local/domain/${platform.backendDomid}/backend/vfb/${domid}/0`;
    const t = await readToolstackVnc(xs, be);
    if (address === undefined && t.vnc === false && !s.web) address = null;
    if (address === undefined && t.address) address = t.address;
    if (!s.vncUnused && t.unused) unused = true;
    keymap ??= t.keymap;
    if (!s.passwordFile && t.password) password = new TextEncoder().encode(t.password);
  }
  let vnc: VncService | undefined, web: WebService | undefined;
  const needVnc = address !== null || !!s.web;
  try {
    if (needVnc) {
      vnc = await serveVnc(guest, {
        address: address ?? undefined,
        noListen: address === null,
        defaultDisplay: domid,
        unused,
        passwordFile: s.passwordFile,
        password,
        tlsCert: s.tlsCert,
        tlsKey: s.tlsKey,
        keymap,
        share: s.share,
        name,
        log: log.child("vnc"),
        damageCpuShare: s.damageCpuShare,
      });
      if (s.publishPort && vnc.port) {
        await publishVncPort(xs, domid, vnc.port).catch((e) =>
          log.warn(`could not publish the VNC port: ${e instanceof Error ? e.message : e}`)
        );
      }
    }
    if (s.web && vnc) {
      web = await serveWeb(vnc.server, {
        ...s.web,
        title: name,
        tlsCert: s.tlsCert,
        tlsKey: s.tlsKey,
        log: log.child("web"),
      });
      console.log(`rxfb: open ${web.url} to see domain ${domid}`);
    }
  } catch (e) {
    vnc?.close();
    await web?.close();
    throw e;
  }
  let recording: { close(): Promise<unknown> } | undefined;
  if (s.record) {
    const recLog = log.child("record");
    if (videoContainerOf(s.record)) {
      recording = startVideoRecorder(guest.display$, {
        path: s.record,
        fps: s.recordFps,
        log: recLog,
        progress: !s.quiet,
      });
    } else if (/\.fbs$/i.test(s.record)) {
      // Through a private VNC server of its own: no credentials needed, and no
      // viewer asking for exclusive access can end it.
      recording = await recordDisplay(guest, s.record, { log: recLog, name }).catch((e) => {
        recLog.error(`cannot record ${s.record}: ${e instanceof Error ? e.message : e}`);
        return undefined;
      });
    }
  }
  const snapshots = s.snapshot
    ? startSnapshots(guest.display$, s.snapshot, log.child("snapshot"))
    : undefined;

  return {
    vnc,
    web,
    close: async () => {
      await recording?.close();
      snapshots?.close();
      await web?.close();
      vnc?.close();
    },
  };
}
