/**
 * Names the calling thread for the system's tools (`top -H`, `ps -L`,
 * `/proc/PID/task/TID/comm`), so that a look at a busy rxfb process shows
 * which of its threads is a simulated guest's vCPU, which an encoder and
 * which the main thread. Linux only; elsewhere, or without the permission
 * to write `/proc`, it does nothing.
 *
 * @module
 */

/** Longest name Linux keeps (TASK_COMM_LEN less its NUL). */
export const THREAD_NAME_MAX = 15;

/** Sets the calling thread's name, cut to {@link THREAD_NAME_MAX} bytes; true when it took. */
export function nameThisThread(name: string): boolean {
  if (Deno.build.os !== "linux") return false;
  try {
    Deno.writeTextFileSync("/proc/thread-self/comm", name.slice(0, THREAD_NAME_MAX));
    return true;
  } catch {
    return false; // no /proc, or no --allow-write for it: a name is only a convenience
  }
}
