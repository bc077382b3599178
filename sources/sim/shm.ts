/**
 * libc through Deno FFI, for simulated guests that live in other processes
 * (see hv_protocol.ts): guest memory as files in /dev/shm mapped with
 * `mmap(MAP_SHARED)` into every process that uses them, and a blocking
 * AF_UNIX stream socket for the hypervisor service's synchronous calls.
 *
 * A mapping's `bytes` is the mapped memory itself: an ArrayBuffer over the
 * pointer mmap returned (`Deno.UnsafePointerView.getArrayBuffer`), not a
 * SharedArrayBuffer, but shared at the OS level with every other mapping of
 * the same file. `unmap()` detaches the ArrayBuffer first (views on it read
 * as empty instead of touching unmapped memory), then munmaps.
 *
 * Linux only (x86-64 and arm64 share these constants).
 */
import { PAGE_SIZE } from "../platform.ts";

const PROT_NONE = 0;
const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 0x01;
const MAP_PRIVATE = 0x02;
const MAP_FIXED = 0x10;
const MAP_ANONYMOUS = 0x20;
const MAP_NORESERVE = 0x4000;
const O_RDONLY = 0;
const O_RDWR = 2;
const O_CLOEXEC = 0o2000000;
const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
const MSG_NOSIGNAL = 0x4000;
const POLLIN = 0x1;
const EINTR = 4;
const EAGAIN = 11;
/** sizeof(struct sockaddr_un) and its sun_path. */
const SOCKADDR_UN_SIZE = 110;
const SUN_PATH_MAX = 107;

const SYMBOLS = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
let lib: Libc | undefined;

function libc(): Libc {
  if (!lib) {
    try {
      lib = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
    } catch (e) {
      throw new Error(
        `libc.so.6 could not be opened (${e instanceof Error ? e.message : e}): ` +
          `guests in other processes need Linux with glibc and --allow-ffi`,
      );
    }
  }
  return lib;
}

function errno(): number {
  const p = libc().__errno_location();
  return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
}

function strerror(n: number): string {
  const p = libc().strerror(n);
  return p ? Deno.UnsafePointerView.getCString(p) : `errno ${n}`;
}

function cString(s: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(s + "\0");
}

const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

function failed(p: Deno.PointerValue): boolean {
  return p === null || Deno.UnsafePointer.value(p) === MAP_FAILED;
}

/** Detaches `buffer` (views on it become empty) without touching its memory. */
function detach(buffer: ArrayBuffer): void {
  try {
    buffer.transfer(0);
  } catch {
    // already detached
  }
}

/** Memory mapped from /dev/shm files. */
export interface ShmMapping {
  /** The mapped bytes (`length` of them). */
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** Detaches `bytes`, then munmaps. Idempotent. */
  unmap(): void;
}

/** One piece of a mapping: `length` bytes of `path` from byte `offset` (both page multiples). */
export interface ShmSegment {
  readonly path: string;
  readonly offset: number;
  readonly length: number;
}

function checkSegment(s: ShmSegment): void {
  if (
    !Number.isSafeInteger(s.offset) || s.offset < 0 || s.offset % PAGE_SIZE !== 0 ||
    !Number.isSafeInteger(s.length) || s.length <= 0 || s.length % PAGE_SIZE !== 0
  ) {
    throw new RangeError(`bad shared memory segment ${JSON.stringify(s)}`);
  }
}

/** Maps `addr` (or anywhere when null) to one segment of a file; returns the pointer. */
function mmapFile(
  s: ShmSegment,
  writable: boolean,
  addr: Deno.PointerValue,
  fixed: boolean,
): Deno.PointerObject {
  const c = libc();
  const fd = c.open(cString(s.path), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC, 0);
  if (fd < 0) {
    const n = errno();
    throw new Error(`cannot open ${s.path}: ${strerror(n)}`);
  }
  try {
    const p = c.mmap(
      addr,
      BigInt(s.length),
      PROT_READ | (writable ? PROT_WRITE : 0),
      MAP_SHARED | (fixed ? MAP_FIXED : 0),
      fd,
      BigInt(s.offset),
    );
    if (failed(p)) {
      const n = errno();
      throw new Error(`cannot mmap ${s.length} bytes of ${s.path} at ${s.offset}: ${strerror(n)}`);
    }
    return p!;
  } finally {
    // The mapping holds the file; the descriptor is not needed any more.
    c.close(fd);
  }
}

function track(ptr: Deno.PointerObject, length: number): ShmMapping {
  const buffer = Deno.UnsafePointerView.getArrayBuffer(ptr, length);
  let mapped = true;
  return {
    bytes: new Uint8Array(buffer),
    unmap: () => {
      if (!mapped) return;
      mapped = false;
      detach(buffer);
      libc().munmap(ptr, BigInt(length));
    },
  };
}

/**
 * Maps the segments, in this order, as one contiguous range: one mmap when
 * there is a single segment; otherwise an address range is reserved
 * (PROT_NONE) and each segment is mapped over its part with MAP_FIXED, as
 * Xen maps scattered frames contiguously. Nothing stays mapped on failure.
 */
