/**
 * What the VNC server sends for the standard workloads (`../shared/bench/WORKLOADS.md`),
 * end to end through a real RFB client: a scrolling terminal becomes CopyRects
 * plus the new line, damage without change sends only what changed, and every
 * frame arrives pixel-exact. Sizes, not timings: the benchmarks
 * (`deno task bench`, `../shared/bench/peers`) measure speed.
 *
 * The test draws the workload's frames into the guest's framebuffer itself
 * (the guest runs no program) and sends the next one only when the client
 * has the last, so that no frame is ever read half-drawn.
 */
import { assert, assertEquals } from "@rxfb/assert";
import { createWorkload, type WorkloadName } from "../sources/sim/programs/workloads.ts";
import { type RectInfo, RfbClient } from "./client_rfb.ts";
import { vncRig } from "./vnc_rig.ts";
import { EncodePool } from "../sinks/vnc/encode_pool.ts";
import { sleep } from "./client_tools.ts";

const W = 1920, H = 1080;
const ZRLE = 16, TIGHT = 7, RAW = 0, COPYRECT = 1;

/** A guest showing a workload that the test steps frame by frame. */
async function workloadRig(name: WorkloadName) {
  const rig = await vncRig({ width: W, height: H });
  const fb = rig.sim.fbfront!.fb;
  const px = new Uint32Array(fb.sab, fb.byteOffset, (fb.stride / 4) * fb.height);
  const target = { px, width: W, height: H, strideWords: fb.stride / 4 };
  const program = createWorkload(name, W, H);
  let n = 0;
  /** Draws the next frame and tells the backend what changed. */
  const step = () => {
    const rects = program.drawFrame(target, n, 1_000_000 + n * 16_667);
    n++;
    rig.sim.fbfront!.damage(rects);
  };
  step(); // frame 0
  return { rig, px, step };
}

/** Fails unless the client's pixels equal the guest's (32 bpp, the guest's own format). */
function assertSame(c: RfbClient, px: Uint32Array, stride: number, what: string) {
  let bad = 0, first = "";
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const want = px[y * stride + x] & 0xffffff, got = c.fb[y * W + x] & 0xffffff;
      if (want !== got) {
        if (!bad) first = `(${x},${y}) is 0x${got.toString(16)}, want 0x${want.toString(16)}`;
        bad++;
      }
    }
  }
  assertEquals(bad, 0, `${what}: ${bad} pixels differ, first ${first}`);
}

interface Run {
  /** Wire bytes of each update after the first. */
  bytes: number[];
  /** Rectangles of each update after the first. */
  rects: RectInfo[][];
}

/**
 * Connects with `encodings`, takes the first (full) update, then steps the
 * workload `frames` times, reading one update per frame and checking every
 * pixel each time. With `askFirst` the request is made before the frame is
 * drawn (a client waiting for the guest), else after.
 */
async function run(
  name: WorkloadName,
  encodings: number[],
  frames: number,
  askFirst = false,
): Promise<Run> {
  const { rig, px, step } = await workloadRig(name);
  const stride = rig.sim.fbfront!.fb.stride / 4;
  const c = await RfbClient.connect(rig.port, 10_000);
  const out: Run = { bytes: [], rects: [] };
  try {
    await c.handshake();
    await c.setEncodings(encodings);
    await c.request(false);
    await c.update();
    assertSame(c, px, stride, "first update");
    for (let i = 0; i < frames; i++) {
      const before = c.bytesIn;
      if (askFirst) {
        await c.request(true);
        await sleep(5); // the request is in before the damage
        step();
      } else {
        step();
        await c.request(true);
      }
      out.rects.push(await c.update());
      out.bytes.push(c.bytesIn - before);
      assertSame(c, px, stride, `${name} frame ${i + 1}`);
    }
  } finally {
    c.close();
    await rig.stop();
  }
  return out;
}

const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;

