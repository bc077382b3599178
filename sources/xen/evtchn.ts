/**
 * Event channels on real Xen, through libxenevtchn (/dev/xen/evtchn).
 *
 * Waiting: the handle's descriptor (xenevtchn_fd) becomes readable when a
 * bound port fires. One `poll()` on it runs at a time on a Deno FFI worker
 * thread (a `nonblocking` call), together with the read end of a wake-up
 * pipe, so the event loop never blocks. When poll returns, the pending
 * ports are drained on the main thread with xenevtchn_pending (which then
 * cannot block: the descriptor is readable), each port is unmasked with
 * xenevtchn_unmask and its channel's `events$` fires; then the next poll is
 * issued. The poll runs only while some port is bound, so an idle
 * XenEventChannels keeps nothing pending and the process can exit.
 *
 * Closing never closes the descriptor under a running poll: the last
 * channel's close (or {@link XenEventChannels.close}) writes to the wake-up
 * pipe, the poll returns at once, and only then is the handle closed.
 */
import { Subject } from "rxjs";
import type { EventChannel, EventChannels } from "../platform.ts";
import { consoleLogger, type Logger } from "../log.ts";
import {
  describeErrno,
  errno,
  errnoName,
  type EvtchnLib,
  libraryLogSuffix,
  loadXenLibrary,
  openFailureLine,
  openXenHandle,
  requireLibc,
  takeLibraryLog,
  XenError,
  type XenLibraryOptions,
  xenLogger,
} from "./ffi.ts";

const POLLIN = 0x1;
const POLLERR = 0x8;
const POLLHUP = 0x10;
const POLLNVAL = 0x20;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
/** Most ports taken from the descriptor before the next poll (others wait for it). */
const DRAIN_LIMIT = 256;
/** poll() failing this many times in a row (it should only ever be EINTR) stops the channels. */
const POLL_FAILURES_LIMIT = 1000;

export interface XenEventChannelsOptions extends XenLibraryOptions {
  /**
   * Wraps this already-open /dev/xen/evtchn descriptor (xenevtchn_fdopen)
   * instead of opening the device; it is closed with the handle. For a
   * re-exec'ed daemon, and for tests that stand a socket in for the device.
   */
  readonly fd?: number;
  /** Where asynchronous trouble (a failed unbind, the descriptor failing) is reported. */
  readonly logger?: Logger;
}

interface Channel {
  readonly port: number;
  readonly events: Subject<void>;
  closed: boolean;
}

/** Event channels of this (backend) domain, through one libxenevtchn handle opened on first use. */
export class XenEventChannels implements EventChannels {
  private lib?: EvtchnLib;
  private handle: Deno.PointerObject | null = null;
  private readonly channels = new Map<number, Channel>();
  /** The running wait loop, while one runs. */
  private loop?: Promise<void>;
  /** [read end, write end] of the wake-up pipe. */
  private wake?: Int32Array;
  /** struct pollfd[2] { int fd; short events; short revents; }: the evtchn fd, the wake pipe. */
  private readonly pollfds = new DataView(new ArrayBuffer(16));
  /** struct pollfd[1] for the "anything more?" check on this thread. */
  private readonly pollOne = new DataView(new ArrayBuffer(8));
  private closing?: Promise<void>;
  private resolveClosing?: () => void;
  private readonly log: Logger;

  constructor(private readonly opts: XenEventChannelsOptions = {}) {
    this.log = opts.logger ?? consoleLogger();
  }

  /** Ports bound and not yet closed. */
  get boundPorts(): number {
    return this.channels.size;
  }

  /** Whether a poll() is outstanding on the worker thread. */
  get waiting(): boolean {
    return this.loop !== undefined;
  }

  bindInterdomain(domid: number, remotePort: number): EventChannel {
    if (this.closing) throw new XenError("event channels are closed");
    if (!Number.isInteger(domid) || domid < 0 || domid >= 0x7ff0) {
      throw new RangeError(`bad domain id ${domid}`);
    }
    if (!Number.isInteger(remotePort) || remotePort <= 0 || remotePort > 0xffffffff) {
      throw new RangeError(`bad event channel port ${remotePort} of domain ${domid}`);
    }
    this.open();
    const port = this.bindPort(domid, remotePort);
    const ch: Channel = { port, events: new Subject<void>(), closed: false };
    this.channels.set(port, ch);
    this.startLoop();
    return {
      localPort: port,
      events$: ch.events.asObservable(),
      notify: () => {
        if (!ch.closed) this.notifyPort(port);
      },
      close: () => this.closeChannel(ch),
    };
  }

