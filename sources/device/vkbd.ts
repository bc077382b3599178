import type { Observer, Subscription } from "rxjs";
import type { InputEvent } from "../../pipeline/events.ts";
import type { Logger } from "../log.ts";
import type { EventChannel, Mapping, Platform } from "../platform.ts";
import type { DeviceOps } from "./backend.ts";
import {
  XENKBD_EVENT_SIZE,
  XENKBD_IN_RING_LEN,
  XENKBD_IN_RING_OFFS,
  XENKBD_KEY,
  XENKBD_MOTION,
  XENKBD_PAGE,
  XENKBD_POSITION,
  XENKBD_TYPE_KEY,
  XENKBD_TYPE_MOTION,
  XENKBD_TYPE_POS,
} from "./kbdif.ts";
import { indexView, loadIndex, pending, slotOffset, storeIndex } from "./ring.ts";
import { parseUint } from "./vfb.ts";

interface Connection {
  page: Mapping;
  evtchn: EventChannel;
  sub: Subscription;
  abs: boolean;
}

/** Highest Linux input code (KEY_MAX). */
const KEY_MAX = 0x2ff;

/**
 * The vkbd device: writes viewers' input to the guest's IN ring as
 * XENKBD_TYPE_KEY / MOTION / POS events. The pointer is absolute when the
 * frontend asked for it (request-abs-pointer), relative otherwise; either
 * kind of input is translated to what the guest asked for.
 */
export class VkbdDevice implements DeviceOps {
  private conn: Connection | undefined;
  private lastX = 0;
  private lastY = 0;
  private dropped = 0;

  /** Where viewers send input; ignored while no frontend is connected. */
  readonly input: Observer<InputEvent> = {
    next: (e) => this.send(e),
    error: () => {},
    complete: () => {},
  };

  constructor(
    private readonly platform: Platform,
    private readonly domid: number,
    private readonly log: Logger,
    /** The pointer range for absolute positions, from the framebuffer's size. */
    private readonly pointerSize: () => { width: number; height: number } | undefined = () =>
      undefined,
  ) {}

  /** True when connected and the guest takes absolute positions. */
  get absolute(): boolean {
    return this.conn?.abs ?? false;
  }

  async init(be: string): Promise<void> {
    // Written before the frontend probes: current kbdfront reads it only then.
    await this.platform.xenstore.write(`${be}/feature-abs-pointer`, "1");
  }

  async connect(_be: string, fe: string): Promise<void> {
    const xs = this.platform.xenstore;
    const gref = await xs.read(`${fe}/page-gref`);
    const port = parseUint(await xs.read(`${fe}/event-channel`), "event-channel");
    const page = gref !== undefined
      ? this.platform.memory.mapGrant(this.domid, parseUint(gref, "page-gref"), true)
      : this.platform.memory.mapFrames(
        this.domid,
        [parseUint(await xs.read(`${fe}/page-ref`), "page-ref")],
        true,
      );
    let evtchn: EventChannel;
    try {
      evtchn = this.platform.evtchn.bindInterdomain(this.domid, port);
    } catch (e) {
      page.unmap();
      throw e;
    }
    // The guest's acknowledgements need no action: we look at in_cons when we write.
    const sub = evtchn.events$.subscribe(() => {});
    this.conn = { page, evtchn, sub, abs: false };
    this.log.info(`mapped keyboard page, event channel ${evtchn.localPort}`);
  }

  async connected(_be: string, fe: string): Promise<void> {
    const abs = (await this.platform.xenstore.read(`${fe}/request-abs-pointer`)) === "1";
    if (this.conn) this.conn.abs = abs;
    this.log.info(`pointer is ${abs ? "absolute" : "relative"}`);
  }

  disconnect(reason: string): void {
    const c = this.conn;
    if (!c) return;
    this.conn = undefined;
    c.sub.unsubscribe();
    c.evtchn.close();
    c.page.unmap();
    this.log.info(`unmapped keyboard page (${reason})`);
  }

  private send(e: InputEvent) {
    const c = this.conn;
    if (!c) return;
    if (e.type === "key") {
      if (!Number.isInteger(e.code) || e.code <= 0 || e.code >= KEY_MAX) return;
      this.put(c, XENKBD_TYPE_KEY, (dv, at) => {
        dv.setUint8(at + XENKBD_KEY.pressed, e.down ? 1 : 0);
        dv.setUint32(at + XENKBD_KEY.keycode, e.code, true);
      });
      return;
    }
    const dz = finiteInt(e.dz ?? 0);
    if (e.type === "position") {
      const x = finiteInt(e.x), y = finiteInt(e.y);
      if (c.abs) this.putPos(c, x, y, dz);
      else this.putMotion(c, x - this.lastX, y - this.lastY, dz);
      this.lastX = x;
      this.lastY = y;
    } else {
      const dx = finiteInt(e.dx), dy = finiteInt(e.dy);
      if (c.abs) {
        const size = this.pointerSize();
        const maxX = size ? size.width - 1 : 0x7fff, maxY = size ? size.height - 1 : 0x7fff;
        this.lastX = Math.min(maxX, Math.max(0, this.lastX + dx));
        this.lastY = Math.min(maxY, Math.max(0, this.lastY + dy));
        this.putPos(c, this.lastX, this.lastY, dz);
      } else this.putMotion(c, dx, dy, dz);
    }
  }

  private putPos(c: Connection, x: number, y: number, dz: number) {
    this.put(c, XENKBD_TYPE_POS, (dv, at) => {
      dv.setInt32(at + XENKBD_POSITION.abs_x, x, true);
      dv.setInt32(at + XENKBD_POSITION.abs_y, y, true);
      dv.setInt32(at + XENKBD_POSITION.rel_z, dz, true);
    });
  }

  private putMotion(c: Connection, dx: number, dy: number, dz: number) {
    if (dx === 0 && dy === 0 && dz === 0) return;
    this.put(c, XENKBD_TYPE_MOTION, (dv, at) => {
      dv.setInt32(at + XENKBD_MOTION.rel_x, dx, true);
      dv.setInt32(at + XENKBD_MOTION.rel_y, dy, true);
      dv.setInt32(at + XENKBD_MOTION.rel_z, dz, true);
    });
  }

  /** Writes one event to the IN ring; drops it (and counts) when the guest has not made room. */
  private put(c: Connection, type: number, fill: (dv: DataView, at: number) => void) {
    const page = c.page.bytes;
    const idx = indexView(page);
    const prod = loadIndex(idx, XENKBD_PAGE.in_prod);
    const cons = loadIndex(idx, XENKBD_PAGE.in_cons);
    if (pending(prod, cons) >= XENKBD_IN_RING_LEN) {
      if (this.dropped++ % 1000 === 0) {
        this.log.warn(`keyboard ring full: input dropped (${this.dropped} so far)`);
      }
      c.evtchn.notify();
      return;
    }
    const at = slotOffset(XENKBD_IN_RING_OFFS, XENKBD_IN_RING_LEN, prod);
    page.fill(0, at, at + XENKBD_EVENT_SIZE);
    page[at] = type;
    fill(new DataView(page.buffer, page.byteOffset), at);
    storeIndex(idx, XENKBD_PAGE.in_prod, prod + 1); // after the event: Atomics order it
    c.evtchn.notify();
  }
}

function finiteInt(v: number): number {
  if (!Number.isFinite(v)) return 0;
  return Math.max(-0x8000_0000, Math.min(0x7fff_ffff, Math.trunc(v)));
}
