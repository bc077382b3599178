/**
 * The last frame the VNC server took from a guest, shared by all of the
 * guest's viewers, and what changed between two takes.
 *
 * Damage from the guest is compared here once, however many viewers there
 * are (as TigerVNC's server-wide ComparingUpdateTracker): tiles that really
 * changed are copied into the {@link ShadowFramebuffer} and announced to the
 * viewers, and when some viewer takes CopyRect a damaged area is first checked
 * for a vertical scroll, announced as a move. Each viewer keeps only regions
 * ({@link UpdateTracker}); the pixels it is sent come from the shadow, which
 * changes only when damage is taken, so an encode never reads a half-drawn
 * next frame of the guest.
 *
 * A viewer writing the shadow's bytes by reference (zero-copy Raw) pins it
 * ({@link DisplayShadow.pin}); damage that arrives meanwhile goes to a copy
 * (copy on write), so a slow viewer holds up no one.
 *
 * @example
 * ```ts
 * import { DisplayShadow, type ShadowListener } from "./display_shadow.ts";
 * import { XRGB8888 } from "../../pipeline/pixel_format.ts";
 * import type { Rect } from "../../pipeline/rect.ts";
 * import { assertEquals } from "@rxfb/assert";
 *
 * const px = new Uint32Array(128 * 64);
 * const fb = { width: 128, height: 64, stride: 512, format: XRGB8888, bytes: new Uint8Array(px.buffer) };
 * const seen: Rect[] = [];
 * const viewer: ShadowListener = {
 *   copyRect: false,
 *   resized() {},
 *   moved() {},
 *   changed(rects) { seen.push(...rects); },
 * };
 * const shadow = new DisplayShadow({ tile: 32 });
 * shadow.add(viewer);
 * shadow.resize(fb);
 * shadow.damage([{ x: 0, y: 0, w: 128, h: 64 }]); // damage without change: nothing
 * px[70] = 0xffffff;
 * shadow.damage([{ x: 0, y: 0, w: 128, h: 64 }]);
 * assertEquals(seen, [{ x: 64, y: 0, w: 32, h: 1 }]); // the changed tile's rows
 * ```
 *
 * @module
 */
import type { Observable, Subscription } from "rxjs";
import { DEFAULT_TILE, ShadowFramebuffer } from "../../pipeline/compare_tiles.ts";
import { detectVerticalScroll } from "../../pipeline/detect_scroll.ts";
import type { DisplayEvent } from "../../pipeline/events.ts";
import type { Framebuffer } from "../../pipeline/framebuffer.ts";
import type { Rect } from "../../pipeline/rect.ts";
import { Region } from "../../pipeline/region.ts";

/** A viewer of a {@link DisplayShadow}: told of every change, in order. */
export interface ShadowListener {
  /** Whether this viewer takes CopyRect (scrolls are looked for when one does). */
  readonly copyRect: boolean;
  /** A new shadow (first frame, resize): the viewer needs all of it. */
  resized(shadow: ShadowFramebuffer): void;
  /** Rows of `dst` now hold what was `dy` rows below them (above if dy < 0). */
  moved(dst: Rect, dy: number): void;
  /** These pixels changed (disjoint rectangles). */
  changed(rects: readonly Rect[]): void;
  /**
   * The damage (or resize) being taken is all told: the shadow is a whole
   * frame again. Updates are sent from here, never between the moves and
   * changes of one frame (a viewer would get half a frame).
   */
  settled?(): void;
  /** The display failed (the guest went away badly). */
  failed?(e: unknown): void;
}

/** Options of {@link DisplayShadow}. */
export interface DisplayShadowOptions {
  /** Tile size of the comparison. Default {@link DEFAULT_TILE}. */
  readonly tile?: number;
  /**
   * Damage rectangles smaller than this many pixels are not checked for scrolls
   * (the check costs two passes over the area). Default 32768 (e.g. 1024 x 32).
   */
  readonly scrollMinArea?: number;
}

/** Damage rectangles with fewer rows than this are not checked for scrolls. */
const SCROLL_MIN_ROWS = 16;

/** One guest's shadow framebuffer and its viewers (see the module notes). */
export class DisplayShadow {
  private readonly listeners = new Set<ShadowListener>();
  private readonly tile: number;
  private readonly scrollMinArea: number;
  private source: Observable<DisplayEvent> | undefined;
  private sub: Subscription | undefined;
  /** The guest's framebuffer, from its last resize. */
  private live: Framebuffer | undefined;
  private shadow: ShadowFramebuffer | undefined;
  /** Pins per shadow (the current one and older ones still being written). */
  private readonly pins = new Map<ShadowFramebuffer, number>();
  /** An unpinned old shadow, kept for the next copy on write. */
  private spare: ShadowFramebuffer | undefined;
  private readonly changedRects: Rect[] = [];

  constructor(opts: DisplayShadowOptions = {}) {
    this.tile = opts.tile ?? DEFAULT_TILE;
    this.scrollMinArea = opts.scrollMinArea ?? 32 * 1024;
  }

