/**
 * A client of the simulated hypervisor service (hv_protocol.ts): requests on
 * the control connection are synchronous (blocking socket calls through FFI:
 * the caller's thread waits for the answer, so the host must be another
 * process or thread); events come on an ordinary Deno connection and fire
 * the ports' `events$`; notifies go out on it without waiting.
 */
import { Subject } from "rxjs";
import type { EventChannel } from "../platform.ts";
import {
  decodeBody,
  encodeFrame,
  frameLength,
  HvError,
  HvFrameParser,
  type HvMessage,
  hvSocketPath,
} from "./hv_protocol.ts";
import { SyncSocket } from "./shm.ts";

export interface HvClientOptions {
  /** The session's domain (0, the default: dom0). */
  readonly domid?: number;
  /** How long a request may take before the host counts as gone (default 10 s). */
  readonly timeoutMs?: number;
}

/** A session with the simulated hypervisor. */
export class HvClient {
  #control: SyncSocket;
  #events: Deno.UnixConn;
  #ports = new Map<number, Subject<void>>();
  #writes: Promise<void> = Promise.resolve();
  #nextId = 1;
  #closed = false;
  #lostReason: string | undefined;
  #lostResolve!: (why: string) => void;
  /** Resolves with a reason when the host goes away (not after `close()`). */
  readonly lost: Promise<string> = new Promise((r) => this.#lostResolve = r);
  /** Resolves when the events reader stops. */
  readonly done: Promise<void>;

  private constructor(
    control: SyncSocket,
    events: Deno.UnixConn,
    readonly session: number,
    readonly hostPid: number,
    public domid: number,
    readonly path: string,
    private readonly timeoutMs: number,
    rest: Uint8Array,
  ) {
    this.#control = control;
    this.#events = events;
    this.done = this.#readLoop(rest);
  }

  /**
   * Opens a session with the service at `path` (the `.hv` socket; a path
   * without it is taken as the host's xenstore socket and `.hv` added).
   */
  static async connect(path: string, opts: HvClientOptions = {}): Promise<HvClient> {
    const hvPath = path.endsWith(".hv") ? path : hvSocketPath(path);
    const timeoutMs = opts.timeoutMs ?? 10000;
    const control = SyncSocket.connect(hvPath);
    let hello: HvMessage;
    try {
      hello = call(control, { op: "hello", domid: opts.domid ?? 0 }, timeoutMs);
    } catch (e) {
      control.close();
      throw e;
    }
    let events: Deno.UnixConn | undefined;
    try {
      events = await Deno.connect({ transport: "unix", path: hvPath });
      await writeAll(
        events,
        encodeFrame({ op: "events", session: hello.session, token: hello.token }),
      );
      const { msg, rest } = await readOne(events);
      if (msg.ok !== true) throw new HvError(String(msg.errno), String(msg.message));
      return new HvClient(
        control,
        events,
        Number(hello.session),
        Number(hello.hostPid),
        Number(hello.domid),
        hvPath,
        timeoutMs,
        rest,
      );
    } catch (e) {
      control.close();
      events?.close();
      throw e;
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Sends a request and waits for its answer; throws HvError for an error answer. */
  request(op: string, args: Record<string, unknown> = {}): HvMessage {
    if (this.#closed) {
      throw new HvError("EBADF", `simulated host ${this.path}: ${this.#lostReason ?? "closed"}`);
    }
    const id = this.#nextId++;
    let reply: HvMessage;
    try {
      reply = call(this.#control, { ...args, op, id }, this.timeoutMs);
    } catch (e) {
      if (e instanceof HvError) throw e;
      this.#lost(e instanceof Error ? e.message : String(e));
      throw new HvError("EIO", `simulated host ${this.path}: ${this.#lostReason}`);
    }
    if (reply.id !== id) {
      this.#lost(`answer ${reply.id} to request ${id}`);
      throw new HvError("EIO", `simulated host ${this.path}: ${this.#lostReason}`);
    }
    return reply;
  }

  /** Sends an event to the other end of `port` (never waits). */
  notify(port: number): void {
    this.#send({ op: "notify", port });
  }

  /** An event channel handle for a port this session holds. */
  channel(port: number): EventChannel {
    const events = new Subject<void>();
    this.#ports.set(port, events);
    let closed = false;
    return {
      localPort: port,
      events$: events.asObservable(),
      notify: () => {
        if (!closed) this.notify(port);
      },
      close: () => {
        if (closed) return;
        closed = true;
        this.#ports.delete(port);
        events.complete();
        if (!this.#closed) {
          try {
            this.request("evtchn_close", { port });
          } catch {
            // the host closed it already (its peer domain went)
          }
        }
      },
    };
  }

  /** Closes both connections (the host ends the session). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#lostReason = "closed";
    this.#control.close();
    try {
      this.#events.close();
    } catch {
      // closed already
    }
    this.#completePorts();
  }

  #completePorts() {
    const ports = [...this.#ports.values()];
    this.#ports.clear();
    for (const s of ports) s.complete();
  }

  #lost(why: string) {
    if (this.#closed) return;
    this.#lostReason = why;
    this.#closed = true;
    this.#control.close();
    try {
      this.#events.close();
    } catch {
      // closed already
    }
    this.#completePorts();
    this.#lostResolve(why);
  }

  #send(msg: HvMessage) {
    if (this.#closed) return;
    const bytes = encodeFrame(msg);
    this.#writes = this.#writes.then(async () => {
      if (this.#closed) return;
      try {
        await writeAll(this.#events, bytes);
      } catch (e) {
        this.#lost(`write failed: ${e instanceof Error ? e.message : e}`);
      }
    });
  }

  async #readLoop(rest: Uint8Array): Promise<void> {
    const parser = new HvFrameParser();
    const buf = new Uint8Array(65536);
    try {
      let chunk: Uint8Array = rest;
      for (;;) {
        for (const m of parser.push(chunk)) this.#dispatch(m);
        if (this.#closed) return;
        const n = await this.#events.read(buf);
        if (n === null) {
          this.#lost("connection closed by the host");
          return;
        }
        chunk = buf.subarray(0, n);
      }
    } catch (e) {
      this.#lost(e instanceof Error ? e.message : String(e));
    }
  }

  #dispatch(m: HvMessage) {
    const port = Number(m.port);
    const s = this.#ports.get(port);
    if (!s) return;
    if (m.ev === "event") s.next();
    else if (m.ev === "closed") {
      this.#ports.delete(port);
      s.complete();
    }
  }
}

/** One synchronous round trip on the control connection. */
function call(sock: SyncSocket, msg: HvMessage, timeoutMs: number): HvMessage {
  sock.send(encodeFrame(msg));
  const n = frameLength(sock.recv(4, timeoutMs));
  const reply = decodeBody(sock.recv(n, timeoutMs));
  if (reply.ok !== true) {
    throw new HvError(String(reply.errno ?? "EIO"), String(reply.message ?? "error"));
  }
  return reply;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let at = 0;
  while (at < bytes.length) at += await conn.write(bytes.subarray(at));
}

/** Reads one frame; returns it and the bytes read past it. */
async function readOne(conn: Deno.Conn): Promise<{ msg: HvMessage; rest: Uint8Array }> {
  let buf = new Uint8Array(0);
  const chunk = new Uint8Array(4096);
  for (;;) {
    if (buf.length >= 4) {
      const n = frameLength(buf.subarray(0, 4));
      if (buf.length >= 4 + n) {
        return { msg: decodeBody(buf.subarray(4, 4 + n)), rest: buf.slice(4 + n) };
      }
    }
    const got = await conn.read(chunk);
    if (got === null) throw new HvError("EIO", "the host closed the connection");
    const b = new Uint8Array(buf.length + got);
    b.set(buf);
    b.set(chunk.subarray(0, got), buf.length);
    buf = b;
  }
}
