import type { Subscription } from "rxjs";
import type { InputEvent } from "../../pipeline/events.ts";
import {
  XENKBD_IN_RING_LEN,
  XENKBD_IN_RING_OFFS,
  XENKBD_KEY,
  XENKBD_MOTION,
  XENKBD_PAGE,
  XENKBD_POSITION,
  XENKBD_TYPE_KEY,
  XENKBD_TYPE_MOTION,
  XENKBD_TYPE_POS,
} from "../device/kbdif.ts";
import { indexView, loadIndex, pending, slotOffset, storeIndex } from "../device/ring.ts";
import { parseState, XenbusState } from "../device/xenbus.ts";
import type { GuestDomain } from "./platform.ts";

/**
 * A simulated xen-kbdfront (current Linux): reads the backend's features at
 * probe only, asks for an absolute pointer if offered, grants its page, and
 * consumes the IN ring when notified, handing each event to the guest.
 */
export class KbdFront {
  readonly fe: string;
  readonly be: string;
  page!: Uint8Array;
  private pageFrame = 0;
  private evtchn?: ReturnType<GuestDomain["allocUnbound"]>;
  private subs: Subscription[] = [];
  private feConnected = false;
  /** True when the frontend asked for absolute positions. */
  absolute = false;

  constructor(
    private readonly dom: GuestDomain,
    private readonly onInput: (e: InputEvent) => void,
    devid = 0,
  ) {
    this.fe = `/local/domain/${dom.domid}/device/vkbd/${devid}`;
    this.be = `/local/domain/0/backend/vkbd/${dom.domid}/${devid}`;
  }

  async probe(): Promise<void> {
    const xs = this.dom.xenstore;
    this.absolute = (await xs.read(`${this.be}/feature-abs-pointer`)) === "1";
    const run = this.dom.memory.alloc(1);
    this.pageFrame = run.first;
    this.page = run.bytes;
    const gref = this.dom.memory.grant(run.first, 0);
    this.evtchn = this.dom.allocUnbound(0);
    this.subs.push(this.evtchn.events$.subscribe(() => this.onBackendEvent()));
    await xs.transaction(async (tx) => {
      if (this.absolute) await tx.write(`${this.fe}/request-abs-pointer`, "1");
      await tx.write(`${this.fe}/page-ref`, String(run.first));
      await tx.write(`${this.fe}/page-gref`, String(gref));
      await tx.write(`${this.fe}/event-channel`, String(this.evtchn!.localPort));
    });
    await xs.write(`${this.fe}/state`, String(XenbusState.Initialised));
    this.subs.push(
      xs.watch(`${this.be}/state`).subscribe(() => this.onBackendChanged().catch(() => {})),
    );
  }

  private async onBackendChanged() {
    const xs = this.dom.xenstore;
    const s = parseState(await xs.read(`${this.be}/state`));
    if ((s === XenbusState.InitWait || s === XenbusState.Connected) && !this.feConnected) {
      this.feConnected = true;
      await xs.write(`${this.fe}/state`, String(XenbusState.Connected));
    }
  }

  /** input_handler: every event between in_cons and in_prod, then in_cons = in_prod and notify. */
  private onBackendEvent() {
    const idx = indexView(this.page);
    const prod = loadIndex(idx, XENKBD_PAGE.in_prod);
    const cons = loadIndex(idx, XENKBD_PAGE.in_cons);
    const dv = new DataView(this.page.buffer, this.page.byteOffset);
    const n = Math.min(pending(prod, cons), XENKBD_IN_RING_LEN);
    for (let i = 0; i < n; i++) {
      const at = slotOffset(XENKBD_IN_RING_OFFS, XENKBD_IN_RING_LEN, cons + i);
      const type = this.page[at];
      if (type === XENKBD_TYPE_KEY) {
        this.onInput({
          type: "key",
          code: dv.getUint32(at + XENKBD_KEY.keycode, true),
          down: this.page[at + XENKBD_KEY.pressed] !== 0,
        });
      } else if (type === XENKBD_TYPE_MOTION) {
        this.onInput({
          type: "motion",
          dx: dv.getInt32(at + XENKBD_MOTION.rel_x, true),
          dy: dv.getInt32(at + XENKBD_MOTION.rel_y, true),
          dz: dv.getInt32(at + XENKBD_MOTION.rel_z, true),
        });
      } else if (type === XENKBD_TYPE_POS) {
        this.onInput({
          type: "position",
          x: dv.getInt32(at + XENKBD_POSITION.abs_x, true),
          y: dv.getInt32(at + XENKBD_POSITION.abs_y, true),
          dz: dv.getInt32(at + XENKBD_POSITION.rel_z, true),
        });
      } // unknown in events are ignored, as the header says
    }
    if (n) {
      storeIndex(idx, XENKBD_PAGE.in_cons, prod);
      this.evtchn?.notify();
    }
  }

  /** Stops reacting to the backend (the guest was paused or destroyed). */
  detach(): void {
    this.subs.forEach((s) => s.unsubscribe());
    this.subs = [];
  }

  async close(): Promise<void> {
    const xs = this.dom.xenstore;
    this.subs.forEach((s) => s.unsubscribe());
    this.subs = [];
    this.feConnected = false;
    await xs.write(`${this.fe}/state`, String(XenbusState.Closing));
    await xs.write(`${this.fe}/state`, String(XenbusState.Closed));
    this.evtchn?.close();
    this.dom.memory.free(this.pageFrame);
  }
}
