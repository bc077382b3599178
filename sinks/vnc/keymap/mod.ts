/**
 * VNC keys to Linux evdev keycodes (`KEY_*` of linux/input-event-codes.h),
 * which is what the guest's PV keyboard takes.
 *
 * - RFB KeyEvent carries an X11 keysym: {@link KeyTranslator} looks it up in a
 *   keymap ({@link loadKeymap}; `--keymap`, default en-us, generated from
 *   Debian's xkb-data by generate.ts) and fakes Shift / AltGr around the key
 *   when the layout needs a different modifier state than the client holds.
 * - QEMU Extended Key Event carries an XT scancode as well: {@link xtToEvdev}
 *   maps it directly, whatever the keymap.
 *
 * @module
 */
import xtData from "./xt.json" with { type: "json" };
import { KEYMAP_NAMES, type KeymapData, type KeymapEntry, type XtData } from "./layouts.ts";

export { KEYMAP_NAMES };
export type { KeymapData, KeymapEntry };

/** Linux KEY_LEFTSHIFT / KEY_RIGHTALT, used when a layout does not say which key fakes Shift / AltGr. */
const KEY_LEFTSHIFT = 42;
const KEY_RIGHTALT = 100;

/** Keysyms the translator looks at by value. */
const XK = {
  Shift_L: 0xffe1,
  Shift_R: 0xffe2,
  Caps_Lock: 0xffe5,
  Meta_L: 0xffe7,
  Meta_R: 0xffe8,
  Alt_L: 0xffe9,
  Alt_R: 0xffea,
  ISO_Level3_Shift: 0xfe03,
  Mode_switch: 0xff7e,
  Print: 0xff61,
  Sys_Req: 0xff15,
  Pause: 0xff13,
  Break: 0xff6b,
} as const;

/**
 * Keysyms some clients send for a key the layout names differently: tried in
 * order when the keysym itself is not in the keymap.
 */
const KEYSYM_FALLBACKS: ReadonlyMap<number, readonly number[]> = new Map([
  [XK.Alt_R, [XK.ISO_Level3_Shift]], // AltGr sent as Alt_R (e.g. Windows clients)
  [XK.ISO_Level3_Shift, [XK.Alt_R]], // AltGr on a layout without one: the right Alt key
  [XK.Mode_switch, [XK.ISO_Level3_Shift, XK.Alt_R]],
  [XK.Meta_L, [XK.Alt_L]],
  [XK.Meta_R, [XK.Alt_R, XK.ISO_Level3_Shift]],
  [XK.Sys_Req, [XK.Print]], // Alt+Print: KEY_SYSRQ is the Print key
  [XK.Break, [XK.Pause]], // Ctrl+Pause
]);

/** Modifier keysyms (Shift_L … Hyper_R, ISO_Level*, Mode_switch, Num_Lock): pressed as they are. */
function isModifierKeysym(k: number): boolean {
  return (k >= 0xffe1 && k <= 0xffee) || (k >= 0xfe01 && k <= 0xfe0f) || k === XK.Mode_switch ||
    k === 0xff7f;
}

/**
 * Keysyms that stand for a character (Latin-1 and the other legacy sets,
 * dead keys, Unicode keysyms). Only for these does the translator release a
 * Shift or AltGr the client holds: for function and keypad keysyms a held
 * modifier is part of the shortcut (Shift+Tab, Shift+Left, Ctrl+Alt+F1).
 */
function isCharacterKeysym(k: number): boolean {
  return k < 0xfe00 || (k >= 0xfe50 && k <= 0xfe93) || (k >= 0x01000100 && k <= 0x0110ffff);
}

/** A layout: keysym -> key (+ needed modifiers), and what each key types per modifier state. */
export class Keymap {
  /** keysym -> evdev code and the modifiers the layout needs for it */
  readonly entries: ReadonlyMap<number, KeymapEntry>;
  /**
   * evdev code -> keysym per state (index bit 0 Shift, bit 1 AltGr, bit 2
   * Caps Lock; 0 = nothing), or one keysym for keys those do not change.
   */
  readonly keys: ReadonlyMap<number, number | readonly number[]>;

