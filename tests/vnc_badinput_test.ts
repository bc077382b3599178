/**
 * Hostile and broken clients: garbage, truncated and oversized messages,
 * unknown message types, invalid pixel formats, stalls, clients that stop
 * reading, and a fuzzer sending 100,000 mutated client message streams. Each
 * bad client must be disconnected with a logged reason while a well-behaved
 * client connected at the same time keeps receiving exact pixels.
 *
 * The fuzzer's size and concurrency can be changed with RXFB_FUZZ_STREAMS,
 * RXFB_FUZZ_CONC and RXFB_FUZZ_QUICK (ms before a silent stream counts as
 * stalled); it takes about 45-70 s on a 2-core machine at the defaults.
 */
import { assert, assertEquals, assertStrictEquals } from "@rxfb/assert";
import { type PixelFormat, XRGB8888 } from "../pipeline/pixel_format.ts";
import { convertPixels } from "../pipeline/convert_pixels.ts";
import { paintTestPicture, type VncRig, vncRig } from "./vnc_rig.ts";
import { concat, msg, pixelValues, RfbClient } from "./client_rfb.ts";
import { sleep, until } from "./client_tools.ts";
import { mulberry32 as prng } from "./prng.ts";

const enc = new TextEncoder();

/** The guest's pixels as 32-bpp values (the good client's format). */
function expected(rig: VncRig): Uint32Array {
  const fb = rig.guest.framebuffer()!;
  return pixelValues(
    convertPixels(fb, { x: 0, y: 0, w: fb.width, h: fb.height }, XRGB8888),
    XRGB8888,
  );
}

/**
 * A well-behaved client: Raw, incremental requests. `check(seed)` repaints
 * the guest and waits until the client's copy equals it exactly.
 */
class GoodClient {
  private constructor(readonly rig: VncRig, readonly c: RfbClient) {}

  static async open(rig: VncRig, encodings = [0]): Promise<GoodClient> {
    const c = await RfbClient.connect(rig.port, 10_000);
    await c.handshake();
    await c.setEncodings(encodings);
    await c.request(false);
    await c.update();
    return new GoodClient(rig, c);
  }

  async check(seed: number, what: string): Promise<void> {
    paintTestPicture(this.rig.sim, seed);
    const want = expected(this.rig);
    const end = performance.now() + 10_000;
    for (;;) {
      await this.c.request(true);
      await this.c.update(Math.max(1, end - performance.now()));
      let bad = 0;
      for (let i = 0; i < want.length; i++) if (this.c.fb[i] !== want[i]) bad++;
      if (bad === 0) return;
      if (performance.now() > end) throw new Error(`${what}: good client has ${bad} wrong pixels`);
    }
  }

  close(): void {
    this.c.close();
  }
}

/** The reasons logged for disconnects since `from` (index into the log). */
const reasons = (rig: VncRig, from = 0) =>
  rig.log.slice(from).filter((l) => l.includes(": disconnected: ")).map((l) =>
    l.replace(/^.*: disconnected: /, "")
  );

/**
 * Runs `bad` against a rig (short handshake timeout) while a good client is
 * connected; expects the bad client to be disconnected within `withinMs` with
 * a reason matching `reason`, and the good client to get exact pixels after.
 */
async function badClient(
  what: string,
  bad: (c: RfbClient) => Promise<void>,
  reason: RegExp,
  opts: { withinMs?: number; timeoutMs?: number; handshake?: boolean } = {},
): Promise<void> {
  const rig = await vncRig({}, { timeoutMs: opts.timeoutMs ?? 500 });
  let good: GoodClient | undefined;
  const c = await RfbClient.connect(rig.port, 10_000);
  try {
    paintTestPicture(rig.sim);
    good = await GoodClient.open(rig);
    const mark = rig.log.length;
    if (opts.handshake !== false) await c.handshake();
    const t0 = performance.now();
    await bad(c).catch(() => {}); // the server may close while we write
    const closed = await c.closedWithin(opts.withinMs ?? 2000);
    const took = performance.now() - t0;
    assert(
      closed,
      `${what}: still connected after ${opts.withinMs ?? 2000} ms; log:\n${
        rig.log.slice(mark).join("\n")
      }`,
    );
    await until(() => reasons(rig, mark).length > 0, "a logged reason", 3000);
    const got = reasons(rig, mark);
    assert(got.some((r) => reason.test(r)), `${what}: reasons ${JSON.stringify(got)} (${took} ms)`);
    await good.check(99, `after ${what}`);
    assertStrictEquals(rig.vnc.server.clientCount, 1, "only the good client is left");
  } finally {
    c.close();
    good?.close();
    await rig.stop();
  }
}

