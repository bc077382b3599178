/** Where a VNC server listens: a host and a display number (port 5900 + display). */
export interface VncAddress {
  hostname: string;
  display: number;
}

/** The RFB base port: display N listens on 5900 + N. */
export const VNC_BASE_PORT = 5900;

/**
 * Parses qemu's `-vnc` address form: `HOST:DISPLAY`, `:DISPLAY`, `HOST`
 * (display = default) or `[v6addr]:DISPLAY`. Throws with a readable message.
 */
export function parseVncAddress(text: string, defaultDisplay: number): VncAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]*))(?::(\d+))?$/.exec(text);
  if (!m) throw new Error(`--vnc must be HOST:DISPLAY (e.g. 127.0.0.1:3), not "${text}"`);
  const hostname = m[1] ?? (m[2] || "127.0.0.1");
  const display = m[3] === undefined ? defaultDisplay : Number(m[3]);
  if (!Number.isInteger(display) || display < 0 || display > 65535 - VNC_BASE_PORT) {
    throw new Error(`VNC display ${m[3]} is out of range 0..${65535 - VNC_BASE_PORT}`);
  }
  return { hostname, display };
}

/**
 * Listens on the first display from `start` whose port is free (libxl's
 * vncunused), trying at most `tries` displays. Returns the display taken.
 */
export function firstFreeDisplay(
  listen: (port: number) => void,
  start: number,
  tries = 100,
): number {
  for (let d = start; d < start + tries && VNC_BASE_PORT + d <= 65535; d++) {
    try {
      listen(VNC_BASE_PORT + d);
      return d;
    } catch (e) {
      if (!(e instanceof Deno.errors.AddrInUse)) throw e;
    }
  }
  throw new Error(`no free VNC display in ${start}..${start + tries - 1}`);
}
