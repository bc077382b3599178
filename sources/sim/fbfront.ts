import type { Subscription } from "rxjs";
import {
  XENFB_EVENT_SIZE,
  XENFB_IN_RING_LEN,
  XENFB_IN_RING_OFFS,
  XENFB_NO_REFRESH,
  XENFB_OUT_RING_LEN,
  XENFB_OUT_RING_OFFS,
  XENFB_PAGE,
  XENFB_REFRESH_PERIOD,
  XENFB_RESIZE,
  XENFB_TYPE_REFRESH_PERIOD,
  XENFB_TYPE_RESIZE,
  XENFB_TYPE_UPDATE,
  XENFB_UPDATE,
} from "../device/fbif.ts";
import { indexView, loadIndex, pending, slotOffset, storeIndex } from "../device/ring.ts";
import { XenbusState } from "../device/xenbus.ts";
import type { Rect } from "../../pipeline/rect.ts";
import { PAGE_SIZE } from "../platform.ts";
import type { GuestDomain } from "./platform.ts";
import { parseState } from "../device/xenbus.ts";

/** How the simulated fbfront behaves: like Linux's xen-fbfront, or like Mini-OS's fbfront. */
export type FbFrontFlavour = "linux" | "minios";

/** Settings of a simulated fbfront. */
export interface FbFrontOptions {
  width: number;
  height: number;
  depth: number;
  flavour?: FbFrontFlavour;
  /**
   * "rect": exact rectangles, as the kernel's fillrect/copyarea/imageblit mark them;
   * "mmap": full-width row bands covering the touched pages, as deferred I/O marks
   * a program's writes through mmap.
   */
  damage?: "rect" | "mmap";
  /** Frame numbers written in pd[] (tests use it to make a hostile guest). */
  protocol?: string;
}

/** The framebuffer the guest draws into. */
export interface GuestFb {
  /**
   * Its memory: a SharedArrayBuffer (in-process simulator; the Worker gets
   * it), or an ArrayBuffer over a file mapping (`file` says which file: the
   * Worker maps it too).
   */
  sab: ArrayBufferLike;
  byteOffset: number;
  file?: { readonly path: string; readonly offset: number };
  width: number;
  height: number;
  stride: number;
  depth: number;
  memLength: number;
}

/**
 * A simulated xen-fbfront: allocates the framebuffer and the shared page,
 * fills pd[], publishes page-ref / event-channel / protocol / feature-update,
 * follows the xenbus handshake, and sends XENFB_TYPE_UPDATE the way Linux's
 * driver does: one pending bounding box merged across draws, held while the
 * OUT ring is full and flushed when the backend notifies.
 */
export class FbFront {
  readonly fe: string;
  readonly be: string;
  fb!: GuestFb;
  /** The shared page, exposed so tests can play a hostile guest. */
  page!: Uint8Array;
  private pageFrame = 0;
  private dirFrames: number[] = [];
  private fbFirst = 0;
  private evtchn?: ReturnType<GuestDomain["allocUnbound"]>;
  private subs: Subscription[] = [];
  private connected = false;
  private feConnected = false;
  private requestUpdate = false;
  private featureResize = false;
  private box: { x1: number; y1: number; x2: number; y2: number } | undefined;
  private pendingResize: { width: number; height: number } | undefined;
  /** Mini-OS: the backend said XENFB_NO_REFRESH. */
  private held = false;
  private fullWhenRoom = false;
  private readonly flavour: FbFrontFlavour;
  /** Refresh periods the frontend read (Mini-OS flavour), for tests. */
  readonly periods: number[] = [];
  /** Called when the frontend reaches Connected. */
  onConnected: () => void = () => {};

  constructor(private readonly dom: GuestDomain, private opts: FbFrontOptions, devid = 0) {
    this.fe = `/local/domain/${dom.domid}/device/vfb/${devid}`;
    this.be = `/local/domain/0/backend/vfb/${dom.domid}/${devid}`;
    this.flavour = opts.flavour ?? "linux";
  }

