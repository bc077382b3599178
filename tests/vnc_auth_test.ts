/**
 * RFB security types: DES against known vectors, VNC auth over in-memory
 * streams, VeNCrypt X509None / X509Vnc end to end over loopback TCP with a
 * real TLS client, and the failure rate limiter on a fake clock.
 */
import tls from "node:tls";
import { Duplex } from "node:stream";
import { assert, assertEquals, assertRejects, assertStrictEquals } from "@rxfb/assert";
import { ConnStream, type RfbStream, StreamClosed } from "../sinks/vnc/stream.ts";
import {
  addressOf,
  AuthFailed,
  AuthLimiter,
  type Clock,
  constantTimeEqual,
  decodeVncPasswdFile,
  desEcbDecrypt,
  desEcbEncrypt,
  encodeVncPasswdFile,
  NoneAuth,
  parseXenstoreVncPasswd,
  readVncPassword,
  type RfbMinor,
  securityResultBytes,
  sendSecurityResult,
  TlsServer,
  TooManyAttempts,
  VeNCrypt,
  VeNCryptSubtype,
  VncAuth,
  vncEncrypt,
  wantsSecurityResult,
} from "../sinks/vnc/auth/mod.ts";
import { skipWithout } from "./packages.ts";

const hex = (s: string) => new Uint8Array(s.match(/../g)!.map((b) => parseInt(b, 16)));
const toHex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
const text = (s: string) => new TextEncoder().encode(s);

// ---------------------------------------------------------------- DES

Deno.test("auth: DES-ECB matches the classic DES vector (both directions)", () => {
  // The textbook DES example (Grabbe, "The DES Algorithm Illustrated").
  const key = hex("133457799BBCDFF1");
  const ct = desEcbEncrypt(key, hex("0123456789ABCDEF"));
  assertEquals(toHex(ct), "85e813540f0ab405");
  assertEquals(toHex(desEcbDecrypt(key, ct)), "0123456789abcdef");
  // NBS/FIPS 81 validation vector: key 0123456789ABCDEF, "Now is t".
  assertEquals(
    toHex(desEcbEncrypt(hex("0123456789ABCDEF"), hex("4E6F772069732074"))),
    "3fa40e8a984d4815",
  );
});

Deno.test("auth: VNC response matches OpenSSL's DES with bit-reversed key bytes", () => {
  // Made independently: python reversed the bits of "Secret1\0" (-> caa6c64ea62e8c00),
  // then `openssl enc -des-ecb -nopad -K caa6c64ea62e8c00 -provider legacy` encrypted
  // the challenge 00..0f; python-cryptography's TripleDES(k*3) ECB agreed.
  const challenge = hex("000102030405060708090a0b0c0d0e0f");
  assertEquals(
    toHex(vncEncrypt(text("Secret1"), challenge)),
    "660976379a5e24324ae04f50b58c3de9",
  );
  // Only 8 bytes of password count.
  assertEquals(
    toHex(vncEncrypt(text("password-long"), challenge)),
    toHex(vncEncrypt(text("password"), challenge)),
  );
});

Deno.test("auth: vncpasswd obfuscation matches TightVNC's d3des", () => {
  // `printf password | vncpasswd -f | xxd -p` (tightvncpasswd, Debian) -> dbd83cfd727a1458:
  // DES with VNC's bit-reversed key handling under the fixed key 23,82,107,6,35,78,88,7.
  assertEquals(toHex(encodeVncPasswdFile(text("password"))), "dbd83cfd727a1458");
  assertEquals(new TextDecoder().decode(decodeVncPasswdFile(hex("dbd83cfd727a1458"))), "password");
});

