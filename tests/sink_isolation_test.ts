/**
 * Sink isolation: a sink's error ends it alone, with the reason logged; a
 * sink that never finishes a frame gets no more frames (its damage coalesces
 * into one region, nothing queues) and slows no one. Meanwhile the guest,
 * another sink and the VNC server (a raw RFB client) keep going.
 */
import { map } from "rxjs";
import { assert, assertEquals } from "@rxfb/assert";
import { attachSink, type SinkFrame } from "../sinks/sink.ts";
import { memoryLogger } from "../sources/log.ts";
import type { Guest } from "../sources/attach.ts";
import { rig, waitFor } from "./helpers.ts";
import { vncRig } from "./vnc_rig.ts";
import { RfbClient } from "./client_rfb.ts";
import { deadline, sleep } from "./client_tools.ts";

/** A well-behaved sink that counts its frames. */
function counter(guest: Guest) {
  const c = { frames: 0, stop: () => {} };
  const h = attachSink(guest.display$, { name: "counter", frame: () => void c.frames++ });
  c.stop = () => h.stop();
  return c;
}

/** A raw RFB client asking for update after update in the background; counts them. */
async function rfbViewer(port: number) {
  const client = await RfbClient.connect(port);
  await client.handshake();
  await client.setEncodings([0]); // Raw
  const v = { updates: 0, failed: undefined as unknown, done: Promise.resolve() };
  let stopping = false;
  v.done = (async () => {
    try {
      await client.request(false);
      while (!stopping) {
        const m = await client.next();
        if (m.type !== "update") continue;
        v.updates++;
        await client.request(true);
      }
    } catch (e) {
      if (!stopping) v.failed = e;
    }
  })();
  return {
    v,
    stop: async () => {
      stopping = true;
      client.close();
      await v.done;
    },
  };
}

Deno.test("isolation: a sink that throws (or rejects) on its 2nd frame stops alone, reason logged", async () => {
  const r = await vncRig({ program: "cursor", width: 160, height: 120, rate: 60 }, {}, 21);
  const log = memoryLogger();
  const viewer = await rfbViewer(r.port);
  const other = counter(r.guest);
  try {
    let thrown = 0, rejected = 0;
    const thrower = attachSink(r.guest.display$, {
      name: "thrower",
      frame: () => {
        if (++thrown === 2) throw new Error("boom on frame 2");
      },
    }, log);
    const rejecter = attachSink(r.guest.display$, {
      name: "rejecter",
      frame: () => ++rejected === 2 ? Promise.reject(new Error("async boom")) : undefined,
    }, log);
    assertEquals(await deadline(thrower.done, 5000, "thrower stops"), "boom on frame 2");
    assertEquals(await deadline(rejecter.done, 5000, "rejecter stops"), "async boom");
    assert(log.lines.includes("error sink thrower stopped: boom on frame 2"), log.lines.join("\n"));
    assert(log.lines.includes("error sink rejecter stopped: async boom"), log.lines.join("\n"));

    // Afterwards: the guest draws, the other sink and the VNC client get frames; the failed get none.
    const [g0, s0, u0] = [r.sim.lastFrame, other.frames, viewer.v.updates];
    await sleep(700);
    assert(r.sim.lastFrame >= g0 + 20, `guest frames ${g0} -> ${r.sim.lastFrame}`);
    assert(other.frames >= s0 + 15, `other sink frames ${s0} -> ${other.frames}`);
    assert(viewer.v.updates >= u0 + 10, `VNC updates ${u0} -> ${viewer.v.updates}`);
    assertEquals([thrown, rejected], [2, 2]);
    assertEquals(viewer.v.failed, undefined);
  } finally {
    other.stop();
    await viewer.stop();
    await r.stop();
  }
});

Deno.test("isolation: a sink that never returns gets no more frames, queues nothing, slows no one", async () => {
  const r = await rig(22, { program: "cursor", width: 160, height: 120, rate: 120 });
  const log = memoryLogger();
  const other = counter(r.guest);
  try {
    // The stalled sink's subscription still sees every event (counted here); its
    // frames are what coalesceDamage hands it: one, then nothing while it is busy.
    let eventsSeen = 0;
    const frames: SinkFrame[] = [];
    let release!: () => void;
    const held = new Promise<void>((res) => release = res);
    let stuck = true;
    const staller = attachSink(
      r.guest.display$.pipe(map((e) => (eventsSeen++, e))),
      {
        name: "staller",
        frame: (f) => {
          frames.push(f);
          // The first frame never returns until released; the test's only way out.
          return stuck ? held : undefined;
        },
      },
      log,
    );
    await waitFor(() => frames.length === 1, "the stalled sink's first frame");
    const [g0, s0, e0] = [r.sim.lastFrame, other.frames, eventsSeen];
    await sleep(1500);
    const guestFrames = r.sim.lastFrame - g0, otherFrames = other.frames - s0;
    const events = eventsSeen - e0;
    assert(guestFrames >= 60, `the guest drew ${guestFrames} frames in 1.5 s at 120 fps`);
    assert(otherFrames >= 40, `the other sink got ${otherFrames} frames meanwhile`);
    assert(events >= 40, `${events} damage events reached the stalled sink's subscription`);
    assertEquals(frames.length, 1, "no frame for a sink that has not returned");

    // Released: one coalesced frame (the union of everything since), not `events` queued ones.
    stuck = false;
    const o1 = other.frames;
    release();
    await waitFor(() => frames.length >= 2, "the frame after release");
    await sleep(150);
    const after = frames.length - 1, otherAfter = other.frames - o1;
    assert(
      after <= otherAfter + 2,
      `after release the sink got ${after} frames, the other sink ${otherAfter}: no backlog of ${events}`,
    );
    const merged = frames[1];
    assert(
      merged.region.area() <= 160 * 120 && merged.region.area() > 0,
      `one region within the screen: ${merged.region.area()} pixels`,
    );
    staller.stop();
    assertEquals(await staller.done, "stopped");
    assert(!log.lines.some((l) => l.startsWith("error")), log.lines.join("\n"));
  } finally {
    other.stop();
    await r.stop();
  }
});

Deno.test("isolation: a forever-stalled sink can still be stopped, and its close() runs", async () => {
  const r = await rig(23, { program: "cursor", width: 64, height: 48, rate: 60 });
  const log = memoryLogger();
  const other = counter(r.guest);
  try {
    let closed = false, calls = 0;
    const h = attachSink(r.guest.display$, {
      name: "never",
      frame: () => {
        calls++;
        return new Promise<void>(() => {}); // never settles
      },
      close: () => void (closed = true),
    }, log);
    await waitFor(() => calls === 1, "the first frame");
    const s0 = other.frames;
    await sleep(500);
    assert(other.frames >= s0 + 15, `other sink ${s0} -> ${other.frames}`);
    h.stop();
    assertEquals(await deadline(h.done, 2000, "stop"), "stopped");
    assert(closed, "close() ran");
    assertEquals(calls, 1);
    assert(log.lines.includes("info sink never stopped: stopped"), log.lines.join("\n"));
  } finally {
    other.stop();
    await r.stop();
  }
});
