/**
 * The Xen FFI layer on a host without a hypervisor: Debian's libxenevtchn,
 * libxenforeignmemory and libxengnttab load with the declared signatures
 * (Deno.dlopen resolves every symbol or throws), every open fails with one
 * clear line, a missing library gives the apt-get line, and the event
 * channel wait loop runs for real (poll on a worker thread, xenevtchn_pending
 * and xenevtchn_unmask) on a socket standing in for /dev/xen/evtchn.
 */
import { assert, assertEquals } from "@rxfb/assert";
import { detach, XenGuestMemory } from "../sources/xen/memory.ts";
import { XenEventChannels, type XenEventChannelsOptions } from "../sources/xen/evtchn.ts";
import {
  EVTCHN_SYMBOLS,
  FOREIGNMEMORY_SYMBOLS,
  GNTTAB_SYMBOLS,
  loadXenLibrary,
  missingLibraryLine,
  probeXenDevices,
  probeXenLibraries,
  XEN_LIBRARIES,
  XenError,
  type XenLibraryName,
  xenLogger,
} from "../sources/xen/ffi.ts";
import { memoryLogger } from "../sources/log.ts";
import { exists, skipWithout } from "./packages.ts";

const PACKAGES = "libxenevtchn1 libxenforeignmemory1 libxengnttab1";
const APT = `apt-get install -y ${PACKAGES}`;
const LIBS_PRESENT = probeXenLibraries().ok;
// The logger handed to the libraries lives as long as the process: make it
// here, outside any test, so that resource sanitizers do not count it.
if (LIBS_PRESENT) xenLogger();
const noLibs = skipWithout(LIBS_PRESENT, PACKAGES, APT);
/** On a real dom0 the devices open: the "no hypervisor" tests do not apply there. */
const ON_XEN = exists("/dev/xen/evtchn") || exists("/dev/xen/privcmd") ||
  exists("/proc/xen/privcmd") || exists("/dev/xen/gntdev");
const NAMES: readonly XenLibraryName[] = ["evtchn", "foreignmemory", "gnttab"];

/** What these libraries' opens say on a machine without Xen (checked on Debian 12, Xen 4.17). */
const NO_XEN_LINES = {
  evtchn: "xenevtchn_open failed: ENOENT (/dev/xen/evtchn missing): not a Xen dom0, or the " +
    "xen-evtchn module is not loaded (modprobe xen-evtchn)",
  foreignmemory: "xenforeignmemory_open failed: ENOENT (/dev/xen/privcmd and /proc/xen/privcmd " +
    "missing): not a Xen dom0, or the xen-privcmd module is not loaded (modprobe xen-privcmd)",
  gnttab: "xengnttab_open failed: ENOENT (/dev/xen/gntdev missing): not a Xen dom0, or the " +
    "xen-gntdev module is not loaded (modprobe xen-gntdev)",
};

/** The error `fn` throws, checked to be a `cls` whose message contains `includes`. */
function thrown<E extends Error>(
  fn: () => unknown,
  // deno-lint-ignore no-explicit-any
  cls: new (...args: any[]) => E,
  includes = "",
): E {
  try {
    fn();
  } catch (e) {
    assert(e instanceof cls, `expected a ${cls.name}, got ${e}`);
    assert(e.message.includes(includes), `"${e.message}" lacks "${includes}"`);
    return e;
  }
  throw new Error(`expected a ${cls.name} to be thrown`);
}

const bogus = (name: XenLibraryName) => ({
  libraryPaths: { [name]: [`/nonexistent/${XEN_LIBRARIES[name].soname}`] },
});

Deno.test({
  name: "xen ffi: the three libraries load with the declared signatures",
  ignore: noLibs,
  fn() {
    const probe = probeXenLibraries();
    assert(probe.ok, probe.lines.join("\n"));
    assertEquals(probe.lines.length, 3);
    const tables = {
      evtchn: EVTCHN_SYMBOLS,
      foreignmemory: FOREIGNMEMORY_SYMBOLS,
      gnttab: GNTTAB_SYMBOLS,
    };
    for (const name of NAMES) {
      const l = XEN_LIBRARIES[name];
      // a fresh dlopen of the soname: throws if any declared symbol does not resolve
      const lib = Deno.dlopen(l.soname, tables[name]);
      try {
        for (const [sym, f] of Object.entries(lib.symbols)) {
          assertEquals(typeof f, "function", `${l.soname}: ${sym}`);
        }
      } finally {
        lib.close();
      }
      const line = probe.lines.find((s) => s.startsWith(`${l.soname}: loaded`));
      assert(line, `${l.soname} in ${probe.lines}`);
      assert(line.includes(`${Object.keys(tables[name]).length} symbols resolved`), line);
    }
  },
});

