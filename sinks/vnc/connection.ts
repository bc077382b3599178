import type { DisplayEvent, InputEvent } from "../../pipeline/events.ts";
import type { Framebuffer } from "../../pipeline/framebuffer.ts";
import { BGR233, type PixelFormat, sameFormat, XRGB8888 } from "../../pipeline/pixel_format.ts";
import type { Rect } from "../../pipeline/rect.ts";
import type { Logger } from "../../sources/log.ts";
import { ByteWriter, rectHeader } from "./bytes.ts";
import { type EncodeOptions, Encoding, type RectEncoder } from "./encoder.ts";
import { arrowCursor } from "./cursor.ts";
import { EncodePool } from "./encode_pool.ts";
import { checkClientFormat, decodePixelFormat, encodePixelFormat } from "./pixel_format_wire.ts";
import { PointerMapper } from "./pointer.ts";
import { ConnStream, type RfbStream, StreamClosed } from "./stream.ts";
import { UpdateTracker } from "./update_tracker.ts";
import { BLOCK, SolidSources } from "./solid_copies.ts";
import { DisplayShadow, type ShadowListener } from "./display_shadow.ts";
import type { ShadowFramebuffer } from "../../pipeline/compare_tiles.ts";
import { UpdateWriter } from "./update_writer.ts";
import {
  AuthFailed,
  securityResultBytes,
  type SecurityType,
  wantsSecurityResult,
} from "./auth/types.ts";

/** What a connection needs from the guest it shows. */
export interface DisplaySource {
  readonly display$: import("rxjs").Observable<DisplayEvent>;
  readonly input: import("rxjs").Observer<InputEvent>;
  framebuffer(): Framebuffer | undefined;
  pointerIsAbsolute(): boolean;
}

/** A security type offered to clients (one module each under auth/). */
export type SecurityHandler = SecurityType;

/** Turns keysyms (and QEMU XT keycodes) into evdev key events. */
export interface KeyHandler {
  keyEvent(keysym: number, down: boolean): { code: number; down: boolean }[];
  /** For QEMU Extended Key Events; undefined when the code is unknown. */
  xtToEvdev(xt: number): number | undefined;
}

/** Settings of one RFB connection. */
export interface ConnectionOptions {
  source: DisplaySource;
  /**
   * The guest's shadow framebuffer, shared with the server's other clients
   * (it compares damage once for all). Default: one of this connection's own.
   */
  shadow?: DisplayShadow;
  /** ServerInit's desktop name. */
  name: string;
  /** Offered in this order; at least one. */
  security: readonly SecurityHandler[];
  keys: KeyHandler;
  /** Makes a fresh encoder for an encoding number, or undefined if unsupported. */
  createEncoder(encoding: number): RectEncoder | undefined;
  log: Logger;
  /** Called between auth and ServerInit with ClientInit's shared flag. */
  onClientInit?(shared: boolean): void;
  /** Before an auth attempt from this address (rate limiting); after, with the result. */
  beforeAuth?(remote: string): Promise<void>;
  afterAuth?(remote: string, ok: boolean): void;
  /** Handshake and message-completion timeout (ms). Default 30 s. */
  timeoutMs?: number;
  /** Longest ClientCutText accepted (bytes). Default 1 MiB. */
  maxCutText?: number;
}

/** A protocol violation or refusal: the client is disconnected with this reason. */
export class ProtocolError extends Error {}

const VERSION = "RFB 003.008\n";

/**
 * Rectangles of at least this many pixels go to the encoding workers when the
 * encoding can use them (ZRLE, Tight) and does not say otherwise: below it, a
 * band is not worth its messages.
 */
const PARALLEL_MIN_AREA = 128 * 1024;
const enc = new TextEncoder();

/**
 * Body lengths of the fixed-size client messages handled from their bytes
 * alone (no reply awaited), among them the ones a viewer sends many times a
 * second. One already buffered whole is handled at once: no timer, no promise.
 */
