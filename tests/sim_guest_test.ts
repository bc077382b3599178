import { assert, assertEquals } from "@rxfb/assert";
import { filter, firstValueFrom } from "rxjs";
import type { DisplayEvent, InputEvent } from "../pipeline/events.ts";
import { XENFB_NO_REFRESH, XENFB_PAGE } from "../sources/device/fbif.ts";
import { attach } from "../sources/attach.ts";
import { memoryLogger } from "../sources/log.ts";
import { SimGuest } from "../sources/sim/guest.ts";
import { SimXen } from "../sources/sim/platform.ts";
import { createWorkload } from "../sources/sim/programs/workloads.ts";
import { frameCrc32 } from "../sources/sim/programs/vectors.ts";
import { rig, waitFor } from "./helpers.ts";
import { convertPixels } from "../pipeline/convert_pixels.ts";
import { XRGB8888 } from "../pipeline/pixel_format.ts";

Deno.test("refresh period: a period while anyone watches, XENFB_NO_REFRESH when the last leaves", async () => {
  const r = await rig(5, { flavour: "minios" });
  try {
    const fe = r.sim.fbfront!;
    await waitFor(() => fe.periods.length >= 1, "first advice");
    assertEquals(fe.periods, [XENFB_NO_REFRESH]); // nobody watches yet
    const seen: DisplayEvent[] = [];
    // Mini-OS holds its updates while told XENFB_NO_REFRESH.
    fe.damage([{ x: 1, y: 1, w: 1, h: 1 }]);
    const a = r.guest.display$.subscribe((e) => seen.push(e));
    const b = r.guest.display$.subscribe();
    await waitFor(() => fe.periods.length >= 2, "period on subscribe");
    assertEquals(fe.periods, [XENFB_NO_REFRESH, 16]);
    // ... and refreshes the whole screen when told a period again.
    await waitFor(() => seen.some((e) => e.type === "damage"), "full refresh");
    assertEquals(seen.find((e) => e.type === "damage"), {
      type: "damage",
      rects: [{ x: 0, y: 0, w: 64, h: 48 }],
    });
    a.unsubscribe();
    await new Promise((res) => setTimeout(res, 10));
    assertEquals(fe.periods.length, 2, "one watcher left: no change");
    b.unsubscribe();
    await waitFor(() => fe.periods.length >= 3, "NO_REFRESH on last unsubscribe");
    assertEquals(fe.periods[2], XENFB_NO_REFRESH);
    const before = r.log.length;
    fe.damage([{ x: 2, y: 2, w: 1, h: 1 }]);
    await new Promise((res) => setTimeout(res, 10));
    const idx = new Uint32Array(fe.page.buffer, 0, 4);
    assertEquals(idx[XENFB_PAGE.out_prod / 4], idx[XENFB_PAGE.out_cons / 4], "nothing sent");
    assertEquals(r.log.length, before);
  } finally {
    await r.stop();
  }
});

Deno.test("fbfront (Linux): updates merge into one box while the ring is full, flushed on notify", async () => {
  const r = await rig(5);
  try {
    const fe = r.sim.fbfront!;
    const seen: DisplayEvent[] = [];
    const sub = r.guest.display$.subscribe((e) => seen.push(e));
    // 60 draws in one go: 51 fill the ring, the rest merge into one pending box.
    for (let i = 0; i < 60; i++) fe.damage([{ x: i % 64, y: i % 48, w: 1, h: 1 }]);
    await waitFor(() => seen.filter((e) => e.type === "damage").length >= 2, "flush after notify");
    const rects = seen.flatMap((e) => e.type === "damage" ? e.rects : []);
    assertEquals(rects.length, 52, "51 single updates + 1 merged box");
    assertEquals(rects[51], { x: 51, y: 3, w: 9, h: 9 });
    sub.unsubscribe();
  } finally {
    await r.stop();
  }
});

Deno.test("fbfront (Linux, mmap drawing): damage arrives as full-width row bands of the touched pages", async () => {
  const r = await rig(5, { damage: "mmap", width: 64, height: 48 });
  try {
    const seen: DisplayEvent[] = [];
    const sub = r.guest.display$.subscribe((e) => seen.push(e));
    r.sim.fbfront!.damage([{ x: 10, y: 20, w: 1, h: 1 }]); // byte 20*256+40 = page 1
    await waitFor(() => seen.length > 1, "damage");
    assertEquals(seen[1], { type: "damage", rects: [{ x: 0, y: 16, w: 64, h: 16 }] });
    sub.unsubscribe();
  } finally {
    await r.stop();
  }
});

