import type { InputEvent } from "../../pipeline/events.ts";
import type { Rect } from "../../pipeline/rect.ts";
import type { Logger } from "../log.ts";
import { FbFront, type FbFrontFlavour } from "./fbfront.ts";
import { KbdFront } from "./kbdfront.ts";
import type { SimDomain, SimXen } from "./platform.ts";
import type { FromWorker, ToWorker } from "./guest_worker.ts";
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

/**
 * A simulated PV guest: a domain with a vfb and a vkbd whose frontends
 * behave like Linux's, and a program drawing in its own Worker (its vCPU).
 * `boot()` probes the frontends; `reboot()` closes and probes them again.
 */
export class SimGuest {
  fbfront?: FbFront;
  kbdfront?: KbdFront;
  /** Every input event the guest read from its keyboard ring. */
  readonly inputs: InputEvent[] = [];
  /** Frames the program has drawn (sequence number of the last). */
  lastFrame = -1;
  private worker?: Worker;
  private inputLog?: Deno.FsFile;
  private width: number;
  private height: number;
  private readonly depth: number;
  private readonly waiters: (() => void)[] = [];

  private constructor(
    readonly domain: SimDomain,
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
  static async create(xen: SimXen, domid: number, opts: SimGuestOptions = {}): Promise<SimGuest> {
    const program = opts.program ?? "demo";
    let size = { width: opts.width ?? 1024, height: opts.height ?? 768 };
    if (program.startsWith("image:") || program.startsWith("replay:")) {
      // The screen takes the image's size, or the recording's largest.
      const img = await loadProgram(program, size.width, size.height);
      size = { width: img.width, height: img.height };
    }
    const name = `sim-${program.replace(/^(image|replay):.*/, "$1")}-${domid}`;
    const dom = await xen.createDomain(domid, name);
    await xen.addDevice(domid, "vfb");
    if (opts.keyboard !== false) await xen.addDevice(domid, "vkbd");
    return new SimGuest(dom, opts, size);
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
    w.onmessage = (e: MessageEvent<FromWorker>) => {
      const m = e.data;
      if (m.type === "frame") {
        this.lastFrame = m.n;
        if (m.size && this.fbfront && !this.fbfront.resize(m.size.width, m.size.height)) {
          this.opts.log?.warn(
            `guest program wants a ${m.size.width}x${m.size.height} screen; the framebuffer cannot resize`,
          );
        }
        this.fbfront?.damage(m.rects);
        this.opts.onFrame?.(m.n, m.rects);
        if (this.opts.rate === "max") w.postMessage({ type: "ack" } satisfies ToWorker);
        this.waiters.splice(0).forEach((f) => f());
      } else if (m.type === "error") {
        this.opts.log?.error(`guest program: ${m.message}`);
      }
    };
    w.onerror = (e) => {
      e.preventDefault();
      this.opts.log?.error(`guest program crashed: ${e.message}`);
    };
    const rate = this.opts.rate === "max" ? 0 : this.opts.rate ?? 60;
    w.postMessage(
      {
        type: "start",
        program: this.opts.program ?? "demo",
        domid: this.domid,
        sab: fb.sab,
        byteOffset: fb.byteOffset,
        width: fb.width,
        height: fb.height,
        stride: fb.stride,
        depth: fb.depth,
        rate,
      } satisfies ToWorker,
    );
  }

  private stopProgram() {
    this.worker?.postMessage({ type: "stop" } satisfies ToWorker);
    this.worker?.terminate();
    this.worker = undefined;
  }

  /** Resolves after the program announced its next frame. */
  nextFrame(): Promise<void> {
    return new Promise((r) => this.waiters.push(r));
  }

  private onInput(e: InputEvent) {
    this.inputs.push(e);
    this.worker?.postMessage({ type: "input", ev: e } satisfies ToWorker);
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
