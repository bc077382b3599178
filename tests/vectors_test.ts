import { assert, assertEquals, assertStrictEquals } from "@rxfb/assert";
import type { Rect } from "../pipeline/rect.ts";
import {
  createWorkload,
  drawStamp,
  type DrawTarget,
  mix32,
  WORKLOAD_NAMES,
  type WorkloadName,
} from "../sources/sim/programs/workloads.ts";
import {
  computeVectors,
  formatVectors,
  frameCrc32,
  standardVectorList,
  type Vector,
} from "../sources/sim/programs/vectors.ts";

const VECTORS_URL = new URL("../../shared/bench/vectors.json", import.meta.url);

async function vectorsText(): Promise<string> {
  try {
    return await Deno.readTextFile(VECTORS_URL);
  } catch (e) {
    throw new Error(
      `cannot read the shared check values ${VECTORS_URL.pathname} ` +
        `(expected at ../shared/bench/vectors.json beside the repository): ${(e as Error).message}`,
    );
  }
}

async function fileVectors(): Promise<Vector[]> {
  const parsed = JSON.parse(await vectorsText());
  assert(Array.isArray(parsed.vectors), "vectors.json has no vectors list");
  return parsed.vectors as Vector[];
}

function target(w: number, h: number, stride = w, fill = 0): DrawTarget {
  const px = new Uint32Array(stride * (h - 1) + w + (stride - w));
  px.fill(fill);
  return { px, width: w, height: h, strideWords: stride };
}

/** The visible pixels of a target, row after row (stride padding left out). */
function visible(t: DrawTarget): Uint32Array {
  const out = new Uint32Array(t.width * t.height);
  for (let y = 0; y < t.height; y++) {
    out.set(t.px.subarray(y * t.strideWords, y * t.strideWords + t.width), y * t.width);
  }
  return out;
}

function firstDifference(a: Uint32Array, b: Uint32Array, w: number): string | undefined {
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) {
      return `(${i % w}, ${Math.floor(i / w)}): ${a[i].toString(16)} vs ${b[i].toString(16)}`;
    }
  }
  return undefined;
}

Deno.test("mix32 follows the spec's steps", () => {
  assertStrictEquals(mix32(0), 0);
  // Reference computed with BigInt.
  const ref = (v: number) => {
    const M = 0xffffffffn;
    let x = BigInt(v >>> 0);
    x ^= x >> 16n;
    x = (x * 0x7feb352dn) & M;
    x ^= x >> 15n;
    x = (x * 0x846ca68bn) & M;
    x ^= x >> 16n;
    return Number(x);
  };
  for (const v of [1, 2, 3, 0x9e3779b9, 0xffffffff, 123456789, 2 ** 31]) {
    assertStrictEquals(mix32(v), ref(v), `mix32(${v})`);
  }
});

Deno.test("stamp: n in the first row of cells, time in the second, centre pixels decode", () => {
  const t = target(300, 20);
  drawStamp(t, 0x80000005, 0x12345678);
  const decode = (row: number) => {
    let v = 0;
    for (let i = 0; i < 32; i++) {
      const p = t.px[(row * 8 + 4) * t.strideWords + i * 8 + 4];
      if (((p >> 8) & 255) >= 128) v |= 1 << i;
    }
    return v >>> 0;
  };
  assertStrictEquals(decode(0), 0x80000005);
  assertStrictEquals(decode(1), 0x12345678);
  assertStrictEquals(t.px[16 * 300], 0, "stamp stays inside 256x16");
  assertStrictEquals(t.px[256], 0, "stamp stays inside 256x16");
});

Deno.test("vectors.json: every check value matches (frames drawn in list order)", async () => {
  const want = await fileVectors();
  const got = computeVectors(want);
  for (let i = 0; i < want.length; i++) {
    assertStrictEquals(
      got[i].crc32,
      want[i].crc32,
      `${want[i].workload} ${want[i].width}x${want[i].height} n=${want[i].n}`,
    );
  }
});

Deno.test("vectors.json: every check value matches when each frame is drawn directly", async () => {
  const want = await fileVectors();
  for (const v of want) {
    const [got] = computeVectors([v]); // a fresh program and target: a full draw
    assertStrictEquals(got.crc32, v.crc32, `${v.workload} ${v.width}x${v.height} n=${v.n}`);
  }
});

Deno.test("vectors.json: formatVectors of the standard list is byte-identical", async () => {
  const text = await vectorsText();
  assertStrictEquals(formatVectors(computeVectors(standardVectorList())), text);
});

