/**
 * A simulated host whose guests and backend are separate processes
 * (sources/sim/host_main.ts, sources/sim/guest_main.ts, `mod.ts --sim-host`):
 * guest memory shared through /dev/shm files, event channels and grants
 * through the hypervisor service, xenstore through its socket.
 */
import { assert, assertEquals, assertRejects, assertThrows } from "@rxfb/assert";
import { encode } from "fast-png";
import { parseCli, UsageError } from "../cli/main.ts";
import { XRGB8888 } from "../pipeline/pixel_format.ts";
import { readFbPageHeader, readFrameNumbers } from "../sources/device/fb_layout.ts";
import { XENFB_PAGE } from "../sources/device/fbif.ts";
import { PAGE_SIZE } from "../sources/platform.ts";
import { HvClient } from "../sources/sim/hv_client.ts";
import { shmFilesOf } from "../sources/sim/host.ts";
import { openSimHostPlatform } from "../sources/sim/remote.ts";
import { connectXenstore, type XenstoreClient } from "../sources/xen/xenstore_client.ts";
import { msg, RfbClient } from "./client_rfb.ts";
import { exists, skipWithout } from "./packages.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const HOST_MAIN = `${ROOT}sources/sim/host_main.ts`;
const GUEST_MAIN = `${ROOT}sources/sim/guest_main.ts`;
const MOD = `${ROOT}mod.ts`;

/** A child process whose stderr is collected. */
class Proc {
  text = "";
  readonly status: Promise<Deno.CommandStatus>;
  exited = false;
  private readonly reading: Promise<void>;

  constructor(readonly name: string, args: string[]) {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", ...args],
      cwd: ROOT,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.child = child;
    this.reading = (async () => {
      for await (const s of child.stderr.pipeThrough(new TextDecoderStream())) this.text += s;
    })().catch(() => {});
    this.status = child.status.then((s) => {
      this.exited = true;
      return s;
    });
  }
  readonly child: Deno.ChildProcess;

  get pid(): number {
    return this.child.pid;
  }

  async waitText(what: string | RegExp, ms = 20000): Promise<void> {
    const has = () => typeof what === "string" ? this.text.includes(what) : what.test(this.text);
    await until(
      () => {
        if (has()) return true;
        if (this.exited) throw new Error(`${this.name} exited before "${what}":\n${this.text}`);
        return false;
      },
      `${this.name}: "${what}"\n--- its log so far:\n${this.text}`,
      ms,
    );
  }

  /** Sends `signal` and waits for the exit; returns the status. */
  async stop(signal: Deno.Signal = "SIGTERM", ms = 15000): Promise<Deno.CommandStatus> {
    if (!this.exited) {
      try {
        this.child.kill(signal);
      } catch {
        // exited meanwhile
      }
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const status = await Promise.race([
      this.status,
      new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), ms)),
    ]);
    clearTimeout(timer);
    if (!status) {
      this.child.kill("SIGKILL");
      await this.status;
      throw new Error(`${this.name} did not exit on ${signal}:\n${this.text}`);
    }
    await this.reading;
    return status;
  }
}

