/**
 * Keysyms and QEMU XT codes to Linux evdev keycodes (sinks/vnc/keymap/):
 * the generated layouts (en-us, de, fr, …), the Shift/AltGr faking of
 * KeyTranslator, xtToEvdev, the XKB reader on a tiny tree of its own, and the
 * committed JSON against a fresh generation from Debian's packages.
 */
import { assert, assertEquals, assertThrows } from "@rxfb/assert";
import {
  type EvdevKeyEvent,
  KEYMAP_NAMES,
  KeyTranslator,
  loadKeymap,
  xtToEvdev,
} from "../sinks/vnc/keymap/mod.ts";
import { generateXt, Generator } from "../sinks/vnc/keymap/generate.ts";
import {
  compileTypes,
  Keycodes,
  keysymAt,
  keysymFromName,
  type KeysymTable,
  parseIncludeSpec,
  parseKeysymHeader,
  SymbolsCompiler,
  XkbSource,
} from "../sinks/vnc/keymap/xkb.ts";
import { exists, skipWithout } from "./packages.ts";

// Linux KEY_* codes (linux/input-event-codes.h)
const KEY = {
  ESC: 1,
  BACKSPACE: 14,
  TAB: 15,
  Q: 16,
  W: 17,
  E: 18,
  Y: 21,
  ENTER: 28,
  LEFTCTRL: 29,
  A: 30,
  GRAVE: 41,
  LEFTSHIFT: 42,
  Z: 44,
  COMMA: 51,
  RIGHTSHIFT: 54,
  LEFTALT: 56,
  SPACE: 57,
  CAPSLOCK: 58,
  F1: 59,
  KP7: 71,
  KPMINUS: 74,
  KPPLUS: 78,
  KP1: 79,
  F12: 88,
  KPENTER: 96,
  RIGHTCTRL: 97,
  KPSLASH: 98,
  SYSRQ: 99,
  RIGHTALT: 100,
  HOME: 102,
  UP: 103,
  LEFT: 105,
  RIGHT: 106,
  DOWN: 108,
  DELETE: 111,
  PAUSE: 119,
  LEFTMETA: 125,
} as const;

// X11 keysyms (X11/keysymdef.h)
const XK = {
  BackSpace: 0xff08,
  Tab: 0xff09,
  Return: 0xff0d,
  Escape: 0xff1b,
  Home: 0xff50,
  Left: 0xff51,
  Up: 0xff52,
  Right: 0xff53,
  Down: 0xff54,
  KP_Enter: 0xff8d,
  KP_Home: 0xff95,
  KP_End: 0xff9c,
  KP_Add: 0xffab,
  KP_Subtract: 0xffad,
  KP_Divide: 0xffaf,
  KP_1: 0xffb1,
  KP_7: 0xffb7,
  F1: 0xffbe,
  F12: 0xffc9,
  Shift_L: 0xffe1,
  Shift_R: 0xffe2,
  Control_L: 0xffe3,
  Caps_Lock: 0xffe5,
  Alt_L: 0xffe9,
  Alt_R: 0xffea,
  Delete: 0xffff,
  ISO_Level3_Shift: 0xfe03,
  EuroSign: 0x20ac,
  U_EuroSign: 0x010020ac,
} as const;

const ch = (c: string) => c.codePointAt(0)!;
const dn = (code: number): EvdevKeyEvent => ({ code, down: true });
const up = (code: number): EvdevKeyEvent => ({ code, down: false });

/** A press and release of `keysym` on a fresh translator gives `code` with `mods` faked around it. */
function assertTypes(layout: string, keysym: number, code: number, mods: number[] = []) {
  const t = new KeyTranslator(loadKeymap(layout));
  const what = `${layout} keysym 0x${keysym.toString(16)}`;
  assertEquals(
    t.keyEvent(keysym, true),
    [...mods.map(dn), dn(code), ...mods.reverse().map(up)],
    what,
  );
  assertEquals(t.keyEvent(keysym, false), [up(code)], what);
}

