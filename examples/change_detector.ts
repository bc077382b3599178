/**
 * A change detector: logs when more than N% of the guest's screen changed
 * within a second.
 *
 *   deno run -A examples/change_detector.ts --sim --guest video --percent 20
 *   deno run -A examples/change_detector.ts --sim --guest static --percent 1 --seconds 5
 *
 * It is a sink: rxfb calls `frame()` at most once a `windowMs` (damage in
 * between coalesces), and the sink compares the screen's pixels with the
 * ones it saw the time before. The common flags are in sim_guest.ts.
 *
 * @module
 */
import { attachSink, consoleLogger, type Sink } from "../mod.ts";
import { startExampleGuest } from "./sim_guest.ts";

/** A sink calling `report(pct)` when more than `percent`% of the pixels changed in a window. */
export function changeDetector(
  percent: number,
  report: (pct: number) => void,
  windowMs = 1000,
): Sink {
  let before: Uint32Array | undefined;
  return {
    name: "change-detector",
    minIntervalMs: windowMs, // at most one frame a window: all changes in it, coalesced
    frame(f) {
      const px = f.pixels(); // the whole screen, XRGB8888 (the default format)
      const now = new Uint32Array(px.buffer, px.byteOffset, px.length / 4).slice();
      if (before && before.length === now.length && !f.resized) {
        let changed = 0;
        for (let i = 0; i < now.length; i++) if (now[i] !== before[i]) changed++;
        const pct = (100 * changed) / now.length;
        if (pct > percent) report(pct);
      }
      before = now;
    },
  };
}

if (import.meta.main) {
  const g = await startExampleGuest(
    Deno.args,
    { percent: { type: "string", default: "10" } },
    "video",
  );
  const percent = Number(g.flags.percent);
  const sink = changeDetector(percent, (pct) => {
    console.log(`${new Date().toISOString()} ${pct.toFixed(1)}% of the screen changed`);
  });
  const handle = attachSink(g.guest.display$, sink, consoleLogger("change-detector", true));
  console.error(`watching domain ${g.guest.domid} for changes over ${percent}%; Ctrl-C stops`);
  await g.running();
  handle.stop();
  await g.stop();
}
