/**
 * The xenstore wire protocol: codec unit tests, rxfb's XenstoreClient against
 * the simulator's xenstored on a UNIX socket, and Debian's xenstore-utils
 * (xenstore-read, -write, -ls, -list, -rm, -watch, -chmod, pointed at the
 * socket with XENSTORED_PATH) as the conformance check.
 */
import { assert, assertEquals, assertRejects, assertThrows } from "@rxfb/assert";
import { memoryLogger } from "../sources/log.ts";
import { type Perm, XenstoreError } from "../sources/platform.ts";
import { SimXenstoreDaemon } from "../sources/sim/xenstore.ts";
import {
  type RequestInfo,
  serveXenstore,
  type XenstoreServer,
  type XenstoreServerOptions,
} from "../sources/sim/xenstore_server.ts";
import {
  connectXenstore,
  XENSTORE_PATHS,
  type XenstoreClient,
  XenstoreUnavailableError,
} from "../sources/xen/xenstore_client.ts";
import {
  AS_DOMAIN_COMMAND,
  countStrings,
  decodeArgs,
  decodeDirectoryPart,
  decodeError,
  decodeHeader,
  decodeMessage,
  decodeOneArg,
  decodePerms,
  decodeStrings,
  decodeText,
  decodeWatchEvent,
  encodeError,
  encodeHeader,
  encodeMessage,
  encodePerms,
  encodeSetPerms,
  encodeStrings,
  encodeText,
  encodeWatch,
  encodeWrite,
  formatPerm,
  parsePerm,
  XS_CONTROL,
  XS_DIRECTORY,
  XS_DIRECTORY_PART,
  XS_ERRNOS,
  XS_ERROR,
  XS_GET_DOMAIN_PATH,
  XS_HEADER_SIZE,
  XS_PAYLOAD_MAX,
  XS_READ,
  XS_TRANSACTION_END,
  XS_TRANSACTION_START,
  XS_TYPE_NAMES,
  XS_WATCH,
  XS_WATCH_EVENT,
  XS_WRITE,
  XsFrameParser,
  type XsMessage,
  XsProtocolError,
  xsTypeName,
} from "../sources/xen/xs_wire.ts";
import { exists, skipWithout } from "./packages.ts";

// ---- helpers ------------------------------------------------------------------

const XS_WIRE_H = "/usr/include/xen/io/xs_wire.h";
const hasTools = exists("/usr/bin/xenstore-read") && exists("/usr/bin/xenstore-ls");
const noTools = skipWithout(hasTools, "xenstore-utils", "apt-get install -y xenstore-utils");
const noHeader = skipWithout(exists(XS_WIRE_H), "libxen-dev", "apt-get install -y libxen-dev");

const errno = (name: string) => (e: unknown) => e instanceof XenstoreError && e.errno === name;

