/**
 * The xenstore wire protocol (xen/io/xs_wire.h, docs/misc/xenstore.txt):
 * message types, errno names, header and payload codecs, and a streaming
 * frame parser. Pure functions, no I/O; shared by the client
 * (sources/xen/xenstore_client.ts) and the simulator's server
 * (sources/sim/xenstore_server.ts).
 *
 * A message is a 16-byte header of four little-endian u32 (type, req_id,
 * tx_id, len) followed by `len` bytes of payload, at most XS_PAYLOAD_MAX.
 * Payloads are mostly NUL-terminated strings; a READ reply and the value
 * of a WRITE are raw bytes (no NUL), carried here as UTF-8 text.
 */
import type { Perm, PermLetter } from "../platform.ts";

// ---- message types (enum xsd_sockmsg_type) --------------------------------

export const XS_CONTROL = 0;
/** The old name of XS_CONTROL. */
export const XS_DEBUG = XS_CONTROL;
export const XS_DIRECTORY = 1;
export const XS_READ = 2;
export const XS_GET_PERMS = 3;
export const XS_WATCH = 4;
export const XS_UNWATCH = 5;
export const XS_TRANSACTION_START = 6;
export const XS_TRANSACTION_END = 7;
export const XS_INTRODUCE = 8;
export const XS_RELEASE = 9;
export const XS_GET_DOMAIN_PATH = 10;
export const XS_WRITE = 11;
export const XS_MKDIR = 12;
export const XS_RM = 13;
export const XS_SET_PERMS = 14;
export const XS_WATCH_EVENT = 15;
export const XS_ERROR = 16;
export const XS_IS_DOMAIN_INTRODUCED = 17;
export const XS_RESUME = 18;
export const XS_SET_TARGET = 19;
/* 20 was XS_RESTRICT, removed. */
export const XS_RESET_WATCHES = 21;
export const XS_DIRECTORY_PART = 22;
/** Number of valid types. */
export const XS_TYPE_COUNT = 23;
/** Guaranteed to remain an invalid type. */
export const XS_INVALID = 0xffff;

/** Type names by number, as xenstored logs them. */
export const XS_TYPE_NAMES: Readonly<Record<number, string>> = {
  [XS_CONTROL]: "CONTROL",
  [XS_DIRECTORY]: "DIRECTORY",
  [XS_READ]: "READ",
  [XS_GET_PERMS]: "GET_PERMS",
  [XS_WATCH]: "WATCH",
  [XS_UNWATCH]: "UNWATCH",
  [XS_TRANSACTION_START]: "TRANSACTION_START",
  [XS_TRANSACTION_END]: "TRANSACTION_END",
  [XS_INTRODUCE]: "INTRODUCE",
  [XS_RELEASE]: "RELEASE",
  [XS_GET_DOMAIN_PATH]: "GET_DOMAIN_PATH",
  [XS_WRITE]: "WRITE",
  [XS_MKDIR]: "MKDIR",
  [XS_RM]: "RM",
  [XS_SET_PERMS]: "SET_PERMS",
  [XS_WATCH_EVENT]: "WATCH_EVENT",
  [XS_ERROR]: "ERROR",
  [XS_IS_DOMAIN_INTRODUCED]: "IS_DOMAIN_INTRODUCED",
  [XS_RESUME]: "RESUME",
  [XS_SET_TARGET]: "SET_TARGET",
  [XS_RESET_WATCHES]: "RESET_WATCHES",
  [XS_DIRECTORY_PART]: "DIRECTORY_PART",
};

/** "READ", or "type 99" for an unknown type. */
export function xsTypeName(type: number): string {
  return XS_TYPE_NAMES[type] ?? `type ${type}`;
}

// ---- limits ------------------------------------------------------------------

/** XENSTORE_PAYLOAD_MAX: the largest payload in either direction. */
export const XS_PAYLOAD_MAX = 4096;
/** sizeof(struct xsd_sockmsg). */
export const XS_HEADER_SIZE = 16;
/** XENSTORE_ABS_PATH_MAX. */
export const XS_ABS_PATH_MAX = 3072;
/** XENSTORE_REL_PATH_MAX. */
export const XS_REL_PATH_MAX = 2048;

