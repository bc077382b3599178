/**
 * A simulated Xen host whose guests and backends live in other processes:
 * the simulator's xenstored on a UNIX socket PATH (xenstored's wire
 * protocol) and the simulated hypervisor on `PATH.hv` (hv_protocol.ts),
 * around one `SimXen`. Guest memory is files in /dev/shm, one per contiguous
 * run of frames, which every process maps with mmap(MAP_SHARED).
 *
 * ```sh
 * deno run -A sources/sim/host_main.ts /tmp/xs.sock                            # the host
 * deno run -A sources/sim/guest_main.ts --host /tmp/xs.sock --domid 3 --guest demo
 * deno run -A mod.ts --domid 3 --sim-host /tmp/xs.sock                       # rxfb
 * ```
 */
import { consoleLogger, type Logger } from "../log.ts";
import { PAGE_SIZE } from "../platform.ts";
import { HvError, hvSocketPath, SHM_DIR, shmPath, shmPrefix } from "./hv_protocol.ts";
import { type HvServer, serveHypervisor } from "./hv_server.ts";
import { SimXen } from "./platform.ts";
import { serveXenstore, type XenstoreServer } from "./xenstore_server.ts";

/** Most frames one allocation may take (256 MiB). */
export const MAX_ALLOC_FRAMES = 65536;
/** Most frames one domain may hold (1 GiB). */
export const MAX_DOMAIN_FRAMES = 262144;

interface Run {
  first: number;
  count: number;
  path: string;
}

interface Grant {
  frame: number;
  domid: number;
  readonly: boolean;
}

/** A piece of guest memory: `length` bytes of `path` from `offset`. */
export interface Segment {
  path: string;
  offset: number;
  length: number;
}

/**
 * One domain's memory on the host: runs of frames, each a file in /dev/shm
 * (created zeroed, sparse, mode 0600), and its grant table.
 */
export class ShmDomainMemory {
  private nextFrame: number;
  private readonly runs: Run[] = [];
  private readonly grants = new Map<number, Grant>();
  private nextGref = 8; // Linux reserves the first grant refs
  private frames = 0;

  constructor(
    readonly domid: number,
    private readonly hostPid: number,
    private readonly dir = SHM_DIR,
  ) {
    this.nextFrame = 0x100000 + domid * 0x10000;
  }

  /** The runs as they are (tests and domain_list read them). */
  get runCount(): number {
    return this.runs.length;
  }

  get grantCount(): number {
    return this.grants.size;
  }

  /** Allocates `count` zeroed contiguous frames in a new file. */
  alloc(count: number): { first: number; path: string } {
    if (!Number.isInteger(count) || count <= 0 || count > MAX_ALLOC_FRAMES) {
      throw new HvError("EINVAL", `bad frame count ${count} (1..${MAX_ALLOC_FRAMES})`);
    }
    if (this.frames + count > MAX_DOMAIN_FRAMES) {
      throw new HvError(
        "ENOMEM",
        `domain ${this.domid} would hold more than ${MAX_DOMAIN_FRAMES} frames`,
      );
    }
    const first = this.nextFrame;
    const path = shmPath(this.hostPid, this.domid, first, this.dir);
    const f = Deno.openSync(path, { read: true, write: true, createNew: true, mode: 0o600 });
    try {
      f.truncateSync(count * PAGE_SIZE);
    } catch (e) {
      unlink(path);
      throw e;
    } finally {
      f.close();
    }
    this.nextFrame += count + 1; // a hole between runs: a real guest's frames are rarely adjacent
    this.runs.push({ first, count, path });
    this.frames += count;
    return { first, path };
  }

  /** Gives a run back: its file goes, its grants end. */
  free(first: number): void {
    const i = this.runs.findIndex((r) => r.first === first);
    if (i < 0) throw new HvError("ENOENT", `no run at frame ${first} in domain ${this.domid}`);
    const [run] = this.runs.splice(i, 1);
    this.frames -= run.count;
    for (const [gref, g] of this.grants) {
      if (g.frame >= run.first && g.frame < run.first + run.count) this.grants.delete(gref);
    }
    unlink(run.path);
  }

  /** Grants domain `domid` access to `frame`; returns the reference. */
  grant(frame: number, domid: number, readonly: boolean): number {
    if (!this.find(frame)) {
      throw new HvError("EINVAL", `frame ${frame} is not memory of domain ${this.domid}`);
    }
    if (!Number.isInteger(domid) || domid < 0 || domid > 0x7ff0) {
      throw new HvError("EINVAL", `bad domain id ${domid}`);
    }
    const gref = this.nextGref++;
    this.grants.set(gref, { frame, domid, readonly });
    return gref;
  }

  private find(frame: number): Run | undefined {
    return this.runs.find((r) => frame >= r.first && frame < r.first + r.count);
  }

  /** Where `frames` are, in order: consecutive frames of one run merged into one segment. */
  segments(frames: readonly unknown[]): Segment[] {
    if (frames.length === 0) throw new HvError("EINVAL", "no frames to map");
    const out: Segment[] = [];
    let last: { run: Run; frame: number } | undefined;
    for (const f of frames) {
      if (typeof f !== "number" || !Number.isSafeInteger(f)) {
        throw new HvError("EINVAL", `frame ${JSON.stringify(f)} is not a frame number`);
      }
      const run = this.find(f);
      if (!run) throw new HvError("EINVAL", `frame ${f} does not map in domain ${this.domid}`);
      if (last && last.run === run && f === last.frame + 1) {
        out[out.length - 1].length += PAGE_SIZE;
      } else {
        out.push({ path: run.path, offset: (f - run.first) * PAGE_SIZE, length: PAGE_SIZE });
      }
      last = { run, frame: f };
    }
    return out;
  }

