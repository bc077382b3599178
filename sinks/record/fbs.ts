/**
 * `.fbs` recordings: the server-to-client half of an RFB session with
 * timestamps, in the "FBS 001.000" format of rfbproxy (and of TightVNC's and
 * vncproxy's players).
 *
 * ## The format
 *
 * ```
 * file   = "FBS 001.000\n" block*
 * block  = U32 length L, L bytes of data, zero bytes up to a multiple of 4, U32 time
 * ```
 *
 * Numbers are big-endian; `time` is milliseconds since the recording started. The
 * data, concatenated, is the byte stream a client read from the server, from the
 * server's ProtocolVersion on. Nothing the client sent is recorded. A block of length
 * 0 marks the end (rfbproxy reads it as EOF); its time is the recording's length.
 *
 * ## What rxfb writes
 *
 * - Blocks are written one `write` each, with no buffering in between, as soon as
 *   the recorder's client has read them: a killed process leaves a file whose
 *   complete blocks all read back ({@link parseFbs} stops before a cut-off last
 *   block), and whose updates all replay up to the last complete one.
 * - The handshake is recorded in RFB 3.3 form, as rfbproxy's own client records it:
 *   `"RFB 003.003\n"`, the security word 1 (None) whatever the server asked, then
 *   ServerInit with the desktop name. Old players (TightVNC's, rfbproxy's) read only
 *   this form, and it needs no guessing of what the client chose.
 * - The recorder never sends SetPixelFormat, so the whole file is in the server's
 *   native format announced in ServerInit (FBS 1.1's guarantee; the header still says
 *   001.000, which every player accepts). For a 32-bpp or 24-bpp guest that is
 *   XRGB8888, so replayed pixels are exact.
 * - Each block is one FramebufferUpdate (or another server message) as the server
 *   wrote it; readers must not rely on that ({@link RfbDecoder} reassembles messages
 *   split anywhere).
 *
 * @example
 * ```ts
 * import { encodeFbsBlock, FBS_HEADER, parseFbs } from "./fbs.ts";
 * const head = new TextEncoder().encode(FBS_HEADER);
 * const block = encodeFbsBlock(new TextEncoder().encode("RFB 003.003\n"), 0);
 * const file = new Uint8Array([...head, ...block]);
 * const f = parseFbs(file);
 * if (f.blocks.length !== 1 || f.blocks[0].data.length !== 12) throw new Error("bad parse");
 * ```
 *
 * @module
 */
import type { Rect } from "../../pipeline/rect.ts";
import type { Logger } from "../../sources/log.ts";
import type { DisplaySource } from "../vnc/connection.ts";
import { Encoding } from "../vnc/encoder.ts";
import type { VncServer } from "../vnc/server.ts";
import { type RfbStream, StreamClosed } from "../vnc/stream.ts";
import { RfbDecoder } from "./rfb_decode.ts";

/** The first 12 bytes of an FBS file that rxfb writes. */
export const FBS_HEADER = "FBS 001.000\n";

// ---------------------------------------------------------------------------
// Blocks

/** One block of data as it reads back. */
export interface FbsBlock {
  /** The recorded bytes (without the padding). */
  readonly data: Uint8Array;
  /** Milliseconds since the recording started. */
  readonly timeMs: number;
  /** Where the block starts in the file (its length word). */
  readonly offset: number;
}

/** An FBS file, parsed. */
export interface FbsContents {
  /** The header's version, e.g. "001.000". */
  readonly version: string;
  /** Every complete data block, in order (the end mark excluded). */
  readonly blocks: FbsBlock[];
  /** True when the file ends with the end mark (a block of length 0). */
  readonly ended: boolean;
  /** The end mark's time: the recording's length (ms), when `ended`. */
  readonly endMs?: number;
  /** True when bytes follow the last complete block (a write cut short). */
  readonly truncated: boolean;
  /** Bytes of the file that form the header and complete blocks. */
  readonly validBytes: number;
}

/** The bytes of one block: length, data, padding to 4, time. */
export function encodeFbsBlock(data: Uint8Array, timeMs: number): Uint8Array {
  const padded = (data.length + 3) & ~3;
  const out = new Uint8Array(8 + padded);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  out.set(data, 4);
  dv.setUint32(4 + padded, Math.max(0, Math.floor(timeMs)) >>> 0);
  return out;
}

