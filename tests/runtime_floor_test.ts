/**
 * The Deno floor's server (`bench/runtime_floor.ts --serve`) really serves
 * frames: its figure is only a floor if every request for a new frame gets the
 * stamp of a later frame, whose time is the wall clock when it was rung.
 */
import { assert, assertEquals } from "@rxfb/assert";
import { RfbClient } from "./client_rfb.ts";
import { portFree } from "../bench/script.ts";

/** The stamp's number and time, read as rfbbench does (each cell's centre, green >= 128). */
function stamp(c: RfbClient): { n: number; t: number } {
  let n = 0, t = 0;
  for (let i = 0; i < 64; i++) {
    const px = c.fb[((i >> 5) * 8 + 4) * c.width + (i % 32) * 8 + 4];
    const bit = ((px >>> c.pf.greenShift) & c.pf.greenMax) * 255 / c.pf.greenMax >= 128 ? 1 : 0;
    if (i < 32) n |= bit << i;
    else t |= bit << (i - 32);
  }
  return { n: n >>> 0, t: t >>> 0 };
}

Deno.test("runtime floor: each request gets the stamp of a newer frame, timed by the wall clock", async () => {
  let port = 5991;
  while (!portFree(port)) port++;
  const server = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "bench/runtime_floor.ts",
      "--serve",
      "--port",
      String(port),
      "--rate",
      "120",
    ],
    cwd: new URL("..", import.meta.url).pathname,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    const out = server.stdout.getReader();
    const { value } = await out.read();
    assert(new TextDecoder().decode(value).includes(`127.0.0.1:${port}`));
    out.releaseLock();
    const c = await RfbClient.connect(port, 5000);
    try {
      const init = await c.handshake();
      assertEquals([init.width, init.height, init.name], [1920, 1080, "floor"]);
      // The server's white must follow the client's format: big-endian, 0x00FFFFFF is 00 FF FF FF.
      await c.setPixelFormat({ ...c.pf, bigEndian: true });
      await c.setEncodings([0]);
      let last = -1;
      for (let k = 0; k < 20; k++) {
        await c.request(k > 0);
        const rects = await c.update();
        assertEquals(rects, [{ x: 0, y: 0, w: 256, h: 16, encoding: 0 }]);
        const s = stamp(c);
        assert(s.n > last, `frame ${s.n} after ${last}`);
        last = s.n;
        const nowUs = Math.round((performance.timeOrigin + performance.now()) * 1000) >>> 0;
        const age = ((nowUs - s.t) >>> 0) / 1000;
        assert(age < 1000, `the stamp's time is ${age} ms old`);
        const centres = [...Array(64).keys()].map((i) =>
          c.fb[((i >> 5) * 8 + 4) * c.width + (i % 32) * 8 + 4]
        );
        assert(centres.every((p) => p === 0 || p === 0xffffff), "cells are black or white");
        assert(centres.includes(0xffffff), "white in the client's format");
      }
    } finally {
      c.close();
    }
  } finally {
    server.kill();
    await server.status;
    await server.stdout.cancel().catch(() => {});
  }
});
