/**
 * rxfb beside the VNC servers people use today (TigerVNC's Xvnc, neatvnc,
 * libvncserver, x11vnc) on identical frames, measured by one native client
 * (`rfbbench`) in the same run. This is the second half of `deno task bench`
 * (the first is the `Deno.bench` micro-benchmarks in this folder).
 *
 * It prepares a private copy of the shared peer rig (`../shared/bench/peers`,
 * read-only) in a cache folder, builds it there once (again only when the
 * shared sources change), then for each row of the standard matrix
 * (workload x encoding x rate, 21 rows) runs the best peer of that row (the
 * one with the best delivered fps in the rig's `results.json`) and rxfb, one
 * after the other, each through `run.sh one` with the same DUR / WARM, and
 * prints a table with the ratios. Rows measured while other work loaded the
 * machine ("other %" above `--noisy`) are run once more and the quieter
 * attempt is kept. See bench/README.md.
 *
 *   deno task bench                          # micro-benchmarks + the whole matrix
 *   deno task bench -- --rows scroll         # only the scroll rows (no micro-benchmarks)
 *   deno task bench -- --quick               # DUR=5 s a run
 *   deno run -A bench/peers.ts --help
 */
import { REPO, rigPaths } from "./rig.ts";
import { portFree, scriptFlags } from "./script.ts";
import { watchThreads } from "./thread_cpu.ts";

// ---------------------------------------------------------------- options

const USAGE = `usage: deno task bench [-- OPTIONS]     (or: deno run -A bench/peers.ts OPTIONS)

  --rows SEL[,SEL..]  only the matching rows; SEL is tokens joined by "/" that must all match
                      the row's workload, encoding or rate: scroll | desktop/zrle | video/tight-q9 |
                      max | scroll/zrle/60  (default: all 21 rows)
  --quick             5 s measured a run (DUR=5) instead of 15
  --dur S, --warm S   measured seconds and warm-up seconds a run (env DUR, WARM; default 15, 2)
  --peers WHICH       best (default: the best peer of each row), all (every peer that has the row),
                      or a comma list of peers (libvncserver,neatvnc,xvnc,xvnc/copyarea,x11vnc)
  --noisy PCT         a row whose runs saw more than PCT % of a core used by other work is run once
                      more after the matrix, the quieter attempt kept (default 30)
  --wait S            before each row, wait up to S seconds for the machine to be quieter than
                      --noisy (default 0: do not wait)
  --no-rerun          never re-run noisy rows
  --micro / --no-micro  run the Deno.bench micro-benchmarks first (default: only when neither
                      --rows nor --quick is given)
  --out FILE          the JSON written (default bench/results/latest.json; a full matrix run
                      also writes bench/results/YYYY-MM-DD.json, or YYYY-MM-DD-HHMM.json when that
                      day's record exists)
  --keep-logs         keep every run's logs under bench/results/logs/ (default: failed runs only)
  --list              print the rows and the best peer of each, and exit
  --from FILE         print the table of a saved run (e.g. bench/results/latest.json), and exit
  --help

env: RXFB_PEERS_SHARED (the shared bench folder, default ../shared/bench beside the checkout),
     RXFB_PEERS_CACHE (the rig copy, default /var/tmp/rxfb-peers), PORT (5973), XDISP (73)`;

const opts = scriptFlags(Deno.args, {
  rows: { type: "string" },
  quick: { type: "boolean" },
  dur: { type: "string" },
  warm: { type: "string" },
  peers: { type: "string" },
  noisy: { type: "string" },
  wait: { type: "string" },
  "no-rerun": { type: "boolean" },
  micro: { type: "boolean" },
  "no-micro": { type: "boolean" },
  out: { type: "string" },
  "keep-logs": { type: "boolean" },
  list: { type: "boolean" },
  from: { type: "string" },
  help: { type: "boolean", short: "h" },
}, USAGE);

const num = (v: unknown, dflt: number): number => {
  if (v === undefined || v === "") return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) {
    console.error(`not a number: ${v}`);
    Deno.exit(2);
  }
  return n;
};
const DUR = num(opts.dur ?? Deno.env.get("DUR"), opts.quick ? 5 : 15);
const WARM = num(opts.warm ?? Deno.env.get("WARM"), 2);
const NOISY = num(opts.noisy, 30);
const WAIT = num(opts.wait, 0);
const RERUN = !opts["no-rerun"];
const PEERS_OPT = (opts.peers as string | undefined) ?? "best";
const PARTIAL = opts.rows !== undefined || !!opts.quick;
const MICRO = opts.micro ? true : opts["no-micro"] || opts.list || opts.from ? false : !PARTIAL;
const KEEP_LOGS = !!opts["keep-logs"];
const { shared: SHARED, cache: CACHE, rig: RIG } = rigPaths();
const PORT = Number(Deno.env.get("PORT") ?? 5973);
const RESULTS = `${REPO}/bench/results`;
const OUT = (opts.out as string | undefined) ?? `${RESULTS}/latest.json`;