Deno.test("xen ffi: a missing library gives one line with the apt-get command", async () => {
  for (const name of NAMES) {
    const l = XEN_LIBRARIES[name];
    const expected =
      `${l.soname} not found: install Debian's ${l.debianPackage} (apt-get install ${l.debianPackage})`;
    assertEquals(missingLibraryLine(name), expected);
    const e = thrown(() => loadXenLibrary(name, bogus(name)), XenError);
    assertEquals(e.message, expected);
    const probe = probeXenLibraries(bogus(name));
    assertEquals(probe.ok, false);
    assert(probe.lines.includes(expected), probe.lines.join("\n"));
  }
  assertEquals(
    missingLibraryLine("evtchn"),
    "libxenevtchn.so.1 not found: install Debian's libxenevtchn1 (apt-get install libxenevtchn1)",
  );
  // the wrappers say the same
  const ev = new XenEventChannels(bogus("evtchn"));
  thrown(() => ev.bindInterdomain(1, 5), XenError, missingLibraryLine("evtchn"));
  await ev.close();
  const mem = new XenGuestMemory({
    libraryPaths: { ...bogus("foreignmemory").libraryPaths, ...bogus("gnttab").libraryPaths },
  });
  thrown(
    () => mem.mapFrames(1, [0x1234], true),
    XenError,
    missingLibraryLine("foreignmemory"),
  );
  thrown(() => mem.mapGrant(1, 8, true), XenError, missingLibraryLine("gnttab"));
  assertEquals(mem.liveMappings, 0);
  mem.close();
});

Deno.test({
  name: "xen ffi: a file lacking a declared symbol is named",
  ignore: noLibs,
  fn() {
    // libxengnttab.so.1 exists but has none of libxenevtchn's symbols
    const e = thrown(
      () => loadXenLibrary("evtchn", { libraryPaths: { evtchn: ["libxengnttab.so.1"] } }),
      XenError,
    );
    // which missing symbol is met first depends on Deno's registration order
    assert(
      /^libxengnttab\.so\.1 lacks xenevtchn_\w+ \(not libxenevtchn\.so\.1, or too old\): install Debian's libxenevtchn1 \(apt-get install libxenevtchn1\)$/
        .test(e.message),
      e.message,
    );
  },
});

Deno.test({
  name: "xen ffi: without a hypervisor every open fails with one clear line (ENOENT)",
  ignore: noLibs || ON_XEN,
  fn() {
    const probe = probeXenDevices();
    assertEquals(probe.ok, false);
    assertEquals(probe.lines, [
      NO_XEN_LINES.evtchn,
      NO_XEN_LINES.foreignmemory,
      NO_XEN_LINES.gnttab,
    ]);
  },
});

Deno.test({
  name: "xen ffi: XenEventChannels.bindInterdomain throws the clear line and holds nothing",
  ignore: noLibs || ON_XEN,
  async fn() {
    const ev = new XenEventChannels();
    const e = thrown(() => ev.bindInterdomain(3, 5), XenError);
    assertEquals(e.message, NO_XEN_LINES.evtchn);
    assertEquals(e.errno, "ENOENT");
    assertEquals(ev.boundPorts, 0);
    assertEquals(ev.waiting, false);
    // argument checks come first, with the library never asked
    thrown(() => ev.bindInterdomain(-1, 5), RangeError, "bad domain id -1");
    thrown(() => ev.bindInterdomain(3, 0), RangeError, "bad event channel port 0");
    await ev.close();
    thrown(() => ev.bindInterdomain(3, 5), XenError, "event channels are closed");
  },
});

Deno.test({
  name: "xen ffi: XenGuestMemory.mapFrames and mapGrant throw clear lines",
  ignore: noLibs || ON_XEN,
  fn() {
    const mem = new XenGuestMemory();
    const f = thrown(() => mem.mapFrames(3, [0x12345], true), XenError);
    assertEquals(f.message, NO_XEN_LINES.foreignmemory);
    assertEquals(f.errno, "ENOENT");
    // what the library would have printed to stderr is kept instead
    assertEquals(f.libraryLog, [
      "xenforeignmemory: Could not obtain handle on privileged command interface: " +
      "No such file or directory",
    ]);
    const g = thrown(() => mem.mapGrant(3, 8, true), XenError);
    assertEquals(g.message, NO_XEN_LINES.gnttab);
    assertEquals(g.errno, "ENOENT");
    thrown(() => mem.mapFrames(3, [], false), RangeError, "no frames to map");
    thrown(() => mem.mapFrames(3, [1, -2], false), RangeError, "frame -2 (#2 of 2)");
    thrown(() => mem.mapFrames(0x7ff0, [1], false), RangeError, "bad domain id");
    thrown(() => mem.mapGrant(3, 2 ** 32, false), RangeError, "bad grant reference");
    assertEquals(mem.liveMappings, 0);
    mem.close();
    thrown(() => mem.mapFrames(3, [1], false), XenError, "guest memory is closed");
  },
});

