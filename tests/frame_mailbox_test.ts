/**
 * The simulated guest's frame mailbox: nothing posted is lost however the
 * two sides interleave, merged damage covers every posted rectangle, and the
 * vCPU's wait ends only once the kernel handled what it took.
 */
import { assert, assertEquals } from "@rxfb/assert";
import { FrameMailbox, MAILBOX_RECTS, type PostedFrame } from "../sources/sim/frame_mailbox.ts";
import type { Rect } from "../pipeline/rect.ts";

const covers = (outer: Rect, r: Rect) =>
  outer.x <= r.x && outer.y <= r.y && outer.x + outer.w >= r.x + r.w &&
  outer.y + outer.h >= r.y + r.h;

Deno.test("FrameMailbox: posts merge until taken; too many rectangles become their bounding box", () => {
  const kernel = new FrameMailbox();
  const vcpu = new FrameMailbox(kernel.sab);
  const posted: Rect[] = [];
  for (let i = 0; i < MAILBOX_RECTS + 10; i++) {
    const r = { x: i * 3, y: i, w: 2, h: 1 };
    posted.push(r);
    vcpu.post(i, [r], i === 5 ? { width: 640, height: 480 } : undefined);
  }
  const f = kernel.take()!;
  assertEquals(f.n, MAILBOX_RECTS + 9);
  assertEquals(f.size, { width: 640, height: 480 }); // a size change is kept until taken
  assert(f.rects.length <= MAILBOX_RECTS);
  for (const r of posted) assert(f.rects.some((o) => covers(o, r)), `${JSON.stringify(r)} lost`);
  assertEquals(kernel.take(), undefined);
  vcpu.post(99, [{ x: 1, y: 1, w: 1, h: 1 }]);
  assertEquals(kernel.take(), { n: 99, rects: [{ x: 1, y: 1, w: 1, h: 1 }] });
});

Deno.test("FrameMailbox: listen hands over every frame across a Worker-like producer; waitTaken waits for the handler", async () => {
  // A pending Atomics.waitAsync does not keep Deno's event loop alive (the guest's Worker
  // does, in a real run): a timer stands in for it.
  const keepAlive = setInterval(() => {}, 1000);
  const kernel = new FrameMailbox();
  const vcpu = new FrameMailbox(kernel.sab);
  const got: PostedFrame[] = [];
  const listening = kernel.listen((f) => got.push(f));
  for (let n = 0; n < 50; n++) {
    vcpu.post(n, [{ x: n, y: 0, w: 1, h: 1 }]);
    await vcpu.waitTaken();
    assertEquals(got.at(-1)?.n, n, `frame ${n} not handled before waitTaken resolved`);
  }
  // Bursts without waiting: merged, none lost.
  for (let n = 50; n < 80; n++) vcpu.post(n, [{ x: n, y: 0, w: 1, h: 1 }]);
  await vcpu.waitTaken();
  const xs = new Set(got.flatMap((f) => f.rects.map((r) => r.x)));
  for (let n = 0; n < 80; n++) assert(xs.has(n), `frame ${n}'s rectangle lost`);
  kernel.stop();
  await listening;
  await vcpu.waitTaken(); // returns at once once stopped
  clearInterval(keepAlive);
});

Deno.test("FrameMailbox: a vCPU in a Worker runs frame by frame, and stops when the kernel does", async () => {
  const kernel = new FrameMailbox();
  const w = new Worker(new URL("./fixtures/mailbox_vcpu.ts", import.meta.url), { type: "module" });
  const said: string[] = [];
  const heard = (what: string) => {
    const end = Date.now() + 10_000;
    return new Promise<void>((resolve, reject) => {
      const check = () => {
        if (said.includes(what)) resolve();
        else if (Date.now() > end) reject(new Error(`the vCPU never said ${what}`));
        else setTimeout(check, 5);
      };
      check();
    });
  };
  w.onmessage = (e) => said.push(e.data);
  try {
    const frames: number[] = [];
    const listening = kernel.listen((f) => frames.push(f.n));
    w.postMessage(kernel.sab);
    while (frames.length < 100) await new Promise((r) => setTimeout(r, 5));
    // Each frame waited for the kernel: none merged, in order.
    assertEquals(frames.slice(0, 100), [...Array(100).keys()]);
    kernel.stop();
    await listening;
    await heard("ended");
    w.postMessage("ping");
    await heard("pong");
  } finally {
    w.terminate();
  }
});

Deno.test("FrameMailbox.sleep: the vCPU's futex sleep lasts its time, and ends early on mail, stop, or done when asked for", async () => {
  const w = new Worker(new URL("./fixtures/mailbox_waker.ts", import.meta.url), { type: "module" });
  const next = () => new Promise<string>((resolve) => w.onmessage = (e) => resolve(e.data));
  try {
    assertEquals(await next(), "ready");
    for (const what of ["mail", "done", "stop"] as const) {
      const vcpu = new FrameMailbox();
      vcpu.wantsDone(what === "done");
      const wakes = vcpu.wakes, mails = vcpu.mails;
      const armed = next();
      w.postMessage({ sab: vcpu.sab, what, afterMs: 50 });
      assertEquals(await armed, "armed");
      const t = performance.now();
      vcpu.sleep(wakes, 10_000); // blocks this thread until the Worker's call
      const took = performance.now() - t;
      assert(took < 5000, `${what}: slept ${took.toFixed(0)} ms`);
      assertEquals(vcpu.mails !== mails, what === "mail", `${what}: mails`);
      assertEquals(vcpu.stopped, what === "stop");
    }
    // Nobody wakes it: it sleeps its time.
    const box = new FrameMailbox();
    let t = performance.now();
    box.sleep(box.wakes, 40);
    assert(performance.now() - t >= 35, "slept its time");
    // A frame handled while the vCPU sleeps until its next frame is due: no wake-up.
    const armed = next();
    w.postMessage({ sab: box.sab, what: "done", afterMs: 20 });
    assertEquals(await armed, "armed");
    t = performance.now();
    box.sleep(box.wakes, 300);
    assert(performance.now() - t >= 250, "a handled frame woke a vCPU that did not ask");
    // A wake-up between reading `wakes` and sleeping is not lost: the sleep ends at once.
    const wakes = box.wakes;
    new FrameMailbox(box.sab).mail();
    t = performance.now();
    box.sleep(wakes, 10_000);
    assert(performance.now() - t < 1000, "a wake-up before the sleep ends it at once");
  } finally {
    w.terminate();
  }
});
