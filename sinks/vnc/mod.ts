/**
 * The VNC (RFB) server sink: serves one guest's display and input to any
 * number of VNC clients.
 *
 * @module
 */
import type { Logger } from "../../sources/log.ts";
import { firstFreeDisplay, parseVncAddress, VNC_BASE_PORT } from "./address.ts";
import { AuthLimiter } from "./auth/limiter.ts";
import { NoneAuth } from "./auth/none.ts";
import { TlsServer } from "./auth/tls.ts";
import type { SecurityType } from "./auth/types.ts";
import { VeNCrypt } from "./auth/vencrypt.ts";
import { readVncPassword, VncAuth } from "./auth/vnc.ts";
import type { DisplaySource } from "./connection.ts";
import { createEncoder } from "./encodings/mod.ts";
import { KeyTranslator, loadKeymap, xtToEvdev } from "./keymap/mod.ts";
import { type SharePolicy, VncServer } from "./server.ts";

export { VncServer } from "./server.ts";
export type { SharePolicy } from "./server.ts";
export { parseVncAddress, VNC_BASE_PORT } from "./address.ts";

/** Settings of {@link serveVnc}, in the manner of qemu-dm's `-vnc` options. */
export interface VncOptions {
  /** `HOST:DISPLAY` (port 5900 + DISPLAY). Default host 127.0.0.1, display = `defaultDisplay`. */
  address?: string;
  /** The display used when `address` names none (the domain id, as qemu-dm did). */
  defaultDisplay: number;
  /** Take the first free display from the requested one on (libxl's vncunused). */
  unused?: boolean;
  /** VNC password from a file (first line; at most 8 characters count). */
  passwordFile?: string;
  /** VNC password given directly (the toolstack's vncpasswd key). */
  password?: Uint8Array;
  /** PEM files for VeNCrypt (X509None, or X509Vnc with a password). */
  tlsCert?: string;
  tlsKey?: string;
  /** Keyboard layout for keysym clients: en-us (default), de, fr, ... */
  keymap?: string;
  share?: SharePolicy;
  /** The desktop name clients show (the domain's name, or "domain N"). */
  name: string;
  log: Logger;
  /** Handshake timeout (ms). */
  timeoutMs?: number;
  /** Serve no TCP port (clients come only through other transports, e.g. WebSocket). */
  noListen?: boolean;
  /**
   * Share of a core that taking the guest's damage may use (see `DisplayShadow`);
   * default: no limit. A process serving many guests sets one, so that no guest
   * starves the others.
   */
  damageCpuShare?: number;
}

/** A running VNC server. */
export interface VncService {
  readonly server: VncServer;
  readonly hostname: string;
  readonly port: number;
  readonly display: number;
  /** The security types offered, by name (for logs and tests). */
  readonly security: string;
  close(): void;
}

/** Builds the security type clients get: exactly one, as QEMU offers. */
async function securityFrom(o: VncOptions): Promise<{ types: SecurityType[]; name: string }> {
  const password = o.passwordFile ? await readVncPassword(o.passwordFile, o.log) : o.password;
  const vnc = password ? new VncAuth(password) : undefined;
  if (o.tlsCert || o.tlsKey) {
    if (!o.tlsCert || !o.tlsKey) throw new Error("--tls-cert and --tls-key go together");
    const tls = await TlsServer.fromFiles(o.tlsCert, o.tlsKey);
    return {
      types: [new VeNCrypt({ tls, vnc })],
      name: vnc ? "VeNCrypt X509Vnc" : "VeNCrypt X509None",
    };
  }
  if (vnc) return { types: [vnc], name: "VNC authentication" };
  return { types: [new NoneAuth()], name: "none" };
}

/** Starts a VNC server for a guest and logs where it listens. */
export async function serveVnc(source: DisplaySource, o: VncOptions): Promise<VncService> {
  const addr = parseVncAddress(o.address ?? "", o.defaultDisplay);
  const security = await securityFrom(o);
  const keymap = loadKeymap(o.keymap ?? "en-us");
  const limiter = new AuthLimiter();
  const server = new VncServer({
    source,
    name: o.name,
    security: security.types,
    keys: () => {
      const t = new KeyTranslator(keymap);
      return { keyEvent: (ks, down) => t.keyEvent(ks, down), xtToEvdev };
    },
    createEncoder,
    log: o.log,
    share: o.share,
    timeoutMs: o.timeoutMs,
    damageCpuShare: o.damageCpuShare,
    beforeAuth: (remote) => limiter.beforeAttempt(remote),
    afterAuth: (remote, ok) => ok ? limiter.succeeded(remote) : limiter.failed(remote),
  });
  let display = addr.display;
  if (o.noListen) {
    o.log.info(`VNC server without a TCP port, security ${security.name}`);
    return {
      server,
      hostname: addr.hostname,
      port: 0,
      display: -1,
      security: security.name,
      close: () => server.close(),
    };
  }
  if (o.unused) {
    display = firstFreeDisplay((port) => server.listen(addr.hostname, port), addr.display);
  } else {
    try {
      server.listen(addr.hostname, VNC_BASE_PORT + display);
    } catch (e) {
      if (e instanceof Deno.errors.AddrInUse) {
        throw new Error(
          `VNC port ${
            VNC_BASE_PORT + display
          } (display ${display}) is in use; choose another with --vnc or use --vnc-unused`,
        );
      }
      throw e;
    }
  }
  const port = VNC_BASE_PORT + display;
  o.log.info(
    `VNC server on ${addr.hostname}:${port} (display ${display}), security ${security.name}, keymap ${
      o.keymap ?? "en-us"
    }`,
  );
  return {
    server,
    hostname: addr.hostname,
    port,
    display,
    security: security.name,
    close: () => server.close(),
  };
}