const FIXED_BODY: Readonly<Record<number, number>> = {
  0: 19, // SetPixelFormat
  3: 9, // FramebufferUpdateRequest
  4: 7, // KeyEvent
  5: 5, // PointerEvent
  255: 11, // QEMU client message (subtype 0, Extended Key Event: the only one)
};

/**
 * One RFB client, from ProtocolVersion to disconnect: the handshake, the
 * client's messages, and FramebufferUpdates from the guest's display, whose
 * changes merge while the client has no request outstanding (so a slow
 * client never holds up the guest or other clients).
 *
 * The guest's damage is compared once for all clients by the server's
 * {@link DisplayShadow} (unchanged tiles dropped, scrolls found); this
 * client's {@link UpdateTracker} keeps the region and the copies it has yet
 * to be sent. Updates are encoded from the shadow at once when a request is
 * pending (no timers), and written with no copy of the message (see
 * {@link UpdateWriter}).
 */
export class RfbConnection {
  private stream: RfbStream;
  private version: 3 | 7 | 8 = 8;
  private pf: PixelFormat = XRGB8888;
  private encodings: number[] = [];
  private encoders = new Map<number, RectEncoder>();
  private preferred: number = Encoding.Raw;
  private compressLevel: number | undefined;
  private jpegQuality: number | undefined;
  private readonly pointer = new PointerMapper();
  private readonly tracker = new UpdateTracker();
  private readonly writer = new UpdateWriter();
  /** Where this viewer shows solid blocks (Raw with CopyRect only). */
  private readonly solids = new SolidSources();
  /** What this viewer was sent, logged when it goes. */
  private readonly sent = { updates: 0, copies: 0, blocks: 0 };
  private readonly shadow: DisplayShadow;
  /** This connection as the shadow's listener, once updates started. */
  private listener: ShadowListener | undefined;
  private sending = false;
  /** The client has a request outstanding (or continuous updates). */
  private asked = false;
  /** The encoding workers, once a large rectangle needed them. */
  private pool: EncodePool | undefined;
  private clientW = 0;
  private clientH = 0;
  private continuous = false;
  private readonly pseudo = new Set<number>();
  private sentPointerAbs: boolean | undefined;
  private sentCursor = false;
  private closedReason: string | undefined;
  private readonly timeoutMs: number;
  private readonly downKeys = new Set<number>();

  constructor(stream: RfbStream, private readonly o: ConnectionOptions) {
    this.stream = stream;
    this.timeoutMs = o.timeoutMs ?? 30_000;
    this.shadow = o.shadow ?? DisplayShadow.of(o.source.display$);
  }

  get remote(): string {
    return this.stream.remote;
  }

  /** Runs the connection to its end; resolves with the reason it ended. */
  async run(): Promise<string> {
    try {
      await this.withTimeout(this.handshake(), "stalled in the handshake");
      this.startUpdates();
      // Until closed: bytes a client sent before it was cut off are not acted on.
      while (this.closedReason === undefined) {
        const [type] = this.stream.tryRead?.(1) ?? await this.read(1);
        const waiting = this.message(type);
        if (waiting) await waiting;
      }
    } catch (e) {
      this.close(
        e instanceof StreamClosed
          ? "client disconnected"
          : e instanceof Error
          ? e.message
          : String(e),
      );
    }
    return this.closedReason!;
  }