// deno-fmt-ignore
const QWERTY: Record<string, number> = {
  q: 16, w: 17, e: 18, r: 19, t: 20, y: 21, u: 22, i: 23, o: 24, p: 25,
  a: 30, s: 31, d: 32, f: 33, g: 34, h: 35, j: 36, k: 37, l: 38,
  z: 44, x: 45, c: 46, v: 47, b: 48, n: 49, m: 50,
};

Deno.test("keymap en-us: a..z plain, A..Z with Shift faked, digits, shifted symbols", () => {
  for (const [c, code] of Object.entries(QWERTY)) {
    assertTypes("en-us", ch(c), code);
    assertTypes("en-us", ch(c.toUpperCase()), code, [KEY.LEFTSHIFT]);
  }
  for (let d = 1; d <= 9; d++) assertTypes("en-us", ch(String(d)), d + 1);
  assertTypes("en-us", ch("0"), 11);
  assertTypes("en-us", ch("!"), 2, [KEY.LEFTSHIFT]);
  assertTypes("en-us", ch("@"), 3, [KEY.LEFTSHIFT]);
  assertTypes("en-us", ch("#"), 4, [KEY.LEFTSHIFT]);
  assertTypes("en-us", ch("$"), 5, [KEY.LEFTSHIFT]); // not inet(evdev)'s KEY_DOLLAR
  assertTypes("en-us", ch("("), 10, [KEY.LEFTSHIFT]); // not KEY_KPLEFTPAREN
  assertTypes("en-us", ch("<"), KEY.COMMA, [KEY.LEFTSHIFT]); // not pc105's extra <LSGT> key
  assertTypes("en-us", ch("|"), 43, [KEY.LEFTSHIFT]);
  assertTypes("en-us", ch("~"), KEY.GRAVE, [KEY.LEFTSHIFT]);
  assertTypes("en-us", ch("-"), 12);
  assertTypes("en-us", ch(" "), KEY.SPACE);
});

Deno.test("keymap en-us: A..Z while the client holds Shift need no extra Shift", () => {
  for (const shift of [XK.Shift_L, XK.Shift_R]) {
    const t = new KeyTranslator(loadKeymap("en-us"));
    const sc = shift === XK.Shift_L ? KEY.LEFTSHIFT : KEY.RIGHTSHIFT;
    assertEquals(t.keyEvent(shift, true), [dn(sc)]);
    for (const [c, code] of Object.entries(QWERTY)) {
      assertEquals(t.keyEvent(ch(c.toUpperCase()), true), [dn(code)]);
      assertEquals(t.keyEvent(ch(c.toUpperCase()), false), [up(code)]);
    }
    assertEquals(t.keyEvent(ch("!"), true), [dn(2)]);
    assertEquals(t.keyEvent(ch("!"), false), [up(2)]);
    // A lowercase letter with Shift held: Shift is lifted around it and put back.
    assertEquals(t.keyEvent(ch("a"), true), [up(sc), dn(KEY.A), dn(sc)]);
    assertEquals(t.keyEvent(ch("a"), false), [up(KEY.A)]);
    assertEquals(t.keyEvent(shift, false), [up(sc)]);
    assertEquals(t.modifiers, { shift: false, altgr: false, capsLock: false });
  }
});

