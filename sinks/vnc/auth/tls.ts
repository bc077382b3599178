/**
 * Server-side TLS on an RfbStream that is already in use (VeNCrypt switches
 * to TLS in the middle of the RFB handshake).
 *
 * How: Deno.startTls is client-only and Deno.listenTls only accepts fresh
 * connections, so this uses Deno's node:tls: a `TLSSocket` with
 * `isServer: true` over a node `Duplex` that reads from and writes to the
 * RfbStream. Because the Duplex reads through the RfbStream, bytes the
 * client sent early (its ClientHello right behind the subtype choice) and
 * that already sit in the stream's buffer are consumed first, in order: no
 * replay step and no second socket. It also works over any RfbStream (a
 * WebSocket one too), where a loopback relay to Deno.listenTls would need a
 * byte pump, a replay of buffered bytes and a port-to-client correlation
 * per connection.
 *
 * RfbStream only offers exact-length reads, so the Duplex reads whole TLS
 * records (5-byte header, then its length), which is also a cheap check
 * that the client really started TLS (an SSLv2-format ClientHello, which
 * no TLS 1.2+ client sends, is refused).
 *
 * The TLS engine is Deno's (rustls): certificate-based suites only; no
 * anonymous Diffie-Hellman, hence no VeNCrypt TLSNone / TLSVnc.
 *
 * @module
 */
import tls from "node:tls";
import { Duplex } from "node:stream";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { type ByteConn, ConnStream, type RfbStream, StreamClosed } from "../stream.ts";

/** Certificate and key, PEM text. */
export interface TlsServerOptions {
  /** Server certificate (chain), PEM. */
  cert: string;
  /** Its private key, PEM (PKCS#8, PKCS#1 or SEC1). */
  key: string;
  /** Give up on a client that has not finished the TLS handshake by then (default 30 s). */
  handshakeTimeoutMs?: number;
}

/** TLS record content types (RFC 8446 §5.1): change_cipher_spec .. heartbeat. */
const MIN_CONTENT_TYPE = 20;
const MAX_CONTENT_TYPE = 24;
/** Largest TLSCiphertext fragment: 2^14 + 2048 (TLS 1.2; 1.3 allows less). */
const MAX_RECORD = 16384 + 2048;
/** Decrypted bytes buffered before the socket is paused. */
const HIGH_WATER = 1 << 20;
/** How long a closing TLS stream may take to send close_notify. */
const CLOSE_GRACE_MS = 2000;

/** A node Duplex whose readable side yields the TLS records read from `inner`. */
class RecordDuplex extends Duplex {
  private reading = false;
  /** Why reading stopped, when it was not a plain end of stream. */
  failure: Error | null = null;

  constructor(private readonly inner: RfbStream) {
    super({ allowHalfOpen: false });
  }

  override _read(): void {
    if (this.reading) return;
    this.reading = true;
    this.pump();
  }

  private async pump(): Promise<void> {
    let rec: Uint8Array;
    try {
      const hdr = await this.inner.read(5);
      const len = (hdr[3] << 8) | hdr[4];
      if (hdr[0] < MIN_CONTENT_TYPE || hdr[0] > MAX_CONTENT_TYPE || hdr[1] !== 3) {
        throw new Error("client did not start a TLS handshake (not a TLS record)");
      }
      if (len > MAX_RECORD) throw new Error(`TLS record too long (${len} bytes)`);
      rec = new Uint8Array(5 + len);
      rec.set(hdr);
      if (len > 0) rec.set(await this.inner.read(len), 5);
    } catch (e) {
      this.reading = false;
      if (e instanceof StreamClosed) this.push(null);
      else {
        this.failure = e instanceof Error ? e : new Error(String(e));
        this.destroy(this.failure);
      }
      return;
    }
    this.reading = false;
    this.push(rec);
  }

  override _write(
    chunk: Uint8Array,
    _enc: string,
    cb: (err?: Error | null) => void,
  ): void {
    this.inner.write(chunk).then(() => cb(), (e) => cb(e instanceof Error ? e : new Error(e)));
  }

  /** The TLS side ended (close_notify written and flushed): close the transport. */
  override _final(cb: (err?: Error | null) => void): void {
    this.inner.close();
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.inner.close();
    cb(err);
  }
}

/** A ByteConn over a node TLSSocket, so that ConnStream does the RfbStream part. */
class TlsSocketConn implements ByteConn {
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private ended = false;
  private error: Error | null = null;
  private wake: (() => void) | null = null;
  private paused = false;

  constructor(private readonly sock: tls.TLSSocket, private readonly inner: RfbStream) {
    sock.on("data", (d: Uint8Array) => {
      this.chunks.push(d);
      this.buffered += d.length;
      if (this.buffered > HIGH_WATER && !this.paused) {
        this.paused = true;
        sock.pause();
      }
      this.notify();
    });
    sock.on("end", () => {
      this.ended = true;
      this.notify();
    });
    sock.on("close", () => {
      this.ended = true;
      this.notify();
    });
    sock.on("error", (e: Error) => {
      this.error ??= e;
      this.notify();
    });
  }

