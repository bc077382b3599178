/// <reference lib="deno.worker" />
/**
 * An encoding worker (see `encode_pool.ts`): runs {@link EncodeJob}s on
 * pixels in shared memory with a {@link JobRunner} and posts the results
 * back, transferring their buffers. It says `ready` once loaded, so that the
 * pool never waits for a worker to start.
 *
 * @module
 */
import type { EncodeJob } from "./encode_jobs.ts";
import { JobRunner } from "./encode_pool.ts";
import { nameThisThread } from "../../sources/thread_name.ts";

nameThisThread("vnc-encode");
const runner = new JobRunner();

self.onmessage = (e: MessageEvent<{ id: number; job: EncodeJob }>) => {
  const { id, job } = e.data;
  const { message, transfer } = runner.answer(id, job);
  self.postMessage(message, transfer);
};
self.postMessage({ ready: true });
