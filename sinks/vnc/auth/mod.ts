/**
 * RFB security types (None, VNC Authentication, VeNCrypt with X509None /
 * X509Vnc), the TLS upgrade VeNCrypt uses, and the failure rate limiter.
 *
 * @example
 * ```ts ignore
 * import { AuthLimiter, TlsServer, VeNCrypt, VncAuth, readVncPassword } from "./mod.ts";
 *
 * const vnc = new VncAuth(await readVncPassword("/etc/rxfb/vncpasswd"));
 * const tls = await TlsServer.fromFiles("server-cert.pem", "server-key.pem");
 * const types = [new VeNCrypt({ tls, vnc }), vnc]; // offered in this order (3.7+)
 * const limiter = new AuthLimiter();
 * ```
 * @module
 */
export * from "./types.ts";
export { NoneAuth } from "./none.ts";
export {
  CHALLENGE_SIZE,
  constantTimeEqual,
  decodeVncPasswdFile,
  desEcbDecrypt,
  desEcbEncrypt,
  encodeVncPasswdFile,
  MAX_PASSWORD,
  parseXenstoreVncPasswd,
  readVncPassword,
  VncAuth,
  vncDecrypt,
  vncDesKey,
  vncEncrypt,
  vncPasswordBytes,
  type Warn,
} from "./vnc.ts";
export { TlsHandshakeFailed, TlsServer, type TlsServerOptions } from "./tls.ts";
export {
  type SupportedSubtype,
  VeNCrypt,
  type VeNCryptOptions,
  VeNCryptSubtype,
} from "./vencrypt.ts";
export {
  addressOf,
  AuthLimiter,
  type Clock,
  type LimiterOptions,
  realClock,
  TooManyAttempts,
} from "./limiter.ts";
