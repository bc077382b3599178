/**
 * Recording: .mp4 / .webm through ffmpeg (checked with ffprobe and by
 * decoding frames back), failure handling, the CLI's --record / SIGTERM /
 * SIGINT, and PNG snapshots (API, --snapshot, SIGUSR1).
 *
 * Quality bounds: a frame decoded back from the video must match the guest's
 * pixels with PSNR >= 35 dB (H.264, CRF 20, yuv420p) and >= 32 dB (VP9, CRF
 * 30, yuv420p) on `paintScreenPicture`: gradients, 16-pixel colour blocks and
 * grey text-like marks, i.e. a desktop-like picture whose colour changes on
 * 2x2-aligned edges so that 4:2:0 chroma subsampling does not smear it.
 * (Measured with Debian 12's ffmpeg 5.1: about 41 dB and 40 dB.)
 */
import { decode as decodePng } from "fast-png";
import { defer, finalize } from "rxjs";
import { assert, assertEquals } from "@rxfb/assert";
import { attachSink } from "../sinks/sink.ts";
import { startVideoRecorder, type VideoResult } from "../sinks/record/video.ts";
import { snapshot, startSnapshots } from "../sinks/record/snapshot.ts";
import { memoryLogger } from "../sources/log.ts";
import type { SimGuest } from "../sources/sim/guest.ts";
import { type Rig, rig, waitFor } from "./helpers.ts";
import { skipWithout } from "./packages.ts";
import {
  deadline,
  describeDiff,
  diffRgb,
  guestRgb,
  have,
  type Rgb,
  sleep,
} from "./client_tools.ts";

const noFfmpeg = skipWithout(
  have("ffmpeg") && have("ffprobe"),
  "ffmpeg",
  "apt-get install ffmpeg",
);
const MOD = new URL("../mod.ts", import.meta.url).pathname;
const dec = new TextDecoder();

/** Gradients, 16-pixel colour blocks and grey text-like marks (32-bpp guest). */
function paintScreenPicture(sim: SimGuest, shift = 0, damage = true): void {
  const fb = sim.fbfront!.fb;
  const sw = fb.stride / 4;
  const px = new Uint32Array(fb.sab, fb.byteOffset, sw * fb.height);
  const palette = [0x3050a0, 0xc03030, 0x30a050, 0xe0c040, 0x8040c0, 0x40c0c0, 0xf0f0f0, 0x202020];
  const { width: w, height: h } = fb;
  const band1 = (h / 3) & ~1, band2 = ((2 * h) / 3) & ~1; // even rows: chroma pairs stay in a band
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let v;
      if (y < band1) v = (((x * 255 / w) | 0) << 16) | (((y * 255 / band1) | 0) << 8) | 0x60;
      else if (y < band2) v = palette[((x >> 4) + (y >> 4) + shift) & 7];
      else {
        // 2x2 dark marks on light grey, in word-like runs
        const cx = x >> 1, cy = y >> 1;
        const ink = (cy % 6 < 4) && ((cx * 7 + cy * 3 + shift) % 11 < 4) && (cx % 9 !== 0);
        v = ink ? 0x282828 : 0xd8d8d8;
      }
      px[y * sw + x] = v;
    }
  }
  if (damage) sim.fbfront!.damage([{ x: 0, y: 0, w, h }]);
}

interface Probe {
  codec: string;
  width: number;
  height: number;
  pixFmt: string;
  rate: string;
  duration: number;
  frames: number;
}

