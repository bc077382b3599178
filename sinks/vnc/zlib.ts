/**
 * Persistent, synchronous zlib streams for the RFB encodings that need them
 * (ZRLE, zlib, Tight): the spec keeps one zlib stream per connection per
 * encoding alive across rectangles, and ends each rectangle's data with a
 * `Z_SYNC_FLUSH` so that the client can decode it without waiting for more.
 *
 * ## Backends
 *
 * - **ffi** (preferred): the system's zlib (`libz.so.1`; `libz.1.dylib` on macOS)
 *   through `Deno.dlopen`, with the `z_stream` struct in a buffer of ours (LP64
 *   layout, 112 bytes). Needs the `ffi` permission; it is never prompted for.
 * - **pako** (fallback): `npm:pako`, a port of zlib to JavaScript, slower by a
 *   factor of 2-4 but with byte-identical framing semantics.
 *
 * Both give standard zlib streams (RFC 1950 header, 32 KiB window), so either side
 * can inflate the other's output.
 *
 * ```ts
 * import { createDeflate, createInflate } from "./zlib.ts";
 * import { assertEquals } from "@rxfb/assert";
 *
 * const d = createDeflate(6), i = createInflate();
 * const a = new TextEncoder().encode("hello hello hello");
 * assertEquals(i.inflate(d.deflate(a)), a); // each call ends with Z_SYNC_FLUSH
 * assertEquals(i.inflate(d.deflate(a)), a); // the second may refer to the first
 * d.close();
 * i.close();
 * ```
 *
 * @module
 */
import * as pakoModule from "pako";
import { ByteWriter } from "./bytes.ts";
import { HOST_LE } from "../../pipeline/pixel_format.ts";

/** How a call ends its output: `Z_NO_FLUSH`, `Z_SYNC_FLUSH` (the RFB default) or `Z_FINISH`. */
export type FlushMode = "none" | "sync" | "finish";

/** Which implementation a stream uses. */
export type ZlibBackend = "ffi" | "pako";

/**
 * zlib's strategies. "rle" (matches at distance 1 only) is about twice as fast as
 * "default" on data that hardly compresses (e.g. raw pixels of photos or gradients)
 * and as small there; "default" is much better where content repeats (text).
 */
export type DeflateStrategy = "default" | "filtered" | "huffman" | "rle";
const STRATEGY: Record<DeflateStrategy, number> = { default: 0, filtered: 1, huffman: 2, rle: 3 };

/** A zlib deflate stream that persists across calls. */
export interface DeflateStream {
  readonly backend: ZlibBackend;
  /** The compression level (0..9) in effect for the next call. */
  readonly level: number;
  /** The strategy in effect for the next call. */
  readonly strategy: DeflateStrategy;
  /**
   * Compresses `data` and returns the output it produced (a new array, owned by the
   * caller). `flush` defaults to `"sync"`: the output then decodes to all input so far.
   */
  deflate(data: Uint8Array, flush?: FlushMode): Uint8Array;
  /** As {@link deflate}, appending the output to `out` (no copy); returns its length. */
  deflateTo(data: Uint8Array, out: ByteWriter, flush?: FlushMode): number;
  /**
   * Changes the level from the next call on, keeping the stream (zlib's
   * `deflateParams`). Absent on the pako backend, which cannot.
   */
  setLevel?(level: number): void;
  /** Changes the strategy from the next call on, as setLevel does. Absent on pako. */
  setStrategy?(strategy: DeflateStrategy): void;
  /**
   * Forgets the history (zlib's `deflateReset`): what follows refers to nothing
   * before it. Level and strategy stay. A zlib (not raw) stream starts again with
   * a header.
   */
  reset(): void;
  /** Frees the stream. Further calls throw. */
  close(): void;
}

/** A zlib inflate stream that persists across calls (for tests and tools). */
export interface InflateStream {
  readonly backend: ZlibBackend;
  /** Decompresses `data` (the next piece of the stream); throws on corrupt data. */
  inflate(data: Uint8Array): Uint8Array;
  close(): void;
}

