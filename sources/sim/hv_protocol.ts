/**
 * The simulated hypervisor service: what lets a simulated guest, and rxfb's
 * backend, live in processes other than the simulated host's. The host
 * (sources/sim/host.ts) serves its xenstored on a UNIX socket PATH
 * (xenstored's wire protocol, sim/xenstore_server.ts) and this service on
 * `PATH.hv`; together they are what Xen and xenstored are to a dom0 and its
 * guests.
 *
 * ## Framing
 *
 * Every message, both ways, is a frame: a u32 little-endian length N
 * (1..HV_FRAME_MAX) and N bytes of UTF-8 JSON holding one object. A bad frame
 * disconnects the peer.
 *
 * ## Connections
 *
 * A client opens two connections to `PATH.hv`, a *control* and an *events*
 * connection, both belonging to one *session*:
 *
 * - control: `{"op":"hello","domid":D}` first (D = 0 unless given), answered
 *   `{"ok":true,"session":S,"token":T,"hostPid":P,"domid":D}`. Then
 *   requests `{"op":...,"id":n,...}`, each answered in order by
 *   `{"ok":true,"id":n,...}` or `{"ok":false,"id":n,"errno":"ENOENT","message":...}`.
 *   The client waits for each answer (sources/sim/hv_client.ts does it with
 *   blocking socket calls, so that `Platform`'s synchronous calls such as
 *   `mapFrames` and `bindInterdomain` stay synchronous).
 * - events: `{"op":"events","session":S,"token":T}` first, answered
 *   `{"ok":true}`. Then the host sends `{"ev":"event","port":p}` when the
 *   peer of the session's port p notifies (several notifies may merge into
 *   one, as with Xen's pending bit), and `{"ev":"closed","port":p}` when the
 *   host closed p (its domain was destroyed). The client sends
 *   `{"op":"notify","port":p}` here, unanswered, so a notify never waits.
 *   Events that come before the events connection does are queued.
 *
 * The session ends when its control connection closes: its ports close and
 * the domains it created are destroyed (a guest process that dies, even by
 * SIGKILL, takes its domain with it).
 *
 * ## Requests
 *
 * Toolstack (dom0 sessions only):
 * - `domain_create {domid, name}`: as libxl does: the xenstore home
 *   (`/local/domain/N`, name, domid, device/, data/) and the domain's memory
 *   and event channel namespace. The session owns the domain.
 * - `device_add {domid, kind: "vfb"|"vkbd", devid?, backend?: {key: value}}`:
 *   the backend and frontend directories, both Initialising.
 * - `domain_destroy {domid}`: removes its xenstore directories, closes its
 *   ports, unlinks its memory.
 * - `domain_list`: `{domains: [{domid, name, runs, grants}]}` (runs: files).
 * - `as_domain {domid}`: the session acts as that (existing) domain from now
 *   on, unprivileged; it keeps owning what it created. Not while it has ports.
 *
 * Memory (a guest session, for its own domain):
 * - `mem_alloc {count}`: `count` contiguous zeroed frames: `{first, path}`.
 *   The host creates the file `/dev/shm/rxfb-sim-<hostpid>-dom<N>-<first>`
 *   (count pages long); the guest maps it. Frame numbers are the host's, as
 *   Xen's populate_physmap gives them.
 * - `mem_free {first}`: the run is given back: its file is unlinked, its
 *   grants end, later maps of it fail (mappings that exist stay valid, as a
 *   mapped page stays referenced on Xen).
 * - `grant {frame, domid, readonly?}`: `{gref}`, domain `domid` may map it.
 *
 * Foreign memory (dom0 maps any domain's frames; a grantee maps its grants):
 * - `map_frames {domid, frames: [...]}`: `{segments: [{path, offset, length}]}`
 *   (byte offsets and lengths, page multiples), consecutive frames of one run
 *   merged. The caller mmaps each segment, in order, into one range.
 * - `map_grant {domid, gref, writable}`: `{segments: [one page]}`; EACCES
 *   for a grant made to another domain or a writable map of a read-only one.
 *
 * Event channels (ports are the session domain's, as EVTCHNOP_* name them):
 * - `evtchn_alloc_unbound {remote}`: `{port}`.
 * - `evtchn_bind {domid, port}`: `{port}`, the local end bound to domain
 *   `domid`'s unbound `port`.
 * - `evtchn_close {port}`.
 *
 * ## Memory ordering
 *
 * Both sides map the same tmpfs pages with MAP_SHARED; no copy is ever
 * made. The ring indices are read and written with Atomics.load/store on a
 * Uint32Array over a plain (non-shared) ArrayBuffer, which ECMAScript allows
 * (only Atomics.wait/notify need a SharedArrayBuffer); they keep the JIT
 * from moving other memory accesses across them. The rings need only
 * store->store order at the producer (slot, then prod), load->load at the
 * consumer (prod, then slot) and load->store for the index updates, which
 * x86-64's TSO gives even to plain moves; on arm64 it rests on V8 emitting
 * the same acquire/release instructions for Atomics whatever the buffer.
 * Pixels are plain stores published by the same index store. Besides, a
 * notification crosses two sockets (send/recv are full barriers) before the
 * peer looks at the ring, and the peer re-reads the indices after an event.
 *
 * ## Notes
 *
 * `notify` is also accepted (and answered) on the control connection.
 * `hello` may name a domain other than 0; like `as_domain`, any local
 * client may, as any local client of xenstored's socket is dom0.
 */

