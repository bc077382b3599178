import type { PixelFormat } from "../../pipeline/pixel_format.ts";

/** Writes RFB's 16-byte PIXEL_FORMAT. */
export function encodePixelFormat(pf: PixelFormat): Uint8Array {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  b[0] = pf.bitsPerPixel;
  b[1] = pf.depth;
  b[2] = pf.bigEndian ? 1 : 0;
  b[3] = pf.trueColour ? 1 : 0;
  dv.setUint16(4, pf.redMax);
  dv.setUint16(6, pf.greenMax);
  dv.setUint16(8, pf.blueMax);
  b[10] = pf.redShift;
  b[11] = pf.greenShift;
  b[12] = pf.blueShift;
  return b;
}

/** Reads RFB's 16-byte PIXEL_FORMAT (no validation; see {@link checkClientFormat}). */
export function decodePixelFormat(b: Uint8Array): PixelFormat {
  const dv = new DataView(b.buffer, b.byteOffset, 16);
  return {
    bitsPerPixel: b[0],
    depth: b[1],
    bigEndian: b[2] !== 0,
    trueColour: b[3] !== 0,
    redMax: dv.getUint16(4),
    greenMax: dv.getUint16(6),
    blueMax: dv.getUint16(8),
    redShift: b[10],
    greenShift: b[11],
    blueShift: b[12],
  };
}

function bitLength(max: number): number {
  return max === 0 ? 0 : 32 - Math.clz32(max);
}

/**
 * Why a client's SetPixelFormat cannot be served, or undefined when it can.
 * Guards against the crafted formats of CVE-2014-7815 / CVE-2015-8504:
 * bits per pixel must be 8, 16 or 32, and every channel must fit in it.
 */
export function checkClientFormat(pf: PixelFormat): string | undefined {
  if (![8, 16, 32].includes(pf.bitsPerPixel)) {
    return `bits per pixel ${pf.bitsPerPixel} (must be 8, 16 or 32)`;
  }
  if (!pf.trueColour) return pf.bitsPerPixel === 8 ? undefined : "colour map at more than 8 bpp";
  for (
    const [name, max, shift] of [
      ["red", pf.redMax, pf.redShift],
      ["green", pf.greenMax, pf.greenShift],
      ["blue", pf.blueMax, pf.blueShift],
    ] as const
  ) {
    if (max === 0) return `${name} max 0`;
    if ((max & (max + 1)) !== 0) return `${name} max ${max} is not 2^n-1`;
    if (shift + bitLength(max) > pf.bitsPerPixel) {
      return `${name} channel (max ${max}, shift ${shift}) does not fit ${pf.bitsPerPixel} bits`;
    }
  }
  return undefined;
}
