/**
 * How the server reads client messages: one that arrived whole is handled at
 * once (no stall timer per message, the 60-times-a-second case), one that
 * arrives in pieces is still handled, in order, and one that stops half way
 * is still cut off at the message timeout.
 */
import { assert, assertEquals } from "@rxfb/assert";
import { ConnStream, type RfbStream } from "../sinks/vnc/stream.ts";
import { WebSocketStream } from "../sinks/web/websocket_stream.ts";
import { MemoryPipe } from "../sinks/record/fbs.ts";
import { paintTestPicture, type VncRig, vncRig } from "./vnc_rig.ts";
import { concat, msg, RfbClient } from "./client_rfb.ts";
import { sleep, until } from "./client_tools.ts";

const XK_a = 0x61, XK_b = 0x62, KEY_A = 30, KEY_B = 48;

/** A rig (message timeout `timeoutMs`) and a Raw client with its first full update. */
async function withClient(
  timeoutMs: number,
  fn: (rig: VncRig, c: RfbClient) => Promise<void>,
): Promise<void> {
  const rig = await vncRig({}, { timeoutMs });
  const c = await RfbClient.connect(rig.port, 10_000);
  try {
    paintTestPicture(rig.sim);
    await c.handshake();
    await c.setEncodings([0]);
    await c.request(false);
    await c.update();
    await fn(rig, c);
  } finally {
    c.close();
    await rig.stop();
  }
}

/** The guest's key events so far, as [code, down]. */
const keys = (rig: VncRig) =>
  rig.sim.inputs.flatMap((e) => e.type === "key" ? [[e.code, e.down] as const] : []);

/** Calls `fn` counting the timers set for `ms` meanwhile (the connection's stall timers). */
async function countTimers(ms: number, fn: () => Promise<void>): Promise<number> {
  const real = globalThis.setTimeout;
  let n = 0;
  globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
    if (args[1] === ms) n++;
    return real(...args);
  }) as typeof setTimeout;
  try {
    await fn();
  } finally {
    globalThis.setTimeout = real;
  }
  return n;
}

// ---------------------------------------------------------------- the streams

/** The RfbStreams of the repository, each with a way to deliver client bytes to it. */
function streams(): [string, RfbStream, (b: Uint8Array) => void][] {
  // TCP and TLS: a ConnStream over a connection that yields what was delivered.
  const chunks: Uint8Array[] = [];
  const conn = new ConnStream({
    read: (p) => {
      const c = chunks.shift();
      if (!c) return new Promise(() => {}); // nothing more: this test never waits here
      p.set(c);
      return Promise.resolve(c.length);
    },
    write: (p) => Promise.resolve(p.length),
    close: () => {},
  }, "conn");
  const ws = {
    binaryType: "blob",
    readyState: WebSocket.OPEN,
    bufferedAmount: 0,
  } as unknown as WebSocket & { onmessage(e: { data: ArrayBuffer }): void };
  const pipe = new MemoryPipe();
  return [
    ["ConnStream", conn, (b) => chunks.push(b)],
    [
      "WebSocketStream",
      new WebSocketStream(ws, "ws"),
      (b) => ws.onmessage({ data: b.slice().buffer }),
    ],
    ["MemoryPipe", pipe.server, (b) => pipe.clientWrite(b)],
  ];
}

Deno.test("message path: tryRead takes exactly n buffered bytes, and nothing when fewer", async () => {
  for (const [name, s, deliver] of streams()) {
    assert(s.tryRead, `${name} has tryRead`);
    assertEquals(s.tryRead(1), undefined, `${name}: empty`);
    deliver(Uint8Array.of(1, 2, 3, 4, 5));
    assertEquals(await s.read(1), Uint8Array.of(1), name); // a ConnStream buffers on read
    assertEquals(s.tryRead(5), undefined, `${name}: 4 buffered`);
    assertEquals(s.tryRead(2), Uint8Array.of(2, 3), name);
    deliver(Uint8Array.of(6, 7));
    assertEquals(await s.read(3), Uint8Array.of(4, 5, 6), `${name}: across deliveries`);
    assertEquals(s.tryRead(1), Uint8Array.of(7), name);
    assertEquals(s.tryRead(1), undefined, `${name}: drained`);
    // Zero bytes (a ClientCutText of length 0) are there at once, empty or not.
    assertEquals(s.tryRead(0), new Uint8Array(0), `${name}: zero bytes, empty`);
    assertEquals(await s.read(0), new Uint8Array(0), `${name}: read of zero bytes, empty`);
  }
});