/** Options of {@link createDeflate} and {@link createInflate}. */
export interface ZlibOptions {
  /** Force a backend; by default ffi when libz loads, else pako. "ffi" throws when it cannot. */
  backend?: ZlibBackend;
  /**
   * Deflate only: raw deflate data, without the zlib header (and trailer). For
   * writers that splice independently compressed pieces into one stream (the
   * pieces of a sync-flushed raw stream can follow each other) and write the
   * stream's two-byte header themselves, once.
   */
  raw?: boolean;
}

/**
 * Makes a deflate stream at `level` (0..9, clamped; 1 fastest, 6 zlib's default).
 *
 * @throws Error when `opts.backend` is "ffi" and libz cannot be loaded.
 */
export function createDeflate(level: number, opts: ZlibOptions = {}): DeflateStream {
  const lv = clampLevel(level);
  const lib = opts.backend === "pako" ? null : libz();
  if (lib) return new FfiDeflate(lib, lv, opts.raw ?? false);
  if (opts.backend === "ffi") throw new Error(`libz via FFI unavailable: ${libzError}`);
  return new PakoDeflate(lv, opts.raw ?? false);
}

/** Makes an inflate stream. @throws Error when `opts.backend` is "ffi" and libz cannot load. */
export function createInflate(opts: ZlibOptions = {}): InflateStream {
  const lib = opts.backend === "pako" ? null : libz();
  if (lib) return new FfiInflate(lib);
  if (opts.backend === "ffi") throw new Error(`libz via FFI unavailable: ${libzError}`);
  return new PakoInflate();
}

/** The backend {@link createDeflate} picks by default here, and the zlib version when ffi. */
export function zlibBackend(): { backend: ZlibBackend; version?: string; reason?: string } {
  const lib = libz();
  return lib ? { backend: "ffi", version: lib.version } : { backend: "pako", reason: libzError };
}

function clampLevel(level: number): number {
  return Number.isFinite(level) ? Math.max(0, Math.min(9, Math.trunc(level))) : 6;
}

const Z_OK = 0, Z_STREAM_END = 1, Z_NEED_DICT = 2, Z_BUF_ERROR = -5;
const Z_NO_FLUSH = 0, Z_SYNC_FLUSH = 2, Z_FINISH = 4;
const Z_DEFLATED = 8, MAX_WBITS = 15, DEF_MEM_LEVEL = 8, Z_DEFAULT_STRATEGY = 0;

function flushCode(f: FlushMode | undefined): number {
  return f === "none" ? Z_NO_FLUSH : f === "finish" ? Z_FINISH : Z_SYNC_FLUSH;
}

// ---------------------------------------------------------------------------
// FFI

const SYMBOLS = {
  zlibVersion: { parameters: [], result: "pointer" },
  deflateInit2_: {
    parameters: ["buffer", "i32", "i32", "i32", "i32", "i32", "pointer", "i32"],
    result: "i32",
  },
  deflate: { parameters: ["buffer", "i32"], result: "i32" },
  deflateParams: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  deflateReset: { parameters: ["buffer"], result: "i32" },
  deflateEnd: { parameters: ["buffer"], result: "i32" },
  inflateInit2_: { parameters: ["buffer", "i32", "pointer", "i32"], result: "i32" },
  inflate: { parameters: ["buffer", "i32"], result: "i32" },
  inflateEnd: { parameters: ["buffer"], result: "i32" },
} as const;

interface Libz {
  readonly sym: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
  /** zlibVersion()'s string and pointer (what deflateInit2_ checks against its header's). */
  readonly version: string;
  readonly versionPtr: Deno.PointerValue;
}

/** `z_stream` on LP64 (Linux, macOS; x86_64 and aarch64). */
const Z = {
  nextIn: 0,
  availIn: 8,
  nextOut: 24,
  availOut: 32,
  msg: 48,
  size: 112,
} as const;

let libzCache: Libz | null | undefined;
let libzError = "";

