/**
 * The viewer page: noVNC's RFB client on a canvas that fills the window,
 * the connection state and the guest's name, and buttons for Ctrl-Alt-Del
 * and for typing pasted text into the guest.
 */
export function viewerPage(title: string): string {
  const esc = title.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc} — rxfb</title>
<style>
  html, body { margin: 0; height: 100%; background: #1b1d21; color: #e8e8e8;
    font: 14px system-ui, sans-serif; }
  body { display: flex; flex-direction: column; }
  header { display: flex; gap: 12px; align-items: center; padding: 6px 10px;
    background: #2a2d33; flex-wrap: wrap; }
  #name { font-weight: 600; }
  #state { padding: 2px 8px; border-radius: 10px; background: #555; font-size: 12px; }
  #state.connected { background: #2e7d32; }
  #state.disconnected, #state.connection.lost { background: #b71c1c; }
  #screen { flex: 1; min-height: 0; overflow: hidden; }
  button { background: #3d434c; color: inherit; border: 1px solid #555; border-radius: 4px;
    padding: 3px 10px; cursor: pointer; }
  #paste { flex: 1; min-width: 160px; max-width: 420px; height: 1.6em; resize: vertical;
    background: #15171a; color: inherit; border: 1px solid #555; border-radius: 4px; }
</style>
</head>
<body>
<header>
  <span id="name">${esc}</span>
  <span id="state">connecting</span>
  <button id="cad" title="Send Ctrl-Alt-Del to the guest">Ctrl-Alt-Del</button>
  <textarea id="paste" placeholder="Text to type into the guest"></textarea>
  <button id="type" title="Type the text into the guest, key by key">Type it</button>
</header>
<div id="screen"></div>
<script type="module">
import RFB from "./novnc/core/rfb.js";
import keysyms from "./novnc/core/input/keysymdef.js";
import KeyTable from "./novnc/core/input/keysym.js";

const state = document.getElementById("state");
const name = document.getElementById("name");
const setState = (s) => { state.textContent = s; state.className = s; };
const wsUrl = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/websockify";
// noVNC always announces a JPEG quality level, and rxfb's Tight encoder takes
// any quality level as leave to send JPEG, which is lossy even at level 9.
// The page shows the guest's pixels exactly unless asked for JPEG with
// ?quality=0..9: without it, the quality pseudo-encodings are left out.
const quality = /^[0-9]$/.test(new URLSearchParams(location.search).get("quality") ?? "")
  ? Number(new URLSearchParams(location.search).get("quality")) : undefined;
const clientEncodings = RFB.messages.clientEncodings;
RFB.messages.clientEncodings = (sock, encs) => clientEncodings(sock,
  quality === undefined ? encs.filter((e) => e < -32 || e > -23) : encs);
const rfb = new RFB(document.getElementById("screen"), wsUrl, { wsProtocols: ["binary"] });
rfb.scaleViewport = true;
rfb.resizeSession = false;
rfb.qualityLevel = quality ?? 9;
rfb.compressionLevel = 2;
rfb.addEventListener("connect", () => {
  setState("connected");
  rfb.focus(); // typing works at once, without a click first
});
rfb.addEventListener("disconnect", (e) =>
  setState(e.detail.clean ? "disconnected" : "connection lost"));
rfb.addEventListener("desktopname", (e) => {
  name.textContent = e.detail.name;
  document.title = e.detail.name + " — rxfb";
});
document.getElementById("cad").onclick = () => rfb.sendCtrlAltDel();
document.getElementById("type").onclick = () => {
  const text = document.getElementById("paste").value;
  for (const ch of text) {
    const keysym = ch === "\\n" ? KeyTable.XK_Return : keysyms.lookup(ch.codePointAt(0));
    rfb.sendKey(keysym, null, true);
    rfb.sendKey(keysym, null, false);
  }
  rfb.focus();
};
window.rxfb = rfb; // for tests and the curious
</script>
</body>
</html>
`;
}