// ---------------------------------------------------------------- the matrix

interface RowKey {
  workload: string;
  encoding: string;
  rate: string;
}
/** The standard matrix of the rig (run.sh, results-table.md): 17 rows at 60 fps, 4 at "max". */
function matrix(): RowKey[] {
  const rows: RowKey[] = [];
  for (const wl of ["desktop", "scroll", "video", "cursor", "static"]) {
    const encs = ["raw", "zrle", "tight"];
    if (wl === "desktop") encs.push("hextile");
    if (wl === "video") encs.push("tight-q9");
    for (const enc of encs) rows.push({ workload: wl, encoding: enc, rate: "60" });
  }
  for (const wl of ["desktop", "scroll"]) {
    for (const enc of ["zrle", "raw"]) rows.push({ workload: wl, encoding: enc, rate: "max" });
  }
  return rows;
}
const rowId = (r: RowKey) => `${r.workload}/${r.encoding}/${r.rate}`;

function selectRows(all: RowKey[], sel: string | undefined): RowKey[] {
  if (!sel) return all;
  const filters = sel.split(",").map((s) => s.trim()).filter(Boolean).map((s) => s.split("/"));
  const picked = all.filter((r) =>
    filters.some((toks) => toks.every((t) => t === r.workload || t === r.encoding || t === r.rate))
  );
  if (picked.length === 0) {
    console.error(`--rows ${sel}: no row matches; rows are:\n  ${all.map(rowId).join("\n  ")}`);
    Deno.exit(2);
  }
  return picked;
}

/** One JSON row as run.sh writes it (fields used here; the whole object is kept). */
interface RunRow {
  peer: string;
  variant?: string;
  workload: string;
  encoding: string;
  rate: string;
  status: string;
  fps?: number;
  gen_fps?: number | null;
  lat_p50_ms?: number;
  lat_p99_ms?: number;
  kb_per_frame?: number;
  server_cpu_ms_per_frame?: number | null;
  server_cpu_pct?: number | null;
  /** rxfb only: the share of its process's CPU its simulated guest's thread used (bench/thread_cpu.ts). */
  sim_guest_cpu_share?: number;
  /** rxfb only: server_cpu_ms_per_frame without the simulated guest's share. */
  server_cpu_ms_per_frame_excl_guest?: number;
  peak_rss_mb?: number;
  other_cpu_pct?: number;
  decode_errors?: { non_monotonic: number; bad_stamp?: number; bad_latency?: number };
  verify?: { checked: number; mismatched_frames: number; max_bad_pixels: number };
  error?: string;
  [k: string]: unknown;
}

interface Peer {
  peer: string;
  variant: string; // "" or "copyarea" (xvnc with xdraw -c: the scroll is an XCopyArea)
}
const peerName = (p: Peer) => p.variant ? `${p.peer}/${p.variant}` : p.peer;
const XFLAGS: Record<string, string> = { copyarea: "-c" };

/** The rig's recorded results: every (peer, variant) that has each row, best fps first. */
function recordedPeers(): Map<string, { peer: Peer; fps: number; p50: number }[]> {
  const byRow = new Map<string, { peer: Peer; fps: number; p50: number }[]>();
  const text = Deno.readTextFileSync(`${SHARED}/peers/results.json`);
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const r = JSON.parse(line) as RunRow;
    if (r.status !== "ok" || typeof r.fps !== "number") continue;
    const id = rowId(r);
    const list = byRow.get(id) ?? [];
    list.push({
      peer: { peer: r.peer, variant: r.variant ?? "" },
      fps: r.fps,
      p50: r.lat_p50_ms ?? Infinity,
    });
    byRow.set(id, list);
  }
  // best = highest delivered fps; fps within 1 % of each other (the 60 fps cap) tie, and the
  // lower p50 latency wins the tie
  for (const list of byRow.values()) {
    list.sort((a, b) => {
      const tie = Math.abs(a.fps - b.fps) <= 0.01 * Math.max(a.fps, b.fps);
      return tie ? a.p50 - b.p50 : b.fps - a.fps;
    });
  }
  return byRow;
}

function peersFor(row: RowKey, recorded: Map<string, { peer: Peer }[]>): Peer[] {
  const have = (recorded.get(rowId(row)) ?? []).map((x) => x.peer);
  if (PEERS_OPT === "best") return have.slice(0, 1);
  if (PEERS_OPT === "all") return have;
  const want = PEERS_OPT.split(",").map((s) => s.trim());
  return have.filter((p) => want.includes(peerName(p)));
}

// ---------------------------------------------------------------- the rig copy

