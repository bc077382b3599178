/**
 * A small reader for the subset of XKB text files that the keymap generator
 * needs: `keycodes/*` (key names such as `<AE01>` to X keycodes, with
 * aliases), `types/*` (which modifiers select which shift level) and
 * `symbols/*` (keysyms per key and level), with `include` statements resolved
 * recursively and merged the way libxkbcommon merges them (`+`/`include` and
 * `override` overwrite levels, `|`/`augment` only fill empty ones, `replace`
 * swaps whole keys). Keysym names come from the X11 headers (keysymdef.h and
 * the vendor headers beside it), plus `Uxxxx` Unicode names and `0x…` literals.
 *
 * Only group 1 matters to us; `actions`, `overlay`, `virtualMods`,
 * `modifier_map`, compat and geometry are read over and ignored.
 *
 * @module
 */

// ---------------------------------------------------------------------------
// Keysyms

/** Keysym names and their Unicode meanings, read from the X11 headers. */
export interface KeysymTable {
  /** keysym name (without the `XK_` prefix) -> keysym value */
  byName: Map<string, number>;
  /** keysym value -> its preferred (first defined) name */
  nameOf: Map<number, string>;
  /** keysym value -> Unicode code point, from the exact `U+XXXX` comments */
  unicode: Map<number, number>;
}

/** The header files under /usr/include/X11 and how their macro names become keysym names. */
const KEYSYM_HEADERS: {
  file: string;
  prefix: string;
  names: (rest: string, value: number) => string[];
}[] = [
  { file: "keysymdef.h", prefix: "XK_", names: (r) => [r] },
  {
    file: "XF86keysym.h",
    prefix: "XF86XK_",
    // libX11 names the 0x1008FExx "server actions" XF86_Switch_VT_1 etc., the rest XF86AudioMute etc.
    names: (r, v) => ((v & 0xffffff00) === 0x1008fe00 ? [`XF86_${r}`, `XF86${r}`] : [`XF86${r}`]),
  },
  { file: "Sunkeysym.h", prefix: "SunXK_", names: (r) => [`Sun${r}`] },
  { file: "DECkeysym.h", prefix: "DXK_", names: (r) => [`D${r}`] },
  { file: "HPkeysym.h", prefix: "hpXK_", names: (r) => [`hp${r}`] },
];

/** Parses `#define XK_name 0x1234  /* U+1234 NAME *\/` lines into `table`. */
export function parseKeysymHeader(
  text: string,
  prefix: string,
  names: (rest: string, value: number) => string[],
  table: KeysymTable,
): void {
  // XF86keysym.h writes the kernel-derived ones as `_EVDEVK(0x0F4)` = 0x10081000 + 0x0F4.
  const re = new RegExp(
    `^#define\\s+${prefix}([A-Za-z0-9_]+)\\s+(0x[0-9a-fA-F]+|_EVDEVK\\((0x[0-9a-fA-F]+)\\))\\s*(?:/\\*\\s*U\\+([0-9A-Fa-f]{4,6})\\s)?`,
    "gm",
  );
  for (const m of text.matchAll(re)) {
    const value = m[3] ? 0x10081000 + parseInt(m[3], 16) : parseInt(m[2], 16);
    for (const name of names(m[1], value)) {
      if (!table.byName.has(name)) table.byName.set(name, value);
    }
    if (!table.nameOf.has(value)) table.nameOf.set(value, names(m[1], value)[0]);
    if (m[4] && !table.unicode.has(value)) table.unicode.set(value, parseInt(m[4], 16));
  }
}

/** Reads the keysym headers from `dir` (default /usr/include/X11, Debian's x11proto-dev). */
export function loadKeysyms(dir = "/usr/include/X11"): KeysymTable {
  const table: KeysymTable = { byName: new Map(), nameOf: new Map(), unicode: new Map() };
  for (const h of KEYSYM_HEADERS) {
    let text: string;
    try {
      text = Deno.readTextFileSync(`${dir}/${h.file}`);
    } catch (e) {
      if (h.file === "keysymdef.h") throw e;
      continue;
    }
    parseKeysymHeader(text, h.prefix, h.names, table);
  }
  return table;
}

/**
 * The keysym for a name as XKB files write it: a header name (`exclam`), a
 * Unicode name (`U20AC`, which like libxkbcommon gives the Latin-1 keysym
 * below U+0100), or a number (`0x1001E9E`). `NoSymbol` and unknown names give
 * undefined.
 */