for (const [label, enc] of [["ZRLE", ZRLE], ["Tight", TIGHT]] as const) {
  Deno.test(`perf: a scrolling terminal through ${label} is CopyRect + the new line, < 5 KB a frame, exact`, async () => {
    const r = await run("scroll", [enc, COPYRECT], 20);
    for (const [i, rects] of r.rects.entries()) {
      const copies = rects.filter((x) => x.encoding === COPYRECT);
      assertEquals(copies.length, 1, `frame ${i + 1}: one CopyRect (${JSON.stringify(rects)})`);
      // Frame n+1 is frame n moved up 16 rows: the copy takes rows from 16 below.
      assert(
        copies[0].h >= H - 64,
        `frame ${i + 1}: the copy covers the screen: ${JSON.stringify(copies[0])}`,
      );
      // Beside the copy, only the top line (under the stamp) and the new bottom line.
      const pixels = rects.filter((x) => x.encoding === enc).reduce((s, x) => s + x.w * x.h, 0);
      assert(pixels <= 2 * 16 * W, `frame ${i + 1}: ${pixels} pixels sent besides the copy`);
    }
    const kb = mean(r.bytes) / 1024;
    assert(kb < 5, `${kb.toFixed(2)} KB a frame`);
  });
}

Deno.test("perf: a client waiting for the guest gets whole frames (the scroll's copy and its new line in one update)", async () => {
  const r = await run("scroll", [ZRLE, COPYRECT], 10, true);
  for (const [i, rects] of r.rects.entries()) {
    assertEquals(rects.filter((x) => x.encoding === COPYRECT).length, 1, `frame ${i + 1}`);
  }
});

Deno.test("perf: a client without CopyRect gets the scroll as pixels, exact", async () => {
  const r = await run("scroll", [ZRLE], 5);
  assert(r.rects.every((u) => u.every((x) => x.encoding === ZRLE)), "no CopyRect");
  assert(mean(r.bytes) > 20 * 1024, "the whole screen's text, not a copy");
});

Deno.test("perf: damage without change sends only the stamp's changed cells (static, < 1 KB a frame)", async () => {
  for (const enc of [ZRLE, RAW]) {
    const r = await run("static", [enc, COPYRECT], 10);
    for (const [i, rects] of r.rects.entries()) {
      // The whole screen is damaged every frame; only cells of the 256x16 stamp change.
      for (const x of rects) {
        assert(x.x + x.w <= 256 && x.y + x.h <= 16, `frame ${i + 1}: ${JSON.stringify(x)}`);
      }
    }
    if (enc === ZRLE) assert(mean(r.bytes) < 1024, `${mean(r.bytes)} bytes a frame`);
  }
});

Deno.test("perf: Raw with CopyRect paints the stamp's cells from cells the viewer shows (static, < 1 KB a frame), exact", async () => {
  const r = await run("static", [RAW, COPYRECT], 40);
  // The first frames teach the server where the viewer shows white and black cells.
  const later = r.bytes.slice(10);
  assert(mean(later) < 1024, `${mean(later).toFixed(0)} bytes a frame: ${later}`);
  const copies = r.rects.slice(10).flat().filter((x) => x.encoding === COPYRECT);
  assert(copies.length >= 30 * 4, `${copies.length} CopyRects in 30 frames`);
  assert(copies.every((x) => x.w === 8 && x.h === 8), "8x8 cells");
  // Without CopyRect, the cells go as pixels.
  const plain = await run("static", [RAW], 12);
  assert(plain.rects.flat().every((x) => x.encoding === RAW), "no CopyRect");
  assert(mean(plain.bytes.slice(2)) > 2048, `${mean(plain.bytes.slice(2))} bytes a frame`);
});

Deno.test("perf: Raw with CopyRect: a moving block's background comes by copy, exact", async () => {
  const cursor = await run("cursor", [RAW, COPYRECT], 25);
  const moved = cursor.rects.slice(5).flat().filter((x) => x.encoding === COPYRECT);
  assert(moved.length >= 20 * 16, `${moved.length} CopyRects: the background the block leaves`);
  assert(mean(cursor.bytes.slice(5)) < 12 * 1024, `${mean(cursor.bytes.slice(5))} bytes a frame`);
});

