/**
 * The WebAssembly SIMD path of the `video` workload's region V (`drawVideoJs` in
 * `workloads.ts`, whose JavaScript loop stays the reference and the fallback): the
 * same pixels, about 4 times cheaper (0.7 against 2.7 ns a pixel, 0.17 against
 * 0.63 ms a 1080p frame, the copy into shared memory included). A simulated
 * guest's CPU counts against the backend in the benchmark. The kernel is
 * `pipeline/wasm/video_kernel.wat`; this module feeds it.
 *
 * The kernel writes bands of whole rows (about {@link VIDEO_BAND_PIXELS}, which stay
 * in the L2 cache) into the module's memory; each row then goes to the target with
 * one `set`. A row of V is at most 2560 bytes, too short for libc's memmove to pay
 * for its call (`SpanCopier` would not use it either): 360 rows into shared memory
 * took 55 µs with `set`, 93 µs with memmove. The kernel itself takes about 100 µs.
 * Each thread loads its own instance, synchronously, on first use.
 *
 * @module
 */
import type { DrawTarget } from "./workloads.ts";
import { KERNEL_SIMD } from "../../../pipeline/wasm/video_kernel.ts";
import { instantiate, memoryView } from "../../../pipeline/wasm/instantiate.ts";
import { unshared } from "../../../pipeline/memcmp.ts";

/** Pixels per band: 64 KiB, one page of the module's memory. */
export const VIDEO_BAND_PIXELS = 16384;

interface Kernel {
  readonly memory: WebAssembly.Memory;
  readonly video: (
    dst: number,
    pitch: number,
    n: number,
    ua: number,
    ub: number,
    v0: number,
    v1: number,
  ) => void;
}

/** Draws V through the kernel. */
export class WasmVideo {
  readonly #k: Kernel;
  #view: Uint8Array;
  #words: Uint32Array;

  private constructor(k: Kernel) {
    this.#k = k;
    this.#view = new Uint8Array(k.memory.buffer);
    this.#words = new Uint32Array(k.memory.buffer);
  }

  /** The kernel, or undefined where WebAssembly SIMD cannot run it. */
  static load(): WasmVideo | undefined {
    // The kernel uses no relaxed instruction: its two builds are the same bytes.
    const k = instantiate<Kernel>(KERNEL_SIMD);
    return k && new WasmVideo(k);
  }

  /** `drawVideoJs(t, n, vx, vy, ua, ub, va, vb)`: the same arguments, the same pixels. */
  draw(
    t: DrawTarget,
    n: number,
    vx: number,
    vy: number,
    ua: number,
    ub: number,
    va: number,
    vb: number,
  ): void {
    if (ub <= ua || vb <= va) return;
    const w = ub - ua, pitch = (w + 3) & ~3; // rows padded to whole vectors
    const rows = Math.max(1, Math.floor(VIDEO_BAND_PIXELS / pitch));
    const view = memoryView(this.#k.memory, rows * pitch * 4, this.#view);
    if (view !== this.#view) {
      this.#view = view;
      this.#words = new Uint32Array(view.buffer);
    }
    // A plain view of a guest's shared memory: V8 copies into shared memory 8 bytes at a time.
    const words = this.#words, px = unshared(t.px), stride = t.strideWords, video = this.#k.video;
    for (let v = va; v < vb; v += rows) {
      const k = Math.min(rows, vb - v);
      video(0, pitch * 4, n | 0, ua, ub, v, v + k);
      let at = (vy + v) * stride + vx + ua;
      for (let r = 0; r < k; r++, at += stride) {
        px.set(words.subarray(r * pitch, r * pitch + w), at);
      }
    }
  }
}

let best: WasmVideo | null | undefined;

/** The kernel for this thread, or undefined without WebAssembly SIMD. */
export function wasmVideo(): WasmVideo | undefined {
  if (best === undefined) best = WasmVideo.load() ?? null;
  return best ?? undefined;
}
