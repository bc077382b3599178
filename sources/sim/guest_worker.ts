/// <reference lib="deno.worker" />
/**
 * A simulated guest's vCPU: runs its program in a Worker, drawing frames into
 * the framebuffer the guest shares with the backend (SharedArrayBuffer), at
 * the program's pace, and tells the guest kernel (main thread) which
 * rectangles it drew, as a program writing to /dev/fb0 would, through a
 * {@link FrameMailbox}.
 */
import { loadProgram } from "./programs/mod.ts";
import type { DrawTarget } from "./programs/workloads.ts";
import type { PacedProgram } from "../replay/program.ts";
import type { InputEvent } from "../../pipeline/events.ts";
import type { Rect } from "../../pipeline/rect.ts";
import { convertPixels } from "../../pipeline/convert_pixels.ts";
import { pvFormat, XRGB8888 } from "../../pipeline/pixel_format.ts";
import { mapShmFile, type ShmMapping } from "./shm.ts";
import { FrameMailbox } from "./frame_mailbox.ts";
import { nameThisThread } from "../thread_name.ts";

/** Messages to the worker. */
export type ToWorker =
  | {
    type: "start";
    program: string;
    domid: number;
    title?: string;
    /** The framebuffer's memory (in-process simulator) ... */
    sab?: SharedArrayBuffer;
    /** ... or the file the guest's framebuffer is a mapping of (a guest process). */
    file?: { path: string; offset: number; length: number };
    byteOffset: number;
    width: number;
    height: number;
    stride: number;
    depth: number;
    /** Frames a second, or 0 for as fast as the kernel takes them. */
    rate: number;
    /** The frame mailbox's memory. */
    mailbox: SharedArrayBuffer;
  }
  | { type: "input"; ev: InputEvent }
  | { type: "stop" };

/** Messages from the worker (frames go through the mailbox). */
export type FromWorker =
  | { type: "error"; message: string }
  /** The Worker unmapped its file mapping and ends (answer to "stop"). */
  | { type: "stopped" };

// Programs may pace themselves (dueMs) and change their screen size (screenSize): replay does.
let program: PacedProgram | undefined;
let shown = { width: 0, height: 0 };
let target: DrawTarget;
let scratch: DrawTarget | undefined; // 32 bpp drawing for guests of other depths
let out: { bytes: Uint8Array; stride: number; depth: number };
let n = 0;
let rate = 60;
let t0 = 0;
let stopped = false;
let mailbox: FrameMailbox | undefined;
let timer: ReturnType<typeof setTimeout> | undefined;
/** The framebuffer file's mapping, when the guest's memory is a file (a guest process). */
let mapping: ShmMapping | undefined;

function nowUs(): number {
  return Math.floor((performance.timeOrigin + performance.now()) * 1000) % 4294967296;
}

function publish(rects: Rect[]) {
  if (!scratch) return;
  const fb = {
    width: scratch.width,
    height: scratch.height,
    stride: scratch.strideWords * 4,
    format: XRGB8888,
    bytes: new Uint8Array(scratch.px.buffer),
  };
  for (const r of rects) {
    if (out.depth === 24) {
      for (let y = r.y; y < r.y + r.h; y++) {
        for (let x = r.x; x < r.x + r.w; x++) {
          const v = scratch.px[y * scratch.strideWords + x], at = y * out.stride + x * 3;
          out.bytes[at] = v & 255;
          out.bytes[at + 1] = (v >>> 8) & 255;
          out.bytes[at + 2] = (v >>> 16) & 255;
        }
      }
    } else {
      const dst = pvFormat(out.depth)!;
      convertPixels(fb, r, dst, out.bytes, r.y * out.stride + r.x * (out.depth / 8), out.stride);
    }
  }
}

/**
 * Longest the vCPU goes on drawing without a turn of its event loop. Between frames it
 * sleeps on the mailbox (a futex: far cheaper than a timer's turn of the event loop), and
 * the kernel wakes it early for a message; the event loop still runs this often for
 * anything else a program may have started.
 */
const YIELD_MS = 100;

