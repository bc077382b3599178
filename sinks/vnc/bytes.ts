/**
 * A growable big-endian byte writer for building RFB messages without
 * per-field allocation. `bytes()` returns a view on the written part.
 */
export class ByteWriter {
  private buf: Uint8Array;
  private dv: DataView;
  /** Bytes written so far. */
  length = 0;

  constructor(capacity = 256) {
    this.buf = new Uint8Array(capacity);
    this.dv = new DataView(this.buf.buffer);
  }

  /** Makes room for `n` more bytes. */
  reserve(n: number): void {
    const need = this.length + n;
    if (need <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < need) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.dv = new DataView(next.buffer);
  }

  u8(v: number): this {
    this.reserve(1);
    this.buf[this.length++] = v;
    return this;
  }

  u16(v: number): this {
    this.reserve(2);
    this.dv.setUint16(this.length, v);
    this.length += 2;
    return this;
  }

  u32(v: number): this {
    this.reserve(4);
    this.dv.setUint32(this.length, v >>> 0);
    this.length += 4;
    return this;
  }

  s32(v: number): this {
    this.reserve(4);
    this.dv.setInt32(this.length, v);
    this.length += 4;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.reserve(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
    return this;
  }

  /** Reserves `n` bytes and returns a view to fill them in place (e.g. converted pixels). */
  claim(n: number): Uint8Array {
    this.reserve(n);
    const v = this.buf.subarray(this.length, this.length + n);
    this.length += n;
    return v;
  }

  /** The underlying buffer and the offset where the next byte goes (for writers that fill in place). */
  target(n: number): { buf: Uint8Array; offset: number } {
    this.reserve(n);
    return { buf: this.buf, offset: this.length };
  }

  /** Overwrites a u32 written earlier (e.g. a length known only afterwards). */
  patchU32(at: number, v: number): void {
    this.dv.setUint32(at, v >>> 0);
  }

  /** Overwrites a u16 written earlier. */
  patchU16(at: number, v: number): void {
    this.dv.setUint16(at, v);
  }

  /** The written bytes (a view: copy it if the writer is reused). */
  view(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }

  /** Forgets what was written, keeping the buffer. */
  clear(): void {
    this.length = 0;
  }

  /** Bytes the buffer holds before it must grow. */
  get capacity(): number {
    return this.buf.length;
  }

  /** Replaces the buffer by one of `capacity` bytes (at least what is written), keeping the bytes. */
  resize(capacity: number): void {
    const next = new Uint8Array(Math.max(capacity, this.length, 16));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.dv = new DataView(next.buffer);
  }
}

/** Buffers below this size are never shrunk. */
export const TRIM_MIN_BYTES = 1 << 20;

/**
 * When to give back a reusable buffer that grew for one large piece of work
 * (a viewer's first, full-screen update) and has been far larger than
 * needed since: each use is reported with the buffer's size, and once a
 * window of {@link UseWindow.window} uses all fit in a quarter of it, the
 * answer is the size to shrink it to (twice the largest use), else 0. A
 * connection that sends full screens all the time keeps its buffers; one that
 * sends a line of text at a time holds kilobytes, not the megabytes of its
 * first frame (which matters with many viewers).
 *
 * ```ts
 * import { TRIM_MIN_BYTES, UseWindow } from "./bytes.ts";
 * import { assertEquals } from "@rxfb/assert";
 *
 * const u = new UseWindow(4);
 * const cap = 8 * TRIM_MIN_BYTES;
 * assertEquals([1, 2, 3].map(() => u.use(1000, cap)), [0, 0, 0]);
 * assertEquals(u.use(TRIM_MIN_BYTES / 2, cap), TRIM_MIN_BYTES);
 * ```
 */
export class UseWindow {
  private peak = 0;
  private uses = 0;

  constructor(readonly window = 60) {}

  /** One use of `n` bytes of a buffer of `capacity`: the size to shrink it to, or 0. */
  use(n: number, capacity: number): number {
    if (n > this.peak) this.peak = n;
    if (++this.uses < this.window) return 0;
    const peak = this.peak;
    this.uses = this.peak = 0;
    return capacity > TRIM_MIN_BYTES && peak * 4 <= capacity ? Math.max(64 * 1024, peak * 2) : 0;
  }
}

/** Writes a FramebufferUpdate rectangle header (x, y, w, h, encoding). */
export function rectHeader(
  w: ByteWriter,
  x: number,
  y: number,
  width: number,
  height: number,
  encoding: number,
): void {
  w.u16(x).u16(y).u16(width).u16(height).s32(encoding);
}
