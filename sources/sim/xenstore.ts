/**
 * An in-process xenstore, modelled on xenstored's semantics.
 *
 * `SimXenstoreDaemon` is the store itself: a tree of nodes with values,
 * permissions and generation counters, operated synchronously on behalf of a
 * domain and a transaction id (0 = none), as xenstored's request handlers are.
 * It knows nothing of the client interface, so a wire-protocol server
 * (xs_wire.h) can sit on the same core later. `daemon.connect(domid)` gives
 * the thin async adapter that implements the project's `Xenstore` interface.
 *
 * Semantics (xenstored's, with the choices noted):
 * - Paths are absolute, characters `[A-Za-z0-9/_@-]`, no `//`, no trailing
 *   `/` except the root, at most 3072 bytes; anything else is EINVAL.
 * - Domain 0 is privileged and bypasses permission checks. For the others,
 *   the first `Perm` names the owner (who may do anything) and the default
 *   for the domains not listed; later entries give a domain's own letter.
 * - A missing node answers ENOENT, or EACCES when the nearest existing
 *   ancestor is not readable (xenstored hides existence that way).
 * - write/mkdir create missing parents. A new node copies its parent's
 *   permissions; an unprivileged creator becomes its owner. Creating needs
 *   write permission on the nearest existing ancestor.
 * - rm removes the subtree; rm of a missing node succeeds when its parent
 *   exists, else ENOENT; rm of "/" is EINVAL.
 * - setPerms is for the owner or dom0 (else EACCES); an unprivileged owner
 *   may not hand the node to another owner (EPERM).
 * - Watches fire once at registration with the watched path, then for every
 *   write/mkdir(create)/rm/setPerms at or below the watched path (event =
 *   the changed path), and when an ancestor of the watched path is removed
 *   (event = the watched path). Events are queued with queueMicrotask, in
 *   order, and only reach watchers that may read the node (dom0 sees all;
 *   rm is judged by the permissions before removal, setPerms by the old or
 *   new ones). "@introduceDomain"/"@releaseDomain" fire on
 *   `introduceDomain`/`releaseDomain`, for dom0 and for domains given read
 *   access by `setPerms` on those names.
 * - Transactions work on a snapshot of the tree taken at their start. Every
 *   node a transaction reads, writes, lists or creates (and the parents
 *   whose child lists it changes) is recorded with its generation; commit
 *   answers EAGAIN when any of them changed meanwhile, and otherwise applies
 *   all writes at once and fires their watches afterwards.
 * - `releaseDomain` revokes the released domain's rights (as xenstored does
 *   since XSA-322): nodes it owned pass to dom0, its other entries go.
 */
import { Observable, type Subscriber } from "rxjs";
import {
  type Perm,
  type PermLetter,
  type Xenstore,
  XenstoreError,
  type XenstoreOps,
} from "../platform.ts";

/** XENSTORE_ABS_PATH_MAX (xs_wire.h). */
export const XENSTORE_ABS_PATH_MAX = 3072;

/** How many times `Xenstore.transaction` runs a body whose commit answers EAGAIN. */
export const TRANSACTION_TRIES = 16;

/** The special watch names xenstored fires itself. */
export const SPECIAL_WATCHES = ["@introduceDomain", "@releaseDomain"] as const;

interface Node {
  readonly value: string;
  /** Child names, in creation order (as xenstored lists them). */
  readonly children: readonly string[];
  readonly perms: readonly Perm[];
  /** Bumped (from the daemon's counter) each time the node changes. */
  readonly generation: number;
}

type Tree = Map<string, Node>;

/** A change waiting to be told to watchers. */
type WatchEvent =
  | { kind: "change"; path: string; perms: (readonly Perm[])[] }
  | { kind: "rm"; path: string; removed: Map<string, readonly Perm[]> }
  | { kind: "special"; path: string };

interface Transaction {
  readonly id: number;
  readonly domid: number;
  /** The transaction's own copy of the tree (snapshot plus its writes). */
  readonly tree: Tree;
  /** Generation (or -1 for absent) of each node accessed, as first seen. */
  readonly accessed: Map<string, number>;
  /** Paths the transaction set or deleted. */
  readonly changed: Set<string>;
  readonly events: WatchEvent[];
}

interface Context {
  readonly tree: Tree;
  readonly tx?: Transaction;
}

