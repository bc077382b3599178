/**
 * The RFB protocol as a raw client sees it (tests/client_rfb.ts, written from
 * the spec): versions and refusals, ServerInit, pixel formats and colour
 * maps, every encoding decoded back to the guest's pixels, incremental
 * updates, resizes, the QEMU and TigerVNC extensions, and the shared flag.
 */
import { assert, assertEquals, assertStrictEquals } from "@rxfb/assert";
import { BGR233, type PixelFormat, XRGB8888 } from "../pipeline/pixel_format.ts";
import { convertPixels } from "../pipeline/convert_pixels.ts";
import { paintTestPicture, type VncRig, vncRig } from "./vnc_rig.ts";
import { msg, pixelValues, type RectInfo, RfbClient, RfbEof } from "./client_rfb.ts";
import { until } from "./client_tools.ts";

const RGB565_BE: PixelFormat = {
  bitsPerPixel: 16,
  depth: 16,
  bigEndian: true,
  trueColour: true,
  redMax: 31,
  greenMax: 63,
  blueMax: 31,
  redShift: 11,
  greenShift: 5,
  blueShift: 0,
};
const RGBX_BE: PixelFormat = {
  ...XRGB8888,
  bigEndian: true,
  redShift: 24,
  greenShift: 16,
  blueShift: 8,
};
const COLOUR_MAP_8: PixelFormat = { ...BGR233, trueColour: false };

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The guest's pixels in a client format, as values. */
function expected(rig: VncRig, pf: PixelFormat): Uint32Array {
  const fb = rig.guest.framebuffer()!;
  return pixelValues(convertPixels(fb, { x: 0, y: 0, w: fb.width, h: fb.height }, pf), pf);
}

/** Fails with the first differing pixel unless the client's framebuffer equals `want` (lossy pixels skipped if `lossyOk`). */
function assertPixels(c: RfbClient, want: Uint32Array, what: string, lossyOk = false): void {
  assertStrictEquals(c.fb.length, want.length, `${what}: framebuffer size`);
  let bad = 0, first = "";
  for (let i = 0; i < want.length; i++) {
    if (lossyOk && c.lossy[i]) continue;
    if (c.fb[i] !== want[i]) {
      if (!bad) {
        first = `(${i % c.width},${Math.floor(i / c.width)}) is 0x${c.fb[i].toString(16)}, want 0x${
          want[i].toString(16)
        }`;
      }
      bad++;
    }
  }
  assertStrictEquals(bad, 0, `${what}: ${bad} pixels differ, first ${first}`);
}

/** A rig with the test picture and a client through the handshake (3.8, shared). */
async function withClient(
  fn: (rig: VncRig, c: RfbClient) => Promise<void>,
  vncOpts: Parameters<typeof vncRig>[1] = {},
): Promise<void> {
  const rig = await vncRig({}, vncOpts);
  let c: RfbClient | undefined;
  try {
    paintTestPicture(rig.sim);
    c = await RfbClient.connect(rig.port);
    await c.handshake();
    await fn(rig, c);
  } finally {
    c?.close();
    await rig.stop();
  }
}

/** Log lines about disconnects, for messages. */
const disconnects = (rig: VncRig) => rig.log.filter((l) => l.includes("disconnected"));

// ---------------------------------------------------------------- versions

for (
  const [version, logged, result] of [
    ["RFB 003.003\n", "RFB 3.3", false],
    ["RFB 003.007\n", "RFB 3.7", false],
    ["RFB 003.008\n", "RFB 3.8", true],
    ["RFB 003.005\n", "RFB 3.3", false], // 3.4-3.6 are 3.3 (RFC 6143)
    ["RFB 003.889\n", "RFB 3.8", true], // Apple Remote Desktop's
  ] as const
) {
  Deno.test(`protocol: handshake as ${JSON.stringify(version)} (served as ${logged})`, async () => {
    const rig = await vncRig();
    const c = await RfbClient.connect(rig.port);
    try {
      assertStrictEquals(dec.decode(await c.read(12)), "RFB 003.008\n");
      await c.write(enc.encode(version));
      if (logged === "RFB 3.3") {
        // 3.3: the server decides, a U32 type; None has no SecurityResult.
        assertEquals([...await c.read(4)], [0, 0, 0, 1]);
      } else {
        assertEquals([...await c.read(2)], [1, 1], "one type offered: None");
        await c.write(Uint8Array.of(1));
        // SecurityResult for None only from 3.8 on.
        if (result) assertEquals([...await c.read(4)], [0, 0, 0, 0]);
      }
      await c.write(Uint8Array.of(1));
      const init = await c.serverInit();
      assertStrictEquals(init.width, 320);
      assertStrictEquals(init.name, "domain 7");
      assert(rig.log.some((l) => l.endsWith(logged)), rig.log.join("\n"));
      // The connection works: a full update arrives.
      await c.request(false);
      await c.update();
    } finally {
      c.close();
      await rig.stop();
    }
  });
}

