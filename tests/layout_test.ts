/**
 * Proves the numbers in sources/device/fbif.ts and kbdif.ts against Xen's
 * own headers (<xen/io/fbif.h>, <xen/io/kbdif.h>, Debian's libxen-dev): a C
 * program built with `cc` prints every constant, size and offset, and each
 * is compared with the TypeScript value it is mapped to below. A -m32 build
 * checks the i386 layout (the pd[] offset) when the compiler can make one.
 */
import { assert, assertEquals } from "@rxfb/assert";
import * as fb from "../sources/device/fbif.ts";
import * as kbd from "../sources/device/kbdif.ts";

const INSTALL = "apt-get install -y libxen-dev";

type Abi = "both" | "64" | "32";
/** One check: a C expression and the TypeScript value it must equal. */
type Check = readonly [cExpr: string, ts: number, abi?: Abi];

const pd = "((struct xenfb_page *)0)->pd";

const CHECKS: readonly Check[] = [
  // fbif.h constants
  ["XENFB_TYPE_UPDATE", fb.XENFB_TYPE_UPDATE],
  ["XENFB_TYPE_RESIZE", fb.XENFB_TYPE_RESIZE],
  ["XENFB_TYPE_REFRESH_PERIOD", fb.XENFB_TYPE_REFRESH_PERIOD],
  ["XENFB_NO_REFRESH", fb.XENFB_NO_REFRESH],
  ["XENFB_IN_EVENT_SIZE", fb.XENFB_EVENT_SIZE],
  ["XENFB_OUT_EVENT_SIZE", fb.XENFB_EVENT_SIZE],
  ["sizeof(union xenfb_in_event)", fb.XENFB_EVENT_SIZE],
  ["sizeof(union xenfb_out_event)", fb.XENFB_EVENT_SIZE],
  ["XENFB_IN_RING_SIZE", fb.XENFB_IN_RING_SIZE],
  ["XENFB_IN_RING_OFFS", fb.XENFB_IN_RING_OFFS],
  ["XENFB_IN_RING_LEN", fb.XENFB_IN_RING_LEN],
  ["XENFB_OUT_RING_SIZE", fb.XENFB_OUT_RING_SIZE],
  ["XENFB_OUT_RING_OFFS", fb.XENFB_OUT_RING_OFFS],
  ["XENFB_OUT_RING_LEN", fb.XENFB_OUT_RING_LEN],
  // struct xenfb_page
  ["offsetof(struct xenfb_page, in_cons)", fb.XENFB_PAGE.in_cons],
  ["offsetof(struct xenfb_page, in_prod)", fb.XENFB_PAGE.in_prod],
  ["offsetof(struct xenfb_page, out_cons)", fb.XENFB_PAGE.out_cons],
  ["offsetof(struct xenfb_page, out_prod)", fb.XENFB_PAGE.out_prod],
  ["offsetof(struct xenfb_page, width)", fb.XENFB_PAGE.width],
  ["offsetof(struct xenfb_page, height)", fb.XENFB_PAGE.height],
  ["offsetof(struct xenfb_page, line_length)", fb.XENFB_PAGE.line_length],
  ["offsetof(struct xenfb_page, mem_length)", fb.XENFB_PAGE.mem_length],
  ["offsetof(struct xenfb_page, depth)", fb.XENFB_PAGE.depth],
  [`sizeof(${pd}) / sizeof(${pd}[0])`, fb.XENFB_PAGE.pdLen],
  ["offsetof(struct xenfb_page, pd)", fb.XENFB_PAGE.pd64, "64"],
  [`sizeof(${pd}[0])`, fb.pdEntryBytes("x86_64-abi"), "64"],
  [
    `(XENFB_IN_RING_OFFS - offsetof(struct xenfb_page, pd)) / sizeof(${pd}[0])`,
    fb.usablePdEntries(8),
    "64",
  ],
  ["offsetof(struct xenfb_page, pd)", fb.XENFB_PAGE.pd32, "32"],
  [`sizeof(${pd}[0])`, fb.pdEntryBytes("x86_32-abi"), "32"],
  [
    `(XENFB_IN_RING_OFFS - offsetof(struct xenfb_page, pd)) / sizeof(${pd}[0])`,
    fb.usablePdEntries(4),
    "32",
  ],
  // fbif.h events
  ["offsetof(struct xenfb_update, type)", fb.XENFB_UPDATE.type],
  ["offsetof(struct xenfb_update, x)", fb.XENFB_UPDATE.x],
  ["offsetof(struct xenfb_update, y)", fb.XENFB_UPDATE.y],
  ["offsetof(struct xenfb_update, width)", fb.XENFB_UPDATE.width],
  ["offsetof(struct xenfb_update, height)", fb.XENFB_UPDATE.height],
  ["offsetof(struct xenfb_resize, type)", fb.XENFB_RESIZE.type],
  ["offsetof(struct xenfb_resize, width)", fb.XENFB_RESIZE.width],
  ["offsetof(struct xenfb_resize, height)", fb.XENFB_RESIZE.height],
  ["offsetof(struct xenfb_resize, stride)", fb.XENFB_RESIZE.stride],
  ["offsetof(struct xenfb_resize, depth)", fb.XENFB_RESIZE.depth],
  ["offsetof(struct xenfb_resize, offset)", fb.XENFB_RESIZE.offset],
  ["offsetof(struct xenfb_refresh_period, type)", fb.XENFB_REFRESH_PERIOD.type],
  ["offsetof(struct xenfb_refresh_period, period)", fb.XENFB_REFRESH_PERIOD.period],
  ["offsetof(union xenfb_out_event, update)", 0],
  ["offsetof(union xenfb_out_event, resize)", 0],
  ["offsetof(union xenfb_in_event, refresh_period)", 0],
  // kbdif.h constants
  ["XENKBD_TYPE_MOTION", kbd.XENKBD_TYPE_MOTION],
  ["XENKBD_TYPE_RESERVED", kbd.XENKBD_TYPE_RESERVED],
  ["XENKBD_TYPE_KEY", kbd.XENKBD_TYPE_KEY],
  ["XENKBD_TYPE_POS", kbd.XENKBD_TYPE_POS],
  ["XENKBD_TYPE_MTOUCH", kbd.XENKBD_TYPE_MTOUCH],
  ["XENKBD_MT_EV_DOWN", kbd.XENKBD_MT_EV_DOWN],
  ["XENKBD_MT_EV_UP", kbd.XENKBD_MT_EV_UP],
  ["XENKBD_MT_EV_MOTION", kbd.XENKBD_MT_EV_MOTION],
  ["XENKBD_MT_EV_SYN", kbd.XENKBD_MT_EV_SYN],
  ["XENKBD_MT_EV_SHAPE", kbd.XENKBD_MT_EV_SHAPE],
  ["XENKBD_MT_EV_ORIENT", kbd.XENKBD_MT_EV_ORIENT],
  ["XENKBD_IN_EVENT_SIZE", kbd.XENKBD_EVENT_SIZE],
  ["XENKBD_OUT_EVENT_SIZE", kbd.XENKBD_EVENT_SIZE],
  ["sizeof(union xenkbd_in_event)", kbd.XENKBD_EVENT_SIZE],
  ["sizeof(union xenkbd_out_event)", kbd.XENKBD_EVENT_SIZE],
  ["XENKBD_IN_RING_SIZE", kbd.XENKBD_IN_RING_SIZE],
  ["XENKBD_IN_RING_OFFS", kbd.XENKBD_IN_RING_OFFS],
  ["XENKBD_IN_RING_LEN", kbd.XENKBD_IN_RING_LEN],
  ["XENKBD_OUT_RING_SIZE", kbd.XENKBD_OUT_RING_SIZE],
  ["XENKBD_OUT_RING_OFFS", kbd.XENKBD_OUT_RING_OFFS],
  ["XENKBD_OUT_RING_LEN", kbd.XENKBD_OUT_RING_LEN],
  // struct xenkbd_page
  ["offsetof(struct xenkbd_page, in_cons)", kbd.XENKBD_PAGE.in_cons],
  ["offsetof(struct xenkbd_page, in_prod)", kbd.XENKBD_PAGE.in_prod],
  ["offsetof(struct xenkbd_page, out_cons)", kbd.XENKBD_PAGE.out_cons],
  ["offsetof(struct xenkbd_page, out_prod)", kbd.XENKBD_PAGE.out_prod],
  // kbdif.h events
  ["offsetof(struct xenkbd_motion, type)", kbd.XENKBD_MOTION.type],
  ["offsetof(struct xenkbd_motion, rel_x)", kbd.XENKBD_MOTION.rel_x],
  ["offsetof(struct xenkbd_motion, rel_y)", kbd.XENKBD_MOTION.rel_y],
  ["offsetof(struct xenkbd_motion, rel_z)", kbd.XENKBD_MOTION.rel_z],
  ["offsetof(struct xenkbd_key, type)", kbd.XENKBD_KEY.type],
  ["offsetof(struct xenkbd_key, pressed)", kbd.XENKBD_KEY.pressed],
  ["offsetof(struct xenkbd_key, keycode)", kbd.XENKBD_KEY.keycode],
  ["offsetof(struct xenkbd_position, type)", kbd.XENKBD_POSITION.type],
  ["offsetof(struct xenkbd_position, abs_x)", kbd.XENKBD_POSITION.abs_x],
  ["offsetof(struct xenkbd_position, abs_y)", kbd.XENKBD_POSITION.abs_y],
  ["offsetof(struct xenkbd_position, rel_z)", kbd.XENKBD_POSITION.rel_z],
  ["offsetof(struct xenkbd_mtouch, type)", kbd.XENKBD_MTOUCH.type],
  ["offsetof(struct xenkbd_mtouch, event_type)", kbd.XENKBD_MTOUCH.event_type],
  ["offsetof(struct xenkbd_mtouch, contact_id)", kbd.XENKBD_MTOUCH.contact_id],
  ["offsetof(struct xenkbd_mtouch, u.pos.abs_x)", kbd.XENKBD_MTOUCH.abs_x],
  ["offsetof(struct xenkbd_mtouch, u.pos.abs_y)", kbd.XENKBD_MTOUCH.abs_y],
  ["offsetof(struct xenkbd_mtouch, u.shape.major)", kbd.XENKBD_MTOUCH.major],
  ["offsetof(struct xenkbd_mtouch, u.shape.minor)", kbd.XENKBD_MTOUCH.minor],
  ["offsetof(struct xenkbd_mtouch, u.orientation)", kbd.XENKBD_MTOUCH.orientation],
  ["offsetof(union xenkbd_in_event, motion)", 0],
  ["offsetof(union xenkbd_in_event, key)", 0],
  ["offsetof(union xenkbd_in_event, pos)", 0],
  ["offsetof(union xenkbd_in_event, mtouch)", 0],
];

