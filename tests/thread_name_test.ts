import { assert, assertEquals } from "@rxfb/assert";
import { nameThisThread, THREAD_NAME_MAX } from "../sources/thread_name.ts";
import { sampleThreads } from "../bench/thread_cpu.ts";
import { rig, waitFor } from "./helpers.ts";

const linux = Deno.build.os === "linux";

/** Names of this process's threads, from /proc (threads that end meanwhile are left out). */
function threadNames(): string[] {
  const names: string[] = [];
  for (const t of Deno.readDirSync(`/proc/${Deno.pid}/task`)) {
    try {
      names.push(Deno.readTextFileSync(`/proc/${Deno.pid}/task/${t.name}/comm`).trim());
    } catch {
      // ended between the listing and the read (other tests' workers come and go)
    }
  }
  return names;
}

Deno.test({
  name: "nameThisThread: a long name is cut to what Linux keeps",
  ignore: !linux,
  fn() {
    const was = Deno.readTextFileSync("/proc/thread-self/comm").trim();
    try {
      assert(nameThisThread("rxfb-a-very-long-thread-name"));
      assertEquals(
        Deno.readTextFileSync("/proc/thread-self/comm").trim(),
        "rxfb-a-very-long-thread-name".slice(0, THREAD_NAME_MAX),
      );
    } finally {
      nameThisThread(was);
    }
  },
});

Deno.test({
  name: "a simulated guest's vCPU thread is named guest-domN, and its CPU time can be told apart",
  ignore: !linux,
  async fn() {
    const r = await rig(47, { program: "desktop", width: 320, height: 200 });
    try {
      await waitFor(() => threadNames().includes("guest-dom47"), "a thread named guest-dom47");
      const a = sampleThreads(Deno.pid)!;
      await waitFor(
        () =>
          (sampleThreads(Deno.pid)!.byName["guest-dom47"] ?? 0) > (a.byName["guest-dom47"] ?? 0),
        "the guest thread's CPU time to grow",
      );
      const b = sampleThreads(Deno.pid)!;
      assert(b.total >= b.byName["guest-dom47"], "a thread's time is part of the total");
      // Thread by thread too (what watchThreads sums, so that threads ending do not count).
      const guests = [...b.byTid.values()].filter((t) => t.name === "guest-dom47");
      assert(guests.length >= 1, "the guest's thread by its id");
      assertEquals(guests.reduce((n, t) => n + t.ns, 0), b.byName["guest-dom47"]);
    } finally {
      await r.stop();
    }
  },
});
