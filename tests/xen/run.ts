/**
 * rxfb against a REAL Linux PV guest on real Xen: `deno task test:xen`.
 *
 * Boots Xen 4.17 + a Debian dom0 under QEMU (TCG) with rxfb as libxl's device
 * model (`device_model_override`, tests/xen/dom0/rxfb-dm), creates a PV guest
 * (Debian kernel + busybox initramfs, tests/xen/guest/) whose xen-fbfront and
 * xen-kbdfront connect to rxfb, and from the host, through QEMU's forwarded
 * ports:
 *  - takes the guest's console with vncsnapshot and compares it with
 *    tests/xen/reference/console.png;
 *  - types into TigerVNC's vncviewer (under Xvfb, with xdotool) and checks the
 *    guest's input devices got those keys and the pointer moves (the guest logs
 *    them to its serial console), and that the typed line shows on its screen;
 *  - reboots the guest from its keyboard and checks rxfb serves the new domain
 *    and the old device model exits; then `xl destroy` and the same;
 *  - then the same guest with a device model that does nothing, served by
 *    `rxfb --all` (daemon mode): served, typed into, rebooted (detach from the
 *    old domain, attach to the new), destroyed (detach), SIGTERM (stopped).
 * dom0 is driven through a command server (tests/xen/dom0/rxfb-cmd.sh).
 *
 * Environment: CI=true makes a missing tool a failure (else the test skips);
 * RXFB_XENLAB=DIR (default /var/tmp/rxfb-xenlab/rxfb) holds the cached dom0;
 * RXFB_XEN_DM=standin uses tests/xen/dom0/dm_standin.ts instead of rxfb's CLI;
 * RXFB_XEN_RECORD=1 writes the snapshots as new reference pictures.
 * Ends with one line "xen: N passed, N failed".
 */
import { decode as decodePng, encode as encodePng } from "fast-png";
import jpeg from "jpeg-js";
import { type Picture, run, sleep, TigerViewer, Xvfb } from "../x11_viewer.ts";

const HERE = new URL(".", import.meta.url).pathname;
const LAB = Deno.env.get("RXFB_XENLAB") ?? "/var/tmp/rxfb-xenlab/rxfb";
const IN_CI = Deno.env.get("CI") === "true";
const RECORD = Deno.env.get("RXFB_XEN_RECORD") === "1";
const DM_KIND = Deno.env.get("RXFB_XEN_DM") === "standin" ? "standin" : "cli";
const REFERENCE = `${HERE}reference/console.png`;
const REFERENCE_TYPED = `${HERE}reference/typed.png`;
const OUT = `${LAB}/out`;
const GUEST = "rxfbguest";
/** Everything QEMU may take, boot to power-off. */
const QEMU_LIMIT_S = 900;

/** Debian packages this test needs on the host. */
const HOST_PACKAGES = [
  "qemu-system-x86", // Xen + dom0 under TCG
  "debootstrap", // the dom0's root file system
  "busybox-static", // the guest's initramfs
  "cpio",
  "e2fsprogs", // mkfs.ext4 -d: the dom0 image
  "gcc", // the guest's evlog, static
  "libc6-dev",
  "file",
  "vncsnapshot", // the VNC clients
  "tigervnc-viewer",
  "xvfb",
  "xdotool",
];

const t0 = performance.now();
const elapsed = () => `${((performance.now() - t0) / 1000).toFixed(0)}s`;
const say = (s: string) => console.log(`xen[${elapsed()}]: ${s}`);

// ---------------------------------------------------------------------------
// results

const results: { name: string; ok: boolean; detail: string }[] = [];
function check(name: string, ok: boolean, detail = ""): boolean {
  results.push({ name, ok, detail });
  console.log(`xen[${elapsed()}]: ${ok ? "PASS" : "FAIL"} ${name}${detail ? `: ${detail}` : ""}`);
  return ok;
}
class Fatal extends Error {}
function must(name: string, ok: boolean, detail = ""): void {
  if (!check(name, ok, detail)) throw new Fatal(name);
}

function finish(extra = ""): never {
  const passed = results.filter((r) => r.ok).length;
  const failed = results.length - passed;
  const secs = ((performance.now() - t0) / 1000).toFixed(0);
  console.log(`xen: real Xen test took ${secs}s${extra ? `; ${extra}` : ""}`);
  console.log(`xen: ${passed} passed, ${failed} failed`);
  Deno.exit(failed === 0 && passed > 0 ? 0 : 1);
}

// ---------------------------------------------------------------------------
// host tools

