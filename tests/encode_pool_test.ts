/**
 * The encoding pool when its workers fail: a crashed or stuck worker is
 * replaced, its jobs run on the main thread, a worker that keeps crashing is
 * given up, and a client whose bands failed still gets exact updates. The
 * workers are `fixtures/failing_encode_worker.ts`, told how to fail by their
 * URL.
 */
import { assert, assertEquals, assertRejects } from "@rxfb/assert";
import type { Framebuffer } from "../pipeline/framebuffer.ts";
import { XRGB8888 } from "../pipeline/pixel_format.ts";
import { memoryLogger } from "../sources/log.ts";
import type { EncodeJob, ZrleJob } from "../sinks/vnc/encode_jobs.ts";
import { SharedStage } from "../sinks/vnc/encode_jobs.ts";
import { EncodePool, JobRunner, RESPAWNS_PER_MINUTE } from "../sinks/vnc/encode_pool.ts";
import { RfbClient } from "./client_rfb.ts";
import { waitFor } from "./helpers.ts";
import { paintTestPicture, type VncRig, vncRig } from "./vnc_rig.ts";

const ZRLE = 16, TIGHT = 7;
/** Workers are type-checked as they load under `deno test`: starting one may take a while. */
const START_MS = 60_000;
/** The pool's deadline for an answer in the tests with stuck workers (the default is 5 s). */
const JOB_DEADLINE_MS = 300;
/** How long those tests wait for a stuck job's result: generous, but not for ever. */
const STUCK_MS = 15_000;

/** The test worker, failing as `fail` says (see the fixture). */
const failing = (fail = "") =>
  new URL(`./fixtures/failing_encode_worker.ts${fail ? `?fail=${fail}` : ""}`, import.meta.url);

/** A ZRLE job over a 256x64 picture in shared memory (kept alive by the returned stage). */
function zrleJob(): { job: ZrleJob; stage: SharedStage } {
  const w = 256, h = 64;
  const bytes = new Uint8Array(w * h * 4);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + (i >> 10) * 13) & 0xff;
  const fb: Framebuffer = { width: w, height: h, stride: w * 4, format: XRGB8888, bytes };
  const stage = new SharedStage();
  const rect = { x: 0, y: 0, w, h };
  const job: ZrleJob = {
    kind: "zrle",
    fb: stage.copy(fb, rect),
    rect,
    pf: XRGB8888,
    level: 6,
    store: false,
  };
  return { job, stage };
}

/** What `job` gives wherever it runs (every run starts from fresh streams). */
const expected = (job: EncodeJob) => new JobRunner().run(job).result;

/** `p`, or a failure naming `what` after `ms`. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Starts the process's pool with `worker`, waits for it, runs `body`, lets the pool go. */
async function withPool(
  opts: { worker: URL; size?: number; jobDeadline?: number },
  body: (pool: EncodePool, log: string[]) => Promise<void>,
) {
  const log = memoryLogger();
  const pool = EncodePool.acquire({ ...opts, log });
  assert(pool, "Deno runs workers: the pool must start");
  try {
    await body(pool, log.lines);
  } finally {
    EncodePool.release();
  }
}

Deno.test("encode pool: a worker that crashes is replaced; its job runs on the main thread, later ones on the new worker", async () => {
  await withPool({ worker: failing(), size: 1 }, async (pool, log) => {
    const { job } = zrleJob();
    const want = expected(job);
    await waitFor(() => pool.ready, "the worker started", START_MS);
    assertEquals(await pool.run(job), want, "on the worker");
    assertEquals(pool.ranHere, 0);

    assertEquals(await pool.run({ ...job, crash: true } as EncodeJob), want, "after the crash");
    assertEquals(pool.ranHere, 1, "the crashed job ran here");
    assertEquals(pool.started, 2, "one replacement");
    const replaced = log.filter((l) => l.includes("encoding worker 1 failed"));
    assertEquals(replaced.length, 1, log.join("\n"));
    assert(/crashing on purpose.*: replaced$/.test(replaced[0]), replaced[0]);

    await waitFor(() => pool.ready, "the replacement started", START_MS);
    const jobs = pool.jobs;
    assertEquals(await pool.run(job), want, "on the new worker");
    assertEquals(pool.jobs, jobs + 1);
    assertEquals(pool.ranHere, 1, "not here");
  });
});