function checksFor(abi: "64" | "32"): Check[] {
  return CHECKS.filter(([, , a = "both"]) => a === "both" || a === abi);
}

const PRELUDE = `#include <stdint.h>
#include <stddef.h>
#include <xen/io/fbif.h>
#include <xen/io/kbdif.h>
`;

/** A program printing `[v0, v1, ...]` for `checks`, in order. */
function program(checks: readonly Check[]): string {
  const prints = checks.map(([expr], i) =>
    `  printf("%s%lld", ${i ? '",\\n"' : '""'}, (long long)(${expr})); /* ${i} */`
  );
  return `${PRELUDE}#include <stdio.h>\nint main(void) {\n  printf("[");\n${
    prints.join("\n")
  }\n  printf("]\\n");\n  return 0;\n}\n`;
}

/** A translation unit holding `checks` as one array, for compile-only (-S) builds. */
function assemblyUnit(checks: readonly Check[]): string {
  return `${PRELUDE}const long long rxfb_values[] = {\n${
    checks.map(([expr]) => `  (long long)(${expr}),`).join("\n")
  }\n};\n`;
}

/** Reads the `.quad`/`.long` pairs of `rxfb_values` from gcc's assembly (little-endian i386 splits quads). */
function parseAssembly(asm: string, count: number, m32: boolean): number[] {
  const start = asm.indexOf("rxfb_values:");
  assert(start >= 0, "rxfb_values not found in the assembly");
  const words: bigint[] = [];
  for (const line of asm.slice(start).split("\n").slice(1)) {
    const m = line.match(/^\s*\.(quad|long|zero)\s+(-?\d+)/);
    if (!m) {
      if (/^\s*\.(size|text|section|ident|globl)|^\S/.test(line) && words.length) break;
      continue;
    }
    if (m[1] === "zero") {
      for (let i = 0; i < Number(m[2]) / (m32 ? 4 : 8); i++) words.push(0n);
    } else words.push(BigInt(m[2]));
  }
  if (!m32) return words.slice(0, count).map(Number);
  const values: number[] = [];
  for (let i = 0; i < count; i++) {
    values.push(
      Number(BigInt.asIntN(64, (words[2 * i + 1] << 32n) | BigInt.asUintN(32, words[2 * i]))),
    );
  }
  return values;
}