/** Loads libz once; null (with `libzError` set) when FFI or the library is unavailable. */
function libz(): Libz | null {
  if (libzCache !== undefined) return libzCache;
  libzCache = null;
  try {
    const { os, arch } = Deno.build;
    if ((os !== "linux" && os !== "darwin") || (arch !== "x86_64" && arch !== "aarch64")) {
      libzError = `z_stream layout not known for ${os}/${arch}`;
      return null;
    }
    if (typeof Deno.dlopen !== "function") {
      libzError = "Deno.dlopen is not available";
      return null;
    }
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
      libzError = "no ffi permission (--allow-ffi)";
      return null;
    }
    const names = os === "darwin" ? ["libz.1.dylib", "libz.dylib"] : ["libz.so.1", "libz.so"];
    let lib: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;
    for (const n of names) {
      try {
        lib = Deno.dlopen(n, SYMBOLS);
        break;
      } catch (e) {
        libzError = `dlopen ${n}: ${(e as Error).message}`;
      }
    }
    if (!lib) return null;
    const vp = lib.symbols.zlibVersion();
    const version = vp ? new Deno.UnsafePointerView(vp).getCString() : "";
    if (!version.startsWith("1.")) {
      libzError = `unexpected zlib version "${version}"`;
      lib.close();
      return null;
    }
    libzCache = { sym: lib.symbols, version, versionPtr: vp };
  } catch (e) {
    libzError = (e as Error).message;
  }
  return libzCache;
}

/** The address of a buffer's first byte, as a bigint. */
function addr(b: Uint8Array): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b as Uint8Array<ArrayBuffer>)));
}

/**
 * A z_stream in memory of ours. Its ArrayBuffer is off the V8 heap and never moves,
 * which zlib needs (its state points back at the z_stream).
 */
class ZStream {
  readonly mem = new Uint8Array(new ArrayBuffer(Z.size));
  private readonly dv = new DataView(this.mem.buffer);
  /** Input staging for small inputs: small typed arrays may live on the V8 heap, which moves. */
  private readonly stage = new Uint8Array(new ArrayBuffer(4096));

  /** Points next_in at `data` (copied to the stage when small) and sets avail_in. */
  setInput(data: Uint8Array): void {
    let p = 0n;
    if (data.length > 0) {
      if (data.length <= this.stage.length) {
        this.stage.set(data);
        p = addr(this.stage);
      } else {
        void data.buffer; // materialises an off-heap backing store if it was on-heap
        p = addr(data);
      }
    }
    this.dv.setBigUint64(Z.nextIn, p, HOST_LE);
    this.dv.setUint32(Z.availIn, data.length, HOST_LE);
  }

  setOutput(buf: Uint8Array, offset: number, n: number): void {
    void buf.buffer;
    this.dv.setBigUint64(Z.nextOut, addr(buf) + BigInt(offset), HOST_LE);
    this.dv.setUint32(Z.availOut, n, HOST_LE);
  }

  get availIn(): number {
    return this.dv.getUint32(Z.availIn, HOST_LE);
  }

  get availOut(): number {
    return this.dv.getUint32(Z.availOut, HOST_LE);
  }

  /** Forgets the input pointer (so that nothing dangles between calls). */
  clearInput(): void {
    this.dv.setBigUint64(Z.nextIn, 0n, HOST_LE);
    this.dv.setUint32(Z.availIn, 0, HOST_LE);
  }

  /** zlib's message for the last error, if any. */
  message(): string {
    const p = this.dv.getBigUint64(Z.msg, HOST_LE);
    if (p === 0n) return "";
    const ptr = Deno.UnsafePointer.create(p);
    return ptr ? new Deno.UnsafePointerView(ptr).getCString() : "";
  }
}

/** Frees zlib state of streams dropped without close() (RectEncoder has no close hook). */
const finalizer = new FinalizationRegistry<() => void>((end) => end());

/** Output space to ask for: a deflateBound-like upper bound, capped (the loop grows it). */
function outChunk(n: number): number {
  return Math.min(n + (n >>> 3) + (n >>> 6) + 64, 1 << 20);
}

class FfiDeflate implements DeflateStream {
  readonly backend = "ffi";
  private z = new ZStream();
  private closed = false;
  private cur: number;
  private wanted: number;
  private curStrategy: DeflateStrategy = "default";
  private wantedStrategy: DeflateStrategy = "default";
  private scratch = new ByteWriter(1024);