  /** xenfb_probe + xenfb_connect_backend: allocate, publish, become Initialised. */
  async probe(): Promise<void> {
    const { width, height, depth } = this.opts;
    const xs = this.dom.xenstore;
    const bpp = depth === 24 ? 3 : depth / 8;
    const stride = width * bpp;
    const memLength = Math.ceil((stride * height) / PAGE_SIZE) * PAGE_SIZE;
    const fbPages = memLength / PAGE_SIZE;
    const fbRun = this.dom.memory.alloc(fbPages);
    this.fbFirst = fbRun.first;
    this.fb = {
      sab: fbRun.bytes.buffer,
      byteOffset: fbRun.bytes.byteOffset,
      file: fbRun.file,
      width,
      height,
      stride,
      depth,
      memLength,
    };

    const shared = this.dom.memory.alloc(1);
    this.pageFrame = shared.first;
    this.page = shared.bytes;
    const entry = this.opts.protocol === "x86_32-abi" ? 4 : 8;
    const perDir = PAGE_SIZE / entry;
    const nDirs = Math.ceil(fbPages / perDir);
    const dv = new DataView(this.page.buffer, this.page.byteOffset, this.page.byteLength);
    dv.setInt32(XENFB_PAGE.width, width, true);
    dv.setInt32(XENFB_PAGE.height, height, true);
    dv.setUint32(XENFB_PAGE.line_length, stride, true);
    dv.setUint32(XENFB_PAGE.mem_length, memLength, true);
    dv.setUint8(XENFB_PAGE.depth, depth);
    const pdStart = entry === 8 ? XENFB_PAGE.pd64 : XENFB_PAGE.pd32;
    for (let d = 0; d < nDirs; d++) {
      const dir = this.dom.memory.alloc(1);
      this.dirFrames.push(dir.first);
      const ddv = new DataView(dir.bytes.buffer, dir.bytes.byteOffset, dir.bytes.byteLength);
      for (let i = 0; i < perDir && d * perDir + i < fbPages; i++) {
        writeEntry(ddv, i * entry, this.fbFirst + d * perDir + i, entry);
      }
      writeEntry(dv, pdStart + d * entry, dir.first, entry);
    }

    this.evtchn = this.dom.allocUnbound(0);
    this.subs.push(this.evtchn.events$.subscribe(() => this.onBackendEvent()));
    await xs.transaction(async (tx) => {
      await tx.write(`${this.fe}/page-ref`, String(this.pageFrame));
      await tx.write(`${this.fe}/event-channel`, String(this.evtchn!.localPort));
      await tx.write(`${this.fe}/protocol`, this.opts.protocol ?? "x86_64-abi");
      await tx.write(`${this.fe}/feature-update`, "1");
    });
    await xs.write(`${this.fe}/state`, String(XenbusState.Initialised));
    this.subs.push(
      xs.watch(`${this.be}/state`).subscribe(() => this.onBackendChanged().catch(() => {})),
    );
  }

  /** xenfb_backend_changed: Connected on InitWait; read the backend's keys once it is Connected. */
  private async onBackendChanged() {
    const xs = this.dom.xenstore;
    const s = parseState(await xs.read(`${this.be}/state`));
    if (s !== XenbusState.InitWait && s !== XenbusState.Connected) return;
    if (!this.feConnected) {
      this.feConnected = true;
      await xs.write(`${this.fe}/state`, String(XenbusState.Connected));
    }
    if (s === XenbusState.Connected && !this.connected) {
      this.requestUpdate = (await xs.read(`${this.be}/request-update`)) === "1";
      this.featureResize = (await xs.read(`${this.be}/feature-resize`)) === "1";
      this.connected = true;
      this.refresh(undefined);
      this.onConnected();
    }
  }

  /** True once both sides are Connected. */
  get isConnected(): boolean {
    return this.connected;
  }

  /** The guest drew into these rectangles (xenfb_refresh for each). */
  damage(rects: readonly Rect[]): void {
    for (const r of rects) {
      if (this.opts.damage === "mmap") this.refresh(this.rowBand(r));
      else this.refresh(r);
    }
  }

  /** The rows whose pages a write to `r` touched, full width (fb_deferred_io's view). */
  private rowBand(r: Rect): Rect {
    const { stride, height, width } = this.fb;
    const bpp = this.fb.depth === 24 ? 3 : this.fb.depth / 8;
    const start = r.y * stride + r.x * bpp;
    const end = (r.y + r.h - 1) * stride + (r.x + r.w) * bpp;
    const pStart = Math.floor(start / PAGE_SIZE) * PAGE_SIZE;
    const pEnd = Math.ceil(end / PAGE_SIZE) * PAGE_SIZE;
    const y1 = Math.floor(pStart / stride);
    const y2 = Math.min(height, Math.ceil(pEnd / stride));
    return { x: 0, y: y1, w: width, h: y2 - y1 };
  }

  /** Asks for a new mode (fb_set_par); sent with the next refresh, if the backend allows it. */
  resize(width: number, height: number): boolean {
    if (!this.featureResize) return false;
    const bpp = this.fb.depth === 24 ? 3 : this.fb.depth / 8;
    if (width > this.opts.width || height > this.opts.height || width * bpp > this.fb.stride) {
      return false;
    }
    this.pendingResize = { width, height };
    this.fb = { ...this.fb, width, height };
    this.refresh(undefined);
    return true;
  }

