import { Subject } from "rxjs";
import type { EventChannel, EventChannels } from "../platform.ts";

interface Port {
  domid: number;
  port: number;
  /** Who may bind to this port while it is unbound. */
  remoteDomid: number;
  peer?: Port;
  pending: boolean;
  events: Subject<void>;
  closed: boolean;
}

/**
 * Simulated event channels: per-domain port numbers, unbound ports that a
 * given remote domain may bind, and notifications delivered asynchronously
 * (a microtask) with a pending bit, so many notifies merge into one upcall.
 */
export class SimEvtchnHub {
  private readonly ports = new Map<string, Port>();
  private readonly nextPort = new Map<number, number>();

  private key(domid: number, port: number) {
    return `${domid}:${port}`;
  }

  private newPort(domid: number, remoteDomid: number): Port {
    const port = this.nextPort.get(domid) ?? 1;
    this.nextPort.set(domid, port + 1);
    const p: Port = {
      domid,
      port,
      remoteDomid,
      pending: false,
      events: new Subject<void>(),
      closed: false,
    };
    this.ports.set(this.key(domid, port), p);
    return p;
  }

  /** EVTCHNOP_alloc_unbound: a port in `domid` that `remoteDomid` may bind. */
  allocUnbound(domid: number, remoteDomid: number): EventChannel {
    return this.handle(this.newPort(domid, remoteDomid));
  }

  /** EVTCHNOP_bind_interdomain from `domid` to `remoteDomid`'s unbound `remotePort`. */
  bindInterdomain(domid: number, remoteDomid: number, remotePort: number): EventChannel {
    const remote = this.ports.get(this.key(remoteDomid, remotePort));
    if (!remote || remote.closed) {
      throw new RangeError(`event channel ${remotePort} of domain ${remoteDomid} does not exist`);
    }
    if (remote.peer) {
      throw new RangeError(`event channel ${remotePort} of domain ${remoteDomid} is already bound`);
    }
    if (remote.remoteDomid !== domid) {
      throw new RangeError(
        `event channel ${remotePort} of domain ${remoteDomid} is not for ${domid}`,
      );
    }
    const local = this.newPort(domid, remoteDomid);
    local.peer = remote;
    remote.peer = local;
    return this.handle(local);
  }

  /** The event channels of one domain, as the Platform interface wants them. */
  forDomain(domid: number): EventChannels {
    return { bindInterdomain: (remote, port) => this.bindInterdomain(domid, remote, port) };
  }

  /** Closes every port of a domain (it died). */
  closeDomain(domid: number): void {
    for (const p of [...this.ports.values()]) if (p.domid === domid) this.close(p);
  }

  private close(p: Port) {
    if (p.closed) return;
    p.closed = true;
    this.ports.delete(this.key(p.domid, p.port));
    if (p.peer) p.peer.peer = undefined;
    p.events.complete();
  }

  private handle(p: Port): EventChannel {
    return {
      localPort: p.port,
      events$: p.events.asObservable(),
      notify: () => {
        const peer = p.peer;
        if (p.closed || !peer || peer.closed || peer.pending) return;
        peer.pending = true;
        queueMicrotask(() => {
          peer.pending = false;
          if (!peer.closed) peer.events.next();
        });
      },
      close: () => this.close(p),
    };
  }
}