export function keysymFromName(name: string, table: KeysymTable): number | undefined {
  const known = table.byName.get(name);
  if (known !== undefined) return known === 0 ? undefined : known;
  if (name === "NoSymbol" || name === "any") return undefined; // libxkbcommon reads "any" as NoSymbol
  let m = /^U([0-9A-Fa-f]{1,6})$/.exec(name);
  if (m) {
    const cp = parseInt(m[1], 16);
    if (cp < 0x20 || (cp > 0x7e && cp < 0xa0) || cp > 0x10ffff) return undefined;
    return cp < 0x100 ? cp : 0x01000000 | cp;
  }
  m = /^0x([0-9A-Fa-f]+)$/.exec(name);
  if (m) return parseInt(m[1], 16);
  if (/^[0-9]+$/.test(name)) return parseInt(name, 10);
  return undefined;
}

/** The Unicode code point a keysym types, if any. */
export function keysymToUnicode(keysym: number, table: KeysymTable): number | undefined {
  if (keysym >= 0x01000100 && keysym <= 0x0110ffff) return keysym - 0x01000000;
  if ((keysym >= 0x20 && keysym <= 0x7e) || (keysym >= 0xa0 && keysym <= 0xff)) return keysym;
  return table.unicode.get(keysym);
}

// ---------------------------------------------------------------------------
// Tokens and a generic statement tree

type TokKind = "word" | "string" | "keyname" | "punct";
interface Token {
  kind: TokKind;
  text: string;
  line: number;
}

/** Splits XKB text into tokens (words, "strings", <keynames>, punctuation); drops comments. */
export function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  let line = 1;
  while (i < src.length) {
    const c = src[i];
    if (c === "\n") {
      line++;
      i++;
    } else if (c === " " || c === "\t" || c === "\r" || c === "\f" || c === "\v") {
      i++;
    } else if ((c === "/" && src[i + 1] === "/") || c === "#") {
      while (i < src.length && src[i] !== "\n") i++;
    } else if (c === "/" && src[i + 1] === "*") {
      const end = src.indexOf("*/", i + 2);
      const stop = end < 0 ? src.length : end + 2;
      for (let j = i; j < stop; j++) if (src[j] === "\n") line++;
      i = stop;
    } else if (c === '"') {
      let j = i + 1;
      let s = "";
      while (j < src.length && src[j] !== '"') {
        if (src[j] === "\\" && j + 1 < src.length) {
          s += src[j + 1];
          j += 2;
        } else {
          if (src[j] === "\n") line++;
          s += src[j++];
        }
      }
      out.push({ kind: "string", text: s, line });
      i = j + 1;
    } else if (c === "<") {
      const j = src.indexOf(">", i);
      out.push({ kind: "keyname", text: src.slice(i + 1, j), line });
      i = j + 1;
    } else if (/[A-Za-z0-9_]/.test(c)) {
      let j = i;
      while (j < src.length && /[A-Za-z0-9_]/.test(src[j])) j++;
      out.push({ kind: "word", text: src.slice(i, j), line });
      i = j;
    } else {
      out.push({ kind: "punct", text: c, line });
      i++;
    }
  }
  return out;
}

/** How a statement's definitions combine with earlier ones. */
export type Merge = "default" | "override" | "augment" | "replace";
const MERGE_WORDS = new Set(["augment", "override", "replace", "alternate"]);

/** A value on the right of `=` or inside `[ ]`: words joined by `+`, lists, blocks, strings. */
export type Value =
  | { t: "word"; v: string }
  | { t: "string"; v: string }
  | { t: "keyname"; v: string }
  | { t: "list"; items: Value[] }
  | { t: "set"; items: Value[] } // { a, b } (several keysyms on one level)
  | { t: "sum"; items: Value[] } // Shift+Lock
  | { t: "call"; v: string } // SetMods(...) (arguments skipped)
  | { t: "other" };

/** One statement of a section body. */
export type Stmt =
  | { t: "include"; merge: Merge; spec: string }
  /** `key <NAME> { items }` (symbols) */
  | { t: "key"; merge: Merge; name: string; items: Item[] }
  /** `lhs[index] = value;` in any section; lhs may be dotted (`key.type`) */
  | { t: "assign"; merge: Merge; lhs: string; index?: Value; value: Value }
  /** `<NAME> = 12;` (keycodes) */
  | { t: "keycode"; merge: Merge; name: string; code: number }
  /** `alias <A> = <B>;` */
  | { t: "alias"; merge: Merge; name: string; target: string }
  /** `type "NAME" { stmts }` (types) */
  | { t: "type"; merge: Merge; name: string; body: Stmt[] }
  | { t: "other" };

