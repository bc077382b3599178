import type { EventChannel, Platform, Xenstore } from "../platform.ts";
import { SimEvtchnHub } from "./evtchn.ts";
import { SimDomainMemory, SimGuestMemory } from "./memory.ts";
import { SimXenstoreDaemon } from "./xenstore.ts";

/** Frames a guest allocated, as its frontends use them. */
export interface FrameRun {
  /** The first frame's number (the others follow). */
  readonly first: number;
  /** The frames' bytes, shared with whoever maps them. */
  readonly bytes: Uint8Array;
  /**
   * Where the frames are when they are a file mapping (a guest whose host is
   * another process, sim/remote.ts): the guest's Worker maps the file too.
   */
  readonly file?: { readonly path: string; readonly offset: number };
}

/** A guest's own memory: what its frontends allocate, give back and grant. */
export interface GuestDomainMemory {
  /** Allocates `count` contiguous zeroed frames. */
  alloc(count: number): FrameRun;
  /** Gives frames back; later maps of them fail. */
  free(first: number): void;
  /** Grants domain `domid` access to `frame`; returns the grant reference. */
  grant(frame: number, domid: number, readonly?: boolean): number;
}

/**
 * A guest domain as its frontends see it: its xenstore connection, memory
 * and event channels. `SimDomain` (in-process) and `RemoteDomain` (a guest
 * process of a simulated host, sim/remote.ts) are two.
 */
export interface GuestDomain {
  readonly domid: number;
  readonly name: string;
  readonly xenstore: Xenstore;
  readonly memory: GuestDomainMemory;
  /** An unbound event channel port that `remoteDomid` may bind. */
  allocUnbound(remoteDomid: number): EventChannel;
}

/** One simulated guest domain: its memory, its xenstore connection, its event channels. */
export class SimDomain implements GuestDomain {
  readonly memory: SimDomainMemory;
  readonly xenstore: Xenstore;

  constructor(private readonly xen: SimXen, readonly domid: number, readonly name: string) {
    this.memory = new SimDomainMemory(domid);
    this.xenstore = xen.xenstored.connect(domid);
  }

  /** An unbound event channel port that `remoteDomid` may bind. */
  allocUnbound(remoteDomid: number): EventChannel {
    return this.xen.evtchn.allocUnbound(this.domid, remoteDomid);
  }
}

/**
 * A simulated Xen host: xenstored, event channels and guest memory, plus the
 * toolstack's part of creating domains and their vfb/vkbd devices (what libxl
 * writes). `platform()` gives the backend's view of it.
 */
export class SimXen {
  readonly xenstored: SimXenstoreDaemon = new SimXenstoreDaemon();
  readonly evtchn: SimEvtchnHub = new SimEvtchnHub();
  private readonly domains = new Map<number, SimDomain>();
  private readonly memory = new SimGuestMemory(0, (d) => this.domains.get(d)?.memory);
  private readonly toolstack: Xenstore = this.xenstored.connect(0);

  /** The backend's platform (dom0). */
  platform(): Platform & { memory: SimGuestMemory } {
    return {
      name: "sim",
      backendDomid: 0,
      xenstore: this.xenstored.connect(0),
      evtchn: this.evtchn.forDomain(0),
      memory: this.memory,
    };
  }

  domain(domid: number): SimDomain | undefined {
    return this.domains.get(domid);
  }

  /** Creates a domain as the toolstack does: its xenstore home, owned by it. */
  async createDomain(domid: number, name = `domain ${domid}`): Promise<SimDomain> {
    if (!Number.isInteger(domid) || domid <= 0 || domid >= 0x7ff0) {
      throw new RangeError(`domain id ${domid} outside 1..32751`);
    }
    if (this.domains.has(domid)) throw new Error(`domain ${domid} exists`);
    const xs = this.toolstack;
    const home = `/local/domain/${domid}`;
    await xs.write(`${home}/name`, name);
    await xs.write(`${home}/domid`, String(domid));
    await xs.setPerms(home, [{ domid: 0, perm: "n" }, { domid, perm: "r" }]);
    await xs.mkdir(`${home}/device`);
    await xs.setPerms(`${home}/device`, [{ domid, perm: "n" }]);
    await xs.mkdir(`${home}/data`);
    await xs.setPerms(`${home}/data`, [{ domid, perm: "n" }]);
    const dom = new SimDomain(this, domid, name);
    this.domains.set(domid, dom);
    this.xenstored.introduceDomain(domid);
    return dom;
  }

  /**
   * Adds a vfb or vkbd device as libxl__device_add does: backend and frontend
   * directories, each readable by the other side, both Initialising.
   * `backendKeys` are extra backend keys (vnc, vnclisten, keymap, ...).
   */
  async addDevice(
    domid: number,
    kind: "vfb" | "vkbd",
    devid = 0,
    backendKeys: Record<string, string> = {},
  ): Promise<void> {
    const xs = this.toolstack;
    const be = `/local/domain/0/backend/${kind}/${domid}/${devid}`;
    const fe = `/local/domain/${domid}/device/${kind}/${devid}`;
    await xs.transaction(async (tx) => {
      await tx.write(`${be}/frontend`, fe);
      await tx.write(`${be}/frontend-id`, String(domid));
      await tx.write(`${be}/online`, "1");
      await tx.write(`${be}/state`, "1");
      for (const [k, v] of Object.entries(backendKeys)) await tx.write(`${be}/${k}`, v);
      await tx.setPerms(be, [{ domid: 0, perm: "n" }, { domid, perm: "r" }]);
      await tx.write(`${fe}/backend`, be);
      await tx.write(`${fe}/backend-id`, "0");
      await tx.write(`${fe}/state`, "1");
      await tx.setPerms(fe, [{ domid, perm: "n" }, { domid: 0, perm: "r" }]);
    });
    // Children written before setPerms inherited the old perms: fix them as libxl does.
    for (const dir of [be, fe]) {
      const owner = dir === be ? 0 : domid, other = dir === be ? domid : 0;
      for (const k of await xs.directory(dir)) {
        await xs.setPerms(`${dir}/${k}`, [{ domid: owner, perm: "n" }, {
          domid: other,
          perm: "r",
        }]);
      }
    }
  }

  /** Destroys a domain: removes its devices and xenstore home, closes its ports, frees its memory. */
  async destroyDomain(domid: number): Promise<void> {
    const xs = this.toolstack;
    for (const kind of ["vfb", "vkbd"]) {
      await xs.rm(`/local/domain/0/backend/${kind}/${domid}`).catch(() => {});
    }
    await xs.rm(`/local/domain/${domid}`).catch(() => {});
    this.evtchn.closeDomain(domid);
    this.domains.get(domid)?.xenstore.close();
    this.domains.delete(domid);
    this.xenstored.releaseDomain(domid);
  }
}
