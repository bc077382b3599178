import type { InputEvent } from "../../pipeline/events.ts";
import type { Rect } from "../../pipeline/rect.ts";
import type { Logger } from "../log.ts";
import { FbFront, type FbFrontFlavour } from "./fbfront.ts";
import { KbdFront } from "./kbdfront.ts";
import type { GuestDomain, SimDomain, SimXen } from "./platform.ts";
import type { FromWorker, ToWorker } from "./guest_worker.ts";
import { FrameMailbox } from "./frame_mailbox.ts";
import { loadProgram } from "./programs/mod.ts";

/** Settings of a simulated guest. */
export interface SimGuestOptions {
  /**
   * A program name: demo, desktop, scroll, video, cursor, static, image:PATH,
   * replay:PATH (an FBS recording); "none" runs nothing.
   */
  program?: string;
  width?: number;
  height?: number;
  /** Bits per pixel of the PV framebuffer: 8, 16, 24 or 32. */
  depth?: number;
  /** Frames a second the program offers, or "max". */
  rate?: number | "max";
  /** Which fbfront to behave like. */
  flavour?: FbFrontFlavour;
  damage?: "rect" | "mmap";
  /** Append every input event the guest reads to this file as a JSON line. */
  inputLog?: string;
  /** Whether the guest has a vkbd (default true). */
  keyboard?: boolean;
  log?: Logger;
  /**
   * Called on the main thread for each frame the program announces, after the
   * kernel saw its damage and before the program may draw the next one at rate
   * "max" (so the framebuffer holds exactly frame `n` there; tests compare it).
   */
  onFrame?(n: number, rects: readonly Rect[]): void;
}

/** The screen size a guest of these options boots with (an image's or recording's own). */
export async function simGuestScreen(
  opts: SimGuestOptions,
): Promise<{ width: number; height: number }> {
  const program = opts.program ?? "demo";
  let size = { width: opts.width ?? 1024, height: opts.height ?? 768 };
  if (program.startsWith("image:") || program.startsWith("replay:")) {
    // The screen takes the image's size, or the recording's largest.
    const img = await loadProgram(program, size.width, size.height);
    size = { width: img.width, height: img.height };
  }
  return size;
}

/** The domain name the simulator gives a guest running `program`. */
export function simGuestName(program: string, domid: number): string {
  return `sim-${program.replace(/^(image|replay):.*/, "$1")}-${domid}`;
}

/**
 * A simulated PV guest: a domain with a vfb and a vkbd whose frontends
 * behave like Linux's, and a program drawing in its own Worker (its vCPU).
 * `boot()` probes the frontends; `reboot()` closes and probes them again.
 * The domain is an in-process `SimDomain` (`create`) or any `GuestDomain`
 * (`onDomain`: a guest process of a simulated host, sim/remote.ts).
 */
export class SimGuest<D extends GuestDomain = SimDomain> {
  fbfront?: FbFront;
  kbdfront?: KbdFront;
  /** Every input event the guest read from its keyboard ring. */
  readonly inputs: InputEvent[] = [];
  /** Frames the program has drawn (sequence number of the last). */
  lastFrame = -1;
  private worker?: Worker;
  private mailbox?: FrameMailbox;
  /** The Worker maps the framebuffer's file itself (and must unmap it). */
  private workerMapsFile = false;
  private inputLog?: Deno.FsFile;
  private width: number;
  private height: number;
  private readonly depth: number;
  private readonly waiters: (() => void)[] = [];

  private constructor(
    readonly domain: D,
    private readonly opts: SimGuestOptions,
    size: { width: number; height: number },
  ) {
    this.width = size.width;
    this.height = size.height;
    this.depth = opts.depth ?? 32;
    if (![8, 16, 24, 32].includes(this.depth)) throw new RangeError(`depth ${this.depth}`);
  }

  /**
   * Creates domain `domid` with a vfb and a vkbd on `xen`, as the toolstack
   * would. The guest is not running until `boot()`.
   */
  static async create(
    xen: SimXen,
    domid: number,
    opts: SimGuestOptions = {},
  ): Promise<SimGuest<SimDomain>> {
    const size = await simGuestScreen(opts);
    const dom = await xen.createDomain(domid, simGuestName(opts.program ?? "demo", domid));
    await xen.addDevice(domid, "vfb");
    if (opts.keyboard !== false) await xen.addDevice(domid, "vkbd");
    return new SimGuest(dom, opts, size);
  }

  /**
   * A guest on a domain that exists already with its vfb (and vkbd unless
   * `opts.keyboard` is false). The guest is not running until `boot()`.
   */
  static async onDomain<D extends GuestDomain>(
    dom: D,
    opts: SimGuestOptions = {},
  ): Promise<SimGuest<D>> {
    return new SimGuest(dom, opts, await simGuestScreen(opts));
  }

  get domid(): number {
    return this.domain.domid;
  }

