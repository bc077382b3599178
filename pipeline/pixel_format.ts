/**
 * RFB's PIXEL_FORMAT (RFC 6143 §7.4): how a pixel's bits hold red, green and blue.
 * The PV framebuffer's depths are expressed in it (see {@link pvFormat}).
 */
export interface PixelFormat {
  /** 8, 16, 24 or 32. 24 (packed three bytes) occurs only as a PV guest format, never on the wire. */
  readonly bitsPerPixel: number;
  readonly depth: number;
  readonly bigEndian: boolean;
  readonly trueColour: boolean;
  readonly redMax: number;
  readonly greenMax: number;
  readonly blueMax: number;
  readonly redShift: number;
  readonly greenShift: number;
  readonly blueShift: number;
}

/** 32 bpp little-endian 0x00RRGGBB: the PV framebuffer's 32-bit layout (bytes B, G, R, 0). */
export const XRGB8888: PixelFormat = {
  bitsPerPixel: 32,
  depth: 24,
  bigEndian: false,
  trueColour: true,
  redMax: 255,
  greenMax: 255,
  blueMax: 255,
  redShift: 16,
  greenShift: 8,
  blueShift: 0,
};

/** Packed 24 bpp, bytes B, G, R (PV depth 24). */
export const RGB888: PixelFormat = { ...XRGB8888, bitsPerPixel: 24 };

/** 16 bpp little-endian RGB565 (PV depth 16). */
export const RGB565: PixelFormat = {
  bitsPerPixel: 16,
  depth: 16,
  bigEndian: false,
  trueColour: true,
  redMax: 31,
  greenMax: 63,
  blueMax: 31,
  redShift: 11,
  greenShift: 5,
  blueShift: 0,
};

/** 8 bpp RGB332 (PV depth 8, as QEMU's xenfb treats it). */
export const RGB332: PixelFormat = {
  bitsPerPixel: 8,
  depth: 8,
  bigEndian: false,
  trueColour: true,
  redMax: 7,
  greenMax: 7,
  blueMax: 3,
  redShift: 5,
  greenShift: 2,
  blueShift: 0,
};

/** 8 bpp BGR233, the format TigerVNC asks for at its lowest colour level. */
export const BGR233: PixelFormat = {
  bitsPerPixel: 8,
  depth: 8,
  bigEndian: false,
  trueColour: true,
  redMax: 7,
  greenMax: 7,
  blueMax: 3,
  redShift: 0,
  greenShift: 3,
  blueShift: 6,
};

/** The pixel format of a PV framebuffer of the given depth, or undefined if unsupported. */
export function pvFormat(depth: number): PixelFormat | undefined {
  switch (depth) {
    case 8:
      return RGB332;
    case 16:
      return RGB565;
    case 24:
      return RGB888;
    case 32:
      return XRGB8888;
    default:
      return undefined;
  }
}

/** Bytes one pixel takes. */
export function bytesPerPixel(f: PixelFormat): number {
  return f.bitsPerPixel >> 3;
}

/** True when two formats put the same bits in the same bytes (the fields that matter for pixels). */
export function sameFormat(a: PixelFormat, b: PixelFormat): boolean {
  return a.bitsPerPixel === b.bitsPerPixel && a.trueColour === b.trueColour &&
    (a.bitsPerPixel === 8 || a.bigEndian === b.bigEndian) &&
    a.redMax === b.redMax && a.greenMax === b.greenMax && a.blueMax === b.blueMax &&
    a.redShift === b.redShift && a.greenShift === b.greenShift && a.blueShift === b.blueShift;
}

/** True on a little-endian host (typed arrays use the host's byte order). */
export const HOST_LE: boolean = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;
