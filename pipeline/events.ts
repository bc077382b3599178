import type { Framebuffer } from "./framebuffer.ts";
import type { Rect } from "./rect.ts";

/** The guest's display changed size or format; the whole new framebuffer is to be shown. */
export interface ResizeEvent {
  readonly type: "resize";
  readonly fb: Framebuffer;
}

/** Pixels inside these rectangles (clipped to the current framebuffer) changed. */
export interface DamageEvent {
  readonly type: "damage";
  readonly rects: readonly Rect[];
}

/** What a display source emits. A display source starts with a resize. */
export type DisplayEvent = ResizeEvent | DamageEvent;

/** A key (Linux evdev `KEY_*`) or a pointer button (`BTN_*`) went down or up. */
export interface KeyInput {
  readonly type: "key";
  readonly code: number;
  readonly down: boolean;
}

/** Relative pointer motion; `dz` is the wheel (positive scrolls down, as PV `rel_z`). */
export interface MotionInput {
  readonly type: "motion";
  readonly dx: number;
  readonly dy: number;
  readonly dz?: number;
}

/** Absolute pointer position in framebuffer pixels; `dz` is the wheel. */
export interface PositionInput {
  readonly type: "position";
  readonly x: number;
  readonly y: number;
  readonly dz?: number;
}

/** What a viewer sends towards the guest. */
export type InputEvent = KeyInput | MotionInput | PositionInput;

/** Linux evdev button codes (linux/input-event-codes.h). */
export const BTN_LEFT = 0x110;
export const BTN_RIGHT = 0x111;
export const BTN_MIDDLE = 0x112;
