/** Debian packages the real-peer tests use, and the test helpers that check for them. */
export const TEST_PACKAGES = [
  "gcc", // tests/layout_test.ts compiles against Xen's headers
  "libc6-dev",
  "libxen-dev", // xen/io/fbif.h, kbdif.h
  "libxenevtchn1", // tests/xen_ffi_test.ts loads Xen's libraries through Deno FFI
  "libxenforeignmemory1",
  "libxengnttab1",
  "xenstore-utils", // xenstore-read/-write/-ls/-watch against the simulated xenstored
  "openssl", // self-signed certificates for the TLS tests
  "xkb-data", // keymap generation check (tests/keymap_test.ts)
  "x11proto-dev", // keysymdef.h for the same
  "qemu-system-data", // QEMU keymaps: the XT scancode table check
  "vncsnapshot", // real VNC clients
  "tigervnc-viewer",
  "gvncviewer",
  "xvfb", // an X display for the viewers
  "xdotool", // typing into a viewer's window
  "x11-apps", // xwd, to screenshot a window
  "imagemagick", // converting screenshots
  "websockify", // noVNC over WebSocket until the web sink serves it
  "chromium", // noVNC in a headless browser
  "libturbojpeg0", // fast JPEG for Tight (rxfb falls back to jpeg-js without it)
  "ffmpeg", // .mp4/.webm recording (tests/record_test.ts) and ffprobe to check the files
];

/** True when running under CI, where a skipped real-peer test is a failure. */
export const IN_CI = Deno.env.get("CI") === "true";

/**
 * Whether a test that needs `what` should be ignored: true when it is missing
 * outside CI (after printing how to install it). Under CI it returns false so
 * that the test runs and fails with the missing piece named.
 */
export function skipWithout(present: boolean, what: string, aptLine: string): boolean {
  if (present) return false;
  if (IN_CI) return false;
  console.error(`skipping: ${what} is missing; install with: ${aptLine}`);
  return true;
}

/** True when `path` exists. */
export function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