for (
  const [what, bytes] of [
    ["RFB 004.001 (RealVNC 4.6)", "RFB 004.001\n"],
    ["RFB 002.002", "RFB 002.002\n"],
    ["HTTP", "GET / HTTP/1.1\r\n"],
    ["binary garbage", "\x00\x01\x02\x03\xff\xfe\xfd\xfc\x80\x81\x82\x83"],
  ] as const
) {
  Deno.test(`protocol: version ${what} is refused with a reason, in 3.3 form`, async () => {
    const rig = await vncRig();
    const c = await RfbClient.connect(rig.port);
    try {
      await c.read(12);
      await c.write(enc.encode(bytes).subarray(0, 12));
      assertEquals([...await c.read(4)], [0, 0, 0, 0], "security type 0: failed");
      const reason = await c.reason();
      assert(/unsupported protocol version/.test(reason), reason);
      assert(await c.closedWithin(2000), "closed after the reason");
      await until(
        () => rig.log.some((l) => /disconnected: unsupported protocol version/.test(l)),
        "the logged reason",
      );
    } finally {
      c.close();
      await rig.stop();
    }
  });
}

Deno.test("protocol: a client choosing a type that was not offered gets a reason (3.8)", async () => {
  const rig = await vncRig();
  const c = await RfbClient.connect(rig.port);
  try {
    await c.read(12);
    await c.write(enc.encode("RFB 003.008\n"));
    assertEquals([...await c.read(2)], [1, 1]);
    await c.write(Uint8Array.of(2)); // VNC auth, not offered
    assertEquals([...await c.read(4)], [0, 0, 0, 1]);
    assert(/not offered/.test(await c.reason()));
    assert(await c.closedWithin(2000));
  } finally {
    c.close();
    await rig.stop();
  }
});

// ---------------------------------------------------------------- ServerInit

Deno.test("protocol: ServerInit gives the guest's size, its pixel format and 'domain N'", async () => {
  const rig = await vncRig({ width: 300, height: 170 }, {}, 9);
  const c = await RfbClient.connect(rig.port);
  try {
    const init = await c.handshake();
    assertStrictEquals(init.width, 300);
    assertStrictEquals(init.height, 170);
    assertStrictEquals(init.name, "domain 9");
    assertEquals(init.pf, XRGB8888);
  } finally {
    c.close();
    await rig.stop();
  }
});

Deno.test("protocol: a 16-bpp guest is announced as RGB565", async () => {
  const rig = await vncRig({ depth: 16 });
  const c = await RfbClient.connect(rig.port);
  try {
    const init = await c.handshake();
    assertEquals(
      [init.pf.bitsPerPixel, init.pf.redMax, init.pf.greenMax, init.pf.blueMax, init.pf.redShift],
      [16, 31, 63, 31, 11],
    );
    await c.request(false);
    await c.update();
  } finally {
    c.close();
    await rig.stop();
  }
});

// ---------------------------------------------------------------- pixel formats

for (
  const [name, pf] of [
    ["32 bpp (ServerInit's)", XRGB8888],
    ["32 bpp big-endian RGBX", RGBX_BE],
    ["16 bpp big-endian RGB565", RGB565_BE],
    ["8 bpp true colour BGR233", BGR233],
  ] as const
) {
  Deno.test(`protocol: SetPixelFormat ${name}: raw pixels are the guest's, converted`, async () => {
    await withClient(async (rig, c) => {
      await c.setPixelFormat(pf);
      await c.setEncodings([0]);
      await c.request(false);
      await c.update();
      assertPixels(c, expected(rig, pf), name);
    });
  });
}