  constructor(readonly data: KeymapData, readonly origin = data.name) {
    if (
      !data || typeof data !== "object" || typeof data.keysyms !== "object" ||
      typeof data.keys !== "object"
    ) {
      throw new Error(`keymap ${origin}: not a keymap file (needs "keysyms" and "keys" objects)`);
    }
    const entries = new Map<number, KeymapEntry>();
    for (const [k, e] of Object.entries(data.keysyms)) {
      const ks = Number(k);
      if (!Number.isInteger(ks) || !e || !Number.isInteger(e.code) || e.code <= 0) {
        throw new Error(`keymap ${origin}: bad keysyms entry ${k}: ${JSON.stringify(e)}`);
      }
      entries.set(ks, { code: e.code, shift: !!e.shift, altgr: !!e.altgr });
    }
    const keys = new Map<number, number | readonly number[]>();
    for (const [c, v] of Object.entries(data.keys)) {
      const code = Number(c);
      const ok = Number.isInteger(code) &&
        (Number.isInteger(v) || (Array.isArray(v) && v.length === 8 && v.every(Number.isInteger)));
      if (!ok) throw new Error(`keymap ${origin}: bad keys entry ${c}: ${JSON.stringify(v)}`);
      keys.set(code, v);
    }
    this.entries = entries;
    this.keys = keys;
  }

  /** The keymap's name (e.g. "en-us"). */
  get name(): string {
    return this.data.name;
  }

  /** The key and modifiers for a keysym, if the layout has it. */
  get(keysym: number): KeymapEntry | undefined {
    return this.entries.get(keysym);
  }

  /** The keysym key `code` types in `state` (bit 0 Shift, bit 1 AltGr, bit 2 Caps Lock), if any. */
  keysymAt(code: number, state = 0): number | undefined {
    const v = this.keys.get(code);
    const ks = typeof v === "number" ? v : v?.[state & 7];
    return ks ? ks : undefined;
  }
}

const builtinCache = new Map<string, Keymap>();

/**
 * Loads a keymap: one of {@link KEYMAP_NAMES} (QEMU / xl `keymap=` names such
 * as "en-us", "de", "fr-ch"; default "en-us"), or a path to a keymap JSON
 * file in the same format (see generate.ts). Throws, listing the available
 * names, for anything else.
 */
export function loadKeymap(name = "en-us"): Keymap {
  const lower = name.toLowerCase();
  if (KEYMAP_NAMES.includes(lower)) {
    let km = builtinCache.get(lower);
    if (!km) {
      const url = new URL(`./layouts/${lower}.json`, import.meta.url);
      km = new Keymap(JSON.parse(Deno.readTextFileSync(url)) as KeymapData, lower);
      builtinCache.set(lower, km);
    }
    return km;
  }
  if (name.endsWith(".json") || name.includes("/")) {
    let text: string;
    try {
      text = Deno.readTextFileSync(name);
    } catch (e) {
      throw new Error(`keymap ${name}: cannot read it: ${(e as Error).message}`);
    }
    let data: KeymapData;
    try {
      data = JSON.parse(text);
    } catch (e) {
      throw new Error(`keymap ${name}: not JSON: ${(e as Error).message}`);
    }
    return new Keymap(data, name);
  }
  throw new Error(
    `unknown keymap "${name}"; available: ${
      KEYMAP_NAMES.join(", ")
    } (or a path to a keymap .json file)`,
  );
}

/** One key press or release for the guest (`XENKBD_TYPE_KEY`). */
export interface EvdevKeyEvent {
  code: number;
  down: boolean;
}

/** A way to type a keysym: a key, and the modifier state it needs (undefined: any). */
interface Candidate {
  code: number;
  shift?: boolean;
  altgr?: boolean;
  caps?: boolean;
}

