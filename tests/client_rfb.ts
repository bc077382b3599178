/**
 * A raw RFB client for protocol tests, written from the community RFB
 * specification independently of the server's code: handshake, client
 * messages, and server messages with decoders for Raw, CopyRect, RRE,
 * Hextile, ZRLE, Tight and TightPNG into a framebuffer of client-format
 * pixel values.
 */
import pako from "pako";
import jpegJs from "jpeg-js";
import { decode as decodePng } from "fast-png";
import type { PixelFormat } from "../pipeline/pixel_format.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The server closed the connection. */
export class RfbEof extends Error {
  constructor(readonly got: Uint8Array) {
    super(`connection closed by the server (after ${got.length} bytes of a read)`);
  }
}

/** What ServerInit said. */
export interface ServerInit {
  width: number;
  height: number;
  pf: PixelFormat;
  name: string;
}

/** One rectangle of a FramebufferUpdate as received. */
export interface RectInfo {
  x: number;
  y: number;
  w: number;
  h: number;
  encoding: number;
  /** Tight: how the rectangle was sent (fill, copy, palette, mono, jpeg, png). */
  method?: string;
  /** ExtendedDesktopSize: the screens. */
  screens?: { id: number; x: number; y: number; w: number; h: number; flags: number }[];
  name?: string;
}

/** A message from the server. */
export type ServerMessage =
  | { type: "update"; rects: RectInfo[] }
  | { type: "colourmap"; first: number; colours: [number, number, number][] }
  | { type: "bell" }
  | { type: "cuttext"; text: Uint8Array }
  | { type: "endcu" }
  | { type: "fence"; flags: number; payload: Uint8Array };

/** Writes RFB's 16-byte PIXEL_FORMAT. */
export function pixelFormatBytes(pf: PixelFormat): Uint8Array {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  b[0] = pf.bitsPerPixel;
  b[1] = pf.depth;
  b[2] = pf.bigEndian ? 1 : 0;
  b[3] = pf.trueColour ? 1 : 0;
  dv.setUint16(4, pf.redMax);
  dv.setUint16(6, pf.greenMax);
  dv.setUint16(8, pf.blueMax);
  b[10] = pf.redShift;
  b[11] = pf.greenShift;
  b[12] = pf.blueShift;
  return b;
}

function readPixelFormat(b: Uint8Array): PixelFormat {
  const dv = new DataView(b.buffer, b.byteOffset, 16);
  return {
    bitsPerPixel: b[0],
    depth: b[1],
    bigEndian: b[2] !== 0,
    trueColour: b[3] !== 0,
    redMax: dv.getUint16(4),
    greenMax: dv.getUint16(6),
    blueMax: dv.getUint16(8),
    redShift: b[10],
    greenShift: b[11],
    blueShift: b[12],
  };
}

// ---------------------------------------------------------------- client messages

