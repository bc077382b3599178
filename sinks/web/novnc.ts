/**
 * Where noVNC's files are: the npm package `@novnc/novnc`, fetched into
 * Deno's npm cache and served from there by rxfb itself.
 */
import { join } from "node:path";

/** The noVNC version rxfb's page is written against. */
export const NOVNC_VERSION = "1.7.0";

async function denoInfo(args: string[]): Promise<any> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`deno info failed: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/**
 * The directory holding noVNC's `core/` and `vendor/`. `RXFB_NOVNC_DIR`
 * overrides it (e.g. for a compiled rxfb); otherwise the package is fetched
 * into Deno's npm cache (`deno info` does that) and found there.
 */
export async function findNoVnc(): Promise<string> {
  const override = Deno.env.get("RXFB_NOVNC_DIR");
  const candidates: string[] = [];
  if (override) candidates.push(override);
  else {
    const spec = `npm:@novnc/novnc@${NOVNC_VERSION}`;
    await denoInfo([spec]); // caches the package
    const { npmCache } = await denoInfo([]);
    candidates.push(join(npmCache, "registry.npmjs.org", "@novnc", "novnc", NOVNC_VERSION));
  }
  for (const dir of candidates) {
    try {
      await Deno.stat(join(dir, "core", "rfb.js"));
      return dir;
    } catch {
      // not here
    }
  }
  throw new Error(
    `noVNC ${NOVNC_VERSION} not found (looked in ${candidates.join(", ")}); ` +
      `set RXFB_NOVNC_DIR to a directory holding noVNC's core/`,
  );
}