Deno.test("guest reboot: the backend reconnects and subscribers see a fresh resize", async () => {
  const r = await rig(5);
  try {
    const seen: DisplayEvent[] = [];
    const sub = r.guest.display$.subscribe((e) => seen.push(e));
    const firstBytes = r.guest.framebuffer()!.bytes;
    await r.sim.reboot();
    await waitFor(() => seen.filter((e) => e.type === "resize").length >= 2, "second resize");
    const again = seen.filter((e) => e.type === "resize")[1];
    assert(again.type === "resize" && again.fb.bytes !== firstBytes, "a new mapping");
    // The rebooted guest draws and we see it.
    r.sim.fbfront!.damage([{ x: 0, y: 0, w: 3, h: 3 }]);
    await waitFor(() => seen.at(-1)?.type === "damage", "damage after reboot");
    assert(r.log.some((l) => l.includes("frontend Closed")), r.log.join("\n"));
    assert(r.log.some((l) => l.includes("resetting")));
    await waitFor(() => r.xen.platform().memory.liveMappings === 4, "old pages unmapped");
    sub.unsubscribe();
  } finally {
    await r.stop();
  }
});

Deno.test("domain destroyed: the backend unmaps everything; another guest goes on", async () => {
  const xen = new SimXen();
  const a = await rig(5, {}, xen);
  const b = await rig(6, {}, xen);
  try {
    await a.sim.stop();
    await xen.destroyDomain(5);
    await waitFor(() => a.guest.framebuffer() === undefined, "unmapped");
    await waitFor(() => xen.platform().memory.liveMappings === 4, "only guest 6 mapped");
    const seen: DisplayEvent[] = [];
    const sub = b.guest.display$.subscribe((e) => seen.push(e));
    b.sim.fbfront!.damage([{ x: 0, y: 0, w: 1, h: 1 }]);
    await waitFor(() => seen.length > 1, "guest 6 damage");
    sub.unsubscribe();
  } finally {
    await a.guest.close();
    await b.stop();
  }
});

Deno.test("input: keys, absolute positions, buttons and wheel reach the guest's ring", async () => {
  const r = await rig(5);
  try {
    await waitFor(() => r.guest.pointerIsAbsolute(), "absolute pointer");
    const sent: InputEvent[] = [
      { type: "key", code: 30, down: true },
      { type: "key", code: 30, down: false },
      { type: "position", x: 10, y: 20, dz: 0 },
      { type: "key", code: 0x110, down: true },
      { type: "motion", dx: 5, dy: -3, dz: 1 }, // becomes a position on an absolute guest
      { type: "key", code: 0x110, down: false },
    ];
    for (const e of sent) r.guest.input.next(e);
    await waitFor(() => r.sim.inputs.length === 6, "6 events");
    assertEquals(r.sim.inputs, [
      sent[0],
      sent[1],
      sent[2],
      sent[3],
      { type: "position", x: 15, y: 17, dz: 1 },
      sent[5],
    ]);
    // Codes outside the kernel's range are not sent.
    r.guest.input.next({ type: "key", code: 0, down: true });
    r.guest.input.next({ type: "key", code: 0x300, down: true });
    r.guest.input.next({ type: "key", code: 2, down: true });
    await waitFor(() => r.sim.inputs.length === 7, "7 events");
    assertEquals(r.sim.inputs[6], { type: "key", code: 2, down: true });
  } finally {
    await r.stop();
  }
});

Deno.test("input: a guest that probed before the backend wrote its features gets a relative pointer", async () => {
  const xen = new SimXen();
  const sim = await SimGuest.create(xen, 5, { program: "none", width: 64, height: 48 });
  await sim.boot(); // kbdfront probes now: no feature-abs-pointer yet
  const guest = await attach({ domid: 5, platform: xen.platform(), log: memoryLogger() });
  try {
    await guest.connected();
    await waitFor(() => sim.kbdfront !== undefined, "kbdfront");
    await new Promise((res) => setTimeout(res, 20));
    assertEquals(guest.pointerIsAbsolute(), false);
    guest.input.next({ type: "position", x: 10, y: 10 });
    guest.input.next({ type: "position", x: 13, y: 6, dz: -1 });
    await waitFor(() => sim.inputs.length === 2, "2 motions");
    assertEquals(sim.inputs, [
      { type: "motion", dx: 10, dy: 10, dz: 0 },
      { type: "motion", dx: 3, dy: -4, dz: -1 },
    ]);
  } finally {
    await sim.stop();
    await guest.close();
  }
});

