/**
 * Many simulated guests served by ONE process, each on its own VNC port: the
 * server of `bench/scale.ts`'s `guests` scenario, as a dom0 backend serving
 * every guest of a host would be. One simulated Xen host holds domains
 * 1..N; each guest's program draws in a Worker of this process, and each
 * guest gets its own `serveVnc` on display FIRST + i - 1.
 *
 *   deno run -A bench/many_guests.ts --guests 50 --display 200 --guest scroll --size 640x480 --rate 30
 *
 * Prints `READY pid=PID ports=P1,P2,..` on stdout once every guest is
 * connected, drawing and listening; SIGTERM or SIGINT stops it.
 */
import { scriptFlags } from "./script.ts";
import { attach, consoleLogger, type Guest, serveVnc, SimGuest, SimXen } from "../mod.ts";
import type { VncService } from "../mod.ts";

const USAGE = `usage: deno run -A bench/many_guests.ts [OPTIONS]

  --guests N        simulated guests (domains 1..N) (default 50)
  --display D       the first guest's VNC display; guest i gets D + i - 1 (default 200: port 6100)
  --guest PROGRAM   what each guest shows (default scroll)
  --size WxH        each guest's framebuffer (default 640x480)
  --rate FPS|max    frames a second each guest offers (default 30)
  --verbose         log the backend's info lines too (default: warnings and errors)`;

const opts = scriptFlags(Deno.args, {
  guests: { type: "string" },
  display: { type: "string" },
  guest: { type: "string" },
  size: { type: "string" },
  rate: { type: "string" },
  verbose: { type: "boolean" },
  help: { type: "boolean", short: "h" },
}, USAGE);

const N = Number(opts.guests ?? 50);
const FIRST = Number(opts.display ?? 200);
const PROGRAM = (opts.guest as string | undefined) ?? "scroll";
const [W, H] = String(opts.size ?? "640x480").split("x").map(Number);
const RATE = opts.rate === "max" ? "max" : Number(opts.rate ?? 30);
if (
  !(Number.isInteger(N) && N >= 1 && N < 1000) || !(Number.isInteger(FIRST) && FIRST >= 0) ||
  !(W > 0 && H > 0) || !(RATE === "max" || RATE > 0)
) {
  console.error(`bad option value\n\n${USAGE}`);
  Deno.exit(2);
}

const log = consoleLogger("many_guests", !opts.verbose);
const xen = new SimXen();
const platform = xen.platform();

interface Served {
  sim: SimGuest;
  guest: Guest;
  vnc: VncService;
}

/** Domain `domid`: created, attached, booted, drawing, and served on its display. */
async function serveOne(domid: number): Promise<Served> {
  const glog = log.child(`dom${domid}`);
  const sim = await SimGuest.create(xen, domid, {
    program: PROGRAM,
    width: W,
    height: H,
    rate: RATE,
    log: glog.child("guest"),
  });
  const guest = await attach({ domid, platform, log: glog });
  await sim.boot();
  await guest.connected();
  if (sim.lastFrame < 0) await sim.nextFrame();
  const vnc = await serveVnc(guest, {
    address: `127.0.0.1:${FIRST + domid - 1}`,
    defaultDisplay: FIRST + domid - 1,
    name: sim.domain.name,
    log: glog.child("vnc"),
  });
  return { sim, guest, vnc };
}

// One at a time: each boot waits for its first frame, and N Workers starting
// together would only compete for the same two cores.
const served: Served[] = [];
try {
  for (let d = 1; d <= N; d++) served.push(await serveOne(d));
} catch (e) {
  console.error(`many_guests: guest ${served.length + 1}: ${e instanceof Error ? e.message : e}`);
  Deno.exit(1);
}
console.log(`READY pid=${Deno.pid} ports=${served.map((s) => s.vnc.port).join(",")}`);

await new Promise<void>((resolve) => {
  Deno.addSignalListener("SIGTERM", () => resolve());
  Deno.addSignalListener("SIGINT", () => resolve());
});
for (const s of served) {
  s.vnc.close();
  await s.sim.stop();
  await s.guest.close();
}
Deno.exit(0);
