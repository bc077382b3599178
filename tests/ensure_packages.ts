/**
 * Installs the Debian packages the real-peer tests need, when they are
 * missing and we are root; otherwise prints the exact apt-get line. The tests
 * that need a package skip themselves when it is missing (and fail under
 * CI=true), so this step never fails the run by itself.
 */
import { TEST_PACKAGES } from "./packages.ts";

async function installed(pkg: string): Promise<boolean> {
  const out = await new Deno.Command("dpkg-query", {
    args: ["-W", "-f=${Status}", pkg],
    stdout: "piped",
    stderr: "null",
  }).output().catch(() => undefined);
  return !!out && new TextDecoder().decode(out.stdout).includes("install ok installed");
}

const missing: string[] = [];
for (const p of TEST_PACKAGES) if (!(await installed(p))) missing.push(p);
if (missing.length === 0) Deno.exit(0);

const line = `apt-get install -y ${missing.join(" ")}`;
const isRoot = Deno.uid?.() === 0;
if (!isRoot) {
  console.error(
    `rxfb tests: missing Debian packages; their tests will be skipped. Install with:\n  sudo ${line}`,
  );
  Deno.exit(0);
}
console.error(`rxfb tests: installing ${missing.join(" ")}`);
const env = { DEBIAN_FRONTEND: "noninteractive" };
const run = (args: string[]) =>
  new Deno.Command("apt-get", { args, env, stdout: "null", stderr: "inherit" }).output();
let res = await run(["install", "-y", "--no-install-recommends", ...missing]);
if (!res.success) {
  await run(["update"]);
  res = await run(["install", "-y", "--no-install-recommends", ...missing]);
}
if (!res.success) {
  console.error(
    `rxfb tests: apt-get failed; the tests that need these will be skipped:\n  ${line}`,
  );
}
