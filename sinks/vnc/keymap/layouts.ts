/**
 * The keymap names rxfb accepts (`--keymap`), named like QEMU's / xl's
 * `keymap=` option, and the XKB layout (Debian's xkb-data) each one is
 * generated from by `deno task keymaps` (see generate.ts).
 *
 * @module
 */

/** Where one keymap comes from in xkb-data. */
export interface LayoutSpec {
  /** the file under symbols/ */
  layout: string;
  /** a section of that file; the file's default one when absent */
  variant?: string;
  /**
   * A Latin layout whose keys are used for keysyms the layout itself cannot
   * type (for non-Latin layouts, as `setxkbmap us,ru` would give them).
   */
  fallback?: string;
}

/** keymap name -> XKB layout. */
export const LAYOUTS: Readonly<Record<string, LayoutSpec>> = {
  "en-us": { layout: "us" },
  "en-gb": { layout: "gb" },
  "de": { layout: "de" },
  "de-ch": { layout: "ch", variant: "de" },
  "fr": { layout: "fr" },
  "fr-be": { layout: "be" },
  "fr-ch": { layout: "ch", variant: "fr" },
  "es": { layout: "es" },
  "it": { layout: "it" },
  "pt": { layout: "pt" },
  "pt-br": { layout: "br" },
  "sv": { layout: "se" },
  "no": { layout: "no" },
  "da": { layout: "dk" },
  "fi": { layout: "fi" },
  "nl": { layout: "nl" },
  "ja": { layout: "jp" },
  "pl": { layout: "pl" },
  "ru": { layout: "ru", fallback: "us" },
  "cz": { layout: "cz" },
  "hu": { layout: "hu" },
  "tr": { layout: "tr" },
  "is": { layout: "is" },
  "et": { layout: "ee" },
  "lt": { layout: "lt" },
  "lv": { layout: "lv" },
  "sl": { layout: "si" },
  "hr": { layout: "hr" },
  "mk": { layout: "mk", fallback: "us" },
  "th": { layout: "th", fallback: "us" },
  "fo": { layout: "fo" },
};

/** The keymap names, sorted. */
export const KEYMAP_NAMES: readonly string[] = Object.keys(LAYOUTS).sort();

/** One keysym's key: its evdev code and the modifiers the layout needs for it. */
export interface KeymapEntry {
  code: number;
  shift: boolean;
  altgr: boolean;
}

/** The shape of layouts/<name>.json (written by generate.ts). */
export interface KeymapData {
  name: string;
  source: {
    package: string;
    version: string;
    symbols: string;
    supplements: string[];
    keycodes: string;
    types: string;
    files: string[];
    keysyms: string;
  };
  generator: string;
  /**
   * evdev code -> what the key types: one keysym when Shift, AltGr and Caps
   * Lock do not change it, else 8 keysyms indexed by state (bit 0 Shift, bit 1
   * AltGr/LevelThree, bit 2 Caps Lock; 0 = nothing).
   */
  keys: Record<string, number | number[]>;
  /** keysym -> the key and modifiers of the lowest level that types it */
  keysyms: Record<string, KeymapEntry>;
}

/** The shape of xt.json (written by generate.ts). */
export interface XtData {
  source: { package: string; version: string; files: string };
  generator: string;
  /** XT code ("0x1c"; 0xE0-prefixed keys as 0x80|code) -> Linux code and QEMU's name for it */
  xt: Record<string, { evdev: number; qcode: string }>;
}
