import type { Logger } from "../../sources/log.ts";
import {
  type ConnectionOptions,
  type DisplaySource,
  type KeyHandler,
  RfbConnection,
  type SecurityHandler,
} from "./connection.ts";
import { DisplayShadow } from "./display_shadow.ts";
import type { RectEncoder } from "./encoder.ts";
import { ConnStream, type RfbStream } from "./stream.ts";

/** What to do with ClientInit's shared flag, as QEMU's `share=` option. */
export type SharePolicy = "allow-exclusive" | "force-shared" | "ignore";

/** Settings of a VNC server for one guest. */
export interface VncServerOptions {
  source: DisplaySource;
  name: string;
  security: readonly SecurityHandler[];
  /** A fresh key translator per client (it tracks modifier state). */
  keys(): KeyHandler;
  createEncoder(encoding: number): RectEncoder | undefined;
  log: Logger;
  share?: SharePolicy;
  beforeAuth?(remote: string): Promise<void>;
  afterAuth?(remote: string, ok: boolean): void;
  timeoutMs?: number;
  /** Share of a core that taking the guest's damage may use (default: no limit). */
  damageCpuShare?: number;
}

/**
 * An RFB server for one guest: accepts clients on any number of transports
 * (TCP listeners here; WebSocket and TLS hand over an RfbStream), each with
 * its own format, encodings and pending damage. The guest's damage is
 * compared once for all of them, in one {@link DisplayShadow}.
 */
export class VncServer {
  private readonly clients = new Set<RfbConnection>();
  private readonly listeners: Deno.Listener[] = [];
  private readonly shadow: DisplayShadow;

  constructor(private readonly o: VncServerOptions) {
    this.shadow = DisplayShadow.of(o.source.display$, {
      cpuShare: o.damageCpuShare,
      onThrottle: (m) => o.log.warn(m),
    });
  }

  /** Clients connected now. */
  get clientCount(): number {
    return this.clients.size;
  }

  /** Listens on host:port; resolves with the port bound (for port 0). */
  listen(hostname: string, port: number): number {
    const l = Deno.listen({ hostname, port, transport: "tcp" });
    this.listeners.push(l);
    this.acceptLoop(l);
    return (l.addr as Deno.NetAddr).port;
  }

  private async acceptLoop(l: Deno.Listener) {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await l.accept();
      } catch {
        return; // listener closed
      }
      try {
        (conn as Deno.TcpConn).setNoDelay(true);
      } catch {
        // not TCP
      }
      const a = conn.remoteAddr as Deno.NetAddr;
      this.serve(new ConnStream(conn, `${a.hostname}:${a.port}`));
    }
  }

  /** Serves one client over any transport; resolves when it leaves. */
  async serve(stream: RfbStream): Promise<void> {
    const log = this.o.log;
    log.info(`${stream.remote}: connected`);
    const opts: ConnectionOptions = {
      source: this.o.source,
      shadow: this.shadow,
      name: this.o.name,
      security: this.o.security,
      keys: this.o.keys(),
      createEncoder: this.o.createEncoder,
      log,
      timeoutMs: this.o.timeoutMs,
      beforeAuth: this.o.beforeAuth,
      afterAuth: this.o.afterAuth,
      onClientInit: (shared) => {
        const policy = this.o.share ?? "allow-exclusive";
        if (!shared && policy === "allow-exclusive") {
          for (const other of this.clients) {
            if (other !== conn) other.close("another client asked for exclusive access");
          }
        }
      },
    };
    const conn: RfbConnection = new RfbConnection(stream, opts);
    this.clients.add(conn);
    try {
      await conn.run();
    } finally {
      this.clients.delete(conn);
    }
  }

  /** Stops listening and disconnects every client. */
  close(): void {
    for (const l of this.listeners) {
      try {
        l.close();
      } catch {
        // closed already
      }
    }
    this.listeners.length = 0;
    for (const c of this.clients) c.close("server stopped");
  }
}
