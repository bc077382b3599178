/**
 * Generates the keymap data rxfb ships, from Debian packages (`deno task keymaps`):
 *
 * - `layouts/<name>.json` for every name in layouts.ts, from xkb-data
 *   (/usr/share/X11/xkb): symbols `pc+<layout>+inet(evdev)` (what the xkb
 *   `evdev` rules give a pc105 keyboard), keycodes `evdev+aliases(qwerty)`,
 *   types `complete`; keysym names from x11proto-dev (/usr/include/X11), and
 *   the set of real Linux key codes from linux-libc-dev
 *   (/usr/include/linux/input-event-codes.h).
 * - `xt.json`, the QEMU Extended Key Event (XT "qnum") -> Linux keycode table,
 *   from the `# evdev N (0x..), QKeyCode "x", number 0xNN` comments in
 *   qemu-system-data's keymaps (/usr/share/qemu/keymaps, written by
 *   qemu-keymap from QEMU's keycodemapdb).
 *
 * Nothing here is typed in by hand: change the inputs, rerun, commit the JSON.
 *
 * @module
 */
import {
  type KeymapData,
  type KeymapEntry,
  LAYOUTS,
  type LayoutSpec,
  type XtData,
} from "./layouts.ts";
import {
  compileTypes,
  Keycodes,
  type KeyDef,
  keysymAt,
  type KeysymTable,
  keysymToUnicode,
  type KeyType,
  loadKeysyms,
  SymbolsCompiler,
  XkbSource,
} from "./xkb.ts";

/** Where the inputs live (Debian's paths by default). */
export interface GenerateOptions {
  xkbRoot?: string;
  keysymDir?: string;
  inputHeader?: string;
  qemuKeymaps?: string;
}

const GENERATOR = "sinks/vnc/keymap/generate.ts (deno task keymaps)";
const KEYCODES = "evdev+aliases(qwerty)";
const TYPES = "complete";

/** `dpkg-query -W` version of a Debian package, or "unknown". */
export function debVersion(pkg: string): string {
  try {
    const out = new Deno.Command("dpkg-query", {
      args: ["-W", "-f=${Version}", pkg],
      stdout: "piped",
      stderr: "null",
    })
      .outputSync();
    const v = new TextDecoder().decode(out.stdout).trim();
    return out.success && v ? v : "unknown";
  } catch {
    return "unknown";
  }
}

