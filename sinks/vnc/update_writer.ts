/**
 * Builds FramebufferUpdate messages without copying them once more on the
 * way out: the message is written into one ByteWriter that the connection
 * keeps from update to update (it is free again once the previous update was
 * written, which the connection waits for), and large pixel blocks that are
 * already in wire format (Raw in the guest's own format) are not copied at
 * all: the message becomes a list of chunks, some of them views on the
 * pixels themselves, written in order.
 *
 * @example
 * ```ts
 * import { UpdateWriter } from "./update_writer.ts";
 * import { assertEquals } from "@rxfb/assert";
 *
 * const u = new UpdateWriter();
 * const pixels = new Uint8Array([1, 2, 3, 4]);
 * u.begin().u16(0).u16(0).u16(1).u16(1).s32(0); // a Raw rectangle's header ...
 * u.reference(pixels); // ... and its pixel, by reference
 * u.count(1);
 * const chunks = u.finish();
 * assertEquals(chunks.length, 2);
 * assertEquals([...chunks[0]], [0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0]);
 * assertEquals(chunks[1], pixels);
 * ```
 *
 * @module
 */
import { ByteWriter, UseWindow } from "./bytes.ts";

/** One FramebufferUpdate at a time, as chunks to write in order. */
export class UpdateWriter {
  private readonly out: ByteWriter;
  private chunks: Uint8Array[] = [];
  /** Where the part of `out` not yet in `chunks` starts. */
  private cut = 0;
  private rects = 0;
  private refs = false;
  private readonly uses = new UseWindow();

  constructor(capacity = 64 * 1024) {
    this.out = new ByteWriter(capacity);
  }

  /** Starts a message (type 0, padding, rectangle count to come); returns the writer for rectangles. */
  begin(): ByteWriter {
    // The previous message is written: a buffer grown for a rare large one can go.
    const to = this.uses.use(this.out.length, this.out.capacity);
    this.out.clear();
    if (to) this.out.resize(to);
    this.chunks = [];
    this.cut = 0;
    this.rects = 0;
    this.refs = false;
    this.out.u8(0).u8(0).u16(0);
    return this.out;
  }

  /** Adds to the rectangle count. */
  count(n: number): void {
    this.rects += n;
  }

  /** Rectangles so far. */
  get rectangles(): number {
    return this.rects;
  }

  /** True when the message holds bytes by reference (which must not change until it is written). */
  get referencing(): boolean {
    return this.refs;
  }

  /** Appends `b` as it is, without copying: it must stay unchanged until the message is written. */
  reference(b: Uint8Array): void {
    if (b.length === 0) return;
    this.takeWritten();
    this.chunks.push(b);
    this.refs = true;
  }

  /** Ends the message (fills in the count); the chunks stay valid until the next `begin()`. */
  finish(): Uint8Array[] {
    this.takeWritten();
    // The count lives in the first chunk, which may be a view on a buffer the writer has
    // since outgrown: patch it there.
    const head = this.chunks[0];
    head[2] = this.rects >> 8;
    head[3] = this.rects & 0xff;
    return this.chunks;
  }

  /** Moves what was written since the last cut into the chunk list. */
  private takeWritten(): void {
    if (this.out.length > this.cut) {
      this.chunks.push(this.out.view().subarray(this.cut));
      this.cut = this.out.length;
    }
  }
}
