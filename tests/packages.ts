/** Debian packages the real-peer tests use, and the test helpers that check for them. */
export const TEST_PACKAGES = [
  "gcc", // tests/layout_test.ts compiles against Xen's headers
  "libc6-dev",
  "libxen-dev", // xen/io/fbif.h, kbdif.h
  "openssl", // self-signed certificates for the TLS tests
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
