/**
 * The least a Deno process can spend serving a frame: a VNC server of a
 * hundred lines that does only what every frame of the `cursor` row needs,
 * measured by the rig's `rfbbench` exactly as rxfb and the peers are.
 *
 * Its "guest" is a Worker that wakes at the frame rate (a futex wait, as
 * rxfb's simulated vCPU does), writes the stamp's number and time into shared
 * memory and rings a doorbell (`Atomics.notify`); the main thread wakes on it
 * (`Atomics.waitAsync`, as rxfb's kernel does) and, when the client asked,
 * writes one FramebufferUpdate: the stamp's 256 x 16 pixels, Raw, from a
 * buffer kept ready. It compares nothing, keeps no regions, encodes nothing.
 * So its CPU per frame is a floor under any Deno server of this design on
 * this machine: the three wake-ups a frame takes (the guest's, the doorbell,
 * the client's request) and two socket calls. Where that floor is above a C
 * server's whole figure, no code in rxfb can meet it.
 *
 * ```sh
 * deno run -A bench/runtime_floor.ts                 # the floor, then neatvnc's cursor/raw row, one run each
 * deno run -A bench/runtime_floor.ts --peer none     # the floor only
 * deno run -A bench/runtime_floor.ts --serve --port 5991   # only the server (for a client of your own)
 * ```
 *
 * @module
 */
import { REPO, rigPaths } from "./rig.ts";
import { portFree, scriptFlags } from "./script.ts";
import { sampleThreads } from "./thread_cpu.ts";

const USAGE = `usage: deno run -A bench/runtime_floor.ts [options]

  --rate N      frames a second offered (default 60)
  --dur S       measured seconds (default 15), --warm S warm-up seconds (default 2)
  --port P      TCP port (default 5991)
  --peer NAME   also run this rig peer on cursor/raw at the same rate (default neatvnc; none: skip)
  --out FILE    the results as JSON (default bench/results/floor-STAMP.json)
  --serve       only serve (no measuring): for a client of your own`;

const opts = scriptFlags(Deno.args, {
  rate: { type: "string" },
  dur: { type: "string" },
  warm: { type: "string" },
  port: { type: "string" },
  peer: { type: "string" },
  out: { type: "string" },
  serve: { type: "boolean" },
  help: { type: "boolean" },
}, USAGE);

const num = (v: unknown, d: number) => (v === undefined ? d : Number(v));
const RATE = num(opts.rate, 60), DUR = num(opts.dur, 15), WARM = num(opts.warm, 2);
const PORT = num(opts.port, 5991);
for (const [k, v] of Object.entries({ rate: RATE, dur: DUR, warm: WARM, port: PORT })) {
  if (!(v > 0)) {
    console.error(`--${k}: a positive number, not ${v}\n\n${USAGE}`);
    Deno.exit(2);
  }
}

/** The framebuffer the server announces; only the stamp's corner is ever sent. */
const W = 1920, H = 1080;
const STAMP_W = 256, STAMP_H = 16;

// ------------------------------------------------------------------ the server

/** The "guest": wakes at the rate, writes the stamp's number and time, rings. */
const GUEST = `
const { sab, rate } = await new Promise((r) => (self.onmessage = (e) => r(e.data)));
const a = new Int32Array(sab); // 0: doorbell, 1: n, 2: time (us, mod 2^32), 3: stop
const nap = new Int32Array(new SharedArrayBuffer(4));
const t0 = performance.now();
for (let n = 0; !Atomics.load(a, 3); n++) {
  const wait = t0 + (n * 1000) / rate - performance.now();
  if (wait > 0) Atomics.wait(nap, 0, 0, wait);
  Atomics.store(a, 1, n);
  Atomics.store(a, 2, Math.round((performance.timeOrigin + performance.now()) * 1000) | 0);
  Atomics.add(a, 0, 1);
  Atomics.notify(a, 0);
}
`;

/** Reads exactly `n` bytes into a buffered reader's window. */
class Reader {
  private buf = new Uint8Array(4096);
  private start = 0;
  private end = 0;
  constructor(private readonly conn: Deno.TcpConn) {}
  async take(n: number): Promise<Uint8Array> {
    while (this.end - this.start < n) {
      if (this.start > 0) {
        this.buf.copyWithin(0, this.start, this.end);
        this.end -= this.start;
        this.start = 0;
      }
      if (this.buf.length < n) {
        const b = new Uint8Array(n * 2);
        b.set(this.buf.subarray(0, this.end));
        this.buf = b;
      }
      const got = await this.conn.read(this.buf.subarray(this.end));
      if (got === null) throw new Error("client closed");
      this.end += got;
    }
    const out = this.buf.subarray(this.start, this.start + n);
    this.start += n;
    return out;
  }
}