const hasVncpasswd = (() => {
  try {
    return Deno.statSync("/usr/bin/vncpasswd").isFile;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "auth: vncpasswd -f output (live, when installed) decodes to the password",
  ignore: !hasVncpasswd,
  fn: async () => {
    const p = new Deno.Command("vncpasswd", { args: ["-f"], stdin: "piped", stdout: "piped" })
      .spawn();
    const w = p.stdin.getWriter();
    await w.write(text("rx8fb\n"));
    await w.close();
    const out = await p.output();
    assertEquals(new TextDecoder().decode(decodeVncPasswdFile(out.stdout)), "rx8fb");
  },
});

Deno.test("auth: constantTimeEqual", () => {
  assert(constantTimeEqual(text("abc"), text("abc")));
  assert(!constantTimeEqual(text("abc"), text("abd")));
  assert(!constantTimeEqual(text("abc"), text("abcd")));
});

// ---------------------------------------------------------------- passwords

Deno.test("auth: readVncPassword takes the first line, warns about length and mode", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const warnings: string[] = [];
    const log = { warn: (m: string) => warnings.push(m) };
    const p = `${dir}/pw`;
    await Deno.writeTextFile(p, "hunter2\nsecond line\n", { mode: 0o600 });
    await Deno.chmod(p, 0o600);
    assertEquals(new TextDecoder().decode(await readVncPassword(p, log)), "hunter2");
    assertEquals(warnings.length, 0);

    await Deno.writeTextFile(p, "averylongpassword\r\n");
    await Deno.chmod(p, 0o644);
    assertEquals(new TextDecoder().decode(await readVncPassword(p, log)), "averylon");
    assert(warnings.some((w) => w.includes("readable by others")), warnings.join("|"));
    assert(warnings.some((w) => w.includes("first 8 of 17")), warnings.join("|"));

    await Deno.writeTextFile(p, "\nrest");
    await assertRejects(() => readVncPassword(p, log), /empty VNC password/);

    // vncpasswd's binary format is recognised.
    await Deno.writeFile(p, hex("dbd83cfd727a1458"));
    assertEquals(new TextDecoder().decode(await readVncPassword(p, log)), "password");
    // ... but an 8-character text password without newline is text.
    await Deno.writeTextFile(p, "abcdefgh");
    assertEquals(new TextDecoder().decode(await readVncPassword(p, log)), "abcdefgh");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("auth: parseXenstoreVncPasswd: absent or empty means no password", () => {
  const warnings: string[] = [];
  const log = { warn: (m: string) => warnings.push(m) };
  assertStrictEquals(parseXenstoreVncPasswd(undefined, log), null);
  assertStrictEquals(parseXenstoreVncPasswd(null, log), null);
  assertStrictEquals(parseXenstoreVncPasswd("", log), null);
  assertEquals(parseXenstoreVncPasswd("s3cret", log), text("s3cret"));
  assertEquals(parseXenstoreVncPasswd("0123456789", log), text("01234567"));
  assertEquals(warnings.length, 1);
});

// ---------------------------------------------------------------- in-memory streams

/** One end of an in-memory RfbStream pair. */
class MemStream implements RfbStream {
  peer!: MemStream;
  private buf: Uint8Array[] = [];
  private have = 0;
  private wake: (() => void) | null = null;
  private isClosed = false;
  readonly pending = 0;
  constructor(readonly remote: string) {}

  get closed(): boolean {
    return this.isClosed;
  }

  deliver(b: Uint8Array): void {
    this.buf.push(b.slice());
    this.have += b.length;
    this.wake?.();
  }

  async read(n: number): Promise<Uint8Array> {
    while (this.have < n) {
      if (this.isClosed) throw new StreamClosed();
      await new Promise<void>((r) => (this.wake = r));
    }
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const c = this.buf[0];
      const take = Math.min(c.length, n - off);
      out.set(c.subarray(0, take), off);
      off += take;
      if (take === c.length) this.buf.shift();
      else this.buf[0] = c.subarray(take);
    }
    this.have -= n;
    return out;
  }

  write(b: Uint8Array): Promise<void> {
    if (this.isClosed) return Promise.reject(new StreamClosed());
    this.peer.deliver(b);
    return Promise.resolve();
  }

  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.wake?.();
    this.peer.close();
  }
}

function memPair(): [MemStream, MemStream] {
  const a = new MemStream("client:1");
  const b = new MemStream("server:2");
  a.peer = b;
  b.peer = a;
  return [a, b];
}

const ctx = (version: RfbMinor = 8) => ({ version, remote: "10.0.0.9:5555" });

