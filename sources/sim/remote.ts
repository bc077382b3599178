/**
 * Both sides of a simulated host in another process (sim/host.ts,
 * hv_protocol.ts):
 *
 * - `openSimHostPlatform(PATH)`: rxfb's backend `Platform` on it, as dom0:
 *   xenstore over the socket PATH (XenstoreClient), event channels and
 *   foreign memory through the hypervisor service at PATH.hv (guest frames
 *   and grants are mmapped from their /dev/shm files).
 * - `RemoteDomain.create(PATH, domid, ...)`: a guest domain made through the
 *   service, for `SimGuest.onDomain`: the toolstack's part first (the
 *   domain's xenstore home and devices, as `SimXen.createDomain` and
 *   `addDevice` make them), then the guest's own view: xenstore acting as
 *   domain N, memory allocated by the host as /dev/shm files and mapped
 *   here, grants, unbound ports. The domain lives as long as the
 *   RemoteDomain's session: closing it, or the process dying, destroys it.
 *
 * A guest program's Worker (its vCPU) cannot be handed the framebuffer's
 * mapping (posting an ArrayBuffer copies it), so it maps the same file
 * itself (guest_worker.ts) and draws straight into the shared pages; on
 * "stop" it unmaps and answers "stopped" before it ends.
 */
import type { EventChannels, GuestMemory, Mapping, Platform } from "../platform.ts";
import { PAGE_SIZE } from "../platform.ts";
import { connectXenstore, type XenstoreClient } from "../xen/xenstore_client.ts";
import { HvClient } from "./hv_client.ts";
import { type HvMessage, hvSocketPath } from "./hv_protocol.ts";
import type { FrameRun, GuestDomain, GuestDomainMemory } from "./platform.ts";
import { mapShm, mapShmFile, type ShmMapping, type ShmSegment } from "./shm.ts";

function segmentsOf(reply: HvMessage): ShmSegment[] {
  const segs = reply.segments;
  if (!Array.isArray(segs)) throw new Error("the host answered no segments");
  return segs.map((s) => {
    const { path, offset, length } = s as Record<string, unknown>;
    if (typeof path !== "string" || typeof offset !== "number" || typeof length !== "number") {
      throw new Error("the host answered a bad segment");
    }
    return { path, offset, length };
  });
}

/** Foreign memory of a simulated host's guests: their files, mmapped. */
export class ShmGuestMemory implements GuestMemory {
  private readonly live = new Set<ShmMapping>();

  constructor(private readonly hv: HvClient) {}

  /** Mappings not yet unmapped (tests check that disconnects unmap). */
  get liveMappings(): number {
    return this.live.size;
  }

  mapFrames(domid: number, frames: readonly number[], writable: boolean): Mapping {
    if (frames.length === 0) throw new RangeError("no frames to map");
    const reply = this.hv.request("map_frames", { domid, frames: [...frames] });
    return this.track(mapShm(segmentsOf(reply), writable));
  }

  mapGrant(domid: number, gref: number, writable: boolean): Mapping {
    const reply = this.hv.request("map_grant", { domid, gref, writable });
    return this.track(mapShm(segmentsOf(reply), writable));
  }

  private track(m: ShmMapping): Mapping {
    this.live.add(m);
    return {
      bytes: m.bytes,
      unmap: () => {
        if (this.live.delete(m)) m.unmap();
      },
    };
  }

  /** Unmaps everything still mapped. */
  close(): void {
    for (const m of [...this.live]) {
      this.live.delete(m);
      m.unmap();
    }
  }
}

/** rxfb's platform on a simulated host in another process. */
export interface SimHostPlatform extends Platform {
  readonly xenstore: XenstoreClient;
  readonly memory: ShmGuestMemory;
  readonly hv: HvClient;
  /** Resolves with a reason when the host goes away. */
  readonly lost: Promise<string>;
  /** Unmaps, unbinds and disconnects everything. */
  close(): Promise<void>;
}

/**
 * Opens the backend's platform (dom0) on the simulated host whose xenstore
 * socket is `xenstorePath` (its hypervisor service at `xenstorePath.hv`).
 */