Deno.test("keymap en-us: function, editing, modifier and keypad keys", () => {
  const cases: [number, number][] = [
    [XK.Return, KEY.ENTER],
    [XK.BackSpace, KEY.BACKSPACE],
    [XK.Tab, KEY.TAB],
    [XK.Escape, KEY.ESC],
    [XK.Left, KEY.LEFT],
    [XK.Up, KEY.UP],
    [XK.Right, KEY.RIGHT],
    [XK.Down, KEY.DOWN],
    [XK.F1, KEY.F1],
    [XK.F12, KEY.F12],
    [XK.Control_L, KEY.LEFTCTRL],
    [XK.Shift_L, KEY.LEFTSHIFT],
    [XK.Shift_R, KEY.RIGHTSHIFT],
    [XK.Alt_L, KEY.LEFTALT],
    [XK.Alt_R, KEY.RIGHTALT],
    [XK.Caps_Lock, KEY.CAPSLOCK],
    [XK.Delete, KEY.DELETE],
    [XK.Home, KEY.HOME],
    [XK.KP_Enter, KEY.KPENTER],
    [XK.KP_Add, KEY.KPPLUS],
    [XK.KP_Subtract, KEY.KPMINUS],
    [XK.KP_Divide, KEY.KPSLASH],
    [XK.KP_Home, KEY.KP7],
    [XK.KP_7, KEY.KP7], // NumLock is the guest's: no Shift faked for keypad digits
    [XK.KP_End, KEY.KP1],
    [XK.KP_1, KEY.KP1],
    [0xff61, KEY.SYSRQ], // Print
    [0xff13, KEY.PAUSE], // Pause
  ];
  for (const [ks, code] of cases) assertTypes("en-us", ks, code);
  const km = loadKeymap("en-us");
  assertEquals(km.get(XK.Return), { code: KEY.ENTER, shift: false, altgr: false });
  assertEquals(km.get(ch("A")), { code: KEY.A, shift: true, altgr: false });
});

Deno.test("keymap: Shift stays held for function keys (Shift+Tab, Shift+Left, Ctrl+Shift+F1)", () => {
  const t = new KeyTranslator(loadKeymap("en-us"));
  assertEquals(t.keyEvent(XK.Control_L, true), [dn(KEY.LEFTCTRL)]);
  assertEquals(t.keyEvent(XK.Shift_L, true), [dn(KEY.LEFTSHIFT)]);
  for (
    const [ks, code] of [[XK.Tab, KEY.TAB], [XK.Left, KEY.LEFT], [XK.F1, KEY.F1], [
      XK.KP_1,
      KEY.KP1,
    ]]
  ) {
    assertEquals(t.keyEvent(ks, true), [dn(code)]);
    assertEquals(t.keyEvent(ks, false), [up(code)]);
  }
  // Ctrl+Shift+T: clients send 'T' (Shift held) or 't'; both go to the T key, Shift kept for 'T'.
  assertEquals(t.keyEvent(ch("T"), true), [dn(20)]);
  assertEquals(t.keyEvent(ch("T"), false), [up(20)]);
  assertEquals(t.releaseAll(), [up(KEY.LEFTCTRL), up(KEY.LEFTSHIFT)]);
});

Deno.test("keymap de: z/y swapped, AltGr faked for @ and €, dead-key spacing chars", () => {
  assertTypes("de", ch("z"), KEY.Y);
  assertTypes("de", ch("y"), KEY.Z);
  assertTypes("de", ch("Z"), KEY.Y, [KEY.LEFTSHIFT]);
  assertTypes("de", ch("@"), KEY.Q, [KEY.RIGHTALT]);
  assertTypes("de", XK.EuroSign, KEY.E, [KEY.RIGHTALT]);
  assertTypes("de", XK.U_EuroSign, KEY.E, [KEY.RIGHTALT]); // Unicode keysym spelling
  assertTypes("de", ch("ö"), 39);
  assertTypes("de", 0x010000f6, 39); // U+00F6 as a Unicode keysym
  assertTypes("de", ch("^"), KEY.GRAVE); // de(nodeadkeys): the dead-circumflex key
  assertTypes("de", XK.ISO_Level3_Shift, KEY.RIGHTALT);
  const km = loadKeymap("de");
  assertEquals(km.get(ch("@")), { code: KEY.Q, shift: false, altgr: true });

  // The client holds AltGr (as ISO_Level3_Shift, or as Alt_R like Windows clients do): no AltGr faked.
  for (const altgr of [XK.ISO_Level3_Shift, XK.Alt_R]) {
    const t = new KeyTranslator(km);
    assertEquals(t.keyEvent(altgr, true), [dn(KEY.RIGHTALT)]);
    assertEquals(t.modifiers.altgr, true);
    assertEquals(t.keyEvent(ch("@"), true), [dn(KEY.Q)]);
    assertEquals(t.keyEvent(ch("@"), false), [up(KEY.Q)]);
    // 'q' with AltGr held: AltGr lifted around it.
    assertEquals(t.keyEvent(ch("q"), true), [up(KEY.RIGHTALT), dn(KEY.Q), dn(KEY.RIGHTALT)]);
    assertEquals(t.keyEvent(ch("q"), false), [up(KEY.Q)]);
    assertEquals(t.keyEvent(altgr, false), [up(KEY.RIGHTALT)]);
  }
});