Deno.test("protocol: a colour-map client gets SetColourMapEntries with a fixed BGR233 palette", async () => {
  await withClient(async (rig, c) => {
    await c.setPixelFormat(COLOUR_MAP_8);
    await c.setEncodings([0]);
    const m = await c.until((m) => m.type === "colourmap");
    assert(m.type === "colourmap");
    assertStrictEquals(m.first, 0);
    assertStrictEquals(m.colours.length, 256);
    for (let i = 0; i < 256; i++) {
      const want = [
        Math.round(((i & 7) * 65535) / 7),
        Math.round((((i >> 3) & 7) * 65535) / 7),
        Math.round((((i >> 6) & 3) * 65535) / 3),
      ];
      assertEquals(m.colours[i], want, `entry ${i}`);
    }
    await c.request(false);
    await c.update();
    // Indices into that palette are BGR233 values.
    assertPixels(c, expected(rig, BGR233), "colour-map indices");
    assert(rig.log.some((l) => l.includes("colour-map client")));
  });
});

// ---------------------------------------------------------------- encodings

const ENCODINGS: [string, number[], string[]][] = [
  ["Raw", [0], []],
  ["RRE", [2], []],
  ["Hextile", [5], []],
  ["ZRLE", [16], []],
  ["Tight (no quality level: lossless)", [7], ["fill", "copy", "mono", "palette"]],
  ["TightPNG", [-260], ["fill", "png"]],
  ["Zlib (not implemented: Raw instead)", [6, 0], []],
  ["CopyRect then Hextile (CopyRect is never needed here)", [1, 5], []],
];

for (const [name, list] of ENCODINGS) {
  for (const [fname, pf] of [["32 bpp", XRGB8888], ["16 bpp BE", RGB565_BE]] as const) {
    Deno.test(`protocol: encoding ${name}, ${fname}: decodes to the guest's pixels`, async () => {
      await withClient(async (rig, c) => {
        await c.setPixelFormat(pf);
        await c.setEncodings(list);
        await c.request(false);
        const rects = await c.update();
        const want = list[0] === 6 ? 0 : list[0] === 1 ? list[1] : list[0];
        assert(
          rects.every((r) => r.encoding === want),
          `encodings sent: ${[...new Set(rects.map((r) => r.encoding))]}`,
        );
        assertPixels(c, expected(rig, pf), name);
        // A second, different picture over the same connection (persistent zlib streams).
        paintTestPicture(rig.sim, 2);
        await c.request(true);
        await c.update();
        assertPixels(c, expected(rig, pf), `${name}, second picture`);
      });
    });
  }
}

Deno.test("protocol: Tight with a quality level sends photo-like areas as JPEG (PSNR), the rest exactly", async () => {
  await withClient(async (rig, c) => {
    await c.setEncodings([7, -23 /* quality 9 */]);
    await c.request(false);
    const rects = await c.update();
    const methods = new Set(rects.map((r) => r.method));
    assert(methods.has("jpeg"), `methods ${[...methods]}`);
    const want = expected(rig, XRGB8888);
    assertPixels(c, want, "non-JPEG pixels", true);
    let se = 0, n = 0;
    for (let i = 0; i < want.length; i++) {
      if (!c.lossy[i]) continue;
      for (const s of [16, 8, 0]) se += (((c.fb[i] >> s) & 255) - ((want[i] >> s) & 255)) ** 2;
      n += 3;
    }
    const psnr = 10 * Math.log10(65025 / (se / n));
    assert(psnr > 35, `JPEG PSNR ${psnr.toFixed(1)} dB at quality 9`);
    // Solid blocks (rows 50-99) are fills, never JPEG.
    for (let y = 50; y < 100; y++) {
      for (let x = 0; x < 320; x++) assert(!c.lossy[y * 320 + x], `(${x},${y}) was sent as JPEG`);
    }
  });
});

// ---------------------------------------------------------------- updates

Deno.test("protocol: an incremental request with no damage waits; damage answers it", async () => {
  await withClient(async (rig, c) => {
    await c.setEncodings([0]);
    await c.request(false);
    await c.update();
    await c.request(true);
    assert(!(await c.hasData(400)), "no update without damage");
    // Damage a 10x10 square: the answer covers it (and need not cover more).
    const fb = rig.sim.fbfront!.fb;
    const px = new Uint32Array(fb.sab, fb.byteOffset, (fb.stride / 4) * fb.height);
    for (let y = 20; y < 30; y++) {
      for (let x = 40; x < 50; x++) px[y * (fb.stride / 4) + x] = 0xff0000;
    }
    rig.sim.fbfront!.damage([{ x: 40, y: 20, w: 10, h: 10 }]);
    const rects = await c.update(3000);
    const area = rects.reduce((a, r) => a + r.w * r.h, 0);
    assert(area >= 100 && area < 320 * 200, `updated area ${area}`);
    assertPixels(c, expected(rig, XRGB8888), "after damage");
    // Nothing more is sent until the next request.
    rig.sim.fbfront!.damage([{ x: 0, y: 0, w: 5, h: 5 }]);
    assert(!(await c.hasData(300)), "no update without a request");
  });
});