  /** Loads the frontends (they probe at once) and starts the program. */
  async boot(): Promise<void> {
    if (this.opts.inputLog && !this.inputLog) {
      this.inputLog = await Deno.open(this.opts.inputLog, {
        append: true,
        create: true,
        write: true,
      });
    }
    const fb = new FbFront(this.domain, {
      width: this.width,
      height: this.height,
      depth: this.depth,
      flavour: this.opts.flavour,
      damage: this.opts.damage,
    });
    this.fbfront = fb;
    fb.onConnected = () => this.startProgram();
    await fb.probe();
    if (this.opts.keyboard !== false) {
      this.kbdfront = new KbdFront(this.domain, (e) => this.onInput(e));
      await this.kbdfront.probe();
    }
  }

  private startProgram() {
    this.stopProgram();
    if (this.opts.program === "none") return; // tests drive the framebuffer themselves
    const fb = this.fbfront!.fb;
    const w = new Worker(new URL("./guest_worker.ts", import.meta.url), { type: "module" });
    this.worker = w;
    this.workerMapsFile = fb.file !== undefined;
    const mailbox = new FrameMailbox();
    this.mailbox = mailbox;
    mailbox.listen((f) => {
      this.lastFrame = f.n;
      if (f.size && this.fbfront && !this.fbfront.resize(f.size.width, f.size.height)) {
        this.opts.log?.warn(
          `guest program wants a ${f.size.width}x${f.size.height} screen; the framebuffer cannot resize`,
        );
      }
      this.fbfront?.damage(f.rects);
      this.opts.onFrame?.(f.n, f.rects);
      this.waiters.splice(0).forEach((r) => r());
    }, (e) => this.opts.log?.error(`guest kernel: ${e instanceof Error ? e.message : e}`));
    w.onmessage = (e: MessageEvent<FromWorker>) => {
      const m = e.data;
      if (m.type === "error") this.opts.log?.error(`guest program: ${m.message}`);
    };
    w.onerror = (e) => {
      e.preventDefault();
      this.opts.log?.error(`guest program crashed: ${e.message}`);
    };
    const rate = this.opts.rate === "max" ? 0 : this.opts.rate ?? 60;
    // Shared memory goes to the Worker as it is; a file mapping cannot be
    // sent (it would be copied), so the Worker maps the same file itself.
    const memory = fb.file
      ? { file: { path: fb.file.path, offset: fb.file.offset, length: fb.memLength } }
      : { sab: fb.sab as SharedArrayBuffer };
    w.postMessage(
      {
        type: "start",
        program: this.opts.program ?? "demo",
        domid: this.domid,
        ...memory,
        byteOffset: fb.file ? 0 : fb.byteOffset,
        width: fb.width,
        height: fb.height,
        stride: fb.stride,
        depth: fb.depth,
        rate,
        mailbox: mailbox.sab,
      } satisfies ToWorker,
    );
  }

  private stopProgram() {
    this.mailbox?.stop();
    this.mailbox = undefined;
    const w = this.worker;
    if (!w) return;
    this.worker = undefined;
    w.postMessage({ type: "stop" } satisfies ToWorker);
    if (!this.workerMapsFile) {
      w.terminate();
      return;
    }
    // A Worker with a file mapping unmaps it and says "stopped" before it
    // ends; terminated at once, it would leave the mapping behind.
    const timer = setTimeout(() => w.terminate(), 2000);
    Deno.unrefTimer(timer);
    w.onmessage = (e: MessageEvent<FromWorker>) => {
      if (e.data.type === "stopped") {
        clearTimeout(timer);
        w.terminate();
      }
    };
  }

  /** Resolves after the program announced its next frame. */
  nextFrame(): Promise<void> {
    return new Promise((r) => this.waiters.push(r));
  }

  private onInput(e: InputEvent) {
    this.inputs.push(e);
    this.worker?.postMessage({ type: "input", ev: e } satisfies ToWorker);
    this.mailbox?.mail(); // a vCPU asleep between frames returns to its event loop for it
    if (this.inputLog) {
      this.inputLog.writeSync(new TextEncoder().encode(JSON.stringify(e) + "\n"));
    }
  }

  /** Changes the display mode (within the boot size), as fbcon/xrandr would. */
  resize(width: number, height: number): boolean {
    const fb = this.fbfront;
    if (!fb || !fb.resize(width, height)) return false;
    this.width = width;
    this.height = height;
    this.startProgram();
    return true;
  }

  /** Frontends go Closing/Closed and give back their memory. */
  async shutdown(): Promise<void> {
    this.stopProgram();
    await this.fbfront?.close();
    await this.kbdfront?.close();
    this.fbfront = undefined;
    this.kbdfront = undefined;
  }

  /** Reboot: the frontends close, then come back to Initialising and probe again. */
  async reboot(): Promise<void> {
    await this.shutdown();
    const xs = this.domain.xenstore;
    await xs.write(`/local/domain/${this.domid}/device/vfb/0/state`, "1");
    if (this.opts.keyboard !== false) {
      await xs.write(`/local/domain/${this.domid}/device/vkbd/0/state`, "1");
    }
    await this.boot();
  }

  /** Stops everything this guest runs (the domain itself stays). */
  stop(): Promise<void> {
    this.stopProgram();
    this.fbfront?.detach();
    this.kbdfront?.detach();
    this.inputLog?.close();
    this.inputLog = undefined;
    return Promise.resolve();
  }
}
