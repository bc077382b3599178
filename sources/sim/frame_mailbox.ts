/**
 * How a simulated guest's vCPU (the program's Worker) tells its kernel (the
 * main thread) that it drew a frame: a mailbox in shared memory with a
 * doorbell (`Atomics.notify`, awaited with `Atomics.waitAsync`), which wakes
 * the main thread in about half the time a `postMessage` takes (100 against
 * 200 µs here), time that every latency measured through the simulator
 * would otherwise carry.
 *
 * A frame posted before the kernel took the previous one is merged into it
 * (its rectangles appended, or their bounding box once there are too many),
 * as a frontend merges damage it could not send yet: nothing is lost, and the
 * program never waits for the kernel unless it asks to ({@link waitTaken}).
 * "Handled" ({@link done}) means the backend has taken the frame's damage
 * too, since the kernel's handler runs the event channel's microtasks first.
 *
 * @example
 * ```ts
 * import { FrameMailbox } from "./frame_mailbox.ts";
 * import { assertEquals } from "@rxfb/assert";
 *
 * const box = new FrameMailbox();
 * const vcpu = new FrameMailbox(box.sab); // the Worker's side, same memory
 * vcpu.post(0, [{ x: 0, y: 0, w: 10, h: 10 }]);
 * vcpu.post(1, [{ x: 20, y: 0, w: 5, h: 5 }]);
 * assertEquals(box.take(), { n: 1, rects: [{ x: 0, y: 0, w: 10, h: 10 }, { x: 20, y: 0, w: 5, h: 5 }] });
 * assertEquals(box.take(), undefined); // nothing new
 * ```
 *
 * @module
 */
import type { Rect } from "../../pipeline/rect.ts";

/** Rectangles a mailbox holds; more are merged into their bounding box. */
export const MAILBOX_RECTS = 64;

// Int32 slots.
const POSTED = 0; // frames posted (the doorbell)
const TAKEN = 1; // the value of POSTED when the kernel last took the mailbox
const LOCK = 2;
const FRAME = 3; // the last frame number posted
const COUNT = 4; // rectangles held
const HAS_SIZE = 5; // 1 when the program's screen size changed
const WIDTH = 6;
const HEIGHT = 7;
const STOP = 8; // 1: the kernel stopped listening
const DONE = 9; // the value of POSTED when the kernel last finished handling what it took
const WAKE = 10; // bumped whenever a vCPU sleeping in sleep() should look up (done, stop, mail)
const MAIL = 11; // bumped when the kernel posted the vCPU's Worker a message
const WANTS_DONE = 12; // 1 while a vCPU sleeps until the kernel handled its frames
const RECTS = 16;

/** A frame as the kernel takes it. */
export interface PostedFrame {
  /** The last frame number posted since the previous take. */
  readonly n: number;
  readonly rects: Rect[];
  /** The program's screen size, when it changed. */
  readonly size?: { width: number; height: number };
}

/** One side of a frame mailbox (see the module notes). */
export class FrameMailbox {
  readonly sab: SharedArrayBuffer;
  private readonly i32: Int32Array;
  /** The rectangles' slots as last taken. */
  private readonly held = new Int32Array(MAILBOX_RECTS * 4);

  /** A new mailbox, or the other side of `sab`. */
  constructor(sab?: SharedArrayBuffer) {
    this.sab = sab ?? new SharedArrayBuffer((RECTS + MAILBOX_RECTS * 4) * 4);
    this.i32 = new Int32Array(this.sab);
  }

  /** vCPU: frame `n` drew `rects` (and the screen is now `size`, when it changed). */
  post(n: number, rects: readonly Rect[], size?: { width: number; height: number }): void {
    const a = this.i32;
    this.lock();
    try {
      // Not taken since the last post: add to what is there.
      const fresh = Atomics.load(a, TAKEN) === Atomics.load(a, POSTED);
      let count = fresh ? 0 : a[COUNT];
      if (fresh) a[HAS_SIZE] = 0;
      for (const r of rects) {
        if (count === MAILBOX_RECTS) {
          this.collapse();
          count = 1;
        }
        // Slot by slot: nothing is allocated while the other side may be spinning.
        const o = RECTS + count * 4;
        a[o] = r.x;
        a[o + 1] = r.y;
        a[o + 2] = r.w;
        a[o + 3] = r.h;
        count++;
      }
      a[COUNT] = count;
      a[FRAME] = n;
      if (size) {
        a[HAS_SIZE] = 1;
        a[WIDTH] = size.width;
        a[HEIGHT] = size.height;
      }
      Atomics.add(a, POSTED, 1);
    } finally {
      this.unlock();
    }
    Atomics.notify(a, POSTED);
  }

  /** Kernel: what was posted since the last take, or undefined. */
  take(): PostedFrame | undefined {
    const a = this.i32, held = this.held;
    let n: number, count: number, size: { width: number; height: number } | undefined;
    this.lock();
    try {
      const posted = Atomics.load(a, POSTED);
      if (Atomics.load(a, TAKEN) === posted) return undefined;
      // Copied out as numbers; the objects are made once the vCPU may post again.
      n = a[FRAME];
      count = a[COUNT];
      held.set(a.subarray(RECTS, RECTS + count * 4));
      if (a[HAS_SIZE]) size = { width: a[WIDTH], height: a[HEIGHT] };
      Atomics.store(a, TAKEN, posted);
    } finally {
      this.unlock();
    }
    const rects: Rect[] = [];
    for (let o = 0; o < count * 4; o += 4) {
      rects.push({ x: held[o], y: held[o + 1], w: held[o + 2], h: held[o + 3] });
    }
    return size ? { n, rects, size } : { n, rects };
  }

