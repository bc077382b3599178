/**
 * The simulator's xenstored on a UNIX socket: serves a `SimXenstoreDaemon`
 * over the xenstore wire protocol (sources/xen/xs_wire.ts), so that rxfb's
 * `XenstoreClient` and Debian's xenstore-utils (xenstore-read, -write, -ls,
 * -list, -rm, -watch, -chmod, pointed at it with XENSTORED_PATH) talk to the
 * same store as the in-process simulation.
 *
 * - One connection is one client. A connection acts as dom0 (privileged),
 *   as a local socket to xenstored does, unless `domidFor` says otherwise.
 * - "Act as domain N": a privileged connection may send, before it has
 *   watches or transactions, a CONTROL request with the payload
 *   "rxfb-as-domain\0N\0"; from then on it is domain N (unprivileged unless
 *   N is 0), for permission checks, node ownership and relative paths. It
 *   is not part of xenstored's protocol (a real xenstored answers EINVAL);
 *   xenstore-utils never send it, so they act as dom0. A simulated guest in
 *   another process connects with `connectXenstore(path, { asDomain: N })`.
 * - Requests: DIRECTORY, DIRECTORY_PART, READ, GET_PERMS, WATCH, UNWATCH,
 *   TRANSACTION_START/END, WRITE, MKDIR, RM, SET_PERMS, RESET_WATCHES,
 *   GET_DOMAIN_PATH, and for privileged connections CONTROL, INTRODUCE,
 *   RELEASE, IS_DOMAIN_INTRODUCED and RESUME. SET_TARGET and unknown types
 *   answer ENOSYS (as xenstored does for unknown types).
 * - Errors: a malformed payload is EINVAL, a reply that would exceed
 *   XS_PAYLOAD_MAX is E2BIG (so that clients fall back to DIRECTORY_PART),
 *   a tx_id this connection did not start is ENOENT, the rest is the
 *   daemon's (ENOENT, EACCES, EAGAIN, ...).
 * - DIRECTORY_PART answers "gen\0children from the byte offset...\0" with a
 *   doubled NUL once the list is complete, as xenstored does; the daemon does
 *   not expose node generations, so `gen` is a hash of the child list, which
 *   changes whenever the list does (what a client compares it for).
 * - Paths not starting with "/" (or "@") are relative to
 *   /local/domain/<domid>, and watches on them report relative paths.
 * - A client that breaks the protocol (a header announcing more than
 *   XS_PAYLOAD_MAX bytes), exceeds its watch or transaction quota
 *   repeatedly, or does not read its replies, is disconnected with a logged
 *   reason; other connections keep working.
 */
import { consoleLogger, type Logger } from "../log.ts";
import { type Perm, XenstoreError } from "../platform.ts";
import {
  AS_DOMAIN_COMMAND,
  concatBytes,
  countStrings,
  decodeArgs,
  decodeOneArg,
  decodeText,
  encodeError,
  encodeMessage,
  encodePerms,
  encodeStrings,
  encodeText,
  encodeWatch,
  parsePerm,
  XS_CONTROL,
  XS_DIRECTORY,
  XS_DIRECTORY_PART,
  XS_ERROR,
  XS_GET_DOMAIN_PATH,
  XS_GET_PERMS,
  XS_INTRODUCE,
  XS_IS_DOMAIN_INTRODUCED,
  XS_MKDIR,
  XS_OK,
  XS_PAYLOAD_MAX,
  XS_READ,
  XS_RELEASE,
  XS_RESET_WATCHES,
  XS_RESUME,
  XS_RM,
  XS_SET_PERMS,
  XS_SET_TARGET,
  XS_TRANSACTION_END,
  XS_TRANSACTION_START,
  XS_UNWATCH,
  XS_WATCH,
  XS_WATCH_EVENT,
  XS_WRITE,
  XsFrameParser,
  type XsMessage,
  xsTypeName,
} from "../xen/xs_wire.ts";
import type { SimXenstoreDaemon } from "./xenstore.ts";
import { listenUnix } from "./unix_listen.ts";

export { AS_DOMAIN_COMMAND } from "../xen/xs_wire.ts";