Deno.test("auth: VNC auth accepts the right password and refuses a wrong one", async () => {
  const auth = new VncAuth(text("password"));
  const tries = [["password", true], ["password-long", true], ["Password", false], ["pass", false]];
  for (const [pw, ok] of tries as [string, boolean][]) {
    const [server, client] = memPair();
    const result = auth.run(server, ctx());
    const challenge = await client.read(16);
    await client.write(vncEncrypt(text(pw), challenge));
    if (ok) {
      assertStrictEquals((await result).stream, server);
    } else {
      const e = await result.then(() => null, (e) => e);
      assert(e instanceof AuthFailed, String(e));
      assert(e.badCredentials && !e.resultSent && e.stream === undefined);
    }
  }
});

Deno.test("auth: VNC auth challenges are random", async () => {
  const auth = new VncAuth(text("x"));
  const seen = new Set<string>();
  for (let i = 0; i < 4; i++) {
    const [server, client] = memPair();
    const r = auth.run(server, ctx()).catch(() => {});
    seen.add(toHex(await client.read(16)));
    await client.write(new Uint8Array(16));
    await r;
  }
  assertEquals(seen.size, 4);
});

Deno.test("auth: None runs no exchange; SecurityResult rules per version", async () => {
  const [server] = memPair();
  assertStrictEquals((await new NoneAuth().run(server, ctx(3))).stream, server);
  assert(!wantsSecurityResult(1, 3) && !wantsSecurityResult(1, 7) && wantsSecurityResult(1, 8));
  assert(wantsSecurityResult(2, 3) && wantsSecurityResult(19, 7));
  assertEquals(securityResultBytes(8), new Uint8Array([0, 0, 0, 0]));
  assertEquals(securityResultBytes(7, "no"), new Uint8Array([0, 0, 0, 1]));
  assertEquals(securityResultBytes(8, "no"), new Uint8Array([0, 0, 0, 1, 0, 0, 0, 2, 110, 111]));
});

// ---------------------------------------------------------------- VeNCrypt over TCP

const hasOpenssl = (() => {
  try {
    return new Deno.Command("openssl", { args: ["version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
})();
const noOpenssl = skipWithout(hasOpenssl, "openssl", "apt-get install -y openssl");

interface Pki {
  cert: string;
  key: string;
}

let pkiCache: Promise<Pki> | undefined;
/** A self-signed localhost certificate made with the openssl CLI (once per run). */
function pki(): Promise<Pki> {
  pkiCache ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "rxfb-tls-" });
    try {
      const out = await new Deno.Command("openssl", {
        args: [
          "req",
          "-x509",
          "-newkey",
          "rsa:2048",
          "-nodes",
          "-subj",
          "/CN=localhost",
          "-days",
          "1",
          // rustls (Deno's TLS client) refuses a CA certificate as the server's.
          "-addext",
          "basicConstraints=critical,CA:FALSE",
          "-addext",
          "subjectAltName=DNS:localhost,IP:127.0.0.1",
          "-keyout",
          `${dir}/key.pem`,
          "-out",
          `${dir}/cert.pem`,
        ],
        stdout: "null",
        stderr: "piped",
      }).output();
      if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
      return {
        cert: await Deno.readTextFile(`${dir}/cert.pem`),
        key: await Deno.readTextFile(`${dir}/key.pem`),
      };
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  })();
  return pkiCache;
}

async function readExact(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let off = 0;
  while (off < n) {
    const got = await conn.read(out.subarray(off));
    if (got === null) throw new Error(`EOF after ${off} of ${n} bytes`);
    off += got;
  }
  return out;
}

async function writeAll(conn: Deno.Conn, b: Uint8Array): Promise<void> {
  let off = 0;
  while (off < b.length) off += await conn.write(b.subarray(off));
}

const u32 = (v: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v);
  return b;
};
const getU32 = (b: Uint8Array, at = 0) => new DataView(b.buffer, b.byteOffset).getUint32(at);

/** What the server side of a test does once VeNCrypt returned. */
type ServerOutcome = { ok: true; stream: RfbStream } | { ok: false; error: unknown };

/**
 * A loopback server running `vencrypt` as an RFB connection would (then
 * SecurityResult per the rules), and the client's TCP connection to it.
 */
