/**
 * The vfb shared page and its events, as xen/include/public/io/fbif.h defines
 * them. tests/layout_test.ts checks every number here against the real header.
 */

export const XENFB_TYPE_UPDATE = 2;
export const XENFB_TYPE_RESIZE = 3;
export const XENFB_TYPE_REFRESH_PERIOD = 1;
export const XENFB_NO_REFRESH = 0;

/** Every event is a 40-byte union slot (`XENFB_*_EVENT_SIZE`). */
export const XENFB_EVENT_SIZE = 40;
export const XENFB_IN_RING_SIZE = 1024;
export const XENFB_IN_RING_OFFS = 1024;
export const XENFB_IN_RING_LEN = Math.floor(XENFB_IN_RING_SIZE / XENFB_EVENT_SIZE); // 25
export const XENFB_OUT_RING_SIZE = 2048;
export const XENFB_OUT_RING_OFFS = XENFB_IN_RING_OFFS + XENFB_IN_RING_SIZE;
export const XENFB_OUT_RING_LEN = Math.floor(XENFB_OUT_RING_SIZE / XENFB_EVENT_SIZE); // 51

/** struct xenfb_page field offsets. */
export const XENFB_PAGE = {
  in_cons: 0,
  in_prod: 4,
  out_cons: 8,
  out_prod: 12,
  width: 16,
  height: 20,
  line_length: 24,
  mem_length: 28,
  depth: 32,
  /** `pd[]` on a 64-bit ABI (8-byte entries). */
  pd64: 40,
  /** `pd[]` on a 32-bit ABI (4-byte entries). */
  pd32: 36,
  /** Declared length of `pd[]`. */
  pdLen: 256,
} as const;

/** struct xenfb_update field offsets. */
export const XENFB_UPDATE = { type: 0, x: 4, y: 8, width: 12, height: 16 } as const;
/** struct xenfb_resize field offsets. */
export const XENFB_RESIZE = {
  type: 0,
  width: 4,
  height: 8,
  stride: 12,
  depth: 16,
  offset: 20,
} as const;
/** struct xenfb_refresh_period field offsets. */
export const XENFB_REFRESH_PERIOD = { type: 0, period: 4 } as const;

/** The `pd[]` entry width for a frontend's `protocol` key (xen/io/protocols.h). */
export function pdEntryBytes(protocol: string | undefined): 4 | 8 {
  return protocol === "x86_32-abi" ? 4 : 8;
}

/**
 * How many `pd[]` entries lie before the IN ring, the most a backend may read:
 * the declared 256 entries overlap the rings (PV-PROTOCOL.md §1.1).
 */
export function usablePdEntries(entryBytes: 4 | 8): number {
  const start = entryBytes === 8 ? XENFB_PAGE.pd64 : XENFB_PAGE.pd32;
  return Math.min(XENFB_PAGE.pdLen, Math.floor((XENFB_IN_RING_OFFS - start) / entryBytes));
}