/** Client-to-server message bytes, for tests and the fuzzer. */
export const msg = {
  setPixelFormat: (pf: PixelFormat | Uint8Array) => {
    const b = new Uint8Array(20);
    b[0] = 0;
    b.set(pf instanceof Uint8Array ? pf : pixelFormatBytes(pf), 4);
    return b;
  },
  setEncodings: (list: number[]) => {
    const b = new Uint8Array(4 + 4 * list.length);
    const dv = new DataView(b.buffer);
    b[0] = 2;
    dv.setUint16(2, list.length);
    list.forEach((e, i) => dv.setInt32(4 + 4 * i, e));
    return b;
  },
  request: (incremental: boolean, x: number, y: number, w: number, h: number) => {
    const b = new Uint8Array(10);
    const dv = new DataView(b.buffer);
    b[0] = 3;
    b[1] = incremental ? 1 : 0;
    dv.setUint16(2, x);
    dv.setUint16(4, y);
    dv.setUint16(6, w);
    dv.setUint16(8, h);
    return b;
  },
  key: (down: boolean, keysym: number) => {
    const b = new Uint8Array(8);
    b[0] = 4;
    b[1] = down ? 1 : 0;
    new DataView(b.buffer).setUint32(4, keysym);
    return b;
  },
  pointer: (mask: number, x: number, y: number) => {
    const b = new Uint8Array(6);
    const dv = new DataView(b.buffer);
    b[0] = 5;
    b[1] = mask;
    dv.setUint16(2, x);
    dv.setUint16(4, y);
    return b;
  },
  /** ClientCutText with `length` as sent (may lie about the text that follows). */
  cutText: (text: Uint8Array, length = text.length) => {
    const b = new Uint8Array(8 + text.length);
    b[0] = 6;
    new DataView(b.buffer).setUint32(4, length >>> 0);
    b.set(text, 8);
    return b;
  },
  enableContinuousUpdates: (on: boolean, x: number, y: number, w: number, h: number) => {
    const b = new Uint8Array(10);
    const dv = new DataView(b.buffer);
    b[0] = 150;
    b[1] = on ? 1 : 0;
    dv.setUint16(2, x);
    dv.setUint16(4, y);
    dv.setUint16(6, w);
    dv.setUint16(8, h);
    return b;
  },
  fence: (flags: number, payload: Uint8Array) => {
    const b = new Uint8Array(9 + payload.length);
    b[0] = 248;
    new DataView(b.buffer).setUint32(4, flags >>> 0);
    b[8] = payload.length;
    b.set(payload, 9);
    return b;
  },
  qemuKey: (down: boolean, keysym: number, xt: number) => {
    const b = new Uint8Array(12);
    const dv = new DataView(b.buffer);
    b[0] = 255;
    b[1] = 0;
    dv.setUint16(2, down ? 1 : 0);
    dv.setUint32(4, keysym);
    dv.setUint32(8, xt);
    return b;
  },
  setDesktopSize: (w: number, h: number) => {
    const b = new Uint8Array(8 + 16);
    const dv = new DataView(b.buffer);
    b[0] = 251;
    dv.setUint16(2, w);
    dv.setUint16(4, h);
    b[6] = 1;
    dv.setUint16(8 + 8, w);
    dv.setUint16(8 + 10, h);
    return b;
  },
};

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, o), o += p.length;
  return out;
}

// ---------------------------------------------------------------- the connection

class Inflater {
  private i = new pako.Inflate();
  private chunks: Uint8Array[] = [];
  constructor() {
    this.i.onData = (c: Uint8Array) => this.chunks.push(c.slice());
  }
  inflate(data: Uint8Array): Uint8Array {
    this.i.push(data, 2 /* Z_SYNC_FLUSH */);
    if (this.i.err) throw new Error(`inflate: ${this.i.msg}`);
    const out = concat(...this.chunks);
    this.chunks = [];
    return out;
  }
}

/** A raw RFB client over TCP. Every read has a deadline. */
export class RfbClient {
  private buf: Uint8Array = new Uint8Array(0);
  private eof = false;
  /** The client's pixel format (ServerInit's until setPixelFormat). */
  pf!: PixelFormat;
  width = 0;
  height = 0;
  /** Client-format pixel values, width x height. */
  fb = new Uint32Array(0);
  /** Pixels last written by a lossy (JPEG) rectangle. */
  lossy = new Uint8Array(0);
  /** Colour map from SetColourMapEntries. */
  colourMap: [number, number, number][] = [];
  private zrle?: Inflater;
  private tight: (Inflater | undefined)[] = [];
  /** Every byte read, counted (for statistics). */
  bytesIn = 0;

  private constructor(readonly conn: Deno.TcpConn, readonly timeoutMs: number) {}