const RIG_PACKAGES = [
  "build-essential",
  "pkg-config",
  "zlib1g-dev",
  "libvncserver-dev",
  "libneatvnc-dev",
  "libaml-dev",
  "libdrm-dev",
  "libpixman-1-dev",
  "libx11-dev",
  "libxext-dev",
  "tigervnc-standalone-server",
  "xvfb",
  "x11vnc",
  "jq",
  "python3",
  "iproute2", // ss, used by run.sh to wait for the port
];
const RIG_BINS = ["vectors", "rfbbench", "lvs_harness", "nvnc_harness", "xdraw"];

async function sh(
  cmd: string,
  args: string[],
  o: { cwd?: string; env?: Record<string, string>; quiet?: boolean } = {},
) {
  const out = await new Deno.Command(cmd, {
    args,
    cwd: o.cwd,
    env: o.env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const td = new TextDecoder();
  return {
    ok: out.success,
    code: out.code,
    stdout: td.decode(out.stdout),
    stderr: td.decode(out.stderr),
  };
}

async function ensurePackages(): Promise<void> {
  const missing: string[] = [];
  for (const p of RIG_PACKAGES) {
    const r = await sh("dpkg-query", ["-W", "-f=${Status}", p]).catch(() => undefined);
    if (!r?.stdout.includes("install ok installed")) missing.push(p);
  }
  if (missing.length === 0) return;
  const line = `apt-get install -y ${missing.join(" ")}`;
  if (Deno.uid?.() !== 0) {
    console.error(`the peer rig needs Debian packages; install with:\n  sudo ${line}`);
    Deno.exit(1);
  }
  console.error(`bench: installing ${missing.join(" ")}`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  let r = await sh("apt-get", ["install", "-y", "-q", ...missing], { env });
  if (!r.ok) {
    await sh("apt-get", ["update", "-q"], { env });
    r = await sh("apt-get", ["install", "-y", "-q", ...missing], { env });
  }
  if (!r.ok) {
    console.error(`bench: apt-get failed:\n${r.stderr}\n  ${line}`);
    Deno.exit(1);
  }
}

function listFiles(dir: string, rel = ""): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(`${dir}/${rel}`)) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory) out.push(...listFiles(dir, p));
    else if (e.isFile) out.push(p);
  }
  return out.sort();
}

/** A hash of the shared rig's sources (the recorded results are not part of it). */
async function sharedHash(): Promise<string> {
  const parts: Uint8Array[] = [];
  const enc = new TextEncoder();
  for (const f of listFiles(SHARED)) {
    if (/(^|\/)results[^/]*$/.test(f)) continue;
    parts.push(enc.encode(`${f}\0`), Deno.readFileSync(`${SHARED}/${f}`), enc.encode("\0"));
  }
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) all.set(p, (o += p.length) - p.length);
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

const exists = (p: string) => {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
};

/**
 * run.sh removes its TMP folder (server and client logs) when it exits; the
 * copy keeps it when KEEP_TMP is set and names it on stderr, so that a failed
 * run can be diagnosed. The measurement itself is untouched.
 */
const TRAP_ORIG = `trap 'stop_all; rm -rf "$TMP"' EXIT`;
const TRAP_KEEP =
  `trap 'stop_all; if [ -n "\${KEEP_TMP:-}" ]; then echo "KEPT_TMP=$TMP" >&2; else rm -rf "$TMP"; fi' EXIT`;

async function prepareRig(): Promise<string> {
  await ensurePackages();
  const hash = await sharedHash();
  const stampFile = `${CACHE}/.shared-sha256`;
  const stamp = exists(stampFile) ? Deno.readTextFileSync(stampFile).trim() : "";
  const built = RIG_BINS.every((b) => exists(`${RIG}/${b}`));
  if (stamp === hash && built) return hash;
  console.error(
    `bench: ${stamp ? "shared rig changed, rebuilding" : "building the peer rig"} in ${RIG}`,
  );
  Deno.mkdirSync(CACHE, { recursive: true });
  try {
    Deno.removeSync(`${CACHE}/bench`, { recursive: true });
  } catch { /* first time */ }
  for (const f of listFiles(SHARED)) {
    const dst = `${CACHE}/bench/${f}`;
    Deno.mkdirSync(dst.slice(0, dst.lastIndexOf("/")), { recursive: true });
    Deno.copyFileSync(`${SHARED}/${f}`, dst);
    Deno.chmodSync(dst, (Deno.statSync(`${SHARED}/${f}`).mode ?? 0o644) | 0o200);
  }
  const runSh = Deno.readTextFileSync(`${RIG}/run.sh`);
  if (runSh.includes(TRAP_ORIG)) {
    Deno.writeTextFileSync(`${RIG}/run.sh`, runSh.replace(TRAP_ORIG, TRAP_KEEP));
  } else {
    console.error("bench: run.sh's cleanup line changed; failed runs' logs will not be kept");
  }
  const mk = await sh("make", ["-s", "all"], { cwd: RIG });
  if (!mk.ok) {
    console.error(`bench: building the rig failed:\n${mk.stdout}${mk.stderr}`);
    Deno.exit(1);
  }
  const vec = await sh(`${RIG}/vectors`, [], { cwd: RIG });
  if (!vec.ok) {
    console.error(`bench: the rig's reference generator fails its own vectors:\n${vec.stderr}`);
    Deno.exit(1);
  }
  Deno.writeTextFileSync(stampFile, `${hash}\n`);
  return hash;
}