const after = (...m: Uint8Array[]) => (c: RfbClient) => c.write(concat(...m));

// ---------------------------------------------------------------- garbage and truncation

Deno.test("badinput: garbage after the handshake", async () => {
  const junk = new Uint8Array(64).map((_, i) => (i * 97 + 13) & 255);
  junk[0] = 0x7f;
  await badClient("garbage", after(junk), /unknown client message type 127/);
});

Deno.test("badinput: a truncated SetEncodings, then close", async () => {
  await badClient(
    "truncated then closed",
    async (c) => {
      await c.write(msg.setEncodings([0, 5, 16, 7]).subarray(0, 9));
      c.close();
    },
    /client disconnected/,
  );
});

Deno.test("badinput: a truncated SetPixelFormat, then silence: stalled message", async () => {
  await badClient(
    "truncated then silent",
    after(msg.setPixelFormat(XRGB8888).subarray(0, 7)),
    /message 0 stalled \(500 ms\)/,
  );
});

Deno.test("badinput: a slow drip (one byte per 150 ms) of a SetEncodings is cut at the message timeout", async () => {
  await badClient(
    "slow drip",
    async (c) => {
      const m = msg.setEncodings(Array.from({ length: 20 }, (_, i) => i));
      for (const b of m) {
        await c.write(Uint8Array.of(b));
        await sleep(150);
        if (c.buffered) break;
      }
    },
    /message 2 stalled/,
    { withinMs: 4000 },
  );
});

// ---------------------------------------------------------------- ClientCutText

for (
  const [what, length] of [
    ["0xFFFFFFF0 (~4 GB)", 0xffff_fff0],
    ["0x80000000 (2 GiB)", 0x8000_0000],
    ["0x7FFFFFFF", 0x7fff_ffff],
    ["1 MiB + 1", (1 << 20) + 1],
  ] as const
) {
  Deno.test(`badinput: ClientCutText of length ${what} is cut off at once, unread`, async () => {
    // A long handshake/message timeout, so that only an immediate refusal passes.
    await badClient(
      `cut text ${what}`,
      after(msg.cutText(new Uint8Array(0), length)),
      /ClientCutText/,
      { timeoutMs: 10_000, withinMs: 1000 },
    );
  });
}

Deno.test("badinput: ClientCutText of length 0xFFFFFFF0 does not swallow the next messages", async () => {
  // RFC 6143 7.5.6: length is a U32. Read as a signed -16, the server would take the
  // next 16 bytes (here two key events) as text and go on with the stream out of step.
  const rig = await vncRig({}, { timeoutMs: 10_000 });
  const c = await RfbClient.connect(rig.port);
  try {
    await c.handshake();
    await c.write(
      msg.cutText(new Uint8Array(0), 0xffff_fff0),
      msg.key(true, 0x68),
      msg.key(false, 0x68),
    );
    const closed = await c.closedWithin(1000);
    assert(
      closed,
      `not disconnected; guest inputs ${JSON.stringify(rig.sim.inputs)}; log:\n${
        rig.log.join("\n")
      }`,
    );
  } finally {
    c.close();
    await rig.stop();
  }
});

// ---------------------------------------------------------------- unknown messages

for (const t of [1, 7, 8, 9, 100, 149, 151, 200, 249, 250, 252, 253, 254]) {
  Deno.test(`badinput: unknown client message type ${t}`, async () => {
    await badClient(
      `type ${t}`,
      after(Uint8Array.of(t, 0, 0, 0, 0, 0, 0, 0)),
      new RegExp(`unknown client message type ${t}\\b`),
    );
  });
}

for (const sub of [1, 2, 255]) {
  Deno.test(`badinput: QEMU client message with unknown subtype ${sub}`, async () => {
    await badClient(
      `QEMU sub ${sub}`,
      after(Uint8Array.of(255, sub, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)),
      /unknown QEMU client message/,
    );
  });
}

