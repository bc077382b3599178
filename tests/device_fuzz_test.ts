/**
 * Fuzzes the vfb backend with a hostile guest: 1,000,000 random and mutated
 * OUT ring events (indices, sizes, depths), out_prod running ahead of the
 * ring, and hostile shared pages (header fields, pd[] and directory entries,
 * frontend keys) mapped at connect. Checked throughout: nothing escapes the
 * backend, every framebuffer and rectangle it hands out lies inside the
 * mapping (the pixels are read), its output matches an independent model of
 * the protocol's rules, no mapping leaks, and a second guest in the same
 * process keeps working.
 *
 * RXFB_FUZZ_SEED=<n> replays a run (the seed is printed); RXFB_FUZZ_EVENTS=<n>
 * changes how many events are driven.
 */
import { assert, assertEquals } from "@rxfb/assert";
import { config } from "rxjs";
import type { DisplayEvent } from "../pipeline/events.ts";
import type { Framebuffer } from "../pipeline/framebuffer.ts";
import type { Rect } from "../pipeline/rect.ts";
import { attach } from "../sources/attach.ts";
import {
  XENFB_EVENT_SIZE,
  XENFB_IN_RING_OFFS,
  XENFB_IN_RING_SIZE,
  XENFB_OUT_RING_LEN,
  XENFB_OUT_RING_OFFS,
  XENFB_PAGE,
  XENFB_RESIZE,
  XENFB_TYPE_RESIZE,
  XENFB_TYPE_UPDATE,
  XENFB_UPDATE,
} from "../sources/device/fbif.ts";
import type { Logger } from "../sources/log.ts";
import { PAGE_SIZE } from "../sources/platform.ts";
import { SimGuest } from "../sources/sim/guest.ts";
import { SimXen } from "../sources/sim/platform.ts";
import { waitFor } from "./helpers.ts";
import { mulberry32 } from "./prng.ts";

/** A numeric setting from the environment (unset, unreadable or not a number: `fallback`). */
function setting(name: string, fallback: number): number {
  let v: string | undefined;
  try {
    v = Deno.env.get(name);
  } catch {
    v = undefined; // no --allow-env
  }
  const n = Number(v);
  return v !== undefined && v.trim() !== "" && Number.isSafeInteger(n) && n >= 0 ? n : fallback;
}

const EVENTS = setting("RXFB_FUZZ_EVENTS", 1_000_000);
const SEED = setting("RXFB_FUZZ_SEED", (Date.now() ^ (Math.random() * 2 ** 32)) >>> 0) >>> 0;

/** The backend's default limit on framebuffer memory (VfbOptions.maxFbBytes). */
const MAX_FB_BYTES = 128 << 20;
const OUT_CONS = XENFB_PAGE.out_cons / 4, OUT_PROD = XENFB_PAGE.out_prod / 4;
const RING = XENFB_OUT_RING_LEN;

/** Logs nothing; counts what the backend says, keeps errors and the last lines. */
function tallyLogger() {
  const counts = new Map<string, number>();
  const recent: string[] = [];
  /** The last lines about the connection (not per-event warnings). */
  const story: string[] = [];
  const unexpected: string[] = [];
  const lastOf = new Map<string, string>();
  const keys = [
    "refusing the frontend: ",
    "disconnecting: ",
    "mapped ",
    "unmapped framebuffer",
    "guest resized",
    "refused: ",
    "bogus update",
    "clipped",
    "unknown out event",
  ];
  let lines = 0;
  const make = (prefix: string): Logger => {
    const add = (level: string) => (m: string) => {
      lines++;
      for (const k of keys) {
        if (k === "mapped " ? m.startsWith(k) : m.includes(k)) {
          counts.set(k, (counts.get(k) ?? 0) + 1);
          lastOf.set(k, m);
        }
      }
      const line = `${level} ${prefix}${m}`;
      if (recent.push(line) > 40) recent.shift();
      if (!/guest resized|refused: |bogus update|clipped|unknown out event/.test(m)) {
        if (story.push(line) > 20) story.shift();
      }
      if (
        level === "error" && !m.startsWith("disconnecting: ") &&
        !m.startsWith("refusing the frontend: ")
      ) unexpected.push(line);
    };
    return {
      info: add("info"),
      warn: add("warn"),
      error: add("error"),
      child: (p) => make(`${prefix}${p}: `),
    };
  };
  return {
    logger: make(""),
    count: (k: string) => counts.get(k) ?? 0,
    last: (k: string) => lastOf.get(k) ?? "",
    get lines() {
      return lines;
    },
    recent,
    story,
    unexpected,
  };
}

/** What the backend's output must be, as items: a damage rectangle or a new framebuffer. */
type Item =
  | { kind: "rect"; x: number; y: number; w: number; h: number }
  | { kind: "fb"; width: number; height: number; stride: number; bpp: number; len: number };

/**
 * The geometry a guest's request must yield by the protocol's rules, as
 * QEMU's xenfb_configure_fb states them, written independently of the
 * backend: depth 8/16/24/32, 1 <= stride <= fbLen, 0 <= offset < fbLen,
 * width clamped to the stride, height to the rows whose pixels fit.
 */
