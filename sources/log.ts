/** Where the backend's messages go. Every line names the domain it concerns. */
export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
  /** A logger whose lines carry an extra prefix, e.g. "dom3 vfb/0". */
  child(prefix: string): Logger;
}

/** Logs to stderr as `rxfb: PREFIX: message`. */
export function consoleLogger(prefix = "rxfb", quiet = false): Logger {
  const line = (level: string, msg: string) => {
    if (quiet && level === "info") return;
    console.error(`${prefix}: ${level === "info" ? "" : level + ": "}${msg}`);
  };
  return {
    info: (m) => line("info", m),
    warn: (m) => line("warn", m),
    error: (m) => line("error", m),
    child: (p) => consoleLogger(`${prefix} ${p}`, quiet),
  };
}

/** Keeps lines in memory (tests read them). */
export function memoryLogger(lines: string[] = [], prefix = ""): Logger & { lines: string[] } {
  const add = (level: string) => (m: string) => lines.push(`${level} ${prefix}${m}`);
  return {
    lines,
    info: add("info"),
    warn: add("warn"),
    error: add("error"),
    child: (p) => memoryLogger(lines, `${prefix}${p}: `),
  };
}