async function installed(pkg: string): Promise<boolean> {
  const out = await new Deno.Command("dpkg-query", {
    args: ["-W", "-f=${Status}", pkg],
    stdout: "piped",
    stderr: "null",
  }).output().catch(() => undefined);
  return !!out && new TextDecoder().decode(out.stdout).includes("install ok installed");
}

async function missingPackages(): Promise<string[]> {
  const out: string[] = [];
  for (const p of HOST_PACKAGES) if (!(await installed(p))) out.push(p);
  return out;
}

async function ensureHostTools(): Promise<string[]> {
  let missing = await missingPackages();
  if (missing.length > 0 && Deno.uid?.() === 0) {
    say(`installing ${missing.join(" ")}`);
    const env = { DEBIAN_FRONTEND: "noninteractive" };
    const apt = (args: string[]) =>
      new Deno.Command("apt-get", { args, env, stdout: "null", stderr: "inherit" }).output();
    let r = await apt(["install", "-y", "--no-install-recommends", ...missing]);
    if (!r.success) {
      await apt(["update"]);
      r = await apt(["install", "-y", "--no-install-recommends", ...missing]);
    }
    missing = await missingPackages();
  }
  return missing;
}

/** Runs a command with its output going to ours; its exit code. */
async function streamed(cmd: string, args: string[], env: Record<string, string> = {}) {
  const p = new Deno.Command(cmd, { args, env, stdout: "inherit", stderr: "inherit" }).spawn();
  return (await p.status).code;
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

// ---------------------------------------------------------------------------
// QEMU with Xen + dom0

/** The command server did not take the request (nothing was run): it may be tried again. */
class NoAnswer extends Error {}

class Lab {
  private log = "";
  private logFile: Deno.FsFile;
  readonly qemu: Deno.ChildProcess;
  exited: number | undefined;
  readonly done: Promise<void>;

  constructor(readonly vncPort: number, readonly cmdPort: number) {
    const xen = "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all " +
      "dom0_mem=1024M,max:1024M dom0_max_vcpus=1 sched=credit2";
    const dom0 = `root=/dev/vda rw console=hvc0 earlyprintk=xen init=/xenlab-init ` +
      `rxfb.limit=${QEMU_LIMIT_S}`;
    const args = [
      "-accel",
      "tcg,thread=multi",
      // plain "-cpu max" kills dom0 at once (#PF in create_bounce_frame): see shared/realxen
      "-cpu",
      "max,-smap,-smep",
      "-M",
      "pc",
      "-smp",
      "2",
      "-m",
      "3072",
      "-nographic",
      "-no-reboot",
      "-kernel",
      `${LAB}/boot/xen`,
      "-append",
      xen,
      "-initrd",
      `${LAB}/boot/dom0-vmlinuz ${dom0},${LAB}/boot/dom0-initrd.img`,
      "-drive",
      `file=${LAB}/dom0.img,if=virtio,format=raw`,
      "-netdev",
      `user,id=n0,hostfwd=tcp:127.0.0.1:${vncPort}-10.0.2.15:5900,` +
      `hostfwd=tcp:127.0.0.1:${cmdPort}-10.0.2.15:7000`,
      "-device",
      "virtio-net-pci,netdev=n0",
    ];
    this.logFile = Deno.openSync(`${OUT}/qemu.log`, { write: true, create: true, truncate: true });
    this.qemu = new Deno.Command("qemu-system-x86_64", {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const pump = async (s: ReadableStream<Uint8Array>) => {
      const dec = new TextDecoder();
      for await (const chunk of s) {
        const text = dec.decode(chunk, { stream: true }).replaceAll("\r", "");
        this.log += text;
        const stamp = `[${((performance.now() - t0) / 1000).toFixed(1)}] `;
        this.logFile.writeSync(new TextEncoder().encode(text.replaceAll("\n", `\n${stamp}`)));
      }
    };
    this.done = Promise.all([
      pump(this.qemu.stdout),
      pump(this.qemu.stderr),
      this.qemu.status.then((s) => {
        this.exited = s.code;
      }),
    ]).then(() => this.logFile.close());
  }

  /** Waits until the console shows a line matching `re`; its match. */
  async waitConsole(re: RegExp, ms: number, what: string): Promise<RegExpMatchArray> {
    const end = performance.now() + ms;
    while (performance.now() < end) {
      const m = this.log.match(re);
      if (m) return m;
      if (this.exited !== undefined) throw new Error(`QEMU exited (${this.exited}) before ${what}`);
      await sleep(250);
    }
    throw new Error(`no "${what}" within ${ms / 1000} s`);
  }

  consoleText(): string {
    return this.log;
  }

  /**
   * Runs a bash script in dom0 through the command server; output and status.
   * A connection QEMU accepted but dom0 refused (nothing listening yet) is tried again.
   */
  async sh(script: string, ms = 120_000): Promise<{ rc: number; out: string }> {
    for (let attempt = 1;; attempt++) {
      try {
        return await this.shOnce(script, ms);
      } catch (e) {
        const retry = e instanceof NoAnswer || e instanceof Deno.errors.ConnectionReset ||
          e instanceof Deno.errors.BrokenPipe;
        if (!retry || attempt >= 5) throw e;
        await sleep(1000);
      }
    }
  }

  private async shOnce(script: string, ms: number): Promise<{ rc: number; out: string }> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: this.cmdPort });
    const b64 = btoa(String.fromCharCode(...new TextEncoder().encode(script)));
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await conn.write(new TextEncoder().encode(b64 + "\n"));
      const reading = (async () => {
        let text = "";
        const dec = new TextDecoder();
        const buf = new Uint8Array(65536);
        while (true) {
          const n = await conn.read(buf);
          if (n === null) break;
          text += dec.decode(buf.subarray(0, n), { stream: true });
        }
        return text;
      })();
      const timeout = new Promise<never>((_, rej) =>
        timer = setTimeout(() => rej(new Error(`dom0 command timed out: ${script}`)), ms)
      );
      const text = await Promise.race([reading, timeout]).catch((e) => {
        if (e instanceof Deno.errors.ConnectionReset) throw new NoAnswer(String(e));
        throw e;
      });
      if (text === "") throw new NoAnswer("dom0 closed the connection at once");
      const m = text.match(/\nRXFB-RC=(\d+)\n?$/);
      if (!m) throw new Error(`dom0 command gave no status (connection lost?): ${script}`);
      return { rc: Number(m[1]), out: text.slice(0, m.index) };
    } finally {
      clearTimeout(timer);
      try {
        conn.close();
      } catch {
        // closed
      }
    }
  }

  /** Like sh(), but throws unless it exits 0. */
  async ok(script: string, ms?: number): Promise<string> {
    const r = await this.sh(script, ms);
    if (r.rc !== 0) throw new Error(`dom0: "${script}" exited ${r.rc}:\n${r.out}`);
    return r.out;
  }

  /** Polls a dom0 script until `good(output)`; the last output. */
  async until(script: string, good: (out: string) => boolean, ms: number): Promise<string> {
    const end = performance.now() + ms;
    let out = "";
    while (performance.now() < end) {
      out = (await this.sh(script).catch((e) => ({ rc: -1, out: String(e) }))).out;
      if (good(out)) return out;
      await sleep(1000);
    }
    return out;
  }

  async stop(): Promise<void> {
    if (this.exited === undefined) {
      await this.sh("touch /run/rxfb-lab.done", 10_000).catch(() => {});
      const end = performance.now() + 60_000;
      while (this.exited === undefined && performance.now() < end) await sleep(500);
      if (this.exited === undefined) {
        try {
          this.qemu.kill("SIGKILL");
        } catch {
          // gone
        }
      }
    }
    await this.done;
  }
}