  /** The page of a grant made to `domid`. */
  granted(gref: number, domid: number, writable: boolean): Segment {
    const g = this.grants.get(gref);
    if (!g || g.domid !== domid) {
      throw new HvError("EACCES", `grant ${gref} is not valid for domain ${domid}`);
    }
    if (writable && g.readonly) throw new HvError("EACCES", `grant ${gref} is read-only`);
    return this.segments([g.frame])[0];
  }

  /** Unlinks every file (the domain is destroyed). */
  destroy(): void {
    for (const r of this.runs.splice(0)) unlink(r.path);
    this.grants.clear();
    this.frames = 0;
  }
}

function unlink(path: string): void {
  try {
    Deno.removeSync(path);
  } catch {
    // gone already
  }
}

/**
 * Removes /dev/shm files left by hosts that died without cleaning up (their
 * pid no longer runs). Returns how many went.
 */
export function sweepStaleShm(dir = SHM_DIR): number {
  let n = 0;
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch {
    return 0;
  }
  for (const e of entries) {
    const m = /^rxfb-sim-(\d+)-dom\d+-\d+$/.exec(e.name);
    if (!m || !e.isFile) continue;
    const pid = Number(m[1]);
    if (pid === Deno.pid) continue;
    try {
      Deno.statSync(`/proc/${pid}`);
      continue; // that host runs
    } catch {
      // gone
    }
    unlink(`${dir}/${e.name}`);
    n++;
  }
  return n;
}

/** The files of the host with this pid that exist now. */
export function shmFilesOf(hostPid: number, dir = SHM_DIR): string[] {
  const prefix = shmPrefix(hostPid);
  try {
    return [...Deno.readDirSync(dir)].filter((e) => e.name.startsWith(prefix)).map((e) =>
      `${dir}/${e.name}`
    );
  } catch {
    return [];
  }
}

/** What a simulated host holds: the SimXen, and the memory of its domains. */
export class SimHost {
  readonly xen: SimXen = new SimXen();
  readonly hostPid: number = Deno.pid;
  private readonly memories = new Map<number, ShmDomainMemory>();

  constructor(readonly log: Logger = consoleLogger("rxfb sim-host"), readonly shmDir = SHM_DIR) {}

  /** Domain ids that exist. */
  get domids(): number[] {
    return [...this.memories.keys()];
  }

  memory(domid: number): ShmDomainMemory | undefined {
    return this.memories.get(domid);
  }

  /** Creates a domain as the toolstack does, with its memory in /dev/shm. */
  async createDomain(domid: number, name: string): Promise<void> {
    if (!Number.isInteger(domid) || domid <= 0 || domid >= 0x7ff0) {
      throw new HvError("EINVAL", `domain id ${domid} outside 1..32751`);
    }
    if (this.memories.has(domid) || this.xen.domain(domid)) {
      throw new HvError("EEXIST", `domain ${domid} exists`);
    }
    this.memories.set(domid, new ShmDomainMemory(domid, this.hostPid, this.shmDir));
    try {
      await this.xen.createDomain(domid, name);
    } catch (e) {
      this.memories.delete(domid);
      throw e;
    }
    this.log.info(`domain ${domid} "${name}" created`);
  }

  async addDevice(
    domid: number,
    kind: "vfb" | "vkbd",
    devid: number,
    backendKeys: Record<string, string>,
  ): Promise<void> {
    if (!this.memories.has(domid)) throw new HvError("ENOENT", `no domain ${domid}`);
    await this.xen.addDevice(domid, kind, devid, backendKeys);
  }

  /** Destroys a domain: its xenstore directories, its ports, its memory files. */
  async destroyDomain(domid: number): Promise<void> {
    const mem = this.memories.get(domid);
    if (!mem) throw new HvError("ENOENT", `no domain ${domid}`);
    this.memories.delete(domid);
    mem.destroy();
    await this.xen.destroyDomain(domid);
    this.log.info(`domain ${domid} destroyed`);
  }

  /** Destroys every domain. */
  async close(): Promise<void> {
    for (const domid of this.domids) await this.destroyDomain(domid).catch(() => {});
  }
}

/** A running simulated host: its xenstored and hypervisor sockets. */
export interface RunningSimHost {
  readonly host: SimHost;
  /** The xenstore socket (XENSTORED_PATH). */
  readonly xenstorePath: string;
  /** The hypervisor service's socket. */
  readonly hvPath: string;
  readonly xenstored: XenstoreServer;
  readonly hypervisor: HvServer;
  /** Stops serving, destroys every domain and removes their files and the sockets. */
  close(): Promise<void>;
}

/** Serves a new simulated host on `xenstorePath` and `xenstorePath.hv`. */
export function startSimHost(
  xenstorePath: string,
  opts: { log?: Logger; shmDir?: string } = {},
): RunningSimHost {
  const log = opts.log ?? consoleLogger("rxfb sim-host");
  const host = new SimHost(log, opts.shmDir);
  const xenstored = serveXenstore(host.xen.xenstored, xenstorePath, { log: log.child("xenstore") });
  const hvPath = hvSocketPath(xenstorePath);
  let hypervisor: HvServer;
  try {
    hypervisor = serveHypervisor(host, hvPath, { log: log.child("hypervisor") });
  } catch (e) {
    xenstored.close();
    throw e;
  }
  let closing: Promise<void> | undefined;
  return {
    host,
    xenstorePath,
    hvPath,
    xenstored,
    hypervisor,
    close: () =>
      closing ??= (async () => {
        await hypervisor.close();
        await host.close();
        xenstored.close();
        await xenstored.closed;
      })(),
  };
}
