/**
 * mulberry32: a small seeded PRNG, uniform in [0, 1), for the randomized
 * tests (a failing run replays exactly from its seed).
 *
 * @module
 */

/** A generator of numbers in [0, 1) from `seed`. */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
