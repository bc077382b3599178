/**
 * What the benchmark scripts share: their command line (with its usage text)
 * and a check that a port is free before a server is started on it.
 *
 * @module
 */
import { type FlagSpec, parseFlags } from "@rxfb/flags";

/** Parsed options, by flag name. */
export type ScriptOptions = Record<string, string | boolean | string[] | undefined>;

/**
 * Parses `args` by `spec`, dropping the "--" that `deno task NAME -- ...`
 * hands on. A mistake prints it with `usage` and exits with status 2;
 * `--help` prints `usage` and exits with status 0.
 */
export function scriptFlags(
  args: string[],
  spec: Record<string, FlagSpec>,
  usage: string,
): ScriptOptions {
  let opts: ScriptOptions;
  try {
    opts = parseFlags(args[0] === "--" ? args.slice(1) : args, spec);
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${usage}`);
    Deno.exit(2);
  }
  if (opts.help) {
    console.log(usage);
    Deno.exit(0);
  }
  return opts;
}

/** True when nothing listens on 127.0.0.1:`port` (we could listen there). */
export function portFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
}