Deno.test("keymap fr: AZERTY (a -> KEY_Q), digits need Shift", () => {
  assertTypes("fr", ch("a"), KEY.Q);
  assertTypes("fr", ch("q"), KEY.A);
  assertTypes("fr", ch("z"), KEY.W);
  assertTypes("fr", ch("w"), KEY.Z);
  assertTypes("fr", ch("1"), 2, [KEY.LEFTSHIFT]);
  assertTypes("fr", ch("&"), 2);
  assertTypes("fr", ch("é"), 3);
  assertTypes("fr", ch("@"), 11, [KEY.RIGHTALT]);
});

Deno.test("keymap en-us: the client's AltGr (ISO_Level3_Shift) is right Alt, lifted around characters", () => {
  const t = new KeyTranslator(loadKeymap("en-us"));
  assertEquals(t.keyEvent(XK.ISO_Level3_Shift, true), [dn(KEY.RIGHTALT)]);
  assertEquals(t.keyEvent(ch("@"), true), [
    up(KEY.RIGHTALT),
    dn(KEY.LEFTSHIFT),
    dn(3),
    up(KEY.LEFTSHIFT),
    dn(KEY.RIGHTALT),
  ]);
  assertEquals(t.keyEvent(ch("@"), false), [up(3)]);
  assertEquals(t.keyEvent(XK.ISO_Level3_Shift, false), [up(KEY.RIGHTALT)]);
  // A real Alt_R (Alt+f for a menu) is kept.
  assertEquals(t.keyEvent(XK.Alt_R, true), [dn(KEY.RIGHTALT)]);
  assertEquals(t.keyEvent(ch("f"), true), [dn(33)]);
  assertEquals(t.releaseAll(), [up(33), up(KEY.RIGHTALT)]);
});

Deno.test("keymap: a release lifts the key its press used, even after the modifiers changed", () => {
  const t = new KeyTranslator(loadKeymap("en-us"));
  // Shift, '!', Shift up, then the client releases '1' (its keysym without Shift).
  assertEquals(t.keyEvent(XK.Shift_L, true), [dn(KEY.LEFTSHIFT)]);
  assertEquals(t.keyEvent(ch("!"), true), [dn(2)]);
  assertEquals(t.keyEvent(XK.Shift_L, false), [up(KEY.LEFTSHIFT)]);
  assertEquals(t.keyEvent(ch("1"), false), [up(2)]);
  assertEquals(t.keyEvent(ch("!"), false), []); // already up: nothing more
  // 'a' down, Shift down, 'A' up.
  assertEquals(t.keyEvent(ch("a"), true), [dn(KEY.A)]);
  assertEquals(t.keyEvent(XK.Shift_R, true), [dn(KEY.RIGHTSHIFT)]);
  assertEquals(t.keyEvent(ch("A"), false), [up(KEY.A)]);
  assertEquals(t.keyEvent(XK.Shift_R, false), [up(KEY.RIGHTSHIFT)]);
  // A faked-Shift press is released without faking anything again.
  assertEquals(t.keyEvent(ch("A"), true), [dn(KEY.LEFTSHIFT), dn(KEY.A), up(KEY.LEFTSHIFT)]);
  assertEquals(t.keyEvent(XK.Shift_L, true), [dn(KEY.LEFTSHIFT)]);
  assertEquals(t.keyEvent(ch("A"), false), [up(KEY.A)]);
  assertEquals(t.keyEvent(XK.Shift_L, false), [up(KEY.LEFTSHIFT)]);
  // de: '@' (AltGr faked), then its release lifts only the Q key.
  const d = new KeyTranslator(loadKeymap("de"));
  assertEquals(d.keyEvent(ch("@"), true), [dn(KEY.RIGHTALT), dn(KEY.Q), up(KEY.RIGHTALT)]);
  assertEquals(d.keyEvent(ch("q"), false), [up(KEY.Q)]);
  assertEquals(d.releaseAll(), []);
});

