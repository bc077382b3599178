/**
 * Guest programs of the simulator, by name: `demo`, the standard workloads
 * (`desktop`, `scroll`, `video`, `cursor`, `static`), `image:PATH` and
 * `replay:PATH` (an FBS recording played back, `sources/replay/`).
 *
 * ```ts
 * import { loadProgram } from "./mod.ts";
 * const { program, width, height } = await loadProgram("cursor", 320, 200);
 * const t = { px: new Uint32Array(width * height), width, height, strideWords: width };
 * program.drawFrame(t, 0, 0);
 * ```
 *
 * @module
 */

import { createWorkload, type GuestProgram, isWorkloadName, WORKLOAD_NAMES } from "./workloads.ts";
import { createDemo } from "./demo.ts";
import { createImage } from "./image.ts";

export {
  createWorkload,
  drawStamp,
  type DrawTarget,
  type GuestProgram,
  mix32,
  WORKLOAD_NAMES,
  type WorkloadName,
} from "./workloads.ts";
export { createDemo, type DemoOptions } from "./demo.ts";
export { createImage } from "./image.ts";

/** The program names {@link loadProgram} accepts. */
export const PROGRAM_NAMES: readonly string[] = [
  "demo",
  ...WORKLOAD_NAMES,
  "image:PATH",
  "replay:PATH",
];

/** Options of {@link loadProgram} (used by `demo`). */
export interface LoadOptions {
  /** The demo's title. */
  title?: string;
  /** The guest's domain id, shown in the demo's title. */
  domid?: number;
}

/**
 * Makes the program named by `spec` for a w x h screen. `image:PATH` sets the
 * screen to the image's size, `replay:PATH` to the recording's largest size. Throws for an unknown name, listing the valid ones.
 */
export async function loadProgram(
  spec: string,
  w: number,
  h: number,
  opts: LoadOptions = {},
): Promise<{ program: GuestProgram; width: number; height: number }> {
  if (spec === "demo") {
    return { program: createDemo(w, h, opts), width: w, height: h };
  }
  if (isWorkloadName(spec)) {
    return { program: createWorkload(spec, w, h), width: w, height: h };
  }
  if (spec.startsWith("image:")) {
    const path = spec.slice("image:".length);
    if (!path) throw new Error(`guest program "image:" needs a path: image:PATH`);
    return await createImage(path);
  }
  if (spec.startsWith("replay:")) {
    const path = spec.slice("replay:".length);
    if (!path) throw new Error(`guest program "replay:" needs a path: replay:PATH`);
    // Loaded only for replay guests: it brings the RFB decoder and zlib.
    const { createReplay } = await import("../../replay/program.ts");
    const r = await createReplay(path);
    return { program: r.program, width: r.width, height: r.height };
  }
  throw new Error(
    `unknown guest program "${spec}"; valid: ${PROGRAM_NAMES.join(", ")}`,
  );
}
