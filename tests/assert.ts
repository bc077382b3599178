/**
 * The project's assertions: node:assert/strict, behind one module so that a
 * move to `@std/assert` is one import-map line (`@rxfb/assert` in deno.json).
 */
export {
  deepEqual as assertEquals,
  equal as assertStrictEquals,
  notDeepEqual as assertNotEquals,
  ok as assert,
  rejects as assertRejects,
  throws as assertThrows,
} from "node:assert/strict";