export function mapShm(segments: readonly ShmSegment[], writable: boolean): ShmMapping {
  if (segments.length === 0) throw new RangeError("nothing to map");
  segments.forEach(checkSegment);
  if (segments.length === 1) {
    return track(mmapFile(segments[0], writable, null, false), segments[0].length);
  }
  const c = libc();
  const total = segments.reduce((a, s) => a + s.length, 0);
  const base = c.mmap(
    null,
    BigInt(total),
    PROT_NONE,
    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
    -1,
    0n,
  );
  if (failed(base)) throw new Error(`cannot reserve ${total} bytes: ${strerror(errno())}`);
  try {
    let at = 0;
    for (const s of segments) {
      const where = Deno.UnsafePointer.offset(base!, at);
      mmapFile(s, writable, where, true);
      at += s.length;
    }
  } catch (e) {
    c.munmap(base, BigInt(total));
    throw e;
  }
  return track(base!, total);
}

/** Maps `length` bytes of one file from `offset`. */
export function mapShmFile(
  path: string,
  offset: number,
  length: number,
  writable: boolean,
): ShmMapping {
  return mapShm([{ path, offset, length }], writable);
}

/** The connection to the host was lost or timed out. */
export class SocketError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SocketError";
  }
}

/**
 * A blocking AF_UNIX stream socket: the calls wait (the event loop does not
 * run meanwhile), so the peer must be another process or thread.
 */
export class SyncSocket {
  #fd: number;

  private constructor(fd: number, readonly path: string) {
    this.#fd = fd;
  }

  /** Connects to the socket at `path`. Throws Deno.errors.NotFound / ConnectionRefused or SocketError. */
  static connect(path: string): SyncSocket {
    const c = libc();
    const name = new TextEncoder().encode(path);
    if (name.length > SUN_PATH_MAX) {
      throw new SocketError(`socket path ${path} is longer than ${SUN_PATH_MAX} bytes`);
    }
    const fd = c.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw new SocketError(`socket(AF_UNIX): ${strerror(errno())}`);
    const addr = new Uint8Array(SOCKADDR_UN_SIZE);
    new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
    addr.set(name, 2);
    for (;;) {
      if (c.connect(fd, addr, SOCKADDR_UN_SIZE) === 0) break;
      const n = errno();
      if (n === EINTR) continue;
      c.close(fd);
      const msg = `cannot connect to ${path}: ${strerror(n)}`;
      if (n === 2) throw new Deno.errors.NotFound(msg);
      if (n === 111) throw new Deno.errors.ConnectionRefused(msg);
      throw new SocketError(msg);
    }
    return new SyncSocket(fd, path);
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  /** Writes all of `bytes`. */
  send(bytes: Uint8Array<ArrayBuffer>): void {
    const c = libc();
    let at = 0;
    while (at < bytes.length) {
      if (this.#fd < 0) throw new SocketError(`${this.path}: closed`);
      const part = at === 0 ? bytes : bytes.slice(at);
      const n = Number(c.send(this.#fd, part, BigInt(part.length), MSG_NOSIGNAL));
      if (n < 0) {
        const e = errno();
        if (e === EINTR || e === EAGAIN) continue;
        throw new SocketError(`${this.path}: send failed: ${strerror(e)}`);
      }
      at += n;
    }
  }

  /** Reads exactly `n` bytes, waiting at most `timeoutMs` in all. */
  recv(n: number, timeoutMs: number): Uint8Array<ArrayBuffer> {
    const c = libc();
    const out = new Uint8Array(n);
    const pfd = new Uint8Array(8);
    const pdv = new DataView(pfd.buffer);
    const end = performance.now() + timeoutMs;
    let at = 0;
    while (at < n) {
      if (this.#fd < 0) throw new SocketError(`${this.path}: closed`);
      const left = Math.ceil(end - performance.now());
      if (left <= 0) throw new SocketError(`${this.path}: no answer within ${timeoutMs} ms`);
      pdv.setInt32(0, this.#fd, true);
      pdv.setInt16(4, POLLIN, true);
      pdv.setInt16(6, 0, true);
      const r = c.poll(pfd, 1n, left);
      if (r < 0) {
        const e = errno();
        if (e === EINTR) continue;
        throw new SocketError(`${this.path}: poll failed: ${strerror(e)}`);
      }
      if (r === 0) continue;
      const chunk = new Uint8Array(n - at);
      const got = Number(c.recv(this.#fd, chunk, BigInt(chunk.length), 0));
      if (got < 0) {
        const e = errno();
        if (e === EINTR || e === EAGAIN) continue;
        throw new SocketError(`${this.path}: recv failed: ${strerror(e)}`);
      }
      if (got === 0) throw new SocketError(`${this.path}: connection closed by the host`);
      out.set(chunk.subarray(0, got), at);
      at += got;
    }
    return out;
  }

  close(): void {
    if (this.#fd < 0) return;
    libc().close(this.#fd);
    this.#fd = -1;
  }
}