/** The errno names of struct xsd_errors, in the header's order. */
export const XS_ERRNOS = [
  "EINVAL",
  "EACCES",
  "EEXIST",
  "EISDIR",
  "ENOENT",
  "ENOMEM",
  "ENOSPC",
  "EIO",
  "ENOTEMPTY",
  "ENOSYS",
  "EROFS",
  "EBUSY",
  "EAGAIN",
  "EISCONN",
  "E2BIG",
  "EPERM",
] as const;

export type XsErrno = typeof XS_ERRNOS[number];

/** Whether `name` is one of the errno names xenstore sends. */
export function isXsErrno(name: string): name is XsErrno {
  return (XS_ERRNOS as readonly string[]).includes(name);
}

/**
 * Not xenstored's: the CONTROL command by which a connection to rxfb's
 * simulated xenstored (sources/sim/xenstore_server.ts) acts as domain N from
 * then on, payload "rxfb-as-domain\0N\0". A real xenstored answers EINVAL.
 */
export const AS_DOMAIN_COMMAND = "rxfb-as-domain";

/** The payload of a successful reply that carries nothing else. */
export const XS_OK = "OK";

// ---- messages ------------------------------------------------------------------

/** struct xsd_sockmsg. */
export interface XsHeader {
  readonly type: number;
  readonly reqId: number;
  readonly txId: number;
  readonly len: number;
}

/** A whole message: header fields and the payload. */
export interface XsMessage {
  readonly type: number;
  readonly reqId: number;
  readonly txId: number;
  readonly payload: Uint8Array;
}

/** A violation of the wire protocol that ends the connection. */
export class XsProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "XsProtocolError";
  }
}

const u32 = (n: number, what: string): number => {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new RangeError(`${what} ${n} is no u32`);
  }
  return n;
};

/** The 16 header bytes. */
export function encodeHeader(h: XsHeader): Uint8Array {
  const bytes = new Uint8Array(XS_HEADER_SIZE);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, u32(h.type, "type"), true);
  view.setUint32(4, u32(h.reqId, "req_id"), true);
  view.setUint32(8, u32(h.txId, "tx_id"), true);
  view.setUint32(12, u32(h.len, "len"), true);
  return bytes;
}

/** Reads a header from the first 16 bytes of `bytes` (which must hold them). */
export function decodeHeader(bytes: Uint8Array): XsHeader {
  if (bytes.length < XS_HEADER_SIZE) throw new RangeError("a header is 16 bytes");
  const view = new DataView(bytes.buffer, bytes.byteOffset, XS_HEADER_SIZE);
  return {
    type: view.getUint32(0, true),
    reqId: view.getUint32(4, true),
    txId: view.getUint32(8, true),
    len: view.getUint32(12, true),
  };
}

/** Header and payload as one buffer. Throws XsProtocolError when the payload is over XS_PAYLOAD_MAX. */
export function encodeMessage(msg: XsMessage): Uint8Array {
  if (msg.payload.length > XS_PAYLOAD_MAX) {
    throw new XsProtocolError(
      `${xsTypeName(msg.type)} payload of ${msg.payload.length} bytes exceeds ${XS_PAYLOAD_MAX}`,
    );
  }
  const out = new Uint8Array(XS_HEADER_SIZE + msg.payload.length);
  out.set(encodeHeader({ ...msg, len: msg.payload.length }));
  out.set(msg.payload, XS_HEADER_SIZE);
  return out;
}

/**
 * Decodes exactly one message from `bytes` (header plus its whole payload,
 * nothing more). Throws XsProtocolError otherwise.
 */
export function decodeMessage(bytes: Uint8Array): XsMessage {
  if (bytes.length < XS_HEADER_SIZE) throw new XsProtocolError("short message");
  const h = decodeHeader(bytes);
  if (h.len > XS_PAYLOAD_MAX) {
    throw new XsProtocolError(`payload length ${h.len} exceeds ${XS_PAYLOAD_MAX}`);
  }
  if (bytes.length !== XS_HEADER_SIZE + h.len) {
    throw new XsProtocolError(`message of ${bytes.length} bytes, header says ${16 + h.len}`);
  }
  return { type: h.type, reqId: h.reqId, txId: h.txId, payload: bytes.slice(XS_HEADER_SIZE) };
}