async function serveOnce(vencrypt: VeNCrypt, version: RfbMinor = 8) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const server = (async (): Promise<ServerOutcome> => {
    const conn = await listener.accept();
    listener.close();
    conn.setNoDelay(true);
    const a = conn.remoteAddr as Deno.NetAddr;
    const plain = new ConnStream(conn, `${a.hostname}:${a.port}`);
    try {
      const { stream } = await vencrypt.run(plain, { version, remote: plain.remote });
      await sendSecurityResult(stream, version);
      return { ok: true, stream };
    } catch (e) {
      if (e instanceof AuthFailed) {
        if (!e.resultSent) await sendSecurityResult(e.stream ?? plain, version, e.message);
        (e.stream ?? plain).close();
      } else plain.close();
      return { ok: false, error: e };
    }
  })();
  const client = await Deno.connect({ hostname: "127.0.0.1", port });
  client.setNoDelay(true);
  return { server, client };
}

/** The client's VeNCrypt prelude up to the subtype ack; returns the offered subtypes. */
async function clientPrelude(conn: Deno.Conn, pick: number): Promise<number[]> {
  assertEquals(await readExact(conn, 2), new Uint8Array([0, 2]));
  await writeAll(conn, new Uint8Array([0, 2]));
  const [ack, n] = await readExact(conn, 2);
  assertEquals(ack, 0);
  const list = await readExact(conn, 4 * n);
  const offered = Array.from({ length: n }, (_, i) => getU32(list, 4 * i));
  await writeAll(conn, u32(pick));
  return offered;
}

/** Exchanges data both ways over an established (server, client) pair. */
async function exerciseStream(server: RfbStream, client: Deno.Conn): Promise<void> {
  // Client -> server, then a large server -> client write (backpressure through TLS).
  await writeAll(client, text("ClientInit"));
  assertEquals(new TextDecoder().decode(await server.read(10)), "ClientInit");
  const big = new Uint8Array(3 * 1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 12)) & 0xff;
  const sending = server.write(big);
  const got = await readExact(client, big.length);
  await sending;
  assert(constantTimeEqual(got, big), "large payload intact");
  const up = big.subarray(0, 512 * 1024);
  const [, back] = await Promise.all([writeAll(client, up), server.read(up.length)]);
  assert(constantTimeEqual(back, up), "client payload intact");
}

Deno.test({
  name: "auth: VeNCrypt X509None end to end (Deno.startTls client, 3.7)",
  ignore: noOpenssl,
  fn: async () => {
    const { cert, key } = await pki();
    const vencrypt = new VeNCrypt({ tls: new TlsServer({ cert, key }) });
    const { server, client } = await serveOnce(vencrypt, 7);
    const offered = await clientPrelude(client, VeNCryptSubtype.X509None);
    assertEquals(offered, [VeNCryptSubtype.X509None]);
    assertEquals(await readExact(client, 1), new Uint8Array([1]));
    const tlsConn = await Deno.startTls(client as Deno.TcpConn, {
      hostname: "localhost",
      caCerts: [cert],
    });
    try {
      await tlsConn.handshake();
      // VeNCrypt sends SecurityResult even in 3.7.
      assertEquals(getU32(await readExact(tlsConn, 4)), 0);
      const out = await server;
      assert(out.ok, !out.ok ? String(out.error) : "");
      assertEquals(out.stream.remote, `127.0.0.1:${(client.localAddr as Deno.NetAddr).port}`);
      await exerciseStream(out.stream, tlsConn);
      out.stream.close();
      assertEquals(await tlsConn.read(new Uint8Array(1)), null);
    } finally {
      tlsConn.close();
    }
  },
});

