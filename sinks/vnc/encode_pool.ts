/**
 * Workers for the heavy encodings, so that the main thread only moves bytes
 * and takes the guest's frames as they come (a frame that waits for the main
 * thread to finish encoding is read while the guest draws the next one).
 *
 * One pool per process, shared by every connection that needs it: started
 * when the first one asks ({@link EncodePool.acquire}), stopped when the last
 * one lets go ({@link EncodePool.release}). Jobs go to the least busy worker
 * that has started; until one has, {@link EncodePool.ready} is false and
 * callers encode on the main thread rather than wait.
 *
 * @module
 */
import type { EncodeJob } from "./encode_jobs.ts";

interface Slot {
  readonly worker: Worker;
  ready: boolean;
  busy: number;
}

interface Waiting {
  resolve(v: unknown): void;
  reject(e: Error): void;
  slot: Slot;
}

/** Workers the pool runs: the cores there are, at most 4 (zlib bands beyond that gain little). */
function defaultSize(): number {
  const n = typeof navigator !== "undefined" ? navigator.hardwareConcurrency ?? 2 : 2;
  return Math.max(1, Math.min(4, n));
}

/** A pool of encoding workers (see the module notes). */
export class EncodePool {
  private static shared: EncodePool | undefined;
  private static users = 0;

  /** The process's pool, started if need be; undefined where workers cannot run. Pair with release(). */
  static acquire(): EncodePool | undefined {
    if (typeof Worker === "undefined" || typeof SharedArrayBuffer === "undefined") return undefined;
    EncodePool.users++;
    EncodePool.shared ??= new EncodePool(defaultSize());
    return EncodePool.shared;
  }

  /** Lets go of the pool; the last user's release stops the workers. */
  static release(): void {
    if (EncodePool.users === 0) return;
    if (--EncodePool.users > 0) return;
    EncodePool.shared?.terminate();
    EncodePool.shared = undefined;
  }

  private readonly slots: Slot[] = [];
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 1;
  private dead = false;
  /** Jobs run so far (for tests and statistics). */
  jobs = 0;

  private constructor(size: number) {
    for (let i = 0; i < size; i++) {
      const worker = new Worker(new URL("./encode_worker.ts", import.meta.url), { type: "module" });
      const slot: Slot = { worker, ready: false, busy: 0 };
      worker.onmessage = (e) => this.message(slot, e.data);
      worker.onerror = (e) => {
        e.preventDefault();
        this.fail(slot, new Error(`encoding worker failed: ${e.message}`));
      };
      this.slots.push(slot);
    }
  }

  /** Workers in the pool. */
  get size(): number {
    return this.slots.length;
  }

  /** True when every worker has started (jobs would not wait for one to load). */
  get ready(): boolean {
    return !this.dead && this.slots.every((s) => s.ready);
  }

  /** Runs a job on the least busy worker; resolves with its result. */
  run<T>(job: EncodeJob): Promise<T> {
    if (this.dead) return Promise.reject(new Error("the encoding pool has stopped"));
    let slot = this.slots[0];
    for (const s of this.slots) if (s.ready && (s.busy < slot.busy || !slot.ready)) slot = s;
    const id = this.nextId++;
    slot.busy++;
    this.jobs++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject, slot });
      slot.worker.postMessage({ id, job });
    });
  }

  private message(
    slot: Slot,
    m: { ready?: boolean; id?: number; result?: unknown; error?: string },
  ) {
    if (m.ready) {
      slot.ready = true;
      return;
    }
    const w = this.waiting.get(m.id!);
    if (!w) return;
    this.waiting.delete(m.id!);
    slot.busy--;
    if (m.error !== undefined) w.reject(new Error(`encoding worker: ${m.error}`));
    else w.resolve(m.result);
  }

  private fail(slot: Slot, e: Error) {
    for (const [id, w] of this.waiting) {
      if (w.slot !== slot) continue;
      this.waiting.delete(id);
      w.reject(e);
    }
    slot.busy = 0;
    this.dead = true; // callers go back to the main thread
  }

  private terminate() {
    this.dead = true;
    for (const s of this.slots) s.worker.terminate();
    const e = new Error("the encoding pool has stopped");
    for (const w of this.waiting.values()) w.reject(e);
    this.waiting.clear();
  }
}
