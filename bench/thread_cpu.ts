/**
 * CPU time of one process's threads while a benchmark run goes on, from
 * `/proc/PID/task/TID/schedstat` (nanoseconds, so a thread waking 60 times a
 * second is not rounded to the clock ticks of `/proc/PID/stat`).
 *
 * The peer rig counts all of rxfb's CPU as server CPU, its simulated guest's
 * drawing included, while it subtracts the C harnesses' generator thread and
 * runs Xvnc's drawing client as a process of its own. Sampling rxfb's threads
 * by name (the guest's vCPU names itself `guest-domN`, see
 * `sources/thread_name.ts`) gives the same figure the harnesses get: the
 * server's CPU without its guest's.
 *
 * @module
 */

/** One look at a process's threads: CPU nanoseconds by thread name, by thread, and in all. */
export interface ThreadSample {
  /** performance.now() when taken. */
  at: number;
  total: number;
  byName: Record<string, number>;
  /** Each thread's name and CPU nanoseconds, by thread id. */
  byTid: Map<number, { name: string; ns: number }>;
}

/** The CPU nanoseconds of each thread of `pid`, by name; undefined once it has gone. */
export function sampleThreads(pid: number): ThreadSample | undefined {
  const byName: Record<string, number> = {};
  const byTid = new Map<number, { name: string; ns: number }>();
  let total = 0;
  try {
    for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
      try {
        const ns = Number(
          Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/schedstat`).split(" ")[0],
        );
        const name = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/comm`).trim();
        byName[name] = (byName[name] ?? 0) + ns;
        byTid.set(Number(t.name), { name, ns });
        total += ns;
      } catch {
        // the thread ended between the listing and the read
      }
    }
  } catch {
    return undefined;
  }
  return { at: performance.now(), total, byName, byTid };
}

/** The first process whose command line contains `needle`, if any. */
export function findProcess(needle: string): number | undefined {
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name) || Number(e.name) === Deno.pid) continue;
    try {
      const cmd = Deno.readTextFileSync(`/proc/${e.name}/cmdline`).replaceAll("\0", " ");
      if (cmd.includes(needle) && !cmd.startsWith("bash")) return Number(e.name);
    } catch {
      // gone, or not ours to read
    }
  }
  return undefined;
}

/**
 * Samples the threads of the process whose command line contains `needle`
 * every `everyMs` until stopped; `stop()` gives the share of its CPU that the
 * threads named by `isGuest` used over the last `windowS` seconds sampled
 * (the measured part of a run, which ends when the process is stopped). When
 * a process goes and another takes its place (the previous run's, still
 * exiting when this one began), the one sampled longest counts.
 */
export function watchThreads(
  needle: string,
  isGuest: (name: string) => boolean,
  everyMs = 250,
): { stop(windowS: number): { guestShare: number; samples: number } | undefined } {
  const byPid = new Map<number, ThreadSample[]>();
  let pid: number | undefined;
  const timer = setInterval(() => {
    pid ??= findProcess(needle);
    if (pid === undefined) return;
    const s = sampleThreads(pid);
    if (!s) {
      pid = undefined; // gone: look again next time
      return;
    }
    const list = byPid.get(pid) ?? [];
    list.push(s);
    byPid.set(pid, list);
  }, everyMs);
  return {
    stop(windowS) {
      clearInterval(timer);
      const samples = [...byPid.values()].reduce<ThreadSample[]>(
        (a, b) => (b.length > a.length ? b : a),
        [],
      );
      const last = samples.at(-1);
      if (!last) return undefined;
      const from = samples.find((s) => s.at >= last.at - windowS * 1000);
      if (!from || from === last) return undefined;
      // Thread by thread: one that ended in the window drops out of both sums (a sum by name
      // would lose its whole CPU, and a thread inherits its creator's name), one that started
      // counts from zero.
      let all = 0, guest = 0;
      for (const [tid, t] of last.byTid) {
        const d = t.ns - (from.byTid.get(tid)?.ns ?? 0);
        all += d;
        if (isGuest(t.name)) guest += d;
      }
      if (!(all > 0)) return undefined;
      return {
        guestShare: guest / all,
        samples: samples.filter((s) => s.at >= from.at).length,
      };
    },
  };
}
