/**
 * The one interface every RFB security type implements, and the
 * SecurityResult message that closes the security handshake.
 *
 * The RFB connection negotiates the protocol version and the security type
 * (rfbproto "Security": a U32 type in 3.3, a U8 list and a U8 choice from 3.7 on),
 * then hands the stream to the chosen type's `run()`, then sends
 * SecurityResult with {@link sendSecurityResult} unless the type says it
 * must not ({@link wantsSecurityResult}, `resultSent`).
 *
 * @module
 */
import type { RfbStream } from "../stream.ts";

/** Security type numbers (rfbproto "Security", RFB-NOTES §4). */
export const SecurityTypeId = {
  Invalid: 0,
  None: 1,
  VncAuth: 2,
  VeNCrypt: 19,
} as const;

/** RFB protocol minor version after the version handshake: 3.3, 3.7 or 3.8. */
export type RfbMinor = 3 | 7 | 8;

/** What a security type learns about the connection. */
export interface SecurityContext {
  /** Negotiated minor version (3.3 / 3.7 / 3.8). */
  version: RfbMinor;
  /** Client address for logs and rate limiting ("127.0.0.1:41234"). */
  remote: string;
}

/** What a successful `run()` hands back. */
export interface SecurityOutcome {
  /** The stream to continue on: the same one, or a TLS stream over it (VeNCrypt). */
  stream: RfbStream;
  /**
   * True when the type already sent SecurityResult itself (none of ours
   * does today; the field exists so that one may without the caller guessing).
   */
  resultSent?: boolean;
}

/** An RFB security type (rfbproto "Security Types"): None, VNC Authentication, VeNCrypt, ... */
export interface SecurityType {
  /** 1 None, 2 VNC, 19 VeNCrypt. */
  readonly id: number;
  /**
   * Runs this type's exchange after the client chose it. Returns the stream
   * to continue on (a TLS stream for VeNCrypt) or throws {@link AuthFailed}.
   * The caller then sends SecurityResult (unless `resultSent`), per the
   * version rules in {@link wantsSecurityResult}. Other errors (e.g.
   * StreamClosed) mean the connection is gone.
   */
  run(stream: RfbStream, ctx: SecurityContext): Promise<SecurityOutcome>;
}

/**
 * Authentication failed. `message` is the reason string for SecurityResult
 * (3.8 sends it to the client; keep it free of secrets).
 */
export class AuthFailed extends Error {
  /**
   * The stream to send the failing SecurityResult on, when it is not the one
   * handed to `run()` (VNC auth failing inside VeNCrypt's TLS).
   */
  readonly stream?: RfbStream;
  /**
   * True when no SecurityResult may follow: the type already told the
   * client (VeNCrypt version / subtype refusal) or the transport is broken
   * (TLS handshake failed). The caller just closes.
   */
  readonly resultSent: boolean;
  /** True when this failure is a wrong credential (counts for the rate limiter). */
  readonly badCredentials: boolean;

  constructor(
    reason: string,
    opts: { stream?: RfbStream; resultSent?: boolean; badCredentials?: boolean } = {},
  ) {
    super(reason);
    this.name = "AuthFailed";
    this.stream = opts.stream;
    this.resultSent = opts.resultSent ?? false;
    this.badCredentials = opts.badCredentials ?? false;
  }
}

/** SecurityResult status words (rfbproto "SecurityResult"). */
export const SecurityResult = { OK: 0, Failed: 1, TooMany: 2 } as const;

/**
 * Whether SecurityResult follows a successful `run()` of security type `id`
 * under `version`: always, except for None (1) before 3.8 (rfbproto "None").
 * VeNCrypt sends it in 3.7 too, whatever its subtype (QEMU, TigerVNC and
 * gtk-vnc agree), and VNC auth sends it in every version.
 */
export function wantsSecurityResult(id: number, version: RfbMinor): boolean {
  return !(id === SecurityTypeId.None && version < 8);
}

/**
 * The SecurityResult message: U32 status, then (3.8 only, on failure) a
 * U32 length and the reason string.
 */
export function securityResultBytes(version: RfbMinor, failure?: string): Uint8Array {
  if (failure === undefined) return new Uint8Array([0, 0, 0, SecurityResult.OK]);
  if (version < 8) return new Uint8Array([0, 0, 0, SecurityResult.Failed]);
  const reason = new TextEncoder().encode(failure);
  const out = new Uint8Array(8 + reason.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, SecurityResult.Failed);
  dv.setUint32(4, reason.length);
  out.set(reason, 8);
  return out;
}

/** Sends SecurityResult: OK when `failure` is undefined, else failed with that reason. */
export function sendSecurityResult(
  stream: RfbStream,
  version: RfbMinor,
  failure?: string,
): Promise<void> {
  return stream.write(securityResultBytes(version, failure));
}
