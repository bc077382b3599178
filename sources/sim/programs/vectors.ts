/**
 * CRC-32 check values of the standard workloads (`WORKLOADS.md` v1), in the
 * layout of the shared `vectors.json`. Run as a program (`deno task vectors`)
 * it prints that file: its output is byte-identical to it.
 *
 * ```ts
 * import { computeVectors } from "./vectors.ts";
 * const [v] = computeVectors([{ workload: "desktop", width: 800, height: 600, n: 0 }]);
 * if (v.crc32 !== "196f5e71") throw new Error("desktop 800x600 frame 0 is wrong");
 * ```
 *
 * @module
 */

import { crc32 } from "node:zlib";
import { createWorkload, type DrawTarget, type WorkloadName } from "./workloads.ts";

/** The spec the vectors check. */
export const VECTORS_SPEC = "WORKLOADS.md v1";

/** How each check value is computed. */
export const VECTORS_CHECKSUM =
  "zlib crc32 of the W*H*4 framebuffer bytes (little-endian 0x00RRGGBB, line length W*4), stamp drawn with time field 0";

/** A frame to check: workload, screen size and frame number. */
export interface VectorSpec {
  workload: WorkloadName;
  width: number;
  height: number;
  n: number;
}

/** A frame and its check value (8 lowercase hex digits). */
export interface Vector extends VectorSpec {
  crc32: string;
}

/** The frames of the standard list: each size, each workload, frames 0, 1, 2, 59, 1000. */
export function standardVectorList(): VectorSpec[] {
  const list: VectorSpec[] = [];
  const sizes: [number, number][] = [[1920, 1080], [800, 600]];
  const names: WorkloadName[] = ["desktop", "scroll", "video", "cursor", "static"];
  for (const [width, height] of sizes) {
    for (const workload of names) {
      for (const n of [0, 1, 2, 59, 1000]) list.push({ workload, width, height, n });
    }
  }
  return list;
}

/** CRC-32 (zlib) of the first `width` pixels of each row, little-endian, as 8 hex digits. */
export function frameCrc32(t: DrawTarget): string {
  const bytes = new Uint8Array(t.px.buffer, t.px.byteOffset, t.px.byteLength);
  let crc = 0;
  if (t.strideWords === t.width && littleEndian()) {
    crc = crc32(bytes.subarray(0, t.width * t.height * 4));
  } else {
    const row = new Uint8Array(t.width * 4);
    const view = new DataView(row.buffer);
    for (let y = 0; y < t.height; y++) {
      const base = y * t.strideWords;
      for (let x = 0; x < t.width; x++) view.setUint32(x * 4, t.px[base + x], true);
      crc = crc32(row, crc);
    }
  }
  return (crc >>> 0).toString(16).padStart(8, "0");
}

function littleEndian(): boolean {
  return new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
}

/**
 * Draws each listed frame (time field 0) and returns its CRC-32. Frames of one
 * workload and size share a target and a program, so a frame that follows the
 * previous one in the list is drawn incrementally; any other is drawn directly.
 */
export function computeVectors(list: readonly VectorSpec[]): Vector[] {
  const out: Vector[] = [];
  let key = "";
  let t: DrawTarget | undefined;
  let prog: ReturnType<typeof createWorkload> | undefined;
  for (const v of list) {
    const k = `${v.workload} ${v.width}x${v.height}`;
    if (k !== key || !t || !prog) {
      key = k;
      t = {
        px: new Uint32Array(v.width * v.height),
        width: v.width,
        height: v.height,
        strideWords: v.width,
      };
      prog = createWorkload(v.workload, v.width, v.height);
    }
    prog.drawFrame(t, v.n, 0);
    out.push({
      workload: v.workload,
      width: v.width,
      height: v.height,
      n: v.n,
      crc32: frameCrc32(t),
    });
  }
  return out;
}

/** The vectors as `vectors.json` lays them out: one vector object a line. */
export function formatVectors(vectors: readonly Vector[]): string {
  const lines = vectors.map((v) =>
    `    {"workload": ${
      JSON.stringify(v.workload)
    }, "width": ${v.width}, "height": ${v.height}, "n": ${v.n}, "crc32": ${
      JSON.stringify(v.crc32)
    }}`
  );
  return `{\n  "spec": ${JSON.stringify(VECTORS_SPEC)},\n  "checksum": ${
    JSON.stringify(VECTORS_CHECKSUM)
  },\n  "vectors": [\n${lines.join(",\n")}\n  ]\n}\n`;
}

if (import.meta.main) {
  await Deno.stdout.write(
    new TextEncoder().encode(formatVectors(computeVectors(standardVectorList()))),
  );
}
