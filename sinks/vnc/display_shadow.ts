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
import { detectVerticalScroll, SignatureMemo } from "../../pipeline/detect_scroll.ts";
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
  /**
   * Share of one core that taking damage may use, on average over a second or
   * so; beyond it damage waits and merges. Default: no limit (a process
   * serving one guest, as a device model does). The `--all` daemon, which
   * serves every guest in one process, uses {@link DAMAGE_CPU_SHARE}.
   */
  readonly cpuShare?: number;
  /** Told once each time the guest's damage starts to be held back. */
  readonly onThrottle?: (msg: string) => void;
}

/**
 * The `--all` daemon's budget for taking a guest's damage: a guest that
 * reports its whole screen in a tight loop could otherwise keep the main
 * thread, which every guest of the daemon shares, comparing pixels. Taking a
 * 1080p frame costs 0.3 ms unchanged and 1.3 ms all changed, so a guest at 60
 * frames a second uses 2-8 % of a core, and one drawing as fast as it can (the
 * desktop workload at 220 frames a second) under 30 %; past this share,
 * damage is merged and taken once the budget allows (a timer only then).
 */
export const DAMAGE_CPU_SHARE = 0.5;

/** Milliseconds of work the budget can save up (a burst of that much is taken at once). */
const BUDGET_BURST_MS = 250;

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
  /**
   * What the last scroll check learnt: its rows' signatures (the shadow's, once
   * it took that frame) and the shift it found.
   */
  private readonly scrollMemo = new SignatureMemo();
  /** Pins per shadow (the current one and older ones still being written). */
  private readonly pins = new Map<ShadowFramebuffer, number>();
  /** An unpinned old shadow, kept for the next copy on write. */
  private spare: ShadowFramebuffer | undefined;
  private readonly changedRects: Rect[] = [];
  private readonly share: number;
  /** Milliseconds of work the budget holds now, as of `budgetAt`. */
  private budget = BUDGET_BURST_MS;
  private budgetAt = performance.now();
  /** Damage held back while over budget, and the timer that will take it. */
  private held = Region.empty();
  private heldTimer: ReturnType<typeof setTimeout> | undefined;
  /** Times damage was held back, and milliseconds spent taking it (for tests and statistics). */
  throttled = 0;
  busyMs = 0;

  constructor(private readonly opts: DisplayShadowOptions = {}) {
    this.tile = opts.tile ?? DEFAULT_TILE;
    this.scrollMinArea = opts.scrollMinArea ?? 32 * 1024;
    this.share = opts.cpuShare ?? Infinity;
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
      if (this.heldTimer !== undefined) clearTimeout(this.heldTimer);
      this.heldTimer = undefined;
      this.held = Region.empty();
      // No viewer: no frame kept (the next subscription starts with a resize).
      this.shadow = this.spare = this.live = undefined;
      this.scrollMemo.clear();
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
    this.held = Region.empty(); // the whole frame is taken now
    let s = this.shadow;
    if (!s?.fits(fb) || this.pins.has(s)) s = this.spareLike(fb) ?? ShadowFramebuffer.like(fb);
    s.copyFrom(fb, { x: 0, y: 0, w: fb.width, h: fb.height });
    this.shadow = s;
    this.scrollMemo.clear();
    for (const l of this.listeners) l.resized(s);
    this.settle();
  }

  /** The guest says it drew into `rects`: take what really changed and tell the viewers. */
  damage(rects: readonly Rect[]): void {
    const fb = this.live;
    if (!fb || !this.shadow?.fits(fb) || rects.length === 0) return;
    const now = performance.now();
    if (this.share === Infinity) {
      this.take(fb, rects);
      this.busyMs += performance.now() - now;
      return;
    }
    this.budget = Math.min(BUDGET_BURST_MS, this.budget + (now - this.budgetAt) * this.share);
    this.budgetAt = now;
    if (this.budget < 0 || this.heldTimer !== undefined) {
      this.hold(rects);
      return;
    }
    this.take(fb, rects);
    const end = performance.now();
    this.busyMs += end - now;
    this.budget -= end - now; // (the budget refills over this time too, from budgetAt = now)
  }

  /** Merges `rects` into the held damage and makes sure a timer will take it. */
  private hold(rects: readonly Rect[]): void {
    this.held = this.held.union(Region.fromRects(rects));
    if (this.heldTimer !== undefined) return;
    this.throttled++;
    if (this.throttled === 1 || this.throttled % 1000 === 0) {
      this.opts.onThrottle?.(
        `the guest's damage takes more than ${Math.round(this.share * 100)} % of a core; ` +
          `held back and merged (${this.throttled} times so far)`,
      );
    }
    const wait = Math.max(1, -this.budget / this.share);
    this.heldTimer = setTimeout(() => {
      this.heldTimer = undefined;
      const held = this.held;
      this.held = Region.empty();
      if (!held.isEmpty()) this.damage(held.simplify({ maxRects: 16 }));
    }, wait);
  }

  /** Compares `rects` of `fb` with the shadow, takes what changed and tells the viewers. */
  private take(fb: Framebuffer, rects: readonly Rect[]): void {
    const shadow = this.writable();
    const changed = this.changedRects;
    const scroll = this.anyCopyRect();
    for (const r of rects) {
      if (scroll && r.h >= SCROLL_MIN_ROWS && r.w * r.h >= this.scrollMinArea) {
        const s = detectVerticalScroll(shadow, fb, r, { memo: this.scrollMemo });
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