/**
 * Turns RFB KeyEvents (keysym, down) into evdev key events for one client.
 *
 * It keeps track of which guest keys it has pressed, hence of the Shift and
 * AltGr keys the client holds (Shift_L/Shift_R, ISO_Level3_Shift, and Alt_R
 * on layouts where that key is AltGr) and of Caps Lock (toggled by each
 * Caps_Lock press it forwards; assumed off at the start). For a keysym whose
 * key needs another Shift / AltGr state than that, it fakes the modifier
 * presses or releases around the key press and restores them right after,
 * like QEMU's and TigerVNC's keysym paths. It never releases a held modifier
 * around a function or keypad keysym (Shift+Tab stays Shift+Tab), and on a key
 * whose level ignores a modifier (a letter with AltGr held) it leaves it be.
 *
 * The key a keysym's press used is remembered, so its release lifts the same
 * key even if the modifiers (and so the client's idea of the keysym) changed
 * in between. Keysyms the keymap cannot type give no events; use
 * {@link KeyTranslator.canType} to log them.
 */
export class KeyTranslator {
  private readonly byKeysym = new Map<number, Candidate[]>();
  private readonly shiftCodes = new Set<number>();
  private readonly altgrCodes = new Set<number>();
  private readonly capsCodes = new Set<number>();
  private readonly fakeShift: number;
  private readonly fakeAltgr: number;
  /** guest keys we have pressed and not released */
  private readonly down = new Set<number>();
  /** keysym -> the key its press went to */
  private readonly pressed = new Map<number, number>();
  /**
   * Keys pressed for the client's AltGr (ISO_Level3_Shift, Mode_switch) on a
   * layout where that key is no AltGr (en-us: right Alt). The client has
   * already applied AltGr to the keysyms it sends, so these are lifted around
   * character keys, or the guest would see Alt+char.
   */
  private readonly clientAltgr = new Set<number>();
  private capsLock = false;

  constructor(readonly keymap: Keymap = loadKeymap()) {
    const add = (ks: number, c: Candidate) => {
      let l = this.byKeysym.get(ks);
      if (!l) this.byKeysym.set(ks, l = []);
      l.push(c);
    };
    for (const [code, v] of keymap.keys) {
      if (typeof v === "number") {
        add(v, { code });
        continue;
      }
      v.forEach((ks, s) => {
        if (ks) add(ks, { code, shift: (s & 1) !== 0, altgr: (s & 2) !== 0, caps: (s & 4) !== 0 });
      });
    }
    // Keysyms whose key does not type them in the layout proper (from the
    // nodeadkeys / Latin supplements, or the other spelling of a character).
    for (const [ks, e] of keymap.entries) {
      if (!this.byKeysym.get(ks)?.some((c) => c.code === e.code)) {
        add(ks, { code: e.code, shift: e.shift, altgr: e.altgr });
      }
    }
    for (const code of keymap.keys.keys()) {
      const base = keymap.keysymAt(code, 0);
      if (base === XK.Shift_L || base === XK.Shift_R) this.shiftCodes.add(code);
      if (base === XK.ISO_Level3_Shift) this.altgrCodes.add(code);
      if (base === XK.Caps_Lock) this.capsCodes.add(code);
    }
    this.fakeShift = keymap.get(XK.Shift_L)?.code ?? KEY_LEFTSHIFT;
    this.fakeAltgr = keymap.get(XK.ISO_Level3_Shift)?.code ?? KEY_RIGHTALT;
  }

  /** The keysym the keymap will use for `keysym` (itself, or a fallback spelling), if any. */
  private resolve(keysym: number): number | undefined {
    if (this.byKeysym.has(keysym)) return keysym;
    // Unicode keysyms for Latin-1 characters are the Latin-1 keysyms.
    if (keysym >= 0x01000020 && keysym <= 0x010000ff) {
      const l1 = keysym & 0xff;
      if (this.byKeysym.has(l1)) return l1;
    }
    for (const alt of KEYSYM_FALLBACKS.get(keysym) ?? []) if (this.byKeysym.has(alt)) return alt;
    return undefined;
  }