// ---------------------------------------------------------------- running

const STAMP = new Date().toISOString().replace(/[:.]/g, "").slice(0, 15); // 20261122T215600
const LOGS = `${RESULTS}/logs/${STAMP}`;

/** Whether an rxfb (or peer) run is a failure worth keeping its logs for. */
function failed(r: RunRow): boolean {
  if (r.status !== "ok") return true;
  const de = r.decode_errors;
  const stampErrs = de ? de.non_monotonic + (de.bad_stamp ?? 0) + (de.bad_latency ?? 0) : 0;
  const lossless = r.encoding !== "tight-q9";
  return stampErrs > 0 || (lossless && (r.verify?.mismatched_frames ?? 0) > 0);
}

/** `run.sh one PEER WL ENC RATE [XFLAGS VARIANT]` in the rig copy; the row it printed. */
async function runOne(peer: Peer, row: RowKey, attempt: number): Promise<RunRow> {
  if (!portFree(PORT)) {
    throw new Error(`127.0.0.1:${PORT} is in use by something else: set PORT to a free one`);
  }
  const args = [`${RIG}/run.sh`, "one", peer.peer, row.workload, row.encoding, row.rate];
  if (peer.variant) args.push(XFLAGS[peer.variant] ?? "", peer.variant);
  const t0 = performance.now();
  // rxfb's simulated guest draws in rxfb's process: its thread is watched, to give the figure
  // the rig gives the C harnesses (their generator thread subtracted) beside the rig's own.
  const guestWatch = peer.peer === "rxfb"
    ? watchThreads(`mod.ts --sim --domid ${PORT - 5900} `, (n) => n.startsWith("guest-dom"))
    : undefined;
  const res = await sh("bash", args, {
    cwd: RIG,
    env: {
      DUR: String(DUR),
      WARM: String(WARM),
      RXFB_DIR: REPO,
      DENO_BIN: Deno.execPath(),
      KEEP_TMP: "1",
      PORT: String(PORT),
    },
  });
  const secs = (performance.now() - t0) / 1000;
  const kept = /^KEPT_TMP=(.*)$/m.exec(res.stderr)?.[1];
  const last = res.stdout.trim().split("\n").filter((l) => l.startsWith("{")).pop();
  let r: RunRow;
  try {
    r = JSON.parse(last ?? "");
  } catch {
    r = {
      peer: peer.peer,
      variant: peer.variant,
      ...row,
      status: "run_sh_failed",
      error: `${res.stdout}\n${res.stderr}`.trim().slice(-2000),
    };
  }
  r.wall_s = Math.round(secs * 10) / 10;
  const measured = (r.bench as { measured_s?: number } | undefined)?.measured_s ?? DUR;
  const guest = guestWatch?.stop(measured);
  if (guest && r.server_cpu_ms_per_frame != null) {
    r.sim_guest_cpu_share = Math.round(guest.guestShare * 1000) / 1000;
    r.server_cpu_ms_per_frame_excl_guest = r.server_cpu_ms_per_frame * (1 - guest.guestShare);
  }
  if (kept) {
    if (KEEP_LOGS || failed(r)) {
      const dst = `${LOGS}/${rowId(row).replaceAll("/", "-")}.${
        peerName(peer).replace("/", "-")
      }.${attempt}`;
      Deno.mkdirSync(dst, { recursive: true });
      for (const e of Deno.readDirSync(kept)) {
        if (e.isFile) Deno.copyFileSync(`${kept}/${e.name}`, `${dst}/${e.name}`);
      }
      Deno.writeTextFileSync(`${dst}/run.sh.stderr`, res.stderr);
      r.logs = dst.slice(REPO.length + 1);
    }
    Deno.removeSync(kept, { recursive: true });
  }
  return r;
}

const other = (r: RunRow) => r.other_cpu_pct ?? 0;

interface Attempt {
  runs: RunRow[]; // the peers' runs, then rxfb's
  maxOther: number;
}
interface RowResult extends RowKey {
  id: string;
  bestPeerRecorded?: { peer: string; fps: number; p50_ms: number };
  attempts: Attempt[];
  chosen: number;
  noisy: boolean;
  rxfb: RunRow;
  peers: RunRow[];
}