export async function openSimHostPlatform(xenstorePath: string): Promise<SimHostPlatform> {
  const hv = await HvClient.connect(hvSocketPath(xenstorePath));
  let xenstore: XenstoreClient;
  try {
    xenstore = await connectXenstore(xenstorePath);
  } catch (e) {
    hv.close();
    throw e;
  }
  const memory = new ShmGuestMemory(hv);
  const evtchn: EventChannels = {
    bindInterdomain: (domid, remotePort) => {
      const reply = hv.request("evtchn_bind", { domid, port: remotePort });
      return hv.channel(Number(reply.port));
    },
  };
  let closed = false;
  const lost = new Promise<string>((resolve) => {
    hv.lost.then(resolve);
    xenstore.done.then(() => {
      if (!closed) resolve("the xenstore connection closed");
    });
  });
  return {
    name: "sim-host",
    backendDomid: 0,
    xenstore,
    evtchn,
    memory,
    hv,
    lost,
    close: () => {
      closed = true;
      memory.close();
      hv.close();
      xenstore.close();
      return Promise.resolve();
    },
  };
}

/** A guest's memory on a simulated host in another process: host-made files, mapped here. */
export class RemoteDomainMemory implements GuestDomainMemory {
  private readonly runs = new Map<number, ShmMapping>();

  constructor(private readonly hv: HvClient) {}

  alloc(count: number): FrameRun {
    const reply = this.hv.request("mem_alloc", { count });
    const first = Number(reply.first);
    const path = String(reply.path);
    const m = mapShmFile(path, 0, count * PAGE_SIZE, true);
    this.runs.set(first, m);
    return { first, bytes: m.bytes, file: { path, offset: 0 } };
  }

  free(first: number): void {
    const m = this.runs.get(first);
    this.runs.delete(first);
    try {
      this.hv.request("mem_free", { first });
    } finally {
      m?.unmap();
    }
  }

  grant(frame: number, domid: number, readonly = false): number {
    return Number(this.hv.request("grant", { frame, domid, readonly }).gref);
  }

  /** Unmaps every run (the domain goes). */
  unmapAll(): void {
    for (const m of this.runs.values()) m.unmap();
    this.runs.clear();
  }
}

/** A device the toolstack adds with the domain. */
export interface RemoteDevice {
  kind: "vfb" | "vkbd";
  devid?: number;
  /** Extra backend keys (vnc, vnclisten, keymap, ...). */
  backend?: Record<string, string>;
}

/** A guest domain on a simulated host in another process. */
export class RemoteDomain implements GuestDomain {
  readonly memory: RemoteDomainMemory;

  private constructor(
    readonly domid: number,
    readonly name: string,
    readonly xenstore: XenstoreClient,
    readonly hv: HvClient,
  ) {
    this.memory = new RemoteDomainMemory(hv);
  }

  /**
   * Creates domain `domid` on the host whose xenstore socket is
   * `xenstorePath`, with `devices` (default a vfb and a vkbd), as the
   * toolstack does; then acts as that domain.
   */
  static async create(
    xenstorePath: string,
    domid: number,
    name: string,
    devices: RemoteDevice[] = [{ kind: "vfb" }, { kind: "vkbd" }],
  ): Promise<RemoteDomain> {
    const hv = await HvClient.connect(hvSocketPath(xenstorePath));
    try {
      hv.request("domain_create", { domid, name });
      for (const d of devices) {
        hv.request("device_add", {
          domid,
          kind: d.kind,
          devid: d.devid ?? 0,
          backend: d.backend ?? {},
        });
      }
      hv.request("as_domain", { domid });
      hv.domid = domid;
      const xs = await connectXenstore(xenstorePath, { asDomain: domid });
      return new RemoteDomain(domid, name, xs, hv);
    } catch (e) {
      hv.close(); // the host destroys what was made
      throw e;
    }
  }

  /** Resolves with a reason when the host goes away. */
  get lost(): Promise<string> {
    return this.hv.lost;
  }

  allocUnbound(remoteDomid: number) {
    const reply = this.hv.request("evtchn_alloc_unbound", { remote: remoteDomid });
    return this.hv.channel(Number(reply.port));
  }

  /** Ends the session: the host destroys the domain (its xenstore home, ports and memory). */
  close(): void {
    this.xenstore.close();
    this.hv.close();
    this.memory.unmapAll();
  }
}
