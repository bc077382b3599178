/**
 * The simulated hypervisor service on a UNIX socket: sessions, each a
 * control and an events connection, as hv_protocol.ts describes, over a
 * `SimHost` (its SimXen's event channel hub, and its domains' memory files).
 */
import type { Subscription } from "rxjs";
import { consoleLogger, type Logger } from "../log.ts";
import { type EventChannel, XenstoreError } from "../platform.ts";
import { encodeFrame, HvError, HvFrameParser, type HvMessage } from "./hv_protocol.ts";
import type { SimHost } from "./host.ts";
import { listenUnix } from "./unix_listen.ts";

export interface HvServer {
  readonly path: string;
  /** Sessions whose control connection is open. */
  readonly sessions: number;
  /** Stops listening and ends every session (destroying the domains they own). */
  close(): Promise<void>;
}

export interface HvServerOptions {
  readonly log?: Logger;
  /** Reply bytes queued for a client that does not read before it is dropped. */
  readonly maxPendingOutput?: number;
}

/** Events kept for a session whose events connection has not come yet. */
const MAX_QUEUED_EVENTS = 4096;

/** Serves `host` at `path` (a stale socket there is replaced). Returns at once, listening. */
export function serveHypervisor(host: SimHost, path: string, opts: HvServerOptions = {}): HvServer {
  const log = opts.log ?? consoleLogger("rxfb hypervisor");
  const listener = listenUnix(path);
  const maxPending = opts.maxPendingOutput ?? 16 << 20;
  const sessions = new Map<number, Session>();
  /** Sessions until their end (destroying what they own) is over. */
  const live = new Set<Session>();
  const conns = new Set<Conn>();
  let nextSession = 1;
  let closing = false;

  const accepting = (async () => {
    try {
      for await (const c of listener) {
        if (closing) {
          c.close();
          break;
        }
        const conn = new Conn(c, maxPending, log);
        conns.add(conn);
        conn.done.then(() => conns.delete(conn));
        conn.onFirst = (m) => {
          if (m.op === "hello") {
            const domid = m.domid === undefined ? 0 : m.domid;
            if (typeof domid !== "number" || !Number.isInteger(domid) || domid < 0) {
              conn.send({ ok: false, errno: "EINVAL", message: "bad domid" });
              conn.close();
              return;
            }
            if (domid !== 0 && !host.memory(domid)) {
              conn.send({ ok: false, errno: "ENOENT", message: `no domain ${domid}` });
              conn.close();
              return;
            }
            const s = new Session(host, nextSession++, domid, conn, log);
            sessions.set(s.id, s);
            live.add(s);
            conn.done.then(async () => {
              sessions.delete(s.id);
              await s.end();
              live.delete(s);
            });
            conn.send({
              ok: true,
              session: s.id,
              token: s.token,
              hostPid: host.hostPid,
              domid,
            });
            conn.onMessage = (msg) => s.request(msg);
          } else if (m.op === "events") {
            const s = sessions.get(Number(m.session));
            if (!s || s.token !== m.token || s.events) {
              conn.send({ ok: false, errno: "EACCES", message: "no such session" });
              conn.close();
              return;
            }
            conn.send({ ok: true });
            s.attachEvents(conn);
          } else {
            conn.send({ ok: false, errno: "EINVAL", message: "hello or events first" });
            conn.close();
          }
        };
      }
    } catch (e) {
      if (!closing) log.error(`accepting on ${path} failed: ${e instanceof Error ? e.message : e}`);
    }
  })();

  return {
    path,
    get sessions() {
      return sessions.size;
    },
    async close() {
      if (closing) return;
      closing = true;
      try {
        listener.close();
      } catch {
        // closed already
      }
      for (const c of conns) c.close();
      await accepting;
      await Promise.all([...live].map((s) => s.end()));
      try {
        Deno.removeSync(path);
      } catch {
        // gone already
      }
    },
  };
}

/** One connection: framed JSON both ways, requests handled one at a time. */
class Conn {
  readonly done: Promise<void>;
  onFirst: (m: HvMessage) => void = () => {};
  onMessage: ((m: HvMessage) => Promise<void> | void) | undefined;
  #parser = new HvFrameParser();
  #out: Uint8Array[] = [];
  #outBytes = 0;
  #writing = false;
  #closed = false;
  #queue: Promise<void> = Promise.resolve();

  constructor(
    readonly conn: Deno.UnixConn,
    readonly maxPending: number,
    readonly log: Logger,
  ) {
    this.done = this.#run();
  }