/** Draws frames, sleeping between them on the mailbox, until a message or YIELD_MS. */
function frame() {
  timer = undefined;
  const box = mailbox!, yieldAt = performance.now() + YIELD_MS, mails = box.mails;
  for (;;) {
    if (stopped || !program || box.stopped) return;
    // Never draw over a frame the backend has not taken yet: a real guest may (and its viewers
    // then see a torn frame now and then), but the simulator serves the standard workloads to
    // be measured, and a torn frame is not the workload's (the C harnesses of the peer rig do
    // not tear either). A late frame is drawn at once, as the pacing rule says.
    box.wantsDone(true);
    const wakes = box.wakes;
    if (!box.allDone()) {
      const now = performance.now();
      if (box.mails !== mails || now >= yieldAt) {
        box.waitTaken().then(frame);
        return;
      }
      box.sleep(wakes, yieldAt - now);
      continue;
    }
    box.wantsDone(false); // asleep until the next frame is due, a handled frame is no news
    if (program.dueMs && program.dueMs(n) === undefined) return; // the program has finished
    const rects = program.drawFrame(scratch ?? target, n, nowUs);
    if (scratch && rects.length) publish(rects);
    const s = program.screenSize?.();
    const resized = s !== undefined && (s.width !== shown.width || s.height !== shown.height);
    if (resized) shown = { width: s.width, height: s.height };
    const sent = rects.length > 0 || resized;
    // The screen size goes along when it changed (the program's screenSize()).
    if (sent) box.post(n, rects, resized ? shown : undefined);
    n++;
    // The next frame: once the kernel took this one (rate 0), or when it is due.
    let due: number;
    if (rate === 0 && sent) due = -Infinity;
    else if (program.dueMs && rate !== 0) {
      const d = program.dueMs(n);
      if (d === undefined) return;
      due = t0 + d;
    } else due = t0 + n * (rate === 0 ? 1000 / 30 : 1000 / rate);
    for (;;) {
      const now = performance.now(), w = box.wakes;
      if (now >= due || stopped || box.stopped) break;
      if (box.mails !== mails || now >= yieldAt) {
        timer = setTimeout(frame, Math.max(0, due - now));
        return;
      }
      box.sleep(w, Math.min(due, yieldAt) - now);
    }
  }
}

self.onmessage = async (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  try {
    if (m.type === "start") {
      nameThisThread(`guest-dom${m.domid}`);
      const loaded = await loadProgram(m.program, m.width, m.height, {
        domid: m.domid,
        title: m.title,
      });
      if (stopped) return; // stopped while the program loaded
      program = loaded.program;
      rate = m.rate;
      mailbox = new FrameMailbox(m.mailbox);
      let memory: ArrayBufferLike;
      if (m.file) {
        mapping = mapShmFile(m.file.path, m.file.offset, m.file.length, true);
        memory = mapping.bytes.buffer;
      } else if (m.sab) memory = m.sab;
      else throw new Error("no framebuffer memory");
      out = { bytes: new Uint8Array(memory, m.byteOffset), stride: m.stride, depth: m.depth };
      if (m.depth === 32 && m.stride % 4 === 0 && m.byteOffset % 4 === 0) {
        target = {
          px: new Uint32Array(memory, m.byteOffset, (m.stride / 4) * m.height),
          width: m.width,
          height: m.height,
          strideWords: m.stride / 4,
        };
      } else {
        scratch = {
          px: new Uint32Array(m.width * m.height),
          width: m.width,
          height: m.height,
          strideWords: m.width,
        };
        target = scratch;
      }
      n = 0;
      shown = { width: m.width, height: m.height };
      t0 = performance.now();
      const due = rate !== 0 ? program.dueMs?.(0) : undefined;
      if (due !== undefined) timer = setTimeout(frame, Math.max(0, due));
      else frame();
    } else if (m.type === "input") {
      program?.input?.(m.ev);
    } else if (m.type === "stop") {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      if (mapping) {
        mapping.unmap();
        mapping = undefined;
        self.postMessage({ type: "stopped" } satisfies FromWorker);
      }
      self.close();
    }
  } catch (err) {
    self.postMessage(
      {
        type: "error",
        message: err instanceof Error ? err.message : String(err),
      } satisfies FromWorker,
    );
  }
};