/** An item of a key body: a bare `[ … ]` group or `name[index] = value`. */
export type Item = { t: "group"; value: Value } | {
  t: "field";
  lhs: string;
  index?: Value;
  value: Value;
};

/** One `xkb_symbols "name" { … };` (or keycodes/types) block of a file. */
export interface Section {
  kind: string;
  name: string;
  flags: string[];
  body: Stmt[];
}

class Parser {
  private p = 0;
  constructor(private toks: Token[], private file: string) {}

  private peek(o = 0): Token | undefined {
    return this.toks[this.p + o];
  }
  private next(): Token {
    const t = this.toks[this.p++];
    if (!t) throw new Error(`${this.file}: unexpected end of file`);
    return t;
  }
  private isPunct(text: string, o = 0): boolean {
    const t = this.peek(o);
    return !!t && t.kind === "punct" && t.text === text;
  }
  private expect(text: string): void {
    const t = this.next();
    if (t.text !== text) {
      throw new Error(`${this.file}:${t.line}: expected '${text}', found '${t.text}'`);
    }
  }
  private optional(text: string): boolean {
    if (this.isPunct(text)) {
      this.p++;
      return true;
    }
    return false;
  }

  /** Skips a balanced run up to (not including) the next `;` / `,` / closer at depth 0. */
  private skipValue(stops: string[]): void {
    let depth = 0;
    while (this.peek()) {
      const t = this.peek()!;
      if (t.kind === "punct") {
        if (
          depth === 0 &&
          (stops.includes(t.text) || t.text === "}" || t.text === "]" || t.text === ")")
        ) {
          return;
        }
        if (t.text === "{" || t.text === "[" || t.text === "(") depth++;
        if (t.text === "}" || t.text === "]" || t.text === ")") depth--;
      }
      this.p++;
    }
  }

  sections(): Section[] {
    const out: Section[] = [];
    while (this.peek()) {
      const flags: string[] = [];
      let kind = "";
      while (this.peek() && this.peek()!.kind === "word") {
        const w = this.next().text;
        if (w.startsWith("xkb_")) {
          kind = w;
          break;
        }
        flags.push(w);
      }
      if (!kind) {
        const t = this.peek();
        if (!t) break;
        throw new Error(`${this.file}:${t.line}: expected an xkb_* section, found '${t.text}'`);
      }
      const name = this.peek()?.kind === "string" ? this.next().text : "";
      this.expect("{");
      const body = this.body();
      this.expect("}");
      this.optional(";");
      out.push({ kind, name, flags, body });
    }
    return out;
  }

  /** Statements up to the closing `}` (not consumed). */
  body(): Stmt[] {
    const out: Stmt[] = [];
    while (this.peek() && !this.isPunct("}")) {
      if (this.optional(";")) continue;
      out.push(this.stmt());
    }
    return out;
  }

  private stmt(): Stmt {
    let merge: Merge = "default";
    const t0 = this.peek()!;
    if (t0.kind === "word" && (MERGE_WORDS.has(t0.text) || t0.text === "include")) {
      const w = this.next().text;
      if (this.peek()?.kind === "string") {
        const spec = this.next().text;
        this.optional(";");
        const m: Merge = w === "include"
          ? "default"
          : w === "alternate"
          ? "override"
          : (w as Merge);
        return { t: "include", merge: m, spec };
      }
      if (w !== "include") merge = w === "alternate" ? "override" : (w as Merge);
    }
    const start = this.p;
    const t = this.next();
    if (t.kind === "word" && t.text === "key" && this.peek()?.kind === "keyname") {
      const name = this.next().text;
      this.expect("{");
      const items = this.keyItems();
      this.expect("}");
      this.optional(";");
      return { t: "key", merge, name, items };
    }
    if (t.kind === "word" && t.text === "alias" && this.peek()?.kind === "keyname") {
      const name = this.next().text;
      this.expect("=");
      const target = this.next().text;
      this.optional(";");
      return { t: "alias", merge, name, target };
    }
    if (t.kind === "keyname" && this.isPunct("=")) {
      this.p++;
      const v = this.next().text;
      this.optional(";");
      return { t: "keycode", merge, name: t.text, code: Number(v) };
    }
    if (t.kind === "word" && t.text === "type" && this.peek()?.kind === "string") {
      const name = this.next().text;
      this.expect("{");
      const body = this.body();
      this.expect("}");
      this.optional(";");
      return { t: "type", merge, name, body };
    }
    if (t.kind === "word") {
      // lhs: word(.word)* [index]? = value ;
      let lhs = t.text;
      while (this.isPunct(".") && this.peek(1)?.kind === "word") {
        this.p++;
        lhs += "." + this.next().text;
      }
      let index: Value | undefined;
      if (this.isPunct("[")) {
        this.p++;
        index = this.value();
        this.expect("]");
      }
      if (this.optional("=")) {
        const value = this.value();
        this.optional(";");
        return { t: "assign", merge, lhs, index, value };
      }
    }
    // Anything else (modifier_map, virtual_modifiers, indicator, interpret, …): skip it.
    this.p = start;
    this.skipStatement();
    return { t: "other" };
  }

