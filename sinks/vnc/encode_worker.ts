/// <reference lib="deno.worker" />
/**
 * An encoding worker (see `encode_pool.ts`): runs {@link EncodeJob}s on
 * pixels in shared memory and posts the results back, transferring their
 * buffers. It says `ready` once loaded, so that the pool never waits for a
 * worker to start.
 *
 * @module
 */
import type { Framebuffer } from "../../pipeline/framebuffer.ts";
import { ByteWriter } from "./bytes.ts";
import type { EncodeJob, TightBand, ZrleBand } from "./encode_jobs.ts";
import { Encoding } from "./encoder.ts";
import { TightEncoder, TightPNGEncoder } from "./encodings/tight.ts";
import { zlibPlan, ZRLEEncoder } from "./encodings/zrle.ts";
import { createDeflate, type DeflateStream } from "./zlib.ts";

/** A worker's state between jobs: one tile encoder, raw deflate streams by level. */
class JobRunner {
  private readonly zrle = new ZRLEEncoder();
  private readonly tight = new Map<number, TightEncoder | TightPNGEncoder>();
  private readonly streams = new Map<number, DeflateStream>();
  private readonly out = new ByteWriter(1 << 20);

  /** Runs a job; returns the result and the buffers to transfer back. */
  run(job: EncodeJob): { result: ZrleBand | TightBand; transfer: ArrayBuffer[] } {
    const { fb } = job;
    const view: Framebuffer = {
      width: fb.width,
      height: fb.height,
      stride: fb.stride,
      format: fb.format,
      bytes: new Uint8Array(fb.sab, 0, fb.stride * fb.height),
    };
    this.out.clear();
    if (job.kind === "tight") {
      let enc = this.tight.get(job.encoding);
      if (enc === undefined) {
        enc = job.encoding === Encoding.TightPNG ? new TightPNGEncoder() : new TightEncoder();
        this.tight.set(job.encoding, enc);
      }
      enc.forgetStreams(); // fresh streams, reset on the client by their first rectangle
      const rects = enc.encode(view, job.rect, job.opts, this.out);
      const data = this.out.view().slice();
      return { result: { data, rects }, transfer: [data.buffer] };
    }
    const tiles = this.zrle.encodeTiles(view, job.rect, job.pf);
    const plan = zlibPlan(job.level, tiles, () => job.store);
    let z = this.streams.get(plan.level);
    if (z === undefined) this.streams.set(plan.level, z = createDeflate(plan.level, { raw: true }));
    z.reset(); // the band must not refer to the worker's previous bands
    z.setStrategy?.(plan.strategy);
    z.deflateTo(tiles.data, this.out, "sync");
    const data = this.out.view().slice();
    return {
      result: { data, plain: tiles.data.length, measured: plan.measure },
      transfer: [data.buffer],
    };
  }
}

const runner = new JobRunner();

self.onmessage = (e: MessageEvent<{ id: number; job: EncodeJob }>) => {
  const { id, job } = e.data;
  try {
    const { result, transfer } = runner.run(job);
    self.postMessage({ id, result }, transfer);
  } catch (err) {
    self.postMessage({ id, error: err instanceof Error ? err.message : String(err) });
  }
};
self.postMessage({ ready: true });
