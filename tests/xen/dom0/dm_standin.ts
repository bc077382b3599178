/**
 * A stand-in for `rxfb -d DOMID -domain-name NAME -nographic -M xenpv` while
 * cli/main.ts does not take libxl's qemu-dm argv yet: the same steps, from
 * rxfb's own modules (openXenPlatform, attach, serveVnc and cli/toolstack.ts).
 * Used by tests/xen only when RXFB_XEN_DM=standin.
 */
import { attach } from "../../../sources/attach.ts";
import { consoleLogger } from "../../../sources/log.ts";
import { openXenPlatform } from "../../../sources/xen/platform.ts";
import { serveVnc } from "../../../sinks/vnc/mod.ts";
import {
  markDeviceModelRunning,
  parseDeviceModelArgs,
  publishVncPort,
  readToolstackVnc,
} from "../../../cli/toolstack.ts";

if (Deno.args[0] === "--help") {
  console.log("usage: dm_standin.ts -d DOMID -domain-name NAME -nographic -M xenpv [-vnc ADDR]");
  Deno.exit(0);
}
const args = parseDeviceModelArgs(Deno.args);
if (!args) {
  console.error(`dm-standin: not a qemu-dm argv: ${Deno.args.join(" ")}`);
  Deno.exit(2);
}
const log = consoleLogger("rxfb-dm");
log.info(`argv: ${Deno.args.join(" ")}`);
const xen = await openXenPlatform();
const domid = args.domid;
const guest = await attach({ domid, platform: xen, log });
await markDeviceModelRunning(xen.xenstore, xen.backendDomid, domid);
log.info(`dom${domid}: device model running`);
const tv = await readToolstackVnc(
  xen.xenstore,
  `/local/domain/${xen.backendDomid}/backend/vfb/${domid}/0`,
);
log.info(`dom${domid}: toolstack vnc keys ${JSON.stringify(tv)}`);
const vnc = await serveVnc(guest, {
  address: args.vnc ?? tv.address,
  defaultDisplay: domid,
  unused: args.vncUnused || tv.unused,
  keymap: args.keymap ?? tv.keymap,
  name: args.domainName ?? `domain ${domid}`,
  log: log.child(`dom${domid} vnc`),
});
await publishVncPort(xen.xenstore, domid, vnc.port);
const stop = async (sig: string) => {
  log.info(`dom${domid}: ${sig}, stopping`);
  vnc.close();
  await guest.close();
  await xen.close();
  log.info("stopped");
  Deno.exit(0);
};
for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) Deno.addSignalListener(s, () => stop(s));