Deno.test("badinput: a fence with a payload over 64 bytes", async () => {
  const b = msg.fence(0x8000_0000, new Uint8Array(64));
  b[8] = 200;
  await badClient("fence 200", after(b, new Uint8Array(200)), /fence payload/);
});

// ---------------------------------------------------------------- SetPixelFormat

const pfWith = (p: Partial<PixelFormat>): PixelFormat => ({ ...XRGB8888, ...p });

for (
  const [what, pf] of [
    ["24 bpp", pfWith({ bitsPerPixel: 24 })],
    ["0 bpp", pfWith({ bitsPerPixel: 0 })],
    ["1 bpp", pfWith({ bitsPerPixel: 1, depth: 1 })],
    ["red max 0", pfWith({ redMax: 0 })],
    ["green max 100 (not 2^n-1)", pfWith({ greenMax: 100 })],
    ["red shift 28 with max 255 (overflows 32 bits)", pfWith({ redShift: 28 })],
    ["blue shift 255", pfWith({ blueShift: 255 })],
    [
      "16 bpp with a red channel up to bit 18",
      pfWith({ bitsPerPixel: 16, depth: 16, redShift: 11, greenShift: 5, blueShift: 0 }),
    ],
    ["colour map at 16 bpp", pfWith({ bitsPerPixel: 16, depth: 16, trueColour: false })],
    ["red max 65535 at shift 24", pfWith({ redMax: 65535, redShift: 24 })],
  ] as const
) {
  Deno.test(`badinput: invalid SetPixelFormat (${what}) is refused`, async () => {
    await badClient(
      `SetPixelFormat ${what}`,
      after(msg.setPixelFormat(pf)),
      /SetPixelFormat refused/,
    );
  });
}

// ---------------------------------------------------------------- stalls

Deno.test("badinput: stalls in the handshake are cut at the timeout (500 ms)", async (t) => {
  const steps: [string, (c: RfbClient) => Promise<void>][] = [
    ["before the version", async (c) => void await c.read(12)],
    ["after the version", async (c) => {
      await c.read(12);
      await c.write(enc.encode("RFB 003.008\n"));
    }],
    ["half a version", async (c) => {
      await c.read(12);
      await c.write(enc.encode("RFB 00"));
    }],
    ["before ClientInit", async (c) => {
      await c.read(12);
      await c.write(enc.encode("RFB 003.008\n"));
      await c.read(2);
      await c.write(Uint8Array.of(1));
    }],
  ];
  for (const [what, step] of steps) {
    await t.step(what, async () => {
      await badClient(`stall ${what}`, step, /stalled in the handshake \(500 ms\)/, {
        handshake: false,
        withinMs: 2500,
      });
    });
  }
});

Deno.test("badinput: 100 idle connections are all cut at the handshake timeout", async () => {
  const rig = await vncRig({}, { timeoutMs: 500 });
  paintTestPicture(rig.sim);
  const good = await GoodClient.open(rig);
  const idle: RfbClient[] = [];
  try {
    for (let i = 0; i < 100; i++) idle.push(await RfbClient.connect(rig.port));
    const closed = await Promise.all(idle.map((c) => c.closedWithin(4000)));
    assertStrictEquals(closed.filter((x) => !x).length, 0);
    await good.check(5, "after 100 idle connections");
    await until(() => rig.vnc.server.clientCount === 1, "idle clients gone", 2000);
  } finally {
    for (const c of idle) c.close();
    good.close();
    await rig.stop();
  }
});

Deno.test("badinput: a client that stops reading does not hold up another client", async () => {
  // 1280x800 raw is 4 MB an update: more than the socket buffers hold.
  const rig = await vncRig({ width: 1280, height: 800 });
  paintTestPicture(rig.sim);
  const good = await GoodClient.open(rig, [16]);
  const slow = await RfbClient.connect(rig.port);
  try {
    await slow.handshake();
    await slow.setEncodings([0]);
    for (let i = 0; i < 5; i++) await slow.request(false);
    for (let k = 0; k < 5; k++) await good.check(200 + k, `update ${k} while a client stalls`);
  } finally {
    slow.close();
    good.close();
    await rig.stop();
  }
});

// ---------------------------------------------------------------- fuzzing