function expectedFb(
  fbLen: number,
  width: number,
  height: number,
  depth: number,
  stride: number,
  offset: number,
): Item | undefined {
  if (depth !== 8 && depth !== 16 && depth !== 24 && depth !== 32) return undefined;
  if (stride < 1 || stride > fbLen || offset < 0 || offset >= fbLen) return undefined;
  const bpp = depth / 8;
  const w = Math.min(Math.max(width, 0), Math.floor(stride / bpp));
  const room = fbLen - offset - w * bpp;
  const rows = room >= 0 ? Math.floor(room / stride) + 1 : 0;
  const h = Math.min(Math.max(height, 0), rows);
  if (w === 0 || h === 0) return undefined;
  return {
    kind: "fb",
    width: Math.min(w, 65535),
    height: Math.min(h, 65535),
    stride,
    bpp,
    len: fbLen - offset,
  };
}

/** Fails with the first difference between two item lists, and what surrounds it. */
function assertSameItems(got: Item[], want: Item[], what: () => string) {
  const show = (l: Item[], i: number) =>
    l.slice(Math.max(0, i - 2), i + 3).map((x) => JSON.stringify(x)).join("\n    ");
  for (let i = 0; i < Math.max(got.length, want.length); i++) {
    if (JSON.stringify(got[i]) !== JSON.stringify(want[i])) {
      throw new Error(
        `${what()}\nitem ${i} of ${got.length} differs (${want.length} expected)\n` +
          `  got:\n    ${show(got, i)}\n  expected:\n    ${show(want, i)}`,
      );
    }
  }
}

/** The raw events of a batch, one a line, for failure messages. */
function describe(dv: DataView, n: number): string {
  const lines = [];
  for (let i = 0; i < n; i++) {
    const at = i * XENFB_EVENT_SIZE;
    const f = [4, 8, 12, 16, 20].map((o) => dv.getInt32(at + o, true));
    lines.push(`  ${i}: type ${dv.getUint8(at)} ${f.join(" ")}`);
  }
  return lines.join("\n");
}

function fbItem(fb: Framebuffer): Item {
  return {
    kind: "fb",
    width: fb.width,
    height: fb.height,
    stride: fb.stride,
    bpp: fb.format.bitsPerPixel / 8,
    len: fb.bytes.length,
  };
}

/** The items a batch of raw slots must produce on a framebuffer `cur` of `fbLen` mapped bytes. */
function expectedBatch(
  buf: DataView,
  n: number,
  cur: { width: number; height: number },
  fbLen: number,
): Item[] {
  const out: Item[] = [];
  let { width, height } = cur;
  for (let i = 0; i < n; i++) {
    const at = i * XENFB_EVENT_SIZE;
    const type = buf.getUint8(at);
    const f = (o: number) => buf.getInt32(at + o, true);
    if (type === XENFB_TYPE_UPDATE) {
      const x = f(XENFB_UPDATE.x), y = f(XENFB_UPDATE.y);
      const x1 = Math.max(0, x), y1 = Math.max(0, y);
      const x2 = Math.min(width, x + f(XENFB_UPDATE.width));
      const y2 = Math.min(height, y + f(XENFB_UPDATE.height));
      if (x2 > x1 && y2 > y1) out.push({ kind: "rect", x: x1, y: y1, w: x2 - x1, h: y2 - y1 });
    } else if (type === XENFB_TYPE_RESIZE) {
      const g = expectedFb(
        fbLen,
        f(XENFB_RESIZE.width),
        f(XENFB_RESIZE.height),
        f(XENFB_RESIZE.depth),
        f(XENFB_RESIZE.stride),
        f(XENFB_RESIZE.offset),
      );
      if (g?.kind === "fb") {
        out.push(g);
        ({ width, height } = g);
      }
    }
  }
  return out;
}