  /** True when the keymap can type `keysym` (directly or through a fallback). */
  canType(keysym: number): boolean {
    return this.resolve(keysym) !== undefined;
  }

  /** The client-side modifier state as the guest sees it. */
  get modifiers(): { shift: boolean; altgr: boolean; capsLock: boolean } {
    return {
      shift: this.held(this.shiftCodes),
      altgr: this.held(this.altgrCodes),
      capsLock: this.capsLock,
    };
  }

  private held(codes: Set<number>): boolean {
    for (const c of codes) if (this.down.has(c)) return true;
    return false;
  }

  /** Translates one RFB KeyEvent. */
  keyEvent(keysym: number, down: boolean): EvdevKeyEvent[] {
    return down ? this.press(keysym) : this.release(keysym);
  }

  private press(keysym: number): EvdevKeyEvent[] {
    const ks = this.resolve(keysym);
    if (ks === undefined) return [];
    const cands = this.byKeysym.get(ks)!;
    const primary = this.keymap.get(ks)?.code ?? cands[0].code;
    if (isModifierKeysym(ks)) {
      const code = cands.some((c) => c.code === primary) ? primary : cands[0].code;
      if (
        (keysym === XK.ISO_Level3_Shift || keysym === XK.Mode_switch) && !this.altgrCodes.has(code)
      ) {
        this.clientAltgr.add(code);
      }
      return this.pressKey(keysym, code, [], []);
    }

    const shiftHeld = this.held(this.shiftCodes);
    const altgrHeld = this.held(this.altgrCodes);
    const mayRelease = isCharacterKeysym(ks);
    const changes = (want: boolean | undefined, held: boolean) =>
      want === undefined || want === held ? 0 : want ? 1 : mayRelease ? 1 : 0;
    // The key is the layout's choice (generate.ts ranks the layout's own keys
    // above generic ones such as inet's KEY_DOLLAR); only the modifier state
    // used on it is picked here: the fewest changes, then the fewest modifiers.
    let best: Candidate | undefined;
    let bestScore = Infinity;
    for (const c of cands) {
      if (c.code !== primary || (c.caps !== undefined && c.caps !== this.capsLock)) continue;
      const score = (changes(c.shift, shiftHeld) + changes(c.altgr, altgrHeld)) * 4 +
        (c.shift ? 1 : 0) +
        (c.altgr ? 1 : 0);
      if (score < bestScore) {
        best = c;
        bestScore = score;
      }
    }
    if (!best) {
      // Only reachable with the other Caps Lock state: do what the layout says for Caps Lock off.
      const e = this.keymap.get(ks);
      best = e ? { code: e.code, shift: e.shift, altgr: e.altgr } : { code: primary };
    }

    const pre: EvdevKeyEvent[] = [];
    const post: EvdevKeyEvent[] = [];
    const adjust = (want: boolean | undefined, held: boolean, codes: Set<number>, fake: number) => {
      if (want === true && !held) {
        pre.push({ code: fake, down: true });
        post.unshift({ code: fake, down: false });
      } else if (want === false && held && mayRelease) {
        for (const c of [...codes].filter((c) => this.down.has(c))) {
          pre.push({ code: c, down: false });
          post.unshift({ code: c, down: true });
        }
      }
    };
    if (mayRelease) adjust(false, this.held(this.clientAltgr), this.clientAltgr, this.fakeAltgr);
    adjust(best.shift, shiftHeld, this.shiftCodes, this.fakeShift);
    adjust(best.altgr, altgrHeld, this.altgrCodes, this.fakeAltgr);
    return this.pressKey(keysym, best.code, pre, post);
  }