Deno.test("vectors.json: `deno run vectors.ts` prints it byte for byte", async () => {
  const text = await vectorsText();
  const script = new URL("../sources/sim/programs/vectors.ts", import.meta.url);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script.pathname],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(out.success, new TextDecoder().decode(out.stderr));
  assertStrictEquals(new TextDecoder().decode(out.stdout), text);
});

Deno.test("frameCrc32 ignores stride padding", () => {
  const a = target(320, 200);
  const b = target(320, 200, 333, 0xdeadbeef);
  createWorkload("video", 320, 200).drawFrame(a, 7, 99);
  createWorkload("video", 320, 200).drawFrame(b, 7, 99);
  assertStrictEquals(frameCrc32(a), frameCrc32(b));
});

Deno.test("sequential frames 0..59 at 1920x1080 give the CRCs of direct draws and vectors.json", async () => {
  const want = await fileVectors();
  const W = 1920, H = 1080;
  const seqT = target(W, H), dirT = target(W, H);
  for (const name of WORKLOAD_NAMES) {
    const seq = createWorkload(name, W, H);
    for (let n = 0; n < 60; n++) {
      seq.drawFrame(seqT, n, 0);
      createWorkload(name, W, H).drawFrame(dirT, n, 0); // fresh program: full draw
      const a = frameCrc32(seqT), b = frameCrc32(dirT);
      assertStrictEquals(a, b, `${name} frame ${n}: sequential ${a} != direct ${b}`);
      const v = want.find((v) =>
        v.workload === name && v.width === W && v.height === H && v.n === n
      );
      if (v) assertStrictEquals(a, v.crc32, `${name} n=${n} vs vectors.json`);
    }
  }
});

const SMALL_SIZES: [number, number, number][] = [
  // width, height, stride
  [320, 200, 320],
  [800, 600, 800],
  [643, 371, 700], // odd size, padded rows, V barely fits
  [250, 13, 256], // narrower than the stamp, no text row
  [40, 40, 40], // tiny: the cursor block nearly fills it
  [17, 33, 20],
];

Deno.test("sequential drawing equals direct drawing at small and odd sizes (with stride padding)", () => {
  for (const [w, h, stride] of SMALL_SIZES) {
    for (const name of WORKLOAD_NAMES) {
      const seqT = target(w, h, stride, 0xdeadbeef);
      const seq = createWorkload(name, w, h);
      for (let n = 0; n < 40; n++) {
        seq.drawFrame(seqT, n, (n * 7919) >>> 0);
        const dirT = target(w, h, stride, 0x01020304);
        createWorkload(name, w, h).drawFrame(dirT, n, (n * 7919) >>> 0);
        const diff = firstDifference(visible(seqT), visible(dirT), w);
        assertEquals(diff, undefined, `${name} ${w}x${h}/${stride} frame ${n}: ${diff}`);
      }
      // Stride padding is never written.
      for (let y = 0; y < h; y++) {
        for (let x = w; x < stride; x++) {
          assertStrictEquals(seqT.px[y * stride + x], 0xdeadbeef, `${name} padding (${x}, ${y})`);
        }
      }
    }
  }
});

Deno.test("a jump (non-consecutive frame) or a new target gets a full, correct draw", () => {
  const w = 320, h = 200;
  for (const name of WORKLOAD_NAMES) {
    const p = createWorkload(name, w, h);
    const t = target(w, h);
    p.drawFrame(t, 0, 0);
    p.drawFrame(t, 1, 0);
    const dirty = p.drawFrame(t, 10, 0); // jump
    assertEquals(dirty, [{ x: 0, y: 0, w, h }], `${name}: a jump redraws everything`);
    const ref = target(w, h);
    createWorkload(name, w, h).drawFrame(ref, 10, 0);
    assertEquals(firstDifference(visible(t), visible(ref), w), undefined, name);
    const t2 = target(w, h, w, 0x777777);
    p.drawFrame(t2, 11, 0); // another buffer
    createWorkload(name, w, h).drawFrame(ref, 11, 0);
    assertEquals(firstDifference(visible(t2), visible(ref), w), undefined, `${name} new target`);
  }
});

function inside(r: Rect, x: number, y: number): boolean {
  return x >= r.x && y >= r.y && x < r.x + r.w && y < r.y + r.h;
}