  /** Skips to the end of a statement: through a `{ … }` block and/or the `;`. */
  private skipStatement(): void {
    let depth = 0;
    while (this.peek()) {
      const t = this.next();
      if (t.kind !== "punct") continue;
      if (t.text === "{" || t.text === "[" || t.text === "(") depth++;
      else if (t.text === "}" || t.text === "]" || t.text === ")") {
        depth--;
        if (depth < 0) {
          this.p--;
          return;
        }
        if (depth === 0 && t.text === "}" && !this.isPunct(";")) return;
      } else if (t.text === ";" && depth === 0) return;
    }
  }

  private keyItems(): Item[] {
    const out: Item[] = [];
    while (this.peek() && !this.isPunct("}")) {
      if (this.optional(",")) continue;
      if (this.isPunct("[")) {
        out.push({ t: "group", value: this.value() });
        continue;
      }
      const t = this.next();
      if (t.kind !== "word") {
        this.skipValue([","]);
        continue;
      }
      let lhs = t.text;
      while (this.isPunct(".") && this.peek(1)?.kind === "word") {
        this.p++;
        lhs += "." + this.next().text;
      }
      let index: Value | undefined;
      if (this.isPunct("[")) {
        this.p++;
        index = this.value();
        this.expect("]");
      }
      if (this.optional("=")) {
        out.push({ t: "field", lhs, index, value: this.value() });
      } else {
        this.skipValue([","]);
      }
    }
    return out;
  }

  private value(): Value {
    const first = this.term();
    if (!this.isPunct("+")) return first;
    const items = [first];
    while (this.optional("+")) items.push(this.term());
    return { t: "sum", items };
  }

  private term(): Value {
    const t = this.peek();
    if (!t) throw new Error(`${this.file}: unexpected end of file in a value`);
    if (t.kind === "punct" && (t.text === "[" || t.text === "{")) {
      this.p++;
      const close = t.text === "[" ? "]" : "}";
      const items: Value[] = [];
      while (this.peek() && !this.isPunct(close)) {
        if (this.optional(",")) continue;
        items.push(this.value());
      }
      this.expect(close);
      return { t: t.text === "[" ? "list" : "set", items };
    }
    if (t.kind === "punct" && (t.text === "!" || t.text === "~" || t.text === "-")) {
      this.p++;
      this.term();
      return { t: "other" };
    }
    this.p++;
    if (t.kind === "word" && this.isPunct("(")) {
      this.p++;
      this.skipValue([]);
      this.expect(")");
      return { t: "call", v: t.text };
    }
    if (t.kind === "word" || t.kind === "string" || t.kind === "keyname") {
      return { t: t.kind, v: t.text };
    }
    return { t: "other" };
  }
}

/** Parses the text of one XKB file into its sections. */
export function parseXkbFile(text: string, file = "<xkb>"): Section[] {
  return new Parser(tokenize(text), file).sections();
}

// ---------------------------------------------------------------------------
// Include resolution

/** One component of an include string such as `pc+us(basic)|level3(ralt_switch):2`. */
export interface IncludeComponent {
  merge: Merge;
  file: string;
  variant?: string;
  group?: number;
}

