/**
 * Workers for the heavy encodings, so that the main thread only moves bytes
 * and takes the guest's frames as they come (a frame that waits for the main
 * thread to finish encoding is read while the guest draws the next one).
 *
 * One pool per process, shared by every connection that needs it: started
 * when the first one asks ({@link EncodePool.acquire}), stopped when the last
 * one lets go ({@link EncodePool.release}). Jobs go to the least busy worker
 * that has started; while one is starting, {@link EncodePool.ready} is false
 * and callers encode on the main thread rather than wait.
 *
 * A worker's failure costs time, never an update: a job whose worker crashed,
 * threw on it, or did not answer it within {@link JOB_DEADLINE_MS} (stuck in
 * it, say in a loop that never ends), is run again on the main thread by the
 * same code ({@link JobRunner}) on the same staged pixels, so its result is as
 * good. A worker that crashed or got stuck is replaced by a fresh one, at most
 * {@link RESPAWNS_PER_MINUTE} times a minute; after that its place stays
 * empty, and once every place is, the pool takes no more jobs
 * ({@link EncodePool.ready} stays false until it is stopped and started
 * again). Each replacement and each worker given up is logged once, with the
 * reason. (A worker stuck in a loop is told to stop, but Deno does not stop a
 * worker busy in JavaScript (denoland/deno#35657): its thread may go on using
 * a core until the process ends; the log line says so.)
 *
 * @module
 */
import type { Framebuffer } from "../../pipeline/framebuffer.ts";
import { consoleLogger, type Logger } from "../../sources/log.ts";
import { ByteWriter } from "./bytes.ts";
import type { EncodeJob, TightBand, ZrleBand } from "./encode_jobs.ts";
import { Encoding } from "./encoder.ts";
import { TightEncoder, TightPNGEncoder } from "./encodings/tight.ts";
import { zlibPlan, ZRLEEncoder } from "./encodings/zrle.ts";
import { createDeflate, type DeflateStream } from "./zlib.ts";

/** Times a worker is replaced within a minute before its place is given up. */
export const RESPAWNS_PER_MINUTE = 3;

/**
 * How long a worker with jobs may go without answering one before it counts
 * as stuck, and is replaced as if it had crashed (a 1080p band takes tens of
 * milliseconds).
 */
export const JOB_DEADLINE_MS = 5000;

/** The worker module the pool runs by default. */
const WORKER_URL = new URL("./encode_worker.ts", import.meta.url);

/**
 * Runs {@link EncodeJob}s: a worker's state between jobs (one tile encoder,
 * raw deflate streams by level). Every job starts from fresh streams, so the
 * result does not depend on which runner ran it, or on what it ran before:
 * each worker has one, and the pool keeps one to run here the jobs of a
 * worker that failed.
 */
export class JobRunner {
  private readonly zrle = new ZRLEEncoder();
  private readonly tight = new Map<number, TightEncoder | TightPNGEncoder>();
  private readonly streams = new Map<number, DeflateStream>();
  private readonly out = new ByteWriter(1 << 20);

  /** Runs a job; returns the result and the buffers to transfer back. */
  run(job: EncodeJob): { result: ZrleBand | TightBand; transfer: ArrayBuffer[] } {
    const { fb } = job;
    const view: Framebuffer = {
      width: fb.width,
      height: fb.height,
      stride: fb.stride,
      format: fb.format,
      bytes: new Uint8Array(fb.sab, 0, fb.stride * fb.height),
    };
    this.out.clear();
    if (job.kind === "tight") {
      let enc = this.tight.get(job.encoding);
      if (enc === undefined) {
        enc = job.encoding === Encoding.TightPNG ? new TightPNGEncoder() : new TightEncoder();
        this.tight.set(job.encoding, enc);
      }
      enc.forgetStreams(); // fresh streams, reset on the client by their first rectangle
      const rects = enc.encode(view, job.rect, job.opts, this.out);
      const data = this.out.view().slice();
      return { result: { data, rects }, transfer: [data.buffer] };
    }
    const tiles = this.zrle.encodeTiles(view, job.rect, job.pf);
    const plan = zlibPlan(job.level, tiles, () => job.store);
    let z = this.streams.get(plan.level);
    if (z === undefined) this.streams.set(plan.level, z = createDeflate(plan.level, { raw: true }));
    z.reset(); // the band must not refer to the runner's previous bands
    z.setStrategy?.(plan.strategy);
    z.deflateTo(tiles.data, this.out, "sync");
    const data = this.out.view().slice();
    return {
      result: { data, plain: tiles.data.length, measured: plan.measure },
      transfer: [data.buffer],
    };
  }

