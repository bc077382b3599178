import { BTN_LEFT, BTN_MIDDLE, BTN_RIGHT, type InputEvent } from "../../pipeline/events.ts";

/** RFB button-mask bits -> evdev buttons (bit 0 left, 1 middle, 2 right). */
const BUTTONS: readonly [number, number][] = [[1, BTN_LEFT], [2, BTN_MIDDLE], [4, BTN_RIGHT]];
const WHEEL_UP = 8, WHEEL_DOWN = 16;
/** QEMU PointerTypeChange: in relative mode x/y are deltas biased by this. */
export const REL_BIAS = 0x7fff;

/**
 * Turns RFB PointerEvents into the guest's input events: button presses and
 * releases as BTN_* keys, wheel clicks as rel_z (+1 down, -1 up, as PV's
 * rel_z), and the position as an absolute position or, when the client was
 * told the pointer is relative (PointerTypeChange), biased deltas as motion.
 */
export class PointerMapper {
  private mask = 0;

  /** Set when the client acknowledged relative mode (it then sends biased deltas). */
  relativeDeltas = false;

  /** The input events for one PointerEvent(mask, x, y), clamped to the framebuffer. */
  map(mask: number, x: number, y: number, width: number, height: number): InputEvent[] {
    const out: InputEvent[] = [];
    const changed = mask ^ this.mask;
    let dz = 0;
    if (mask & WHEEL_UP & changed) dz -= 1;
    if (mask & WHEEL_DOWN & changed) dz += 1;
    if (this.relativeDeltas) {
      const dx = x - REL_BIAS, dy = y - REL_BIAS;
      if (dx !== 0 || dy !== 0 || dz !== 0) out.push({ type: "motion", dx, dy, dz });
    } else {
      out.push({
        type: "position",
        x: Math.min(Math.max(x, 0), Math.max(width - 1, 0)),
        y: Math.min(Math.max(y, 0), Math.max(height - 1, 0)),
        dz,
      });
    }
    for (const [bit, code] of BUTTONS) {
      if (changed & bit) out.push({ type: "key", code, down: (mask & bit) !== 0 });
    }
    this.mask = mask;
    return out;
  }

  /** Releases every button still down (the client went away). */
  release(): InputEvent[] {
    const out: InputEvent[] = [];
    for (const [bit, code] of BUTTONS) {
      if (this.mask & bit) out.push({ type: "key", code, down: false });
    }
    this.mask = 0;
    return out;
  }
}
