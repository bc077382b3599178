import { extname, join, normalize } from "node:path";
import type { Logger } from "../../sources/log.ts";
import type { VncServer } from "../vnc/server.ts";
import { findNoVnc } from "./novnc.ts";
import { viewerPage } from "./page.ts";
import { WebSocketStream } from "./websocket_stream.ts";

/** Settings of the browser viewer. */
export interface WebOptions {
  hostname: string;
  port: number;
  /** The page's title until the server tells the guest's name. */
  title: string;
  /** PEM files: serve https and wss. */
  tlsCert?: string;
  tlsKey?: string;
  log: Logger;
}

/** A running web viewer. */
export interface WebService {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

const TYPES: Record<string, string> = {
  ".js": "text/javascript; charset=utf-8",
  ".html": "text/html; charset=utf-8",
  ".json": "application/json",
};

/**
 * Serves the viewer page, noVNC's modules, and RFB over WebSocket on the
 * same port. WebSocket clients go through the same RFB server code as TCP
 * clients. A client that offers subprotocols must offer "binary" (as QEMU
 * requires); one that offers none gets none (noVNC's default since 1.2).
 */
export async function serveWeb(vnc: VncServer, o: WebOptions): Promise<WebService> {
  const novnc = await findNoVnc();
  const page = viewerPage(o.title);
  const handler = async (req: Request, info: Deno.ServeHandlerInfo): Promise<Response> => {
    const url = new URL(req.url);
    const remote = `${(info.remoteAddr as Deno.NetAddr).hostname}:${
      (info.remoteAddr as Deno.NetAddr).port
    } (websocket)`;
    if (req.headers.get("upgrade")?.toLowerCase() === "websocket") {
      const offered = (req.headers.get("sec-websocket-protocol") ?? "")
        .split(",").map((s) => s.trim()).filter((s) => s);
      if (offered.length && !offered.includes("binary")) {
        o.log.warn(`${remote}: refused: subprotocols ${offered.join(",")} lack "binary"`);
        return new Response('RFB over WebSocket needs the "binary" subprotocol\n', {
          status: 400,
        });
      }
      const { socket, response } = Deno.upgradeWebSocket(
        req,
        offered.length ? { protocol: "binary" } : {},
      );
      const stream = new WebSocketStream(socket, remote);
      stream.opened().then(() => vnc.serve(stream)).catch(() => {});
      return response;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405 });
    }
    if (url.pathname === "/" || url.pathname === "/index.html") {
      return new Response(page, { headers: { "content-type": TYPES[".html"] } });
    }
    if (url.pathname === "/favicon.ico") return new Response(null, { status: 204 });
    if (url.pathname.startsWith("/novnc/")) {
      const rel = normalize(decodeURIComponent(url.pathname.slice("/novnc/".length)));
      if (rel.startsWith("..") || rel.includes("\0") || !/^(core|vendor)\//.test(rel)) {
        return new Response("not found\n", { status: 404 });
      }
      try {
        const body = await Deno.readFile(join(novnc, rel));
        return new Response(body, {
          headers: {
            "content-type": TYPES[extname(rel)] ?? "application/octet-stream",
            "cache-control": "max-age=3600",
          },
        });
      } catch {
        return new Response("not found\n", { status: 404 });
      }
    }
    return new Response("not found\n", { status: 404 });
  };

  const tls = o.tlsCert && o.tlsKey
    ? { cert: await Deno.readTextFile(o.tlsCert), key: await Deno.readTextFile(o.tlsKey) }
    : undefined;
  let resolvePort!: (port: number) => void;
  const listening = new Promise<number>((r) => resolvePort = r);
  const server = Deno.serve({
    hostname: o.hostname,
    port: o.port,
    ...(tls ?? {}),
    onListen: ({ port }) => resolvePort(port),
    onError: (e) => {
      o.log.error(`web: ${e instanceof Error ? e.message : e}`);
      return new Response("internal error\n", { status: 500 });
    },
  }, handler);
  const port = await listening;
  const host = o.hostname.includes(":") ? `[${o.hostname}]` : o.hostname;
  const url = `${tls ? "https" : "http"}://${host}:${port}/`;
  o.log.info(`web viewer at ${url}`);
  return { url, port, close: () => server.shutdown() };
}

/** Parses `--web [HOST:]PORT` (default host 127.0.0.1). */
export function parseWebAddress(text: string): { hostname: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]:|([^:\[\]]+):)?(\d+)$/.exec(text);
  if (!m) throw new Error(`--web must be [HOST:]PORT (e.g. 127.0.0.1:6080), not "${text}"`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`--web port ${port} is out of range`);
  return { hostname: m[1] ?? m[2] ?? "127.0.0.1", port };
}
