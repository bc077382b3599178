import { type GuestMemory, type Mapping, PAGE_SIZE } from "../platform.ts";

/**
 * One simulated domain's memory: 4 KiB frames in SharedArrayBuffers, so a
 * guest Worker can draw into them while the backend reads them. Frames are
 * allocated in contiguous runs, and a run maps as one view with no copy.
 */
export class SimDomainMemory {
  /** Frame numbers start here so that frame 0 and small numbers never map. */
  private nextFrame: number;
  private readonly runs: {
    first: number;
    count: number;
    sab: SharedArrayBuffer;
    freed: boolean;
  }[] = [];
  private readonly grants = new Map<number, { frame: number; domid: number; readonly: boolean }>();
  private nextGref = 8; // Linux reserves the first grant refs

  constructor(readonly domid: number) {
    this.nextFrame = 0x100000 + domid * 0x10000;
  }

  /** Allocates `count` contiguous zeroed frames; returns the first frame number and the memory. */
  alloc(count: number): { first: number; sab: SharedArrayBuffer; bytes: Uint8Array } {
    if (!Number.isInteger(count) || count <= 0) throw new RangeError(`bad frame count ${count}`);
    const sab = new SharedArrayBuffer(count * PAGE_SIZE);
    const first = this.nextFrame;
    this.nextFrame += count + 1; // a hole between runs: a real guest's frames are rarely adjacent
    this.runs.push({ first, count, sab, freed: false });
    return { first, sab, bytes: new Uint8Array(sab) };
  }

  /** Gives frames back; later maps of them fail (a rebooted guest's old frames). */
  free(first: number): void {
    const run = this.runs.find((r) => r.first === first);
    if (run) run.freed = true;
    for (const [gref, g] of this.grants) {
      if (run && g.frame >= run.first && g.frame < run.first + run.count) this.grants.delete(gref);
    }
  }

  /** Grants domain `domid` access to `frame`; returns the grant reference. */
  grant(frame: number, domid: number, readonly = false): number {
    const gref = this.nextGref++;
    this.grants.set(gref, { frame, domid, readonly });
    return gref;
  }

  private find(frame: number) {
    return this.runs.find((r) => !r.freed && frame >= r.first && frame < r.first + r.count);
  }

  /** A view on frames `frames`, which must be valid and consecutive. */
  view(frames: readonly number[]): Uint8Array {
    if (frames.length === 0) throw new RangeError("no frames to map");
    const first = frames[0];
    if (!Number.isSafeInteger(first)) throw new RangeError(`frame ${first} does not map`);
    const run = this.find(first);
    if (!run) throw new RangeError(`frame ${first} does not map in domain ${this.domid}`);
    for (let i = 1; i < frames.length; i++) {
      if (frames[i] !== first + i) {
        if (!this.find(frames[i])) {
          throw new RangeError(`frame ${frames[i]} does not map in domain ${this.domid}`);
        }
        throw new RangeError(
          "frames are not contiguous (the simulator maps contiguous runs only; real Xen maps any)",
        );
      }
    }
    if (first + frames.length > run.first + run.count) {
      throw new RangeError(`frame ${run.first + run.count} does not map in domain ${this.domid}`);
    }
    return new Uint8Array(run.sab, (first - run.first) * PAGE_SIZE, frames.length * PAGE_SIZE);
  }

  /** Looks up a grant made to `domid`. */
  granted(gref: number, domid: number): number {
    const g = this.grants.get(gref);
    if (!g || g.domid !== domid) {
      throw new RangeError(`grant ${gref} is not valid for domain ${domid}`);
    }
    return g.frame;
  }
}

/** The backend's view of every simulated domain's memory. */
export class SimGuestMemory implements GuestMemory {
  private live = 0;
  constructor(
    private readonly backendDomid: number,
    private readonly domains: (domid: number) => SimDomainMemory | undefined,
  ) {}

  /** Mappings not yet unmapped (tests check that disconnects unmap). */
  get liveMappings(): number {
    return this.live;
  }

  mapFrames(domid: number, frames: readonly number[], _writable: boolean): Mapping {
    const mem = this.domains(domid);
    if (!mem) throw new RangeError(`no domain ${domid}`);
    return this.track(mem.view(frames));
  }

  mapGrant(domid: number, gref: number, _writable: boolean): Mapping {
    const mem = this.domains(domid);
    if (!mem) throw new RangeError(`no domain ${domid}`);
    return this.track(mem.view([mem.granted(gref, this.backendDomid)]));
  }

  private track(bytes: Uint8Array): Mapping {
    this.live++;
    let mapped = true;
    return {
      bytes,
      unmap: () => {
        if (mapped) {
          mapped = false;
          this.live--;
        }
      },
    };
  }
}