Deno.test("protocol: a request made while a large update is still being written is answered, not dropped", async () => {
  // 2560x1600 Raw is 16 MB: its write is still in flight (the client reads nothing yet)
  // when the damage and the next incremental request arrive.
  const rig = await vncRig({ width: 2560, height: 1600 });
  const c = await RfbClient.connect(rig.port, 10_000);
  try {
    paintTestPicture(rig.sim);
    await c.handshake();
    await c.setEncodings([0]);
    await c.request(false);
    await new Promise((r) => setTimeout(r, 300));
    const fb = rig.sim.fbfront!.fb;
    const px = new Uint32Array(fb.sab, fb.byteOffset, (fb.stride / 4) * fb.height);
    for (let y = 0; y < 10; y++) {
      for (let x = 0; x < 10; x++) px[y * (fb.stride / 4) + x] = 0xff0000;
    }
    rig.sim.fbfront!.damage([{ x: 0, y: 0, w: 10, h: 10 }]);
    await new Promise((r) => setTimeout(r, 100));
    await c.request(true);
    await c.update(); // the full update, written before the damage
    let second = false;
    try {
      await c.update(3000);
      second = true;
    } catch {
      // no second update
    }
    assert(
      second && c.fb[0] === 0xff0000,
      `the incremental request for the damaged 10x10 square was never answered: pixel (0,0) ` +
        `is 0x${c.fb[0].toString(16)}, the guest has 0xff0000`,
    );
  } finally {
    c.close();
    await rig.stop();
  }
});

Deno.test("protocol: a non-incremental request is answered at once, for the area asked", async () => {
  await withClient(async (_rig, c) => {
    await c.setEncodings([0]);
    await c.request(false);
    await c.update();
    await c.request(false, { x: 10, y: 10, w: 30, h: 20 });
    const rects = await c.update(2000);
    const covered = rects.some((r) => r.x <= 10 && r.y <= 10 && r.x + r.w >= 40 && r.y + r.h >= 30);
    assert(covered, JSON.stringify(rects));
  });
});

// ---------------------------------------------------------------- resize

for (const [name, pseudo] of [["DesktopSize", -223], ["ExtendedDesktopSize", -308]] as const) {
  Deno.test(`protocol: ${name} pseudo-rect when the guest resizes, then pixels at the new size`, async () => {
    await withClient(async (rig, c) => {
      await c.setEncodings([0, pseudo]);
      await c.request(false);
      await c.update();
      assert(rig.sim.resize(160, 100), "guest resize");
      paintTestPicture(rig.sim, 3);
      let rects: RectInfo[] = [];
      await until(async () => {
        await c.request(true);
        rects = await c.update(3000);
        return rects.some((r) => r.encoding === pseudo);
      }, `${name} rect`);
      const r = rects.find((r) => r.encoding === pseudo)!;
      assertEquals([r.w, r.h], [160, 100]);
      if (pseudo === -308) {
        assertStrictEquals(r.x, 0, "x = 0: the server changed the size");
        assertStrictEquals(r.screens?.length, 1);
        assertEquals([r.screens![0].w, r.screens![0].h], [160, 100]);
      }
      assertEquals([c.width, c.height], [160, 100]);
      await c.request(false);
      await c.update();
      assertPixels(c, expected(rig, XRGB8888), "after resize");
    });
  });
}

Deno.test("protocol: a client without DesktopSize is disconnected with a reason when the guest resizes", async () => {
  await withClient(async (rig, c) => {
    await c.setEncodings([0]);
    await c.request(false);
    await c.update();
    assert(rig.sim.resize(200, 120));
    rig.sim.fbfront!.damage([{ x: 0, y: 0, w: 200, h: 120 }]);
    await c.request(true);
    assert(await c.closedWithin(3000), "disconnected");
    await until(() => disconnects(rig).some((l) => /cannot follow/.test(l)), "the reason");
  });
});