// ---------------------------------------------------------------------------
// pictures

async function snapshot(port: number, path: string): Promise<Picture> {
  const r = await run(
    "vncsnapshot",
    ["-quiet", "-nocursor", "-nojpeg", "-quality", "100", `127.0.0.1::${port}`, path],
    {},
    60_000,
  );
  if (r.code !== 0) throw new Error(`vncsnapshot exited ${r.code}: ${r.stderr}`);
  const img = jpeg.decode(await Deno.readFile(path), {
    useTArray: true,
    formatAsRGBA: false,
    colorTransform: false, // vncsnapshot writes RGB JPEGs (no YCbCr), without a marker saying so
  });
  return { width: img.width, height: img.height, rgb: new Uint8Array(img.data) };
}

async function savePng(path: string, p: Picture): Promise<void> {
  await Deno.writeFile(
    path,
    encodePng({ width: p.width, height: p.height, data: p.rgb, channels: 3, depth: 8 }),
  );
}

async function loadPng(path: string): Promise<Picture> {
  const img = decodePng(await Deno.readFile(path));
  const ch = img.channels;
  const rgb = new Uint8Array(img.width * img.height * 3);
  for (let i = 0; i < img.width * img.height; i++) {
    for (let c = 0; c < 3; c++) rgb[i * 3 + c] = Number(img.data[i * ch + c]);
  }
  return { width: img.width, height: img.height, rgb };
}