Deno.test({
  name: "xen ffi: a failing open prints nothing but our one line",
  ignore: noLibs || ON_XEN,
  async fn() {
    const script = `
      import { XenEventChannels } from "${new URL("../sources/xen/evtchn.ts", import.meta.url)}";
      import { XenGuestMemory } from "${new URL("../sources/xen/memory.ts", import.meta.url)}";
      const mem = new XenGuestMemory();
      for (const f of [() => new XenEventChannels().bindInterdomain(1, 5),
                       () => mem.mapFrames(1, [0x1000], true), () => mem.mapGrant(1, 8, true)]) {
        try { f(); } catch (e) { console.error("rxfb: " + e.message); }
      }`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--quiet", script],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(30_000), // a child left waiting would hang the test
      env: { NO_COLOR: "1" },
    }).output();
    const err = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 0, err);
    assertEquals(err.trimEnd().split("\n"), [
      `rxfb: ${NO_XEN_LINES.evtchn}`,
      `rxfb: ${NO_XEN_LINES.foreignmemory}`,
      `rxfb: ${NO_XEN_LINES.gnttab}`,
    ]);
  },
});

// ---------------------------------------------------------------------------
// The wait loop, with a UNIX socket standing in for /dev/xen/evtchn: libxenevtchn's
// xenevtchn_pending reads 4-byte ports from the descriptor and xenevtchn_unmask
// writes them back, exactly as on the device. Binding, notifying and unbinding
// need a hypervisor, so a subclass stands in for those three.

const libc = Deno.dlopen("libc.so.6", {
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
}).symbols;
const AF_UNIX = 1, SOCK_STREAM = 1, SOCK_CLOEXEC = 0o2000000, F_SETFL = 4, O_NONBLOCK = 0o4000;

/** [ours (given to xenevtchn_fdopen), the test's end (plays the hypervisor)]. */
function socketPair(): [number, number] {
  const fds = new Int32Array(2);
  assertEquals(libc.socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  assertEquals(libc.fcntl(fds[1], F_SETFL, O_NONBLOCK), 0);
  return [fds[0], fds[1]];
}

/** The "hypervisor" marks these ports pending. */
function fire(fd: number, ...ports: number[]): void {
  const buf = new Uint32Array(ports);
  assertEquals(
    Number(libc.write(fd, new Uint8Array(buf.buffer), BigInt(buf.byteLength))),
    buf.byteLength,
  );
}

/** Ports the backend unmasked so far (written back to the device). */
function unmasked(fd: number): number[] {
  const buf = new Uint32Array(64);
  const n = Number(libc.read(fd, new Uint8Array(buf.buffer), BigInt(buf.byteLength)));
  return n > 0 ? [...buf.subarray(0, n / 4)] : [];
}

class FakeBindEventChannels extends XenEventChannels {
  nextPort = 10;
  readonly notified: number[] = [];
  readonly unbound: number[] = [];
  constructor(opts: XenEventChannelsOptions) {
    super(opts);
  }
  protected override bindPort(_domid: number, _remotePort: number): number {
    return this.nextPort++;
  }
  protected override notifyPort(port: number): void {
    this.notified.push(port);
  }
  protected override unbindPort(port: number): void {
    this.unbound.push(port);
  }
}

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await tick(2);
  }
}

Deno.test({
  name: "xen ffi: events are awaited off the event loop, dispatched by port, then unmasked",
  ignore: noLibs,
  async fn() {
    const [ours, hv] = socketPair();
    const logger = memoryLogger();
    const ev = new FakeBindEventChannels({ fd: ours, logger });
    const a = ev.bindInterdomain(3, 7);
    const b = ev.bindInterdomain(4, 9);
    assertEquals([a.localPort, b.localPort], [10, 11]);
    const got: string[] = [];
    a.events$.subscribe(() => got.push("a"));
    b.events$.subscribe(() => got.push("b"));
    assert(ev.waiting, "a poll is outstanding while ports are bound");

    // the event loop runs while the poll waits on its thread
    let timers = 0;
    for (let i = 0; i < 5; i++) await tick(5).then(() => timers++);
    assertEquals(timers, 5);
    assertEquals(got, []);

    fire(hv, 11);
    await until(() => got.length === 1, "b's event");
    assertEquals(got, ["b"]);
    await until(() => unmasked(hv).includes(11), "port 11 unmasked");

    // several queued ports are drained in one go; unknown ports are dropped, not unmasked
    got.length = 0;
    fire(hv, 10, 99, 11, 10);
    await until(() => got.length === 3, "three events");
    assertEquals(got, ["a", "b", "a"]);
    let back: number[] = [];
    await until(() => (back = back.concat(unmasked(hv))).length >= 3, "three unmasks");
    assertEquals(back, [10, 11, 10]);

    a.notify();
    b.notify();
    assertEquals(ev.notified, [10, 11]);

    // closing one channel completes it; the other still hears
    let aDone = false;
    a.events$.subscribe({ complete: () => aDone = true });
    a.close();
    a.notify(); // after close: nothing
    assert(aDone);
    assertEquals(ev.unbound, [10]);
    assertEquals(ev.notified, [10, 11]);
    got.length = 0;
    fire(hv, 10, 11);
    await until(() => got.length === 1, "b's second event");
    await tick(20);
    assertEquals(got, ["b"]);

    // close with the poll outstanding: it is woken, then the handle closes
    const t0 = performance.now();
    await ev.close();
    assert(performance.now() - t0 < 2000, "close is prompt");
    assertEquals(ev.waiting, false);
    assertEquals(ev.unbound, [10, 11]);
    assertEquals(ev.boundPorts, 0);
    assertEquals(logger.lines, []);
    libc.close(hv);
  },
});

