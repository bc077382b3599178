/**
 * VNC Authentication (security type 2, rfbproto "VNC Authentication"): a 16-byte random
 * challenge, which the client encrypts with DES-ECB under the password and
 * sends back.
 *
 * The password is at most 8 bytes (longer ones are cut, shorter ones padded
 * with zeros) and, as in every VNC implementation since the original d3des
 * code, each key byte is used with its bits in reverse order.
 *
 * Passwords come from a file ({@link readVncPassword}) or the toolstack's
 * xenstore `vncpasswd` ({@link parseXenstoreVncPasswd}), never the command
 * line (visible in `ps`).
 *
 * @module
 */
// DES backend: Deno's node:crypto has no "des-ecb" (ERR_CRYPTO_UNKNOWN_CIPHER in
// Deno 2.x), but it has "des-ede3-cbc", implemented natively (RustCrypto `des`).
// Triple DES with K1 = K2 = K3 is single DES (EDE: E_K(D_K(E_K(x))) = E_K(x)),
// and CBC with a zero IV over one 8-byte block is ECB. So each block is one
// des-ede3-cbc call with key K||K||K and IV 0. This keeps crypto in a
// maintained native implementation with no npm dependency; the tests check it
// against the FIPS 81 / classic DES vector and two vectors made by other
// implementations (OpenSSL's legacy DES-ECB, TightVNC's vncpasswd).
// The npm alternative (des.js 1.1.0) is pure JS and unmaintained since 2022.
import { createCipheriv, createDecipheriv } from "node:crypto";
import type { RfbStream } from "../stream.ts";
import {
  AuthFailed,
  type SecurityContext,
  type SecurityOutcome,
  type SecurityType,
  SecurityTypeId,
} from "./types.ts";

/** Size of the VNC auth challenge and response. */
export const CHALLENGE_SIZE = 16;
/** Significant password bytes in VNC auth. */
export const MAX_PASSWORD = 8;

function desBlocks(decrypt: boolean, key: Uint8Array, data: Uint8Array): Uint8Array {
  if (key.length !== 8) throw new RangeError("DES key must be 8 bytes");
  if (data.length % 8 !== 0) throw new RangeError("DES-ECB data must be a multiple of 8 bytes");
  const k3 = new Uint8Array(24);
  k3.set(key, 0);
  k3.set(key, 8);
  k3.set(key, 16);
  const iv = new Uint8Array(8);
  const out = new Uint8Array(data.length);
  for (let off = 0; off < data.length; off += 8) {
    const c = decrypt
      ? createDecipheriv("des-ede3-cbc", k3, iv)
      : createCipheriv("des-ede3-cbc", k3, iv);
    c.setAutoPadding(false);
    const a = c.update(data.subarray(off, off + 8));
    const b = c.final();
    out.set(a, off);
    out.set(b, off + a.length);
  }
  k3.fill(0);
  return out;
}

/** Standard DES in ECB mode (no padding): `data` a multiple of 8 bytes, `key` 8 bytes. */
export function desEcbEncrypt(key: Uint8Array, data: Uint8Array): Uint8Array {
  return desBlocks(false, key, data);
}

/** Inverse of {@link desEcbEncrypt}. */
export function desEcbDecrypt(key: Uint8Array, data: Uint8Array): Uint8Array {
  return desBlocks(true, key, data);
}

function reverseBits(b: number): number {
  b = ((b & 0xf0) >> 4) | ((b & 0x0f) << 4);
  b = ((b & 0xcc) >> 2) | ((b & 0x33) << 2);
  return ((b & 0xaa) >> 1) | ((b & 0x55) << 1);
}

/** The DES key VNC derives from a password: 8 bytes, zero padded, bits of each byte reversed. */
export function vncDesKey(password: Uint8Array): Uint8Array {
  const key = new Uint8Array(8);
  for (let i = 0; i < 8 && i < password.length; i++) key[i] = reverseBits(password[i]);
  return key;
}

/**
 * The response a client sends to `challenge` under `password` (VNC's DES
 * with bit-reversed key bytes; any multiple of 8 bytes).
 */
export function vncEncrypt(password: Uint8Array, challenge: Uint8Array): Uint8Array {
  const key = vncDesKey(password);
  try {
    return desEcbEncrypt(key, challenge);
  } finally {
    key.fill(0);
  }
}

/** Inverse of {@link vncEncrypt} (used to read obfuscated vncpasswd files). */
export function vncDecrypt(password: Uint8Array, data: Uint8Array): Uint8Array {
  const key = vncDesKey(password);
  try {
    return desEcbDecrypt(key, data);
  } finally {
    key.fill(0);
  }
}

/** Compares two byte arrays in time that depends only on their lengths. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** Where warnings go (a `Logger` from sources/log.ts fits). */
export interface Warn {
  warn(msg: string): void;
}

const stderrWarn: Warn = { warn: (m) => console.error(`rxfb: warn: ${m}`) };