/**
 * Reads an FBS file's blocks: every complete block up to the end mark or the end
 * of the bytes. A last block cut short (a recorder killed mid-write) is left out
 * and `truncated` set. Throws when the header is not "FBS 001.xxx\n".
 */
export function parseFbs(bytes: Uint8Array): FbsContents {
  const head = new TextDecoder().decode(bytes.subarray(0, 12));
  const m = /^FBS 001\.(\d{3})\n$/.exec(head);
  if (!m) throw new Error(`not an FBS file (starts with ${JSON.stringify(head)})`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const blocks: FbsBlock[] = [];
  let at = 12, ended = false, endMs: number | undefined;
  while (at + 8 <= bytes.length) {
    const len = dv.getUint32(at);
    const padded = (len + 3) & ~3;
    if (at + 8 + padded > bytes.length) break;
    const timeMs = dv.getUint32(at + 4 + padded);
    if (len === 0) {
      ended = true;
      endMs = timeMs;
      at += 8;
      break;
    }
    blocks.push({ data: bytes.subarray(at + 4, at + 4 + len), timeMs, offset: at });
    at += 8 + padded;
  }
  return {
    version: `001.${m[1]}`,
    blocks,
    ended,
    endMs,
    truncated: !ended && at < bytes.length,
    validBytes: at,
  };
}

/** Reads and parses an FBS file. */
export async function readFbsFile(path: string): Promise<FbsContents> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new Error(`cannot read recording ${path}: ${(e as Error).message}`);
  }
  try {
    return parseFbs(bytes);
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
}

/**
 * Writes an FBS file block by block: each block goes to the file in one write as
 * soon as it is appended (in order), so a killed process leaves complete blocks.
 */
export class FbsWriter {
  private chain: Promise<void> = Promise.resolve();
  private failed: unknown;
  private closed = false;
  /** Data blocks written (the end mark not counted). */
  blocks = 0;
  /** Bytes in the file. */
  bytes = 0;

  private constructor(private readonly file: Deno.FsFile, readonly path: string) {}

  /** Creates (or truncates) `path` and writes the header. */
  static async create(path: string): Promise<FbsWriter> {
    const file = await Deno.open(path, { write: true, create: true, truncate: true });
    const w = new FbsWriter(file, path);
    try {
      await w.writeAll(new TextEncoder().encode(FBS_HEADER));
    } catch (e) {
      file.close();
      throw e;
    }
    return w;
  }

  private async writeAll(b: Uint8Array): Promise<void> {
    let off = 0;
    while (off < b.length) off += await this.file.write(b.subarray(off));
    this.bytes += b.length;
  }

  /** Appends a block; resolves once it is in the file. Empty data is skipped (0 is the end mark). */
  append(data: Uint8Array, timeMs: number): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`${this.path}: recording closed`));
    if (data.length === 0) return this.chain;
    const block = encodeFbsBlock(data, timeMs);
    this.chain = this.chain.then(async () => {
      if (this.failed) throw this.failed;
      try {
        await this.writeAll(block);
        this.blocks++;
      } catch (e) {
        this.failed = e;
        throw e;
      }
    });
    return this.chain;
  }

  /** Writes the end mark at `timeMs` (unless `endMark` is false) and closes the file. */
  async close(timeMs: number, endMark = true): Promise<void> {
    if (this.closed) return;
    await this.chain.catch(() => {});
    this.closed = true;
    try {
      if (endMark && !this.failed) await this.writeAll(encodeFbsBlock(new Uint8Array(0), timeMs));
    } finally {
      this.file.close();
    }
  }
}

// ---------------------------------------------------------------------------
// An in-memory RFB transport

/** A byte queue with exact-length reads that wait. */
class ByteQueue {
  private chunks: Uint8Array[] = [];
  private size = 0;
  private waiter: (() => void) | undefined;
  closed = false;

  push(b: Uint8Array): void {
    if (this.closed || b.length === 0) return;
    this.chunks.push(b);
    this.size += b.length;
    this.wake();
  }

  close(): void {
    this.closed = true;
    this.wake();
  }

