/**
 * The vkbd shared page and its events, as xen/include/public/io/kbdif.h
 * defines them. tests/layout_test.ts checks every number here against the header.
 */

export const XENKBD_TYPE_MOTION = 1;
export const XENKBD_TYPE_RESERVED = 2;
export const XENKBD_TYPE_KEY = 3;
export const XENKBD_TYPE_POS = 4;
export const XENKBD_TYPE_MTOUCH = 5;

export const XENKBD_MT_EV_DOWN = 0;
export const XENKBD_MT_EV_UP = 1;
export const XENKBD_MT_EV_MOTION = 2;
export const XENKBD_MT_EV_SYN = 3;
export const XENKBD_MT_EV_SHAPE = 4;
export const XENKBD_MT_EV_ORIENT = 5;

export const XENKBD_EVENT_SIZE = 40;
export const XENKBD_IN_RING_SIZE = 2048;
export const XENKBD_IN_RING_OFFS = 1024;
export const XENKBD_IN_RING_LEN = Math.floor(XENKBD_IN_RING_SIZE / XENKBD_EVENT_SIZE); // 51
export const XENKBD_OUT_RING_SIZE = 1024;
export const XENKBD_OUT_RING_OFFS = XENKBD_IN_RING_OFFS + XENKBD_IN_RING_SIZE;
export const XENKBD_OUT_RING_LEN = Math.floor(XENKBD_OUT_RING_SIZE / XENKBD_EVENT_SIZE); // 25

/** struct xenkbd_page field offsets. */
export const XENKBD_PAGE = { in_cons: 0, in_prod: 4, out_cons: 8, out_prod: 12 } as const;
/** struct xenkbd_motion. */
export const XENKBD_MOTION = { type: 0, rel_x: 4, rel_y: 8, rel_z: 12 } as const;
/** struct xenkbd_key. */
export const XENKBD_KEY = { type: 0, pressed: 1, keycode: 4 } as const;
/** struct xenkbd_position. */
export const XENKBD_POSITION = { type: 0, abs_x: 4, abs_y: 8, rel_z: 12 } as const;
/** struct xenkbd_mtouch. */
export const XENKBD_MTOUCH = {
  type: 0,
  event_type: 1,
  contact_id: 2,
  abs_x: 8,
  abs_y: 12,
  major: 8,
  minor: 12,
  orientation: 8,
} as const;
