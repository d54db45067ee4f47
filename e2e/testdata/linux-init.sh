#!/bin/busybox sh
# PID 1 of the e2e's diskless Debian (init=/sbin/dls-e2e-init on the kernel
# line; e2e/lab installs it in the image's root). The initramfs logged in
# to the iSCSI target from the iBFT iPXE's sanhook published, and mounted
# root (/dev/sda) from it. This proves where root came from, lists what
# earlier boots wrote, writes a file naming this boot, confirms the boot to
# DLS (POST /boot/done with the token from the kernel line) and powers off.
# Every line the test reads starts with DLS-LINUX.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
say() { echo "DLS-LINUX $*"; }
fail() { echo "DLS-LINUX-FAIL $*"; sync; echo o >/proc/sysrq-trigger; sleep 60; }

# The initramfs may have moved some of these onto the new root already.
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mountpoint -q /run || mount -t tmpfs tmpfs /run
mkdir -p /run/lock /var/lock /dev/shm

# Where root is: the device mounted on /, the SCSI device's path in sysfs
# (under an iSCSI session), the session's target and initiator names.
rootdev=$(busybox awk '$2 == "/" && $1 != "rootfs" { print $1 }' /proc/mounts)
sda=$(readlink -f /sys/block/sda/device)
sess=$(ls -d /sys/class/iscsi_session/session* 2>/dev/null | head -n 1)
[ -n "$sess" ] || fail "no iSCSI session"
target=$(cat "$sess/targetname")
initiator=$(cat "$sess/initiatorname")
ibft=$(cat /sys/firmware/ibft/target0/target-name 2>/dev/null || echo none)
say "root=$rootdev sda=$sda target=$target initiator=$initiator ibft=$ibft"
name=${initiator##*:}

# iscsid takes over the session iscsistart made in the initramfs: without
# it nobody would log in again after the target drops the connection. It
# logs in again as the initiator it finds configured: the iBFT's.
echo "InitiatorName=$initiator" >/etc/iscsi/initiatorname.iscsi
if iscsid; then say "iscsid started"; else say "iscsid failed"; fi

mkdir -p /dls-e2e || fail "mkdir /dls-e2e"
seen=$(ls /dls-e2e | tr '\n' ' ')
say "seen=[${seen% }]"
n=1
while [ -e "/dls-e2e/$name-$n" ]; do n=$((n + 1)); done

# The test answers a line here (at once, or after killing the iSCSI plugin).
echo "DLS-LINUX-READY $name-$n"
read -t 600 go || say "no go line"

echo "$name boot $n" >"/dls-e2e/$name-$n" || fail "write /dls-e2e/$name-$n"
sync || fail "sync"
echo 3 >/proc/sys/vm/drop_caches
back=$(cat "/dls-e2e/$name-$n") || fail "read back /dls-e2e/$name-$n"
[ "$back" = "$name boot $n" ] || fail "read back /dls-e2e/$name-$n: $back"
echo "DLS-LINUX-WROTE $name-$n"
say "sessions: $(iscsiadm -m session 2>&1 | tr '\n' ';')"

url= token=
for a in $(cat /proc/cmdline); do
	case "$a" in
	dls.url=*) url=${a#dls.url=} ;;
	dls.token=*) token=${a#dls.token=} ;;
	esac
done
if [ -n "$token" ]; then
	if answer=$(busybox wget -q -O - --post-data "token=$token" "$url/boot/done" 2>&1); then
		echo "DLS-LINUX-CONFIRMED $answer"
	else
		echo "DLS-LINUX-CONFIRM-FAILED $answer"
	fi
else
	say "no dls.token on the kernel line"
fi

mount -o remount,ro / || say "remount ro failed"
sync
echo "DLS-LINUX-DONE $name-$n"
echo o >/proc/sysrq-trigger
sleep 60
