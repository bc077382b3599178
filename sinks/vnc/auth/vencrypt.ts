/**
 * VeNCrypt (security type 19): TLS, then a sub-authentication inside it.
 *
 * The exchange (VeNCrypt 0.2, as QEMU, TigerVNC, gtk-vnc and libvncclient
 * implement it):
 *
 * 1. server: U8 major 0, U8 minor 2 (highest version it supports)
 * 2. client: U8 major, U8 minor (the version it picks)
 * 3. server: U8 0 (version accepted; anything else refuses and closes), then
 *    U8 count and count × U32 subtypes
 * 4. client: U32 chosen subtype
 * 5. server: U8 1 (subtype accepted; 0 refuses and closes)
 * 6. TLS handshake, client first (its ClientHello may already be buffered)
 * 7. inside TLS: the subtype's own exchange (X509Vnc: VNC auth; X509None:
 *    nothing), then the caller's SecurityResult, over TLS, in every RFB
 *    version (3.7 included).
 *
 * Only the X509 subtypes are offered: TLSNone / TLSVnc need anonymous
 * Diffie-Hellman suites, which Deno's TLS (rustls) does not have. A viewer
 * must therefore trust the server certificate (gtk-vnc: the CA in its x509
 * directory; TigerVNC: X509CA / the first-use prompt).
 *
 * @module
 */
import type { RfbStream } from "../stream.ts";
import {
  AuthFailed,
  type SecurityContext,
  type SecurityOutcome,
  type SecurityType,
  SecurityTypeId,
} from "./types.ts";
import { TlsHandshakeFailed, type TlsServer } from "./tls.ts";
import type { VncAuth } from "./vnc.ts";

/** VeNCrypt subtype numbers (RFB-NOTES §4). */
export const VeNCryptSubtype = {
  Plain: 256,
  TLSNone: 257,
  TLSVnc: 258,
  TLSPlain: 259,
  X509None: 260,
  X509Vnc: 261,
  X509Plain: 262,
  X509SASL: 263,
  TLSSASL: 264,
} as const;

/** The subtypes this server can run. */
export type SupportedSubtype = typeof VeNCryptSubtype.X509None | typeof VeNCryptSubtype.X509Vnc;

/** How a VeNCrypt security type is set up. */
export interface VeNCryptOptions {
  /** Certificate and key (from `--tls-cert` / `--tls-key`). */
  tls: TlsServer;
  /**
   * VNC auth to run inside TLS. When given, only X509Vnc is offered by
   * default (offering X509None as well would let a client skip the password).
   */
  vnc?: VncAuth;
  /**
   * Subtypes to offer, in order of preference. Default: [X509Vnc] with
   * `vnc`, else [X509None]. X509Vnc needs `vnc`.
   */
  subtypes?: SupportedSubtype[];
}

/** VeNCrypt 0.2 with the X509None and X509Vnc subtypes. */
export class VeNCrypt implements SecurityType {
  readonly id = SecurityTypeId.VeNCrypt;
  /** Offered subtypes, in order of preference. */
  readonly subtypes: readonly SupportedSubtype[];
  private readonly tls: TlsServer;
  private readonly vnc?: VncAuth;

  constructor(opts: VeNCryptOptions) {
    this.tls = opts.tls;
    this.vnc = opts.vnc;
    const subtypes = opts.subtypes ??
      [opts.vnc ? VeNCryptSubtype.X509Vnc : VeNCryptSubtype.X509None];
    if (subtypes.length === 0 || subtypes.length > 255) {
      throw new Error("VeNCrypt needs 1 to 255 subtypes");
    }
    for (const s of subtypes) {
      if (s !== VeNCryptSubtype.X509None && s !== VeNCryptSubtype.X509Vnc) {
        throw new Error(
          `VeNCrypt subtype ${s} is not supported (only X509None 260 and X509Vnc 261; ` +
            `anonymous TLS subtypes need anon-DH suites, which Deno's TLS lacks)`,
        );
      }
      if (s === VeNCryptSubtype.X509Vnc && !opts.vnc) {
        throw new Error("VeNCrypt X509Vnc needs a VNC password");
      }
    }
    this.subtypes = [...subtypes];
  }

  async run(stream: RfbStream, ctx: SecurityContext): Promise<SecurityOutcome> {
    await stream.write(new Uint8Array([0, 2]));
    const [major, minor] = await stream.read(2);
    if (major !== 0 || minor !== 2) {
      await stream.write(new Uint8Array([0xff])).catch(() => {});
      throw new AuthFailed(`unsupported VeNCrypt version ${major}.${minor} (need 0.2)`, {
        resultSent: true,
      });
    }
    const list = new Uint8Array(2 + 4 * this.subtypes.length);
    const dv = new DataView(list.buffer);
    dv.setUint8(0, 0); // version accepted
    dv.setUint8(1, this.subtypes.length);
    this.subtypes.forEach((s, i) => dv.setUint32(2 + 4 * i, s));
    await stream.write(list);

    const chosen = new DataView((await stream.read(4)).buffer).getUint32(0);
    const subtype = this.subtypes.find((s) => s === chosen);
    if (subtype === undefined) {
      await stream.write(new Uint8Array([0])).catch(() => {});
      throw new AuthFailed(`VeNCrypt subtype ${chosen} was not offered`, { resultSent: true });
    }
    await stream.write(new Uint8Array([1]));

    let secure: RfbStream;
    try {
      secure = await this.tls.upgrade(stream);
    } catch (e) {
      if (e instanceof TlsHandshakeFailed) {
        throw new AuthFailed(e.message, { resultSent: true });
      }
      throw e;
    }

    if (subtype === VeNCryptSubtype.X509Vnc) {
      try {
        await this.vnc!.run(secure, ctx);
      } catch (e) {
        if (e instanceof AuthFailed) {
          throw new AuthFailed(e.message, {
            stream: secure,
            resultSent: e.resultSent,
            badCredentials: e.badCredentials,
          });
        }
        secure.close();
        throw e;
      }
    }
    return { stream: secure };
  }
}