/**
 * Cuts a byte stream into messages. Feed it chunks as they arrive (split
 * or merged anyhow); it returns the messages completed so far. A header
 * announcing more than XS_PAYLOAD_MAX bytes throws XsProtocolError (as
 * xenstored drops such a client), and so does every later `push`.
 */
export class XsFrameParser {
  #buf = new Uint8Array(XS_HEADER_SIZE + XS_PAYLOAD_MAX);
  #used = 0;
  #failed: XsProtocolError | undefined;

  /** Bytes held back waiting for the rest of a message. */
  get buffered(): number {
    return this.#used;
  }

  push(chunk: Uint8Array): XsMessage[] {
    if (this.#failed) throw this.#failed;
    const out: XsMessage[] = [];
    let at = 0;
    while (at < chunk.length) {
      const need = this.#used < XS_HEADER_SIZE
        ? XS_HEADER_SIZE - this.#used
        : XS_HEADER_SIZE + this.#len() - this.#used;
      const take = Math.min(need, chunk.length - at);
      this.#buf.set(chunk.subarray(at, at + take), this.#used);
      this.#used += take;
      at += take;
      if (this.#used === XS_HEADER_SIZE) {
        const len = this.#len();
        if (len > XS_PAYLOAD_MAX) {
          const h = decodeHeader(this.#buf);
          this.#failed = new XsProtocolError(
            `${xsTypeName(h.type)} header announces ${len} payload bytes (max ${XS_PAYLOAD_MAX})`,
          );
          throw this.#failed;
        }
      }
      if (this.#used >= XS_HEADER_SIZE && this.#used === XS_HEADER_SIZE + this.#len()) {
        const h = decodeHeader(this.#buf);
        out.push({
          type: h.type,
          reqId: h.reqId,
          txId: h.txId,
          payload: this.#buf.slice(XS_HEADER_SIZE, this.#used),
        });
        this.#used = 0;
      }
    }
    return out;
  }

  #len(): number {
    return new DataView(this.#buf.buffer).getUint32(12, true);
  }
}

// ---- payloads --------------------------------------------------------------------

const encoder = new TextEncoder();
// ignoreBOM keeps a leading U+FEFF in values instead of eating it.
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

/** Text as UTF-8 bytes (no NUL). */
export function encodeText(s: string): Uint8Array {
  return encoder.encode(s);
}

/** UTF-8 bytes as text (invalid sequences become U+FFFD). */
export function decodeText(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/** Concatenates byte arrays. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Each string followed by a NUL: ["a", "b"] -> "a\0b\0". */
export function encodeStrings(strings: readonly string[]): Uint8Array {
  return concatBytes(strings.flatMap((s) => [encoder.encode(s), new Uint8Array(1)]));
}

/**
 * The NUL-terminated strings of a payload: "a\0b\0" -> ["a", "b"], "" -> [].
 * Bytes after the last NUL (an unterminated tail) make one more string.
 */
export function decodeStrings(payload: Uint8Array): string[] {
  const out: string[] = [];
  let start = 0;
  for (let i = 0; i < payload.length; i++) {
    if (payload[i] === 0) {
      out.push(decoder.decode(payload.subarray(start, i)));
      start = i + 1;
    }
  }
  if (start < payload.length) out.push(decoder.decode(payload.subarray(start)));
  return out;
}

/** How many NUL bytes `payload` holds (xenstored's xs_count_strings). */
export function countStrings(payload: Uint8Array): number {
  let n = 0;
  for (const b of payload) if (b === 0) n++;
  return n;
}

/**
 * The single argument of a request such as READ: the payload must be one
 * string and its NUL, nothing else (xenstored's onearg). Undefined otherwise.
 */
export function decodeOneArg(payload: Uint8Array): string | undefined {
  if (payload.length === 0 || payload[payload.length - 1] !== 0) return undefined;
  if (payload.indexOf(0) !== payload.length - 1) return undefined;
  return decoder.decode(payload.subarray(0, payload.length - 1));
}

/**
 * The first `n` NUL-terminated strings of a payload and the bytes after
 * them (a WRITE is "path\0" then the raw value). Undefined when the payload
 * holds fewer than `n` terminated strings.
 */
export function decodeArgs(
  payload: Uint8Array,
  n: number,
): { args: string[]; rest: Uint8Array } | undefined {
  const args: string[] = [];
  let start = 0;
  while (args.length < n) {
    const nul = payload.indexOf(0, start);
    if (nul < 0) return undefined;
    args.push(decoder.decode(payload.subarray(start, nul)));
    start = nul + 1;
  }
  return { args, rest: payload.subarray(start) };
}

/** A WRITE payload: "path\0value" (the value without a NUL). */
export function encodeWrite(path: string, value: string): Uint8Array {
  return concatBytes([encodeStrings([path]), encoder.encode(value)]);
}

/** The payload of a WATCH or UNWATCH request, and of a WATCH_EVENT: "path\0token\0". */
export function encodeWatch(path: string, token: string): Uint8Array {
  return encodeStrings([path, token]);
}

/** Path and token of a WATCH_EVENT payload, or undefined when malformed. */
export function decodeWatchEvent(payload: Uint8Array): { path: string; token: string } | undefined {
  const parsed = decodeArgs(payload, 2);
  return parsed ? { path: parsed.args[0], token: parsed.args[1] } : undefined;
}

/** An ERROR payload: "ENOENT\0". */
export function encodeError(errno: string): Uint8Array {
  return encodeStrings([errno]);
}

/** The errno name of an ERROR payload ("EINVAL" when it is empty). */
export function decodeError(payload: Uint8Array): string {
  return decodeStrings(payload)[0] || "EINVAL";
}

const PERM_LETTERS: readonly string[] = ["n", "r", "w", "b"];

/** One permission as a string: { domid: 5, perm: "r" } -> "r5". */
export function formatPerm(p: Perm): string {
  return `${p.perm}${p.domid}`;
}

/** "r5" -> { domid: 5, perm: "r" }; undefined unless a letter n/r/w/b and a decimal domid 0..65535. */
export function parsePerm(s: string): Perm | undefined {
  const m = /^([nrwb])(\d{1,5})$/.exec(s);
  if (!m) return undefined;
  const domid = Number(m[2]);
  if (domid > 0xffff) return undefined;
  return { domid, perm: m[1] as PermLetter };
}

/** Permissions as the wire carries them: "b0\0r5\0". */
export function encodePerms(perms: readonly Perm[]): Uint8Array {
  return encodeStrings(perms.map(formatPerm));
}

/** Permissions from "b0\0r5\0"; undefined when one is malformed or none is there. */
export function decodePerms(payload: Uint8Array): Perm[] | undefined {
  const strings = decodeStrings(payload);
  if (strings.length === 0) return undefined;
  const perms: Perm[] = [];
  for (const s of strings) {
    const p = parsePerm(s);
    if (!p) return undefined;
    perms.push(p);
  }
  return perms;
}

/** Whether a permission letter is valid. */
export function isPermLetter(s: string): s is PermLetter {
  return PERM_LETTERS.includes(s);
}

/** A SET_PERMS payload: "path\0b0\0r5\0". */
export function encodeSetPerms(path: string, perms: readonly Perm[]): Uint8Array {
  return encodeStrings([path, ...perms.map(formatPerm)]);
}

/** A DIRECTORY_PART reply: generation, then the children from the offset on. */
export interface DirectoryPart {
  readonly generation: string;
  readonly children: string[];
  /** True when this part reached the end of the list. */
  readonly last: boolean;
  /** Bytes of child names in this part: the next request's offset grows by it. */
  readonly bytes: number;
}

/**
 * Parses a DIRECTORY_PART reply: "gen\0child\0child\0...\0" where an empty
 * string (a doubled NUL at the end) marks the end of the whole list.
 */
export function decodeDirectoryPart(payload: Uint8Array): DirectoryPart | undefined {
  const parsed = decodeArgs(payload, 1);
  if (!parsed) return undefined;
  const strings = decodeStrings(parsed.rest);
  const end = strings.indexOf("");
  const generation = parsed.args[0];
  if (end >= 0) {
    return {
      generation,
      children: strings.slice(0, end),
      last: true,
      bytes: parsed.rest.length - 1,
    };
  }
  return { generation, children: strings, last: false, bytes: parsed.rest.length };
}
