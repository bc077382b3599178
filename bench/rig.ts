/**
 * Where the native peer rig lives, for the benchmarks that use it
 * (`peers.ts` builds it; `scale.ts` only runs its `rfbbench`). A module of
 * its own because `peers.ts` is a script: importing it would run the matrix.
 */

/** The rxfb checkout this file is in. */
export const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

export interface RigPaths {
  /** The shared, read-only bench folder (env RXFB_PEERS_SHARED). */
  shared: string;
  /** The private copy's root (env RXFB_PEERS_CACHE). */
  cache: string;
  /** The built rig in the copy: rfbbench, run.sh, the harnesses. */
  rig: string;
}

export function rigPaths(): RigPaths {
  const shared = Deno.env.get("RXFB_PEERS_SHARED") ?? `${REPO}/../shared/bench`;
  const cache = Deno.env.get("RXFB_PEERS_CACHE") ?? "/var/tmp/rxfb-peers";
  return { shared, cache, rig: `${cache}/bench/peers` };
}