/**
 * How `got` differs from `want`: the fraction of pixels differing by more than
 * `tolerance` in a channel (JPEG noise stays below), and the most such pixels
 * in one text row (16 pixel lines), which a changed word or line shows in.
 */
function differing(got: Picture, want: Picture, tolerance = 64): { all: number; row: number } {
  if (got.width !== want.width || got.height !== want.height) return { all: 1, row: Infinity };
  let n = 0, row = 0;
  const rows = new Array<number>(Math.ceil(want.height / 16)).fill(0);
  for (let i = 0; i < want.width * want.height; i++) {
    const o = i * 3;
    if (
      Math.abs(got.rgb[o] - want.rgb[o]) > tolerance ||
      Math.abs(got.rgb[o + 1] - want.rgb[o + 1]) > tolerance ||
      Math.abs(got.rgb[o + 2] - want.rgb[o + 2]) > tolerance
    ) {
      n++;
      const r = Math.floor(i / want.width / 16);
      rows[r]++;
      row = Math.max(row, rows[r]);
    }
  }
  return { all: n / (want.width * want.height), row };
}

/** A picture that matches: at most 8 pixels off in any text row. */
const MAX_ROW_DIFF = 8;

/** Fraction of bright (text) pixels in a rectangle. */
function brightIn(p: Picture, x: number, y: number, w: number, h: number): number {
  let n = 0;
  for (let yy = y; yy < y + h; yy++) {
    for (let xx = x; xx < x + w; xx++) {
      const o = (yy * p.width + xx) * 3;
      if (p.rgb[o] + p.rgb[o + 1] + p.rgb[o + 2] > 300) n++;
    }
  }
  return n / (w * h);
}

/** References written in this run (RXFB_XEN_RECORD=1); compared against afterwards. */
const recorded = new Set<string>();

/**
 * Takes snapshots until one matches `reference` within 1% of pixels (or
 * `ms` passes); with RXFB_XEN_RECORD=1 writes the first non-blank one as the
 * reference. Says whether (and how far) the last one matched.
 */
async function matchScreen(port: number, reference: string, what: string, ms: number) {
  const end = performance.now() + ms;
  let diff = { all: 1, row: Infinity }, n = 0, last: Picture | undefined;
  const record = RECORD && !recorded.has(reference);
  const want = record ? undefined : await loadPng(reference);
  while (performance.now() < end) {
    const jpg = `${OUT}/${what}-${++n}.jpg`;
    try {
      last = await snapshot(port, jpg);
    } catch (e) {
      say(`snapshot ${what}: ${e instanceof Error ? e.message : e}`);
      await sleep(2000);
      continue;
    }
    await savePng(`${OUT}/${what}.png`, last);
    if (record) {
      if (brightIn(last, 0, 0, last.width, last.height) > 0.02) {
        await sleep(5000); // let the guest finish drawing
        last = await snapshot(port, jpg);
        await Deno.mkdir(`${HERE}reference`, { recursive: true });
        await savePng(reference, last);
        recorded.add(reference);
        say(`recorded ${reference}`);
        return { ok: true, detail: "recorded", shot: last };
      }
    } else {
      diff = differing(last, want!);
      if (diff.row <= MAX_ROW_DIFF) break;
    }
    await sleep(2000);
  }
  return {
    ok: diff.row <= MAX_ROW_DIFF,
    detail:
      `${(diff.all * 100).toFixed(2)}% of pixels differ, at most ${diff.row} in a text row; ` +
      `snapshot ${OUT}/${what}.png`,
    shot: last,
  };
}

// ---------------------------------------------------------------------------
// the scenario

const BTN_LEFT = 272;
const KEY = { r: 19, x: 45, f: 33, b: 48, enter: 28 };
const TYPED = [KEY.r, KEY.x, KEY.f, KEY.b, KEY.enter].flatMap((k) => [`${k}:1`, `${k}:0`]);

/** A guest of the scenario: its xl config's name, and where dom0 keeps its serial log. */
interface GuestRef {
  name: string;
  cfg: string;
}
const DM_GUEST: GuestRef = { name: GUEST, cfg: "/root/domu-rxfb.cfg" };
const DAEMON_GUEST: GuestRef = { name: "rxfbdaemon", cfg: "/root/domu-daemon.cfg" };

const consoleLog = (g: GuestRef) => `/var/log/xen/console/guest-${g.name}.log`;