/** One request as the server saw it (for tracing). */
export interface RequestInfo {
  /** The connection's number, from 1 in order of acceptance. */
  readonly connection: number;
  /** The domain the connection acts as. */
  readonly domid: number;
  readonly type: number;
  readonly typeName: string;
  readonly txId: number;
  readonly payload: Uint8Array;
}

export interface XenstoreServerOptions {
  /** The domain a new connection (numbered from 1) acts as; dom0 by default. */
  readonly domidFor?: (connection: number) => number;
  /** Where disconnections and oddities are told; stderr by default. */
  readonly log?: Logger;
  /** Called with every request before it is handled. */
  readonly onRequest?: (req: RequestInfo) => void;
  /** Watches one connection may hold (xenstored's default quota is 128 per domain). */
  readonly maxWatches?: number;
  /** Transactions one connection may have open (xenstored's default quota is 10). */
  readonly maxTransactions?: number;
  /** Reply bytes queued for a client that does not read before it is dropped. */
  readonly maxPendingOutput?: number;
}

export interface XenstoreServer {
  /** The socket's path. */
  readonly path: string;
  /** How many clients are connected now. */
  readonly connections: number;
  /** Stops listening, drops every client and removes the socket. */
  close(): void;
  /** Resolves once closed and every connection is cleaned up. */
  readonly closed: Promise<void>;
}

/**
 * Serves `daemon` on a UNIX socket at `path` (a stale socket there is
 * replaced; any other file is an error). Returns at once, listening.
 */
export function serveXenstore(
  daemon: SimXenstoreDaemon,
  path: string,
  opts: XenstoreServerOptions = {},
): XenstoreServer {
  const log = opts.log ?? consoleLogger("rxfb xenstored");
  const listener = listenUnix(path);
  const conns = new Set<ServerConnection>();
  let closing = false;
  let count = 0;
  const limits = {
    maxWatches: opts.maxWatches ?? 1024,
    maxTransactions: opts.maxTransactions ?? 64,
    maxPendingOutput: opts.maxPendingOutput ?? 4 * 1024 * 1024,
  };

  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        if (closing) {
          conn.close();
          break;
        }
        const id = ++count;
        let domid = 0;
        try {
          domid = opts.domidFor?.(id) ?? 0;
        } catch (e) {
          log.error(`connection #${id}: domidFor failed: ${e}; dropped`);
          conn.close();
          continue;
        }
        const c = new ServerConnection(daemon, conn, id, domid, log, opts.onRequest, limits);
        conns.add(c);
        c.done.then(() => conns.delete(c));
      }
    } catch (e) {
      if (!closing) log.error(`accepting on ${path} failed: ${e instanceof Error ? e.message : e}`);
    }
  })();

  let signalClose!: () => void;
  const closeRequested = new Promise<void>((resolve) => signalClose = resolve);
  const closed = (async () => {
    await closeRequested;
    await accepting;
    await Promise.all([...conns].map((c) => c.done));
  })();
  const server: XenstoreServer = {
    path,
    get connections() {
      return conns.size;
    },
    close() {
      if (closing) return;
      closing = true;
      try {
        listener.close();
      } catch {
        // already closed
      }
      for (const c of conns) c.close();
      try {
        Deno.removeSync(path);
      } catch {
        // gone already
      }
      signalClose();
    },
    closed,
  };
  return server;
}

interface Limits {
  readonly maxWatches: number;
  readonly maxTransactions: number;
  readonly maxPendingOutput: number;
}

const OK = encodeStrings([XS_OK]);

/** Throws EINVAL unless `x` is defined. */
function need<T>(x: T | undefined): T {
  if (x === undefined) throw new XenstoreError("EINVAL");
  return x;
}

/** A decimal domid 0..65535, or EINVAL. */
function parseDomid(s: string): number {
  if (!/^\d{1,5}$/.test(s)) throw new XenstoreError("EINVAL");
  const n = Number(s);
  if (n > 0xffff) throw new XenstoreError("EINVAL");
  return n;
}