Deno.test("encode pool: a worker stuck in a job is replaced; its job runs on the main thread, later ones on the new worker", async () => {
  await withPool(
    { worker: failing(), size: 1, jobDeadline: JOB_DEADLINE_MS },
    async (pool, log) => {
      const { job } = zrleJob();
      const want = expected(job);
      await waitFor(() => pool.ready, "the worker started", START_MS);
      assertEquals(await pool.run(job), want, "on the worker");

      const stuck = pool.run({ ...job, hang: true } as EncodeJob);
      assertEquals(await within(stuck, STUCK_MS, "the stuck job"), want, "after the worker stuck");
      assertEquals(pool.ranHere, 1, "the stuck job ran here");
      assertEquals(pool.started, 2, "one replacement");
      const replaced = log.filter((l) => l.includes("encoding worker 1"));
      assertEquals(replaced.length, 1, log.join("\n"));
      assert(/did not answer a job in 0\.3 s .*: replaced$/.test(replaced[0]), replaced[0]);

      await waitFor(() => pool.ready, "the replacement started", START_MS);
      const jobs = pool.jobs;
      assertEquals(await pool.run(job), want, "on the new worker");
      assertEquals(pool.jobs, jobs + 1);
      assertEquals(pool.ranHere, 1, "not here");
      assertEquals(log.length, 1, "nothing more logged: " + log.join("\n"));
    },
  );
});

Deno.test("encode pool: a job that fails on its worker runs on the main thread; the worker stays", async () => {
  await withPool({ worker: failing("error"), size: 1 }, async (pool, log) => {
    const { job } = zrleJob();
    await waitFor(() => pool.ready, "the worker started", START_MS);
    assertEquals(await pool.run(job), expected(job));
    assertEquals(await pool.run(job), expected(job));
    assertEquals(pool.ranHere, 2);
    assertEquals(pool.started, 1, "not replaced");
    assert(pool.ready);
    const lines = log.filter((l) => l.includes("failing on purpose"));
    assertEquals(lines.length, 1, "logged once: " + log.join("\n"));
  });
});

Deno.test("encode pool: a job that fails on the main thread too rejects, with both reasons", async () => {
  await withPool({ worker: failing(), size: 1 }, async (pool) => {
    const { job } = zrleJob();
    await waitFor(() => pool.ready, "the worker started", START_MS);
    // 24 bpp is no client format: the encoder throws, on the worker and here.
    const bad: ZrleJob = { ...job, pf: { ...XRGB8888, bitsPerPixel: 24 } };
    await assertRejects(
      () => pool.run(bad),
      /encoding worker 1: .*bitsPerPixel 24.*; on the main thread too: .*bitsPerPixel 24/,
    );
    assertEquals(await pool.run(job), expected(job), "the pool goes on");
  });
});

/** The guest's pixels as the client's (32 bpp, the guest's format) and how many differ. */
function differing(rig: VncRig, c: RfbClient): number {
  const fb = rig.sim.fbfront!.fb;
  const px = new Uint32Array(fb.sab, fb.byteOffset, (fb.stride / 4) * fb.height);
  let bad = 0;
  for (let y = 0; y < fb.height; y++) {
    for (let x = 0; x < fb.width; x++) {
      if ((px[y * (fb.stride / 4) + x] & 0xffffff) !== (c.fb[y * fb.width + x] & 0xffffff)) bad++;
    }
  }
  return bad;
}