/** Splits an include string; the first component gets `first`, later ones `+` (override) or `|` (augment). */
export function parseIncludeSpec(spec: string, first: Merge = "default"): IncludeComponent[] {
  const out: IncludeComponent[] = [];
  const re = /([+|]?)([^+|():]+)(?:\(([^)]*)\))?(?::(\d+))?/g;
  for (const m of spec.matchAll(re)) {
    const merge: Merge = m[1] === "+" ? "override" : m[1] === "|" ? "augment" : first;
    out.push({ merge, file: m[2].trim(), variant: m[3], group: m[4] ? Number(m[4]) : undefined });
  }
  return out;
}

/** Reads and caches XKB files from one xkb root (default /usr/share/X11/xkb, Debian's xkb-data). */
export class XkbSource {
  private cache = new Map<string, Section[]>();
  /** Every file read, relative to the root (e.g. "symbols/us"), in first-read order. */
  readonly files = new Set<string>();
  /** When set, also collects every file used from now on (cached or not). */
  recorder?: Set<string>;
  constructor(readonly root = "/usr/share/X11/xkb") {}

  /** The sections of `<dir>/<file>`. */
  sections(dir: string, file: string): Section[] {
    const rel = `${dir}/${file}`;
    let s = this.cache.get(rel);
    if (!s) {
      s = parseXkbFile(Deno.readTextFileSync(`${this.root}/${rel}`), rel);
      this.cache.set(rel, s);
    }
    this.files.add(rel);
    this.recorder?.add(rel);
    return s;
  }

  /** The named section (or the `default` one, else the first) of `<dir>/<file>`. */
  section(dir: string, file: string, variant?: string): Section {
    const all = this.sections(dir, file);
    const s = variant
      ? all.find((x) => x.name === variant)
      : (all.find((x) => x.flags.includes("default")) ?? all[0]);
    if (!s) throw new Error(`xkb: no section ${variant ? `"${variant}" ` : ""}in ${dir}/${file}`);
    return s;
  }

  /** True when `<dir>/<file>` has a section named `variant`. */
  hasSection(dir: string, file: string, variant: string): boolean {
    try {
      return this.sections(dir, file).some((s) => s.name === variant);
    } catch {
      return false;
    }
  }
}

function valueText(v: Value | undefined): string | undefined {
  return v && (v.t === "word" || v.t === "string" || v.t === "keyname") ? v.v : undefined;
}

/** `Group2` / `group2` / `2` -> 1 (zero-based). */
function groupIndex(v: Value | undefined): number | undefined {
  const s = valueText(v);
  if (!s) return undefined;
  const m = /^(?:group)?(\d+)$/i.exec(s);
  return m ? Number(m[1]) - 1 : undefined;
}

/** `Level3` / `level3` / `3` -> 3. */
function levelNumber(v: Value | undefined): number | undefined {
  const s = valueText(v);
  if (!s) return undefined;
  const m = /^(?:level)?(\d+)$/i.exec(s);
  return m ? Number(m[1]) : undefined;
}

function mergeMode(stmt: Merge, inherited: Merge): Merge {
  return stmt === "default" ? inherited : stmt;
}

// ---------------------------------------------------------------------------
// Keycodes

/** Key names to X keycodes (evdev keycode = X keycode − 8). */
export class Keycodes {
  readonly codes = new Map<string, number>();
  readonly aliases = new Map<string, string>();

  /** The X keycode of a key name, following aliases. */
  get(name: string): number | undefined {
    for (let i = 0; i < 8; i++) {
      const c = this.codes.get(name);
      if (c !== undefined) return c;
      const a = this.aliases.get(name);
      if (a === undefined) return undefined;
      name = a;
    }
    return undefined;
  }

  private mergeFrom(o: Keycodes, merge: Merge): void {
    const clobber = merge !== "augment";
    for (const [k, v] of o.codes) if (clobber || !this.codes.has(k)) this.codes.set(k, v);
    for (const [k, v] of o.aliases) if (clobber || !this.aliases.has(k)) this.aliases.set(k, v);
  }

  /** Compiles an include-style spec such as `evdev+aliases(qwerty)`. */
  static compile(src: XkbSource, spec: string): Keycodes {
    const out = new Keycodes();
    for (const c of parseIncludeSpec(spec, "override")) {
      out.mergeFrom(Keycodes.section(src, c.file, c.variant), c.merge);
    }
    return out;
  }

