import type { Observable } from "rxjs";

/** xenstore permission letters: n(one), r(ead), w(rite), b(oth). */
export type PermLetter = "n" | "r" | "w" | "b";

/** One xenstore permission entry: the first entry names the owner and the default for others. */
export interface Perm {
  readonly domid: number;
  readonly perm: PermLetter;
}

/** Operations of xenstore inside one transaction (or outside, when `tx` is 0). */
export interface XenstoreOps {
  /** The value, or undefined when the node does not exist. */
  read(path: string): Promise<string | undefined>;
  write(path: string, value: string): Promise<void>;
  mkdir(path: string): Promise<void>;
  rm(path: string): Promise<void>;
  /** Child names; empty when the node does not exist. */
  directory(path: string): Promise<string[]>;
  getPerms(path: string): Promise<Perm[]>;
  setPerms(path: string, perms: Perm[]): Promise<void>;
}

/** A xenstore connection as one domain sees it. */
export interface Xenstore extends XenstoreOps {
  /**
   * Watches `path` and everything below it. Emits the path that changed,
   * starting with `path` itself once (as xenstored fires a new watch at once).
   */
  watch(path: string): Observable<string>;
  /** Runs `body` in a transaction, retrying it when the commit reports EAGAIN. */
  transaction<T>(body: (tx: XenstoreOps) => Promise<T>): Promise<T>;
  close(): void;
}

/** An error answered by xenstore, named as xenstored names errno values (ENOENT, EACCES, EAGAIN, ...). */
export class XenstoreError extends Error {
  constructor(readonly errno: string, readonly path?: string) {
    super(path ? `xenstore: ${errno} on ${path}` : `xenstore: ${errno}`);
  }
}

/** One bound event channel port. */
export interface EventChannel {
  readonly localPort: number;
  /** Sends an event to the other end. */
  notify(): void;
  /** Fires when the other end notifies. Several notifications may merge into one. */
  readonly events$: Observable<void>;
  close(): void;
}

/** Event channels of the backend domain. */
export interface EventChannels {
  /** Binds to the unbound port `remotePort` that domain `domid` allocated for us. */
  bindInterdomain(domid: number, remotePort: number): EventChannel;
}

/** Guest memory mapped into our address space. */
export interface Mapping {
  /** The mapped pages, contiguous, `4096 * pages` bytes. */
  readonly bytes: Uint8Array;
  unmap(): void;
}

/** Foreign memory: frames of another domain by frame number, or by grant reference. */
export interface GuestMemory {
  /** Maps the guest frames in this order. Throws when one does not map. */
  mapFrames(domid: number, frames: readonly number[], writable: boolean): Mapping;
  /** Maps one granted page. Throws when the grant is not valid. */
  mapGrant(domid: number, gref: number, writable: boolean): Mapping;
}

/** What a backend needs from the machine it runs on: real Xen or the simulator. */
export interface Platform {
  readonly name: string;
  /** The domain the backend runs in (0 for dom0). */
  readonly backendDomid: number;
  readonly xenstore: Xenstore;
  readonly evtchn: EventChannels;
  readonly memory: GuestMemory;
}

/** Xen's page size. */
export const PAGE_SIZE = 4096;