  /** The first error the socket reported, if any. */
  get failure(): Error | null {
    return this.error;
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.chunks.length === 0) {
      if (this.error) throw this.error;
      if (this.ended) return null;
      await new Promise<void>((r) => (this.wake = r));
    }
    let n = 0;
    while (n < p.length && this.chunks.length > 0) {
      const c = this.chunks[0];
      const take = Math.min(c.length, p.length - n);
      p.set(c.subarray(0, take), n);
      n += take;
      if (take === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(take);
    }
    this.buffered -= n;
    if (this.paused && this.buffered < HIGH_WATER / 2) {
      this.paused = false;
      this.sock.resume();
    }
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    if (this.error) return Promise.reject(this.error);
    if (this.sock.destroyed) return Promise.reject(new StreamClosed());
    return new Promise((resolve, reject) => {
      this.sock.write(p, (err?: Error | null) => err ? reject(err) : resolve(p.length));
    });
  }

  /** Drops the connection at once (failed handshake). */
  destroy(): void {
    this.sock.destroy();
    this.inner.close();
  }

  /**
   * Ends TLS cleanly (close_notify, then the transport closes in
   * RecordDuplex._final); forces it after CLOSE_GRACE_MS.
   */
  close(): void {
    if (this.sock.destroyed) {
      this.inner.close();
      return;
    }
    const force = setTimeout(() => {
      this.sock.destroy();
      this.inner.close();
    }, CLOSE_GRACE_MS);
    this.sock.once("close", () => clearTimeout(force));
    this.sock.end();
  }
}

/** TLS failed before the stream was usable (handshake error, timeout, peer gone). */
export class TlsHandshakeFailed extends Error {
  constructor(msg: string) {
    super(msg);
    this.name = "TlsHandshakeFailed";
  }
}

/** A server certificate and key, ready to upgrade accepted connections to TLS. */
export class TlsServer {
  private readonly context: tls.SecureContext;
  private readonly handshakeTimeoutMs: number;
  /** The certificate's subject and expiry, for the startup log. */
  readonly description: string;

  /**
   * Checks the PEM (parses both, and that the key belongs to the
   * certificate) so that a bad configuration fails at startup, not at the
   * first client.
   */
  constructor(opts: TlsServerOptions) {
    let x509: X509Certificate;
    try {
      x509 = new X509Certificate(opts.cert);
    } catch (e) {
      throw new Error(`TLS certificate is not a PEM certificate: ${(e as Error).message}`);
    }
    let key;
    try {
      key = createPrivateKey(opts.key);
    } catch (e) {
      throw new Error(`TLS key is not a PEM private key: ${(e as Error).message}`);
    }
    if (!x509.checkPrivateKey(key)) {
      throw new Error("TLS key does not belong to the certificate");
    }
    this.description = `${x509.subject.replaceAll("\n", ", ")}, valid until ${x509.validTo}`;
    // TLS 1.2 at most: TigerVNC 1.12 (Debian 12's viewer) hangs on TLS 1.3 when
    // the server's session ticket and the next record arrive in one read.
    this.context = tls.createSecureContext({
      cert: opts.cert,
      key: opts.key,
      maxVersion: "TLSv1.2",
    });
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 30_000;
  }

  /** Reads `--tls-cert` / `--tls-key` PEM files. */
  static async fromFiles(
    certPath: string,
    keyPath: string,
    opts: { handshakeTimeoutMs?: number } = {},
  ): Promise<TlsServer> {
    const [cert, key] = await Promise.all([
      Deno.readTextFile(certPath),
      Deno.readTextFile(keyPath),
    ]);
    try {
      return new TlsServer({ cert, key, ...opts });
    } catch (e) {
      throw new Error(`${certPath} / ${keyPath}: ${(e as Error).message}`);
    }
  }

  /**
   * Runs the TLS handshake as server over `stream`, from its next unread
   * byte, and returns the encrypted stream (same `remote`). Closing the
   * returned stream closes `stream`. Throws {@link TlsHandshakeFailed} (and
   * closes `stream`) when the handshake fails or times out.
   */
  async upgrade(stream: RfbStream): Promise<RfbStream> {
    const duplex = new RecordDuplex(stream);
    const sock = new tls.TLSSocket(duplex, { isServer: true, secureContext: this.context });
    const conn = new TlsSocketConn(sock, stream);
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onSecure: () => void = () => {};
    let onFail: (e: Error) => void = () => {};
    const onClose = () => onFail(conn.failure ?? duplex.failure ?? new Error("connection closed"));
    try {
      await new Promise<void>((resolve, reject) => {
        onSecure = resolve;
        onFail = reject;
        sock.once("secure", onSecure);
        sock.once("error", onFail);
        sock.once("close", onClose);
        timer = setTimeout(
          () => onFail(new Error(`no TLS handshake within ${this.handshakeTimeoutMs} ms`)),
          this.handshakeTimeoutMs,
        );
      });
    } catch (e) {
      conn.destroy();
      throw new TlsHandshakeFailed(`TLS handshake failed: ${(e as Error).message}`);
    } finally {
      clearTimeout(timer);
      sock.off("secure", onSecure);
      sock.off("error", onFail);
      sock.off("close", onClose);
    }
    return new ConnStream(conn, stream.remote);
  }
}
