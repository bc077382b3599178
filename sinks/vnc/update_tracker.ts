/**
 * What one viewer has on its screen, and what it must be sent next.
 *
 * The tracker keeps a {@link ShadowFramebuffer} per viewer and an `unsent`
 * region, with one invariant: **after the pending copies, the viewer's pixels
 * equal the shadow's everywhere outside `unsent`.** Damage from the guest is
 * compared with the shadow as it arrives (not when the viewer asks): only
 * tiles that really changed are copied in and join `unsent`, and the copy is
 * taken while the guest's frame is fresh (the guest may draw the next one at
 * any time, and encoding may take longer than a frame). An update is then
 * encoded from the shadow, which holds still.
 *
 * When the viewer takes CopyRect, a damaged area is first checked for a
 * vertical scroll (`detectVerticalScroll` against the shadow). A band found
 * moved becomes a pending copy (a CopyRect for the viewer, `moveRows` in the
 * shadow) and `unsent` moves with it; only the rest of the area is compared.
 * Copies stay in order until the next update, so a viewer that skips frames
 * still gets them right (up to {@link MAX_PENDING_COPIES}; beyond that they
 * are dropped and their areas sent as pixels).
 *
 * @example
 * ```ts
 * import { UpdateTracker } from "./update_tracker.ts";
 * import { XRGB8888 } from "../../pipeline/pixel_format.ts";
 * import { assertEquals } from "@rxfb/assert";
 *
 * const px = new Uint32Array(128 * 64);
 * const fb = { width: 128, height: 64, stride: 512, format: XRGB8888, bytes: new Uint8Array(px.buffer) };
 * const t = new UpdateTracker({ tile: 32 });
 * t.resize(fb);
 * assertEquals(t.take().region.area(), 128 * 64); // a new viewer gets everything
 * t.damage(fb, [{ x: 0, y: 0, w: 128, h: 64 }]); // damage without change
 * assertEquals(t.pending, false);
 * px[70] = 0xffffff;
 * t.damage(fb, [{ x: 0, y: 0, w: 128, h: 64 }]);
 * assertEquals(t.take().region.rects(), [{ x: 64, y: 0, w: 32, h: 1 }]); // the changed tile rows
 * ```
 *
 * @module
 */
import { DEFAULT_TILE, ShadowFramebuffer } from "../../pipeline/compare_tiles.ts";
import { detectVerticalScroll } from "../../pipeline/detect_scroll.ts";
import type { Framebuffer } from "../../pipeline/framebuffer.ts";
import type { Rect } from "../../pipeline/rect.ts";
import { Region } from "../../pipeline/region.ts";

/** Copies of one vertical shift: each rectangle's pixels come from `dy` rows below (above if < 0). */
export interface CopyGroup {
  readonly dy: number;
  /** Destinations, in an order that is safe to execute one after another. */
  readonly rects: readonly Rect[];
}

/** What {@link UpdateTracker.take} hands over: copies first, then the region's pixels. */
export interface PendingUpdate {
  /** The shadow, to encode the region from. */
  readonly fb: ShadowFramebuffer;
  readonly copies: readonly CopyGroup[];
  readonly region: Region;
}

/** Options of {@link UpdateTracker}. */
export interface TrackerOptions {
  /** Tile size of the comparison. Default {@link DEFAULT_TILE}. */
  readonly tile?: number;
  /** Look for vertical scrolls (when the viewer takes CopyRect). Default true. */
  readonly scroll?: boolean;
  /**
   * Damage rectangles smaller than this many pixels are not checked for scrolls
   * (the check costs two passes over the area). Default 32768 (e.g. 1024 x 32).
   */
  readonly scrollMinArea?: number;
}

/** Copy groups kept for a viewer that does not ask; more are dropped and sent as pixels. */
export const MAX_PENDING_COPIES = 8;

/** Damage rectangles with fewer rows than this are not checked for scrolls. */
const SCROLL_MIN_ROWS = 16;