async function waitFor(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface Rig {
  daemon: SimXenstoreDaemon;
  server: XenstoreServer;
  path: string;
  log: string[];
  requests: RequestInfo[];
  clients: XenstoreClient[];
  /** A client of rxfb's, closed by `stop`. */
  connect(asDomain?: number): Promise<XenstoreClient>;
  stop(): Promise<void>;
}

async function rig(opts: XenstoreServerOptions = {}): Promise<Rig> {
  const dir = await Deno.makeTempDir({ prefix: "rxfb-xs-" });
  const path = `${dir}/xenstored.sock`;
  const daemon = new SimXenstoreDaemon();
  const logger = memoryLogger();
  const requests: RequestInfo[] = [];
  const server = serveXenstore(daemon, path, {
    log: logger,
    onRequest: (r) => requests.push(r),
    ...opts,
  });
  const clients: XenstoreClient[] = [];
  return {
    daemon,
    server,
    path,
    log: logger.lines,
    requests,
    clients,
    async connect(asDomain?: number) {
      const c = await connectXenstore(path, asDomain === undefined ? {} : { asDomain });
      clients.push(c);
      return c;
    },
    async stop() {
      for (const c of clients) c.close();
      await Promise.all(clients.map((c) => c.done));
      server.close();
      await server.closed;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** A bare protocol connection, for sending what rxfb's client never would. */
async function raw(path: string) {
  const conn = await Deno.connect({ transport: "unix", path });
  const parser = new XsFrameParser();
  const inbox: XsMessage[] = [];
  let eof = false;
  const reading = (async () => {
    const buf = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        inbox.push(...parser.push(buf.subarray(0, n)));
      }
    } catch {
      // reset or closed
    }
    eof = true;
  })();
  let reqId = 100;
  return {
    inbox,
    get eof() {
      return eof;
    },
    async send(bytes: Uint8Array) {
      let at = 0;
      while (at < bytes.length) at += await conn.write(bytes.subarray(at));
    },
    /** Sends one request and waits for the message answering it. */
    async request(type: number, payload: Uint8Array, txId = 0): Promise<XsMessage> {
      const id = ++reqId;
      await this.send(encodeMessage({ type, reqId: id, txId, payload }));
      let found: XsMessage | undefined;
      await waitFor(
        () => !!(found = inbox.find((m) => m.reqId === id && m.type !== XS_WATCH_EVENT)) || eof,
        `reply to ${xsTypeName(type)}`,
      );
      if (!found) throw new Error(`connection closed before the reply to ${xsTypeName(type)}`);
      inbox.splice(inbox.indexOf(found), 1);
      return found;
    },
    async close() {
      try {
        conn.close();
      } catch {
        // closed by the server
      }
      await reading;
    },
  };
}

const errorOf = (m: XsMessage) => m.type === XS_ERROR ? decodeError(m.payload) : undefined;

/** Runs one of Debian's xenstore tools against the socket at `path`. */
async function tool(
  path: string,
  name: string,
  ...args: string[]
): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(name, {
    args,
    env: { XENSTORED_PATH: path },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

/** Like `tool`, and fails unless it exits 0; gives stdout. */
async function ok(path: string, name: string, ...args: string[]): Promise<string> {
  const r = await tool(path, name, ...args);
  assertEquals(r.code, 0, `${name} ${args.join(" ")} failed: ${r.err}`);
  return r.out;
}

// ---- codec ----------------------------------------------------------------------

Deno.test({
  name: "xs_wire: type numbers and errno names match xen/io/xs_wire.h",
  ignore: noHeader,
  fn: async () => {
    const h = await Deno.readTextFile(XS_WIRE_H);
    const body = /enum xsd_sockmsg_type\s*\{([\s\S]*?)\};/.exec(h)![1];
    const fromHeader: Record<number, string> = {};
    let next = 0;
    const values: Record<string, number> = {};
    for (const raw of body.replace(/\/\*[\s\S]*?\*\//g, "").split("\n")) {
      const line = raw.trim();
      if (!line || line.startsWith("#")) continue;
      for (const item of line.split(",").map((s) => s.trim()).filter(Boolean)) {
        const m = /^XS_(\w+)(?:\s*=\s*(.+))?$/.exec(item);
        assert(m, `cannot parse "${item}"`);
        let v = next;
        if (m[2]) {
          const e = /^(?:XS_(\w+)\s*\+\s*)?(0x[0-9a-f]+|\d+)$/i.exec(m[2].trim());
          assert(e, `cannot parse value "${m[2]}"`);
          v = (e[1] ? values[e[1]] : 0) + Number(e[2]);
        }
        values[m[1]] = v;
        next = v + 1;
        if (m[1] !== "TYPE_COUNT" && m[1] !== "INVALID") fromHeader[v] = m[1];
      }
    }
    assertEquals(XS_TYPE_NAMES, fromHeader);
    assertEquals(values.TYPE_COUNT, 23);
    assertEquals(values.INVALID, 0xffff);
    const errs = [...h.matchAll(/XSD_ERROR\((E\w+)\)/g)].map((m) => m[1]);
    assertEquals([...XS_ERRNOS], errs);
    assertEquals(Number(/#define XENSTORE_PAYLOAD_MAX (\d+)/.exec(h)![1]), XS_PAYLOAD_MAX);
  },
});

Deno.test("xs_wire: headers are four little-endian u32 and messages round-trip", () => {
  const bytes = encodeHeader({ type: XS_WRITE, reqId: 0x01020304, txId: 7, len: 260 });
  assertEquals(
    [...bytes],
    [11, 0, 0, 0, 4, 3, 2, 1, 7, 0, 0, 0, 4, 1, 0, 0],
  );
  assertEquals(decodeHeader(bytes), { type: 11, reqId: 0x01020304, txId: 7, len: 260 });
  const msg = { type: XS_READ, reqId: 0xffffffff, txId: 3, payload: encodeStrings(["/a/b"]) };
  const enc = encodeMessage(msg);
  assertEquals(enc.length, XS_HEADER_SIZE + 5);
  assertEquals(decodeMessage(enc), msg);
  assertThrows(() => decodeMessage(enc.subarray(0, enc.length - 1)), XsProtocolError);
  assertThrows(() => encodeHeader({ type: -1, reqId: 0, txId: 0, len: 0 }), RangeError);
  assertThrows(
    () => encodeMessage({ type: XS_WRITE, reqId: 1, txId: 0, payload: new Uint8Array(4097) }),
    XsProtocolError,
  );
  assertEquals(encodeMessage({ ...msg, payload: new Uint8Array(4096) }).length, 4112);
  assertEquals(xsTypeName(XS_DIRECTORY_PART), "DIRECTORY_PART");
  assertEquals(xsTypeName(99), "type 99");
});

Deno.test("xs_wire: payload codecs", () => {
  const td = (b: Uint8Array) => new TextDecoder().decode(b);
  assertEquals(td(encodeStrings(["a", "bc", ""])), "a\0bc\0\0");
  assertEquals(decodeStrings(encodeStrings(["a", "bc"])), ["a", "bc"]);
  assertEquals(decodeStrings(new Uint8Array(0)), []);
  assertEquals(decodeStrings(encodeText("x\0tail")), ["x", "tail"]);
  assertEquals(countStrings(encodeText("a\0b\0c")), 2);

  assertEquals(decodeOneArg(encodeText("/a\0")), "/a");
  assertEquals(decodeOneArg(encodeText("/a")), undefined, "unterminated");
  assertEquals(decodeOneArg(encodeText("/a\0b\0")), undefined, "two strings");
  assertEquals(decodeOneArg(new Uint8Array(0)), undefined);

  const w = encodeWrite("/a/b", "héllo\0x");
  assertEquals(td(w), "/a/b\0héllo\0x", "the value is raw, no NUL added");
  const parsed = decodeArgs(w, 1)!;
  assertEquals(parsed.args, ["/a/b"]);
  assertEquals(decodeText(parsed.rest), "héllo\0x");
  assertEquals(decodeArgs(encodeText("/a"), 1), undefined);
  assertEquals(decodeText(encodeText("\ufeffbom")), "\ufeffbom", "a BOM survives");

  const perms: Perm[] = [{ domid: 0, perm: "b" }, { domid: 5, perm: "r" }];
  assertEquals(td(encodePerms(perms)), "b0\0r5\0");
  assertEquals(decodePerms(encodePerms(perms)), perms);
  assertEquals(decodePerms(encodeText("x0\0")), undefined);
  assertEquals(decodePerms(new Uint8Array(0)), undefined);
  assertEquals(td(encodeSetPerms("/a", perms)), "/a\0b0\0r5\0");
  assertEquals(formatPerm({ domid: 65535, perm: "n" }), "n65535");
  assertEquals(parsePerm("w12"), { domid: 12, perm: "w" });
  for (const bad of ["", "b", "q1", "r-1", "r65536", "r1x", " r1"]) {
    assertEquals(parsePerm(bad), undefined, bad);
  }

  assertEquals(td(encodeWatch("/a", "tok")), "/a\0tok\0");
  assertEquals(decodeWatchEvent(encodeWatch("/a/b", "tok")), { path: "/a/b", token: "tok" });
  assertEquals(decodeWatchEvent(encodeText("/a\0")), undefined);

  assertEquals(td(encodeError("ENOENT")), "ENOENT\0");
  assertEquals(decodeError(encodeError("EAGAIN")), "EAGAIN");
  assertEquals(decodeError(new Uint8Array(0)), "EINVAL");

  assertEquals(decodeDirectoryPart(encodeText("42\0a\0bb\0")), {
    generation: "42",
    children: ["a", "bb"],
    last: false,
    bytes: 5,
  });
  assertEquals(decodeDirectoryPart(encodeText("42\0a\0bb\0\0")), {
    generation: "42",
    children: ["a", "bb"],
    last: true,
    bytes: 5,
  });
  assertEquals(decodeDirectoryPart(encodeText("42\0\0")), {
    generation: "42",
    children: [],
    last: true,
    bytes: 0,
  });
});

Deno.test("xs_wire: the frame parser handles split and merged chunks", () => {
  const msgs: XsMessage[] = [
    { type: XS_WRITE, reqId: 1, txId: 0, payload: encodeWrite("/a", "1") },
    { type: XS_TRANSACTION_START, reqId: 2, txId: 0, payload: new Uint8Array(0) },
    { type: XS_WATCH_EVENT, reqId: 0, txId: 0, payload: encodeWatch("/a", "t") },
    { type: XS_READ, reqId: 3, txId: 9, payload: new Uint8Array(XS_PAYLOAD_MAX).fill(65) },
  ];
  const stream = new Uint8Array(msgs.flatMap((m) => [...encodeMessage(m)]));

  const feed = (sizes: (i: number) => number) => {
    const p = new XsFrameParser();
    const out: XsMessage[] = [];
    let at = 0;
    for (let i = 0; at < stream.length; i++) {
      const n = Math.max(1, sizes(i));
      out.push(...p.push(stream.subarray(at, at + n)));
      at += n;
    }
    assertEquals(p.buffered, 0);
    return out;
  };
  assertEquals(feed(() => stream.length), msgs, "all at once");
  assertEquals(feed(() => 1), msgs, "byte by byte");
  for (const size of [3, 15, 16, 17, 31, 1000]) assertEquals(feed(() => size), msgs, `${size}s`);
  let seed = 7;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % 50;
  assertEquals(feed(rnd), msgs, "random cuts");

  const p = new XsFrameParser();
  assertEquals(p.push(stream.subarray(0, 10)), []);
  assertEquals(p.buffered, 10);
  assertEquals(p.push(new Uint8Array(0)), []);
  assertEquals(p.push(stream.subarray(10)), msgs);
});

Deno.test("xs_wire: the frame parser rejects an oversize header and stays failed", () => {
  const p = new XsFrameParser();
  const head = encodeHeader({ type: XS_WRITE, reqId: 1, txId: 0, len: XS_PAYLOAD_MAX + 1 });
  assertThrows(() => p.push(head.subarray(0, 12)).concat(p.push(head.subarray(12))), (e) => {
    assert(e instanceof XsProtocolError);
    assert(/4097/.test(e.message), e.message);
    return true;
  });
  const good = encodeMessage({ type: XS_READ, reqId: 1, txId: 0, payload: encodeStrings(["/"]) });
  assertThrows(() => p.push(good), XsProtocolError, "no recovery after a violation");

  const q = new XsFrameParser();
  assertThrows(
    () => q.push(encodeHeader({ type: 0xdeadbeef, reqId: 0, txId: 0, len: 0xffffffff })),
    XsProtocolError,
  );
});

// ---- rxfb's client against the simulated xenstored ---------------------------------

Deno.test("xenstore wire: read, write, mkdir, rm and directory", async () => {
  const r = await rig();
  try {
    const xs = await r.connect();
    assertEquals(await xs.read("/a/b/c"), undefined);
    assertEquals(await xs.directory("/a"), []);
    await xs.write("/a/b/c", "1");
    assertEquals(await xs.read("/a/b/c"), "1");
    assertEquals(await xs.read("/a/b"), "");
    await xs.write("/a/z", "z");
    await xs.write("/a/m", "ünïcode\0and NUL");
    assertEquals(await xs.directory("/a"), ["b", "z", "m"]);
    assertEquals(await xs.read("/a/m"), "ünïcode\0and NUL");
    assertEquals(r.daemon.read(0, 0, "/a/m"), "ünïcode\0and NUL", "the daemon holds the text");
    await xs.mkdir("/a/z");
    assertEquals(await xs.read("/a/z"), "z");
    await xs.mkdir("/e/f");
    assertEquals(await xs.read("/e/f"), "");
    await xs.rm("/a/b");
    assertEquals(await xs.read("/a/b/c"), undefined);
    assertEquals(await xs.directory("/a"), ["z", "m"]);
    await xs.rm("/a/nothing");
    await xs.write("/empty", "");
    assertEquals(await xs.read("/empty"), "");
    assertEquals(r.daemon.dump("/a"), "/a = \n/a/z = z\n/a/m = ünïcode\0and NUL");
  } finally {
    await r.stop();
  }
});

Deno.test("xenstore wire: errors come back as XenstoreError with the path", async () => {
  const r = await rig();
  try {
    const xs = await r.connect();
    await assertRejects(xs.rm("/nothing/here"), (e) => {
      assert(e instanceof XenstoreError);
      assertEquals([e.errno, e.path], ["ENOENT", "/nothing/here"]);
      return true;
    });
    await assertRejects(xs.rm("/"), errno("EINVAL"));
    await assertRejects(xs.write("/a b", "x"), errno("EINVAL"));
    await assertRejects(xs.read("/a//b"), errno("EINVAL"));
    await assertRejects(xs.getPerms("/missing"), errno("ENOENT"));
    await assertRejects(xs.setPerms("/missing", [{ domid: 0, perm: "n" }]), errno("ENOENT"));
    await assertRejects(xs.write("/big", "x".repeat(XS_PAYLOAD_MAX)), errno("E2BIG"));
    assertEquals(r.daemon.dump("/big"), "", "an oversize request is refused before sending");
    await xs.write("/big", "x".repeat(XS_PAYLOAD_MAX - 5));
    assertEquals((await xs.read("/big"))?.length, XS_PAYLOAD_MAX - 5);
  } finally {
    await r.stop();
  }
});

Deno.test("xenstore wire: permissions, and a connection acting as a guest domain", async () => {
  const r = await rig();
  try {
    const dom0 = await r.connect();
    const dom3 = await r.connect(3);
    await dom0.write("/local/domain/3/device/vfb/0/state", "1");
    assertEquals(await dom0.getPerms("/local/domain/3"), [{ domid: 0, perm: "n" }]);
    await assertRejects(dom3.read("/local/domain/3/device/vfb/0/state"), errno("EACCES"));
    await dom0.setPerms("/local/domain/3", [{ domid: 3, perm: "n" }]);
    await dom0.setPerms("/local/domain/3/device", [{ domid: 3, perm: "n" }, {
      domid: 5,
      perm: "r",
    }]);
    assertEquals(await dom0.getPerms("/local/domain/3/device"), [
      { domid: 3, perm: "n" },
      { domid: 5, perm: "r" },
    ]);
    await dom3.write("/local/domain/3/data/x", "from 3");
    assertEquals(await dom0.getPerms("/local/domain/3/data/x"), [{ domid: 3, perm: "n" }]);
    // Relative paths are under the domain's home.
    assertEquals(await dom3.read("data/x"), "from 3");
    await dom3.write("data/y", "rel");
    assertEquals(await dom0.read("/local/domain/3/data/y"), "rel");
    await assertRejects(dom3.write("/local/domain/0/x", "no"), errno("EACCES"));
    await assertRejects(
      dom3.setPerms("/local/domain/3/data/x", [{ domid: 5, perm: "b" }]),
      errno("EPERM"),
    );
    // Privileged requests are refused to the guest.
    const g = await raw(r.path);
    assertEquals(
      errorOf(await g.request(XS_CONTROL, encodeStrings([AS_DOMAIN_COMMAND, "4"]))),
      undefined,
    );
    assertEquals(
      errorOf(await g.request(XS_CONTROL, encodeStrings([AS_DOMAIN_COMMAND, "0"]))),
      "EACCES",
      "a guest cannot become dom0 again",
    );
    assertEquals(
      decodeStrings((await g.request(XS_GET_DOMAIN_PATH, encodeStrings(["4"]))).payload),
      ["/local/domain/4"],
    );
    await g.close();
  } finally {
    await r.stop();
  }
});

Deno.test("xenstore wire: a watch fires at once, on changes, and UNWATCHes on unsubscribe", async () => {
  const r = await rig();
  try {
    const xs = await r.connect();
    const other = await r.connect();
    const events: string[] = [];
    const sub = xs.watch("/a").subscribe((p) => events.push(p));
    await waitFor(() => events.length === 1, "the initial event");
    assertEquals(events, ["/a"]);
    assertEquals(r.daemon.watchCount, 1);
    await other.write("/a/b", "1");
    await other.write("/elsewhere", "1");
    await other.mkdir("/a/c/d");
    await other.rm("/a/b");
    await waitFor(() => events.length === 4, "three more events");
    assertEquals(events, ["/a", "/a/b", "/a/c/d", "/a/b"]);

    // Two watches on the same path get their own tokens.
    const second: string[] = [];
    const sub2 = xs.watch("/a").subscribe((p) => second.push(p));
    await waitFor(() => second.length === 1, "the second watch's initial event");
    await other.write("/a/e", "1");
    await waitFor(() => second.length === 2 && events.length === 5, "both watches");
    const tokens = r.requests.filter((q) => q.type === XS_WATCH).map((q) =>
      decodeStrings(q.payload)[1]
    );
    assertEquals(new Set(tokens).size, 2);

    sub.unsubscribe();
    await waitFor(() => r.daemon.watchCount === 1, "UNWATCH");
    assert(r.requests.some((q) => q.typeName === "UNWATCH"));
    await other.write("/a/f", "1");
    await waitFor(() => second.length === 3, "the remaining watch");
    assertEquals(events.length, 5, "no events after unsubscribe");
    sub2.unsubscribe();
    await waitFor(() => r.daemon.watchCount === 0, "second UNWATCH");

    // A watch the daemon refuses errors the Observable.
    let failed: unknown;
    xs.watch("bad path").subscribe({ error: (e) => failed = e });
    await waitFor(() => failed !== undefined, "the error");
    assert(errno("EINVAL")(failed));
  } finally {
    await r.stop();
  }
});

Deno.test("xenstore wire: transactions commit, abort, and retry on EAGAIN", async () => {
  const r = await rig();
  try {
    const xs = await r.connect();
    const other = await r.connect();
    await xs.write("/counter", "1");

    let runs = 0;
    const result = await xs.transaction(async (tx) => {
      runs++;
      const n = Number(await tx.read("/counter"));
      // A conflicting write from another client, on the first run only.
      if (runs === 1) await other.write("/counter", "10");
      await tx.write("/counter", String(n + 1));
      await tx.write("/tx/side", `run ${runs}`);
      assertEquals(await xs.read("/tx/side"), undefined, "not visible before commit");
      return n + 1;
    });
    assertEquals(runs, 2, "the body ran again after EAGAIN");
    assertEquals(result, 11);
    assertEquals(await xs.read("/counter"), "11");
    assertEquals(await xs.read("/tx/side"), "run 2");
    const ends = r.requests.filter((q) => q.type === XS_TRANSACTION_END);
    assertEquals(ends.length, 2);
    assert(ends.every((q) => q.txId !== 0 && decodeStrings(q.payload)[0] === "T"));
    assert(
      r.requests.some((q) => q.type === XS_WRITE && q.txId === ends[1].txId),
      "body ops carry the tx_id",
    );

    // A body that throws aborts ("F") and changes nothing.
    let leaked: { read(p: string): Promise<string | undefined> } | undefined;
    await assertRejects(
      xs.transaction(async (tx) => {
        leaked = tx;
        await tx.write("/aborted", "x");
        throw new Error("boom");
      }),
      /boom/,
    );
    assertEquals(await xs.read("/aborted"), undefined);
    assertEquals(decodeStrings(r.requests.at(-2)!.payload), ["F"]);
    await assertRejects(leaked!.read("/counter"), errno("ENOENT"), "ops after the end");

    // A body that always conflicts gives up with EAGAIN.
    let tries = 0;
    await assertRejects(
      xs.transaction(async (tx) => {
        tries++;
        await tx.read("/counter");
        await other.write("/counter", String(tries));
      }),
      errno("EAGAIN"),
    );
    assertEquals(tries, 16);
  } finally {
    await r.stop();
  }
});

Deno.test("xenstore wire: long child lists come in DIRECTORY_PART pieces", async () => {
  const r = await rig();
  try {
    const xs = await r.connect();
    const names = Array.from({ length: 300 }, (_, i) => `child-with-a-long-name-${i}`);
    await xs.transaction(async (tx) => {
      for (const n of names) await tx.write(`/many/${n}`, n);
    });
    assertEquals(await xs.directory("/many"), names);
    assert(r.requests.filter((q) => q.type === XS_DIRECTORY_PART).length >= 2);

    const g = await raw(r.path);
    assertEquals(errorOf(await g.request(XS_DIRECTORY, encodeStrings(["/many"]))), "E2BIG");
    const first = await g.request(XS_DIRECTORY_PART, encodeStrings(["/many", "0"]));
    assertEquals(first.type, XS_DIRECTORY_PART);
    assert(first.payload.length <= XS_PAYLOAD_MAX);
    const part = decodeDirectoryPart(first.payload)!;
    assertEquals(part.last, false);
    assertEquals(part.children, names.slice(0, part.children.length));
    const past = await g.request(XS_DIRECTORY_PART, encodeStrings(["/many", "999999"]));
    assertEquals(new TextDecoder().decode(past.payload), `${part.generation}\0\0`);
    assertEquals(
      errorOf(await g.request(XS_DIRECTORY_PART, encodeStrings(["/many"]))),
      "EINVAL",
    );
    await xs.write("/many/one-more", "");
    const changed = await g.request(XS_DIRECTORY_PART, encodeStrings(["/many", "0"]));
    assert(decodeDirectoryPart(changed.payload)!.generation !== part.generation);
    await g.close();
  } finally {
    await r.stop();
  }
});

Deno.test("xenstore wire: replies match by req_id amid watch events", async () => {
  const r = await rig();
  try {
    const xs = await r.connect();
    const events: string[] = [];
    const sub = xs.watch("/w").subscribe((p) => events.push(p));
    const n = 100;
    await Promise.all(Array.from({ length: n }, (_, i) => xs.write(`/w/${i}`, String(i))));
    const values = await Promise.all(Array.from({ length: n }, (_, i) => xs.read(`/w/${i}`)));
    assertEquals(values, Array.from({ length: n }, (_, i) => String(i)));
    await waitFor(() => events.length === n + 1, "all events");
    sub.unsubscribe();
  } finally {
    await r.stop();
  }
});

Deno.test("xenstore wire: malformed requests get EINVAL, unknown ones ENOSYS", async () => {
  const r = await rig();
  try {
    const g = await raw(r.path);
    const t = (s: string) => encodeText(s);
    assertEquals(errorOf(await g.request(XS_READ, t("/a"))), "EINVAL", "no NUL");
    assertEquals(errorOf(await g.request(XS_READ, t("/a\0/b\0"))), "EINVAL", "two args");
    assertEquals(errorOf(await g.request(XS_WRITE, t("/a"))), "EINVAL", "no NUL");
    assertEquals(errorOf(await g.request(XS_WATCH, t("/a\0"))), "EINVAL", "no token");
    assertEquals(errorOf(await g.request(XS_READ, t("/nope\0"))), "ENOENT");
    assertEquals(errorOf(await g.request(XS_READ, t("/\0"), 77)), "ENOENT", "unknown tx");
    const start = await g.request(XS_TRANSACTION_START, t("\0"));
    const tx = Number(decodeStrings(start.payload)[0]);
    assertEquals(errorOf(await g.request(XS_TRANSACTION_END, t("X\0"), tx)), "EINVAL");
    assertEquals(errorOf(await g.request(XS_TRANSACTION_START, t("\0"), tx)), "EBUSY");
    const end = await g.request(XS_TRANSACTION_END, t("F\0"), tx);
    assertEquals([end.type, end.txId, decodeStrings(end.payload)], [
      XS_TRANSACTION_END,
      tx,
      ["OK"],
    ]);
    assertEquals(errorOf(await g.request(99, t("x\0"))), "ENOSYS");
    assertEquals(errorOf(await g.request(XS_WATCH_EVENT, t("/a\0t\0"))), "ENOSYS");
    assertEquals(errorOf(await g.request(XS_CONTROL, t("nonsense\0"))), "EINVAL");
    assertEquals(
      errorOf(await g.request(XS_WATCH, encodeWatch("/w", "t"))),
      undefined,
    );
    assertEquals(errorOf(await g.request(XS_WATCH, encodeWatch("/w", "t"))), "EEXIST");
    assertEquals(
      errorOf(await g.request(XS_CONTROL, encodeStrings([AS_DOMAIN_COMMAND, "3"]))),
      "EBUSY",
      "no change of domain with watches registered",
    );
    assert(!g.eof, "errors do not disconnect");
    await g.close();
    assert(r.log.some((l) => /unknown request type 99/.test(l)), r.log.join("\n"));
  } finally {
    await r.stop();
  }
});

Deno.test("xenstore wire: close rejects pending requests; a lost server errors watches", async () => {
  const r = await rig();
  try {
    const xs = await r.connect();
    let completed = false;
    xs.watch("/x").subscribe({ complete: () => completed = true });
    const pending = xs.read("/x");
    xs.close();
    await assertRejects(pending, errno("EBADF"));
    assert(completed);
    await assertRejects(xs.read("/x"), errno("EBADF"));
    await xs.done;

    const ys = await r.connect();
    let failure: unknown;
    const events: string[] = [];
    ys.watch("/y").subscribe({ next: (p) => events.push(p), error: (e) => failure = e });
    await waitFor(() => events.length === 1, "the watch");
    r.server.close();
    await waitFor(() => failure !== undefined, "the watch to fail");
    assert(errno("EIO")(failure));
    await assertRejects(ys.read("/y"), errno("EIO"));
    assert(ys.closed);
    await ys.done;
  } finally {
    await r.stop();
  }
});

Deno.test("xenstore wire: connectXenstore fails with one clear line", async () => {
  const missing = "/nonexistent/rxfb-test/xenstored.sock";
  await assertRejects(connectXenstore(missing), (e) => {
    assert(e instanceof XenstoreUnavailableError);
    assertEquals(
      e.message,
      `no xenstore found: tried ${missing} (not found); is xenstored running? are you root in dom0?`,
    );
    return true;
  });
  const defaultsPresent = XENSTORE_PATHS.filter(exists);
  if (defaultsPresent.length) {
    console.error(`skipping the default-path check: ${defaultsPresent.join(", ")} exist here`);
    return;
  }
  // The default search, with $XENSTORED_PATH set, in a process of its own.
  const root = new URL("..", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      "--config",
      `${root}deno.json`,
      `import { connectXenstore } from "${root}sources/xen/xenstore_client.ts";
       try { await connectXenstore(); } catch (e) { console.log(e.message); Deno.exit(3); }`,
    ],
    env: { XENSTORED_PATH: missing, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assertEquals(out.code, 3, new TextDecoder().decode(out.stderr));
  assertEquals(
    text,
    `no xenstore found: tried $XENSTORED_PATH=${missing} (not found), ` +
      "/run/xenstored/socket (not found), /var/run/xenstored/socket (not found), " +
      "/dev/xen/xenbus (not found); is xenstored running? are you root in dom0?\n",
  );
});

Deno.test("xenstore wire: the server replaces a stale socket and refuses other files", async () => {
  const dir = await Deno.makeTempDir({ prefix: "rxfb-xs-" });
  try {
    const daemon = new SimXenstoreDaemon();
    const log = memoryLogger();
    const a = serveXenstore(daemon, `${dir}/s`, { log });
    // Leave the socket file behind, as a crashed simulator would.
    const listener = Deno.listen({ transport: "unix", path: `${dir}/stale` });
    listener.close();
    const b = serveXenstore(daemon, `${dir}/stale`, { log });
    const xs = await connectXenstore(`${dir}/stale`);
    await xs.write("/ok", "1");
    xs.close();
    await xs.done;
    await Deno.writeTextFile(`${dir}/file`, "keep me");
    assertThrows(() => serveXenstore(daemon, `${dir}/file`, { log }), /not a socket/);
    assertEquals(await Deno.readTextFile(`${dir}/file`), "keep me");
    a.close();
    b.close();
    await Promise.all([a.closed, b.closed]);
    assert(!exists(`${dir}/s`), "close removes the socket");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---- Debian's xenstore-utils against the simulated xenstored -------------------------

Deno.test({
  name: "xenstore-utils: xenstore-write and xenstore-read interoperate with rxfb",
  ignore: noTools,
  fn: async () => {
    const r = await rig();
    try {
      const xs = await r.connect();
      await ok(r.path, "xenstore-write", "/a/b", "hello");
      assertEquals(await xs.read("/a/b"), "hello");
      await ok(r.path, "xenstore-write", "/a/c", "one", "/a/d", "two words");
      assertEquals(await xs.directory("/a"), ["b", "c", "d"]);
      assertEquals(await xs.read("/a/d"), "two words");

      await xs.write("/from/rxfb", "written by rxfb");
      assertEquals(await ok(r.path, "xenstore-read", "/from/rxfb"), "written by rxfb\n");
      assertEquals(
        await ok(r.path, "xenstore-read", "-p", "/from/rxfb", "/a/b"),
        "/from/rxfb: written by rxfb\n/a/b: hello\n",
      );
      // xenstore-read escapes what is not printable.
      await xs.write("/esc", "tab\there");
      assertEquals(await ok(r.path, "xenstore-read", "/esc"), "tab\\there\n");
      assertEquals(await ok(r.path, "xenstore-exists", "/a/b"), "");
      assertEquals((await tool(r.path, "xenstore-exists", "/a/zzz")).code, 1);
    } finally {
      await r.stop();
    }
  },
});

Deno.test({
  name: "xenstore-utils: xenstore-ls shows the tree as xenstored's would",
  ignore: noTools,
  fn: async () => {
    const r = await rig();
    try {
      const xs = await r.connect();
      await xs.write("/local/domain/0/name", "Domain-0");
      await xs.write("/local/domain/3/name", "guest");
      await xs.write("/local/domain/3/device/vfb/0/state", "4");
      await xs.write("/local/domain/3/device/vfb/0/backend", "/local/domain/0/backend/vfb/3/0");
      await xs.write("/local/domain/3/long", "x".repeat(100));
      assertEquals(
        await ok(r.path, "xenstore-ls", "/local"),
        [
          `domain = ""`,
          ` 0 = ""`,
          `  name = "Domain-0"`,
          ` 3 = ""`,
          `  name = "guest"`,
          `  device = ""`,
          `   vfb = ""`,
          `    0 = ""`,
          `     state = "4"`,
          `     backend = "/local/domain/0/backend/vfb/3/0"`,
          // Cut to 80 columns (the width when stdout is no terminal) minus 8 for ` = "..."`.
          `  long = "${"x".repeat(80 - 8 - 6)}\\..."`,
          ``,
        ].join("\n"),
      );
      assertEquals(
        await ok(r.path, "xenstore-ls", "-f", "/local/domain/3/device"),
        [
          `/local/domain/3/device/vfb = ""`,
          `/local/domain/3/device/vfb/0 = ""`,
          `/local/domain/3/device/vfb/0/state = "4"`,
          `/local/domain/3/device/vfb/0/backend = "/local/domain/0/backend/vfb/3/0"`,
          ``,
        ].join("\n"),
      );
      const all = await ok(r.path, "xenstore-ls");
      assert(all.startsWith(`local = ""\n domain = ""\n  0 = ""\n`), all);
      const bad = await tool(r.path, "xenstore-ls", "/missing");
      assert(bad.code !== 0);
      assert(/xs_directory \(\/missing\): No such file or directory/.test(bad.err), bad.err);
    } finally {
      await r.stop();
    }
  },
});

Deno.test({
  name: "xenstore-utils: xenstore-list and xenstore-rm",
  ignore: noTools,
  fn: async () => {
    const r = await rig();
    try {
      const xs = await r.connect();
      for (const n of ["vfb", "vkbd", "console"]) await xs.write(`/dev/${n}/0/state`, "1");
      assertEquals(await ok(r.path, "xenstore-list", "/dev"), "vfb\nvkbd\nconsole\n");
      assertEquals(
        await ok(r.path, "xenstore-list", "-p", "/dev"),
        "/dev/vfb\n/dev/vkbd\n/dev/console\n",
      );
      assertEquals(await ok(r.path, "xenstore-list", "/dev/vfb/0/state"), "");
      const missing = await tool(r.path, "xenstore-list", "/nope");
      assertEquals(missing.code, 1);
      assertEquals(missing.err, "xenstore-list: could not list path /nope\n");

      await ok(r.path, "xenstore-rm", "/dev/vkbd");
      assertEquals(await xs.directory("/dev"), ["vfb", "console"]);
      assertEquals(await xs.read("/dev/vkbd/0/state"), undefined);
      await ok(r.path, "xenstore-rm", "/dev/not-there"); // fine: the parent exists
      const bad = await tool(r.path, "xenstore-rm", "/no/such/parent");
      assertEquals(bad.code, 1);
      assertEquals(bad.err, "xenstore-rm: could not remove path /no/such/parent\n");
      // -t also removes parents left empty.
      await ok(r.path, "xenstore-rm", "-t", "/dev/console/0/state");
      assertEquals(await xs.directory("/dev"), ["vfb"]);
      // The tools run these in transactions.
      assert(r.requests.some((q) => q.typeName === "RM" && q.txId !== 0));
    } finally {
      await r.stop();
    }
  },
});

Deno.test({
  name: "xenstore-utils: xenstore-watch prints the events of rxfb's writes",
  ignore: noTools,
  fn: async () => {
    const r = await rig();
    try {
      const xs = await r.connect();
      await xs.write("/a/x", "0");
      const child = new Deno.Command("xenstore-watch", {
        args: ["-n", "4", "/a"],
        env: { XENSTORED_PATH: r.path },
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      await waitFor(() => r.daemon.watchCount === 1, "xenstore-watch's WATCH");
      await xs.write("/a/x", "1");
      await xs.write("/b", "not watched");
      await xs.mkdir("/a/y");
      await xs.rm("/a/x");
      const out = await child.output();
      const dec = new TextDecoder();
      assertEquals(out.code, 0, dec.decode(out.stderr));
      assertEquals(dec.decode(out.stdout), "/a\n/a/x\n/a/y\n/a/x\n");
      const watch = r.requests.find((q) => q.type === XS_WATCH)!;
      assertEquals(decodeStrings(watch.payload)[0], "/a");
      await waitFor(() => r.daemon.watchCount === 0, "the watch to go with the tool");
    } finally {
      await r.stop();
    }
  },
});

Deno.test({
  name: "xenstore-utils: xenstore-chmod and xenstore-ls -p permissions",
  ignore: noTools,
  fn: async () => {
    const r = await rig();
    try {
      const xs = await r.connect();
      await xs.write("/p/q", "v");
      await ok(r.path, "xenstore-chmod", "/p/q", "b3", "r5");
      assertEquals(await xs.getPerms("/p/q"), [{ domid: 3, perm: "b" }, { domid: 5, perm: "r" }]);
      await xs.setPerms("/p", [{ domid: 0, perm: "r" }, { domid: 7, perm: "w" }]);
      // xenstore-ls -p pads each line with " ." to column 60, the dots on odd
      // columns, then prints the permissions.
      assertEquals(
        await ok(r.path, "xenstore-ls", "-p", "/p"),
        `q = "v"  . . . . . . . . . . . . . . . . . . . . . . . . . .  (b3,r5)\n`,
      );
      assertEquals(
        await ok(r.path, "xenstore-ls", "-p", "/"),
        [
          `p = "" . . . . . . . . . . . . . . . . . . . . . . . . . . .  (r0,w7)`,
          ` q = "v" . . . . . . . . . . . . . . . . . . . . . . . . . .  (b3,r5)`,
          ``,
        ].join("\n"),
      );
      // -r applies to the children as well.
      await ok(r.path, "xenstore-chmod", "-r", "/p", "n0", "r3");
      assertEquals(await xs.getPerms("/p"), [{ domid: 0, perm: "n" }, { domid: 3, perm: "r" }]);
      assertEquals(await xs.getPerms("/p/q"), [{ domid: 0, perm: "n" }, { domid: 3, perm: "r" }]);
      // What the permissions mean for a guest.
      const dom3 = await r.connect(3);
      const dom4 = await r.connect(4);
      assertEquals(await dom3.read("/p/q"), "v");
      await assertRejects(dom3.write("/p/q", "w"), errno("EACCES"));
      await assertRejects(dom4.read("/p/q"), errno("EACCES"));
      const bad = await tool(r.path, "xenstore-chmod", "/missing", "r0");
      assert(bad.code !== 0);
      assert(/Error occurred setting permissions on '\/missing'/.test(bad.err), bad.err);
    } finally {
      await r.stop();
    }
  },
});

Deno.test({
  name: "xenstore-utils: errors exit non-zero with the tools' messages",
  ignore: noTools,
  fn: async () => {
    const r = await rig();
    try {
      const read = await tool(r.path, "xenstore-read", "/missing");
      assertEquals([read.code, read.out], [1, ""]);
      assertEquals(read.err, "xenstore-read: couldn't read path /missing\n");
      const write = await tool(r.path, "xenstore-write", "/bad path", "x");
      assertEquals(write.code, 1);
      assertEquals(write.err, "xenstore-write: could not write path /bad path\n");
      const nothing = await tool(`${r.path}.absent`, "xenstore-read", "/a");
      assertEquals(nothing.code, 1);
      assert(/xs_open/.test(nothing.err), nothing.err);
    } finally {
      await r.stop();
    }
  },
});

Deno.test({
  name: "xenstore-utils: a long child list through libxenstore's DIRECTORY_PART",
  ignore: noTools,
  fn: async () => {
    const r = await rig();
    try {
      const xs = await r.connect();
      const names = Array.from({ length: 250 }, (_, i) => `a-rather-long-child-name-${i}`);
      await xs.transaction(async (tx) => {
        for (const n of names) await tx.write(`/many/${n}`, "");
      });
      assertEquals(await ok(r.path, "xenstore-list", "/many"), names.map((n) => n + "\n").join(""));
      const parts = r.requests.filter((q) => q.type === XS_DIRECTORY_PART);
      assert(parts.length >= 2, `DIRECTORY_PART requests: ${parts.length}`);
    } finally {
      await r.stop();
    }
  },
});

Deno.test({
  name: "xenstore wire: hostile clients are disconnected while the tools keep working",
  ignore: noTools,
  fn: async () => {
    const r = await rig({ maxPendingOutput: 64 * 1024 });
    try {
      const xs = await r.connect();
      await xs.write("/still", "here");

      // Garbage: random bytes make a header announcing a huge payload.
      const garbage = await raw(r.path);
      await garbage.send(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
      await waitFor(() => garbage.eof, "the garbage client to be dropped");
      await garbage.close();

      // An oversize header, announced exactly.
      const big = await raw(r.path);
      await big.send(encodeHeader({ type: XS_WRITE, reqId: 1, txId: 0, len: XS_PAYLOAD_MAX + 1 }));
      await waitFor(() => big.eof, "the oversize client to be dropped");
      await big.close();

      // A client stalled in the middle of a header blocks nobody.
      const stalled = await raw(r.path);
      await stalled.send(new Uint8Array([2, 0, 0]));

      // A client that asks for big values and never reads is dropped before it eats memory.
      await xs.write("/big", "x".repeat(4000));
      const greedy = await Deno.connect({ transport: "unix", path: r.path });
      const flood = concatAll(
        Array.from(
          { length: 400 },
          (_, i) =>
            encodeMessage({ type: XS_READ, reqId: i, txId: 0, payload: encodeStrings(["/big"]) }),
        ),
      );
      await greedy.write(flood).catch(() => 0);

      assertEquals(await ok(r.path, "xenstore-read", "/still"), "here\n");
      await ok(r.path, "xenstore-write", "/still", "working");
      assertEquals(await xs.read("/still"), "working");
      await waitFor(
        () => r.log.some((l) => /not reading its replies/.test(l)),
        "the greedy client to be dropped",
      );
      greedy.close();
      assert(!stalled.eof, "a slow client is not dropped");
      await stalled.close();

      const drops = r.log.filter((l) => /disconnected/.test(l));
      assertEquals(drops.length, 3, r.log.join("\n"));
      assert(/header announces \d+ payload bytes \(max 4096\)/.test(drops[0]), drops[0]);
      assert(/WRITE header announces 4097 payload bytes/.test(drops[1]), drops[1]);
      assertEquals(await ok(r.path, "xenstore-read", "/still"), "working\n");
      await waitFor(() => r.server.connections === 1, "only rxfb's client left");
    } finally {
      await r.stop();
    }
  },
});

Deno.test({
  name: "xenstore-utils: the tools act as dom0 while an rxfb client acts as a guest",
  ignore: noTools,
  fn: async () => {
    const r = await rig();
    try {
      const dom0 = await r.connect();
      await dom0.write("/local/domain/5/secret", "s");
      await dom0.setPerms("/local/domain/5/secret", [{ domid: 0, perm: "n" }]);
      const dom5 = await r.connect(5);
      await assertRejects(dom5.read("/local/domain/5/secret"), errno("EACCES"));
      assertEquals(await ok(r.path, "xenstore-read", "/local/domain/5/secret"), "s\n");
      // The guest's own writes belong to it, as xenstore-ls -p shows.
      await dom0.setPerms("/local/domain/5", [{ domid: 5, perm: "n" }]);
      await dom5.write("/local/domain/5/mine", "m");
      assertEquals(
        await ok(r.path, "xenstore-ls", "-p", "/local/domain/5"),
        [
          `secret = "s" . . . . . . . . . . . . . . . . . . . . . . . .  (n0)`,
          `mine = "m" . . . . . . . . . . . . . . . . . . . . . . . . .  (n5)`,
          ``,
        ].join("\n"),
      );
      assert(r.requests.filter((q) => q.type === XS_CONTROL).every((q) => q.domid === 0));
    } finally {
      await r.stop();
    }
  },
});

function concatAll(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
