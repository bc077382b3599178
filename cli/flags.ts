/**
 * Command-line parsing: node:util's parseArgs behind one module so that a move
 * to `@std/cli` is one import-map line (`@rxfb/flags` in deno.json).
 */
import { parseArgs as nodeParseArgs } from "node:util";

export interface FlagSpec {
  readonly type: "string" | "boolean";
  readonly short?: string;
  readonly multiple?: boolean;
  readonly default?: string | boolean;
}

/** Parses `args` strictly: unknown flags and stray positionals throw a TypeError with a readable message. */
export function parseFlags<T extends Record<string, FlagSpec>>(
  args: string[],
  spec: T,
): Record<keyof T, string | boolean | string[] | undefined> {
  const { values } = nodeParseArgs({
    args,
    options: spec as any,
    strict: true,
    allowPositionals: false,
  });
  return values as any;
}
