#!/usr/bin/env bash
# make bench-storm / bench-storm-chaos / bench-storm-soak / bench-storm-console (root): two
# network namespaces joined by a veth — the servers' (10.99.0.1/16 on
# vsrv) and the machines' (10.99.0.2/16 on vcli) — then the storm tool in
# the machines' namespace. Every namespace and process of the run goes at
# exit (trap; the tool's processes also die with it: parent-death signal).
#
#   bash bench/storm/run.sh [storm flags...]      e.g. -n 200, -chaos -ramp 30s, -loop 30m
#
# Needs: Debian packages dnsmasq-base, tgt, busybox, ipxe (installed when
# missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="/usr/local/go/bin:$PATH"
source .ci/packages.sh

if [ "$(id -u)" != 0 ]; then
	echo "bench-storm needs root (network namespaces, ports 67, 69, 3260): run it with sudo" >&2
	exit 1
fi

need=("dnsmasq dnsmasq-base" "tgtd tgt" "busybox busybox" "/usr/lib/ipxe/undionly.kpxe ipxe" "ip iproute2")
install_missing "${need[@]}"

prefix="storm$$"
srv="$prefix-srv" cli="$prefix-cli"
work=$(mktemp -d /tmp/dls-storm.XXXXXX)
cleanup() {
	ip netns del "$srv" 2>/dev/null || true
	ip netns del "$cli" 2>/dev/null || true
	[ -n "${STORM_KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$srv"
ip netns add "$cli"
ip link add "${prefix}a" type veth peer name "${prefix}b"
ip link set "${prefix}a" netns "$srv" name vsrv
ip link set "${prefix}b" netns "$cli" name vcli
ip netns exec "$srv" ip addr add 10.99.0.1/16 dev vsrv
ip netns exec "$cli" ip addr add 10.99.0.2/16 dev vcli
for n in "$srv" "$cli"; do ip netns exec "$n" ip link set lo up; done
ip netns exec "$srv" ip link set vsrv up
ip netns exec "$cli" ip link set vcli up

# tgtd and dnsmasq keep a descriptor per target file, transfer and
# connection: a thousand machines need more than the default 1024.
ulimit -n "$(ulimit -Hn)"

echo "== build"
nice -n 15 go build -o "$work/storm" ./bench/storm
mkdir -p "$work/bin"
nice -n 15 go build -o "$work/bin/dls" ./core/cmd/dls
for p in protocol/dhcp protocol/tftp protocol/iscsi storage/dir auth/local; do
	nice -n 15 go build -o "$work/bin/plugins/dls-$(echo $p | tr / -)" "./plugins/$p"
done

ip netns exec "$cli" "$work/storm" -server-ns "$srv" -work "$work" -bin "$work/bin" "$@"
