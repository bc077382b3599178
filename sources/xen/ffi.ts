/**
 * Deno FFI bindings to Xen's stable userspace libraries, as Debian ships them:
 * libxenevtchn (event channels, /dev/xen/evtchn), libxenforeignmemory (guest
 * frames by number, /dev/xen/privcmd) and libxengnttab (grant references,
 * /dev/xen/gntdev); plus the few libc calls needed around them (errno, poll).
 *
 * The signatures are those of the headers in Debian's libxen-dev (Xen 4.17):
 * xenevtchn.h, xenforeignmemory.h, xengnttab.h. `xen_pfn_t` is an unsigned
 * long, so frames are passed as a BigUint64Array on 64-bit hosts.
 *
 * Every failure becomes a {@link XenError} whose message is one line naming
 * what is missing and what to do (the CLI prints it after "rxfb: ").
 *
 * The libraries are given a logger of ours (a xentoollog_logger whose
 * callbacks are JavaScript), so that they never print to stderr themselves:
 * what they would have said is kept in {@link XenError.libraryLog}.
 */

/** The three Xen libraries this backend uses. */
export type XenLibraryName = "evtchn" | "foreignmemory" | "gnttab";

/** mmap(2) protections, as xenforeignmemory_map and xengnttab_map_grant_ref take them. */
export const PROT_READ = 1;
export const PROT_WRITE = 2;