const f = (v: number | null | undefined, d = 1) =>
  v === null || v === undefined || !Number.isFinite(v) ? "-" : v.toFixed(d);
const fKB = (v: number | undefined) => v === undefined ? "-" : f(v, v < 10 ? 2 : v < 100 ? 1 : 0);
const ratio = (a: number | null | undefined, b: number | null | undefined) =>
  a == null || b == null || !(b > 0) ? undefined : a / b;

function brief(r: RunRow): string {
  if (r.fps === undefined) {
    return `${r.status}${r.error ? `: ${String(r.error).slice(0, 300)}` : ""}`;
  }
  return `fps ${f(r.fps)} p50 ${f(r.lat_p50_ms)} ms CPU ${f(r.server_cpu_ms_per_frame, 2)} ms/f ${
    fKB(r.kb_per_frame)
  } KB/f other ${f(r.other_cpu_pct, 0)}% ${checks(r)}${r.status !== "ok" ? ` [${r.status}]` : ""}`;
}

function checks(r: RunRow): string {
  if (!r.decode_errors || !r.verify) return r.status;
  const de = r.decode_errors;
  const errs = de.non_monotonic + (de.bad_stamp ?? 0) + (de.bad_latency ?? 0);
  const v = r.verify;
  const parts = [errs ? `stamp errors ${errs}` : "stamps ok"];
  if (v.checked) {
    parts.push(
      `verify ${v.checked - v.mismatched_frames}/${v.checked} exact` +
        (v.mismatched_frames ? ` (max ${v.max_bad_pixels} px off)` : ""),
    );
  } else parts.push("verify none checked");
  if (r.status !== "ok") parts.push(r.status);
  return parts.join("; ");
}

async function runRow(row: RowKey, peers: Peer[], attempt: number): Promise<Attempt> {
  const runs: RunRow[] = [];
  for (const p of [...peers, { peer: "rxfb", variant: "" }]) {
    const r = await runOne(p, row, attempt);
    console.error(`  ${peerName(p).padEnd(16)} ${brief(r)}  (${f(r.wall_s as number)} s)`);
    runs.push(r);
  }
  return { runs, maxOther: Math.max(...runs.map(other)) };
}

/** CPU busy on the whole machine over `ms`, % of one core (nothing of ours runs between runs). */
async function machineBusyPct(ms: number): Promise<number> {
  const read = () => {
    const v = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1)
      .map(Number);
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]; // user nice system irq softirq steal
  };
  const b0 = read(), t0 = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  return (read() - b0) / ((performance.now() - t0) / 1000); // clock ticks are 1/100 s
}

/** With `--wait S`: waits up to S seconds for the machine to be quieter than `--noisy`. */
async function waitQuiet(): Promise<void> {
  if (!(WAIT > 0)) return;
  const until = performance.now() + WAIT * 1000;
  let busy = await machineBusyPct(1000);
  if (busy <= NOISY) return;
  console.error(`  machine busy ${f(busy, 0)}% of a core: waiting up to ${WAIT} s for it to calm`);
  while (busy > NOISY && performance.now() < until) busy = await machineBusyPct(2000);
  if (busy > NOISY) console.error(`  still ${f(busy, 0)}%: running anyway`);
}

// ---------------------------------------------------------------- targets and table

interface Verdict {
  fps: boolean;
  p50: boolean;
  cpu: boolean;
  verify: boolean;
  missed: string[];
}

/** rxfb against one peer: >= its fps (ties within 1 % at the offered rate), <= p50, <= CPU/frame, exact. */
function verdict(rx: RunRow, peer: RunRow | undefined): Verdict {
  const lossless = rx.encoding !== "tight-q9";
  const v = rx.verify;
  const verifyOk = rx.status === "ok" &&
    (!lossless || (!!v && v.checked > 0 && v.mismatched_frames === 0));
  if (!peer || peer.fps === undefined || rx.fps === undefined) {
    return { fps: false, p50: false, cpu: false, verify: verifyOk, missed: ["no comparison"] };
  }
  const fps = rx.fps >= peer.fps * 0.99;
  const p50 = (rx.lat_p50_ms ?? Infinity) <= (peer.lat_p50_ms ?? Infinity);
  const cpu =
    (rx.server_cpu_ms_per_frame ?? Infinity) <= (peer.server_cpu_ms_per_frame ?? Infinity);
  const de = rx.decode_errors;
  const stampErrs = de ? de.non_monotonic + (de.bad_stamp ?? 0) + (de.bad_latency ?? 0) : 0;
  const missed = [
    ...(fps ? [] : ["fps"]),
    ...(p50 ? [] : ["p50"]),
    ...(cpu ? [] : ["CPU"]),
    ...(verifyOk ? [] : [lossless ? "verify" : rx.status]),
    // updates whose stamp corner held no valid stamp: torn or partial frames reached the viewer
    ...(stampErrs ? ["stamps"] : []),
  ];
  return { fps, p50, cpu, verify: verifyOk, missed };
}