/** 64-bit FNV-1a of `bytes`, in decimal: the generation string of DIRECTORY_PART. */
function fnv1a64(bytes: Uint8Array): string {
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
  return h.toString();
}

class ServerConnection {
  readonly done: Promise<void>;
  #parser = new XsFrameParser();
  /** Daemon watch ids by `path\0token` as the client gave them. */
  #watches = new Map<string, number>();
  #txs = new Set<number>();
  #out: Uint8Array[] = [];
  #outBytes = 0;
  #writing = false;
  #closed = false;

  constructor(
    readonly daemon: SimXenstoreDaemon,
    readonly conn: Deno.UnixConn,
    readonly id: number,
    public domid: number,
    readonly log: Logger,
    readonly onRequest: ((req: RequestInfo) => void) | undefined,
    readonly limits: Limits,
  ) {
    this.done = this.#run();
  }

  get #who(): string {
    return `connection #${this.id} (dom${this.domid})`;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // already closed
    }
    this.#cleanup();
  }

  /** Disconnects a misbehaving client, saying why. */
  #drop(reason: string): void {
    if (this.#closed) return;
    this.log.warn(`${this.#who}: disconnected: ${reason}`);
    this.close();
  }

  async #run(): Promise<void> {
    const buf = new Uint8Array(65536);
    try {
      while (!this.#closed) {
        const n = await this.conn.read(buf);
        if (n === null) break;
        let msgs: XsMessage[];
        try {
          msgs = this.#parser.push(buf.subarray(0, n));
        } catch (e) {
          this.#drop(e instanceof Error ? e.message : String(e));
          return;
        }
        for (const msg of msgs) {
          if (this.#closed) return;
          this.#handle(msg);
        }
      }
    } catch (e) {
      if (!this.#closed && !(e instanceof Deno.errors.ConnectionReset)) {
        this.log.warn(`${this.#who}: read failed: ${e instanceof Error ? e.message : e}`);
      }
    } finally {
      this.close();
    }
  }

  /** Removes the connection's watches and aborts its transactions. */
  #cleanup(): void {
    for (const id of this.#watches.values()) this.daemon.removeWatch(id);
    this.#watches.clear();
    for (const tx of this.#txs) {
      try {
        this.daemon.transactionEnd(this.domid, tx, false);
      } catch {
        // gone already
      }
    }
    this.#txs.clear();
  }

  #send(type: number, reqId: number, txId: number, payload: Uint8Array): void {
    if (this.#closed) return;
    const bytes = encodeMessage({ type, reqId, txId, payload });
    this.#out.push(bytes);
    this.#outBytes += bytes.length;
    if (this.#outBytes > this.limits.maxPendingOutput) {
      this.#drop(`not reading its replies (${this.#outBytes} bytes pending)`);
      return;
    }
    if (!this.#writing) void this.#flush();
  }

  async #flush(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#out.length && !this.#closed) {
        const bytes = concatBytes(this.#out);
        this.#out = [];
        let at = 0;
        while (at < bytes.length) {
          const n = await this.conn.write(bytes.subarray(at));
          at += n;
          this.#outBytes -= n;
        }
      }
    } catch (e) {
      if (!this.#closed) {
        this.log.warn(`${this.#who}: write failed: ${e instanceof Error ? e.message : e}`);
        this.close();
      }
    } finally {
      this.#writing = false;
    }
  }

  #handle(msg: XsMessage): void {
    this.onRequest?.({
      connection: this.id,
      domid: this.domid,
      type: msg.type,
      typeName: xsTypeName(msg.type),
      txId: msg.txId,
      payload: msg.payload,
    });
    let reply: Uint8Array;
    try {
      reply = this.#dispatch(msg);
    } catch (e) {
      let errno = "EIO";
      if (e instanceof XenstoreError) errno = e.errno;
      else this.log.error(`${this.#who}: ${xsTypeName(msg.type)} failed: ${e}`);
      this.#send(XS_ERROR, msg.reqId, msg.txId, encodeError(errno));
      return;
    }
    if (reply.length > XS_PAYLOAD_MAX) {
      this.#send(XS_ERROR, msg.reqId, msg.txId, encodeError("E2BIG"));
    } else {
      this.#send(msg.type, msg.reqId, msg.txId, reply);
    }
  }

  /** An absolute path: relative ones are under the domain's home. */
  #abs(path: string): string {
    if (path.startsWith("/") || path.startsWith("@") || path === "") return path;
    return `/local/domain/${this.domid}/${path}`;
  }

  /** The transaction a request names: 0, or one this connection started (else ENOENT). */
  #tx(msg: XsMessage): number {
    if (msg.txId === 0) return 0;
    if (!this.#txs.has(msg.txId)) throw new XenstoreError("ENOENT");
    return msg.txId;
  }

  #privileged(): void {
    if (this.domid !== 0) throw new XenstoreError("EACCES");
  }

  #dispatch(msg: XsMessage): Uint8Array {
    const d = this.daemon;
    const p = msg.payload;
    switch (msg.type) {
      case XS_READ: {
        const tx = this.#tx(msg);
        return encodeText(d.read(this.domid, tx, this.#abs(need(decodeOneArg(p)))));
      }
      case XS_WRITE: {
        const tx = this.#tx(msg);
        const { args, rest } = need(decodeArgs(p, 1));
        d.write(this.domid, tx, this.#abs(args[0]), decodeText(rest));
        return OK;
      }
      case XS_MKDIR: {
        const tx = this.#tx(msg);
        d.mkdir(this.domid, tx, this.#abs(need(decodeOneArg(p))));
        return OK;
      }
      case XS_RM: {
        const tx = this.#tx(msg);
        d.rm(this.domid, tx, this.#abs(need(decodeOneArg(p))));
        return OK;
      }
      case XS_DIRECTORY: {
        const tx = this.#tx(msg);
        return encodeStrings(d.directory(this.domid, tx, this.#abs(need(decodeOneArg(p)))));
      }
      case XS_DIRECTORY_PART:
        return this.#directoryPart(msg);
      case XS_GET_PERMS: {
        const tx = this.#tx(msg);
        return encodePerms(d.getPerms(this.domid, tx, this.#abs(need(decodeOneArg(p)))));
      }
      case XS_SET_PERMS: {
        const tx = this.#tx(msg);
        const n = countStrings(p);
        if (n < 2) throw new XenstoreError("EINVAL");
        const { args } = need(decodeArgs(p, n));
        const perms: Perm[] = args.slice(1).map((s) => need(parsePerm(s)));
        d.setPerms(this.domid, tx, this.#abs(args[0]), perms);
        return OK;
      }
      case XS_WATCH:
        return this.#watch(p);
      case XS_UNWATCH: {
        const { args } = need(decodeArgs(p, 2));
        const key = `${args[0]}\0${args[1]}`;
        const id = this.#watches.get(key);
        if (id === undefined) throw new XenstoreError("ENOENT");
        this.#watches.delete(key);
        d.removeWatch(id);
        return OK;
      }
      case XS_TRANSACTION_START: {
        if (msg.txId !== 0) throw new XenstoreError("EBUSY");
        if (this.#txs.size >= this.limits.maxTransactions) throw new XenstoreError("ENOSPC");
        const id = d.transactionStart(this.domid);
        this.#txs.add(id);
        return encodeStrings([String(id)]);
      }
      case XS_TRANSACTION_END: {
        const tx = this.#tx(msg);
        if (tx === 0) throw new XenstoreError("ENOENT");
        const arg = need(decodeOneArg(p));
        if (arg !== "T" && arg !== "F") throw new XenstoreError("EINVAL");
        this.#txs.delete(tx);
        d.transactionEnd(this.domid, tx, arg === "T");
        return OK;
      }
      case XS_RESET_WATCHES:
        this.#cleanup();
        return OK;
      case XS_GET_DOMAIN_PATH:
        return encodeStrings([`/local/domain/${parseDomid(need(decodeOneArg(p)))}`]);
      case XS_CONTROL:
        this.#privileged();
        return this.#control(p);
      case XS_INTRODUCE: {
        this.#privileged();
        const { args } = need(decodeArgs(p, 3));
        const domid = parseDomid(args[0]);
        if (domid === 0) throw new XenstoreError("EINVAL");
        d.introduceDomain(domid);
        return OK;
      }
      case XS_RELEASE: {
        this.#privileged();
        const domid = parseDomid(need(decodeOneArg(p)));
        if (domid === 0) throw new XenstoreError("EINVAL");
        if (!d.domains.has(domid)) throw new XenstoreError("ENOENT");
        d.releaseDomain(domid);
        return OK;
      }
      case XS_IS_DOMAIN_INTRODUCED: {
        this.#privileged();
        const domid = parseDomid(need(decodeOneArg(p)));
        return encodeStrings([d.domains.has(domid) ? "T" : "F"]);
      }
      case XS_RESUME: {
        this.#privileged();
        const domid = parseDomid(need(decodeOneArg(p)));
        if (!d.domains.has(domid)) throw new XenstoreError("ENOENT");
        return OK;
      }
      case XS_SET_TARGET:
        this.#privileged();
        throw new XenstoreError("ENOSYS");
      default:
        this.log.warn(`${this.#who}: unknown request ${xsTypeName(msg.type)}: ENOSYS`);
        throw new XenstoreError("ENOSYS");
    }
  }

  #watch(p: Uint8Array): Uint8Array {
    const { args } = need(decodeArgs(p, 2));
    const [given, token] = args;
    const key = `${given}\0${token}`;
    if (this.#watches.has(key)) throw new XenstoreError("EEXIST");
    if (this.#watches.size >= this.limits.maxWatches) throw new XenstoreError("E2BIG");
    const abs = this.#abs(given);
    const home = `/local/domain/${this.domid}/`;
    const relative = abs !== given;
    const id = this.daemon.addWatch(this.domid, abs, token, (path, tok) => {
      const shown = relative && path.startsWith(home) ? path.slice(home.length) : path;
      this.#send(XS_WATCH_EVENT, 0, 0, encodeWatch(shown, tok));
    });
    this.#watches.set(key, id);
    return OK;
  }

  #directoryPart(msg: XsMessage): Uint8Array {
    const tx = this.#tx(msg);
    if (countStrings(msg.payload) !== 2) throw new XenstoreError("EINVAL");
    const { args } = need(decodeArgs(msg.payload, 2));
    const children = encodeStrings(this.daemon.directory(this.domid, tx, this.#abs(args[0])));
    // atoi: leading digits, else 0; a negative offset is past the end.
    const m = /^\s*([+-]?)(\d*)/.exec(args[1])!;
    const off = m[1] === "-" && Number(m[2]) > 0 ? Infinity : Number(m[2] || 0);
    const gen = encodeStrings([fnv1a64(children)]);
    if (off >= children.length) return concatBytes([gen, new Uint8Array(1)]);
    const maxlen = XS_PAYLOAD_MAX - gen.length - 1;
    let len = 0;
    let child = off;
    for (;;) {
      const end = children.indexOf(0, child);
      const clen = end - child;
      if (len + clen >= maxlen) break;
      len += clen + 1;
      child = end + 1;
      if (off + len === children.length) break;
    }
    const last = off + len === children.length;
    return concatBytes([
      gen,
      children.subarray(off, off + len),
      last ? new Uint8Array(1) : new Uint8Array(0),
    ]);
  }

  #control(p: Uint8Array): Uint8Array {
    const n = countStrings(p);
    const { args } = need(decodeArgs(p, Math.max(n, 1)));
    switch (args[0]) {
      case AS_DOMAIN_COMMAND: {
        if (args.length !== 2) throw new XenstoreError("EINVAL");
        const domid = parseDomid(args[1]);
        if (this.#watches.size || this.#txs.size) throw new XenstoreError("EBUSY");
        this.domid = domid;
        return OK;
      }
      case "print":
        this.log.info(`${this.#who}: ${args.slice(1).join(" ")}`);
        return OK;
      case "help":
        return encodeStrings([`${AS_DOMAIN_COMMAND} <domid>\nprint <string>\nhelp\n`]);
      default:
        throw new XenstoreError("EINVAL");
    }
  }
}
