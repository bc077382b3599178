/**
 * Tight's gradient filter (`gradientDifferences`) on frame 5 of the desktop workload
 * at 1920x1080, called as the Tight encoder calls it: on strips of 1920x32 pixels
 * (its largest sub-rectangles), R, G, B at byte offsets 2, 1, 0 (XRGB8888). The
 * JavaScript reference against the WebAssembly SIMD kernel, relaxed and plain.
 *
 * Run: `deno bench -A bench/gradient_bench.ts` (Deno's table, JavaScript as baseline),
 * or `deno run -A bench/gradient_bench.ts`: nanoseconds per pixel of each, the median
 * of alternating rounds.
 */
import { gradientDifferencesJs } from "../sinks/vnc/encodings/tight.ts";
import { WasmGradient } from "../sinks/vnc/encodings/gradient_wasm.ts";
import { createWorkload } from "../sources/sim/programs/workloads.ts";

const W = 1920, H = 1080, STRIP = 32;
const AT = [2, 1, 0] as const;

const px = new Uint32Array(W * H);
const prog = createWorkload("desktop", W, H);
for (let n = 0; n <= 5; n++) prog.drawFrame({ px, width: W, height: H, strideWords: W }, n, 0);
const bytes = new Uint8Array(px.buffer);
const dst = new Uint8Array(W * STRIP * 3);

type Filter = typeof gradientDifferencesJs;

/** The whole frame through `f`, strip by strip; the zero count (used, so nothing is elided). */
function frame(f: Filter): number {
  let zeros = 0;
  for (let y = 0; y < H; y += STRIP) {
    const h = Math.min(STRIP, H - y);
    zeros += f(bytes.subarray(y * W * 4, (y + h) * W * 4), W, h, AT, dst);
  }
  return zeros;
}

const cases: { name: string; f: Filter }[] = [{ name: "JavaScript", f: gradientDifferencesJs }];
for (const build of ["relaxed", "simd"] as const) {
  const g = WasmGradient.load(build);
  if (g) cases.push({ name: `WebAssembly ${build}`, f: (...a) => g.differences(...a)! });
}
const zeros = cases.map(({ f }) => frame(f));
if (zeros.some((z) => z !== zeros[0])) throw new Error(`zero counts differ: ${zeros}`);

for (const { name, f } of cases) {
  Deno.bench({
    name: `gradient filter, desktop 1920x1080 in 1920x32 strips, ${name}`,
    group: "gradient",
    baseline: name === "JavaScript",
    fn() {
      frame(f);
    },
  });
}

if (import.meta.main) {
  const times = cases.map(() => [] as number[]);
  for (let r = 0; r < 21; r++) {
    cases.forEach(({ f }, i) => {
      for (let k = 0; k < 2; k++) frame(f);
      const t0 = performance.now();
      for (let k = 0; k < 5; k++) frame(f);
      times[i].push((performance.now() - t0) / 5);
    });
  }
  console.log(`gradient filter, desktop frame 5, ${W}x${H} in ${W}x${STRIP} strips, median of 21`);
  cases.forEach(({ name }, i) => {
    const ms = times[i].sort((a, b) => a - b)[10];
    const ns = (ms * 1e6) / (W * H);
    console.log(`${name.padEnd(20)} ${ms.toFixed(2).padStart(7)} ms  ${ns.toFixed(2)} ns/pixel`);
  });
}
