/**
 * The simulated guest's `video` workload at 1920x1080: region V (640x360) of frames
 * drawn in sequence into a framebuffer on shared memory, as the guest's is. The
 * JavaScript reference (`drawVideoJs`) against the WebAssembly SIMD kernel
 * (`video_wasm.ts`), and the workload's whole incremental frame (V and the stamp,
 * through the kernel).
 *
 * Run: `deno bench -A bench/video_guest_bench.ts` (Deno's table, JavaScript as
 * baseline), or `deno run -A bench/video_guest_bench.ts`: microseconds per frame and
 * nanoseconds per pixel of V, the median of alternating rounds.
 */
import { createWorkload, drawVideoJs } from "../sources/sim/programs/workloads.ts";
import { WasmVideo } from "../sources/sim/programs/video_wasm.ts";

const W = 1920, H = 1080, VX = 640, VY = 360, VW = 640, VH = 360;

const target = () => ({
  px: new Uint32Array(new SharedArrayBuffer(W * H * 4)),
  width: W,
  height: H,
  strideWords: W,
});

type Draw = (n: number) => void;

const cases: { name: string; draw: Draw }[] = [];
{
  const t = target();
  cases.push({ name: "JavaScript", draw: (n) => drawVideoJs(t, n, VX, VY, 0, VW, 0, VH) });
}
const kernel = WasmVideo.load();
if (kernel) {
  const t = target();
  cases.push({ name: "WebAssembly", draw: (n) => kernel.draw(t, n, VX, VY, 0, VW, 0, VH) });
}
{
  const t = target(), prog = createWorkload("video", W, H);
  prog.drawFrame(t, 0, 0);
  let last = 0;
  // Frames in sequence, so each is the incremental draw (V and the stamp).
  cases.push({ name: "workload frame", draw: () => prog.drawFrame(t, ++last, 0) });
}

let next = 1;
for (const { name, draw } of cases) {
  Deno.bench({
    name: `video V 640x360 in a 1920x1080 shared framebuffer, ${name}`,
    group: "video",
    baseline: name === "JavaScript",
    fn() {
      draw(next++);
    },
  });
}

if (import.meta.main) {
  const FRAMES = 50, ROUNDS = 15;
  const times = cases.map(() => [] as number[]);
  for (let r = 0; r < ROUNDS; r++) {
    cases.forEach(({ draw }, i) => {
      for (let k = 0; k < 10; k++) draw(next++);
      const t0 = performance.now();
      for (let k = 0; k < FRAMES; k++) draw(next++);
      times[i].push((performance.now() - t0) / FRAMES);
    });
  }
  console.log(`video workload at ${W}x${H}, frames in sequence, median of ${ROUNDS}`);
  cases.forEach(({ name }, i) => {
    const ms = times[i].sort((a, b) => a - b)[ROUNDS >> 1];
    const ns = (ms * 1e6) / (VW * VH);
    console.log(
      `${name.padEnd(16)} ${(ms * 1000).toFixed(0).padStart(5)} µs/frame  ${
        ns.toFixed(2)
      } ns/pixel`,
    );
  });
}