const FORMATS: PixelFormat[] = [
  XRGB8888,
  { ...XRGB8888, bigEndian: true },
  { ...XRGB8888, redShift: 0, blueShift: 16 },
  {
    bitsPerPixel: 16,
    depth: 16,
    bigEndian: true,
    trueColour: true,
    redMax: 31,
    greenMax: 63,
    blueMax: 31,
    redShift: 11,
    greenShift: 5,
    blueShift: 0,
  },
  {
    bitsPerPixel: 8,
    depth: 8,
    bigEndian: false,
    trueColour: true,
    redMax: 7,
    greenMax: 7,
    blueMax: 3,
    redShift: 0,
    greenShift: 3,
    blueShift: 6,
  },
  {
    bitsPerPixel: 8,
    depth: 8,
    bigEndian: false,
    trueColour: false,
    redMax: 0,
    greenMax: 0,
    blueMax: 0,
    redShift: 0,
    greenShift: 0,
    blueShift: 0,
  },
];

const ENCODING_LISTS: number[][] = [
  [0],
  [2],
  [5],
  [16],
  [7],
  [-260],
  [7, -23],
  [7, -32, -256],
  [-260, -27, -247],
  [16, -223, -308, -258, -257, -239, -313, -312],
  // noVNC's list
  [1, 7, -260, 16, 21, 5, 2, 6, 0, -26, -254, -223, -224, -258, -261, -308, -309, -312, -313, -307],
  // TigerVNC's list
  [-314, 0x574d5664, -239, -240, -223, -308, -261, -307, -224, -313, -312, -258, 7, 1, 16, 5, 2, 0],
  // gtk-vnc's list
  [-27, 7, -309, -258, -261, -308, -223, 0x574d5669, -307, -224, -239, -240, -257, 16, 5, 2, 1, 0],
];

/** Valid client messages (after the handshake) the fuzzer starts from. */
function validMessage(r: () => number, w: number, h: number): Uint8Array {
  const pick = <T>(a: readonly T[]) => a[Math.floor(r() * a.length)];
  const int = (n: number) => Math.floor(r() * n);
  switch (int(12)) {
    case 0:
      return msg.setPixelFormat(pick(FORMATS));
    case 1:
      return msg.setEncodings(pick(ENCODING_LISTS));
    case 2:
      return msg.request(false, 0, 0, w, h);
    case 3:
      return msg.request(true, 0, 0, w, h);
    case 4:
      return msg.request(r() < 0.5, int(w), int(h), int(w) + 1, int(h) + 1);
    case 5:
      return msg.key(r() < 0.5, pick([0x61, 0x68, 0xff0d, 0xffe1, 0xffe3, 0x20ac, 0x1000041]));
    case 6:
      return msg.pointer(int(32), int(w + 20), int(h + 20));
    case 7:
      return msg.cutText(enc.encode("clip".repeat(int(20))));
    case 8:
      return msg.qemuKey(r() < 0.5, 0x61, pick([0x1e, 0x23, 0xe048, 0xc8, 0x54, 0xc6, 0]));
    case 9:
      return msg.fence(pick([0x8000_0000, 0x8000_0007, 0x0000_0001]), new Uint8Array(int(8)));
    case 10: // only valid after SetEncodings with ContinuousUpdates
      return concat(
        msg.setEncodings(pick(ENCODING_LISTS.filter((l) => l.includes(-313)))),
        msg.enableContinuousUpdates(r() < 0.7, 0, 0, w, h),
      );
    default:
      return msg.setDesktopSize(int(2 * w), int(2 * h));
  }
}

const INTERESTING = [0, 1, 2, 0x7f, 0x80, 0xfe, 0xff];
const INTERESTING32 = [
  0,
  1,
  0xff,
  0xffff,
  0x10000,
  1 << 20,
  (1 << 20) + 1,
  0x7fff_ffff,
  0x8000_0000,
  0xffff_fff0,
  0xffff_ffff,
];