/** "code:value" of the KEY events the guest logged after its `boot`-th boot line (1 = first). */
function keyEvents(log: string, boot: number): string[] {
  const parts = log.split("RXFB-GUEST: up");
  return (parts[boot] ?? "").split("\n")
    .map((l) => l.match(/RXFB-EV \d+ KEY (\d+) (\d+)/))
    .filter((m): m is RegExpMatchArray => !!m)
    .map((m) => `${m[1]}:${m[2]}`);
}

async function domid(lab: Lab, g: GuestRef): Promise<number | undefined> {
  const r = await lab.sh(`xl domid ${g.name}`);
  return r.rc === 0 ? Number(r.out.trim()) : undefined;
}

/** The device model's pid as libxl recorded it. */
async function dmPid(lab: Lab, d: number): Promise<number | undefined> {
  const r = await lab.sh(`xenstore-read /local/domain/${d}/image/device-model-pid`);
  return r.rc === 0 ? Number(r.out.trim()) : undefined;
}

async function alive(lab: Lab, pid: number): Promise<boolean> {
  return (await lab.sh(`kill -0 ${pid}`)).rc === 0;
}

/** Waits up to `ms` for a dom0 process to end; true when it has. */
async function exits(lab: Lab, pid: number, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (await alive(lab, pid)) {
    if (performance.now() > end) return false;
    await sleep(1000);
  }
  return true;
}

/** Waits for vfb and vkbd of domain d to be Connected (4) on both ends; the four states. */
async function connected(lab: Lab, d: number, ms: number): Promise<string> {
  const keys = [
    `/local/domain/${d}/device/vfb/0/state`,
    `/local/domain/0/backend/vfb/${d}/0/state`,
    `/local/domain/${d}/device/vkbd/0/state`,
    `/local/domain/0/backend/vkbd/${d}/0/state`,
  ];
  return (await lab.until(
    keys.map((k) => `echo "$(xenstore-read ${k} 2>/dev/null || echo -)"`).join("; "),
    (out) => out.trim().split(/\s+/).join(" ") === "4 4 4 4",
    ms,
  )).trim().split(/\s+/).join(" ");
}

/** xl create; the new domain id. */
async function create(lab: Lab, g: GuestRef, what: string): Promise<number> {
  const t = performance.now();
  const r = await lab.sh(`xl create ${g.cfg}`, 180_000);
  must(
    `${what}: xl create ${g.cfg}`,
    r.rc === 0,
    `${((performance.now() - t) / 1000).toFixed(1)}s ${
      r.out.trim().split("\n").slice(-3).join(" | ")
    }`,
  );
  const d = await domid(lab, g);
  must(`${what}: the guest has a domain id`, d !== undefined && d > 0, `domid ${d}`);
  return d!;
}

/** Checks the guest connected, drew its console, and VNC shows it. */
async function served(lab: Lab, g: GuestRef, d: number, boot: number, what: string) {
  const st = await connected(lab, d, 180_000);
  must(`${what}: vfb and vkbd connected (frontend and backend state 4)`, st === "4 4 4 4", st);
  const abs = await lab.sh(`xenstore-read /local/domain/${d}/device/vkbd/0/request-abs-pointer`);
  check(`${what}: xen-kbdfront asked for the absolute pointer`, abs.out.trim() === "1", abs.out);
  const port = await lab.sh(`xenstore-read /local/domain/${d}/console/vnc-port`);
  check(`${what}: vnc-port published`, port.out.trim() === "5900", port.out.trim());
  const drawn = await lab.until(
    `grep -c 'RXFB-GUEST: screen drawn' ${consoleLog(g)}`,
    (o) => Number(o.trim()) >= boot,
    180_000,
  );
  must(
    `${what}: the guest drew its console`,
    Number(drawn.trim()) >= boot,
    (await lab.sh(`grep RXFB-GUEST ${consoleLog(g)}`)).out.trim().split("\n").join(" | "),
  );
  const shot = await matchScreen(lab.vncPort, REFERENCE, `${what}-console`, 90_000);
  check(
    `${what}: vncsnapshot shows the guest's console (reference/console.png)`,
    shot.ok,
    shot.detail,
  );
  return shot;
}