  get closed(): boolean {
    return this.#closed;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // closed already
    }
  }

  async #run(): Promise<void> {
    const buf = new Uint8Array(65536);
    let first = true;
    try {
      while (!this.#closed) {
        const n = await this.conn.read(buf);
        if (n === null) break;
        let msgs: HvMessage[];
        try {
          msgs = this.#parser.push(buf.subarray(0, n));
        } catch (e) {
          this.log.warn(`client disconnected: ${e instanceof Error ? e.message : e}`);
          break;
        }
        for (const m of msgs) {
          if (first) {
            first = false;
            this.onFirst(m);
          } else if (this.onMessage) {
            const handle = this.onMessage;
            this.#queue = this.#queue.then(() => handle(m)).catch((e) =>
              this.log.error(`request failed: ${e instanceof Error ? e.message : e}`)
            );
          }
        }
      }
    } catch (e) {
      if (!this.#closed && !(e instanceof Deno.errors.ConnectionReset)) {
        this.log.warn(`read failed: ${e instanceof Error ? e.message : e}`);
      }
    } finally {
      await this.#queue.catch(() => {});
      this.close();
    }
  }

  send(msg: HvMessage): void {
    if (this.#closed) return;
    const bytes = encodeFrame(msg);
    this.#out.push(bytes);
    this.#outBytes += bytes.length;
    if (this.#outBytes > this.maxPending) {
      this.log.warn(`client disconnected: not reading (${this.#outBytes} bytes pending)`);
      this.close();
      return;
    }
    if (!this.#writing) void this.#flush();
  }

  async #flush(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#out.length && !this.#closed) {
        const parts = this.#out.splice(0);
        const total = parts.reduce((a, p) => a + p.length, 0);
        const bytes = new Uint8Array(total);
        let o = 0;
        for (const p of parts) bytes.set(p, o), o += p.length;
        let at = 0;
        while (at < bytes.length) {
          const n = await this.conn.write(bytes.subarray(at));
          at += n;
          this.#outBytes -= n;
        }
      }
    } catch {
      this.close();
    } finally {
      this.#writing = false;
    }
  }
}

interface Port {
  ch: EventChannel;
  sub: Subscription;
}

function num(m: HvMessage, key: string): number {
  const v = m[key];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    throw new HvError("EINVAL", `${key} must be a number`);
  }
  return v;
}

/** One client: its domain, its ports, the domains it created. */
class Session {
  readonly token: string;
  events: Conn | undefined;
  private readonly queued: HvMessage[] = [];
  private readonly ports = new Map<number, Port>();
  private readonly owned = new Set<number>();
  private ended: Promise<void> | undefined;

  constructor(
    readonly host: SimHost,
    readonly id: number,
    public domid: number,
    readonly control: Conn,
    readonly log: Logger,
  ) {
    this.token = Array.from(
      crypto.getRandomValues(new Uint8Array(16)),
      (b) => b.toString(16).padStart(2, "0"),
    ).join("");
  }

  attachEvents(conn: Conn): void {
    this.events = conn;
    for (const m of this.queued.splice(0)) conn.send(m);
    conn.onMessage = (m) => {
      try {
        if (m.op === "notify") this.notify(num(m, "port"));
      } catch {
        // a bad notify is ignored, as Xen ignores a notify on a bad port
      }
    };
  }

  private event(m: HvMessage): void {
    if (this.events) this.events.send(m);
    else if (this.queued.length < MAX_QUEUED_EVENTS) this.queued.push(m);
  }

  private notify(port: number): void {
    this.ports.get(port)?.ch.notify();
  }

  private privileged(): void {
    if (this.domid !== 0) throw new HvError("EPERM", "only dom0 may do that");
  }

  private guestMemory() {
    const mem = this.host.memory(this.domid);
    if (!mem) throw new HvError("ENOENT", `domain ${this.domid} has no memory here`);
    return mem;
  }

  private addPort(ch: EventChannel): number {
    const port = ch.localPort;
    const sub = ch.events$.subscribe({
      next: () => this.event({ ev: "event", port }),
      complete: () => {
        if (this.ports.delete(port)) this.event({ ev: "closed", port });
      },
    });
    this.ports.set(port, { ch, sub });
    return port;
  }