/** One mutation of `b`: bit flips, byte sets, inserts, deletes, duplication, truncation, length fields. */
function mutate(b: Uint8Array, r: () => number): Uint8Array {
  const int = (n: number) => Math.floor(r() * n);
  if (b.length === 0) return Uint8Array.of(int(256));
  const at = int(b.length);
  switch (int(9)) {
    case 0: { // flip bits
      const o = b.slice();
      for (let k = 1 + int(3); k > 0; k--) o[int(o.length)] ^= 1 << int(8);
      return o;
    }
    case 1: { // interesting byte
      const o = b.slice();
      o[at] = INTERESTING[int(INTERESTING.length)];
      return o;
    }
    case 2: { // random byte
      const o = b.slice();
      o[at] = int(256);
      return o;
    }
    case 3: // insert random bytes
      return concat(
        b.subarray(0, at),
        new Uint8Array(1 + int(8)).map(() => int(256)),
        b.subarray(at),
      );
    case 4: { // delete a range
      const n = 1 + int(Math.min(8, b.length - at));
      return concat(b.subarray(0, at), b.subarray(at + n));
    }
    case 5: // truncate
      return b.slice(0, at);
    case 6: { // duplicate a range
      const n = 1 + int(Math.min(16, b.length - at));
      return concat(b.subarray(0, at + n), b.subarray(at, at + n), b.subarray(at + n));
    }
    case 7: { // a 16-bit field
      const o = b.slice();
      if (at + 2 <= o.length) {
        new DataView(o.buffer).setUint16(at, [0, 1, 0xff, 0x100, 0x7fff, 0x8000, 0xffff][int(7)]);
      }
      return o;
    }
    default: { // a 32-bit field
      const o = b.slice();
      if (at + 4 <= o.length) {
        new DataView(o.buffer).setUint32(at, INTERESTING32[int(INTERESTING32.length)]);
      }
      return o;
    }
  }
}

/** Byte offsets that frame a message (type, counts, lengths): what a field mutation leaves alone. */
function structural(m: Uint8Array): Set<number> {
  switch (m[0]) {
    case 2: // SetEncodings: count
      return new Set([0, 2, 3]);
    case 6: // ClientCutText: length
      return new Set([0, 4, 5, 6, 7]);
    case 248: // ClientFence: payload length
      return new Set([0, 8]);
    case 251: // SetDesktopSize: number of screens
      return new Set([0, 6]);
    case 255: // QEMU: subtype
      return new Set([0, 1]);
    case 150: // EnableContinuousUpdates after its SetEncodings: keep both types
      return new Set([0, m.length - 10]);
    default:
      return new Set([0]);
  }
}

/**
 * A field mutation: bytes of one message's fields (pixel format, encodings,
 * rectangles, keysyms, positions, flags, text) change; its framing does not.
 */
function mutateFields(m: Uint8Array, r: () => number): Uint8Array {
  const int = (n: number) => Math.floor(r() * n);
  const fixed = structural(m);
  const free = [...m.keys()].filter((i) => !fixed.has(i));
  if (free.length === 0) return m;
  const o = m.slice();
  for (let k = 1 + int(3); k > 0; k--) {
    const at = free[int(free.length)];
    switch (int(4)) {
      case 0:
        o[at] ^= 1 << int(8);
        break;
      case 1:
        o[at] = INTERESTING[int(INTERESTING.length)];
        break;
      case 2:
        o[at] = int(256);
        break;
      default: { // a 16-bit value over two free bytes
        if (free.includes(at + 1)) {
          new DataView(o.buffer).setUint16(at, [0, 1, 0x7fff, 0x8000, 0xffff, int(65536)][int(6)]);
        }
      }
    }
  }
  return o;
}

const HANDSHAKE = concat(enc.encode("RFB 003.008\n"), Uint8Array.of(1), Uint8Array.of(1));

/**
 * How one stream ended: the fence came back (the server took the stream and
 * is in step: the connection goes on), the server closed the connection, the
 * server waited for more bytes and our half-close ended it, or (never expected)
 * nothing happened within the safety deadline and we closed.
 */
type Outcome = "alive" | "closed" | "stalled" | "deadline";

/**
 * A fuzzing connection: a valid (or mutated) handshake, then mutated message
 * streams, each followed by a Fence request carrying a nonce.
 */
class FuzzConn {
  private buf: Uint8Array = new Uint8Array(0);
  private eof = false;
  private reading: Promise<void> | undefined;
  private constructor(readonly conn: Deno.TcpConn, private handshake: Uint8Array | undefined) {}