  private static section(src: XkbSource, file: string, variant?: string): Keycodes {
    const out = new Keycodes();
    for (const st of src.section("keycodes", file, variant).body) {
      if (st.t === "include") {
        const inc = new Keycodes();
        for (const c of parseIncludeSpec(st.spec, "override")) {
          inc.mergeFrom(Keycodes.section(src, c.file, c.variant), c.merge);
        }
        out.mergeFrom(inc, mergeMode(st.merge, "override"));
      } else if (st.t === "keycode") {
        const m = mergeMode(st.merge, "override");
        if (m !== "augment" || !out.codes.has(st.name)) out.codes.set(st.name, st.code);
      } else if (st.t === "alias") {
        const m = mergeMode(st.merge, "override");
        if (m !== "augment" || !out.aliases.has(st.name)) out.aliases.set(st.name, st.target);
      }
    }
    return out;
  }
}

// ---------------------------------------------------------------------------
// Types

/**
 * The modifiers a key type can look at, as we model them: Shift, Lock (Caps
 * Lock), LevelThree (AltGr; real modifier Mod5) and NumLock (Mod2). Any other
 * modifier (Control, Alt, LevelFive, …) is kept by name and is never active.
 */
function normMod(name: string): string {
  switch (name.toLowerCase()) {
    case "shift":
      return "Shift";
    case "lock":
      return "Lock";
    case "levelthree":
    case "mod5":
      return "LevelThree";
    case "numlock":
    case "mod2":
      return "NumLock";
    default:
      return name;
  }
}

function modSet(v: Value | undefined): Set<string> {
  const out = new Set<string>();
  const items = v?.t === "sum" ? v.items : v ? [v] : [];
  for (const i of items) {
    const s = valueText(i);
    if (s && s.toLowerCase() !== "none") out.add(normMod(s));
  }
  return out;
}

/** A key type: which of its modifiers select which level. */
export interface KeyType {
  name: string;
  modifiers: Set<string>;
  map: { mods: Set<string>; level: number }[];
}

/** The level (1-based) that `type` gives under the active modifiers `active`. */
export function typeLevel(type: KeyType, active: Set<string>): number {
  const eff = new Set([...active].filter((m) => type.modifiers.has(m)));
  for (const e of type.map) {
    if (e.mods.size === eff.size && [...e.mods].every((m) => eff.has(m))) return e.level;
  }
  return 1;
}