  static async connect(port: number, timeoutMs = 5000): Promise<RfbClient> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    return new RfbClient(conn, timeoutMs);
  }

  /** Sends bytes (rejects if the server has gone). */
  async write(...parts: Uint8Array[]): Promise<void> {
    const b = parts.length === 1 ? parts[0] : concat(...parts);
    let o = 0;
    while (o < b.length) o += await this.conn.write(b.subarray(o));
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // closed already
    }
  }

  /** The one outstanding socket read; its bytes are appended to `buf` when it completes. */
  private reading: Promise<void> | undefined;

  private startRead(): Promise<void> {
    if (!this.reading) {
      const chunk = new Uint8Array(256 * 1024);
      this.reading = this.conn.read(chunk).catch(() => null).then((n) => {
        this.reading = undefined;
        if (n === null) this.eof = true;
        else {
          this.bytesIn += n;
          this.buf = this.buf.length ? concat(this.buf, chunk.subarray(0, n)) : chunk.slice(0, n);
        }
      });
    }
    return this.reading;
  }

  /** Waits up to `ms` for more bytes: true if some came, false on silence or EOF. */
  private async more(ms: number): Promise<"data" | "eof" | "timeout"> {
    if (this.eof) return "eof";
    const before = this.bytesIn;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const r = await Promise.race([
      this.startRead().then(() => "done" as const),
      new Promise<"timeout">((res) => (timer = setTimeout(() => res("timeout"), ms))),
    ]).finally(() => clearTimeout(timer));
    if (r === "timeout") return "timeout";
    return this.bytesIn > before ? "data" : "eof";
  }

  /** Exactly `n` bytes; RfbEof if the server closes first; an Error on timeout (then closed). */
  async read(n: number, ms = this.timeoutMs): Promise<Uint8Array> {
    const end = performance.now() + ms;
    while (this.buf.length < n) {
      const r = await this.more(Math.max(1, end - performance.now()));
      if (r === "eof") throw new RfbEof(this.buf);
      if (r === "timeout") {
        this.close();
        throw new Error(
          `timed out after ${ms} ms waiting for the server (have ${this.buf.length} of ${n})`,
        );
      }
    }
    const out = this.buf.slice(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Bytes received and not yet read. */
  get buffered(): number {
    return this.buf.length;
  }

  /** Whether the server sends anything within `ms` (the bytes stay buffered); throws RfbEof if it closes. */
  async hasData(ms: number): Promise<boolean> {
    if (this.buf.length) return true;
    const r = await this.more(ms);
    if (r === "eof") throw new RfbEof(this.buf);
    return r === "data";
  }

  /** Waits for the server to close the connection (discarding what it sends); true if it did within `ms`. */
  async closedWithin(ms: number): Promise<boolean> {
    const end = performance.now() + ms;
    for (;;) {
      this.buf = new Uint8Array(0);
      const left = end - performance.now();
      if (left <= 0) return false;
      const r = await this.more(left);
      if (r === "eof") return true;
      if (r === "timeout") return false;
    }
  }

  // ---- handshake

  /**
   * ProtocolVersion, security None (3.3: the server picks; 3.7+: choose 1),
   * SecurityResult where the version has one, ClientInit, ServerInit.
   */
  async handshake(version = "RFB 003.008\n", shared = true): Promise<ServerInit> {
    const v = dec.decode(await this.read(12));
    if (!/^RFB 003\.00[378]\n$/.test(v)) throw new Error(`server version ${JSON.stringify(v)}`);
    await this.write(enc.encode(version));
    const minor = Number(version.slice(8, 11));
    if (minor < 7) {
      const t = new DataView((await this.read(4)).buffer).getUint32(0);
      if (t !== 1) throw new Error(`3.3 security type ${t}: ${await this.reason()}`);
    } else {
      const [n] = await this.read(1);
      if (n === 0) throw new Error(`no security types: ${await this.reason()}`);
      const types = [...(await this.read(n))];
      if (!types.includes(1)) throw new Error(`security types ${types}, no None`);
      await this.write(Uint8Array.of(1));
      if (minor >= 8) {
        const r = new DataView((await this.read(4)).buffer).getUint32(0);
        if (r !== 0) throw new Error(`SecurityResult ${r}: ${await this.reason()}`);
      }
    }
    await this.write(Uint8Array.of(shared ? 1 : 0));
    return await this.serverInit();
  }

  /** A U32 length and that many bytes of text. */
  async reason(): Promise<string> {
    const len = new DataView((await this.read(4)).buffer).getUint32(0);
    return dec.decode(await this.read(len));
  }

  async serverInit(): Promise<ServerInit> {
    const b = await this.read(24);
    const dv = new DataView(b.buffer);
    const width = dv.getUint16(0), height = dv.getUint16(2);
    const pf = readPixelFormat(b.subarray(4, 20));
    const name = dec.decode(await this.read(dv.getUint32(20)));
    this.pf = pf;
    this.resize(width, height);
    return { width, height, pf, name };
  }

  private resize(w: number, h: number) {
    this.width = w;
    this.height = h;
    this.fb = new Uint32Array(w * h);
    this.lossy = new Uint8Array(w * h);
  }

  async setPixelFormat(pf: PixelFormat): Promise<void> {
    await this.write(msg.setPixelFormat(pf));
    this.pf = pf;
  }

  setEncodings(list: number[]): Promise<void> {
    return this.write(msg.setEncodings(list));
  }

  request(incremental: boolean, r?: { x: number; y: number; w: number; h: number }) {
    const { x, y, w, h } = r ?? { x: 0, y: 0, w: this.width, h: this.height };
    return this.write(msg.request(incremental, x, y, w, h));
  }

  // ---- server messages

  /** Reads one server message (updates are decoded into `fb`). */
  async next(ms = this.timeoutMs): Promise<ServerMessage> {
    const [type] = await this.read(1, ms);
    switch (type) {
      case 0: {
        const h = await this.read(3);
        const n = (h[1] << 8) | h[2];
        const rects: RectInfo[] = [];
        for (let i = 0; i < n; i++) {
          const r = await this.rect();
          rects.push(r);
          if (r.encoding === -224) break; // LastRect
        }
        return { type: "update", rects };
      }
      case 1: {
        const h = await this.read(5);
        const dv = new DataView(h.buffer);
        const first = dv.getUint16(1), count = dv.getUint16(3);
        const b = await this.read(count * 6);
        const bv = new DataView(b.buffer);
        const colours: [number, number, number][] = [];
        for (let i = 0; i < count; i++) {
          colours.push([bv.getUint16(i * 6), bv.getUint16(i * 6 + 2), bv.getUint16(i * 6 + 4)]);
          this.colourMap[first + i] = colours[i];
        }
        return { type: "colourmap", first, colours };
      }
      case 2:
        return { type: "bell" };
      case 3: {
        const h = await this.read(7);
        const len = new DataView(h.buffer).getUint32(3);
        return { type: "cuttext", text: await this.read(len) };
      }
      case 150:
        return { type: "endcu" };
      case 248: {
        const h = await this.read(8);
        const flags = new DataView(h.buffer).getUint32(3);
        return { type: "fence", flags, payload: await this.read(h[7]) };
      }
      default:
        throw new Error(`unknown server message type ${type}`);
    }
  }

  /** Reads messages until `pred` accepts one; returns it (others are skipped). */
  async until<T extends ServerMessage>(
    pred: (m: ServerMessage) => m is T,
    ms?: number,
  ): Promise<T>;
  async until(pred: (m: ServerMessage) => boolean, ms?: number): Promise<ServerMessage>;
  async until(pred: (m: ServerMessage) => boolean, ms = this.timeoutMs): Promise<ServerMessage> {
    const end = performance.now() + ms;
    for (;;) {
      const m = await this.next(Math.max(1, end - performance.now()));
      if (pred(m)) return m;
    }
  }

  /** The next FramebufferUpdate (skipping other messages). */
  async update(ms = this.timeoutMs): Promise<RectInfo[]> {
    const m = await this.until((m) => m.type === "update", ms);
    return (m as { rects: RectInfo[] }).rects;
  }

  private async rect(): Promise<RectInfo> {
    const b = await this.read(12);
    const dv = new DataView(b.buffer);
    const r: RectInfo = {
      x: dv.getUint16(0),
      y: dv.getUint16(2),
      w: dv.getUint16(4),
      h: dv.getUint16(6),
      encoding: dv.getInt32(8),
    };
    const inside = () => {
      if (r.x + r.w > this.width || r.y + r.h > this.height) {
        throw new Error(`rect ${r.w}x${r.h}+${r.x}+${r.y} outside ${this.width}x${this.height}`);
      }
    };
    switch (r.encoding) {
      case 0:
        inside();
        await this.raw(r);
        break;
      case 1: {
        inside();
        const s = new DataView((await this.read(4)).buffer);
        this.copyRect(r, s.getUint16(0), s.getUint16(2));
        break;
      }
      case 2:
        inside();
        await this.rre(r);
        break;
      case 5:
        inside();
        await this.hextile(r);
        break;
      case 16:
        inside();
        await this.zrleRect(r);
        break;
      case 7:
      case -260:
        inside();
        r.method = await this.tightRect(r);
        break;
      case -223: // DesktopSize
        this.resize(r.w, r.h);
        break;
      case -308: { // ExtendedDesktopSize
        const h = await this.read(4);
        const n = h[0];
        const sb = await this.read(16 * n);
        const sv = new DataView(sb.buffer);
        r.screens = [];
        for (let i = 0; i < n; i++) {
          r.screens.push({
            id: sv.getUint32(i * 16),
            x: sv.getUint16(i * 16 + 4),
            y: sv.getUint16(i * 16 + 6),
            w: sv.getUint16(i * 16 + 8),
            h: sv.getUint16(i * 16 + 10),
            flags: sv.getUint32(i * 16 + 12),
          });
        }
        if (r.x === 0) this.resize(r.w, r.h); // x=0: a server-side change
        break;
      }
      case -239: { // Cursor
        const bpp = this.pf.bitsPerPixel / 8;
        await this.read(r.w * r.h * bpp + Math.ceil(r.w / 8) * r.h);
        break;
      }
      case -240: // XCursor
        if (r.w * r.h) await this.read(6 + 2 * Math.ceil(r.w / 8) * r.h);
        break;
      case -307: // DesktopName
        r.name = dec.decode(
          await this.read(new DataView((await this.read(4)).buffer).getUint32(0)),
        );
        break;
      case -224: // LastRect
      case -257: // QEMU PointerTypeChange
      case -258: // QEMU Extended Key Event
        break;
      default:
        throw new Error(`rect with unknown encoding ${r.encoding}`);
    }
    return r;
  }

  // ---- pixels

  private get bpp(): number {
    return this.pf.bitsPerPixel / 8;
  }

  /** A PIXEL's value from `b` at `o`. */
  pixelAt(b: Uint8Array, o: number): number {
    return readPixel(b, o, this.pf);
  }

  private put(x: number, y: number, v: number, lossy = 0) {
    const i = y * this.width + x;
    this.fb[i] = v;
    this.lossy[i] = lossy;
  }

  private fillRect(x: number, y: number, w: number, h: number, v: number, lossy = 0) {
    for (let j = y; j < y + h; j++) {
      for (let i = x; i < x + w; i++) this.put(i, j, v, lossy);
    }
  }

  private async raw(r: RectInfo) {
    const n = this.bpp;
    const b = await this.read(r.w * r.h * n);
    for (let j = 0; j < r.h; j++) {
      for (let i = 0; i < r.w; i++) this.put(r.x + i, r.y + j, this.pixelAt(b, (j * r.w + i) * n));
    }
  }

  private copyRect(r: RectInfo, sx: number, sy: number) {
    const tmp = new Uint32Array(r.w * r.h);
    for (let j = 0; j < r.h; j++) {
      for (let i = 0; i < r.w; i++) tmp[j * r.w + i] = this.fb[(sy + j) * this.width + sx + i];
    }
    for (let j = 0; j < r.h; j++) {
      for (let i = 0; i < r.w; i++) this.put(r.x + i, r.y + j, tmp[j * r.w + i]);
    }
  }

  private async rre(r: RectInfo) {
    const n = this.bpp;
    const h = await this.read(4 + n);
    const count = new DataView(h.buffer).getUint32(0);
    this.fillRect(r.x, r.y, r.w, r.h, this.pixelAt(h, 4));
    const b = await this.read(count * (n + 8));
    const dv = new DataView(b.buffer);
    for (let k = 0; k < count; k++) {
      const o = k * (n + 8);
      const v = this.pixelAt(b, o);
      const sx = dv.getUint16(o + n), sy = dv.getUint16(o + n + 2);
      const sw = dv.getUint16(o + n + 4), sh = dv.getUint16(o + n + 6);
      if (sx + sw > r.w || sy + sh > r.h) throw new Error(`RRE subrect outside its rect`);
      this.fillRect(r.x + sx, r.y + sy, sw, sh, v);
    }
  }

  private async hextile(r: RectInfo) {
    const n = this.bpp;
    let bg = 0, fg = 0;
    for (let ty = r.y; ty < r.y + r.h; ty += 16) {
      for (let tx = r.x; tx < r.x + r.w; tx += 16) {
        const tw = Math.min(16, r.x + r.w - tx), th = Math.min(16, r.y + r.h - ty);
        const [mask] = await this.read(1);
        if (mask & 1) {
          const b = await this.read(tw * th * n);
          for (let j = 0; j < th; j++) {
            for (let i = 0; i < tw; i++) {
              this.put(tx + i, ty + j, this.pixelAt(b, (j * tw + i) * n));
            }
          }
          continue;
        }
        if (mask & 2) bg = this.pixelAt(await this.read(n), 0);
        this.fillRect(tx, ty, tw, th, bg);
        if (mask & 4) fg = this.pixelAt(await this.read(n), 0);
        if (mask & 8) {
          const [count] = await this.read(1);
          const coloured = (mask & 16) !== 0;
          const each = coloured ? n + 2 : 2;
          const b = await this.read(count * each);
          for (let k = 0; k < count; k++) {
            const o = k * each;
            const v = coloured ? this.pixelAt(b, o) : fg;
            const xy = b[o + (coloured ? n : 0)], wh = b[o + (coloured ? n : 0) + 1];
            const sx = xy >> 4, sy = xy & 15, sw = (wh >> 4) + 1, sh = (wh & 15) + 1;
            if (sx + sw > tw || sy + sh > th) throw new Error("hextile subrect outside its tile");
            this.fillRect(tx + sx, ty + sy, sw, sh, v);
          }
        }
      }
    }
  }

  /** CPIXEL size and reader for ZRLE. */
  private cpixel(): { size: number; at: (b: Uint8Array, o: number) => number } {
    const pf = this.pf;
    if (pf.trueColour && pf.bitsPerPixel === 32 && pf.depth <= 24) {
      const top = Math.max(pf.redMax << pf.redShift, pf.greenMax << pf.greenShift) >>> 0;
      const all = Math.max(top, (pf.blueMax << pf.blueShift) >>> 0);
      const low = all < 0x1000000; // the value fits in the least significant 3 bytes
      return {
        size: 3,
        at: (b, o) => {
          // The 3 bytes are the PIXEL's bytes minus the unused one, in wire order.
          if (pf.bigEndian) {
            return low
              ? (b[o] << 16) | (b[o + 1] << 8) | b[o + 2]
              : ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8)) >>> 0;
          }
          return low
            ? b[o] | (b[o + 1] << 8) | (b[o + 2] << 16)
            : ((b[o] << 8) | (b[o + 1] << 16) | (b[o + 2] << 24)) >>> 0;
        },
      };
    }
    return { size: this.bpp, at: (b, o) => this.pixelAt(b, o) };
  }

  private async zrleRect(r: RectInfo) {
    const len = new DataView((await this.read(4)).buffer).getUint32(0);
    this.zrle ??= new Inflater();
    const data = this.zrle.inflate(await this.read(len));
    const cp = this.cpixel();
    let o = 0;
    const need = (k: number) => {
      if (o + k > data.length) throw new Error("ZRLE data ends inside a tile");
    };
    for (let ty = r.y; ty < r.y + r.h; ty += 64) {
      for (let tx = r.x; tx < r.x + r.w; tx += 64) {
        const tw = Math.min(64, r.x + r.w - tx), th = Math.min(64, r.y + r.h - ty);
        need(1);
        const sub = data[o++];
        const runLength = () => {
          let n = 1;
          for (;;) {
            need(1);
            const b = data[o++];
            n += b;
            if (b !== 255) return n;
          }
        };
        if (sub === 0) {
          need(tw * th * cp.size);
          for (let j = 0; j < th; j++) {
            for (let i = 0; i < tw; i++) this.put(tx + i, ty + j, cp.at(data, o)), o += cp.size;
          }
        } else if (sub === 1) {
          need(cp.size);
          this.fillRect(tx, ty, tw, th, cp.at(data, o));
          o += cp.size;
        } else if (sub >= 2 && sub <= 16) {
          need(sub * cp.size);
          const pal: number[] = [];
          for (let k = 0; k < sub; k++) pal.push(cp.at(data, o)), o += cp.size;
          const bits = sub === 2 ? 1 : sub <= 4 ? 2 : 4;
          const rowBytes = Math.ceil((tw * bits) / 8);
          need(rowBytes * th);
          for (let j = 0; j < th; j++) {
            for (let i = 0; i < tw; i++) {
              const bit = i * bits;
              const byte = data[o + j * rowBytes + (bit >> 3)];
              const idx = (byte >> (8 - bits - (bit & 7))) & ((1 << bits) - 1);
              if (idx >= sub) throw new Error("ZRLE palette index out of range");
              this.put(tx + i, ty + j, pal[idx]);
            }
          }
          o += rowBytes * th;
        } else if (sub === 128 || sub >= 130) {
          let pal: number[] = [];
          if (sub >= 130) {
            need((sub - 128) * cp.size);
            pal = [];
            for (let k = 0; k < sub - 128; k++) pal.push(cp.at(data, o)), o += cp.size;
          }
          let p = 0;
          while (p < tw * th) {
            let v: number, n = 1;
            if (sub === 128) {
              need(cp.size);
              v = cp.at(data, o);
              o += cp.size;
              n = runLength();
            } else {
              need(1);
              const idx = data[o++];
              if ((idx & 127) >= pal.length) throw new Error("ZRLE RLE palette index out of range");
              v = pal[idx & 127];
              if (idx & 128) n = runLength();
            }
            if (p + n > tw * th) throw new Error("ZRLE run past the tile");
            for (let k = 0; k < n; k++, p++) this.put(tx + (p % tw), ty + Math.floor(p / tw), v);
          }
        } else {
          throw new Error(`ZRLE subencoding ${sub}`);
        }
      }
    }
    if (o !== data.length) throw new Error(`ZRLE: ${data.length - o} bytes left over`);
  }

  /** Whether Tight sends pixels as 3-byte R,G,B (TPIXEL). */
  private get tpixel24(): boolean {
    const pf = this.pf;
    return pf.trueColour && pf.bitsPerPixel === 32 && pf.depth === 24 &&
      pf.redMax === 255 && pf.greenMax === 255 && pf.blueMax === 255 &&
      pf.redShift % 8 === 0 && pf.greenShift % 8 === 0 && pf.blueShift % 8 === 0;
  }

  private fromRgb(r: number, g: number, b: number): number {
    const pf = this.pf;
    const c = (v: number, max: number) => Math.round((v * max) / 255);
    return ((c(r, pf.redMax) << pf.redShift) | (c(g, pf.greenMax) << pf.greenShift) |
      (c(b, pf.blueMax) << pf.blueShift)) >>> 0;
  }

  private async compactLength(): Promise<number> {
    let [b] = await this.read(1);
    let len = b & 0x7f;
    if (b & 0x80) {
      [b] = await this.read(1);
      len |= (b & 0x7f) << 7;
      if (b & 0x80) {
        [b] = await this.read(1);
        len |= b << 14;
      }
    }
    return len;
  }

  private async tightRect(r: RectInfo): Promise<string> {
    const [ctl] = await this.read(1);
    for (let s = 0; s < 4; s++) if (ctl & (1 << s)) this.tight[s] = undefined;
    const method = ctl >> 4;
    const tp = this.tpixel24 ? 3 : this.bpp;
    const tpix = (b: Uint8Array, o: number) =>
      tp === 3 ? this.fromRgb(b[o], b[o + 1], b[o + 2]) : this.pixelAt(b, o);
    if (method === 8) {
      this.fillRect(r.x, r.y, r.w, r.h, tpix(await this.read(tp), 0));
      return "fill";
    }
    if (method === 9) {
      const data = await this.read(await this.compactLength());
      const img = jpegJs.decode(data, { useTArray: true, formatAsRGBA: true });
      if (img.width !== r.w || img.height !== r.h) throw new Error("JPEG size differs from rect");
      for (let j = 0; j < r.h; j++) {
        for (let i = 0; i < r.w; i++) {
          const o = (j * r.w + i) * 4;
          this.put(
            r.x + i,
            r.y + j,
            this.fromRgb(img.data[o], img.data[o + 1], img.data[o + 2]),
            1,
          );
        }
      }
      return "jpeg";
    }
    if (method === 10) {
      const data = await this.read(await this.compactLength());
      const png = decodePng(data);
      if (png.width !== r.w || png.height !== r.h) throw new Error("PNG size differs from rect");
      const ch = png.channels;
      for (let j = 0; j < r.h; j++) {
        for (let i = 0; i < r.w; i++) {
          const k = j * r.w + i;
          let rgb: number[];
          if (png.palette) {
            const idx = png.depth < 8 ? bitsAt(png.data as Uint8Array, j, i, r.w, png.depth) : png
              .data[k];
            rgb = png.palette[idx] as number[];
          } else rgb = [png.data[k * ch], png.data[k * ch + 1], png.data[k * ch + 2]];
          this.put(r.x + i, r.y + j, this.fromRgb(rgb[0], rgb[1], rgb[2]));
        }
      }
      return "png";
    }
    if (method > 7) throw new Error(`Tight method ${method}`);
    const stream = method & 3;
    let filter = 0;
    if (method & 4) [filter] = await this.read(1);
    const palette: number[] = [];
    let size: number;
    if (filter === 1) {
      const [n1] = await this.read(1);
      const pb = await this.read((n1 + 1) * tp);
      for (let k = 0; k <= n1; k++) palette.push(tpix(pb, k * tp));
      size = palette.length === 2 ? Math.ceil(r.w / 8) * r.h : r.w * r.h;
    } else if (filter === 0) {
      size = r.w * r.h * tp;
    } else if (filter === 2) {
      if (tp !== 3) throw new Error("Tight gradient filter with a PIXEL that is not 3 bytes");
      size = r.w * r.h * 3;
    } else throw new Error(`Tight filter ${filter}`);
    let data: Uint8Array;
    if (size < 12) data = await this.read(size);
    else {
      const z = await this.read(await this.compactLength());
      this.tight[stream] ??= new Inflater();
      data = this.tight[stream]!.inflate(z);
    }
    if (data.length !== size) throw new Error(`Tight data ${data.length} bytes, want ${size}`);
    if (filter === 2) {
      // Undo the prediction: each byte is the channel minus clamp(left + above - above-left).
      const rgb = new Uint8Array(size);
      const at = (i: number, j: number, c: number) =>
        i < 0 || j < 0 ? 0 : rgb[(j * r.w + i) * 3 + c];
      for (let j = 0; j < r.h; j++) {
        for (let i = 0; i < r.w; i++) {
          for (let c = 0; c < 3; c++) {
            const p = Math.min(
              255,
              Math.max(0, at(i - 1, j, c) + at(i, j - 1, c) - at(i - 1, j - 1, c)),
            );
            rgb[(j * r.w + i) * 3 + c] = (data[(j * r.w + i) * 3 + c] + p) & 255;
          }
        }
      }
      data = rgb;
    }
    for (let j = 0; j < r.h; j++) {
      for (let i = 0; i < r.w; i++) {
        let v: number;
        if (filter !== 1) v = tpix(data, (j * r.w + i) * tp);
        else if (palette.length === 2) {
          v = palette[(data[j * Math.ceil(r.w / 8) + (i >> 3)] >> (7 - (i & 7))) & 1];
        } else {
          const idx = data[j * r.w + i];
          if (idx >= palette.length) throw new Error("Tight palette index out of range");
          v = palette[idx];
        }
        this.put(r.x + i, r.y + j, v);
      }
    }
    if (filter === 2) return "gradient";
    return filter === 0 ? "copy" : palette.length === 2 ? "mono" : "palette";
  }
}

/** The value of the PIXEL at `b[o]` in format `pf`. */
export function readPixel(b: Uint8Array, o: number, pf: PixelFormat): number {
  const n = pf.bitsPerPixel / 8;
  if (n === 1) return b[o];
  if (n === 2) return pf.bigEndian ? (b[o] << 8) | b[o + 1] : b[o] | (b[o + 1] << 8);
  return (pf.bigEndian
    ? (b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]
    : b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
}

/** All pixel values of packed client-format bytes. */
export function pixelValues(b: Uint8Array, pf: PixelFormat): Uint32Array {
  const n = pf.bitsPerPixel / 8;
  const out = new Uint32Array(b.length / n);
  for (let i = 0; i < out.length; i++) out[i] = readPixel(b, i * n, pf);
  return out;
}

function bitsAt(data: Uint8Array, row: number, col: number, w: number, depth: number): number {
  const rowBytes = Math.ceil((w * depth) / 8);
  const bit = col * depth;
  return (data[row * rowBytes + (bit >> 3)] >> (8 - depth - (bit & 7))) & ((1 << depth) - 1);
}
