/**
 * A xenstore client speaking the wire protocol (sources/xen/xs_wire.ts) over
 * xenstored's UNIX socket or the xenbus character device, implementing the
 * project's `Xenstore` interface.
 *
 * - Requests carry increasing req_ids; replies are matched by req_id, so
 *   they may come in any order and interleave with WATCH_EVENTs.
 * - An ERROR reply rejects with `XenstoreError(errno, path)`; `read` of a
 *   missing node gives undefined and `directory` of one gives [].
 * - `watch(path)` sends WATCH with a token of its own when subscribed,
 *   emits the path of every WATCH_EVENT carrying that token (xenstored fires
 *   once at registration with `path` itself), and sends UNWATCH when
 *   unsubscribed.
 * - `transaction(body)` runs `body` between TRANSACTION_START and
 *   TRANSACTION_END, its operations carrying the transaction's tx_id, and
 *   runs it again (up to TRANSACTION_TRIES times) when the commit answers
 *   EAGAIN.
 * - A directory too long for one reply (E2BIG) is read with DIRECTORY_PART.
 * - `close()` closes the connection: pending requests reject with EBADF and
 *   watches complete. When xenstored goes away instead, pending requests
 *   reject and watches error with EIO.
 */
import { Observable, type Subscriber } from "rxjs";
import { type Perm, type Xenstore, XenstoreError, type XenstoreOps } from "../platform.ts";
import {
  AS_DOMAIN_COMMAND,
  decodeDirectoryPart,
  decodeError,
  decodePerms,
  decodeStrings,
  decodeText,
  decodeWatchEvent,
  encodeMessage,
  encodeSetPerms,
  encodeStrings,
  encodeWatch,
  encodeWrite,
  XS_CONTROL,
  XS_DIRECTORY,
  XS_DIRECTORY_PART,
  XS_ERROR,
  XS_GET_PERMS,
  XS_MKDIR,
  XS_PAYLOAD_MAX,
  XS_READ,
  XS_RM,
  XS_SET_PERMS,
  XS_TRANSACTION_END,
  XS_TRANSACTION_START,
  XS_UNWATCH,
  XS_WATCH,
  XS_WATCH_EVENT,
  XS_WRITE,
  XsFrameParser,
  type XsMessage,
  xsTypeName,
} from "./xs_wire.ts";

/** Where xenstore is looked for after $XENSTORED_PATH, in this order. */
export const XENSTORE_PATHS = [
  "/run/xenstored/socket",
  "/var/run/xenstored/socket",
  "/dev/xen/xenbus",
] as const;

/** How many times `transaction` runs a body whose commit answers EAGAIN. */
export const TRANSACTION_TRIES = 16;

export { AS_DOMAIN_COMMAND } from "./xs_wire.ts";

/** A byte stream to xenstored: a UNIX socket connection or the opened xenbus device. */
export interface XenstoreTransport {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

/** No xenstore could be reached; the message is one line naming what was tried. */
export class XenstoreUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "XenstoreUnavailableError";
  }
}

export interface XenstoreClientOptions {
  /** Names the connection (a path) in messages. */
  readonly name?: string;
}

export interface ConnectOptions {
  /**
   * Act as this domain, on rxfb's simulated xenstored only (see
   * AS_DOMAIN_COMMAND): a simulated guest in another process uses it.
   */
  readonly asDomain?: number;
}

interface Pending {
  readonly type: number;
  readonly path?: string;
  readonly resolve: (payload: Uint8Array) => void;
  readonly reject: (e: Error) => void;
}

/** The `Xenstore` interface over one connection to xenstored. */
export class XenstoreClient implements Xenstore {
  readonly name: string;
  #transport: XenstoreTransport;
  #parser = new XsFrameParser();
  #pending = new Map<number, Pending>();
  #nextReq = 1;
  #watches = new Map<string, Subscriber<string>>();
  #nextToken = 1;
  #txs = new Set<number>();
  #writes: Promise<void> = Promise.resolve();
  #closed = false;
  #failure: XenstoreError | undefined;
  /** Resolves when the reader stops (after close, EOF or an error). */
  readonly done: Promise<void>;

  constructor(transport: XenstoreTransport, options: XenstoreClientOptions = {}) {
    this.#transport = transport;
    this.name = options.name ?? "xenstore";
    this.done = this.#readLoop();
  }

