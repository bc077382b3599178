/** An axis-aligned rectangle in framebuffer pixels. `w` and `h` are >= 0. */
export interface Rect {
  readonly x: number;
  readonly y: number;
  readonly w: number;
  readonly h: number;
}

/** Makes a rectangle. */
export function rect(x: number, y: number, w: number, h: number): Rect {
  return { x, y, w, h };
}

/** True when the rectangle covers no pixel. */
export function isEmpty(r: Rect): boolean {
  return r.w <= 0 || r.h <= 0;
}

/** Number of pixels the rectangle covers. */
export function area(r: Rect): number {
  return isEmpty(r) ? 0 : r.w * r.h;
}

/** The common part of two rectangles, or undefined when they do not overlap. */
export function intersectRect(a: Rect, b: Rect): Rect | undefined {
  const x1 = Math.max(a.x, b.x), y1 = Math.max(a.y, b.y);
  const x2 = Math.min(a.x + a.w, b.x + b.w), y2 = Math.min(a.y + a.h, b.y + b.h);
  return x2 > x1 && y2 > y1 ? { x: x1, y: y1, w: x2 - x1, h: y2 - y1 } : undefined;
}

/** The smallest rectangle holding both. */
export function unionBox(a: Rect, b: Rect): Rect {
  const x1 = Math.min(a.x, b.x), y1 = Math.min(a.y, b.y);
  const x2 = Math.max(a.x + a.w, b.x + b.w), y2 = Math.max(a.y + a.h, b.y + b.h);
  return { x: x1, y: y1, w: x2 - x1, h: y2 - y1 };
}

/** True when `outer` holds every pixel of `inner`. */
export function containsRect(outer: Rect, inner: Rect): boolean {
  return inner.x >= outer.x && inner.y >= outer.y &&
    inner.x + inner.w <= outer.x + outer.w && inner.y + inner.h <= outer.y + outer.h;
}