/** Starts TigerVNC's viewer on an Xvfb display and runs `fn` with a typing function. */
async function withViewer(
  lab: Lab,
  fn: (x: Xvfb, win: string, type: (text: string) => Promise<void>) => Promise<void>,
) {
  const x = await Xvfb.start();
  const home = await Deno.makeTempDir({ prefix: "rxfb-xen-tiger-" });
  try {
    const v = TigerViewer.start(x, lab.vncPort, [], home);
    try {
      const win = await v.window("TigerVNC$", 30_000);
      await x.xdotool("windowfocus", "--sync", win);
      await sleep(1000);
      const type = async (text: string) => {
        await x.xdotool("type", "--delay", "150", "--window", win, text);
        await x.xdotool("key", "--delay", "150", "--window", win, "Return");
      };
      await fn(x, win, type);
    } finally {
      await v.stop();
    }
  } finally {
    await x.stop();
    await Deno.remove(home, { recursive: true });
  }
}

/** Waits until the guest logged the typed keys and line of boot `boot`; checks them. */
async function typedArrived(lab: Lab, g: GuestRef, boot: number, what: string): Promise<string> {
  const seen = await lab.until(
    `cat ${consoleLog(g)}`,
    (log) => keyEvents(log, boot).join(" ").includes(TYPED.join(" ")),
    60_000,
  );
  const keys = keyEvents(seen, boot);
  check(
    `${what}: typed keys reached the guest's evdev (r x f b Enter, down and up)`,
    keys.join(" ").includes(TYPED.join(" ")),
    keys.join(" "),
  );
  check(
    `${what}: the guest's tty read the typed line`,
    /RXFB-LINE rxfb/.test(seen.split("RXFB-GUEST: up")[boot] ?? ""),
    seen.match(/RXFB-LINE.*/g)?.join(" | ") ?? "no line",
  );
  return seen;
}

/** Reboots the guest from its keyboard; waits for the new domain; the new domid. */
async function rebootFromKeyboard(lab: Lab, g: GuestRef, d: number, what: string) {
  await withViewer(lab, async (_x, _win, type) => await type("reboot"));
  const out = await lab.until(
    `xl domid ${g.name}`,
    (o) => /^\d+\s*$/.test(o) && Number(o) !== d,
    120_000,
  );
  must(
    `${what}: the guest rebooted into a new domain`,
    /^\d+\s*$/.test(out) && Number(out) !== d,
    `domid ${d} -> ${out.trim()}`,
  );
  return Number(out.trim());
}

/** Phase 1: rxfb as libxl's device model (device_model_override). */
async function deviceModelPhase(lab: Lab) {
  const g = DM_GUEST, what = "dm";
  const dmLog = (d: number) => lab.sh(`cat /var/log/xen/rxfb-dm-${d}.log`).then((r) => r.out);
  const d1 = await create(lab, g, what);
  const argv = (await dmLog(d1)).match(/argv: (.*)/)?.[1] ?? "";
  check(`${what}: libxl passed qemu-dm's argv`, /-d \d+ .*-M xenpv/.test(argv), argv);
  const state = await lab.sh(`xenstore-read /local/domain/0/device-model/${d1}/state`);
  check(`${what}: device-model state is running`, state.out.trim() === "running", state.out);
  const pid1 = await dmPid(lab, d1);
  check(`${what}: libxl recorded the device model's pid`, pid1 !== undefined, `pid ${pid1}`);

  const shot = await served(lab, g, d1, 1, what);
  if (shot.shot) {
    const bright = brightIn(shot.shot, 32, 16, 568, 112);
    check(`${what}: the banner is bright text`, bright > 0.08, `${(bright * 100).toFixed(1)}%`);
  }

  // typing and pointing with TigerVNC's viewer
  await withViewer(lab, async (x, win, type) => {
    // Without a window manager FLTK reports no motion until the window was clicked once.
    await x.xdotool("mousemove", "--window", win, "400", "300");
    await x.xdotool("click", "1");
    await sleep(1000);
    await x.xdotool("mousemove", "--window", win, "200", "150");
    await sleep(500);
    await type("rxfb");
  });
  const seen = await typedArrived(lab, g, 1, what);
  const keys = keyEvents(seen, 1).join(" ");
  check(
    `${what}: a click reached the guest (BTN_LEFT down and up)`,
    keys.includes(`${BTN_LEFT}:1 ${BTN_LEFT}:0`),
    keys,
  );
  const absEv = [...seen.matchAll(/RXFB-EV \d+ ABS (\d+) (\d+)/g)].map((m) => [+m[1], +m[2]]);
  const lastAbs = (axis: number) => absEv.filter(([a]) => a === axis).at(-1)?.[1];
  check(
    `${what}: the pointer reached the guest at its framebuffer position (absolute 200,150)`,
    lastAbs(0) === 200 && lastAbs(1) === 150,
    `last ABS_X ${lastAbs(0)} ABS_Y ${lastAbs(1)} of ${absEv.length} ABS events`,
  );
  const typed = await matchScreen(lab.vncPort, REFERENCE_TYPED, `${what}-typed`, 60_000);
  check(
    `${what}: the typed line shows on the guest's screen (reference/typed.png)`,
    typed.ok,
    typed.detail,
  );

  // reboot from inside the guest: libxl destroys the domain (and kills its device model),
  // then creates a new domain with a new device model
  const d2 = await rebootFromKeyboard(lab, g, d1, what);
  if (pid1 !== undefined) {
    check(
      `${what}: the old device model exited after the reboot`,
      await exits(lab, pid1, 30_000),
      `pid ${pid1}`,
    );
  }
  const log1 = await dmLog(d1);
  check(
    `${what}: the old device model stopped cleanly (logged "stopped")`,
    /\bstopped\b/.test(log1),
    log1.trim().split("\n").slice(-3).join(" | "),
  );
  await served(lab, g, d2, 2, `${what}-rebooted`);

  // xl destroy
  const pid2 = await dmPid(lab, d2);
  const destroy = await lab.sh(`xl destroy ${g.name}`, 60_000);
  check(`${what}: xl destroy`, destroy.rc === 0, destroy.out.trim());
  if (pid2 !== undefined) {
    check(
      `${what}: the device model exited after xl destroy`,
      await exits(lab, pid2, 30_000),
      `pid ${pid2}`,
    );
  }
  const log2 = await dmLog(d2);
  check(
    `${what}: the device model stopped cleanly after xl destroy (logged "stopped")`,
    /\bstopped\b/.test(log2),
    log2.trim().split("\n").slice(-3).join(" | "),
  );
  const bad = (log1 + log2).split("\n").filter((l) => /error|uncaught|panic|exception/i.test(l));
  check(`${what}: rxfb logged no errors`, bad.length === 0, bad.slice(0, 5).join(" | "));
  const left = await lab.sh(
    `xenstore-ls -f /local/domain/0/backend 2>/dev/null | grep -E '/(vfb|vkbd)/' | head -5`,
  );
  check(`${what}: no vfb/vkbd backend entries left in xenstore`, left.out.trim() === "", left.out);
}

