/**
 * Client pixel formats the encoder tests use beyond `pipeline/pixel_format.ts`'s.
 *
 * @module
 */
import type { PixelFormat } from "../pipeline/pixel_format.ts";

/** 32 bits of colour: ZRLE's CPIXEL stays 4 bytes. */
export const R11G11B10: PixelFormat = {
  bitsPerPixel: 32,
  depth: 32,
  bigEndian: false,
  trueColour: true,
  redMax: 2047,
  greenMax: 2047,
  blueMax: 1023,
  redShift: 21,
  greenShift: 10,
  blueShift: 0,
};