  /** Connects; the handshake goes out with the first stream, in one write. */
  static async open(port: number, handshake: Uint8Array): Promise<FuzzConn> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    return new FuzzConn(conn, handshake);
  }

  private pump(): Promise<void> {
    if (!this.reading) {
      const chunk = new Uint8Array(64 * 1024);
      this.reading = this.conn.read(chunk).catch(() => null).then((n) => {
        this.reading = undefined;
        if (n === null) this.eof = true;
        else {
          // Keep only a tail: enough to find a 16-byte nonce split across reads.
          const tail = this.buf.subarray(Math.max(0, this.buf.length - 64));
          this.buf = concat(tail, chunk.subarray(0, n));
        }
      });
    }
    return this.reading;
  }

  private async write(b: Uint8Array): Promise<boolean> {
    try {
      let o = 0;
      while (o < b.length) o += await this.conn.write(b.subarray(o));
      return true;
    } catch {
      this.eof = true;
      return false;
    }
  }

  /** Waits up to `ms` for the nonce or EOF. */
  private async wait(nonce: Uint8Array, ms: number): Promise<"echo" | "eof" | "timeout"> {
    const end = performance.now() + ms;
    for (;;) {
      if (indexOf(this.buf, nonce) >= 0) {
        this.buf = new Uint8Array(0);
        return "echo";
      }
      if (this.eof) return "eof";
      const left = end - performance.now();
      if (left <= 0) return "timeout";
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([this.pump(), new Promise((r) => (timer = setTimeout(r, left)))]);
      clearTimeout(timer);
    }
  }

  /**
   * Sends `stream` and a fence with `nonce`. If neither the echo nor EOF comes
   * within `quickMs`, the server is taken to wait for more bytes: we half-close
   * and wait for it to close.
   */
  async send(stream: Uint8Array, nonce: Uint8Array, quickMs: number): Promise<Outcome> {
    if (this.eof) return "closed";
    const first = this.handshake ?? new Uint8Array(0);
    this.handshake = undefined;
    if (!(await this.write(concat(first, stream, msg.fence(0x8000_0000, nonce))))) return "closed";
    const r = await this.wait(nonce, quickMs);
    if (r === "echo") return "alive";
    if (r === "eof") return "closed";
    // Half-close: the server reads everything we sent, then end of stream, and closes
    // (with a reason from our bytes, or "client disconnected" if it was waiting for more).
    try {
      await this.conn.closeWrite();
    } catch {
      // gone already
    }
    const end = performance.now() + 5000;
    while (!this.eof) {
      const left = end - performance.now();
      if (left <= 0) {
        this.close();
        return "deadline";
      }
      this.buf = new Uint8Array(0);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([this.pump(), new Promise((r) => (timer = setTimeout(r, left)))]);
      clearTimeout(timer);
    }
    return "stalled";
  }

  close(): void {
    this.eof = true;
    try {
      this.conn.close();
    } catch {
      // closed
    }
  }

  /** Closes and waits for the pending read to finish (so no op leaks). */
  async drain(): Promise<void> {
    this.close();
    await this.reading;
  }
}

function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

const FUZZ_STREAMS = Number(Deno.env.get("RXFB_FUZZ_STREAMS") ?? 100_000);