  /**
   * Kernel: everything taken so far has been handled (wakes {@link waitTaken},
   * and {@link sleep} when the vCPU said it {@link wantsDone}; a vCPU asleep
   * until its next frame is due is left asleep).
   */
  done(): void {
    Atomics.store(this.i32, DONE, Atomics.load(this.i32, TAKEN));
    Atomics.notify(this.i32, DONE);
    if (Atomics.load(this.i32, WANTS_DONE)) this.wake();
  }

  /**
   * vCPU: whether a {@link done} should end its {@link sleep}. Set it before
   * reading {@link wakes} and checking {@link allDone}: then a frame handled
   * in between is never missed.
   */
  wantsDone(on: boolean): void {
    Atomics.store(this.i32, WANTS_DONE, on ? 1 : 0);
  }

  /**
   * Kernel: a message was posted to the vCPU's Worker. A vCPU in {@link sleep}
   * wakes up and should return to its event loop, where the message waits.
   */
  mail(): void {
    Atomics.add(this.i32, MAIL, 1);
    this.wake();
  }

  private wake(): void {
    Atomics.add(this.i32, WAKE, 1);
    Atomics.notify(this.i32, WAKE);
  }

  /** vCPU: the count of {@link mail}s so far (compare to learn of a new one). */
  get mails(): number {
    return Atomics.load(this.i32, MAIL);
  }

  /** vCPU: the count of wake-ups so far, to pass to {@link sleep}. */
  get wakes(): number {
    return Atomics.load(this.i32, WAKE);
  }

  /**
   * vCPU: blocks the thread for up to `ms` milliseconds, or less once the
   * kernel stops, mails or (see {@link wantsDone}) handles a frame: any
   * wake-up after `wakes` was read. A futex wait: on a Worker it costs a
   * third of what a timer does, whose every turn of the event loop runs far
   * more code (0.09 against 0.27 ms of CPU a wake-up here, 60 times a second).
   */
  sleep(wakes: number, ms: number): void {
    if (ms > 0) Atomics.wait(this.i32, WAKE, wakes, ms);
  }

  /**
   * Kernel: calls `onFrame` for every frame taken, as soon as the doorbell
   * rings, until {@link stop}.
   */
  async listen(onFrame: (f: PostedFrame) => void, onError?: (e: unknown) => void): Promise<void> {
    const a = this.i32;
    while (!Atomics.load(a, STOP)) {
      const f = this.take();
      if (f) {
        try {
          onFrame(f);
        } catch (e) {
          onError?.(e); // one bad frame must not stop the guest's display
        } finally {
          // After the microtasks onFrame started (the backend taking the frame's damage).
          queueMicrotask(() => this.done());
        }
      }
      // Asleep until the next post moves POSTED past what was taken (or stop() wakes it).
      const w = Atomics.waitAsync(a, POSTED, Atomics.load(a, TAKEN));
      if (w.async) await w.value;
    }
  }

  /** Kernel: stops {@link listen} and wakes a vCPU waiting in {@link waitTaken}. */
  stop(): void {
    Atomics.store(this.i32, STOP, 1);
    // Wakes waiters whatever the slots hold.
    Atomics.notify(this.i32, POSTED);
    Atomics.notify(this.i32, DONE);
    this.wake();
  }

  /** True once the kernel stopped listening (the vCPU should draw no more). */
  get stopped(): boolean {
    return Atomics.load(this.i32, STOP) === 1;
  }

  /** vCPU: true when the kernel took and handled everything posted so far. */
  allDone(): boolean {
    return Atomics.load(this.i32, DONE) === Atomics.load(this.i32, POSTED);
  }

  /** vCPU: resolves once the kernel took and handled everything posted so far (or stopped). */
  async waitTaken(): Promise<void> {
    const a = this.i32;
    for (;;) {
      const done = Atomics.load(a, DONE);
      if (done === Atomics.load(a, POSTED) || Atomics.load(a, STOP)) return;
      const w = Atomics.waitAsync(a, DONE, done);
      if (w.async) await w.value;
    }
  }

  /** The held rectangles (all MAILBOX_RECTS of them) become their bounding box (lock held). */
  private collapse(): void {
    const a = this.i32;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (let o = RECTS; o < RECTS + MAILBOX_RECTS * 4; o += 4) {
      x0 = Math.min(x0, a[o]);
      y0 = Math.min(y0, a[o + 1]);
      x1 = Math.max(x1, a[o] + a[o + 2]);
      y1 = Math.max(y1, a[o + 1] + a[o + 3]);
    }
    a[RECTS] = x0;
    a[RECTS + 1] = y0;
    a[RECTS + 2] = x1 - x0;
    a[RECTS + 3] = y1 - y0;
  }

  private lock(): void {
    while (Atomics.compareExchange(this.i32, LOCK, 0, 1) !== 0) {
      // Held by the other side for a few instructions: spin.
    }
  }

  private unlock(): void {
    Atomics.store(this.i32, LOCK, 0);
  }
}
