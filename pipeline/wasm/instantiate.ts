/**
 * Loading a kernel of this folder from the base64 bytes its generated `NAME.ts` holds:
 * synchronously, so that each thread (the main one, every encoding worker) has its own
 * instance the moment it first needs one.
 *
 * @module
 */

function decode(b64: string): Uint8Array<ArrayBuffer> {
  const s = atob(b64);
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);
  return b;
}

/**
 * The exports of a new instance of the module in `b64`, or undefined where this
 * runtime has no WebAssembly or cannot validate the module (no SIMD, no relaxed SIMD).
 */
export function instantiate<T>(b64: string): T | undefined {
  if (typeof WebAssembly !== "object") return undefined;
  const bytes = decode(b64);
  if (!WebAssembly.validate(bytes)) return undefined;
  return new WebAssembly.Instance(new WebAssembly.Module(bytes)).exports as unknown as T;
}

/** `memory` as bytes, grown to at least `size` first; `view` is reused while still current. */
export function memoryView(
  memory: WebAssembly.Memory,
  size: number,
  view?: Uint8Array,
): Uint8Array {
  const have = memory.buffer.byteLength;
  if (have < size) memory.grow(Math.ceil((size - have) / 65536));
  return view?.buffer === memory.buffer ? view : new Uint8Array(memory.buffer);
}