Deno.test({
  name: "auth: VeNCrypt X509Vnc end to end: right password, then wrong one with reason over TLS",
  ignore: noOpenssl,
  fn: async () => {
    const { cert, key } = await pki();
    const tlsServer = new TlsServer({ cert, key });
    const vencrypt = new VeNCrypt({ tls: tlsServer, vnc: new VncAuth(text("pa55word")) });
    for (const pw of ["pa55word", "guess"]) {
      const { server, client } = await serveOnce(vencrypt, 8);
      assertEquals(await clientPrelude(client, VeNCryptSubtype.X509Vnc), [
        VeNCryptSubtype.X509Vnc,
      ]);
      assertEquals(await readExact(client, 1), new Uint8Array([1]));
      const tlsConn = await Deno.startTls(client as Deno.TcpConn, {
        hostname: "localhost",
        caCerts: [cert],
      });
      try {
        const challenge = await readExact(tlsConn, 16);
        await writeAll(tlsConn, vncEncrypt(text(pw), challenge));
        const status = getU32(await readExact(tlsConn, 4));
        const out = await server;
        if (pw === "pa55word") {
          assertEquals(status, 0);
          assert(out.ok);
          await exerciseStream(out.stream, tlsConn);
          out.stream.close();
        } else {
          assertEquals(status, 1);
          const len = getU32(await readExact(tlsConn, 4));
          assertEquals(
            new TextDecoder().decode(await readExact(tlsConn, len)),
            "Authentication failed",
          );
          assert(!out.ok && out.error instanceof AuthFailed && out.error.badCredentials);
          assert((out.error as AuthFailed).stream !== undefined, "failure carries the TLS stream");
        }
      } finally {
        tlsConn.close();
      }
    }
  },
});

/**
 * A node:tls client over a Duplex on `conn` that sends the chosen subtype and
 * its ClientHello in ONE write, before reading the ack: the ClientHello then
 * sits in the server's read buffer behind the subtype and must be replayed.
 */
function pipelinedTlsClient(conn: Deno.Conn, subtype: number, ca: string) {
  let prefix: Uint8Array | null = u32(subtype);
  let ackSeen = false;
  let reading = false;
  const duplex = new Duplex({
    read() {
      if (reading) return;
      reading = true;
      (async () => {
        if (!ackSeen) {
          const [ack] = await readExact(conn, 1);
          if (ack !== 1) throw new Error(`subtype refused (${ack})`);
          ackSeen = true;
        }
        const b = new Uint8Array(16384);
        const n = await conn.read(b);
        reading = false;
        this.push(n === null ? null : b.subarray(0, n));
      })().catch((e) => this.destroy(e));
    },
    write(chunk: Uint8Array, _enc, cb) {
      let data = chunk;
      if (prefix) {
        data = new Uint8Array(prefix.length + chunk.length);
        data.set(prefix);
        data.set(chunk, prefix.length);
        prefix = null;
      }
      writeAll(conn, data).then(() => cb(), cb);
    },
    final(cb) {
      cb();
    },
    destroy(err, cb) {
      try {
        conn.close();
      } catch { /* closed */ }
      cb(err);
    },
  });
  return tls.connect({ socket: duplex, servername: "localhost", ca });
}

Deno.test({
  name: "auth: VeNCrypt: a ClientHello sent right behind the subtype (buffered) is replayed",
  ignore: noOpenssl,
  fn: async () => {
    const { cert, key } = await pki();
    const vencrypt = new VeNCrypt({
      tls: new TlsServer({ cert, key }),
      vnc: new VncAuth(text("early")),
    });
    const { server, client } = await serveOnce(vencrypt, 8);
    // The prelude without sending the subtype: the TLS client sends it with its hello.
    assertEquals(await readExact(client, 2), new Uint8Array([0, 2]));
    await writeAll(client, new Uint8Array([0, 2]));
    const [ack, n] = await readExact(client, 2);
    assertEquals([ack, n], [0, 1]);
    await readExact(client, 4);
    const sock = pipelinedTlsClient(client, VeNCryptSubtype.X509Vnc, cert);
    const chunks: Uint8Array[] = [];
    let have = 0;
    let wake: (() => void) | null = null;
    sock.on("data", (d: Uint8Array) => {
      chunks.push(d);
      have += d.length;
      wake?.();
    });
    sock.on("error", () => {});
    const take = async (k: number) => {
      while (have < k) await new Promise<void>((r) => (wake = r));
      const all = new Uint8Array(have);
      let off = 0;
      for (const c of chunks) all.set(c, (off += c.length) - c.length);
      chunks.length = 0;
      if (have > k) chunks.push(all.subarray(k));
      have -= k;
      return all.subarray(0, k);
    };
    const challenge = await take(16);
    sock.write(vncEncrypt(text("early"), challenge));
    assertEquals(getU32(await take(4)), 0);
    const out = await server;
    assert(out.ok, !out.ok ? String(out.error) : "");
    await out.stream.write(text("ServerInit"));
    assertEquals(new TextDecoder().decode(await take(10)), "ServerInit");
    const closed = new Promise((r) => sock.once("close", r));
    out.stream.close();
    sock.destroy();
    await closed;
  },
});