/** The KEY_* codes defined in input-event-codes.h (the keys a Linux guest knows). */
export function linuxKeyCodes(header = "/usr/include/linux/input-event-codes.h"): Set<number> {
  const out = new Set<number>();
  const text = Deno.readTextFileSync(header);
  for (const m of text.matchAll(/^#define\s+KEY_([A-Z0-9_]+)\s+(0x[0-9a-fA-F]+|\d+)\b/gm)) {
    if (m[1] === "RESERVED" || m[1] === "MAX" || m[1] === "CNT") continue;
    const v = Number(m[2]);
    if (v > 0 && v < 0x2ff) out.add(v);
  }
  return out;
}

/** Shared, parsed inputs for generating several layouts. */
export class Generator {
  readonly src: XkbSource;
  readonly keysyms: KeysymTable;
  readonly keycodes: Keycodes;
  readonly types: Map<string, KeyType>;
  readonly valid: Set<number>;
  private readonly unicodeToKeysym = new Map<number, number>();
  /** `dpkg-query` versions of the input packages */
  private readonly versions = { xkb: debVersion("xkb-data"), x11proto: debVersion("x11proto-dev") };
  /** the keycodes and types files every layout uses */
  private readonly baseFiles = new Set<string>();

  constructor(readonly opts: GenerateOptions = {}) {
    this.src = new XkbSource(opts.xkbRoot);
    this.keysyms = loadKeysyms(opts.keysymDir);
    this.src.recorder = this.baseFiles;
    this.keycodes = Keycodes.compile(this.src, KEYCODES);
    this.types = compileTypes(this.src, TYPES);
    this.src.recorder = undefined;
    this.valid = linuxKeyCodes(opts.inputHeader);
    for (const [ks, cp] of this.keysyms.unicode) {
      const prev = this.unicodeToKeysym.get(cp);
      if (prev === undefined || ks < prev) this.unicodeToKeysym.set(cp, ks);
    }
  }

  /**
   * The symbols of `pc+<layout>+inet(evdev)` by evdev code (fake keys such as
   * <LVL3> dropped), and the codes of the keys the layout itself defines.
   */
  private keysByCode(
    layoutPart: string,
    files: Set<string>,
  ): { keys: Map<number, KeyDef>; own: Set<number> } {
    this.src.recorder = files;
    const all = new SymbolsCompiler(this.src, this.keysyms).compile(`pc+${layoutPart}+inet(evdev)`);
    this.src.recorder = undefined;
    const ownNames = new SymbolsCompiler(this.src, this.keysyms).compile(layoutPart);
    const keys = new Map<number, KeyDef>();
    const own = new Set<number>();
    for (const [name, k] of all) {
      const x = this.keycodes.get(name);
      if (x === undefined) continue;
      const code = x - 8;
      if (!this.valid.has(code)) continue;
      keys.set(code, k);
      if (ownNames.has(name)) own.add(code);
    }
    return { keys, own };
  }

  private state(s: number, numLock = false): Set<string> {
    const m = new Set<string>();
    if (s & 1) m.add("Shift");
    if (s & 2) m.add("LevelThree");
    if (s & 4) m.add("Lock");
    if (numLock) m.add("NumLock");
    return m;
  }

  /**
   * keysym -> entry for the lowest level (none, Shift, AltGr, Shift+AltGr) that
   * types it, ties to the lower key code. Keys the layout defines come before
   * the generic ones from pc and inet(evdev), whatever their level: en-us
   * types '<' as Shift+comma, not on pc105's extra <LSGT> key that US
   * keyboards lack, and '$' as Shift+4, not on inet's KEY_DOLLAR. NumLock
   * counts as free: keypad digits are typed with the guest's NumLock, never
   * by faking Shift.
   */
  private entries(
    { keys, own }: { keys: Map<number, KeyDef>; own: Set<number> },
  ): Map<number, KeymapEntry> {
    const out = new Map<number, KeymapEntry & { cost: number }>();
    for (const [code, k] of keys) {
      const tier = own.has(code) ? 0 : 4;
      for (let s = 0; s < 4; s++) {
        for (const numLock of [false, true]) {
          const ks = keysymAt(k, this.types, this.keysyms, this.state(s, numLock));
          if (ks === null) continue;
          const cost = tier + s;
          const prev = out.get(ks);
          if (prev && (prev.cost < cost || (prev.cost === cost && prev.code <= code))) continue;
          out.set(ks, { code, shift: (s & 1) !== 0, altgr: (s & 2) !== 0, cost });
        }
      }
    }
    return new Map([...out].map(([ks, { code, shift, altgr }]) => [ks, { code, shift, altgr }]));
  }

  /** Generates the data for one keymap name of layouts.ts. */
  layout(name: string): KeymapData {
    const spec: LayoutSpec | undefined = LAYOUTS[name];
    if (!spec) throw new Error(`unknown keymap ${name}`);
    const part = (layout: string, variant?: string) => (variant ? `${layout}(${variant})` : layout);
    const files = new Set<string>(this.baseFiles);
    const mainPart = part(spec.layout, spec.variant);
    const layout = this.keysByCode(mainPart, files);
    const keys = layout.keys;
    const main = this.entries(layout);

    // Supplements fill keysyms the layout lacks: its "nodeadkeys" variant (so
    // that asciicircum, acute, … reach the key that has them as dead keys, as
    // QEMU's de and fr maps do), then a Latin fallback for non-Latin layouts.
    const supplements: string[] = [];
    const nodead = spec.variant ? `${spec.variant}_nodeadkeys` : "nodeadkeys";
    if (this.src.hasSection("symbols", spec.layout, nodead)) {
      supplements.push(part(spec.layout, nodead));
    }
    if (spec.fallback) supplements.push(spec.fallback);
    const all = new Map(main);
    for (const sup of supplements) {
      for (const [ks, e] of this.entries(this.keysByCode(sup, files))) {
        if (!all.has(ks)) all.set(ks, e);
      }
    }

    // The same character under its other keysym spelling: Unicode keysyms
    // (0x1000000 + code point, which many VNC clients send) for legacy ones and back.
    for (const [ks, e] of [...all]) {
      const cp = keysymToUnicode(ks, this.keysyms);
      if (cp === undefined || cp < 0x100) continue;
      const uni = 0x01000000 | cp;
      const legacy = this.unicodeToKeysym.get(cp);
      for (const alt of [uni, legacy]) {
        if (alt !== undefined && alt !== ks && !all.has(alt)) all.set(alt, e);
      }
    }

    const keysOut: Record<string, number | number[]> = {};
    for (const code of [...keys.keys()].sort((a, b) => a - b)) {
      const k = keys.get(code)!;
      const row: number[] = [];
      for (let s = 0; s < 8; s++) {
        row.push(keysymAt(k, this.types, this.keysyms, this.state(s)) ?? 0);
      }
      if (row.every((x) => x === 0)) continue;
      keysOut[code] = row.every((x) => x === row[0]) ? row[0] : row;
    }
    const keysymsOut: Record<string, KeymapEntry> = {};
    for (const ks of [...all.keys()].sort((a, b) => a - b)) {
      const { code, shift, altgr } = all.get(ks)!;
      keysymsOut[ks] = { code, shift, altgr };
    }
    return {
      name,
      source: {
        package: "xkb-data",
        version: this.versions.xkb,
        symbols: `pc+${mainPart}+inet(evdev)`,
        supplements,
        keycodes: KEYCODES,
        types: TYPES,
        files: [...files].sort(),
        keysyms: `x11proto-dev ${this.versions.x11proto}`,
      },
      generator: GENERATOR,
      keys: keysOut,
      keysyms: keysymsOut,
    };
  }
}

/** Generates the data for one keymap name (see layouts.ts). */
export function generateLayout(name: string, opts: GenerateOptions = {}): KeymapData {
  return new Generator(opts).layout(name);
}

/** Builds xt.json's table from QEMU's generated keymaps. */
export function generateXt(opts: GenerateOptions = {}): XtData {
  const dir = opts.qemuKeymaps ?? "/usr/share/qemu/keymaps";
  const pairs = new Map<number, { evdev: number; qcode: string }>();
  const names = [...Deno.readDirSync(dir)].filter((e) => e.isFile).map((e) => e.name).sort();
  for (const f of names) {
    const text = Deno.readTextFileSync(`${dir}/${f}`);
    for (
      const m of text.matchAll(
        /^# evdev (\d+) \(0x[0-9a-f]+\), QKeyCode "([^"]+)", number (0x[0-9a-f]+)/gm,
      )
    ) {
      const xt = parseInt(m[3], 16);
      const e = { evdev: Number(m[1]), qcode: m[2] };
      const prev = pairs.get(xt);
      if (prev && prev.evdev !== e.evdev) {
        throw new Error(
          `${dir}/${f}: XT 0x${xt.toString(16)} is evdev ${e.evdev} here, ${prev.evdev} elsewhere`,
        );
      }
      pairs.set(xt, e);
    }
  }
  if (pairs.size === 0) throw new Error(`no '# evdev … number 0x..' lines in ${dir}`);
  const xt: XtData["xt"] = {};
  for (const k of [...pairs.keys()].sort((a, b) => a - b)) {
    xt[`0x${k.toString(16).padStart(2, "0")}`] = pairs.get(k)!;
  }
  return {
    source: {
      package: "qemu-system-data",
      version: debVersion("qemu-system-data"),
      files:
        `${dir}/* ('# evdev N …, QKeyCode "…", number 0xNN' comments, from QEMU's keycodemapdb)`,
    },
    generator: GENERATOR,
    xt,
  };
}

/** JSON text with one line per key and per keysym (diffs stay readable). */
export function keymapJson(d: KeymapData): string {
  const block = (o: Record<string, unknown>) =>
    "{\n" + Object.entries(o).map(([k, v]) =>
      `    ${JSON.stringify(k)}: ${JSON.stringify(v)}`
    ).join(",\n") +
    "\n  }";
  return [
    "{",
    `  "name": ${JSON.stringify(d.name)},`,
    `  "source": ${JSON.stringify(d.source, null, 2).replaceAll("\n", "\n  ")},`,
    `  "generator": ${JSON.stringify(d.generator)},`,
    `  "keys": ${block(d.keys)},`,
    `  "keysyms": ${block(d.keysyms as unknown as Record<string, unknown>)}`,
    "}",
    "",
  ].join("\n");
}

/** The directory generated files go to. */
export const KEYMAP_DIR = new URL(".", import.meta.url);

/** Writes layouts/*.json and xt.json; returns the files written. */
export async function writeAll(
  opts: GenerateOptions = {},
  names = Object.keys(LAYOUTS),
): Promise<string[]> {
  const written: string[] = [];
  const gen = new Generator(opts);
  await Deno.mkdir(new URL("layouts/", KEYMAP_DIR), { recursive: true });
  for (const name of names) {
    const path = new URL(`layouts/${name}.json`, KEYMAP_DIR).pathname;
    await Deno.writeTextFile(path, keymapJson(gen.layout(name)));
    written.push(path);
  }
  try {
    const path = new URL("xt.json", KEYMAP_DIR).pathname;
    const d = generateXt(opts);
    const rows = Object.entries(d.xt).map(([k, v]) =>
      `    ${JSON.stringify(k)}: ${JSON.stringify(v)}`
    );
    const head = JSON.stringify({ source: d.source, generator: d.generator }, null, 2).slice(0, -2);
    await Deno.writeTextFile(path, `${head},\n  "xt": {\n${rows.join(",\n")}\n  }\n}\n`);
    written.push(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    console.error(
      `xt.json kept as it is: QEMU's keymaps are missing; apt-get install -y qemu-system-data`,
    );
  }
  // Leave the files as `deno fmt` wants them, so that `deno fmt --check` stays clean.
  await new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", ...written] }).output();
  return written;
}

if (import.meta.main) {
  try {
    Deno.statSync("/usr/share/X11/xkb/symbols/us");
    Deno.statSync("/usr/include/X11/keysymdef.h");
    Deno.statSync("/usr/include/linux/input-event-codes.h");
  } catch {
    console.error(
      "missing inputs; install with: apt-get install -y xkb-data x11proto-dev linux-libc-dev qemu-system-data",
    );
    Deno.exit(1);
  }
  const names = Deno.args.length ? Deno.args : Object.keys(LAYOUTS);
  const files = await writeAll({}, names);
  for (const f of files) console.log(`${f}  ${Deno.statSync(f).size} bytes`);
}