/** One viewer's shadow framebuffer, unsent region and pending copies. */
export class UpdateTracker {
  /** Whether the viewer takes CopyRect (set from its SetEncodings). */
  copyRect = false;
  private shadow: ShadowFramebuffer | undefined;
  private unsent = Region.empty();
  private copies: CopyGroup[] = [];
  private readonly tile: number;
  private readonly scroll: boolean;
  private readonly scrollMinArea: number;

  constructor(opts: TrackerOptions = {}) {
    this.tile = opts.tile ?? DEFAULT_TILE;
    this.scroll = opts.scroll ?? true;
    this.scrollMinArea = opts.scrollMinArea ?? 32 * 1024;
  }

  /** The shadow (undefined before the first resize). */
  get fb(): ShadowFramebuffer | undefined {
    return this.shadow;
  }

  /** True when the next update has something to send. */
  get pending(): boolean {
    return this.copies.length > 0 || !this.unsent.isEmpty();
  }

  /** A new framebuffer (first one, resize, reconnect): the viewer needs all of it. */
  resize(fb: Framebuffer): void {
    if (!this.shadow?.fits(fb)) this.shadow = ShadowFramebuffer.like(fb);
    const full = { x: 0, y: 0, w: fb.width, h: fb.height };
    this.shadow.copyFrom(fb, full);
    this.unsent = Region.fromRect(full);
    this.copies = [];
  }

  /** The guest says it drew into `rects`: keep what really changed. */
  damage(fb: Framebuffer, rects: readonly Rect[]): void {
    const shadow = this.shadow;
    if (!shadow?.fits(fb)) return;
    const changed: Rect[] = [];
    for (const r of rects) {
      if (
        this.scroll && this.copyRect && r.h >= SCROLL_MIN_ROWS && r.w * r.h >= this.scrollMinArea
      ) {
        const s = detectVerticalScroll(shadow, fb, r);
        if (s !== undefined) {
          this.addChanged(changed); // earlier changes move with the scroll too
          const x = Math.max(0, r.x), w = Math.min(fb.width, r.x + r.w) - x;
          const dst = { x, y: s.y0, w, h: s.y1 - s.y0 };
          shadow.moveRows(x, w, s.y0, s.y1, s.dy);
          this.moved(dst, s.dy);
          for (const rest of Region.fromRect(r).subtract(Region.fromRect(dst)).rects()) {
            shadow.refresh(fb, rest, this.tile, changed);
          }
          continue;
        }
      }
      shadow.refresh(fb, r, this.tile, changed);
    }
    this.addChanged(changed);
  }

  /** The viewer asked for `r` again (a non-incremental request): send it whatever it holds. */
  force(fb: Framebuffer, r: Rect): void {
    if (!this.shadow?.fits(fb)) return;
    this.shadow.copyFrom(fb, r);
    this.unsent = this.unsent.union(
      Region.fromRect(r).clip({ x: 0, y: 0, w: fb.width, h: fb.height }),
    );
  }

  /** Hands over the pending copies and region and starts afresh (the update is being sent). */
  take(): PendingUpdate {
    if (!this.copyRect) this.dropCopies();
    const out = { fb: this.shadow!, copies: this.copies, region: this.unsent };
    this.copies = [];
    this.unsent = Region.empty();
    return out;
  }

  private addChanged(changed: Rect[]): void {
    if (changed.length === 0) return;
    this.unsent = this.unsent.union(Region.fromRects(changed));
    changed.length = 0;
  }

  /** `dst` now holds what was `dy` rows below it: the viewer will copy it, unsent parts move along. */
  private moved(dst: Rect, dy: number): void {
    const to = Region.fromRect(dst), from = to.translate(0, dy);
    this.unsent = this.unsent.subtract(to).union(this.unsent.intersect(from).translate(0, -dy));
    this.copies.push({ dy, rects: [dst] });
    if (this.copies.length > MAX_PENDING_COPIES) this.dropCopies();
  }

  /** Forgets the pending copies; the viewer gets their areas as pixels instead. */
  private dropCopies(): void {
    for (const g of this.copies) this.unsent = this.unsent.union(Region.fromRects(g.rects));
    this.copies = [];
  }
}