  private wake() {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  /** Exactly n bytes; rejects with StreamClosed when the queue closes first. */
  async read(n: number): Promise<Uint8Array> {
    while (this.size < n) {
      if (this.closed) throw new StreamClosed();
      await new Promise<void>((r) => this.waiter = r);
    }
    return this.take(n);
  }

  /** Exactly n bytes if queued already, else undefined (nothing taken). */
  tryRead(n: number): Uint8Array | undefined {
    return this.size >= n ? this.take(n) : undefined;
  }

  /** Whatever is queued (at least a byte), or null once closed and empty. */
  async readSome(): Promise<Uint8Array | null> {
    while (this.size === 0) {
      if (this.closed) return null;
      await new Promise<void>((r) => this.waiter = r);
    }
    if (this.chunks.length === 1 || this.chunks[0].length === this.size) {
      return this.take(this.chunks[0].length);
    }
    return this.take(this.chunks[0].length);
  }

  private take(n: number): Uint8Array {
    if (n === 0) return new Uint8Array(0); // (there may be no chunk at all)
    const first = this.chunks[0];
    if (first.length === n) {
      this.chunks.shift();
      this.size -= n;
      return first;
    }
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      const c = this.chunks[0];
      const k = Math.min(c.length, n - got);
      out.set(c.subarray(0, k), got);
      got += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.size -= n;
    return out;
  }
}

/**
 * Two ends of an in-memory connection: `server` is an RfbStream to hand to
 * `VncServer.serve()`; the client end reads what the server wrote, in the pieces
 * the server wrote them.
 */
export class MemoryPipe {
  private readonly toServer = new ByteQueue();
  private readonly toClient = new ByteQueue();
  readonly server: RfbStream;

  constructor(remote = "fbs-recorder") {
    // deno-lint-ignore no-this-alias
    const pipe = this;
    this.server = {
      remote,
      read: (n) => pipe.toServer.read(n),
      tryRead: (n) => pipe.toServer.tryRead(n),
      write(b) {
        if (pipe.toClient.closed) return Promise.reject(new StreamClosed());
        pipe.toClient.push(b.slice());
        return Promise.resolve();
      },
      pending: 0,
      close: () => pipe.close(),
      get closed() {
        return pipe.toClient.closed;
      },
    };
  }

  /** Client end: exactly n bytes from the server. */
  clientRead(n: number): Promise<Uint8Array> {
    return this.toClient.read(n);
  }

  /** Client end: the next piece the server wrote, or null once closed (after the last piece). */
  clientReadSome(): Promise<Uint8Array | null> {
    return this.toClient.readSome();
  }

  /** Client end: bytes to the server. */
  clientWrite(b: Uint8Array): void {
    this.toServer.push(b);
  }

