/** Where a dom0 shows that it runs on Xen. */
const XEN_SIGNS = [
  "/dev/xen/xenbus",
  "/run/xenstored/socket",
  "/var/run/xenstored/socket",
  "/proc/xen/capabilities",
];

/** Whether this machine is a Xen domain with a xenstore to talk to, and why we think so. */
export async function findXen(): Promise<{ found: boolean; why: string }> {
  const env = Deno.env.get("XENSTORED_PATH");
  for (const p of env ? [env, ...XEN_SIGNS] : XEN_SIGNS) {
    try {
      await Deno.stat(p);
      return { found: true, why: `${p} exists` };
    } catch {
      // not this one
    }
  }
  return { found: false, why: `none of ${XEN_SIGNS.join(", ")} exists` };
}
