/**
 * What the toolstack (libxl) tells a device model: the qemu-dm command line
 * it starts for a PV guest with a vfb, and the vnc keys it writes in the vfb
 * backend directory.
 */
import type { Xenstore } from "../sources/platform.ts";

/** The settings libxl's qemu-dm command line carries. */
export interface DeviceModelArgs {
  domid: number;
  domainName?: string;
  /** `-vnc ADDR` as given (e.g. "127.0.0.1:0" or "0.0.0.0:1,password"). */
  vnc?: string;
  vncUnused: boolean;
  keymap?: string;
  /** Options we accept and ignore, for the log. */
  ignored: string[];
}

/**
 * Recognises qemu-dm's argv (`-d DOMID -domain-name NAME -nographic -M xenpv`,
 * and the `-vnc`, `-vncunused`, `-k`, `-sdl`, `-videoram`, `-serial`,
 * `-monitor` options libxl may add for a PV guest). Returns undefined when
 * argv is not in that form, so rxfb's own flags are parsed instead.
 */
export function parseDeviceModelArgs(argv: string[]): DeviceModelArgs | undefined {
  if (!argv.includes("-d") || !argv.includes("-M")) return undefined;
  let domid: number | undefined;
  const out: DeviceModelArgs = { domid: 0, vncUnused: false, ignored: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`qemu-dm option ${a} needs a value`);
      return v;
    };
    switch (a) {
      case "-d": {
        const v = next();
        if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 32751) {
          throw new Error(`-d must be a domain id, not "${v}"`);
        }
        domid = Number(v);
        break;
      }
      case "-domain-name":
        out.domainName = next();
        break;
      case "-M": {
        const v = next();
        if (v !== "xenpv") throw new Error(`rxfb only serves -M xenpv, not -M ${v}`);
        break;
      }
      case "-vnc":
        out.vnc = next();
        break;
      case "-vncunused":
        out.vncUnused = true;
        break;
      case "-k":
        out.keymap = next();
        break;
      case "-nographic":
        break;
      case "-sdl":
      case "-full-screen":
      case "-disable-opengl":
        out.ignored.push(a);
        break;
      case "-videoram":
      case "-serial":
      case "-monitor":
      case "-vcpus":
      case "-xen-domid":
        out.ignored.push(`${a} ${next()}`);
        break;
      default:
        throw new Error(`unknown qemu-dm option ${a}`);
    }
  }
  if (domid === undefined) throw new Error("-d DOMID is required");
  out.domid = domid;
  return out;
}

/** The vnc settings libxl writes in the vfb backend directory. */
export interface ToolstackVnc {
  vnc?: boolean;
  /** From vnclisten (+ vncdisplay): "HOST:DISPLAY". */
  address?: string;
  unused?: boolean;
  password?: string;
  keymap?: string;
}

/** Reads the vnc keys of `/local/domain/0/backend/vfb/DOMID/0` (absent keys stay undefined). */
export async function readToolstackVnc(xs: Xenstore, be: string): Promise<ToolstackVnc> {
  const key = (k: string) => xs.read(`${be}/${k}`).catch(() => undefined);
  const [vnc, listen, display, unused, passwd, keymap] = await Promise.all([
    key("vnc"),
    key("vnclisten"),
    key("vncdisplay"),
    key("vncunused"),
    key("vncpasswd"),
    key("keymap"),
  ]);
  const out: ToolstackVnc = {};
  if (vnc !== undefined) out.vnc = vnc === "1";
  if (listen !== undefined || display !== undefined) {
    // vnclisten may carry its own ":display" (libxl accepts "host:display").
    const host = (listen ?? "127.0.0.1").replace(/:\d+$/, "");
    const disp = display ?? listen?.match(/:(\d+)$/)?.[1];
    out.address = disp !== undefined ? `${host}:${disp}` : host;
  }
  if (unused !== undefined) out.unused = unused === "1";
  if (passwd) out.password = passwd;
  if (keymap) out.keymap = keymap;
  return out;
}

/** Tells the toolstack the device model is up (libxl waits for this). */
export function markDeviceModelRunning(xs: Xenstore, backendDomid: number, domid: number) {
  return xs.write(`/local/domain/${backendDomid}/device-model/${domid}/state`, "running");
}

/** Publishes the VNC port where `xl vncviewer` looks for it. */
export function publishVncPort(xs: Xenstore, domid: number, port: number) {
  return xs.write(`/local/domain/${domid}/console/vnc-port`, String(port));
}
