import { assert, assertEquals } from "@rxfb/assert";
import { runDaemon } from "../cli/daemon.ts";
import type { SinkSettings } from "../cli/serve_guest.ts";
import { memoryLogger } from "../sources/log.ts";
import { SimGuest } from "../sources/sim/guest.ts";
import { SimXen } from "../sources/sim/platform.ts";
import { waitFor } from "./helpers.ts";

const settings: SinkSettings = {
  vncUnused: true,
  share: "allow-exclusive",
  recordFps: 25,
  quiet: true,
};

/** Connects, reads ServerInit's size and name over RFB 3.8 with security None. */
async function serverInit(port: number) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const buf: number[] = [];
    const read = async (n: number) => {
      while (buf.length < n) {
        const b = new Uint8Array(4096);
        const got = await conn.read(b);
        if (got === null) throw new Error("closed");
        buf.push(...b.subarray(0, got));
      }
      return Uint8Array.from(buf.splice(0, n));
    };
    await read(12);
    await conn.write(new TextEncoder().encode("RFB 003.008\n"));
    const [n] = await read(1);
    await read(n);
    await conn.write(Uint8Array.of(1));
    await read(4);
    await conn.write(Uint8Array.of(1));
    const init = await read(24);
    const dv = new DataView(init.buffer);
    const name = new TextDecoder().decode(await read(dv.getUint32(20)));
    return { width: dv.getUint16(0), height: dv.getUint16(2), name };
  } finally {
    conn.close();
  }
}

Deno.test("daemon (--all): guests are served as they come and detached as they go", async () => {
  const xen = new SimXen();
  const logger = memoryLogger();
  const daemon = runDaemon(xen.platform(), settings, logger);
  const guests: SimGuest[] = [];
  try {
    for (const [domid, w] of [[61, 320], [62, 160]]) {
      const g = await SimGuest.create(xen, domid, { program: "none", width: w, height: 100 });
      guests.push(g);
      await g.boot();
    }
    await waitFor(
      () => daemon.sinks(61)?.vnc !== undefined && daemon.sinks(62)?.vnc !== undefined,
      "both served",
    );
    const p61 = daemon.sinks(61)!.vnc!.port, p62 = daemon.sinks(62)!.vnc!.port;
    assert(p61 !== p62, "each guest on its own display");
    await waitFor(() => guests.every((g) => g.fbfront!.isConnected), "frontends connected");
    assertEquals(await serverInit(p61), { width: 320, height: 100, name: "sim-none-61" });
    assertEquals(await serverInit(p62), { width: 160, height: 100, name: "sim-none-62" });
    // xl vncviewer finds the port here.
    const xs = xen.platform().xenstore;
    assertEquals(await xs.read("/local/domain/61/console/vnc-port"), String(p61));

    // Domain 61 is destroyed: detached, its port closed; 62 goes on.
    await guests[0].stop();
    await xen.destroyDomain(61);
    await waitFor(() => !daemon.domains.has(61), "61 detached");
    await Deno.connect({ hostname: "127.0.0.1", port: p61 }).then(
      (c) => {
        c.close();
        throw new Error("port of a destroyed guest still open");
      },
      () => {},
    );
    assertEquals((await serverInit(p62)).width, 160);

    // A new guest comes later.
    const g63 = await SimGuest.create(xen, 63, { program: "none", width: 200, height: 120 });
    guests.push(g63);
    await g63.boot();
    await waitFor(() => daemon.sinks(63)?.vnc !== undefined, "63 served");
    await waitFor(() => g63.fbfront!.isConnected, "63 connected");
    assertEquals((await serverInit(daemon.sinks(63)!.vnc!.port)).width, 200);
    assert(logger.lines.some((l) => l.includes("dom61: detached")), logger.lines.join("\n"));
    assert(logger.lines.some((l) => l.includes("dom63") && l.includes("VNC server on")));
  } finally {
    await daemon.close();
    for (const g of guests) await g.stop();
  }
});
