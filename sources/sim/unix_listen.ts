/**
 * Listens on a UNIX socket at `path`, replacing a stale socket left there by
 * an earlier run; any other kind of file at `path` is refused.
 */
export function listenUnix(path: string): Deno.Listener<Deno.UnixConn, Deno.UnixAddr> {
  try {
    const st = Deno.lstatSync(path);
    if (!st.isSocket) throw new Error(`${path} exists and is not a socket`);
    Deno.removeSync(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return Deno.listen({ transport: "unix", path });
}
