import { assert, assertEquals, assertThrows } from "@rxfb/assert";
import { parseDeviceModelArgs, readToolstackVnc } from "../cli/toolstack.ts";
import { SimXen } from "../sources/sim/platform.ts";
import { exists, skipWithout } from "./packages.ts";
import { waitFor } from "./helpers.ts";

const MOD = new URL("../mod.ts", import.meta.url).pathname;

Deno.test("device model: libxl's qemu-dm argv for a PV guest is recognised", () => {
  // Exactly what libxl 4.17 runs (see ../shared/realxen/README.md).
  const dm = parseDeviceModelArgs(
    ["-d", "7", "-domain-name", "vfbtrad", "-nographic", "-nographic", "-M", "xenpv"],
  )!;
  assertEquals([dm.domid, dm.domainName, dm.vnc, dm.vncUnused], [7, "vfbtrad", undefined, false]);
  const withVnc = parseDeviceModelArgs([
    "-d",
    "3",
    "-domain-name",
    "g",
    "-vnc",
    "0.0.0.0:2,password",
    "-vncunused",
    "-k",
    "de",
    "-M",
    "xenpv",
  ])!;
  assertEquals([withVnc.vnc, withVnc.vncUnused, withVnc.keymap], [
    "0.0.0.0:2,password",
    true,
    "de",
  ]);
  assertEquals(parseDeviceModelArgs(["--sim", "--domid", "3"]), undefined, "rxfb's own flags");
  assertThrows(() => parseDeviceModelArgs(["-d", "3", "-M", "pc"]), /xenpv/);
  assertThrows(() => parseDeviceModelArgs(["-d", "x", "-M", "xenpv"]), /domain id/);
  assertThrows(() => parseDeviceModelArgs(["-d", "3", "-M", "xenpv", "-bogus"]), /unknown/);
});

Deno.test("device model: the toolstack's vnc keys become defaults", async () => {
  const xen = new SimXen();
  await xen.createDomain(4);
  await xen.addDevice(4, "vfb", 0, {
    vnc: "1",
    vnclisten: "0.0.0.0",
    vncdisplay: "9",
    vncunused: "1",
    vncpasswd: "s3cret",
    keymap: "fr",
  });
  const t = await readToolstackVnc(xen.platform().xenstore, "/local/domain/0/backend/vfb/4/0");
  assertEquals(t, {
    vnc: true,
    address: "0.0.0.0:9",
    unused: true,
    password: "s3cret",
    keymap: "fr",
  });
  await xen.addDevice(5, "vfb", 0, { vnc: "0" });
  assertEquals(await readToolstackVnc(xen.platform().xenstore, "/local/domain/0/backend/vfb/5/0"), {
    vnc: false,
  });
});

Deno.test("device model: without Xen it says so in one line", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MOD, "-d", "3", "-domain-name", "g", "-nographic", "-M", "xenpv"],
    env: { XENSTORED_PATH: "/nonexistent/socket" },
    stderr: "piped",
    stdout: "null",
  }).output();
  assertEquals(out.code, 1);
  const lines = new TextDecoder().decode(out.stderr).trim().split("\n").filter((l) =>
    !l.includes("device model for domain")
  );
  assertEquals(lines.length, 1, lines.join("\n"));
  assert(lines[0].includes("no Xen found"), lines[0]);
});

const haveTools = exists("/usr/bin/xenstore-ls");

Deno.test({
  name: "cli: --sim --xenstore-socket lets Debian's xenstore-ls see the simulated host",
  ignore: skipWithout(haveTools, "xenstore-utils", "apt-get install -y xenstore-utils"),
  async fn() {
    const dir = await Deno.makeTempDir();
    const sock = `${dir}/xs.sock`;
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        MOD,
        "--sim",
        "--domid",
        "4",
        "--guest",
        "none",
        "--size",
        "64x48",
        "--vnc",
        "none",
        "--xenstore-socket",
        sock,
      ],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    try {
      await waitFor(() => exists(sock), "socket", 20000);
      let text = "";
      for (let i = 0; i < 100 && !text.includes('state = "4"'); i++) {
        const out = await new Deno.Command("xenstore-ls", {
          args: ["/local/domain/0/backend/vfb/4/0"],
          env: { XENSTORED_PATH: sock },
          stdout: "piped",
          stderr: "piped",
        }).output();
        text = new TextDecoder().decode(out.stdout);
        await new Promise((r) => setTimeout(r, 100));
      }
      assert(text.includes('state = "4"'), text);
      assert(text.includes('feature-resize = "1"'), text);
      assert(text.includes('request-update = "1"'), text);
    } finally {
      child.kill("SIGTERM");
      await child.status;
      await child.stderr.cancel();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