  /** Closes both directions (bytes already sent to the client can still be read). */
  close(): void {
    this.toServer.close();
    this.toClient.close();
  }
}

// ---------------------------------------------------------------------------
// The recorder

/** An update the recorder's client received, decoded (for tests: see `onUpdate`). */
export interface RecordedUpdate {
  /** 0, 1, 2, ...: counts updates that changed pixels or the size (replay's frame numbers). */
  readonly index: number;
  /** The time of the block that completed it (ms since the recording started). */
  readonly timeMs: number;
  readonly width: number;
  readonly height: number;
  /** The client's screen after it, `0x00RRGGBB` (a copy). */
  readonly pixels: Uint32Array;
  readonly rects: Rect[];
  readonly resized: boolean;
}

/** Settings of {@link startFbsRecorder} and {@link recordDisplay}. */
export interface FbsRecorderOptions {
  /** The encoding the recorder asks for: "zrle" (default, small) or "raw". */
  encoding?: "zrle" | "raw";
  /** ZRLE's zlib level 0..9 (sent as the CompressLevel pseudo-encoding); the server's default if unset. */
  compressLevel?: number;
  log: Logger;
  /** The VNC password, when the server asks for VNC authentication. */
  password?: Uint8Array;
  /**
   * Called with the client's decoded screen after each update that changed pixels or
   * the size (what a live viewer showed). Decoding costs CPU; leave unset in production.
   */
  onUpdate?(u: RecordedUpdate): void;
}

/** A running recording. */
export interface FbsRecorder {
  readonly path: string;
  /** Data blocks written so far. */
  readonly blocks: number;
  /** FramebufferUpdates received so far. */
  readonly updates: number;
  /** Bytes in the file so far. */
  readonly bytes: number;
  /** Resolves when the recording has ended (close(), or the server ended it), with why. */
  readonly done: Promise<string>;
  /** Stops recording: writes the end mark and closes the file. Safe to call twice. */
  close(): Promise<void>;
}

const enc = new TextEncoder();

function u32be(b: Uint8Array, at = 0): number {
  return ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function setEncodings(list: number[]): Uint8Array {
  const b = new Uint8Array(4 + 4 * list.length);
  const dv = new DataView(b.buffer);
  b[0] = 2;
  dv.setUint16(2, list.length);
  list.forEach((e, i) => dv.setInt32(4 + 4 * i, e));
  return b;
}

function updateRequest(incremental: boolean, w: number, h: number): Uint8Array {
  const b = new Uint8Array(10);
  const dv = new DataView(b.buffer);
  b[0] = 3;
  b[1] = incremental ? 1 : 0;
  dv.setUint16(6, w);
  dv.setUint16(8, h);
  return b;
}

/**
 * Records what a client of `vnc` sees to the FBS file `path`, through an in-process
 * client on an in-memory connection (`vnc.serve()`): RFB 3.3, ClientInit shared,
 * SetEncodings [ZRLE or Raw, DesktopSize, LastRect], and an incremental
 * FramebufferUpdateRequest for the whole screen as soon as each update has been
 * read — so it records every update the server would send a fast viewer. It sends
 * no keyboard or pointer events.
 *
 * Security: None is recorded as is. VNC authentication works when `opts.password`
 * is given (the file still says None, as rfbproxy's do). A server that offers only
 * VeNCrypt cannot be recorded through: the promise rejects saying so; record the
 * guest with {@link recordDisplay} instead, which needs no credentials. Note that on
 * a server whose share policy is "allow-exclusive", a viewer asking for exclusive
 * access disconnects the recorder too (the recording then ends, file complete).
 *
 * Resolves once the handshake is done and the file exists; rejects (creating no
 * file) when the server refuses the recorder.
 */
export async function startFbsRecorder(
  vnc: VncServer,
  path: string,
  opts: FbsRecorderOptions,
): Promise<FbsRecorder> {
  const pipe = new MemoryPipe("fbs-recorder");
  const served = vnc.serve(pipe.server).catch(() => {});
  const t0 = performance.now();
  const now = () => Math.floor(performance.now() - t0);
  const log = opts.log;
  const decoder = new RfbDecoder({ decodePixels: opts.onUpdate !== undefined });
  const pending: { data: Uint8Array; timeMs: number }[] = [];
  const record = (data: Uint8Array) => {
    pending.push({ data, timeMs: now() });
    decoder.push(data);
  };
  let writer: FbsWriter;
  try {
    // ---- handshake (RFB 3.3) ----
    const version = new TextDecoder().decode(await pipe.clientRead(12));
    if (!/^RFB 003\.\d{3}\n$/.test(version)) {
      throw new Error(`the VNC server speaks ${JSON.stringify(version)}, not RFB 3.x`);
    }
    pipe.clientWrite(enc.encode("RFB 003.003\n"));
    record(enc.encode("RFB 003.003\n"));
    const type = u32be(await pipe.clientRead(4));
    if (type === 0) {
      const why = new TextDecoder().decode(await pipe.clientRead(u32be(await pipe.clientRead(4))));
      throw new Error(
        `the VNC server refused the recorder (${why}); a server that requires VeNCrypt/TLS ` +
          `cannot be recorded through: record the guest with recordDisplay() instead`,
      );
    }
    if (type === 2) {
      if (!opts.password) {
        throw new Error(
          "the VNC server requires VNC authentication: give the recorder the password, " +
            "or record the guest with recordDisplay() instead",
        );
      }
      const challenge = await pipe.clientRead(16);
      const { vncEncrypt } = await import("../vnc/auth/vnc.ts");
      pipe.clientWrite(vncEncrypt(opts.password, challenge));
      if (u32be(await pipe.clientRead(4)) !== 0) {
        throw new Error("the VNC server rejected the recorder's password");
      }
    } else if (type !== 1) {
      throw new Error(`the VNC server chose security type ${type}, which the recorder cannot do`);
    }
    record(Uint8Array.of(0, 0, 0, 1)); // None, as rfbproxy records every session
    pipe.clientWrite(Uint8Array.of(1)); // ClientInit: shared
    const init = await pipe.clientRead(24);
    const name = await pipe.clientRead(u32be(init, 20));
    record(concat(init, name));
    const si = decoder.next();
    if (si?.type !== "serverInit") throw new Error("the recorder could not read ServerInit");
    // ---- encodings and the first request ----
    const list: number[] = [opts.encoding === "raw" ? Encoding.Raw : Encoding.ZRLE];
    if (opts.encoding !== "raw" && opts.compressLevel !== undefined) {
      list.push(Encoding.CompressLevel0 + Math.max(0, Math.min(9, Math.trunc(opts.compressLevel))));
    }
    list.push(Encoding.DesktopSize, Encoding.LastRect);
    pipe.clientWrite(setEncodings(list));
    pipe.clientWrite(updateRequest(false, si.width, si.height));
    writer = await FbsWriter.create(path);
    for (const b of pending) await writer.append(b.data, b.timeMs);
    log.info(
      `recording ${si.width}x${si.height} (${si.format.bitsPerPixel} bpp, ` +
        `${opts.encoding ?? "zrle"}) to ${path}`,
    );
  } catch (e) {
    pipe.close();
    await served;
    decoder.close();
    throw e instanceof StreamClosed
      ? new Error("the VNC server closed the recorder's connection during the handshake")
      : e;
  }

  let updates = 0, visible = 0, stopping = false;
  const loop = async (): Promise<string> => {
    for (;;) {
      const chunk = await pipe.clientReadSome();
      if (chunk === null) return stopping ? "stopped" : "the VNC server closed the connection";
      const t = now();
      await writer.append(chunk, t);
      decoder.push(chunk);
      for (let m = decoder.next(); m; m = decoder.next()) {
        if (m.type !== "update") continue;
        updates++;
        if (opts.onUpdate && (m.rects.length > 0 || m.resized)) {
          opts.onUpdate({
            index: visible,
            timeMs: t,
            width: m.width,
            height: m.height,
            pixels: decoder.fb.slice(),
            rects: m.rects,
            resized: m.resized,
          });
        }
        if (m.rects.length > 0 || m.resized) visible++;
        if (!stopping) pipe.clientWrite(updateRequest(true, m.width, m.height));
      }
    }
  };
  const done = loop()
    .catch((e) => {
      log.error(`recording ${path}: ${e instanceof Error ? e.message : e}`);
      return `failed: ${e instanceof Error ? e.message : e}`;
    })
    .then(async (why) => {
      pipe.close();
      await served;
      decoder.close();
      await writer.close(now()).catch((e) => log.error(`recording ${path}: ${e}`));
      log.info(
        `recording ${path} ended (${why}): ${writer.blocks} blocks, ${updates} updates, ` +
          `${writer.bytes} bytes, ${(now() / 1000).toFixed(1)} s`,
      );
      return why;
    });
  return {
    path,
    get blocks() {
      return writer.blocks;
    },
    get updates() {
      return updates;
    },
    get bytes() {
      return writer.bytes;
    },
    done,
    async close() {
      stopping = true;
      pipe.close();
      await done;
    },
  };
}

/**
 * Records a guest's display (anything with `display$`, e.g. `attach()`'s Guest) to
 * `path` through a private VNC server of its own (security None, no port), so the
 * recording needs no credentials and no viewer can disconnect it. Options as
 * {@link startFbsRecorder}; `name` is ServerInit's desktop name.
 */
export async function recordDisplay(
  source: DisplaySource,
  path: string,
  opts: FbsRecorderOptions & { name?: string },
): Promise<FbsRecorder> {
  // Imported here so that readers of FBS files (the replay guest's worker) do not load
  // the VNC server.
  const [{ VncServer }, { NoneAuth }, { createEncoder }] = await Promise.all([
    import("../vnc/server.ts"),
    import("../vnc/auth/none.ts"),
    import("../vnc/encodings/mod.ts"),
  ]);
  const server = new VncServer({
    source,
    name: opts.name ?? "rxfb recording",
    security: [new NoneAuth()],
    keys: () => ({ keyEvent: () => [], xtToEvdev: () => undefined }),
    createEncoder,
    log: opts.log,
  });
  let rec: FbsRecorder;
  try {
    rec = await startFbsRecorder(server, path, opts);
  } catch (e) {
    server.close();
    throw e;
  }
  const done = rec.done.finally(() => server.close());
  return {
    path,
    get blocks() {
      return rec.blocks;
    },
    get updates() {
      return rec.updates;
    },
    get bytes() {
      return rec.bytes;
    },
    done,
    async close() {
      await rec.close();
      await done;
    },
  };
}