  private refresh(r: Rect | undefined) {
    if (r && r.w > 0 && r.h > 0) {
      const b = this.box;
      this.box = b
        ? {
          x1: Math.min(b.x1, r.x),
          y1: Math.min(b.y1, r.y),
          x2: Math.max(b.x2, r.x + r.w),
          y2: Math.max(b.y2, r.y + r.h),
        }
        : { x1: r.x, y1: r.y, x2: r.x + r.w, y2: r.y + r.h };
    }
    if (!this.connected) return;
    if (this.pendingResize && this.featureResize && !this.outFull()) {
      const { width, height } = this.pendingResize;
      this.pendingResize = undefined;
      this.putOut(XENFB_TYPE_RESIZE, (dv, at) => {
        dv.setInt32(at + XENFB_RESIZE.width, width, true);
        dv.setInt32(at + XENFB_RESIZE.height, height, true);
        dv.setInt32(at + XENFB_RESIZE.stride, this.fb.stride, true);
        dv.setInt32(at + XENFB_RESIZE.depth, this.fb.depth, true);
        dv.setInt32(at + XENFB_RESIZE.offset, 0, true);
      });
      this.box = { x1: 0, y1: 0, x2: width, y2: height };
    }
    if (!this.requestUpdate || this.held) return;
    if (this.fullWhenRoom && !this.outFull()) {
      this.fullWhenRoom = false;
      this.box = { x1: 0, y1: 0, x2: this.fb.width, y2: this.fb.height };
    }
    const b = this.box;
    if (!b) return;
    if (this.outFull()) {
      // Linux keeps the merged box until the backend notifies; Mini-OS drops
      // it and sends one full-screen update when there is room again.
      if (this.flavour === "minios") {
        this.box = undefined;
        this.fullWhenRoom = true;
      }
      return;
    }
    this.box = undefined;
    this.putOut(XENFB_TYPE_UPDATE, (dv, at) => {
      dv.setInt32(at + XENFB_UPDATE.x, b.x1, true);
      dv.setInt32(at + XENFB_UPDATE.y, b.y1, true);
      dv.setInt32(at + XENFB_UPDATE.width, b.x2 - b.x1, true);
      dv.setInt32(at + XENFB_UPDATE.height, b.y2 - b.y1, true);
    });
  }

  private outFull(): boolean {
    const idx = indexView(this.page);
    return pending(loadIndex(idx, XENFB_PAGE.out_prod), loadIndex(idx, XENFB_PAGE.out_cons)) >=
      XENFB_OUT_RING_LEN;
  }

  /** Writes one raw OUT event and notifies (tests use it to play a hostile guest). */
  putOut(type: number, fill: (dv: DataView, at: number) => void): void {
    const idx = indexView(this.page);
    const prod = loadIndex(idx, XENFB_PAGE.out_prod);
    const at = slotOffset(XENFB_OUT_RING_OFFS, XENFB_OUT_RING_LEN, prod);
    this.page.fill(0, at, at + XENFB_EVENT_SIZE);
    this.page[at] = type;
    fill(new DataView(this.page.buffer, this.page.byteOffset), at);
    storeIndex(idx, XENFB_PAGE.out_prod, prod + 1);
    this.evtchn?.notify();
  }

  /** Sends an event-channel notification to the backend. */
  notify(): void {
    this.evtchn?.notify();
  }

  /** The backend notified: take IN events, then flush what the full ring held back. */
  private onBackendEvent() {
    const idx = indexView(this.page);
    const prod = loadIndex(idx, XENFB_PAGE.in_prod);
    const cons = loadIndex(idx, XENFB_PAGE.in_cons);
    if (prod !== cons) {
      if (this.flavour === "minios") {
        const dv = new DataView(this.page.buffer, this.page.byteOffset);
        const n = Math.min(pending(prod, cons), XENFB_IN_RING_LEN);
        for (let i = 0; i < n; i++) {
          const at = slotOffset(XENFB_IN_RING_OFFS, XENFB_IN_RING_LEN, cons + i);
          if (this.page[at] !== XENFB_TYPE_REFRESH_PERIOD) continue;
          const period = dv.getUint32(at + XENFB_REFRESH_PERIOD.period, true);
          this.periods.push(period);
          const wasHeld = this.held;
          this.held = period === XENFB_NO_REFRESH;
          // "should immediately refresh the framebuffer" when told a period.
          if (wasHeld && !this.held) {
            this.box = { x1: 0, y1: 0, x2: this.fb.width, y2: this.fb.height };
          }
        }
      }
      storeIndex(idx, XENFB_PAGE.in_cons, prod); // Linux ignores every IN event
      this.evtchn?.notify();
    }
    this.refresh(undefined);
  }

  /** Stops reacting to the backend (the guest was paused or destroyed). */
  detach(): void {
    this.subs.forEach((s) => s.unsubscribe());
    this.subs = [];
  }

  /** Frontend Closing, then Closed, and gives its memory back (shutdown or reboot). */
  async close(): Promise<void> {
    const xs = this.dom.xenstore;
    this.connected = false;
    this.subs.forEach((s) => s.unsubscribe());
    this.subs = [];
    await xs.write(`${this.fe}/state`, String(XenbusState.Closing));
    await xs.write(`${this.fe}/state`, String(XenbusState.Closed));
    this.evtchn?.close();
    this.dom.memory.free(this.fbFirst);
    this.dom.memory.free(this.pageFrame);
    this.dirFrames.forEach((f) => this.dom.memory.free(f));
  }
}

function writeEntry(dv: DataView, at: number, frame: number, bytes: number) {
  if (bytes === 4) dv.setUint32(at, frame, true);
  else {
    dv.setUint32(at, frame >>> 0, true);
    dv.setUint32(at + 4, Math.floor(frame / 0x1_0000_0000), true);
  }
}
