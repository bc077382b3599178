/**
 * An RFB-aware TCP relay for client tests: passes both directions through,
 * parsing the client's side so that it can drop the JPEG quality
 * pseudo-encodings from SetEncodings. Real clients that always ask for JPEG
 * (gtk-vnc's Tight+JPEG5, noVNC's QualityLevel) then get lossless Tight, and
 * their pixels can be checked exactly.
 */

/** A running relay. */
export interface Relay {
  port: number;
  /** SetEncodings messages seen, as sent by the client (before rewriting). */
  encodings: number[][];
  close(): Promise<void>;
}

class Reader {
  private buf: Uint8Array = new Uint8Array(0);
  constructor(private readonly conn: Deno.Conn) {}

  async read(n: number): Promise<Uint8Array> {
    while (this.buf.length < n) {
      const chunk = new Uint8Array(64 * 1024);
      const k = await this.conn.read(chunk);
      if (k === null) throw new Error("eof");
      const b = new Uint8Array(this.buf.length + k);
      b.set(this.buf);
      b.set(chunk.subarray(0, k), this.buf.length);
      this.buf = b;
    }
    const out = this.buf.slice(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Whatever is buffered (for handing over to a raw copy). */
  rest(): Uint8Array {
    const r = this.buf;
    this.buf = new Uint8Array(0);
    return r;
  }
}

async function writeAll(c: Deno.Conn, b: Uint8Array) {
  let o = 0;
  while (o < b.length) o += await c.write(b.subarray(o));
}

async function copy(from: Deno.Conn, to: Deno.Conn) {
  const buf = new Uint8Array(256 * 1024);
  for (;;) {
    const n = await from.read(buf);
    if (n === null) return;
    await writeAll(to, buf.subarray(0, n));
  }
}

/** The JPEG quality pseudo-encodings (QualityLevel and TigerVNC's fine quality). */
export const isQuality = (e: number): boolean => (e >= -32 && e <= -23) || (e >= -512 && e <= -412);

/**
 * Starts a relay to 127.0.0.1:`target` on a free port, dropping the
 * encodings `drop` accepts (default: the JPEG quality levels) from every
 * SetEncodings.
 */
export function startRelay(target: number, drop: (e: number) => boolean = isQuality): Relay {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const encodings: number[][] = [];
  const conns = new Set<Deno.Conn>();
  const tasks = new Set<Promise<void>>();

  const clientToServer = async (client: Deno.Conn, server: Deno.Conn) => {
    const r = new Reader(client);
    const pass = async (n: number) => await writeAll(server, await r.read(n));
    const version = await r.read(12);
    await writeAll(server, version);
    const minor = Number(new TextDecoder().decode(version.subarray(8, 11)));
    let security: number;
    if (minor >= 7) {
      const [choice] = await r.read(1);
      await writeAll(server, Uint8Array.of(choice));
      security = choice;
    } else {
      security = 0; // 3.3: the server decides; only None and VNC auth exist
    }
    if (security === 2 || security === 0) {
      // VNC auth (or 3.3, where the next client bytes are a response or ClientInit):
      // a 16-byte response then ClientInit, or just ClientInit.
      if (security === 2) await pass(16);
      else {
        // 3.3 with None: the next byte is ClientInit. (Tests use None with 3.3.)
      }
    } else if (security !== 1) {
      // VeNCrypt and the like: encrypted from here on.
      await writeAll(server, r.rest());
      await copy(client, server);
      return;
    }
    await pass(1); // ClientInit
    for (;;) {
      const [type] = await r.read(1);
      switch (type) {
        case 0:
          await writeAll(server, Uint8Array.of(0));
          await pass(19);
          break;
        case 2: {
          const h = await r.read(3);
          const n = (h[1] << 8) | h[2];
          const b = await r.read(4 * n);
          const dv = new DataView(b.buffer);
          const list = Array.from({ length: n }, (_, i) => dv.getInt32(4 * i));
          encodings.push(list);
          const kept = list.filter((e) => !drop(e));
          const out = new Uint8Array(4 + 4 * kept.length);
          const ov = new DataView(out.buffer);
          out[0] = 2;
          ov.setUint16(2, kept.length);
          kept.forEach((e, i) => ov.setInt32(4 + 4 * i, e));
          await writeAll(server, out);
          break;
        }
        case 3:
        case 150:
          await writeAll(server, Uint8Array.of(type));
          await pass(9);
          break;
        case 4:
          await writeAll(server, Uint8Array.of(type));
          await pass(7);
          break;
        case 5:
          await writeAll(server, Uint8Array.of(type));
          await pass(5);
          break;
        case 6: {
          const h = await r.read(7);
          const len = new DataView(h.buffer).getUint32(3);
          await writeAll(server, Uint8Array.of(type));
          await writeAll(server, h);
          await pass(len);
          break;
        }
        case 248: {
          const h = await r.read(8);
          await writeAll(server, Uint8Array.of(type));
          await writeAll(server, h);
          await pass(h[7]);
          break;
        }
        case 251: {
          const h = await r.read(7);
          await writeAll(server, Uint8Array.of(type));
          await writeAll(server, h);
          await pass(16 * h[5]);
          break;
        }
        case 255: {
          const [sub] = await r.read(1);
          await writeAll(server, Uint8Array.of(type, sub));
          if (sub === 0) await pass(10);
          else {
            await writeAll(server, r.rest());
            await copy(client, server);
            return;
          }
          break;
        }
        default:
          // Unknown to the relay: pass the rest through untouched.
          await writeAll(server, Uint8Array.of(type));
          await writeAll(server, r.rest());
          await copy(client, server);
          return;
      }
    }
  };

  const serve = async (client: Deno.Conn) => {
    let server: Deno.Conn | undefined;
    try {
      server = await Deno.connect({ hostname: "127.0.0.1", port: target });
      conns.add(server);
      await Promise.race([
        clientToServer(client, server).catch(() => {}),
        copy(server, client).catch(() => {}),
      ]);
    } catch {
      // target refused
    } finally {
      for (const c of [client, server]) {
        if (!c) continue;
        try {
          c.close();
        } catch {
          // closed
        }
        conns.delete(c);
      }
    }
  };

  const accept = (async () => {
    for (;;) {
      let c: Deno.Conn;
      try {
        c = await listener.accept();
      } catch {
        return;
      }
      conns.add(c);
      const t = serve(c).finally(() => tasks.delete(t));
      tasks.add(t);
    }
  })();

  return {
    port: (listener.addr as Deno.NetAddr).port,
    encodings,
    close: async () => {
      try {
        listener.close();
      } catch {
        // closed
      }
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // closed
        }
      }
      await accept;
      await Promise.allSettled([...tasks]);
    },
  };
}