  /**
   * A worker's answer to job `id`: its result (with the buffers to transfer)
   * or, when the job throws, its error, for the pool to run it again here.
   */
  answer(
    id: number,
    job: EncodeJob,
  ): {
    message: { id: number; result?: ZrleBand | TightBand; error?: string };
    transfer: ArrayBuffer[];
  } {
    try {
      const { result, transfer } = this.run(job);
      return { message: { id, result }, transfer };
    } catch (err) {
      return {
        message: { id, error: err instanceof Error ? err.message : String(err) },
        transfer: [],
      };
    }
  }

  /** Frees the deflate streams. */
  close(): void {
    for (const z of this.streams.values()) z.close();
    this.streams.clear();
    for (const t of this.tight.values()) t.close();
  }
}

/** Where the pool's workers come from and where it reports. */
export interface EncodePoolOptions {
  /** Where replaced and given-up workers are reported (default: stderr). */
  log?: Logger;
  /**
   * The worker module (default `encode_worker.ts`). Tests give one that fails
   * on purpose; the first acquirer's choice holds until the pool stops.
   */
  worker?: URL;
  /** Workers (default: the cores there are, at most 4). */
  size?: number;
  /** Milliseconds before a worker that does not answer is replaced (default {@link JOB_DEADLINE_MS}). */
  jobDeadline?: number;
}

interface Slot {
  /** 1-based, for the log. */
  readonly n: number;
  worker: Worker;
  ready: boolean;
  busy: number;
  /**
   * While busy: when the worker last showed it was not stuck (performance.now()
   * of its last answer, of its ready, or of the job that made it busy), so
   * that jobs queued behind others are not counted late.
   */
  since: number;
  /** Given up: failed too often, no worker here any more. */
  out: boolean;
  /** When it was replaced lately (performance.now()), for the limit. */
  respawns: number[];
  /** A job error on this slot's worker was logged already. */
  errorLogged: boolean;
}

interface Waiting {
  resolve(v: unknown): void;
  reject(e: Error): void;
  slot: Slot;
  job: EncodeJob;
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