Deno.test({
  name: `badinput: fuzz: ${FUZZ_STREAMS} mutated client streams; a good client keeps exact pixels`,
  // The server loads libz / libturbojpeg through FFI on first use and keeps them.
  sanitizeResources: false,
  fn: async () => {
    const W = 48, H = 32; // small, but above Tight's JPEG minimum area (1024 px)
    // force-shared: a stream whose ClientInit byte mutated to 0 must not end the good client.
    const rig = await vncRig({ width: W, height: H }, { timeoutMs: 300, share: "force-shared" });
    const escaped: unknown[] = [];
    const onRejection = (e: PromiseRejectionEvent) => {
      e.preventDefault();
      escaped.push(e.reason);
    };
    const onError = (e: ErrorEvent) => {
      e.preventDefault();
      escaped.push(e.error);
    };
    globalThis.addEventListener("unhandledrejection", onRejection);
    globalThis.addEventListener("error", onError);
    paintTestPicture(rig.sim);
    const good = await GoodClient.open(rig);
    const outcomes = { alive: 0, closed: 0, stalled: 0, deadline: 0 };
    let done = 0, handshakes = 0, checks = 0;
    const t0 = performance.now();
    try {
      const CONCURRENCY = Number(Deno.env.get("RXFB_FUZZ_CONC") ?? 48),
        QUICK_MS = Number(Deno.env.get("RXFB_FUZZ_QUICK") ?? 40);
      // Several listening ports: each TCP 4-tuple is reused less often while the
      // previous connection on it sits in TIME_WAIT (100,000 connections would
      // otherwise cycle the 28,000 ephemeral ports through one server port).
      const ports = [rig.port];
      for (let k = 0; k < 7; k++) ports.push(rig.vnc.server.listen("127.0.0.1", 0));
      let next = 0;
      const worker = async (wid: number) => {
        const r = prng(0x5eed + wid);
        let conn: FuzzConn | undefined;
        while (next < FUZZ_STREAMS) {
          const id = next++;
          // One stream in ten also mutates the handshake (a fresh connection each).
          const mutateHandshake = r() < 0.1;
          if (!conn || mutateHandshake) {
            await conn?.drain();
            conn = await FuzzConn.open(
              ports[(wid + handshakes) % ports.length],
              mutateHandshake ? mutate(HANDSHAKE, r) : HANDSHAKE,
            );
            handshakes++;
          }
          const parts: Uint8Array[] = [];
          for (let k = 1 + Math.floor(r() * 5); k > 0; k--) parts.push(validMessage(r, W, H));
          // 15% as recorded, 55% field mutations, 30% byte mutations of the whole stream.
          const kind = r();
          if (kind >= 0.15 && kind < 0.7) {
            for (let k = 1 + Math.floor(r() * 2); k > 0; k--) {
              const i = Math.floor(r() * parts.length);
              parts[i] = mutateFields(parts[i], r);
            }
          }
          let stream = concat(...parts);
          if (kind >= 0.7) {
            for (let k = 1 + Math.floor(r() * 3); k > 0; k--) stream = mutate(stream, r);
          }
          const nonce = new Uint8Array(16);
          new DataView(nonce.buffer).setUint32(0, id);
          for (let k = 4; k < 16; k++) nonce[k] = Math.floor(r() * 256);
          const o = await conn.send(stream, nonce, QUICK_MS);
          outcomes[o]++;
          done++;
          if (o !== "alive") {
            await conn.drain();
            conn = undefined;
          }
        }
        await conn?.drain();
      };
      const checker = (async () => {
        while (done < FUZZ_STREAMS) {
          await sleep(2000);
          await good.check(1000 + checks++, `during fuzzing (${done} streams)`);
        }
      })();
      await Promise.all([...Array.from({ length: CONCURRENCY }, (_, i) => worker(i)), checker]);
      const secs = (performance.now() - t0) / 1000;
      await good.check(7, "after fuzzing");
      await until(() => rig.vnc.server.clientCount === 1, "fuzz connections gone", 5000);
      // Reasons, with numbers folded, for the record; none may be an internal error.
      const hist = new Map<string, number>();
      for (const why of reasons(rig)) {
        const k = why.replace(/\d+/g, "N").replace(/"[^"]*"/g, '"..."');
        hist.set(k, (hist.get(k) ?? 0) + 1);
      }
      console.log(
        `fuzz: ${done} streams in ${secs.toFixed(1)} s (${
          (done / secs).toFixed(0)
        }/s), ${handshakes} connections, outcomes ${
          JSON.stringify(outcomes)
        }, ${checks} good checks`,
      );
      for (const [k, n] of [...hist].sort((a, b) => b[1] - a[1]).slice(0, 25)) {
        console.log(`  ${String(n).padStart(6)}  ${k}`);
      }
      const internal = [...hist.keys()].filter((k) =>
        /Error\b|undefined|NaN|update failed|display failed|cannot read|is not a function/i.test(k)
      );
      assertEquals(internal, [], "internal errors among the disconnect reasons");
      assertEquals(escaped.map(String), [], "unhandled rejections or errors");
      assert(done >= FUZZ_STREAMS);
    } finally {
      globalThis.removeEventListener("unhandledrejection", onRejection);
      globalThis.removeEventListener("error", onError);
      good.close();
      await rig.stop();
    }
  },
});