  private pressKey(
    keysym: number,
    code: number,
    pre: EvdevKeyEvent[],
    post: EvdevKeyEvent[],
  ): EvdevKeyEvent[] {
    this.pressed.set(keysym, code);
    this.down.add(code);
    if (this.capsCodes.has(code)) this.capsLock = !this.capsLock;
    return [...pre, { code, down: true }, ...post];
  }

  private release(keysym: number): EvdevKeyEvent[] {
    let code = this.pressed.get(keysym);
    if (code === undefined) {
      // A release whose keysym differs from its press's (e.g. '1' after Shift
      // went up, for a press of '!'): lift a pressed key that types it.
      const ks = this.resolve(keysym);
      if (ks !== undefined) {
        const primary = this.keymap.get(ks)?.code;
        if (primary !== undefined && this.down.has(primary)) code = primary;
        else code = this.byKeysym.get(ks)!.find((c) => this.down.has(c.code))?.code;
      }
    }
    if (code === undefined || !this.down.has(code)) {
      this.pressed.delete(keysym);
      return [];
    }
    return this.releaseCode(code);
  }

  private releaseCode(code: number): EvdevKeyEvent[] {
    this.down.delete(code);
    this.clientAltgr.delete(code);
    for (const [ks, c] of this.pressed) if (c === code) this.pressed.delete(ks);
    return [{ code, down: false }];
  }

  /**
   * Translates one QEMU Extended Key Event: the XT code is used directly (see
   * {@link xtToEvdev}); the keysym is not looked at. The key is tracked like
   * the others so that modifiers and {@link KeyTranslator.releaseAll} stay right.
   */
  xtKeyEvent(xt: number, down: boolean): EvdevKeyEvent[] {
    const code = xtToEvdev(xt);
    if (code === undefined) return [];
    if (!down) return this.down.has(code) ? this.releaseCode(code) : [];
    this.down.add(code);
    if (this.capsCodes.has(code)) this.capsLock = !this.capsLock;
    return [{ code, down: true }];
  }

  /** Releases every key still pressed (for a client that goes away). */
  releaseAll(): EvdevKeyEvent[] {
    const out = [...this.down].sort((a, b) => a - b).map((code) => ({ code, down: false }));
    this.down.clear();
    this.pressed.clear();
    this.clientAltgr.clear();
    return out;
  }
}

/** XT code -> evdev code, from xt.json (QEMU's keycodemapdb numbers, via qemu-system-data). */
const XT_TO_EVDEV: ReadonlyMap<number, number> = new Map(
  Object.entries((xtData as XtData).xt).map(([k, v]) => [parseInt(k, 16), v.evdev]),
);

/**
 * XT codes clients send that QEMU's table spells otherwise: Print Screen as
 * its real set-1 make code E0 37 (0xb7) besides QEMU's 0x54 (the RFB spec's
 * QEMU Extended Key Event section: "SHOULD be 0x54, accept 0xb7 too"); 99 is
 * KEY_SYSRQ, Linux's Print Screen key.
 */
const XT_EXTRA: ReadonlyMap<number, number> = new Map([[0xb7, 99]]);

/**
 * The Linux evdev keycode for the XT keycode of a QEMU Extended Key Event:
 * single-byte set-1 codes as they are (for the main block, 0x01–0x58, these
 * equal the Linux codes), 0xE0-prefixed keys with the high bit set (Right =
 * 0xcd -> KEY_RIGHT 106; Pause = 0xc6 -> KEY_PAUSE 119; Print = 0x54 or 0xb7
 * -> KEY_SYSRQ 99). A 16-bit 0xE0xx form is accepted too. Undefined for codes
 * no key has.
 */
export function xtToEvdev(xt: number): number | undefined {
  if ((xt & 0xff00) === 0xe000) xt = 0x80 | (xt & 0x7f);
  return XT_TO_EVDEV.get(xt) ?? XT_EXTRA.get(xt);
}