interface Watch {
  readonly id: number;
  readonly domid: number;
  readonly path: string;
  readonly token: string;
  readonly deliver: (path: string, token: string) => void;
}

const PATH_RE = /^(\/[A-Za-z0-9_@-]+)+$/;
const SPECIAL_RE = /^@[A-Za-z0-9_@-]+$/;
const LETTERS: readonly string[] = ["n", "r", "w", "b"];

/** Whether `path` is a valid absolute xenstore path. */
export function isValidPath(path: string): boolean {
  return typeof path === "string" && path.length <= XENSTORE_ABS_PATH_MAX &&
    (path === "/" || PATH_RE.test(path));
}

function parentOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

function baseOf(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

function childPath(parent: string, name: string): string {
  return parent === "/" ? `/${name}` : `${parent}/${name}`;
}

/** Whether `path` is `base` or lies below it. */
function isAtOrBelow(path: string, base: string): boolean {
  if (path === base) return true;
  if (base === "/") return path.startsWith("/");
  return path.startsWith(base + "/");
}

function access(
  domid: number,
  perms: readonly Perm[],
): { read: boolean; write: boolean; owner: boolean } {
  if (domid === 0 || perms[0]?.domid === domid) return { read: true, write: true, owner: true };
  let letter: PermLetter = perms[0]?.perm ?? "n";
  for (let i = 1; i < perms.length; i++) {
    if (perms[i].domid === domid) {
      letter = perms[i].perm;
      break;
    }
  }
  return {
    read: letter === "r" || letter === "b",
    write: letter === "w" || letter === "b",
    owner: false,
  };
}

function canRead(domid: number, perms: readonly Perm[]): boolean {
  return access(domid, perms).read;
}

function canWrite(domid: number, perms: readonly Perm[]): boolean {
  return access(domid, perms).write;
}

function copyPerms(perms: readonly Perm[]): Perm[] {
  return perms.map((p) => ({ domid: p.domid, perm: p.perm }));
}

function formatPerms(perms: readonly Perm[]): string {
  return perms.map((p) => `${p.perm}${p.domid}`).join(",");
}

/**
 * The store: a tree of nodes operated synchronously on behalf of a domain
 * and a transaction (`tx` 0 = none), as xenstored's request handlers are.
 * Errors are thrown as `XenstoreError` with xenstored's errno names.
 */
export class SimXenstoreDaemon {
  #nodes: Tree = new Map();
  #generation = 0;
  #txs = new Map<number, Transaction>();
  #nextTx = 1;
  #watches = new Map<number, Watch>();
  #nextWatch = 1;
  #special = new Map<string, Perm[]>(SPECIAL_WATCHES.map((n) => [n, [{ domid: 0, perm: "n" }]]));
  #domains = new Set<number>([0]);

  constructor() {
    this.#nodes.set("/", {
      value: "",
      children: [],
      perms: [{ domid: 0, perm: "n" }],
      generation: 0,
    });
  }

  /** A connection acting as domain `domid` (0 is privileged). */
  connect(domid: number): Xenstore {
    if (!Number.isInteger(domid) || domid < 0 || domid > 0xffff) {
      throw new XenstoreError("EINVAL");
    }
    return new SimXenstoreConnection(this, domid);
  }

  /** Domains introduced and not released (dom0 always). */
  get domains(): ReadonlySet<number> {
    return this.#domains;
  }

  /** The number of registered watches, over all connections. */
  get watchCount(): number {
    return this.#watches.size;
  }

  // ---- node operations --------------------------------------------------

  /** XS_READ. Throws ENOENT for a missing node. */
  read(domid: number, tx: number, path: string): string {
    const ctx = this.#context(domid, tx);
    this.#checkPath(path);
    const node = this.#get(ctx, path);
    if (!node) throw this.#missing(ctx, domid, path);
    if (!canRead(domid, node.perms)) throw new XenstoreError("EACCES", path);
    return node.value;
  }

  /** XS_WRITE. Creates missing parents. */
  write(domid: number, tx: number, path: string, value: string): void {
    const ctx = this.#context(domid, tx);
    this.#checkPath(path);
    const node = this.#get(ctx, path);
    let perms: readonly Perm[];
    if (node) {
      if (!canWrite(domid, node.perms)) throw new XenstoreError("EACCES", path);
      this.#put(ctx, path, { ...node, value: String(value) });
      perms = node.perms;
    } else {
      perms = this.#create(ctx, domid, path, String(value));
    }
    this.#emit(ctx, { kind: "change", path, perms: [perms] });
  }

  /** XS_MKDIR. An existing node is left as it is (and fires nothing). */
  mkdir(domid: number, tx: number, path: string): void {
    const ctx = this.#context(domid, tx);
    this.#checkPath(path);
    const node = this.#get(ctx, path);
    if (node) {
      if (!canWrite(domid, node.perms)) throw new XenstoreError("EACCES", path);
      return;
    }
    const perms = this.#create(ctx, domid, path, "");
    this.#emit(ctx, { kind: "change", path, perms: [perms] });
  }

  /** XS_RM. Removes the subtree; a missing node is fine when its parent exists. */
  rm(domid: number, tx: number, path: string): void {
    const ctx = this.#context(domid, tx);
    this.#checkPath(path);
    if (path === "/") throw new XenstoreError("EINVAL", path);
    const node = this.#get(ctx, path);
    if (!node) {
      const err = this.#missing(ctx, domid, path);
      if (err.errno === "ENOENT" && this.#get(ctx, parentOf(path))) return;
      throw err;
    }
    if (!canWrite(domid, node.perms)) throw new XenstoreError("EACCES", path);
    const removed = new Map<string, readonly Perm[]>();
    const drop = (p: string) => {
      const n = this.#get(ctx, p);
      if (!n) return;
      removed.set(p, n.perms);
      for (const c of n.children) drop(childPath(p, c));
      this.#delete(ctx, p);
    };
    drop(path);
    const parentPath = parentOf(path);
    const parent = this.#get(ctx, parentPath);
    if (parent) {
      const name = baseOf(path);
      this.#put(ctx, parentPath, {
        ...parent,
        children: parent.children.filter((c) => c !== name),
      });
    }
    this.#emit(ctx, { kind: "rm", path, removed });
  }

  /** XS_DIRECTORY. Throws ENOENT for a missing node. */
  directory(domid: number, tx: number, path: string): string[] {
    const ctx = this.#context(domid, tx);
    this.#checkPath(path);
    const node = this.#get(ctx, path);
    if (!node) throw this.#missing(ctx, domid, path);
    if (!canRead(domid, node.perms)) throw new XenstoreError("EACCES", path);
    return [...node.children];
  }

  /** XS_GET_PERMS. Also answers for "@introduceDomain" and "@releaseDomain". */
  getPerms(domid: number, tx: number, path: string): Perm[] {
    const ctx = this.#context(domid, tx);
    const special = this.#special.get(path);
    if (special) {
      if (!canRead(domid, special)) throw new XenstoreError("EACCES", path);
      return copyPerms(special);
    }
    this.#checkPath(path);
    const node = this.#get(ctx, path);
    if (!node) throw this.#missing(ctx, domid, path);
    if (!canRead(domid, node.perms)) throw new XenstoreError("EACCES", path);
    return copyPerms(node.perms);
  }

  /** XS_SET_PERMS: for the owner or dom0; an unprivileged owner may not change the owner. */
  setPerms(domid: number, tx: number, path: string, perms: readonly Perm[]): void {
    const ctx = this.#context(domid, tx);
    if (
      !Array.isArray(perms) || perms.length === 0 ||
      perms.some((p) =>
        !Number.isInteger(p?.domid) || p.domid < 0 || p.domid > 0xffff || !LETTERS.includes(p.perm)
      )
    ) {
      throw new XenstoreError("EINVAL", path);
    }
    const special = this.#special.get(path);
    if (special) {
      this.#checkSetPerms(domid, path, special, perms);
      this.#special.set(path, copyPerms(perms));
      return;
    }
    this.#checkPath(path);
    const node = this.#get(ctx, path);
    if (!node) throw this.#missing(ctx, domid, path);
    this.#checkSetPerms(domid, path, node.perms, perms);
    const next = copyPerms(perms);
    this.#put(ctx, path, { ...node, perms: next });
    this.#emit(ctx, { kind: "change", path, perms: [next, node.perms] });
  }

  // ---- transactions -----------------------------------------------------

  /** XS_TRANSACTION_START: a transaction id for `domid`, over a snapshot of the tree. */
  transactionStart(domid: number): number {
    const id = this.#nextTx++;
    this.#txs.set(id, {
      id,
      domid,
      tree: new Map(this.#nodes),
      accessed: new Map(),
      changed: new Set(),
      events: [],
    });
    return id;
  }

  /**
   * XS_TRANSACTION_END. With `commit` false the transaction is dropped.
   * With `commit` true, EAGAIN when a node it accessed changed meanwhile
   * (the transaction is then gone, as in xenstored); else its writes apply
   * at once and its watch events are queued.
   */
  transactionEnd(domid: number, tx: number, commit: boolean): void {
    const t = this.#txs.get(tx);
    if (!t || t.domid !== domid) throw new XenstoreError("ENOENT");
    this.#txs.delete(tx);
    if (!commit) return;
    for (const [path, gen] of t.accessed) {
      if ((this.#nodes.get(path)?.generation ?? -1) !== gen) throw new XenstoreError("EAGAIN");
    }
    for (const path of t.changed) {
      const node = t.tree.get(path);
      if (node) this.#nodes.set(path, { ...node, generation: ++this.#generation });
      else this.#nodes.delete(path);
    }
    for (const ev of t.events) this.#dispatch(ev);
  }

  // ---- watches ----------------------------------------------------------

  /**
   * XS_WATCH: registers a watch of domain `domid` on `path` (an absolute
   * path, or a name starting with "@"). `deliver(eventPath, token)` is
   * called from a microtask: once at once with `path`, then per event.
   * Returns the watch's id, for `removeWatch`.
   */
  addWatch(
    domid: number,
    path: string,
    token: string,
    deliver: (path: string, token: string) => void,
  ): number {
    if (!isValidPath(path) && !(path.length <= XENSTORE_ABS_PATH_MAX && SPECIAL_RE.test(path))) {
      throw new XenstoreError("EINVAL", path);
    }
    const watch: Watch = { id: this.#nextWatch++, domid, path, token, deliver };
    this.#watches.set(watch.id, watch);
    this.#queue(watch, path);
    return watch.id;
  }

  /** XS_UNWATCH by id; events already queued for it are dropped. */
  removeWatch(id: number): boolean {
    return this.#watches.delete(id);
  }

  // ---- domains ----------------------------------------------------------

  /** Domain `domid` appeared: fires "@introduceDomain". */
  introduceDomain(domid: number): void {
    this.#domains.add(domid);
    this.#dispatch({ kind: "special", path: "@introduceDomain" });
  }

  /**
   * Domain `domid` went away: revokes its rights (its nodes pass to dom0,
   * its other permission entries go) and fires "@releaseDomain".
   */
  releaseDomain(domid: number): void {
    this.#domains.delete(domid);
    if (domid !== 0) {
      const revoke = (perms: readonly Perm[]): Perm[] | undefined => {
        if (!perms.some((p) => p.domid === domid)) return undefined;
        const owner = perms[0].domid === domid ? { domid: 0, perm: perms[0].perm } : perms[0];
        return [owner, ...perms.slice(1).filter((p) => p.domid !== domid)];
      };
      for (const [path, node] of this.#nodes) {
        const perms = revoke(node.perms);
        if (perms) this.#nodes.set(path, { ...node, perms, generation: ++this.#generation });
      }
      for (const [name, perms] of this.#special) {
        const next = revoke(perms);
        if (next) this.#special.set(name, next);
      }
    }
    this.#dispatch({ kind: "special", path: "@releaseDomain" });
  }

  // ---- debugging --------------------------------------------------------

  /**
   * The subtree at `path` as lines `path = value` (depth first, children in
   * creation order), with the permissions appended when `perms` is set.
   */
  dump(path = "/", options: { perms?: boolean } = {}): string {
    const lines: string[] = [];
    const walk = (p: string) => {
      const node = this.#nodes.get(p);
      if (!node) return;
      lines.push(`${p} = ${node.value}${options.perms ? `  (${formatPerms(node.perms)})` : ""}`);
      for (const c of node.children) walk(childPath(p, c));
    };
    walk(path);
    return lines.join("\n");
  }

  // ---- internals --------------------------------------------------------

  #context(domid: number, tx: number): Context {
    if (!tx) return { tree: this.#nodes };
    const t = this.#txs.get(tx);
    if (!t || t.domid !== domid) throw new XenstoreError("ENOENT");
    return { tree: t.tree, tx: t };
  }

  #checkPath(path: string): void {
    if (!isValidPath(path)) throw new XenstoreError("EINVAL", path);
  }

  #touch(ctx: Context, path: string): void {
    if (ctx.tx && !ctx.tx.accessed.has(path)) {
      ctx.tx.accessed.set(path, ctx.tree.get(path)?.generation ?? -1);
    }
  }

  #get(ctx: Context, path: string): Node | undefined {
    this.#touch(ctx, path);
    return ctx.tree.get(path);
  }

  #put(ctx: Context, path: string, node: Node): void {
    this.#touch(ctx, path);
    if (ctx.tx) {
      ctx.tree.set(path, node);
      ctx.tx.changed.add(path);
    } else {
      ctx.tree.set(path, { ...node, generation: ++this.#generation });
    }
  }

  #delete(ctx: Context, path: string): void {
    this.#touch(ctx, path);
    ctx.tree.delete(path);
    ctx.tx?.changed.add(path);
  }

  /** The error for a missing node: EACCES when the nearest existing ancestor is not readable. */
  #missing(ctx: Context, domid: number, path: string): XenstoreError {
    let p = path;
    while (p !== "/") {
      p = parentOf(p);
      const node = this.#get(ctx, p);
      if (node) {
        return canRead(domid, node.perms)
          ? new XenstoreError("ENOENT", path)
          : new XenstoreError("EACCES", path);
      }
    }
    return new XenstoreError("ENOENT", path);
  }

  /** Creates `path` and its missing parents; returns the new node's permissions. */
  #create(ctx: Context, domid: number, path: string, value: string): readonly Perm[] {
    const missing: string[] = [path];
    let top = parentOf(path);
    let ancestor = this.#get(ctx, top);
    while (!ancestor) {
      missing.push(top);
      top = parentOf(top);
      ancestor = this.#get(ctx, top);
    }
    if (!canRead(domid, ancestor.perms) || !canWrite(domid, ancestor.perms)) {
      throw new XenstoreError("EACCES", path);
    }
    let parentPath = top;
    let parent: Node = ancestor;
    let perms: readonly Perm[] = ancestor.perms;
    for (let i = missing.length - 1; i >= 0; i--) {
      const p = missing[i];
      const inherited = copyPerms(parent.perms);
      if (domid !== 0) inherited[0] = { domid, perm: inherited[0].perm };
      perms = inherited;
      const node: Node = { value: i === 0 ? value : "", children: [], perms, generation: 0 };
      this.#put(ctx, p, node);
      this.#put(ctx, parentPath, { ...parent, children: [...parent.children, baseOf(p)] });
      parentPath = p;
      parent = node;
    }
    return perms;
  }

  #checkSetPerms(domid: number, path: string, old: readonly Perm[], next: readonly Perm[]): void {
    if (!access(domid, old).owner) throw new XenstoreError("EACCES", path);
    if (domid !== 0 && next[0].domid !== old[0].domid) throw new XenstoreError("EPERM", path);
  }

  #emit(ctx: Context, ev: WatchEvent): void {
    if (ctx.tx) ctx.tx.events.push(ev);
    else this.#dispatch(ev);
  }

  #dispatch(ev: WatchEvent): void {
    for (const w of this.#watches.values()) {
      const hit = this.#match(w, ev);
      if (hit !== undefined) this.#queue(w, hit);
    }
  }

  /** The path to tell watch `w` about `ev`, or undefined when it does not fire (or may not see it). */
  #match(w: Watch, ev: WatchEvent): string | undefined {
    switch (ev.kind) {
      case "special": {
        if (w.path !== ev.path) return undefined;
        const perms = this.#special.get(ev.path);
        return !perms || canRead(w.domid, perms) ? ev.path : undefined;
      }
      case "change":
        if (!isAtOrBelow(ev.path, w.path)) return undefined;
        return ev.perms.some((p) => canRead(w.domid, p)) ? ev.path : undefined;
      case "rm": {
        let hit: string;
        if (isAtOrBelow(ev.path, w.path)) hit = ev.path;
        else if (isAtOrBelow(w.path, ev.path)) hit = w.path;
        else return undefined;
        let p = hit;
        let perms = ev.removed.get(p);
        while (!perms && p !== "/") {
          p = parentOf(p);
          perms = ev.removed.get(p);
        }
        return perms && canRead(w.domid, perms) ? hit : undefined;
      }
    }
  }

  #queue(w: Watch, path: string): void {
    queueMicrotask(() => {
      if (this.#watches.get(w.id) === w) w.deliver(path, w.token);
    });
  }
}