/** Phase 2: `rxfb --all` serving guests whose device model is a stand-in that does nothing. */
async function daemonPhase(lab: Lab) {
  const g = DAEMON_GUEST, what = "all";
  const log = () => lab.sh("cat /var/log/xen/rxfb-all.log").then((r) => r.out);
  const start = await lab.sh(
    "setsid /usr/local/bin/rxfb --all > /var/log/xen/rxfb-all.log 2>&1 < /dev/null & echo $!",
  );
  const pid = Number(start.out.trim());
  const up = await lab.until(
    "cat /var/log/xen/rxfb-all.log",
    (o) => /serving every guest/.test(o),
    120_000,
  );
  must(
    `${what}: rxfb --all started`,
    /serving every guest/.test(up),
    up.trim().split("\n").slice(-3).join(" | "),
  );
  const d1 = await create(lab, g, what);
  await served(lab, g, d1, 1, what);
  await withViewer(lab, async (_x, _win, type) => await type("rxfb"));
  await typedArrived(lab, g, 1, what);

  const d2 = await rebootFromKeyboard(lab, g, d1, what);
  await served(lab, g, d2, 2, `${what}-rebooted`);
  const afterReboot = await log();
  check(
    `${what}: detached from the old domain and attached to the new one`,
    new RegExp(`dom${d1}: detached`).test(afterReboot) &&
      new RegExp(`dom${d2}: attached`).test(afterReboot),
    afterReboot.split("\n").filter((l) => /attached|detached/.test(l)).join(" | "),
  );
  const destroy = await lab.sh(`xl destroy ${g.name}`, 60_000);
  check(`${what}: xl destroy`, destroy.rc === 0, destroy.out.trim());
  const detached = await lab.until(
    "cat /var/log/xen/rxfb-all.log",
    (o) => new RegExp(`dom${d2}: detached`).test(o),
    30_000,
  );
  check(
    `${what}: detached from the destroyed domain`,
    new RegExp(`dom${d2}: detached`).test(detached),
    "",
  );
  check(`${what}: the daemon keeps running`, await alive(lab, pid), `pid ${pid}`);
  await lab.sh(`kill -TERM ${pid}`);
  check(`${what}: the daemon exits on SIGTERM`, await exits(lab, pid, 30_000), `pid ${pid}`);
  const final = await log();
  check(
    `${what}: the daemon stopped cleanly (logged "stopped")`,
    /\bstopped\b/.test(final),
    final.trim().split("\n").slice(-2).join(" | "),
  );
  const bad = final.split("\n").filter((l) => /error|uncaught|panic|exception/i.test(l));
  check(`${what}: rxfb logged no errors`, bad.length === 0, bad.slice(0, 5).join(" | "));
}