/** One client: the handshake, then an update of the stamp for each request once a new frame is rung. */
async function serveClient(conn: Deno.TcpConn, a: Int32Array): Promise<void> {
  conn.setNoDelay(true);
  const r = new Reader(conn);
  const send = (b: Uint8Array) => conn.write(b).then(() => {});
  await send(new TextEncoder().encode("RFB 003.008\n"));
  await r.take(12);
  await send(Uint8Array.of(1, 1)); // security: None
  await r.take(1);
  await send(new Uint8Array(4)); // SecurityResult: ok
  await r.take(1); // ClientInit
  const init = new DataView(new ArrayBuffer(24 + 5));
  init.setUint16(0, W);
  init.setUint16(2, H);
  // 32 bpp, depth 24, little endian, true colour, max 255, shifts 16 / 8 / 0
  [32, 24, 0, 1].forEach((v, i) => init.setUint8(4 + i, v));
  [255, 255, 255].forEach((v, i) => init.setUint16(8 + 2 * i, v));
  [16, 8, 0].forEach((v, i) => init.setUint8(14 + i, v));
  init.setUint32(20, 5);
  new Uint8Array(init.buffer).set(new TextEncoder().encode("floor"), 24);
  await send(new Uint8Array(init.buffer));

  // The update: header + one Raw rectangle of the stamp, rewritten in place per frame.
  const upd = new Uint8Array(4 + 12 + STAMP_W * STAMP_H * 4);
  const dv = new DataView(upd.buffer);
  dv.setUint16(2, 1);
  dv.setUint16(8, STAMP_W);
  dv.setUint16(10, STAMP_H);
  const px = new Uint32Array(upd.buffer, 16);
  let white = 0xffffff; // the client's white (set by SetPixelFormat)
  const draw = (n: number, t: number) => {
    for (let i = 0; i < 64; i++) {
      const bit = i < 32 ? (n >>> i) & 1 : (t >>> (i - 32)) & 1;
      const c = bit ? white : 0, x0 = (i % 32) * 8, y0 = Math.floor(i / 32) * 8;
      for (let y = y0; y < y0 + 8; y++) px.fill(c, y * STAMP_W + x0, y * STAMP_W + x0 + 8);
    }
  };

  let asked = false, sentFrame = -1, sending = false;
  const maybeSend = async () => {
    if (!asked || sending || Atomics.load(a, 0) === sentFrame) return;
    asked = false;
    sending = true;
    sentFrame = Atomics.load(a, 0);
    draw(Atomics.load(a, 1), Atomics.load(a, 2));
    await send(upd);
    sending = false;
  };
  // The doorbell, as rxfb's kernel listens to its vCPU.
  (async () => {
    let seen = Atomics.load(a, 0);
    while (!Atomics.load(a, 3)) {
      const w = Atomics.waitAsync(a, 0, seen);
      if (w.async) await w.value;
      seen = Atomics.load(a, 0);
      await maybeSend();
    }
  })();
  for (;;) {
    const [type] = await r.take(1);
    if (type === 0) { // SetPixelFormat: 32 bpp true colour only
      const f = await r.take(19);
      const pf = new DataView(f.buffer, f.byteOffset + 3, 16);
      const max = [pf.getUint16(4), pf.getUint16(6), pf.getUint16(8)];
      const sh = [pf.getUint8(10), pf.getUint8(11), pf.getUint8(12)];
      if (pf.getUint8(0) !== 32 || !pf.getUint8(3)) {
        throw new Error("floor: 32 bpp true colour only");
      }
      white = (max[0] << sh[0] | max[1] << sh[1] | max[2] << sh[2]) >>> 0;
      if (pf.getUint8(2)) white = new DataView(Uint32Array.of(white).buffer).getUint32(0, false);
    } else if (type === 2) { // SetEncodings
      const h = await r.take(3);
      await r.take(((h[1] << 8) | h[2]) * 4);
    } else if (type === 3) { // FramebufferUpdateRequest
      await r.take(9);
      asked = true;
      await maybeSend();
    } else if (type === 4) await r.take(7);
    else if (type === 5) await r.take(5);
    else if (type === 6) {
      const h = await r.take(7);
      await r.take(new DataView(h.buffer, h.byteOffset + 3, 4).getUint32(0));
    } else throw new Error(`floor: client message ${type} not handled`);
  }
}

async function serve(port: number): Promise<never> {
  const sab = new SharedArrayBuffer(16);
  const guest = new Worker(
    URL.createObjectURL(new Blob([GUEST], { type: "application/javascript" })),
    { type: "module" },
  );
  guest.postMessage({ sab, rate: RATE });
  const l = Deno.listen({ hostname: "127.0.0.1", port });
  console.log(`floor: serving on 127.0.0.1:${port}`);
  for await (const c of l) {
    serveClient(c, new Int32Array(sab)).catch(() => c.close());
  }
  throw new Error("unreachable");
}

if (opts.serve) await serve(PORT);

// ------------------------------------------------------------------ the measurement

const { rig: RIG } = rigPaths();
const RFBBENCH = `${RIG}/rfbbench`;
try {
  Deno.statSync(RFBBENCH);
} catch {
  console.error(
    `floor: no rfbbench in ${RIG}: build the rig with \`deno task bench -- --rows cursor\``,
  );
  Deno.exit(1);
}
if (!portFree(PORT)) {
  console.error(`floor: 127.0.0.1:${PORT} is in use: pick another with --port`);
  Deno.exit(1);
}