function table(results: RowResult[]): string {
  const lines = [
    "| row | best peer | fps rxfb / peer | × | p50 ms rxfb / peer | × | CPU ms/frame rxfb / peer | × | KB/frame rxfb / peer | rxfb checks | other % rxfb / peer | targets |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|",
  ];
  for (const r of results) {
    const rx = r.rxfb, p = r.peers[0];
    const pn = p
      ? (p.variant ? `${p.peer} (${p.variant})` : p.peer) +
        (p.status !== "ok" ? ` [${p.status}]` : "")
      : "-";
    const fr = ratio(rx.fps, p?.fps);
    const lr = ratio(rx.lat_p50_ms, p?.lat_p50_ms);
    const cr = ratio(rx.server_cpu_ms_per_frame, p?.server_cpu_ms_per_frame);
    const v = verdict(rx, p);
    const noisy = (r.noisy ? " ⚠" : "") +
      (r.attempts.length > 1 ? ` (try ${r.chosen + 1} of ${r.attempts.length})` : "");
    lines.push(
      `| ${r.id} | ${pn} | ${f(rx.fps)} / ${f(p?.fps)} | ${f(fr, 2)} | ${f(rx.lat_p50_ms)} / ${
        f(p?.lat_p50_ms)
      } | ${f(lr, 2)} | ${f(rx.server_cpu_ms_per_frame, 2)} / ${
        f(p?.server_cpu_ms_per_frame, 2)
      } | ${f(cr, 2)} | ${fKB(rx.kb_per_frame)} / ${fKB(p?.kb_per_frame)} | ${checks(rx)} | ${
        f(rx.other_cpu_pct, 0)
      } / ${f(p?.other_cpu_pct, 0)}${noisy} | ${
        v.missed.length ? `**misses ${v.missed.join(", ")}**` : "all met"
      } |`,
    );
  }
  return lines.join("\n");
}

/** The extra targets of the issue, from the rows that ran. */
function extraTargets(results: RowResult[]): string[] {
  const get = (id: string) => results.find((r) => r.id === id);
  const out: string[] = [];
  const line = (ok: boolean | undefined, text: string) =>
    out.push(`- ${ok === undefined ? "n/a " : ok ? "met " : "MISSED "} ${text}`);
  for (const enc of ["zrle", "tight"]) {
    const r = get(`scroll/${enc}/60`);
    if (r) {
      line(
        (r.rxfb.kb_per_frame ?? Infinity) < 5,
        `scroll ${enc} KB/frame < 5 (CopyRect): ${fKB(r.rxfb.kb_per_frame)} KB, ${
          (r.rxfb.bench as any)?.copyrects ?? 0
        } CopyRects`,
      );
    }
  }
  for (const enc of ["raw", "zrle", "tight"]) {
    const r = get(`static/${enc}/60`);
    if (r) {
      const kb = r.rxfb.kb_per_frame ?? Infinity, cpu = r.rxfb.server_cpu_ms_per_frame ?? Infinity;
      line(
        kb < 1 && cpu < 3,
        `static ${enc} KB/frame < 1 and CPU < 3 ms/frame: ${fKB(r.rxfb.kb_per_frame)} KB, ${
          f(r.rxfb.server_cpu_ms_per_frame, 2)
        } ms`,
      );
    }
  }
  for (const enc of ["raw", "zrle", "tight"]) {
    const r = get(`cursor/${enc}/60`);
    if (r) {
      line(
        (r.rxfb.lat_p50_ms ?? Infinity) < 0.5,
        `cursor ${enc} p50 < 0.5 ms: ${f(r.rxfb.lat_p50_ms, 2)} ms`,
      );
    }
  }
  for (const enc of ["zrle", "tight"]) {
    const r = get(`desktop/${enc}/60`);
    const p = r?.peers[0];
    if (r && p?.fps !== undefined) {
      line(
        (r.rxfb.fps ?? 0) >= 2 * p.fps,
        `desktop ${enc} fps >= 2x best peer: ${f(r.rxfb.fps)} vs 2 x ${f(p.fps)} (${p.peer}) = ${
          f(2 * p.fps)
        } (×${f(ratio(r.rxfb.fps, p.fps), 2)})`,
      );
    }
  }
  return out;
}

interface ReportMeta {
  started: string;
  dur: number;
  warm: number;
  noisy: number;
  peers: string;
}

/**
 * rxfb's CPU per frame without its simulated guest's thread, the way the rig counts the C
 * harnesses (generator thread subtracted) and Xvnc (its drawing client is another process),
 * beside the peer's: for reading, not a target of its own (the verdicts use the rig's figure).
 */