  async request(m: HvMessage): Promise<void> {
    const id = m.id;
    try {
      const reply = await this.handle(m);
      this.control.send({ ok: true, id, ...reply });
    } catch (e) {
      let errno = "EIO";
      if (e instanceof HvError || e instanceof XenstoreError) errno = e.errno;
      else if (e instanceof RangeError) errno = "EINVAL";
      else if (e instanceof Deno.errors.AlreadyExists) errno = "EEXIST";
      const message = e instanceof Error ? e.message : String(e);
      if (errno === "EIO") {
        this.log.error(`session ${this.id} (dom${this.domid}): ${m.op}: ${message}`);
      }
      this.control.send({ ok: false, id, errno, message });
    }
  }

  private async handle(m: HvMessage): Promise<HvMessage> {
    const host = this.host;
    switch (m.op) {
      case "domain_create": {
        this.privileged();
        const domid = num(m, "domid");
        const name = typeof m.name === "string" ? m.name : `domain ${domid}`;
        await host.createDomain(domid, name);
        this.owned.add(domid);
        return {};
      }
      case "device_add": {
        this.privileged();
        const kind = m.kind;
        if (kind !== "vfb" && kind !== "vkbd") throw new HvError("EINVAL", "kind: vfb or vkbd");
        const keys: Record<string, string> = {};
        if (m.backend !== undefined) {
          if (typeof m.backend !== "object" || m.backend === null) {
            throw new HvError("EINVAL", "backend: an object of strings");
          }
          for (const [k, v] of Object.entries(m.backend)) keys[k] = String(v);
        }
        await host.addDevice(
          num(m, "domid"),
          kind,
          m.devid === undefined ? 0 : num(m, "devid"),
          keys,
        );
        return {};
      }
      case "domain_destroy": {
        this.privileged();
        const domid = num(m, "domid");
        this.owned.delete(domid);
        await host.destroyDomain(domid);
        return {};
      }
      case "domain_list":
        this.privileged();
        return {
          domains: host.domids.map((d) => ({
            domid: d,
            name: host.xen.domain(d)?.name,
            runs: host.memory(d)!.runCount,
            grants: host.memory(d)!.grantCount,
          })),
        };
      case "as_domain": {
        this.privileged();
        const domid = num(m, "domid");
        if (domid !== 0 && !host.memory(domid)) throw new HvError("ENOENT", `no domain ${domid}`);
        if (this.ports.size) throw new HvError("EBUSY", "close the session's ports first");
        this.domid = domid;
        return {};
      }
      case "mem_alloc":
        return this.guestMemory().alloc(num(m, "count"));
      case "mem_free":
        this.guestMemory().free(num(m, "first"));
        return {};
      case "grant":
        return {
          gref: this.guestMemory().grant(num(m, "frame"), num(m, "domid"), m.readonly === true),
        };
      case "map_frames": {
        this.privileged();
        const domid = num(m, "domid");
        const mem = host.memory(domid);
        if (!mem) throw new HvError("ESRCH", `domain ${domid} does not exist`);
        if (!Array.isArray(m.frames)) throw new HvError("EINVAL", "frames: a list");
        return { segments: mem.segments(m.frames) };
      }
      case "map_grant": {
        const domid = num(m, "domid");
        const mem = host.memory(domid);
        if (!mem) throw new HvError("ESRCH", `domain ${domid} does not exist`);
        return { segments: [mem.granted(num(m, "gref"), this.domid, m.writable === true)] };
      }
      case "evtchn_alloc_unbound": {
        const remote = num(m, "remote");
        return { port: this.addPort(host.xen.evtchn.allocUnbound(this.domid, remote)) };
      }
      case "evtchn_bind": {
        const ch = host.xen.evtchn.bindInterdomain(this.domid, num(m, "domid"), num(m, "port"));
        return { port: this.addPort(ch) };
      }
      case "evtchn_close": {
        const port = num(m, "port");
        const p = this.ports.get(port);
        if (!p) throw new HvError("ENOENT", `no port ${port}`);
        this.ports.delete(port);
        p.sub.unsubscribe();
        p.ch.close();
        return {};
      }
      case "notify":
        this.notify(num(m, "port"));
        return {};
      default:
        throw new HvError("ENOSYS", `unknown request ${JSON.stringify(m.op)}`);
    }
  }

  /** The control connection closed: close the ports, destroy the domains this session made. */
  end(): Promise<void> {
    return this.ended ??= (async () => {
      this.control.close();
      this.events?.close();
      for (const p of this.ports.values()) {
        p.sub.unsubscribe();
        p.ch.close();
      }
      this.ports.clear();
      for (const domid of this.owned) {
        await this.host.destroyDomain(domid).catch(() => {});
      }
      this.owned.clear();
    })();
  }
}