Deno.test("protocol: SetDesktopSize is answered 'prohibited' (x=1, status 1)", async () => {
  await withClient(async (_rig, c) => {
    await c.setEncodings([0, -308]);
    await c.request(false);
    await c.update();
    await c.write(msg.setDesktopSize(100, 100));
    await c.request(true);
    const rects = await c.update(3000);
    const r = rects.find((r) => r.encoding === -308);
    assert(r, JSON.stringify(rects));
    assertStrictEquals(r.x, 1, "x = 1: reply to this client's request");
    assertStrictEquals(r.y, 1, "y = 1: prohibited");
    assertEquals([r.w, r.h], [320, 200]);
  });
});

// ---------------------------------------------------------------- QEMU extensions

Deno.test("protocol: QEMU Extended Key Event is acknowledged (-258) once; XT keys reach the guest", async () => {
  await withClient(async (rig, c) => {
    await c.setEncodings([0, -258]);
    await c.request(true); // no damage: the ack alone makes the update
    const rects = await c.update(3000);
    assert(rects.some((r) => r.encoding === -258), JSON.stringify(rects));
    await c.request(true);
    // A real change (damage without one is dropped by the comparison with what was sent).
    const fb = rig.sim.fbfront!.fb;
    new Uint32Array(fb.sab, fb.byteOffset, 1)[0] ^= 0xffffff;
    rig.sim.fbfront!.damage([{ x: 0, y: 0, w: 8, h: 8 }]);
    assert(!(await c.update(3000)).some((r) => r.encoding === -258), "acknowledged once");
    await c.write(msg.qemuKey(true, 0x68, 0x23), msg.qemuKey(false, 0x68, 0x23));
    await until(() => rig.sim.inputs.filter((e) => e.type === "key").length >= 2, "keys");
    assertEquals(rig.sim.inputs.filter((e) => e.type === "key"), [
      { type: "key", code: 35, down: true },
      { type: "key", code: 35, down: false },
    ]);
  });
});

Deno.test("protocol: PointerTypeChange (-257) says absolute (x=1); pointer events are positions", async () => {
  await withClient(async (rig, c) => {
    assert(rig.guest.pointerIsAbsolute(), "the simulated guest has an absolute pointer");
    await c.setEncodings([0, -257]);
    await c.request(true);
    const rects = await c.update(3000);
    const r = rects.find((r) => r.encoding === -257);
    assert(r, JSON.stringify(rects));
    assertStrictEquals(r.x, 1);
    await c.write(msg.pointer(1, 100, 50), msg.pointer(0, 100, 50));
    await until(() => rig.sim.inputs.some((e) => e.type === "key" && !e.down), "button release");
    const pos = rig.sim.inputs.find((e) => e.type === "position");
    assert(pos && pos.type === "position" && pos.x === 100 && pos.y === 50, JSON.stringify(pos));
  });
});

Deno.test("protocol: KeyEvent keysyms reach the guest as evdev codes (h -> KEY_H)", async () => {
  await withClient(async (rig, c) => {
    await c.write(
      msg.key(true, 0x68),
      msg.key(false, 0x68),
      msg.key(true, 0x69),
      msg.key(false, 0x69),
    );
    await until(() => rig.sim.inputs.length >= 4, "4 key events");
    assertEquals(rig.sim.inputs, [
      { type: "key", code: 35, down: true },
      { type: "key", code: 35, down: false },
      { type: "key", code: 23, down: true },
      { type: "key", code: 23, down: false },
    ]);
  });
});

// ---------------------------------------------------------------- TigerVNC extensions

Deno.test("protocol: ContinuousUpdates: EndOfContinuousUpdates on SetEncodings; updates flow unrequested", async () => {
  await withClient(async (rig, c) => {
    await c.setEncodings([0, -313]);
    const m = await c.next(2000);
    assertStrictEquals(m.type, "endcu", "EndOfContinuousUpdates announces support");
    await c.write(msg.enableContinuousUpdates(true, 0, 0, 320, 200));
    // Damage now and twice more: each is sent without any FramebufferUpdateRequest.
    for (let k = 0; k < 3; k++) {
      paintTestPicture(rig.sim, 10 + k);
      const want = expected(rig, XRGB8888);
      await until(async () => {
        await c.update(3000);
        return c.fb.every((v, i) => v === want[i]);
      }, `continuous update ${k}`);
    }
    await c.write(msg.enableContinuousUpdates(false, 0, 0, 320, 200));
    await c.until((m) => m.type === "endcu", 3000);
  });
});