Deno.test("keymap: Caps Lock pressed through the client flips which letters need Shift", () => {
  const t = new KeyTranslator(loadKeymap("en-us"));
  assertEquals(t.keyEvent(XK.Caps_Lock, true), [dn(KEY.CAPSLOCK)]);
  assertEquals(t.keyEvent(XK.Caps_Lock, false), [up(KEY.CAPSLOCK)]);
  assertEquals(t.modifiers.capsLock, true);
  assertEquals(t.keyEvent(ch("A"), true), [dn(KEY.A)]);
  assertEquals(t.keyEvent(ch("A"), false), [up(KEY.A)]);
  assertEquals(t.keyEvent(ch("a"), true), [dn(KEY.LEFTSHIFT), dn(KEY.A), up(KEY.LEFTSHIFT)]);
  assertEquals(t.keyEvent(ch("a"), false), [up(KEY.A)]);
  assertEquals(t.keyEvent(ch("1"), true), [dn(2)]); // digits ignore Caps Lock
  assertEquals(t.keyEvent(ch("1"), false), [up(2)]);
});

Deno.test("keymap: unknown keysyms give nothing; canType tells", () => {
  const t = new KeyTranslator(loadKeymap("en-us"));
  assertEquals(t.keyEvent(0x01002603, true), []); // U+2603 SNOWMAN
  assertEquals(t.keyEvent(0x01002603, false), []);
  assertEquals(t.canType(0x01002603), false);
  assertEquals(t.canType(ch("a")), true);
  assertEquals(t.canType(ch("ö")), false); // en-us has no ö
});

Deno.test("keymap: every layout loads and types Return, Space, Escape, digits and Latin letters", () => {
  assertEquals(KEYMAP_NAMES.length, 31);
  for (const name of KEYMAP_NAMES) {
    const km = loadKeymap(name);
    assertEquals(km.name, name);
    assertEquals(km.get(XK.Return)?.code, KEY.ENTER, name);
    assertEquals(km.get(XK.Escape)?.code, KEY.ESC, name);
    assertEquals(km.get(ch(" "))?.code, KEY.SPACE, name);
    assertEquals(km.get(XK.Shift_L)?.code, KEY.LEFTSHIFT, name);
    const t = new KeyTranslator(km);
    for (const c of "abcxyz0123456789") assert(t.canType(ch(c)), `${name} types ${c}`);
  }
  // Non-Latin layouts type Latin letters on the US positions.
  assertEquals(loadKeymap("ru").get(ch("a"))?.code, KEY.A);
  assertEquals(loadKeymap("ru").get(0x6c6)?.code, KEY.A); // Cyrillic_ef
});

