/**
 * Guest memory on real Xen: frames by machine frame number through
 * libxenforeignmemory (vfb's page-ref, the pd[] directory pages and the
 * framebuffer frames), and grant references through libxengnttab (vkbd's
 * page-gref).
 *
 * A mapping's `bytes` is the mapped memory itself (an ArrayBuffer over the
 * pointer the library returned; no copy). After `unmap()` that memory is
 * gone: the ArrayBuffer is detached first, so every view on it (`bytes`,
 * its subarrays, DataViews over `bytes.buffer`) reads as empty or throws
 * instead of touching unmapped memory. Writing to a mapping made with
 * `writable: false` is a fault (the process dies with SIGSEGV): read-only
 * mappings must only be read.
 */
import { type GuestMemory, type Mapping, PAGE_SIZE } from "../platform.ts";
import { consoleLogger, type Logger } from "../log.ts";
import {
  describeErrno,
  errno,
  errnoName,
  type ForeignMemoryLib,
  type GnttabLib,
  libraryLogSuffix,
  loadXenLibrary,
  openXenHandle,
  PROT_READ,
  PROT_WRITE,
  takeLibraryLog,
  XenError,
  type XenLibraryOptions,
} from "./ffi.ts";

export interface XenGuestMemoryOptions extends XenLibraryOptions {
  /** Where a failed unmap is reported (unmap runs on disconnect and never throws). */
  readonly logger?: Logger;
}

/** Frames one xenforeignmemory_map may take (a 2 MiB framebuffer is 512; this is 256 MiB). */
const MAX_FRAMES = 65536;

interface Live {
  unmap(): void;
}

/** What an errno means for a frame or grant that would not map. */
function mapHint(e: string, domid: number): string {
  switch (e) {
    case "ESRCH":
      return `: domain ${domid} does not exist`;
    case "EPERM":
    case "EACCES":
      return ": not permitted (rxfb must run in a privileged dom0)";
    case "EINVAL":
    case "EFAULT":
      return `: not memory of domain ${domid} (a stale or bogus reference from the guest?)`;
    case "ENOENT":
      return ": the frame is paged out or was given back by the guest";
    case "ENOMEM":
      return ": out of address space or memory in dom0";
    default:
      return "";
  }
}