/** ffprobe's JSON about the first video stream. */
async function probe(path: string): Promise<Probe> {
  const out = await new Deno.Command("ffprobe", {
    args: [
      "-v",
      "error",
      "-count_frames",
      "-print_format",
      "json",
      "-show_format",
      "-show_streams",
      path,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(out.success, `ffprobe ${path}: ${dec.decode(out.stderr)}`);
  const j = JSON.parse(dec.decode(out.stdout));
  const s = j.streams.find((s: { codec_type: string }) => s.codec_type === "video");
  assert(s, `no video stream in ${path}`);
  return {
    codec: s.codec_name,
    width: s.width,
    height: s.height,
    pixFmt: s.pix_fmt,
    rate: s.r_frame_rate,
    duration: Number(j.format.duration),
    frames: Number(s.nb_read_frames),
  };
}

/** Frame `n` of a video decoded to RGB. */
async function decodeFrame(path: string, n: number, w: number, h: number): Promise<Rgb> {
  const out = await new Deno.Command("ffmpeg", {
    args: [
      "-v",
      "error",
      "-i",
      path,
      "-vf",
      `select=eq(n\\,${n})`,
      "-frames:v",
      "1",
      "-f",
      "rawvideo",
      "-pix_fmt",
      "rgb24",
      "pipe:1",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(out.success, `ffmpeg decode: ${dec.decode(out.stderr)}`);
  assertEquals(out.stdout.length, w * h * 3, "one rgb24 frame");
  return { width: w, height: h, data: out.stdout };
}

async function tmpDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "rxfb-record-" });
}

for (const [ext, codec] of [["mp4", "h264"], ["webm", "vp9"]] as const) {
  Deno.test({
    name: `record: .${ext} of a cursor guest: ffprobe reads ${codec}, 320x240, 10 fps, ~2 s`,
    ignore: noFfmpeg,
    fn: async () => {
      const dir = await tmpDir();
      const r = await rig(11, { program: "cursor", width: 320, height: 240 });
      const log = memoryLogger();
      const progress: string[] = [];
      try {
        const path = `${dir}/cursor.${ext}`;
        const rec = startVideoRecorder(r.guest.display$, {
          path,
          fps: 10,
          log,
          progress: (l) => progress.push(l),
          progressIntervalMs: 400,
        });
        await sleep(2000);
        const res = await rec.close();
        assert(res.ok, res.reason);
        const p = await probe(path);
        assertEquals(
          [p.codec, p.width, p.height, p.pixFmt, p.rate],
          [codec, 320, 240, "yuv420p", "10/1"],
        );
        assert(res.frames >= 17 && res.frames <= 24, `${res.frames} frames in ~2 s at 10 fps`);
        assertEquals(p.frames, res.frames, "every frame written is in the file");
        assert(Math.abs(p.duration - res.frames / 10) <= 0.15, `duration ${p.duration}`);
        assert(Math.abs(p.duration - 2) <= 0.5, `duration ${p.duration} for ~2 s`);
        assertEquals(res.bytes, (await Deno.stat(path)).size);
        assert(progress.length >= 3, `progress lines: ${progress.join(" | ")}`);
        assert(
          /recording .*: \d+ frames, 0:0\d\.\d, [\d.]+ (B|KiB|MiB)/.test(progress.at(-1)!),
          progress.at(-1)!,
        );
        assert(log.lines.some((l) => /recorded .* \d+ frames/.test(l)), log.lines.join("\n"));
      } finally {
        await r.stop();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

Deno.test({
  name: "record: a decoded frame matches the guest's pixels (H.264 >= 35 dB, VP9 >= 32 dB PSNR)",
  ignore: noFfmpeg,
  fn: async () => {
    const dir = await tmpDir();
    const r = await rig(12, { width: 320, height: 240 });
    try {
      paintScreenPicture(r.sim);
      const want = guestRgb(r.sim);
      const log = memoryLogger();
      const recs = (["mp4", "webm"] as const).map((ext) =>
        startVideoRecorder(r.guest.display$, {
          path: `${dir}/still.${ext}`,
          fps: 10,
          log,
          progress: false,
        })
      );
      await sleep(1000);
      const results = await Promise.all(recs.map((x) => x.close()));
      for (const [i, bound] of [[0, 35], [1, 32]] as const) {
        const res = results[i];
        assert(res.ok, res.reason);
        assert(res.repeated >= res.frames - 2, `a still screen repeats frames: ${res.repeated}`);
        const got = await decodeFrame(recs[i].path, 5, 320, 240);
        const d = diffRgb(got, want);
        assert(d.psnr >= bound, `${recs[i].path}: ${describeDiff(d)}`);
        console.log(`${recs[i].path.split("/").pop()}: PSNR ${d.psnr.toFixed(1)} dB`);
      }
    } finally {
      await r.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "record: odd sizes get a black column/row in .mp4; a resize keeps the first size",
  ignore: noFfmpeg,
  fn: async () => {
    const dir = await tmpDir();
    const r = await rig(13, { width: 241, height: 181 });
    try {
      paintScreenPicture(r.sim);
      const full = guestRgb(r.sim);
      const log = memoryLogger();
      const path = `${dir}/odd.mp4`;
      const rec = startVideoRecorder(r.guest.display$, { path, fps: 10, log, progress: false });
      await sleep(700);
      // The guest switches to a smaller mode and draws a new picture in it.
      assert(r.sim.resize(160, 120));
      paintScreenPicture(r.sim, 3);
      const small = guestRgb(r.sim);
      await sleep(700);
      const res = await rec.close();
      assert(res.ok, res.reason);
      const p = await probe(path);
      assertEquals([p.width, p.height], [242, 182]);
      assert(
        log.lines.some((l) => /guest resized to 160x120; the video stays 242x182/.test(l)),
        log.lines.join("\n"),
      );
      const crop = (img: Rgb, w: number, h: number): Rgb => {
        const data = new Uint8Array(w * h * 3);
        for (let y = 0; y < h; y++) {
          data.set(img.data.subarray(y * img.width * 3, (y * img.width + w) * 3), y * w * 3);
        }
        return { width: w, height: h, data };
      };
      const before = await decodeFrame(path, 5, 242, 182);
      const d1 = diffRgb(crop(before, 241, 181), full);
      assert(d1.psnr >= 35, `before the resize: ${describeDiff(d1)}`);
      const after = await decodeFrame(path, res.frames - 1, 242, 182);
      const d2 = diffRgb(crop(after, 160, 120), small);
      assert(d2.psnr >= 35, `after the resize, top left: ${describeDiff(d2)}`);
      console.log(
        `PSNR before the resize ${d1.psnr.toFixed(1)} dB, after ${d2.psnr.toFixed(1)} dB`,
      );
      // Right of and below the smaller screen: black (allowing for codec ringing at the edge).
      let dark = 0, total = 0;
      for (let y = 0; y < 182; y++) {
        for (let x = 0; x < 242; x++) {
          if (x < 164 && y < 124) continue;
          total++;
          const o = (y * 242 + x) * 3;
          if (after.data[o] + after.data[o + 1] + after.data[o + 2] < 40) dark++;
        }
      }
      assert(dark / total > 0.99, `${dark} of ${total} pixels outside the screen are black`);
    } finally {
      await r.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** A sink counting its frames, to show that others go on. */
function counter(r: Rig) {
  let frames = 0;
  const h = attachSink(r.guest.display$, {
    name: "counter",
    frame: () => {
      frames++;
    },
  });
  return {
    get frames() {
      return frames;
    },
    stop: () => h.stop(),
  };
}

Deno.test("record: ffmpeg missing: one line, the recording ends, other sinks go on", async () => {
  const r = await rig(14, { program: "cursor", width: 64, height: 48 });
  const c = counter(r);
  try {
    const log = memoryLogger();
    let subscribed = 0;
    const display$ = defer(() => {
      subscribed++;
      return r.guest.display$.pipe(finalize(() => subscribed--));
    });
    const rec = startVideoRecorder(display$, {
      path: "/nonexistent-dir/x.mp4",
      fps: 10,
      log,
      ffmpegPath: "/nonexistent/ffmpeg",
    });
    const res: VideoResult = await deadline(rec.done, 5000, "the recorder gives up");
    assertEquals(res.ok, false);
    assertEquals(log.lines, [
      "error cannot record video: ffmpeg not found (apt-get install ffmpeg)",
    ]);
    const before = c.frames;
    await waitFor(() => c.frames > before + 5, "the other sink's frames");
    assertEquals(subscribed, 0, "the recorder no longer watches the display");
    assertEquals((await rec.close()).reason, res.reason, "close() after the end is harmless");
  } finally {
    c.stop();
    await r.stop();
  }
});

Deno.test({
  name: "record: ffmpeg dying mid-way: one line with its exit code and last words; others go on",
  ignore: Deno.build.os === "windows",
  fn: async () => {
    const dir = await tmpDir();
    const r = await rig(15, { program: "cursor", width: 64, height: 48 });
    const c = counter(r);
    try {
      // Takes about five 64x48 frames, then fails the way an encoder does.
      const fake = `${dir}/ffmpeg`;
      await Deno.writeTextFile(
        fake,
        "#!/bin/sh\nhead -c 60000 >/dev/null\necho 'Error: fake encoder gave up' >&2\nexit 3\n",
      );
      await Deno.chmod(fake, 0o755);
      const log = memoryLogger();
      const rec = startVideoRecorder(r.guest.display$, {
        path: `${dir}/x.mp4`,
        fps: 25,
        log,
        ffmpegPath: fake,
        progress: false,
      });
      const res = await deadline(rec.done, 10_000, "the recorder notices");
      assertEquals(res.ok, false);
      const errors = log.lines.filter((l) => l.startsWith("error"));
      assertEquals(errors, [
        "error cannot record video: ffmpeg exited with code 3: Error: fake encoder gave up",
      ]);
      const before = c.frames;
      await waitFor(() => c.frames > before + 5, "the other sink's frames");
    } finally {
      c.stop();
      await r.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** Runs the CLI until `ready(stderr)` holds, then sends `signal`; resolves with its exit and stderr. */
async function runCli(
  args: string[],
  ready: (stderr: string) => boolean,
  then: (child: Deno.ChildProcess) => Promise<void>,
  env?: Record<string, string>,
): Promise<{ code: number; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MOD, "--sim", "--vnc", "none", ...args],
    stdout: "null",
    stderr: "piped",
    env,
  }).spawn();
  let text = "";
  const reading = (async () => {
    for await (const s of child.stderr.pipeThrough(new TextDecoderStream())) text += s;
  })();
  try {
    await waitFor(() => ready(text), `CLI output; got:\n${text}`, 20_000);
    await then(child);
    const status = await deadline(child.status, 20_000, "the CLI exits");
    await reading;
    return { code: status.code, stderr: text };
  } catch (e) {
    try {
      child.kill("SIGKILL");
    } catch {
      // gone
    }
    await child.status;
    await reading;
    throw e;
  }
}

for (const [ext, signal] of [["mp4", "SIGTERM"], ["webm", "SIGINT"]] as const) {
  Deno.test({
    name: `record: CLI --record x.${ext}, ${signal} after ~2 s: a complete file`,
    ignore: noFfmpeg,
    fn: async () => {
      const dir = await tmpDir();
      try {
        const path = `${dir}/cli.${ext}`;
        const args = ["--domid", "3", "--guest", "cursor", "--size", "320x240"];
        const out = await runCli(
          [...args, "--record", path, "--record-fps", "10"],
          (t) => t.includes("recording " + path),
          async (child) => {
            await sleep(2000);
            child.kill(signal);
          },
        );
        assertEquals(out.code, 0, out.stderr);
        const m = /recorded .*: (\d+) frames/.exec(out.stderr);
        assert(m, out.stderr);
        const p = await probe(path);
        assertEquals([p.width, p.height, p.rate], [320, 240, "10/1"]);
        assertEquals(p.frames, Number(m[1]));
        assert(p.duration >= 1.5 && p.duration <= 3.5, `duration ${p.duration}`);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

Deno.test("record: CLI --record x.fbs records the VNC session until SIGTERM", async () => {
  const dir = await tmpDir();
  try {
    const path = `${dir}/cli.fbs`;
    const out = await runCli(
      ["--domid", "6", "--guest", "cursor", "--size", "64x48", "--record", path],
      (t) => t.includes(`to ${path}`),
      async (child) => {
        await sleep(500);
        child.kill("SIGTERM");
      },
    );
    assertEquals(out.code, 0, out.stderr);
    assert(/recording .*cli\.fbs ended \(stopped\): \d+ blocks/.test(out.stderr), out.stderr);
    const head = dec.decode((await Deno.readFile(path)).subarray(0, 12));
    assertEquals(head, "FBS 001.000\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("record: CLI without ffmpeg on PATH: one line, and the snapshot sink goes on", async () => {
  const dir = await tmpDir();
  try {
    const png = `${dir}/shot.png`;
    const out = await runCli(
      [
        "--domid",
        "4",
        "--guest",
        "cursor",
        "--size",
        "64x48",
        "--record",
        `${dir}/x.mp4`,
        "--snapshot",
        png,
      ],
      (t) => t.includes("snapshot") && t.includes("written"),
      async (child) => {
        child.kill("SIGTERM");
        await Promise.resolve();
      },
      { PATH: "/nonexistent" },
    );
    assertEquals(out.code, 0, out.stderr);
    const lines = out.stderr.split("\n").filter((l) => l.includes("cannot record video"));
    assertEquals(lines.length, 1, out.stderr);
    assert(
      lines[0].endsWith("cannot record video: ffmpeg not found (apt-get install ffmpeg)"),
      lines[0],
    );
    const img = decodePng(await Deno.readFile(png));
    assertEquals([img.width, img.height], [64, 48]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A decoded PNG as RGB. */
function pngRgb(bytes: Uint8Array): Rgb {
  const img = decodePng(bytes);
  assertEquals([img.channels, img.depth], [3, 8]);
  return { width: img.width, height: img.height, data: img.data as Uint8Array };
}

Deno.test("snapshot: the API writes a PNG with the guest's exact pixels (32 and 16 bpp)", async () => {
  const dir = await tmpDir();
  const r = await rig(16, { width: 100, height: 60 });
  const r16 = await rig(17, { width: 40, height: 30, depth: 16 });
  try {
    paintScreenPicture(r.sim);
    await snapshot(await r.guest.connected(), `${dir}/a.png`);
    const d = diffRgb(pngRgb(await Deno.readFile(`${dir}/a.png`)), guestRgb(r.sim));
    assertEquals(d.pixels, 0, describeDiff(d));

    const fb16 = await r16.guest.connected();
    const words = new Uint16Array(fb16.bytes.buffer, fb16.bytes.byteOffset, 40 * 30);
    for (let i = 0; i < words.length; i++) words[i] = (i * 2654435761) >>> 16;
    await snapshot(fb16, `${dir}/b.png`);
    const got = pngRgb(await Deno.readFile(`${dir}/b.png`));
    // Each RGB565 component scaled to 8 bits, rounded to nearest (convertPixels' rule).
    for (let i = 0; i < 40 * 30; i++) {
      const v = words[i];
      const want = [
        Math.floor((2 * (v >> 11) * 255 + 31) / 62),
        Math.floor((2 * ((v >> 5) & 63) * 255 + 63) / 126),
        Math.floor((2 * (v & 31) * 255 + 31) / 62),
      ];
      assertEquals([...got.data.subarray(i * 3, i * 3 + 3)], want, `pixel ${i}`);
    }
  } finally {
    await r.stop();
    await r16.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

// SIGUSR1 is tested on the CLI in a child process: Deno (>= 2.9.2) also starts its
// inspector on SIGUSR1, which the test runner's own process had better not do.
Deno.test("snapshot: startSnapshots writes at the first full frame, and again on take()", async () => {
  const dir = await tmpDir();
  const r = await rig(18, { width: 64, height: 48 });
  try {
    const path = `${dir}/s.png`;
    const log = memoryLogger();
    const s = startSnapshots(r.guest.display$, path, log, { settleMs: 60_000, signal: false });
    await sleep(200);
    assertEquals(s.count, 0, "nothing until the guest has drawn its screen");
    // The guest draws the top half, then the bottom half: full once both are there.
    paintScreenPicture(r.sim, 0, false);
    r.sim.fbfront!.damage([{ x: 0, y: 0, w: 64, h: 24 }]);
    await sleep(200);
    assertEquals(s.count, 0, "half a screen is not a full frame");
    r.sim.fbfront!.damage([{ x: 0, y: 24, w: 64, h: 24 }]);
    await deadline(s.first, 5000, "the first snapshot");
    assertEquals(s.count, 1);
    assertEquals(diffRgb(pngRgb(await Deno.readFile(path)), guestRgb(r.sim)).pixels, 0);

    paintScreenPicture(r.sim, 1);
    assert(await s.take());
    assertEquals(diffRgb(pngRgb(await Deno.readFile(path)), guestRgb(r.sim)).pixels, 0);

    assertEquals(s.count, 2);
    assert(log.lines.some((l) => /written \(64x48, asked\)/.test(l)), log.lines.join("\n"));
    s.close();
  } finally {
    await r.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("snapshot: a guest that never covers its screen still gets one after settleMs", async () => {
  const dir = await tmpDir();
  const r = await rig(19, { width: 64, height: 48 });
  try {
    const s = startSnapshots(r.guest.display$, `${dir}/s.png`, memoryLogger(), {
      settleMs: 300,
      signal: false,
    });
    await deadline(s.first, 5000, "the settled snapshot");
    assertEquals(s.count, 1);
    s.close();
  } finally {
    await r.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("snapshot: CLI --snapshot writes the first frame, SIGUSR1 a new one of a changing guest", async () => {
  const dir = await tmpDir();
  try {
    const png = `${dir}/cli.png`;
    let first: Uint8Array | undefined;
    let firstMtime: Date | null = null;
    const out = await runCli(
      ["--domid", "5", "--guest", "cursor", "--size", "160x120", "--snapshot", png],
      (t) => t.includes("first full frame"),
      async (child) => {
        first = await Deno.readFile(png);
        firstMtime = (await Deno.stat(png)).mtime;
        await sleep(300); // the cursor moves on
        child.kill("SIGUSR1");
        await waitFor(() => {
          try {
            return Deno.statSync(png).mtime!.getTime() !== firstMtime!.getTime();
          } catch {
            return false;
          }
        }, "a new snapshot");
        await sleep(100);
        child.kill("SIGTERM");
      },
    );
    assertEquals(out.code, 0, out.stderr);
    assert(/snapshot .* written \(160x120, SIGUSR1\)/.test(out.stderr), out.stderr);
    const a = pngRgb(first!), b = pngRgb(await Deno.readFile(png));
    assertEquals([b.width, b.height], [160, 120]);
    assert(diffRgb(a, b).pixels > 0, "the cursor moved between the two snapshots");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
