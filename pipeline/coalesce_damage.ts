import { from, Observable, type ObservableInput, type OperatorFunction } from "rxjs";
import type { DisplayEvent } from "./events.ts";
import type { Framebuffer } from "./framebuffer.ts";
import { Region } from "./region.ts";

/** What a subscriber gets each time it asks: the framebuffer and what changed since its last ask. */
export interface CoalescedUpdate {
  readonly fb: Framebuffer;
  /** Changed pixels, clipped to `fb`; the whole screen after a resize. */
  readonly region: Region;
  /** True when the framebuffer was resized (or first seen) since the last update. */
  readonly resized: boolean;
}

/**
 * Back-pressure by coalescing: accumulates a display's damage until the
 * subscriber asks (an emission of `ready$`), then emits one update holding
 * the union of everything since the last one, clipped to the framebuffer.
 * An ask with nothing pending waits and is answered as soon as damage or a
 * resize arrives (RFB's FramebufferUpdateRequest). Nothing queues: a slow
 * subscriber only sees a larger region.
 *
 * @example
 * ```ts
 * import { Subject } from "rxjs";
 * import { coalesceDamage } from "./coalesce_damage.ts";
 * import type { DisplayEvent } from "./events.ts";
 * import { XRGB8888 } from "./pixel_format.ts";
 *
 * const display = new Subject<DisplayEvent>();
 * const ask = new Subject<void>();
 * const fb = { width: 4, height: 4, stride: 16, format: XRGB8888, bytes: new Uint8Array(64) };
 * display.pipe(coalesceDamage(ask)).subscribe((u) => console.log(u.region.area(), u.resized));
 * display.next({ type: "resize", fb });
 * ask.next(); // logs "16 true"
 * display.next({ type: "damage", rects: [{ x: 0, y: 0, w: 1, h: 1 }] });
 * display.next({ type: "damage", rects: [{ x: 9, y: 9, w: 1, h: 1 }] }); // off screen: clipped
 * ask.next(); // logs "1 false"
 * ```
 */
export function coalesceDamage(
  ready$: ObservableInput<unknown>,
): OperatorFunction<DisplayEvent, CoalescedUpdate> {
  return (source) =>
    new Observable<CoalescedUpdate>((sub) => {
      let fb: Framebuffer | undefined;
      let pending = Region.empty();
      let resized = false;
      let asked = false;

      const flush = () => {
        if (!asked || !fb || (!resized && pending.isEmpty())) return;
        asked = false;
        const full = { x: 0, y: 0, w: fb.width, h: fb.height };
        const region = resized ? Region.fromRect(full) : pending.clip(full);
        const wasResized = resized;
        pending = Region.empty();
        resized = false;
        if (!region.isEmpty() || wasResized) sub.next({ fb, region, resized: wasResized });
      };

      const askSub = from(ready$).subscribe({
        next: () => {
          asked = true;
          flush();
        },
        error: (e) => sub.error(e),
      });
      const srcSub = source.subscribe({
        next: (e) => {
          if (e.type === "resize") {
            fb = e.fb;
            resized = true;
            pending = Region.empty();
          } else if (!resized) {
            pending = pending.union(Region.fromRects(e.rects));
          }
          flush();
        },
        error: (e) => sub.error(e),
        complete: () => sub.complete(),
      });
      return () => {
        askSub.unsubscribe();
        srcSub.unsubscribe();
      };
    });
}