/** Largest frame either side accepts (a 256 MiB framebuffer's frame list fits). */
export const HV_FRAME_MAX = 4 << 20;

/** The service's socket for the xenstore socket `xenstorePath`. */
export function hvSocketPath(xenstorePath: string): string {
  return `${xenstorePath}.hv`;
}

/** Where a host's guest memory lives. */
export const SHM_DIR = "/dev/shm";

/** The file name prefix of every file of the host with this pid. */
export function shmPrefix(hostPid: number): string {
  return `rxfb-sim-${hostPid}-`;
}

/** The file of domain `domid`'s run starting at frame `first`. */
export function shmPath(hostPid: number, domid: number, first: number, dir = SHM_DIR): string {
  return `${dir}/${shmPrefix(hostPid)}dom${domid}-${first}`;
}

/** An error the service answered, errno-named as Xen names them. */
export class HvError extends Error {
  constructor(readonly errno: string, message: string) {
    super(message);
    this.name = "HvError";
  }
}

/** Any message: one JSON object. */
export type HvMessage = Record<string, unknown>;

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: true });

/** Encodes one frame. */
export function encodeFrame(msg: HvMessage): Uint8Array<ArrayBuffer> {
  const body = enc.encode(JSON.stringify(msg));
  if (body.length > HV_FRAME_MAX) throw new RangeError(`message of ${body.length} bytes`);
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length, true);
  out.set(body, 4);
  return out;
}

/** Length of a frame from its 4-byte header; throws for a bad one. */
export function frameLength(header: Uint8Array): number {
  const n = new DataView(header.buffer, header.byteOffset, 4).getUint32(0, true);
  if (n === 0 || n > HV_FRAME_MAX) throw new RangeError(`bad frame length ${n}`);
  return n;
}

/** Decodes a frame body; throws unless it is a JSON object. */
export function decodeBody(body: Uint8Array): HvMessage {
  const v = JSON.parse(dec.decode(body));
  if (v === null || typeof v !== "object" || Array.isArray(v)) {
    throw new RangeError("a frame must hold a JSON object");
  }
  return v as HvMessage;
}

/** Splits a byte stream into messages. */
export class HvFrameParser {
  #buf = new Uint8Array(0);

  /** Adds bytes; returns the messages complete now. Throws on a bad frame. */
  push(bytes: Uint8Array): HvMessage[] {
    const b = new Uint8Array(this.#buf.length + bytes.length);
    b.set(this.#buf);
    b.set(bytes, this.#buf.length);
    const out: HvMessage[] = [];
    let at = 0;
    while (b.length - at >= 4) {
      const n = frameLength(b.subarray(at, at + 4));
      if (b.length - at - 4 < n) break;
      out.push(decodeBody(b.subarray(at + 4, at + 4 + n)));
      at += 4 + n;
    }
    this.#buf = b.slice(at);
    return out;
  }
}
