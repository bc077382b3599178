import { assertEquals } from "@rxfb/assert";
import { map } from "rxjs";
import { TestScheduler } from "rxjs/testing";
import { coalesceDamage } from "../pipeline/coalesce_damage.ts";
import type { DisplayEvent } from "../pipeline/events.ts";
import type { Framebuffer } from "../pipeline/framebuffer.ts";
import { XRGB8888 } from "../pipeline/pixel_format.ts";

const fb: Framebuffer = {
  width: 10,
  height: 10,
  stride: 40,
  format: XRGB8888,
  bytes: new Uint8Array(400),
};
const small: Framebuffer = { ...fb, width: 4, height: 4 };

function scheduler() {
  return new TestScheduler((a, b) => assertEquals(a, b));
}

/** Summarises an update as "R:area" (resized) or "area", with the rects. */
const summary = map((
  u: { region: { area(): number; rects(): readonly unknown[] }; resized: boolean },
) => `${u.resized ? "R" : ""}${u.region.area()}:${JSON.stringify(u.region.rects())}`);

const ev = {
  r: { type: "resize", fb } as DisplayEvent,
  s: { type: "resize", fb: small } as DisplayEvent,
  a: { type: "damage", rects: [{ x: 0, y: 0, w: 2, h: 2 }] } as DisplayEvent,
  b: { type: "damage", rects: [{ x: 1, y: 1, w: 2, h: 2 }] } as DisplayEvent,
  c: { type: "damage", rects: [{ x: 8, y: 8, w: 5, h: 5 }] } as DisplayEvent,
  z: { type: "damage", rects: [{ x: 20, y: 20, w: 5, h: 5 }] } as DisplayEvent,
};
const full = `R100:${JSON.stringify([{ x: 0, y: 0, w: 10, h: 10 }])}`;

Deno.test("coalesceDamage: nothing is emitted until the subscriber asks", () => {
  scheduler().run(({ cold, hot, expectObservable }) => {
    const display = hot("r-a-b---", ev);
    const ask = cold("-------x");
    expectObservable(display.pipe(coalesceDamage(ask), summary)).toBe("-------u", { u: full });
  });
});

Deno.test("coalesceDamage: damage between asks merges into one region", () => {
  scheduler().run(({ hot, expectObservable }) => {
    const display = hot("r-a-b---", ev);
    const ask = hot("-x-----x");
    expectObservable(display.pipe(coalesceDamage(ask), summary)).toBe("-u-----v", {
      u: full,
      v: `7:${
        JSON.stringify([{ x: 0, y: 0, w: 2, h: 1 }, { x: 0, y: 1, w: 3, h: 1 }, {
          x: 1,
          y: 2,
          w: 2,
          h: 1,
        }])
      }`,
    });
  });
});

Deno.test("coalesceDamage: an ask with nothing pending is answered when damage arrives", () => {
  scheduler().run(({ hot, expectObservable }) => {
    const display = hot("r----a--b", ev);
    const ask = hot("-x-x-----");
    expectObservable(display.pipe(coalesceDamage(ask), summary)).toBe("-u---v---", {
      u: full,
      v: `4:${JSON.stringify([{ x: 0, y: 0, w: 2, h: 2 }])}`,
    });
  });
});

Deno.test("coalesceDamage: damage is clipped to the framebuffer; wholly outside is dropped", () => {
  scheduler().run(({ hot, expectObservable }) => {
    const display = hot("r-z-c--", ev);
    const ask = hot("-x---x-");
    expectObservable(display.pipe(coalesceDamage(ask), summary)).toBe("-u---v-", {
      u: full,
      v: `4:${JSON.stringify([{ x: 8, y: 8, w: 2, h: 2 }])}`,
    });
  });
});

Deno.test("coalesceDamage: a resize replaces pending damage with the whole new screen", () => {
  scheduler().run(({ hot, expectObservable }) => {
    const display = hot("r-a-s-b--", ev);
    const ask = hot("-x------x");
    expectObservable(display.pipe(coalesceDamage(ask), summary)).toBe("-u------v", {
      u: full,
      v: `R16:${JSON.stringify([{ x: 0, y: 0, w: 4, h: 4 }])}`,
    });
  });
});

Deno.test("coalesceDamage: completes with its source and unsubscribes the asks", () => {
  scheduler().run(({ hot, expectObservable, expectSubscriptions }) => {
    const display = hot("r-a-|", ev);
    const ask = hot("-x-------");
    expectObservable(display.pipe(coalesceDamage(ask), summary)).toBe("-u--|", { u: full });
    expectSubscriptions(ask.subscriptions).toBe("^---!");
  });
});

Deno.test("coalesceDamage: each subscriber keeps its own pending region", () => {
  scheduler().run(({ hot, expectObservable }) => {
    const display = hot("r-a-b-c-", ev);
    const fast = hot("-x-x-x-x");
    const slow = hot("-x-----x");
    expectObservable(display.pipe(coalesceDamage(fast), summary)).toBe("-u-a-b-c", {
      u: full,
      a: `4:${JSON.stringify([{ x: 0, y: 0, w: 2, h: 2 }])}`,
      b: `4:${JSON.stringify([{ x: 1, y: 1, w: 2, h: 2 }])}`,
      c: `4:${JSON.stringify([{ x: 8, y: 8, w: 2, h: 2 }])}`,
    });
    expectObservable(display.pipe(coalesceDamage(slow), map((u) => u.region.area()))).toBe(
      "-u-----v",
      { u: 100, v: 11 },
    );
  });
});