async function scenario(lab: Lab) {
  await lab.waitConsole(/RXFB-LAB\[[\d.]+\] READY/, 400_000, "dom0 READY");
  say("dom0 ready");
  const warm = await lab.sh("cat /var/log/xen/rxfb-warmup.log");
  check("rxfb runs in dom0 (rxfb --help)", /Usage|usage/.test(warm.out), warm.out.slice(0, 200));
  const libs = await lab.sh(
    "ls /usr/lib/x86_64-linux-gnu/ | grep -E 'libxen(evtchn|foreignmemory|gnttab)\\.so\\.1$'",
  );
  check(
    "dom0 has libxenevtchn1, libxenforeignmemory1, libxengnttab1",
    libs.out.trim().split("\n").length === 3,
    libs.out.trim().replaceAll("\n", " "),
  );
  try {
    await deviceModelPhase(lab);
  } catch (e) {
    if (!(e instanceof Fatal)) {
      check("dm: scenario", false, e instanceof Error ? e.message : String(e));
    }
    await lab.sh(`xl destroy ${DM_GUEST.name}`).catch(() => {});
  }
  if (DM_KIND === "cli") await daemonPhase(lab);
}

// ---------------------------------------------------------------------------

if (import.meta.main) {
  const root = Deno.uid?.() === 0;
  const missing = await ensureHostTools();
  if (missing.length > 0 || !root) {
    const why = !root
      ? "it must run as root (debootstrap, and apt-get for its tools)"
      : `missing host tools: apt-get install -y ${missing.join(" ")}`;
    if (!IN_CI) {
      console.log(`xen: skipped: ${why}`);
      console.log("xen: 0 passed, 0 failed, 1 skipped");
      Deno.exit(0);
    }
    check("host tools installed, running as root", false, why);
    finish();
  }
  await Deno.mkdir(OUT, { recursive: true });
  for await (const e of Deno.readDir(OUT)) await Deno.remove(`${OUT}/${e.name}`);
  const tb = performance.now();
  const built = await streamed("bash", [`${HERE}build.sh`, DM_KIND], {
    LAB,
    DENO: Deno.execPath(),
  });
  const buildSecs = ((performance.now() - tb) / 1000).toFixed(0);
  must("build the dom0 image", built === 0, `${buildSecs}s`);
  const lab = new Lab(freePort(), freePort());
  say(`QEMU: Xen + dom0 (TCG), VNC on 127.0.0.1:${lab.vncPort}, log ${OUT}/qemu.log`);
  const tq = performance.now();
  // QEMU never outlives this process: on a signal, or past the time limit, it is killed.
  const killQemu = (why: string) => {
    console.log(`xen: ${why}: stopping QEMU`);
    try {
      lab.qemu.kill("SIGKILL");
    } catch {
      // gone
    }
  };
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(sig, () => {
      killQemu(sig);
      Deno.exit(130);
    });
  }
  const watchdog = setTimeout(() => killQemu("time limit"), (QEMU_LIMIT_S + 120) * 1000);
  try {
    await scenario(lab);
  } catch (e) {
    if (!(e instanceof Fatal)) check("scenario", false, e instanceof Error ? e.message : String(e));
    const state = await lab.sh(
      "tail -n 25 /var/log/xen/rxfb-*.log /var/log/xen/console/guest-*.log; xl list",
      20_000,
    ).catch(() => undefined);
    if (state) console.log(`xen: dom0 state:\n${state.out}`);
  } finally {
    // every log of dom0's /var/log/xen (rxfb's, libxl's, the guests' consoles), for a look
    const logs = await lab.sh(
      'cd /var/log/xen && for f in $(find . -type f | sort); do echo "=== $f"; cat $f; done',
      20_000,
    ).catch(() => undefined);
    if (logs) await Deno.writeTextFile(`${OUT}/dom0-logs.txt`, logs.out);
    await lab.stop();
    clearTimeout(watchdog);
  }
  const qemuSecs = ((performance.now() - tq) / 1000).toFixed(0);
  finish(`build ${buildSecs}s, QEMU ${qemuSecs}s, logs in ${OUT}`);
}