Deno.test({
  name: "auth: VeNCrypt refusals: wrong version, unoffered subtype, no TLS after the ack",
  ignore: noOpenssl,
  fn: async () => {
    const { cert, key } = await pki();
    const vencrypt = new VeNCrypt({
      tls: new TlsServer({ cert, key, handshakeTimeoutMs: 5000 }),
      vnc: new VncAuth(text("pw")),
    });

    // Version 0.1 -> 0xff, no SecurityResult, closed.
    {
      const { server, client } = await serveOnce(vencrypt);
      await readExact(client, 2);
      await writeAll(client, new Uint8Array([0, 1]));
      assertEquals(await readExact(client, 1), new Uint8Array([0xff]));
      assertEquals(await client.read(new Uint8Array(1)), null);
      const out = await server;
      assert(!out.ok && out.error instanceof AuthFailed && out.error.resultSent);
      client.close();
    }
    // X509None was not offered (a password is set) -> 0, closed.
    {
      const { server, client } = await serveOnce(vencrypt);
      await clientPrelude(client, VeNCryptSubtype.X509None);
      assertEquals(await readExact(client, 1), new Uint8Array([0]));
      assertEquals(await client.read(new Uint8Array(1)), null);
      const out = await server;
      assert(!out.ok && out.error instanceof AuthFailed && out.error.resultSent);
      client.close();
    }
    // Plain text instead of a ClientHello -> TLS failure, closed.
    {
      const { server, client } = await serveOnce(vencrypt);
      await clientPrelude(client, VeNCryptSubtype.X509Vnc);
      assertEquals(await readExact(client, 1), new Uint8Array([1]));
      await writeAll(client, text("GET / HTTP/1.0\r\n\r\n"));
      const out = await server;
      assert(!out.ok && out.error instanceof AuthFailed && out.error.resultSent);
      assert(/not a TLS record/.test((out.error as Error).message), String(out.error));
      assertEquals(await client.read(new Uint8Array(1)), null);
      client.close();
    }
    // Client hangs up mid-handshake -> failure, no hang.
    {
      const { server, client } = await serveOnce(vencrypt);
      await clientPrelude(client, VeNCryptSubtype.X509Vnc);
      await readExact(client, 1);
      await writeAll(client, new Uint8Array([22, 3, 1, 0, 200, 1, 0])); // truncated hello
      client.close();
      const out = await server;
      assert(!out.ok && out.error instanceof AuthFailed && out.error.resultSent);
    }
  },
});

Deno.test({
  name: "auth: TlsServer checks its PEM at startup; VeNCrypt refuses unsupported subtypes",
  ignore: noOpenssl,
  fn: async () => {
    const { cert, key } = await pki();
    const other = await new Promise<string>((resolve, reject) => {
      new Deno.Command("openssl", {
        args: ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        stdout: "piped",
        stderr: "null",
      }).output().then((o) => resolve(new TextDecoder().decode(o.stdout)), reject);
    });
    assertEquals(typeof new TlsServer({ cert, key }).description, "string");
    let err = "";
    try {
      new TlsServer({ cert, key: other });
    } catch (e) {
      err = (e as Error).message;
    }
    assert(/does not belong/.test(err), err);
    try {
      new TlsServer({ cert: "junk", key });
    } catch (e) {
      err = (e as Error).message;
    }
    assert(/not a PEM certificate/.test(err), err);
    const tlsServer = new TlsServer({ cert, key });
    let refused = "";
    try {
      new VeNCrypt({ tls: tlsServer, subtypes: [VeNCryptSubtype.TLSNone as 260] });
    } catch (e) {
      refused = (e as Error).message;
    }
    assert(/not supported/.test(refused), refused);
    try {
      new VeNCrypt({ tls: tlsServer, subtypes: [VeNCryptSubtype.X509Vnc] });
    } catch (e) {
      refused = (e as Error).message;
    }
    assert(/needs a VNC password/.test(refused), refused);
    assertEquals(new VeNCrypt({ tls: tlsServer }).subtypes, [VeNCryptSubtype.X509None]);
  },
});

