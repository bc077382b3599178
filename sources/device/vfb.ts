import { filter, firstValueFrom, map, Observable, Subject, type Subscription } from "rxjs";
import type { DisplayEvent, ResizeEvent } from "../../pipeline/events.ts";
import type { Framebuffer } from "../../pipeline/framebuffer.ts";
import { pvFormat } from "../../pipeline/pixel_format.ts";
import type { Rect } from "../../pipeline/rect.ts";
import type { Logger } from "../log.ts";
import { type EventChannel, type Mapping, PAGE_SIZE, type Platform } from "../platform.ts";
import type { DeviceOps } from "./backend.ts";
import {
  pdEntryBytes,
  usablePdEntries,
  XENFB_EVENT_SIZE,
  XENFB_IN_RING_LEN,
  XENFB_IN_RING_OFFS,
  XENFB_NO_REFRESH,
  XENFB_PAGE,
  XENFB_REFRESH_PERIOD,
  XENFB_TYPE_REFRESH_PERIOD,
} from "./fbif.ts";
import {
  clipUpdate,
  configureFb,
  type FbGeometry,
  readFbPageHeader,
  readFrameNumbers,
  takeOutEvents,
} from "./fb_layout.ts";
import { indexView, loadIndex, pending, slotOffset, storeIndex } from "./ring.ts";

/** Settings of a vfb backend. */
export interface VfbOptions {
  /** The most framebuffer memory a guest may make us map (bytes). Default 128 MiB. */
  maxFbBytes?: number;
  /** The refresh period (ms) advised to the guest while anything watches. Default 16. */
  refreshMs?: number;
}

interface Connection {
  domid: number;
  page: Mapping;
  dirs: Mapping[];
  fbMap: Mapping;
  evtchn: EventChannel;
  sub: Subscription;
  fbLen: number;
  featureUpdate: boolean;
  /** The refresh period last put on the IN ring, if any. */
  sentPeriod?: number;
  pollTimer?: ReturnType<typeof setInterval>;
}

/**
 * The vfb device: maps the guest's framebuffer through its page directory,
 * consumes the OUT ring (UPDATE, RESIZE) and turns it into DisplayEvents,
 * and advises a refresh period on the IN ring according to how many watch.
 */
export class VfbDevice implements DeviceOps {
  private readonly events = new Subject<DisplayEvent>();
  private conn: Connection | undefined;
  private current: Framebuffer | undefined;
  private watchers = 0;
  private clipWarned = 0;
  private resizes = 0;
  private readonly maxFbBytes: number;
  private readonly refreshMs: number;

  /** The guest's display: a resize first (once connected), then damage; resizes after reconnects. */
  readonly display$: Observable<DisplayEvent>;

  constructor(
    private readonly platform: Platform,
    private readonly domid: number,
    private readonly log: Logger,
    opts: VfbOptions = {},
    /** Called when the guest misbehaves so badly that the device must close. */
    private readonly fatal: (reason: string) => void = () => {},
  ) {
    this.maxFbBytes = opts.maxFbBytes ?? 128 << 20;
    this.refreshMs = opts.refreshMs ?? 16;
    this.display$ = new Observable<DisplayEvent>((sub) => {
      this.watchers++;
      if (this.current) sub.next({ type: "resize", fb: this.current });
      const inner = this.events.subscribe(sub);
      this.updateRefresh();
      return () => {
        inner.unsubscribe();
        this.watchers--;
        this.updateRefresh();
      };
    });
  }

  /** Resolves with the framebuffer once connected, without counting as a watcher. */
  whenConnected(): Promise<Framebuffer> {
    if (this.current) return Promise.resolve(this.current);
    return firstValueFrom(
      this.events.pipe(
        filter((e): e is ResizeEvent => e.type === "resize"),
        map((e) => e.fb),
      ),
    );
  }

  /** The framebuffer as it is now, if connected. */
  get framebuffer(): Framebuffer | undefined {
    return this.current;
  }

  init(be: string): Promise<void> {
    return this.platform.xenstore.write(`${be}/feature-resize`, "1");
  }