interface Row {
  server: string;
  fps: number;
  p50_ms: number;
  cpu_ms_per_frame: number;
  threads_ms_per_frame?: Record<string, number>;
  kb_per_frame: number;
}

const dec = new TextDecoder();
const lastJson = (s: string) =>
  JSON.parse(s.trim().split("\n").filter((l) => l.startsWith("{")).pop() ?? "");

async function measureFloor(): Promise<Row> {
  const server = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL(import.meta.url).pathname,
      "--serve",
      "--port",
      String(PORT),
      "--rate",
      String(RATE),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    // Ready once it says so (probing the port by binding it could race with its own bind).
    const lines = server.stdout.getReader();
    let said = "";
    while (!said.includes("serving")) {
      const { value, done } = await lines.read();
      if (done) throw new Error("floor: the server ended before serving");
      said += dec.decode(value);
    }
    lines.releaseLock();
    server.stdout.cancel().catch(() => {});
    const bench = new Deno.Command(RFBBENCH, {
      args: [
        `127.0.0.1:${PORT}`,
        "-e",
        "raw,copyrect",
        "-d",
        String(DUR),
        "-w",
        String(WARM),
        "-P",
        String(server.pid),
        "-l",
        "floor",
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    // Threads sampled over the measured seconds (rfbbench measures after its warm-up).
    await new Promise((r) => setTimeout(r, WARM * 1000 + 500));
    const a = sampleThreads(server.pid);
    await new Promise((r) => setTimeout(r, (DUR - 1) * 1000));
    const b = sampleThreads(server.pid);
    const out = await bench;
    const j = lastJson(dec.decode(out.stdout));
    if (j.status !== "ok") throw new Error(`rfbbench: ${j.status} ${dec.decode(out.stderr)}`);
    const frames = j.frames as number;
    const threads: Record<string, number> = {};
    if (a && b) {
      const perFrame = (ns: number) => ns / 1e6 / (((b.at - a.at) / 1000) * j.fps);
      for (const [tid, t] of b.byTid) {
        const name = t.name.startsWith("worker") ? "guest (Worker)" : t.name;
        threads[name] = (threads[name] ?? 0) + perFrame(t.ns - (a.byTid.get(tid)?.ns ?? 0));
      }
    }
    return {
      server: "Deno floor",
      fps: j.fps,
      p50_ms: j.latency_us.p50 / 1000,
      cpu_ms_per_frame: (j.server_cpu_total_s * 1000) / frames,
      threads_ms_per_frame: threads,
      kb_per_frame: j.bytes_per_frame / 1024,
    };
  } finally {
    server.kill();
    await server.status;
  }
}

async function measurePeer(peer: string): Promise<Row> {
  const o = await new Deno.Command("bash", {
    args: [`${RIG}/run.sh`, "one", peer, "cursor", "raw", String(RATE)],
    cwd: RIG,
    env: { DUR: String(DUR), WARM: String(WARM), PORT: String(PORT) },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const r = lastJson(dec.decode(o.stdout));
  if (r.status !== "ok") {
    throw new Error(`run.sh ${peer}: ${r.status} ${dec.decode(o.stderr).slice(-500)}`);
  }
  return {
    server: `${peer} (cursor/raw, generator subtracted)`,
    fps: r.fps,
    p50_ms: r.lat_p50_ms,
    cpu_ms_per_frame: r.server_cpu_ms_per_frame,
    kb_per_frame: r.kb_per_frame,
  };
}

const rows: Row[] = [await measureFloor()];
const peer = String(opts.peer ?? "neatvnc");
if (peer !== "none") rows.push(await measurePeer(peer));

const f = (x: number, d = 2) => x.toFixed(d);
console.log(
  `\n## The Deno floor at ${RATE} fps (DUR=${DUR}s WARM=${WARM}s, ${new Date().toISOString()})\n`,
);
console.log("| server | fps | p50 ms | CPU ms/frame | KB/frame |\n|---|---:|---:|---:|---:|");
for (const r of rows) {
  console.log(
    `| ${r.server} | ${f(r.fps, 1)} | ${f(r.p50_ms)} | ${f(r.cpu_ms_per_frame)} | ${
      f(r.kb_per_frame)
    } |`,
  );
}
const t = rows[0].threads_ms_per_frame;
if (t) {
  console.log(
    `\nThe floor's CPU by thread (ms a frame, from schedstat): ` +
      Object.entries(t).filter(([, v]) => v >= 0.0005).map(([k, v]) => `${k} ${f(v, 3)}`).join(
        ", ",
      ),
  );
}
const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "");
const out = opts.out ? String(opts.out) : `${REPO}/bench/results/floor-${stamp}.json`;
Deno.writeTextFileSync(
  out,
  JSON.stringify(
    { at: new Date().toISOString(), rate: RATE, dur: DUR, warm: WARM, rows },
    null,
    2,
  ) + "\n",
);
console.log(`wrote ${out}`);