  /**
   * Unbinds every port (their events$ complete), stops waiting and closes
   * the handle. Resolves once the handle is closed; no FFI call is left running.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = new Promise((resolve) => this.resolveClosing = resolve);
    for (const ch of [...this.channels.values()]) this.closeChannel(ch);
    if (this.loop) this.wakeLoop();
    else this.finishClose();
    return this.closing;
  }

  // -- the calls that need a hypervisor (tests without one replace them) ----

  /** xenevtchn_bind_interdomain: our local port for `remotePort` of `domid`. Throws one line. */
  protected bindPort(domid: number, remotePort: number): number {
    const lib = this.lib!;
    takeLibraryLog();
    const port = lib.xenevtchn_bind_interdomain(this.handle, domid, remotePort);
    if (port >= 0) return port;
    const err = errno();
    const e = errnoName(err);
    const hint = e === "ESRCH"
      ? `: domain ${domid} does not exist`
      : e === "EINVAL"
      ? `: port ${remotePort} of domain ${domid} is not an unbound port offered to this domain`
      : e === "EPERM" || e === "EACCES"
      ? ": not allowed (is this dom0, and does the port name this domain as its remote end?)"
      : "";
    const log = takeLibraryLog();
    throw new XenError(
      `xenevtchn_bind_interdomain(domain ${domid}, remote port ${remotePort}) failed: ` +
        `${describeErrno(err)}${hint}${libraryLogSuffix(log)}`,
      e,
      log,
    );
  }

  /** xenevtchn_notify. Throws one line. */
  protected notifyPort(port: number): void {
    if (this.lib!.xenevtchn_notify(this.handle, port) >= 0) return;
    const err = errno();
    throw new XenError(
      `xenevtchn_notify(port ${port}) failed: ${describeErrno(err)}`,
      errnoName(err),
    );
  }

  /** xenevtchn_unbind. Reports a failure to the logger (it runs on disconnect). */
  protected unbindPort(port: number): void {
    if (this.lib!.xenevtchn_unbind(this.handle, port) >= 0) return;
    this.log.warn(`xenevtchn_unbind(port ${port}) failed: ${describeErrno(errno())}`);
  }

  // -- handle ----------------------------------------------------------------

  private open(): void {
    if (this.handle) return;
    this.lib = loadXenLibrary("evtchn", this.opts).symbols;
    if (this.opts.fd === undefined) {
      this.handle = openXenHandle("evtchn", this.opts);
    } else {
      if (!this.lib.xenevtchn_fdopen) {
        throw new XenError(
          "xenevtchn_fdopen is missing from libxenevtchn.so.1: install Debian's libxenevtchn1 " +
            "from Xen 4.16 or later (apt-get install libxenevtchn1)",
        );
      }
      takeLibraryLog();
      const h = this.lib.xenevtchn_fdopen(xenLogger(), this.opts.fd, 0);
      if (!h) {
        const err = errno();
        throw new XenError(openFailureLine("evtchn", err), errnoName(err), takeLibraryLog());
      }
      this.handle = h;
    }
    if (!this.wake) {
      const c = requireLibc();
      const fds = new Int32Array(new ArrayBuffer(8));
      if (c.pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0) {
        const err = errno();
        this.lib.xenevtchn_close(this.handle);
        this.handle = null;
        throw new XenError(`pipe2 failed: ${describeErrno(err)}`, errnoName(err));
      }
      this.wake = fds;
    }
    const fd = this.lib.xenevtchn_fd(this.handle);
    this.pollfds.setInt32(0, fd, true);
    this.pollfds.setInt16(4, POLLIN, true);
    this.pollfds.setInt32(8, this.wake[0], true);
    this.pollfds.setInt16(12, POLLIN, true);
    this.pollOne.setInt32(0, fd, true);
    this.pollOne.setInt16(4, POLLIN, true);
  }