function checkDomid(domid: number): void {
  if (!Number.isInteger(domid) || domid < 0 || domid >= 0x7ff0) {
    throw new RangeError(`bad domain id ${domid}`);
  }
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** The backend's view of guest memory on real Xen. Handles open on first use. */
export class XenGuestMemory implements GuestMemory {
  private fmemLib?: ForeignMemoryLib;
  private fmem: Deno.PointerObject | null = null;
  private gntLib?: GnttabLib;
  private gnt: Deno.PointerObject | null = null;
  private readonly live = new Set<Live>();
  private closed = false;
  private readonly log: Logger;

  constructor(private readonly opts: XenGuestMemoryOptions = {}) {
    this.log = opts.logger ?? consoleLogger();
  }

  /** Mappings not yet unmapped (tests check that disconnects unmap). */
  get liveMappings(): number {
    return this.live.size;
  }

  /**
   * Maps the frames (machine frame numbers of domain `domid`) in this order
   * with xenforeignmemory_map. Throws one line naming the first frame that
   * did not map and why; nothing stays mapped then.
   */
  mapFrames(domid: number, frames: readonly number[], writable: boolean): Mapping {
    checkDomid(domid);
    if (frames.length === 0) throw new RangeError("no frames to map");
    if (frames.length > MAX_FRAMES) {
      throw new RangeError(`${frames.length} frames to map (at most ${MAX_FRAMES})`);
    }
    const arr = new BigUint64Array(frames.length);
    frames.forEach((f, i) => {
      if (!Number.isSafeInteger(f) || f < 0) {
        throw new RangeError(
          `frame ${f} (#${i + 1} of ${frames.length}) of domain ${domid} is not a frame number`,
        );
      }
      arr[i] = BigInt(f);
    });
    const h = this.foreignMemory();
    const lib = this.fmemLib!;
    const err = new Int32Array(frames.length);
    const prot = PROT_READ | (writable ? PROT_WRITE : 0);
    const pages = BigInt(frames.length);
    takeLibraryLog();
    const ptr = lib.xenforeignmemory_map(h, domid, prot, pages, arr, err);
    const what = frames.length === 1
      ? `frame ${frames[0]} (${hex(frames[0])})`
      : `${frames.length} frames`;
    if (!ptr) {
      const n = errno();
      const e = errnoName(n);
      const log = takeLibraryLog();
      throw new XenError(
        `xenforeignmemory_map of ${what} of domain ${domid} failed: ${describeErrno(n)}` +
          `${mapHint(e, domid)}${libraryLogSuffix(log)}`,
        e,
        log,
      );
    }
    const bad = err.findIndex((v) => v !== 0);
    if (bad >= 0) {
      lib.xenforeignmemory_unmap(h, ptr, pages);
      const n = Math.abs(err[bad]); // the kernel reports -errno; the header says errno
      const e = errnoName(n);
      const log = takeLibraryLog();
      const which = frames.length === 1 ? "" : ` (#${bad + 1} of ${frames.length})`;
      throw new XenError(
        `xenforeignmemory_map of frame ${frames[bad]} (${hex(frames[bad])})${which} of domain ` +
          `${domid} failed: ${describeErrno(n)}${mapHint(e, domid)}${libraryLogSuffix(log)}`,
        e,
        log,
      );
    }
    return this.track(ptr, frames.length, () => {
      if (lib.xenforeignmemory_unmap(h, ptr, pages) < 0) {
        this.log.warn(
          `xenforeignmemory_unmap of ${what} of domain ${domid} failed: ${describeErrno(errno())}`,
        );
      }
    });
  }

  /** Maps one page that domain `domid` granted us (xengnttab_map_grant_ref). Throws one line. */
  mapGrant(domid: number, gref: number, writable: boolean): Mapping {
    checkDomid(domid);
    if (!Number.isInteger(gref) || gref < 0 || gref > 0xffffffff) {
      throw new RangeError(`bad grant reference ${gref} of domain ${domid}`);
    }
    const h = this.gnttab();
    const lib = this.gntLib!;
    takeLibraryLog();
    const ptr = lib.xengnttab_map_grant_ref(
      h,
      domid,
      gref,
      PROT_READ | (writable ? PROT_WRITE : 0),
    );
    if (!ptr) {
      const n = errno();
      const e = errnoName(n);
      const log = takeLibraryLog();
      const hint = e === "EINVAL" || e === "EFAULT" || e === "ENOENT"
        ? `: grant ${gref} is not a valid grant of domain ${domid} to this domain`
        : mapHint(e, domid);
      throw new XenError(
        `xengnttab_map_grant_ref(domain ${domid}, gref ${gref}) failed: ${describeErrno(n)}` +
          `${hint}${libraryLogSuffix(log)}`,
        e,
        log,
      );
    }
    return this.track(ptr, 1, () => {
      if (lib.xengnttab_unmap(h, ptr, 1) < 0) {
        this.log.warn(
          `xengnttab_unmap of gref ${gref} of domain ${domid} failed: ${describeErrno(errno())}`,
        );
      }
    });
  }

  /** Unmaps whatever is still mapped and closes the handles. Later maps throw. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const m of [...this.live]) m.unmap();
    if (this.fmem) this.fmemLib!.xenforeignmemory_close(this.fmem);
    if (this.gnt) this.gntLib!.xengnttab_close(this.gnt);
    this.fmem = this.gnt = null;
  }

  private foreignMemory(): Deno.PointerObject {
    if (this.closed) throw new XenError("guest memory is closed");
    if (!this.fmem) {
      this.fmemLib = loadXenLibrary("foreignmemory", this.opts).symbols;
      this.fmem = openXenHandle("foreignmemory", this.opts);
    }
    return this.fmem;
  }

  private gnttab(): Deno.PointerObject {
    if (this.closed) throw new XenError("guest memory is closed");
    if (!this.gnt) {
      this.gntLib = loadXenLibrary("gnttab", this.opts).symbols;
      this.gnt = openXenHandle("gnttab", this.opts);
    }
    return this.gnt;
  }

  /** The pages at `ptr` as a Mapping whose unmap detaches the buffer, then calls `release`. */
  private track(ptr: Deno.PointerObject, pages: number, release: () => void): Mapping {
    const buffer = Deno.UnsafePointerView.getArrayBuffer(ptr, pages * PAGE_SIZE);
    const bytes = new Uint8Array(buffer);
    let mapped = true;
    const live: Live = {
      unmap: () => {
        if (!mapped) return;
        mapped = false;
        this.live.delete(live);
        detach(buffer);
        release();
      },
    };
    this.live.add(live);
    return { bytes, unmap: live.unmap };
  }
}

/** Detaches `buffer` (views on it become empty) without touching its memory. */
export function detach(buffer: ArrayBuffer): void {
  try {
    buffer.transfer(0);
  } catch {
    // already detached
  }
}
