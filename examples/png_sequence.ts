/**
 * A PNG-sequence recorder: writes the guest's screen to DIR/frame-000001.png,
 * frame-000002.png, ... each time it changed, at most FPS times a second.
 *
 *   deno run -A examples/png_sequence.ts --sim --guest cursor --dir /tmp/frames --fps 2 --seconds 5
 *
 * It is a sink that asks for its pixels as bytes R, G, B (what a PNG row
 * holds) and hands them to fast-png. Writing is async: while a file is being
 * written rxfb holds further frames back and coalesces their damage, so a
 * slow disk drops frames instead of queueing them. The common flags are in
 * sim_guest.ts.
 *
 * @module
 */
import { encode } from "fast-png";
import { attachSink, consoleLogger, type PixelFormat, RGB888, type Sink } from "../mod.ts";
import { startExampleGuest } from "./sim_guest.ts";

/** Bytes R, G, B: 24 bpp, most significant byte (red) first. */
const RGB_BYTES: PixelFormat = { ...RGB888, bigEndian: true };

/** A sink writing each frame it gets as `dir/frame-NNNNNN.png`; `written` hears of each file. */
export function pngSequence(
  dir: string,
  fps = 2,
  written: (path: string) => void = () => {},
): Sink {
  let n = 0;
  let writing: Promise<void> = Promise.resolve();
  return {
    name: "png-sequence",
    format: RGB_BYTES,
    minIntervalMs: 1000 / fps,
    frame(f) {
      const { width, height } = f.fb;
      const png = encode({ width, height, data: f.pixels(), channels: 3, depth: 8 });
      const path = `${dir}/frame-${String(++n).padStart(6, "0")}.png`;
      writing = Deno.writeFile(path, png).then(() => written(path));
      return writing;
    },
    close: () => writing.catch(() => {}), // stopping waits for the file being written
  };
}

if (import.meta.main) {
  const g = await startExampleGuest(Deno.args, {
    dir: { type: "string", default: "frames" },
    fps: { type: "string", default: "2" },
  }, "cursor");
  const dir = String(g.flags.dir);
  await Deno.mkdir(dir, { recursive: true });
  let files = 0;
  const handle = attachSink(
    g.guest.display$,
    pngSequence(dir, Number(g.flags.fps), () => files++),
    consoleLogger("png-sequence", true),
  );
  console.error(`writing PNGs of domain ${g.guest.domid} to ${dir}/; Ctrl-C stops`);
  await g.running();
  handle.stop();
  await handle.done;
  console.log(`${files} PNG files in ${dir}/`);
  await g.stop();
}
