/**
 * A simulated Xen host with no guest of its own: its xenstored on a UNIX
 * socket PATH and its hypervisor service on PATH.hv (hv_protocol.ts), for
 * guests (sim/guest_main.ts) and rxfb's backend (`mod.ts --sim-host PATH`)
 * running as separate processes.
 *
 * ```sh
 * deno run -A sources/sim/host_main.ts [--quiet] PATH
 * ```
 *
 * Runs until SIGINT or SIGTERM, then destroys every domain and removes
 * their /dev/shm files and both sockets. At start it removes the /dev/shm
 * files of earlier hosts that died without doing so.
 */
import { parseArgs } from "node:util";
import { consoleLogger } from "../log.ts";
import { shmFilesOf, startSimHost, sweepStaleShm } from "./host.ts";

const USAGE = `Usage: deno run -A sources/sim/host_main.ts [--quiet] PATH

Runs a simulated Xen host: xenstored on the UNIX socket PATH (XENSTORED_PATH=PATH
for xenstore-utils) and the simulated hypervisor on PATH.hv. Then:
  deno run -A sources/sim/guest_main.ts --host PATH --domid N [--guest demo] ...
  deno run -A mod.ts --domid N --sim-host PATH      (or --all --sim-host PATH)
`;

/** Runs the host from the command line; resolves with the exit status. */
export async function hostMain(args: string[]): Promise<number> {
  let values, positionals;
  try {
    ({ values, positionals } = parseArgs({
      args,
      options: { quiet: { type: "boolean" }, help: { type: "boolean", short: "h" } },
      allowPositionals: true,
      strict: true,
    }));
  } catch (e) {
    console.error(`rxfb sim-host: ${e instanceof Error ? e.message : e}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length !== 1) {
    console.error(`rxfb sim-host: one socket PATH is needed\n\n${USAGE}`);
    return 2;
  }
  const path = positionals[0];
  const log = consoleLogger("rxfb sim-host", values.quiet === true);
  const swept = sweepStaleShm();
  if (swept) log.info(`removed ${swept} /dev/shm files of simulated hosts that died`);
  let running;
  try {
    running = startSimHost(path, { log });
  } catch (e) {
    console.error(`rxfb sim-host: ${e instanceof Error ? e.message : e}`);
    return 1;
  }
  log.info(
    `simulated Xen host (pid ${Deno.pid}): xenstore on ${path} (XENSTORED_PATH=${path}), ` +
      `hypervisor on ${running.hvPath}; Ctrl-C stops`,
  );
  await new Promise<void>((resolve) => {
    let signalled = false;
    const stop = () => {
      if (signalled) Deno.exit(1);
      signalled = true;
      resolve();
    };
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
  });
  await running.close();
  const left = shmFilesOf(Deno.pid);
  if (left.length) log.warn(`files left behind: ${left.join(", ")}`);
  log.info("stopped");
  return 0;
}

if (import.meta.main) Deno.exit(await hostMain(Deno.args));