Deno.test("vfb fuzz: 1M hostile out-ring events and pages; nothing escapes, the other guest works", async () => {
  console.log(`device fuzz: seed ${SEED} (replay with RXFB_FUZZ_SEED=${SEED}), ${EVENTS} events`);
  const rnd = mulberry32(SEED);
  const int = (n: number) => Math.floor(rnd() * n);
  const chance = (p: number) => rnd() < p;
  const pick = <T>(a: readonly T[]): T => a[int(a.length)];
  const u32 = () => (rnd() * 2 ** 32) >>> 0;
  const i32 = () => u32() | 0;

  // ---- errors that escape: rejections, uncaught errors, RxJS subscriber errors ----
  const escaped: unknown[] = [];
  const onRejection = (e: PromiseRejectionEvent) => {
    e.preventDefault();
    escaped.push(e.reason);
  };
  const onError = (e: ErrorEvent) => {
    e.preventDefault();
    escaped.push(e.error ?? e.message);
  };
  globalThis.addEventListener("unhandledrejection", onRejection);
  globalThis.addEventListener("error", onError);
  const rxjsHandler = config.onUnhandledError;
  config.onUnhandledError = (e) => escaped.push(e);

  // ---- two guests on one simulated host ----
  const xen = new SimXen();
  const mem = xen.platform().memory;
  const xs0 = xen.xenstored.connect(0);
  const talA = tallyLogger(), talB = tallyLogger();
  const simA = await SimGuest.create(xen, 5, { program: "none", width: 64, height: 48 });
  const simB = await SimGuest.create(xen, 6, {
    program: "none",
    width: 80,
    height: 60,
    depth: 16,
  });
  const guestA = await attach({ domid: 5, platform: xen.platform(), log: talA.logger });
  const guestB = await attach({ domid: 6, platform: xen.platform(), log: talB.logger });
  await simA.boot();
  await simB.boot();
  await guestA.connected();
  const fbB = await guestB.connected();
  await waitFor(() => guestA.pointerIsAbsolute() && guestB.pointerIsAbsolute(), "keyboards");
  /** A's vfb maps its page, one directory and its framebuffer. */
  const A_VFB_MAPS = 3;
  /** Live mappings while A's vfb is not mapped: A's keyboard and all of B. */
  const idleMaps = mem.liveMappings - A_VFB_MAPS;

  const feB = simB.fbfront!;
  const bMemory = [feB.fb.sab, feB.page.buffer];
  const bFrames = [
    Number(await xs0.read(`${feB.fe}/page-ref`)),
    Number(new DataView(feB.page.buffer).getBigUint64(XENFB_PAGE.pd64, true)),
  ];
  const shadowB = new Uint8Array(feB.fb.sab).slice();

  const aEvents: DisplayEvent[] = [];
  const bEvents: DisplayEvent[] = [];
  const watchA = {
    next: (e: DisplayEvent) => aEvents.push(e),
    error: (e: unknown) => escaped.push(e),
    complete: () => escaped.push(new Error("A's display$ completed")),
  };
  let subA = guestA.display$.subscribe(watchA);
  const subB = guestB.display$.subscribe({
    next: (e) => bEvents.push(e),
    error: (e) => escaped.push(e),
    complete: () => escaped.push(new Error("B's display$ completed")),
  });
  assertEquals(bEvents.length, 1);
  bEvents.length = 0;

  // ---- counters ----
  let driven = 0, batches = 0, disconnects = 0, refusals = 0, hostileMapped = 0;
  let reconnects = 0, resizesSeen = 0, rectsSeen = 0, bChecks = 0, probes = 0;
  let hostileConnects = 0, refreshes = 0;
  const started = performance.now();
  const where = () => `seed ${SEED}, batch ${batches}, ${driven} events`;

  // ---- what the test knows of A ----
  let connectedA = true;
  let curA: Framebuffer | undefined;
  /** mem_length of A's page when the backend mapped it. */
  let fbLenA = 0;
  /** A's frames at boot: shared page, directory, first framebuffer frame. */
  let framesA = { page: 0, dir: 0, fb: 0 };
  /** Whether pd[], the directory or the frontend keys were tampered with since A booted. */
  let tainted = false;
  /** The width of A's pd[] entries, by the protocol it names. */
  let entryBytes = 8;

  async function learnA() {
    const fe = simA.fbfront!;
    const dv = new DataView(fe.page.buffer, fe.page.byteOffset, PAGE_SIZE);
    fbLenA = dv.getUint32(XENFB_PAGE.mem_length, true);
    const dir = Number(dv.getBigUint64(XENFB_PAGE.pd64, true));
    const dirBytes = simA.domain.memory.view([dir]);
    framesA = {
      page: Number(await simA.domain.xenstore.read(`${fe.fe}/page-ref`)),
      dir,
      fb: Number(new DataView(dirBytes.buffer, dirBytes.byteOffset).getBigUint64(0, true)),
    };
    tainted = false;
    entryBytes = 8;
  }
  await learnA();

  function assertClean() {
    if (escaped.length) {
      throw new Error(
        `${where()}: an error escaped the backend: ${escaped.map(String).join("; ")}`,
      );
    }
    for (const t of [talA, talB]) {
      assert(
        t.unexpected.length === 0,
        `${where()}: unexpected backend errors:\n${t.unexpected.join("\n")}`,
      );
    }
  }

  /** Fails with `msg()` unless `cond` holds (messages are built only on failure: this runs per event). */
  function must(cond: unknown, msg: () => string): asserts cond {
    if (!cond) throw new Error(`${where()}: ${msg()}`);
  }

  /** Checks a framebuffer the backend handed out: inside its mapping, never B's memory. */
  function checkFb(fb: Framebuffer) {
    const bpp = fb.format.bitsPerPixel / 8;
    const geo = () => `${fb.width}x${fb.height}x${bpp * 8} stride ${fb.stride}`;
    must([1, 2, 3, 4].includes(bpp), () => `bpp ${bpp}`);
    must(
      Number.isInteger(fb.width) && Number.isInteger(fb.height) && Number.isInteger(fb.stride),
      () => `non-integer geometry ${geo()}`,
    );
    must(fb.width >= 1 && fb.width <= 65535, () => `width of ${geo()}`);
    must(fb.height >= 1 && fb.height <= 65535, () => `height of ${geo()}`);
    must(fb.stride >= fb.width * bpp, () => `rows overlap in ${geo()}`);
    const need = fb.stride * (fb.height - 1) + fb.width * bpp;
    must(need <= fb.bytes.length, () => `${geo()} needs ${need} bytes, has ${fb.bytes.length}`);
    must(fb.bytes.byteOffset + fb.bytes.byteLength <= fb.bytes.buffer.byteLength, geo);
    must(!bMemory.includes(fb.bytes.buffer as SharedArrayBuffer), () => "A maps B's memory");
    must(fb.bytes[0] !== undefined && fb.bytes[need - 1] !== undefined, () => `read ${geo()}`);
  }

  /** Checks a damage rectangle against the framebuffer, reading its first and last pixel. */
  function checkRect(r: Rect, fb: Framebuffer) {
    const { x, y, w, h } = r;
    const what = () => `rect ${JSON.stringify(r)} on ${fb.width}x${fb.height}`;
    must(
      Number.isInteger(x) && Number.isInteger(y) && Number.isInteger(w) && Number.isInteger(h),
      what,
    );
    must(w > 0 && h > 0 && x >= 0 && y >= 0 && x + w <= fb.width && y + h <= fb.height, what);
    const bpp = fb.format.bitsPerPixel / 8;
    const first = y * fb.stride + x * bpp;
    const last = (y + h - 1) * fb.stride + (x + w) * bpp - 1;
    must(fb.bytes[first] !== undefined && fb.bytes[last] !== undefined, what);
  }

  /** Takes A's events so far, checks every one, and returns them as items. */
  function takeA(): Item[] {
    const items: Item[] = [];
    for (const e of aEvents.splice(0)) {
      if (e.type === "resize") {
        checkFb(e.fb);
        curA = e.fb;
        resizesSeen++;
        items.push(fbItem(e.fb));
      } else {
        must(curA, () => "damage before any framebuffer");
        must(e.rects.length > 0, () => "empty damage event");
        for (const r of e.rects) {
          checkRect(r, curA);
          items.push({ kind: "rect", x: r.x, y: r.y, w: r.w, h: r.h });
        }
        rectsSeen += e.rects.length;
      }
    }
    return items;
  }

  const be = "/local/domain/0/backend/vfb/5/0";
  async function beState(s: string, what: string) {
    for (let i = 0; (await xs0.read(`${be}/state`)) !== s; i++) {
      assert(i < 1000, `${where()}: timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  const idxOf = (page: Uint8Array) => new Uint32Array(page.buffer, page.byteOffset, 4);

  /** Lets the simulated event channel deliver and the backend consume A's ring. */
  async function drainA() {
    const idx = idxOf(simA.fbfront!.page);
    for (let i = 0; Atomics.load(idx, OUT_CONS) !== Atomics.load(idx, OUT_PROD); i++) {
      if (i > 200) {
        throw new Error(
          `${where()}: the backend stopped consuming A's ring\n${talA.recent.join("\n")}`,
        );
      }
      await (i < 8 ? Promise.resolve() : new Promise((r) => setTimeout(r, 1)));
    }
  }

  /** Waits until exactly `n` guest mappings are live (none leaked, none missing). */
  async function waitMaps(n: number, what: string) {
    const end = performance.now() + 3000;
    while (mem.liveMappings !== n) {
      must(performance.now() < end, () => `${what}: ${mem.liveMappings} live mappings, not ${n}`);
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /** Reboots A (it may have been disconnected or refused) and waits until it is served again. */
  async function rebootA(why: string) {
    await simA.reboot();
    await waitFor(
      () => guestA.framebuffer() !== undefined && !!simA.fbfront?.isConnected,
      `${where()}: A to reconnect after ${why}\n${talA.story.join("\n")}`,
    );
    await waitMaps(idleMaps + A_VFB_MAPS, `${where()}: A reconnected after ${why}`);
    reconnects++;
    connectedA = true;
    await learnA();
    const items = takeA();
    assertEquals(items, [{ kind: "fb", width: 64, height: 48, stride: 256, bpp: 4, len: 12288 }]);
  }

  /** B still works: draws, damages, and its damage arrives exactly; its memory is untouched. */
  async function checkB() {
    const fb = feB.fb;
    const x = int(fb.width), y = int(fb.height);
    const r = { x, y, w: 1 + int(fb.width - x), h: 1 + int(fb.height - y) };
    const at = y * fb.stride + x * 2;
    const live = new Uint8Array(fb.sab);
    assertEquals(live, shadowB, `${where()}: B's framebuffer changed under it`);
    const v = u32() & 0xffff;
    live[at] = shadowB[at] = v & 0xff;
    live[at + 1] = shadowB[at + 1] = v >> 8;
    feB.damage([r]);
    await waitFor(() => bEvents.length > 0, `${where()}: damage from guest B`, 5000);
    assertEquals(bEvents.splice(0), [{ type: "damage", rects: [r] }], where());
    const seen = guestB.framebuffer();
    assert(seen === fbB, `${where()}: B's framebuffer was replaced`);
    assertEquals(seen.bytes[at] | seen.bytes[at + 1] << 8, v);
    assertEquals(talB.count("disconnecting: ") + talB.count("refusing the frontend: "), 0);
    bChecks++;
  }

  // ---- the OUT events ----
  const batch = new Uint8Array(RING * XENFB_EVENT_SIZE);
  const bdv = new DataView(batch.buffer);
  /** The batch as the ring holds it once written. */
  const seen = new Uint8Array(batch.length);
  const sdv = new DataView(seen.buffer);
  /** Recent well-formed events, to mutate. */
  const corpus: Uint8Array[] = [];
  const keep = (at: number) => {
    const s = batch.slice(at, at + XENFB_EVENT_SIZE);
    if (corpus.length < 128) corpus.push(s);
    else corpus[int(corpus.length)] = s;
  };
  // deno-fmt-ignore
  const BASE = [
    0, 1, -1, 2, 3, 4, 7, 8, 12, 15, 16, 17, 24, 31, 32, 33, 63, 64, 127, 128, 255, 256, 4095,
    4096, 4097, 12287, 12288, 12289, 32767, 32768, 65535, 65536, 65537, 0x7ffffffe, 0x7fffffff,
    -0x80000000, -0x7fffffff, 0x40000000, 0x3fffffff, -2, -4096, -65536,
  ];
  /** An i32 a fuzzer finds interesting here: edges, the framebuffer's own numbers, or random. */
  function interesting(): number {
    switch (int(5)) {
      case 0:
      case 1:
        return pick(BASE);
      case 2: {
        const fb = curA;
        const near = [fbLenA, fb?.width ?? 64, fb?.height ?? 48, fb?.stride ?? 256];
        return (pick(near) + int(9) - 4) | 0;
      }
      case 3:
        return int(300) - 50;
      default:
        return i32();
    }
  }
  const setType = (at: number, t: number) => {
    batch.fill(0, at, at + XENFB_EVENT_SIZE);
    batch[at] = t;
    if (chance(0.05)) batch[at + 1 + int(3)] = int(256); // padding bytes are not the type
  };
  const i32At = (at: number, off: number, v: number) => bdv.setInt32(at + off, v, true);

  function validUpdate(at: number) {
    const W = curA?.width ?? 64, H = curA?.height ?? 48;
    const x = int(W), y = int(H);
    setType(at, XENFB_TYPE_UPDATE);
    i32At(at, XENFB_UPDATE.x, x);
    i32At(at, XENFB_UPDATE.y, y);
    i32At(at, XENFB_UPDATE.width, 1 + int(W - x));
    i32At(at, XENFB_UPDATE.height, 1 + int(H - y));
  }
  function validResize(at: number) {
    const depth = pick([8, 16, 24, 32]), bpp = depth / 8;
    const offset = chance(0.6) ? 0 : chance(0.5) ? int(fbLenA) : int(64) * bpp;
    const room = Math.max(1, fbLenA - offset);
    const width = 1 + int(Math.max(1, Math.min(Math.floor(room / bpp), 400)));
    const stride = Math.min(room, width * bpp + (chance(0.6) ? 0 : int(64)));
    const rows = Math.max(1, Math.floor(room / Math.max(1, stride)));
    const height = chance(0.8) ? 1 + int(rows) : rows + int(1000);
    setType(at, XENFB_TYPE_RESIZE);
    i32At(at, XENFB_RESIZE.width, chance(0.9) ? width : width + int(5000));
    i32At(at, XENFB_RESIZE.height, height);
    i32At(at, XENFB_RESIZE.stride, stride);
    i32At(at, XENFB_RESIZE.depth, depth);
    i32At(at, XENFB_RESIZE.offset, offset);
  }
  function fillEvent(at: number) {
    const k = int(100);
    if (k < 24) {
      validUpdate(at);
      if (chance(0.1)) keep(at);
    } else if (k < 42) {
      setType(at, XENFB_TYPE_UPDATE);
      for (const off of [4, 8, 12, 16]) i32At(at, off, chance(0.3) ? int(80) : interesting());
    } else if (k < 50) {
      validResize(at);
      keep(at);
    } else if (k < 64) {
      setType(at, XENFB_TYPE_RESIZE);
      for (const off of [4, 8, 12, 16, 20]) i32At(at, off, chance(0.3) ? int(300) : interesting());
      if (chance(0.5)) i32At(at, XENFB_RESIZE.depth, pick([8, 16, 24, 32]));
    } else if (k < 72) {
      setType(at, pick([0, 1, ...Array.from({ length: 252 }, (_, i) => i + 4)]));
      for (let i = 4; i < XENFB_EVENT_SIZE; i += 4) i32At(at, i, interesting());
    } else if (k < 82) {
      for (let i = 0; i < XENFB_EVENT_SIZE; i += 4) bdv.setUint32(at + i, u32());
    } else {
      if (corpus.length === 0) validResize(at);
      else batch.set(pick(corpus), at);
      for (let m = 1 + int(3); m > 0; m--) {
        switch (int(5)) {
          case 0:
            batch[at + int(24)] ^= 1 << int(8);
            break;
          case 1:
            batch[at + int(XENFB_EVENT_SIZE)] = int(256);
            break;
          case 2:
            i32At(at, 4 * (1 + int(5)), interesting());
            break;
          case 3: {
            const off = 4 * (1 + int(5));
            i32At(at, off, (bdv.getInt32(at + off, true) + int(33) - 16) | 0);
            break;
          }
          default:
            batch[at] = pick([XENFB_TYPE_UPDATE, XENFB_TYPE_RESIZE]); // type confusion
        }
      }
    }
  }

  /** Writes `n` events into A's OUT ring as a frontend does, notifies, and checks the output. */
  async function runBatch(n: number, prefilled = false): Promise<Item[]> {
    const fe = simA.fbfront!;
    const page = fe.page;
    const idx = idxOf(page);
    let prod = Atomics.load(idx, OUT_PROD);
    must(Atomics.load(idx, OUT_CONS) === prod, () => "ring not empty");
    for (let i = 0; i < n; i++) {
      if (!prefilled) fillEvent(i * XENFB_EVENT_SIZE);
      const at = XENFB_OUT_RING_OFFS + (prod % RING) * XENFB_EVENT_SIZE;
      page.set(batch.subarray(i * XENFB_EVENT_SIZE, (i + 1) * XENFB_EVENT_SIZE), at);
      prod = (prod + 1) >>> 0;
    }
    // The producer index goes last, after the slots (Atomics order the stores).
    Atomics.store(idx, OUT_PROD, prod);
    // What the ring now holds, slot by slot as the header's `% LEN` finds them: a batch
    // across the u32 wrap of the indices overwrites a slot (2^32 is not a multiple of 51).
    for (let i = 0, at = 0; i < n; i++, at += XENFB_EVENT_SIZE) {
      const slot = XENFB_OUT_RING_OFFS + ((prod - n + i) >>> 0) % RING * XENFB_EVENT_SIZE;
      seen.set(page.subarray(slot, slot + XENFB_EVENT_SIZE), at);
    }
    snapshot(page);
    fe.notify();
    driven += n;
    const curBefore = curA!;
    const want = expectedBatch(sdv, n, curBefore, fbLenA);
    await drainA();
    checkWrites(page, "taking OUT events");
    const got = takeA();
    assertSameItems(
      got,
      want,
      () =>
        `${where()}: the backend's output differs from the protocol's rules on ${curBefore.width}x${curBefore.height} (${fbLenA} bytes) for the events\n${
          describe(sdv, n)
        }`,
    );
    assertClean();
    return got;
  }

  const snap = new Uint32Array(PAGE_SIZE / 4);
  const snapshot = (page: Uint8Array) =>
    snap.set(new Uint32Array(page.buffer, page.byteOffset, PAGE_SIZE / 4));
  /**
   * The backend may write A's page only at in_prod, out_cons and the IN ring
   * (the frontend writes in_cons); never the header, pd[] or the OUT ring.
   */
  function checkWrites(page: Uint8Array, doing: string) {
    const now = new Uint32Array(page.buffer, page.byteOffset, PAGE_SIZE / 4);
    const inRing = [XENFB_IN_RING_OFFS / 4, (XENFB_IN_RING_OFFS + XENFB_IN_RING_SIZE) / 4];
    for (let w = 0; w < now.length; w++) {
      if (w <= OUT_CONS || (w >= inRing[0] && w < inRing[1])) continue;
      must(now[w] === snap[w], () => `the backend wrote A's page at byte ${4 * w} ${doing}`);
    }
  }

  /** A's IN ring indices are hostile while the backend advises it refresh periods. */
  async function refreshAdvice() {
    const page = simA.fbfront!.page;
    const idx = idxOf(page);
    const cons = u32();
    const lead = pick([0, 1, 24, 25, 26, 2 ** 32 - 1, u32()]);
    Atomics.store(idx, XENFB_PAGE.in_cons / 4, cons);
    Atomics.store(idx, XENFB_PAGE.in_prod / 4, (cons + lead) >>> 0);
    snapshot(page);
    const fb = curA;
    subA.unsubscribe(); // no one watches: XENFB_NO_REFRESH
    subA = guestA.display$.subscribe(watchA); // a period again, and the framebuffer as it is
    for (let i = 0; i < 8; i++) await Promise.resolve();
    checkWrites(page, "advising a refresh period");
    must(
      aEvents.length === 1 && aEvents[0].type === "resize" && aEvents[0].fb === fb,
      () => `a new watcher got ${JSON.stringify(aEvents.map((e) => e.type))}`,
    );
    takeA();
    assertClean();
    refreshes++;
  }

  /** out_prod runs ahead of out_cons by more than the ring: the backend must disconnect A. */
  async function overrun() {
    const fe = simA.fbfront!;
    const idx = idxOf(fe.page);
    const lead = chance(0.5)
      ? pick([RING + 1, RING + 2, 100, 1000, 0x7fffffff, 0x80000000, 0xffffffff])
      : RING + 1 + (u32() % (2 ** 32 - RING - 1));
    const cons = Atomics.load(idx, OUT_CONS);
    for (let i = 0; i < RING; i++) fillEvent(i * XENFB_EVENT_SIZE); // junk they must not read
    fe.page.set(batch, XENFB_OUT_RING_OFFS);
    const disconnectsBefore = talA.count("disconnecting: ");
    const mapsBefore = talA.count("mapped ");
    Atomics.store(idx, OUT_PROD, (cons + lead) >>> 0);
    fe.notify();
    await waitFor(
      () => guestA.framebuffer() === undefined,
      `${where()}: A disconnected after out_prod ran ${lead} ahead`,
    );
    if (chance(0.5)) {
      // Let the backend finish closing; otherwise A starts over at once.
      await beState("5", "the backend to go Closing after the overrun");
      await new Promise((r) => setTimeout(r, 2));
    }
    const reason = talA.last("disconnecting: ");
    must(reason.includes(`runs ${lead} events ahead`), () => `reason: ${reason}`);
    must(
      talA.count("disconnecting: ") === disconnectsBefore + 1 &&
        talA.count("mapped ") === mapsBefore && aEvents.length === 0 &&
        guestA.framebuffer() === undefined,
      () =>
        `out_prod ran ${lead} ahead: the backend must disconnect A once and map nothing ` +
        `of it until it starts over; it disconnected ${
          talA.count("disconnecting: ") - disconnectsBefore
        } times, mapped A's pages ${talA.count("mapped ") - mapsBefore} times again, ` +
        `sent ${aEvents.length} display events, and A's framebuffer is ${
          guestA.framebuffer() ? "mapped" : "not mapped"
        }:\n${talA.story.join("\n")}`,
    );
    must(Atomics.load(idx, OUT_CONS) === cons, () => "out_cons moved on an overrun");
    disconnects++;
    connectedA = false;
    curA = undefined;
    await waitMaps(idleMaps, `${where()}: A's vfb unmapped after the overrun`);
  }

  /**
   * A closes and comes back with a tampered page (header, pd[], directory) or
   * frontend keys: the backend must refuse with a reason, or map it safely.
   */
  async function hostileConnect() {
    if (!connectedA) await rebootA("a refusal before a hostile connect");
    hostileConnects++;
    const fe = simA.fbfront!;
    const xsA = simA.domain.xenstore;
    await xsA.write(`${fe.fe}/state`, "5");
    await waitFor(() => guestA.framebuffer() === undefined, `${where()}: A to close`);
    await waitMaps(idleMaps, `${where()}: A's vfb unmapped on close`);
    curA = undefined;
    takeA();
    await beState("5", "the backend to go Closing");

    const dv = new DataView(fe.page.buffer, fe.page.byteOffset, PAGE_SIZE);
    const frame = (): bigint =>
      pick([
        0n,
        1n,
        BigInt(u32()),
        BigInt(u32()) + (BigInt(1 + int(0x200000)) << 32n),
        2n ** 53n + 2n,
        2n ** 64n - 1n,
        ...[...bFrames, framesA.page, framesA.dir, framesA.dir + 1, framesA.fb - 1].map(BigInt),
        ...[0, 1, 2, 3].map((i) => BigInt(framesA.fb + i)),
      ]);
    const setFrame = (view: DataView, at: number, f: bigint) => view.setBigUint64(at, f, true);
    for (let m = 1 + int(3); m > 0; m--) {
      switch (int(8)) {
        case 0:
          dv.setInt32(XENFB_PAGE.width, chance(0.5) ? int(200) : interesting(), true);
          break;
        case 1:
          dv.setInt32(XENFB_PAGE.height, chance(0.5) ? int(200) : interesting(), true);
          break;
        case 2:
          dv.setUint32(
            XENFB_PAGE.line_length,
            chance(0.5) ? pick([64, 128, 192, 255, 256, 257, 4096, 12288, 12289]) : interesting(),
            true,
          );
          break;
        case 3:
          dv.setUint32(
            XENFB_PAGE.mem_length,
            pick([
              0,
              1,
              4095,
              4096,
              8191,
              8192,
              12287,
              12288,
              12289,
              16384,
              MAX_FB_BYTES,
              MAX_FB_BYTES + 1,
              0x80000000,
              0xffffffff,
              u32(),
              1 + int(12288),
            ]),
            true,
          );
          break;
        case 4:
          dv.setUint8(XENFB_PAGE.depth, pick([0, 1, 8, 12, 15, 16, 24, 32, 33, 64, 255, int(256)]));
          break;
        case 5: {
          const k = chance(0.7) ? 0 : int((1024 - XENFB_PAGE.pd64) / 8);
          setFrame(dv, XENFB_PAGE.pd64 + 8 * k, frame());
          tainted = true;
          break;
        }
        case 6: {
          const dir = simA.domain.memory.view([framesA.dir]);
          const ddv = new DataView(dir.buffer, dir.byteOffset, PAGE_SIZE);
          setFrame(ddv, 8 * int(4), frame());
          tainted = true;
          break;
        }
        default: {
          const [key, value] = pick<[string, string]>([
            ["protocol", "x86_32-abi"],
            ["protocol", "sparc-abi"],
            ["page-ref", String(frame())],
            ["page-ref", pick(["-1", "0x10", "", " 7", "99999999999999999999", "1e3"])],
            ["event-channel", String(int(12))],
            ["event-channel", pick(["-1", "65536", "x", "4294967296"])],
          ]);
          await xsA.write(`${fe.fe}/${key}`, value);
          if (key === "protocol") entryBytes = value === "x86_32-abi" ? 4 : 8;
          tainted = true;
        }
      }
    }
    const hdr = {
      width: dv.getInt32(XENFB_PAGE.width, true),
      height: dv.getInt32(XENFB_PAGE.height, true),
      stride: dv.getUint32(XENFB_PAGE.line_length, true),
      memLength: dv.getUint32(XENFB_PAGE.mem_length, true),
      depth: dv.getUint8(XENFB_PAGE.depth),
    };
    const want = hdr.memLength >= 1 && hdr.memLength <= MAX_FB_BYTES
      ? expectedFb(hdr.memLength, hdr.width, hdr.height, hdr.depth, hdr.stride, 0)
      : undefined;
    const refusedBefore = talA.count("refusing the frontend: ");
    const mappedBefore = talA.count("mapped ");
    await xsA.write(`${fe.fe}/state`, "3");
    await waitFor(
      () =>
        talA.count("refusing the frontend: ") > refusedBefore ||
        talA.count("mapped ") > mappedBefore,
      `${where()}: the backend's verdict on a hostile page ${JSON.stringify(hdr)}`,
    );
    const what = `${where()}: hostile page ${JSON.stringify(hdr)}${tainted ? " (pd/keys)" : ""}`;
    if (talA.count("refusing the frontend: ") > refusedBefore) {
      refusals++;
      const line = talA.last("refusing the frontend: ");
      assert(line.length > "refusing the frontend: ".length + 3, `${what}: no reason`);
      assert(
        want === undefined || tainted || hdr.memLength > 12288,
        `${what}: a page that maps was refused: ${line}`,
      );
      await waitMaps(idleMaps, `${what}: nothing of a refused vfb stays mapped`);
      assertEquals(takeA(), [], `${what}: events from a refused page`);
      assert((await xs0.read(`${be}/error`))?.length, `${what}: no error key`);
      connectedA = false;
    } else {
      hostileMapped++;
      assert(want, `${what}: the backend mapped a page it must refuse`);
      const got = takeA();
      assertEquals(got, [want], `${what}: unexpected geometry`);
      const pages = Math.ceil(hdr.memLength / PAGE_SIZE);
      const dirs = Math.ceil(pages / (PAGE_SIZE / entryBytes));
      await waitMaps(idleMaps + 2 + dirs, `${what}: page, directories and framebuffer mapped`);
      fbLenA = hdr.memLength;
      connectedA = true;
      await xsA.write(`${fe.fe}/state`, "4");
    }
  }

  try {
    assertEquals(takeA(), [{ kind: "fb", width: 64, height: 48, stride: 256, bpp: 4, len: 12288 }]);
    while (driven < EVENTS) {
      batches++;
      const roll = rnd();
      if (roll < 0.002) {
        if (!connectedA) await rebootA("a refusal");
        await overrun();
        await checkB();
        await rebootA("an overrun");
        continue;
      }
      if (roll < 0.005) {
        await hostileConnect();
        await checkB();
        continue;
      }
      if (!connectedA) await rebootA("a refusal");
      const page = simA.fbfront!.page;
      if (roll < 0.01) {
        // Indices anywhere in u32 space (wrapping), consistent: a valid empty ring.
        const at = chance(0.5) ? u32() : (2 ** 32 - int(2 * RING)) >>> 0;
        Atomics.store(idxOf(page), OUT_CONS, at);
        Atomics.store(idxOf(page), OUT_PROD, at);
      } else if (roll < 0.013) {
        // Header scribbles while connected: read once at connect, so harmless now.
        const dv = new DataView(page.buffer, page.byteOffset, PAGE_SIZE);
        dv.setInt32(XENFB_PAGE.width + 4 * int(5), interesting(), true);
      } else if (roll < 0.016) {
        await refreshAdvice();
      }
      if (batches % 64 === 0) {
        validUpdate(0); // a probe: exactly this rectangle comes back
        const r = {
          x: bdv.getInt32(XENFB_UPDATE.x, true),
          y: bdv.getInt32(XENFB_UPDATE.y, true),
          w: bdv.getInt32(XENFB_UPDATE.width, true),
          h: bdv.getInt32(XENFB_UPDATE.height, true),
        };
        assertEquals(await runBatch(1, true), [{ kind: "rect", ...r }], where());
        probes++;
      } else {
        await runBatch(chance(0.7) ? RING : 1 + int(RING));
      }
      if (batches % 200 === 0) await checkB();
    }

    // A still connects and delivers damage; B still works.
    await rebootA("the fuzzing");
    const r = { x: 3, y: 4, w: 5, h: 6 };
    simA.fbfront!.damage([r]);
    await waitFor(() => aEvents.length > 0, "A's damage after the fuzzing");
    assertEquals(aEvents.slice(), [{ type: "damage", rects: [r] }]);
    takeA();
    await checkB();
    assertClean();
    const secs = (performance.now() - started) / 1000;
    console.log(
      `device fuzz: ${driven} events in ${batches} batches, ${secs.toFixed(1)} s; ` +
        `${resizesSeen} framebuffers and ${rectsSeen} rects checked, ${probes} probes; ` +
        `${disconnects} overrun disconnects, ${hostileConnects} hostile connects ` +
        `(${refusals} refused, ${hostileMapped} mapped safely), ${reconnects} reconnects, ` +
        `${refreshes} refresh advices on hostile IN indices, ` +
        `${bChecks} checks of guest B; backend logged ${talA.lines} lines ` +
        `(${talA.count("refused: ")} refused resizes, ${talA.count("guest resized")} resizes)`,
    );
    if (EVENTS >= 100_000) {
      assert(disconnects > 0 && refusals > 0 && hostileMapped > 0, where());
      assert(resizesSeen > EVENTS / 100, `${where()}: only ${resizesSeen} resizes followed`);
    }
  } finally {
    subA.unsubscribe();
    subB.unsubscribe();
    await simA.stop();
    await simB.stop();
    await guestA.close();
    await guestB.close();
    config.onUnhandledError = rxjsHandler;
    globalThis.removeEventListener("unhandledrejection", onRejection);
    globalThis.removeEventListener("error", onError);
  }
});