  /**
   * A shadow fed by `display$`, subscribed to while it has listeners (so a
   * guest with no viewer is not watched: its refresh period follows).
   */
  static of(display$: Observable<DisplayEvent>, opts: DisplayShadowOptions = {}): DisplayShadow {
    const s = new DisplayShadow(opts);
    s.source = display$;
    return s;
  }

  /** The shadow as it is now (undefined before the first frame). */
  get fb(): ShadowFramebuffer | undefined {
    return this.shadow;
  }

  /** Starts telling `l` of changes; it gets `resized` at once when there is a frame. */
  add(l: ShadowListener): void {
    this.listeners.add(l);
    if (this.source && !this.sub) {
      this.sub = this.source.subscribe({
        next: (e) => this.event(e),
        error: (e) => {
          this.sub = undefined;
          for (const x of [...this.listeners]) x.failed?.(e);
        },
      });
    } else if (this.shadow) {
      l.resized(this.shadow);
      l.settled?.();
    }
  }

  /** Stops telling `l`; the last one to go unsubscribes from the display. */
  remove(l: ShadowListener): void {
    this.listeners.delete(l);
    if (this.listeners.size === 0 && this.sub) {
      this.sub.unsubscribe();
      this.sub = undefined;
      // No viewer: no frame kept (the next subscription starts with a resize).
      this.shadow = this.spare = this.live = undefined;
    }
  }

  /** A display event, as from `display$`. */
  event(e: DisplayEvent): void {
    if (e.type === "resize") this.resize(e.fb);
    else this.damage(e.rects);
  }

  /** A new framebuffer: the shadow takes all of it and every viewer needs all of it. */
  resize(fb: Framebuffer): void {
    this.live = fb;
    let s = this.shadow;
    if (!s?.fits(fb) || this.pins.has(s)) s = this.spareLike(fb) ?? ShadowFramebuffer.like(fb);
    s.copyFrom(fb, { x: 0, y: 0, w: fb.width, h: fb.height });
    this.shadow = s;
    for (const l of this.listeners) l.resized(s);
    this.settle();
  }

  /** The guest says it drew into `rects`: take what really changed and tell the viewers. */
  damage(rects: readonly Rect[]): void {
    const fb = this.live;
    if (!fb || !this.shadow?.fits(fb) || rects.length === 0) return;
    const shadow = this.writable();
    const changed = this.changedRects;
    const scroll = this.anyCopyRect();
    for (const r of rects) {
      if (scroll && r.h >= SCROLL_MIN_ROWS && r.w * r.h >= this.scrollMinArea) {
        const s = detectVerticalScroll(shadow, fb, r);
        if (s !== undefined) {
          this.announce(changed); // changes so far move with the scroll too
          const x = Math.max(0, r.x), w = Math.min(fb.width, r.x + r.w) - x;
          const dst = { x, y: s.y0, w, h: s.y1 - s.y0 };
          shadow.moveRows(x, w, s.y0, s.y1, s.dy);
          for (const l of this.listeners) l.moved(dst, s.dy);
          for (const rest of Region.fromRect(r).subtract(Region.fromRect(dst)).rects()) {
            shadow.refresh(fb, rest, this.tile, changed);
          }
          continue;
        }
      }
      shadow.refresh(fb, r, this.tile, changed);
    }
    this.announce(changed);
    this.settle();
  }

  /**
   * Holds the current shadow's bytes for a write by reference: until the
   * returned function is called, changes go to a copy. Call it exactly once.
   */
  pin(): () => void {
    const s = this.shadow;
    if (!s) return () => {};
    this.pins.set(s, (this.pins.get(s) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const n = (this.pins.get(s) ?? 1) - 1;
      if (n > 0) this.pins.set(s, n);
      else {
        this.pins.delete(s);
        if (s !== this.shadow) this.spare = s;
      }
    };
  }

  /** The shadow to change: the current one, or a copy of it when it is pinned. */
  private writable(): ShadowFramebuffer {
    const cur = this.shadow!;
    if (!this.pins.has(cur)) return cur;
    const copy = this.spareLike(cur) ?? ShadowFramebuffer.like(cur);
    copy.bytes.set(cur.bytes);
    this.shadow = copy;
    return copy;
  }

  /** The spare shadow if it has `fb`'s size and format (taken), else undefined. */
  private spareLike(fb: Framebuffer): ShadowFramebuffer | undefined {
    const s = this.spare;
    this.spare = undefined;
    return s?.fits(fb) ? s : undefined;
  }

  private settle(): void {
    for (const l of [...this.listeners]) l.settled?.();
  }

  private anyCopyRect(): boolean {
    for (const l of this.listeners) if (l.copyRect) return true;
    return false;
  }

  private announce(changed: Rect[]): void {
    if (changed.length === 0) return;
    const rects = changed.slice();
    changed.length = 0;
    for (const l of this.listeners) l.changed(rects);
  }
}
