/**
 * When not to deflate: photo-like pixels (video, gradients seen as raw tiles)
 * hardly shrink at the fast zlib levels (here by 2-12 %), yet deflating them
 * costs about 30 ms a megapixel, and the client's inflate costs again. A
 * {@link StorePolicy} watches how well such data deflated lately and, while
 * it stays above {@link STORE_RATIO} of its size, says to store it (zlib
 * level 0: a copy on both sides), deflating every {@link PROBE_EVERY}th piece
 * to see whether the content changed. Encoders ask it only at the fast
 * levels a client gets by default: a client that asks for a higher
 * compress level gets deflate.
 *
 * ```ts
 * import { StorePolicy } from "./store_policy.ts";
 * import { assertEquals } from "@rxfb/assert";
 *
 * const p = new StorePolicy();
 * assertEquals(p.store(), false); // nothing known yet: deflate
 * p.learn(1000, 950); // it saved 5 %
 * assertEquals(p.store(), true);
 * ```
 *
 * @module
 */

/** "Hardly shrinks": deflates to more than this share of its size. */
export const STORE_RATIO = 0.85;

/** While storing, every this many pieces are deflated to measure again. */
export const PROBE_EVERY = 16;

/** One stream's (or one kind of data's) recent deflate ratio, and the decision it gives. */
export class StorePolicy {
  // Deflated / plain lately (a running average); -1 until something was measured.
  private ratio = -1;
  private sinceProbe = 0;

  /** True when the next piece should go stored; false: deflate it (and call learn()). */
  store(): boolean {
    if (this.ratio < STORE_RATIO) return false;
    if (++this.sinceProbe >= PROBE_EVERY) {
      this.sinceProbe = 0;
      return false;
    }
    return true;
  }

  /** How a piece that was deflated came out. */
  learn(plain: number, deflated: number): void {
    if (plain <= 0) return;
    const r = deflated / plain;
    this.ratio = this.ratio < 0 ? r : (this.ratio + r) / 2;
  }
}