  async connect(be: string, fe: string): Promise<void> {
    const xs = this.platform.xenstore;
    const pageRef = parseUint(await xs.read(`${fe}/page-ref`), "page-ref");
    const port = parseUint(await xs.read(`${fe}/event-channel`), "event-channel");
    const protocol = await xs.read(`${fe}/protocol`);
    const featureUpdate = (await xs.read(`${fe}/feature-update`)) === "1";
    const videoramMiB = Number(await xs.read(`${fe}/videoram`) ?? 0);
    const entryBytes = pdEntryBytes(protocol);

    const maps: Mapping[] = [];
    const undo = () => maps.forEach((m) => m.unmap());
    try {
      const page = this.platform.memory.mapFrames(this.domid, [pageRef], true);
      maps.push(page);
      const hdr = readFbPageHeader(page.bytes);
      let limit = this.maxFbBytes;
      if (Number.isInteger(videoramMiB) && videoramMiB > 0) {
        limit = Math.min(limit, videoramMiB << 20);
      }
      if (hdr.memLength === 0 || hdr.memLength > limit) {
        throw new Error(`mem_length ${hdr.memLength} outside 1..${limit}`);
      }
      const fbPages = Math.ceil(hdr.memLength / PAGE_SIZE);
      const perDir = PAGE_SIZE / entryBytes;
      const nDirs = Math.ceil(fbPages / perDir);
      if (nDirs > usablePdEntries(entryBytes)) {
        throw new Error(`mem_length ${hdr.memLength} needs ${nDirs} pd[] entries, more than fit`);
      }
      const pdStart = entryBytes === 8 ? XENFB_PAGE.pd64 : XENFB_PAGE.pd32;
      const dirFrames = readFrameNumbers(page.bytes, pdStart, nDirs, entryBytes);
      const frames: number[] = [];
      const dirs: Mapping[] = [];
      for (let d = 0; d < nDirs; d++) {
        const dir = this.platform.memory.mapFrames(this.domid, [dirFrames[d]], false);
        maps.push(dir);
        dirs.push(dir);
        const take = Math.min(perDir, fbPages - frames.length);
        frames.push(...readFrameNumbers(dir.bytes, 0, take, entryBytes));
      }
      const fbMap = this.platform.memory.mapFrames(this.domid, frames, false);
      maps.push(fbMap);
      const geo = configureFb(
        hdr.memLength,
        hdr.width,
        hdr.height,
        hdr.depth,
        hdr.lineLength,
        0,
      );
      if (typeof geo === "string") throw new Error(geo);
      const evtchn = this.platform.evtchn.bindInterdomain(this.domid, port);
      const conn: Connection = {
        domid: this.domid,
        page,
        dirs,
        fbMap,
        evtchn,
        sub: evtchn.events$.subscribe(() => this.onEvent()),
        fbLen: hdr.memLength,
        featureUpdate,
      };
      this.conn = conn;
      if (featureUpdate) await xs.write(`${be}/request-update`, "1");
      this.log.info(
        `mapped ${geo.width}x${geo.height}x${geo.depth} framebuffer, line length ${geo.stride}, ` +
          `${fbPages} pages in ${nDirs} directories, event channel ${evtchn.localPort}` +
          (featureUpdate ? "" : " (no feature-update: polling)"),
      );
      this.setGeometry(geo);
      this.updateRefresh();
      this.onEvent(); // events produced before we bound
    } catch (e) {
      undo();
      throw e;
    }
  }

  connected(): Promise<void> {
    return Promise.resolve();
  }

  disconnect(reason: string): void {
    const c = this.conn;
    if (!c) return;
    this.conn = undefined;
    this.current = undefined;
    if (c.pollTimer !== undefined) clearInterval(c.pollTimer);
    c.sub.unsubscribe();
    c.evtchn.close();
    c.fbMap.unmap();
    c.dirs.forEach((d) => d.unmap());
    c.page.unmap();
    this.log.info(`unmapped framebuffer (${reason})`);
  }

  private setGeometry(g: FbGeometry) {
    const c = this.conn!;
    const format = pvFormat(g.depth)!;
    const bytes = c.fbMap.bytes.subarray(g.offset, c.fbLen);
    this.current = { width: g.width, height: g.height, stride: g.stride, format, bytes };
    this.events.next({ type: "resize", fb: this.current });
  }