  /** Whether the connection is closed or lost. */
  get closed(): boolean {
    return this.#closed;
  }

  // ---- XenstoreOps outside transactions -----------------------------------

  read(path: string): Promise<string | undefined> {
    return this.#read(0, path);
  }
  write(path: string, value: string): Promise<void> {
    return this.#write(0, path, value);
  }
  mkdir(path: string): Promise<void> {
    return this.#simple(XS_MKDIR, 0, path);
  }
  rm(path: string): Promise<void> {
    return this.#simple(XS_RM, 0, path);
  }
  directory(path: string): Promise<string[]> {
    return this.#directory(0, path);
  }
  getPerms(path: string): Promise<Perm[]> {
    return this.#getPerms(0, path);
  }
  setPerms(path: string, perms: Perm[]): Promise<void> {
    return this.#setPerms(0, path, perms);
  }

  // ---- watches ------------------------------------------------------------

  watch(path: string): Observable<string> {
    return new Observable<string>((sub) => {
      if (this.#closed) {
        sub.error(this.#failure ?? new XenstoreError("EBADF", path));
        return;
      }
      const token = `rxfb-${this.#nextToken++}`;
      this.#watches.set(token, sub);
      let active = true;
      const registered = this.#request(XS_WATCH, 0, encodeWatch(path, token), path).then(
        () => true,
        (e) => {
          if (active && this.#watches.get(token) === sub) {
            this.#watches.delete(token);
            sub.error(e);
          }
          return false;
        },
      );
      return () => {
        active = false;
        this.#watches.delete(token);
        void registered.then((ok) => {
          if (ok && !this.#closed) {
            this.#request(XS_UNWATCH, 0, encodeWatch(path, token), path).catch(() => {});
          }
        });
      };
    });
  }

  // ---- transactions -------------------------------------------------------

