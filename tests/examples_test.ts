/**
 * The examples in examples/: their sinks against a simulated guest the test
 * paints itself, and each script run as a user would run it.
 */
import { decode as decodePng } from "fast-png";
import { filter, firstValueFrom } from "rxjs";
import { assert, assertEquals } from "@rxfb/assert";
import { attachSink } from "../sinks/sink.ts";
import { changeDetector } from "../examples/change_detector.ts";
import { pngSequence } from "../examples/png_sequence.ts";
import { keysymOf, typeText } from "../examples/type_text.ts";
import type { SimGuest } from "../sources/sim/guest.ts";
import { rig, waitFor } from "./helpers.ts";
import { deadline, describeDiff, diffRgb, guestRgb, sleep } from "./client_tools.ts";

const dir = new URL("../examples/", import.meta.url).pathname;

/** Runs `deno run -A examples/NAME args...`; resolves with its exit code and output. */
async function runExample(name: string, args: string[]) {
  const out = await deadline(
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${dir}${name}`, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output(),
    30_000,
    `examples/${name}`,
  );
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

/** Fills rows [y0, y1) of a 32-bpp guest with `colour` and reports the damage. */
function fill(
  sim: SimGuest,
  colour: number,
  y0 = 0,
  y1 = sim.fbfront!.fb.height,
  x1?: number,
  damage = true,
) {
  const fb = sim.fbfront!.fb;
  const sw = fb.stride / 4;
  const px = new Uint32Array(fb.sab, fb.byteOffset, sw * fb.height);
  const w = x1 ?? fb.width;
  for (let y = y0; y < y1; y++) px.fill(colour, y * sw, y * sw + w);
  if (damage) sim.fbfront!.damage([{ x: 0, y: y0, w, h: y1 - y0 }]);
}

Deno.test("examples: the change detector reports changes over N% and not under", async () => {
  const r = await rig(31, { width: 100, height: 50 });
  try {
    fill(r.sim, 0x102030);
    const reports: number[] = [];
    const h = attachSink(r.guest.display$, changeDetector(10, (p) => reports.push(p), 100));
    await sleep(150); // the first frame: what the screen was
    fill(r.sim, 0xffffff, 0, 50); // everything
    await waitFor(() => reports.length === 1, "a report of the whole screen");
    assertEquals(reports[0], 100);
    await sleep(150);
    fill(r.sim, 0x00ff00, 0, 2, 50); // 100 of 5000 pixels: 2%
    await sleep(250);
    fill(r.sim, 0x00ff00, 0, 2, 50); // damage, but the same pixels: 0%
    await sleep(250);
    assertEquals(reports.length, 1, `no report under 10%: ${reports}`);
    fill(r.sim, 0x000080, 10, 30); // 40%
    await waitFor(() => reports.length === 2, "a report of 40%");
    assertEquals(reports[1], 40);
    h.stop();
  } finally {
    await r.stop();
  }
});

Deno.test("examples: png_sequence writes one PNG per change whose pixels are the guest's", async () => {
  const r = await rig(32, { width: 48, height: 32 });
  const out = await Deno.makeTempDir({ prefix: "rxfb-png-seq-" });
  try {
    // Draw a picture and wait until its damage has come through, so the sink starts after it.
    const drawn = firstValueFrom(r.guest.display$.pipe(filter((e) => e.type === "damage")));
    fill(r.sim, 0xff8800, 8, 16, 20, false);
    fill(r.sim, 0x336699, 16, 32);
    fill(r.sim, 0x336699, 0, 8);
    r.sim.fbfront!.damage([{ x: 0, y: 0, w: 48, h: 32 }]);
    await deadline(drawn, 5000, "the damage of the first picture");
    const written: string[] = [];
    const h = attachSink(r.guest.display$, pngSequence(out, 20, (p) => written.push(p)));
    const check = async (i: number) => {
      const img = decodePng(await Deno.readFile(written[i]));
      const d = diffRgb(
        { width: img.width, height: img.height, data: img.data as Uint8Array },
        guestRgb(r.sim),
      );
      assertEquals(d.pixels, 0, `${written[i]}: ${describeDiff(d)}`);
    };
    await waitFor(() => written.length === 1, "the first PNG");
    assertEquals(written[0], `${out}/frame-000001.png`);
    await check(0);
    await sleep(100);
    assertEquals(written.length, 1, "nothing changed, no new file");
    fill(r.sim, 0x00ff00, 20, 32);
    await waitFor(() => written.length === 2, "the second PNG");
    assertEquals(written[1], `${out}/frame-000002.png`);
    await check(1);
    h.stop();
    await h.done;
  } finally {
    await r.stop();
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("examples: type_text's text reaches the guest's keyboard ring as evdev keys", async () => {
  const r = await rig(33, { width: 64, height: 48 });
  try {
    await waitFor(() => r.guest.pointerIsAbsolute(), "the keyboard connected");
    const press = (code: number) => [{ code, down: true }, { code, down: false }];
    const shifted = (code: number) => [
      { code: 42, down: true },
      { code, down: true },
      { code: 42, down: false },
      { code, down: false },
    ];
    const keys = () =>
      r.sim.inputs.flatMap((e) => e.type === "key" ? [{ code: e.code, down: e.down }] : []);

    // en-us: H (Shift+35), i (23), ! (Shift+2), space (57), Return (28)
    assertEquals(await typeText(r.guest.input, "Hi! \n"), []);
    const want = [...shifted(35), ...press(23), ...shifted(2), ...press(57), ...press(28)];
    await waitFor(() => keys().length >= want.length, "the keys in the guest");
    assertEquals(keys(), want);

    // de: z and y swap (KEY_Y 21, KEY_Z 44); @ is AltGr+q (100 + 16); ☃ cannot be typed.
    r.sim.inputs.length = 0;
    assertEquals(await typeText(r.guest.input, "zy@☃", { keymap: "de" }), ["☃"]);
    const altgr = [
      { code: 100, down: true },
      { code: 16, down: true },
      { code: 100, down: false },
      {
        code: 16,
        down: false,
      },
    ];
    const wantDe = [...press(21), ...press(44), ...altgr];
    await waitFor(() => keys().length >= wantDe.length, "the de keys in the guest");
    assertEquals(keys(), wantDe);
    assertEquals([keysymOf("a"), keysymOf("é"), keysymOf("€"), keysymOf("\n")], [
      0x61,
      0xe9,
      0x10020ac,
      0xff0d,
    ]);
  } finally {
    await r.stop();
  }
});

Deno.test("examples: each script runs against a simulated guest", async () => {
  const out = await Deno.makeTempDir({ prefix: "rxfb-examples-" });
  try {
    const [busy, quiet, seq, typed] = await Promise.all([
      runExample("change_detector.ts", [
        "--sim",
        "--guest",
        "video",
        "--size",
        "160x120",
        "--percent",
        "20",
        "--seconds",
        "2.5",
      ]),
      runExample("change_detector.ts", [
        "--sim",
        "--guest",
        "static",
        "--size",
        "160x120",
        "--percent",
        "20",
        "--seconds",
        "2.5",
      ]),
      runExample("png_sequence.ts", [
        "--sim",
        "--guest",
        "cursor",
        "--size",
        "80x60",
        "--dir",
        out,
        "--fps",
        "5",
        "--seconds",
        "1.5",
      ]),
      runExample("type_text.ts", ["--sim", "--text", "ab\\n", "--keymap", "fr"]),
    ]);
    for (const x of [busy, quiet, seq, typed]) assertEquals(x.code, 0, x.stderr);
    assert(/% of the screen changed/.test(busy.stdout), `video guest: ${busy.stdout}`);
    assertEquals(quiet.stdout, "", "a static guest changes less than 20%");
    const files = [...Deno.readDirSync(out)].map((e) => e.name).sort();
    assert(files.length >= 3, `PNGs: ${files}`);
    assertEquals(seq.stdout.trim(), `${files.length} PNG files in ${out}/`);
    const img = decodePng(await Deno.readFile(`${out}/${files[0]}`));
    assertEquals([img.width, img.height], [80, 60]);
    // fr (AZERTY): a is KEY_Q (16), b is KEY_B (48), Return 28.
    assertEquals(
      typed.stdout.trim(),
      "the guest read 6 key events: +16 -16 +48 -48 +28 -28",
    );
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("examples: the README shows change_detector.ts whole, as it is", async () => {
  const readme = await Deno.readTextFile(new URL("../README.md", import.meta.url));
  const source = await Deno.readTextFile(`${dir}change_detector.ts`);
  const at = readme.indexOf("The change detector, whole:");
  assert(at > 0, "the README introduces it");
  const open = readme.indexOf("```ts ignore\n", at) + "```ts ignore\n".length;
  const close = readme.indexOf("\n```", open);
  assertEquals(readme.slice(open, close), source.trimEnd());
});
