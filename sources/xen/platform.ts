import type { Platform } from "../platform.ts";
import { XenEventChannels } from "./evtchn.ts";
import { XenGuestMemory } from "./memory.ts";
import { connectXenstore, type XenstoreClient } from "./xenstore_client.ts";

/** The real Xen platform of a dom0 (or driver domain). */
export interface XenPlatform extends Platform {
  readonly xenstore: XenstoreClient;
  readonly evtchn: XenEventChannels;
  readonly memory: XenGuestMemory;
  /** Unmaps, unbinds and disconnects everything. */
  close(): Promise<void>;
}

/**
 * Opens the real Xen platform: xenstore over its socket or /dev/xen/xenbus,
 * event channels through libxenevtchn, guest memory through
 * libxenforeignmemory and libxengnttab. Event channels and memory open
 * lazily, so a missing library or device is reported (in one line) when a
 * guest is first attached.
 */
export async function openXenPlatform(xenstorePath?: string): Promise<XenPlatform> {
  const xenstore = await connectXenstore(xenstorePath);
  // The backend's own domain id: dom0 unless we run in a driver domain.
  const own = await xenstore.read("domid").catch(() => undefined);
  const backendDomid = own !== undefined && /^\d+$/.test(own) ? Number(own) : 0;
  const evtchn = new XenEventChannels();
  const memory = new XenGuestMemory();
  return {
    name: "xen",
    backendDomid,
    xenstore,
    evtchn,
    memory,
    close: async () => {
      await evtchn.close();
      memory.close();
      xenstore.close();
    },
  };
}