Deno.test("input: --input-log gets one JSON line per event the guest read", async () => {
  const path = await Deno.makeTempFile({ suffix: ".jsonl" });
  const r = await rig(5, { inputLog: path });
  try {
    await waitFor(() => r.guest.pointerIsAbsolute(), "absolute pointer");
    r.guest.input.next({ type: "key", code: 28, down: true });
    r.guest.input.next({ type: "position", x: 3, y: 4, dz: 2 });
    await waitFor(() => r.sim.inputs.length === 2, "2 events");
    const lines = (await Deno.readTextFile(path)).trim().split("\n").map((l) => JSON.parse(l));
    assertEquals(lines, [
      { type: "key", code: 28, down: true },
      { type: "position", x: 3, y: 4, dz: 2 },
    ]);
  } finally {
    await r.stop();
    await Deno.remove(path);
  }
});

Deno.test("sim guest program: a workload drawn in the Worker shows the spec's pixels", async () => {
  const r = await rig(5, { program: "cursor", width: 320, height: 200, rate: 200 });
  try {
    const sub = r.guest.display$.subscribe();
    await waitFor(() => r.sim.lastFrame >= 3, "frames", 10000);
    await r.sim.stop(); // freeze the guest, then compare with a reference draw
    const fb = r.guest.framebuffer()!;
    const px = new Uint32Array(fb.bytes.buffer, fb.bytes.byteOffset, 320 * 200);
    const drawn = (n: number) => {
      const ref = new Uint32Array(320 * 200);
      createWorkload("cursor", 320, 200).drawFrame(
        { px: ref, width: 320, height: 200, strideWords: 320 },
        n,
        0,
      );
      // The stamp's time differs; everything below the stamp must be equal.
      return ref.subarray(320 * 16).every((v, i) => px[320 * 16 + i] === v);
    };
    const n = r.sim.lastFrame;
    assert(drawn(n) || drawn(n + 1) || drawn(n + 2), `frame ${n} or the next`);
    const target = { px, width: 320, height: 200, strideWords: 320 };
    assert(frameCrc32(target).length === 8);
    sub.unsubscribe();
  } finally {
    await r.stop();
  }
});

for (const depth of [8, 16, 24]) {
  Deno.test(`sim guest of depth ${depth}: the framebuffer holds the program's pixels in that format`, async () => {
    const r = await rig(5, { program: "desktop", width: 64, height: 32, depth, rate: 100 });
    try {
      const sub = r.guest.display$.subscribe();
      await waitFor(() => r.sim.lastFrame >= 1, "frames", 10000);
      await r.sim.stop();
      const fb = r.guest.framebuffer()!;
      assertEquals(fb.format.bitsPerPixel, depth);
      // The Worker may have drawn a frame it had not announced yet when stopped.
      const matches = (n: number) => {
        const ref = new Uint32Array(64 * 32);
        createWorkload("desktop", 64, 32).drawFrame(
          { px: ref, width: 64, height: 32, strideWords: 64 },
          n,
          0,
        );
        const refFb = {
          width: 64,
          height: 32,
          stride: 256,
          format: XRGB8888,
          bytes: new Uint8Array(ref.buffer),
        };
        const below = { x: 0, y: 16, w: 64, h: 16 };
        if (depth === 24) {
          for (let i = 0; i < 64 * 16; i++) {
            const v = ref[64 * 16 + i], at = 16 * fb.stride + i * 3;
            if (
              fb.bytes[at] !== (v & 255) || fb.bytes[at + 1] !== ((v >> 8) & 255) ||
              fb.bytes[at + 2] !== ((v >> 16) & 255)
            ) return false;
          }
          return true;
        }
        const want = convertPixels(refFb, below, fb.format);
        const got = convertPixels(fb, below, fb.format);
        return want.every((b, i) => got[i] === b);
      };
      const n = r.sim.lastFrame;
      assert(matches(n) || matches(n + 1) || matches(n + 2), `frame ${n} or the next`);
      sub.unsubscribe();
    } finally {
      await r.stop();
    }
  });
}

Deno.test("guest resize: a smaller mode reaches subscribers as a resize with the same stride", async () => {
  const r = await rig(5, { width: 64, height: 48 });
  try {
    const next = firstValueFrom(
      r.guest.display$.pipe(filter((e) => e.type === "resize" && e.fb.width === 32)),
    );
    assert(r.sim.resize(32, 24));
    const e = await next;
    assert(e.type === "resize");
    assertEquals([e.fb.width, e.fb.height, e.fb.stride], [32, 24, 256]);
    assertEquals(r.sim.resize(128, 24), false, "larger than the boot mode is refused");
  } finally {
    await r.stop();
  }
});