Deno.test("protocol: EnableContinuousUpdates without the pseudo-encoding disconnects with a reason", async () => {
  await withClient(async (rig, c) => {
    await c.setEncodings([0]);
    await c.write(msg.enableContinuousUpdates(true, 0, 0, 320, 200));
    assert(await c.closedWithin(2000));
    await until(() => disconnects(rig).some((l) => /ContinuousUpdates/.test(l)), "the reason");
  });
});

Deno.test("protocol: a Fence request is echoed with its flags and payload", async () => {
  await withClient(async (_rig, c) => {
    const payload = enc.encode("rxfb-fence-42");
    await c.write(msg.fence(0x8000_0000 | 0x1 | 0x4, payload)); // request, BlockBefore, SyncNext
    const m = await c.until((m) => m.type === "fence", 2000);
    assert(m.type === "fence");
    assertStrictEquals(m.flags, 0x5, "request bit cleared, the rest echoed");
    assertStrictEquals(dec.decode(m.payload), "rxfb-fence-42");
    // SetEncodings with Fence makes the server send its own request fence.
    await c.setEncodings([0, -312]);
    const f = await c.until((m) => m.type === "fence", 2000);
    assert(f.type === "fence" && (f.flags & 0x8000_0000) !== 0, JSON.stringify(f));
  });
});

Deno.test("protocol: ClientCutText is read and ignored; the connection goes on", async () => {
  await withClient(async (rig, c) => {
    await c.write(
      msg.cutText(enc.encode("hello clipboard")),
      msg.cutText(new Uint8Array(1 << 20).fill(0x41)), // exactly the 1 MiB limit
      msg.cutText(new Uint8Array(0)),
    );
    await c.setEncodings([0]);
    await c.request(false);
    await c.update(5000);
    assertPixels(c, expected(rig, XRGB8888), "after cut texts");
    assertEquals(disconnects(rig), []);
  });
});

// ---------------------------------------------------------------- shared flag

Deno.test("protocol: a non-shared ClientInit disconnects the other clients (allow-exclusive)", async () => {
  const rig = await vncRig();
  const a = await RfbClient.connect(rig.port), b = await RfbClient.connect(rig.port);
  try {
    await a.handshake("RFB 003.008\n", true);
    await b.handshake("RFB 003.008\n", true);
    const c = await RfbClient.connect(rig.port);
    try {
      await c.handshake("RFB 003.008\n", false);
      assert(await a.closedWithin(2000), "a was disconnected");
      assert(await b.closedWithin(2000), "b was disconnected");
      await c.request(false);
      await c.update();
      await until(
        () => disconnects(rig).filter((l) => /exclusive access/.test(l)).length === 2,
        "two logged reasons",
      );
    } finally {
      c.close();
    }
  } finally {
    a.close();
    b.close();
    await rig.stop();
  }
});

Deno.test("protocol: a shared ClientInit keeps the other clients", async () => {
  const rig = await vncRig();
  paintTestPicture(rig.sim);
  const a = await RfbClient.connect(rig.port), b = await RfbClient.connect(rig.port);
  try {
    await a.handshake("RFB 003.008\n", true);
    await b.handshake("RFB 003.008\n", true);
    for (const c of [a, b]) {
      await c.setEncodings([0]);
      await c.request(false);
      await c.update();
      assertPixels(c, expected(rig, XRGB8888), "both clients");
    }
    assertEquals(disconnects(rig), []);
  } finally {
    a.close();
    b.close();
    await rig.stop();
  }
});

Deno.test("protocol: share policy force-shared keeps others even for a non-shared ClientInit", async () => {
  const rig = await vncRig({}, { share: "force-shared" });
  const a = await RfbClient.connect(rig.port), b = await RfbClient.connect(rig.port);
  try {
    await a.handshake("RFB 003.008\n", true);
    await b.handshake("RFB 003.008\n", false);
    await a.request(false);
    await a.update();
    assertEquals(disconnects(rig), []);
  } finally {
    a.close();
    b.close();
    await rig.stop();
  }
});

Deno.test("protocol: the server closing (rig stop) ends every client's connection", async () => {
  const rig = await vncRig();
  const a = await RfbClient.connect(rig.port);
  try {
    await a.handshake();
    rig.vnc.close();
    let eof = false;
    try {
      await a.read(1, 2000);
    } catch (e) {
      eof = e instanceof RfbEof;
    }
    assert(eof, "EOF");
  } finally {
    a.close();
    await rig.stop();
  }
});
