#!/bin/bash
# Builds what tests/xen/run.ts boots: a Debian bookworm dom0 (debootstrap, cached) with Xen 4.17,
# rxfb (Deno + rxfb's sources + their npm packages) as /usr/local/bin/rxfb-dm, and a PV test guest
# (Debian kernel + busybox initramfs, tests/xen/guest/). Everything goes under $LAB
# (default /var/tmp/rxfb-xenlab/rxfb); only the debootstrap root is kept between runs.
# usage: build.sh [ENTRY]   ENTRY: "cli" (default: rxfb's own CLI, mod.ts) or "standin"
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
LAB=${LAB:-/var/tmp/rxfb-xenlab/rxfb}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
ENTRY_KIND=${1:-cli}
ROOT=$LAB/dom0root
# Debian packages of the dom0: xen-system-amd64 brings the hypervisor, xen-utils-4.17 (xl, libxl,
# xenstored, xenconsoled) and libxenevtchn1, libxenforeignmemory1, libxengnttab1 that rxfb loads.
PKGS=linux-image-amd64,xen-system-amd64,xenstore-utils,kmod,udev,procps,iproute2,socat,busybox
STAMP="bookworm $PKGS v1"
t0=$(date +%s)
step() { echo "build[$(( $(date +%s) - t0 ))s]: $*"; }
mkdir -p "$LAB"

# 1. the dom0 root file system (the slow part: about 3 minutes; kept while $STAMP is unchanged)
if [ "$(cat "$LAB/dom0root.stamp" 2>/dev/null)" != "$STAMP" ]; then
  step "debootstrap bookworm dom0 into $ROOT (cached afterwards)"
  rm -rf "$ROOT" "$ROOT.new" "$LAB/dom0root.stamp"
  debootstrap --variant=minbase --include=$PKGS bookworm "$ROOT.new" "$MIRROR" > "$LAB/debootstrap.log" 2>&1 ||
    { tail -20 "$LAB/debootstrap.log"; exit 1; }
  rm -rf "$ROOT.new/var/cache/apt/archives"/*.deb
  mv "$ROOT.new" "$ROOT"
  echo "$STAMP" > "$LAB/dom0root.stamp"
else
  step "dom0 root cached ($ROOT)"
fi
KVER=$(ls "$ROOT/lib/modules" | sort -V | tail -1)
for lib in libxenevtchn.so.1 libxenforeignmemory.so.1 libxengnttab.so.1; do
  [ -e "$ROOT/usr/lib/x86_64-linux-gnu/$lib" ] || { echo "build: $lib missing in the dom0 root"; exit 1; }
done

# 2. the test guest's initramfs: static busybox, evdev.ko of the same kernel, evlog, init
step "guest initramfs (kernel $KVER)"
G=$LAB/guest
rm -rf "$G"; mkdir -p "$G/bin" "$G/proc" "$G/sys" "$G/dev" "$G/tmp"
BB=$(command -v busybox)
file -L "$BB" | grep -q 'statically linked' || { echo "build: $BB is not static (apt-get install busybox-static)"; exit 1; }
cp "$BB" "$G/bin/busybox"; ln -s busybox "$G/bin/sh"
gcc -static -O2 -Wall -o "$G/evlog" "$HERE/guest/evlog.c"
cp "$ROOT/lib/modules/$KVER/kernel/drivers/input/evdev.ko" "$G/evdev.ko"
install -m 755 "$HERE/guest/init" "$G/init"
(cd "$G" && find . | cpio -o -H newc 2>/dev/null | gzip -6) > "$LAB/guest.cpio.gz"

# 3. rxfb: the Deno binary, rxfb's sources and a DENO_DIR holding their npm packages
step "rxfb into /opt/rxfb ($ENTRY_KIND)"
O=$ROOT/opt/rxfb
rm -rf "$O"; mkdir -p "$O/src/tests/xen/dom0"
DENO=${DENO:-$(command -v deno)}
cp "$("$DENO" eval --quiet 'console.log(Deno.execPath())')" "$O/deno"
cp -r "$REPO/mod.ts" "$REPO/deno.json" "$REPO/deno.lock" "$REPO/cli" "$REPO/pipeline" "$REPO/sources" \
  "$REPO/sinks" "$O/src/"
cp "$HERE/dom0/dm_standin.ts" "$O/src/tests/xen/dom0/"
# npm packages: fetched once into a DENO_DIR kept in $LAB, then copied into the image
mkdir -p "$LAB/deno-dir"
(cd "$O/src" && DENO_DIR=$LAB/deno-dir "$DENO" cache --quiet mod.ts tests/xen/dom0/dm_standin.ts)
mkdir -p "$O/deno-dir"
cp -r "$LAB/deno-dir/npm" "$O/deno-dir/" 2>/dev/null || true
[ -d "$LAB/deno-dir/remote" ] && cp -r "$LAB/deno-dir/remote" "$O/deno-dir/"
case "$ENTRY_KIND" in
  cli) ENTRY=/opt/rxfb/src/mod.ts ;;
  standin) ENTRY=/opt/rxfb/src/tests/xen/dom0/dm_standin.ts ;;
  *) echo "build: unknown entry $ENTRY_KIND"; exit 2 ;;
esac
sed "s|@ENTRY@|$ENTRY|" "$HERE/dom0/rxfb" > "$ROOT/usr/local/bin/rxfb"
install -m 755 "$HERE/dom0/rxfb-dm" "$ROOT/usr/local/bin/rxfb-dm"
chmod 755 "$ROOT/usr/local/bin/rxfb"

# 4. the lab scripts, the guest, and the image
step "dom0 image"
install -m 755 "$HERE/dom0/xenlab-init" "$ROOT/xenlab-init"
install -m 755 "$HERE/dom0/rxfb-lab.sh" "$HERE/dom0/rxfb-cmd.sh" "$HERE/dom0/null-dm" "$ROOT/root/"
install -m 644 "$HERE/dom0/domu-rxfb.cfg" "$HERE/dom0/domu-daemon.cfg" "$ROOT/root/"
mkdir -p "$ROOT/root/domu"
cp "$ROOT/boot/vmlinuz-$KVER" "$ROOT/root/domu/vmlinuz"
cp "$LAB/guest.cpio.gz" "$ROOT/root/domu/guest.cpio.gz"
rm -rf "$ROOT/var/log/xen"/*
echo dom0 > "$ROOT/etc/hostname"
mkdir -p "$LAB/boot"
cp "$ROOT/boot/vmlinuz-$KVER" "$LAB/boot/dom0-vmlinuz"
cp "$ROOT/boot/initrd.img-$KVER" "$LAB/boot/dom0-initrd.img"
zcat "$ROOT/boot/xen-4.17-amd64.gz" > "$LAB/boot/xen"
rm -f "$LAB/dom0.img"
mkfs.ext4 -q -F -L dom0 -d "$ROOT" "$LAB/dom0.img" 3G
step "done: $LAB/dom0.img, $LAB/boot"