// ---------------------------------------------------------------- limiter

/** A clock that moves only when told; sleeps resolve as time passes them. */
class FakeClock implements Clock {
  t = 1_000_000;
  private sleepers: { until: number; resolve: () => void }[] = [];
  now(): number {
    return this.t;
  }
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.sleepers.push({ until: this.t + ms, resolve }));
  }
  async advance(ms: number): Promise<void> {
    this.t += ms;
    const due = this.sleepers.filter((s) => s.until <= this.t);
    this.sleepers = this.sleepers.filter((s) => s.until > this.t);
    for (const s of due) s.resolve();
    await new Promise((r) => setTimeout(r, 0));
  }
  get waiting(): number {
    return this.sleepers.length;
  }
}

Deno.test("auth: limiter: free below 3 failures, then 1 s, 2 s, 4 s ... capped at 60 s", () => {
  const clock = new FakeClock();
  const lim = new AuthLimiter({ clock });
  const seq = [0, 0, 0, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000];
  const got = seq.map((_, i) => lim.penaltyMs(i));
  assertEquals(got, seq);
  lim.failed("10.1.1.1:1000");
  lim.failed("10.1.1.1:1001");
  assertEquals(lim.waitMs("10.1.1.1:1002"), 0);
  lim.failed("10.1.1.1:1003");
  assertEquals(lim.failures("10.1.1.1:9"), 3);
  assertEquals(lim.waitMs("10.1.1.1:1004"), 1000);
  assertEquals(lim.waitMs("10.1.1.2:1004"), 0); // another address is unaffected
});

Deno.test("auth: limiter: beforeAttempt waits from the last failure; success resets", async () => {
  const clock = new FakeClock();
  const lim = new AuthLimiter({ clock });
  for (let i = 0; i < 4; i++) lim.failed("192.0.2.7:4000");
  let passed = false;
  const p = lim.beforeAttempt("192.0.2.7:4001").then(() => (passed = true));
  await clock.advance(1999);
  assert(!passed, "waits 2 s after the 4th failure");
  await clock.advance(1);
  await p;
  assert(passed);
  lim.succeeded("192.0.2.7:4002");
  assertEquals(lim.failures("192.0.2.7"), 0);
  await lim.beforeAttempt("192.0.2.7:4003"); // no wait now
});

Deno.test("auth: limiter: concurrent attempts queue; too long a queue is refused", async () => {
  const clock = new FakeClock();
  const lim = new AuthLimiter({ clock, maxDelayMs: 10_000 });
  for (let i = 0; i < 5; i++) lim.failed("[2001:db8::1]:5900"); // penalty 4 s
  const done: number[] = [];
  const attempts = [0, 1].map((i) =>
    lim.beforeAttempt(`[2001:db8::1]:${6000 + i}`).then(() => done.push(i))
  );
  await assertRejects(() => lim.beforeAttempt("2001:db8::1"), TooManyAttempts);
  await clock.advance(4000);
  assertEquals(done, [0]);
  await clock.advance(4000);
  await Promise.all(attempts);
  assertEquals(done, [0, 1]);
});

Deno.test("auth: limiter: failures expire after the window; memory is bounded", async () => {
  const clock = new FakeClock();
  const lim = new AuthLimiter({ clock, windowMs: 60_000, maxEntries: 3 });
  for (let i = 0; i < 5; i++) lim.failed("198.51.100.1:1");
  await clock.advance(60_001);
  assertEquals(lim.failures("198.51.100.1:1"), 0);
  for (let i = 0; i < 10; i++) lim.failed(`198.51.100.${10 + i}:1`);
  assert(lim.size <= 3);
  assertEquals(lim.failures("198.51.100.19:1"), 1);
});

Deno.test("auth: addressOf strips the port", () => {
  assertEquals(addressOf("10.0.0.5:41234"), "10.0.0.5");
  assertEquals(addressOf("[::1]:5900"), "::1");
  assertEquals(addressOf("::1"), "::1");
  assertEquals(addressOf("fe80::1"), "fe80::1");
  assertEquals(addressOf("localhost"), "localhost");
});