  /**
   * The process's pool, started if need be (with `opts`); undefined where
   * workers cannot run. Pair with release().
   */
  static acquire(opts: EncodePoolOptions = {}): EncodePool | undefined {
    if (typeof Worker === "undefined" || typeof SharedArrayBuffer === "undefined") return undefined;
    EncodePool.users++;
    EncodePool.shared ??= new EncodePool(opts);
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
  private readonly url: URL;
  private readonly log: Logger;
  private readonly deadline: number;
  /** Looks for stuck workers while jobs are out (one interval for the pool, never one per job). */
  private watchdog: ReturnType<typeof setInterval> | undefined;
  private here: JobRunner | undefined;
  private nextId = 1;
  private stopped = false;
  /** Jobs sent to workers (for tests and statistics). */
  jobs = 0;
  /** Jobs run on the main thread because their worker failed or none was left. */
  ranHere = 0;
  /** Workers started, replacements included. */
  started = 0;

  private constructor(opts: EncodePoolOptions) {
    this.url = opts.worker ?? WORKER_URL;
    this.log = opts.log ?? consoleLogger("rxfb");
    this.deadline = opts.jobDeadline ?? JOB_DEADLINE_MS;
    const size = opts.size ?? defaultSize();
    for (let n = 1; n <= size; n++) {
      const worker = this.startWorker();
      this.slots.push({
        n,
        worker,
        ready: false,
        busy: 0,
        since: 0,
        out: false,
        respawns: [],
        errorLogged: false,
      });
    }
  }

  /** Workers that are running or starting (not given up). */
  get size(): number {
    return this.slots.filter((s) => !s.out).length;
  }

  /** True when every worker not given up has started, and one has (jobs would not wait for one to load). */
  get ready(): boolean {
    return !this.stopped && this.size > 0 && this.slots.every((s) => s.out || s.ready);
  }

  /** True when every worker was given up (or the pool stopped): no job goes to a worker any more. */
  get dead(): boolean {
    return this.stopped || this.size === 0;
  }

  /**
   * Runs a job on the least busy worker; resolves with its result. If the
   * worker fails (crashes, or the job throws there), or none is left, the job
   * runs here instead; rejects only when it fails here too, or the pool has
   * stopped.
   */
  run<T>(job: EncodeJob): Promise<T> {
    if (this.stopped) return Promise.reject(new Error("the encoding pool has stopped"));
    let slot: Slot | undefined;
    for (const s of this.slots) {
      if (s.out) continue;
      if (!slot || (s.ready && !slot.ready) || (s.ready === slot.ready && s.busy < slot.busy)) {
        slot = s;
      }
    }
    if (slot === undefined) {
      return new Promise<T>((resolve, reject) => {
        this.runHere(job, resolve as (v: unknown) => void, reject, "no encoding workers left");
      });
    }
    const id = this.nextId++;
    if (slot.busy++ === 0) slot.since = performance.now();
    this.jobs++;
    this.watchdog ??= this.watch();
    const s = slot;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject, slot: s, job });
      s.worker.postMessage({ id, job });
    });
  }

  /** Starts a worker; its messages and errors go to the slot that holds it (none once replaced). */
  private startWorker(): Worker {
    const worker = new Worker(this.url, { type: "module" });
    this.started++;
    const slot = () => this.slots.find((s) => s.worker === worker && !s.out);
    worker.onmessage = (e) => {
      const s = slot();
      if (s) this.message(s, e.data);
    };
    worker.onerror = (e) => {
      e.preventDefault();
      const s = slot();
      if (s && !this.stopped) this.failed(s, `encoding worker ${s.n} failed (${e.message})`);
    };
    return worker;
  }

  private message(
    slot: Slot,
    m: { ready?: boolean; id?: number; result?: unknown; error?: string },
  ) {
    if (m.ready) {
      slot.ready = true;
      slot.since = performance.now(); // jobs sent while it started run from now
      return;
    }
    const w = this.waiting.get(m.id!);
    if (!w) return;
    this.waiting.delete(m.id!);
    slot.busy--;
    slot.since = performance.now();
    if (m.error === undefined) {
      w.resolve(m.result);
      return;
    }
    // The job threw on the worker: a bug, or the worker's own trouble. The worker stays.
    const why = `encoding worker ${slot.n}: ${m.error}`;
    if (!slot.errorLogged) {
      slot.errorLogged = true;
      this.log.warn(`${why}; the job runs on the main thread (later errors not logged)`);
    }
    this.runHere(w.job, w.resolve, w.reject, why);
  }

  /**
   * Checks every quarter of the deadline that each started worker with jobs
   * answered one within the deadline; stops once no job is out.
   */
  private watch(): ReturnType<typeof setInterval> {
    const timer = setInterval(() => {
      if (this.waiting.size === 0) {
        clearInterval(timer);
        this.watchdog = undefined;
        return;
      }
      const now = performance.now();
      for (const s of this.slots) {
        if (s.out || !s.ready || s.busy === 0 || now - s.since < this.deadline) continue;
        this.failed(
          s,
          `encoding worker ${s.n} did not answer a job in ${this.deadline / 1000} s ` +
            `(if it is stuck in a loop, its thread may stay busy: Deno cannot stop it)`,
        );
      }
    }, Math.max(1, this.deadline / 4));
    Deno.unrefTimer(timer); // a stuck worker must not keep the process alive either
    return timer;
  }

  /**
   * `slot`'s worker died or got stuck (`why`, for the log): its jobs run here,
   * and it is replaced unless it failed too often.
   */
  private failed(slot: Slot, why: string) {
    slot.worker.terminate();
    slot.ready = false;
    slot.busy = 0;
    const now = performance.now();
    slot.respawns = slot.respawns.filter((t) => now - t < 60_000);
    if (slot.respawns.length >= RESPAWNS_PER_MINUTE) {
      slot.out = true;
      this.log.warn(
        `${why}, replaced ${RESPAWNS_PER_MINUTE} times within a minute already: given up` +
          (this.size === 0 ? "; no encoding workers left, the main thread encodes everything" : ""),
      );
    } else {
      slot.respawns.push(now);
      this.log.warn(`${why}: replaced`);
      slot.worker = this.startWorker();
      slot.errorLogged = false;
    }
    for (const [id, w] of this.waiting) {
      if (w.slot !== slot) continue;
      this.waiting.delete(id);
      this.runHere(w.job, w.resolve, w.reject, why);
    }
  }

  /** Runs a job here (its worker failed with `why`, or there is none). */
  private runHere(
    job: EncodeJob,
    resolve: (v: unknown) => void,
    reject: (e: Error) => void,
    why: string,
  ) {
    this.ranHere++;
    try {
      this.here ??= new JobRunner();
      resolve(this.here.run(job).result);
    } catch (e) {
      reject(new Error(`${why}; on the main thread too: ${e instanceof Error ? e.message : e}`));
    }
  }

  private terminate() {
    this.stopped = true;
    clearInterval(this.watchdog);
    this.watchdog = undefined;
    for (const s of this.slots) if (!s.out) s.worker.terminate();
    this.here?.close();
    this.here = undefined;
    const e = new Error("the encoding pool has stopped");
    for (const w of this.waiting.values()) w.reject(e);
    this.waiting.clear();
  }
}
