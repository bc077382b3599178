/**
 * Slows down password guessing, per client address, in the spirit of
 * TigerVNC's and RealVNC's blacklist.
 *
 * Policy (defaults): failures are counted per address (the port is
 * ignored). The first 3 failures cost nothing. From then on each new
 * attempt from that address must wait, counted from its last failure,
 * 1 s after the 3rd failure, 2 s after the 4th, 4 s, 8 s ... at most 60 s.
 * Concurrent attempts from one address are queued one delay apart, so
 * parallel connections do not multiply the guess rate; an attempt that
 * would have to queue longer than the cap is refused at once with
 * {@link TooManyAttempts}. A success forgets the address; so do 10 minutes
 * without a failure.
 *
 * The connection code calls, around each security handshake:
 *
 * ```ts ignore
 * await limiter.beforeAttempt(remote); // may wait; may throw TooManyAttempts
 * try { await type.run(...); limiter.succeeded(remote); }
 * catch (e) { if (e instanceof AuthFailed) limiter.failed(remote); throw e; }
 * ```
 *
 * @module
 */
import { AuthFailed } from "./types.ts";

/** Time source, injectable for tests. */
export interface Clock {
  /** Milliseconds, monotonic enough for delays (Date.now() is fine). */
  now(): number;
  /** Resolves after `ms`; rejects with the signal's reason when it aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The real clock: Date.now and setTimeout. */
export const realClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = () => {
        clearTimeout(t);
        reject(signal!.reason);
      };
      const t = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      signal?.addEventListener("abort", onAbort, { once: true });
    }),
};

/** Limiter settings; every field has a default. */
export interface LimiterOptions {
  /** Failures that cost nothing (default 3). */
  threshold?: number;
  /** Delay after the threshold-th failure, doubling with each more (default 1000 ms). */
  baseDelayMs?: number;
  /** Largest delay, and longest queue wait before refusing (default 60 000 ms). */
  maxDelayMs?: number;
  /** An address with no failure for this long is forgotten (default 10 min). */
  windowMs?: number;
  /** Addresses remembered at most; the oldest go first (default 10 000). */
  maxEntries?: number;
  /** Time source (default the real one). */
  clock?: Clock;
}

/** Refused without trying: this address failed too often, too recently. */
export class TooManyAttempts extends AuthFailed {
  constructor(readonly address: string, readonly retryAfterMs: number) {
    super("Too many authentication failures, try again later");
    this.name = "TooManyAttempts";
  }
}

interface Entry {
  failures: number;
  lastFailure: number;
  /** Earliest start for the next queued attempt. */
  nextSlot: number;
}

/**
 * The address part of an RfbStream `remote`: "10.0.0.5:41234" -> "10.0.0.5",
 * "[::1]:5900" -> "::1"; a bare address is returned as is.
 */
export function addressOf(remote: string): string {
  const bracket = /^\[([^\]]+)\](?::\d+)?$/.exec(remote);
  if (bracket) return bracket[1];
  const colons = remote.split(":").length - 1;
  if (colons === 1) return remote.slice(0, remote.indexOf(":"));
  return remote;
}

/** Per-address exponential back-off after repeated authentication failures. */
export class AuthLimiter {
  private readonly threshold: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly windowMs: number;
  private readonly maxEntries: number;
  private readonly clock: Clock;
  private readonly entries = new Map<string, Entry>();

  constructor(opts: LimiterOptions = {}) {
    this.threshold = opts.threshold ?? 3;
    this.baseDelayMs = opts.baseDelayMs ?? 1000;
    this.maxDelayMs = opts.maxDelayMs ?? 60_000;
    this.windowMs = opts.windowMs ?? 10 * 60_000;
    this.maxEntries = opts.maxEntries ?? 10_000;
    this.clock = opts.clock ?? realClock;
  }

  /** The delay owed after `failures` failures (0 below the threshold). */
  penaltyMs(failures: number): number {
    if (failures < this.threshold) return 0;
    const doublings = failures - this.threshold;
    if (doublings >= 31) return this.maxDelayMs;
    return Math.min(this.baseDelayMs * 2 ** doublings, this.maxDelayMs);
  }

  private entry(addr: string, now: number): Entry | undefined {
    const e = this.entries.get(addr);
    if (e && now - e.lastFailure > this.windowMs && e.nextSlot <= now) {
      this.entries.delete(addr);
      return undefined;
    }
    return e;
  }

  /** Failures currently counted for `remote` (for logs and tests). */
  failures(remote: string): number {
    return this.entry(addressOf(remote), this.clock.now())?.failures ?? 0;
  }

  /** How long an attempt from `remote` starting now would wait, without reserving it. */
  waitMs(remote: string): number {
    const now = this.clock.now();
    const e = this.entry(addressOf(remote), now);
    if (!e) return 0;
    const p = this.penaltyMs(e.failures);
    if (p === 0) return 0;
    return Math.max(0, e.lastFailure + p - now, e.nextSlot - now);
  }

  /**
   * Waits until `remote` may try to authenticate. Throws
   * {@link TooManyAttempts} when the wait would exceed the cap (concurrent
   * attempts queued), and the signal's reason when `signal` aborts (e.g.
   * the client hung up while waiting).
   */
  async beforeAttempt(remote: string, signal?: AbortSignal): Promise<void> {
    const addr = addressOf(remote);
    const now = this.clock.now();
    const e = this.entry(addr, now);
    if (!e) return;
    const p = this.penaltyMs(e.failures);
    if (p === 0) return;
    const at = Math.max(now, e.lastFailure + p, e.nextSlot);
    if (at - now > this.maxDelayMs) throw new TooManyAttempts(addr, at - now);
    e.nextSlot = at + p;
    if (at > now) await this.clock.sleep(at - now, signal);
  }

  /** Records a failed authentication from `remote`. */
  failed(remote: string): void {
    const addr = addressOf(remote);
    const now = this.clock.now();
    const e = this.entry(addr, now);
    if (e) {
      e.failures++;
      e.lastFailure = now;
      // move to the end: Map order is then oldest-failure first
      this.entries.delete(addr);
      this.entries.set(addr, e);
      return;
    }
    if (this.entries.size >= this.maxEntries) this.evict(now);
    this.entries.set(addr, { failures: 1, lastFailure: now, nextSlot: 0 });
  }

  /** Records a successful authentication: `remote` starts afresh. */
  succeeded(remote: string): void {
    this.entries.delete(addressOf(remote));
  }

  /** Addresses currently remembered. */
  get size(): number {
    return this.entries.size;
  }

  private evict(now: number): void {
    for (const addr of [...this.entries.keys()]) this.entry(addr, now);
    while (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
  }
}