/** The async `Xenstore` of one domain over a `SimXenstoreDaemon`. */
class SimXenstoreConnection implements Xenstore {
  #closed = false;
  #watches = new Map<number, Subscriber<string>>();
  #txs = new Set<number>();
  #nextToken = 1;

  constructor(readonly daemon: SimXenstoreDaemon, readonly domid: number) {}

  read(path: string): Promise<string | undefined> {
    return this.#ops(0).read(path);
  }
  write(path: string, value: string): Promise<void> {
    return this.#ops(0).write(path, value);
  }
  mkdir(path: string): Promise<void> {
    return this.#ops(0).mkdir(path);
  }
  rm(path: string): Promise<void> {
    return this.#ops(0).rm(path);
  }
  directory(path: string): Promise<string[]> {
    return this.#ops(0).directory(path);
  }
  getPerms(path: string): Promise<Perm[]> {
    return this.#ops(0).getPerms(path);
  }
  setPerms(path: string, perms: Perm[]): Promise<void> {
    return this.#ops(0).setPerms(path, perms);
  }

  watch(path: string): Observable<string> {
    return new Observable<string>((sub) => {
      if (this.#closed) {
        sub.error(new XenstoreError("EBADF", path));
        return;
      }
      let id: number;
      try {
        id = this.daemon.addWatch(
          this.domid,
          path,
          `rxfb-${this.#nextToken++}`,
          (p) => sub.next(p),
        );
      } catch (e) {
        sub.error(e);
        return;
      }
      this.#watches.set(id, sub);
      return () => {
        this.daemon.removeWatch(id);
        this.#watches.delete(id);
      };
    });
  }