  private finishClose(): void {
    if (this.handle) {
      this.lib!.xenevtchn_close(this.handle);
      this.handle = null;
    }
    if (this.wake) {
      const c = requireLibc();
      c.close(this.wake[0]);
      c.close(this.wake[1]);
      this.wake = undefined;
    }
    this.resolveClosing?.();
  }

  // -- channels --------------------------------------------------------------

  private closeChannel(ch: Channel): void {
    if (ch.closed) return;
    ch.closed = true;
    this.channels.delete(ch.port);
    if (this.handle) this.unbindPort(ch.port);
    ch.events.complete();
    if (this.channels.size === 0 && this.loop) this.wakeLoop();
  }

  /**
   * The descriptor failed: logs `err` once and closes every channel (their
   * events$ complete, as on close: subscribers are not made to handle errors).
   */
  private failAll(err: Error): void {
    if (this.channels.size === 0) return;
    this.log.error(err.message);
    for (const ch of [...this.channels.values()]) this.closeChannel(ch);
  }

  // -- waiting ---------------------------------------------------------------

  private startLoop(): void {
    if (this.loop || this.closing || this.channels.size === 0) return;
    this.loop = this.run().finally(() => {
      this.loop = undefined;
      if (this.closing) this.finishClose();
      else this.startLoop(); // a port bound while the last poll was returning
    });
  }

  private wakeLoop(): void {
    if (this.wake) requireLibc().write(this.wake[1], new Uint8Array(1), 1n);
  }

  private async run(): Promise<void> {
    const c = requireLibc();
    const fds = Deno.UnsafePointer.of(this.pollfds.buffer);
    let failures = 0;
    while (!this.closing && this.channels.size > 0) {
      const n = await c.poll_wait(fds, 2n, -1);
      if (this.closing) return;
      if (n < 0) {
        // errno lives on the worker thread: only EINTR is expected here
        if (++failures >= POLL_FAILURES_LIMIT) {
          this.failAll(new XenError(`poll on /dev/xen/evtchn failed ${failures} times in a row`));
        }
        continue;
      }
      failures = 0;
      const evtchn = this.pollfds.getInt16(6, true);
      const woken = this.pollfds.getInt16(14, true);
      if (woken & POLLIN) this.drainWakePipe();
      if (evtchn & POLLIN) this.drainPending();
      if (this.closing) return;
      if (evtchn & (POLLERR | POLLHUP | POLLNVAL)) {
        this.failAll(
          new XenError(
            `/dev/xen/evtchn failed (poll revents ${evtchn}): the event channel driver went away`,
          ),
        );
      }
    }
  }

  private drainWakePipe(): void {
    const c = requireLibc();
    const buf = new Uint8Array(64);
    while (this.wake && c.read(this.wake[0], buf, BigInt(buf.length)) > 0n) {
      // empty it
    }
  }

  /** Takes the pending ports (the descriptor is readable, so this does not block). */
  private drainPending(): void {
    const lib = this.lib!;
    const c = requireLibc();
    for (let i = 0; i < DRAIN_LIMIT && this.handle && !this.closing; i++) {
      const port = lib.xenevtchn_pending(this.handle);
      if (port < 0) {
        const err = errno();
        const e = errnoName(err);
        if (e === "EAGAIN" || e === "EINTR") return;
        this.failAll(
          new XenError(
            `xenevtchn_pending failed: ${describeErrno(err)}` +
              (e === "EFBIG" ? ": the event channel ring overflowed" : ""),
            e,
          ),
        );
        return;
      }
      const ch = this.channels.get(port);
      if (ch) {
        // Unmask first, as qemu does: a notify during the handler is kept and delivered next.
        if (lib.xenevtchn_unmask(this.handle, port) < 0) {
          this.log.warn(`xenevtchn_unmask(port ${port}) failed: ${describeErrno(errno())}`);
        }
        ch.events.next();
      }
      // more already queued? (poll with timeout 0 on this thread)
      if (c.poll(new Uint8Array(this.pollOne.buffer), 1n, 0) <= 0) return;
      if ((this.pollOne.getInt16(6, true) & POLLIN) === 0) return;
    }
  }
}