Deno.test("loadKeymap: an unknown name throws, listing the available ones; a JSON path loads", () => {
  assertThrows(() => loadKeymap("xx-yy"), (e: Error) => {
    assert(e.message.includes('unknown keymap "xx-yy"'), e.message);
    for (const n of ["en-us", "de", "fr-ch", "ja"]) assert(e.message.includes(n), e.message);
    return true;
  });
  assertEquals(loadKeymap().name, "en-us");
  assertEquals(loadKeymap("DE").name, "de");
  const dir = Deno.makeTempDirSync();
  try {
    const path = `${dir}/custom.json`;
    const data = structuredClone(loadKeymap("de").data);
    data.name = "custom";
    Deno.writeTextFileSync(path, JSON.stringify(data));
    const km = loadKeymap(path);
    assertEquals(km.name, "custom");
    assertEquals(km.get(ch("z"))?.code, KEY.Y);
    Deno.writeTextFileSync(`${dir}/bad.json`, "{}");
    assertThrows(() => loadKeymap(`${dir}/bad.json`), /not a keymap file/);
    assertThrows(() => loadKeymap(`${dir}/missing.json`), /cannot read/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("xtToEvdev: set-1 codes, 0xE0 keys with the high bit, Print and Pause", () => {
  // The main block: XT set 1 = Linux keycode.
  for (let xt = 0x01; xt <= 0x53; xt++) assertEquals(xtToEvdev(xt), xt, `0x${xt.toString(16)}`);
  for (const xt of [0x56, 0x57, 0x58]) assertEquals(xtToEvdev(xt), xt);
  const e0: [number, number][] = [
    [0x9c, KEY.KPENTER],
    [0x9d, KEY.RIGHTCTRL],
    [0xb5, KEY.KPSLASH],
    [0xb8, KEY.RIGHTALT],
    [0xc7, KEY.HOME],
    [0xc8, KEY.UP],
    [0xcb, KEY.LEFT],
    [0xcd, KEY.RIGHT],
    [0xd0, KEY.DOWN],
    [0xd3, KEY.DELETE],
    [0xdb, KEY.LEFTMETA],
    [0x54, KEY.SYSRQ],
    [0xb7, KEY.SYSRQ],
    [0xc6, KEY.PAUSE],
    [0xe04d, KEY.RIGHT], // 16-bit 0xE0xx spelling
  ];
  for (const [xt, code] of e0) assertEquals(xtToEvdev(xt), code, `0x${xt.toString(16)}`);
  assertEquals(xtToEvdev(0x00), undefined);
  assertEquals(xtToEvdev(0xff), undefined);
  const t = new KeyTranslator(loadKeymap("de"));
  assertEquals(t.xtKeyEvent(0xcd, true), [dn(KEY.RIGHT)]);
  assertEquals(t.xtKeyEvent(0xcd, false), [up(KEY.RIGHT)]);
  assertEquals(t.xtKeyEvent(0xcd, false), []);
});

/** A keysym table from a few lines in keysymdef.h's and XF86keysym.h's formats. */
function tinyKeysyms(): KeysymTable {
  const t: KeysymTable = { byName: new Map(), nameOf: new Map(), unicode: new Map() };
  parseKeysymHeader(
    `#define XK_exclam                         0x0021  /* U+0021 EXCLAMATION MARK */
#define XK_1 0x0031  /* U+0031 DIGIT ONE */
#define XK_2 0x0032  /* U+0032 DIGIT TWO */
#define XK_9 0x0039  /* U+0039 DIGIT NINE */
#define XK_at 0x0040  /* U+0040 COMMERCIAL AT */
#define XK_Q 0x0051  /* U+0051 LATIN CAPITAL LETTER Q */
#define XK_W 0x0057  /* U+0057 LATIN CAPITAL LETTER W */
#define XK_backslash 0x005c  /* U+005C REVERSE SOLIDUS */
#define XK_q 0x0071  /* U+0071 LATIN SMALL LETTER Q */
#define XK_w 0x0077  /* U+0077 LATIN SMALL LETTER W */
#define XK_bar 0x007c  /* U+007C VERTICAL LINE */
#define XK_onesuperior 0x00b9  /* U+00B9 SUPERSCRIPT ONE */
#define XK_ISO_Level3_Shift 0xfe03
#define XK_Cyrillic_ef 0x06c6  /* U+0444 CYRILLIC SMALL LETTER EF */
`,
    "XK_",
    (r) => [r],
    t,
  );
  parseKeysymHeader(
    "#define XF86XK_AudioMute\t0x1008FF12   /* Mute sound from the system */\n" +
      "#define XF86XK_BrightnessAuto\t\t_EVDEVK(0x0F4)\n",
    "XF86XK_",
    (r) => [`XF86${r}`],
    t,
  );
  return t;
}

Deno.test("xkb reader: includes, override/augment/replace, aliases, types, Unicode names", () => {
  const root = Deno.makeTempDirSync();
  try {
    for (const d of ["keycodes", "symbols", "types"]) Deno.mkdirSync(`${root}/${d}`);
    Deno.writeTextFileSync(
      `${root}/keycodes/k`,
      `default xkb_keycodes "k" { minimum = 8; <AE01> = 10; <AD01> = 24; <BKSL> = 51; alias <AC12> = <BKSL>;
       <RALT> = 108; indicator 1 = "Caps Lock"; };`,
    );
    Deno.writeTextFileSync(
      `${root}/types/t`,
      `default xkb_types "t" { virtual_modifiers LevelThree;
        type "ONE_LEVEL" { modifiers = None; map[None] = Level1; };
        type "TWO_LEVEL" { modifiers = Shift; map[Shift] = Level2; };
        type "ALPHABETIC" { modifiers = Shift+Lock; map[Shift] = Level2; map[Lock] = Level2; };
        type "FOUR_LEVEL" { modifiers = Shift+LevelThree; map[None] = Level1; map[Shift] = Level2;
          map[LevelThree] = Level3; map[Shift+LevelThree] = Level4; level_name[Level1] = "Base"; };
        type "FOUR_LEVEL_SEMIALPHABETIC" { modifiers = Shift+Lock+LevelThree; map[Shift] = Level2;
          map[Lock] = Level2; map[LevelThree] = Level3; map[Shift+LevelThree] = Level4;
          map[Lock+LevelThree] = Level3; preserve[Lock+LevelThree] = Lock; };
      };`,
    );
    Deno.writeTextFileSync(
      `${root}/symbols/base`,
      `// a comment
       partial xkb_symbols "first" { key <AE01> { [ 9 ] }; };
       default partial alphanumeric_keys
       xkb_symbols "basic" {
         name[Group1] = "Base";
         key <AE01> { [ 1, exclam ] };
         key <AD01> { [ q, Q ] };
         key <AC12> { [ backslash, bar ] };  # through the alias
         modifier_map Mod1 { <RALT> };
       };
       xkb_symbols "lvl3" {
         key <RALT> { type[Group1] = "ONE_LEVEL", symbols[Group1] = [ ISO_Level3_Shift ],
                      actions[Group1] = [ SetMods(modifiers=LevelThree) ] };
       };
       xkb_symbols "aug" { key <AD01> { [ w, W, at, U20AC ] }; };`,
    );
    Deno.writeTextFileSync(
      `${root}/symbols/top`,
      `default xkb_symbols "v" {
         include "base"
         augment "base(aug)"
         key <AE01> { [ NoSymbol, NoSymbol, onesuperior, 0x1001E9E ] };
         include "base(lvl3)"
       };
       xkb_symbols "r" { include "base" replace key <AE01> { [ 2 ] }; };
       xkb_symbols "o" { include "base+base(aug)" };`,
    );
    const src = new XkbSource(root);
    const ks = tinyKeysyms();
    const kc = Keycodes.compile(src, "k");
    assertEquals([kc.get("AE01"), kc.get("AC12"), kc.get("BKSL"), kc.get("NOPE")], [
      10,
      51,
      51,
      undefined,
    ]);
    const types = compileTypes(src, "t");
    const sc = new SymbolsCompiler(src, ks);
    const at = (keys: Map<string, unknown>, name: string, mods: string[]) =>
      keysymAt(keys.get(name) as never, types, ks, new Set(mods));
    const v = sc.compile("top");
    // override keeps levels the new definition leaves empty
    assertEquals(
      [[], ["Shift"], ["LevelThree"], ["Shift", "LevelThree"]].map((m) => at(v, "AE01", m)),
      [
        ch("1"),
        ch("!"),
        0xb9,
        0x1001e9e,
      ],
    );
    // augment only fills what is empty: q/Q stay, @ and € are added; ALPHABETIC-like Lock handling
    assertEquals(at(v, "AD01", []), ch("q"));
    assertEquals(at(v, "AD01", ["Lock"]), ch("Q"));
    assertEquals(at(v, "AD01", ["LevelThree"]), ch("@"));
    assertEquals(at(v, "AD01", ["Shift", "LevelThree"]), 0x10020ac);
    assertEquals(at(v, "RALT", ["Shift"]), 0xfe03); // ONE_LEVEL
    assertEquals(at(v, "AC12", ["Shift"]), ch("|"));
    assertEquals(at(sc.compile("top(r)"), "AE01", ["Shift"]), ch("2")); // replaced whole: no '!' left
    assertEquals(at(sc.compile("top(o)"), "AD01", []), ch("w")); // '+' overrides
    assertEquals(sc.unknown.size, 0);
    assertEquals([...src.files].sort(), ["keycodes/k", "symbols/base", "symbols/top", "types/t"]);
  } finally {
    Deno.removeSync(root, { recursive: true });
  }
  assertEquals(parseIncludeSpec("pc+us(basic)|level3(ralt_switch):2"), [
    { merge: "default", file: "pc", variant: undefined, group: undefined },
    { merge: "override", file: "us", variant: "basic", group: undefined },
    { merge: "augment", file: "level3", variant: "ralt_switch", group: 2 },
  ]);
  const ks = tinyKeysyms();
  assertEquals(keysymFromName("exclam", ks), 0x21);
  assertEquals(keysymFromName("U20AC", ks), 0x10020ac);
  assertEquals(keysymFromName("U00E9", ks), 0xe9);
  assertEquals(keysymFromName("0x1001E9E", ks), 0x1001e9e);
  assertEquals(keysymFromName("XF86AudioMute", ks), 0x1008ff12);
  assertEquals(keysymFromName("XF86BrightnessAuto", ks), 0x100810f4);
  assertEquals(ks.unicode.get(0x6c6), 0x444);
  assertEquals(keysymFromName("NoSymbol", ks), undefined);
});

const HAVE_XKB = exists("/usr/share/X11/xkb/symbols/us") &&
  exists("/usr/include/X11/keysymdef.h") &&
  exists("/usr/include/linux/input-event-codes.h");
const HAVE_QEMU = exists("/usr/share/qemu/keymaps/en-us");
const REGEN = "run `deno task keymaps` and commit sinks/vnc/keymap/";

Deno.test({
  name: "keymap: the committed layouts/*.json equal a fresh generation from xkb-data",
  ignore: skipWithout(
    HAVE_XKB,
    "xkb-data / x11proto-dev",
    "apt-get install -y xkb-data x11proto-dev linux-libc-dev",
  ),
  fn() {
    const gen = new Generator();
    for (const name of KEYMAP_NAMES) {
      const committed = JSON.parse(
        Deno.readTextFileSync(new URL(`../sinks/vnc/keymap/layouts/${name}.json`, import.meta.url)),
      );
      assertEquals(
        committed,
        JSON.parse(JSON.stringify(gen.layout(name))),
        `layouts/${name}.json is stale: ${REGEN}`,
      );
    }
  },
});

Deno.test({
  name: "keymap: the committed xt.json equals a fresh generation from qemu-system-data",
  ignore: skipWithout(
    HAVE_QEMU,
    "qemu-system-data (QEMU's keymaps)",
    "apt-get install -y qemu-system-data",
  ),
  fn() {
    const committed = JSON.parse(
      Deno.readTextFileSync(new URL("../sinks/vnc/keymap/xt.json", import.meta.url)),
    );
    assertEquals(committed, JSON.parse(JSON.stringify(generateXt())), `xt.json is stale: ${REGEN}`);
  },
});
