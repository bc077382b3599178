import { PAGE_SIZE } from "../platform.ts";
import {
  XENFB_EVENT_SIZE,
  XENFB_OUT_RING_LEN,
  XENFB_OUT_RING_OFFS,
  XENFB_PAGE,
  XENFB_RESIZE,
  XENFB_TYPE_RESIZE,
  XENFB_TYPE_UPDATE,
  XENFB_UPDATE,
} from "./fbif.ts";
import { indexView, loadIndex, pending, slotOffset, storeIndex } from "./ring.ts";

/** A framebuffer's geometry inside its mapping, after validation. */
export interface FbGeometry {
  readonly width: number;
  readonly height: number;
  readonly stride: number;
  readonly depth: number;
  /** Byte offset of pixel (0, 0) in the mapping. */
  readonly offset: number;
}

/**
 * Validates a geometry the guest asked for against the bytes actually mapped,
 * as QEMU's xenfb_configure_fb does (CVE-2008-1943): depth must be 8/16/24/32,
 * the stride and offset must lie inside the framebuffer, width is clamped to
 * the stride and height to the rows that fit. Returns a reason string when
 * the geometry is refused.
 */
export function configureFb(
  fbLen: number,
  width: number,
  height: number,
  depth: number,
  stride: number,
  offset: number,
): FbGeometry | string {
  if (![8, 16, 24, 32].includes(depth)) return `unsupported depth ${depth}`;
  if (!Number.isInteger(stride) || stride <= 0 || stride > fbLen) {
    return `line length ${stride} outside 1..${fbLen}`;
  }
  if (!Number.isInteger(offset) || offset < 0 || offset >= fbLen) {
    return `offset ${offset} outside 0..${fbLen - 1}`;
  }
  const bpp = depth / 8;
  let w = Math.min(Math.max(width | 0, 0), Math.floor(stride / bpp));
  let h = Math.min(Math.max(height | 0, 0), Math.floor((fbLen - offset) / stride));
  // A last row shorter than the stride still fits when its pixels do.
  const rest = fbLen - offset - h * stride;
  if (h < Math.max(height | 0, 0) && rest >= w * bpp) h++;
  if (w === 0 || h === 0) return `empty framebuffer ${width}x${height}`;
  w = Math.min(w, 65535);
  h = Math.min(h, 65535);
  return { width: w, height: h, stride, depth, offset };
}

/** The header fields of a vfb shared page, read once. */
export interface FbPageHeader {
  width: number;
  height: number;
  lineLength: number;
  memLength: number;
  depth: number;
}

/** Reads the header fields of a `struct xenfb_page` (one copy; the guest may change them later). */
export function readFbPageHeader(page: Uint8Array): FbPageHeader {
  const dv = new DataView(page.buffer, page.byteOffset, PAGE_SIZE);
  return {
    width: dv.getInt32(XENFB_PAGE.width, true),
    height: dv.getInt32(XENFB_PAGE.height, true),
    lineLength: dv.getUint32(XENFB_PAGE.line_length, true),
    memLength: dv.getUint32(XENFB_PAGE.mem_length, true),
    depth: dv.getUint8(XENFB_PAGE.depth),
  };
}

/** Reads `count` entries of a page of frame numbers (`pd[]` or a directory page), 4 or 8 bytes each. */
export function readFrameNumbers(
  page: Uint8Array,
  start: number,
  count: number,
  entryBytes: 4 | 8,
): number[] {
  const dv = new DataView(page.buffer, page.byteOffset, page.byteLength);
  const out: number[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const at = start + i * entryBytes;
    out[i] = entryBytes === 4
      ? dv.getUint32(at, true)
      : dv.getUint32(at, true) + dv.getUint32(at + 4, true) * 0x1_0000_0000;
  }
  return out;
}

/** An event from the vfb OUT ring, decoded from one copy of its slot. */
export type FbOutEvent =
  | { type: "update"; x: number; y: number; w: number; h: number }
  | {
    type: "resize";
    width: number;
    height: number;
    stride: number;
    depth: number;
    offset: number;
  }
  | { type: "unknown"; code: number };

/**
 * Takes every event the frontend produced on the OUT ring and advances
 * `out_cons`. Returns the reason instead when `out_prod` runs ahead of
 * `out_cons` by more than the ring (a hostile or broken guest): nothing is
 * read then. Each slot is copied once, so the guest cannot change an event
 * between its checks and its use.
 */
export function takeOutEvents(page: Uint8Array): FbOutEvent[] | string {
  const idx = indexView(page);
  const prod = loadIndex(idx, XENFB_PAGE.out_prod);
  const cons = loadIndex(idx, XENFB_PAGE.out_cons);
  const n = pending(prod, cons);
  if (n > XENFB_OUT_RING_LEN) {
    return `out ring producer ${prod} runs ${n} events ahead of consumer ${cons} (ring holds ${XENFB_OUT_RING_LEN})`;
  }
  const events: FbOutEvent[] = [];
  const slot = new Uint8Array(XENFB_EVENT_SIZE);
  const dv = new DataView(slot.buffer);
  for (let i = 0; i < n; i++) {
    const at = slotOffset(XENFB_OUT_RING_OFFS, XENFB_OUT_RING_LEN, cons + i);
    slot.set(page.subarray(at, at + XENFB_EVENT_SIZE));
    const type = slot[0];
    if (type === XENFB_TYPE_UPDATE) {
      events.push({
        type: "update",
        x: dv.getInt32(XENFB_UPDATE.x, true),
        y: dv.getInt32(XENFB_UPDATE.y, true),
        w: dv.getInt32(XENFB_UPDATE.width, true),
        h: dv.getInt32(XENFB_UPDATE.height, true),
      });
    } else if (type === XENFB_TYPE_RESIZE) {
      events.push({
        type: "resize",
        width: dv.getInt32(XENFB_RESIZE.width, true),
        height: dv.getInt32(XENFB_RESIZE.height, true),
        stride: dv.getInt32(XENFB_RESIZE.stride, true),
        depth: dv.getInt32(XENFB_RESIZE.depth, true),
        offset: dv.getInt32(XENFB_RESIZE.offset, true),
      });
    } else {
      events.push({ type: "unknown", code: type });
    }
  }
  storeIndex(idx, XENFB_PAGE.out_cons, prod);
  return events;
}

/**
 * Clips an UPDATE rectangle to the framebuffer. Returns undefined for a
 * rectangle with nothing inside (negative or zero size, or wholly outside).
 * Sums are computed in doubles, so no i32 overflow can wrap a check.
 */
export function clipUpdate(
  e: { x: number; y: number; w: number; h: number },
  width: number,
  height: number,
): { x: number; y: number; w: number; h: number } | undefined {
  if (e.w <= 0 || e.h <= 0) return undefined;
  const x1 = Math.max(0, e.x), y1 = Math.max(0, e.y);
  const x2 = Math.min(width, e.x + e.w), y2 = Math.min(height, e.y + e.h);
  if (x2 <= x1 || y2 <= y1) return undefined;
  return { x: x1, y: y1, w: x2 - x1, h: y2 - y1 };
}
