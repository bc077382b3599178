/**
 * Guest notify -> damage at a subscriber, small rectangle, simulator.
 * Target (issue 2): p50 < 0.2 ms. Prints p50/p99 from 5,000 samples, then
 * registers a Deno.bench of the same round trip.
 */
import { filter, firstValueFrom, Subject } from "rxjs";
import type { DisplayEvent } from "../pipeline/events.ts";
import { rig } from "../tests/helpers.ts";

const r = await rig(9, { width: 1920, height: 1080 });
const events = new Subject<DisplayEvent>();
r.guest.display$.subscribe(events);
const fe = r.sim.fbfront!;

async function roundTrip(i: number): Promise<number> {
  const got = firstValueFrom(events.pipe(filter((e) => e.type === "damage")));
  const t0 = performance.now();
  fe.damage([{ x: i % 1900, y: i % 1000, w: 16, h: 16 }]);
  await got;
  return performance.now() - t0;
}

const samples: number[] = [];
for (let i = 0; i < 500; i++) await roundTrip(i); // warm up
for (let i = 0; i < 5000; i++) samples.push(await roundTrip(i));
samples.sort((a, b) => a - b);
const q = (p: number) => samples[Math.floor(p * (samples.length - 1))];
console.log(
  `notify -> damage (sim, 16x16): p50 ${(q(0.5) * 1000).toFixed(1)} µs, p99 ${
    (q(0.99) * 1000).toFixed(1)
  } µs over ${samples.length} (target p50 < 200 µs)`,
);

let i = 0;
Deno.bench({
  name: "guest notify -> damage at a subscriber (16x16, sim)",
  async fn() {
    await roundTrip(i++);
  },
});