/**
 * Turns a password string into the bytes VNC auth uses: UTF-8, at most 8
 * significant bytes (warns, naming `source`, when longer). Throws on an
 * empty password.
 */
export function vncPasswordBytes(text: string, source: string, log: Warn = stderrWarn): Uint8Array {
  const bytes = new TextEncoder().encode(text);
  if (bytes.length === 0) throw new Error(`${source}: empty VNC password`);
  if (bytes.length > MAX_PASSWORD) {
    log.warn(
      `${source}: VNC passwords have at most ${MAX_PASSWORD} significant bytes; ` +
        `only the first ${MAX_PASSWORD} of ${bytes.length} are used`,
    );
  }
  return bytes.slice(0, MAX_PASSWORD);
}

/** The fixed key vncpasswd (TigerVNC, TightVNC, RealVNC 4) obfuscates password files with. */
const VNCPASSWD_OBFUSCATION_KEY = new Uint8Array([23, 82, 107, 6, 35, 78, 88, 7]);

/** Reads the 8-byte obfuscated password file format written by `vncpasswd`. */
export function decodeVncPasswdFile(data: Uint8Array): Uint8Array {
  if (data.length < 8) throw new Error("obfuscated vncpasswd data is shorter than 8 bytes");
  const plain = vncDecrypt(VNCPASSWD_OBFUSCATION_KEY, data.subarray(0, 8));
  const end = plain.indexOf(0);
  return plain.slice(0, end < 0 ? 8 : end);
}

/** Encodes a password in vncpasswd's obfuscated 8-byte format (for tests and tooling). */
export function encodeVncPasswdFile(password: Uint8Array): Uint8Array {
  const block = new Uint8Array(8);
  block.set(password.subarray(0, 8));
  return vncEncrypt(VNCPASSWD_OBFUSCATION_KEY, block);
}

function isPrintableText(b: Uint8Array): boolean {
  for (const c of b) if (c < 0x20 || c === 0x7f) return false;
  return true;
}

/**
 * Reads the VNC password from a file: the first line, without its line
 * ending, at most 8 significant bytes (a warning says when it is longer).
 * A file of exactly 8 bytes that is not printable text is taken as the
 * obfuscated binary format `vncpasswd` writes (TigerVNC / TightVNC
 * `~/.vnc/passwd`). Warns when the file is readable by group or others.
 */
export async function readVncPassword(path: string, log: Warn = stderrWarn): Promise<Uint8Array> {
  const data = await Deno.readFile(path);
  try {
    const st = await Deno.stat(path);
    if (st.mode !== null && (st.mode & 0o077) !== 0) {
      log.warn(`${path}: password file is readable by others (chmod 600 it)`);
    }
  } catch {
    // mode is informational only
  }
  // A text file "abcdefg\n" is 8 bytes too: judge the bytes before a final newline.
  const text = data.at(-1) === 0x0a ? data.subarray(0, data.at(-2) === 0x0d ? -2 : -1) : data;
  if (data.length === 8 && !isPrintableText(text)) {
    const pw = decodeVncPasswdFile(data);
    if (pw.length === 0) throw new Error(`${path}: empty VNC password`);
    return pw;
  }
  let end = data.indexOf(0x0a);
  if (end < 0) end = data.length;
  if (end > 0 && data[end - 1] === 0x0d) end--;
  const line = new TextDecoder("utf-8", { fatal: false }).decode(data.subarray(0, end));
  data.fill(0);
  return vncPasswordBytes(line, path, log);
}

/**
 * Parses the toolstack's `vncpasswd` xenstore value: libxl writes the
 * guest config's `vncpasswd` as plain text into the vfb backend directory.
 * Returns null when no password is set (key absent or empty string, which
 * libxl and QEMU treat as "no VNC auth").
 */
export function parseXenstoreVncPasswd(
  value: string | null | undefined,
  log: Warn = stderrWarn,
): Uint8Array | null {
  if (value === null || value === undefined || value === "") return null;
  return vncPasswordBytes(value, "xenstore vncpasswd", log);
}

/** VNC Authentication: challenge, DES response, compare. */
export class VncAuth implements SecurityType {
  readonly id = SecurityTypeId.VncAuth;
  private readonly password: Uint8Array;

  /** `password`: the bytes from readVncPassword / parseXenstoreVncPasswd (only 8 count). */
  constructor(password: Uint8Array) {
    if (password.length === 0) throw new Error("VNC auth needs a non-empty password");
    this.password = password.slice(0, MAX_PASSWORD);
  }

  async run(stream: RfbStream, _ctx: SecurityContext): Promise<SecurityOutcome> {
    const challenge = crypto.getRandomValues(new Uint8Array(CHALLENGE_SIZE));
    await stream.write(challenge);
    const response = await stream.read(CHALLENGE_SIZE);
    const expected = vncEncrypt(this.password, challenge);
    const ok = constantTimeEqual(expected, response);
    expected.fill(0);
    if (!ok) throw new AuthFailed("Authentication failed", { badCredentials: true });
    return { stream };
  }
}