function cpuWithoutGuest(results: RowResult[]): string[] {
  return results.filter((r) => r.rxfb.server_cpu_ms_per_frame_excl_guest !== undefined).map((r) => {
    const rx = r.rxfb, p = r.peers[0];
    const excl = rx.server_cpu_ms_per_frame_excl_guest!;
    const peer = p?.server_cpu_ms_per_frame;
    const cmp = peer == null ? "" : excl <= peer ? " (≤ peer)" : " (> peer)";
    return `- ${r.id}: ${f(rx.server_cpu_ms_per_frame, 2)} ms → ${
      f(excl, 2)
    } ms without the guest (${f(100 * (rx.sim_guest_cpu_share ?? 0), 0)} % of rxfb's CPU); peer ${
      f(peer, 2)
    }${cmp}`;
  });
}

/** Prints the table, the extra targets and the rows rxfb loses. */
function report(results: RowResult[], o: ReportMeta): { md: string; extra: string[] } {
  const md = table(results);
  const extra = extraTargets(results);
  const losses = results.filter((r) => verdict(r.rxfb, r.peers[0]).missed.length > 0);

  console.log(
    `\n## rxfb vs the best peer of each row (${
      o.started.slice(0, 16)
    }Z, DUR=${o.dur}s WARM=${o.warm}s)\n`,
  );
  console.log(md);
  console.log(
    `\n× = rxfb / peer (fps: higher is better; p50 and CPU: lower is better). rxfb's CPU includes its` +
      ` simulated guest drawing the frames; the in-process C harnesses' drawing is subtracted.` +
      ` ⚠ = other work used more than ${o.noisy}% of a core in the kept attempt.` +
      ` "stamps": some updates left no valid stamp in the corner (a torn or partial frame reached` +
      ` the viewer; rfbbench's decode_errors).`,
  );
  if (o.peers !== "best") {
    console.log("\nAll peers measured:\n");
    for (const r of results) {
      for (const p of r.peers) {
        console.log(
          `- ${r.id} ${peerName({ peer: p.peer, variant: p.variant ?? "" })}: ${brief(p)}`,
        );
      }
    }
  }
  console.log(`\nExtra targets:\n${extra.join("\n")}`);
  const excl = cpuWithoutGuest(results);
  if (excl.length) {
    console.log(
      `\nrxfb's CPU per frame without its simulated guest's thread (as the rig counts the C` +
        ` harnesses; for reading, the verdicts above use the rig's figure):\n${excl.join("\n")}`,
    );
  }
  console.log(
    `\nrxfb meets every target in ${results.length - losses.length} of ${results.length} rows` +
      (losses.length
        ? `; misses: ${
          losses.map((r) => `${r.id} (${verdict(r.rxfb, r.peers[0]).missed.join(", ")})`).join("; ")
        }`
        : ""),
  );
  return { md, extra };
}

// ---------------------------------------------------------------- main

const T0 = performance.now();
const started = new Date();

