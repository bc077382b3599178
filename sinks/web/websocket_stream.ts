import { type RfbStream, StreamClosed } from "../vnc/stream.ts";

/**
 * An RfbStream over a WebSocket carrying RFB in binary messages (what noVNC
 * and websockify speak). Message boundaries mean nothing to RFB, so reads
 * take bytes across messages.
 */
export class WebSocketStream implements RfbStream {
  private chunks: Uint8Array[] = [];
  private have = 0;
  private waiter: (() => void) | undefined;
  private isClosed = false;

  constructor(private readonly ws: WebSocket, readonly remote: string) {
    ws.binaryType = "arraybuffer";
    ws.onmessage = (e) => {
      if (typeof e.data === "string") {
        this.close(); // text frames are not RFB
        return;
      }
      const b = new Uint8Array(e.data as ArrayBuffer);
      this.chunks.push(b);
      this.have += b.length;
      this.wake();
    };
    ws.onclose = () => {
      this.isClosed = true;
      this.wake();
    };
    ws.onerror = () => {
      this.isClosed = true;
      this.wake();
    };
  }

  /** Resolves once the socket is open (an upgraded server socket opens at once). */
  opened(): Promise<void> {
    if (this.ws.readyState === WebSocket.OPEN) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.ws.addEventListener("open", () => resolve(), { once: true });
      this.ws.addEventListener("close", () => reject(new StreamClosed()), { once: true });
    });
  }

  private wake() {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  get pending(): number {
    return this.ws.readyState === WebSocket.OPEN ? this.ws.bufferedAmount : 0;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  async read(n: number): Promise<Uint8Array> {
    while (this.have < n) {
      if (this.isClosed) throw new StreamClosed();
      await new Promise<void>((r) => this.waiter = r);
    }
    return this.take(n);
  }

  tryRead(n: number): Uint8Array | undefined {
    return this.have >= n ? this.take(n) : undefined;
  }

  private take(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0];
      const take = Math.min(c.length, n - off);
      out.set(c.subarray(0, take), off);
      off += take;
      if (take === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(take);
    }
    this.have -= n;
    return out;
  }

  write(b: Uint8Array): Promise<void> {
    if (this.isClosed || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new StreamClosed());
    }
    this.ws.send(b);
    return Promise.resolve();
  }

  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    try {
      this.ws.close();
    } catch {
      // closing already
    }
    this.wake();
  }
}