async function run(
  cmd: string,
  args: string[],
): Promise<{ ok: boolean; out: string; err: string }> {
  try {
    const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    return {
      ok: r.success,
      out: new TextDecoder().decode(r.stdout),
      err: new TextDecoder().decode(r.stderr),
    };
  } catch (e) {
    return { ok: false, out: "", err: String(e) };
  }
}

/** Whether `cc` finds both headers (the include path is the compiler's, not a guess). */
async function probe(): Promise<{ ok: boolean; why: string }> {
  const dir = await Deno.makeTempDir({ prefix: "rxfb-layout-probe-" });
  try {
    const src = `${dir}/probe.c`;
    await Deno.writeTextFile(src, PRELUDE);
    const r = await run("cc", ["-fsyntax-only", src]);
    if (r.ok) return { ok: true, why: "" };
    const noCc = /NotFound|No such file or directory \(os error/.test(r.err);
    return {
      ok: false,
      why: noCc ? "no C compiler `cc`" : `the Xen headers do not compile:\n${r.err.trim()}`,
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const ci = Deno.env.get("CI") === "true";
const toolchain = await probe();
if (!toolchain.ok && !ci) {
  console.log(
    `layout_test: ignored: ${toolchain.why}\n  Install the headers (and a C compiler) with: ${INSTALL}` +
      `${toolchain.why.startsWith("no C") ? " gcc" : ""}`,
  );
}

function compare(label: string, checks: readonly Check[], values: readonly number[]): void {
  assertEquals(values.length, checks.length, `${label}: one value per check`);
  const wrong = checks
    .map(([expr, ts], i) => ({ expr, ts, c: values[i] }))
    .filter((x) => x.ts !== x.c)
    .map((x) => `  ${x.expr}: C ${x.c}, TypeScript ${x.ts}`);
  assert(
    wrong.length === 0,
    `${label}: TypeScript constants differ from the Xen headers:\n${wrong.join("\n")}`,
  );
}

function requireToolchain(): void {
  if (!toolchain.ok) throw new Error(`${toolchain.why}\nInstall with: ${INSTALL}`);
}

Deno.test({
  name:
    "layout: fbif.ts and kbdif.ts match <xen/io/fbif.h> and <xen/io/kbdif.h> (x86_64, compiled and run)",
  ignore: !toolchain.ok && !ci,
  async fn() {
    requireToolchain();
    const checks = checksFor("64");
    const dir = await Deno.makeTempDir({ prefix: "rxfb-layout-" });
    try {
      await Deno.writeTextFile(`${dir}/layout.c`, program(checks));
      const built = await run("cc", [
        "-std=gnu11",
        "-Wall",
        "-Werror",
        "-o",
        `${dir}/layout`,
        `${dir}/layout.c`,
      ]);
      assert(built.ok, `cc failed:\n${built.err}`);
      const ran = await run(`${dir}/layout`, []);
      assert(ran.ok, `layout program failed:\n${ran.err}`);
      const values: number[] = JSON.parse(ran.out);
      compare("x86_64", checks, values);
      // The compile-only path used for -m32 below agrees with the run program.
      await Deno.writeTextFile(`${dir}/layout_s.c`, assemblyUnit(checks));
      const asm = await run("cc", ["-S", "-o", "-", `${dir}/layout_s.c`]);
      assert(asm.ok, `cc -S failed:\n${asm.err}`);
      assertEquals(parseAssembly(asm.out, checks.length, false), values);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "layout: the i386 layout (pd[] at 36, 4-byte entries) matches XENFB_PAGE.pd32",
  ignore: !toolchain.ok && !ci,
  async fn() {
    requireToolchain();
    const checks = checksFor("32");
    const dir = await Deno.makeTempDir({ prefix: "rxfb-layout32-" });
    try {
      // 1. A real -m32 program (needs a 32-bit libc: gcc-multilib).
      await Deno.writeTextFile(`${dir}/layout.c`, program(checks));
      const built = await run("cc", [
        "-m32",
        "-std=gnu11",
        "-o",
        `${dir}/layout32`,
        `${dir}/layout.c`,
      ]);
      const ran = built.ok ? await run(`${dir}/layout32`, []) : undefined;
      if (ran?.ok) {
        compare("i386 (run)", checks, JSON.parse(ran.out));
        return;
      }
      // 2. Compile only, freestanding: needs no 32-bit libc, only gcc's i386 code generator.
      await Deno.writeTextFile(`${dir}/layout_s.c`, assemblyUnit(checks));
      const asm = await run("cc", ["-m32", "-ffreestanding", "-S", "-o", "-", `${dir}/layout_s.c`]);
      if (asm.ok) {
        console.log(
          "layout_test: -m32 cannot link here (no 32-bit libc); checked the i386 layout from `cc -m32 -S`",
        );
        compare("i386 (cc -m32 -S)", checks, parseAssembly(asm.out, checks.length, true));
        return;
      }
      // 3. No i386 compiler at all: the arithmetic of the i386 ABI.
      console.log(
        "layout_test: no -m32 compiler; checked pd32 arithmetically (depth u8 at 32, 4-byte aligned pd)",
      );
      const align4 = (n: number) => Math.ceil(n / 4) * 4;
      assertEquals(fb.XENFB_PAGE.pd32, align4(fb.XENFB_PAGE.depth + 1));
      assertEquals(
        fb.usablePdEntries(4),
        Math.floor((fb.XENFB_IN_RING_OFFS - fb.XENFB_PAGE.pd32) / 4),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
