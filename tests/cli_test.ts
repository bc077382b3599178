import { assert, assertEquals } from "@rxfb/assert";
import { parseCli, UsageError } from "../cli/main.ts";
import { assertThrows } from "@rxfb/assert";

const MOD = new URL("../mod.ts", import.meta.url).pathname;

async function run(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MOD, ...args],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("cli: flags parse into settings; mistakes are UsageErrors", () => {
  const o = parseCli([
    "--sim",
    "--domid",
    "3",
    "--size",
    "800x600",
    "--depth",
    "16",
    "--rate",
    "max",
  ]);
  assertEquals([o.sim, o.domid, o.width, o.height, o.depth, o.rate], [
    true,
    3,
    800,
    600,
    16,
    "max",
  ]);
  assertEquals(parseCli(["-d", "4"]).domid, 4);
  for (
    const bad of [
      [],
      ["--domid", "x"],
      ["--domid", "0"],
      ["--domid", "3", "--size", "800"],
      ["--domid", "3", "--depth", "12"],
      ["--domid", "3", "--bogus"],
      ["--domid", "3", "stray"],
      ["--domid", "3", "--rate", "fast"],
    ]
  ) {
    assertThrows(() => parseCli(bad), UsageError, JSON.stringify(bad));
  }
});

Deno.test("cli: --record, --record-fps and --snapshot parse; their mistakes are UsageErrors", () => {
  const o = parseCli([
    "--domid",
    "3",
    "--record",
    "out.MP4",
    "--record-fps",
    "10",
    "--snapshot",
    "shot.png",
  ]);
  assertEquals([o.record, o.recordFps, o.snapshot], ["out.MP4", 10, "shot.png"]);
  assertEquals(parseCli(["--domid", "3", "--record", "x.webm"]).recordFps, 25);
  assertEquals(parseCli(["--domid", "3", "--record", "x.fbs"]).record, "x.fbs");
  assertEquals(parseCli(["--domid", "3"]).record, undefined);
  for (
    const [bad, why] of [
      [["--record", "x.avi"], /--record must name a .mp4, .webm or .fbs file/],
      [["--record", "mp4"], /--record must name/],
      [["--record"], /argument missing/],
      [["--record-fps", "10"], /--record-fps goes with --record/],
      [["--record", "x.mp4", "--record-fps", "0"], /--record-fps must be in 1..120/],
      [["--record", "x.mp4", "--record-fps", "121"], /--record-fps must be in 1..120/],
      [["--record", "x.mp4", "--record-fps", "fast"], /--record-fps must be a number/],
      [["--record", "x.fbs", "--record-fps", "10"], /--record-fps is for .mp4 and .webm/],
      [["--snapshot", "x.jpg"], /--snapshot must name a .png file/],
      [["--snapshot"], /argument missing/],
    ] as const
  ) {
    assertThrows(() => parseCli(["--domid", "3", ...bad]), (e: Error) => {
      assert(e instanceof UsageError, `${bad}: ${e}`);
      assert(why.test(e.message), `${bad}: ${e.message}`);
      return true;
    });
  }
});

Deno.test("cli: a bad --record prints the usage and exits 2", async () => {
  const r = await run(["--sim", "--domid", "3", "--record", "x.avi"]);
  assertEquals(r.code, 2);
  assert(r.stderr.includes("--record must name a .mp4, .webm or .fbs file"), r.stderr);
  assert(r.stderr.includes("--record-fps N"), "the usage lists the recording flags");
});

Deno.test("cli: a bad flag prints the usage and exits 2", async () => {
  const r = await run(["--domid", "3", "--frobnicate"]);
  assertEquals(r.code, 2);
  assert(r.stderr.includes("Usage: deno run -A mod.ts"), r.stderr);
  assert(r.stderr.includes("frobnicate"), r.stderr);
});

Deno.test("cli: --domid without --sim and without Xen says so in one line and exits 1", async () => {
  const r = await run(["--domid", "3"], { XENSTORED_PATH: "/nonexistent/xenstored" });
  assertEquals(r.code, 1);
  const lines = r.stderr.trim().split("\n");
  assertEquals(lines.length, 1, r.stderr);
  assert(/no Xen found/.test(lines[0]) && lines[0].includes("--sim"), lines[0]);
});

Deno.test("cli: --sim attaches to the simulated guest, logging each handshake step", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MOD, "--sim", "--domid", "3", "--guest", "demo", "--size", "320x200"],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const deadline = Date.now() + 20000;
  while (!text.includes("pointer is absolute") && Date.now() < deadline) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  child.kill("SIGTERM");
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  const status = await child.status;
  await child.stdout.cancel();
  for (
    const step of [
      "vfb/0: backend InitWait",
      "vfb/0: frontend Initialised",
      "vfb/0: mapped 320x200x32 framebuffer",
      "vfb/0: backend Connected",
      "vfb/0: frontend Connected",
      "vkbd/0: backend Connected",
      "vkbd/0: pointer is absolute",
      "stopped",
    ]
  ) {
    assert(text.includes(step), `missing "${step}" in:\n${text}`);
  }
  assertEquals(status.code, 0);
});
