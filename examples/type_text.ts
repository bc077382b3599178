/**
 * Types a text into the guest, as a keyboard on a given layout would.
 *
 *   deno run -A examples/type_text.ts --sim --text 'Hello, world!' --keymap en-us
 *   deno run -A examples/type_text.ts --sim --guest demo --text 'ls -l\n' --keymap de
 *
 * Each character becomes an X11 keysym, which rxfb's KeyTranslator (the one
 * the VNC server uses) turns into Linux evdev key presses on the chosen
 * layout, with Shift / AltGr pressed around it as needed. The events go to
 * the guest's PV keyboard through `guest.input`. With the simulator the
 * example prints the key events the guest read. `\n` in --text is Return,
 * `\t` Tab. The common flags are in sim_guest.ts.
 *
 * @module
 */
import type { Observer } from "rxjs";
import { type InputEvent, KeyTranslator, loadKeymap } from "../mod.ts";
import { startExampleGuest } from "./sim_guest.ts";

/** The X11 keysym of a character: Latin-1 keysyms are the code points; others are Unicode keysyms. */
export function keysymOf(ch: string): number {
  const special: Record<string, number> = {
    "\n": 0xff0d,
    "\r": 0xff0d,
    "\t": 0xff09,
    "\b": 0xff08,
  };
  if (ch in special) return special[ch];
  const c = ch.codePointAt(0)!;
  return c < 0x100 ? c : 0x01000000 + c;
}

/**
 * Types `text` into `input` on layout `keymap` (default en-us), waiting
 * `delayMs` after each character so the guest's keyboard ring never fills.
 * Resolves with the characters the layout cannot type (they are skipped).
 */
export async function typeText(
  input: Observer<InputEvent>,
  text: string,
  opts: { keymap?: string; delayMs?: number } = {},
): Promise<string[]> {
  const keys = new KeyTranslator(loadKeymap(opts.keymap ?? "en-us"));
  const skipped: string[] = [];
  for (const ch of text) {
    const keysym = keysymOf(ch);
    if (!keys.canType(keysym)) {
      skipped.push(ch);
      continue;
    }
    for (const down of [true, false]) {
      for (const e of keys.keyEvent(keysym, down)) {
        input.next({ type: "key", code: e.code, down: e.down });
      }
    }
    await new Promise((r) => setTimeout(r, opts.delayMs ?? 5));
  }
  return skipped;
}

if (import.meta.main) {
  const g = await startExampleGuest(Deno.args, {
    text: { type: "string", default: "Hello from rxfb!\\n" },
    keymap: { type: "string", default: "en-us" },
  }, "demo");
  const text = String(g.flags.text).replaceAll("\\n", "\n").replaceAll("\\t", "\t");
  await g.keyboardReady();
  const skipped = await typeText(g.guest.input, text, { keymap: String(g.flags.keymap) });
  if (skipped.length) console.error(`the layout cannot type: ${JSON.stringify(skipped.join(""))}`);
  await new Promise((r) => setTimeout(r, 100)); // let the guest read its ring
  // As evdev codes: +N pressed, -N released (KEY_A is 30, KEY_LEFTSHIFT 42).
  const keys = g.sim.inputs.flatMap((e) =>
    e.type === "key" ? [`${e.down ? "+" : "-"}${e.code}`] : []
  );
  console.log(`the guest read ${keys.length} key events: ${keys.join(" ")}`);
  await g.stop();
}
