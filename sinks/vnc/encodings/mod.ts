/**
 * The encoders rxfb offers, by RFB encoding number. Each call of
 * {@link createEncoder} gives a new instance: one per client connection, since
 * encoders such as ZRLE keep per-connection zlib streams.
 *
 * ```ts
 * import { createEncoder } from "./mod.ts";
 * import { Encoding } from "../encoder.ts";
 * import { assertStrictEquals } from "@rxfb/assert";
 * assertStrictEquals(createEncoder(Encoding.ZRLE)?.encoding, Encoding.ZRLE);
 * assertStrictEquals(createEncoder(Encoding.CopyRect), undefined);
 * ```
 *
 * @module
 */
import { Encoding, type RectEncoder } from "../encoder.ts";
import { HextileEncoder } from "./hextile.ts";
import { RawEncoder } from "./raw.ts";
import { RREEncoder } from "./rre.ts";
import { TightEncoder, TightPNGEncoder } from "./tight.ts";
import { ZRLEEncoder } from "./zrle.ts";

export { HextileEncoder } from "./hextile.ts";
export { RawEncoder } from "./raw.ts";
export { RREEncoder } from "./rre.ts";
export { TightEncoder, TightPNGEncoder } from "./tight.ts";
export { ZRLEEncoder } from "./zrle.ts";

/** Makes a fresh encoder for one connection. */
export type EncoderFactory = () => RectEncoder;

/** The encoders by encoding number. */
export const ENCODERS: ReadonlyMap<number, EncoderFactory> = new Map<number, EncoderFactory>([
  [Encoding.Raw, () => new RawEncoder()],
  [Encoding.RRE, () => new RREEncoder()],
  [Encoding.Hextile, () => new HextileEncoder()],
  [Encoding.ZRLE, () => new ZRLEEncoder()],
  // ---- Tight (7) and TightPNG (-260) register here, from "./tight.ts": ----
  [Encoding.Tight, () => new TightEncoder()],
  [Encoding.TightPNG, () => new TightPNGEncoder()],
  // ---- end of Tight ----
]);

/** A new encoder for `encoding`, or undefined when rxfb does not implement it. */
export function createEncoder(encoding: number): RectEncoder | undefined {
  return ENCODERS.get(encoding)?.();
}
