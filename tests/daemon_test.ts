import { assert, assertEquals } from "@rxfb/assert";
import { runDaemon } from "../cli/daemon.ts";
import type { SinkSettings } from "../cli/serve_guest.ts";
import { memoryLogger } from "../sources/log.ts";
import { SimGuest } from "../sources/sim/guest.ts";
import { SimXen } from "../sources/sim/platform.ts";
import { waitFor } from "./helpers.ts";
import { RfbClient } from "./client_rfb.ts";

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

Deno.test("daemon (--all): a guest reporting its whole screen in a tight loop is held to its CPU share; the others are served", async () => {
  const xen = new SimXen();
  const logger = memoryLogger();
  const daemon = runDaemon(xen.platform(), settings, logger);
  const guests: SimGuest[] = [];
  const clients: RfbClient[] = [];
  let stop = false;
  let flood: Promise<void> = Promise.resolve();
  try {
    for (const [domid, w, h] of [[71, 1920, 1080], [72, 160, 100]]) {
      const g = await SimGuest.create(xen, domid, { program: "none", width: w, height: h });
      guests.push(g);
      await g.boot();
    }
    await waitFor(
      () => daemon.sinks(71)?.vnc !== undefined && daemon.sinks(72)?.vnc !== undefined,
      "both served",
    );
    await waitFor(() => guests.every((g) => g.fbfront!.isConnected), "frontends connected");
    // A viewer on each: the server takes a guest's damage only while someone watches.
    for (const domid of [71, 72]) {
      const c = await RfbClient.connect(daemon.sinks(domid)!.vnc!.port, 10_000);
      clients.push(c);
      await c.handshake();
      await c.setEncodings([0]);
      c.request(false);
      await c.update();
    }
    // Domain 71 changes a pixel of every 32x32 tile (so every tile is compared and copied)
    // and reports its whole screen, over and over.
    const fb = guests[0].fbfront!.fb;
    const px = new Uint32Array(fb.sab, fb.byteOffset, fb.width * fb.height);
    const whole = [{ x: 0, y: 0, w: fb.width, h: fb.height }];
    let rounds = 0;
    flood = (async () => {
      for (let i = 1; !stop; i++, rounds++) {
        for (let y = 0; y < fb.height; y += 32) {
          for (let x = 0; x < fb.width; x += 32) px[y * fb.width + x] = i & 0xffffff;
        }
        guests[0].fbfront!.damage(whole);
        await new Promise((r) => setTimeout(r, 0));
      }
    })();
    await waitFor(
      () => logger.lines.some((l) => l.includes("dom71") && l.includes("held back")),
      "dom71's damage held back",
      20_000,
    ).catch((e) => {
      throw new Error(`${e.message} (${rounds} rounds)\n${logger.lines.join("\n")}`);
    });
    // Domain 72 is still served: a change there reaches its viewer.
    const fb2 = guests[1].fbfront!.fb;
    new Uint32Array(fb2.sab, fb2.byteOffset, fb2.width * fb2.height).fill(0x00ff00);
    guests[1].fbfront!.damage([{ x: 0, y: 0, w: fb2.width, h: fb2.height }]);
    const c72 = clients[1];
    // (ServerInit's format is the guest's: 0x00RRGGBB.)
    for (let n = 0; c72.fb[0] !== 0x00ff00; n++) {
      assert(n < 50, "dom72's change never arrived");
      c72.request(true);
      await c72.update();
    }
    assert(
      !logger.lines.some((l) => l.includes("dom72") && l.includes("held back")),
      "the quiet guest was held back too",
    );
  } finally {
    stop = true;
    await flood;
    for (const c of clients) c.close();
    await daemon.close();
    for (const g of guests) await g.stop();
  }
});
