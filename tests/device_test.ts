import { assert, assertEquals } from "@rxfb/assert";
import type { DisplayEvent } from "../pipeline/events.ts";
import {
  XENFB_PAGE,
  XENFB_RESIZE,
  XENFB_TYPE_RESIZE,
  XENFB_TYPE_UPDATE,
  XENFB_UPDATE,
} from "../sources/device/fbif.ts";
import { rig, waitFor } from "./helpers.ts";
import { SimXen } from "../sources/sim/platform.ts";
import { SimGuest } from "../sources/sim/guest.ts";
import { attach } from "../sources/attach.ts";
import { memoryLogger } from "../sources/log.ts";

function update(x: number, y: number, w: number, h: number) {
  return (dv: DataView, at: number) => {
    dv.setInt32(at + XENFB_UPDATE.x, x, true);
    dv.setInt32(at + XENFB_UPDATE.y, y, true);
    dv.setInt32(at + XENFB_UPDATE.width, w, true);
    dv.setInt32(at + XENFB_UPDATE.height, h, true);
  };
}

Deno.test("vfb/vkbd handshake: both sides Connected, keys as Linux and QEMU write them", async () => {
  const r = await rig(5);
  try {
    const xs = r.xen.xenstored.connect(0);
    const be = "/local/domain/0/backend/vfb/5/0", fe = "/local/domain/5/device/vfb/0";
    await waitFor(() => r.guest.phases.includes("connected"), "vfb connected");
    assertEquals(await xs.read(`${be}/state`), "4");
    assertEquals(await xs.read(`${fe}/state`), "4");
    assertEquals(await xs.read(`${be}/feature-resize`), "1");
    assertEquals(await xs.read(`${be}/request-update`), "1");
    assertEquals(await xs.read(`${be}/hotplug-status`), "connected");
    assertEquals(await xs.read(`${fe}/protocol`), "x86_64-abi");
    const kbe = "/local/domain/0/backend/vkbd/5/0", kfe = "/local/domain/5/device/vkbd/0";
    await waitFor(() => r.guest.pointerIsAbsolute(), "absolute pointer");
    assertEquals(await xs.read(`${kbe}/feature-abs-pointer`), "1");
    assertEquals(await xs.read(`${kfe}/request-abs-pointer`), "1");
    assertEquals(await xs.read(`${kbe}/state`), "4");
    const fb = r.guest.framebuffer()!;
    assertEquals([fb.width, fb.height, fb.stride, fb.format.bitsPerPixel], [64, 48, 256, 32]);
  } finally {
    await r.stop();
  }
});

Deno.test("vfb: an UPDATE reaches a subscriber as damage, with the guest's pixels readable", async () => {
  const r = await rig(5);
  try {
    const seen: DisplayEvent[] = [];
    const sub = r.guest.display$.subscribe((e) => seen.push(e));
    assertEquals(seen[0].type, "resize");
    const fe = r.sim.fbfront!;
    new Uint32Array(fe.fb.sab)[10 * 64 + 3] = 0x00ff8040;
    fe.damage([{ x: 3, y: 10, w: 2, h: 1 }]);
    await waitFor(() => seen.length > 1, "damage");
    assertEquals(seen[1], { type: "damage", rects: [{ x: 3, y: 10, w: 2, h: 1 }] });
    const fb = r.guest.framebuffer()!;
    assertEquals([...fb.bytes.subarray(10 * 256 + 12, 10 * 256 + 16)], [0x40, 0x80, 0xff, 0]);
    sub.unsubscribe();
  } finally {
    await r.stop();
  }
});

Deno.test("vfb: bogus rectangles are clipped or dropped, never passed on", async () => {
  const r = await rig(5);
  try {
    const seen: DisplayEvent[] = [];
    const sub = r.guest.display$.subscribe((e) => seen.push(e));
    const fe = r.sim.fbfront!;
    fe.putOut(XENFB_TYPE_UPDATE, update(-10, -10, 20, 20)); // clipped to 0,0 10x10
    fe.putOut(XENFB_TYPE_UPDATE, update(60, 40, 100, 100)); // clipped to 60,40 4x8
    fe.putOut(XENFB_TYPE_UPDATE, update(0, 0, 0, 5)); // empty: dropped
    fe.putOut(XENFB_TYPE_UPDATE, update(0, 0, -5, 5)); // negative: dropped
    fe.putOut(XENFB_TYPE_UPDATE, update(100, 100, 5, 5)); // outside: dropped
    fe.putOut(XENFB_TYPE_UPDATE, update(0x7fffffff, 0, 0x7fffffff, 1)); // overflow bait
    fe.putOut(9, () => {}); // unknown type: ignored
    await waitFor(() => seen.length > 1, "damage");
    assertEquals(seen[1], {
      type: "damage",
      rects: [{ x: 0, y: 0, w: 10, h: 10 }, { x: 60, y: 40, w: 4, h: 8 }],
    });
    assert(r.log.some((l) => l.includes("bogus update")), r.log.join("\n"));
    assert(r.log.some((l) => l.includes("unknown out event type 9")));
    sub.unsubscribe();
  } finally {
    await r.stop();
  }
});

