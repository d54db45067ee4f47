#!/usr/bin/env bash
# make e2e / make demo: installs the Debian packages the end-to-end run
# needs when they are missing, then runs the e2e test (go test -tags e2e
# ./e2e/) or the demo (e2e/demo) as root. Whatever happens, the network
# namespaces of this run (named $DLS_E2E_PREFIX-*) are deleted at exit;
# the processes the run started die with it (parent-death signal).
#
#   bash e2e/run.sh test [go test flags...]     # make e2e
#   bash e2e/run.sh demo [-boots N] [-keep]     # make demo
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
source .ci/packages.sh
mode="${1:-test}"
shift || true
args=("$@")

if [ "$(id -u)" != 0 ]; then
	echo "make $([ "$mode" = demo ] && echo demo || echo e2e) needs root (network namespaces, taps, ports 67 and 69): run it with sudo" >&2
	exit 1
fi

# Packages: command (or file) → package.
need=(
	"qemu-system-x86_64 qemu-system-x86"
	"/usr/lib/ipxe/qemu/efi-virtio.rom ipxe-qemu"
	"nasm nasm"
	"ip iproute2"
)
if [ "$mode" = test ]; then
	need+=(
		"dnsmasq dnsmasq-base"
		"prometheus prometheus"
		"promtool prometheus"
		"tgtd tgt"
		"debootstrap debootstrap"
		"/usr/share/OVMF/OVMF_CODE_4M.fd ovmf"
		"/usr/sbin/mke2fs e2fsprogs"
		"busybox busybox"
		"curl curl"
		"tftp tftp-hpa"
		"iscsi-inq libiscsi-bin"
		"nft nftables"
		"/usr/lib/ipxe/undionly.kpxe ipxe"
		"/usr/lib/shim/shimx64.efi.signed shim-signed"
		"/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed grub-efi-amd64-signed"
		"chromium chromium"
	)
fi
install_missing "${need[@]}"

export DLS_E2E_PREFIX="${DLS_E2E_PREFIX:-dlse2e$$}"
# The run's temporary folders (the test's t.TempDir, the demo's) go here,
# removed at exit even when the run was killed.
export TMPDIR="$(mktemp -d /tmp/dls-e2e-run.XXXXXX)"
cleanup() {
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$DLS_E2E_PREFIX-" || true); do
		ip netns del "$ns" 2>/dev/null || true
	done
	rm -rf "$TMPDIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

case "$mode" in
test)
	# -v: every boot's times and the DLS/reference ratio are in the log.
	go test -tags e2e -count=1 -v -timeout 40m "${args[@]}" ./e2e/
	;;
demo)
	go build -o "$TMPDIR/dls-demo" ./e2e/demo
	"$TMPDIR/dls-demo" "${args[@]}"
	;;
*)
	echo "usage: bash e2e/run.sh test|demo [args]" >&2
	exit 2
	;;
esac
