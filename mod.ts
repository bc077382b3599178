/**
 * rxfb: the display and input backend for Xen PV guests, as a reactive
 * pipeline. Attach to a guest's vfb/vkbd (real Xen or the simulator), get
 * its display as an `Observable<DisplayEvent>` and send it `InputEvent`s.
 *
 * @example
 * ```ts
 * import { attach, coalesceDamage, SimGuest, SimXen } from "./mod.ts";
 * import { firstValueFrom, interval } from "rxjs";
 *
 * const xen = new SimXen(); // or the real Xen platform, on a dom0
 * const sim = await SimGuest.create(xen, 7, { program: "video", width: 800, height: 600 });
 * const guest = await attach({ domid: 7, platform: xen.platform() });
 * await sim.boot();
 * // A sink that takes what changed, at most every 100 ms:
 * const update = await firstValueFrom(guest.display$.pipe(coalesceDamage(interval(100))));
 * console.log(update.fb.width, update.region.area()); // 800 480000
 * await sim.stop();
 * await guest.close();
 * ```
 * @module
 */
export { attach, type AttachOptions, type Guest } from "./sources/attach.ts";
export type {
  EventChannel,
  GuestMemory,
  Platform,
  Xenstore,
  XenstoreOps,
} from "./sources/platform.ts";
export { SimDomain, SimXen } from "./sources/sim/platform.ts";
export { SimGuest, type SimGuestOptions } from "./sources/sim/guest.ts";
export { consoleLogger, type Logger, memoryLogger } from "./sources/log.ts";
export type { Rect } from "./pipeline/rect.ts";
export { Region } from "./pipeline/region.ts";
export * from "./pipeline/pixel_format.ts";
export type { Framebuffer } from "./pipeline/framebuffer.ts";
export * from "./pipeline/events.ts";
export { convertPixels } from "./pipeline/convert_pixels.ts";
export { coalesceDamage, type CoalescedUpdate } from "./pipeline/coalesce_damage.ts";
export { attachSink, type Sink, type SinkFrame, type SinkHandle } from "./sinks/sink.ts";
export { serveVnc, type VncOptions, type VncService } from "./sinks/vnc/mod.ts";
export { serveWeb, type WebOptions, type WebService } from "./sinks/web/server.ts";
export { KeyTranslator, loadKeymap } from "./sinks/vnc/keymap/mod.ts";
export {
  startVideoRecorder,
  videoContainerOf,
  type VideoRecorder,
  type VideoRecorderOptions,
  type VideoResult,
  type VideoStats,
} from "./sinks/record/video.ts";
export {
  encodePng,
  PNG_RGB,
  snapshot,
  type SnapshotOptions,
  type SnapshotService,
  startSnapshots,
} from "./sinks/record/snapshot.ts";

if (import.meta.main) {
  const { main } = await import("./cli/main.ts");
  Deno.exit(await main(Deno.args));
}
