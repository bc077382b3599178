/**
 * Daemon mode (`--all`): serve every guest of the host. Watches the vfb
 * backend directory, attaches to each device as it appears, detaches when
 * it goes (the domain was destroyed, or rebooted under a new id). Each guest
 * is served on its own VNC display; one guest's failure never touches
 * another; log lines carry the domain id.
 */
import type { Subscription } from "rxjs";
import { attach, type Guest } from "../sources/attach.ts";
import type { Logger } from "../sources/log.ts";
import type { Platform } from "../sources/platform.ts";
import { type ServedSinks, serveSinks, type SinkSettings } from "./serve_guest.ts";
import { DAMAGE_CPU_SHARE } from "../sinks/vnc/display_shadow.ts";

/** A running daemon. */
export interface Daemon {
  /** Domain ids served now. */
  readonly domains: ReadonlySet<number>;
  /** The sinks of a served domain (tests read its VNC port). */
  sinks(domid: number): ServedSinks | undefined;
  close(): Promise<void>;
}

interface Served {
  guest: Guest;
  sinks?: ServedSinks;
  ready: Promise<void>;
}

/** Starts serving every guest with a vfb whose backend is this domain. */
export function runDaemon(platform: Platform, settings: SinkSettings, log: Logger): Daemon {
  const base = `/local/domain/${platform.backendDomid}/backend/vfb`;
  const served = new Map<number, Served>();
  let busy = Promise.resolve();
  let closed = false;

  const start = (domid: number) => {
    const dlog = log.child(`dom${domid}`);
    const entry: Served = {} as Served;
    entry.ready = (async () => {
      entry.guest = await attach({ domid, platform, log });
      try {
        entry.sinks = await serveSinks(
          platform,
          entry.guest,
          {
            ...settings,
            vnc: settings.vnc === null ? null : undefined,
            toolstackKeys: true,
            publishPort: true,
            // One process serves every guest: none may starve the others.
            damageCpuShare: DAMAGE_CPU_SHARE,
          },
          dlog,
        );
      } catch (e) {
        dlog.error(`cannot serve: ${e instanceof Error ? e.message : e}`);
      }
    })();
    served.set(domid, entry);
    dlog.info("attached");
  };

  const stop = async (domid: number) => {
    const entry = served.get(domid);
    if (!entry) return;
    served.delete(domid);
    await entry.ready.catch(() => {});
    await entry.sinks?.close();
    await entry.guest?.close();
    log.child(`dom${domid}`).info("detached");
  };

  let queued = false;
  /** Compares the served set with the backend directory; coalesces bursts of events. */
  const rescan = () => {
    if (queued) return;
    queued = true;
    busy = busy.then(async () => {
      queued = false;
      if (closed) return;
      const names = await platform.xenstore.directory(base).catch(() => [] as string[]);
      const now = new Set(names.filter((n) => /^\d+$/.test(n)).map(Number));
      for (const domid of now) if (!served.has(domid)) start(domid);
      for (const domid of [...served.keys()]) if (!now.has(domid)) await stop(domid);
    }).catch((e) => log.error(`rescan failed: ${e instanceof Error ? e.message : e}`));
  };

  const sub: Subscription = platform.xenstore.watch(base).subscribe({
    next: () => rescan(),
    error: (e) => log.error(`watching ${base} failed: ${e}`),
  });
  log.info(`serving every guest with a vfb under ${base}`);

  return {
    get domains() {
      return new Set(served.keys());
    },
    sinks: (domid) => served.get(domid)?.sinks,
    close: async () => {
      closed = true;
      sub.unsubscribe();
      await busy;
      for (const domid of [...served.keys()]) await stop(domid);
    },
  };
}
