/**
 * The free-running u32 ring indices of fbif.h/kbdif.h. Index words are read
 * and written with Atomics, which are sequentially consistent: they give the
 * rmb/wmb/mb ordering the headers ask for, both on SharedArrayBuffer memory
 * (simulator) and on mapped guest pages (real Xen).
 */

/** A u32 view on a shared page for its index words. */
export function indexView(page: Uint8Array): Uint32Array {
  return new Uint32Array(page.buffer, page.byteOffset, 4);
}

/** Loads an index word (byte offset 0, 4, 8 or 12). */
export function loadIndex(idx: Uint32Array, byteOffset: number): number {
  return Atomics.load(idx, byteOffset >> 2) >>> 0;
}

/** Stores an index word. */
export function storeIndex(idx: Uint32Array, byteOffset: number, value: number): void {
  Atomics.store(idx, byteOffset >> 2, value >>> 0);
}

/** How many slots lie between cons and prod, modulo 2^32. */
export function pending(prod: number, cons: number): number {
  return (prod - cons) >>> 0;
}

/** Byte offset of slot `idx` in a ring of `len` 40-byte events at `ringOffs`, with the header's u32 `%` arithmetic. */
export function slotOffset(ringOffs: number, len: number, idx: number, eventSize = 40): number {
  return ringOffs + ((idx >>> 0) % len) * eventSize;
}