for (const [label, enc] of [["ZRLE", ZRLE], ["Tight", TIGHT]] as const) {
  for (
    const [fail, what, logged] of [
      ["crash", "crash their workers", "replaced"],
      ["error", "fail", "failing on purpose"],
      ["hang", "get their workers stuck", "did not answer a job"],
    ]
  ) {
    Deno.test(`encode pool: a ${label} client whose band jobs ${what} gets exact updates and stays connected`, async () => {
      const jobDeadline = fail === "hang" ? JOB_DEADLINE_MS : undefined;
      const opts = { worker: failing(fail), size: 2, jobDeadline };
      await withPool(opts, async (pool, poolLog) => {
        await waitFor(() => pool.ready, "the workers started", START_MS);
        const rig = await vncRig({ width: 640, height: 480 });
        const c = await RfbClient.connect(rig.port, 10_000);
        try {
          paintTestPicture(rig.sim, 1);
          await c.handshake();
          await c.setEncodings([enc]);
          for (let frame = 1; frame <= 2; frame++) {
            if (frame > 1) {
              await waitFor(() => pool.ready, "the workers (re)started", START_MS);
              paintTestPicture(rig.sim, frame);
            }
            const before = pool.ranHere;
            await c.request(frame > 1);
            const rects = await c.update(STUCK_MS);
            assert(rects.every((r) => r.encoding === enc), JSON.stringify(rects));
            assert(
              pool.ranHere > before,
              `frame ${frame}: the bands went to the workers and failed`,
            );
            assertEquals(differing(rig, c), 0, `frame ${frame}: pixels differ`);
          }
          assert(poolLog.some((l) => l.includes(logged)), poolLog.join("\n"));
          assert(!rig.log.some((l) => l.includes("disconnected")), rig.log.join("\n"));
        } finally {
          c.close();
          await rig.stop();
        }
      });
    });
  }
}

Deno.test("encode pool: workers that crash on every start are given up after a few replacements; then clients are encoded on the main thread", async () => {
  await withPool({ worker: failing("start"), size: 2 }, async (pool, log) => {
    await waitFor(() => pool.dead, "every worker given up", START_MS);
    assertEquals(pool.started, 2 * (1 + RESPAWNS_PER_MINUTE), "each replaced a few times, no more");
    assertEquals(log.filter((l) => l.endsWith(": replaced")).length, 2 * RESPAWNS_PER_MINUTE);
    const givenUp = log.filter((l) => l.includes("given up"));
    assertEquals(givenUp.length, 2, log.join("\n"));
    assert(/failing to start on purpose/.test(givenUp[0]), givenUp[0]);
    assert(givenUp[1].includes("no encoding workers left"), givenUp[1]);
    assert(!pool.ready);

    // A job given anyway runs here.
    const { job } = zrleJob();
    assertEquals(await pool.run(job), expected(job));
    assertEquals(pool.jobs, 0);

    // A client's large rectangles are encoded on the main thread, exact.
    const rig = await vncRig({ width: 640, height: 480 });
    const c = await RfbClient.connect(rig.port, 10_000);
    try {
      paintTestPicture(rig.sim, 1);
      await c.handshake();
      await c.setEncodings([ZRLE]);
      await c.request(false);
      await c.update();
      assertEquals(differing(rig, c), 0, "pixels differ");
      assertEquals(pool.jobs, 0, "no job went to a worker");
      assertEquals(pool.started, 2 * (1 + RESPAWNS_PER_MINUTE), "no worker started since");
    } finally {
      c.close();
      await rig.stop();
    }
  });
});

Deno.test("encode pool: a staging buffer left unused lets its memory go", async () => {
  const idle = new SharedStage(10);
  const fb: Framebuffer = {
    width: 512,
    height: 512,
    stride: 2048,
    format: XRGB8888,
    bytes: new Uint8Array(2048 * 512),
  };
  idle.copy(fb, { x: 0, y: 0, w: 512, h: 512 });
  assertEquals(idle.byteLength, 512 * 512 * 4);
  await waitFor(() => idle.byteLength === 0, "the stage's memory let go");
  idle.copy(fb, { x: 0, y: 0, w: 16, h: 16 });
  assert(idle.byteLength > 0, "taken again when used again");
});
