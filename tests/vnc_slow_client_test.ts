import { assert, assertEquals } from "@rxfb/assert";
import { vncRig } from "./vnc_rig.ts";
import { waitFor } from "./helpers.ts";

const enc = new TextEncoder();

/** A minimal RFB 3.8 client: handshake, raw encoding, then whatever the test does. */
async function rawClient(port: number) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let buf = new Uint8Array(0);
  const read = async (n: number) => {
    while (buf.length < n) {
      const chunk = new Uint8Array(1 << 20);
      const got = await conn.read(chunk);
      if (got === null) throw new Error("closed");
      const next = new Uint8Array(buf.length + got);
      next.set(buf);
      next.set(chunk.subarray(0, got), buf.length);
      buf = next;
    }
    const out = buf.slice(0, n);
    buf = buf.slice(n);
    return out;
  };
  await read(12);
  await conn.write(enc.encode("RFB 003.008\n"));
  const [count] = await read(1);
  await read(count);
  await conn.write(Uint8Array.of(1)); // None
  await read(4); // SecurityResult
  await conn.write(Uint8Array.of(1)); // shared
  const init = await read(24);
  const dv = new DataView(init.buffer);
  const w = dv.getUint16(0), h = dv.getUint16(2);
  await read(dv.getUint32(20)); // name
  // SetEncodings: Raw only.
  await conn.write(Uint8Array.of(2, 0, 0, 1, 0, 0, 0, 0));
  const request = (incremental: boolean) =>
    conn.write(Uint8Array.of(3, incremental ? 1 : 0, 0, 0, 0, 0, w >> 8, w & 255, h >> 8, h & 255));
  /** Reads one FramebufferUpdate of raw rects; returns the number of pixel bytes. */
  const update = async () => {
    const hdr = await read(4);
    assertEquals(hdr[0], 0);
    const n = (hdr[2] << 8) | hdr[3];
    let bytes = 0;
    for (let i = 0; i < n; i++) {
      const r = await read(12);
      const rv = new DataView(r.buffer);
      const rw = rv.getUint16(4), rh = rv.getUint16(6), e = rv.getInt32(8);
      if (e === 0) {
        await read(rw * rh * 4);
        bytes += rw * rh * 4;
      }
    }
    return bytes;
  };
  return { conn, request, update, w, h };
}

Deno.test("vnc: a client that stops reading stalls neither the guest nor another client", async () => {
  const rig = await vncRig({ program: "video", width: 640, height: 360, rate: 60 });
  try {
    const slow = await rawClient(rig.port);
    const fast = await rawClient(rig.port);
    // The slow client asks for updates over and over and never reads a byte.
    for (let i = 0; i < 200; i++) await slow.request(true);
    await slow.request(false);
    const framesBefore = rig.sim.lastFrame;
    await fast.request(false);
    // Sixty updates in a row (the guest draws at 60 fps: a stalled server gives none after
    // the first; the deadline is generous, so a loaded machine does not fail the test).
    const until = performance.now() + 30_000;
    for (let updates = 0; updates < 60; updates++) {
      assert(performance.now() < until, `the fast client got only ${updates} updates in 30 s`);
      await fast.update();
      await fast.request(true);
    }
    assert(rig.sim.lastFrame - framesBefore >= 20, "the guest kept drawing");
    // What the server holds for the slow client stays bounded: at most one
    // update in flight plus what the socket took, not a backlog of frames.
    const conns = rig.vnc.server.clientCount;
    assertEquals(conns, 2);
    slow.conn.close();
    fast.conn.close();
    await waitFor(() => rig.vnc.server.clientCount === 0, "clients gone");
  } finally {
    await rig.stop();
  }
});