/** Compiles an include-style types spec such as `complete`. */
export function compileTypes(src: XkbSource, spec: string): Map<string, KeyType> {
  const out = new Map<string, KeyType>();
  const mergeInto = (into: Map<string, KeyType>, from: Map<string, KeyType>, merge: Merge) => {
    for (const [k, v] of from) if (merge !== "augment" || !into.has(k)) into.set(k, v);
  };
  const section = (file: string, variant?: string): Map<string, KeyType> => {
    const res = new Map<string, KeyType>();
    for (const st of src.section("types", file, variant).body) {
      if (st.t === "include") {
        const inc = new Map<string, KeyType>();
        for (const c of parseIncludeSpec(st.spec, "override")) {
          mergeInto(inc, section(c.file, c.variant), c.merge);
        }
        mergeInto(res, inc, mergeMode(st.merge, "override"));
      } else if (st.t === "type") {
        const t: KeyType = { name: st.name, modifiers: new Set(), map: [] };
        for (const a of st.body) {
          if (a.t !== "assign") continue;
          if (a.lhs === "modifiers") t.modifiers = modSet(a.value);
          else if (a.lhs === "map") {
            const level = levelNumber(a.value);
            if (level !== undefined) t.map.push({ mods: modSet(a.index), level });
          }
        }
        mergeInto(res, new Map([[st.name, t]]), mergeMode(st.merge, "override"));
      }
    }
    return res;
  };
  for (const c of parseIncludeSpec(spec, "override")) {
    mergeInto(out, section(c.file, c.variant), c.merge);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Symbols

/** One group of a key: its keysyms per level (null = NoSymbol) and an explicit type, if any. */
export interface GroupDef {
  levels: (number | null)[];
  type?: string;
}

/** One key of a symbols map. */
export interface KeyDef {
  groups: GroupDef[];
  /** `type = "…"` without a group index: applies to groups with no type of their own */
  defaultType?: string;
  merge: Merge;
}

/** Keysym names that were not found while compiling, with where they were used. */
export type UnknownNames = Map<string, string>;

function cloneKey(k: KeyDef): KeyDef {
  return {
    groups: k.groups.map((g) => (g ? { levels: [...g.levels], type: g.type } : g)),
    defaultType: k.defaultType,
    merge: k.merge,
  };
}

function mergeGroups(
  into: GroupDef | undefined,
  from: GroupDef | undefined,
  clobber: boolean,
): GroupDef | undefined {
  if (!from) return into;
  if (!into) return { levels: [...from.levels], type: from.type };
  const type = from.type !== undefined && (clobber || into.type === undefined)
    ? from.type
    : into.type;
  const n = Math.max(into.levels.length, from.levels.length);
  const levels: (number | null)[] = [];
  for (let i = 0; i < n; i++) {
    const a = into.levels[i] ?? null;
    const b = from.levels[i] ?? null;
    levels.push(b === null ? a : a === null ? b : clobber ? b : a);
  }
  return { levels, type };
}

/** Merges key `from` into the map under its merge mode (libxkbcommon's MergeKeys). */
function addKey(keys: Map<string, KeyDef>, name: string, from: KeyDef): void {
  const into = keys.get(name);
  if (!into || from.merge === "replace") {
    keys.set(name, cloneKey(from));
    return;
  }
  const clobber = from.merge !== "augment";
  const n = Math.max(into.groups.length, from.groups.length);
  const groups: GroupDef[] = [];
  for (let i = 0; i < n; i++) groups[i] = mergeGroups(into.groups[i], from.groups[i], clobber)!;
  const defaultType = from.defaultType !== undefined && (clobber || into.defaultType === undefined)
    ? from.defaultType
    : into.defaultType;
  keys.set(name, { groups, defaultType, merge: into.merge });
}

function mergeSymbols(into: Map<string, KeyDef>, from: Map<string, KeyDef>, merge: Merge): void {
  for (const [name, k] of from) {
    const key = merge === "default" ? k : { ...k, merge };
    addKey(into, name, key);
  }
}

/** Resolves symbols files: `compile("pc+us+inet(evdev)")` gives key name -> KeyDef. */
export class SymbolsCompiler {
  readonly unknown: UnknownNames = new Map();
  constructor(readonly src: XkbSource, readonly keysyms: KeysymTable) {}

  /** Compiles an include-style spec as the top level of a keymap. */
  compile(spec: string): Map<string, KeyDef> {
    const out = new Map<string, KeyDef>();
    this.include(out, spec, "override", undefined, 0);
    return out;
  }

  private include(
    into: Map<string, KeyDef>,
    spec: string,
    merge: Merge,
    explicitGroup: number | undefined,
    depth: number,
  ): void {
    if (depth > 20) throw new Error(`xkb: include loop at "${spec}"`);
    const included = new Map<string, KeyDef>();
    const comps = parseIncludeSpec(spec, merge);
    for (const c of comps) {
      const group = c.group !== undefined ? c.group - 1 : explicitGroup;
      const next = this.section(c.file, c.variant, group, depth + 1);
      mergeSymbols(included, next, c.merge);
    }
    mergeSymbols(into, included, comps[0]?.merge ?? merge);
  }

  private section(
    file: string,
    variant: string | undefined,
    explicitGroup: number | undefined,
    depth: number,
  ) {
    const sec = this.src.section("symbols", file, variant);
    const where = `symbols/${file}(${sec.name})`;
    const keys = new Map<string, KeyDef>();
    const defaults: { groupTypes: (string | undefined)[]; type?: string } = { groupTypes: [] };
    for (const st of sec.body) {
      if (st.t === "include") {
        this.include(keys, st.spec, st.merge, explicitGroup, depth);
      } else if (st.t === "key") {
        const k = this.keyDef(st.items, mergeMode(st.merge, "override"), defaults, where);
        if (explicitGroup !== undefined) {
          const g0 = k.groups[0];
          k.groups = [];
          if (g0) k.groups[explicitGroup] = g0;
        }
        addKey(keys, st.name, k);
      } else if (st.t === "assign" && st.lhs === "key.type") {
        const gi = groupIndex(st.index);
        const v = valueText(st.value);
        if (gi === undefined) defaults.type = v;
        else defaults.groupTypes[gi] = v;
      }
    }
    return keys;
  }

  private keysym(v: Value, where: string): number | null {
    if (v.t === "word") {
      const k = keysymFromName(v.v, this.keysyms);
      if (k === undefined) {
        if (v.v !== "NoSymbol" && v.v !== "any" && !this.unknown.has(v.v)) {
          this.unknown.set(v.v, where);
        }
        return null;
      }
      return k === 0xffffff ? null : k; // VoidSymbol
    }
    return null; // { a, b }: several keysyms on one level cannot be typed as one
  }

  private keyDef(
    items: Item[],
    merge: Merge,
    defaults: { groupTypes: (string | undefined)[]; type?: string },
    where: string,
  ): KeyDef {
    const k: KeyDef = { groups: [], merge, defaultType: undefined };
    let implicit = 0;
    const group = (i: number) => (k.groups[i] ??= { levels: [] });
    for (const it of items) {
      if (it.t === "group") {
        if (it.value.t === "list") {
          group(implicit).levels = it.value.items.map((v) => this.keysym(v, where));
        }
        implicit++;
      } else if (it.lhs === "symbols") {
        const gi = groupIndex(it.index) ?? implicit;
        if (it.value.t === "list") {
          group(gi).levels = it.value.items.map((v) => this.keysym(v, where));
        }
      } else if (it.lhs === "type") {
        const gi = groupIndex(it.index);
        if (gi === undefined) k.defaultType = valueText(it.value);
        else group(gi).type = valueText(it.value);
      }
    }
    // `key.type…` defaults of the section apply to keys that name no type themselves.
    if (k.defaultType === undefined && defaults.type !== undefined) k.defaultType = defaults.type;
    defaults.groupTypes.forEach((t, i) => {
      if (t !== undefined && k.groups[i] && k.groups[i].type === undefined) k.groups[i].type = t;
    });
    return k;
  }
}

// ---------------------------------------------------------------------------
// Levels

function caseOf(keysym: number | null, table: KeysymTable): "lower" | "upper" | undefined {
  if (keysym === null) return undefined;
  const cp = keysymToUnicode(keysym, table);
  if (cp === undefined) return undefined;
  const ch = String.fromCodePoint(cp);
  const lo = ch.toLowerCase();
  const up = ch.toUpperCase();
  if (lo === up || [...lo].length !== 1 || [...up].length !== 1) return undefined;
  return ch === lo ? "lower" : ch === up ? "upper" : undefined;
}

function isKeypadKeysym(k: number | null): boolean {
  return k !== null && k >= 0xff80 && k <= 0xffbd;
}

/** libxkbcommon's FindAutomaticType: the type a group gets when none is named. */
export function automaticType(levels: (number | null)[], table: KeysymTable): string {
  const w = levels.length;
  const s0 = levels[0] ?? null;
  const s1 = levels[1] ?? null;
  if (w <= 1) return "ONE_LEVEL";
  if (w === 2) {
    if (caseOf(s0, table) === "lower" && caseOf(s1, table) === "upper") return "ALPHABETIC";
    if (isKeypadKeysym(s0) || isKeypadKeysym(s1)) return "KEYPAD";
    return "TWO_LEVEL";
  }
  if (w <= 4) {
    if (caseOf(s0, table) === "lower" && caseOf(s1, table) === "upper") {
      const s2 = levels[2] ?? null;
      const s3 = w === 4 ? levels[3] ?? null : null;
      if (caseOf(s2, table) === "lower" && caseOf(s3, table) === "upper") {
        return "FOUR_LEVEL_ALPHABETIC";
      }
      return "FOUR_LEVEL_SEMIALPHABETIC";
    }
    if (isKeypadKeysym(s0) || isKeypadKeysym(s1)) return "FOUR_LEVEL_KEYPAD";
    return "FOUR_LEVEL";
  }
  return "EIGHT_LEVEL";
}

/** The type name that applies to group `g` of key `k`. */
export function groupTypeName(k: KeyDef, g: number, table: KeysymTable): string {
  const grp = k.groups[g];
  return grp?.type ?? k.defaultType ?? automaticType(grp?.levels ?? [], table);
}

/** The keysym that group 1 of `k` gives with the modifiers in `active` (null for none). */
export function keysymAt(
  k: KeyDef,
  types: Map<string, KeyType>,
  table: KeysymTable,
  active: Set<string>,
): number | null {
  const grp = k.groups[0];
  if (!grp || grp.levels.length === 0) return null;
  const typeName = groupTypeName(k, 0, table);
  const type = types.get(typeName) ?? types.get(automaticType(grp.levels, table));
  const level = type ? typeLevel(type, active) : 1;
  return grp.levels[level - 1] ?? null;
}