Deno.test({
  name: "xen ffi: with no port bound nothing waits (the process may exit)",
  ignore: noLibs,
  async fn() {
    const [ours, hv] = socketPair();
    const ev = new FakeBindEventChannels({ fd: ours });
    const a = ev.bindInterdomain(3, 7);
    assert(ev.waiting);
    a.close();
    await until(() => !ev.waiting, "the poll to stop");
    // binding again starts waiting again, and events still arrive
    const b = ev.bindInterdomain(3, 8);
    assert(ev.waiting);
    let n = 0;
    b.events$.subscribe(() => n++);
    fire(hv, b.localPort);
    await until(() => n === 1, "the event");
    b.close();
    await until(() => !ev.waiting, "the poll to stop again");
    await ev.close();
    libc.close(hv);

    // and a script that binds and closes a channel exits by itself
    const script = `
      import { XenEventChannels } from "${new URL("../sources/xen/evtchn.ts", import.meta.url)}";
      const [a, b] = (() => { const f = new Int32Array(2);
        Deno.dlopen("libc.so.6", { socketpair: { parameters: ["i32","i32","i32","buffer"], result: "i32" } })
          .symbols.socketpair(1, 1, 0, f); return f; })();
      class Fake extends XenEventChannels { bindPort() { return 5; } unbindPort() {} }
      const ev = new Fake({ fd: a });
      const ch = ev.bindInterdomain(1, 2);
      setTimeout(() => ch.close(), 50);
      void b;`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--quiet", script],
      stdout: "null",
      stderr: "piped",
      signal: AbortSignal.timeout(30_000), // a child left waiting would hang the test
    }).output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  },
});

Deno.test({
  name: "xen ffi: a descriptor that fails ends the channels with one logged line",
  ignore: noLibs,
  async fn() {
    const [ours, hv] = socketPair();
    const logger = memoryLogger();
    const ev = new FakeBindEventChannels({ fd: ours, logger });
    const a = ev.bindInterdomain(3, 7);
    let done = false;
    a.events$.subscribe({ complete: () => done = true, error: () => assert(false, "no error") });
    libc.close(hv); // the "driver" goes away: POLLHUP, and reads return 0
    await until(() => done, "the channel to complete");
    assertEquals(ev.boundPorts, 0);
    assertEquals(logger.lines.length, 1, logger.lines.join("\n"));
    assert(logger.lines[0].startsWith("error xenevtchn_pending failed"), logger.lines[0]);
    await ev.close();
    assertEquals(ev.waiting, false);
  },
});

Deno.test({
  name: "xen ffi: an unmapped buffer is detached, so its views no longer reach the memory",
  ignore: noLibs,
  fn() {
    const c = Deno.dlopen("libc.so.6", {
      mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
      munmap: { parameters: ["pointer", "usize"], result: "i32" },
    });
    try {
      const p = c.symbols.mmap(null, 4096n, 3, 0x22, -1, 0n);
      assert(p);
      const buffer = Deno.UnsafePointerView.getArrayBuffer(p, 4096);
      const bytes = new Uint8Array(buffer);
      const sub = bytes.subarray(100, 200);
      bytes[100] = 7;
      assertEquals(sub[0], 7);
      detach(buffer);
      assertEquals(bytes.length, 0);
      assertEquals(sub.length, 0);
      assertEquals(bytes[100], undefined);
      thrown(() => new DataView(buffer).getUint8(0), TypeError);
      detach(buffer); // twice is fine
      assertEquals(c.symbols.munmap(p, 4096n), 0);
    } finally {
      c.close();
    }
  },
});
