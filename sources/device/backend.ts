import { Subscription } from "rxjs";
import type { Platform } from "../platform.ts";
import type { Logger } from "../log.ts";
import { parseState, stateName, XenbusState } from "./xenbus.ts";

/** What one device type (vfb, vkbd) does at each step of the xenbus handshake. */
export interface DeviceOps {
  /** Backend Initialising -> InitWait: write the backend's feature keys. */
  init(be: string): Promise<void>;
  /** Frontend Initialised: map its pages and bind its event channel. Throws with a reason to refuse. */
  connect(be: string, fe: string): Promise<void>;
  /** Both sides Connected: read what the frontend asked for. */
  connected(be: string, fe: string): Promise<void>;
  /** Unmap and unbind; must not throw. */
  disconnect(reason: string): void;
}

/** A step of the handshake, as the backend sees it (for logs and tests). */
export type BackendPhase = "init" | "initwait" | "connected" | "closed" | "gone";

/**
 * The xenbus backend state machine (as QEMU's xen-legacy-backend runs it):
 * Initialising -> InitWait once `online`, -> Connected once the frontend is
 * Initialised and its pages map, disconnect when the frontend closes, and
 * back to InitWait when it returns to Initialising (a reboot or resume).
 * Every xenstore value it reads comes from the guest or the toolstack and is
 * checked; a failure closes this device only, with a logged reason.
 */
export class XenbusBackend {
  private readonly sub = new Subscription();
  private running: Promise<void> = Promise.resolve();
  private again = false;
  private busy = false;
  private mapped = false;
  private connectedDone = false;
  private stopped = false;
  private failed = false;
  private lastFeState: XenbusState | undefined;
  private fe: string | undefined;
  private initialised!: () => void;
  /** Resolves once the backend's feature keys are written (state InitWait or later). */
  readonly ready: Promise<void> = new Promise((r) => this.initialised = r);
  private feWatch: Subscription | undefined;

  constructor(
    private readonly platform: Platform,
    readonly be: string,
    private readonly ops: DeviceOps,
    private readonly log: Logger,
    private readonly onPhase: (p: BackendPhase) => void = () => {},
  ) {}

  /** Starts watching the backend directory and follows the handshake from there. */
  start(): void {
    this.sub.add(
      this.platform.xenstore.watch(this.be).subscribe({
        next: () => this.kick(),
        error: (e) => this.log.error(`watch ${this.be} failed: ${e}`),
      }),
    );
  }

  /** Stops and disconnects (backend state is left as is). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.sub.unsubscribe();
    this.feWatch?.unsubscribe();
    await this.running.catch(() => {});
    this.teardown("backend stopped");
  }

  /** Closes the device because the guest misbehaved: unmap, say why in xenstore, state Closing. */
  fail(reason: string): void {
    this.failed = true;
    this.teardown(reason);
    try {
      this.ops.disconnect(reason); // also when a connect() in progress mapped things
    } catch (e) {
      this.log.error(`disconnect failed: ${e}`);
    }
    const xs = this.platform.xenstore;
    xs.write(`${this.be}/error`, reason.slice(0, 200))
      .then(() => this.setState(XenbusState.Closing))
      .catch((e) => this.log.error(`could not close the device: ${e}`));
  }

  private kick() {
    if (this.stopped) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    this.running = (async () => {
      do {
        this.again = false;
        try {
          await this.step();
        } catch (e) {
          this.log.error(`${e instanceof Error ? e.message : e}`);
        }
      } while (this.again && !this.stopped);
      this.busy = false;
    })();
  }

  private async setState(s: XenbusState) {
    await this.platform.xenstore.write(`${this.be}/state`, String(s));
    this.log.info(`backend ${stateName(s)}`);
  }

  private teardown(reason: string) {
    if (this.mapped) {
      this.mapped = false;
      this.connectedDone = false;
      try {
        this.ops.disconnect(reason);
      } catch (e) {
        this.log.error(`disconnect failed: ${e}`);
      }
    }
  }