  async transaction<T>(body: (tx: XenstoreOps) => Promise<T>): Promise<T> {
    for (let attempt = 0; attempt < TRANSACTION_TRIES; attempt++) {
      const reply = await this.#request(XS_TRANSACTION_START, 0, encodeStrings([""]));
      const id = Number(decodeStrings(reply)[0]);
      if (!Number.isInteger(id) || id <= 0 || id > 0xffffffff) {
        throw new XenstoreError("EIO");
      }
      this.#txs.add(id);
      let result: T;
      try {
        result = await body(this.#ops(id));
      } catch (e) {
        await this.#end(id, false).catch(() => {});
        throw e;
      }
      try {
        await this.#end(id, true);
        return result;
      } catch (e) {
        if (e instanceof XenstoreError && e.errno === "EAGAIN") continue;
        throw e;
      }
    }
    throw new XenstoreError("EAGAIN");
  }

  // ---- connection ---------------------------------------------------------

  /**
   * Asks rxfb's simulated xenstored to treat this connection as domain
   * `domid` from now on (AS_DOMAIN_COMMAND). A real xenstored refuses.
   */
  async actAsDomain(domid: number): Promise<void> {
    if (!Number.isInteger(domid) || domid < 0 || domid > 0xffff) {
      throw new XenstoreError("EINVAL");
    }
    await this.#request(XS_CONTROL, 0, encodeStrings([AS_DOMAIN_COMMAND, String(domid)]));
  }

  /** Closes the connection: pending requests reject with EBADF, watches complete. */
  close(): void {
    if (this.#closed) return;
    this.#shutdown(new XenstoreError("EBADF"), false);
  }

  // ---- internals ----------------------------------------------------------

  #ops(tx: number): XenstoreOps {
    const live = <R>(f: () => Promise<R>): Promise<R> =>
      // A transaction's ops used after it ended: ENOENT, without asking
      // (read/directory must not take xenstored's ENOENT for a missing node).
      this.#txs.has(tx) ? f() : Promise.reject(new XenstoreError("ENOENT"));
    return {
      read: (path) => live(() => this.#read(tx, path)),
      write: (path, value) => live(() => this.#write(tx, path, value)),
      mkdir: (path) => live(() => this.#simple(XS_MKDIR, tx, path)),
      rm: (path) => live(() => this.#simple(XS_RM, tx, path)),
      directory: (path) => live(() => this.#directory(tx, path)),
      getPerms: (path) => live(() => this.#getPerms(tx, path)),
      setPerms: (path, perms) => live(() => this.#setPerms(tx, path, perms)),
    };
  }

  async #end(tx: number, commit: boolean): Promise<void> {
    this.#txs.delete(tx);
    await this.#request(XS_TRANSACTION_END, tx, encodeStrings([commit ? "T" : "F"]));
  }

  async #read(tx: number, path: string): Promise<string | undefined> {
    try {
      return decodeText(await this.#request(XS_READ, tx, encodeStrings([path]), path));
    } catch (e) {
      if (e instanceof XenstoreError && e.errno === "ENOENT") return undefined;
      throw e;
    }
  }

  async #write(tx: number, path: string, value: string): Promise<void> {
    await this.#request(XS_WRITE, tx, encodeWrite(path, String(value)), path);
  }

  async #simple(type: number, tx: number, path: string): Promise<void> {
    await this.#request(type, tx, encodeStrings([path]), path);
  }

  async #directory(tx: number, path: string): Promise<string[]> {
    try {
      return decodeStrings(await this.#request(XS_DIRECTORY, tx, encodeStrings([path]), path));
    } catch (e) {
      if (e instanceof XenstoreError && e.errno === "ENOENT") return [];
      if (e instanceof XenstoreError && e.errno === "E2BIG") {
        return await this.#directoryParts(tx, path);
      }
      throw e;
    }
  }

  /** A long child list, read in parts; starts over when the node changes meanwhile. */
  async #directoryParts(tx: number, path: string): Promise<string[]> {
    for (let attempt = 0; attempt < TRANSACTION_TRIES; attempt++) {
      const children: string[] = [];
      let generation: string | undefined;
      let offset = 0;
      for (;;) {
        let reply: Uint8Array;
        try {
          reply = await this.#request(
            XS_DIRECTORY_PART,
            tx,
            encodeStrings([path, String(offset)]),
            path,
          );
        } catch (e) {
          if (e instanceof XenstoreError && e.errno === "ENOENT") return [];
          throw e;
        }
        const part = decodeDirectoryPart(reply);
        if (!part) throw new XenstoreError("EIO", path);
        if (generation === undefined) generation = part.generation;
        else if (generation !== part.generation) break;
        children.push(...part.children);
        if (part.last) return children;
        if (part.bytes === 0) throw new XenstoreError("EIO", path);
        offset += part.bytes;
      }
    }
    throw new XenstoreError("EAGAIN", path);
  }

  async #getPerms(tx: number, path: string): Promise<Perm[]> {
    const perms = decodePerms(
      await this.#request(XS_GET_PERMS, tx, encodeStrings([path]), path),
    );
    if (!perms) throw new XenstoreError("EIO", path);
    return perms;
  }

  async #setPerms(tx: number, path: string, perms: Perm[]): Promise<void> {
    await this.#request(XS_SET_PERMS, tx, encodeSetPerms(path, perms), path);
  }

  /** Sends one request; resolves with the reply's payload. */
  #request(type: number, tx: number, payload: Uint8Array, path?: string): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(this.#failure ?? new XenstoreError("EBADF", path));
    // xenstored drops a client that sends more; refuse here instead.
    if (payload.length > XS_PAYLOAD_MAX) return Promise.reject(new XenstoreError("E2BIG", path));
    let reqId = this.#nextReq;
    while (this.#pending.has(reqId)) reqId = (reqId + 1) >>> 0;
    this.#nextReq = (reqId + 1) >>> 0;
    const bytes = encodeMessage({ type, reqId, txId: tx, payload });
    return new Promise<Uint8Array>((resolve, reject) => {
      this.#pending.set(reqId, { type, path, resolve, reject });
      this.#send(bytes);
    });
  }

  #send(bytes: Uint8Array): void {
    this.#writes = this.#writes.then(async () => {
      if (this.#closed) return;
      try {
        let at = 0;
        while (at < bytes.length) at += await this.#transport.write(bytes.subarray(at));
      } catch (e) {
        if (!this.#closed) this.#lost(`write failed: ${message(e)}`);
      }
    });
  }

