#!/bin/bash
# Runs inside the test dom0 (called by /xenlab-init): starts the Xen services, the network and a
# command server on port 7000 through which the host (tests/xen/run.ts) drives the scenario.
# Prints "RXFB-LAB ..." markers to the console; returns (and dom0 powers off) when the host
# creates /run/rxfb-lab.done, or after rxfb.limit=SECONDS (kernel cmdline, default 1200).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
L=/usr/lib/xen-4.17/bin
mark() { echo "RXFB-LAB[$(cut -d' ' -f1 /proc/uptime)] $*"; }
limit=$(sed -n 's/.*rxfb\.limit=\([0-9]*\).*/\1/p' /proc/cmdline); limit=${limit:-1200}
mark "xen modules + xenfs"
for m in xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd; do modprobe $m || mark "modprobe $m failed"; done
mkdir -p /proc/xen; mount -t xenfs xenfs /proc/xen
mkdir -p /run/xenstored /run/xen /var/log/xen/console /var/lib/xen /var/run/xen
XENSTORED_ROOTDIR=/run/xenstored $L/xenstored --pid-file /run/xenstore.pid
for i in $(seq 1 20); do xenstore-read -s / >/dev/null 2>&1 && break; sleep 0.5; done
$L/xen-init-dom0
$L/xenconsoled --pid-file=/run/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console
mark "xenstored, xen-init-dom0, xenconsoled started"
mark "network"
modprobe virtio_net
ip link set lo up
dev=$(ls /sys/class/net | grep -v '^lo$' | head -1)
ip link set "$dev" up && ip addr add 10.0.2.15/24 dev "$dev" && ip route add default via 10.0.2.2
ip -brief addr
mark "rxfb warm-up (transpile cache)"
/usr/local/bin/rxfb --help > /var/log/xen/rxfb-warmup.log 2>&1; mark "rxfb warm-up exit $?"
socat TCP-LISTEN:7000,reuseaddr,fork EXEC:/root/rxfb-cmd.sh &
for i in $(seq 1 50); do ss -ltn | grep -q ':7000 ' && break; sleep 0.2; done
mark "READY (command server on :7000)"
end=$(( $(cut -d. -f1 /proc/uptime) + limit ))
while [ ! -e /run/rxfb-lab.done ] && [ "$(cut -d. -f1 /proc/uptime)" -lt $end ]; do sleep 1; done
[ -e /run/rxfb-lab.done ] || mark "TIME LIMIT ${limit}s reached"
for d in $(xl list 2>/dev/null | awk 'NR>2{print $1}'); do xl destroy "$d"; done
mark "DONE"
