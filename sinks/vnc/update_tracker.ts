/**
 * What one viewer has on its screen, and what it must be sent next.
 *
 * The tracker follows a {@link DisplayShadow} (the guest's last frame, shared
 * by all its viewers) and keeps an `unsent` region and a list of pending
 * copies, with one invariant: **after the pending copies, the viewer's pixels
 * equal the shadow's everywhere outside `unsent`.** The shadow tells it of
 * every change as the guest's damage is taken: changed pixels join `unsent`;
 * a band of rows that moved (a scroll) becomes a pending copy (a CopyRect for
 * the viewer) and `unsent` moves with it, or, for a viewer without CopyRect,
 * joins `unsent`. Copies stay in order until the next update, so a viewer
 * that skips frames still gets them right. A move of the same columns as the
 * last pending copy is composed with it (a terminal that scrolled k times
 * since the viewer's last update is one CopyRect by the sum of the shifts, and
 * the k new lines), and beyond {@link MAX_PENDING_COPIES} copies they are
 * dropped and their areas sent as pixels. The tracker holds no pixels: an
 * update is encoded from the shadow.
 *
 * @example
 * ```ts
 * import { UpdateTracker } from "./update_tracker.ts";
 * import { assertEquals } from "@rxfb/assert";
 *
 * const t = new UpdateTracker();
 * t.copyRect = true;
 * t.reset(128, 64); // a new viewer needs everything
 * t.take();
 * t.changed([{ x: 0, y: 60, w: 128, h: 4 }]);
 * t.moved({ x: 0, y: 0, w: 128, h: 60 }, 4); // a scroll by 4 rows: what was unsent moves up
 * const u = t.take();
 * assertEquals(u.copies, [{ dy: 4, rects: [{ x: 0, y: 0, w: 128, h: 60 }] }]);
 * assertEquals(u.region.rects(), [{ x: 0, y: 56, w: 128, h: 8 }]); // rows 60..63 were never sent
 * ```
 *
 * @module
 */
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
  readonly copies: readonly CopyGroup[];
  readonly region: Region;
}

/** Copy groups kept for a viewer that does not ask; more are dropped and sent as pixels. */
export const MAX_PENDING_COPIES = 8;

/** One viewer's unsent region and pending copies. */
export class UpdateTracker {
  /** Whether the viewer takes CopyRect (set from its SetEncodings). */
  copyRect = false;
  private unsent = Region.empty();
  private copies: CopyGroup[] = [];
  private bounds: Rect = { x: 0, y: 0, w: 0, h: 0 };

  /** True when the next update has something to send. */
  get pending(): boolean {
    return this.copies.length > 0 || !this.unsent.isEmpty();
  }

  /** A new framebuffer of this size (first one, resize): the viewer needs all of it. */
  reset(width: number, height: number): void {
    this.bounds = { x: 0, y: 0, w: width, h: height };
    this.unsent = Region.fromRect(this.bounds);
    this.copies = [];
  }

  /** These pixels changed. */
  changed(rects: readonly Rect[]): void {
    if (rects.length > 0) this.unsent = this.unsent.union(Region.fromRects(rects));
  }

  /** The viewer asked for `r` again (a non-incremental request). */
  force(r: Rect): void {
    this.unsent = this.unsent.union(Region.fromRect(r).clip(this.bounds));
  }

  /** `dst` now holds what was `dy` rows below it: the viewer will copy it, unsent parts move along. */
  moved(dst: Rect, dy: number): void {
    const to = Region.fromRect(dst);
    if (!this.copyRect) {
      this.unsent = this.unsent.union(to);
      return;
    }
    const from = to.translate(0, dy);
    this.unsent = this.unsent.subtract(to).union(this.unsent.intersect(from).translate(0, -dy));
    if (!this.compose(dst, dy)) this.copies.push({ dy, rects: [dst] });
    if (this.copies.length > MAX_PENDING_COPIES) this.dropCopies();
  }

  /**
   * Folds a move of `dst` by `dy` into the last pending copy when both span the
   * same columns: rows of `dst` whose source lay in the last copy's destination
   * take their pixels from that copy's source, by the sum of the shifts, in
   * one copy. Every other row either copy would have written joins `unsent`
   * (for a scrolling terminal: the new lines, which are unsent anyway).
   * Returns false when there is nothing to fold into.
   */
  private compose(dst: Rect, dy: number): boolean {
    const last = this.copies.at(-1);
    if (last === undefined || last.rects.length !== 1) return false;
    const prev = last.rects[0];
    if (prev.x !== dst.x || prev.w !== dst.w) return false;
    // Rows y of dst with y + dy inside prev.
    const y0 = Math.max(dst.y, prev.y - dy), y1 = Math.min(dst.y + dst.h, prev.y + prev.h - dy);
    if (y1 <= y0) return false;
    const both = Region.fromRect(prev).union(Region.fromRect(dst));
    const kept = { x: dst.x, y: y0, w: dst.w, h: y1 - y0 };
    this.unsent = this.unsent.union(both.subtract(Region.fromRect(kept)));
    this.copies.pop();
    const total = last.dy + dy;
    // A shift that adds up to nothing leaves those rows where they were.
    if (total !== 0) this.copies.push({ dy: total, rects: [kept] });
    return true;
  }

  /** Hands over the pending copies and region and starts afresh (the update is being sent). */
  take(): PendingUpdate {
    if (!this.copyRect) this.dropCopies();
    const out = { copies: this.copies, region: this.unsent };
    this.copies = [];
    this.unsent = Region.empty();
    return out;
  }

  /** Forgets the pending copies; the viewer gets their areas as pixels instead. */
  private dropCopies(): void {
    for (const g of this.copies) this.unsent = this.unsent.union(Region.fromRects(g.rects));
    this.copies = [];
  }
}