  /** Disconnects the client (another took the display, or the server stops). */
  close(reason: string): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    if (this.listener) this.shadow.remove(this.listener);
    for (const e of this.pointer.release()) this.o.source.input.next(e);
    for (const code of this.downKeys) this.o.source.input.next({ type: "key", code, down: false });
    this.downKeys.clear();
    for (const e of this.encoders.values()) {
      try {
        e.close?.();
      } catch {
        // freeing is best effort
      }
    }
    if (this.pool) EncodePool.release();
    this.pool = undefined;
    this.stream.close();
    const n = this.sent;
    if (n.updates > 0) {
      this.o.log.info(
        `${this.remote}: sent ${n.updates} updates, ${n.copies + n.blocks} CopyRects ` +
          `(${n.blocks} of solid blocks)`,
      );
    }
    this.o.log.info(`${this.remote}: disconnected: ${reason}`);
  }

  private async withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const t = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new ProtocolError(`${what} (${this.timeoutMs} ms)`)),
        this.timeoutMs,
      );
    });
    try {
      return await Promise.race([p, t]);
    } finally {
      clearTimeout(timer);
    }
  }

  private read(n: number): Promise<Uint8Array> {
    return this.stream.read(n);
  }

  private async send(b: Uint8Array): Promise<void> {
    await this.stream.write(b);
  }

  // ---- handshake ---------------------------------------------------------

  private async handshake() {
    await this.send(enc.encode(VERSION));
    const v = new TextDecoder().decode(await this.read(12));
    const m = /^RFB (\d{3})\.(\d{3})\n$/.exec(v);
    const major = m ? Number(m[1]) : -1, minor = m ? Number(m[2]) : -1;
    if (major !== 3 || minor < 3) {
      // Answer in the 3.3 form, which every client can read.
      await this.failSecurity33(`unsupported protocol version ${JSON.stringify(v)}`);
      throw new ProtocolError(`unsupported protocol version ${JSON.stringify(v)}`);
    }
    this.version = minor >= 8 ? 8 : minor === 7 ? 7 : 3;
    this.o.log.info(`${this.remote}: RFB 3.${this.version}`);
    await this.security();
    const [shared] = await this.read(1);
    this.o.onClientInit?.(shared !== 0);
    await this.serverInit();
  }

  private async failSecurity33(reason: string) {
    const r = enc.encode(reason);
    const w = new ByteWriter(8 + r.length).u32(0).u32(r.length).bytes(r);
    await this.send(w.view().slice()).catch(() => {});
  }

  private async security() {
    const offered = this.o.security;
    let chosen: SecurityHandler | undefined;
    if (this.version === 3) {
      // 3.3: the server decides; only None and VNC auth exist there.
      chosen = offered.find((s) => s.id === 1 || s.id === 2);
      if (!chosen) {
        const why = "this server requires a security type that RFB 3.3 does not have (use 3.7+)";
        await this.failSecurity33(why);
        throw new ProtocolError(why);
      }
      await this.send(new ByteWriter(4).u32(chosen.id).view().slice());
    } else {
      const w = new ByteWriter(1 + offered.length).u8(offered.length);
      for (const s of offered) w.u8(s.id);
      await this.send(w.view().slice());
      const [id] = await this.read(1);
      chosen = offered.find((s) => s.id === id);
      if (!chosen) {
        await this.securityResult(false, `security type ${id} was not offered`);
        throw new ProtocolError(`client chose security type ${id}, which was not offered`);
      }
    }
    const needsAuth = chosen.id !== 1;
    try {
      if (needsAuth) await this.o.beforeAuth?.(this.remote);
      const r = await chosen.run(this.stream, { version: this.version, remote: this.remote });
      this.stream = r.stream;
      if (!r.resultSent && wantsSecurityResult(chosen.id, this.version)) {
        await this.send(securityResultBytes(this.version));
      }
    } catch (e) {
      if (e instanceof StreamClosed) throw e;
      const why = e instanceof Error ? e.message : String(e);
      if (needsAuth && e instanceof AuthFailed && e.badCredentials) {
        this.o.afterAuth?.(this.remote, false);
      }
      if (!(e instanceof AuthFailed && e.resultSent)) {
        const on = (e instanceof AuthFailed && e.stream) || this.stream;
        await on.write(securityResultBytes(this.version, why)).catch(() => {});
      }
      throw new ProtocolError(`authentication failed: ${why}`);
    }
    if (needsAuth) this.o.afterAuth?.(this.remote, true);
    this.o.log.info(`${this.remote}: security type ${chosen.id} passed`);
  }

  private async securityResult(ok: boolean, reason = "") {
    const w = new ByteWriter(64).u32(ok ? 0 : 1);
    if (!ok && this.version === 8) {
      const r = enc.encode(reason);
      w.u32(r.length).bytes(r);
    }
    await this.send(w.view().slice()).catch(() => {});
  }

  private async serverInit() {
    const fb = this.o.source.framebuffer();
    this.clientW = fb?.width ?? 1;
    this.clientH = fb?.height ?? 1;
    this.pf = serverFormat(fb);
    const name = enc.encode(this.o.name);
    const w = new ByteWriter(24 + name.length)
      .u16(this.clientW)
      .u16(this.clientH)
      .bytes(encodePixelFormat(this.pf))
      .u32(name.length)
      .bytes(name);
    await this.send(w.view().slice());
    this.encoders.set(Encoding.Raw, this.o.createEncoder(Encoding.Raw)!);
  }

  // ---- client messages ---------------------------------------------------

  /**
   * Handles the message of type `type` (its type byte read). A fixed-size one
   * whose body is buffered is handled synchronously; the others wait for
   * their bytes under the stall timeout (a promise is returned only then).
   */
  private message(type: number): Promise<void> | undefined {
    const size = FIXED_BODY[type];
    const body = size === undefined ? undefined : this.stream.tryRead?.(size);
    if (body) {
      this.fixedMessage(type, body);
      return undefined;
    }
    return this.withTimeout(this.messageBody(type), `message ${type} stalled`);
  }

  /** A fixed-size message (see FIXED_BODY), `b` its whole body. */
  private fixedMessage(type: number, b: Uint8Array) {
    const dv = new DataView(b.buffer, b.byteOffset, b.length);
    switch (type) {
      case 0: // SetPixelFormat
        this.setPixelFormat(decodePixelFormat(b.subarray(3)));
        return;
      case 3: { // FramebufferUpdateRequest
        const r = {
          x: dv.getUint16(1),
          y: dv.getUint16(3),
          w: dv.getUint16(5),
          h: dv.getUint16(7),
        };
        if (b[0] === 0) this.force(r);
        this.want();
        return;
      }
      case 4: // KeyEvent
        this.keys(this.o.keys.keyEvent(dv.getUint32(3), b[0] !== 0));
        return;
      case 5: { // PointerEvent
        const fb = this.o.source.framebuffer();
        const evs = this.pointer.map(
          b[0],
          dv.getUint16(1),
          dv.getUint16(3),
          fb?.width ?? 1,
          fb?.height ?? 1,
        );
        for (const e of evs) this.o.source.input.next(e);
        return;
      }
      case 255: // QEMU client message
        qemuSubtype(b[0]);
        this.qemuKeyEvent(b.subarray(1));
        return;
    }
  }

  /** The messages that wait for their bytes: variable-size, replying, or not yet buffered. */
  private async messageBody(type: number) {
    switch (type) {
      case 2: { // SetEncodings
        const h = await this.read(3);
        const n = (h[1] << 8) | h[2];
        const b = await this.read(n * 4);
        const dv = new DataView(b.buffer, b.byteOffset, b.length);
        const list: number[] = [];
        for (let i = 0; i < n; i++) list.push(dv.getInt32(i * 4));
        await this.setEncodings(list);
        return;
      }
      case 6: { // ClientCutText: read and ignored
        const b = await this.read(7);
        // RFC 6143 7.5.6: the length is a U32. (Read as signed, 0xFFFFFFF0 became 16 and
        // the next 16 bytes, i.e. the client's following messages, were eaten as text.
        // The negative lengths of the Extended Clipboard extension only follow a server's
        // clipboard caps, which this server never sends.)
        const size = new DataView(b.buffer, b.byteOffset, 7).getUint32(3);
        const max = this.o.maxCutText ?? (1 << 20);
        if (size > max) throw new ProtocolError(`ClientCutText of ${size} bytes exceeds ${max}`);
        await this.read(size);
        return;
      }
      case 150: { // EnableContinuousUpdates
        const b = await this.read(9);
        if (!this.pseudo.has(Encoding.ContinuousUpdates)) {
          throw new ProtocolError("EnableContinuousUpdates without the pseudo-encoding");
        }
        this.continuous = b[0] !== 0;
        if (this.continuous) this.want();
        else await this.send(Uint8Array.of(150)); // EndOfContinuousUpdates
        return;
      }
      case 248: { // ClientFence
        const b = await this.read(8);
        const flags = new DataView(b.buffer, b.byteOffset, 8).getUint32(3);
        const len = b[7];
        if (len > 64) throw new ProtocolError(`fence payload of ${len} bytes (max 64)`);
        const payload = await this.read(len);
        if (flags & 0x8000_0000) {
          // Messages are handled in order, so every flag is honoured by construction.
          const w = new ByteWriter(9 + len).u8(248).u8(0).u8(0).u8(0).u32(flags & 0x7).u8(len)
            .bytes(payload);
          await this.send(w.view().slice());
        }
        return;
      }
      case 251: { // SetDesktopSize: a PV guest cannot be resized from here
        const b = await this.read(7);
        const screens = b[5];
        await this.read(screens * 16);
        if (this.pseudo.has(Encoding.ExtendedDesktopSize)) this.pendingDesktopSizeReply = true;
        this.nudge();
        return;
      }
      case 255: { // QEMU client message: a bad subtype is refused before the rest arrives
        const [sub] = await this.read(1);
        qemuSubtype(sub);
        this.qemuKeyEvent(await this.read(10));
        return;
      }
      default: {
        const size = FIXED_BODY[type];
        if (size === undefined) throw new ProtocolError(`unknown client message type ${type}`);
        this.fixedMessage(type, await this.read(size));
        return;
      }
    }
  }

  /** QEMU Extended Key Event, `b` its 10 bytes after the subtype. */
  private qemuKeyEvent(b: Uint8Array) {
    const dv = new DataView(b.buffer, b.byteOffset, 10);
    const down = dv.getUint16(0) !== 0, keysym = dv.getUint32(2), xt = dv.getUint32(6);
    const code = xt ? this.o.keys.xtToEvdev(xt) : undefined;
    if (code !== undefined) this.keys([{ code, down }]);
    else this.keys(this.o.keys.keyEvent(keysym, down));
  }

  private pendingDesktopSizeReply = false;

  private keys(events: { code: number; down: boolean }[]) {
    for (const e of events) {
      if (e.down) this.downKeys.add(e.code);
      else this.downKeys.delete(e.code);
      this.o.source.input.next({ type: "key", code: e.code, down: e.down });
    }
  }

  private setPixelFormat(pf: PixelFormat) {
    const bad = checkClientFormat(pf);
    if (bad) throw new ProtocolError(`SetPixelFormat refused: ${bad}`);
    if (!pf.trueColour) {
      // A colour-map client gets a fixed BGR233 palette.
      this.pf = { ...BGR233, trueColour: true };
      const w = new ByteWriter(6 + 256 * 6).u8(1).u8(0).u16(0).u16(256);
      for (let i = 0; i < 256; i++) {
        w.u16(Math.round(((i & 7) * 65535) / 7));
        w.u16(Math.round((((i >> 3) & 7) * 65535) / 7));
        w.u16(Math.round((((i >> 6) & 3) * 65535) / 3));
      }
      this.send(w.view().slice()).catch(() => {});
      this.o.log.info(`${this.remote}: colour-map client: fixed BGR233 palette`);
    } else {
      this.pf = pf;
      // Logged so that a wrong-colours report can be matched with what the client asked for.
      this.o.log.info(
        `${this.remote}: pixel format ${pf.bitsPerPixel} bpp depth ${pf.depth} ` +
          `${pf.bigEndian ? "big" : "little"}-endian, max ${pf.redMax}/${pf.greenMax}/` +
          `${pf.blueMax}, shift ${pf.redShift}/${pf.greenShift}/${pf.blueShift}`,
      );
    }
    // The next update must be whole-screen in the new format.
    const fb = this.shadow.fb;
    if (fb) this.force({ x: 0, y: 0, w: fb.width, h: fb.height });
  }

  private async setEncodings(list: number[]) {
    this.encodings = list;
    this.pseudo.clear();
    this.compressLevel = undefined;
    this.jpegQuality = undefined;
    this.preferred = Encoding.Raw;
    let picked = false;
    for (const e of list) {
      if (e >= Encoding.CompressLevel0 && e <= Encoding.CompressLevel9) {
        this.compressLevel ??= e - Encoding.CompressLevel0;
      } else if (e >= Encoding.JpegQuality0 && e <= Encoding.JpegQuality9) {
        this.jpegQuality ??= e - Encoding.JpegQuality0;
      } else if (e < 0 || e === Encoding.CopyRect) {
        this.pseudo.add(e);
      } else if (!picked) {
        const made = this.encoders.get(e) ?? this.o.createEncoder(e);
        if (made) {
          this.encoders.set(e, made);
          this.preferred = e;
          picked = true;
        }
      }
    }
    this.tracker.copyRect = this.pseudo.has(Encoding.CopyRect);
    this.solids.clear(); // what the viewer shows may have come lossy (JPEG) since
    // TightPNG clients (noVNC) list it as a pseudo-number; it is a real encoding.
    if (!picked && this.pseudo.has(Encoding.TightPNG)) {
      const made = this.encoders.get(Encoding.TightPNG) ?? this.o.createEncoder(Encoding.TightPNG);
      if (made) {
        this.encoders.set(Encoding.TightPNG, made);
        this.preferred = Encoding.TightPNG;
      }
    }
    this.o.log.info(
      `${this.remote}: encoding ${this.preferred}` +
        (this.compressLevel !== undefined ? `, compress ${this.compressLevel}` : "") +
        (this.jpegQuality !== undefined ? `, quality ${this.jpegQuality}` : ""),
    );
    if (this.pseudo.has(Encoding.ContinuousUpdates)) {
      await this.send(Uint8Array.of(150)); // announces support
    }
    if (this.pseudo.has(Encoding.Fence)) {
      // A request fence tells the client we support fences; its reply is ignored.
      await this.send(
        new ByteWriter(9).u8(248).u8(0).u8(0).u8(0).u32(0x8000_0000).u8(0).view().slice(),
      );
    }
    if (
      this.pseudo.has(Encoding.QemuExtendedKeyEvent) ||
      this.pseudo.has(Encoding.QemuPointerMotionChange) || this.pseudo.has(Encoding.Cursor)
    ) this.nudge();
  }

  // ---- updates -------------------------------------------------------------

  private startUpdates() {
    const tracker = this.tracker;
    this.listener = {
      get copyRect() {
        return tracker.copyRect;
      },
      resized: (fb) => {
        tracker.reset(fb.width, fb.height);
        this.solids.clear();
      },
      moved: (dst, dy) => tracker.moved(dst, dy),
      changed: (rects) => tracker.changed(rects),
      settled: () => this.flush(),
      failed: (e) => this.close(`display failed: ${e}`),
    };
    this.shadow.add(this.listener);
  }

  /** Makes the next requested update happen even without new damage (for pseudo-rects). */
  private nudge() {
    this.force({ x: 0, y: 0, w: 1, h: 1 });
  }

  /**
   * The client wants `r` whatever it has: it gets the shadow's pixels there
   * (the shadow holds everything the guest reported; a client's request does
   * not make the server compare guest memory again, or it could keep the
   * server busy for every guest with ten-byte messages).
   */
  private force(r: Rect) {
    this.tracker.force(r);
    this.flush();
  }

  /** The client wants an update (a request, or continuous updates). */
  private want() {
    this.asked = true;
    this.flush();
  }

  /** Sends an update when the client wants one, none is being written, and there is something to send. */
  private flush() {
    if (!this.asked || this.sending || this.closedReason !== undefined) return;
    if (!this.tracker.pending) return;
    this.asked = false;
    this.update();
  }

  private update() {
    this.sending = true;
    this.writeUpdate()
      .then(() => {
        this.sending = false;
        if (this.continuous) this.asked = true;
        this.flush();
      })
      .catch((e) => {
        this.sending = false;
        this.close(e instanceof StreamClosed ? "client disconnected" : `update failed: ${e}`);
      });
  }

  private async writeUpdate() {
    const fb: ShadowFramebuffer = this.shadow.fb!;
    const { copies, region } = this.tracker.take();
    const u = this.writer;
    const w = u.begin();
    let full = false;
    if (fb.width !== this.clientW || fb.height !== this.clientH) {
      if (this.pseudo.has(Encoding.ExtendedDesktopSize)) {
        rectHeader(w, 0, 0, fb.width, fb.height, Encoding.ExtendedDesktopSize);
        w.u8(1).u8(0).u8(0).u8(0).u32(0).u16(0).u16(0).u16(fb.width).u16(fb.height).u32(0);
      } else if (this.pseudo.has(Encoding.DesktopSize)) {
        rectHeader(w, 0, 0, fb.width, fb.height, Encoding.DesktopSize);
      } else {
        throw new ProtocolError(
          `the guest resized to ${fb.width}x${fb.height} and this client cannot follow (no DesktopSize)`,
        );
      }
      u.count(1);
      this.clientW = fb.width;
      this.clientH = fb.height;
      full = true;
    }
    if (this.pendingDesktopSizeReply) {
      // SetDesktopSize answered: prohibited (a PV framebuffer is sized by the guest).
      this.pendingDesktopSizeReply = false;
      rectHeader(w, 1, 1, fb.width, fb.height, Encoding.ExtendedDesktopSize);
      w.u8(1).u8(0).u8(0).u8(0).u32(0).u16(0).u16(0).u16(fb.width).u16(fb.height).u32(0);
      u.count(1);
    }
    if (this.pseudo.has(Encoding.QemuExtendedKeyEvent) && !this.extKeyAcked) {
      this.extKeyAcked = true;
      rectHeader(w, 0, 0, 0, 0, Encoding.QemuExtendedKeyEvent);
      u.count(1);
    }
    const abs = this.o.source.pointerIsAbsolute();
    if (this.pseudo.has(Encoding.QemuPointerMotionChange) && this.sentPointerAbs !== abs) {
      this.sentPointerAbs = abs;
      rectHeader(w, abs ? 1 : 0, 0, fb.width, fb.height, Encoding.QemuPointerMotionChange);
      this.pointer.relativeDeltas = !abs;
      u.count(1);
    }
    // Copies first: the client moves what it has, then gets the new pixels.
    if (!full) {
      for (const g of copies) {
        for (const r of g.rects) {
          rectHeader(w, r.x, r.y, r.w, r.h, Encoding.CopyRect);
          w.u16(r.x).u16(r.y + g.dy);
          u.count(1);
          this.sent.copies++;
        }
      }
    }
    const opts: EncodeOptions = {
      pf: this.pf,
      compressLevel: this.compressLevel,
      jpegQuality: this.jpegQuality,
    };
    const rects: readonly Rect[] = full
      ? [{ x: 0, y: 0, w: fb.width, h: fb.height }]
      : region.simplify({ maxRects: 64 });
    const encoder = this.encoders.get(this.preferred)!;
    // Raw in the shadow's own format: full-width rows are already the wire bytes, written
    // by reference straight to a socket (TCP, or TLS, whose write resolves once encrypted).
    // WebSocket and in-memory streams would see one message as several frames.
    const rawAsIs = this.preferred === Encoding.Raw && sameFormat(fb.format, this.pf) &&
      this.stream instanceof ConnStream;
    // Raw viewers with CopyRect: small solid blocks come from where the viewer shows that colour.
    const solids = this.preferred === Encoding.Raw && this.tracker.copyRect && !full
      ? this.solids
      : undefined;
    // Everything is read from the shadow before the first await: captures may change it then.
    const parallel: Promise<number>[] = [];
    const minParallel = encoder.parallelMinArea?.(opts) ?? PARALLEL_MIN_AREA;
    for (const r of rects) {
      if (r.w <= 0 || r.h <= 0) continue;
      const blocks = solids?.take(fb, r, region);
      if (blocks) {
        for (const b of blocks) {
          rectHeader(w, b.x, b.y, BLOCK, BLOCK, Encoding.CopyRect);
          w.u16(b.sx).u16(b.sy);
        }
        u.count(blocks.length);
        this.sent.blocks += blocks.length;
        continue;
      }
      if (rawAsIs && r.x === 0 && r.w === fb.width) {
        rectHeader(w, r.x, r.y, r.w, r.h, Encoding.Raw);
        u.reference(fb.bytes.subarray(r.y * fb.stride, (r.y + r.h) * fb.stride));
        u.count(1);
      } else if (encoder.encodeParallel && r.w * r.h >= minParallel && this.workers()) {
        parallel.push(encoder.encodeParallel(fb, r, opts, w, this.pool!));
      } else {
        u.count(encoder.encode(fb, r, opts, w));
      }
    }
    // The shadow's bytes are in the message: changes go to a copy until it is written (pinned
    // before any await: damage taken meanwhile would change it).
    this.sent.updates++;
    const unpin = u.referencing ? this.shadow.pin() : undefined;
    try {
      await this.finishUpdate(u, w, parallel);
    } finally {
      unpin?.();
    }
  }

  /** Waits for the workers' rectangles, adds the cursor, writes the message. */
  private async finishUpdate(u: UpdateWriter, w: ByteWriter, parallel: Promise<number>[]) {
    if (parallel.length > 0) { for (const n of await Promise.all(parallel)) u.count(n); }
    // The cursor shape goes after the pixels: soft-cursor clients (vncsnapshot)
    // save what is under the cursor when the shape arrives.
    if (this.pseudo.has(Encoding.Cursor) && !this.sentCursor) {
      this.sentCursor = true;
      u.count(arrowCursor(w, this.pf));
    }
    if (u.rectangles > 0xffff) throw new ProtocolError(`update of ${u.rectangles} rectangles`);
    const chunks = u.finish();
    await Promise.all(chunks.map((c) => this.stream.write(c)));
  }

  private extKeyAcked = false;

  /** True when the encoding workers are up (started on first call; not waited for). */
  private workers(): boolean {
    if (this.closedReason !== undefined) return false;
    this.pool ??= EncodePool.acquire({ log: this.o.log });
    return this.pool?.ready ?? false;
  }
}

/** Refuses QEMU client messages other than Extended Key Event. */
function qemuSubtype(sub: number): void {
  if (sub !== 0) throw new ProtocolError(`unknown QEMU client message ${sub}`);
}

/** The format ServerInit announces: the guest's, with packed 24 bpp served as 32 bpp. */
export function serverFormat(fb: Framebuffer | undefined): PixelFormat {
  if (!fb || fb.format.bitsPerPixel === 24) return XRGB8888;
  return fb.format;
}