  constructor(private readonly lib: Libz, level: number, raw: boolean) {
    this.cur = this.wanted = level;
    const rc = lib.sym.deflateInit2_(
      this.z.mem,
      level,
      Z_DEFLATED,
      raw ? -MAX_WBITS : MAX_WBITS,
      DEF_MEM_LEVEL,
      Z_DEFAULT_STRATEGY,
      lib.versionPtr,
      Z.size,
    );
    if (rc !== Z_OK) throw new Error(`deflateInit2_ failed (${rc})`);
    const mem = this.z.mem, end = lib.sym.deflateEnd;
    finalizer.register(this, () => end(mem), this);
  }

  get level(): number {
    return this.wanted;
  }

  get strategy(): DeflateStrategy {
    return this.wantedStrategy;
  }

  setLevel(level: number): void {
    this.wanted = clampLevel(level);
  }

  setStrategy(strategy: DeflateStrategy): void {
    if (!(strategy in STRATEGY)) throw new RangeError(`unknown strategy ${strategy}`);
    this.wantedStrategy = strategy;
  }

  reset(): void {
    if (this.closed) throw new Error("deflate stream is closed");
    const rc = this.lib.sym.deflateReset(this.z.mem);
    if (rc !== Z_OK) throw new Error(`deflateReset failed (${rc})`);
  }

  deflate(data: Uint8Array, flush?: FlushMode): Uint8Array {
    this.scratch.clear();
    this.deflateTo(data, this.scratch, flush);
    return this.scratch.view().slice();
  }

  deflateTo(data: Uint8Array, out: ByteWriter, flush?: FlushMode): number {
    if (this.closed) throw new Error("deflate stream is closed");
    const start = out.length;
    const sym = this.lib.sym, z = this.z;
    if (this.wanted !== this.cur || this.wantedStrategy !== this.curStrategy) {
      // deflateParams may emit a block for data pending at the old level: give it room.
      const { buf, offset } = out.target(256);
      z.clearInput();
      z.setOutput(buf, offset, 256);
      const rc = sym.deflateParams(z.mem, this.wanted, STRATEGY[this.wantedStrategy]);
      out.length += 256 - z.availOut;
      if (rc === Z_OK) {
        this.cur = this.wanted;
        this.curStrategy = this.wantedStrategy;
      } else if (rc !== Z_BUF_ERROR) throw new Error(`deflateParams failed (${rc})`);
    }
    const code = flushCode(flush);
    z.setInput(data);
    let room = outChunk(data.length);
    try {
      for (;;) {
        const { buf, offset } = out.target(room);
        z.setOutput(buf, offset, room);
        const rc = sym.deflate(z.mem, code);
        const left = z.availOut;
        out.length += room - left;
        if (rc === Z_STREAM_END) break;
        if (rc !== Z_OK && rc !== Z_BUF_ERROR) {
          throw new Error(`deflate failed (${rc}${z.message() ? ": " + z.message() : ""})`);
        }
        // Done when zlib stopped with output space to spare (all input taken, flushed).
        if (left !== 0 && z.availIn === 0) break;
        if (rc === Z_BUF_ERROR && left !== 0) break; // no progress possible
        room = Math.min(room * 2, 1 << 24);
      }
    } finally {
      z.clearInput();
    }
    return out.length - start;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    finalizer.unregister(this);
    this.lib.sym.deflateEnd(this.z.mem);
  }
}

class FfiInflate implements InflateStream {
  readonly backend = "ffi";
  private z = new ZStream();
  private closed = false;
  private ended = false;
  private out = new ByteWriter(4096);

  constructor(private readonly lib: Libz) {
    const rc = lib.sym.inflateInit2_(this.z.mem, MAX_WBITS, lib.versionPtr, Z.size);
    if (rc !== Z_OK) throw new Error(`inflateInit2_ failed (${rc})`);
    const mem = this.z.mem, end = lib.sym.inflateEnd;
    finalizer.register(this, () => end(mem), this);
  }

