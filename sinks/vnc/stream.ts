/**
 * The one byte-stream interface the RFB protocol code talks to, whichever
 * transport carries it (TCP, TLS, WebSocket).
 */
export interface RfbStream {
  /** Who is at the other end, for logs ("127.0.0.1:41234"). */
  readonly remote: string;
  /** Resolves with exactly `n` bytes; rejects with StreamClosed at end of stream. */
  read(n: number): Promise<Uint8Array>;
  /**
   * Exactly `n` bytes if that many are buffered already, else undefined and
   * nothing is taken; never waits. Lets the protocol code handle a message
   * that arrived whole without a promise or a timer. Not while a read() is
   * pending. Optional: without it, every read waits.
   */
  tryRead?(n: number): Uint8Array | undefined;
  /** Queues bytes for sending; resolves when the transport took them. */
  write(b: Uint8Array): Promise<void>;
  /** Bytes handed to write() and not yet taken by the transport. */
  readonly pending: number;
  /** Closes the transport; pending reads reject. Safe to call twice. */
  close(): void;
  /** True once closed (by either side). */
  readonly closed: boolean;
}

/** The other end went away (or we closed it). */
export class StreamClosed extends Error {
  constructor(msg = "connection closed") {
    super(msg);
  }
}

/** A reader/writer over any Deno.Conn-like object (TCP or TLS connection). */
export interface ByteConn {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

/**
 * An RfbStream over a Deno connection: buffered reads, writes queued in
 * order, TCP_NODELAY set by the caller.
 */
export class ConnStream implements RfbStream {
  private buf = new Uint8Array(64 * 1024);
  private start = 0;
  private end = 0;
  private writing: Promise<void> = Promise.resolve();
  private queued = 0;
  private isClosed = false;

  constructor(readonly conn: ByteConn, readonly remote: string) {}

  get pending(): number {
    return this.queued;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  async read(n: number): Promise<Uint8Array> {
    while (this.end - this.start < n) {
      if (this.isClosed) throw new StreamClosed();
      if (this.start > 0 && this.buf.length - this.end < Math.max(n, 4096)) {
        this.buf.copyWithin(0, this.start, this.end);
        this.end -= this.start;
        this.start = 0;
      }
      if (this.buf.length - this.start < n) {
        const bigger = new Uint8Array(Math.max(this.buf.length * 2, n + 4096));
        bigger.set(this.buf.subarray(this.start, this.end));
        this.end -= this.start;
        this.start = 0;
        this.buf = bigger;
      }
      let got: number | null;
      try {
        got = await this.conn.read(this.buf.subarray(this.end));
      } catch (e) {
        this.close();
        throw new StreamClosed(`connection lost: ${e instanceof Error ? e.message : e}`);
      }
      if (got === null) {
        this.close();
        throw new StreamClosed();
      }
      this.end += got;
    }
    return this.take(n);
  }

  tryRead(n: number): Uint8Array | undefined {
    return this.end - this.start >= n ? this.take(n) : undefined;
  }

  /** A copy: the buffer is compacted by later reads. */
  private take(n: number): Uint8Array {
    const out = this.buf.slice(this.start, this.start + n);
    this.start += n;
    return out;
  }

  write(b: Uint8Array): Promise<void> {
    if (this.isClosed) return Promise.reject(new StreamClosed());
    this.queued += b.length;
    const p = this.writing.then(async () => {
      let off = 0;
      try {
        while (off < b.length) off += await this.conn.write(b.subarray(off));
      } catch (e) {
        this.close();
        throw new StreamClosed(`write failed: ${e instanceof Error ? e.message : e}`);
      } finally {
        this.queued -= b.length;
      }
    });
    this.writing = p.catch(() => {});
    return p;
  }

  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}