  async #readLoop(): Promise<void> {
    // Big enough for any message; the xenbus device hands out at most one per read.
    const buf = new Uint8Array(65536);
    try {
      while (!this.#closed) {
        const n = await this.#transport.read(buf);
        if (n === null) {
          if (!this.#closed) this.#lost("connection closed by xenstored");
          return;
        }
        for (const msg of this.#parser.push(buf.subarray(0, n))) {
          this.#dispatch(msg);
          if (this.#closed) return;
        }
      }
    } catch (e) {
      if (!this.#closed) this.#lost(message(e));
    }
  }

  #dispatch(msg: XsMessage): void {
    if (msg.type === XS_WATCH_EVENT) {
      const ev = decodeWatchEvent(msg.payload);
      if (ev) this.#watches.get(ev.token)?.next(ev.path);
      return;
    }
    const p = this.#pending.get(msg.reqId);
    if (!p) return; // a reply to nothing we asked: ignore
    this.#pending.delete(msg.reqId);
    if (msg.type === XS_ERROR) {
      p.reject(new XenstoreError(decodeError(msg.payload), p.path));
    } else if (msg.type !== p.type) {
      p.reject(
        new XenstoreError("EIO", p.path ?? `${xsTypeName(p.type)} got ${xsTypeName(msg.type)}`),
      );
    } else {
      p.resolve(msg.payload);
    }
  }

  /** The connection broke under us. */
  #lost(why: string): void {
    const err = new XenstoreError("EIO", `${this.name}: ${why}`);
    this.#shutdown(err, true);
  }

  #shutdown(err: XenstoreError, fail: boolean): void {
    this.#closed = true;
    this.#failure = err;
    try {
      this.#transport.close();
    } catch {
      // already closed
    }
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const p of pending) p.reject(new XenstoreError(err.errno, p.path ?? err.path));
    const watches = [...this.#watches.values()];
    this.#watches.clear();
    for (const sub of watches) {
      if (fail) sub.error(err);
      else sub.complete();
    }
    this.#txs.clear();
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Why opening `path` failed, in a few words. */
function reason(e: unknown): string {
  if (e instanceof Deno.errors.NotFound) return "not found";
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (e instanceof Deno.errors.ConnectionRefused) return "connection refused";
  if (e instanceof XenstoreError) return e.message;
  return message(e).split("\n")[0];
}

/** Opens `path`: the xenbus character device as a file, anything else as a UNIX socket. */
export async function openTransport(path: string): Promise<XenstoreTransport> {
  const info = await Deno.stat(path);
  if (info.isCharDevice) return await Deno.open(path, { read: true, write: true });
  return await Deno.connect({ transport: "unix", path });
}

/**
 * Connects to xenstore: at `path` when given, else at the first of
 * $XENSTORED_PATH, /run/xenstored/socket, /var/run/xenstored/socket and
 * /dev/xen/xenbus that opens. Throws XenstoreUnavailableError, one line
 * naming each place tried and why it failed, when none does.
 */
export async function connectXenstore(
  path?: string,
  options: ConnectOptions = {},
): Promise<XenstoreClient> {
  const candidates: { path: string; label: string }[] = [];
  if (path !== undefined) {
    candidates.push({ path, label: path });
  } else {
    const env = Deno.env.get("XENSTORED_PATH");
    if (env) candidates.push({ path: env, label: `$XENSTORED_PATH=${env}` });
    for (const p of XENSTORE_PATHS) candidates.push({ path: p, label: p });
  }
  const tried: string[] = [];
  for (const c of candidates) {
    let transport: XenstoreTransport;
    try {
      transport = await openTransport(c.path);
    } catch (e) {
      tried.push(`${c.label} (${reason(e)})`);
      continue;
    }
    const client = new XenstoreClient(transport, { name: c.path });
    if (options.asDomain !== undefined) {
      try {
        await client.actAsDomain(options.asDomain);
      } catch (e) {
        client.close();
        throw new XenstoreUnavailableError(
          `xenstore at ${c.path} refused to act as domain ${options.asDomain} (${reason(e)}); ` +
            `only rxfb's simulated xenstored does that`,
        );
      }
    }
    return client;
  }
  throw new XenstoreUnavailableError(
    `no xenstore found: tried ${tried.join(", ")}; ` +
      `is xenstored running? are you root in dom0?`,
  );
}