Deno.test("vfb: out ring indices running ahead disconnect the guest with a logged reason", async () => {
  const xen = new SimXen();
  const bad = await rig(5, {}, xen);
  const good = await rig(6, {}, xen);
  try {
    const idx = new Uint32Array(bad.sim.fbfront!.page.buffer, 0, 4);
    Atomics.store(idx, XENFB_PAGE.out_prod / 4, 1000);
    bad.sim.fbfront!.notify();
    await waitFor(() => bad.guest.framebuffer() === undefined, "disconnect");
    assert(bad.log.some((l) => l.includes("runs 1000 events ahead")), bad.log.join("\n"));
    const xs = xen.xenstored.connect(0);
    await waitFor(() => bad.log.some((l) => l.includes("backend Closing")), "Closing");
    assertEquals(await xs.read("/local/domain/0/backend/vfb/5/0/state"), "5");
    assert((await xs.read("/local/domain/0/backend/vfb/5/0/error"))!.includes("ahead"));
    // The other guest does not notice.
    const seen: DisplayEvent[] = [];
    const sub = good.guest.display$.subscribe((e) => seen.push(e));
    good.sim.fbfront!.damage([{ x: 1, y: 1, w: 1, h: 1 }]);
    await waitFor(() => seen.length > 1, "damage on the other guest");
    sub.unsubscribe();
  } finally {
    await bad.stop();
    await good.stop();
  }
});

Deno.test("vfb: a RESIZE inside the mapping is followed; one outside is refused", async () => {
  const r = await rig(5, { width: 64, height: 48 });
  try {
    const seen: DisplayEvent[] = [];
    const sub = r.guest.display$.subscribe((e) => seen.push(e));
    const fe = r.sim.fbfront!;
    const resize = (w: number, h: number, stride: number, depth: number, offset: number) =>
      fe.putOut(XENFB_TYPE_RESIZE, (dv, at) => {
        dv.setInt32(at + XENFB_RESIZE.width, w, true);
        dv.setInt32(at + XENFB_RESIZE.height, h, true);
        dv.setInt32(at + XENFB_RESIZE.stride, stride, true);
        dv.setInt32(at + XENFB_RESIZE.depth, depth, true);
        dv.setInt32(at + XENFB_RESIZE.offset, offset, true);
      });
    resize(32, 24, 256, 32, 0);
    await waitFor(() => seen.length > 1, "resize");
    const ev = seen[1];
    assert(ev.type === "resize");
    assertEquals([ev.fb.width, ev.fb.height, ev.fb.stride], [32, 24, 256]);
    resize(64, 48, 256, 12, 0); // unsupported depth
    resize(64, 48, 1 << 30, 32, 0); // stride beyond the framebuffer
    resize(64, 48, 256, 32, 1 << 30); // offset beyond
    resize(4000, 4000, 256, 32, 0); // clamped to what fits: 64x48
    await waitFor(() => seen.length > 2, "clamped resize");
    const last = seen[2];
    assert(last.type === "resize");
    assertEquals([last.fb.width, last.fb.height], [64, 48]);
    assertEquals(r.log.filter((l) => l.includes("refused")).length, 3, r.log.join("\n"));
    sub.unsubscribe();
  } finally {
    await r.stop();
  }
});

/** Boots a guest and corrupts its shared page before the backend attaches and maps it. */
async function hostileConnect(mutate: (page: DataView) => void): Promise<string[]> {
  const xen = new SimXen();
  const sim = await SimGuest.create(xen, 5, { program: "none", width: 64, height: 48 });
  await sim.boot();
  mutate(new DataView(sim.fbfront!.page.buffer));
  const logger = memoryLogger();
  const guest = await attach({ domid: 5, platform: xen.platform(), log: logger });
  try {
    await waitFor(
      () => logger.lines.some((l) => l.includes("refusing") || l.includes("mapped 64x48")),
      "backend verdict",
    );
    if (logger.lines.some((l) => l.includes("refusing"))) {
      // Nothing of the refused vfb stays mapped: at most the keyboard's page.
      await waitFor(() => xen.platform().memory.liveMappings <= 1, "vfb pages unmapped");
    }
    return logger.lines;
  } finally {
    await sim.stop();
    await guest.close();
  }
}

Deno.test("vfb: a hostile shared page is refused with a reason, nothing mapped", async (t) => {
  const cases: [string, (dv: DataView) => void, string][] = [
    ["depth 12", (dv) => dv.setUint8(XENFB_PAGE.depth, 12), "unsupported depth 12"],
    [
      "huge mem_length",
      (dv) => dv.setUint32(XENFB_PAGE.mem_length, 0xffffffff, true),
      "mem_length",
    ],
    ["zero mem_length", (dv) => dv.setUint32(XENFB_PAGE.mem_length, 0, true), "mem_length 0"],
    ["zero line_length", (dv) => dv.setUint32(XENFB_PAGE.line_length, 0, true), "line length 0"],
    ["pd[0] unmapped", (dv) => dv.setUint32(XENFB_PAGE.pd64, 12345, true), "does not map"],
    [
      "pd[0] beyond 2^53",
      (dv) => dv.setUint32(XENFB_PAGE.pd64 + 4, 0xffffffff, true),
      "does not map",
    ],
    ["negative width", (dv) => dv.setInt32(XENFB_PAGE.width, -5, true), "empty framebuffer"],
  ];
  for (const [name, mutate, reason] of cases) {
    await t.step(name, async () => {
      const log = await hostileConnect(mutate);
      assert(log.some((l) => l.includes("refusing") && l.includes(reason)), log.join("\n"));
    });
  }
});

Deno.test("vfb: line_length * height beyond mem_length is clamped to the rows that fit", async () => {
  const log = await hostileConnect((dv) => dv.setInt32(XENFB_PAGE.height, 100000, true));
  assert(log.some((l) => l.includes("mapped 64x48")), log.join("\n"));
});