/** libxenevtchn: event channels (xenevtchn.h). */
export const EVTCHN_SYMBOLS = {
  /** xenevtchn_handle *xenevtchn_open(xentoollog_logger *logger, unsigned int flags) */
  xenevtchn_open: { parameters: ["pointer", "u32"], result: "pointer" },
  /** xenevtchn_handle *xenevtchn_fdopen(xentoollog_logger *logger, int fd, unsigned open_flags) (Xen 4.16+) */
  xenevtchn_fdopen: {
    parameters: ["pointer", "i32", "u32"],
    result: "pointer",
    optional: true,
  },
  /** int xenevtchn_close(xenevtchn_handle *xce) */
  xenevtchn_close: { parameters: ["pointer"], result: "i32" },
  /** int xenevtchn_fd(xenevtchn_handle *xce) */
  xenevtchn_fd: { parameters: ["pointer"], result: "i32" },
  /** xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xce, uint32_t domid, evtchn_port_t remote_port) */
  xenevtchn_bind_interdomain: {
    parameters: ["pointer", "u32", "u32"],
    result: "i32",
  },
  /** int xenevtchn_notify(xenevtchn_handle *xce, evtchn_port_t port) */
  xenevtchn_notify: { parameters: ["pointer", "u32"], result: "i32" },
  /** xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle *xce): blocks until a port is pending */
  xenevtchn_pending: { parameters: ["pointer"], result: "i32" },
  /** int xenevtchn_unmask(xenevtchn_handle *xce, evtchn_port_t port) */
  xenevtchn_unmask: { parameters: ["pointer", "u32"], result: "i32" },
  /** int xenevtchn_unbind(xenevtchn_handle *xce, evtchn_port_t port) */
  xenevtchn_unbind: { parameters: ["pointer", "u32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** libxenforeignmemory: guest frames by number (xenforeignmemory.h). */
export const FOREIGNMEMORY_SYMBOLS = {
  /** xenforeignmemory_handle *xenforeignmemory_open(xentoollog_logger *logger, unsigned open_flags) */
  xenforeignmemory_open: { parameters: ["pointer", "u32"], result: "pointer" },
  /** int xenforeignmemory_close(xenforeignmemory_handle *fmem) */
  xenforeignmemory_close: { parameters: ["pointer"], result: "i32" },
  /**
   * void *xenforeignmemory_map(fmem, uint32_t dom, int prot, size_t pages,
   *                            const xen_pfn_t arr[pages], int err[pages])
   */
  xenforeignmemory_map: {
    parameters: ["pointer", "u32", "i32", "usize", "buffer", "buffer"],
    result: "pointer",
  },
  /** int xenforeignmemory_unmap(xenforeignmemory_handle *fmem, void *addr, size_t pages) */
  xenforeignmemory_unmap: {
    parameters: ["pointer", "pointer", "usize"],
    result: "i32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

/** libxengnttab: grant references (xengnttab.h). */
export const GNTTAB_SYMBOLS = {
  /** xengnttab_handle *xengnttab_open(xentoollog_logger *logger, unsigned open_flags) */
  xengnttab_open: { parameters: ["pointer", "u32"], result: "pointer" },
  /** int xengnttab_close(xengnttab_handle *xgt) */
  xengnttab_close: { parameters: ["pointer"], result: "i32" },
  /** void *xengnttab_map_grant_ref(xengnttab_handle *xgt, uint32_t domid, uint32_t ref, int prot) */
  xengnttab_map_grant_ref: {
    parameters: ["pointer", "u32", "u32", "i32"],
    result: "pointer",
  },
  /** int xengnttab_unmap(xengnttab_handle *xgt, void *start_address, uint32_t count) */
  xengnttab_unmap: { parameters: ["pointer", "pointer", "u32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** libc: errno, strerror, the logger's formatting, and poll(2) for waiting on /dev/xen/evtchn. */
export const LIBC_SYMBOLS = {
  /** int *__errno_location(void): this thread's errno */
  __errno_location: { parameters: [], result: "pointer" },
  /** char *strerror(int errnum) */
  strerror: { parameters: ["i32"], result: "pointer" },
  /** int vsnprintf(char *str, size_t size, const char *format, va_list ap) */
  vsnprintf: { parameters: ["buffer", "usize", "pointer", "pointer"], result: "i32" },
  /** int poll(struct pollfd *fds, nfds_t nfds, int timeout), on a worker thread: may block */
  poll_wait: {
    name: "poll",
    parameters: ["pointer", "usize", "i32"],
    result: "i32",
    nonblocking: true,
  },
  /** int poll(struct pollfd *fds, nfds_t nfds, int timeout), on this thread: use timeout 0 only */
  poll: { parameters: ["buffer", "usize", "i32"], result: "i32" },
  /** int pipe2(int pipefd[2], int flags) */
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  /** ssize_t read(int fd, void *buf, size_t count) */
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  /** ssize_t write(int fd, const void *buf, size_t count) */
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  /** int close(int fd) */
  close: { parameters: ["i32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

interface SymbolTables {
  evtchn: typeof EVTCHN_SYMBOLS;
  foreignmemory: typeof FOREIGNMEMORY_SYMBOLS;
  gnttab: typeof GNTTAB_SYMBOLS;
}

/** The loaded symbols of one Xen library. */
export type XenLib<N extends XenLibraryName> = Deno.DynamicLibrary<SymbolTables[N]>["symbols"];
export type EvtchnLib = XenLib<"evtchn">;
export type ForeignMemoryLib = XenLib<"foreignmemory">;
export type GnttabLib = XenLib<"gnttab">;
export type LibcLib = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];

/** What each library is, where Debian ships it, and the device node it opens. */
export const XEN_LIBRARIES: {
  readonly [N in XenLibraryName]: {
    readonly soname: string;
    readonly unversioned: string;
    readonly debianPackage: string;
    readonly symbols: SymbolTables[N];
    readonly openFunction: string;
    /** The device node(s) its open function needs, as the hint names them. */
    readonly node: string;
    readonly kernelModule: string;
  };
} = {
  evtchn: {
    soname: "libxenevtchn.so.1",
    unversioned: "libxenevtchn.so",
    debianPackage: "libxenevtchn1",
    symbols: EVTCHN_SYMBOLS,
    openFunction: "xenevtchn_open",
    node: "/dev/xen/evtchn",
    kernelModule: "xen-evtchn",
  },
  foreignmemory: {
    soname: "libxenforeignmemory.so.1",
    unversioned: "libxenforeignmemory.so",
    debianPackage: "libxenforeignmemory1",
    symbols: FOREIGNMEMORY_SYMBOLS,
    openFunction: "xenforeignmemory_open",
    node: "/dev/xen/privcmd",
    kernelModule: "xen-privcmd",
  },
  gnttab: {
    soname: "libxengnttab.so.1",
    unversioned: "libxengnttab.so",
    debianPackage: "libxengnttab1",
    symbols: GNTTAB_SYMBOLS,
    openFunction: "xengnttab_open",
    node: "/dev/xen/gntdev",
    kernelModule: "xen-gntdev",
  },
};

/** Options for finding the libraries (tests point them at files that do not exist). */
export interface XenLibraryOptions {
  /** Files to dlopen per library, tried in order, instead of the soname and then the unversioned name. */
  readonly libraryPaths?: Partial<Record<XenLibraryName, readonly string[]>>;
}

/** A Xen operation that failed; the message is one line saying what is missing and what to do. */
export class XenError extends Error {
  override name = "XenError";
  constructor(
    message: string,
    /** The errno name (ENOENT, EACCES, ...), when a call failed with one. */
    readonly errno?: string,
    /** What the Xen library logged during the failed call (it prints nothing itself). */
    readonly libraryLog: readonly string[] = [],
  ) {
    super(message);
  }
}

/** The one line for a library that is not installed. */
export function missingLibraryLine(name: XenLibraryName): string {
  const l = XEN_LIBRARIES[name];
  return `${l.soname} not found: install Debian's ${l.debianPackage} (apt-get install ${l.debianPackage})`;
}

// ---------------------------------------------------------------------------
// libc, errno

let libcLib: LibcLib | null | undefined;

/** libc's symbols, or null when libc.so.6 cannot be opened (then errno reads as unknown). */
export function libc(): LibcLib | null {
  if (libcLib === undefined) {
    try {
      libcLib = Deno.dlopen("libc.so.6", LIBC_SYMBOLS).symbols;
    } catch {
      libcLib = null;
    }
  }
  return libcLib;
}

/** libc's symbols; throws one line when libc.so.6 cannot be opened. */
export function requireLibc(): LibcLib {
  const c = libc();
  if (!c) throw new XenError("libc.so.6 could not be opened: rxfb's Xen support needs glibc");
  return c;
}

/** This thread's errno; read it right after the failed call. 0 when unknown. */
export function errno(): number {
  const c = libc();
  const p = c?.__errno_location();
  return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
}

function setErrno(value: number): void {
  const p = libc()?.__errno_location();
  if (p) new Int32Array(Deno.UnsafePointerView.getArrayBuffer(p, 4))[0] = value;
}

/** Linux errno numbers (the same on x86_64 and arm64) by name. */
const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  6: "ENXIO",
  7: "E2BIG",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  22: "EINVAL",
  23: "ENFILE",
  24: "EMFILE",
  25: "ENOTTY",
  27: "EFBIG",
  28: "ENOSPC",
  38: "ENOSYS",
  61: "ENODATA",
  75: "EOVERFLOW",
  95: "EOPNOTSUPP",
  110: "ETIMEDOUT",
};

/** "ENOENT" for 2; "errno 99" for a number without a name here; "errno unknown" for 0. */
export function errnoName(n: number): string {
  if (!n) return "errno unknown";
  return ERRNO_NAMES[n] ?? `errno ${n}`;
}

/** libc's text for an errno ("No such file or directory"). */
export function strerror(n: number): string {
  const c = libc();
  const p = c?.strerror(n);
  return p ? Deno.UnsafePointerView.getCString(p) : `error ${n}`;
}

/** "ENOENT (No such file or directory)". */
export function describeErrno(n: number): string {
  return n ? `${errnoName(n)} (${strerror(n)})` : "errno unknown";
}

// ---------------------------------------------------------------------------
// The logger handed to the libraries

/** xentoollog levels (xentoollog.h): only WARN and worse are kept. */
const XTL_WARN = 7;
const MAX_KEPT = 8;

const libraryMessages: string[] = [];
/** The struct handed to the libraries, and the callbacks it points to (kept alive here). */
let ourLogger: { struct: BigUint64Array; callbacks: { pointer: Deno.PointerObject }[] } | undefined;

/**
 * A `struct xentoollog_logger { vmessage, progress, destroy }` whose vmessage
 * formats the message with vsnprintf and keeps it; or null (the library's own
 * stderr logger) when libc is missing. It keeps errno as the library left it.
 */
export function xenLogger(): Deno.PointerValue {
  const c = libc();
  if (!c) return null;
  if (!ourLogger) {
    const vmessage = new Deno.UnsafeCallback(
      {
        parameters: ["pointer", "i32", "i32", "pointer", "pointer", "pointer"],
        result: "void",
      } as const,
      (_logger, level, errnoval, context, format, args) => {
        const saved = errno();
        try {
          if (level < XTL_WARN || !format) return;
          const buf = new Uint8Array(new ArrayBuffer(512));
          c.vsnprintf(buf, BigInt(buf.length - 1), format, args);
          const end = buf.indexOf(0);
          let msg = new TextDecoder().decode(buf.subarray(0, end < 0 ? buf.length : end));
          if (errnoval >= 0) msg += `: ${strerror(errnoval)}`;
          const ctx = context ? Deno.UnsafePointerView.getCString(context) : "";
          libraryMessages.push(ctx ? `${ctx}: ${msg}` : msg);
          if (libraryMessages.length > MAX_KEPT) libraryMessages.shift();
        } catch {
          // a logger must not fail the call it reports on
        } finally {
          setErrno(saved);
        }
      },
    );
    const progress = new Deno.UnsafeCallback(
      {
        parameters: ["pointer", "pointer", "pointer", "i32", "u64", "u64"],
        result: "void",
      } as const,
      () => {},
    );
    const destroy = new Deno.UnsafeCallback(
      { parameters: ["pointer"], result: "void" } as const,
      () => {},
    );
    const callbacks = [vmessage, progress, destroy];
    const struct = new BigUint64Array(new ArrayBuffer(8 * callbacks.length));
    callbacks.forEach((cb, i) => struct[i] = BigInt(Deno.UnsafePointer.value(cb.pointer)));
    ourLogger = { struct, callbacks };
  }
  return Deno.UnsafePointer.of(ourLogger!.struct);
}

/** Forgets what the libraries logged so far (call before the call whose log you want). */
export function clearLibraryLog(): void {
  libraryMessages.length = 0;
}

/** What the libraries logged since the last clear. */
export function takeLibraryLog(): string[] {
  return libraryMessages.splice(0);
}

/** ` [xenforeignmemory: ...; ...]` from the library log, or "" when it said nothing. */
export function libraryLogSuffix(log: readonly string[]): string {
  return log.length ? ` [${log.join("; ")}]` : "";
}

// ---------------------------------------------------------------------------
// Loading

const loaded = new Map<XenLibraryName, Deno.DynamicLibrary<Deno.ForeignLibraryInterface>>();

function candidates(name: XenLibraryName, opts?: XenLibraryOptions): readonly string[] {
  const l = XEN_LIBRARIES[name];
  return opts?.libraryPaths?.[name] ?? [l.soname, l.unversioned];
}

/**
 * dlopens one Xen library with its declared signatures (every symbol must
 * resolve). The default files are loaded once and kept; files named in
 * `opts.libraryPaths` are opened anew. Throws a one-line XenError: the
 * apt-get line when no file opens, or which symbol is missing.
 */
export function loadXenLibrary<N extends XenLibraryName>(
  name: N,
  opts?: XenLibraryOptions,
): Deno.DynamicLibrary<SymbolTables[N]> {
  const custom = opts?.libraryPaths?.[name] !== undefined;
  if (!custom) {
    const lib = loaded.get(name);
    if (lib) return lib as unknown as Deno.DynamicLibrary<SymbolTables[N]>;
  }
  const l = XEN_LIBRARIES[name];
  let symbolProblem: string | undefined;
  for (const path of candidates(name, opts)) {
    try {
      const lib = Deno.dlopen(path, l.symbols as SymbolTables[N]);
      if (!custom) {
        loaded.set(name, lib as unknown as Deno.DynamicLibrary<Deno.ForeignLibraryInterface>);
      }
      return lib;
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      const sym = /Failed to register symbol (\w+)/.exec(msg);
      if (sym && !symbolProblem) {
        symbolProblem = `${path} lacks ${sym[1]} (not ${l.soname}, or too old): install ` +
          `Debian's ${l.debianPackage} (apt-get install ${l.debianPackage})`;
      }
    }
  }
  throw new XenError(symbolProblem ?? missingLibraryLine(name));
}

/** The file a loaded library came from, as /proc/self/maps shows it. */
function loadedFrom(soname: string): string | undefined {
  try {
    const base = soname.replace(/\.so.*$/, ".so");
    for (const line of Deno.readTextFileSync("/proc/self/maps").split("\n")) {
      const path = line.slice(line.indexOf("/"));
      if (line.includes("/") && path.split("/").pop()!.startsWith(base)) return path;
    }
  } catch {
    // not Linux, or no /proc
  }
  return undefined;
}

/**
 * Reports, one line per library: where it was loaded from and how many
 * symbols resolved, or why it was not (with the apt-get line). `ok` when
 * all three load.
 */
export function probeXenLibraries(opts?: XenLibraryOptions): { ok: boolean; lines: string[] } {
  const lines: string[] = [];
  let ok = true;
  for (const name of Object.keys(XEN_LIBRARIES) as XenLibraryName[]) {
    const l = XEN_LIBRARIES[name];
    try {
      const lib = loadXenLibrary(name, opts);
      const syms = Object.entries(lib.symbols as Record<string, unknown>);
      const resolved = syms.filter(([, f]) => f !== null).map(([s]) => s);
      const absent = syms.filter(([, f]) => f === null).map(([s]) => s);
      const from = loadedFrom(l.soname);
      lines.push(
        `${l.soname}: loaded${from ? ` from ${from}` : ""}; ${resolved.length} symbols resolved` +
          (absent.length ? ` (optional, absent: ${absent.join(", ")})` : ""),
      );
      if (opts?.libraryPaths?.[name] !== undefined) lib.close();
    } catch (e) {
      ok = false;
      lines.push(e instanceof Error ? e.message : String(e));
    }
  }
  if (!libc()) {
    ok = false;
    lines.push("libc.so.6 could not be opened: rxfb's Xen support needs glibc");
  }
  return { ok, lines };
}

// ---------------------------------------------------------------------------
// Opening the devices

/** The one line for a failed xen*_open, from its errno. */
export function openFailureLine(name: XenLibraryName, err: number): string {
  const l = XEN_LIBRARIES[name];
  const e = errnoName(err);
  const nodes = name === "foreignmemory" ? `${l.node} and /proc/xen/privcmd` : l.node;
  switch (e) {
    case "ENOENT":
      return `${l.openFunction} failed: ENOENT (${nodes} missing): not a Xen dom0, or the ` +
        `${l.kernelModule} module is not loaded (modprobe ${l.kernelModule})`;
    case "EACCES":
    case "EPERM":
      return `${l.openFunction} failed: ${e} (no permission to open ${l.node}): run rxfb as root in dom0`;
    case "ENODEV":
    case "ENXIO":
      return `${l.openFunction} failed: ${e} (${l.node} has no Xen hypervisor behind it): ` +
        `run rxfb in a Xen dom0`;
    case "EMFILE":
    case "ENFILE":
      return `${l.openFunction} failed: ${e} (too many open files): raise the limit (ulimit -n)`;
    default:
      return `${l.openFunction} failed: ${describeErrno(err)} opening ${l.node}`;
  }
}

/** The library's handle-opening call, whichever library it is. */
function openCall(name: XenLibraryName, opts?: XenLibraryOptions): Deno.PointerValue {
  const logger = xenLogger();
  clearLibraryLog();
  switch (name) {
    case "evtchn":
      return loadXenLibrary("evtchn", opts).symbols.xenevtchn_open(logger, 0);
    case "foreignmemory":
      return loadXenLibrary("foreignmemory", opts).symbols.xenforeignmemory_open(logger, 0);
    case "gnttab":
      return loadXenLibrary("gnttab", opts).symbols.xengnttab_open(logger, 0);
  }
}

/**
 * Opens a handle of `name` (xenevtchn_open, xenforeignmemory_open,
 * xengnttab_open with our logger and no flags). Throws one line: the
 * library missing, or why the device would not open.
 */
export function openXenHandle(name: XenLibraryName, opts?: XenLibraryOptions): Deno.PointerObject {
  const h = openCall(name, opts);
  if (h) return h;
  const err = errno();
  throw new XenError(openFailureLine(name, err), errnoName(err), takeLibraryLog());
}

/** Closes a handle from {@link openXenHandle}. */
export function closeXenHandle(
  name: XenLibraryName,
  h: Deno.PointerObject,
  opts?: XenLibraryOptions,
): void {
  switch (name) {
    case "evtchn":
      loadXenLibrary("evtchn", opts).symbols.xenevtchn_close(h);
      break;
    case "foreignmemory":
      loadXenLibrary("foreignmemory", opts).symbols.xenforeignmemory_close(h);
      break;
    case "gnttab":
      loadXenLibrary("gnttab", opts).symbols.xengnttab_close(h);
      break;
  }
}

/**
 * Tries to open (and closes again) each device the backend needs: reports
 * one line per device, "ok" or why not. `ok` when all three open.
 */
export function probeXenDevices(opts?: XenLibraryOptions): { ok: boolean; lines: string[] } {
  const lines: string[] = [];
  let ok = true;
  for (const name of Object.keys(XEN_LIBRARIES) as XenLibraryName[]) {
    const l = XEN_LIBRARIES[name];
    try {
      const h = openXenHandle(name, opts);
      closeXenHandle(name, h, opts);
      lines.push(`${l.openFunction}: ok (${l.node})`);
    } catch (e) {
      ok = false;
      lines.push(e instanceof Error ? e.message : String(e));
    }
  }
  return { ok, lines };
}
