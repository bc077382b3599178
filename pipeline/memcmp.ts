/**
 * Byte-span equality and copies for framebuffers: the inner loops of damage
 * refinement, scroll detection and taking a guest's pixels.
 *
 * Long spans (a framebuffer row) go to libc's `memcmp` through `Deno.dlopen`
 * when the `ffi` permission is granted: measured on 1920x1080x32 rows it is
 * about twice as fast as the best JavaScript loop (0.8 ms against 1.6 ms for a
 * whole frame), since it is bound by memory bandwidth rather than by one
 * compare-and-branch per word. A call costs about 0.2 µs, so short spans (a
 * tile's row) stay in JavaScript, on 32-bit words where the offsets allow it.
 * Without FFI everything takes the JavaScript path; the results are the same.
 *
 * Copies out of, into or within a `SharedArrayBuffer` (a simulated guest's
 * memory) go through a plain `ArrayBuffer` over the same memory
 * ({@link unshared}): V8 copies shared memory 8 bytes at a time (JavaScript's
 * memory model forbids tearing below that), at half the speed of the libc
 * `memcpy` it uses for plain buffers (a 1080p scroll: 0.35 against 0.21 ms),
 * and in the backend that word loop was 9 % of the process's CPU on the video
 * workload.
 *
 * ```ts
 * import { bytesEqual } from "./memcmp.ts";
 * import { assert } from "@rxfb/assert";
 * const a = new Uint8Array(4096), b = new Uint8Array(4096);
 * assert(bytesEqual(a, 0, b, 0, 4096));
 * b[4000] = 1;
 * assert(!bytesEqual(a, 0, b, 0, 4096));
 * assert(bytesEqual(a, 0, b, 0, 4000));
 * ```
 *
 * @module
 */

/** Spans at least this long (bytes) go to libc when it is available. */
const FFI_MIN_BYTES = 1024;

type Memcmp = (a: bigint, b: bigint, n: number) => number;

let memcmpFn: Memcmp | null | undefined;

/** libc's memcmp taking raw addresses, or null (so also: whether FFI may be used). */
function libcMemcmp(): Memcmp | null {
  if (memcmpFn !== undefined) return memcmpFn;
  memcmpFn = null;
  try {
    if (typeof Deno === "undefined" || typeof Deno.dlopen !== "function") return null;
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return null;
    const { os } = Deno.build;
    const names = os === "darwin"
      ? ["libSystem.B.dylib"]
      : os === "linux"
      ? ["libc.so.6", "libc.so"]
      : [];
    for (const n of names) {
      try {
        const lib = Deno.dlopen(n, {
          memcmp: { parameters: ["usize", "usize", "u32"], result: "i32" },
        });
        // The addresses go as BigInts. usize arguments take plain numbers too, but the
        // optimised call path expects a BigInt: each number was a deoptimisation of the caller,
        // then another optimisation on V8's compiler threads, over and over (about 2 ms of CPU
        // a frame when a 1080p scroll was checked). A BigInt costs tens of nanoseconds.
        memcmpFn = lib.symbols.memcmp as unknown as Memcmp;
        break;
      } catch {
        // try the next name
      }
    }
  } catch {
    memcmpFn = null;
  }
  return memcmpFn;
}

/** Address of byte 0 of each view handed to libc (views are long-lived: framebuffers). */
const addresses = new WeakMap<Uint8Array, number>();

function addressOf(v: Uint8Array): number {
  let a = addresses.get(v);
  if (a === undefined) {
    const p = Deno.UnsafePointer.of(v);
    a = p === null ? 0 : Number(Deno.UnsafePointer.value(p));
    addresses.set(v, a);
  }
  return a;
}

/** Int32 views over whole buffers, for the word loop. */
const words = new WeakMap<ArrayBufferLike, Int32Array>();

/** An Int32Array over all of `buf` (kept per buffer): word `i` is bytes `4i .. 4i + 3`. */
export function wordsOf(buf: ArrayBufferLike): Int32Array {
  let w = words.get(buf);
  if (w === undefined || w.length !== buf.byteLength >> 2) {
    w = new Int32Array(buf, 0, buf.byteLength >> 2);
    words.set(buf, w);
  }
  return w;
}

/** True when the `n` bytes at `a[ai]` equal those at `b[bi]`; a RangeError when a span is out of bounds. */
export function bytesEqual(
  a: Uint8Array,
  ai: number,
  b: Uint8Array,
  bi: number,
  n: number,
): boolean {
  return new SpanComparer(a, b).equal(ai, bi, n);
}

/**
 * {@link bytesEqual} for many spans of the same two arrays: the views and
 * addresses it needs are looked up once, not per span (a tile's rows are
 * compared by the thousand).
 */