  async transaction<T>(body: (tx: XenstoreOps) => Promise<T>): Promise<T> {
    for (let attempt = 0; attempt < TRANSACTION_TRIES; attempt++) {
      this.#check();
      const tx = this.daemon.transactionStart(this.domid);
      this.#txs.add(tx);
      let result: T;
      try {
        result = await body(this.#ops(tx));
      } catch (e) {
        this.#end(tx, false);
        throw e;
      }
      try {
        this.#end(tx, true);
        return result;
      } catch (e) {
        if (e instanceof XenstoreError && e.errno === "EAGAIN") continue;
        throw e;
      }
    }
    throw new XenstoreError("EAGAIN");
  }

  /** Removes this connection's watches (completing them) and aborts its transactions. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const tx of this.#txs) this.#end(tx, false);
    const subs = [...this.#watches];
    this.#watches.clear();
    for (const [id, sub] of subs) {
      this.daemon.removeWatch(id);
      sub.complete();
    }
  }

  #end(tx: number, commit: boolean): void {
    if (!this.#txs.delete(tx)) throw new XenstoreError("ENOENT");
    try {
      this.daemon.transactionEnd(this.domid, tx, commit);
    } catch (e) {
      if (commit) throw e;
    }
  }

  #check(): void {
    if (this.#closed) throw new XenstoreError("EBADF");
  }

  #ops(tx: number): XenstoreOps {
    const d = this.daemon;
    const domid = this.domid;
    // Each call runs the synchronous operation inside an async function, so
    // errors become rejections and watch events (queued by the daemon) are
    // delivered after the call returns, never inside it.
    const run = async <R>(f: () => R): Promise<R> => {
      this.#check();
      // A transaction's ops used after it ended (the daemon would say ENOENT too,
      // which read/directory below must not take for a missing node).
      if (tx && !this.#txs.has(tx)) throw new XenstoreError("ENOENT");
      return await f();
    };
    return {
      read: (path) =>
        run(() => {
          try {
            return d.read(domid, tx, path);
          } catch (e) {
            if (e instanceof XenstoreError && e.errno === "ENOENT") return undefined;
            throw e;
          }
        }),
      write: (path, value) => run(() => d.write(domid, tx, path, value)),
      mkdir: (path) => run(() => d.mkdir(domid, tx, path)),
      rm: (path) => run(() => d.rm(domid, tx, path)),
      directory: (path) =>
        run(() => {
          try {
            return d.directory(domid, tx, path);
          } catch (e) {
            if (e instanceof XenstoreError && e.errno === "ENOENT") return [];
            throw e;
          }
        }),
      getPerms: (path) => run(() => d.getPerms(domid, tx, path)),
      setPerms: (path, perms) => run(() => d.setPerms(domid, tx, path, perms)),
    };
  }
}