// ---------------------------------------------------------------- the server

Deno.test("message path: whole requests, keys and pointer moves are handled with no stall timer", async () => {
  const timeoutMs = 4321; // only the connection sets timers of this length
  await withClient(timeoutMs, async (rig, c) => {
    const frames = 30;
    const timers = await countTimers(timeoutMs, async () => {
      for (let i = 0; i < frames; i++) {
        paintTestPicture(rig.sim, i + 2);
        await c.write(msg.pointer(0, i, i));
        await c.write(msg.key(true, XK_a));
        await c.write(msg.key(false, XK_a));
        await c.request(true);
        const rects = await c.update();
        assert(rects.length > 0, `frame ${i}: an update with rectangles`);
      }
      await until(() => keys(rig).length === 2 * frames, "every key event", 5000);
    });
    assertEquals(keys(rig).slice(0, 2), [[KEY_A, true], [KEY_A, false]]);
    assertEquals(timers, 0, "stall timers set for whole messages");
  });
});

Deno.test("message path: messages split across writes, with pauses under the timeout, are handled in order", async () => {
  await withClient(1000, async (rig, c) => {
    const bDown = msg.key(true, XK_b);
    // A whole key event, then the start of the next in the same write.
    await c.write(concat(msg.key(true, XK_a), msg.key(false, XK_a), bDown.subarray(0, 3)));
    await sleep(300);
    await c.write(bDown.subarray(3));
    // Only the type byte, then the rest.
    const bUp = msg.key(false, XK_b);
    await c.write(bUp.subarray(0, 1));
    await sleep(300);
    await c.write(bUp.subarray(1));
    // A variable-size message between whole ones keeps its place.
    await c.write(concat(
      msg.key(true, XK_a),
      msg.cutText(new TextEncoder().encode("clip")),
      msg.setEncodings([0]),
      msg.key(false, XK_a),
    ));
    // A request in two pieces still gets its update.
    paintTestPicture(rig.sim, 7);
    const req = msg.request(false, 0, 0, c.width, c.height);
    await c.write(req.subarray(0, 4));
    await sleep(300);
    await c.write(req.subarray(4));
    const rects = await c.update();
    assertEquals(rects.length > 0, true);
    await until(() => keys(rig).length === 6, "six key events", 5000);
    assertEquals(keys(rig), [
      [KEY_A, true],
      [KEY_A, false],
      [KEY_B, true],
      [KEY_B, false],
      [KEY_A, true],
      [KEY_A, false],
    ]);
    assertEquals(rig.vnc.server.clientCount, 1);
  });
});

for (
  const [what, bytes, type] of [
    ["half a FramebufferUpdateRequest", msg.request(false, 0, 0, 8, 8).subarray(0, 5), 3],
    ["a KeyEvent's type byte", Uint8Array.of(4), 4],
    [
      "a whole KeyEvent, then half a PointerEvent",
      concat(
        msg.key(true, XK_a),
        msg.pointer(0, 1, 1).subarray(0, 3),
      ),
      5,
    ],
    ["half a QEMU Extended Key Event", msg.qemuKey(true, XK_a, 0x1e).subarray(0, 6), 255],
  ] as const
) {
  Deno.test(`message path: ${what}, then silence, is cut off as stalled`, async () => {
    const timeoutMs = 300;
    await withClient(timeoutMs, async (rig, c) => {
      const mark = rig.log.length;
      const t0 = performance.now();
      await c.write(bytes);
      assert(await c.closedWithin(3000), `${what}: still connected`);
      const took = performance.now() - t0;
      assert(took >= timeoutMs - 50, `${what}: cut after ${took} ms, before the timeout`);
      const want = `disconnected: message ${type} stalled (${timeoutMs} ms)`;
      await until(() => rig.log.slice(mark).some((l) => l.endsWith(want)), want, 3000);
    });
  });
}