  private watchFrontend(fe: string) {
    if (this.fe === fe) return;
    this.feWatch?.unsubscribe();
    this.fe = fe;
    this.feWatch = this.platform.xenstore.watch(`${fe}/state`).subscribe({
      next: () => this.kick(),
      error: () => {},
    });
  }

  /** One pass over the current states; called whenever either side changes. */
  private async step(): Promise<void> {
    const xs = this.platform.xenstore;
    const beStateRaw = await xs.read(`${this.be}/state`);
    if (beStateRaw === undefined) {
      // The toolstack removed the device (domain destroyed).
      this.teardown("backend directory removed");
      this.onPhase("gone");
      return;
    }
    const beState = parseState(beStateRaw);
    if (beState !== XenbusState.Initialising && beState !== XenbusState.Unknown) this.initialised();
    const fe = await xs.read(`${this.be}/frontend`);
    if (!fe || !fe.startsWith("/local/domain/")) {
      this.log.warn(`backend has no usable frontend path (${JSON.stringify(fe)})`);
      return;
    }
    this.watchFrontend(fe);
    const feState = parseState(await xs.read(`${fe}/state`));
    if (feState !== this.lastFeState) {
      this.lastFeState = feState;
      this.log.info(`frontend ${stateName(feState)}`);
    }

    if (beState === XenbusState.Initialising || beState === XenbusState.Unknown) {
      if ((await xs.read(`${this.be}/online`)) !== "1") return;
      await this.ops.init(this.be);
      await xs.write(`${this.be}/hotplug-status`, "connected");
      await this.setState(XenbusState.InitWait);
      this.onPhase("initwait");
      this.again = true;
      return;
    }

    if (
      feState === XenbusState.Closing || feState === XenbusState.Closed ||
      feState === XenbusState.Initialising
    ) {
      this.failed = false; // the guest starts over: it may connect again
    }
    if (feState === XenbusState.Closing || feState === XenbusState.Closed) {
      if (this.mapped) {
        this.teardown(`frontend ${stateName(feState)}`);
        this.log.info(`frontend ${stateName(feState)}: disconnected`);
      }
      if (beState !== XenbusState.Closing && beState !== XenbusState.Closed) {
        await this.setState(XenbusState.Closing);
      }
      if (feState === XenbusState.Closed && beState !== XenbusState.Closed) {
        await this.setState(XenbusState.Closed);
        this.onPhase("closed");
      }
      return;
    }

    if (
      (beState === XenbusState.Closing || beState === XenbusState.Closed) &&
      (feState === XenbusState.Initialising || feState === XenbusState.InitWait ||
        feState === XenbusState.Initialised) &&
      !this.failed
    ) {
      // The frontend came back (reboot, resume): reset for a new connection.
      this.teardown("frontend reset");
      this.log.info("frontend returned to Initialising: resetting");
      await this.setState(XenbusState.InitWait);
      this.onPhase("initwait");
      return;
    }

    if (feState === XenbusState.Unknown && this.mapped) {
      this.teardown("frontend vanished");
      return;
    }

    if (
      (beState === XenbusState.InitWait || beState === XenbusState.Connected) &&
      (feState === XenbusState.Initialised || feState === XenbusState.Connected) && !this.mapped &&
      !this.failed
    ) {
      try {
        await this.ops.connect(this.be, fe);
        if (this.failed) throw new Error("the guest misbehaved while connecting");
      } catch (e) {
        const reason = e instanceof Error ? e.message : String(e);
        this.log.error(`refusing the frontend: ${reason}`);
        this.failed = true;
        await xs.write(`${this.be}/error`, reason.slice(0, 200)).catch(() => {});
        await this.setState(XenbusState.Closing);
        return;
      }
      this.mapped = true;
      await this.setState(XenbusState.Connected);
      this.again = true;
      return;
    }

    if (
      beState === XenbusState.Connected && feState === XenbusState.Connected && this.mapped &&
      !this.connectedDone
    ) {
      this.connectedDone = true;
      await this.ops.connected(this.be, fe);
      this.onPhase("connected");
    }
  }
}