if (MICRO) {
  console.error("bench: micro-benchmarks (deno bench -A bench/)");
  const st = await new Deno.Command(Deno.execPath(), {
    args: ["bench", "-A", "bench/"],
    cwd: REPO,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!st.success) console.error(`bench: deno bench exited with ${st.code}`);
}

const recorded = recordedPeers();
const rows = selectRows(matrix(), opts.rows as string | undefined);

if (opts.from) {
  // re-print a saved run (verdicts recomputed by this version)
  const doc = JSON.parse(Deno.readTextFileSync(opts.from as string));
  report(doc.rows, {
    started: doc.started,
    dur: doc.options.dur,
    warm: doc.options.warm,
    noisy: doc.options.noisy_pct,
    peers: doc.options.peers,
  });
  Deno.exit(0);
}

if (opts.list) {
  for (const r of rows) {
    const rec = recorded.get(rowId(r)) ?? [];
    console.log(
      `${rowId(r).padEnd(22)} ${
        rec.map((x) => `${peerName(x.peer)} ${x.fps} fps ${x.p50} ms`).join(" | ")
      }`,
    );
  }
  Deno.exit(0);
}

const hash = await prepareRig();
const load0 = Deno.loadavg();
console.error(
  `bench: ${rows.length} rows x (${PEERS_OPT} peer + rxfb), DUR=${DUR}s WARM=${WARM}s, ` +
    `~${
      Math.round(rows.length * (PEERS_OPT === "best" ? 2 : 4.5) * (DUR + WARM + 2) / 60)
    } min (more with re-runs); ` +
    `load average ${
      load0.map((x) => x.toFixed(2)).join(" ")
    } on ${navigator.hardwareConcurrency} CPUs`,
);

const results: RowResult[] = [];
const attemptsOf: Attempt[][] = [];
for (const [i, row] of rows.entries()) {
  const peers = peersFor(row, recorded);
  console.error(
    `[${i + 1}/${rows.length}] ${rowId(row)} vs ${peers.map(peerName).join(", ") || "no peer"}`,
  );
  await waitQuiet();
  attemptsOf.push([await runRow(row, peers, 1)]);
}
// Noisy rows run once more at the end, when the other work may have finished.
const noisyRows = rows.map((_, i) => i).filter((i) => attemptsOf[i][0].maxOther > NOISY);
if (RERUN && noisyRows.length) {
  console.error(
    `bench: ${noisyRows.length} rows ran while other work used more than ${NOISY}% of a core: ` +
      `running them again`,
  );
  for (const [k, i] of noisyRows.entries()) {
    const row = rows[i];
    console.error(
      `[again ${k + 1}/${noisyRows.length}] ${rowId(row)} (other ${
        f(attemptsOf[i][0].maxOther, 0)
      }% the first time)`,
    );
    await waitQuiet();
    attemptsOf[i].push(await runRow(row, peersFor(row, recorded), 2));
  }
}
for (const [i, row] of rows.entries()) {
  const attempts = attemptsOf[i];
  // keep the quieter attempt, unless only one of them has every server's figures
  let chosen = 0;
  if (attempts.length > 1) {
    const ok = attempts.map((a) => a.runs.every((r) => r.fps !== undefined));
    chosen = ok[0] !== ok[1]
      ? (ok[1] ? 1 : 0)
      : attempts[1].maxOther < attempts[0].maxOther
      ? 1
      : 0;
  }
  const a = attempts[chosen];
  const best = recorded.get(rowId(row))?.[0];
  results.push({
    ...row,
    id: rowId(row),
    bestPeerRecorded: best &&
      { peer: peerName(best.peer), fps: best.fps, p50_ms: best.p50 },
    attempts,
    chosen,
    noisy: a.maxOther > NOISY,
    rxfb: a.runs[a.runs.length - 1],
    peers: a.runs.slice(0, -1),
  });
}

const totalS = (performance.now() - T0) / 1000;
const { md, extra } = report(results, {
  started: started.toISOString(),
  dur: DUR,
  warm: WARM,
  noisy: NOISY,
  peers: PEERS_OPT,
});

const doc = {
  schema: "rxfb-bench-peers/1",
  started: started.toISOString(),
  total_s: Math.round(totalS),
  host: {
    cpus: navigator.hardwareConcurrency,
    loadavg_start: load0,
    loadavg_end: Deno.loadavg(),
    deno: Deno.version.deno,
    os: Deno.build.target,
  },
  options: {
    dur: DUR,
    warm: WARM,
    peers: PEERS_OPT,
    noisy_pct: NOISY,
    rerun: RERUN,
    wait_s: WAIT,
    rows: opts.rows ?? "all",
  },
  rig: { shared: SHARED, copy: RIG, shared_sha256: hash, port: PORT },
  rows: results.map((r) => ({
    ...r,
    ratios: {
      fps: ratio(r.rxfb.fps, r.peers[0]?.fps) ?? null,
      p50: ratio(r.rxfb.lat_p50_ms, r.peers[0]?.lat_p50_ms) ?? null,
      cpu_ms_per_frame:
        ratio(r.rxfb.server_cpu_ms_per_frame, r.peers[0]?.server_cpu_ms_per_frame) ??
          null,
      kb_per_frame: ratio(r.rxfb.kb_per_frame, r.peers[0]?.kb_per_frame) ?? null,
    },
    verdict: verdict(r.rxfb, r.peers[0]),
  })),
  extra_targets: extra,
  table_md: md,
};
Deno.mkdirSync(OUT.slice(0, OUT.lastIndexOf("/")) || ".", { recursive: true });
Deno.writeTextFileSync(OUT, JSON.stringify(doc, null, 2) + "\n");
const written = [OUT];
if (!PARTIAL && opts.out === undefined) {
  // A second whole run on the same day must not replace the first record: it gets the time too.
  const day = started.toISOString().slice(0, 10);
  const time = started.toISOString().slice(11, 16).replace(":", "");
  let dated = `${RESULTS}/${day}.json`;
  if (exists(dated)) dated = `${RESULTS}/${day}-${time}.json`;
  Deno.writeTextFileSync(dated, JSON.stringify(doc, null, 2) + "\n");
  written.push(dated);
}
console.log(
  `\nwrote ${written.map((p) => p.startsWith(REPO) ? p.slice(REPO.length + 1) : p).join(", ")}` +
    `; total ${Math.floor(totalS / 60)} min ${Math.round(totalS % 60)} s` +
    ` (${f(totalS / Math.max(results.length, 1), 0)} s a row)`,
);