/** Polls `cond` (sync or async) until it is true; fails naming `what` after `ms`. */
async function until(
  cond: () => boolean | Promise<boolean>,
  what: string,
  ms = 10000,
): Promise<void> {
  const end = performance.now() + ms;
  while (!(await cond())) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A test's processes: a host, and whatever else it starts; everything is stopped at the end. */
class Rig {
  readonly procs: Proc[] = [];
  host!: Proc;
  sock!: string;
  xs?: XenstoreClient;

  constructor(readonly dir: string) {}

  static async start(): Promise<Rig> {
    const rig = new Rig(await Deno.makeTempDir({ prefix: "rxfb-remote-" }));
    rig.sock = `${rig.dir}/xs`;
    rig.host = rig.spawn("host", [HOST_MAIN, rig.sock]);
    await until(() => exists(`${rig.sock}.hv`) || rig.host.exited, "the host's sockets", 20000);
    if (rig.host.exited) throw new Error(`the host exited:\n${rig.host.text}`);
    rig.xs = await connectXenstore(rig.sock);
    return rig;
  }

  spawn(name: string, args: string[]): Proc {
    const p = new Proc(name, args);
    this.procs.push(p);
    return p;
  }

  /** Starts guest `domid` and waits until its frontends are up. */
  async guest(domid: number, args: string[]): Promise<Proc> {
    const g = this.spawn(`guest ${domid}`, [
      GUEST_MAIN,
      "--host",
      this.sock,
      "--domid",
      String(domid),
      ...args,
    ]);
    await g.waitText(`domain ${domid} "`);
    return g;
  }

  backend(args: string[]): Proc {
    return this.spawn("backend", [MOD, "--sim-host", this.sock, ...args]);
  }

  /** The VNC port the backend published for `domid`. */
  async vncPort(domid: number, backend: Proc): Promise<number> {
    let port = 0;
    await until(async () => {
      if (backend.exited) throw new Error(`the backend exited:\n${backend.text}`);
      const v = await this.xs!.read(`/local/domain/${domid}/console/vnc-port`);
      port = Number(v ?? 0);
      return port > 0;
    }, `domain ${domid}'s VNC port\n--- backend log:\n${backend.text}`);
    // The port is published before the framebuffer is mapped (a viewer that early is told 1x1,
    // then the size by DesktopSize): the tests' viewers, which check the size at once, wait.
    await backend.waitText(new RegExp(`dom${domid} vfb/0: mapped `));
    return port;
  }

  /** Files of the host in /dev/shm whose names are domain `domid`'s. */
  filesOf(domid: number): string[] {
    return shmFilesOf(this.host.pid).filter((f) => f.includes(`-dom${domid}-`));
  }

  /** Stops the others (SIGTERM, exit 0 expected), then the host; checks nothing is left. */
  async stop(): Promise<void> {
    this.xs?.close();
    this.xs = undefined;
    for (const p of this.procs.filter((p) => p !== this.host).reverse()) {
      if (p.exited) continue;
      const s = await p.stop();
      assertEquals(s.code, 0, `${p.name} exit status\n${p.text}`);
    }
    const s = await this.host.stop();
    assertEquals(s.code, 0, `host exit status\n${this.host.text}`);
    assertEquals(shmFilesOf(this.host.pid), [], "the host removed every /dev/shm file");
    assert(!exists(this.sock) && !exists(`${this.sock}.hv`), "the host removed its sockets");
  }

  /** Whatever failed: kill what still runs, remove the files and the directory. */
  async cleanup(): Promise<void> {
    this.xs?.close();
    for (const p of this.procs) {
      if (!p.exited) await p.stop("SIGKILL").catch(() => {});
    }
    if (this.host) {
      for (const f of shmFilesOf(this.host.pid)) {
        await Deno.remove(f).catch(() => {});
      }
    }
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** A test picture: pixel (x, y) of picture `seed`. */
function picture(w: number, h: number, seed: number): Uint32Array {
  const px = new Uint32Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const r = (x * 3 + seed * 40) & 255, g = (y * 5 + seed * 17) & 255, b = (x ^ y ^ seed) & 255;
      px[y * w + x] = (r << 16) | (g << 8) | b;
    }
  }
  return px;
}

/** Writes `picture(w, h, seed)` as a PNG in `dir`; returns its path. */
async function writePicture(dir: string, w: number, h: number, seed: number): Promise<string> {
  const px = picture(w, h, seed);
  const data = new Uint8Array(w * h * 3);
  px.forEach((v, i) => data.set([(v >>> 16) & 255, (v >>> 8) & 255, v & 255], i * 3));
  const path = `${dir}/picture-${seed}.png`;
  await Deno.writeFile(path, encode({ width: w, height: h, data, channels: 3, depth: 8 }));
  return path;
}

/** Connects to a VNC port and waits until the client's screen is exactly `expected`. */
async function seeExactly(
  port: number,
  expected: { w: number; h: number; px: Uint32Array; name?: string },
): Promise<RfbClient> {
  const c = await RfbClient.connect(port);
  try {
    const init = await c.handshake();
    assertEquals([init.width, init.height], [expected.w, expected.h]);
    if (expected.name) assertEquals(init.name, expected.name);
    await c.setPixelFormat(XRGB8888);
    await c.setEncodings([16, 0]); // ZRLE, Raw
    await c.request(false);
    await c.update();
    // The guest may draw after the first update: its damage answers an incremental request.
    const end = performance.now() + 10000;
    while (!sameWords(c.fb, expected.px)) {
      await c.request(true);
      await c.update(Math.max(1, end - performance.now())).catch(() => {
        throw new Error("the VNC client never saw the guest's picture");
      });
    }
    return c;
  } catch (e) {
    c.close();
    throw e;
  }
}

function sameWords(a: Uint32Array, b: Uint32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The input events a guest logged. */
async function inputLog(path: string): Promise<Record<string, unknown>[]> {
  const text = await Deno.readTextFile(path).catch(() => "");
  return text.split("\n").filter((l) => l).map((l) => JSON.parse(l));
}

async function refused(port: number): Promise<boolean> {
  try {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    c.close();
    return false;
  } catch {
    return true;
  }
}

Deno.test("sim host: a guest process served by a backend process, pixels exact and input through", async () => {
  const rig = await Rig.start();
  try {
    const [w, h] = [96, 64];
    const png = await writePicture(rig.dir, w, h, 1);
    const log = `${rig.dir}/input.jsonl`;
    await rig.guest(41, ["--guest", `image:${png}`, "--input-log", log]);
    const files = rig.filesOf(41);
    assert(files.length >= 3, `framebuffer, shared page, directory, keyboard page: ${files}`);

    const backend = rig.backend(["--domid", "41", "--vnc", "127.0.0.1:41", "--vnc-unused"]);
    const port = await rig.vncPort(41, backend);
    await backend.waitText("vkbd/0: backend Connected");
    await backend.waitText(`vfb/0: mapped ${w}x${h}x32 framebuffer`);
    const c = await seeExactly(port, { w, h, px: picture(w, h, 1), name: "sim-image-41" });

    // The guest's memory read through the service, as a second dom0 client.
    const p = await openSimHostPlatform(rig.sock);
    try {
      const fe = "/local/domain/41/device/vfb/0";
      const page = p.memory.mapFrames(41, [Number(await p.xenstore.read(`${fe}/page-ref`))], false);
      const hdr = readFbPageHeader(page.bytes);
      assertEquals([hdr.width, hdr.height, hdr.depth, hdr.lineLength], [w, h, 32, w * 4]);
      const pages = Math.ceil(hdr.memLength / PAGE_SIZE);
      const [dirFrame] = readFrameNumbers(page.bytes, XENFB_PAGE.pd64, 1, 8);
      const dir = p.memory.mapFrames(41, [dirFrame], false);
      const frames = readFrameNumbers(dir.bytes, 0, pages, 8);
      const fb = p.memory.mapFrames(41, frames, false);
      const mem = new Uint32Array(fb.bytes.buffer, 0, w * h);
      assert(sameWords(mem, c.fb), "the VNC client's pixels are the guest's memory");
      // Frames in any order map (one reserved range, each page mapped over its part).
      const swapped = p.memory.mapFrames(41, [frames[1], frames[0]], false);
      assertEquals(
        swapped.bytes.subarray(0, PAGE_SIZE),
        fb.bytes.subarray(PAGE_SIZE, 2 * PAGE_SIZE),
      );
      assertEquals(swapped.bytes.subarray(PAGE_SIZE), fb.bytes.subarray(0, PAGE_SIZE));
      assertThrows(() => p.memory.mapFrames(41, [12345], false), Error, "does not map");
      assertThrows(() => p.memory.mapGrant(41, 4242, false), Error, "not valid");
      for (const m of [swapped, fb, dir, page]) m.unmap();
      assertEquals(p.memory.liveMappings, 0);
    } finally {
      await p.close();
    }

    // Input typed through VNC arrives in the guest process.
    await c.write(msg.key(true, 0x61), msg.key(false, 0x61)); // "a": KEY_A, 30
    await c.write(msg.pointer(0, 10, 10), msg.pointer(0, 30, 25));
    await until(async () => (await inputLog(log)).length >= 3, "the guest's input log");
    const events = await inputLog(log);
    assertEquals(events.slice(0, 2), [
      { type: "key", code: 30, down: true },
      { type: "key", code: 30, down: false },
    ]);
    assert(
      events.some((e) => e.type === "motion" || e.type === "position"),
      JSON.stringify(events),
    );
    c.close();

    // A clean stop of each: the backend first, then the guest (its domain goes), then the host.
    assertEquals((await backend.stop()).code, 0, backend.text);
    await rig.stop();
  } finally {
    await rig.cleanup();
  }
});

Deno.test("sim host: --all serves guest processes as they come and detaches them as they go", async () => {
  const rig = await Rig.start();
  try {
    const pics = new Map<number, { w: number; h: number; png: string }>();
    for (const [domid, w, h] of [[51, 64, 48], [52, 80, 40], [53, 48, 32]]) {
      pics.set(domid, { w, h, png: await writePicture(rig.dir, w, h, domid) });
    }
    const backend = rig.backend(["--all", "--vnc-unused"]);
    await backend.waitText("serving every guest with a vfb");
    const guest = (domid: number) => rig.guest(domid, ["--guest", `image:${pics.get(domid)!.png}`]);
    const see = (domid: number, port: number) => {
      const { w, h } = pics.get(domid)!;
      return seeExactly(port, { w, h, px: picture(w, h, domid), name: `sim-image-${domid}` });
    };

    const [g51] = await Promise.all([guest(51), guest(52)]);
    const p51 = await rig.vncPort(51, backend), p52 = await rig.vncPort(52, backend);
    assert(p51 !== p52, "each guest on its own display");
    (await see(51, p51)).close();
    (await see(52, p52)).close();

    // Guest 51 shuts down: its frontends close, its domain goes, rxfb detaches it.
    assertEquals((await g51.stop()).code, 0, g51.text);
    await backend.waitText("dom51: detached");
    await until(() => refused(p51), "51's VNC port to close");
    assertEquals(rig.filesOf(51), [], "51's memory files are gone");
    assertEquals(await rig.xs!.read("/local/domain/51/name"), undefined);

    // A new guest comes; 52 goes on.
    await guest(53);
    (await see(53, await rig.vncPort(53, backend))).close();
    (await see(52, p52)).close();
    assert(!backend.exited, backend.text);
    await rig.stop();
  } finally {
    await rig.cleanup();
  }
});

Deno.test({
  name: "sim host: Debian's xenstore-ls sees the guest processes' keys",
  ignore: skipWithout(
    exists("/usr/bin/xenstore-ls"),
    "xenstore-utils",
    "apt-get install -y xenstore-utils",
  ),
  async fn() {
    const rig = await Rig.start();
    const ls = async (path: string) => {
      const out = await new Deno.Command("xenstore-ls", {
        args: [path],
        env: { XENSTORED_PATH: rig.sock },
        stdout: "piped",
        stderr: "piped",
      }).output();
      return { code: out.code, text: new TextDecoder().decode(out.stdout) };
    };
    try {
      const [, g32] = await Promise.all([
        rig.guest(31, ["--guest", "none", "--size", "64x48"]),
        rig.guest(32, ["--guest", "none", "--size", "32x32", "--no-keyboard"]),
      ]);
      const d31 = await ls("/local/domain/31");
      assertEquals(d31.code, 0);
      for (
        const line of [
          'name = "sim-none-31"',
          'domid = "31"',
          'backend = "/local/domain/0/backend/vfb/31/0"',
          'feature-update = "1"',
          'protocol = "x86_64-abi"',
          'page-gref = "',
          'state = "3"', // Initialised: no backend attached
        ]
      ) {
        assert(d31.text.includes(line), `missing ${line} in:\n${d31.text}`);
      }
      const port = /vfb = ""[\s\S]*?event-channel = "(\d+)"/.exec(d31.text);
      assert(port && Number(port[1]) > 0, d31.text);
      const be32 = await ls("/local/domain/0/backend/vfb/32/0");
      assert(be32.text.includes('frontend-id = "32"'), be32.text);
      assert(!(await ls("/local/domain/32")).text.includes("vkbd"), "32 has no keyboard");

      // A guest process killed outright: its domain and keys go with it.
      await g32.stop("SIGKILL");
      await until(async () => (await ls("/local/domain/32")).code !== 0, "domain 32's keys to go");
      assertEquals((await ls("/local/domain/0/backend/vfb/32")).code, 1);
      assertEquals((await ls("/local/domain/31")).code, 0);
      assertEquals(rig.filesOf(32), []);
      await rig.stop();
    } finally {
      await rig.cleanup();
    }
  },
});

Deno.test("sim host: a guest process killed with SIGKILL is detached; the backend and other guests go on", async () => {
  const rig = await Rig.start();
  try {
    const [w, h] = [72, 40];
    const png = await writePicture(rig.dir, w, h, 72);
    const log = `${rig.dir}/input-72.jsonl`;
    const backend = rig.backend(["--all", "--vnc-unused"]);
    await backend.waitText("serving every guest with a vfb");
    const [g71] = await Promise.all([
      rig.guest(71, ["--guest", "demo", "--size", "160x100"]),
      rig.guest(72, ["--guest", `image:${png}`, "--input-log", log]),
    ]);
    const p71 = await rig.vncPort(71, backend), p72 = await rig.vncPort(72, backend);
    const c71 = await RfbClient.connect(p71);
    assertEquals((await c71.handshake()).width, 160);
    const c72 = await seeExactly(p72, { w, h, px: picture(w, h, 72) });

    const killed = await g71.stop("SIGKILL");
    assertEquals(killed.signal, "SIGKILL");
    await backend.waitText("dom71: detached");
    assert(await c71.closedWithin(5000), "71's viewer is disconnected");
    await until(() => refused(p71), "71's VNC port to close");
    assertEquals(rig.filesOf(71), [], "71's memory files are gone");
    const hv = await HvClient.connect(rig.sock);
    try {
      const domains = hv.request("domain_list").domains as { domid: number }[];
      assertEquals(domains.map((d) => d.domid), [72]);
    } finally {
      hv.close();
    }

    // The backend lives, and 72 still works both ways.
    assert(!backend.exited, backend.text);
    await c72.write(msg.key(true, 0x62), msg.key(false, 0x62)); // "b": KEY_B, 48
    await until(async () => (await inputLog(log)).length >= 2, "72's input log");
    assertEquals((await inputLog(log))[0], { type: "key", code: 48, down: true });
    c72.close();
    (await seeExactly(p72, { w, h, px: picture(w, h, 72) })).close();
    assert(!/error/i.test(backend.text.replace(/dom71[^\n]*/g, "")), backend.text);
    await rig.stop();
  } finally {
    await rig.cleanup();
  }
});

Deno.test("sim host: bad requests are refused without harm", async () => {
  const rig = await Rig.start();
  try {
    await assertRejects(() => HvClient.connect(`${rig.dir}/nothing`), Deno.errors.NotFound);
    const guest = await HvClient.connect(rig.sock);
    const other = await HvClient.connect(rig.sock);
    try {
      guest.request("domain_create", { domid: 44, name: "g44" });
      guest.request("device_add", { domid: 44, kind: "vfb" });
      assertThrows(() => guest.request("domain_create", { domid: 44 }), Error, "exists");
      assertThrows(() => guest.request("device_add", { domid: 44, kind: "vif" }), Error, "kind");
      assertThrows(() => guest.request("frobnicate"), Error, "unknown request");
      guest.request("as_domain", { domid: 44 });
      assertThrows(() => guest.request("domain_destroy", { domid: 44 }), Error, "only dom0");
      assertThrows(
        () => guest.request("map_frames", { domid: 44, frames: [1] }),
        Error,
        "only dom0",
      );
      assertThrows(() => guest.request("mem_alloc", { count: 0 }), Error, "bad frame count");
      const { first } = guest.request("mem_alloc", { count: 2 }) as { first: number };
      const gref = Number(
        guest.request("grant", { frame: first + 1, domid: 0, readonly: true }).gref,
      );
      assertThrows(() => guest.request("grant", { frame: 1, domid: 0 }), Error, "not memory");
      // dom0 maps the grant read-only, not writable; another grantee cannot.
      assertThrows(
        () => other.request("map_grant", { domid: 44, gref, writable: true }),
        Error,
        "read-only",
      );
      const seg = other.request("map_grant", { domid: 44, gref, writable: false }).segments;
      assertEquals((seg as { offset: number }[])[0].offset, PAGE_SIZE);
      const port = Number(guest.request("evtchn_alloc_unbound", { remote: 0 }).port);
      assertThrows(
        () => other.request("evtchn_bind", { domid: 44, port: port + 7 }),
        Error,
        "does not exist",
      );
      const local = Number(other.request("evtchn_bind", { domid: 44, port }).port);
      assertThrows(() => other.request("evtchn_bind", { domid: 44, port }), Error, "already bound");
      // A notify crosses processes both ways.
      const a = guest.channel(port), b = other.channel(local);
      let gotA = 0, gotB = 0;
      a.events$.subscribe(() => gotA++);
      b.events$.subscribe(() => gotB++);
      b.notify();
      await until(() => gotA === 1, "the guest's event");
      a.notify();
      await until(() => gotB === 1, "dom0's event");
      guest.request("mem_free", { first });
      assertThrows(
        () => other.request("map_grant", { domid: 44, gref, writable: false }),
        Error,
        "not valid",
      );
      assertEquals(rig.filesOf(44), []);
      // The creator's session ends: the domain is destroyed; dom0's end stays
      // until dom0 closes it (notifies go nowhere meanwhile), as on Xen.
      guest.close();
      await until(
        async () => (await rig.xs!.read("/local/domain/44/name")) === undefined,
        "44 to go",
      );
      b.notify();
      b.close();
      assertEquals(other.request("domain_list").domains, []);
    } finally {
      guest.close();
      other.close();
    }
    await rig.stop();
  } finally {
    await rig.cleanup();
  }
});

Deno.test("sim host: --sim-host parses; without a host it says so in one line and exits 1", async () => {
  assertEquals(parseCli(["--all", "--sim-host", "/tmp/xs"]).simHost, "/tmp/xs");
  assertEquals(parseCli(["--domid", "3", "--sim-host", "/tmp/xs"]).domid, 3);
  assertThrows(() => parseCli(["--sim", "--domid", "3", "--sim-host", "/tmp/xs"]), UsageError);
  assertThrows(
    () => parseCli(["--domid", "3", "--sim-host", "/tmp/xs", "--xenstore-socket", "/tmp/b"]),
    UsageError,
  );
  assertThrows(() => parseCli(["--sim-host", "/tmp/xs"]), UsageError, "--domid N is required");
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MOD, "--domid", "3", "--sim-host", "/nonexistent/xs"],
    cwd: ROOT,
    stdout: "null",
    stderr: "piped",
  }).output();
  assertEquals(out.code, 1);
  const lines = new TextDecoder().decode(out.stderr).trim().split("\n");
  assertEquals(lines.length, 1, lines.join("\n"));
  assert(lines[0].includes("cannot reach the simulated host") && lines[0].includes("host_main.ts"));
});
