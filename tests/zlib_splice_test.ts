import { assertEquals } from "@rxfb/assert";
import { concat } from "./client_rfb.ts";
import { createDeflate, createInflate, type ZlibBackend } from "../sinks/vnc/zlib.ts";

for (const backend of ["ffi", "pako"] as ZlibBackend[]) {
  Deno.test(`zlib (${backend}): raw sync-flushed pieces from separate streams splice into one zlib stream`, () => {
    const text = (s: string, n: number) => new TextEncoder().encode(s.repeat(n));
    const a = text("hello world ", 500),
      b = text("another piece ", 300),
      c = text("hello world ", 50);
    const s1 = createDeflate(1, { raw: true, backend }),
      s2 = createDeflate(6, { raw: true, backend });
    const pa = s1.deflate(a), pb = s2.deflate(b);
    s1.reset(); // c must not refer to a: the client's window holds b just before it
    const pc = s1.deflate(c);
    const inf = createInflate({ backend });
    // The stream's header (deflate, 32 KB window, fastest) is written once, by hand.
    const got = [
      inf.inflate(concat(Uint8Array.of(0x78, 0x01), pa)),
      inf.inflate(pb),
      inf.inflate(pc),
    ];
    assertEquals(got, [a, b, c]);
    for (const s of [s1, s2, inf]) s.close();
  });
}
