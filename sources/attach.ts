import { config, type Observable, type Observer } from "rxjs";
import type { DisplayEvent, InputEvent } from "../pipeline/events.ts";
import type { Framebuffer } from "../pipeline/framebuffer.ts";
import { type BackendPhase, XenbusBackend } from "./device/backend.ts";
import { VfbDevice, type VfbOptions } from "./device/vfb.ts";
import { VkbdDevice } from "./device/vkbd.ts";
import { consoleLogger, type Logger } from "./log.ts";
import type { Platform } from "./platform.ts";

// A sink's exception must never take the backend down: RxJS would rethrow it
// on a timer, which ends a Deno process. Log it instead.
config.onUnhandledError = (err) => {
  console.error(`rxfb: error: a subscriber threw: ${err instanceof Error ? err.stack : err}`);
};

/** Options of {@link attach}. */
export interface AttachOptions {
  /** The guest's domain id. */
  domid: number;
  /** Where the guest lives: `new SimXen().platform()` or the real Xen platform. */
  platform: Platform;
  /** Device index (vfb/N, vkbd/N). Default 0. */
  devid?: number;
  /** Attach the keyboard too (default true). */
  keyboard?: boolean;
  log?: Logger;
  vfb?: VfbOptions;
}

/** A guest whose vfb and vkbd rxfb serves. */
export interface Guest {
  readonly domid: number;
  /**
   * The guest's display. Each subscriber first gets a resize (once the
   * frontend connected), then damage, and a fresh resize after the guest
   * resizes or reconnects. While anyone subscribes the guest is advised a
   * refresh period; when the last one leaves, XENFB_NO_REFRESH.
   */
  readonly display$: Observable<DisplayEvent>;
  /** Input towards the guest's keyboard ring. */
  readonly input: Observer<InputEvent>;
  /** The framebuffer now, or undefined while disconnected. */
  framebuffer(): Framebuffer | undefined;
  /** True when the guest takes absolute pointer positions. */
  pointerIsAbsolute(): boolean;
  /** Resolves with the framebuffer once the vfb is connected. */
  connected(): Promise<Framebuffer>;
  /** Phases of the vfb handshake, for logs and tests. */
  readonly phases: BackendPhase[];
  /** Stops serving the guest and unmaps its memory. */
  close(): Promise<void>;
}

/**
 * Attaches rxfb's backend to a guest's vfb (and vkbd): writes the backend
 * feature keys, follows the xenbus handshake, maps the framebuffer, and gives
 * its display as an Observable and its input as an Observer.
 *
 * @example
 * ```ts
 * import { attach, SimGuest, SimXen } from "../mod.ts";
 * import { filter, firstValueFrom } from "rxjs";
 *
 * const xen = new SimXen();
 * const sim = await SimGuest.create(xen, 3, { program: "cursor", width: 320, height: 200 });
 * const guest = await attach({ domid: 3, platform: xen.platform() });
 * await sim.boot();
 * const first = await firstValueFrom(guest.display$.pipe(filter((e) => e.type === "resize")));
 * console.log(first.type === "resize" && `${first.fb.width}x${first.fb.height}`); // 320x200
 * guest.input.next({ type: "key", code: 30, down: true }); // KEY_A
 * await sim.stop();
 * await guest.close();
 * ```
 */
export async function attach(opts: AttachOptions): Promise<Guest> {
  const { domid, platform } = opts;
  const devid = opts.devid ?? 0;
  const log = (opts.log ?? consoleLogger()).child(`dom${domid}`);
  const phases: BackendPhase[] = [];
  const beBase = `/local/domain/${platform.backendDomid}/backend`;
  let vfbBackend: XenbusBackend | undefined = undefined;
  const vfb = new VfbDevice(
    platform,
    domid,
    log.child(`vfb/${devid}`),
    opts.vfb,
    (reason) => vfbBackend?.fail(reason),
  );
  vfbBackend = new XenbusBackend(
    platform,
    `${beBase}/vfb/${domid}/${devid}`,
    vfb,
    log.child(`vfb/${devid}`),
    (p) => phases.push(p),
  );
  const backends = [vfbBackend];
  const vkbd = new VkbdDevice(platform, domid, log.child(`vkbd/${devid}`), () => vfb.framebuffer);
  if (opts.keyboard !== false) {
    backends.push(
      new XenbusBackend(
        platform,
        `${beBase}/vkbd/${domid}/${devid}`,
        vkbd,
        log.child(`vkbd/${devid}`),
      ),
    );
  }
  // Write the feature keys at once, before the guest's frontends probe.
  for (const b of backends) b.start();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<void>((r) => timer = setTimeout(r, 3000));
  await Promise.race([Promise.all(backends.map((b) => b.ready)), late]);
  clearTimeout(timer);
  const display$ = vfb.display$;
  return {
    domid,
    display$,
    input: vkbd.input,
    framebuffer: () => vfb.framebuffer,
    pointerIsAbsolute: () => vkbd.absolute,
    connected: () => vfb.whenConnected(),
    phases,
    close: async () => {
      for (const b of backends) await b.stop();
    },
  };
}