  inflate(data: Uint8Array): Uint8Array {
    if (this.closed) throw new Error("inflate stream is closed");
    const out = this.out, z = this.z, sym = this.lib.sym;
    out.clear();
    if (this.ended) {
      if (data.length === 0) return new Uint8Array(0);
      throw new Error("inflate: data after the end of the stream");
    }
    z.setInput(data);
    let room = Math.max(4096, data.length * 4);
    try {
      for (;;) {
        const { buf, offset } = out.target(room);
        z.setOutput(buf, offset, room);
        const rc = sym.inflate(z.mem, Z_SYNC_FLUSH);
        const left = z.availOut;
        out.length += room - left;
        if (rc === Z_STREAM_END) {
          this.ended = true;
          break;
        }
        if (rc === Z_NEED_DICT || (rc !== Z_OK && rc !== Z_BUF_ERROR)) {
          throw new Error(`inflate failed (${rc}${z.message() ? ": " + z.message() : ""})`);
        }
        if (z.availIn === 0 && left !== 0) break;
        if (rc === Z_BUF_ERROR && left !== 0) break;
        room = Math.min(room * 2, 1 << 26);
      }
    } finally {
      z.clearInput();
    }
    return out.view().slice();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    finalizer.unregister(this);
    this.lib.sym.inflateEnd(this.z.mem);
  }
}

// ---------------------------------------------------------------------------
// pako

/** The part of pako's (untyped) API used here. */
interface PakoStream {
  push(data: Uint8Array, flush: number): boolean;
  onData(chunk: Uint8Array): void;
  err: number;
  msg: string;
}
interface Pako {
  Deflate: new (opts: { level: number; chunkSize?: number; raw?: boolean }) => PakoStream;
  Inflate: new (opts?: { chunkSize?: number }) => PakoStream;
}
const pako = ((pakoModule as unknown as { default?: Pako }).default ??
  pakoModule) as unknown as Pako;

class PakoDeflate implements DeflateStream {
  readonly backend = "pako";
  readonly strategy = "default";
  private d: PakoStream;
  private chunks: Uint8Array[] = [];
  private closed = false;

  constructor(readonly level: number, private readonly raw = false) {
    this.d = this.fresh();
  }

  private fresh(): PakoStream {
    const d = new pako.Deflate({ level: this.level, chunkSize: 64 * 1024, raw: this.raw });
    d.onData = (c) => this.chunks.push(c);
    return d;
  }

  reset(): void {
    if (this.closed) throw new Error("deflate stream is closed");
    this.chunks.length = 0;
    this.d = this.fresh();
  }

  deflate(data: Uint8Array, flush?: FlushMode): Uint8Array {
    const w = new ByteWriter(Math.max(256, data.length >>> 2));
    this.deflateTo(data, w, flush);
    return w.view().slice();
  }

  deflateTo(data: Uint8Array, out: ByteWriter, flush?: FlushMode): number {
    if (this.closed) throw new Error("deflate stream is closed");
    const start = out.length;
    const ok = this.d.push(data, flushCode(flush));
    if (!ok && this.d.err) throw new Error(`deflate failed: ${this.d.msg || this.d.err}`);
    for (const c of this.chunks) out.bytes(c);
    this.chunks.length = 0;
    if (flush === "finish") this.closed = true;
    return out.length - start;
  }

  close(): void {
    this.closed = true;
  }
}

class PakoInflate implements InflateStream {
  readonly backend = "pako";
  private i: PakoStream;
  private chunks: Uint8Array[] = [];

  constructor() {
    this.i = new pako.Inflate({ chunkSize: 64 * 1024 });
    this.i.onData = (c) => this.chunks.push(c.slice());
  }

  inflate(data: Uint8Array): Uint8Array {
    this.i.push(data, Z_SYNC_FLUSH);
    if (this.i.err) throw new Error(`inflate failed: ${this.i.msg || this.i.err}`);
    const w = new ByteWriter(256);
    for (const c of this.chunks) w.bytes(c);
    this.chunks.length = 0;
    return w.view().slice();
  }

  close(): void {}
}