  /** The guest notified: take its events, acknowledge, and retry a pending refresh advice. */
  private onEvent() {
    const c = this.conn;
    if (!c) return;
    const taken = takeOutEvents(c.page.bytes);
    if (typeof taken === "string") {
      this.log.error(`disconnecting: ${taken}`);
      this.fatal(taken);
      return;
    }
    const rects: Rect[] = [];
    for (const e of taken) {
      const fb = this.current;
      if (!fb) break;
      if (e.type === "update") {
        const r = clipUpdate(e, fb.width, fb.height);
        if (!r) {
          this.warnClip(`bogus update ${e.x},${e.y} ${e.w}x${e.h} ignored`);
          continue;
        }
        if (r.w !== e.w || r.h !== e.h) {
          this.warnClip(`update ${e.x},${e.y} ${e.w}x${e.h} clipped to the framebuffer`);
        }
        rects.push(r);
      } else if (e.type === "resize") {
        const g = configureFb(c.fbLen, e.width, e.height, e.depth, e.stride, e.offset);
        if (typeof g === "string") {
          this.warnClip(`resize ${e.width}x${e.height}x${e.depth} refused: ${g}`);
          continue;
        }
        if (rects.length) this.events.next({ type: "damage", rects: rects.splice(0) });
        this.resizes++;
        if (this.resizes <= 20 || this.resizes % 10000 === 0) {
          this.log.info(
            `guest resized to ${g.width}x${g.height}x${g.depth}, line length ${g.stride}` +
              (this.resizes > 20 ? ` (${this.resizes} resizes so far)` : ""),
          );
        }
        this.setGeometry(g);
      } else {
        this.warnClip(`unknown out event type ${e.code} ignored`);
      }
    }
    if (taken.length) c.evtchn.notify(); // let a frontend with a full ring flush
    this.sendRefresh();
    if (rects.length) this.events.next({ type: "damage", rects });
  }

  private warnClip(msg: string) {
    // A misbehaving guest could flood the log: say it a few times, then once in a while.
    if (this.clipWarned++ < 20 || this.clipWarned % 10000 === 0) {
      this.log.warn(`${msg}${this.clipWarned > 20 ? ` (${this.clipWarned} so far)` : ""}`);
    }
  }

  /** Recomputes the period to advise from the number of watchers. */
  private updateRefresh() {
    const c = this.conn;
    if (!c) return;
    if (!c.featureUpdate) {
      // No UPDATE events: poll the whole screen while anyone watches.
      if (this.watchers > 0 && c.pollTimer === undefined) {
        c.pollTimer = setInterval(() => {
          const fb = this.current;
          if (fb) {
            this.events.next({
              type: "damage",
              rects: [{ x: 0, y: 0, w: fb.width, h: fb.height }],
            });
          }
        }, this.refreshMs);
      } else if (this.watchers === 0 && c.pollTimer !== undefined) {
        clearInterval(c.pollTimer);
        c.pollTimer = undefined;
      }
    }
    this.sendRefresh();
  }

  /** Puts the wanted refresh period on the IN ring if it changed and there is room. */
  private sendRefresh() {
    const c = this.conn;
    if (!c) return;
    const want = this.watchers > 0 ? this.refreshMs : XENFB_NO_REFRESH;
    if (c.sentPeriod === want) return;
    const page = c.page.bytes;
    const idx = indexView(page);
    const prod = loadIndex(idx, XENFB_PAGE.in_prod);
    const cons = loadIndex(idx, XENFB_PAGE.in_cons);
    if (pending(prod, cons) >= XENFB_IN_RING_LEN) return; // full: retried on the next event
    const at = slotOffset(XENFB_IN_RING_OFFS, XENFB_IN_RING_LEN, prod);
    page.fill(0, at, at + XENFB_EVENT_SIZE);
    page[at] = XENFB_TYPE_REFRESH_PERIOD;
    new DataView(page.buffer, page.byteOffset).setUint32(
      at + XENFB_REFRESH_PERIOD.period,
      want,
      true,
    );
    storeIndex(idx, XENFB_PAGE.in_prod, prod + 1);
    c.sentPeriod = want;
    c.evtchn.notify();
  }
}

/** Parses a decimal xenstore value the guest wrote; throws with the key's name otherwise. */
export function parseUint(v: string | undefined, key: string): number {
  if (v === undefined) throw new Error(`frontend has no ${key}`);
  if (!/^\d{1,16}$/.test(v.trim())) {
    throw new Error(`frontend ${key} ${JSON.stringify(v)} is not a number`);
  }
  const n = Number(v.trim());
  if (!Number.isSafeInteger(n)) throw new Error(`frontend ${key} ${v} is too large`);
  return n;
}