export class SpanComparer {
  private readonly wa: Int32Array;
  private readonly wb: Int32Array;
  private readonly pa: number;
  private readonly pb: number;
  private readonly memcmp: Memcmp | null;

  constructor(readonly a: Uint8Array, readonly b: Uint8Array) {
    this.wa = wordsOf(a.buffer);
    this.wb = wordsOf(b.buffer);
    this.memcmp = libcMemcmp();
    this.pa = this.memcmp ? addressOf(a) : 0;
    this.pb = this.memcmp ? addressOf(b) : 0;
  }

  /** True when the `n` bytes at `a[ai]` equal those at `b[bi]`. */
  equal(ai: number, bi: number, n: number): boolean {
    const a = this.a, b = this.b;
    if (n <= 0) return true;
    if (ai < 0 || bi < 0 || ai + n > a.length || bi + n > b.length) {
      throw new RangeError(`bytesEqual: span of ${n} at ${ai} / ${bi} is outside the arrays`);
    }
    if (n >= FFI_MIN_BYTES && this.pa !== 0 && this.pb !== 0) {
      return this.memcmp!(BigInt(this.pa + ai), BigInt(this.pb + bi), n) === 0;
    }
    const oa = a.byteOffset + ai, ob = b.byteOffset + bi;
    if (((oa | ob | n) & 3) === 0) {
      const wa = this.wa, wb = this.wb;
      let i = oa >> 2, j = ob >> 2;
      const end = i + (n >> 2);
      for (; i < end; i++, j++) if (wa[i] !== wb[j]) return false;
      return true;
    }
    for (let k = 0; k < n; k++) if (a[ai + k] !== b[bi + k]) return false;
    return true;
  }
}

const isShared = (b: ArrayBufferLike) =>
  typeof SharedArrayBuffer !== "undefined" && b instanceof SharedArrayBuffer;

type View = Uint8Array | Uint32Array | Int32Array;

/** Plain views over shared memory, by the view they alias. */
const aliases = new WeakMap<View, View>();
/** What keeps each alias's memory alive: its SharedArrayBuffer, for as long as the alias lives. */
const owners = new WeakMap<ArrayBufferLike, ArrayBufferLike>();

/**
 * `v` itself, or where `v` is on a `SharedArrayBuffer` and FFI is allowed, a
 * view of the same type over the same memory in a plain `ArrayBuffer`
 * (`Deno.UnsafePointerView.getArrayBuffer`), whose copies V8 hands to libc
 * (see the module notes). Writes through either show in both. The alias keeps
 * the shared buffer alive.
 */
export function unshared<T extends View>(v: T): T {
  if (!isShared(v.buffer) || v.byteLength === 0) return v;
  let a = aliases.get(v);
  if (a === undefined) {
    a = v;
    if (libcMemcmp() !== null) {
      const p = Deno.UnsafePointer.of(v);
      if (p !== null) {
        const buf = Deno.UnsafePointerView.getArrayBuffer(p, v.byteLength);
        owners.set(buf, v.buffer);
        const Ctor = v.constructor as new (b: ArrayBuffer) => T;
        a = new Ctor(buf);
      }
    }
    aliases.set(v, a);
  }
  return a as T;
}

/**
 * Copies of many spans from `src` to `dst` (which may be the same array; the
 * spans may overlap, as `copyWithin`'s), through {@link unshared} views.
 *
 * ```ts
 * import { SpanCopier } from "./memcmp.ts";
 * import { assertEquals } from "@rxfb/assert";
 * const src = new Uint8Array(new SharedArrayBuffer(8192)).fill(7);
 * const dst = new Uint8Array(8192);
 * new SpanCopier(dst, src).copy(100, 0, 5000);
 * assertEquals([dst[99], dst[100], dst[5099], dst[5100]], [0, 7, 7, 0]);
 * ```
 */
export class SpanCopier {
  private readonly d: Uint8Array;
  private readonly s: Uint8Array;

  constructor(readonly dst: Uint8Array, readonly src: Uint8Array) {
    this.d = unshared(dst);
    this.s = src === dst ? this.d : unshared(src);
  }

  /** Copies the `n` bytes at `src[si]` to `dst[di]`; a RangeError when a span is out of bounds. */
  copy(di: number, si: number, n: number): void {
    if (n <= 0) return;
    const d = this.d, s = this.s;
    if (di < 0 || si < 0 || di + n > d.length || si + n > s.length) {
      throw new RangeError(`copy: span of ${n} from ${si} to ${di} is outside the arrays`);
    }
    if (d === s) d.copyWithin(di, si, si + n);
    else d.set(s.subarray(si, si + n), di);
  }
}