Deno.test("perf: Raw with CopyRect: cells copied in the update that also scrolls, after the scroll's copy, exact", async () => {
  // A terminal (rows 16..1080, scrolled 16 rows a frame) under a row of 8x8 cells that flip:
  // each update holds the scroll's CopyRect, then cells copied from unchanged cells.
  const rig = await vncRig({ width: W, height: H });
  const fb = rig.sim.fbfront!.fb;
  const stride = fb.stride / 4;
  const px = new Uint32Array(fb.sab, fb.byteOffset, stride * H);
  const line = (y: number, n: number) => {
    for (let x = 0; x < W; x++) {
      px[y * stride + x] = Math.imul(n * 7919 + (x >> 3), 0x9e3779b1) >>> 8;
    }
  };
  const cells = (n: number) => {
    for (let i = 0; i < 64; i++) {
      // Cells 0..39 flip at random; 40..63 stay, alternating.
      const bit = i < 40 ? (Math.imul(n + 1, 0x9e3779b1) >>> (i % 24)) & 1 : i & 1;
      const c = bit ? 0xffffff : 0x202020;
      for (let y = 0; y < 8; y++) px.fill(c, y * stride + i * 8, y * stride + i * 8 + 8);
    }
  };
  let n = 0;
  for (let y = 16; y < H; y++) line(y, y);
  cells(0);
  rig.sim.fbfront!.damage([{ x: 0, y: 0, w: W, h: H }]);
  const c = await RfbClient.connect(rig.port, 10_000);
  try {
    await c.handshake();
    await c.setEncodings([RAW, COPYRECT]);
    await c.request(false);
    await c.update();
    let both = 0;
    for (let f = 1; f <= 20; f++) {
      n++;
      px.copyWithin(16 * stride, 32 * stride, H * stride); // the terminal scrolls
      for (let y = H - 16; y < H; y++) line(y, H + n * 16 + y);
      cells(n);
      rig.sim.fbfront!.damage([{ x: 0, y: 0, w: W, h: H }]);
      await c.request(true);
      const rects = await c.update();
      assertSame(c, px, stride, `frame ${f}`);
      const scroll = rects.filter((x) => x.encoding === COPYRECT && x.w === W);
      const blocks = rects.filter((x) => x.encoding === COPYRECT && x.w === 8);
      if (scroll.length === 1 && blocks.length > 0) both++;
    }
    assert(both >= 10, `${both} of 20 updates had the scroll's copy and copied cells`);
  } finally {
    c.close();
    await rig.stop();
  }
});

Deno.test("perf: a moving block (cursor) sends the two blocks and the stamp, exact", async () => {
  const r = await run("cursor", [ZRLE, COPYRECT], 10);
  for (const [i, rects] of r.rects.entries()) {
    const area = rects.reduce((s, x) => s + x.w * x.h, 0);
    assert(area <= 2 * 32 * 32 + 256 * 16, `frame ${i + 1}: ${area} pixels`);
  }
});

Deno.test("perf: every pixel changing (desktop) through Raw, ZRLE and Tight stays exact", async () => {
  for (const enc of [RAW, ZRLE, TIGHT]) {
    const r = await run("desktop", [enc, COPYRECT], 3);
    // A gradient repeats every 1024 rows: never mistaken for a scroll.
    assert(r.rects.every((u) => u.every((x) => x.encoding !== COPYRECT)), "no CopyRect");
  }
});

for (const [label, enc] of [["ZRLE", ZRLE], ["Tight", TIGHT]] as const) {
  Deno.test(`perf: with the encoding workers up, full-screen ${label} updates are encoded in bands, exact`, async () => {
    const pool = EncodePool.acquire();
    if (!pool) return; // no workers here
    try {
      for (let i = 0; i < 200 && !pool.ready; i++) await new Promise((r) => setTimeout(r, 25));
      assert(pool.ready, "the workers started");
      const before = pool.jobs;
      const r = await run("desktop", [enc], 4);
      assert(pool.jobs - before >= 2 * 4, `${pool.jobs - before} jobs for 4 frames`);
      for (const [i, rects] of r.rects.entries()) {
        assert(rects.length >= 2, `frame ${i + 1}: ${rects.length} rectangle(s)`);
        assertEquals(rects.reduce((s, x) => s + x.w * x.h, 0), W * H, "the screen, once");
      }
    } finally {
      EncodePool.release();
    }
  });
}

for (const [label, enc] of [["ZRLE", ZRLE], ["Tight", TIGHT]] as const) {
  Deno.test(`perf: video through ${label}: pixels that hardly deflate go stored after a probe, exact`, async () => {
    const r = await run("video", [enc], 8);
    // 640x360 of 3-byte pixels: stored, an update is at least that; deflated, 2-5 % less.
    const plain = 640 * 360 * 3;
    const stored = r.bytes.filter((b) => b >= plain).length;
    assert(stored >= 5, `${stored} of 8 updates stored: ${r.bytes}`);
  });
}