Deno.test("dirty rectangles cover every changed pixel and follow the spec", () => {
  for (const [w, h, stride] of SMALL_SIZES) {
    for (const name of WORKLOAD_NAMES) {
      const t = target(w, h, stride);
      const p = createWorkload(name, w, h);
      let prev = visible(t);
      for (let n = 0; n < 50; n++) {
        const rects = p.drawFrame(t, n, mix32(n) >>> 0);
        const cur = visible(t);
        const where = `${name} ${w}x${h} frame ${n}`;
        for (const r of rects) {
          assert(r.w > 0 && r.h > 0, `${where}: empty rect ${JSON.stringify(r)}`);
          assert(
            r.x >= 0 && r.y >= 0 && r.x + r.w <= w && r.y + r.h <= h,
            `${where}: rect ${JSON.stringify(r)} leaves the screen`,
          );
        }
        // The stamp region is in every dirty set.
        const sw = Math.min(256, w), sh = Math.min(16, h);
        assert(
          rects.some((r) => r.x <= 0 && r.y <= 0 && r.x + r.w >= sw && r.y + r.h >= sh),
          `${where}: stamp region not dirty`,
        );
        for (let i = 0; i < cur.length; i++) {
          if (cur[i] === prev[i]) continue;
          const x = i % w, y = Math.floor(i / w);
          if (!rects.some((r) => inside(r, x, y))) {
            throw new Error(`${where}: (${x}, ${y}) changed, not dirty`);
          }
        }
        if (n === 0 || name === "desktop" || name === "scroll" || name === "static") {
          assertEquals(rects, [{ x: 0, y: 0, w, h }], where);
        }
        prev = cur;
      }
    }
  }
});

Deno.test("video and cursor dirty sets at 1920x1080 are exactly the spec's", () => {
  const W = 1920, H = 1080;
  const t = target(W, H);
  const video = createWorkload("video", W, H);
  video.drawFrame(t, 0, 0);
  assertEquals(video.drawFrame(t, 1, 0), [
    { x: 640, y: 360, w: 640, h: 360 },
    { x: 0, y: 0, w: 256, h: 16 },
  ]);
  const cursor = createWorkload("cursor", W, H);
  cursor.drawFrame(t, 0, 0);
  cursor.drawFrame(t, 1, 0);
  assertEquals(cursor.drawFrame(t, 2, 0), [
    { x: 37, y: 23, w: 32, h: 32 },
    { x: 74, y: 46, w: 32, h: 32 },
    { x: 0, y: 0, w: 256, h: 16 },
  ]);
});

Deno.test("scroll: frame n+1 is frame n moved up 16 rows (below the stamp)", () => {
  const W = 800, H = 600;
  const a = target(W, H), b = target(W, H);
  createWorkload("scroll", W, H).drawFrame(a, 5, 0);
  createWorkload("scroll", W, H).drawFrame(b, 6, 0);
  const rows = Math.floor(H / 16);
  for (let y = 16; y < 16 * (rows - 1); y++) {
    for (let x = 0; x < W; x++) {
      assertStrictEquals(b.px[y * W + x], a.px[(y + 16) * W + x], `(${x}, ${y})`);
    }
  }
});

Deno.test("stamp time: a clock is read once, after the frame's pixels are drawn (WORKLOADS.md)", () => {
  const W = 640, H = 400;
  for (const name of WORKLOAD_NAMES) {
    const byClock = target(W, H), byValue = target(W, H);
    const prog = createWorkload(name, W, H), ref = createWorkload(name, W, H);
    for (let n = 0; n < 3; n++) {
      const timeUs = 0x9e3779b9 + n;
      ref.drawFrame(byValue, n, timeUs);
      let reads = 0;
      prog.drawFrame(byClock, n, () => {
        reads++;
        // Everything but the stamp is frame n already (the stamp cells still hold frame n-1's).
        for (let y = 0; y < H; y++) {
          for (let x = y < 16 ? 256 : 0; x < W; x++) {
            if (byClock.px[y * W + x] !== byValue.px[y * W + x]) {
              throw new Error(
                `${name} frame ${n}: the clock was read before pixel (${x}, ${y}) was drawn`,
              );
            }
          }
        }
        return timeUs;
      });
      assertEquals(reads, 1, `${name} frame ${n}: clock reads`);
      assertEquals(visible(byClock), visible(byValue), `${name} frame ${n}`);
    }
  }
});

Deno.test("workload names are the spec's five", () => {
  assertEquals([...WORKLOAD_NAMES], ["desktop", "scroll", "video", "cursor", "static"]);
  const names: WorkloadName[] = [...WORKLOAD_NAMES];
  for (const n of names) assert(createWorkload(n, 64, 64));
});
